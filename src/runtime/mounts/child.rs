//! The child side: runs between clone and execve. Async-signal-safe, no allocation on any path here:
//! failures are a `Copy` [`ChildFailure`].

use super::options::Attrs;
use super::resolve::{self, Leaf};
use super::sys::{
    self, AT_RECURSIVE, Fd, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY, MountAttr, OPEN_TREE_CLONE,
};
use super::{ChildFailure, FsParam, MountOp, PlannedMount, RootfsPlan, Step, dev};
use nix::errno::Errno;
use std::ffi::CStr;
use std::os::fd::RawFd;

type StepResult<T> = Result<T, (Step, Errno)>;

fn at(step: Step) -> impl Fn(Errno) -> (Step, Errno) {
    move |e| (step, e)
}

fn fail(step: Step, index: usize) -> impl Fn(Errno) -> ChildFailure {
    move |e| ChildFailure::new(step, index, e)
}

fn setattr(fd: RawFd, recursive: bool, a: Attrs) -> sys::Sys<()> {
    sys::mount_setattr(
        fd,
        recursive,
        &MountAttr {
            attr_set: a.set,
            attr_clr: a.clr,
            ..MountAttr::default()
        },
    )
}

pub(super) fn prepare(plan: &RootfsPlan) -> Result<(), ChildFailure> {
    if !plan.inherit_mount_ns {
        sys::mount(None, c"/", None, plan.root_propagation, None)
            .map_err(fail(Step::RootPropagation, 0))?;
    }
    if let Some(parent) = &plan.rootfs_parent_private {
        sys::mount(None, parent, None, libc::MS_PRIVATE, None)
            .map_err(fail(Step::RootfsParentPrivate, 0))?;
    }
    let bind = libc::MS_BIND | libc::MS_REC;
    sys::mount(Some(&plan.rootfs), &plan.rootfs, None, bind, None)
        .map_err(fail(Step::RootfsBind, 0))?;
    let root = sys::openat(
        libc::AT_FDCWD,
        &plan.rootfs,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .map_err(fail(Step::OpenRootfs, 0))?;
    for (i, m) in plan.mounts.iter().enumerate() {
        mount_one(root.raw(), m).map_err(|(step, e)| ChildFailure::new(step, i, e))?;
    }
    if let Some(d) = &plan.dev {
        dev::setup(root.raw(), d)?;
    }
    for (i, m) in plan.mounts.iter().enumerate().filter(|(_, m)| m.ro_later) {
        let ro = Attrs {
            set: MOUNT_ATTR_RDONLY,
            clr: 0,
        };
        resolve::open_in_root(root.raw(), &m.rel, false)
            .and_then(|fd| setattr(fd.raw(), false, ro))
            .map_err(fail(Step::DelayedReadonly, i))?;
    }
    Ok(())
}

fn mount_one(root: RawFd, m: &PlannedMount) -> StepResult<()> {
    if let MountOp::Remount { params } = &m.op {
        let dst = resolve::open_in_root(root, &m.rel, false).map_err(at(Step::ResolveDest))?;
        if !m.attrs.is_empty() {
            setattr(dst.raw(), false, m.attrs).map_err(at(Step::Remount))?;
        }
        if !params.is_empty() {
            let fs = sys::fspick(dst.raw()).map_err(at(Step::Remount))?;
            configure(fs.raw(), params)?;
            sys::fsconfig_reconfigure(fs.raw()).map_err(at(Step::Remount))?;
        }
        return propagate(dst.raw(), m);
    }
    let leaf = match &m.op {
        MountOp::Bind { file: true, .. } => Leaf::File,
        _ if m.no_symlink_leaf => Leaf::DirNoFollow,
        _ => Leaf::Dir,
    };
    let dst =
        resolve::open_or_create(root, m.rel.as_bytes(), leaf).map_err(at(Step::ResolveDest))?;
    if m.no_symlink_leaf && !sys::fstat(dst.raw()).is_ok_and(|st| sys::is_dir(&st)) {
        return Err((Step::NotDir, Errno::ENOTDIR));
    }
    let tree = match &m.op {
        MountOp::Bind {
            source, recursive, ..
        } => bind_tree(source, *recursive, m.attrs)?,
        MountOp::Fs {
            fstype,
            source,
            params,
            fallback,
        } => {
            match new_fs(fstype, source.as_deref(), params, m.attrs.set) {
                Ok(t) => t,
                Err((Step::FsOpen | Step::FsCreate, Errno::EPERM | Errno::EBUSY))
                    if fallback.is_some() =>
                {
                    // sysfs in a user namespace without its own network namespace, or cgroup2 without a
                    // cgroup namespace: rbind the host's instead, as runc does; unlike runc the flags
                    // (ro, ...) cover the submounts too, so a read-only /sys is read-only throughout.
                    let t = bind_tree(fallback.as_deref().unwrap_or(c"/"), true, Attrs::default())?;
                    setattr(t.raw(), true, m.attrs).map_err(at(Step::SetAttr))?;
                    t
                }
                Err(e) => return Err(e),
            }
        }
        MountOp::CgroupV1 {
            tmpfs_params,
            hierarchies,
        } => return cgroup_v1(dst.raw(), m, tmpfs_params, hierarchies),
        MountOp::Remount { .. } => return Err((Step::Remount, Errno::EINVAL)),
    };
    if !m.rec_attrs.is_empty() {
        setattr(tree.raw(), true, m.rec_attrs).map_err(at(Step::SetAttr))?;
    }
    sys::move_mount(tree.raw(), dst.raw()).map_err(at(Step::MoveMount))?;
    propagate(tree.raw(), m)
}

fn propagate(fd: RawFd, m: &PlannedMount) -> StepResult<()> {
    for &p in &m.propagation {
        let attr = MountAttr {
            propagation: p & !libc::MS_REC,
            ..MountAttr::default()
        };
        sys::mount_setattr(fd, p & libc::MS_REC != 0, &attr).map_err(at(Step::Propagation))?;
    }
    Ok(())
}

fn configure(fs: RawFd, params: &[FsParam]) -> StepResult<()> {
    for p in params {
        sys::fsconfig_param(fs, &p.key, p.value.as_deref()).map_err(at(Step::FsConfig))?;
    }
    Ok(())
}

/// A detached mount of a new filesystem with MOUNT_ATTR_* `attrs`.
fn new_fs(fstype: &CStr, source: Option<&CStr>, params: &[FsParam], attrs: u64) -> StepResult<Fd> {
    let fs = sys::fsopen(fstype).map_err(at(Step::FsOpen))?;
    if let Some(src) = source {
        sys::fsconfig_param(fs.raw(), c"source", Some(src)).map_err(at(Step::FsConfig))?;
    }
    configure(fs.raw(), params)?;
    sys::fsconfig_create(fs.raw()).map_err(at(Step::FsCreate))?;
    sys::fsmount(fs.raw(), attrs).map_err(at(Step::FsMount))
}

/// A detached clone of `source` (a host path) with `attrs` applied to its top mount.
pub(super) fn bind_tree(source: &CStr, recursive: bool, attrs: Attrs) -> StepResult<Fd> {
    let flags = OPEN_TREE_CLONE | if recursive { AT_RECURSIVE } else { 0 };
    let tree = sys::open_tree(libc::AT_FDCWD, source, flags).map_err(at(Step::OpenTree))?;
    if !attrs.is_empty() {
        setattr(tree.raw(), false, attrs).map_err(at(Step::SetAttr))?;
    }
    Ok(tree)
}

fn cgroup_v1(
    dst: RawFd,
    m: &PlannedMount,
    tmpfs_params: &[FsParam],
    hier: &[super::CgroupHier],
) -> StepResult<()> {
    let tmpfs_attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    let tmpfs = new_fs(c"tmpfs", Some(c"tmpfs"), tmpfs_params, tmpfs_attrs)?;
    sys::move_mount(tmpfs.raw(), dst).map_err(at(Step::MoveMount))?;
    for h in hier {
        match sys::mkdirat(tmpfs.raw(), &h.name, 0o755) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err((Step::CgroupDir, e)),
        }
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let target = sys::openat(tmpfs.raw(), &h.name, flags, 0).map_err(at(Step::CgroupDir))?;
        let tree = bind_tree(&h.host, true, m.attrs)?;
        sys::move_mount(tree.raw(), target.raw()).map_err(at(Step::MoveMount))?;
        for link in &h.links {
            match sys::symlinkat(&h.name, tmpfs.raw(), link) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err((Step::CgroupLink, e)),
            }
        }
    }
    if m.attrs.set & MOUNT_ATTR_RDONLY != 0 {
        setattr(
            tmpfs.raw(),
            false,
            Attrs {
                set: MOUNT_ATTR_RDONLY,
                clr: 0,
            },
        )
        .map_err(at(Step::SetAttr))?;
    }
    propagate(tmpfs.raw(), m)
}

pub(super) fn enter(plan: &RootfsPlan) -> Result<(), ChildFailure> {
    if plan.inherit_mount_ns {
        // The caller's mount namespace: `/` must stay what it is for everyone else in it.
        sys::chdir(&plan.rootfs).map_err(fail(Step::ChdirRootfs, 0))?;
        sys::chroot(c".").map_err(fail(Step::Chroot, 0))?;
        return sys::chdir(c"/").map_err(fail(Step::ChdirRoot, 0));
    }
    if plan.no_pivot {
        return enter_no_pivot(plan);
    }
    let dir = libc::O_DIRECTORY | libc::O_RDONLY;
    let old_root = sys::openat(libc::AT_FDCWD, c"/", dir, 0).map_err(fail(Step::OpenOldRoot, 0))?;
    let new_root =
        sys::openat(libc::AT_FDCWD, &plan.rootfs, dir, 0).map_err(fail(Step::ChdirRootfs, 0))?;
    sys::fchdir(new_root.raw()).map_err(fail(Step::ChdirRootfs, 0))?;
    // pivot_root(".", "."): the old root ends up mounted on top of the new one; detach it from there.
    sys::pivot_root(c".", c".").map_err(fail(Step::PivotRoot, 0))?;
    sys::fchdir(old_root.raw()).map_err(fail(Step::PivotRoot, 0))?;
    // rslave first, so that detaching the old root cannot propagate unmounts to the host.
    let slave = libc::MS_SLAVE | libc::MS_REC;
    sys::mount(None, c".", None, slave, None).map_err(fail(Step::OldRootSlave, 0))?;
    sys::umount2(c".", libc::MNT_DETACH).map_err(fail(Step::OldRootDetach, 0))?;
    sys::chdir(c"/").map_err(fail(Step::ChdirRoot, 0))
}

/// runc --no-pivot: hide the host's proc and sysfs mounts (so they cannot make a later proc/sysfs mount
/// look "not too revealing"), MS_MOVE the rootfs onto / and chroot into it. Weaker than pivot_root: the
/// rest of the host's mount tree stays in the namespace, only out of reach of the chroot.
fn enter_no_pivot(plan: &RootfsPlan) -> Result<(), ChildFailure> {
    for (i, p) in plan.no_pivot_hide.iter().enumerate() {
        for _ in 0..16 {
            match sys::umount2(&p.rel, libc::MNT_DETACH) {
                Ok(()) => continue, // stacked mounts: repeat until nothing is left
                Err(Errno::EINVAL | Errno::ENOENT) => break,
                Err(Errno::EPERM) => {
                    let tmpfs = Some(c"tmpfs");
                    sys::mount(tmpfs, &p.rel, tmpfs, libc::MS_RDONLY, None)
                        .map_err(fail(Step::NoPivotHide, i))?;
                    break;
                }
                Err(e) => return Err(ChildFailure::new(Step::NoPivotHide, i, e)),
            }
        }
    }
    sys::chdir(&plan.rootfs).map_err(fail(Step::ChdirRootfs, 0))?;
    sys::mount(Some(&plan.rootfs), c"/", None, libc::MS_MOVE, None)
        .map_err(fail(Step::MoveRoot, 0))?;
    sys::chroot(c".").map_err(fail(Step::Chroot, 0))?;
    sys::chdir(c"/").map_err(fail(Step::ChdirRoot, 0))
}

pub(super) fn finalize(plan: &RootfsPlan) -> Result<(), ChildFailure> {
    let root = sys::openat(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(fail(Step::OpenNewRoot, 0))?;
    let locked_down = Attrs {
        set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        clr: 0,
    };
    for (i, p) in plan.readonly_paths.iter().enumerate() {
        let fd = match resolve::open_in_root(root.raw(), &p.rel, false) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(ChildFailure::new(Step::ReadonlyPath, i, e)),
        };
        let flags = OPEN_TREE_CLONE | AT_RECURSIVE;
        let tree = sys::open_tree(fd.raw(), c"", flags).map_err(fail(Step::ReadonlyPath, i))?;
        setattr(tree.raw(), true, locked_down).map_err(fail(Step::ReadonlyPath, i))?;
        sys::move_mount(tree.raw(), fd.raw()).map_err(fail(Step::ReadonlyPath, i))?;
    }
    let mut dev_null: Option<Fd> = None;
    for (i, p) in plan.masked_paths.iter().enumerate() {
        let fd = match resolve::open_in_root(root.raw(), &p.rel, false) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(ChildFailure::new(Step::MaskPath, i, e)),
        };
        let st = sys::fstat(fd.raw()).map_err(fail(Step::MaskPath, i))?;
        let tree = if sys::is_dir(&st) {
            new_fs(c"tmpfs", Some(c"tmpfs"), &[], MOUNT_ATTR_RDONLY)
                .map_err(|(_, e)| ChildFailure::new(Step::MaskPath, i, e))?
        } else {
            if dev_null.is_none() {
                dev_null = Some(open_dev_null(root.raw()).map_err(fail(Step::DevNull, 0))?);
            }
            let null = dev_null.as_ref().map_or(-1, Fd::raw);
            sys::open_tree(null, c"", OPEN_TREE_CLONE).map_err(fail(Step::MaskPath, i))?
        };
        sys::move_mount(tree.raw(), fd.raw()).map_err(fail(Step::MaskPath, i))?;
    }
    if plan.root_readonly {
        // runc's setReadonly: a plain read-only remount, or with the flags the kernel insists on keeping.
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
        match sys::mount(None, c"/", None, flags, None) {
            Ok(()) => {}
            Err(Errno::EPERM) => {
                let have = sys::statfs_flags(c"/").map_err(fail(Step::RootReadonly, 0))?;
                sys::mount(None, c"/", None, flags | have, None)
                    .map_err(fail(Step::RootReadonly, 0))?;
            }
            Err(e) => return Err(ChildFailure::new(Step::RootReadonly, 0, e)),
        }
    }
    if let Some(p) = plan.final_propagation {
        sys::mount(None, c"/", None, p, None).map_err(fail(Step::FinalPropagation, 0))?;
    }
    Ok(())
}

/// The container's /dev/null, checked to be the real 1:3 character device (not a symlink or a file
/// planted to redirect the mask; cf. CVE-2025-31133).
fn open_dev_null(root: RawFd) -> sys::Sys<Fd> {
    let fd = resolve::open_in_root(root, c"dev/null", true)?;
    let st = sys::fstat(fd.raw())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        return Err(Errno::ENODEV);
    }
    Ok(fd)
}
