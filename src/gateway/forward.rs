//! Raw TCP forwards (`publish`): beamd listens on a host address and splices each connection to a port
//! inside the sandbox, dialled in the sandbox's network namespace like the gateway's upstreams — so any TCP
//! protocol (a database, ssh, a game server) is reachable, for bridge and loopback-only sandboxes alike.
//! The listener is bound before anything else is made (a taken port fails the request, nothing left
//! behind), lives until the sandbox exits, and is bound again when a restarted beamd re-adopts the sandbox.
//! Open connections count as activity for keep-warm.

use super::dial::{Dial, Dialer, NetnsDialer};
use crate::api::Publish;
use crate::sandbox::manager::{Entry, SandboxError};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

static DIALER: LazyLock<NetnsDialer> = LazyLock::new(NetnsDialer::new);

/// Bind the host side of `p` (validated): a 400 for a bad port or address, a 409 for one in use.
pub fn bind(p: &Publish) -> Result<std::net::TcpListener, SandboxError> {
    if p.port == 0 || p.host_port == 0 {
        return Err(SandboxError::BadRequest(format!(
            "publish {}:{}: ports are 1-65535 on both sides",
            p.host_port, p.port
        )));
    }
    let ip: IpAddr = p.host_ip.parse().map_err(|_| {
        SandboxError::BadRequest(format!(
            "publish host_ip {:?} is not an IP address; use e.g. 127.0.0.1 (the default) or 0.0.0.0",
            p.host_ip
        ))
    })?;
    let addr = SocketAddr::new(ip, p.host_port);
    let l = std::net::TcpListener::bind(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => SandboxError::Conflict(format!(
            "host port {addr} is already in use; publish another host_port"
        )),
        std::io::ErrorKind::AddrNotAvailable => SandboxError::BadRequest(format!(
            "host address {ip} is not an address of this host; use 127.0.0.1 or 0.0.0.0"
        )),
        _ => SandboxError::Internal(format!("listening on {addr}: {e}")),
    })?;
    l.set_nonblocking(true).map_err(|e| SandboxError::Internal(format!("listening on {addr}: {e}")))?;
    Ok(l)
}

/// Serve a bound forward to `port` of sandbox `e` until it exits (on the calling tokio runtime).
pub fn serve(e: Arc<Entry>, l: std::net::TcpListener, port: u16) {
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
                        tokio::spawn(splice(e.clone(), s, peer, port));
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

async fn splice(e: Arc<Entry>, mut down: tokio::net::TcpStream, peer: SocketAddr, port: u16) {
    let _warm = e.active();
    let Some((pid, pid_start)) = e.with_record(|r| r.sandbox.pid.map(|p| (p, r.pid_start))) else { return };
    let d = Dial { id: e.id.clone(), pid, pid_start, port };
    let mut up = match DIALER.dial(&d).await {
        Ok(s) => s,
        Err(err) => return tracing::debug!(sandbox = %e.id, %peer, "forward to port {port}: {err}"),
    };
    let _ = down.set_nodelay(true);
    if let Err(err) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!(sandbox = %e.id, %peer, "forward to port {port}: {err}");
    }
}
