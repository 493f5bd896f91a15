//! Opening a TCP connection to a port inside a sandbox.
//!
//! [`NetnsDialer`] creates the socket *in the sandbox's network namespace* — a socket belongs to the
//! namespace it was created in, and connect() uses that one: the thread joins the sandbox's namespace for
//! the socket() call and returns to beamd's right after (setns is per thread). The gateway's own worker
//! threads ([`own_thread`]) do that themselves; any other thread (a tokio worker of the API, which must
//! never change namespace) hands it to one long-lived thread.
//! The connect itself then runs on tokio, non-blocking, to 127.0.0.1:<port> inside the sandbox. The
//! namespace fd is cached per sandbox (checked against the init's pid and start time) and dropped when the
//! sandbox exits. Another way to reach sandboxes (e.g. over a veth) only needs another [`Dialer`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
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
    /// The socket-making thread ([`socket_maker`]), started on first use; None inside: it could not start.
    maker: OnceLock<Option<std::sync::mpsc::Sender<Job>>>,
}

impl Default for NetnsDialer {
    fn default() -> Self {
        Self::new()
    }
}

impl NetnsDialer {
    pub fn new() -> NetnsDialer {
        NetnsDialer { cache: Mutex::new(HashMap::new()), timeout: Duration::from_secs(10), maker: OnceLock::new() }
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

type Job = (Arc<OwnedFd>, tokio::sync::oneshot::Sender<io::Result<OwnedFd>>);

/// A plain non-blocking TCP socket, made in whatever network namespace the calling thread is in.
fn tcp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setns(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: setns on the calling thread only (CLONE_NEWNET is per thread); the fd is live.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One long-lived thread per dialer makes the sockets: setns into the sandbox's namespace, socket(),
/// setns back (≈3 µs), instead of a thread start per connection (≈45 µs, most of the gateway's dialing
/// cost). If it can't return to its own namespace it stops taking jobs, and callers fall back to a
/// thread each. It ends when its dialer is dropped (the channel closes).
fn socket_maker() -> Option<std::sync::mpsc::Sender<Job>> {
    let home = OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").ok()?);
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("beam-gw-netns".into())
        .spawn(move || {
            for (ns, reply) in rx {
                let made = setns(&ns).and_then(|()| tcp_socket());
                if let Err(e) = setns(&home) {
                    tracing::error!("gateway: cannot return to beamd's network namespace ({e}); dialing falls back to a thread per connection");
                    let _ = reply.send(Err(io::Error::other("gateway dialer stopped")));
                    return;
                }
                let _ = reply.send(made);
            }
        })
        .ok()?;
    Some(tx)
}

thread_local! {
    /// On a gateway worker thread (see [`own_thread`]): its home namespace, so that it makes sockets itself.
    static HOME: std::cell::RefCell<Option<OwnedFd>> = const { std::cell::RefCell::new(None) };
}

/// Let the calling thread make sandbox sockets itself — setns there, socket(), setns back, ≈3 µs with no
/// hand-off to another thread — for threads that run nothing but the gateway (their own current-thread
/// runtime): only a thread whose every socket is made through [`NetnsDialer`] may switch namespaces.
pub fn own_thread() -> io::Result<()> {
    let home = OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net")?);
    HOME.with(|h| *h.borrow_mut() = Some(home));
    Ok(())
}

/// On a thread set up by [`own_thread`]: the socket, made right here. None: not such a thread (or it could
/// not return home once, after which it hands sockets off like any other thread).
fn socket_here(ns: &OwnedFd) -> Option<io::Result<OwnedFd>> {
    HOME.with(|h| {
        let mut h = h.borrow_mut();
        let home = h.as_ref()?;
        let made = setns(ns).and_then(|()| tcp_socket());
        if let Err(e) = setns(home) {
            // This thread now sits in the sandbox's namespace: it must never make a socket itself again
            // (the fallback below makes them on a thread that is home).
            tracing::error!("gateway: a worker thread cannot return to beamd's network namespace ({e}); it hands dialing off from now on");
            *h = None;
            return None;
        }
        Some(made)
    })
}

/// A non-blocking TCP socket created in the network namespace `ns`.
async fn socket_in(maker: &OnceLock<Option<std::sync::mpsc::Sender<Job>>>, ns: Arc<OwnedFd>) -> io::Result<OwnedFd> {
    if let Some(made) = socket_here(&ns) {
        return made;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Some(maker) = maker.get_or_init(socket_maker).as_ref()
        && maker.send((ns.clone(), tx)).is_ok()
    {
        return rx.await.map_err(|_| io::Error::other("the namespace thread died"))?;
    }
    // Fallback: a thread of its own, which ends right after (so no thread stays in the sandbox's namespace).
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("beam-gw-netns1".into()).spawn(move || {
        let _ = tx.send(setns(&ns).and_then(|()| tcp_socket()));
    })?;
    rx.await.map_err(|_| io::Error::other("the namespace thread died"))?
}

impl Dialer for NetnsDialer {
    fn dial<'a>(&'a self, d: &'a Dial) -> DialFuture<'a> {
        Box::pin(async move {
            let ns = self.netns(d)?;
            let fd = socket_in(&self.maker, ns).await?;
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
