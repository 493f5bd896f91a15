//! A sandbox's network namespace. For now: loopback up, so that servers and clients inside a sandbox can
//! talk over 127.0.0.1 (a new network namespace starts with `lo` down, and the sandbox has no
//! CAP_NET_ADMIN to raise it). Per-sandbox veths, addresses and NAT arrive with the networking issue.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("sandbox network namespace (pid {pid}): {what}: {err}")]
    Sys { pid: i32, what: &'static str, err: std::io::Error },
}

/// Bring `lo` up in the network namespace of `pid`, from a short-lived thread of ours that joins it (a
/// thread's network namespace is its own; the thread ends right after).
pub fn loopback_up(pid: i32) -> Result<(), NetError> {
    let sys = |what: &'static str| move |err: std::io::Error| NetError::Sys { pid, what, err };
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(sys("opening its ns/net"))?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<(), NetError> {
            // SAFETY: setns on this thread only (CLONE_NEWNET is per thread); the fd is live.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(sys("setns")(std::io::Error::last_os_error()));
            }
            // SAFETY: a datagram socket just for the interface ioctls; owned below.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(sys("socket")(std::io::Error::last_os_error()));
            }
            // SAFETY: fd was just created and is owned by nobody else.
            let sock = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: ifreq is plain data; all-zero is valid.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
                *d = *s as libc::c_char;
            }
            // SAFETY: SIOCGIFFLAGS fills ifru_flags of the ifreq we own.
            if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
                return Err(sys("SIOCGIFFLAGS lo")(std::io::Error::last_os_error()));
            }
            // SAFETY: reading and writing the flags member of the union SIOCGIFFLAGS just filled.
            unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
            // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
            if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
                return Err(sys("SIOCSIFFLAGS lo up")(std::io::Error::last_os_error()));
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(sys("thread")(std::io::Error::other("panicked"))))
    })
}
