//! A sandbox's ports: the gateway URLs they get, exposing one more on a running sandbox, and raw TCP
//! forwards (`publish`).
//!
//! A forward is beamd listening on a host address and splicing each connection to a port inside the
//! sandbox, dialled in the sandbox's network namespace like the gateway's upstreams
//! ([`crate::netns::dial`]) — so any TCP protocol (a database, ssh, a game server) is reachable, for
//! bridge and loopback-only sandboxes alike. The listener is bound before anything else is made (a taken
//! port fails the request, nothing left behind), lives until the sandbox exits, and is bound again when
//! a restarted beamd re-adopts the sandbox. Open connections count as activity for keep-warm.

use super::entry::Entry;
use super::error::{Result, SandboxError};
use super::manager::Manager;
use crate::api::{ExposePort, Publish, Sandbox};
use crate::netns::dial::{Dial, Dialer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the gateway's public URLs are made of (`http://<id>-<port>.<domain>[:<port>]/`): part of the
/// manager's config, known once the gateway's listener is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrls {
    pub domain: String,
    /// The port the gateway listens on (80: none in the URL).
    pub port: u16,
}

impl PublicUrls {
    /// The gateway URL of each port of a sandbox.
    pub fn urls(&self, id: &str, ports: &[u16]) -> BTreeMap<String, String> {
        let host_port = if self.port == 80 { String::new() } else { format!(":{}", self.port) };
        ports.iter().map(|port| (port.to_string(), format!("http://{id}-{port}.{}{host_port}/", self.domain))).collect()
    }
}

/// A request's TCP port: 1-65535.
fn tcp_port(field: &'static str, v: i64) -> Result<u16> {
    u16::try_from(v)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| SandboxError::invalid(field, format!("{field} {v} is not a TCP port; use 1-65535")))
}

/// `POST /v1/sandboxes/{ref}/ports`: expose one more port of a running sandbox through the gateway and,
/// with `host_port`, forward it as raw TCP from that host port too.
pub fn expose(mgr: &Manager, e: &Arc<Entry>, req: &ExposePort) -> Result<Sandbox> {
    let port = tcp_port("port", req.port)?;
    let publish = match req.host_port {
        None => None,
        Some(h) => {
            let host_port = tcp_port("host_port", h)?;
            let p = Publish {
                port,
                host_port,
                host_ip: req.host_ip.unwrap_or(crate::api::DEFAULT_HOST_IP),
            };
            Some((bind(&p)?, p))
        }
    };
    e.touch();
    mgr.update_record(e, |r| {
        if !r.sandbox.ports.contains(&port) {
            r.sandbox.ports.push(port);
        }
        if let Some((_, p)) = &publish {
            r.sandbox.published.push(p.clone());
        }
    });
    if let Some((l, p)) = publish {
        serve(mgr.dialer(), e.clone(), l, p.port);
    }
    Ok(mgr.view(e))
}

/// Bind the host side of `p` (validated): an `Invalid` for a bad port or address, a `Conflict` for one
/// in use.
pub fn bind(p: &Publish) -> Result<std::net::TcpListener> {
    if p.port == 0 || p.host_port == 0 {
        return Err(SandboxError::invalid(
            "publish",
            format!("publish {}:{}: ports are 1-65535 on both sides", p.host_port, p.port),
        ));
    }
    let ip = p.host_ip;
    let addr = SocketAddr::new(ip, p.host_port);
    let l = std::net::TcpListener::bind(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            SandboxError::Conflict(format!("host port {addr} is already in use; publish another host_port"))
        }
        std::io::ErrorKind::AddrNotAvailable => SandboxError::invalid(
            "host_ip",
            format!("host address {ip} is not an address of this host; use 127.0.0.1 or 0.0.0.0"),
        ),
        _ => SandboxError::io(format!("listening on {addr}"))(e),
    })?;
    l.set_nonblocking(true).map_err(SandboxError::io(format!("listening on {addr}")))?;
    Ok(l)
}

/// Serve a bound forward to `port` of sandbox `e` until it exits (on the calling tokio runtime).
pub fn serve(dialer: Arc<dyn Dialer>, e: Arc<Entry>, l: std::net::TcpListener, port: u16) {
    tokio::spawn(async move {
        let l = match tokio::net::TcpListener::from_std(l) {
            Ok(l) => l,
            Err(err) => return tracing::error!(sandbox = %e.id, "forward to port {port}: {err}"),
        };
        let exited = e.exited();
        tokio::pin!(exited);
        loop {
            tokio::select! {
                _ = &mut exited => break,
                r = l.accept() => match r {
                    Ok((s, peer)) => {
                        tokio::spawn(splice(dialer.clone(), e.clone(), s, peer, port));
                    }
                    Err(err) => {
                        tracing::warn!(sandbox = %e.id, "forward to port {port}: accept: {err}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
    });
}

async fn splice(dialer: Arc<dyn Dialer>, e: Arc<Entry>, mut down: tokio::net::TcpStream, peer: SocketAddr, port: u16) {
    let _warm = e.active();
    let Some((pid, pid_start)) = e.with_record(|r| r.sandbox.pid.map(|p| (p, r.pid_start))) else { return };
    let d = Dial { id: e.id.clone(), pid, pid_start, port };
    let mut up = match dialer.dial(&d).await {
        Ok(s) => s,
        Err(err) => return tracing::debug!(sandbox = %e.id, %peer, "forward to port {port}: {err}"),
    };
    let _ = down.set_nodelay(true);
    if let Err(err) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!(sandbox = %e.id, %peer, "forward to port {port}: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_config() {
        let p = PublicUrls { domain: "localhost".into(), port: 8790 };
        let u = p.urls("sbx-a", &[8080, 22]);
        assert_eq!(u["8080"], "http://sbx-a-8080.localhost:8790/");
        assert_eq!(u["22"], "http://sbx-a-22.localhost:8790/");
        let p = PublicUrls { domain: "sandboxes.example.com".into(), port: 80 };
        assert_eq!(p.urls("web", &[80])["80"], "http://web-80.sandboxes.example.com/");
    }

    #[test]
    fn bad_publish_is_the_callers() {
        let p = |port, host_port, host_ip: &str| Publish { port, host_port, host_ip: host_ip.parse().unwrap() };
        for bad in [p(0, 1, "127.0.0.1"), p(1, 0, "127.0.0.1")] {
            assert_eq!(bind(&bad).unwrap_err().field(), Some("publish"));
        }
        // An address that is not the host's (TEST-NET-1) is the caller's too.
        assert_eq!(bind(&p(1, 1, "192.0.2.1")).unwrap_err().field(), Some("host_ip"));
        let e = serde_json::from_str::<Publish>(r#"{"port": 1, "host_port": 2, "host_ip": "nope"}"#).unwrap_err();
        assert!(e.to_string().contains("host_ip \"nope\" is not an IP address"), "{e}");
        let d: Publish = serde_json::from_str(r#"{"port": 1, "host_port": 2}"#).unwrap();
        assert_eq!(d.host_ip.to_string(), "127.0.0.1");
        for (body, want) in [(r#"{"port": 1}"#, None), (r#"{"port": 1, "host_ip": null}"#, None), (r#"{"port": 1, "host_ip": "::1"}"#, Some("::1"))] {
            let x: ExposePort = serde_json::from_str(body).unwrap();
            assert_eq!(x.host_ip.map(|i| i.to_string()).as_deref(), want, "{body}");
        }
        assert!(serde_json::from_str::<ExposePort>(r#"{"port": 1, "host_ip": "x"}"#).unwrap_err().to_string().contains("host_ip \"x\""));
        assert_eq!(tcp_port("port", 70000).unwrap_err().field(), Some("port"));
        assert_eq!(tcp_port("port", 443).unwrap(), 443);
    }
}
