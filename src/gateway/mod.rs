//! beamd's gateway: an HTTP/1.1 reverse proxy (hyper) that routes `http://<sandbox>-<port>.<domain>/…` (by
//! the Host header) and `http://HOST:PORT/sandbox/<sandbox>/<port>/…` (by path) to a port inside a sandbox.
//!
//! The gateway opens each upstream TCP connection *inside* the sandbox's network namespace ([`dial`]: the
//! thread joins it just to create the socket), so a server listening on 127.0.0.1 or 0.0.0.0 in the sandbox
//! is reachable with or without a bridge, and the sandbox needs no route from the host. Keep-alive,
//! streaming bodies both ways and upgrades (WebSocket) are proxied; proxied requests and open connections
//! count as activity for keep-warm.
//!
//! It runs on threads of its own, one per CPU, each a current-thread tokio runtime accepting from the same
//! listener: a connection — downstream, dial, upstream — is served start to end on the thread that
//! accepted it, with no wake-ups across threads (nginx's worker model), and its requests never queue
//! behind the API's work.

mod auth;
mod page;
mod proxy;
pub mod target;

use crate::netns::dial;
use crate::sandbox::manager::{ListFilter, Manager};
use crate::sandbox::ports::PublicUrls;
use crate::sandbox::{Entry, SandboxError};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Default listen address of the gateway.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8790";
/// Default domain: `*.localhost` resolves to loopback in browsers, so the URLs open on the host.
pub const DEFAULT_DOMAIN: &str = "localhost";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway: listening on {addr}: {err}")]
    Bind { addr: SocketAddr, err: std::io::Error },
    #[error("gateway: starting its worker threads: {0}; check the process and thread limits (ulimit -u)")]
    Workers(std::io::Error),
    #[error("gateway: domain {0:?} is not a host name; use e.g. localhost or sandboxes.example.com")]
    Domain(String),
}

/// Where the gateway listens and how its URLs look.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    /// URLs are `http://<id>-<port>.<domain>[:<port of addr>]/`.
    pub domain: String,
}

/// The gateway's shared state.
pub struct Gateway {
    mgr: Arc<Manager>,
    dialer: Arc<dyn dial::Dialer>,
    domain: String,
    port: u16,
    /// Sandboxes whose exit we watch (to drop the dialer's cached namespace fd).
    watched: Mutex<HashSet<String>>,
}

impl Gateway {
    /// A sandbox by id or name; in a host name, where browsers lower-case everything, also a name that
    /// differs only in case.
    fn lookup(&self, reference: &str, by_host: bool) -> Result<Arc<Entry>, SandboxError> {
        match self.mgr.get(reference) {
            Ok(e) => Ok(e),
            Err(err) if by_host => {
                let hit = self
                    .mgr
                    .list(&ListFilter::default())
                    .into_iter()
                    .find(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(reference)));
                match hit {
                    Some(s) => self.mgr.get(&s.id),
                    None => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// Forget the dialer's cached state of a sandbox once it exits.
    fn watch(self: &Arc<Self>, e: &Arc<Entry>) {
        if !self.watched.lock().expect("watched lock").insert(e.id.clone()) {
            return;
        }
        let (gw, e) = (self.clone(), e.clone());
        tokio::spawn(async move {
            e.exited().await;
            gw.dialer.forget(&e.id);
            gw.watched.lock().expect("watched lock").remove(&e.id);
        });
    }
}

/// Bind the gateway's listener; its URL scheme goes into the sandbox manager's config (so that every
/// `Sandbox` shows its `urls`).
pub async fn bind(cfg: &Config) -> Result<(tokio::net::TcpListener, PublicUrls), GatewayError> {
    let domain = cfg.domain.trim_end_matches('.').to_ascii_lowercase();
    let ok = !domain.is_empty()
        && domain.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !ok {
        return Err(GatewayError::Domain(cfg.domain.clone()));
    }
    let l = tokio::net::TcpListener::bind(cfg.addr).await.map_err(|err| GatewayError::Bind { addr: cfg.addr, err })?;
    let port = l.local_addr().map(|a| a.port()).unwrap_or(cfg.addr.port());
    Ok((l, PublicUrls { domain, port }))
}

/// Serve the gateway on a bound listener (runs until the process ends): one thread per CPU (at most 16),
/// each with a current-thread runtime accepting from the same listening socket.
pub fn spawn(mgr: Arc<Manager>, listener: tokio::net::TcpListener) -> Result<(), GatewayError> {
    let public = mgr.config().public.clone().unwrap_or(PublicUrls { domain: DEFAULT_DOMAIN.into(), port: 0 });
    let gw = Arc::new(Gateway {
        dialer: mgr.dialer(),
        mgr,
        domain: public.domain,
        port: public.port,
        watched: Mutex::new(HashSet::new()),
    });
    let listener = listener.into_std().map_err(GatewayError::Workers)?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    for i in 0..workers {
        let l = listener.try_clone().map_err(GatewayError::Workers)?;
        let gw = gw.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(GatewayError::Workers)?;
        std::thread::Builder::new()
            .name(format!("beam-gw-{i}"))
            .spawn(move || {
                if let Err(e) = dial::own_thread() {
                    tracing::warn!("gateway worker {i}: {e}; its dials go through the shared dialer thread");
                }
                rt.block_on(async move {
                    let l = match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => l,
                        Err(e) => return tracing::error!("gateway worker {i}: {e}"),
                    };
                    accept_loop(gw, l).await
                })
            })
            .map_err(GatewayError::Workers)?;
    }
    Ok(())
}

async fn accept_loop(gw: Arc<Gateway>, listener: tokio::net::TcpListener) {
    loop {
        match listener.accept().await {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                // A client that vanished without closing must not keep its sandbox warm forever.
                keepalive(&s);
                tokio::spawn(serve_conn(gw.clone(), s, peer));
            }
            Err(e) => {
                tracing::warn!("gateway accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// TCP keepalive probes after a minute of silence.
fn keepalive(s: &tokio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    for (level, opt, v) in [(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1), (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 60)] {
        let v: libc::c_int = v;
        // SAFETY: setsockopt on a live fd with a c_int value we own and its size.
        unsafe {
            libc::setsockopt(s.as_raw_fd(), level, opt, (&v as *const libc::c_int).cast(), size_of::<libc::c_int>() as libc::socklen_t)
        };
    }
}

async fn serve_conn(gw: Arc<Gateway>, s: tokio::net::TcpStream, peer: SocketAddr) {
    let conn = Arc::new(proxy::Conn::new(gw, peer));
    let svc = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, std::convert::Infallible>(proxy::handle(conn, req).await) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(s), svc)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(%peer, "gateway connection: {e}");
    }
}
