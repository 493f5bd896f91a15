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
//!
//! HOW: mounts use the new mount API, never a path the container controls. The destination is opened with
//! `openat2(rootfs_fd, dest, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` (missing pieces created step by
//! step, see [`resolve`]); the mount is built detached (`fsopen`/`fsconfig`/`fsmount` for a new filesystem,
//! `open_tree(OPEN_TREE_CLONE)` for a bind), gets its flags with `mount_setattr` while still detached (so a
//! read-only bind is never writable, and flags locked by a more privileged namespace are kept instead of
//! tripping the EPERM that runc's remount-with-statfs-flags dance works around), and is attached with
//! `move_mount` onto the destination descriptor. Nothing needs `/proc/self/fd`, so the same code works
//! before and after pivot_root. Needs Linux >= 5.12 (mount_setattr); every host beam targets has it.
//!
//! The child-side functions return a [`ChildFailure`] (three integers, `Copy`, no allocation) through the
//! `RootfsPlan::{prepare, enter, finalize}` methods; [`RootfsPlan::explain`] renders one without
//! allocating and [`RootfsPlan::describe`] turns it into a [`MountError`]. The free functions
//! `prepare_rootfs`/`enter_rootfs`/`finalize_rootfs` do the latter for callers that may allocate on error.

mod build;
pub(crate) use build::{MountInfo, mountinfo_of};
mod child;
mod dev;
mod options;
mod resolve;
mod sys;
#[cfg(test)]
mod tests;

use nix::errno::Errno;
use oci_spec::runtime::Spec;
use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong with the container's filesystem. Each message names the mount (index
/// and destination) or path, what failed, and a hint how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The spec asks for something invalid or unsupported (found in the parent, before clone).
    #[error("{what}: {problem} (fix: {hint})")]
    Invalid {
        what: String,
        problem: String,
        hint: String,
    },
    /// A syscall failed in the container's init.
    #[error("{what}: {op} failed: {errno} (hint: {hint})")]
    Sys {
        what: String,
        op: &'static str,
        errno: Errno,
        hint: String,
    },
}

/// How `type: cgroup` mounts are satisfied.
#[derive(Debug, Clone)]
pub enum CgroupMount {
    /// Pure v2: mount cgroup2 (the container is in its own cgroup namespace). Without a cgroup namespace in
    /// the spec the host's /sys/fs/cgroup is bind-mounted instead: a fresh cgroup2 mount from the initial
    /// cgroup namespace would reset the host's global cgroup2 mount options (nsdelegate, ...).
    V2,
    /// v1/hybrid: a tmpfs with one bind mount per hierarchy: (name, host dir of this container's cgroup).
    /// A name like `cpu,cpuacct` also gets `cpu` and `cpuacct` symlinks; `name=systemd` becomes `systemd`.
    V1 { hierarchies: Vec<(String, PathBuf)> },
}

#[derive(Debug, Clone)]
pub struct RootfsOptions {
    /// runc --no-pivot: MS_MOVE the rootfs onto / and chroot instead of pivot_root.
    pub no_pivot: bool,
    pub cgroup: CgroupMount,
    /// The bundle directory: relative bind-mount sources are relative to it.
    pub bundle: PathBuf,
}

/// Which step of the child-side work failed. `index` in [`ChildFailure`] says which mount, device or path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum Step {
    RootPropagation,
    RootfsParentPrivate,
    RootfsBind,
    OpenRootfs,
    ResolveDest,
    NotDir,
    FsOpen,
    FsConfig,
    FsCreate,
    FsMount,
    OpenTree,
    SetAttr,
    MoveMount,
    Propagation,
    Remount,
    CgroupDir,
    CgroupLink,
    DelayedReadonly,
    DevParent,
    DevNode,
    DevBind,
    DevOwner,
    DevMode,
    DevDir,
    DevSymlink,
    DevPtmx,
    OpenOldRoot,
    ChdirRootfs,
    PivotRoot,
    OldRootSlave,
    OldRootDetach,
    ChdirRoot,
    NoPivotHide,
    MoveRoot,
    Chroot,
    OpenNewRoot,
    ReadonlyPath,
    MaskPath,
    DevNull,
    RootReadonly,
    FinalPropagation,
}

/// What a [`Step`]'s index refers to.
enum Subject {
    Rootfs,
    Mount,
    Device,
    Readonly,
    Masked,
    HostMount,
}

impl Step {
    const ALL: [Step; 41] = [
        Step::RootPropagation,
        Step::RootfsParentPrivate,
        Step::RootfsBind,
        Step::OpenRootfs,
        Step::ResolveDest,
        Step::NotDir,
        Step::FsOpen,
        Step::FsConfig,
        Step::FsCreate,
        Step::FsMount,
        Step::OpenTree,
        Step::SetAttr,
        Step::MoveMount,
        Step::Propagation,
        Step::Remount,
        Step::CgroupDir,
        Step::CgroupLink,
        Step::DelayedReadonly,
        Step::DevParent,
        Step::DevNode,
        Step::DevBind,
        Step::DevOwner,
        Step::DevMode,
        Step::DevDir,
        Step::DevSymlink,
        Step::DevPtmx,
        Step::OpenOldRoot,
        Step::ChdirRootfs,
        Step::PivotRoot,
        Step::OldRootSlave,
        Step::OldRootDetach,
        Step::ChdirRoot,
        Step::NoPivotHide,
        Step::MoveRoot,
        Step::Chroot,
        Step::OpenNewRoot,
        Step::ReadonlyPath,
        Step::MaskPath,
        Step::DevNull,
        Step::RootReadonly,
        Step::FinalPropagation,
    ];

    pub fn from_u8(v: u8) -> Option<Step> {
        Self::ALL.get(v as usize).copied()
    }

    fn subject(self) -> Subject {
        use Step::*;
        match self {
            ResolveDest | NotDir | FsOpen | FsConfig | FsCreate | FsMount | OpenTree | SetAttr
            | MoveMount | Propagation | Remount | CgroupDir | CgroupLink | DelayedReadonly => {
                Subject::Mount
            }
            DevParent | DevNode | DevBind | DevOwner | DevMode => Subject::Device,
            ReadonlyPath => Subject::Readonly,
            MaskPath => Subject::Masked,
            NoPivotHide => Subject::HostMount,
            _ => Subject::Rootfs,
        }
    }

    /// What was being done, for messages.
    pub fn op(self) -> &'static str {
        use Step::*;
        match self {
            RootPropagation => {
                "setting the propagation of / (linux.rootfsPropagation, default rslave)"
            }
            RootfsParentPrivate => "making the rootfs' parent mount private",
            RootfsBind => "bind-mounting the rootfs onto itself",
            OpenRootfs => "opening the rootfs",
            ResolveDest => "resolving/creating the destination inside the rootfs",
            NotDir => "checking the destination is a directory",
            FsOpen => "fsopen (filesystem type)",
            FsConfig => "fsconfig (source and options)",
            FsCreate => "creating the filesystem (fsconfig CMD_CREATE)",
            FsMount => "fsmount (mount flags)",
            OpenTree => "opening the bind source (open_tree)",
            SetAttr => "applying mount flags (mount_setattr)",
            MoveMount => "attaching the mount (move_mount)",
            Propagation => "setting the mount's propagation",
            Remount => "remounting",
            CgroupDir => "creating a cgroup hierarchy mount point",
            CgroupLink => "creating a cgroup hierarchy symlink",
            DelayedReadonly => "making the mount read-only after populating it",
            DevParent => "creating the device's directory",
            DevNode => "mknod",
            DevBind => "bind-mounting the host's device node",
            DevOwner => "chown of the device node",
            DevMode => "chmod of the device node",
            DevDir => "opening /dev in the rootfs",
            DevSymlink => "creating the /dev symlinks (fd, stdin, stdout, stderr, core)",
            DevPtmx => "replacing /dev/ptmx with a symlink to pts/ptmx",
            OpenOldRoot => "opening the old root",
            ChdirRootfs => "chdir into the rootfs",
            PivotRoot => "pivot_root",
            OldRootSlave => "making the old root rslave",
            OldRootDetach => "detaching the old root (umount2 MNT_DETACH)",
            ChdirRoot => "chdir(\"/\") in the new root",
            NoPivotHide => "unmounting (or covering) a host proc/sysfs mount before chroot",
            MoveRoot => "moving the rootfs onto / (MS_MOVE)",
            Chroot => "chroot",
            OpenNewRoot => "opening the new root",
            ReadonlyPath => "bind-mounting the path read-only",
            MaskPath => "masking the path",
            DevNull => "opening /dev/null to mask files with",
            RootReadonly => "remounting / read-only (root.readonly)",
            FinalPropagation => "applying linux.rootfsPropagation to /",
        }
    }

    fn hint(self, errno: Errno) -> &'static str {
        use Step::*;
        match (self, errno) {
            (RootPropagation | RootfsBind, Errno::EINVAL | Errno::EPERM) => {
                "the init must run in its own mount namespace (linux.namespaces has \"mount\") as root in it"
            }
            (RootfsBind | OpenRootfs, _) => "root.path must exist and be a directory",
            (ResolveDest, Errno::ENOTDIR) => {
                "a component of the destination is a file in the image; fix the destination"
            }
            (ResolveDest, Errno::EROFS) => {
                "the destination's parent is on a read-only mount: create the mount point in the image or order the mounts differently"
            }
            (ResolveDest, Errno::ELOOP) => {
                "the destination goes through a symlink loop in the image"
            }
            (ResolveDest, _) => "the destination could not be created inside the rootfs",
            (NotDir, _) => {
                "proc and sysfs must be mounted on a real directory, not a symlink or a file"
            }
            (FsOpen, Errno::ENODEV) => {
                "this kernel does not know the filesystem type: fix `type` or load the module"
            }
            (FsConfig, _) => {
                "an entry in `options` (or the source) is not understood by this filesystem: fix or drop it"
            }
            (FsOpen | FsCreate, Errno::EPERM) => {
                "not permitted here: in a user namespace proc needs a new PID namespace, mqueue a new IPC namespace, sysfs a new network namespace, cgroup2 a cgroup namespace"
            }
            (FsCreate, Errno::EBUSY) => {
                "the filesystem is busy or already mounted with other options"
            }
            (FsCreate | FsMount, _) => "check the mount's type, source and options",
            (OpenTree, Errno::ENOENT) => {
                "the bind source does not exist on the host (relative sources are relative to the bundle)"
            }
            (OpenTree, Errno::EINVAL) => "the bind source is on an unbindable mount",
            (OpenTree, _) => "the bind source must be a host path the runtime can open",
            (SetAttr, Errno::EPERM) => {
                "a flag is locked by a more privileged mount namespace; drop the conflicting option"
            }
            (SetAttr, Errno::EINVAL) => {
                "conflicting or unsupported mount options (e.g. an atime option without the others)"
            }
            (MoveMount, Errno::ENOTDIR | Errno::EISDIR) => {
                "a file can only be mounted on a file and a directory on a directory: fix the source or the destination"
            }
            (Propagation, _) => {
                "fix the propagation option (private, shared, slave, unbindable and their r* forms)"
            }
            (Remount, _) => "`remount` needs an existing mount at the destination",
            (CgroupDir | CgroupLink | DelayedReadonly | MoveMount, _) => {
                "check the mount destination and options"
            }
            (DevParent, _) => "the device path's directory could not be created inside the rootfs",
            (DevNode, _) => "check the device's type, major and minor",
            (DevBind, _) => {
                "without CAP_MKNOD (user namespace) the host must have the same device node to bind-mount"
            }
            (DevOwner, _) => "the device's uid/gid must be mapped in the user namespace",
            (DevMode | DevDir | DevSymlink | DevPtmx, _) => {
                "the /dev of the container must be a writable directory (mount a tmpfs at /dev)"
            }
            (PivotRoot, _) => {
                "the rootfs must be a mount point whose parent is not shared and not on ramfs/initramfs (use --no-pivot there)"
            }
            (NoPivotHide | MoveRoot | Chroot, _) => {
                "--no-pivot needs the rootfs on a non-shared mount and CAP_SYS_CHROOT"
            }
            (ReadonlyPath | MaskPath, _) => {
                "the path exists but could not be covered; fix linux.readonlyPaths / linux.maskedPaths"
            }
            (DevNull, _) => {
                "files in maskedPaths are covered with /dev/null, which must be the 1:3 character device: mount a tmpfs at /dev"
            }
            (RootReadonly, _) => {
                "the rootfs could not be made read-only; set root.readonly to false or fix the rootfs mount"
            }
            (FinalPropagation, _) => "fix linux.rootfsPropagation",
            _ => "the runtime needs CAP_SYS_ADMIN in the container's mount namespace",
        }
    }
}

/// A child-side failure: plain integers, cheap to create after fork and to send over a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChildFailure {
    pub step: Step,
    /// Index into the plan's mounts, devices, readonly/masked paths or host mounts, per `step`.
    pub index: u32,
    pub errno: i32,
}

impl ChildFailure {
    pub(crate) fn new(step: Step, index: usize, errno: Errno) -> Self {
        Self {
            step,
            index: index as u32,
            errno: errno as i32,
        }
    }

    pub fn to_bytes(self) -> [u8; 9] {
        let mut b = [0u8; 9];
        b[0] = self.step as u8;
        b[1..5].copy_from_slice(&self.index.to_le_bytes());
        b[5..9].copy_from_slice(&self.errno.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 9]) -> Option<Self> {
        Some(Self {
            step: Step::from_u8(b[0])?,
            index: u32::from_le_bytes([b[1], b[2], b[3], b[4]]),
            errno: i32::from_le_bytes([b[5], b[6], b[7], b[8]]),
        })
    }
}

/// One `key[=value]` fsconfig parameter.
#[derive(Debug)]
struct FsParam {
    pub key: CString,
    pub value: Option<CString>,
}

#[derive(Debug)]
enum MountOp {
    /// A bind mount of a host path (file or directory).
    Bind {
        source: CString,
        recursive: bool,
        file: bool,
    },
    /// A new filesystem; on EPERM/EBUSY at create time, rbind `fallback` (sysfs → /sys) instead.
    Fs {
        fstype: CString,
        source: Option<CString>,
        params: Vec<FsParam>,
        fallback: Option<CString>,
    },
    /// `remount`: change flags (and superblock options) of the mount already at the destination.
    Remount { params: Vec<FsParam> },
    /// cgroup v1: a tmpfs with one bind per hierarchy.
    CgroupV1 {
        tmpfs_params: Vec<FsParam>,
        hierarchies: Vec<CgroupHier>,
    },
}

#[derive(Debug)]
struct CgroupHier {
    pub name: CString,
    pub host: CString,
    pub links: Vec<CString>,
}

#[derive(Debug)]
struct PlannedMount {
    /// For messages: `mounts[3] (tmpfs on /dev/shm)`.
    pub label: String,
    /// The cleaned destination relative to the rootfs, e.g. `dev/shm`.
    pub rel: CString,
    pub op: MountOp,
    /// MOUNT_ATTR_* for this mount (not recursive).
    pub attrs: options::Attrs,
    /// MOUNT_ATTR_* for the whole subtree (`rro`, ...).
    pub rec_attrs: options::Attrs,
    /// MS_{PRIVATE,SHARED,SLAVE,UNBINDABLE} [| MS_REC], applied after attaching.
    pub propagation: Vec<u64>,
    /// Mounted writable, made read-only at the end of `prepare` (tmpfs and /dev, like runc).
    pub ro_later: bool,
    /// proc and sysfs: the destination must be a real directory.
    pub no_symlink_leaf: bool,
}

#[derive(Debug)]
struct PlannedDevice {
    pub label: String,
    pub rel: CString,
    /// S_IFCHR / S_IFBLK / S_IFIFO.
    pub kind: libc::mode_t,
    pub rdev: libc::dev_t,
    pub mode: libc::mode_t,
    pub uid: u32,
    pub gid: u32,
    /// The host node bind-mounted when mknod is not permitted (user namespace).
    pub host: CString,
}

#[derive(Debug)]
struct DevPlan {
    pub devices: Vec<PlannedDevice>,
    /// /dev/fd, /dev/std{in,out,err} (and /dev/core when `kcore`).
    pub links: bool,
    pub kcore: bool,
    /// /dev/ptmx -> pts/ptmx.
    pub ptmx: bool,
}

#[derive(Debug)]
struct PlannedPath {
    pub label: String,
    /// Relative to the container root.
    pub rel: CString,
}

/// Everything the child needs for the root filesystem, allocated before clone.
#[derive(Debug)]
pub struct RootfsPlan {
    rootfs: CString,
    rootfs_label: String,
    root_propagation: u64,
    rootfs_parent_private: Option<CString>,
    mounts: Vec<PlannedMount>,
    dev: Option<DevPlan>,
    readonly_paths: Vec<PlannedPath>,
    masked_paths: Vec<PlannedPath>,
    root_readonly: bool,
    final_propagation: Option<u64>,
    no_pivot: bool,
    /// Host proc/sysfs mounts outside the rootfs, unmounted before chroot with --no-pivot.
    no_pivot_hide: Vec<PlannedPath>,
    /// No mount namespace of the container's own: every mount stays under the rootfs (a recursive bind
    /// of it, which `delete` detaches), `/` is left as it is and the root is entered with chroot.
    inherit_mount_ns: bool,
}

impl RootfsPlan {
    /// `rootfs` is absolute and canonical.
    pub fn new(spec: &Spec, rootfs: &Path, opts: &RootfsOptions) -> Result<Self, MountError> {
        build::build(spec, rootfs, opts)
    }

    /// Whether the container shares the caller's mount namespace (see [`detach_rootfs`]).
    pub fn inherits_mount_ns(&self) -> bool {
        self.inherit_mount_ns
    }

    /// Child side, step 1 (see the module docs). No allocation.
    pub fn prepare(&self) -> Result<(), ChildFailure> {
        child::prepare(self)
    }

    /// Child side, step 2: pivot_root (or MS_MOVE + chroot with no_pivot). No allocation.
    pub fn enter(&self) -> Result<(), ChildFailure> {
        child::enter(self)
    }

    /// Child side, step 3: readonlyPaths, maskedPaths, root.readonly, final propagation. No allocation.
    pub fn finalize(&self) -> Result<(), ChildFailure> {
        child::finalize(self)
    }

    /// A failure as text, without allocating (usable in the child).
    pub fn explain(&self, f: ChildFailure) -> impl fmt::Display + '_ {
        Explain { plan: self, f }
    }

    /// A failure as a [`MountError`].
    pub fn describe(&self, f: ChildFailure) -> MountError {
        let errno = Errno::from_raw(f.errno);
        MountError::Sys {
            what: self.subject_label(f).to_string(),
            op: f.step.op(),
            errno,
            hint: f.step.hint(errno).to_string(),
        }
    }

    fn subject_label(&self, f: ChildFailure) -> &str {
        let i = f.index as usize;
        let label = match f.step.subject() {
            Subject::Rootfs => None,
            Subject::Mount => self.mounts.get(i).map(|m| m.label.as_str()),
            Subject::Device => self
                .dev
                .as_ref()
                .and_then(|d| d.devices.get(i))
                .map(|d| d.label.as_str()),
            Subject::Readonly => self.readonly_paths.get(i).map(|p| p.label.as_str()),
            Subject::Masked => self.masked_paths.get(i).map(|p| p.label.as_str()),
            Subject::HostMount => self.no_pivot_hide.get(i).map(|p| p.label.as_str()),
        };
        label.unwrap_or(&self.rootfs_label)
    }
}

struct Explain<'a> {
    plan: &'a RootfsPlan,
    f: ChildFailure,
}

impl fmt::Display for Explain<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errno = Errno::from_raw(self.f.errno);
        write!(
            out,
            "{}: {} failed: {} (hint: {})",
            self.plan.subject_label(self.f),
            self.f.step.op(),
            errno,
            self.f.step.hint(errno)
        )
    }
}

/// The mount id of whatever is mounted at `path` (statx STATX_MNT_ID).
pub fn mount_id(path: &Path) -> Option<u64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    sys::mount_id(&c).ok()
}

/// For a container that shared the caller's mount namespace: detach the rootfs bind it made (and with it
/// every mount the container's spec put under it), if the mount at `rootfs` is still that one (`id`,
/// recorded by create). Nothing else is touched.
pub fn detach_rootfs(rootfs: &Path, id: u64) -> Result<(), MountError> {
    if mount_id(rootfs) != Some(id) {
        return Ok(());
    }
    nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH).map_err(|errno| MountError::Sys {
        what: format!("root.path {}", rootfs.display()),
        op: "umount2(MNT_DETACH)",
        errno,
        hint: "the container's mounts are still under its rootfs; unmount them with `umount -R` and delete again".into(),
    })
}

pub fn prepare_rootfs(plan: &RootfsPlan) -> Result<(), MountError> {
    plan.prepare().map_err(|f| plan.describe(f))
}

pub fn enter_rootfs(plan: &RootfsPlan) -> Result<(), MountError> {
    plan.enter().map_err(|f| plan.describe(f))
}

pub fn finalize_rootfs(plan: &RootfsPlan) -> Result<(), MountError> {
    plan.finalize().map_err(|f| plan.describe(f))
}
