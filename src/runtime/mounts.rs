//! The container's root filesystem: rootfs bind, spec mounts, /dev, pivot_root, masked and readonly paths.
//!
//! CONTRACT (used by `plan.rs` in the parent and `init.rs` in the child):
//! - `RootfsPlan::new` runs in the parent before clone: validates every mount, pre-builds every CString.
//! - The child, already in its new mount namespace (and user namespace, with maps written), calls in order:
//!   `prepare_rootfs` (propagation, rootfs bind, spec mounts, /dev + devices + symlinks), then the
//!   createContainer hooks run, then `enter_rootfs` (pivot_root and detach the old root, or chroot with
//!   --no-pivot), then sysctls, then `finalize_rootfs` (maskedPaths, readonlyPaths, readonly root,
//!   final rootfsPropagation). Child-side functions must not allocate on the success path.
//! - Every mount target is resolved inside the rootfs without following symlinks out of it.

use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount {target}: {msg}")]
    Mount { target: String, msg: String },
}

/// How `type: cgroup` mounts are satisfied.
#[derive(Debug, Clone)]
pub enum CgroupMount {
    /// Pure v2: mount cgroup2 (the container is in its own cgroup namespace).
    V2,
    /// v1/hybrid: a tmpfs with one bind mount per hierarchy: (name, host dir of this container's cgroup).
    V1 { hierarchies: Vec<(String, PathBuf)> },
}

#[derive(Debug, Clone)]
pub struct RootfsOptions {
    pub no_pivot: bool,
    pub cgroup: CgroupMount,
    /// The bundle dir: relative bind-mount sources are relative to it.
    pub bundle: PathBuf,
}

#[derive(Debug)]
pub struct RootfsPlan {
    _private: (),
}

impl RootfsPlan {
    /// `rootfs` is absolute and canonical.
    pub fn new(_spec: &Spec, _rootfs: &Path, _opts: &RootfsOptions) -> Result<Self, MountError> {
        Ok(Self { _private: () })
    }
}

pub fn prepare_rootfs(_plan: &RootfsPlan) -> Result<(), MountError> { Ok(()) }
pub fn enter_rootfs(_plan: &RootfsPlan) -> Result<(), MountError> { Ok(()) }
pub fn finalize_rootfs(_plan: &RootfsPlan) -> Result<(), MountError> { Ok(()) }
