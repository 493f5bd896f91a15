//! Unit tests, and tests against the real kernel (root only, `#[ignore = "needs root"]`; on this
//! host's hybrid v1 and, through tests/vm/cgroup-v2.sh, on pure v2). Every kernel test owns a
//! `/beam/test-*` cgroup through a [`Guard`] that kills only the children it forked and destroys the
//! cgroup, also when the test fails.

use super::v1::device_rule;
use super::v2::swap_max;
use super::*;
use crate::test_support::require_root;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResourcesBuilder,
};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

mod v2_fixture;

// ---------- pure unit tests ----------

#[test]
fn path_resolution() {
    assert_eq!(Cgroup::new(None, "abc").unwrap().path, "/beam/abc");
    assert_eq!(Cgroup::new(Some(""), "abc").unwrap().path, "/beam/abc");
    assert_eq!(Cgroup::new(Some("/a//b/"), "x").unwrap().path, "/a/b");
    assert_eq!(Cgroup::new(Some("x/y"), "id").unwrap().path, "/beam/x/y");
    let e = Cgroup::new(Some("system.slice:docker:abc"), "abc")
        .unwrap_err()
        .to_string();
    assert!(e.contains("systemd"), "{e}");
    let e = Cgroup::new(Some("/beam/../etc"), "x")
        .unwrap_err()
        .to_string();
    assert!(e.contains(".."), "{e}");
    assert!(Cgroup::new(Some("a/../../b"), "x").is_err());
    assert!(Cgroup::new(Some("/"), "x").is_err());
    let cg = Cgroup::new(Some("/beam/c1"), "c1").unwrap();
    let back: Cgroup = serde_json::from_str(&serde_json::to_string(&cg).unwrap()).unwrap();
    assert_eq!(back, cg);
    // A hand-edited state.json cannot make destroy/kill_all reach outside the cgroup.
    for path in ["/", "", "/beam/../x", "beam/x", "/beam//x"] {
        let evil: Cgroup = serde_json::from_value(serde_json::json!({ "path": path })).unwrap();
        assert!(evil.destroy().is_err(), "destroy {path:?}");
        assert!(evil.kill_all(Signal::SIGKILL).is_err(), "kill_all {path:?}");
    }
}

const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

#[test]
fn layout_detection() {
    let Some(Layout::V1 { mounts, unified }) = Layout::parse(HYBRID) else {
        panic!("hybrid not detected")
    };
    assert_eq!(
        unified.as_deref(),
        Some(Path::new("/sys/fs/cgroup/unified"))
    );
    assert_eq!(mounts.len(), 3, "{mounts:?}");
    assert_eq!(mounts[0].controllers, ["cpu", "cpuacct"]);
    assert_eq!(Layout::parse(HYBRID).unwrap().mode(), CgroupMode::Hybrid);
    let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    assert_eq!(
        Layout::parse(v2),
        Some(Layout::V2 {
            root: "/sys/fs/cgroup".into()
        })
    );
    let legacy: String = HYBRID
        .lines()
        .filter(|l| !l.contains("cgroup2"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(Layout::parse(&legacy).unwrap().mode(), CgroupMode::V1);
    assert_eq!(Layout::parse("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"), None);
    // The real host parses to something.
    mode().expect("this host's cgroup layout");
}

#[test]
fn conversions() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(blkio_to_io_weight(10), 1);
    assert_eq!(blkio_to_io_weight(1000), 10_000);
    assert_eq!(swap_max(Some(100), Some(300)).unwrap(), Some(200));
    assert_eq!(swap_max(Some(-1), None).unwrap(), Some(-1));
    assert_eq!(swap_max(Some(100), Some(-1)).unwrap(), Some(-1));
    assert_eq!(swap_max(Some(100), None).unwrap(), None);
    assert!(swap_max(Some(100), Some(50)).is_err());
    assert!(swap_max(None, Some(100)).is_err());
    let rule = |allow, typ, major, minor, access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .access(access);
        if let Some(t) = typ {
            b = b.typ(t);
        }
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        device_rule(&b.build().unwrap())
    };
    assert_eq!(
        rule(false, None, None, None, "rwm").as_deref(),
        Some("a *:* rwm")
    );
    assert_eq!(
        rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "").as_deref(),
        Some("c 1:3 rwm")
    );
    assert_eq!(
        rule(true, Some(LinuxDeviceType::B), Some(8), None, "r").as_deref(),
        Some("b 8:* r")
    );
    assert_eq!(rule(true, Some(LinuxDeviceType::P), None, None, "r"), None);
}

#[test]
fn stats_json_shape() {
    let mut s = Stats::default();
    s.cpu.usage.total = 5;
    s.memory.usage = MemoryEntry {
        limit: 9,
        usage: 7,
        max: 8,
        failcnt: 0,
    };
    s.pids = PidsStats {
        current: 2,
        limit: 10,
    };
    let ev = s.to_event("c1");
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], "c1");
    assert_eq!(ev["data"]["cpu"]["usage"]["total"], 5);
    assert_eq!(ev["data"]["memory"]["usage"]["usage"], 7);
    assert_eq!(ev["data"]["memory"]["usage"]["limit"], 9);
    assert_eq!(ev["data"]["memory"]["kernelTCP"]["failcnt"], 0);
    assert_eq!(ev["data"]["pids"]["current"], 2);
    assert_eq!(ev["data"]["pids"]["limit"], 10);
    let back: Stats = serde_json::from_value(ev["data"].clone()).unwrap();
    assert_eq!(back, s);
    let (bytes, ios) =
        stats::parse_io_stat("8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n");
    assert_eq!(
        (bytes.len(), ios.len(), bytes[0].value, bytes[0].op.as_str()),
        (2, 2, 4096, "Read")
    );
    let v1 = stats::parse_blkio_v1("8:0 Read 512\n8:0 Write 0\nTotal 512\n");
    assert_eq!(v1.len(), 2);
    assert_eq!(
        (v1[0].major, v1[0].op.as_str(), v1[0].value),
        (8, "Read", 512)
    );
}

// ---------- tests against the real kernel ----------

/// Owns a test cgroup and the children forked into it.
struct Guard {
    cg: Cgroup,
    children: Vec<Pid>,
}

impl Guard {
    fn new(name: &str) -> Guard {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = format!(
            "/beam/test-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let g = Guard {
            cg: Cgroup::new(Some(&path), "unused").unwrap(),
            children: vec![],
        };
        g.cg.create().expect("create");
        g
    }

    /// Forks a child that waits until it is in the cgroup, then runs `body(arg)`, which must be
    /// async-signal-safe (the test harness is multi-threaded) and never return.
    fn spawn(&mut self, body: fn(usize) -> !, arg: usize) -> Pid {
        let (r, w) = nix::unistd::pipe().unwrap();
        let rfd = r.as_raw_fd();
        // SAFETY: the child only calls read(2) and `body`, which is async-signal-safe and never returns.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let mut b = 0u8;
                // SAFETY: reads one byte into a live stack variable.
                unsafe { libc::read(rfd, (&raw mut b).cast(), 1) };
                body(arg)
            }
            ForkResult::Parent { child } => {
                self.children.push(child);
                drop(r);
                self.cg.add_pid(child.as_raw()).expect("add_pid");
                nix::unistd::write(&w, b"g").unwrap();
                child
            }
        }
    }

    /// waitpid on one of our children; it is then no longer ours to kill.
    fn reap(&mut self, pid: Pid) -> WaitStatus {
        self.children.retain(|p| *p != pid);
        waitpid(pid, None).expect("waitpid")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.cg.thaw();
        for pid in self.children.drain(..) {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Err(e) = self.cg.destroy() {
            eprintln!("cleanup of {} failed: {e}", self.cg.path);
        }
    }
}

fn idle(_: usize) -> ! {
    loop {
        // SAFETY: pause(2) is async-signal-safe.
        unsafe { libc::pause() };
    }
}

/// Maps and touches `len` bytes with plain syscalls and stores (no malloc).
fn touch(len: usize) {
    // SAFETY: a fresh private anonymous mapping; every store is inside it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            libc::_exit(3);
        }
        for off in (0..len).step_by(4096) {
            std::ptr::write_volatile(p.cast::<u8>().add(off), 1);
        }
    }
}

fn hog(len: usize) -> ! {
    touch(len);
    // SAFETY: _exit(2) is async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// Increments the shared counter at `addr` forever.
fn count(addr: usize) -> ! {
    // SAFETY: `addr` is a MAP_SHARED mapping made by the parent before fork; atomics are lock-free.
    let c = unsafe { &*(addr as *const AtomicU64) };
    loop {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

fn busy_then_idle(len: usize) -> ! {
    touch(len);
    let mut x = 0u64;
    for i in 0..30_000_000u64 {
        // SAFETY: a volatile store to a live stack variable keeps the loop from being optimised out.
        unsafe { std::ptr::write_volatile(&raw mut x, x.wrapping_add(i)) };
    }
    idle(0)
}

fn forker(_: usize) -> ! {
    for _ in 0..2 {
        // SAFETY: fork(2) is async-signal-safe; the grandchild only pauses.
        if unsafe { libc::fork() } == 0 {
            idle(0);
        }
    }
    idle(0)
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

fn dir_of(cg: &Cgroup, ctrl: &str) -> PathBuf {
    match Layout::get().unwrap() {
        Layout::V2 { root } => root.join(cg.rel()),
        Layout::V1 { mounts, .. } => v1::Dirs::new(mounts, cg.rel()).need(ctrl).unwrap(),
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    assert!(
        await_cond(Duration::from_secs(5), || Ok(cond())).unwrap(),
        "timed out waiting for {what}"
    );
}

#[test]
#[ignore = "needs root"]
fn create_apply_read_back() {
    require_root();
    let g = Guard::new("apply");
    let v2 = mode().unwrap() == CgroupMode::V2;
    let res = |limit: i64, swap: i64| {
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(limit)
                    .reservation(limit / 2)
                    .swap(swap)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .cpus("0")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    // Set, lower, raise: v1 must order memory and memsw writes right each way.
    for (limit, swap) in [
        (64i64 << 20, 128i64 << 20),
        (32 << 20, 32 << 20),
        (256 << 20, 512 << 20),
    ] {
        g.cg.apply(&res(limit, swap))
            .unwrap_or_else(|e| panic!("apply {limit}/{swap}: {e}"));
        let mem = dir_of(&g.cg, "memory");
        if v2 {
            assert_eq!(read(&mem, "memory.max"), limit.to_string());
            assert_eq!(read(&mem, "memory.low"), (limit / 2).to_string());
            if mem.join("memory.swap.max").exists() {
                assert_eq!(read(&mem, "memory.swap.max"), (swap - limit).to_string());
            }
        } else {
            assert_eq!(read(&mem, "memory.limit_in_bytes"), limit.to_string());
            assert_eq!(
                read(&mem, "memory.soft_limit_in_bytes"),
                (limit / 2).to_string()
            );
            if mem.join("memory.memsw.limit_in_bytes").exists() {
                assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), swap.to_string());
            }
        }
    }
    assert_eq!(read(&dir_of(&g.cg, "pids"), "pids.max"), "10");
    assert_eq!(read(&dir_of(&g.cg, "cpuset"), "cpuset.cpus"), "0");
    let cpu = dir_of(&g.cg, "cpu");
    if v2 {
        assert_eq!(read(&cpu, "cpu.weight"), shares_to_weight(512).to_string());
        assert_eq!(read(&cpu, "cpu.max"), "50000 100000");
    } else {
        assert_eq!(read(&cpu, "cpu.shares"), "512");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    }
    // pids -1 → max.
    let unlimited = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap());
    g.cg.apply(&unlimited.build().unwrap()).unwrap();
    assert_eq!(read(&dir_of(&g.cg, "pids"), "pids.max"), "max");
    // unified: written on v2, a clear error on v1.
    let unified = LinuxResourcesBuilder::default()
        .unified(
            [("memory.high".to_string(), (48u64 << 20).to_string())]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()
        .unwrap();
    match g.cg.apply(&unified) {
        Ok(()) if v2 => assert_eq!(
            read(&dir_of(&g.cg, "memory"), "memory.high"),
            (48u64 << 20).to_string()
        ),
        Err(e) if !v2 => assert!(e.to_string().contains("cgroup v2"), "{e}"),
        other => panic!("unified on {:?}: {other:?}", mode()),
    }
    // Errors name the file and the value.
    let bad = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().cpus("4095").build().unwrap())
        .build()
        .unwrap();
    let e = g.cg.apply(&bad).unwrap_err().to_string();
    assert!(e.contains("cpuset.cpus") && e.contains("4095"), "{e}");
    // Device rules: enforced on v1 (devices.list) and on v2 (eBPF, see devices_bpf).
    let devs = LinuxResourcesBuilder::default()
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1i64)
                .minor(3i64)
                .access("rwm")
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    g.cg.apply(&devs).unwrap();
    if !v2 {
        assert_eq!(read(&dir_of(&g.cg, "devices"), "devices.list"), "c 1:3 rwm");
    }
}

#[test]
#[ignore = "needs root"]
fn add_pid_shows_in_proc_and_pids() {
    require_root();
    let mut g = Guard::new("join");
    assert!(g.cg.pids().unwrap().is_empty());
    let child = g.spawn(idle, 0);
    let own = std::fs::read_to_string(format!("/proc/{child}/cgroup")).unwrap();
    let joined: Vec<&str> = own
        .lines()
        .filter(|l| l.splitn(3, ':').nth(2) == Some(g.cg.path.as_str()))
        .map(|l| l.split(':').nth(1).unwrap())
        .collect();
    match mode().unwrap() {
        CgroupMode::V2 => assert_eq!(joined, [""], "{own}"),
        _ => {
            for c in [
                "memory", "pids", "cpu", "cpuacct", "cpuset", "freezer", "devices", "blkio",
            ] {
                if Path::new("/sys/fs/cgroup").join(c).exists() {
                    assert!(
                        joined.iter().any(|j| j.split(',').any(|x| x == c)),
                        "{c} missing in {own}"
                    );
                }
            }
        }
    }
    assert_eq!(g.cg.pids().unwrap(), [child.as_raw()]);
    let fd = g.cg.v2_dir_fd().unwrap();
    assert_eq!(fd.is_some(), mode().unwrap() == CgroupMode::V2);
}

#[test]
#[ignore = "needs root"]
fn freeze_and_thaw() {
    require_root();
    let mut g = Guard::new("freeze");
    // SAFETY: a fresh shared anonymous page, unmapped at the end of the test.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED);
    // SAFETY: the page is mapped, aligned and zeroed, as an AtomicU64 needs.
    let counter = unsafe { &*(page as *const AtomicU64) };
    let child = g.spawn(count, page as usize);
    wait_until("the child to count", || counter.load(Ordering::Relaxed) > 0);
    assert!(!g.cg.is_frozen().unwrap());
    g.cg.freeze().unwrap();
    assert!(g.cg.is_frozen().unwrap());
    let state = std::fs::read_to_string(format!("/proc/{child}/status")).unwrap();
    let state = state
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap()
        .to_string();
    eprintln!("frozen child {state}");
    assert!(
        !state.contains("R (running)"),
        "frozen child still running: {state}"
    );
    let before = counter.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        counter.load(Ordering::Relaxed),
        before,
        "a frozen child kept counting"
    );
    g.cg.thaw().unwrap();
    assert!(!g.cg.is_frozen().unwrap());
    wait_until("the thawed child to count", || {
        counter.load(Ordering::Relaxed) > before
    });
    drop(g);
    // SAFETY: the child that used the page is dead (the guard killed and reaped it).
    unsafe { libc::munmap(page, 4096) };
}

#[test]
#[ignore = "needs root"]
fn memory_limit_oom_kills() {
    require_root();
    let mut g = Guard::new("oom");
    let limit = 20i64 << 20;
    let mem = LinuxMemoryBuilder::default()
        .limit(limit)
        .swap(limit)
        .build()
        .unwrap();
    g.cg.apply(
        &LinuxResourcesBuilder::default()
            .memory(mem)
            .build()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(g.cg.oom_kill_count().unwrap(), 0);
    let child = g.spawn(hog, 64 << 20);
    let status = g.reap(child);
    assert_eq!(
        status,
        WaitStatus::Signaled(child, Signal::SIGKILL, false),
        "hog not OOM-killed"
    );
    assert!(g.cg.oom_kill_count().unwrap() >= 1);
    let s = g.cg.stats().unwrap();
    assert_eq!(s.memory.usage.limit, limit as u64);
    // Peak usage reached the limit (v2 kernels before 5.19 have no memory.peak and report 0).
    let peak = s.memory.usage.max;
    assert!(
        peak == 0 || peak >= limit as u64 / 2,
        "{:?}",
        s.memory.usage
    );
}

#[test]
#[ignore = "needs root"]
fn kill_all_and_destroy() {
    require_root();
    let mut g = Guard::new("kill");
    let child = g.spawn(forker, 0);
    wait_until("child and 2 grandchildren", || {
        g.cg.pids().unwrap().len() == 3
    });
    g.cg.kill_all(Signal::SIGKILL).unwrap();
    assert_eq!(
        g.reap(child),
        WaitStatus::Signaled(child, Signal::SIGKILL, false)
    );
    wait_until("the grandchildren to die", || {
        g.cg.pids().unwrap().is_empty()
    });
    assert!(!g.cg.is_frozen().unwrap());
    g.cg.destroy().unwrap();
    for d in g.cg.all_dirs().unwrap() {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    g.cg.destroy().expect("destroy is idempotent");
}

#[test]
#[ignore = "needs root"]
fn kill_all_other_signal_thaws() {
    require_root();
    let mut g = Guard::new("term");
    let a = g.spawn(idle, 0);
    let b = g.spawn(idle, 0);
    g.cg.kill_all(Signal::SIGTERM).unwrap();
    assert_eq!(g.reap(a), WaitStatus::Signaled(a, Signal::SIGTERM, false));
    assert_eq!(g.reap(b), WaitStatus::Signaled(b, Signal::SIGTERM, false));
    assert!(!g.cg.is_frozen().unwrap());
}

#[test]
#[ignore = "needs root"]
fn stats_report_usage() {
    require_root();
    let mut g = Guard::new("stats");
    let pids = LinuxPidsBuilder::default().limit(20).build().unwrap();
    g.cg.apply(&LinuxResourcesBuilder::default().pids(pids).build().unwrap())
        .unwrap();
    g.spawn(busy_then_idle, 8 << 20);
    wait_until("memory and cpu usage", || {
        let s = g.cg.stats().unwrap();
        s.memory.usage.usage >= 8 << 20 && s.cpu.usage.total > 0
    });
    let s = g.cg.stats().unwrap();
    assert_eq!((s.pids.current, s.pids.limit), (1, 20));
    assert!(s.memory.usage.limit > 0);
    let ev = s.to_event("c");
    assert!(
        ev["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{ev}"
    );
    assert!(
        ev["data"]["cpu"]["usage"]["total"].as_u64().unwrap() > 0,
        "{ev}"
    );
}

#[test]
#[ignore = "needs root"]
fn errors_on_missing_cgroup() {
    require_root();
    let cg = Cgroup::new(Some("/beam/test-never-created"), "x").unwrap();
    assert!(cg.pids().unwrap().is_empty());
    assert!(cg.stats().is_err());
    let e = cg.apply(
        &LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
            .build()
            .unwrap(),
    );
    let e = e.unwrap_err().to_string();
    assert!(
        e.contains("pids.max") && e.contains('5') && e.contains("create the cgroup first"),
        "{e}"
    );
    cg.destroy().unwrap();
}
