//! Opening a TCP connection to a port inside a sandbox.
//!
//! [`NetnsDialer`] creates the socket *in the sandbox's network namespace* — a socket belongs to the
//! namespace it was created in, and connect() uses that one — from a short-lived thread that joins the
//! namespace (setns is per thread; the thread ends right after, so no tokio worker ever changes namespace).
//! The connect itself then runs on tokio, non-blocking, to 127.0.0.1:<port> inside the sandbox. The
//! namespace fd is cached per sandbox (checked against the init's pid and start time) and dropped when the
//! sandbox exits. Another way to reach sandboxes (e.g. over a veth) only needs another [`Dialer`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

/// What to connect to.
#[derive(Debug, Clone)]
pub struct Dial {
    pub id: String,
    /// Host pid of the sandbox's init, and its start time (to tell it from a recycled pid).
    pub pid: i32,
    pub pid_start: Option<u64>,
    pub port: u16,
}

pub type DialFuture<'a> = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send + 'a>>;

pub trait Dialer: Send + Sync {
    /// A connected stream to the sandbox's port. `ConnectionRefused`: nothing listens there;
    /// `TimedOut`: no answer; `NotFound`: the sandbox is gone.
    fn dial<'a>(&'a self, d: &'a Dial) -> DialFuture<'a>;
    /// The sandbox exited: drop whatever is cached for it.
    fn forget(&self, _id: &str) {}
}

/// Connects from inside the sandbox's network namespace.
pub struct NetnsDialer {
    cache: Mutex<HashMap<String, (i32, Arc<OwnedFd>)>>,
    timeout: Duration,
}

impl Default for NetnsDialer {
    fn default() -> Self {
        Self::new()
    }
}

impl NetnsDialer {
    pub fn new() -> NetnsDialer {
        NetnsDialer { cache: Mutex::new(HashMap::new()), timeout: Duration::from_secs(10) }
    }

    /// The sandbox's network namespace fd (cached).
    fn netns(&self, d: &Dial) -> io::Result<Arc<OwnedFd>> {
        if let Some((pid, fd)) = self.cache.lock().expect("netns cache").get(&d.id)
            && *pid == d.pid
        {
            return Ok(fd.clone());
        }
        let fd = Arc::new(OwnedFd::from(std::fs::File::open(format!("/proc/{}/ns/net", d.pid))?));
        // Opened first, checked after: if the pid still has the init's start time, the fd is its namespace.
        if let Some(start) = d.pid_start
            && crate::runtime::state::pid_start_time(d.pid) != Some(start)
        {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("sandbox {} is gone (pid {})", d.id, d.pid)));
        }
        self.cache.lock().expect("netns cache").insert(d.id.clone(), (d.pid, fd.clone()));
        Ok(fd)
    }
}

/// A non-blocking TCP socket created in the network namespace `ns`.
async fn socket_in(ns: Arc<OwnedFd>) -> io::Result<OwnedFd> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("beam-gw-netns".into()).spawn(move || {
        let made = (|| {
            // SAFETY: setns on this thread only (CLONE_NEWNET is per thread); the fd is live. The thread
            // ends right after.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: plain socket(2); the fd is owned below.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd was just created and is owned by nobody else.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })();
        let _ = tx.send(made);
    })?;
    rx.await.map_err(|_| io::Error::other("the namespace thread died"))?
}

impl Dialer for NetnsDialer {
    fn dial<'a>(&'a self, d: &'a Dial) -> DialFuture<'a> {
        Box::pin(async move {
            let ns = self.netns(d)?;
            let fd = socket_in(ns).await?;
            let sock = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, d.port));
            let s = tokio::time::timeout(self.timeout, sock.connect(addr))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {} s", self.timeout.as_secs())))??;
            let _ = s.set_nodelay(true);
            Ok(s)
        })
    }

    fn forget(&self, id: &str) {
        self.cache.lock().expect("netns cache").remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our own namespace: a listener here is reachable through the dialer (the thread joins the namespace
    /// it is already in). Needs no privileges.
    #[tokio::test]
    async fn dials_into_a_namespace() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let d = Dial { id: "self".into(), pid: std::process::id() as i32, pid_start: None, port };
        let dialer = NetnsDialer::new();
        let setns_allowed = nix::unistd::geteuid().is_root();
        match dialer.dial(&d).await {
            Ok(_) => assert!(dialer.cache.lock().unwrap().contains_key("self")),
            Err(e) => assert!(!setns_allowed, "{e}"),
        }
        drop(l);
        if setns_allowed {
            let e = dialer.dial(&d).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        }
        dialer.forget("self");
        assert!(dialer.cache.lock().unwrap().is_empty());
        let gone = Dial { id: "gone".into(), pid: i32::MAX, pid_start: None, port };
        assert_eq!(dialer.dial(&gone).await.unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
