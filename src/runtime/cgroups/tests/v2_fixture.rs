//! cgroup v2 against a temp dir of fake interface files (youki's fixture pattern): the files a
//! kernel would offer are created empty (or with the kernel's content where the code reads it), the
//! code writes into them, and the test compares every file in the dir with an explicit expectation.
//! No root and no cgroup filesystem needed.
//!
//! A fake file is a plain file: a write is not a command as in cgroupfs but overwrites the start of
//! the file, so every scenario starts from a fresh fixture and writes each file at most once.

use super::super::CgroupError;
use super::super::v2;
use oci_spec::runtime::LinuxResources;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// A cgroup dir holding `files` (name, content).
fn fixture(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("beam-cgv2-")
        .tempdir()
        .unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

/// Every entry of `dir` (recursively): files with their content, directories as `<dir>`.
fn contents(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert(rel, "<dir>".into());
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn resources(v: Value) -> LinuxResources {
    serde_json::from_value(v).expect("LinuxResources json")
}

/// Apply `res` to a fresh fixture of `files`; the resulting dir contents.
fn apply(files: &[(&str, &str)], res: Value) -> BTreeMap<String, String> {
    let dir = fixture(files);
    v2::apply(dir.path(), &resources(res)).unwrap_or_else(|e| panic!("apply: {e}"));
    contents(dir.path())
}

/// The error of applying `res`, with the fixture dir written as `$DIR`; also checks that nothing
/// but `written` changed.
fn apply_err(files: &[(&str, &str)], res: Value, written: &[(&str, &str)]) -> String {
    let dir = fixture(files);
    let e: CgroupError = v2::apply(dir.path(), &resources(res)).expect_err("an error");
    let mut want = map(files);
    want.extend(map(written));
    assert_eq!(contents(dir.path()), want, "files after the failed apply");
    e.to_string().replace(dir.path().to_str().unwrap(), "$DIR")
}

#[test]
fn golden_apply_every_resource() {
    let files = [
        ("memory.max", ""),
        ("memory.swap.max", ""),
        ("memory.low", ""),
        ("memory.high", ""),
        ("cpu.weight", ""),
        ("cpu.max", "max 100000"),
        ("cpu.max.burst", ""),
        ("cpuset.cpus", ""),
        ("cpuset.mems", ""),
        ("pids.max", ""),
        ("io.weight", ""),
        ("io.max", ""),
        ("hugetlb.2MB.max", ""),
        ("cgroup.procs", ""),
    ];
    let got = apply(
        &files,
        json!({
            "memory": {"limit": 67_108_864, "reservation": 33_554_432, "swap": 134_217_728,
                       "swappiness": 10, "kernel": 1, "disableOOMKiller": true},
            "cpu": {"shares": 512, "quota": 50_000, "period": 200_000, "burst": 10_000, "idle": 1,
                    "cpus": "0-1", "mems": "0", "realtimeRuntime": 950_000},
            "pids": {"limit": 10},
            "blockIO": {"weight": 500},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 1_073_741_824},
                               {"pageSize": "1GB", "limit": 0}],
            "unified": {"memory.high": "50331648"},
            "network": {"classID": 1},
        }),
    );
    assert_eq!(
        got,
        map(&[
            ("cgroup.procs", ""),
            // OCI swap is memory+swap; v2 swap.max is swap alone.
            ("memory.max", "67108864"),
            ("memory.swap.max", "67108864"),
            ("memory.low", "33554432"),
            ("memory.high", "50331648"),
            // shares 512 → weight 1 + (512 - 2) * 9999 / 262142.
            ("cpu.weight", "20"),
            ("cpu.max", "50000 200000"),
            ("cpu.max.burst", "10000"),
            ("cpuset.cpus", "0-1"),
            ("cpuset.mems", "0"),
            ("pids.max", "10"),
            // blkio weight 500 → io.weight 1 + (500 - 10) * 9999 / 990.
            ("io.weight", "4950"),
            ("io.max", ""),
            ("hugetlb.2MB.max", "1073741824"),
            // cpu.idle and hugetlb.1GB.max do not exist on this "kernel": skipped, not created;
            // swappiness, kernel memory, the OOM killer switch, realtime and network: v1 only.
        ])
    );
}

/// cpu.max keeps the half that was not given, from what the file holds.
#[test]
fn golden_cpu_max_halves() {
    let cases: &[(&str, Value, &str)] = &[
        ("max 100000", json!({"quota": 50_000}), "50000 100000"),
        ("50000 100000", json!({"period": 250_000}), "50000 250000"),
        (
            "max 100000",
            json!({"quota": -1, "period": 100_000}),
            "max 100000",
        ),
        ("", json!({"quota": 20_000}), "20000 100000"),
        // 0 means "not given" for both: nothing is written.
        ("max 100000", json!({"quota": 0, "period": 0}), "max 100000"),
    ];
    for (initial, cpu, want) in cases {
        let got = apply(&[("cpu.max", initial)], json!({ "cpu": cpu }));
        assert_eq!(got, map(&[("cpu.max", want)]), "{initial:?} + {cpu}");
    }
    // Without quota or period, cpu.max is not even read.
    assert_eq!(
        apply(&[], json!({"cpu": {"quota": 0, "shares": 0}})),
        map(&[])
    );
}

/// Unlimited values are `max`; absent ones leave the file alone.
#[test]
fn golden_unlimited_and_untouched() {
    let files = [
        ("memory.max", ""),
        ("memory.swap.max", ""),
        ("memory.low", ""),
        ("pids.max", ""),
        ("cpu.weight", ""),
        ("hugetlb.1GB.max", ""),
        ("io.max", ""),
    ];
    let got = apply(
        &files,
        json!({
            "memory": {"limit": -1, "reservation": -1},
            "pids": {"limit": 0},
            "cpu": {"shares": 0},
            "hugepageLimits": [{"pageSize": "1GB", "limit": -1}],
            "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 16, "rate": 0}]},
        }),
    );
    assert_eq!(
        got,
        map(&[
            ("memory.max", "max"),
            // limit -1 without swap: swap unlimited too.
            ("memory.swap.max", "max"),
            ("memory.low", "max"),
            ("pids.max", "max"),
            ("cpu.weight", ""),
            ("hugetlb.1GB.max", "max"),
            ("io.max", "8:16 rbps=max"),
        ])
    );
    // A limit without swap leaves swap.max as it is; pids -1 is max as well.
    let got = apply(
        &[
            ("memory.max", ""),
            ("memory.swap.max", "max"),
            ("pids.max", ""),
        ],
        json!({"memory": {"limit": 1_048_576}, "pids": {"limit": -1}}),
    );
    assert_eq!(
        got,
        map(&[
            ("memory.max", "1048576"),
            ("memory.swap.max", "max"),
            ("pids.max", "max")
        ])
    );
    // No swap accounting (no memory.swap.max): the swap part is skipped with a warning.
    let got = apply(
        &[("memory.max", "")],
        json!({"memory": {"limit": 100, "swap": 300}}),
    );
    assert_eq!(got, map(&[("memory.max", "100")]));
}

/// io weight goes to BFQ's file (unconverted) when the scheduler offers it, else to io.weight.
#[test]
fn golden_io() {
    let both = [("io.bfq.weight", ""), ("io.weight", "")];
    assert_eq!(
        apply(&both, json!({"blockIO": {"weight": 500}})),
        map(&[("io.bfq.weight", "500"), ("io.weight", "")])
    );
    assert_eq!(
        apply(
            &[("io.weight", "")],
            json!({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 1000}]}})
        ),
        map(&[("io.weight", "8:0 10000")])
    );
    // Neither file: a warning, nothing created.
    assert_eq!(
        apply(
            &[],
            json!({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 10}]}})
        ),
        map(&[])
    );
    let throttles: &[(&str, &str)] = &[
        ("throttleReadBpsDevice", "8:16 rbps=1048576"),
        ("throttleWriteBpsDevice", "8:16 wbps=1048576"),
        ("throttleReadIOPSDevice", "8:16 riops=1048576"),
        ("throttleWriteIOPSDevice", "8:16 wiops=1048576"),
    ];
    for (key, want) in throttles {
        let mut block_io = json!({});
        block_io[key] = json!([{"major": 8, "minor": 16, "rate": 1_048_576}]);
        assert_eq!(
            apply(&[("io.max", "")], json!({ "blockIO": block_io })),
            map(&[("io.max", want)]),
            "{key}"
        );
    }
}

/// Errors name the file, the value and a fix; nothing after the failing write happens.
#[test]
fn golden_apply_errors() {
    // memory.max missing: the controller is not enabled. pids (applied after memory) is not touched.
    let e = apply_err(
        &[("pids.max", "")],
        json!({"memory": {"limit": 67_108_864}, "pids": {"limit": 5}}),
        &[],
    );
    assert_eq!(
        e,
        "cgroup: cannot write \"67108864\" to $DIR/memory.max: No such file or directory (os error 2); \
         the file does not exist: the controller is not enabled for this cgroup (v2: the parent's \
         cgroup.subtree_control) or the kernel lacks the feature; remove the setting from config.json"
    );
    // Writes before the failure stay.
    let e = apply_err(
        &[("memory.max", "")],
        json!({"memory": {"limit": 4096}, "pids": {"limit": 5}}),
        &[("memory.max", "4096")],
    );
    assert!(
        e.starts_with("cgroup: cannot write \"5\" to $DIR/pids.max: "),
        "{e}"
    );
    // cpu.max must be readable to keep the other half.
    let e = apply_err(&[], json!({"cpu": {"quota": 50_000}}), &[]);
    assert_eq!(
        e,
        "cgroup $DIR/cpu.max: read: No such file or directory (os error 2)"
    );
    // OCI swap checks come before any write.
    let e = apply_err(&[("memory.max", "")], json!({"memory": {"swap": 100}}), &[]);
    assert_eq!(
        e,
        "cgroup: linux.resources.memory.swap needs memory.limit as well (OCI swap is memory+swap)"
    );
    let e = apply_err(
        &[("memory.max", ""), ("memory.swap.max", "")],
        json!({"memory": {"limit": 100, "swap": 50}}),
        &[],
    );
    assert_eq!(
        e,
        "cgroup: linux.resources.memory.swap (50) is memory+swap and must be ≥ memory.limit (100), or -1"
    );
    // unified keys must be plain cgroup file names, not the runtime's own files.
    for key in ["memoryhigh", "../memory.high", ".x.y", ""] {
        let e = apply_err(&[], json!({"unified": {key: "1"}}), &[]);
        assert_eq!(
            e,
            format!(
                "cgroup: linux.resources.unified key {key:?} is not a cgroup file name like `memory.high`"
            )
        );
    }
    for key in [
        "cgroup.procs",
        "cgroup.threads",
        "cgroup.subtree_control",
        "cgroup.kill",
    ] {
        let e = apply_err(&[(key, "")], json!({"unified": {key: "1"}}), &[]);
        assert_eq!(
            e,
            format!("cgroup: linux.resources.unified may not set {key}: the runtime manages it")
        );
    }
    let e = apply_err(&[], json!({"unified": {"memory.nosuch": "1"}}), &[]);
    assert!(
        e.starts_with("cgroup: cannot write \"1\" to $DIR/memory.nosuch: No such file")
            && e.ends_with("remove the setting from config.json"),
        "{e}"
    );
    // The cgroup dir itself is gone.
    let dir = fixture(&[]);
    let gone = dir.path().join("gone");
    let e = v2::apply(&gone, &resources(json!({"pids": {"limit": 5}})))
        .unwrap_err()
        .to_string()
        .replace(dir.path().to_str().unwrap(), "$DIR");
    assert_eq!(
        e,
        "cgroup: cannot write \"5\" to $DIR/gone/pids.max: No such file or directory (os error 2); \
         the cgroup dir does not exist: create the cgroup first, or the container is gone"
    );
}

/// create: controllers the parent offers (and beam uses) are enabled top-down, dirs made as needed.
#[test]
fn golden_create() {
    let root = fixture(&[
        ("cgroup.controllers", "net_cls pids perf_event\n"),
        ("cgroup.subtree_control", ""),
    ]);
    let beam = root.path().join("beam");
    std::fs::create_dir(&beam).unwrap();
    std::fs::write(beam.join("cgroup.controllers"), "pids\n").unwrap();
    std::fs::write(beam.join("cgroup.subtree_control"), "pids\n").unwrap();
    v2::create(root.path(), "/beam//c1").unwrap();
    assert_eq!(
        contents(root.path()),
        map(&[
            ("cgroup.controllers", "net_cls pids perf_event\n"),
            // Only pids: net_cls and perf_event are not controllers beam enables.
            ("cgroup.subtree_control", "+pids"),
            ("beam", "<dir>"),
            ("beam/cgroup.controllers", "pids\n"),
            // Already enabled: not written again.
            ("beam/cgroup.subtree_control", "pids\n"),
            ("beam/c1", "<dir>"),
        ])
    );
    // Idempotent: an existing cgroup is joined as is.
    v2::create(root.path(), "beam/c1").unwrap();
    // A new intermediate dir of a fake tree has no interface files (the kernel would add them).
    let e = v2::create(root.path(), "other/c2")
        .unwrap_err()
        .to_string()
        .replace(root.path().to_str().unwrap(), "$DIR");
    assert_eq!(
        e,
        "cgroup $DIR/other/cgroup.controllers: read: No such file or directory (os error 2)"
    );
    assert!(!root.path().join("other/c2").exists());
}

#[test]
fn golden_freezer() {
    let dir = fixture(&[
        ("cgroup.freeze", ""),
        ("cgroup.events", "populated 1\nfrozen 1\n"),
    ]);
    v2::set_frozen(dir.path(), true).unwrap();
    assert!(v2::is_frozen(dir.path()).unwrap());
    assert_eq!(
        contents(dir.path()),
        map(&[
            ("cgroup.freeze", "1"),
            ("cgroup.events", "populated 1\nfrozen 1\n")
        ])
    );
    let dir = fixture(&[
        ("cgroup.freeze", ""),
        ("cgroup.events", "populated 0\nfrozen 0\n"),
    ]);
    v2::set_frozen(dir.path(), false).unwrap();
    assert!(!v2::is_frozen(dir.path()).unwrap());
    assert_eq!(contents(dir.path())["cgroup.freeze"], "0");
    let dir = fixture(&[("cgroup.events", "frozen 0\n")]);
    let e = v2::set_frozen(dir.path(), true)
        .unwrap_err()
        .to_string()
        .replace(dir.path().to_str().unwrap(), "$DIR");
    assert_eq!(
        e,
        "cgroup: $DIR/cgroup.freeze does not exist: the v2 freezer needs Linux ≥ 5.2"
    );
}
