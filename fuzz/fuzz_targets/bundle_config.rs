//! Arbitrary bytes as a bundle's config.json through what `beam-oci create` does before it clones:
//! `Bundle::load` (parse + validation) and `InitPlan::new` (namespace plan, rootfs/mount plan with both
//! cgroup layouts, sysctl checks, process plan: rlimits, capabilities, seccomp compile, landlock
//! annotations). Never panics; a plan's sysctl paths stay under /proc/sys.
//!
//! Side effects kept out: a namespace given by path is opened by the plan, so paths are rewritten to the
//! fuzzer's own `/proc/self/ns/<type>` (opening an arbitrary path could block on a FIFO or arm a device).
//! Everything else the plan does is stat/canonicalize of paths and reading /proc.
#![no_main]
#[path = "common.rs"]
mod common;

use beam::runtime::mounts::{CgroupMount, RootfsOptions};
use beam::runtime::namespaces::proc_name;
use beam::runtime::plan::InitPlan;
use beam::runtime::spec::Bundle;
use libfuzzer_sys::fuzz_target;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::LazyLock;

static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = common::scratch("bundle_config").join("bundle");
    std::fs::create_dir_all(dir.join("rootfs/bin")).unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("file"), b"x").unwrap();
    dir
});

fn listener() -> OwnedFd {
    OwnedFd::from(std::fs::File::open("/dev/null").unwrap())
}

fuzz_target!(|data: &[u8]| {
    let dir = &*DIR;
    std::fs::write(dir.join("config.json"), data).unwrap();
    let Ok(mut bundle) = Bundle::load(dir) else { return };
    if let Some(mut linux) = bundle.spec.linux().clone() {
        if let Some(list) = linux.namespaces().clone() {
            let list = list
                .into_iter()
                .map(|mut n| {
                    if n.path().is_some() {
                        n.set_path(Some(PathBuf::from(format!("/proc/self/ns/{}", proc_name(n.typ())))));
                    }
                    n
                })
                .collect();
            linux.set_namespaces(Some(list));
        }
        bundle.spec.set_linux(Some(linux));
    }
    let cgroups = [
        CgroupMount::V2,
        CgroupMount::V1 {
            hierarchies: vec![
                ("cpu,cpuacct".into(), "/sys/fs/cgroup/cpu,cpuacct/beam/fuzz".into()),
                ("memory".into(), "/sys/fs/cgroup/memory/beam/fuzz".into()),
                ("name=systemd".into(), "/sys/fs/cgroup/systemd/beam/fuzz".into()),
            ],
        },
    ];
    let no_pivot = data.len() % 2 == 1;
    for cgroup in cgroups {
        let opts = RootfsOptions { no_pivot, cgroup, bundle: bundle.dir.clone() };
        if let Ok(plan) = InitPlan::new(&bundle, &opts, None, 0, listener()) {
            for (path, _) in &plan.sysctl {
                let p = path.to_str().expect("sysctl paths are UTF-8");
                assert!(p.starts_with("/proc/sys/"), "{p}");
                assert!(!p.split('/').any(|c| c == ".." || c == "."), "{p}");
            }
        }
    }
});
