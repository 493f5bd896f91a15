//! Thin wrappers over the few syscalls that nix does not cover (clone3, close_range, pidfd_open).
//!
//! Everything here is async-signal-safe: no allocation, no locks.

use nix::errno::Errno;
use std::os::fd::RawFd;

/// clone3 flag: start the child in the cgroup given by `clone_args.cgroup` (kernel ≥ 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of clone3(2) (kernel ≥ 5.7 for the `cgroup` field).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// The result of [`clone`].
pub enum CloneResult {
    /// In the parent: the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// fork-like clone3(2): the child continues on a copy of the caller's stack, with `flags` (CLONE_NEW*)
/// and, when `cgroup_fd` is given, born directly inside that cgroup v2 directory (CLONE_INTO_CGROUP),
/// which saves the parent a write to cgroup.procs and leaves no window outside the cgroup.
///
/// Falls back to clone(2) when clone3 is unavailable and no cgroup fd is needed.
///
/// # Safety
/// Like fork(2): in a multi-threaded caller the child may only do async-signal-safe work. The child
/// must not return into code that assumes libc's per-thread cache (e.g. raise(3)) is valid.
pub unsafe fn clone(flags: u64, cgroup_fd: Option<RawFd>) -> Result<CloneResult, Errno> {
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: args is a valid, fully initialised clone_args of the size we pass; stack = 0 gives
    // fork semantics (the child runs on a copy-on-write copy of our stack), which the caller accepts.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let ret = if ret < 0 && Errno::last() == Errno::ENOSYS && cgroup_fd.is_none() {
        // SAFETY: legacy clone with a NULL stack is fork with namespace flags; same contract as above.
        unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags | libc::SIGCHLD as u64,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        }
    } else {
        ret
    };
    match ret {
        r if r < 0 => Err(Errno::last()),
        0 => Ok(CloneResult::Child),
        pid => Ok(CloneResult::Parent(pid as i32)),
    }
}

/// Mark every fd from `first` upward close-on-exec, so that only stdio and preserved fds reach
/// the container's process (CVE-2024-21626 class). Falls back to a loop over /proc-free fd numbers.
pub fn cloexec_from(first: RawFd) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags; no memory is touched.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret < 0 {
        // Older kernels: set FD_CLOEXEC one by one up to the fd limit.
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into our stack struct.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
        let max = rl.rlim_cur.min(65536) as RawFd;
        for fd in first..max {
            // SAFETY: fcntl on an fd number that may or may not be open; EBADF is ignored.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// pidfd_open(2): a pollable fd that becomes readable when `pid` exits.
pub fn pidfd_open(pid: i32) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just gave us this fd and nobody else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Write `a` then `b` to fd 2 without allocating (for the child's last-resort errors).
pub fn write_stderr(parts: &[&[u8]]) {
    for p in parts {
        // SAFETY: writing a valid byte slice to fd 2.
        unsafe { libc::write(2, p.as_ptr().cast(), p.len()) };
    }
}

/// A fixed-size, stack-allocated string buffer implementing `fmt::Write`, for building messages
/// and paths in the child without touching the allocator. Output past the capacity is truncated.
pub struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for StackBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> StackBuf<N> {
    pub const fn new() -> Self {
        Self { buf: [0; N], len: 0 }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    pub fn clear(&mut self) {
        self.len = 0;
    }
    pub fn push(&mut self, b: &[u8]) {
        let n = b.len().min(N.saturating_sub(1) - self.len.min(N - 1));
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
    }
    /// The contents as a NUL-terminated C string (the last byte is reserved for the NUL).
    pub fn as_cstr(&mut self) -> &std::ffi::CStr {
        self.buf[self.len] = 0;
        // SAFETY: we just wrote a NUL at len; callers never push interior NULs from C strings.
        unsafe { std::ffi::CStr::from_bytes_with_nul_unchecked(&self.buf[..=self.len]) }
    }
}

impl<const N: usize> std::fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

// Credential changes as raw syscalls. glibc's wrappers broadcast the change to every thread the
// process had (its "setxid" protocol), and a clone child of a multi-threaded parent (beamd) carries a
// stale copy of that thread list: the raw calls change exactly this thread, which is all there is.

/// Raw setresuid(2).
///
/// # Safety
/// Only changes the calling thread's credentials; the caller must be single-threaded (a clone child).
pub unsafe fn setresuid(r: libc::uid_t, e: libc::uid_t, s: libc::uid_t) -> libc::c_int {
    // SAFETY: integer arguments only.
    unsafe { libc::syscall(libc::SYS_setresuid, r, e, s) as libc::c_int }
}

/// Raw setresgid(2). Same contract as [`setresuid`].
///
/// # Safety
/// See [`setresuid`].
pub unsafe fn setresgid(r: libc::gid_t, e: libc::gid_t, s: libc::gid_t) -> libc::c_int {
    // SAFETY: integer arguments only.
    unsafe { libc::syscall(libc::SYS_setresgid, r, e, s) as libc::c_int }
}

/// Raw setgroups(2). Same contract as [`setresuid`].
///
/// # Safety
/// `list` must point to `n` gids (or be null with `n == 0`).
pub unsafe fn setgroups(n: usize, list: *const libc::gid_t) -> libc::c_int {
    // SAFETY: the caller passes a valid list of n gids.
    unsafe { libc::syscall(libc::SYS_setgroups, n, list) as libc::c_int }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn stackbuf_truncates_and_terminates() {
        let mut b = StackBuf::<8>::new();
        write!(b, "{}-{}", 1234, 5678).unwrap();
        assert_eq!(b.as_bytes(), b"1234-56");
        assert_eq!(b.as_cstr().to_bytes(), b"1234-56");
    }
}
