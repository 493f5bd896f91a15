//! containerd drives beam-oci: `ctr run --runc-binary <beam-oci>` through containerd 1.6's runc v2 shim, the
//! path every containerd client (and Kubernetes, see tests/cri.rs) takes.
//!
//! Root only (`#[ignore = "needs root"]`); skipped (with a message) when containerd or ctr is missing.
//! containerd is the test's own (its root, state, socket and config under a temp dir, in a mount namespace of
//! its own: tests/common_containerd), the image is an OCI archive of busybox-static built here and imported
//! with `ctr image import`; a guard tears it all down even when a step fails.
//!
//! Run (as root): `cargo test --test containerd -- --include-ignored --nocapture`

mod common_containerd;
mod common_root;
use common_containerd::{Containerd, Options, await_cond, beam_oci, busybox_rootfs, cgroup_dirs, oci_archive, text};
use common_root::require_root;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "beam.local/busybox:1";

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
#[ignore = "needs root"]
#[allow(clippy::too_many_lines, reason = "one ctr scenario, command by command")]
fn ctr_runs_execs_pauses_kills_and_deletes_with_beam_oci() {
    require_root();
    if let Some(why) = common_containerd::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let t0 = Instant::now();
    let mut ctd = Containerd::start("ctr", Options { cri: false, sandbox_image: "" });
    let ns = format!("beam-ctr-{}", std::process::id());
    ctd.namespaces.push(ns.clone());
    // ctr's default cgroup for a container is /<namespace>/<id>.
    ctd.cgroup_parents.push(format!("/{ns}"));
    println!("containerd up in {:?}", t0.elapsed());

    let rootfs = ctd.dir().join("rootfs");
    busybox_rootfs(&rootfs);
    let archive = oci_archive(&ctd.dir().join("busybox.tar"), &rootfs, IMAGE, json!({"Cmd": ["sh"]}));
    ctd.import(&ns, &archive);
    let images = ctd.lines(&ns, &["image", "ls", "-q"]);
    assert!(images.iter().any(|i| i == IMAGE), "imported image missing: {images:?}");

    let root = ctd.runtime_root.to_str().unwrap().to_string();
    let run_args = |opts: &[&str], id: &str, cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["run", "--runc-binary", beam_oci(), "--runc-root", &root].map(String::from).to_vec();
        v.extend(opts.iter().map(|s| s.to_string()));
        v.push(IMAGE.into());
        v.push(id.into());
        v.extend(cmd.iter().map(|s| s.to_string()));
        v
    };

    // 1. run --rm, attached: the container's stdout comes back through the shim's fifos.
    let a = run_args(&["--rm"], "echo", &["sh", "-c", "echo hello from beam-oci; echo pid $$"]);
    assert_eq!(ctd.ctr_ok(&ns, &strs(&a)), "hello from beam-oci\npid 1\n");

    // 2. the exit status of the container is ctr run's.
    let a = run_args(&["--rm"], "exit3", &["sh", "-c", "exit 3"]);
    ctd.ctr_expect(&ns, &strs(&a), 3);
    println!("run --rm (output, exit status) done at {:?}", t0.elapsed());

    // 3. a long-running container, attached: exec, ps, pause/resume, then SIGTERM and its exit status.
    let id = "main";
    let out_file = ctd.dir().join("main.out");
    let a = run_args(&[], id, &["sh", "-c", "trap 'echo got TERM; exit 42' TERM; echo ready; sleep 1000 & wait"]);
    let mut attached = ctd
        .ctr_cmd(Some(&ns), &strs(&a))
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctr run");
    let output = || std::fs::read_to_string(&out_file).unwrap_or_default();
    await_cond(Duration::from_secs(300), "the container to print `ready`", || output().contains("ready\n"), || {
        format!("\n(output so far: {:?}){}", output(), ctd.diag())
    });
    ctd.await_task_status(&ns, id, "RUNNING");
    let task_pid: i32 = ctd
        .ctr_ok(&ns, &["task", "ls"])
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|p| p.parse().ok()))
        .expect("task pid");
    // the init's cgroup is the one containerd asked for
    let cg = std::fs::read_to_string(format!("/proc/{task_pid}/cgroup")).unwrap();
    assert!(cg.contains(&format!(":/{ns}/{id}")), "init not in /{ns}/{id}:\n{cg}");

    // exec: output, exit status, and the container's pid namespace
    let out = ctd.ctr_expect(&ns, &["task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo in exec; exit 7"], 7);
    assert_eq!(out, "in exec\n");
    let out = ctd.ctr_ok(&ns, &["task", "exec", "--exec-id", "e2", id, "cat", "/proc/1/cmdline"]);
    assert!(out.starts_with("sh\0-c\0trap"), "PID 1 in the container: {out:?}");
    // an exec of a binary that isn't there fails, and the container is unharmed
    let bad = ctd.ctr(Some(&ns), &["task", "exec", "--exec-id", "e3", id, "/no/such/binary"]);
    assert!(!bad.status.success(), "exec of a missing binary succeeded: {}", text(&bad.stdout));
    println!("exec of a missing binary: {}", text(&bad.stderr).trim());
    assert_eq!(ctd.task_status(&ns, id).as_deref(), Some("RUNNING"));

    // ps (the shim asks beam-oci ps --format json): the init and its sleep
    let ps = ctd.ctr_ok(&ns, &["task", "ps", id]);
    let pids: Vec<&str> = ps.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert!(pids.len() >= 2 && pids.contains(&task_pid.to_string().as_str()), "task ps: {ps}");

    // pause / resume: the task status follows, and so does the freezer
    ctd.ctr_ok(&ns, &["task", "pause", id]);
    ctd.await_task_status(&ns, id, "PAUSED");
    for f in cgroup_dirs(&format!("/{ns}/{id}")).iter().map(|d| d.join("freezer.state")).filter(|f| f.exists()) {
        assert_eq!(std::fs::read_to_string(&f).unwrap().trim(), "FROZEN", "{}", f.display());
    }
    ctd.ctr_ok(&ns, &["task", "resume", id]);
    ctd.await_task_status(&ns, id, "RUNNING");
    let out = ctd.ctr_ok(&ns, &["task", "exec", "--exec-id", "e4", id, "echo", "resumed"]);
    assert_eq!(out, "resumed\n");
    println!("exec, ps, pause/resume done at {:?}", t0.elapsed());

    // kill (SIGTERM by default): the trap runs, and 42 comes back as ctr run's exit status
    ctd.ctr_ok(&ns, &["task", "kill", id]);
    let start = Instant::now();
    let status = loop {
        if let Some(st) = attached.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(300) {
            let _ = attached.kill();
            panic!("ctr run did not return after task kill{}", ctd.diag());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = attached.stderr.take().map(|mut e| {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut e, &mut s);
        s
    });
    assert_eq!(status.code(), Some(42), "ctr run's exit status after SIGTERM; stderr: {stderr:?}{}", ctd.diag());
    assert!(output().ends_with("got TERM\n"), "output: {:?}", output());
    // attached ctr run deletes the task itself once it has exited; the container stays until removed
    await_cond(Duration::from_secs(300), "the task to be gone", || ctd.task_status(&ns, id).is_none(), || ctd.diag());
    ctd.ctr_ok(&ns, &["container", "rm", id]);

    // 4. detached: SIGKILL, then task delete reports exit code 137
    let a = run_args(&["-d"], "det", &["sleep", "1000"]);
    ctd.ctr_ok(&ns, &strs(&a));
    ctd.await_task_status(&ns, "det", "RUNNING");
    ctd.ctr_ok(&ns, &["task", "kill", "-s", "SIGKILL", "det"]);
    ctd.await_task_status(&ns, "det", "STOPPED");
    let del = ctd.ctr(Some(&ns), &["task", "delete", "det"]);
    assert!(del.status.success(), "task delete: {}{}", text(&del.stderr), ctd.diag());
    assert!(text(&del.stderr).contains("exit code 137"), "task delete should report exit code 137: {}", text(&del.stderr));
    ctd.ctr_ok(&ns, &["container", "rm", "det"]);
    println!("kill (TERM → 42, KILL → 137) and delete done at {:?}", t0.elapsed());

    // 5. nothing left: no task, no container, no beam-oci state, no cgroup, no mount
    assert!(ctd.lines(&ns, &["task", "ls", "-q"]).is_empty(), "tasks left");
    assert!(ctd.lines(&ns, &["container", "ls", "-q"]).is_empty(), "containers left");
    assert!(ctd.beam_oci_states(&ns).is_empty(), "beam-oci state left: {:?}", ctd.beam_oci_states(&ns));
    let list = Command::new(beam_oci()).arg("--root").arg(ctd.runtime_root.join(&ns)).args(["list", "-q"]).output().unwrap();
    assert_eq!(text(&list.stdout).trim(), "", "beam-oci list");
    for c in ["echo", "exit3", id, "det"] {
        let left = cgroup_dirs(&format!("/{ns}/{c}"));
        assert!(left.is_empty(), "cgroups left for {c}: {left:?}");
    }
    let mounts = ctd.mounts_with(&format!("/{ns}/"));
    assert!(mounts.is_empty(), "mounts left:\n{}", mounts.join("\n"));
    // the shims exit once their last container is deleted
    await_cond(Duration::from_secs(300), "the shims to exit", || ctd.pids_in_namespace().is_empty(), || {
        let left: Vec<String> = ctd.pids_in_namespace().iter().map(|p| common_containerd::cmdline(*p)).collect();
        format!("\n(left: {left:?}){}", ctd.diag())
    });
    drop(ctd);
    println!("ctr drove beam-oci: run, exit status, exec, ps, pause/resume, kill, delete; {:?} in all", t0.elapsed());
}
