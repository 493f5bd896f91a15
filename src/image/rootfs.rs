//! overlayfs root filesystems: the image's layer dirs as read-only lowerdirs, a per-container upper and
//! work dir, the merged tree at `<dir>/rootfs`.
//!
//! ```text
//! <dir>/rootfs   the merged mount (what the runtime gets as root.path)
//! <dir>/upper    the container's writes (a commit tars this)      — absent when readonly
//! <dir>/work     overlayfs scratch, same filesystem as upper      — absent when readonly
//! <dir>/l/<n>    legacy mount(2) only: short symlinks to the layer dirs
//! <dir>/lower/<n> idmapped only: where each layer's idmapped clone is attached while the overlay mounts
//! ```
//!
//! Long lowerdir lists: mount(2) takes its options in one page, so ~60 absolute layer paths already
//! overflow it. On kernels ≥ 6.8 we use the new mount API and add each layer with its own
//! `fsconfig(FSCONFIG_SET_STRING, "lowerdir+", path)` call (no total limit; 500 is overlayfs' stack
//! limit). Older kernels get mount(2) with short relative names: `<dir>/l/<n>` symlinks to each layer
//! and a forked child that chdirs into `<dir>/l` before mounting (chdir is per process, so the
//! multi-threaded caller's cwd never changes); `lowerdir=299:298:…:0` fits 500 layers in a page.
//! The child only makes raw syscalls (async-signal-safe) between fork and `_exit`.
//!
//! User namespaces ([`mount_idmapped`]): the layer dirs stay shared and unshifted on disk. Each layer is
//! cloned as a detached mount (`open_tree(OPEN_TREE_CLONE)`), made idmapped and read-only with
//! `mount_setattr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, userns_fd)` — on-disk uid 0 then reads as the
//! namespace's host root, e.g. 100000 — and attached at `<dir>/lower/<n>` (short paths, so long layer lists
//! still fit). overlayfs takes those as lowerdirs and keeps private clones of them, so the attached mounts
//! are detached again right after the overlay is up: once mounted, only `<dir>/rootfs` shows in mountinfo.
//! upper/ and work/ are chowned to the namespace's root, so the container's writes land on disk owned
//! by the mapped ids (100000, …). (util-linux's `X-mount.idmap` silently did nothing on 6.18: syscalls.)
//!
//! Options: `index=off,redirect_dir=off,metacopy=off` so the upper dir is a plain tree of changed
//! files plus whiteouts and opaque markers — exactly what a commit turns into a tar layer.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs {path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error("mounting overlayfs on {target}: {msg}")]
    Mount { target: PathBuf, msg: String },
    #[error("unmounting {target}: {msg}")]
    Unmount { target: PathBuf, msg: String },
}

/// A mounted (or once mounted) overlay root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    /// `<dir>/rootfs`: the merged tree.
    pub merged: PathBuf,
    /// `<dir>/upper`: the container's changes (not created for a read-only rootfs).
    pub upper: PathBuf,
    /// `<dir>/work`: overlayfs' work dir (not created for a read-only rootfs).
    pub work: PathBuf,
}

/// How to mount; [`mount`] uses `Auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The new mount API when the kernel has `lowerdir+` (≥ 6.8), else `Legacy`.
    Auto,
    /// fsopen/fsconfig("lowerdir+")/fsmount/move_mount only.
    NewApi,
    /// mount(2) with short relative lowerdir names (any kernel with overlayfs).
    Legacy,
}

/// Map the layers through a user namespace ([`mount_idmapped`]).
#[derive(Debug, Clone, Copy)]
pub struct Idmap<'a> {
    /// The user namespace whose maps apply (e.g. [`crate::image::userns::UserNs::fd`]).
    pub userns: BorrowedFd<'a>,
    /// The host ids that the namespace's root (0) maps to: upper/ and work/ are chowned to them.
    pub root_uid: u32,
    pub root_gid: u32,
}

/// overlayfs' maximum lower stack depth (OVL_MAX_STACK).
pub const MAX_LAYERS: usize = 500;
const OPTIONS: [(&CStr, &CStr); 3] = [(c"index", c"off"), (c"redirect_dir", c"off"), (c"metacopy", c"off")];

/// Mount `layers` (base first) as an overlay at `<dir>/rootfs`, creating `dir`, `rootfs/` and (unless
/// `readonly`) `upper/` and `work/` inside it.
pub fn mount(layers: &[PathBuf], dir: &Path, readonly: bool) -> Result<Rootfs, RootfsError> {
    mount_with(layers, dir, readonly, Method::Auto)
}

/// [`mount`] for a container in the user namespace `userns`: the layers are seen through idmapped mounts
/// (on-disk 0 → `root_uid`), never chowned; upper/ and work/ belong to `root_uid:root_gid`.
pub fn mount_idmapped(
    layers: &[PathBuf],
    dir: &Path,
    readonly: bool,
    userns: BorrowedFd<'_>,
    root_uid: u32,
    root_gid: u32,
) -> Result<Rootfs, RootfsError> {
    mount_opts(layers, dir, readonly, Method::Auto, Some(Idmap { userns, root_uid, root_gid }))
}

/// [`mount`] with an explicit [`Method`] (tests use it to exercise the legacy path on new kernels).
pub fn mount_with(layers: &[PathBuf], dir: &Path, readonly: bool, method: Method) -> Result<Rootfs, RootfsError> {
    mount_opts(layers, dir, readonly, method, None)
}

/// The general form of [`mount`]: an explicit [`Method`] and an optional [`Idmap`].
pub fn mount_opts(
    layers: &[PathBuf],
    dir: &Path,
    readonly: bool,
    method: Method,
    idmap: Option<Idmap<'_>>,
) -> Result<Rootfs, RootfsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| RootfsError::Io { path, msg: e.to_string() }
    };
    if layers.len() > MAX_LAYERS {
        return Err(RootfsError::Mount {
            target: dir.join("rootfs"),
            msg: format!("{} layers; overlayfs stacks at most {MAX_LAYERS} — squash the image", layers.len()),
        });
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
    let dir = std::fs::canonicalize(dir).map_err(io(dir))?;
    let r = Rootfs { merged: dir.join("rootfs"), upper: dir.join("upper"), work: dir.join("work") };
    mkdir(&r.merged, 0o755)?;
    if !readonly {
        mkdir(&r.upper, 0o755)?;
        mkdir(&r.work, 0o700)?;
    }
    for l in layers {
        if !l.is_dir() {
            return Err(RootfsError::Mount {
                target: r.merged.clone(),
                msg: format!("layer dir {} is missing; unpack the image again (`beam image pull`)", l.display()),
            });
        }
    }
    // Lowers, top first. overlayfs needs one lower with an upper and two without: pad with empty dirs.
    let mut lowers: Vec<PathBuf> = match idmap {
        None => layers.iter().rev().cloned().collect(),
        Some(m) => {
            let chown = |p: &Path| {
                std::os::unix::fs::chown(p, Some(m.root_uid), Some(m.root_gid)).map_err(|e| RootfsError::Io {
                    path: p.to_path_buf(),
                    msg: format!("chown to the namespace's root: {e}"),
                })
            };
            if !readonly {
                chown(&r.upper)?;
                chown(&r.work)?;
            }
            let attached = attach_idmapped_layers(layers, &dir, m.userns)?;
            attached.into_iter().rev().collect()
        }
    };
    let need = if readonly { 2 } else { 1 };
    for i in lowers.len()..need {
        let empty = dir.join(format!("empty{i}"));
        mkdir(&empty, 0o755)?;
        if let Some(m) = idmap {
            std::os::unix::fs::chown(&empty, Some(m.root_uid), Some(m.root_gid))
                .map_err(|e| RootfsError::Io { path: empty.clone(), msg: e.to_string() })?;
        }
        lowers.push(empty);
    }
    let upper = (!readonly).then_some((&r.upper, &r.work));
    let mounted = match method {
        Method::NewApi => mount_new_api(&lowers, upper, &r.merged).map_err(RootfsError::from),
        Method::Legacy => mount_legacy(&lowers, upper, &dir, &r.merged),
        Method::Auto if !has_lowerdir_plus() => mount_legacy(&lowers, upper, &dir, &r.merged),
        Method::Auto => match mount_new_api(&lowers, upper, &r.merged) {
            Ok(()) => Ok(()),
            Err(NewApiError::Unsupported) => mount_legacy(&lowers, upper, &dir, &r.merged),
            Err(e) => Err(e.into()),
        },
    };
    // overlayfs holds private clones of its lowers: the attached idmapped mounts can go either way.
    let detached = if idmap.is_some() { unmount_lowers(&dir) } else { Ok(()) };
    mounted?;
    if let Err(e) = detached {
        let _ = umount_path(&r.merged);
        return Err(e);
    }
    Ok(r)
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x10_0000;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Attach an idmapped, read-only clone of each layer at `<dir>/lower/<n>` (n = layer index, base = 0, in
/// hex). On failure nothing stays attached.
fn attach_idmapped_layers(layers: &[PathBuf], dir: &Path, userns: BorrowedFd<'_>) -> Result<Vec<PathBuf>, RootfsError> {
    let base = dir.join("lower");
    unmount_lowers(dir)?;
    if let Some(m) = std::fs::canonicalize(&base).ok().and_then(|b| mounts_below(&b).into_iter().next()) {
        return Err(RootfsError::Unmount { target: m, msg: "still mounted; not reusing the container dir".into() });
    }
    if base.exists() {
        std::fs::remove_dir_all(&base).map_err(|e| RootfsError::Io { path: base.clone(), msg: e.to_string() })?;
    }
    mkdir(&base, 0o700)?;
    let mut out = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        let target = base.join(format!("{i:x}"));
        let attached = mkdir(&target, 0o755).and_then(|()| attach_idmapped(layer, &target, userns));
        if let Err(e) = attached {
            let _ = unmount_lowers(dir);
            return Err(e);
        }
        out.push(target);
    }
    Ok(out)
}

fn attach_idmapped(layer: &Path, target: &Path, userns: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let failed = |what: &str, e: nix::errno::Errno, hint: &str| RootfsError::Mount {
        target: target.to_path_buf(),
        msg: format!("idmapped mount of layer {}: {what}: {e}{hint}", layer.display()),
    };
    let src = cpath(layer)?;
    // SAFETY: a NUL-terminated path; flags only.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    })
    .map_err(|e| {
        failed(
            "open_tree(OPEN_TREE_CLONE)",
            e,
            if e == nix::errno::Errno::ENOSYS { " — needs Linux ≥ 5.2" } else { "" },
        )
    })?;
    // SAFETY: open_tree returned a new descriptor that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: an empty path with AT_EMPTY_PATH on our fd; `attr` is a live mount_attr of the size passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    })
    .map_err(|e| {
        let hint = match e {
            nix::errno::Errno::ENOSYS => " — idmapped mounts need Linux ≥ 5.12",
            nix::errno::Errno::EINVAL => {
                " — the layer's filesystem may not support idmapped mounts (ext4, xfs, btrfs and tmpfs ≥ 6.3 do),                  or the namespace is the host's own"
            }
            nix::errno::Errno::EPERM => " — needs CAP_SYS_ADMIN over the user namespace (root)",
            _ => "",
        };
        failed("mount_setattr(MOUNT_ATTR_IDMAP)", e, hint)
    })?;
    let t = cpath(target)?;
    // SAFETY: empty from-path with F_EMPTY_PATH; `t` is NUL-terminated.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map_err(|e| failed("move_mount", e, ""))?;
    Ok(())
}

/// Unmount whatever is still attached under `<dir>/lower/` (not mounted is fine).
fn unmount_lowers(dir: &Path) -> Result<(), RootfsError> {
    let Ok(entries) = std::fs::read_dir(dir.join("lower")) else { return Ok(()) };
    let mut first_err = Ok(());
    for e in entries.flatten() {
        if let Err(e) = umount_path(&e.path())
            && first_err.is_ok()
        {
            first_err = Err(e);
        }
    }
    first_err
}

/// Mount points at or below `dir` (canonical) in this process's mount namespace (/proc/self/mountinfo).
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = |k: usize| u32::from(b[i + k] - b'0');
            out.push((v(1) * 64 + v(2) * 8 + v(3)) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// Unmount the merged dir (lazily if busy), then any idmapped layer mounts still attached under
/// `<dir>/lower/`. Not mounted is not an error.
pub fn unmount(r: &Rootfs) -> Result<(), RootfsError> {
    let merged = umount_path(&r.merged);
    let lowers = r.merged.parent().map_or(Ok(()), unmount_lowers);
    merged.and(lowers)
}

/// Unmount `<dir>/rootfs` if mounted, then delete `dir` and everything in it. Refuses to delete while
/// something is still mounted there. A missing `dir` is not an error.
pub fn remove(dir: &Path) -> Result<(), RootfsError> {
    if !dir.exists() {
        return Ok(());
    }
    let merged = dir.join("rootfs");
    if is_mount_point(&merged) {
        umount_path(&merged)?;
        if is_mount_point(&merged) {
            return Err(RootfsError::Unmount {
                target: merged,
                msg: "still mounted after unmounting; not deleting the container dir (check /proc/self/mountinfo)"
                    .into(),
            });
        }
    }
    unmount_lowers(dir)?;
    // Deleting through a mount would delete what it shows (an idmapped layer is the shared layer itself).
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if let Some(m) = mounts_below(&canonical).iter().find(|m| **m != canonical) {
        return Err(RootfsError::Unmount {
            target: m.clone(),
            msg: "still mounted below the container dir; not deleting it (unmount it first)".into(),
        });
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RootfsError::Io { path: dir.to_path_buf(), msg: format!("removing: {e}") }),
    }
}

/// Whether `path` is the root of a mount other than its parent's (overlay has its own st_dev).
pub fn is_mount_point(path: &Path) -> bool {
    let (Ok(m), Some(parent)) = (std::fs::symlink_metadata(path), path.parent()) else { return false };
    std::fs::symlink_metadata(parent).is_ok_and(|p| p.dev() != m.dev())
}

fn mkdir(p: &Path, mode: u32) -> Result<(), RootfsError> {
    match std::fs::DirBuilder::new().mode(mode).create(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => Ok(()),
        Err(e) => Err(RootfsError::Io { path: p.to_path_buf(), msg: e.to_string() }),
    }
}

fn cpath(p: &Path) -> Result<CString, RootfsError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| RootfsError::Io { path: p.to_path_buf(), msg: "path contains a NUL byte".into() })
}

fn umount_path(target: &Path) -> Result<(), RootfsError> {
    let c = cpath(target)?;
    let umount = |flags| {
        // SAFETY: `c` is NUL-terminated.
        if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 { Ok(()) } else { Err(nix::errno::Errno::last()) }
    };
    match umount(libc::UMOUNT_NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()), // not mounted / gone
        Err(nix::errno::Errno::EBUSY) => umount(libc::UMOUNT_NOFOLLOW | libc::MNT_DETACH).map_err(|e| {
            RootfsError::Unmount { target: target.to_path_buf(), msg: format!("{e} (even with MNT_DETACH)") }
        }),
        Err(e) => Err(RootfsError::Unmount {
            target: target.to_path_buf(),
            msg: format!("{e}{}", if e == nix::errno::Errno::EPERM { " (needs root: CAP_SYS_ADMIN)" } else { "" }),
        }),
    }
}

/// A hint for a failed overlay mount, by errno.
fn hint(e: nix::errno::Errno) -> &'static str {
    use nix::errno::Errno::*;
    match e {
        ENODEV => " — overlayfs is not available: `modprobe overlay`",
        EPERM => " — mounting needs root (CAP_SYS_ADMIN in the initial user namespace)",
        EINVAL => {
            " — the upper/work dirs may be on a filesystem overlayfs can't use as upper (e.g. overlayfs itself): \
             put the state root on ext4/xfs/btrfs/tmpfs; `dmesg` has the kernel's reason"
        }
        ENAMETOOLONG => " — a layer path is too long: use a shorter state root",
        ELOOP | ENOENT => " — a layer dir vanished; unpack the image again",
        _ => "",
    }
}

/// Whether the running kernel's overlayfs takes `lowerdir+` (Linux ≥ 6.8). Before 6.5 overlayfs used the
/// legacy mount-data shim, which accepts any fsconfig key and fails only at create — so ask uname.
pub fn has_lowerdir_plus() -> bool {
    // SAFETY: an all-zero utsname is valid; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is writable.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    // SAFETY: uname NUL-terminates `release`.
    let rel = unsafe { CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy().into_owned();
    let mut it = rel.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (major, minor) >= (6, 8)
}

#[derive(Debug)]
enum NewApiError {
    /// fsopen or `lowerdir+` not supported (kernel < 6.8): try mount(2).
    Unsupported,
    Failed(RootfsError),
}

impl From<NewApiError> for RootfsError {
    fn from(e: NewApiError) -> Self {
        match e {
            NewApiError::Failed(e) => e,
            NewApiError::Unsupported => RootfsError::Mount {
                target: PathBuf::new(),
                msg: "this kernel's overlayfs has no `lowerdir+` (needs Linux ≥ 6.8); use Method::Legacy".into(),
            },
        }
    }
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn check(r: libc::c_long) -> Result<libc::c_long, nix::errno::Errno> {
    if r < 0 { Err(nix::errno::Errno::last()) } else { Ok(r) }
}

fn fsconfig_string(fs: RawFd, key: &CStr, value: &CStr) -> Result<(), nix::errno::Errno> {
    // SAFETY: key and value are NUL-terminated strings that outlive the call.
    check(unsafe { libc::syscall(libc::SYS_fsconfig, fs, FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr(), 0) })
        .map(drop)
}

/// The messages the kernel queued on a filesystem context ("e overlay: …"), joined.
fn fs_log(fs: RawFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::read(fs, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.push(String::from_utf8_lossy(&buf[..n as usize]).trim_end().to_string());
    }
    if out.is_empty() { String::new() } else { format!(" [kernel: {}]", out.join("; ")) }
}

fn mount_new_api(lowers: &[PathBuf], upper: Option<(&PathBuf, &PathBuf)>, target: &Path) -> Result<(), NewApiError> {
    let failed = |msg: String| NewApiError::Failed(RootfsError::Mount { target: target.to_path_buf(), msg });
    // SAFETY: a NUL-terminated fs type name.
    let fs = match check(unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) }) {
        // SAFETY: fsopen returned a new descriptor that we own.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
        Err(nix::errno::Errno::ENOSYS) => return Err(NewApiError::Unsupported),
        Err(e) => return Err(failed(format!("fsopen(overlay): {e}{}", hint(e)))),
    };
    let fsfd = fs.as_raw_fd();
    for (i, l) in lowers.iter().enumerate() {
        let c = cpath(l).map_err(NewApiError::Failed)?;
        if let Err(e) = fsconfig_string(fsfd, c"lowerdir+", &c) {
            let log = fs_log(fsfd);
            // An unknown parameter on the first layer: a kernel before 6.8.
            if i == 0 && e == nix::errno::Errno::EINVAL && log.contains("nknown parameter") {
                return Err(NewApiError::Unsupported);
            }
            return Err(failed(format!("adding lower layer {}: {e}{log}{}", l.display(), hint(e))));
        }
    }
    if let Some((up, work)) = upper {
        for (k, p) in [(c"upperdir", up), (c"workdir", work)] {
            let c = cpath(p).map_err(NewApiError::Failed)?;
            fsconfig_string(fsfd, k, &c).map_err(|e| {
                failed(format!("{} {}: {e}{}{}", k.to_string_lossy(), p.display(), fs_log(fsfd), hint(e)))
            })?;
        }
    }
    for (k, v) in OPTIONS {
        fsconfig_string(fsfd, k, v)
            .map_err(|e| failed(format!("option {}: {e}{}", k.to_string_lossy(), fs_log(fsfd))))?;
    }
    // SAFETY: plain integer/NULL arguments.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fsfd,
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })
    .map_err(|e| failed(format!("creating the overlay ({} lowers): {e}{}{}", lowers.len(), fs_log(fsfd), hint(e))))?;
    // SAFETY: plain integer arguments.
    let mnt = check(unsafe { libc::syscall(libc::SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, 0) })
        .map_err(|e| failed(format!("fsmount: {e}{}", hint(e))))?;
    // SAFETY: fsmount returned a new descriptor that we own.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as RawFd) };
    let t = cpath(target).map_err(NewApiError::Failed)?;
    // SAFETY: empty from-path with F_EMPTY_PATH; `t` is NUL-terminated.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map_err(|e| failed(format!("move_mount: {e}{}", hint(e))))?;
    Ok(())
}

/// mount(2) with `lowerdir=<n>:…` names relative to `<dir>/l`, from a forked child that chdirs there.
fn mount_legacy(
    lowers: &[PathBuf],
    upper: Option<(&PathBuf, &PathBuf)>,
    dir: &Path,
    target: &Path,
) -> Result<(), RootfsError> {
    let links = dir.join("l");
    if links.exists() {
        std::fs::remove_dir_all(&links).map_err(|e| RootfsError::Io { path: links.clone(), msg: e.to_string() })?;
    }
    mkdir(&links, 0o700)?;
    let mut names = Vec::with_capacity(lowers.len());
    for (i, l) in lowers.iter().enumerate() {
        let name = format!("{i:x}");
        std::os::unix::fs::symlink(l, links.join(&name))
            .map_err(|e| RootfsError::Io { path: links.join(&name), msg: e.to_string() })?;
        names.push(name);
    }
    let mut data = format!("lowerdir={}", names.join(":"));
    if upper.is_some() {
        data.push_str(",upperdir=../upper,workdir=../work");
    }
    for (k, v) in OPTIONS {
        data.push_str(&format!(",{}={}", k.to_string_lossy(), v.to_string_lossy()));
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    if data.len() >= page {
        return Err(RootfsError::Mount {
            target: target.to_path_buf(),
            msg: format!(
                "{} layers don't fit mount(2)'s {page}-byte option page; needs Linux ≥ 6.8 (lowerdir+)",
                lowers.len()
            ),
        });
    }
    let (cdir, ctarget) = (cpath(&links)?, cpath(target)?);
    let cdata = CString::new(data).expect("no NUL in generated options");
    // SAFETY: the child only makes raw syscalls (chdir, mount, _exit) on memory prepared before the
    // fork, all async-signal-safe; the parent waits for it.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(RootfsError::Mount {
            target: target.to_path_buf(),
            msg: format!("fork: {}", nix::errno::Errno::last()),
        });
    }
    if pid == 0 {
        // SAFETY: see above; errno values fit in an exit status (< 256).
        unsafe {
            if libc::chdir(cdir.as_ptr()) != 0 {
                libc::_exit(*libc::__errno_location() & 0xff);
            }
            let r = libc::mount(c"overlay".as_ptr(), ctarget.as_ptr(), c"overlay".as_ptr(), 0, cdata.as_ptr().cast());
            libc::_exit(if r == 0 { 0 } else { *libc::__errno_location() & 0xff });
        }
    }
    let code = loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 255 };
        }
        if nix::errno::Errno::last() != nix::errno::Errno::EINTR {
            break 255;
        }
    };
    if code != 0 {
        let e = nix::errno::Errno::from_raw(code);
        return Err(RootfsError::Mount {
            target: target.to_path_buf(),
            msg: format!("mount(2) with {} lowers: {e}{}", lowers.len(), hint(e)),
        });
    }
    Ok(())
}
