//! Network namespaces for tests: made and held as fds only (no named netns, no processes), so they vanish
//! with everything in them when a test ends, even when it fails; helpers to run commands and threads in
//! them; a TCP responder; and [`Internet`]: a "host" namespace linked to an "internet" namespace
//! (198.51.100.1/24, plus 203.0.113.1 behind it) whose responder on port 80 answers each connection with the
//! peer's address (so a test sees whether it was NATed).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const HOST_UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const FAR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// How long a connection that should be dropped gets before it counts as blocked.
pub const BLOCKED_AFTER: Duration = Duration::from_millis(1200);

/// A new, empty network namespace, held by an fd only: a short-lived thread unshares and opens it.
pub fn new_netns() -> OwnedFd {
    std::thread::spawn(|| {
        // SAFETY: unshare(CLONE_NEWNET) affects only this short-lived thread.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare: {}", std::io::Error::last_os_error());
        OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").expect("open thread-self ns"))
    })
    .join()
    .expect("netns thread")
}

pub fn dup(fd: BorrowedFd<'_>) -> OwnedFd {
    fd.try_clone_to_owned().expect("dup")
}

/// A path to a namespace fd that other processes (`ip … netns PATH`) can open.
pub fn ns_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd())
}

/// Run a command inside namespace `ns` (None: the test's own, the real host's); its stdout. Panics on failure.
pub fn run_in(ns: Option<BorrowedFd<'_>>, args: &[&str]) -> String {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    if let Some(ns) = ns {
        let raw = ns.as_raw_fd();
        // SAFETY: only setns (async-signal-safe) between fork and exec; the fd stays open until exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn ip(ns: BorrowedFd<'_>, args: &str) -> String {
    let mut v = vec!["ip"];
    v.extend(args.split_whitespace());
    run_in(Some(ns), &v)
}

/// Run `f` on a thread inside namespace `ns`.
pub fn on_thread_in<T: Send + 'static>(ns: BorrowedFd<'_>, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let raw: RawFd = ns.as_raw_fd();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        // SAFETY: setns on this thread only; the caller's fd is live until we signal below.
        let rc = unsafe { libc::setns(raw, libc::CLONE_NEWNET) };
        let _ = tx.send(rc);
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    });
    rx.recv().expect("thread started");
    t
}

/// A TCP server in a namespace that answers every connection with the peer's address; stopped on drop.
pub struct Responder {
    fd: RawFd,
    thread: Option<JoinHandle<()>>,
}

pub fn responder(ns: BorrowedFd<'_>, port: u16) -> Responder {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = on_thread_in(ns, move || {
        let l = TcpListener::bind(("0.0.0.0", port)).expect("bind responder");
        tx.send(l.as_raw_fd()).unwrap();
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let peer = s.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
            let _ = s.write_all(peer.as_bytes());
        }
    });
    Responder { fd: rx.recv().expect("responder listening"), thread: Some(thread) }
}

impl Drop for Responder {
    fn drop(&mut self) {
        // SAFETY: shutting down our own listening socket wakes its accept() with an error; the thread then
        // drops (closes) it.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One TCP exchange from inside `ns`: what the server said.
pub fn fetch(ns: BorrowedFd<'_>, to: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    on_thread_in(ns, move || {
        let mut s = TcpStream::connect_timeout(&to, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .join()
    .expect("fetch thread")
}

/// Fetch, retrying until a deadline (links and neighbours come up asynchronously).
pub fn fetch_ok(ns: BorrowedFd<'_>, to: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fetch(ns, to, Duration::from_millis(500)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("connecting to {to}: {e}"),
            Err(_) => {}
        }
    }
}

pub fn assert_blocked(ns: BorrowedFd<'_>, to: SocketAddr) {
    if let Ok(s) = fetch(ns, to, BLOCKED_AFTER) {
        panic!("{to} answered {s:?}, it should be blocked");
    }
}

/// Whether a UDP datagram sent (repeatedly) from inside `from` arrives at `to` inside `to_ns` within `wait`.
pub fn udp_reaches(from: BorrowedFd<'_>, to_ns: BorrowedFd<'_>, to: SocketAddr, wait: Duration) -> bool {
    let got = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let flag = got.clone();
    let rx = on_thread_in(to_ns, move || {
        let s = UdpSocket::bind(("0.0.0.0", to.port())).expect("bind udp");
        s.set_read_timeout(Some(wait)).unwrap();
        ready_tx.send(()).unwrap();
        let ok = s.recv(&mut [0u8; 16]).is_ok();
        flag.store(ok, std::sync::atomic::Ordering::SeqCst);
        ok
    });
    ready_rx.recv().expect("udp receiver ready");
    let flag = got.clone();
    let tx = on_thread_in(from, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind udp sender");
        let end = Instant::now() + wait;
        while Instant::now() < end && !flag.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = s.send_to(b"probe", to);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let ok = rx.join().expect("udp receiver");
    tx.join().expect("udp sender");
    ok
}

pub fn at(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}


/// A host namespace linked to an internet namespace, and a responder on port 80 in the internet. Everything
/// goes when it drops.
pub struct Internet {
    pub host: OwnedFd,
    pub inet: OwnedFd,
    _web: Responder,
}

impl Internet {
    pub fn new() -> Internet {
        let host = new_netns();
        let inet = new_netns();
        let h = host.as_fd();
        let i = inet.as_fd();
        ip(h, &format!("link add up0 type veth peer name dn0 netns {}", ns_path(i)));
        ip(h, &format!("addr add {HOST_UPLINK}/24 dev up0"));
        ip(h, "link set up0 up");
        ip(h, "link set lo up");
        ip(h, &format!("route add default via {INTERNET}"));
        ip(i, &format!("addr add {INTERNET}/24 dev dn0"));
        ip(i, &format!("addr add {FAR}/32 dev lo"));
        ip(i, "link set dn0 up");
        ip(i, "link set lo up");
        let web = responder(i, 80);
        Internet { host, inet, _web: web }
    }

    pub fn h(&self) -> BorrowedFd<'_> {
        self.host.as_fd()
    }
}
