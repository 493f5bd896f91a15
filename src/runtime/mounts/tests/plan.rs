//! Golden tests of [`RootfsPlan::new`]: specs in, the exact planned steps out. Parent-side only (no
//! mount is made), so they run unprivileged. The plan is rendered to one line per step with every
//! flag spelled out; host-dependent parts (the rootfs' parent mount, /proc/kcore, host proc/sysfs
//! mounts for --no-pivot) are left out of the rendering and checked on their own.

use super::super::options::Attrs;
use super::super::sys::{
    MOUNT_ATTR_ATIME_MASK, MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME,
    MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_RDONLY,
    MOUNT_ATTR_STRICTATIME,
};
use super::super::{
    CgroupMount, ChildFailure, FsParam, MountError, MountOp, RootfsOptions, RootfsPlan, Step,
};
use nix::errno::Errno;
use oci_spec::runtime::Spec;
use serde_json::{Value, json};
use std::ffi::CStr;
use std::path::{Path, PathBuf};

/// A bundle dir with `rootfs/`, a directory `src/` and a file `hosts` to bind.
struct Bundle {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Bundle {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("beam-plan-")
            .tempdir()
            .unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(path.join("rootfs")).unwrap();
        std::fs::create_dir(path.join("src")).unwrap();
        std::fs::write(path.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        Self { _dir: dir, path }
    }

    fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    fn plan_with(
        &self,
        spec: Value,
        cgroup: CgroupMount,
        no_pivot: bool,
    ) -> Result<RootfsPlan, MountError> {
        let spec: Spec = serde_json::from_value(spec).expect("spec json");
        let opts = RootfsOptions {
            no_pivot,
            cgroup,
            bundle: self.path.clone(),
        };
        RootfsPlan::new(&spec, &self.rootfs(), &opts)
    }

    fn plan(&self, spec: Value) -> RootfsPlan {
        self.plan_with(spec, CgroupMount::V2, false)
            .unwrap_or_else(|e| panic!("plan: {e}"))
    }

    /// The error message, with the bundle path written as `$BUNDLE`.
    fn error(&self, spec: Value, cgroup: CgroupMount) -> String {
        let e = self
            .plan_with(spec, cgroup, false)
            .expect_err("an invalid spec");
        assert!(matches!(e, MountError::Invalid { .. }), "{e:?}");
        self.redact(&e.to_string())
    }

    fn redact(&self, s: &str) -> String {
        s.replace(self.path.to_str().unwrap(), "$BUNDLE")
    }

    /// The plan, one line per step, with the bundle path written as `$BUNDLE`.
    fn render(&self, plan: &RootfsPlan) -> Vec<String> {
        render(plan).iter().map(|l| self.redact(l)).collect()
    }
}

fn spec(root_readonly: bool, mounts: Vec<Value>, linux: Value) -> Value {
    json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs", "readonly": root_readonly},
        "mounts": mounts,
        "linux": linux,
    })
}

fn namespaces(kinds: &[&str]) -> Value {
    Value::Array(kinds.iter().map(|k| json!({ "type": k })).collect())
}

fn c(s: &CStr) -> String {
    s.to_string_lossy().into_owned()
}

/// `+ro+nosuid-atime`: the bits set, then the bits cleared (`-atime` is the whole atime mask); `-`
/// for nothing. Unknown bits show as hex so that nothing goes unnoticed.
fn attrs(a: Attrs) -> String {
    const NAMES: [(u64, &str); 8] = [
        (MOUNT_ATTR_RDONLY, "ro"),
        (MOUNT_ATTR_NOSUID, "nosuid"),
        (MOUNT_ATTR_NODEV, "nodev"),
        (MOUNT_ATTR_NOEXEC, "noexec"),
        (MOUNT_ATTR_NOATIME, "noatime"),
        (MOUNT_ATTR_STRICTATIME, "strictatime"),
        (MOUNT_ATTR_NODIRATIME, "nodiratime"),
        (MOUNT_ATTR_NOSYMFOLLOW, "nosymfollow"),
    ];
    let mut out = String::new();
    let mut bits = |sign: char, mut v: u64| {
        if sign == '-' && v & MOUNT_ATTR_ATIME_MASK == MOUNT_ATTR_ATIME_MASK {
            out.push_str("-atime");
            v &= !MOUNT_ATTR_ATIME_MASK;
        }
        for (bit, name) in NAMES {
            if v & bit != 0 {
                out.push(sign);
                out.push_str(name);
                v &= !bit;
            }
        }
        if v != 0 {
            out.push_str(&format!("{sign}{v:#x}"));
        }
    };
    bits('+', a.set);
    bits('-', a.clr);
    if out.is_empty() { "-".into() } else { out }
}

/// MS_{PRIVATE,SHARED,SLAVE,UNBINDABLE} [| MS_REC] as the option name (`rslave`, `shared`, ...).
fn prop(p: u64) -> String {
    let kind = p & !libc::MS_REC;
    let name = match kind {
        libc::MS_PRIVATE => "private",
        libc::MS_SHARED => "shared",
        libc::MS_SLAVE => "slave",
        libc::MS_UNBINDABLE => "unbindable",
        _ => return format!("{p:#x}"),
    };
    format!("{}{name}", if p & libc::MS_REC != 0 { "r" } else { "" })
}

fn params(list: &[FsParam]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|p| match &p.value {
            Some(v) => format!("{}={}", c(&p.key), c(v)),
            None => c(&p.key),
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn op(op: &MountOp) -> String {
    match op {
        MountOp::Bind {
            source,
            recursive,
            file,
        } => format!("bind {} recursive={recursive} file={file}", c(source)),
        MountOp::Fs {
            fstype,
            source,
            params: p,
            fallback,
        } => format!(
            "fs {} src={} params={}{}",
            c(fstype),
            source.as_deref().map_or("-".into(), c),
            params(p),
            fallback
                .as_deref()
                .map_or(String::new(), |f| format!(" fallback={}", c(f)))
        ),
        MountOp::Remount { params: p } => format!("remount params={}", params(p)),
        MountOp::CgroupV1 {
            tmpfs_params,
            hierarchies,
        } => {
            let h: Vec<String> = hierarchies
                .iter()
                .map(|h| {
                    let links: Vec<String> = h.links.iter().map(|l| c(l)).collect();
                    format!("{}={} links({})", c(&h.name), c(&h.host), links.join(","))
                })
                .collect();
            format!("cgroupv1 tmpfs={} [{}]", params(tmpfs_params), h.join("; "))
        }
    }
}

fn render(plan: &RootfsPlan) -> Vec<String> {
    let mut out = vec![
        format!("rootfs {}", c(&plan.rootfs)),
        format!(
            "propagation / {} then {}",
            prop(plan.root_propagation),
            plan.final_propagation.map_or("-".into(), prop)
        ),
        format!(
            "root_readonly={} no_pivot={} inherit_mount_ns={}",
            plan.root_readonly, plan.no_pivot, plan.inherit_mount_ns
        ),
    ];
    for m in &plan.mounts {
        let props: Vec<String> = m.propagation.iter().map(|&p| prop(p)).collect();
        out.push(format!(
            "{} -> {}: {} attrs={} rec={} prop=[{}]{}{}",
            m.label,
            c(&m.rel),
            op(&m.op),
            attrs(m.attrs),
            attrs(m.rec_attrs),
            props.join(","),
            if m.ro_later { " ro_later" } else { "" },
            if m.no_symlink_leaf {
                " no_symlink_leaf"
            } else {
                ""
            },
        ));
    }
    match &plan.dev {
        None => out.push("dev none".into()),
        Some(d) => {
            out.push(format!("dev links={} ptmx={}", d.links, d.ptmx));
            for n in &d.devices {
                let kind = match n.kind {
                    libc::S_IFCHR => "c",
                    libc::S_IFBLK => "b",
                    libc::S_IFIFO => "p",
                    _ => "?",
                };
                out.push(format!(
                    "{} -> {}: {kind} {}:{} {:04o} {}:{} host={}",
                    n.label,
                    c(&n.rel),
                    libc::major(n.rdev),
                    libc::minor(n.rdev),
                    n.mode,
                    n.uid,
                    n.gid,
                    c(&n.host)
                ));
            }
        }
    }
    for (what, list) in [
        ("readonly", &plan.readonly_paths),
        ("masked", &plan.masked_paths),
    ] {
        for p in list {
            out.push(format!("{what} {} -> {}", p.label, c(&p.rel)));
        }
    }
    out
}

#[track_caller]
fn assert_lines(got: &[String], want: &[&str]) {
    let got: Vec<&str> = got.iter().map(String::as_str).collect();
    assert_eq!(
        got,
        want,
        "\n--- got:\n{}\n--- want:\n{}\n",
        got.join("\n"),
        want.join("\n")
    );
}

/// runc's `spec` mounts, devices implied by the /dev tmpfs, masked and readonly paths.
#[test]
fn golden_runc_default_spec() {
    let b = Bundle::new();
    let mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    let linux = json!({
        "namespaces": namespaces(&["pid", "network", "ipc", "uts", "mount", "cgroup"]),
        "maskedPaths": ["/proc/acpi", "/proc/kcore", "/sys/firmware"],
        "readonlyPaths": ["/proc/bus", "/proc/sys", "/proc/sysrq-trigger"],
    });
    let plan = b.plan(spec(false, mounts, linux));
    assert_lines(
        &b.render(&plan),
        &[
            "rootfs $BUNDLE/rootfs",
            "propagation / rslave then -",
            "root_readonly=false no_pivot=false inherit_mount_ns=false",
            "mounts[0] (proc on /proc) -> proc: fs proc src=proc params=[] attrs=- rec=- prop=[] no_symlink_leaf",
            "mounts[1] (tmpfs on /dev) -> dev: fs tmpfs src=tmpfs params=[mode=755,size=65536k] attrs=+nosuid+strictatime-atime rec=- prop=[]",
            "mounts[2] (devpts on /dev/pts) -> dev/pts: fs devpts src=devpts params=[newinstance,ptmxmode=0666,mode=0620,gid=5] attrs=+nosuid+noexec rec=- prop=[]",
            "mounts[3] (tmpfs on /dev/shm) -> dev/shm: fs tmpfs src=shm params=[mode=1777,size=65536k] attrs=+nosuid+nodev+noexec rec=- prop=[]",
            "mounts[4] (mqueue on /dev/mqueue) -> dev/mqueue: fs mqueue src=mqueue params=[] attrs=+nosuid+nodev+noexec rec=- prop=[]",
            "mounts[5] (sysfs on /sys) -> sys: fs sysfs src=sysfs params=[] fallback=/sys attrs=+ro+nosuid+nodev+noexec rec=- prop=[] no_symlink_leaf",
            // relatime is MOUNT_ATTR_RELATIME (0) with the atime mask cleared.
            "mounts[6] (cgroup on /sys/fs/cgroup) -> sys/fs/cgroup: fs cgroup2 src=cgroup2 params=[] fallback=/sys/fs/cgroup attrs=+ro+nosuid+nodev+noexec-atime rec=- prop=[]",
            "dev links=true ptmx=true",
            "default device /dev/null -> dev/null: c 1:3 0666 0:0 host=/dev/null",
            "default device /dev/zero -> dev/zero: c 1:5 0666 0:0 host=/dev/zero",
            "default device /dev/full -> dev/full: c 1:7 0666 0:0 host=/dev/full",
            "default device /dev/random -> dev/random: c 1:8 0666 0:0 host=/dev/random",
            "default device /dev/urandom -> dev/urandom: c 1:9 0666 0:0 host=/dev/urandom",
            "default device /dev/tty -> dev/tty: c 5:0 0666 0:0 host=/dev/tty",
            "readonly linux.readonlyPaths[0] /proc/bus -> proc/bus",
            "readonly linux.readonlyPaths[1] /proc/sys -> proc/sys",
            "readonly linux.readonlyPaths[2] /proc/sysrq-trigger -> proc/sysrq-trigger",
            "masked linux.maskedPaths[0] /proc/acpi -> proc/acpi",
            "masked linux.maskedPaths[1] /proc/kcore -> proc/kcore",
            "masked linux.maskedPaths[2] /sys/firmware -> sys/firmware",
        ],
    );
    // The host-dependent parts: /dev/core only where the host has /proc/kcore; no host mounts to hide
    // without --no-pivot.
    let dev = plan.dev.as_ref().unwrap();
    assert_eq!(dev.kcore, Path::new("/proc/kcore").exists());
    assert!(plan.no_pivot_hide.is_empty());
}

/// Binds (dir, file, relative and absolute sources), per-mount flags, recursive attributes, a
/// delayed read-only tmpfs, propagation options, a remount, and a shared read-only root.
#[test]
fn golden_binds_flags_and_propagation() {
    let b = Bundle::new();
    let hosts = b.path.join("hosts");
    let mounts = vec![
        json!({"destination": "/data", "type": "bind", "source": "src",
               "options": ["rbind", "ro", "nosuid", "nodev", "noexec", "rprivate"]}),
        json!({"destination": "/etc/hosts", "type": "none", "source": hosts,
               "options": ["bind", "rro", "rnosuid", "rnodev"]}),
        json!({"destination": "/tmp//x/../", "type": "tmpfs", "source": "tmpfs",
               "options": ["ro", "mode=1777", "size=64m,nr_inodes=4k", "sync", "dirsync"]}),
        json!({"destination": "/mnt", "type": "tmpfs",
               "options": ["noatime", "nosymfollow", "nodiratime", "slave", "unbindable"]}),
        json!({"destination": "/data", "options": ["remount", "bind", "rw", "suid", "nodev", "rshared"]}),
        // A new mount only adds flags: rw/exec/suid clear nothing.
        json!({"destination": "/run/rw", "type": "tmpfs", "source": "tmpfs", "options": ["rw", "exec", "suid"]}),
        json!({"destination": "/srv", "type": "bind", "source": "src",
               "options": ["rbind", "rrelatime", "rnoexec", "rexec", "rrw"]}),
    ];
    let linux = json!({"namespaces": namespaces(&["mount"]), "rootfsPropagation": "shared"});
    let plan = b.plan(spec(true, mounts, linux));
    assert_lines(
        &b.render(&plan),
        &[
            "rootfs $BUNDLE/rootfs",
            "propagation / shared then shared",
            "root_readonly=true no_pivot=false inherit_mount_ns=false",
            "mounts[0] (bind on /data) -> data: bind $BUNDLE/src recursive=true file=false attrs=+ro+nosuid+nodev+noexec rec=- prop=[rprivate]",
            "mounts[1] (none on /etc/hosts) -> etc/hosts: bind $BUNDLE/hosts recursive=false file=true attrs=- rec=+ro+nosuid+nodev prop=[]",
            // ro is held back until the tmpfs is populated (ro_later); sync/dirsync are superblock flags.
            "mounts[2] (tmpfs on /tmp//x/../) -> tmp: fs tmpfs src=tmpfs params=[mode=1777,size=64m,nr_inodes=4k,sync,dirsync] attrs=- rec=- prop=[] ro_later",
            // No source: the type is the source.
            "mounts[3] (tmpfs on /mnt) -> mnt: fs tmpfs src=tmpfs params=[] attrs=+noatime+nodiratime+nosymfollow-atime rec=- prop=[slave,unbindable]",
            // A remount clears what the options explicitly turned off.
            "mounts[4] (bind on /data) -> data: remount params=[] attrs=+nodev-ro-nosuid rec=- prop=[rshared]",
            "mounts[5] (tmpfs on /run/rw) -> run/rw: fs tmpfs src=tmpfs params=[] attrs=- rec=- prop=[]",
            "mounts[6] (bind on /srv) -> srv: bind $BUNDLE/src recursive=true file=false attrs=- rec=-atime-ro-noexec prop=[]",
            "dev none",
        ],
    );
    assert!(plan.no_pivot_hide.is_empty());
}

/// linux.rootfsPropagation: `/` first gets it (rslave when unset or unbindable), the final value is
/// applied again at the end.
#[test]
fn golden_rootfs_propagation() {
    let b = Bundle::new();
    let cases: &[(Option<&str>, &str)] = &[
        (None, "propagation / rslave then -"),
        (Some(""), "propagation / rslave then -"),
        (Some("private"), "propagation / private then private"),
        (Some("rprivate"), "propagation / rprivate then rprivate"),
        (Some("shared"), "propagation / shared then shared"),
        (Some("rshared"), "propagation / rshared then rshared"),
        (Some("slave"), "propagation / slave then slave"),
        (Some("rslave"), "propagation / rslave then rslave"),
        // An unbindable `/` could not be bind-mounted from: made unbindable only at the end.
        (Some("unbindable"), "propagation / rslave then unbindable"),
        (Some("runbindable"), "propagation / rslave then runbindable"),
    ];
    for &(value, want) in cases {
        let mut linux = json!({"namespaces": namespaces(&["mount"])});
        if let Some(v) = value {
            linux["rootfsPropagation"] = json!(v);
        }
        let plan = b.plan(spec(false, vec![], linux));
        assert_eq!(b.render(&plan)[1], want, "rootfsPropagation {value:?}");
    }
    // Without a mount namespace the caller's is used: `/` is left alone and nothing is made private.
    let plan = b.plan(spec(
        false,
        vec![],
        json!({"namespaces": namespaces(&["pid"])}),
    ));
    assert_eq!(
        b.render(&plan)[2],
        "root_readonly=false no_pivot=false inherit_mount_ns=true"
    );
    assert!(plan.rootfs_parent_private.is_none());
    // --no-pivot: the host's own /proc is among the mounts hidden before chroot.
    let linux = json!({"namespaces": namespaces(&["mount"])});
    let plan = b
        .plan_with(spec(false, vec![], linux), CgroupMount::V2, true)
        .unwrap();
    let hidden: Vec<String> = plan.no_pivot_hide.iter().map(|p| p.label.clone()).collect();
    assert!(hidden.iter().any(|h| h == "host mount /proc"), "{hidden:?}");
    assert!(plan.no_pivot);
}

/// `type: cgroup` per host layout and namespaces.
#[test]
fn golden_cgroup_mounts() {
    let b = Bundle::new();
    let cgroup_spec = |ns: &[&str]| {
        spec(
            false,
            vec![
                json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                        "options": ["ro", "nosuid"]}),
            ],
            json!({"namespaces": namespaces(ns)}),
        )
    };
    let line = |plan: &RootfsPlan| b.render(plan)[3].clone();
    let v2_ns = b.plan(cgroup_spec(&["mount", "cgroup"]));
    assert_eq!(
        line(&v2_ns),
        "mounts[0] (cgroup on /sys/fs/cgroup) -> sys/fs/cgroup: fs cgroup2 src=cgroup2 params=[] fallback=/sys/fs/cgroup attrs=+ro+nosuid rec=- prop=[]"
    );
    // No cgroup namespace: a fresh cgroup2 mount would reset the host's mount options; bind instead.
    let v2_host = b.plan(cgroup_spec(&["mount"]));
    assert_eq!(
        line(&v2_host),
        "mounts[0] (cgroup on /sys/fs/cgroup) -> sys/fs/cgroup: bind /sys/fs/cgroup recursive=true file=false attrs=+ro+nosuid rec=- prop=[]"
    );
    let v1 = CgroupMount::V1 {
        hierarchies: vec![
            (
                "cpu,cpuacct".into(),
                "/sys/fs/cgroup/cpu,cpuacct/beam/c1".into(),
            ),
            (
                "name=systemd".into(),
                "/sys/fs/cgroup/systemd/beam/c1".into(),
            ),
            ("memory".into(), "/sys/fs/cgroup/memory/beam/c1".into()),
        ],
    };
    let plan = b
        .plan_with(cgroup_spec(&["mount", "cgroup"]), v1, false)
        .unwrap();
    assert_eq!(
        line(&plan),
        "mounts[0] (cgroup on /sys/fs/cgroup) -> sys/fs/cgroup: cgroupv1 tmpfs=[mode=755] \
         [cpu,cpuacct=/sys/fs/cgroup/cpu,cpuacct/beam/c1 links(cpu,cpuacct); \
         systemd=/sys/fs/cgroup/systemd/beam/c1 links(); memory=/sys/fs/cgroup/memory/beam/c1 links()] \
         attrs=+ro+nosuid rec=- prop=[]"
    );
    let bad = CgroupMount::V1 {
        hierarchies: vec![("a/b".into(), "/sys/fs/cgroup/a".into())],
    };
    assert_eq!(
        b.error(cgroup_spec(&["mount"]), bad),
        "mounts[0] (cgroup on /sys/fs/cgroup): bad cgroup hierarchy name \"a/b\" (fix: use the hierarchy's directory name)"
    );
}

/// linux.devices: spec devices first (mode masked to permission bits), then runc's defaults not
/// already listed; only the spec's without a /dev mount; none at all over a bind-mounted /dev.
#[test]
fn golden_devices() {
    let b = Bundle::new();
    let devices = json!([
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600, "uid": 1000, "gid": 1001},
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
        {"path": "/dev//sda", "type": "b", "major": 8, "minor": 0, "fileMode": 0o060_660},
        {"path": "/dev/fifo0", "type": "p"},
        {"path": "/dev/ttyX", "type": "u", "major": 4, "minor": 64, "fileMode": 0o4620},
    ]);
    let linux = json!({"namespaces": namespaces(&["mount"]), "devices": devices});
    let dev_tmpfs = json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs"});
    let spec_devices = [
        "linux.devices[0] /dev/fuse -> dev/fuse: c 10:229 0600 1000:1001 host=/dev/fuse",
        "linux.devices[1] /dev/null -> dev/null: c 1:3 0666 0:0 host=/dev/null",
        "linux.devices[2] /dev//sda -> dev/sda: b 8:0 0660 0:0 host=/dev/sda",
        "linux.devices[3] /dev/fifo0 -> dev/fifo0: p 0:0 0666 0:0 host=/dev/fifo0",
        "linux.devices[4] /dev/ttyX -> dev/ttyX: c 4:64 4620 0:0 host=/dev/ttyX",
    ];
    let plan = b.plan(spec(false, vec![dev_tmpfs], linux.clone()));
    let got = b.render(&plan);
    let mut want = vec!["dev links=true ptmx=false"];
    want.extend(spec_devices);
    want.extend([
        "default device /dev/zero -> dev/zero: c 1:5 0666 0:0 host=/dev/zero",
        "default device /dev/full -> dev/full: c 1:7 0666 0:0 host=/dev/full",
        "default device /dev/random -> dev/random: c 1:8 0666 0:0 host=/dev/random",
        "default device /dev/urandom -> dev/urandom: c 1:9 0666 0:0 host=/dev/urandom",
        "default device /dev/tty -> dev/tty: c 5:0 0666 0:0 host=/dev/tty",
    ]);
    assert_lines(&got[4..], &want);

    let plan = b.plan(spec(false, vec![], linux.clone()));
    let mut want = vec!["dev links=false ptmx=false"];
    want.extend(spec_devices);
    assert_lines(&b.render(&plan)[3..], &want);

    let dev_bind =
        json!({"destination": "/dev", "type": "bind", "source": "src", "options": ["rbind"]});
    let plan = b.plan(spec(false, vec![dev_bind], linux));
    assert!(plan.dev.is_none());
}

/// Specs that are refused before clone, with the exact message (what, problem, fix).
#[test]
fn golden_plan_errors() {
    let b = Bundle::new();
    let mnt = |m: Value| {
        spec(
            false,
            vec![m],
            json!({"namespaces": namespaces(&["mount"])}),
        )
    };
    let linux = |l: Value| spec(false, vec![], l);
    let cases: Vec<(Value, &str)> = vec![
        (
            mnt(json!({"destination": "/x/..", "type": "tmpfs"})),
            "mounts[0] (tmpfs on /x/..): destination is the root itself (fix: use root.path for the root filesystem)",
        ),
        (
            mnt(
                json!({"destination": "/x", "type": "bind", "source": "src", "options": ["rbind", "idmap"]}),
            ),
            "mounts[0] (bind on /x): option \"idmap\": idmapped mounts are not supported yet (fix: drop the option)",
        ),
        (
            mnt(
                json!({"destination": "/x", "type": "bind", "source": "src", "options": ["rbind"],
                       "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                       "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}),
            ),
            "mounts[0] (bind on /x): uidMappings/gidMappings (idmapped mounts) are not supported yet (fix: drop them)",
        ),
        (
            mnt(
                json!({"destination": "/x", "type": "bind", "source": "missing", "options": ["bind"]}),
            ),
            "mounts[0] (bind on /x): bind source $BUNDLE/missing: No such file or directory (os error 2) (fix: create the source or fix the path)",
        ),
        (
            mnt(
                json!({"destination": "/proc/self", "type": "bind", "source": "src", "options": ["bind"]}),
            ),
            "mounts[0] (bind on /proc/self): cannot mount inside /proc (fix: only binds over /proc/cpuinfo, \
             /proc/diskstats, /proc/meminfo, /proc/stat, /proc/swaps, /proc/uptime, /proc/loadavg, /proc/slabinfo, \
             /proc/pressure/cpu, /proc/pressure/io, /proc/pressure/memory, /proc/net/dev, /proc/sys/kernel/ns_last_pid are allowed)",
        ),
        (
            linux(json!({"rootfsPropagation": "sideways"})),
            "linux.rootfsPropagation: unknown value \"sideways\" (fix: use one of private, rprivate, shared, \
             rshared, slave, rslave, unbindable, runbindable)",
        ),
        (
            linux(json!({"maskedPaths": ["/proc/kcore", "proc/keys"]})),
            "linux.maskedPaths[1] proc/keys: is not an absolute path (fix: use an absolute path)",
        ),
        (
            linux(json!({"readonlyPaths": ["sys"]})),
            "linux.readonlyPaths[0] sys: is not an absolute path (fix: use an absolute path)",
        ),
        (
            linux(json!({"devices": [{"path": "dev/x", "type": "c", "major": 1, "minor": 1}]})),
            "linux.devices[0] dev/x: path is not absolute (fix: use e.g. /dev/fuse)",
        ),
        (
            linux(json!({"devices": [{"path": "/dev/x", "type": "c", "major": -1, "minor": 1}]})),
            "linux.devices[0] /dev/x: major/minor out of range (fix: use the numbers `ls -l` shows for the device)",
        ),
    ];
    for (s, want) in cases {
        assert_eq!(b.error(s, CgroupMount::V2), want);
    }
    let s: Spec = serde_json::from_value(linux(json!({}))).unwrap();
    let opts = RootfsOptions {
        no_pivot: false,
        cgroup: CgroupMount::V2,
        bundle: b.path.clone(),
    };
    let e = RootfsPlan::new(&s, Path::new("rootfs"), &opts).unwrap_err();
    assert_eq!(
        e.to_string(),
        "root.path rootfs: is not absolute (fix: pass the canonical absolute rootfs path)"
    );
}

/// A child-side failure (three integers) is turned into a message naming the mount, device or path.
#[test]
fn golden_child_failure_messages() {
    let b = Bundle::new();
    let mounts = vec![
        json!({"destination": "/proc", "type": "proc"}),
        json!({"destination": "/etc/hosts", "type": "bind", "source": "hosts", "options": ["bind"]}),
        json!({"destination": "/dev", "type": "tmpfs"}),
    ];
    let linux = json!({"namespaces": namespaces(&["mount"]), "maskedPaths": ["/proc/kcore"]});
    let plan = b.plan(spec(false, mounts, linux));
    let cases: &[(Step, u32, Errno, &str)] = &[
        (
            Step::MoveMount,
            1,
            Errno::ENOTDIR,
            "mounts[1] (bind on /etc/hosts): attaching the mount (move_mount) failed: ENOTDIR: Not a directory \
             (hint: a file can only be mounted on a file and a directory on a directory: fix the source or the destination)",
        ),
        (
            Step::FsCreate,
            0,
            Errno::EPERM,
            "mounts[0] (proc on /proc): creating the filesystem (fsconfig CMD_CREATE) failed: EPERM: Operation not \
             permitted (hint: not permitted here: in a user namespace proc needs a new PID namespace, mqueue a new IPC \
             namespace, sysfs a new network namespace, cgroup2 a cgroup namespace)",
        ),
        (
            Step::DevNode,
            4,
            Errno::EINVAL,
            "default device /dev/urandom: mknod failed: EINVAL: Invalid argument (hint: check the device's type, major and minor)",
        ),
        (
            Step::MaskPath,
            0,
            Errno::EBUSY,
            "linux.maskedPaths[0] /proc/kcore: masking the path failed: EBUSY: Device or resource busy (hint: the path \
             exists but could not be covered; fix linux.readonlyPaths / linux.maskedPaths)",
        ),
        (
            Step::PivotRoot,
            0,
            Errno::EINVAL,
            "root.path $BUNDLE/rootfs: pivot_root failed: EINVAL: Invalid argument (hint: the rootfs must be a mount \
             point whose parent is not shared and not on ramfs/initramfs (use --no-pivot there))",
        ),
        // An index past the list falls back to the rootfs rather than panicking.
        (
            Step::MoveMount,
            99,
            Errno::ENOENT,
            "root.path $BUNDLE/rootfs: attaching the mount (move_mount) failed: ENOENT: No such file or directory \
             (hint: check the mount destination and options)",
        ),
    ];
    for &(step, index, errno, want) in cases {
        let f = ChildFailure {
            step,
            index,
            errno: errno as i32,
        };
        let described = plan.describe(f);
        assert!(matches!(described, MountError::Sys { .. }));
        assert_eq!(b.redact(&described.to_string()), want);
        // The allocation-free rendering used in the child says the same.
        assert_eq!(b.redact(&plan.explain(f).to_string()), want);
    }
}
