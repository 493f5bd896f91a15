//! Tar streams out of and into a sandbox.
//!
//! `write_tar` walks fd-relative and never follows symlinks: a symlink is stored as a symlink,
//! whatever it points at. Entries: directories, regular files and symlinks, with uid/gid as seen
//! inside the sandbox; sockets, FIFOs and devices are skipped with a warning; hard links are
//! stored as separate files; xattrs and ACLs are not stored.
//!
//! `extract_tar` never calls the tar crate's unpack: it creates every entry itself, fd-relative
//! from the target directory. Absolute names, `..` components, entries whose parent goes through
//! a symlink, hard links whose target is not inside the target directory (or goes through a
//! symlink) and device nodes are refused; FIFOs are skipped. Regular files, symlinks and hard
//! links are made under a temp name and renamed into place, so a failed extract never leaves a
//! partially written file; directories created before the failure stay. Directory mtimes are not
//! restored.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat as RawStat, Mode, UtimensatFlags, fchmod, fstat, fstatat, futimens, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};
use tar::{EntryType, Header};

use super::{
    FilesError, ID_RANGE, MAX_DEPTH, SandboxFs, SbPath, TempEntry, create_temp_file, kind_name, make_dir_at,
    read_names, reopen_for_read, sys_err, temp_name,
};

pub(super) fn write_tar(fs: &SandboxFs, path: &str, out: impl Write) -> Result<(), FilesError> {
    let p = SbPath::parse(path)?;
    let mut w = TarWriter { fs, given: path, b: tar::Builder::new(out) };
    let rdir = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if p.is_root() {
        let dir = fs.resolve("/", rdir).map_err(|e| sys_err(path, "opening /", e))?;
        let st = fstat(&dir).map_err(|e| sys_err(path, "stat", e))?;
        let mut h = w.header(&st, EntryType::Directory, 0);
        w.b.append_data(&mut h, "./", io::empty()).map_err(|e| w.out_err(e))?;
        w.walk(dir, Path::new("."), 0)?;
    } else {
        let parent = fs.open_parent(&p, "")?;
        let name = p.name();
        let st = fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| sys_err(path, "stat", e))?;
        if !matches!(st.st_mode & libc::S_IFMT, libc::S_IFDIR | libc::S_IFREG | libc::S_IFLNK) {
            return Err(FilesError::NotRegularFile {
                path: path.to_string(),
                kind: kind_name(st.st_mode),
                hint: "only files, directories and symlinks can be archived",
            });
        }
        w.entry(parent.as_fd(), name.as_bytes(), Path::new(name), 0)?;
    }
    let out_err = |source| FilesError::Io { path: path.to_string(), op: "writing the tar stream", source };
    w.b.into_inner().map_err(out_err)?.flush().map_err(out_err)
}

struct TarWriter<'a, W: Write> {
    fs: &'a SandboxFs,
    given: &'a str,
    b: tar::Builder<W>,
}

impl<W: Write> TarWriter<'_, W> {
    fn out_err(&self, e: io::Error) -> FilesError {
        FilesError::Io { path: self.given.to_string(), op: "writing the tar stream", source: e }
    }

    fn read_err(&self, at: &Path, op: &'static str, e: Errno) -> FilesError {
        FilesError::Io { path: format!("{} (at {})", self.given, at.display()), op, source: io::Error::from(e) }
    }

    fn header(&self, st: &RawStat, kind: EntryType, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(u64::from(self.fs.ids.inside(st.st_uid)));
        h.set_gid(u64::from(self.fs.ids.inside(st.st_gid)));
        h.set_mtime(st.st_mtime.max(0) as u64);
        h
    }

    /// Archives directory `dir` (readable fd) below `prefix`, in name order.
    fn walk(&mut self, dir: OwnedFd, prefix: &Path, depth: usize) -> Result<(), FilesError> {
        if depth > MAX_DEPTH {
            return Err(self.read_err(prefix, "walking (directories nested too deep)", Errno::ELOOP));
        }
        let at = dir.try_clone().map_err(|e| FilesError::Io { path: self.given.to_string(), op: "dup", source: e })?;
        let mut names = read_names(dir).map_err(|e| self.read_err(prefix, "reading a directory", e))?;
        names.sort();
        for name in names {
            let child = prefix.join(OsStr::from_bytes(&name));
            self.entry(at.as_fd(), &name, &child, depth)?;
        }
        Ok(())
    }

    /// Archives `name` in `dir` as `tar_path`. Entries that vanish or change type mid-walk are
    /// skipped; nothing is ever followed.
    fn entry(
        &mut self,
        dir: std::os::fd::BorrowedFd,
        name: &[u8],
        tar_path: &Path,
        depth: usize,
    ) -> Result<(), FilesError> {
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(self.read_err(tar_path, "stat", e)),
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let sub = match openat(dir, name, flags, Mode::empty()) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => return Ok(()),
                    Err(e) => return Err(self.read_err(tar_path, "opening a directory", e)),
                };
                let mut h = self.header(&st, EntryType::Directory, 0);
                self.b.append_data(&mut h, tar_path, io::empty()).map_err(|e| self.out_err(e))?;
                self.walk(sub, tar_path, depth + 1)
            }
            libc::S_IFREG => {
                let fd = match openat(dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT) => return Ok(()),
                    Err(e) => return Err(self.read_err(tar_path, "opening a file", e)),
                };
                let st = fstat(&fd).map_err(|e| self.read_err(tar_path, "stat", e))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Ok(()); // swapped for something else mid-walk
                }
                let file = reopen_for_read(&fd).map_err(|e| FilesError::Io {
                    path: format!("{} (at {})", self.given, tar_path.display()),
                    op: "opening a file",
                    source: e,
                })?;
                let size = st.st_size.max(0) as u64;
                let mut h = self.header(&st, EntryType::Regular, size);
                let data = ExactLen { inner: file, left: size };
                self.b.append_data(&mut h, tar_path, data).map_err(|e| self.out_err(e))
            }
            libc::S_IFLNK => {
                let target = match readlinkat(dir, name) {
                    Ok(t) => t,
                    Err(Errno::ENOENT | Errno::EINVAL) => return Ok(()),
                    Err(e) => return Err(self.read_err(tar_path, "readlink", e)),
                };
                let mut h = self.header(&st, EntryType::Symlink, 0);
                self.b.append_link(&mut h, tar_path, Path::new(&target)).map_err(|e| self.out_err(e))
            }
            m => {
                tracing::warn!(path = self.given, entry = %tar_path.display(), "tar: skipping a {}", kind_name(m));
                Ok(())
            }
        }
    }
}

/// Yields exactly `left` bytes: what the file has, then zeros if it shrank while being read (the
/// tar header already promised the size).
struct ExactLen<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactLen<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            buf[..want].fill(0);
            n = want;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The components of a tar entry name or hard-link target, relative to the target dir.
fn split_tar_path(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.is_empty() {
        return Err("the name is empty");
    }
    if raw[0] == b'/' {
        return Err("absolute names are not allowed; use names relative to the target directory");
    }
    let mut comps = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("\"..\" components are not allowed"),
            c => comps.push(c),
        }
    }
    Ok(comps)
}

pub(super) fn extract_tar(fs: &SandboxFs, dir: &str, input: impl Read) -> Result<u64, FilesError> {
    let p = SbPath::parse(dir)?;
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let not_dir =
        || FilesError::NotADirectory { path: dir.to_string(), hint: "is not a directory; extract into a directory" };
    let top = match fs.resolve(&p.clean(), flags) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            fs.mkdir(dir, true, 0o755)?;
            fs.resolve(&p.clean(), flags).map_err(|e| sys_err(dir, "opening the directory", e))?
        }
        Err(Errno::ENOTDIR) => return Err(not_dir()),
        Err(e) => return Err(sys_err(dir, "opening the directory", e)),
    };
    let x = Extractor { fs, top, clean: p.clean() };
    let mut archive = tar::Archive::new(input);
    let mut count = 0;
    for entry in archive.entries().map_err(|source| FilesError::BadTar { source })? {
        let mut entry = entry.map_err(|source| FilesError::BadTar { source })?;
        if x.entry(&mut entry)? {
            count += 1;
        }
    }
    Ok(count)
}

struct Extractor<'a> {
    fs: &'a SandboxFs,
    top: OwnedFd,
    clean: String,
}

impl Extractor<'_> {
    /// Creates one entry; false when it was skipped.
    #[allow(clippy::too_many_lines, reason = "one match over every tar entry type with its safety checks side by side; split before adding to it")]
    fn entry<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<bool, FilesError> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let bad = |reason: String| FilesError::BadTarEntry { entry: shown.clone(), reason };
        let kind = entry.header().entry_type();
        match kind {
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink => {
                return Ok(false);
            }
            EntryType::Char | EntryType::Block => {
                return Err(bad("device nodes are not allowed; leave them out of the archive".into()));
            }
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link => {}
            other => {
                tracing::warn!(entry = %shown, kind = ?other, "tar: skipping an entry of an unsupported type");
                return Ok(false);
            }
        }
        let comps = split_tar_path(&raw).map_err(|r| bad(r.into()))?;
        let Some((name, parents)) = comps.split_last() else {
            return Ok(false); // "./": the target dir itself
        };
        let name: &[u8] = name;
        let h = entry.header();
        let bad_tar = |source| FilesError::BadTar { source };
        let (uid, gid) = (h.uid().map_err(bad_tar)?, h.gid().map_err(bad_tar)?);
        let limit = if self.fs.ids.0.is_some() { u64::from(ID_RANGE) } else { u64::from(u32::MAX) };
        if uid >= limit || gid >= limit {
            return Err(bad(format!(
                "uid/gid {uid}/{gid} is outside the sandbox's id range (0-{}); re-create the archive with \
                 smaller ids (e.g. tar --owner=0 --group=0)",
                limit - 1
            )));
        }
        let (uid, gid) = (self.fs.ids.host(uid as u32), self.fs.ids.host(gid as u32));
        let mode = Mode::from_bits_retain(h.mode().map_err(bad_tar)? & 0o7777);
        let mtime = TimeSpec::new(h.mtime().unwrap_or(0).min(i64::MAX as u64) as i64, 0);
        let parent = self.open_parents(parents, &shown, true)?;
        let err = |op: &'static str, e: Errno| self.entry_err(&shown, op, e);
        match kind {
            EntryType::Directory => match make_dir_at(parent.as_fd(), name, uid, gid, mode) {
                Ok(_) => {}
                Err(Errno::EEXIST) => {
                    let st = fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| err("stat", e))?;
                    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                        let fd =
                            openat(&parent, name, flags, Mode::empty()).map_err(|e| err("opening a directory", e))?;
                        fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(|e| err("chown", e))?;
                        fchmod(&fd, mode).map_err(|e| err("chmod", e))?;
                    } else {
                        unlinkat(&parent, name, UnlinkatFlags::NoRemoveDir).map_err(|e| err("replacing a file", e))?;
                        make_dir_at(parent.as_fd(), name, uid, gid, mode).map_err(|e| err("mkdir", e))?;
                    }
                }
                Err(e) => return Err(err("mkdir", e)),
            },
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                if target.is_empty() {
                    return Err(bad("a symlink without a target".into()));
                }
                let mut temp = self
                    .temp_with(parent, name, |dir, tmp| symlinkat(target.as_slice(), dir, tmp))
                    .map_err(|e| err("symlink", e))?;
                let (dir, tmp) = (temp.dir.as_fd(), temp.name.as_slice());
                fchownat(dir, tmp, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| err("chown", e))?;
                utimensat(dir, tmp, &mtime, &mtime, UtimensatFlags::NoFollowSymlink)
                    .map_err(|e| err("utimensat", e))?;
                temp.rename_to(name).map_err(|e| err("renaming into place", e))?;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                let shown_target = String::from_utf8_lossy(&target).into_owned();
                let tcomps =
                    split_tar_path(&target).map_err(|r| bad(format!("hard link target {shown_target:?}: {r}")))?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(bad("a hard link to the target directory itself".into()));
                };
                let src = self.open_parents(tparents, &shown, false)?;
                let mut temp = self
                    .temp_with(parent, name, |dir, tmp| linkat(&src, *tname, dir, tmp, AtFlags::empty()))
                    .map_err(|e| match e {
                        Errno::ENOENT => {
                            bad(format!("hard link target {shown_target:?} does not exist in the target directory"))
                        }
                        Errno::EPERM => bad(format!("hard link target {shown_target:?} is a directory")),
                        e => err("link", e),
                    })?;
                temp.rename_to(name).map_err(|e| err("renaming into place", e))?;
                // Linking a name to its own inode makes rename a no-op: drop the temp name.
                let _ = unlinkat(&temp.dir, temp.name.as_slice(), UnlinkatFlags::NoRemoveDir);
            }
            _ => {
                let (mut file, mut temp) =
                    create_temp_file(parent, name, uid, gid, mode).map_err(|e| err("creating a temp file", e))?;
                let (size, mut written) = (entry.size(), 0u64);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = entry.read(&mut buf).map_err(bad_tar)?;
                    if n == 0 {
                        break;
                    }
                    file.write_all(&buf[..n]).map_err(|e| FilesError::Io {
                        path: self.shown_path(&shown),
                        op: "writing",
                        source: e,
                    })?;
                    written += n as u64;
                }
                // The tar crate reports a stream that ends inside an entry as a short entry.
                if written != size && kind != EntryType::GNUSparse {
                    let msg = format!("entry {shown:?} ends after {written} of its {size} bytes");
                    return Err(FilesError::BadTar { source: io::Error::new(io::ErrorKind::UnexpectedEof, msg) });
                }
                fchmod(&file, mode).map_err(|e| err("chmod", e))?;
                futimens(&file, &mtime, &mtime).map_err(|e| err("futimens", e))?;
                temp.rename_to(name).map_err(|e| err("renaming into place", e))?;
            }
        }
        Ok(true)
    }

    /// Makes a temp entry in `dir` with `make(dir, tmp_name)` (retrying a name clash).
    fn temp_with(
        &self,
        dir: OwnedFd,
        name: &[u8],
        make: impl Fn(std::os::fd::BorrowedFd, &[u8]) -> nix::Result<()>,
    ) -> nix::Result<TempEntry> {
        let mut tries = 0;
        loop {
            let tmp = temp_name(name);
            match make(dir.as_fd(), &tmp) {
                Ok(()) => return Ok(TempEntry { dir, name: tmp, armed: true }),
                Err(Errno::EEXIST) if tries < 8 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens the directories `comps` below the target dir without following symlinks, creating
    /// missing ones (owned by the sandbox's root, 0o755) when `create`.
    fn open_parents(&self, comps: &[&[u8]], shown: &str, create: bool) -> Result<OwnedFd, FilesError> {
        let dup_err = |e| FilesError::Io { path: self.shown_path(shown), op: "dup", source: e };
        let mut cur = self.top.try_clone().map_err(dup_err)?;
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        for (i, c) in comps.iter().enumerate() {
            let bad = |what: &str| {
                let prefix = String::from_utf8_lossy(&comps[..=i].join(&b'/')).into_owned();
                FilesError::BadTarEntry {
                    entry: shown.to_string(),
                    reason: format!(
                        "{what} {prefix:?} {}",
                        if create {
                            "is a symlink or not a directory; entries are never written through symlinks"
                        } else {
                            "is a symlink or not a directory; hard link targets are never looked up through symlinks"
                        }
                    ),
                }
            };
            let (root_uid, root_gid) = self.fs.ids.root();
            cur = match openat(&cur, *c, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    match make_dir_at(cur.as_fd(), *c, root_uid, root_gid, Mode::from_bits_truncate(0o755)) {
                        Ok(fd) => fd,
                        Err(Errno::EEXIST) => openat(&cur, *c, flags, Mode::empty()).map_err(|e| match e {
                            Errno::ELOOP | Errno::ENOTDIR => bad("parent"),
                            e => self.entry_err(shown, "opening a parent directory", e),
                        })?,
                        Err(e) => return Err(self.entry_err(shown, "creating a parent directory", e)),
                    }
                }
                Err(Errno::ENOENT) => {
                    let prefix = String::from_utf8_lossy(&comps[..=i].join(&b'/')).into_owned();
                    return Err(FilesError::BadTarEntry {
                        entry: shown.to_string(),
                        reason: format!("hard link target directory {prefix:?} does not exist in the target directory"),
                    });
                }
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    return Err(bad(if create { "parent" } else { "hard link target directory" }));
                }
                Err(e) => return Err(self.entry_err(shown, "opening a parent directory", e)),
            };
        }
        Ok(cur)
    }

    /// The sandbox path an entry lands on, for messages.
    fn shown_path(&self, shown: &str) -> String {
        super::child_path(&self.clean, shown.trim_start_matches("./"))
    }

    fn entry_err(&self, shown: &str, op: &'static str, e: Errno) -> FilesError {
        match e {
            Errno::EISDIR | Errno::ENOTEMPTY | Errno::EEXIST => FilesError::BadTarEntry {
                entry: shown.to_string(),
                reason: "a directory already exists at this path; remove it first".into(),
            },
            Errno::ENAMETOOLONG | Errno::ENOTDIR | Errno::ELOOP | Errno::EXDEV | Errno::EPERM => {
                FilesError::BadTarEntry { entry: shown.to_string(), reason: format!("{op}: {}", e.desc()) }
            }
            e => FilesError::Io { path: self.shown_path(shown), op, source: io::Error::from(e) },
        }
    }
}
