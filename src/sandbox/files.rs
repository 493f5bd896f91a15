//! File operations on a sandbox's root filesystem (beamd's files API).
//!
//! beamd opens the sandbox's root as `/proc/<init pid>/root` (`O_PATH|O_DIRECTORY`) and calls these
//! functions from a blocking thread. Every path is an absolute path *inside* the sandbox and is
//! resolved with `openat2(root, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so symlinks, `..`
//! and absolute symlink targets all stay inside the root. Operations that must not follow a final
//! symlink (stat, list, remove, mkdir) resolve the *parent* that way and then use `*at` calls with
//! `AT_SYMLINK_NOFOLLOW` / `O_NOFOLLOW` on the last name. Recursive remove and the tar walks work
//! fd-relative (never by path strings) and never follow symlinks.
//!
//! Paths are cleaned lexically first (`//`, `.` and `..` collapse; `..` at `/` stays at `/`), so
//! `/a/link/..` means `/a`, as in Docker's `cp`.
//!
//! Created files and dirs belong to the sandbox's root (host `id_base + 0`), or to the ids carried
//! by tar entries, mapped the same way. Uploads are written to `.<name>.beam-upload-<random>` in
//! the target dir and renamed over the target on commit, so readers never see a partial file.

mod archive;
#[cfg(test)]
mod tests;
mod upload;

pub use upload::Upload;
use upload::{TempEntry, create_temp_file, temp_name};

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::NixPath;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{FileStat as RawStat, Mode, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};

use crate::api::{FileList, FileStat, FileType};

/// Longest path accepted, in bytes (Linux's PATH_MAX).
pub const MAX_PATH_LEN: usize = 4096;
/// How many container ids a user namespace maps (container id N is host id `id_base + N`).
const ID_RANGE: u32 = 65536;
/// What a host id outside the sandbox's range looks like inside it (the overflow id).
const NOBODY: u32 = 65534;
/// Deepest directory nesting a recursive remove or tar walk descends into.
const MAX_DEPTH: usize = 1024;

/// Errors of the files API; each message names the path as the user gave it.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("path {path:?} must be absolute (start with /)")]
    NotAbsolute { path: String },
    #[error("path {path:?} is invalid: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("mode {mode:#o} is invalid: give permission bits only (at most 0o7777)")]
    InvalidMode { mode: u32 },
    #[error("path {path:?}: no such file or directory in the sandbox{hint}")]
    NotFound { path: String, hint: &'static str },
    #[error("path {path:?}: {hint}")]
    NotADirectory { path: String, hint: &'static str },
    #[error("path {path:?} is a directory; {hint}")]
    IsADirectory { path: String, hint: &'static str },
    #[error("path {path:?} is a non-empty directory; pass recursive=true to remove it")]
    NotEmpty { path: String },
    #[error("path {path:?} is a {kind}, not a regular file; {hint}")]
    NotRegularFile { path: String, kind: &'static str, hint: &'static str },
    #[error("path {path:?} already exists{hint}")]
    AlreadyExists { path: String, hint: &'static str },
    #[error(
        "path {path:?}: too many levels of symbolic links, or a /proc magic link (never followed); \
         use a path that resolves to a real file"
    )]
    SymlinkLoop { path: String },
    #[error("refusing to remove \"/\", the sandbox's root directory; remove the entries inside it instead")]
    RemoveRoot,
    #[error("tar entry {entry:?}: {reason}")]
    BadTarEntry { entry: String, reason: String },
    #[error("the tar stream is invalid or truncated ({source}); send a complete, uncompressed tar archive")]
    BadTar { source: io::Error },
    #[error("path {path:?}: {op} failed: {source}")]
    Io { path: String, op: &'static str, source: io::Error },
}

/// Maps an errno from an operation on `path` to the matching error.
fn sys_err(path: &str, op: &'static str, e: Errno) -> FilesError {
    let path = path.to_string();
    match e {
        Errno::ENOENT => FilesError::NotFound { path, hint: "" },
        Errno::ENOTDIR => FilesError::NotADirectory { path, hint: "a component of the path is not a directory" },
        Errno::EISDIR => FilesError::IsADirectory { path, hint: "give the path of a file" },
        Errno::ENOTEMPTY => FilesError::NotEmpty { path },
        Errno::EEXIST => FilesError::AlreadyExists { path, hint: "" },
        Errno::ELOOP => FilesError::SymlinkLoop { path },
        Errno::ENAMETOOLONG => {
            FilesError::InvalidPath { path, reason: "a component is longer than 255 bytes, or the path is too long" }
        }
        e => FilesError::Io { path, op, source: io::Error::from(e) },
    }
}

/// A validated, lexically cleaned sandbox path.
pub(crate) struct SbPath<'a> {
    given: &'a str,
    comps: Vec<&'a str>,
}

impl<'a> SbPath<'a> {
    pub(crate) fn parse(given: &'a str) -> Result<Self, FilesError> {
        let bad = |reason| FilesError::InvalidPath { path: given.to_string(), reason };
        if given.is_empty() {
            return Err(bad("it is empty; give an absolute path like /tmp/file"));
        }
        if given.contains('\0') {
            return Err(bad("it contains a NUL byte"));
        }
        if given.len() > MAX_PATH_LEN {
            return Err(bad("it is longer than 4096 bytes"));
        }
        if !given.starts_with('/') {
            return Err(FilesError::NotAbsolute { path: given.to_string() });
        }
        let mut comps = Vec::new();
        for c in given.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    comps.pop();
                }
                c => comps.push(c),
            }
        }
        Ok(SbPath { given, comps })
    }

    fn is_root(&self) -> bool {
        self.comps.is_empty()
    }

    /// The cleaned absolute path.
    fn clean(&self) -> String {
        join_abs(&self.comps)
    }

    /// The last component; "/" for the root.
    fn name(&self) -> &'a str {
        self.comps.last().copied().unwrap_or("/")
    }
}

fn join_abs(comps: &[&str]) -> String {
    if comps.is_empty() {
        return "/".to_string();
    }
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(c);
    }
    s
}

fn child_path(dir: &str, name: &str) -> String {
    if dir == "/" { format!("/{name}") } else { format!("{dir}/{name}") }
}

fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFREG => FileType::File,
        libc::S_IFDIR => FileType::Dir,
        libc::S_IFLNK => FileType::Symlink,
        _ => FileType::Other,
    }
}

fn kind_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "regular file",
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "FIFO",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        _ => "special file",
    }
}

fn check_mode(mode: u32) -> Result<Mode, FilesError> {
    if mode > 0o7777 {
        return Err(FilesError::InvalidMode { mode });
    }
    Ok(Mode::from_bits_retain(mode))
}

/// Reopens an `O_PATH` fd for reading through `/proc/self/fd`: the same inode, no path lookup, and
/// no open side effects on FIFOs or devices (the caller checked it is a regular file first).
fn reopen_for_read(fd: &OwnedFd) -> io::Result<std::fs::File> {
    std::fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The names in a directory (no `.` and `..`), unsorted. Takes a readable (not `O_PATH`) dir fd.
fn read_names(dir: OwnedFd) -> nix::Result<Vec<Vec<u8>>> {
    let mut dir = nix::dir::Dir::from_fd(dir)?;
    let mut names = Vec::new();
    for entry in dir.iter() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// Creates directory `name` in `parent` owned by (uid, gid) with exactly `mode`, and opens it
/// (`O_RDONLY`, usable as a dirfd). If anything after mkdirat fails, the new dir is removed.
fn make_dir_at<P: ?Sized + NixPath>(
    parent: BorrowedFd,
    name: &P,
    uid: u32,
    gid: u32,
    mode: Mode,
) -> nix::Result<OwnedFd> {
    mkdirat(parent, name, Mode::from_bits_truncate(0o700))?;
    let made = (|| {
        let fd = openat(
            parent,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
        fchmod(&fd, mode)?;
        Ok(fd)
    })();
    if made.is_err() {
        let _ = unlinkat(parent, name, UnlinkatFlags::RemoveDir);
    }
    made
}

/// A sandbox's root filesystem, seen through an fd on its root directory.
#[derive(Debug)]
pub struct SandboxFs {
    root: OwnedFd,
    ids: Ids,
}

/// The sandbox's id mapping: `Some(base)` maps container id N < 65536 to host id base + N.
#[derive(Debug, Clone, Copy)]
struct Ids(Option<u32>);

impl Ids {
    /// Host id of container id `id` (< 65536).
    fn host(self, id: u32) -> u32 {
        self.0.map_or(id, |b| b.saturating_add(id))
    }

    /// Container id of host id `host`; ids outside the sandbox's range show as 65534.
    fn inside(self, host: u32) -> u32 {
        match self.0 {
            None => host,
            Some(b) if host >= b && host - b < ID_RANGE => host - b,
            Some(_) => NOBODY,
        }
    }

    /// Host (uid, gid) of the sandbox's root.
    fn root(self) -> (u32, u32) {
        (self.host(0), self.host(0))
    }

    fn stat(self, path: String, name: &str, st: &RawStat, link_target: Option<String>) -> FileStat {
        FileStat {
            path,
            name: name.to_string(),
            kind: kind_of(st.st_mode),
            size: st.st_size.max(0) as u64,
            mode: st.st_mode & 0o7777,
            uid: self.inside(st.st_uid),
            gid: self.inside(st.st_gid),
            mtime: chrono::DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec.clamp(0, 999_999_999) as u32)
                .unwrap_or_default(),
            link_target,
        }
    }
}

impl SandboxFs {
    /// `root` must be a directory fd (beamd: `/proc/<init pid>/root` opened `O_PATH|O_DIRECTORY`).
    /// `id_base`: host id of the sandbox's uid/gid 0; None when it has no user namespace.
    pub fn new(root: OwnedFd, id_base: Option<u32>) -> Self {
        SandboxFs { root, ids: Ids(id_base) }
    }

    /// Opens `root_dir` with `O_PATH|O_DIRECTORY|O_CLOEXEC`.
    pub fn open_root(root_dir: &Path, id_base: Option<u32>) -> Result<Self, FilesError> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let root = nix::fcntl::open(root_dir, flags, Mode::empty()).map_err(|e| FilesError::Io {
            path: root_dir.display().to_string(),
            op: "opening the sandbox root",
            source: io::Error::from(e),
        })?;
        Ok(Self::new(root, id_base))
    }

    /// openat2 below the root with RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS (retrying EAGAIN, which
    /// the kernel returns when a concurrent rename may have raced a `..` lookup).
    fn resolve(&self, path: &str, flags: OFlag) -> nix::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let mut tries = 0;
        loop {
            match openat2(&self.root, path, how) {
                Err(Errno::EAGAIN) if tries < 32 => tries += 1,
                r => return r,
            }
        }
    }

    /// The parent dir of a non-root path, resolved inside the root (`O_PATH`).
    fn open_parent(&self, p: &SbPath, hint: &'static str) -> Result<OwnedFd, FilesError> {
        let parent = join_abs(&p.comps[..p.comps.len() - 1]);
        self.resolve(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| match e {
            Errno::ENOENT => FilesError::NotFound { path: p.given.to_string(), hint },
            Errno::ENOTDIR => {
                FilesError::NotADirectory { path: p.given.to_string(), hint: "a parent component is not a directory" }
            }
            e => sys_err(p.given, "resolving the parent directory", e),
        })
    }

    /// lstat of `name` in `dir`, with the link target for symlinks.
    fn stat_at(&self, dir: BorrowedFd, name: &[u8], path: String, given: &str) -> Result<FileStat, FilesError> {
        let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| sys_err(given, "stat", e))?;
        let link = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            let t = readlinkat(dir, name).map_err(|e| sys_err(given, "readlink", e))?;
            Some(t.to_string_lossy().into_owned())
        } else {
            None
        };
        Ok(self.ids.stat(path, &String::from_utf8_lossy(name), &st, link))
    }

    /// Metadata of `path`, not following a final symlink (lstat).
    pub fn stat(&self, path: &str) -> Result<FileStat, FilesError> {
        let p = SbPath::parse(path)?;
        if p.is_root() {
            let fd =
                self.resolve("/", OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| sys_err(path, "opening /", e))?;
            let st = fstat(&fd).map_err(|e| sys_err(path, "stat", e))?;
            return Ok(self.ids.stat("/".to_string(), "/", &st, None));
        }
        let parent = self.open_parent(&p, "")?;
        self.stat_at(parent.as_fd(), p.name().as_bytes(), p.clean(), path)
    }

    /// Opens a directory for reading, not following a final symlink.
    fn open_dir_nofollow(&self, p: &SbPath, hint: &'static str) -> Result<OwnedFd, FilesError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        if p.is_root() {
            return self.resolve("/", flags).map_err(|e| sys_err(p.given, "opening /", e));
        }
        let parent = self.open_parent(p, "")?;
        let name = p.name();
        let st = fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| sys_err(p.given, "stat", e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(FilesError::NotADirectory { path: p.given.to_string(), hint });
        }
        openat(&parent, name, flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR => FilesError::NotADirectory { path: p.given.to_string(), hint },
            e => sys_err(p.given, "opening the directory", e),
        })
    }

    /// The entries of directory `path` (no `.` and `..`), sorted by name, each lstat'ed. A symlink
    /// to a directory is not followed: list its target instead. Non-UTF-8 names are shown lossily.
    pub fn list(&self, path: &str) -> Result<FileList, FilesError> {
        let p = SbPath::parse(path)?;
        let hint = "not a directory (symlinks are not followed here); stat or read it, or list its target";
        let dir = self.open_dir_nofollow(&p, hint)?;
        let statfd = dir.try_clone().map_err(|e| FilesError::Io { path: path.to_string(), op: "dup", source: e })?;
        let mut names = read_names(dir).map_err(|e| sys_err(path, "reading the directory", e))?;
        names.sort();
        let clean = p.clean();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let child = child_path(&clean, &String::from_utf8_lossy(&name));
            match self.stat_at(statfd.as_fd(), &name, child, path) {
                Ok(st) => entries.push(st),
                Err(FilesError::NotFound { .. }) => {} // removed since readdir
                Err(e) => return Err(e),
            }
        }
        Ok(FileList { path: clean, entries })
    }

    /// Creates directory `path` with exactly `mode`, owned by the sandbox's root. With `parents`,
    /// like `mkdir -p`: missing parents are created (0o755) and an existing dir is fine. An
    /// existing non-directory (a symlink included, never followed) is an error.
    pub fn mkdir(&self, path: &str, parents: bool, mode: u32) -> Result<FileStat, FilesError> {
        let p = SbPath::parse(path)?;
        let mode = check_mode(mode)?;
        if p.is_root() {
            return if parents {
                self.stat(path)
            } else {
                Err(FilesError::AlreadyExists {
                    path: path.to_string(),
                    hint: "; pass parents=true to accept an existing directory",
                })
            };
        }
        let parent = if parents {
            self.make_parents(&p)?
        } else {
            self.open_parent(&p, "; create the parent first, or pass parents=true")?
        };
        let name = p.name();
        let (uid, gid) = self.ids.root();
        match make_dir_at(parent.as_fd(), name, uid, gid, mode) {
            Ok(fd) => {
                let st = fstat(&fd).map_err(|e| sys_err(path, "stat", e))?;
                Ok(self.ids.stat(p.clean(), name, &st, None))
            }
            Err(Errno::EEXIST) => {
                let st = self.stat_at(parent.as_fd(), name.as_bytes(), p.clean(), path)?;
                match st.kind {
                    FileType::Dir if parents => Ok(st),
                    FileType::Dir => Err(FilesError::AlreadyExists {
                        path: path.to_string(),
                        hint: "; pass parents=true to accept an existing directory",
                    }),
                    _ => Err(FilesError::AlreadyExists { path: path.to_string(), hint: " and is not a directory" }),
                }
            }
            Err(e) => Err(sys_err(path, "mkdir", e)),
        }
    }

    /// Resolves (following symlinks inside the root) or creates every parent of `p`; returns the
    /// last parent.
    fn make_parents(&self, p: &SbPath) -> Result<OwnedFd, FilesError> {
        let (uid, gid) = self.ids.root();
        let dirflags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        let mut cur = self.resolve("/", dirflags).map_err(|e| sys_err(p.given, "opening /", e))?;
        let n = p.comps.len();
        for i in 0..n - 1 {
            let prefix = join_abs(&p.comps[..=i]);
            let not_dir = || FilesError::NotADirectory {
                path: p.given.to_string(),
                hint: "a parent component exists and is not a directory",
            };
            cur = match self.resolve(&prefix, dirflags) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match make_dir_at(cur.as_fd(), p.comps[i], uid, gid, Mode::from_bits_truncate(0o755)) {
                        Ok(fd) => fd,
                        // Made concurrently, or a dangling symlink: look once more.
                        Err(Errno::EEXIST) => self.resolve(&prefix, dirflags).map_err(|e| match e {
                            Errno::ENOENT => FilesError::NotFound {
                                path: p.given.to_string(),
                                hint: " (a parent component is a dangling symlink)",
                            },
                            Errno::ENOTDIR => not_dir(),
                            e => sys_err(p.given, "resolving a parent directory", e),
                        })?,
                        Err(e) => return Err(sys_err(p.given, "creating a parent directory", e)),
                    }
                }
                Err(Errno::ENOTDIR) => return Err(not_dir()),
                Err(e) => return Err(sys_err(p.given, "resolving a parent directory", e)),
            };
        }
        Ok(cur)
    }

    /// Removes `path` (never following a final symlink: a symlink itself is removed). A non-empty
    /// directory needs `recursive`; the recursive walk is fd-relative and never follows symlinks.
    pub fn remove(&self, path: &str, recursive: bool) -> Result<(), FilesError> {
        let p = SbPath::parse(path)?;
        if p.is_root() {
            return Err(FilesError::RemoveRoot);
        }
        let parent = self.open_parent(&p, "")?;
        let name = p.name();
        let st = fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| sys_err(path, "stat", e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return unlinkat(&parent, name, UnlinkatFlags::NoRemoveDir).map_err(|e| sys_err(path, "unlink", e));
        }
        if recursive {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let dir =
                openat(&parent, name, flags, Mode::empty()).map_err(|e| sys_err(path, "opening the directory", e))?;
            remove_contents(dir, 0).map_err(|e| sys_err(path, "removing the directory's contents", e))?;
        }
        unlinkat(&parent, name, UnlinkatFlags::RemoveDir).map_err(|e| match e {
            // Some filesystems say EEXIST for a non-empty directory.
            Errno::EEXIST => FilesError::NotEmpty { path: path.to_string() },
            e => sys_err(path, "rmdir", e),
        })
    }

    /// Opens regular file `path` for reading (a final symlink is followed, inside the root).
    pub fn open_read(&self, path: &str) -> Result<(std::fs::File, FileStat), FilesError> {
        let p = SbPath::parse(path)?;
        let fd = self.resolve(&p.clean(), OFlag::O_PATH).map_err(|e| sys_err(path, "open", e))?;
        let st = fstat(&fd).map_err(|e| sys_err(path, "stat", e))?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => {}
            libc::S_IFDIR => {
                return Err(FilesError::IsADirectory {
                    path: path.to_string(),
                    hint: "list it, or download it as a tar",
                });
            }
            m => {
                return Err(FilesError::NotRegularFile {
                    path: path.to_string(),
                    kind: kind_name(m),
                    hint: "only regular files can be read",
                });
            }
        }
        let file =
            reopen_for_read(&fd).map_err(|e| FilesError::Io { path: path.to_string(), op: "open", source: e })?;
        Ok((file, self.ids.stat(p.clean(), p.name(), &st, None)))
    }

    /// Starts an atomic upload to `path` with exactly `mode`: data goes to a temp file in the
    /// target dir, which `Upload::commit` renames over the target (a symlink there is replaced,
    /// not followed). The parent must exist; the target may exist unless it is a directory.
    pub fn create_file(&self, path: &str, mode: u32) -> Result<Upload, FilesError> {
        let p = SbPath::parse(path)?;
        let mode = check_mode(mode)?;
        if p.is_root() {
            return Err(FilesError::IsADirectory { path: path.to_string(), hint: "give the path of a file" });
        }
        let parent = self.open_parent(&p, "; create the parent directory first (mkdir with parents=true)")?;
        let name = p.name();
        match fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                return Err(FilesError::IsADirectory {
                    path: path.to_string(),
                    hint: "remove it first, or upload to a path inside it",
                });
            }
            Ok(_) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(sys_err(path, "stat", e)),
        }
        let (uid, gid) = self.ids.root();
        let temp = create_temp_file(parent, name.as_bytes(), uid, gid, mode)
            .map_err(|e| sys_err(path, "creating the upload's temp file", e))?;
        Ok(Upload::new(temp, name, p.clean(), path, mode, self.ids))
    }

    /// Writes `path` as a tar stream to `out`: a directory with its name as the top entry (`./`
    /// for `/`), a file or a symlink as one entry. Symlinks are stored as symlinks, never
    /// followed; uid/gid are as seen inside; sockets, FIFOs and devices are skipped (warned).
    pub fn write_tar(&self, path: &str, out: impl Write) -> Result<(), FilesError> {
        archive::write_tar(self, path, out)
    }

    /// Extracts a tar stream into directory `dir` (created like `mkdir -p` if missing); returns
    /// the number of entries created. Refuses absolute names, `..`, writing through symlinks,
    /// hard links leaving `dir`, device nodes, and (with a user namespace) ids over 65535. Files are
    /// renamed into place whole; directories made before an error stay.
    pub fn extract_tar(&self, dir: &str, input: impl io::Read) -> Result<u64, FilesError> {
        archive::extract_tar(self, dir, input)
    }
}

/// Removes everything inside `dir`, fd-relative, never following symlinks.
fn remove_contents(dir: OwnedFd, depth: usize) -> nix::Result<()> {
    if depth > MAX_DEPTH {
        return Err(Errno::ELOOP);
    }
    let at = dir.try_clone().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    for name in read_names(dir)? {
        let name = OsStr::from_bytes(&name);
        match unlinkat(&at, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => continue,
            Err(Errno::EISDIR) => {}
            Err(e) => return Err(e),
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(&at, name, flags, Mode::empty()) {
            Ok(sub) => remove_contents(sub, depth + 1)?,
            Err(Errno::ENOENT) => continue,
            // Swapped for a symlink or file since: unlink that instead (never follow it).
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                unlinkat(&at, name, UnlinkatFlags::NoRemoveDir)?;
                continue;
            }
            Err(e) => return Err(e),
        }
        match unlinkat(&at, name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
