//! beamd's server: hyper HTTP/1.1 on a unix socket (and optionally TCP with a bearer token), routing
//! to the sandbox manager. SIGTERM/SIGINT stop serving and leave every sandbox running; the next beamd
//! re-adopts them.

pub mod exec;
pub mod files;
pub mod http;
pub mod logs;
pub mod routes;

use crate::sandbox::manager::{Config, Manager};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Setup(String),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    pub run_dir: PathBuf,
    pub socket: PathBuf,
    /// Also serve on this TCP address; needs `token`.
    pub listen: Option<std::net::SocketAddr>,
    pub token: Option<String>,
    /// The gateway to sandbox ports (None: off).
    pub gateway: Option<GatewayOptions>,
    /// Sandbox networking (`--network bridge`); None: loopback only.
    pub network: Option<crate::sandbox::manager::NetworkConfig>,
}

/// Where the gateway listens. `required`: a listen failure stops beamd (an address the user asked for);
/// otherwise beamd warns and runs without it (the default address, e.g. taken by another beamd).
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub config: crate::gateway::Config,
    pub required: bool,
}

/// Constant-time comparison of the bearer token.
fn token_ok(header: Option<&hyper::header::HeaderValue>, token: &str) -> bool {
    let Some(got) = header.and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer ")) else { return false };
    let (a, b) = (got.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn serve_conn<IO>(mgr: Arc<Manager>, io: IO, token: Option<Arc<String>>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mgr = mgr.clone();
        let token = token.clone();
        async move {
            if let Some(t) = &token
                && !token_ok(req.headers().get(hyper::header::AUTHORIZATION), t)
            {
                return Ok::<_, std::convert::Infallible>(
                    http::HttpError::new(401, "unauthorized", "missing or wrong bearer token; send Authorization: Bearer <token from --token-file>")
                        .into_response(),
                );
            }
            Ok(routes::route(mgr, req).await)
        }
    });
    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(io), svc).with_upgrades().await {
        tracing::debug!("connection: {e}");
    }
}

/// Bind the unix socket: mode 0660, group `beam` when that group exists.
fn bind_unix(path: &std::path::Path) -> Result<tokio::net::UnixListener, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let setup = |what: String| DaemonError::Setup(what);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| setup(format!("{}: {e}", dir.display())))?;
    }
    if path.exists() {
        // Another beamd? Connecting tells.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(setup(format!(
                "another beamd is serving {}; stop it first (or pass --socket for a second one)",
                path.display()
            )));
        }
        let _ = std::fs::remove_file(path);
    }
    let l = tokio::net::UnixListener::bind(path).map_err(|e| setup(format!("binding {}: {e}", path.display())))?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
    if let Ok(Some(g)) = nix::unistd::Group::from_name("beam") {
        let _ = nix::unistd::chown(path, None, Some(g.gid));
    }
    Ok(l)
}

/// Run beamd until SIGTERM/SIGINT.
pub async fn run(opts: Options) -> Result<(), DaemonError> {
    if opts.listen.is_some() && opts.token.is_none() {
        return Err(DaemonError::Setup("--listen needs --token-file: every TCP request must carry a bearer token".into()));
    }
    std::fs::create_dir_all(&opts.run_dir).map_err(|e| DaemonError::Setup(format!("{}: {e}", opts.run_dir.display())))?;
    // The gateway's listener first: its URL scheme is part of the manager's config, so that every
    // Sandbox the API shows has its `urls`.
    let gateway = match &opts.gateway {
        None => None,
        Some(g) => match crate::gateway::bind(&g.config).await {
            Ok(bound) => Some(bound),
            Err(e) if g.required => return Err(DaemonError::Setup(e.to_string())),
            Err(e) => {
                tracing::warn!("{e}; running without the gateway (sandboxes get no URLs); pick one with --gateway ADDR");
                None
            }
        },
    };
    let cfg = Config {
        root: opts.root.clone(),
        run_dir: opts.run_dir.clone(),
        network: opts.network.clone(),
        public: gateway.as_ref().map(|(_, public)| public.clone()),
    };
    let mgr = Manager::open(cfg).map_err(|e| DaemonError::Setup(e.to_string()))?;
    let unix = bind_unix(&opts.socket)?;
    crate::sandbox::recovery::recover(&mgr).await;
    crate::sandbox::timers::spawn(&mgr);
    if let Some((l, public)) = gateway {
        tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), domain = %public.domain, "serving the gateway to sandbox ports");
        crate::gateway::spawn(mgr.clone(), l).map_err(|e| DaemonError::Setup(e.to_string()))?;
    }
    let token = opts.token.clone().map(Arc::new);
    if let Some(addr) = opts.listen {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| DaemonError::Setup(format!("listening on {addr}: {e}")))?;
        let (mgr, token) = (mgr.clone(), token.clone());
        tracing::info!(%addr, "serving the API on TCP (bearer token required)");
        tokio::spawn(async move {
            loop {
                match tcp.accept().await {
                    Ok((s, _)) => {
                        tokio::spawn(serve_conn(mgr.clone(), s, token.clone()));
                    }
                    Err(e) => tracing::warn!("accept: {e}"),
                }
            }
        });
    }
    tracing::info!(socket = %opts.socket.display(), root = %opts.root.display(), "beamd serving");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| DaemonError::Setup(format!("SIGTERM handler: {e}")))?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| DaemonError::Setup(format!("SIGINT handler: {e}")))?;
    loop {
        tokio::select! {
            r = unix.accept() => match r {
                Ok((s, _)) => {
                    tokio::spawn(serve_conn(mgr.clone(), s, None));
                }
                Err(e) => tracing::warn!("accept: {e}"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let _ = std::fs::remove_file(&opts.socket);
    if let Some(net) = mgr.net.clone() {
        // The bridge and firewall go only with the last sandbox: running ones stay connected and isolated.
        match tokio::task::spawn_blocking(move || net.teardown()).await {
            Ok(Ok(crate::netns::Teardown::Removed)) => tracing::info!("removed beam0 and beam's nftables tables"),
            Ok(Ok(crate::netns::Teardown::KeptForLive { sandboxes })) => {
                tracing::info!(sandboxes, "kept beam0 and beam's nftables tables for the sandboxes still running")
            }
            Ok(Err(e)) => tracing::warn!("removing sandbox networking: {e}"),
            Err(e) => tracing::warn!("removing sandbox networking: {e}"),
        }
    }
    tracing::info!("beamd stopping; sandboxes keep running and the next beamd adopts them");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn bearer_tokens() {
        let h = |s: &str| hyper::header::HeaderValue::from_str(s).unwrap();
        assert!(super::token_ok(Some(&h("Bearer abc")), "abc"));
        assert!(!super::token_ok(Some(&h("Bearer abd")), "abc"));
        assert!(!super::token_ok(Some(&h("abc")), "abc"));
        assert!(!super::token_ok(None, "abc"));
    }
}
