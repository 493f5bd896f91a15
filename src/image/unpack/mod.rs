//! Layer unpacking: a layer tar (after [`decompress`]) into an empty directory, the layer's root, as an
//! overlayfs lowerdir.
//!
//! The `tar` crate only parses; every file is created here, relative to an fd of its parent directory,
//! so nothing can escape `dest`:
//! - entry paths are normalized (`./` stripped); absolute paths and `..` components are rejected;
//! - parent directories are opened with `openat2(dest, parent, O_PATH|O_DIRECTORY, RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`: a path through a symlink (say one planted by an earlier
//!   entry) is an error naming the entry, never a write elsewhere; missing parents are created (0755);
//! - the leaf is created with `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, `mkdirat`, `symlinkat`, `linkat` (the
//!   target resolved beneath `dest` the same way) or `mknodat`; an existing non-directory is replaced, as
//!   tar does (an existing empty directory too, when the entry is not a directory).
//!
//! Metadata: owner (`fchown`/`fchownat(AT_SYMLINK_NOFOLLOW)`), then mode including setuid/setgid/sticky
//! (after chown, which clears them), then xattrs (PAX `SCHILY.xattr.*`; `security.*` failures are skipped
//! with a debug log; `trusted.overlay.*` from the tar is ignored — only whiteouts may express those), then
//! mtimes (nanoseconds from PAX `mtime`). Directories get their mode and mtime at the end, since creating
//! children changes the mtime (and a read-only mode would stop a non-root unpack).
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.NAME` → a 0:0 character device `NAME`;
//! `.wh..wh..opq` in `D` → xattr `trusted.overlay.opaque=y` on `D`. Other `.wh..wh.*` (aufs metadata) are
//! skipped.
//!
//! Speed: one streaming pass, 1 MiB copy buffer, the parent directory fd cached between entries (layers
//! list a directory's files together), `fchown` skipped when the owner is already right. [`LayerStream`]
//! moves decompression and hashing onto a second thread.

mod fsops;
mod stream;
#[cfg(test)]
pub(crate) mod tests;

pub use stream::{Compression, LayerStream, compression_of, decompress};

use fsops::{fsetxattr, lsetxattr_at, open_beneath, p};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, futimens, makedev, mkdirat};
use nix::sys::stat::{fstatat, mknodat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};
use serde::Serialize;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the layer: {0}; the blob is corrupt or truncated — pull the image again")]
    Read(io::Error),
    #[error("{0}")]
    Unsupported(String),
    #[error("layer entry {entry:?}: {op}: {source}")]
    Entry { entry: String, op: &'static str, source: io::Error },
    #[error(
        "layer entry {entry:?} rejected: {reason}; the layer is malformed or malicious (nothing was written \
         outside the layer directory)"
    )]
    Unsafe { entry: String, reason: String },
    #[error("layer directory {path}: {source}; it must be an existing empty directory")]
    Dest { path: PathBuf, source: io::Error },
}

/// What [`unpack`] created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UnpackStats {
    /// Non-directory entries: regular files, links, devices, fifos, whiteouts.
    pub files: u64,
    pub dirs: u64,
    /// Bytes of regular file content.
    pub bytes: u64,
}

/// Unpack the (uncompressed) layer tar `tar` into `dest`, an existing empty directory. Stops at the tar's
/// end-of-archive marker; a caller hashing the stream drains the rest.
pub fn unpack(tar: impl Read, dest: &Path) -> Result<UnpackStats, UnpackError> {
    let root = nix::fcntl::open(dest, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| UnpackError::Dest { path: dest.to_path_buf(), source: e.into() })?;
    let mut u = Unpacker {
        dirs: Dirs { root, last: None },
        deferred: Vec::new(),
        buf: vec![0; 1 << 20],
        stats: UnpackStats::default(),
        ids: (Uid::effective().as_raw(), Gid::effective().as_raw()),
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        u.entry(&mut entry)?;
    }
    u.finish()?;
    Ok(u.stats)
}

/// Normalize an entry path into components: `.` and empty components dropped; absolute paths and `..`
/// rejected (the reason is returned). An empty result is the layer root.
fn components(path: &[u8]) -> Result<Vec<&[u8]>, String> {
    if path.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    let mut out = Vec::with_capacity(8);
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path contains `..`".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

/// Metadata of one entry.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

/// The layer root and the most recently used parent directory.
struct Dirs {
    root: OwnedFd,
    last: Option<(Vec<u8>, OwnedFd)>,
}

impl Dirs {
    /// An O_PATH fd of the directory `comps` (beneath the root, no symlinks), created if missing.
    fn get(&mut self, comps: &[&[u8]], entry: &str) -> Result<BorrowedFd<'_>, UnpackError> {
        if comps.is_empty() {
            return Ok(self.root.as_fd());
        }
        let key = join(comps);
        if self.last.as_ref().is_none_or(|(k, _)| *k != key) {
            let fd = match open_beneath(self.root.as_fd(), &key, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => self.create(comps, entry)?,
                Err(e) => return Err(beneath_error(entry, "opening its parent directory", e)),
            };
            self.last = Some((key, fd));
        }
        Ok(self.last.as_ref().expect("set above").1.as_fd())
    }

    /// Create the missing directories of `comps` (0755, owned by us), one component at a time.
    fn create(&self, comps: &[&[u8]], entry: &str) -> Result<OwnedFd, UnpackError> {
        let mut cur: Option<OwnedFd> = None;
        for c in comps {
            let dir = cur.as_ref().map_or(self.root.as_fd(), |f| f.as_fd());
            match mkdirat(dir, p(c), Mode::from_bits_truncate(0o755)) {
                Ok(()) => {
                    fchmodat(dir, p(c), Mode::from_bits_truncate(0o755), FchmodatFlags::FollowSymlink)
                        .map_err(|e| errno(entry, "setting the mode of a parent directory", e))?;
                }
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(errno(entry, "creating a parent directory", e)),
            }
            let next = open_beneath(dir, c, OFlag::O_PATH | OFlag::O_DIRECTORY)
                .map_err(|e| beneath_error(entry, "opening its parent directory", e))?;
            cur = Some(next);
        }
        Ok(cur.expect("comps is not empty"))
    }
}

fn errno(entry: &str, op: &'static str, e: Errno) -> UnpackError {
    UnpackError::Entry { entry: entry.to_string(), op, source: e.into() }
}

fn io_err(entry: &str, op: &'static str, e: io::Error) -> UnpackError {
    UnpackError::Entry { entry: entry.to_string(), op, source: e }
}

fn unsafe_entry(entry: &str, reason: impl Into<String>) -> UnpackError {
    UnpackError::Unsafe { entry: entry.to_string(), reason: reason.into() }
}

/// Errors of openat2 beneath the root: symlinks and escapes are refusals, the rest plain errors.
fn beneath_error(entry: &str, op: &'static str, e: Errno) -> UnpackError {
    match e {
        Errno::ELOOP => unsafe_entry(entry, "its path goes through a symlink, which could lead outside the layer"),
        Errno::EXDEV => unsafe_entry(entry, "its path leads outside the layer directory"),
        e => errno(entry, op, e),
    }
}

struct Unpacker {
    dirs: Dirs,
    /// Directories whose mode and mtime are set at the end: (path, mode, mtime).
    deferred: Vec<(Vec<u8>, u32, TimeSpec)>,
    buf: Vec<u8>,
    stats: UnpackStats,
    /// Our effective uid/gid: what a new file gets without chown.
    ids: (u32, u32),
}

const OPAQUE: &[u8] = b".wh..wh..opq";
const WH_META: &[u8] = b".wh..wh.";
const WH: &[u8] = b".wh.";

impl Unpacker {
    #[allow(clippy::too_many_lines, reason = "one match over every tar entry type with its safety checks side by side; split before adding to it")]
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = e.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let mut kind = e.header().entry_type();
        match kind {
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(()),
            tar::EntryType::Regular if raw.ends_with(b"/") => kind = tar::EntryType::Directory, // old V7 tars
            _ => {}
        }
        let comps = components(&raw).map_err(|r| unsafe_entry(&name, r))?;
        let meta = read_meta(e, &name)?;
        let Some((leaf, parent)) = comps.split_last() else {
            if kind != tar::EntryType::Directory {
                return Err(unsafe_entry(&name, "a non-directory entry names the layer root"));
            }
            return self.root_dir(meta, &name);
        };
        let leaf: &[u8] = leaf;

        if leaf.starts_with(WH) {
            let dir = self.dirs.get(parent, &name)?;
            if leaf == OPAQUE {
                let fd = openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(|e| errno(&name, "opening the opaque directory", e))?;
                fsetxattr(fd.as_fd(), c"trusted.overlay.opaque", b"y")
                    .map_err(|e| errno(&name, "setting trusted.overlay.opaque", e))?;
            } else if !leaf.starts_with(WH_META) {
                let target = &leaf[WH.len()..];
                if matches!(target, b"" | b"." | b"..") {
                    return Err(unsafe_entry(&name, "a whiteout without a valid name"));
                }
                make_node(dir, target, &name, SFlag::S_IFCHR, 0, 0)?;
                let meta = Meta { mode: 0, xattrs: Vec::new(), ..meta };
                owner_at(self.ids, dir, target, &meta, &name, true)?;
                self.stats.files += 1;
            }
            return Ok(());
        }

        match kind {
            tar::EntryType::Directory => {
                let dir = self.dirs.get(parent, &name)?;
                let created = match mkdirat(dir, p(leaf), Mode::from_bits_truncate(0o700)) {
                    Ok(()) => true,
                    Err(Errno::EEXIST) => {
                        let st = fstatat(dir, p(leaf), AtFlags::AT_SYMLINK_NOFOLLOW)
                            .map_err(|e| errno(&name, "inspecting an existing entry", e))?;
                        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                            make_room(dir, leaf, &name)?;
                            mkdirat(dir, p(leaf), Mode::from_bits_truncate(0o700))
                                .map_err(|e| errno(&name, "creating the directory", e))?;
                        }
                        false
                    }
                    Err(e) => return Err(errno(&name, "creating the directory", e)),
                };
                owner_at(self.ids, dir, leaf, &meta, &name, created)?;
                if !meta.xattrs.is_empty() {
                    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                    let fd = openat(dir, p(leaf), flags, Mode::empty())
                        .map_err(|e| errno(&name, "opening the directory", e))?;
                    set_xattrs(&meta, &name, |k, v| fsetxattr(fd.as_fd(), k, v))?;
                }
                self.deferred.push((join(&comps), meta.mode, meta.mtime));
                self.stats.dirs += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let dir = self.dirs.get(parent, &name)?;
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let mode = Mode::from_bits_truncate(0o600);
                let fd = match openat(dir, p(leaf), flags, mode) {
                    Err(Errno::EEXIST) => {
                        make_room(dir, leaf, &name)?;
                        openat(dir, p(leaf), flags, mode)
                    }
                    r => r,
                }
                .map_err(|e| errno(&name, "creating the file", e))?;
                let mut file = File::from(fd);
                let mut written = 0u64;
                loop {
                    let n = match e.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                        Err(err) => return Err(UnpackError::Read(err)),
                    };
                    file.write_all(&self.buf[..n]).map_err(|err| io_err(&name, "writing the file", err))?;
                    written += n as u64;
                }
                if (meta.uid, meta.gid) != self.ids {
                    fchown(&file, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
                        .map_err(|e| errno(&name, "setting the owner", e))?;
                }
                fchmod(&file, Mode::from_bits_truncate(meta.mode)).map_err(|e| errno(&name, "setting the mode", e))?;
                set_xattrs(&meta, &name, |k, v| fsetxattr(file.as_fd(), k, v))?;
                futimens(&file, &meta.mtime, &meta.mtime).map_err(|e| errno(&name, "setting the mtime", e))?;
                self.stats.files += 1;
                self.stats.bytes += written;
            }
            tar::EntryType::Symlink => {
                let target = e.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                if target.is_empty() {
                    return Err(unsafe_entry(&name, "a symlink without a target"));
                }
                let dir = self.dirs.get(parent, &name)?;
                match symlinkat(p(&target), dir, p(leaf)) {
                    Err(Errno::EEXIST) => {
                        make_room(dir, leaf, &name)?;
                        symlinkat(p(&target), dir, p(leaf))
                    }
                    r => r,
                }
                .map_err(|e| errno(&name, "creating the symlink", e))?;
                owner_at(self.ids, dir, leaf, &meta, &name, true)?;
                set_xattrs(&meta, &name, |k, v| lsetxattr_at(dir, leaf, k, v))?;
                self.stats.files += 1;
            }
            tar::EntryType::Link => {
                let target = e.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                let tcomps = components(&target).map_err(|r| unsafe_entry(&name, format!("hardlink target: {r}")))?;
                let Some((tleaf, tparent)) = tcomps.split_last() else {
                    return Err(unsafe_entry(&name, "a hardlink to the layer root"));
                };
                if tcomps == comps {
                    return Ok(()); // a link to itself: already there
                }
                let root = self.dirs.root.as_fd();
                let tdir = if tparent.is_empty() {
                    openat(root, ".", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                        .map_err(|e| errno(&name, "opening the layer root", e))?
                } else {
                    open_beneath(root, &join(tparent), OFlag::O_PATH | OFlag::O_DIRECTORY)
                        .map_err(|e| beneath_error(&name, "opening the hardlink target's directory", e))?
                };
                let dir = self.dirs.get(parent, &name)?;
                let tdir_fd = tdir.as_fd();
                let link = || linkat(tdir_fd, p(tleaf), dir, p(leaf), AtFlags::empty());
                match link() {
                    Err(Errno::EEXIST) => {
                        make_room(dir, leaf, &name)?;
                        link()
                    }
                    r => r,
                }
                .map_err(|e| match e {
                    Errno::ENOENT => unsafe_entry(
                        &name,
                        format!("hardlink target {:?} is not in the layer", String::from_utf8_lossy(&target)),
                    ),
                    e => errno(&name, "creating the hardlink", e),
                })?;
                self.stats.files += 1;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let h = e.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let sflag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let dir = self.dirs.get(parent, &name)?;
                make_node(dir, leaf, &name, sflag, major, minor)?;
                owner_at(self.ids, dir, leaf, &meta, &name, true)?;
                // We just created `leaf` as a node, so following it cannot reach anything else.
                fchmodat(dir, p(leaf), Mode::from_bits_truncate(meta.mode), FchmodatFlags::FollowSymlink)
                    .map_err(|e| errno(&name, "setting the mode", e))?;
                set_xattrs(&meta, &name, |k, v| lsetxattr_at(dir, leaf, k, v))?;
                self.stats.files += 1;
            }
            other => {
                tracing::warn!(entry = %name, kind = ?other, "skipping a tar entry of an unsupported type");
                return Ok(());
            }
        }
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo)
        {
            let dir = self.dirs.get(parent, &name)?;
            utimensat(dir, p(leaf), &meta.mtime, &meta.mtime, UtimensatFlags::NoFollowSymlink)
                .map_err(|e| errno(&name, "setting the mtime", e))?;
        }
        Ok(())
    }

    /// `./`: the layer root's owner and xattrs now, mode and mtime at the end.
    fn root_dir(&mut self, meta: Meta, name: &str) -> Result<(), UnpackError> {
        let fd =
            openat(self.dirs.root.as_fd(), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| errno(name, "opening the layer root", e))?;
        fchown(&fd, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
            .map_err(|e| errno(name, "setting the owner", e))?;
        set_xattrs(&meta, name, |k, v| fsetxattr(fd.as_fd(), k, v))?;
        self.deferred.push((Vec::new(), meta.mode, meta.mtime));
        Ok(())
    }

    /// Directory modes and mtimes, after all their children exist.
    fn finish(&mut self) -> Result<(), UnpackError> {
        let root = self.dirs.root.as_fd();
        for (path, mode, mtime) in &self.deferred {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
            let fd = if path.is_empty() {
                openat(root, ".", flags | OFlag::O_CLOEXEC, Mode::empty())
            } else {
                open_beneath(root, path, flags)
            };
            let name = String::from_utf8_lossy(path);
            let fd = match fd {
                Ok(fd) => fd,
                // Replaced by a later entry: nothing to do.
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                Err(e) => return Err(errno(&name, "opening the directory", e)),
            };
            fchmod(&fd, Mode::from_bits_truncate(*mode)).map_err(|e| errno(&name, "setting the mode", e))?;
            futimens(&fd, mtime, mtime).map_err(|e| errno(&name, "setting the mtime", e))?;
        }
        Ok(())
    }
}

/// chown `leaf` in `dir` without following it; skipped for a new entry that already has the owner.
fn owner_at(
    ids: (u32, u32),
    dir: BorrowedFd<'_>,
    leaf: &[u8],
    meta: &Meta,
    name: &str,
    created: bool,
) -> Result<(), UnpackError> {
    if created && (meta.uid, meta.gid) == ids {
        return Ok(());
    }
    let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
    fchownat(dir, p(leaf), uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| errno(name, "setting the owner", e))
}

/// mknodat, replacing an existing non-directory (or empty directory).
fn make_node(
    dir: BorrowedFd<'_>,
    leaf: &[u8],
    name: &str,
    kind: SFlag,
    major: u32,
    minor: u32,
) -> Result<(), UnpackError> {
    let dev = makedev(major.into(), minor.into());
    let perm = Mode::from_bits_truncate(0o600);
    match mknodat(dir, p(leaf), kind, perm, dev) {
        Err(Errno::EEXIST) => {
            make_room(dir, leaf, name)?;
            mknodat(dir, p(leaf), kind, perm, dev)
        }
        r => r,
    }
    .map_err(|e| errno(name, "creating the node", e))
}

/// Remove what is at `leaf` so an entry can take its place (tar replaces files; a directory only if empty).
fn make_room(dir: BorrowedFd<'_>, leaf: &[u8], name: &str) -> Result<(), UnpackError> {
    let st = fstatat(dir, p(leaf), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| errno(name, "inspecting an existing entry", e))?;
    let flag =
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR { UnlinkatFlags::RemoveDir } else { UnlinkatFlags::NoRemoveDir };
    unlinkat(dir, p(leaf), flag).map_err(|e| match e {
        Errno::ENOTEMPTY | Errno::EEXIST => unsafe_entry(name, "it would replace a non-empty directory"),
        e => errno(name, "replacing an existing entry", e),
    })
}

/// Apply `meta.xattrs` with `set`; `security.*` failures are skipped (debug log), `trusted.overlay.*` from
/// the tar is never applied.
fn set_xattrs(
    meta: &Meta,
    name: &str,
    set: impl Fn(&std::ffi::CStr, &[u8]) -> Result<(), Errno>,
) -> Result<(), UnpackError> {
    for (key, value) in &meta.xattrs {
        let k = key.to_bytes();
        if k.starts_with(b"trusted.overlay.") {
            tracing::warn!(entry = %name, xattr = %key.to_string_lossy(), "ignoring an overlayfs xattr in a layer tar");
            continue;
        }
        if let Err(e) = set(key, value) {
            if k.starts_with(b"security.") {
                tracing::debug!(entry = %name, xattr = %key.to_string_lossy(), error = %e, "skipping a security xattr");
                continue;
            }
            return Err(UnpackError::Entry {
                entry: name.to_string(),
                op: "setting an xattr",
                source: io::Error::other(format!("{}: {e}", key.to_string_lossy())),
            });
        }
    }
    Ok(())
}

/// Mode, owner, mtime (PAX `mtime` with nanoseconds wins over the header's seconds) and xattrs.
fn read_meta<R: Read>(e: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, UnpackError> {
    let bad = |what: &'static str, err: io::Error| io_err(name, what, err);
    let h = e.header();
    let mode = h.mode().map_err(|err| bad("reading the mode", err))? & 0o7777;
    let uid = h.uid().map_err(|err| bad("reading the uid", err))?;
    let gid = h.gid().map_err(|err| bad("reading the gid", err))?;
    let (uid, gid) = match (u32::try_from(uid), u32::try_from(gid)) {
        (Ok(u), Ok(g)) => (u, g),
        _ => return Err(unsafe_entry(name, format!("uid/gid {uid}/{gid} out of range"))),
    };
    let secs = h.mtime().map_err(|err| bad("reading the mtime", err))?;
    let mut mtime = TimeSpec::new(i64::try_from(secs).unwrap_or(i64::MAX), 0);
    let mut xattrs = Vec::new();
    if let Some(exts) = e.pax_extensions().map_err(|err| bad("reading PAX headers", err))? {
        for ext in exts {
            let ext = ext.map_err(|err| bad("reading PAX headers", err))?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                if let Some(t) = std::str::from_utf8(ext.value_bytes()).ok().and_then(parse_pax_time) {
                    mtime = t;
                }
            } else if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                let k = CString::new(x).map_err(|_| unsafe_entry(name, "an xattr name with a NUL byte"))?;
                xattrs.push((k, ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(Meta { mode, uid, gid, mtime, xattrs })
}

/// A PAX time, `[-]seconds[.fraction]`.
fn parse_pax_time(s: &str) -> Option<TimeSpec> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nsec: i64 = digits.parse().ok()?;
    Some(if !neg {
        TimeSpec::new(sec, nsec)
    } else if nsec == 0 {
        TimeSpec::new(-sec, 0)
    } else {
        TimeSpec::new(-sec - 1, 1_000_000_000 - nsec)
    })
}
