//! The few file system calls unpacking needs beyond nix: openat2 confined to the layer directory, and
//! extended attributes.

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `bytes` as a path argument for the *at calls.
pub(super) fn p(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: `path` must stay inside
/// `dir` and may not pass through any symlink (ELOOP) — a symlink planted by an earlier entry can never
/// redirect a write. Retries the kernel's EAGAIN (a concurrent rename) and EINTR.
pub(super) fn open_beneath(dir: BorrowedFd<'_>, path: &[u8], flags: OFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    loop {
        match openat2(dir, p(path), how) {
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// Set an extended attribute on an open (not O_PATH) descriptor.
pub(super) fn fsetxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> Result<(), Errno> {
    // SAFETY: `name` is NUL-terminated, `value` is valid for `value.len()` bytes; the kernel only reads both.
    let r = unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    Errno::result(r).map(drop)
}

/// Set an extended attribute on `leaf` inside `dir` without following `leaf` if it is a symlink: lsetxattr
/// on `/proc/self/fd/<dir>/<leaf>` (the proc link resolves to `dir` itself; `leaf` is one component).
pub(super) fn lsetxattr_at(dir: BorrowedFd<'_>, leaf: &[u8], name: &CStr, value: &[u8]) -> Result<(), Errno> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(leaf);
    let path = CString::new(path).map_err(|_| Errno::EINVAL)?;
    // SAFETY: both strings are NUL-terminated, `value` is valid for `value.len()` bytes; the kernel only
    // reads them.
    let r = unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    Errno::result(r).map(drop)
}
