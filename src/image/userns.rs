//! User namespaces without a container: a namespace with fixed uid/gid maps, kept alive by an fd, for
//! idmapped layer mounts ([`crate::image::rootfs::mount_idmapped`]) and for the runtime to join by path.
//!
//! ```text
//! fork ─▶ child: unshare(CLONE_NEWUSER), report, pause()      (raw syscalls only: async-signal-safe)
//! parent: write /proc/<pid>/uid_map + gid_map, open /proc/<pid>/ns/user, SIGKILL + reap the child
//! ```
//! The fd keeps the namespace alive after the child is gone. [`UserNs::path`] (`/proc/self/fd/N`) names it
//! only inside this process; [`UserNs::bind`] bind-mounts the namespace file at a path any process (e.g. a
//! separate `beam-oci`) can open, unmounted again by [`UserNs::unbind`] or on drop.

use nix::errno::Errno;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("user namespace {which} map: {msg}")]
    InvalidMap { which: &'static str, msg: String },
    #[error("creating a user namespace: {op}: {errno}{hint}")]
    Sys { op: String, errno: Errno, hint: &'static str },
    #[error("bind-mounting the user namespace at {path}: {msg}")]
    Bind { path: PathBuf, msg: String },
}

/// One map line: (first id inside, first id on the host, count).
pub type IdMap = (u32, u32, u32);

/// The kernel's limit on lines in uid_map/gid_map.
const MAX_LINES: usize = 340;

/// An owned user namespace (no process in it) with the maps it was created with.
#[derive(Debug)]
pub struct UserNs {
    fd: OwnedFd,
    uid_map: Vec<IdMap>,
    gid_map: Vec<IdMap>,
    bound: Option<PathBuf>,
}

impl UserNs {
    /// A new user namespace, child of the caller's, with these maps (container, host, size). Needs
    /// CAP_SETUID/CAP_SETGID over the host ids (root). Safe to call from a multi-threaded process.
    pub fn new(uid_map: &[IdMap], gid_map: &[IdMap]) -> Result<UserNs, UsernsError> {
        let uid_text = map_text("uid", uid_map)?;
        let gid_text = map_text("gid", gid_map)?;
        let sys = |op: &str, errno: Errno| UsernsError::Sys { op: op.into(), errno, hint: hint(errno) };
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sys("pipe2", e))?;
        let (rfd, wfd) = (ready_r.as_raw_fd(), ready_w.as_raw_fd());
        // SAFETY: between fork and _exit the child only makes raw syscalls (close, prctl, unshare, write,
        // pause, _exit) on memory prepared before the fork — all async-signal-safe.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(sys("fork", Errno::last()));
        }
        if pid == 0 {
            // SAFETY: see above.
            unsafe {
                libc::close(rfd);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                let status: u8 = if libc::unshare(libc::CLONE_NEWUSER) == 0 {
                    0
                } else {
                    (*libc::__errno_location() & 0xff).max(1) as u8
                };
                libc::write(wfd, (&status as *const u8).cast(), 1);
                libc::close(wfd);
                loop {
                    libc::pause();
                }
            }
        }
        let child = Reaper(pid);
        drop(ready_w);
        let mut status = [0u8; 1];
        let n = loop {
            match nix::unistd::read(&ready_r, &mut status) {
                Err(Errno::EINTR) => continue,
                r => break r.map_err(|e| sys("reading from the namespace child", e))?,
            }
        };
        if n != 1 {
            return Err(UsernsError::Sys {
                op: "the namespace child exited before reporting".into(),
                errno: Errno::UnknownErrno,
                hint: "",
            });
        }
        if status[0] != 0 {
            return Err(sys("unshare(CLONE_NEWUSER)", Errno::from_raw(status[0] as i32)));
        }
        let proc = PathBuf::from(format!("/proc/{pid}"));
        // No setgroups=deny: we write as root in the parent namespace, so setgroups(2) stays usable inside.
        for (file, text) in [("uid_map", &uid_text), ("gid_map", &gid_text)] {
            std::fs::write(proc.join(file), text).map_err(|e| {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                UsernsError::Sys { op: format!("writing {file} {:?}", text.trim_end()), errno, hint: hint(errno) }
            })?;
        }
        let file = std::fs::File::open(proc.join("ns/user")).map_err(|e| {
            let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
            UsernsError::Sys { op: format!("opening /proc/{pid}/ns/user"), errno, hint: "" }
        })?;
        drop(child);
        Ok(UserNs { fd: file.into(), uid_map: uid_map.to_vec(), gid_map: gid_map.to_vec(), bound: None })
    }

    /// The namespace fd (for `mount_setattr(MOUNT_ATTR_IDMAP)` or `setns`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `/proc/self/fd/N`: valid only in this process (and only while `self` lives).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    pub fn uid_map(&self) -> &[IdMap] {
        &self.uid_map
    }

    pub fn gid_map(&self) -> &[IdMap] {
        &self.gid_map
    }

    /// The host uid that `uid` inside maps to.
    pub fn host_uid(&self, uid: u32) -> Option<u32> {
        map_id(&self.uid_map, uid)
    }

    /// The host gid that `gid` inside maps to.
    pub fn host_gid(&self, gid: u32) -> Option<u32> {
        map_id(&self.gid_map, gid)
    }

    /// Bind-mount the namespace at `target` (an empty file is created; its parent must exist) so that
    /// any process can open it, e.g. as the OCI `{"type":"user","path":target}`. One binding at a time.
    pub fn bind(&mut self, target: &Path) -> Result<(), UsernsError> {
        let err = |msg: String| UsernsError::Bind { path: target.to_path_buf(), msg };
        if let Some(p) = &self.bound {
            return Err(err(format!("already bound at {}; unbind first", p.display())));
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(target)
            .map_err(|e| err(format!("creating the mount point: {e}")))?;
        let (src, dst) = (cstr(&self.path()), cstr(target));
        let (Some(src), Some(dst)) = (src, dst) else { return Err(err("path contains a NUL byte".into())) };
        // SAFETY: NUL-terminated paths; no fs type or data.
        let r = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
        if r != 0 {
            let e = Errno::last();
            let _ = std::fs::remove_file(target);
            return Err(err(format!("mount --bind: {e}{}", hint(e))));
        }
        self.bound = Some(target.to_path_buf());
        Ok(())
    }

    /// Where [`bind`](Self::bind) mounted the namespace, if it did.
    pub fn bound(&self) -> Option<&Path> {
        self.bound.as_deref()
    }

    /// Forget the bind without undoing it: the namespace outlives this value (and this process) until
    /// someone unmounts the file (e.g. [`crate::image::bundle::remove_stale`]).
    pub fn keep_bound(&mut self) {
        self.bound = None;
    }

    /// Undo [`bind`](Self::bind): unmount (lazily) and remove the file. Not bound is not an error.
    pub fn unbind(&mut self) -> Result<(), UsernsError> {
        let Some(target) = self.bound.take() else { return Ok(()) };
        let err = |msg: String| UsernsError::Bind { path: target.clone(), msg };
        let c = cstr(&target).ok_or_else(|| err("path contains a NUL byte".into()))?;
        // SAFETY: `c` is NUL-terminated.
        if unsafe { libc::umount2(c.as_ptr(), libc::UMOUNT_NOFOLLOW | libc::MNT_DETACH) } != 0 {
            let e = Errno::last();
            if !matches!(e, Errno::EINVAL | Errno::ENOENT) {
                self.bound = Some(target.clone());
                return Err(err(format!("unmounting: {e}")));
            }
        }
        match std::fs::remove_file(&target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(format!("removing: {e}"))),
            _ => Ok(()),
        }
    }
}

impl Drop for UserNs {
    fn drop(&mut self) {
        let _ = self.unbind();
    }
}

/// Kills and reaps the namespace child, on every path out of [`UserNs::new`].
struct Reaper(libc::pid_t);

impl Drop for Reaper {
    fn drop(&mut self) {
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            while libc::waitpid(self.0, std::ptr::null_mut(), 0) < 0 && Errno::last() == Errno::EINTR {}
        }
    }
}

fn cstr(p: &Path) -> Option<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).ok()
}

/// The id `id` maps to through `map`.
pub fn map_id(map: &[IdMap], id: u32) -> Option<u32> {
    map.iter().find(|&&(c, _, s)| id >= c && u64::from(id) < u64::from(c) + u64::from(s)).map(|&(c, h, _)| h + (id - c))
}

/// The text written to uid_map/gid_map, after the kernel's checks (so errors say which line is wrong).
fn map_text(which: &'static str, map: &[IdMap]) -> Result<String, UsernsError> {
    let err = |msg: String| UsernsError::InvalidMap { which, msg };
    if map.is_empty() {
        return Err(err("empty; map at least container id 0, e.g. (0, 100000, 65536)".into()));
    }
    if map.len() > MAX_LINES {
        return Err(err(format!("{} lines; the kernel takes at most {MAX_LINES}", map.len())));
    }
    let end = |start: u32, size: u32| u64::from(start) + u64::from(size);
    for (i, &(c, h, s)) in map.iter().enumerate() {
        if s == 0 {
            return Err(err(format!("line {i} ({c} {h} {s}) has size 0")));
        }
        if end(c, s) > u64::from(u32::MAX) || end(h, s) > u64::from(u32::MAX) {
            return Err(err(format!("line {i} ({c} {h} {s}) runs past id {}", u32::MAX - 1)));
        }
        for &(c2, h2, s2) in &map[..i] {
            if c < c2 + s2 && c2 < c + s {
                return Err(err(format!("line {i} ({c} {h} {s}) overlaps container ids {c2}..{}", end(c2, s2))));
            }
            if h < h2 + s2 && h2 < h + s {
                return Err(err(format!("line {i} ({c} {h} {s}) overlaps host ids {h2}..{}", end(h2, s2))));
            }
        }
    }
    Ok(map.iter().map(|(c, h, s)| format!("{c} {h} {s}\n")).collect())
}

fn hint(e: Errno) -> &'static str {
    match e {
        Errno::EPERM => " — needs root (CAP_SETUID/CAP_SETGID over the host ids, CAP_SYS_ADMIN)",
        Errno::ENOSPC => " — too many user namespaces: raise /proc/sys/user/max_user_namespaces",
        Errno::EUSERS => " — user namespaces nest at most 32 deep",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_checked_and_translated() {
        assert_eq!(map_text("uid", &[(0, 100000, 65536)]).unwrap(), "0 100000 65536\n");
        assert!(map_text("uid", &[]).is_err());
        assert!(map_text("uid", &[(0, 1, 0)]).is_err());
        assert!(map_text("uid", &[(0, u32::MAX - 1, 2)]).is_err());
        assert!(map_text("gid", &[(0, 1000, 10), (5, 5000, 1)]).unwrap_err().to_string().contains("container ids"));
        assert!(map_text("gid", &[(0, 1000, 10), (20, 1005, 1)]).unwrap_err().to_string().contains("host ids"));
        let m = [(0, 100000, 1000), (1000, 5000, 1)];
        assert_eq!(map_id(&m, 0), Some(100000));
        assert_eq!(map_id(&m, 999), Some(100999));
        assert_eq!(map_id(&m, 1000), Some(5000));
        assert_eq!(map_id(&m, 1001), None);
    }

    #[test]
    #[ignore = "needs root"]
    fn owns_a_mapped_namespace() {
        crate::test_support::require_root();
        let ns = UserNs::new(&[(0, 300000, 1000)], &[(0, 310000, 1000)]).unwrap();
        assert_eq!((ns.host_uid(0), ns.host_gid(1)), (Some(300000), Some(310001)));
        // The child is gone but the namespace lives on through the fd.
        let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let its = std::fs::read_link(ns.path()).unwrap();
        assert!(its.to_string_lossy().starts_with("user:["), "{its:?}");
        assert_ne!(ino(Path::new("/proc/self/ns/user")), ino(&ns.path()));
        let t = tempfile::tempdir().unwrap();
        let mut ns = ns;
        let p = t.path().join("userns");
        ns.bind(&p).unwrap();
        assert_eq!(ns.bound(), Some(p.as_path()));
        assert_eq!(ino(&p), ino(&ns.path()), "the bound file is the namespace");
        assert!(ns.bind(&t.path().join("again")).is_err());
        ns.unbind().unwrap();
        assert!(!p.exists());
    }
}
