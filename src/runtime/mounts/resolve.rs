//! Resolving (and creating) paths inside the container root without ever leaving it.
//!
//! Every lookup is `openat2(root, path, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: absolute symlinks
//! and `..` are resolved as if `root` were `/`, so a symlink `etc/evil -> /tmp/x` in an image points at
//! `<rootfs>/tmp/x`, never at the host's `/tmp/x`. Missing components are created one at a time with
//! `mkdirat`/`openat(O_CREAT|O_EXCL)` relative to the already-resolved parent descriptor; a dangling symlink
//! on the way is followed by splicing its target into the path (like `securejoin.MkdirAll`) and resolving
//! again from the root. No allocation: paths live in stack buffers (about 8 KiB of stack in all).

use super::sys::{self, Fd, Sys};
use nix::errno::Errno;
use std::ffi::CStr;
use std::os::fd::RawFd;

pub(super) const PATH_MAX: usize = 4096;
const NAME_MAX: usize = 255;
const MAX_SYMLINK_HOPS: u32 = 40;
const RESOLVE: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// What to create when the last component is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leaf {
    /// A directory; an existing final symlink is followed (inside the root).
    Dir,
    /// An empty regular file (a bind target for a file source).
    File,
    /// A directory, but an existing final symlink is returned as itself (the caller rejects it):
    /// proc and sysfs must be mounted on a real directory.
    DirNoFollow,
}

/// A NUL-terminated path in a stack buffer.
pub(super) struct StackPath {
    buf: [u8; PATH_MAX],
    len: usize,
}

impl StackPath {
    pub fn new() -> Self {
        Self {
            buf: [0; PATH_MAX],
            len: 0,
        }
    }

    /// Replace the content with the concatenation of `parts`.
    pub fn set(&mut self, parts: &[&[u8]]) -> Sys<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total + 1 > PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut at = 0;
        for p in parts {
            self.buf[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        self.buf[at] = 0;
        self.len = at;
        Ok(())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn cstr(&self) -> Sys<&CStr> {
        CStr::from_bytes_with_nul(&self.buf[..=self.len]).map_err(|_| Errno::EINVAL)
    }
}

/// One NUL-terminated path component in a stack buffer.
pub(super) struct Name {
    buf: [u8; NAME_MAX + 1],
    len: usize,
}

impl Name {
    pub fn new(bytes: &[u8]) -> Sys<Self> {
        if bytes.is_empty() || bytes.len() > NAME_MAX || bytes.contains(&b'/') {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut buf = [0; NAME_MAX + 1];
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(Self {
            buf,
            len: bytes.len(),
        })
    }

    pub fn cstr(&self) -> Sys<&CStr> {
        CStr::from_bytes_with_nul(&self.buf[..=self.len]).map_err(|_| Errno::EINVAL)
    }
}

/// Open `path` (relative, may be empty for the root itself) inside `root` as an O_PATH descriptor.
pub(super) fn open_in_root(root: RawFd, path: &CStr, nofollow: bool) -> Sys<Fd> {
    let path = if path.is_empty() { c"." } else { path };
    let flags = libc::O_PATH | if nofollow { libc::O_NOFOLLOW } else { 0 };
    sys::openat2(root, path, flags, RESOLVE)
}

/// Open `rel` inside `root`, creating missing directories (and the leaf, per `leaf`) on the way.
pub(super) fn open_or_create(root: RawFd, rel: &[u8], leaf: Leaf) -> Sys<Fd> {
    let mut path = StackPath::new();
    path.set(&[rel])?;
    let mut scratch = StackPath::new();
    let nofollow_leaf = leaf == Leaf::DirNoFollow;
    let mut hops = 0;
    'restart: loop {
        match open_in_root(root, path.cstr()?, nofollow_leaf) {
            Err(Errno::ENOENT) => {}
            other => return other,
        }
        let mut parent = open_in_root(root, c"", false)?;
        let len = path.len;
        let mut i = 0;
        loop {
            let p = path.bytes();
            while i < len && p[i] == b'/' {
                i += 1;
            }
            if i == len {
                return Ok(parent);
            }
            let start = i;
            while i < len && p[i] != b'/' {
                i += 1;
            }
            let end = i;
            let last = p[end..].iter().all(|&c| c == b'/');
            let nofollow = last && nofollow_leaf;
            scratch.set(&[&p[..end]])?;
            match open_in_root(root, scratch.cstr()?, nofollow) {
                Ok(fd) => {
                    parent = fd;
                    continue;
                }
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
            let name = Name::new(&p[start..end])?;
            let made = if last && leaf == Leaf::File {
                let flags = libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY;
                sys::openat(parent.raw(), name.cstr()?, flags, 0o644).map(drop)
            } else {
                sys::mkdirat(parent.raw(), name.cstr()?, 0o755)
            };
            match made {
                Ok(()) => {}
                Err(Errno::EEXIST) => {
                    // Lookup said ENOENT but the name exists: a dangling symlink. Follow it by splicing.
                    let mut target = [0u8; PATH_MAX];
                    match sys::readlinkat(parent.raw(), name.cstr()?, &mut target) {
                        Ok(n) => {
                            hops += 1;
                            if hops > MAX_SYMLINK_HOPS {
                                return Err(Errno::ELOOP);
                            }
                            let target = &target[..n];
                            let head: &[u8] = if target.first() == Some(&b'/') {
                                b""
                            } else {
                                &p[..start]
                            };
                            scratch.set(&[head, target, &p[end..]])?;
                            path.set(&[scratch.bytes()])?;
                            continue 'restart;
                        }
                        Err(Errno::EINVAL) => {} // not a symlink: created concurrently; just open it
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
            scratch.set(&[&path.bytes()[..end]])?;
            parent = open_in_root(root, scratch.cstr()?, nofollow)?;
        }
    }
}

/// Open (creating as needed) the parent directory of `rel` inside `root`; returns it and the last name.
pub(super) fn open_parent(root: RawFd, rel: &[u8]) -> Sys<(Fd, Name)> {
    let rel = trim_trailing_slashes(rel);
    match rel.iter().rposition(|&c| c == b'/') {
        Some(idx) => {
            let parent = open_or_create(root, &rel[..idx], Leaf::Dir)?;
            Ok((parent, Name::new(&rel[idx + 1..])?))
        }
        None => Ok((open_in_root(root, c"", false)?, Name::new(rel)?)),
    }
}

fn trim_trailing_slashes(mut p: &[u8]) -> &[u8] {
    while let [rest @ .., b'/'] = p {
        p = rest;
    }
    p
}
