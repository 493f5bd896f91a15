//! Namespaces: which are created by clone3, which joined by path (setns), which unshared later.
//!
//! Fast path (crun's trick): when nothing is joined by path and no time namespace is asked for, every
//! new namespace but cgroup is created by the one clone3 call and the child is the container's init.
//! Otherwise the child joins, unshares and forks once more so that the init lands in the pid namespace.
//! The cgroup namespace is always unshared by the child after it is inside its cgroup.

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("linux.namespaces: {0:?} is listed twice; keep one entry per type")]
    Duplicate(String),
    #[error("linux.namespaces: cannot open {kind} namespace {path}: {source}; give the path of an existing namespace (e.g. /proc/<pid>/ns/{kind})")]
    Open { kind: String, path: PathBuf, source: std::io::Error },
    #[error("linux.namespaces: the kernel has no {0} namespaces (/proc/self/ns/{0} is missing); remove that entry")]
    Unsupported(String),
    #[error("{what} needs a {kind} namespace of the container's own, but linux.namespaces has none, so it would change the host's; add {{\"type\":\"{kind}\"}} to linux.namespaces or remove {what}")]
    Inherited { what: &'static str, kind: &'static str },
    #[error("linux.uidMappings/gidMappings: a new user namespace needs both; add mappings such as {{\"containerID\":0,\"hostID\":100000,\"size\":65536}}")]
    NoMappings,
}

fn flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// What the child does with namespaces, prepared in the parent.
#[derive(Debug, Default)]
pub struct NamespacePlan {
    /// CLONE_NEW* flags passed to clone3.
    pub clone_flags: u64,
    /// Namespaces to join by path, in order (user first when joined), as (fd, CLONE_NEW* type).
    pub joins: Vec<(OwnedFd, libc::c_int)>,
    /// A new user namespace that the child unshares itself (slow path) after joining the others.
    pub unshare_user: bool,
    /// The remaining CLONE_NEW* flags the child unshares once it is mapped and in its cgroup.
    pub unshare_flags: libc::c_int,
    /// The child forks once more after unsharing so the init enters the pid (and time) namespace.
    pub fork: bool,
    /// A new user namespace (by clone or unshare): the parent writes these maps.
    pub new_user: bool,
    pub uid_map: String,
    pub gid_map: String,
    /// linux.timeOffsets as written to /proc/self/timens_offsets.
    pub time_offsets: Option<std::ffi::CString>,
    /// Whether the container has a new mount namespace (it always should).
    pub new_mount: bool,
    pub new_uts: bool,
    pub new_pid: bool,
    pub new_net: bool,
    /// CLONE_NEW* flags of every namespace the container has of its own, new or joined by path. A type
    /// missing here is the runtime's own (the spec says it is inherited), so nothing may be changed in it.
    pub own: libc::c_int,
}

fn map_text(maps: &Option<Vec<LinuxIdMapping>>) -> String {
    maps.iter()
        .flatten()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

impl NamespacePlan {
    pub fn new(linux: &Linux) -> Result<Self, NamespaceError> {
        let mut plan = NamespacePlan::default();
        let mut seen = 0;
        let mut new_flags = 0;
        let mut joins = Vec::new();
        let mut user_join = None;
        for ns in linux.namespaces().iter().flatten() {
            let f = flag(ns.typ());
            let name = proc_name(ns.typ());
            if seen & f != 0 {
                return Err(NamespaceError::Duplicate(name.into()));
            }
            seen |= f;
            if !std::path::Path::new("/proc/self/ns").join(name).exists() {
                return Err(NamespaceError::Unsupported(name.into()));
            }
            match ns.path() {
                Some(p) => {
                    let fd = std::fs::File::open(p)
                        .map_err(|source| NamespaceError::Open { kind: name.into(), path: p.clone(), source })?;
                    if f == libc::CLONE_NEWUSER {
                        user_join = Some((OwnedFd::from(fd), f));
                    } else {
                        joins.push((OwnedFd::from(fd), f));
                    }
                }
                None => new_flags |= f,
            }
        }
        plan.own = seen;
        plan.new_user = new_flags & libc::CLONE_NEWUSER != 0;
        plan.new_mount = new_flags & libc::CLONE_NEWNS != 0;
        plan.new_uts = new_flags & libc::CLONE_NEWUTS != 0;
        plan.new_pid = new_flags & libc::CLONE_NEWPID != 0;
        plan.new_net = new_flags & libc::CLONE_NEWNET != 0;
        if plan.new_user {
            if linux.uid_mappings().as_ref().is_none_or(|m| m.is_empty())
                || linux.gid_mappings().as_ref().is_none_or(|m| m.is_empty())
            {
                return Err(NamespaceError::NoMappings);
            }
            plan.uid_map = map_text(linux.uid_mappings());
            plan.gid_map = map_text(linux.gid_mappings());
        }
        if let Some(offsets) = linux.time_offsets().as_ref().filter(|o| !o.is_empty()) {
            if seen & libc::CLONE_NEWTIME == 0 {
                return Err(NamespaceError::Inherited {
                    what: "linux.timeOffsets",
                    kind: "time",
                });
            }
            let text: String = offsets
                .iter()
                .map(|(clock, o)| format!("{clock} {} {}\n", o.secs().unwrap_or(0), o.nanosecs().unwrap_or(0)))
                .collect();
            plan.time_offsets = std::ffi::CString::new(text).ok();
        }
        let joined_pid = seen & libc::CLONE_NEWPID != 0 && new_flags & libc::CLONE_NEWPID == 0;
        let fast = joins.is_empty() && user_join.is_none() && new_flags & libc::CLONE_NEWTIME == 0;
        if fast {
            plan.clone_flags = (new_flags & !libc::CLONE_NEWCGROUP) as u64;
            plan.unshare_flags = new_flags & libc::CLONE_NEWCGROUP;
        } else {
            plan.unshare_user = plan.new_user;
            plan.unshare_flags = new_flags & !libc::CLONE_NEWUSER;
            plan.fork = plan.new_pid || joined_pid || new_flags & libc::CLONE_NEWTIME != 0;
            if let Some(u) = user_join {
                joins.insert(0, u);
            }
        }
        plan.joins = joins;
        Ok(plan)
    }
}
