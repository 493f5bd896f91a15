//! cgroup v1 (legacy and hybrid hosts): one dir per mounted controller hierarchy.

use super::{CgroupError, V1Mount, await_cond, read_string, write_file};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxResources,
    LinuxThrottleDevice,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// This cgroup's dir in each mounted v1 hierarchy.
pub(crate) struct Dirs<'a> {
    mounts: &'a [V1Mount],
    rel: &'a str,
}

impl<'a> Dirs<'a> {
    pub(crate) fn new(mounts: &'a [V1Mount], rel: &'a str) -> Self {
        Self { mounts, rel }
    }

    /// The dir in the hierarchy of `ctrl`, if that controller is mounted.
    pub(crate) fn get(&self, ctrl: &str) -> Option<PathBuf> {
        self.mounts
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == ctrl))
            .map(|m| m.mountpoint.join(self.rel))
    }

    /// Like [`get`](Self::get), or an error that says which controller is missing.
    pub(crate) fn need(&self, ctrl: &str) -> Result<PathBuf, CgroupError> {
        self.get(ctrl).ok_or_else(|| {
            CgroupError::Unsupported(format!(
                "the v1 `{ctrl}` controller is not mounted (no cgroup mount with option `{ctrl}` in \
                 /proc/self/mountinfo); mount it under /sys/fs/cgroup/{ctrl} or drop the setting from config.json"
            ))
        })
    }

    /// The hierarchy whose cgroup.procs lists the container's processes.
    pub(crate) fn procs_dir(&self) -> Result<PathBuf, CgroupError> {
        [
            "pids", "memory", "freezer", "cpu", "cpuacct", "devices", "blkio", "cpuset",
        ]
        .iter()
        .find_map(|c| self.get(c))
        .ok_or_else(|| CgroupError::Unsupported("no v1 controller hierarchy is mounted".into()))
    }
}

pub(crate) fn create(
    mounts: &[V1Mount],
    unified: Option<&Path>,
    rel: &str,
) -> Result<(), CgroupError> {
    for m in mounts {
        let dir = m.mountpoint.join(rel);
        std::fs::create_dir_all(&dir).map_err(|e| CgroupError::io(&dir, format!("mkdir: {e}")))?;
        if m.controllers.iter().any(|c| c == "cpuset") {
            init_cpuset(&m.mountpoint, rel)?;
        }
    }
    if let Some(u) = unified {
        let dir = u.join(rel);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(
                "mkdir {} in the unified hierarchy (optional on hybrid hosts): {e}",
                dir.display()
            );
        }
    }
    Ok(())
}

/// v1 cpuset dirs start with empty cpuset.cpus/mems, and no task can join them until they are filled:
/// copy each from the parent, top down.
fn init_cpuset(mountpoint: &Path, rel: &str) -> Result<(), CgroupError> {
    let mut parent = mountpoint.to_path_buf();
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        let dir = parent.join(comp);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let own = read_string(&dir.join(file))?;
            if own.trim().is_empty() {
                let from = read_string(&parent.join(file))?;
                write_file(&dir.join(file), from.trim())?;
            }
        }
        parent = dir;
    }
    Ok(())
}

pub(crate) fn apply(d: &Dirs, r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(m) = r.memory() {
        memory(&d.need("memory")?, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(d, c)?;
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        write_file(&d.need("pids")?.join("pids.max"), &v)?;
    }
    if let Some(b) = r.block_io() {
        match d.get("blkio") {
            Some(dir) => blkio(&dir, b)?,
            None => {
                tracing::warn!("linux.resources.blockIO ignored: no v1 blkio hierarchy is mounted")
            }
        }
    }
    if let Some(rules) = r.devices().as_ref().filter(|r| !r.is_empty()) {
        devices(&d.need("devices")?, rules)?;
    }
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(CgroupError::Unsupported(
            "linux.resources.unified needs cgroup v2, but this host's controllers are on cgroup v1; remove \
             `unified` from config.json or boot with systemd.unified_cgroup_hierarchy=1"
                .into(),
        ));
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        tracing::warn!(
            "linux.resources.hugepageLimits ignored: the v1 hugetlb hierarchy is not used"
        );
    }
    if r.network().is_some() {
        tracing::warn!(
            "linux.resources.network ignored: net_cls/net_prio hierarchies are not used"
        );
    }
    if r.rdma().as_ref().is_some_and(|h| !h.is_empty()) {
        tracing::warn!("linux.resources.rdma ignored: the rdma hierarchy is not used");
    }
    Ok(())
}

fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    let has_memsw = dir.join("memory.memsw.limit_in_bytes").exists();
    let limit = m.limit();
    // OCI (as runc): an unlimited memory limit with no swap setting means unlimited swap too.
    let mut swap = match (limit, m.swap()) {
        (Some(-1), None) => Some(-1),
        (_, s) => s,
    };
    if swap.is_some() && !has_memsw {
        if m.swap().is_some() {
            tracing::warn!(
                "linux.resources.memory.swap ignored: {} has no memory.memsw.* (swap accounting off; boot \
                 with swapaccount=1 to enable)",
                dir.display()
            );
        }
        swap = None;
    }
    if let (Some(l), Some(s)) = (limit, swap)
        && l > 0
        && s >= 0
        && s < l
    {
        return Err(CgroupError::Unsupported(format!(
            "linux.resources.memory.swap ({s}) is memory+swap and must be ≥ memory.limit ({l}), or -1"
        )));
    }
    let lim_file = dir.join("memory.limit_in_bytes");
    let sw_file = dir.join("memory.memsw.limit_in_bytes");
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // memsw must stay ≥ the memory limit at every moment: raise memsw first when the limit grows.
            let cur: i64 = read_string(&lim_file)?.trim().parse().unwrap_or(i64::MAX);
            if l == -1 || l > cur {
                write_file(&sw_file, &s.to_string())?;
                write_file(&lim_file, &l.to_string())?;
            } else {
                write_file(&lim_file, &l.to_string())?;
                write_file(&sw_file, &s.to_string())?;
            }
        }
        (Some(l), None) => write_file(&lim_file, &l.to_string())?,
        (None, Some(s)) => write_file(&sw_file, &s.to_string())?,
        (None, None) => {}
    }
    if let Some(r) = m.reservation() {
        write_file(&dir.join("memory.soft_limit_in_bytes"), &r.to_string())?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(CgroupError::Unsupported(format!(
                "linux.resources.memory.swappiness {s} is out of range 0..=100"
            )));
        }
        write_file(&dir.join("memory.swappiness"), &s.to_string())?;
    }
    if m.kernel().is_some() {
        // Since Linux 5.16 memory.kmem.limit_in_bytes accepts writes and ignores them.
        tracing::warn!(
            "linux.resources.memory.kernel ignored: the kernel no longer enforces kernel memory limits"
        );
    }
    // TCP buffer accounting still has its own v1 limit.
    optional(
        dir,
        "memory.kmem.tcp.limit_in_bytes",
        m.kernel_tcp().map(|t| t.to_string()),
        "linux.resources.memory.kernelTCP",
    )?;
    if m.disable_oom_killer() == Some(true) {
        write_file(&dir.join("memory.oom_control"), "1")?;
    }
    Ok(())
}

fn cpu(d: &Dirs, c: &LinuxCpu) -> Result<(), CgroupError> {
    let wants_cpu = c.shares().is_some()
        || c.quota().is_some()
        || c.period().is_some()
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_period().is_some()
        || c.realtime_runtime().is_some();
    if wants_cpu {
        let dir = d.need("cpu")?;
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            write_file(&dir.join("cpu.shares"), &s.to_string())?;
        }
        if let Some(p) = c.period().filter(|p| *p != 0) {
            write_file(&dir.join("cpu.cfs_period_us"), &p.to_string())?;
        }
        if let Some(q) = c.quota().filter(|q| *q != 0) {
            let q = if q < 0 { -1 } else { q };
            write_file(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
        }
        optional(
            &dir,
            "cpu.cfs_burst_us",
            c.burst().map(|b| b.to_string()),
            "linux.resources.cpu.burst",
        )?;
        optional(
            &dir,
            "cpu.idle",
            c.idle().map(|i| i.to_string()),
            "linux.resources.cpu.idle",
        )?;
        if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
            write_file(&dir.join("cpu.rt_period_us"), &p.to_string())?;
        }
        if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
            write_file(&dir.join("cpu.rt_runtime_us"), &r.to_string())?;
        }
    }
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_some() || mems.is_some() {
        let dir = d.need("cpuset")?;
        if let Some(v) = cpus {
            write_file(&dir.join("cpuset.cpus"), v)?;
        }
        if let Some(v) = mems {
            write_file(&dir.join("cpuset.mems"), v)?;
        }
    }
    Ok(())
}

/// Writes `value` to `file` when it exists; warns that `what` is ignored when it does not.
pub(crate) fn optional(
    dir: &Path,
    file: &str,
    value: Option<String>,
    what: &str,
) -> Result<(), CgroupError> {
    let Some(v) = value else { return Ok(()) };
    let f = dir.join(file);
    if f.exists() {
        write_file(&f, &v)
    } else {
        tracing::warn!(
            "{what} ignored: {} does not exist on this kernel",
            f.display()
        );
        Ok(())
    }
}

fn blkio(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // CFQ is gone from modern kernels; BFQ has its own files, and with neither there is no weight knob.
    let weight_file = ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| dir.join(f).exists());
    if let Some(w) = b.weight() {
        match weight_file {
            Some(f) => write_file(&dir.join(f), &w.to_string())?,
            None => tracing::warn!(
                "linux.resources.blockIO.weight ignored: no blkio.weight or blkio.bfq.weight in {} (the \
                 device's I/O scheduler is not BFQ)",
                dir.display()
            ),
        }
    }
    if let Some(devs) = b.weight_device() {
        for wd in devs {
            let Some(w) = wd.weight() else { continue };
            let line = format!("{}:{} {w}", wd.major(), wd.minor());
            match weight_file {
                // blkio.weight has a per-device sibling; BFQ takes `maj:min weight` in its weight file.
                Some("blkio.weight") => write_file(&dir.join("blkio.weight_device"), &line)?,
                Some(f) => write_file(&dir.join(f), &line)?,
                None => tracing::warn!(
                    "linux.resources.blockIO.weightDevice ignored: no weight file in {}",
                    dir.display()
                ),
            }
        }
    }
    let throttles: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    for (file, devs) in throttles {
        for t in devs.iter().flatten() {
            write_file(
                &dir.join(file),
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

/// One rule as the v1 devices controller reads it: `c 1:3 rwm`.
pub(crate) fn device_rule(d: &LinuxDeviceCgroup) -> Option<String> {
    let typ = match d.typ().unwrap_or_default() {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => return None,
    };
    let num = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    let access = d
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    Some(format!(
        "{typ} {}:{} {access}",
        num(d.major()),
        num(d.minor())
    ))
}

/// Rules in order, as runc: a leading deny-all resets the list, then each allow/deny is appended.
fn devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    for d in rules {
        let Some(rule) = device_rule(d) else {
            tracing::warn!("device rule {d} ignored: the devices cgroup has no FIFO type");
            continue;
        };
        let file = if d.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write_file(&dir.join(file), &rule)?;
    }
    Ok(())
}

pub(crate) fn set_frozen(d: &Dirs, frozen: bool) -> Result<(), CgroupError> {
    let file = d.need("freezer")?.join("freezer.state");
    let want = if frozen { "FROZEN" } else { "THAWED" };
    write_file(&file, want)?;
    // FREEZING can last while tasks are in uninterruptible sleep; re-writing FROZEN retries them.
    let mut tries = 0u32;
    let ok = await_cond(Duration::from_secs(5), || {
        tries += 1;
        if tries.is_multiple_of(50) {
            write_file(&file, want)?;
        }
        Ok(read_string(&file)?.trim() == want)
    })?;
    if ok {
        return Ok(());
    }
    if frozen {
        let _ = write_file(&file, "THAWED");
    }
    Err(CgroupError::Timeout {
        path: file.display().to_string(),
        what: format!("waiting for {want} (a task may be stuck in uninterruptible sleep)"),
        waited: Duration::from_secs(5),
    })
}

pub(crate) fn is_frozen(d: &Dirs) -> Result<bool, CgroupError> {
    Ok(read_string(&d.need("freezer")?.join("freezer.state"))?.trim() == "FROZEN")
}
