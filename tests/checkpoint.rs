//! beam-oci checkpoint / restore through a real CRIU: a shell loop's counter carries on after a restore
//! under a new id and in a new cgroup; --leave-running keeps it running; one checkpoint restored twice (on
//! the rootfs and on a copy) is a fork (both count on, each in its own files); bad input is one line and leaves no state dir or cgroup; the
//! host's mount table is as it was. Root only, and a CRIU that works on this kernel (BEAM_CRIU, criu on
//! PATH or /usr/local/sbin/criu; scripts/deps.sh builds CRIU 4.1.1 where Debian's 3.17 fails).

mod common;
mod common_root;
use common::*;
use common_root::require_root;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A CRIU whose `criu check` passes here, or None (the test says it skipped).
fn criu() -> Option<PathBuf> {
    let candidates = [std::env::var_os("BEAM_CRIU").map(PathBuf::from), Some("criu".into()), Some("/usr/local/sbin/criu".into())];
    candidates.into_iter().flatten().find(|c| {
        std::process::Command::new(c).arg("check").output().is_ok_and(|o| o.status.success())
    })
}

const LOOP: &str = "i=$(cat /tmp/count 2>/dev/null || echo 0); while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done";

fn count(rootfs: &Path) -> u64 {
    std::fs::read_to_string(rootfs.join("tmp/count")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// The counter passes `above` (it runs).
fn await_count(rootfs: &Path, above: u64) -> u64 {
    await_cond(Duration::from_secs(20), || count(rootfs) > above, &format!("the counter in {} to pass {above}", rootfs.display()));
    count(rootfs)
}

#[test]
#[ignore = "needs root"]
fn checkpoint_and_restore_carry_a_process_on() {
    require_root();
    let Some(criu) = criu() else {
        eprintln!("skipped: no working CRIU (criu check failed or no criu); scripts/deps.sh --test builds CRIU 4.1.1");
        return;
    };
    let criu = criu.to_str().unwrap().to_string();
    let cx = Ctx::new("ckpt");
    let mounts_before = host_mounts_with(cx.tmp.path().to_str().unwrap());
    let b = cx.bundle("b", &["sh", "-c", LOOP]);
    let (c1, c2) = (cx.id("c1"), cx.id("c2"));
    cx.ok(&["run", "-d", "--bundle", b.path(), &c1]);
    let at = await_count(&b.rootfs(), 3);
    let images = cx.tmp.path().join("img");
    let img = images.to_str().unwrap();

    // Without --leave-running the container is gone after the dump (as with runc).
    cx.ok(&["--criu", &criu, "checkpoint", "--image-path", img, &c1]);
    assert!(cx.fails(&["state", &c1]).contains(&c1));
    let dumped = count(&b.rootfs());
    assert!(dumped >= at);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count(&b.rootfs()), dumped, "nothing runs after the dump");
    assert!(cgroup_dirs(&format!("beam/{c1}")).is_empty(), "the checkpointed container's cgroup is gone");

    // Restored under a new id: the same process carries on counting from where it was.
    cx.ok(&["--criu", &criu, "restore", "--image-path", img, "--bundle", b.path(), "-d", &c2]);
    let st = cx.state(&c2);
    assert_eq!(st["status"], "running", "{st}");
    let pid = st["pid"].as_i64().unwrap();
    let after = await_count(&b.rootfs(), dumped);
    assert!(after > dumped && after < dumped + 1000, "it continued from {dumped}, not from 0: {after}");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.contains(&format!("/beam/{c2}")), "the restored init is in the new container's cgroup: {cg}");
    assert!(!cg.contains(&format!("/beam/{c1}")), "{cg}");

    // --leave-running: dumped, and still running.
    let images2 = cx.tmp.path().join("img2");
    cx.ok(&["--criu", &criu, "checkpoint", "--leave-running", "--image-path", images2.to_str().unwrap(), &c2]);
    assert_eq!(cx.state(&c2)["status"], "running");
    let c = count(&b.rootfs());
    await_count(&b.rootfs(), c);
    assert!(images2.join("inventory.img").exists());

    // A fork: one checkpoint restored twice, on the root filesystem and on a copy of it as it was at the
    // dump (CRIU checks that the files the processes hold open are as they were): two independent
    // containers counting on, each in its own files.
    let images3 = cx.tmp.path().join("img3");
    cx.ok(&["--criu", &criu, "checkpoint", "--image-path", images3.to_str().unwrap(), &c2]);
    let fork = cx.bundle("fork", &["sh", "-c", LOOP]);
    std::fs::copy(b.rootfs().join("tmp/count"), fork.rootfs().join("tmp/count")).unwrap();
    let (c3, c5) = (cx.id("c3"), cx.id("c5"));
    cx.ok(&["--criu", &criu, "restore", "--image-path", images3.to_str().unwrap(), "--bundle", b.path(), "-d", &c3]);
    cx.ok(&["--criu", &criu, "restore", "--image-path", images3.to_str().unwrap(), "--bundle", fork.path(), "-d", &c5]);
    let (base_b, base_f) = (count(&b.rootfs()), count(&fork.rootfs()));
    await_count(&b.rootfs(), base_b);
    await_count(&fork.rootfs(), base_f);
    assert_ne!(cx.state(&c3)["pid"], cx.state(&c5)["pid"]);

    // Bad input: one line each, nothing left.
    let empty = cx.tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let c4 = cx.id("c4");
    let e = cx.fails(&["--criu", &criu, "restore", "--image-path", empty.to_str().unwrap(), "--bundle", b.path(), &c4]);
    assert!(e.contains("descriptors.json"), "{e}");
    assert!(cx.fails(&["state", &c4]).contains(&c4));
    let e = cx.fails(&["--criu", &criu, "checkpoint", "--image-path", img, &cx.id("nope")]);
    assert!(e.contains("nope"), "{e}");
    let e = cx.fails(&["--criu", "/nonexistent/criu", "checkpoint", "--image-path", img, &c3]);
    assert!(e.contains("/nonexistent/criu") && e.contains("--criu"), "{e}");
    assert_eq!(cx.state(&c3)["status"], "running", "a failed checkpoint leaves the container running");

    for id in [&c3, &c5] {
        cx.ok(&["delete", "--force", id]);
        assert!(cgroup_dirs(&format!("beam/{id}")).is_empty(), "{id}'s cgroup is gone");
    }
    assert!(cgroup_dirs(&format!("beam/{c4}")).is_empty(), "a failed restore left a cgroup");
    assert_eq!(host_mounts_with(cx.tmp.path().to_str().unwrap()), mounts_before, "the host's mount table changed");
}
