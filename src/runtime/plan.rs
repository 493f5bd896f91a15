//! Everything the child needs, prepared in the parent before clone so that the child — which may be
//! forked from a multi-threaded process — only makes syscalls on memory that already exists.

use crate::runtime::capabilities::{CapsError, CapsPlan};
use crate::runtime::landlock::{self, LandlockError, LandlockPlan};
use crate::runtime::mounts::{MountError, RootfsOptions, RootfsPlan};
use crate::runtime::namespaces::{NamespaceError, NamespacePlan};
use crate::runtime::seccomp::{self, SeccompError, SeccompProgram};
use crate::runtime::spec::Bundle;
use oci_spec::runtime::{Hook, LinuxSeccomp, PosixRlimitType, Process};
use std::ffi::CString;
use std::os::fd::OwnedFd;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{field}: {value:?} contains a NUL byte; remove it")]
    Nul { field: &'static str, value: String },
    #[error("process.rlimits: {0} is not a Linux rlimit; use names like RLIMIT_NOFILE")]
    Rlimit(String),
    #[error("process.rlimits: {0} has soft > hard; make soft ≤ hard")]
    RlimitOrder(String),
    #[error("linux.sysctl: {0:?} is not a valid sysctl name; use dotted names like net.ipv4.ip_forward")]
    Sysctl(String),
    #[error("linux.sysctl: {0:?} is not namespaced, so setting it would change the host's; remove it (only net.*, fs.mqueue.*, kernel.msg*/sem/shm* and kernel.hostname/domainname can be set for a container)")]
    SysctlHost(String),
    #[error(transparent)]
    Caps(#[from] CapsError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Landlock(#[from] LandlockError),
}

fn cstring(field: &'static str, s: &str) -> Result<CString, PlanError> {
    CString::new(s).map_err(|_| PlanError::Nul { field, value: s.into() })
}

/// A NULL-terminated array of pointers into owned CStrings (argv/envp for execve).
#[derive(Debug)]
pub struct CStrArray {
    _owned: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CStrArray {
    pub fn new(field: &'static str, items: &[String]) -> Result<Self, PlanError> {
        let owned = items.iter().map(|s| cstring(field, s)).collect::<Result<Vec<_>, _>>()?;
        let mut ptrs: Vec<_> = owned.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        Ok(Self { _owned: owned, ptrs })
    }
    pub fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }
    /// The first element (argv[0]).
    pub fn first(&self) -> &CString {
        &self._owned[0]
    }
}

fn rlimit_resource(t: &PosixRlimitType) -> Result<libc::__rlimit_resource_t, PlanError> {
    let name = serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    Ok(match name.as_str() {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return Err(PlanError::Rlimit(name)),
    })
}

/// The namespace a sysctl belongs to (runc's list), or None for one that is the host's whatever the
/// container's namespaces are.
fn sysctl_namespace(key: &str) -> Option<(libc::c_int, &'static str)> {
    let k = key.replace('/', ".");
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&k.as_str()) || k.starts_with("fs.mqueue.") {
        Some((libc::CLONE_NEWIPC, "ipc"))
    } else if k == "kernel.hostname" || k == "kernel.domainname" {
        Some((libc::CLONE_NEWUTS, "uts"))
    } else if k.starts_with("net.") {
        Some((libc::CLONE_NEWNET, "network"))
    } else {
        None
    }
}

/// The user process: what `init` (create) or the exec child turns into.
#[derive(Debug)]
pub struct ProcessPlan {
    pub argv: CStrArray,
    pub envp: CStrArray,
    /// Directories of the process's PATH, to resolve argv[0] inside the container.
    pub path_dirs: Vec<CString>,
    pub cwd: CString,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    pub umask: Option<libc::mode_t>,
    pub caps: CapsPlan,
    pub no_new_privs: bool,
    pub seccomp: Option<SeccompProgram>,
    /// A landlock ruleset from the `run.beam.landlock.*` annotations, applied right before seccomp.
    pub landlock: Option<LandlockPlan>,
    pub rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
    /// Connected console socket (--console-socket), when terminal is set.
    pub console: Option<OwnedFd>,
    /// Number of fds after stdio passed through (--preserve-fds).
    pub preserve_fds: i32,
    /// Library callers: fds (open in the parent) that become fds 0, 1, 2, … of the process, right
    /// before execve; `preserve_fds` is then `fds.len() - 3`.
    pub fds: Vec<std::os::fd::RawFd>,
    /// The ASCII text of the command for error messages ("sh" etc.).
    pub name: String,
}

impl ProcessPlan {
    pub fn new(
        process: &Process,
        seccomp: Option<&LinuxSeccomp>,
        annotations: Option<&std::collections::HashMap<String, String>>,
        console: Option<OwnedFd>,
        preserve_fds: i32,
    ) -> Result<Self, PlanError> {
        let landlock = match annotations.map(landlock::parse_annotations).transpose()?.flatten() {
            Some(policy) => Some(LandlockPlan::new(&policy)?).filter(|p| !p.is_noop()),
            None => None,
        };
        let args = process.args().clone().unwrap_or_default();
        let env = process.env().clone().unwrap_or_default();
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        let path_dirs = path.split(':').filter(|d| !d.is_empty()).map(|d| cstring("PATH", d)).collect::<Result<_, _>>()?;
        let mut rlimits = Vec::new();
        for r in process.rlimits().iter().flatten() {
            let res = rlimit_resource(&r.typ())?;
            if r.soft() > r.hard() {
                return Err(PlanError::RlimitOrder(format!("{:?}", r.typ())));
            }
            rlimits.push((res, libc::rlimit { rlim_cur: r.soft(), rlim_max: r.hard() }));
        }
        if process.apparmor_profile().is_some() {
            tracing::warn!("process.apparmorProfile is set but beam-oci does not apply AppArmor profiles; ignored");
        }
        if process.selinux_label().is_some() {
            tracing::warn!("process.selinuxLabel is set but beam-oci does not apply SELinux labels; ignored");
        }
        let user = process.user();
        let console_size = process.console_size().as_ref().map(|b| (b.height() as u16, b.width() as u16));
        Ok(Self {
            name: args.first().cloned().unwrap_or_default(),
            argv: CStrArray::new("process.args", &args)?,
            envp: CStrArray::new("process.env", &env)?,
            path_dirs,
            cwd: cstring("process.cwd", &process.cwd().to_string_lossy())?,
            uid: user.uid(),
            gid: user.gid(),
            groups: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask(),
            caps: CapsPlan::new(process.capabilities().as_ref())?,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            seccomp: seccomp.map(seccomp::compile).transpose()?,
            landlock,
            rlimits,
            terminal: process.terminal().unwrap_or(false),
            console_size,
            console,
            preserve_fds,
            fds: Vec::new(),
        })
    }
}

/// The hooks the child runs itself, in the container's namespaces.
#[derive(Debug, Default)]
pub struct ChildHooks {
    pub create_container: Vec<Hook>,
    pub start_container: Vec<Hook>,
}

impl ChildHooks {
    pub fn is_empty(&self) -> bool {
        self.create_container.is_empty() && self.start_container.is_empty()
    }
}

/// The whole plan for a container's init.
#[derive(Debug)]
pub struct InitPlan {
    pub ns: NamespacePlan,
    pub rootfs: RootfsPlan,
    pub hostname: Option<CString>,
    pub domainname: Option<CString>,
    /// (path under /proc/sys, value)
    pub sysctl: Vec<(CString, CString)>,
    pub process: ProcessPlan,
    pub child_hooks: ChildHooks,
    /// The parent runs createRuntime (and the deprecated prestart) hooks when the child asks.
    pub runtime_hooks: bool,
    /// The listening socket `start` connects to.
    pub start_listener: OwnedFd,
    /// v1 fast path without hooks: the parent sends `Go` before writing cgroup.procs (which can stall
    /// for an RCU grace period) and `CgroupJoined` after; the child mounts in between and unshares its
    /// cgroup namespace only once it is inside the cgroup. With `ns.fork` the parent joins the forked init
    /// (whose pid it learns first). Set by the caller.
    pub late_cgroup: bool,
}

impl InitPlan {
    pub fn new(
        bundle: &Bundle,
        rootfs_opts: &RootfsOptions,
        console: Option<OwnedFd>,
        preserve_fds: i32,
        start_listener: OwnedFd,
    ) -> Result<Self, PlanError> {
        let spec = &bundle.spec;
        let linux = spec.linux().as_ref().expect("validated by Bundle::load");
        let process = spec.process().as_ref().expect("validated by Bundle::load");
        let ns = NamespacePlan::new(linux)?;
        // A namespace type missing from linux.namespaces is the runtime's own: refuse what would change it.
        let own = |flag: libc::c_int, what: &'static str, kind: &'static str| {
            if ns.own & flag == 0 { Err(NamespaceError::Inherited { what, kind }) } else { Ok(()) }
        };
        if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) {
            own(libc::CLONE_NEWUTS, "hostname", "uts")?;
        }
        if spec.domainname().as_deref().is_some_and(|h| !h.is_empty()) {
            own(libc::CLONE_NEWUTS, "domainname", "uts")?;
        }
        let mut sysctl = Vec::new();
        for (k, v) in linux.sysctl().iter().flatten() {
            if k.is_empty() || k.contains("..") || k.contains('/') && k.contains('.') {
                return Err(PlanError::Sysctl(k.clone()));
            }
            match sysctl_namespace(k) {
                Some((flag, kind)) => own(flag, "linux.sysctl", kind)?,
                None => return Err(PlanError::SysctlHost(k.clone())),
            }
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            sysctl.push((cstring("linux.sysctl", &path)?, cstring("linux.sysctl", v)?));
        }
        let hooks = spec.hooks().as_ref();
        let child_hooks = ChildHooks {
            create_container: hooks.and_then(|h| h.create_container().clone()).unwrap_or_default(),
            start_container: hooks.and_then(|h| h.start_container().clone()).unwrap_or_default(),
        };
        #[allow(deprecated)]
        let runtime_hooks = hooks.is_some_and(|h| {
            h.create_runtime().as_ref().is_some_and(|v| !v.is_empty()) || h.prestart().as_ref().is_some_and(|v| !v.is_empty())
        });
        Ok(Self {
            rootfs: RootfsPlan::new(spec, &bundle.rootfs, rootfs_opts)?,
            hostname: spec.hostname().as_deref().map(|h| cstring("hostname", h)).transpose()?,
            domainname: spec.domainname().as_deref().map(|h| cstring("domainname", h)).transpose()?,
            sysctl,
            process: ProcessPlan::new(process, linux.seccomp().as_ref(), spec.annotations().as_ref(), console, preserve_fds)?,
            child_hooks,
            runtime_hooks,
            start_listener,
            ns,
            late_cgroup: false,
        })
    }
}
