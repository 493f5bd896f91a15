//! Typed parent ⇄ child messages over a SOCK_SEQPACKET socketpair (one message per packet).
//!
//! Both ends encode into caller-provided or stack buffers: the child side never allocates.
//! EOF on the socket means the other side is gone; it surfaces as `Errno::EPIPE`.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("socketpair for the container's sync channel: {0}")]
    Create(Errno),
}

/// The messages of the create/exec handshake, in the order they flow:
/// parent → `Go` (maps written, cgroup joined) → child [`Pid`] [`CreateRuntime` → parent `HooksDone`]
/// → child `Ready` → (create exits) … `Error` from the child at any point ends it.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    /// Child → parent: I have unshared a user namespace; write my uid/gid maps.
    UserNs,
    /// Parent → child: uid/gid maps are written and the cgroup joined; carry on.
    Go,
    /// Child → parent: the pid (in the parent's pid namespace) of the process that became the container's
    /// init, when the child had to fork once more (joined or unshared pid namespace, time namespace).
    Pid(i32),
    /// Child → parent: namespaces are set up; run the createRuntime/prestart hooks now.
    CreateRuntime,
    /// Parent → child: hooks done, carry on.
    HooksDone,
    /// Parent → child: the state JSON for the hooks that the child itself runs.
    State(&'a [u8]),
    /// Child → parent: everything is set up; the process waits for `start`.
    Ready,
    /// Child → parent: setup failed; the text says what and how to fix it.
    Error(&'a [u8]),
    /// Parent → child: start now (`run`, which still holds the channel, instead of start.sock).
    Start,
    /// Parent → child: the (v1) cgroup.procs writes are done (sent after `Go` when the child was told
    /// to overlap its mounts with them: `InitPlan::late_cgroup`).
    CgroupJoined,
}

const GO: u8 = 1;
const PID: u8 = 2;
const CREATE_RUNTIME: u8 = 3;
const HOOKS_DONE: u8 = 4;
const STATE: u8 = 5;
const READY: u8 = 6;
const ERROR: u8 = 7;
const USER_NS: u8 = 8;
const START: u8 = 9;
const CGROUP_JOINED: u8 = 10;

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// A connected pair: (parent end, child end). Both are close-on-exec.
pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair writes two fds into our array.
    let r = unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
    };
    if r < 0 {
        return Err(ChannelError::Create(Errno::last()));
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// The same end, moved to an fd number ≥ `min` (close-on-exec) when it is below it.
    pub fn at_least(self, min: RawFd) -> Result<Channel, ChannelError> {
        if self.fd.as_raw_fd() >= min {
            return Ok(self);
        }
        // SAFETY: F_DUPFD_CLOEXEC duplicates our own live fd; the result is owned by the new Channel.
        let fd = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
        if fd < 0 {
            return Err(ChannelError::Create(Errno::last()));
        }
        // SAFETY: fd was just created and is owned by nobody else.
        Ok(Channel { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Send one message. Async-signal-safe.
    pub fn send(&self, msg: &Msg<'_>) -> Result<(), Errno> {
        let mut head = [0u8; 5];
        let (head_len, payload): (usize, &[u8]) = match msg {
            Msg::Go | Msg::UserNs | Msg::Start | Msg::CgroupJoined => (1, &[]),
            Msg::Pid(p) => {
                head[1..5].copy_from_slice(&p.to_le_bytes());
                (5, &[])
            }
            Msg::CreateRuntime => (1, &[]),
            Msg::HooksDone => (1, &[]),
            Msg::State(s) => (1, s),
            Msg::Ready => (1, &[]),
            Msg::Error(e) => (1, e),
        };
        head[0] = match msg {
            Msg::Go => GO,
            Msg::UserNs => USER_NS,
            Msg::Start => START,
            Msg::CgroupJoined => CGROUP_JOINED,
            Msg::Pid(_) => PID,
            Msg::CreateRuntime => CREATE_RUNTIME,
            Msg::HooksDone => HOOKS_DONE,
            Msg::State(_) => STATE,
            Msg::Ready => READY,
            Msg::Error(_) => ERROR,
        };
        let iov = [
            libc::iovec { iov_base: head.as_ptr() as *mut _, iov_len: head_len },
            libc::iovec { iov_base: payload.as_ptr() as *mut _, iov_len: payload.len() },
        ];
        loop {
            // SAFETY: iov points at two live buffers of the given lengths.
            let r = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
            if r >= 0 {
                return Ok(());
            }
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        }
    }

    /// Receive one message into `buf` (its payload borrows `buf`). EOF → `EPIPE`. Async-signal-safe.
    pub fn recv<'b>(&self, buf: &'b mut [u8]) -> Result<Msg<'b>, Errno> {
        let n = loop {
            // SAFETY: reading into a live mutable buffer of its own length.
            let r = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r >= 0 {
                break r as usize;
            }
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        };
        if n == 0 {
            return Err(Errno::EPIPE);
        }
        let buf = &buf[..n];
        Ok(match buf[0] {
            GO => Msg::Go,
            USER_NS => Msg::UserNs,
            START => Msg::Start,
            CGROUP_JOINED => Msg::CgroupJoined,
            PID if n == 5 => Msg::Pid(i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]])),
            CREATE_RUNTIME => Msg::CreateRuntime,
            HOOKS_DONE => Msg::HooksDone,
            STATE => Msg::State(&buf[1..]),
            READY => Msg::Ready,
            ERROR => Msg::Error(&buf[1..]),
            _ => return Err(Errno::EBADMSG),
        })
    }

    /// Wait for exactly `want` (by kind); an `Error` or anything else is returned as Err(EPROTO).
    pub fn expect(&self, want: &Msg<'_>) -> Result<(), Errno> {
        let mut buf = [0u8; 64];
        let got = self.recv(&mut buf)?;
        if std::mem::discriminant(&got) == std::mem::discriminant(want) { Ok(()) } else { Err(Errno::EPROTO) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_message() {
        let (a, b) = pair().unwrap();
        let msgs = [
            Msg::UserNs,
            Msg::Go,
            Msg::Pid(4242),
            Msg::CreateRuntime,
            Msg::HooksDone,
            Msg::State(b"{\"id\":\"x\"}"),
            Msg::Ready,
            Msg::Error(b"mount /proc: EPERM"),
            Msg::Start,
            Msg::CgroupJoined,
        ];
        let mut buf = [0u8; 128];
        for m in &msgs {
            a.send(m).unwrap();
            assert_eq!(&b.recv(&mut buf).unwrap(), m);
        }
        drop(a);
        assert_eq!(b.recv(&mut buf), Err(Errno::EPIPE));
    }
}
