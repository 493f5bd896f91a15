//! Thin wrappers over the mount-related syscalls used between clone and execve.
//!
//! Every function here is async-signal-safe: a raw syscall, no allocation, no locks. Errors are a bare
//! [`Errno`] (a `Copy` integer); turning them into messages happens later, outside the child.

use nix::errno::Errno;
use std::ffi::CStr;
use std::os::fd::RawFd;

pub(super) type Sys<T> = Result<T, Errno>;

// Constants of the mount API (include/uapi/linux/mount.h); stable kernel ABI, defined here so the code
// does not depend on which of them a given libc release exports.
pub(super) const OPEN_TREE_CLONE: u32 = 1;
pub(super) const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
const FSOPEN_CLOEXEC: u32 = 1;
const FSMOUNT_CLOEXEC: u32 = 1;
const FSPICK_CLOEXEC: u32 = 1;
const FSPICK_EMPTY_PATH: u32 = 8;
const FSCONFIG_SET_FLAG: u32 = 0;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSCONFIG_CMD_RECONFIGURE: u32 = 7;

pub(super) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(super) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(super) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(super) const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub(super) const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
pub(super) const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub(super) const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub(super) const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub(super) const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub(super) const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x20_0000;

pub(super) const AT_RECURSIVE: u32 = 0x8000;
const AT_EMPTY_PATH: u32 = libc::AT_EMPTY_PATH as u32;

/// `struct mount_attr` for mount_setattr(2).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// `struct open_how` for openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// An owned file descriptor; closing on drop is async-signal-safe.
#[derive(Debug)]
pub(super) struct Fd(RawFd);

impl Fd {
    pub fn raw(&self) -> RawFd {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own this descriptor and nobody else closes it.
        unsafe { libc::close(self.0) };
    }
}

fn fd_result(r: libc::c_long) -> Sys<Fd> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(Fd(r as RawFd))
    }
}

fn unit_result(r: libc::c_long) -> Sys<()> {
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// openat2(2) with `resolve` flags (RESOLVE_IN_ROOT etc.).
pub(super) fn openat2(dirfd: RawFd, path: &CStr, flags: i32, resolve: u64) -> Sys<Fd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    loop {
        // SAFETY: `path` is NUL-terminated and `how` is a valid open_how that outlives the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                path.as_ptr(),
                &how as *const OpenHow,
                size_of_val(&how),
            )
        };
        match fd_result(r) {
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue, // the kernel asks to retry on rename races
            other => return other,
        }
    }
}

pub(super) fn openat(dirfd: RawFd, path: &CStr, flags: i32, mode: libc::mode_t) -> Sys<Fd> {
    // SAFETY: `path` is NUL-terminated.
    let r = unsafe {
        libc::openat(
            dirfd,
            path.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    fd_result(r as libc::c_long)
}

/// open_tree(2) on `dirfd`/`path`; `flags` are OPEN_TREE_* | AT_*. An empty `path` adds AT_EMPTY_PATH.
pub(super) fn open_tree(dirfd: RawFd, path: &CStr, flags: u32) -> Sys<Fd> {
    let flags = if path.is_empty() {
        flags | AT_EMPTY_PATH
    } else {
        flags
    };
    // SAFETY: `path` is NUL-terminated; the syscall only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dirfd,
            path.as_ptr(),
            flags | OPEN_TREE_CLOEXEC,
        )
    };
    fd_result(r)
}

/// Attach the mount referred to by `from` on top of the object referred to by `to` (both descriptors).
pub(super) fn move_mount(from: RawFd, to: RawFd) -> Sys<()> {
    let empty = c"";
    // SAFETY: both paths are the empty C string; the descriptors are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            empty.as_ptr(),
            to,
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    unit_result(r)
}

pub(super) fn fsopen(fstype: &CStr) -> Sys<Fd> {
    // SAFETY: `fstype` is NUL-terminated.
    let r = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    fd_result(r)
}

fn fsconfig(fd: RawFd, cmd: u32, key: Option<&CStr>, value: Option<&CStr>) -> Sys<()> {
    // SAFETY: key/value are NUL-terminated or null, as the command requires.
    let r = unsafe { libc::syscall(libc::SYS_fsconfig, fd, cmd, opt_ptr(key), opt_ptr(value), 0) };
    unit_result(r)
}

/// One `key[=value]` parameter of a filesystem context.
pub(super) fn fsconfig_param(fd: RawFd, key: &CStr, value: Option<&CStr>) -> Sys<()> {
    match value {
        Some(v) => fsconfig(fd, FSCONFIG_SET_STRING, Some(key), Some(v)),
        None => fsconfig(fd, FSCONFIG_SET_FLAG, Some(key), None),
    }
}

pub(super) fn fsconfig_create(fd: RawFd) -> Sys<()> {
    fsconfig(fd, FSCONFIG_CMD_CREATE, None, None)
}

pub(super) fn fsconfig_reconfigure(fd: RawFd) -> Sys<()> {
    fsconfig(fd, FSCONFIG_CMD_RECONFIGURE, None, None)
}

/// fsmount(2): a detached mount of the created superblock with MOUNT_ATTR_* `attrs`.
pub(super) fn fsmount(fd: RawFd, attrs: u64) -> Sys<Fd> {
    // SAFETY: plain integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fd,
            FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    };
    fd_result(r)
}

/// fspick(2) on the mount `fd` refers to, for reconfiguring its superblock.
pub(super) fn fspick(fd: RawFd) -> Sys<Fd> {
    let empty = c"";
    // SAFETY: empty NUL-terminated path with FSPICK_EMPTY_PATH.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fspick,
            fd,
            empty.as_ptr(),
            FSPICK_EMPTY_PATH | FSPICK_CLOEXEC,
        )
    };
    fd_result(r)
}

/// mount_setattr(2) on the mount `fd` refers to (AT_EMPTY_PATH), optionally on the whole subtree.
pub(super) fn mount_setattr(fd: RawFd, recursive: bool, attr: &MountAttr) -> Sys<()> {
    let empty = c"";
    let flags = AT_EMPTY_PATH | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `attr` is a valid `struct mount_attr` of the size passed; the path is empty.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            empty.as_ptr(),
            flags,
            attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    };
    unit_result(r)
}

/// Classic mount(2), used only for paths that are not under the container's control ("/", ".", the
/// canonical rootfs path, host mount points).
pub(super) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: u64,
    data: Option<&CStr>,
) -> Sys<()> {
    // SAFETY: every pointer is a NUL-terminated string or null, which mount(2) accepts.
    let r = unsafe {
        libc::mount(
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags as libc::c_ulong,
            opt_ptr(data).cast(),
        )
    };
    unit_result(r as libc::c_long)
}

pub(super) fn umount2(target: &CStr, flags: i32) -> Sys<()> {
    // SAFETY: `target` is NUL-terminated.
    unit_result(unsafe { libc::umount2(target.as_ptr(), flags) } as libc::c_long)
}

pub(super) fn mkdirat(dirfd: RawFd, name: &CStr, mode: libc::mode_t) -> Sys<()> {
    // SAFETY: `name` is NUL-terminated.
    unit_result(unsafe { libc::mkdirat(dirfd, name.as_ptr(), mode) } as libc::c_long)
}

pub(super) fn mknodat(dirfd: RawFd, name: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> Sys<()> {
    // SAFETY: `name` is NUL-terminated.
    unit_result(unsafe { libc::mknodat(dirfd, name.as_ptr(), mode, dev) } as libc::c_long)
}

pub(super) fn symlinkat(target: &CStr, dirfd: RawFd, name: &CStr) -> Sys<()> {
    // SAFETY: both strings are NUL-terminated.
    unit_result(unsafe { libc::symlinkat(target.as_ptr(), dirfd, name.as_ptr()) } as libc::c_long)
}

pub(super) fn unlinkat(dirfd: RawFd, name: &CStr, flags: i32) -> Sys<()> {
    // SAFETY: `name` is NUL-terminated.
    unit_result(unsafe { libc::unlinkat(dirfd, name.as_ptr(), flags) } as libc::c_long)
}

/// readlinkat(2) into `buf`; returns the length (not NUL-terminated). ENAMETOOLONG if it does not fit.
pub(super) fn readlinkat(dirfd: RawFd, name: &CStr, buf: &mut [u8]) -> Sys<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
    let r = unsafe { libc::readlinkat(dirfd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(Errno::last())
    } else if r as usize >= buf.len() {
        Err(Errno::ENAMETOOLONG)
    } else {
        Ok(r as usize)
    }
}

pub(super) fn fchownat(dirfd: RawFd, name: &CStr, uid: u32, gid: u32) -> Sys<()> {
    // SAFETY: `name` is NUL-terminated.
    let r = unsafe { libc::fchownat(dirfd, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) };
    unit_result(r as libc::c_long)
}

pub(super) fn fchmodat(dirfd: RawFd, name: &CStr, mode: libc::mode_t) -> Sys<()> {
    // SAFETY: `name` is NUL-terminated.
    unit_result(unsafe { libc::fchmodat(dirfd, name.as_ptr(), mode, 0) } as libc::c_long)
}

pub(super) fn fstat(fd: RawFd) -> Sys<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable `struct stat`.
    let r = unsafe { libc::fstat(fd, &mut st) };
    if r < 0 { Err(Errno::last()) } else { Ok(st) }
}

/// The ST_* (= MS_*) flags of the filesystem at `path`.
pub(super) fn statfs_flags(path: &CStr) -> Sys<u64> {
    // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is writable.
    let r = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(st.f_flag as u64)
    }
}

pub(super) fn pivot_root(new_root: &CStr, put_old: &CStr) -> Sys<()> {
    // SAFETY: both strings are NUL-terminated.
    unit_result(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
}

pub(super) fn chroot(path: &CStr) -> Sys<()> {
    // SAFETY: `path` is NUL-terminated.
    unit_result(unsafe { libc::chroot(path.as_ptr()) } as libc::c_long)
}

pub(super) fn chdir(path: &CStr) -> Sys<()> {
    // SAFETY: `path` is NUL-terminated.
    unit_result(unsafe { libc::chdir(path.as_ptr()) } as libc::c_long)
}

pub(super) fn fchdir(fd: RawFd) -> Sys<()> {
    // SAFETY: plain integer argument.
    unit_result(unsafe { libc::fchdir(fd) } as libc::c_long)
}

pub(super) fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// The mount id of the mount `path` is on (statx STATX_MNT_ID, Linux >= 5.8).
pub(super) fn mount_id(path: &CStr) -> Sys<u64> {
    // SAFETY: an all-zero `statx` is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stx` is writable.
    let r = unsafe { libc::statx(libc::AT_FDCWD, path.as_ptr(), libc::AT_SYMLINK_NOFOLLOW, libc::STATX_MNT_ID, &mut stx) };
    if r < 0 {
        Err(Errno::last())
    } else if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        Err(Errno::ENOSYS)
    } else {
        Ok(stx.stx_mnt_id)
    }
}
