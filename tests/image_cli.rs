//! `beam image …` end to end, as a user runs it: build the embedded busybox recipe, run it, push it to a
//! real registry (Debian's docker-registry on 127.0.0.1), pull it into another store, gc with a live
//! container, and bad input. Root only.

mod common_registry;
mod common_root;
use common_registry::Registry;
use common_root::require_root;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn beam(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_beam"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn beam")
}

fn ok(root: &Path, args: &[&str]) -> String {
    let o = beam(root, args);
    assert!(o.status.success(), "beam {args:?}: {}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(root: &Path, args: &[&str]) -> String {
    let o = beam(root, args);
    assert_eq!(o.status.code(), Some(1), "beam {args:?} should fail: {}", String::from_utf8_lossy(&o.stdout));
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(e.trim().lines().count(), 1, "not one line: {e}");
    e
}

#[test]
#[ignore = "needs root"]
fn build_run_push_pull_gc() {
    require_root();
    require_registry!();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    ok(a.path(), &["image", "build", "busybox", "-q"]);
    let ls = ok(a.path(), &["image", "ls"]);
    assert!(ls.contains("beam.local/busybox:latest"), "{ls}");
    assert!(!ls.contains("beam.local/cache"), "cache entries are hidden: {ls}");
    assert_eq!(ok(a.path(), &["image", "run", "busybox", "--", "sh", "-c", "echo hi; pwd"]), "hi\n/\n");
    assert_eq!(ok(a.path(), &["image", "run", "-w", "/tmp", "-e", "X=1", "busybox", "--", "sh", "-c", "echo $X $(pwd)"]), "1 /tmp\n");

    // push to a real registry, pull into an empty store: same digests, and it runs
    let reg = Registry::start();
    let target = format!("{}/beam/busybox:1", reg.addr);
    ok(a.path(), &["image", "push", "-q", "busybox", &target]);
    ok(b.path(), &["image", "pull", "-q", &target]);
    let ia: serde_json::Value = serde_json::from_str(&ok(a.path(), &["image", "inspect", "busybox"])).unwrap();
    let ib: serde_json::Value = serde_json::from_str(&ok(b.path(), &["image", "inspect", &target])).unwrap();
    assert_eq!(ia["record"]["manifest"], ib["record"]["manifest"]);
    assert_eq!(ia["record"]["id"], ib["record"]["id"]);
    assert_eq!(ia["record"]["layers"], ib["record"]["layers"]);
    assert_eq!(ok(b.path(), &["image", "run", &target, "--", "echo", "pulled"]), "pulled\n");

    // import → run: an OCI layout made by skopeo from the registry (docker-archive imports are covered in
    // tests/registry.rs: skopeo can't write our zstd layers into one)
    if Path::new("/usr/bin/skopeo").exists() {
        let c = tempfile::tempdir().unwrap();
        let layout = c.path().join("layout");
        let dst = format!("oci:{}:v1", layout.display());
        let st = Command::new("skopeo").args(["copy", "-q", "--src-tls-verify=false", &format!("docker://{target}"), &dst]).status().unwrap();
        assert!(st.success(), "skopeo copy to {dst}");
        ok(c.path(), &["image", "import", layout.to_str().unwrap(), "--name", "beam.local/from-layout:1"]);
        assert_eq!(ok(c.path(), &["image", "run", "beam.local/from-layout:1", "--", "echo", "layout"]), "layout\n");
    }

    // gc keeps the layers of a live container, removes them after
    let layer = ib["record"]["layers"][0]["diff_id"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let layer_dir = b.path().join("images/layers").join(&layer);
    assert!(layer_dir.exists(), "{layer_dir:?}");
    // A container that exits on SIGTERM (as pid 1 it has no default handler): `beam image run` forwards it.
    let mut live = Command::new(env!("CARGO_BIN_EXE_beam"))
        .arg("--root")
        .arg(b.path())
        .args(["image", "run", &target, "--", "sh", "-c", "trap 'exit 0' TERM; sleep 30 & wait"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pins = b.path().join("images/pins");
    let pinned = || std::fs::read_dir(&pins).map(|d| d.count()).unwrap_or(0);
    let start = Instant::now();
    while pinned() == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the container never pinned its layers");
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(b.path(), &["image", "rm", &target]);
    ok(b.path(), &["image", "gc"]);
    assert!(layer_dir.exists(), "gc removed a layer a live container uses");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(live.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(live.wait().unwrap().success());
    assert_eq!(pinned(), 0, "the finished container left its pin");
    ok(b.path(), &["image", "gc"]);
    assert!(!layer_dir.exists(), "gc kept a layer nothing uses");
    let out = ok(b.path(), &["image", "ls"]);
    assert!(!out.contains(&target), "{out}");
    drop(reg);
}

#[test]
#[ignore = "needs root"]
fn bad_input_is_one_line_and_changes_nothing() {
    require_root();
    let a = tempfile::tempdir().unwrap();
    let e = fails(a.path(), &["image", "run", "nope"]);
    assert!(e.contains("not found") && e.contains("beam image pull"), "{e}");
    let e = fails(a.path(), &["image", "pull", "-q", "127.0.0.1:1/nothing:here"]);
    assert!(e.to_lowercase().contains("127.0.0.1:1"), "{e}");
    let e = fails(a.path(), &["image", "rm", "nope"]);
    assert!(e.contains("nope"), "{e}");
    let r = a.path().join("bad.toml");
    std::fs::write(&r, "base = \"busybox\"\nfrobnicate = true\n").unwrap();
    let e = fails(a.path(), &["image", "build", r.to_str().unwrap()]);
    assert!(e.contains("frobnicate"), "{e}");
    let e = fails(a.path(), &["image", "build", "no-such-recipe"]);
    assert!(e.contains("no-such-recipe"), "{e}");
    if Path::new("/usr/bin/docker-registry").exists() {
        let reg = Registry::start();
        let e = fails(a.path(), &["image", "pull", "-q", &format!("{}/missing/repo:tag", reg.addr)]);
        assert!(e.contains("missing/repo"), "{e}");
    }
    assert!(ok(a.path(), &["image", "ls", "--format", "json"]).trim() == "[]");
}

#[test]
#[ignore = "needs root"]
fn a_killed_run_is_cleaned_up_by_the_next() {
    require_root();
    let a = tempfile::tempdir().unwrap();
    let root = a.path();
    ok(root, &["image", "build", "busybox", "-q"]);
    let mut cli = Command::new(env!("CARGO_BIN_EXE_beam"))
        .arg("--root")
        .arg(root)
        .args(["image", "run", "busybox", "--", "sleep", "300"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pins = root.join("images/pins");
    let pinned = || std::fs::read_dir(&pins).map(|d| d.count()).unwrap_or(0);
    let start = Instant::now();
    while pinned() == 0 || !std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(root.to_str().unwrap()) {
        assert!(start.elapsed() < Duration::from_secs(10), "the container never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL: no chance to clean up; the container and its rootfs mount stay behind…
    cli.kill().unwrap();
    cli.wait().unwrap();
    assert_eq!(pinned(), 1);
    // …until the next `beam image run` reaps them.
    assert_eq!(ok(root, &["image", "run", "busybox", "--", "echo", "next"]), "next\n");
    assert_eq!(pinned(), 0, "the orphan's pin is still there");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(root.to_str().unwrap()), "a mount under the root is left:\n{mounts}");
    assert_eq!(std::fs::read_dir(root.join("containers")).unwrap().count(), 0, "container dirs or locks left");
    let states: Vec<_> = std::fs::read_dir(root.join("run")).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(states.is_empty(), "runtime state left: {states:?}");
}
