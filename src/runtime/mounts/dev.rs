//! /dev: device nodes (default ones and `linux.devices`), the usual symlinks, /dev/ptmx. Child side, no
//! allocation.

use super::child::bind_tree;
use super::options::Attrs;
use super::resolve::{self, Leaf};
use super::sys;
use super::{ChildFailure, DevPlan, PlannedDevice, Step};
use nix::errno::Errno;
use std::ffi::CStr;
use std::os::fd::RawFd;

/// (target, name in /dev).
const LINKS: &[(&CStr, &CStr)] = &[
    (c"/proc/self/fd", c"fd"),
    (c"/proc/self/fd/0", c"stdin"),
    (c"/proc/self/fd/1", c"stdout"),
    (c"/proc/self/fd/2", c"stderr"),
];

pub(super) fn setup(root: RawFd, dev: &DevPlan) -> Result<(), ChildFailure> {
    for (i, d) in dev.devices.iter().enumerate() {
        create(root, d).map_err(|(step, e)| ChildFailure::new(step, i, e))?;
    }
    if !dev.links && !dev.ptmx {
        return Ok(());
    }
    let dir = resolve::open_or_create(root, b"dev", Leaf::Dir)
        .map_err(|e| ChildFailure::new(Step::DevDir, 0, e))?;
    if dev.links {
        let kcore: &[(&CStr, &CStr)] = if dev.kcore {
            &[(c"/proc/kcore", c"core")]
        } else {
            &[]
        };
        for (target, name) in LINKS.iter().chain(kcore) {
            match sys::symlinkat(target, dir.raw(), name) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(ChildFailure::new(Step::DevSymlink, 0, e)),
            }
        }
    }
    if dev.ptmx {
        match sys::unlinkat(dir.raw(), c"ptmx", 0) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(ChildFailure::new(Step::DevPtmx, 0, e)),
        }
        sys::symlinkat(c"pts/ptmx", dir.raw(), c"ptmx")
            .map_err(|e| ChildFailure::new(Step::DevPtmx, 0, e))?;
    }
    Ok(())
}

fn create(root: RawFd, d: &PlannedDevice) -> Result<(), (Step, Errno)> {
    let (parent, name) =
        resolve::open_parent(root, d.rel.as_bytes()).map_err(|e| (Step::DevParent, e))?;
    let name = name.cstr().map_err(|e| (Step::DevParent, e))?;
    match sys::mknodat(parent.raw(), name, d.kind | d.mode, d.rdev) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(()), // already there (from the image or a mount): leave it, like runc
        Err(Errno::EPERM) => {
            return bind_host_node(parent.raw(), name, d).map_err(|e| (Step::DevBind, e));
        }
        Err(e) => return Err((Step::DevNode, e)),
    }
    // mknod honours the umask: set the exact mode, then the owner.
    sys::fchmodat(parent.raw(), name, d.mode).map_err(|e| (Step::DevMode, e))?;
    sys::fchownat(parent.raw(), name, d.uid, d.gid).map_err(|e| (Step::DevOwner, e))
}

/// Without CAP_MKNOD (a user namespace): an empty file with the host's node bind-mounted over it.
fn bind_host_node(parent: RawFd, name: &CStr, d: &PlannedDevice) -> sys::Sys<()> {
    let create = libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY;
    match sys::openat(parent, name, create, 0o644) {
        Ok(_) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e),
    }
    let target = sys::openat(parent, name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
    if sys::fstat(target.raw())?.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(Errno::ELOOP);
    }
    let tree = bind_tree(&d.host, false, Attrs::default()).map_err(|(_, e)| e)?;
    sys::move_mount(tree.raw(), target.raw())
}
