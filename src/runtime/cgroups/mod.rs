//! cgroups for containers, on a pure cgroup v2 host and on a v1/hybrid host, detected at run time.
//!
//! CONTRACT (used by `verbs/*` in the runtime parent process; never in the cloned child):
//! - `Cgroup::new(cgroups_path, id)` resolves `linux.cgroupsPath` (absolute, or relative to the `/beam`
//!   parent; default `/beam/<id>`); nothing is created yet. Serializable so `state.json` can keep it.
//! - `create()` makes the dirs (every v1 hierarchy, or the v2 dir with controllers enabled in parents).
//! - `apply(&LinuxResources)` writes limits; also used by `update`.
//! - `v2_dir_fd()` → an O_PATH|O_DIRECTORY|O_CLOEXEC fd of the v2 leaf for clone3(CLONE_INTO_CGROUP),
//!   `None` on v1/hybrid (then `add_pid` writes cgroup.procs of every hierarchy).
//! - `freeze()/thaw()/is_frozen()`, `pids()`, `kill_all(sig)`, `stats()`, `oom_kill_count()`, `destroy()`.
//!
//! Never touch /sys/fs/cgroup/memory/process_api; never unmount or remount cgroup hierarchies.
//!
//! Why our own module rather than `cgroups-rs`: its hybrid handling mixes the unified hierarchy with the
//! v1 ones, it has no cgroup.kill, no bounded freezer wait and no OCI swap/weight conversions, and its
//! errors do not name the file and value. What a runtime needs is a few hundred lines of file writes.
//!
//! Layout (detected once per process from /proc/self/mountinfo):
//! - pure v2: cgroup2 at /sys/fs/cgroup; one leaf dir; controllers enabled top-down in ancestors.
//! - hybrid: v1 controllers at /sys/fs/cgroup/<ctrl> carry the limits; the process also joins
//!   `<unified>/<path>` (best effort) so that `0::` in /proc/<pid>/cgroup names the container.
//! - legacy v1: as hybrid without the unified hierarchy.
//!
//! Device rules (linux.resources.devices): v1 writes devices.allow/deny; v2 compiles them to an eBPF
//! program attached to the cgroup (`devices_bpf`), replaced atomically on `update`.

mod devices_bpf;
mod stats;
#[cfg(test)]
mod tests;
mod v1;
mod v2;

pub use stats::*;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {msg}")]
    Io { path: String, msg: String },
    #[error("cgroup: cannot write {value:?} to {file}: {err}; {hint}")]
    Write {
        file: String,
        value: String,
        err: std::io::Error,
        hint: String,
    },
    #[error("invalid cgroupsPath {path:?}: {msg}")]
    InvalidPath { path: String, msg: String },
    #[error("cgroup: {0}")]
    Unsupported(String),
    #[error("cgroup {path}: timed out after {waited:?} {what}")]
    Timeout {
        path: String,
        what: String,
        waited: Duration,
    },
}

impl CgroupError {
    pub(crate) fn io(path: &Path, err: impl std::fmt::Display) -> Self {
        CgroupError::Io {
            path: path.display().to_string(),
            msg: err.to_string(),
        }
    }
}

/// Which cgroup layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupMode {
    /// cgroup2 at /sys/fs/cgroup, all controllers there.
    V2,
    /// v1 controllers plus a cgroup2 hierarchy (usually /sys/fs/cgroup/unified) without useful controllers.
    Hybrid,
    /// v1 controllers only.
    V1,
}

/// The v1 controllers whose hierarchies a container joins.
pub(crate) const V1_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "freezer", "devices",
];

/// One mounted v1 hierarchy (co-mounted controllers such as `cpu,cpuacct` share one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Mount {
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    V2 {
        root: PathBuf,
    },
    V1 {
        mounts: Vec<V1Mount>,
        unified: Option<PathBuf>,
    },
}

impl Layout {
    /// Parses /proc/self/mountinfo text. Only hierarchies with a controller we use are kept.
    pub(crate) fn parse(mountinfo: &str) -> Option<Layout> {
        let mut v2: Vec<PathBuf> = vec![];
        let mut mounts: Vec<V1Mount> = vec![];
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mut post = post.split_whitespace();
            let (fstype, _src, opts) = (post.next(), post.next(), post.next().unwrap_or(""));
            let Some(mp) = pre.split_whitespace().nth(4) else {
                continue;
            };
            let mp = PathBuf::from(mp.replace("\\040", " "));
            match fstype {
                Some("cgroup2") => v2.push(mp),
                Some("cgroup") => {
                    let controllers: Vec<String> = opts
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o))
                        .map(str::to_string)
                        .collect();
                    let dup = mounts
                        .iter()
                        .any(|m| controllers.iter().any(|c| m.controllers.contains(c)));
                    if !controllers.is_empty() && !dup {
                        mounts.push(V1Mount {
                            controllers,
                            mountpoint: mp,
                        });
                    }
                }
                _ => {}
            }
        }
        let sys = Path::new("/sys/fs/cgroup");
        if let Some(root) = v2.iter().find(|p| p.as_path() == sys) {
            return Some(Layout::V2 { root: root.clone() });
        }
        if !mounts.is_empty() {
            let unified = v2
                .iter()
                .find(|p| p.as_path() == sys.join("unified"))
                .or_else(|| v2.first())
                .cloned();
            return Some(Layout::V1 { mounts, unified });
        }
        v2.first().map(|root| Layout::V2 { root: root.clone() })
    }

    /// The host's layout, read once per process.
    pub(crate) fn get() -> Result<&'static Layout, CgroupError> {
        static LAYOUT: OnceLock<Result<Layout, String>> = OnceLock::new();
        LAYOUT
            .get_or_init(|| {
                let text = std::fs::read_to_string("/proc/self/mountinfo")
                    .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
                Layout::parse(&text).ok_or_else(|| {
                    "no cgroup filesystem is mounted (expected cgroup2 at /sys/fs/cgroup or v1 \
                     controllers under it); mount one before starting containers"
                        .to_string()
                })
            })
            .as_ref()
            .map_err(|e| CgroupError::Unsupported(e.clone()))
    }

    pub(crate) fn mode(&self) -> CgroupMode {
        match self {
            Layout::V2 { .. } => CgroupMode::V2,
            Layout::V1 {
                unified: Some(_), ..
            } => CgroupMode::Hybrid,
            Layout::V1 { unified: None, .. } => CgroupMode::V1,
        }
    }
}

/// The host's cgroup layout (pure v2, hybrid or legacy v1).
pub fn mode() -> Result<CgroupMode, CgroupError> {
    Ok(Layout::get()?.mode())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Cgroup {
    /// The cgroup path relative to each hierarchy's mount point, e.g. `/beam/<id>`.
    pub path: String,
}

impl Cgroup {
    /// Resolves `linux.cgroupsPath`: absolute as is, relative under `/beam`, default `/beam/<id>`.
    pub fn new(cgroups_path: Option<&str>, id: &str) -> Result<Self, CgroupError> {
        let bad = |msg: &str| CgroupError::InvalidPath {
            path: cgroups_path.unwrap_or(id).to_string(),
            msg: msg.to_string(),
        };
        let raw = match cgroups_path.filter(|p| !p.is_empty()) {
            Some(p) if p.starts_with('/') => p.to_string(),
            Some(p) if p.split(':').count() == 3 => {
                return Err(bad(
                    "this is the systemd `slice:prefix:name` form; pass --systemd-cgroup to use the \
                     systemd cgroup driver, or give a cgroupfs path such as /beam/<id>",
                ));
            }
            Some(p) => format!("/beam/{p}"),
            None => format!("/beam/{id}"),
        };
        let mut parts = vec![];
        for c in raw.split('/').filter(|c| !c.is_empty()) {
            if c == ".." || c == "." {
                return Err(bad(
                    "`.` and `..` components are not allowed; give a plain path like /beam/<id>",
                ));
            }
            parts.push(c);
        }
        if parts.is_empty() {
            return Err(bad(
                "names the root cgroup; a container needs its own cgroup such as /beam/<id>",
            ));
        }
        Ok(Self {
            path: format!("/{}", parts.join("/")),
        })
    }

    /// Re-checks a path that may come from state.json: absolute, normalised, not the root, no `..`.
    /// Guards the calls that remove or signal (destroy, kill_all) against a hand-edited state.
    fn validate(&self) -> Result<(), CgroupError> {
        match Cgroup::new(Some(&self.path), "") {
            Ok(c) if c.path == self.path => Ok(()),
            Ok(_) => Err(CgroupError::InvalidPath {
                path: self.path.clone(),
                msg: "not in normal form (absolute, no empty components)".into(),
            }),
            Err(e) => Err(e),
        }
    }

    /// The path relative to a hierarchy mount point (no leading `/`).
    fn rel(&self) -> &str {
        self.path.trim_start_matches('/')
    }

    /// `(hierarchy name, host dir of this cgroup)` for each v1 hierarchy (e.g. `("cpu,cpuacct", …)`),
    /// or the one v2 dir as `("", …)`; for bind-mounting into a container's /sys/fs/cgroup.
    pub fn hierarchy_dirs(&self) -> Result<Vec<(String, PathBuf)>, CgroupError> {
        Ok(match Layout::get()? {
            Layout::V2 { root } => vec![(String::new(), root.join(self.rel()))],
            Layout::V1 { mounts, .. } => mounts
                .iter()
                .map(|m| (m.controllers.join(","), m.mountpoint.join(self.rel())))
                .collect(),
        })
    }

    /// Every dir this cgroup has (v1 hierarchies + the unified one on hybrid, or the v2 leaf).
    fn all_dirs(&self) -> Result<Vec<PathBuf>, CgroupError> {
        Ok(match Layout::get()? {
            Layout::V2 { root } => vec![root.join(self.rel())],
            Layout::V1 { mounts, unified } => mounts
                .iter()
                .map(|m| m.mountpoint.join(self.rel()))
                .chain(unified.iter().map(|u| u.join(self.rel())))
                .collect(),
        })
    }

    /// Creates the cgroup (idempotent: an existing cgroup is joined as is).
    pub fn create(&self) -> Result<(), CgroupError> {
        self.validate()?;
        match Layout::get()? {
            Layout::V2 { root } => v2::create(root, self.rel()),
            Layout::V1 { mounts, unified } => v1::create(mounts, unified.as_deref(), self.rel()),
        }
    }

    /// Writes `linux.resources`; also used by `update` on a running container.
    pub fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        match Layout::get()? {
            Layout::V2 { root } => v2::apply(&root.join(self.rel()), r),
            Layout::V1 { mounts, .. } => v1::apply(&v1::Dirs::new(mounts, self.rel()), r),
        }
    }

    /// On pure v2: an `O_PATH|O_DIRECTORY|O_CLOEXEC` fd of the leaf for clone3(CLONE_INTO_CGROUP).
    pub fn v2_dir_fd(&self) -> Result<Option<OwnedFd>, CgroupError> {
        let Layout::V2 { root } = Layout::get()? else {
            return Ok(None);
        };
        let dir = root.join(self.rel());
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&dir)
            .map_err(|e| CgroupError::io(&dir, format!("open: {e}; was create() called?")))?;
        Ok(Some(OwnedFd::from(f)))
    }

    /// Moves `pid` (a whole process) into this cgroup in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        match Layout::get()? {
            Layout::V2 { root } => write_file(
                &root.join(self.rel()).join("cgroup.procs"),
                &pid.to_string(),
            ),
            Layout::V1 { mounts, unified } => {
                for m in mounts {
                    write_file(
                        &m.mountpoint.join(self.rel()).join("cgroup.procs"),
                        &pid.to_string(),
                    )?;
                }
                if let Some(u) = unified {
                    let f = u.join(self.rel()).join("cgroup.procs");
                    if let Err(e) = write_file(&f, &pid.to_string()) {
                        tracing::warn!(
                            "joining the unified hierarchy (optional on hybrid hosts): {e}"
                        );
                    }
                }
                Ok(())
            }
        }
    }

    /// Freezes every process and waits (bounded) until the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        match Layout::get()? {
            Layout::V2 { root } => v2::set_frozen(&root.join(self.rel()), true),
            Layout::V1 { mounts, .. } => v1::set_frozen(&v1::Dirs::new(mounts, self.rel()), true),
        }
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        match Layout::get()? {
            Layout::V2 { root } => v2::set_frozen(&root.join(self.rel()), false),
            Layout::V1 { mounts, .. } => v1::set_frozen(&v1::Dirs::new(mounts, self.rel()), false),
        }
    }

    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match Layout::get()? {
            Layout::V2 { root } => v2::is_frozen(&root.join(self.rel())),
            Layout::V1 { mounts, .. } => v1::is_frozen(&v1::Dirs::new(mounts, self.rel())),
        }
    }

    /// Every pid in this cgroup and its descendants; empty when the cgroup does not exist.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let dir = match Layout::get()? {
            Layout::V2 { root } => root.join(self.rel()),
            Layout::V1 { mounts, .. } => v1::Dirs::new(mounts, self.rel()).procs_dir()?,
        };
        let mut out = vec![];
        collect_pids(&dir, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Sends `sig` to every process. SIGKILL on v2 uses cgroup.kill; otherwise the cgroup is frozen while
    /// signalling so that forks cannot escape, then thawed (left frozen if it was paused and `sig` is not
    /// SIGKILL). Refuses a cgroup that contains this very process.
    pub fn kill_all(&self, sig: nix::sys::signal::Signal) -> Result<(), CgroupError> {
        use nix::sys::signal::Signal;
        self.validate()?;
        let me = std::process::id() as i32;
        if self.pids()?.contains(&me) {
            return Err(CgroupError::Unsupported(format!(
                "refusing to signal every process of {}: it contains beam itself (pid {me})",
                self.path
            )));
        }
        if let Layout::V2 { root } = Layout::get()? {
            let kill = root.join(self.rel()).join("cgroup.kill");
            if sig == Signal::SIGKILL && kill.exists() {
                return write_file(&kill, "1");
            }
        }
        let was_frozen = self.is_frozen().unwrap_or(false);
        let froze = match self.freeze() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    "kill_all: cannot freeze {} first ({e}); signalling without freezing",
                    self.path
                );
                false
            }
        };
        let mut result = Ok(());
        for pid in self.pids()? {
            match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => {
                    result = Err(CgroupError::Io {
                        path: self.path.clone(),
                        msg: format!("kill {pid}: {e}"),
                    })
                }
            }
        }
        if froze && (!was_frozen || sig == Signal::SIGKILL) {
            self.thaw()?;
        }
        result
    }

    /// Usage and limits in the shape of runc's `events --stats`.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match Layout::get()? {
            Layout::V2 { root } => stats::v2_stats(&root.join(self.rel())),
            Layout::V1 { mounts, .. } => stats::v1_stats(&v1::Dirs::new(mounts, self.rel())),
        }
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        let (file, dir) = match Layout::get()? {
            Layout::V2 { root } => ("memory.events", root.join(self.rel())),
            Layout::V1 { mounts, .. } => (
                "memory.oom_control",
                v1::Dirs::new(mounts, self.rel()).need("memory")?,
            ),
        };
        let text = read_string(&dir.join(file))?;
        Ok(keyed(&text, "oom_kill").unwrap_or(0))
    }

    /// Removes the cgroup (and any sub-cgroups the container made) in every hierarchy, once its
    /// processes are gone (waits up to 5 s). A missing cgroup is fine. Shared parents stay.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        self.validate()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.pids()?;
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(CgroupError::Io {
                    path: self.path.clone(),
                    msg: format!(
                        "still has processes {left:?}; kill them first (kill_all(SIGKILL))"
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for dir in self.all_dirs()? {
            remove_tree(&dir, deadline)?;
        }
        Ok(())
    }
}

/// rmdir `dir` after its sub-cgroups, retrying EBUSY (exiting tasks) until `deadline`.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CgroupError::io(dir, format!("read dir: {e}"))),
    };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&e.path(), deadline)?;
        }
    }
    let mut pause = Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(CgroupError::io(
                    dir,
                    format!("rmdir: {e}; are processes still inside (cgroup.procs)?"),
                ));
            }
        }
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let text = match std::fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(CgroupError::io(
                &dir.join("cgroup.procs"),
                format!("read: {e}"),
            ));
        }
    };
    out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

/// Writes `value` to a cgroup control file in a single write(2), naming file, value and a fix on error.
pub(crate) fn write_file(file: &Path, value: &str) -> Result<(), CgroupError> {
    let res = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .and_then(|mut f| f.write(value.as_bytes()).map(|_| ()));
    res.map_err(|err| CgroupError::Write {
        file: file.display().to_string(),
        value: value.to_string(),
        hint: hint(file, &err),
        err,
    })
}

/// How to fix a failed write, by file and errno.
fn hint(file: &Path, err: &std::io::Error) -> String {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let memory = name.starts_with("memory.");
    match err.raw_os_error().unwrap_or(0) {
        libc::ENOENT if file.parent().is_some_and(|d| !d.exists()) => {
            "the cgroup dir does not exist: create the cgroup first, or the container is gone".into()
        }
        libc::ENOENT => "the file does not exist: the controller is not enabled for this cgroup (v2: the \
             parent's cgroup.subtree_control) or the kernel lacks the feature; remove the setting from \
             config.json"
            .into(),
        libc::EACCES | libc::EPERM => "permission denied: run as root, or delegate the cgroup to this user".into(),
        libc::EROFS => "the cgroup filesystem is mounted read-only here".into(),
        libc::EOPNOTSUPP => "this kernel does not support the setting; remove it from config.json".into(),
        libc::EBUSY if memory => "current usage is above the new limit; raise the limit or free memory".into(),
        libc::EBUSY if name == "cgroup.procs" => "v2 allows processes only in leaf cgroups; use a cgroup \
             without child cgroups that have controllers enabled"
            .into(),
        libc::EBUSY if name.starts_with("cpuset.") => {
            "a child cgroup or a running task uses CPUs/memory nodes being removed".into()
        }
        libc::ENOSPC if name == "cgroup.procs" => {
            "the cgroup's cpuset.cpus or cpuset.mems is empty; set linux.resources.cpu.cpus/mems".into()
        }
        libc::EINVAL if name.starts_with("memory.memsw") || name == "memory.swap.max" => {
            "memory.swap (memory+swap) must be ≥ memory.limit, and the memory limit is set first".into()
        }
        libc::EINVAL if memory => "invalid or out-of-range byte count (-1 means unlimited)".into(),
        libc::EINVAL if name.starts_with("cpuset.") => {
            "CPUs/memory nodes must exist and be a subset of the parent's (see the parent's cpuset.cpus.effective)"
                .into()
        }
        libc::EINVAL if name.starts_with("cpu.") => {
            "cpu quota must be ≥ 1000 µs or -1, the period 1000..=1000000 µs, the weight 1..=10000".into()
        }
        libc::EINVAL if name.starts_with("devices.") => {
            "a device rule must look like `c 1:3 rwm`, and a child cannot allow what its parent denies".into()
        }
        libc::EINVAL => "the kernel rejected the value; check its format and range".into(),
        _ => "see the kernel's cgroup documentation for this file".into(),
    }
}

pub(crate) fn read_string(file: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(file).map_err(|e| CgroupError::io(file, format!("read: {e}")))
}

/// A single-number file; `max` reads as `u64::MAX`.
pub(crate) fn read_u64(file: &Path) -> Result<u64, CgroupError> {
    let s = read_string(file)?;
    parse_u64(s.trim())
        .ok_or_else(|| CgroupError::io(file, format!("not a number: {:?}", s.trim())))
}

pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s == "max" {
        Some(u64::MAX)
    } else {
        s.parse().ok()
    }
}

/// The value of `key` in a `key value` per line file (memory.stat, cpu.stat, memory.events, …).
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key { parse_u64(v.trim()) } else { None }
    })
}

/// Polls `cond` with backoff until it holds or `timeout` passes; returns whether it held.
pub(crate) fn await_cond(
    timeout: Duration,
    mut cond: impl FnMut() -> Result<bool, CgroupError>,
) -> Result<bool, CgroupError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        if cond()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// OCI `cpu.shares` (2..=262144) → v2 `cpu.weight` (1..=10000), the conversion runc and crun use.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        0
    } else {
        1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
    }
}

/// OCI blkio weight (10..=1000) → v2 `io.weight` (1..=10000), as runc converts it.
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        0
    } else {
        1 + (u64::from(w).clamp(10, 1000) - 10) * 9999 / 990
    }
}
