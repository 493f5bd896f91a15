//! cgroup v2 (unified hierarchy): one leaf dir; controllers enabled in every ancestor's subtree_control.

use super::v1::optional;
use super::{
    CgroupError, await_cond, blkio_to_io_weight, keyed, read_string, shares_to_weight, write_file,
};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources, LinuxThrottleDevice};
use std::path::Path;
use std::time::Duration;

/// Controllers a container's cgroup gets when the hierarchy offers them.
const CONTROLLERS: &[&str] = &[
    "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "misc", "rdma",
];

/// mkdir each component of `rel` below `root`, enabling controllers in each ancestor first (root down to
/// the leaf's parent). A controller that cannot be enabled is a warning, not an error: `apply` then
/// fails only if a limit for it is actually requested, naming the missing file.
pub(crate) fn create(root: &Path, rel: &str) -> Result<(), CgroupError> {
    let mut dir = root.to_path_buf();
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        enable_controllers(&dir)?;
        dir.push(comp);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::io(&dir, format!("mkdir: {e}"))),
        }
    }
    Ok(())
}

fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let available = read_string(&dir.join("cgroup.controllers"))?;
    let enabled = read_string(&dir.join("cgroup.subtree_control"))?;
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    for c in available.split_whitespace() {
        if CONTROLLERS.contains(&c)
            && !enabled.contains(&c)
            && let Err(e) = write_file(&dir.join("cgroup.subtree_control"), &format!("+{c}"))
        {
            tracing::warn!("cannot enable the {c} controller: {e}");
        }
    }
    Ok(())
}

pub(crate) fn apply(dir: &Path, r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(m) = r.memory() {
        memory(dir, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(dir, c)?;
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        write_file(&dir.join("pids.max"), &v)?;
    }
    if let Some(b) = r.block_io() {
        io(dir, b)?;
    }
    for h in r.hugepage_limits().iter().flatten() {
        let v = if h.limit() < 0 {
            "max".to_string()
        } else {
            h.limit().to_string()
        };
        let what = format!("linux.resources.hugepageLimits[{}]", h.page_size());
        optional(
            dir,
            &format!("hugetlb.{}.max", h.page_size()),
            Some(v),
            &what,
        )?;
    }
    if let Some(rules) = r.devices().as_ref().filter(|d| !d.is_empty()) {
        // An eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE), replacing the one a previous apply attached.
        super::devices_bpf::apply(dir, rules)?;
    }
    if let Some(u) = r.unified() {
        let mut keys: Vec<&String> = u.keys().collect();
        keys.sort();
        for k in keys {
            if k.is_empty() || k.contains('/') || k.starts_with('.') || !k.contains('.') {
                return Err(CgroupError::Unsupported(format!(
                    "linux.resources.unified key {k:?} is not a cgroup file name like `memory.high`"
                )));
            }
            if matches!(
                k.as_str(),
                "cgroup.procs" | "cgroup.threads" | "cgroup.subtree_control" | "cgroup.kill"
            ) {
                return Err(CgroupError::Unsupported(format!(
                    "linux.resources.unified may not set {k}: the runtime manages it"
                )));
            }
            write_file(&dir.join(k), &u[k])?;
        }
    }
    if r.network().is_some() {
        tracing::warn!("linux.resources.network ignored: cgroup v2 has no net_cls/net_prio");
    }
    if r.rdma().as_ref().is_some_and(|h| !h.is_empty()) {
        tracing::warn!("linux.resources.rdma ignored: not implemented");
    }
    Ok(())
}

/// OCI memory.swap is memory+swap; v2 swap.max is swap alone (runc's ConvertMemorySwapToCgroupV2Value).
/// `None` leaves swap.max as is; `Some(-1)` is "max".
pub(crate) fn swap_max(limit: Option<i64>, swap: Option<i64>) -> Result<Option<i64>, CgroupError> {
    let (limit, swap) = (limit.unwrap_or(0), swap.unwrap_or(0));
    if limit == -1 && swap == 0 {
        return Ok(Some(-1));
    }
    if swap == -1 {
        return Ok(Some(-1));
    }
    if swap == 0 {
        return Ok(None);
    }
    if limit <= 0 {
        return Err(CgroupError::Unsupported(
            "linux.resources.memory.swap needs memory.limit as well (OCI swap is memory+swap)"
                .into(),
        ));
    }
    if swap < limit {
        return Err(CgroupError::Unsupported(format!(
            "linux.resources.memory.swap ({swap}) is memory+swap and must be ≥ memory.limit ({limit}), or -1"
        )));
    }
    Ok(Some(swap - limit))
}

fn bytes(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    let swap = swap_max(m.limit(), m.swap())?;
    if let Some(l) = m.limit() {
        write_file(&dir.join("memory.max"), &bytes(l))?;
    }
    if let Some(s) = swap {
        let what = "linux.resources.memory.swap (swap accounting is off: boot with swapaccount=1)";
        optional(dir, "memory.swap.max", Some(bytes(s)), what)?;
    }
    if let Some(r) = m.reservation() {
        write_file(&dir.join("memory.low"), &bytes(r))?;
    }
    if m.swappiness().is_some() {
        tracing::warn!(
            "linux.resources.memory.swappiness ignored: cgroup v2 has no per-cgroup swappiness"
        );
    }
    if m.kernel().is_some() || m.kernel_tcp().is_some() {
        tracing::warn!(
            "linux.resources.memory.kernel/kernelTCP ignored: cgroup v2 has no kernel memory limit"
        );
    }
    if m.disable_oom_killer() == Some(true) {
        tracing::warn!(
            "linux.resources.memory.disableOOMKiller ignored: cgroup v2 cannot disable the OOM killer"
        );
    }
    Ok(())
}

fn cpu(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        write_file(&dir.join("cpu.weight"), &shares_to_weight(s).to_string())?;
    }
    let period = c.period().filter(|p| *p != 0);
    let quota = c.quota().filter(|q| *q != 0);
    if period.is_some() || quota.is_some() {
        let file = dir.join("cpu.max");
        // Keep the half that was not given (as runc's update does).
        let cur = read_string(&file)?;
        let mut cur = cur.split_whitespace();
        let (cur_q, cur_p) = (
            cur.next().unwrap_or("max").to_string(),
            cur.next().unwrap_or("100000").to_string(),
        );
        let q = match quota {
            Some(q) if q > 0 => q.to_string(),
            Some(_) => "max".to_string(),
            None => cur_q,
        };
        let p = period.map_or(cur_p, |p| p.to_string());
        write_file(&file, &format!("{q} {p}"))?;
    }
    optional(
        dir,
        "cpu.max.burst",
        c.burst().map(|b| b.to_string()),
        "linux.resources.cpu.burst",
    )?;
    optional(
        dir,
        "cpu.idle",
        c.idle().map(|i| i.to_string()),
        "linux.resources.cpu.idle",
    )?;
    if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
        tracing::warn!(
            "linux.resources.cpu.realtime* ignored: cgroup v2 has no realtime group scheduling"
        );
    }
    if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        write_file(&dir.join("cpuset.cpus"), v)?;
    }
    if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        write_file(&dir.join("cpuset.mems"), v)?;
    }
    Ok(())
}

fn io(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let bfq = dir.join("io.bfq.weight").exists();
    let plain = dir.join("io.weight").exists();
    let line = |w: u16| {
        if bfq {
            w.to_string()
        } else {
            blkio_to_io_weight(w).to_string()
        }
    };
    let file = dir.join(if bfq { "io.bfq.weight" } else { "io.weight" });
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        if bfq || plain {
            write_file(&file, &line(w))?;
        } else {
            tracing::warn!(
                "linux.resources.blockIO.weight ignored: no io.bfq.weight or io.weight in {}",
                dir.display()
            );
        }
    }
    for wd in b.weight_device().iter().flatten() {
        let Some(w) = wd.weight() else { continue };
        if bfq || plain {
            write_file(&file, &format!("{}:{} {}", wd.major(), wd.minor(), line(w)))?;
        } else {
            tracing::warn!(
                "linux.resources.blockIO.weightDevice ignored: no io weight file in {}",
                dir.display()
            );
        }
    }
    let throttles: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    for (key, devs) in throttles {
        for t in devs.iter().flatten() {
            let rate = if t.rate() == 0 {
                "max".to_string()
            } else {
                t.rate().to_string()
            };
            write_file(
                &dir.join("io.max"),
                &format!("{}:{} {key}={rate}", t.major(), t.minor()),
            )?;
        }
    }
    Ok(())
}

pub(crate) fn set_frozen(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.freeze");
    if !file.exists() && dir.exists() {
        return Err(CgroupError::Unsupported(format!(
            "{} does not exist: the v2 freezer needs Linux ≥ 5.2",
            file.display()
        )));
    }
    write_file(&file, if frozen { "1" } else { "0" })?;
    let ok = await_cond(Duration::from_secs(5), || Ok(is_frozen(dir)? == frozen))?;
    if ok {
        return Ok(());
    }
    if frozen {
        let _ = write_file(&file, "0");
    }
    Err(CgroupError::Timeout {
        path: dir.join("cgroup.events").display().to_string(),
        what: format!("waiting for `frozen {}`", u8::from(frozen)),
        waited: Duration::from_secs(5),
    })
}

pub(crate) fn is_frozen(dir: &Path) -> Result<bool, CgroupError> {
    Ok(keyed(&read_string(&dir.join("cgroup.events"))?, "frozen") == Some(1))
}
