//! The container tests proper: each builds a bundle, runs a child through prepare/enter/finalize and checks
//! what busybox saw inside.

use super::*;

#[test]
#[ignore = "needs root"]
#[allow(clippy::too_many_lines, reason = "one container from runc's spec, every mount checked in order")]
fn runc_spec_full_container() {
    require_root();
    let b = Bundle::new();
    let host_data = b.path().join("hostdata");
    std::fs::create_dir(&host_data).unwrap();
    std::fs::write(host_data.join("marker"), "from-host").unwrap();
    std::fs::write(b.path().join("hostfile.txt"), "file-bind").unwrap();
    let cg_cpu = b.path().join("cg-cpu");
    let cg_mem = b.path().join("cg-mem");
    std::fs::create_dir(&cg_cpu).unwrap();
    std::fs::create_dir(&cg_mem).unwrap();
    std::fs::write(cg_cpu.join("marker"), "cpu-hier").unwrap();
    let mut mounts = runc_mounts(true);
    mounts.push(
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                       "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    );
    mounts.push(json!({"destination": "/data", "type": "bind", "source": host_data, "options": ["rbind", "ro"]}));
    // Relative source: relative to the bundle. A file source gets a file mount point.
    mounts.push(
        json!({"destination": "/etc/hostfile", "type": "none", "source": "hostfile.txt",
                       "options": ["bind", "nosuid", "shared"]}),
    );
    let linux = json!({
        "namespaces": [{"type": "mount"}],
        "maskedPaths": MASKED, "readonlyPaths": READONLY,
        "devices": [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600, "uid": 1000, "gid": 1001},
            {"path": "/dev/sub/fifo", "type": "p", "fileMode": 0o640}
        ]
    });
    let cgroup = CgroupMount::V1 {
        hierarchies: vec![
            ("cpu,cpuacct".to_string(), cg_cpu.clone()),
            ("memory".to_string(), cg_mem.clone()),
        ],
    };
    let plan = b.plan(spec(mounts, linux, true), false, cgroup).unwrap();
    let script = format!(
        "{}{}",
        probe(),
        r#"
echo "data=$($B cat /data/marker)"
echo "dataw=$($B touch /data/new 2>&1)"
echo "hostfile=$($B cat /etc/hostfile)"
echo "fuse=$($B stat -c '%a %u %g %F %t:%T' /dev/fuse)"
echo "fifo=$($B stat -c '%a %F' /dev/sub/fifo)"
echo "cgls=$($B ls /sys/fs/cgroup | $B tr '\n' ' ')"
echo "cgcpu=$($B cat /sys/fs/cgroup/cpu/marker)"
echo "cgw=$($B touch /sys/fs/cgroup/memory/x 2>&1)"
"#
    );
    let o = run(&plan, &Setup::default(), &script);
    assert_ok(&plan, &o);

    // Exactly the expected mounts, in order, and no host path as a mount point.
    let mut expected: Vec<String> = [
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/memory",
        "/data",
        "/etc/hostfile",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expected.extend(
        READONLY
            .iter()
            .chain(MASKED)
            .filter(|p| Path::new(p).exists())
            .map(|s| s.to_string()),
    );
    assert_eq!(o.mount_points(), expected, "\n{}", o.out);
    let base = b.path().to_string_lossy().into_owned();
    assert!(o.mount_points().iter().all(|m| !m.contains(&base)));
    let info = o.mountinfo();
    let opts_of = |mp: &str| {
        info.iter()
            .find(|f| f[4] == mp)
            .map(|f| f[5].clone())
            .unwrap()
    };
    let fstype_of = |mp: &str| {
        let f = info.iter().find(|f| f[4] == mp).unwrap();
        f[f.iter().position(|x| x == "-").unwrap() + 1].clone()
    };
    assert!(
        opts_of("/").starts_with("ro"),
        "readonly root: {}",
        opts_of("/")
    );
    assert!(opts_of("/sys").starts_with("ro,") && fstype_of("/sys") == "sysfs");
    assert!(opts_of("/data").starts_with("ro,"));
    assert!(opts_of("/etc/hostfile").contains("nosuid"));
    let hostfile = info.iter().find(|f| f[4] == "/etc/hostfile").unwrap();
    assert!(
        hostfile.iter().any(|f| f.starts_with("shared:")),
        "{hostfile:?}"
    );
    let data = info.iter().find(|f| f[4] == "/data").unwrap();
    assert!(!data.iter().any(|f| f.starts_with("shared:")), "{data:?}");
    assert!(opts_of("/dev/shm").contains("nodev") && fstype_of("/dev/shm") == "tmpfs");
    assert!(
        opts_of("/dev").contains("nosuid") && !opts_of("/dev").contains("relatime"),
        "strictatime on /dev"
    );
    assert_eq!(fstype_of("/dev/pts"), "devpts");
    assert_eq!(fstype_of("/dev/mqueue"), "mqueue");
    assert!(
        opts_of("/sys/fs/cgroup").starts_with("ro,")
            && opts_of("/sys/fs/cgroup/memory").starts_with("ro,")
    );
    assert!(opts_of("/proc/sys").starts_with("ro,nosuid,nodev,noexec"));

    // /dev and devices.
    line_is(&o, "devnull", "0");
    line_is(&o, "devfd", "/proc/self/fd");
    line_is(&o, "stdin", "/proc/self/fd/0");
    line_is(&o, "ptmx", "pts/ptmx");
    line_is(&o, "null", "666 character special file 1:3");
    line_is(&o, "zero", "5");
    line_is(&o, "fuse", "600 1000 1001 character special file a:e5");
    line_is(&o, "fifo", "640 fifo");
    // Read-only things refuse writes; the shm tmpfs accepts them.
    line_is(&o, "masked", "0");
    has_line_with(&o, "etc", "Read-only file system");
    line_is(&o, "shm", "ok");
    has_line_with(&o, "procsys", "Read-only file system");
    has_line_with(&o, "sysw", "Read-only file system");
    line_is(&o, "firmware", "0");
    line_is(&o, "pwd", "/");
    line_is(&o, "data", "from-host");
    has_line_with(&o, "dataw", "Read-only file system");
    line_is(&o, "hostfile", "file-bind");
    line_is(&o, "cgls", "cpu cpu,cpuacct cpuacct memory ");
    line_is(&o, "cgcpu", "cpu-hier");
    has_line_with(&o, "cgw", "Read-only file system");
    // Mount points were created inside the rootfs; nothing is left mounted on the host.
    assert!(b.rootfs().join("etc/hostfile").is_file() && b.rootfs().join("data").is_dir());
    assert!(!host_data.join("new").exists() && !cg_mem.join("x").exists());
    assert_eq!(host_mounts_with(&base), Vec::<String>::new());
}

#[test]
#[ignore = "needs root"]
fn symlink_to_host_path_mounts_inside_rootfs() {
    require_root();
    let b = Bundle::new();
    // The "host target" the image's symlink names: a real host dir with a marker that must stay visible.
    let host_target = tempfile::Builder::new()
        .prefix("beam-host-target-")
        .tempdir()
        .unwrap();
    std::fs::write(host_target.path().join("host-marker"), "host").unwrap();
    let target = host_target.path().to_string_lossy().into_owned();
    std::os::unix::fs::symlink(&target, b.rootfs().join("etc/evil")).unwrap();
    let src = b.path().join("evil-src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("inside-marker"), "inside").unwrap();
    let mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/etc/evil", "type": "bind", "source": src, "options": ["rbind", "ro"]}),
        json!({"destination": "/etc/evil-tmp/../evil2", "type": "tmpfs", "source": "tmpfs"}),
    ];
    std::os::unix::fs::symlink(
        "/tmp/../../tmp/beam-abs-relative",
        b.rootfs().join("etc/evil2"),
    )
    .unwrap();
    let plan = b
        .plan(spec(mounts, json!({}), false), false, CgroupMount::V2)
        .unwrap();
    // In the child after prepare: the host dir is not covered and the source's content is not there.
    let host_marker = CString::new(format!("{target}/host-marker")).unwrap();
    let leaked = CString::new(format!("{target}/inside-marker")).unwrap();
    let check = || {
        // SAFETY: access(2) on NUL-terminated paths.
        unsafe {
            libc::access(host_marker.as_ptr(), libc::F_OK) == 0
                && libc::access(leaked.as_ptr(), libc::F_OK) != 0
        }
    };
    let setup = Setup {
        before_enter: Some(&check),
        ..Setup::default()
    };
    let script = r#"
B=/bin/busybox
echo MOUNTINFO-BEGIN; $B cat /proc/self/mountinfo; echo MOUNTINFO-END
echo "via-link=$($B cat /etc/evil/inside-marker)"
echo "abs-rel=$($B stat -f -c %T /tmp/beam-abs-relative)"
"#;
    let o = run(&plan, &setup, script);
    assert_ok(&plan, &o);
    line_is(&o, "via-link", "inside");
    line_is(&o, "abs-rel", "tmpfs");
    // The mount landed at <rootfs><target>, shown as <target> inside the container.
    assert_eq!(
        o.mount_points(),
        vec![
            "/".to_string(),
            "/proc".into(),
            target.clone(),
            "/tmp/beam-abs-relative".into()
        ]
    );
    assert!(
        b.rootfs().join(target.trim_start_matches('/')).is_dir(),
        "mount point created inside the rootfs"
    );
    assert!(b.rootfs().join("tmp/beam-abs-relative").is_dir());
    assert!(
        !Path::new("/tmp/beam-abs-relative").exists(),
        "nothing created on the host"
    );
    assert!(!host_target.path().join("inside-marker").exists());
    assert_eq!(host_mounts_with(&target), Vec::<String>::new());
    assert_eq!(
        host_mounts_with(&b.path().to_string_lossy()),
        Vec::<String>::new()
    );
}

#[test]
#[ignore = "needs root"]
fn no_pivot_chroot_with_rprivate() {
    require_root();
    let b = Bundle::new();
    let mut mounts: Vec<Value> = runc_mounts(true).into_iter().take(3).collect();
    // A read-only tmpfs stays writable until everything under it is mounted (runc does the same).
    mounts.push(
        json!({"destination": "/ro-tmp", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]}),
    );
    // (a per-mount "shared" would be undone here by the final rprivate of /, as with runc)
    mounts.push(json!({"destination": "/ro-tmp/sub", "type": "tmpfs", "source": "tmpfs", "options": ["shared"]}));
    // `remount` changes the flags and options of the mount already there.
    mounts.push(
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["size=2m"]}),
    );
    mounts.push(
        json!({"destination": "/run", "type": "none", "options": ["remount", "ro", "size=1m"]}),
    );
    let linux = json!({"rootfsPropagation": "rprivate", "maskedPaths": [masked_file()]});
    let plan = b
        .plan(spec(mounts, linux, false), true, CgroupMount::V2)
        .unwrap();
    let script = r#"
B=/bin/busybox
echo MOUNTINFO-BEGIN; $B cat /proc/self/mountinfo; echo MOUNTINFO-END
echo "masked=$($B wc -c < $MASKED_FILE)"
echo "tty=$($B stat -c %t:%T /dev/tty)"
echo "root-write=$($B touch /etc/ok && echo ok)"
"#;
    let o = run(
        &plan,
        &Setup::default(),
        &format!("MASKED_FILE={}\n{script}", masked_file()),
    );
    assert_ok(&plan, &o);
    assert_eq!(
        o.mount_points(),
        vec![
            "/",
            "/proc",
            "/dev",
            "/dev/pts",
            "/ro-tmp",
            "/ro-tmp/sub",
            "/run",
            masked_file()
        ],
        "{}",
        o.out
    );
    let root = o.mountinfo().into_iter().find(|f| f[4] == "/").unwrap();
    assert!(
        !root
            .iter()
            .any(|f| f.starts_with("shared:") || f.starts_with("master:")),
        "rprivate: {root:?}"
    );
    let info = o.mountinfo();
    let find = |mp: &str| info.iter().find(|f| f[4] == mp).unwrap().clone();
    assert!(find("/ro-tmp")[5].starts_with("ro,"), "{}", o.out);
    assert!(
        !find("/ro-tmp/sub").iter().any(|f| f.starts_with("shared:")),
        "{}",
        o.out
    );
    let run = find("/run");
    assert!(
        run[5].starts_with("ro,") && run.last().unwrap().contains("size=1024k"),
        "{run:?}"
    );
    line_is(&o, "masked", "0");
    line_is(&o, "tty", "5:0");
    line_is(&o, "root-write", "ok");
    assert_eq!(
        host_mounts_with(&b.path().to_string_lossy()),
        Vec::<String>::new()
    );
}

#[test]
#[ignore = "needs root"]
fn cgroup2_in_a_cgroup_namespace() {
    require_root();
    if !Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists()
        && !Path::new("/sys/fs/cgroup/cgroup.procs").exists()
    {
        eprintln!("skipped: no cgroup2 mount on this host");
        return;
    }
    let b = Bundle::new();
    let mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    let linux = json!({"namespaces": [{"type": "mount"}, {"type": "cgroup"}]});
    let plan = b
        .plan(spec(mounts, linux, false), false, CgroupMount::V2)
        .unwrap();
    let script = r#"
B=/bin/busybox
echo MOUNTINFO-BEGIN; $B cat /proc/self/mountinfo; echo MOUNTINFO-END
echo "procs=$($B test -f /sys/fs/cgroup/cgroup.procs && echo yes)"
echo "w=$($B mkdir /sys/fs/cgroup/x 2>&1)"
"#;
    // A new cgroup namespace: a cgroup2 mount from it leaves the host's global cgroup2 options alone.
    let setup = Setup {
        unshare: libc::CLONE_NEWCGROUP,
        ..Setup::default()
    };
    let o = run(&plan, &setup, script);
    assert_ok(&plan, &o);
    let cg = o
        .mountinfo()
        .into_iter()
        .find(|f| f[4] == "/sys/fs/cgroup")
        .expect("cgroup mount");
    assert_eq!(cg[cg.iter().position(|x| x == "-").unwrap() + 1], "cgroup2");
    assert!(cg[5].starts_with("ro,"));
    line_is(&o, "procs", "yes");
    has_line_with(&o, "w", "Read-only file system");
}

#[test]
#[ignore = "needs root"]
fn user_namespace_fallbacks() {
    require_root();
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: no /dev/fuse");
        return;
    }
    let b = Bundle::new();
    // runc's rootless spec: no gid=5 on devpts; sysfs with no network namespace.
    let mounts = runc_mounts(false);
    let linux = json!({
        "namespaces": [{"type": "user"}, {"type": "mount"}, {"type": "pid"}, {"type": "ipc"}],
        "maskedPaths": [masked_file()], "readonlyPaths": ["/proc/sys"],
        "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    });
    let plan = b
        .plan(spec(mounts, linux, true), false, CgroupMount::V2)
        .unwrap();
    let script = format!("{}echo \"fuse=$($B stat -c %t:%T /dev/fuse)\"\n", probe());
    let setup = Setup {
        userns: true,
        unshare: libc::CLONE_NEWPID | libc::CLONE_NEWIPC,
        ..Setup::default()
    };
    let o = run(&plan, &setup, &script);
    assert_ok(&plan, &o);
    let points = o.mount_points();
    // mknod is not permitted in a user namespace: device nodes are bind mounts of the host's.
    for dev in ["/dev/null", "/dev/zero", "/dev/tty", "/dev/fuse"] {
        assert!(
            points.iter().any(|p| p == dev),
            "{dev} should be a bind mount: {points:?}"
        );
    }
    line_is(&o, "null", "666 character special file 1:3");
    line_is(&o, "fuse", "a:e5");
    // sysfs cannot be mounted without a network namespace: /sys is an rbind of the host's, read-only.
    let info = o.mountinfo();
    let sys = info.iter().find(|f| f[4] == "/sys").expect("/sys");
    assert!(sys[5].starts_with("ro,"), "{sys:?}");
    let subs: Vec<_> = info.iter().filter(|f| f[4].starts_with("/sys/")).collect();
    assert!(!subs.is_empty(), "the rbind keeps the host's submounts");
    assert!(
        subs.iter().all(|f| f[5].starts_with("ro,")),
        "and they are read-only too: {subs:?}"
    );
    line_is(&o, "masked", "0");
    has_line_with(&o, "etc", "Read-only file system");
    line_is(&o, "shm", "ok");
    has_line_with(&o, "procsys", "Read-only file system");
    line_is(&o, "devnull", "0");
    line_is(&o, "ptmx", "pts/ptmx");
    assert_eq!(
        host_mounts_with(&b.path().to_string_lossy()),
        Vec::<String>::new()
    );
}

#[test]
#[ignore = "needs root"]
fn child_failure_names_the_mount() {
    require_root();
    let b = Bundle::new();
    let mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/x", "type": "nosuchfs", "source": "none"}),
    ];
    let plan = b
        .plan(spec(mounts, json!({}), false), false, CgroupMount::V2)
        .unwrap();
    let o = run(&plan, &Setup::default(), "exit 0");
    assert_eq!(o.code, 91, "prepare must fail");
    let f = o.failure.expect("a failure report");
    assert_eq!((f.step, f.index, f.errno), (Step::FsOpen, 1, libc::ENODEV));
    let msg = plan.describe(f).to_string();
    assert!(
        msg.contains("mounts[1] (nosuchfs on /x)")
            && msg.contains("ENODEV")
            && msg.contains("hint:"),
        "{msg}"
    );
    assert_eq!(msg, plan.explain(f).to_string());

    // A file cannot be mounted over a directory: the kernel error is reported with a hint.
    std::fs::create_dir_all(b.rootfs().join("etc/dir")).unwrap();
    std::fs::write(b.path().join("f"), "x").unwrap();
    let mounts = vec![
        json!({"destination": "/etc/dir", "type": "bind", "source": "f", "options": ["bind"]}),
    ];
    let plan = b
        .plan(spec(mounts, json!({}), false), false, CgroupMount::V2)
        .unwrap();
    let o = run(&plan, &Setup::default(), "exit 0");
    let f = o.failure.expect("a failure report");
    assert_eq!(
        (f.step, f.index),
        (Step::MoveMount, 0),
        "{}",
        plan.explain(f)
    );
    assert!(
        plan.describe(f)
            .to_string()
            .contains("mounts[0] (bind on /etc/dir)")
    );
    // proc must not go through a symlink.
    std::fs::remove_dir(b.rootfs().join("proc")).unwrap();
    std::os::unix::fs::symlink("/etc", b.rootfs().join("proc")).unwrap();
    let mounts = vec![json!({"destination": "/proc", "type": "proc", "source": "proc"})];
    let plan = b
        .plan(spec(mounts, json!({}), false), false, CgroupMount::V2)
        .unwrap();
    let o = run(&plan, &Setup::default(), "exit 0");
    assert_eq!(o.failure.map(|f| f.step), Some(Step::NotDir));
}
