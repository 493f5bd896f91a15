//! OCI distribution registries: pull into the store and push out of it, through `oci_client`.
//!
//! ```text
//! pull:  manifest (index → host platform) ─▶ config + layers, ≤ 4 at a time, each streamed
//!        HTTP body ─▶ channel ─▶ store.put_blob (verifies sha256) ─▶ manifest blob ─▶ store.add_image
//! push:  store manifest ─▶ every blob the registry lacks, streamed from the store file ─▶ manifest
//! ```
//! The API is synchronous ([`pull`], [`push`]: each runs a small tokio runtime); async callers (beamd)
//! use [`pull_async`] / [`push_async`]. Plain http only for loopback registries or with `insecure`.
//! Network errors and 5xx are retried (3 tries, backoff); 4xx and digest mismatches are not.

mod auth;
pub(crate) mod manifest;
mod pull;
mod push;

use crate::image::digest::Digest;
use crate::image::reference::{self, RefError};
use crate::image::store::StoreError;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{Client, Reference};
use std::future::Future;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

pub use pull::{pull, pull_async};
pub use push::{push, push_async};

/// Layers fetched (or pushed) at the same time.
pub const PARALLEL_BLOBS: usize = 4;
/// Tries per network operation.
pub const TRIES: u32 = 3;

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Basic credentials; with neither, `~/.docker/config.json` (or `$DOCKER_CONFIG`) is consulted.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Plain http for a registry that is not on loopback.
    pub insecure: bool,
    /// No progress bars.
    pub quiet: bool,
    /// `os/arch[/variant]` to pick from an index instead of the host's.
    pub platform: Option<String>,
    /// A docker config.json to read credentials from instead of the default one.
    pub docker_config: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub username: Option<String>,
    pub password: Option<String>,
    pub insecure: bool,
    pub quiet: bool,
    pub docker_config: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] RefError),
    #[error("{reference}: not found in registry {registry} (no such repository, tag or digest)")]
    NotFound { registry: String, reference: String },
    #[error("cannot reach registry {registry}: {msg}")]
    Unreachable { registry: String, msg: String },
    #[error("registry {registry} failed: {msg}")]
    Server { registry: String, msg: String },
    #[error(
        "registry {registry} denied access ({msg}); give --username/--password or add credentials to ~/.docker/config.json"
    )]
    Unauthorized { registry: String, msg: String },
    #[error(
        "blob {expected} from registry {registry} hashes to {actual}: the registry's copy is corrupt or was tampered with"
    )]
    DigestMismatch {
        registry: String,
        expected: String,
        actual: String,
    },
    #[error("{reference}: the image index has no image for {want} (it has: {available})")]
    NoPlatform {
        reference: String,
        want: String,
        available: String,
    },
    #[error("{reference}: {msg}")]
    Unsupported { reference: String, msg: String },
    #[error("registry {registry}: {msg}")]
    Protocol { registry: String, msg: String },
    #[error("{0}")]
    Credentials(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl RegistryError {
    /// Worth trying again: the network failed or the server had a 5xx/429 moment.
    fn retryable(&self) -> bool {
        matches!(
            self,
            RegistryError::Unreachable { .. } | RegistryError::Server { .. }
        )
    }
}

/// What the client is talking to, for error messages.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub registry: String,
    pub reference: String,
}

impl Ctx {
    fn new(r: &Reference) -> Self {
        Ctx {
            registry: r.registry().to_string(),
            reference: reference::canonical(r),
        }
    }

    /// `beam.local/…` names local images (recipes, imports): there is no such registry to talk to.
    fn not_local(&self, r: &Reference) -> Result<(), RegistryError> {
        if r.registry() == reference::LOCAL_REGISTRY {
            return Err(RegistryError::Unsupported {
                reference: self.reference.clone(),
                msg: format!(
                    "{} names local images (built or imported here); there is no registry to reach",
                    reference::LOCAL_REGISTRY
                ),
            });
        }
        Ok(())
    }

    /// Turn a client error into one clear error.
    pub(crate) fn err(&self, e: OciDistributionError) -> RegistryError {
        let registry = self.registry.clone();
        let not_found = || RegistryError::NotFound {
            registry: registry.clone(),
            reference: self.reference.clone(),
        };
        match e {
            OciDistributionError::RequestError(e) => {
                if let Some(status) = e.status() {
                    return self.status_err(status.as_u16(), e.to_string());
                }
                RegistryError::Unreachable {
                    registry,
                    msg: error_chain(&e),
                }
            }
            OciDistributionError::IoError(e) => self.io_err(e),
            OciDistributionError::RegistryError { envelope, .. } => {
                let msg = envelope
                    .errors
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                match envelope.errors.first().map(|e| &e.code) {
                    Some(
                        OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown,
                    )
                    | Some(OciErrorCode::NotFound) => not_found(),
                    Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => {
                        RegistryError::Unauthorized { registry, msg }
                    }
                    Some(OciErrorCode::Toomanyrequests) => RegistryError::Server { registry, msg },
                    _ => RegistryError::Protocol { registry, msg },
                }
            }
            OciDistributionError::ServerError { code, message, .. } => {
                self.status_err(code, message)
            }
            OciDistributionError::UnauthorizedError { .. } => RegistryError::Unauthorized {
                registry,
                msg: "401 Unauthorized".into(),
            },
            OciDistributionError::AuthenticationFailure(msg) => {
                RegistryError::Unauthorized { registry, msg }
            }
            OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
            OciDistributionError::DigestError(
                oci_client::errors::DigestError::VerificationError { expected, actual },
            ) => RegistryError::DigestMismatch {
                registry,
                expected,
                actual,
            },
            other => RegistryError::Protocol {
                registry,
                msg: other.to_string(),
            },
        }
    }

    fn status_err(&self, code: u16, message: String) -> RegistryError {
        let registry = self.registry.clone();
        // Registries answer {"errors":[{"code":…,"message":…}]}: keep the messages.
        let message = serde_json::from_str::<serde_json::Value>(&message)
            .ok()
            .and_then(|v| {
                let msgs: Vec<String> = v
                    .get("errors")?
                    .as_array()?
                    .iter()
                    .filter_map(|e| e.get("message").and_then(|m| m.as_str()).map(String::from))
                    .collect();
                (!msgs.is_empty()).then(|| msgs.join("; "))
            })
            .unwrap_or(message);
        let message = message.trim();
        let msg = if message.is_empty() {
            format!("HTTP {code}")
        } else {
            format!("HTTP {code}: {message}")
        };
        match code {
            404 => RegistryError::NotFound {
                registry,
                reference: self.reference.clone(),
            },
            401 | 403 => RegistryError::Unauthorized { registry, msg },
            429 | 500.. => RegistryError::Server { registry, msg },
            _ => RegistryError::Protocol { registry, msg },
        }
    }

    /// Errors inside a body stream: a digest verification failure or a broken connection.
    pub(crate) fn io_err(&self, e: std::io::Error) -> RegistryError {
        if let Some(oci_client::errors::DigestError::VerificationError { expected, actual }) = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<oci_client::errors::DigestError>())
        {
            return RegistryError::DigestMismatch {
                registry: self.registry.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            };
        }
        RegistryError::Unreachable {
            registry: self.registry.clone(),
            msg: error_chain(&e),
        }
    }

    pub(crate) fn store_err(&self, e: StoreError) -> RegistryError {
        match e {
            StoreError::DigestMismatch { expected, actual } => RegistryError::DigestMismatch {
                registry: self.registry.clone(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            },
            e => RegistryError::Store(e),
        }
    }
}

/// `a: b: c` from an error and its sources, without repeats.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}

/// Run `op` up to [`TRIES`] times while it fails with a retryable error (0.2 s, 0.8 s backoff).
pub(crate) async fn retry<T, F, Fut>(mut op: F) -> Result<T, RegistryError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, RegistryError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op(attempt).await {
            Err(e) if e.retryable() && attempt < TRIES => {
                tracing::debug!(attempt, error = %e, "retrying");
                tokio::time::sleep(Duration::from_millis(200 * 4u64.pow(attempt - 1))).await;
            }
            r => return r,
        }
    }
}

static CRYPTO: std::sync::Once = std::sync::Once::new();

/// A client for `r`'s registry: https, except plain http for loopback registries or when `insecure`.
pub(crate) fn client(r: &Reference, insecure: bool, monolithic_push: bool) -> Client {
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let protocol = if insecure {
        ClientProtocol::Http
    } else if reference::is_loopback_registry(r.registry()) {
        ClientProtocol::HttpsExcept(vec![
            r.registry().to_string(),
            r.resolve_registry().to_string(),
        ])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        use_monolithic_push: monolithic_push,
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        max_concurrent_download: PARALLEL_BLOBS,
        max_concurrent_upload: PARALLEL_BLOBS,
        ..Default::default()
    })
}

/// Run `f` to completion on a fresh runtime: the synchronous entry points. Called from inside a
/// runtime (where `block_on` would panic), it runs on a helper thread instead.
pub(crate) fn block_on<T: Send, Fut: Future<Output = Result<T, RegistryError>>>(
    make: impl FnOnce() -> Fut + Send,
) -> Result<T, RegistryError> {
    let run = move || -> Result<T, RegistryError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(PARALLEL_BLOBS * 2 + 2)
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Internal(format!("cannot start the async runtime: {e}")))?;
        rt.block_on(make())
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|s| s.spawn(run).join()).unwrap_or_else(|_| {
        Err(RegistryError::Internal(
            "the registry thread panicked".into(),
        ))
    })
}

/// Progress bars on stderr, one per blob; hidden when quiet or stderr is not a terminal.
pub(crate) struct Progress {
    multi: MultiProgress,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Self {
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
        }
    }

    pub(crate) fn bar(&self, verb: &str, d: &Digest, size: u64) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{prefix} {msg:>9} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let pb = self.multi.add(ProgressBar::new(size).with_style(style));
        pb.set_prefix(d.short().to_string());
        pb.set_message(verb.to_string());
        pb
    }

    /// End a blob's bar by the outcome of its transfer, which is passed through.
    pub(crate) fn finish<T, E>(pb: &ProgressBar, result: Result<T, E>) -> Result<T, E> {
        match &result {
            Ok(_) => pb.finish_with_message("done"),
            Err(_) => pb.abandon_with_message("failed"),
        }
        result
    }

    /// A line above the bars (also hidden when the bars are).
    pub(crate) fn println(&self, s: &str) {
        let _ = self.multi.println(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn retries_network_errors_only() {
        let n = AtomicU32::new(0);
        let r: Result<(), _> = run(retry(|_| async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(RegistryError::Unreachable {
                registry: "r".into(),
                msg: "refused".into(),
            })
        }));
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), TRIES);

        n.store(0, Ordering::SeqCst);
        let r: Result<(), _> = run(retry(|_| async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(RegistryError::NotFound {
                registry: "r".into(),
                reference: "x".into(),
            })
        }));
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 1);

        n.store(0, Ordering::SeqCst);
        let r = run(retry(|attempt| async move {
            if attempt < 2 {
                Err(RegistryError::Server {
                    registry: "r".into(),
                    msg: "HTTP 503".into(),
                })
            } else {
                Ok(attempt)
            }
        }));
        assert_eq!(r.unwrap(), 2);
    }

    #[test]
    fn status_errors() {
        let ctx = Ctx {
            registry: "r".into(),
            reference: "r/x:1".into(),
        };
        let e = ctx.status_err(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.into(),
        );
        assert_eq!(
            e.to_string()
                .split(" (")
                .nth(1)
                .unwrap()
                .split(')')
                .next()
                .unwrap(),
            "HTTP 401: authentication required"
        );
        assert!(matches!(
            ctx.status_err(404, String::new()),
            RegistryError::NotFound { .. }
        ));
        assert!(ctx.status_err(502, "bad gateway".into()).retryable());
        assert!(!ctx.status_err(400, "bad".into()).retryable());
    }
}
