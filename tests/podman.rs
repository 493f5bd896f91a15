//! podman drives beam-oci: `podman --runtime <beam-oci> run/exec/rm` on an offline busybox image.
//!
//! Root only (`#[ignore = "needs root"]`); skipped (with a message) when podman or conmon is missing. podman gets its own storage under a
//! temp dir (`--root/--runroot/--tmpdir`, vfs driver, file events, cgroupfs), so the host's podman store is
//! never touched; a guard removes our containers, the image and any mount left under the temp dir, even when
//! a step fails. When a step fails, it is replayed once with podman at info level and a tracing wrapper as
//! the runtime, which records every beam-oci invocation podman/conmon made (argv + exit status) and beam-oci's
//! own log, and all of it goes into the panic message.
//!
//! Run (as root): `cargo test --test podman -- --include-ignored --nocapture`

mod common_root;
use common_root::require_root;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const IMAGE: &str = "localhost/beam-busybox-test:latest";
const BUSYBOX: &str = "/bin/busybox";
/// What podman needs on this host: no CNI/netavark network, and limits no higher than the hard ones here.
const RUN_OPTS: [&str; 8] = [
    "--pull", "never", "--network", "none", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
];
/// Every podman call is bounded (seconds) so that a hung runtime fails the test instead of hanging it.
const STEP_TIMEOUT: u32 = 90;

fn beam_oci() -> &'static str {
    env!("CARGO_BIN_EXE_beam-oci")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A private podman world under a temp dir; dropping it removes what the test made.
struct Podman {
    tmp: tempfile::TempDir,
    podman: PathBuf,
    image_imported: bool,
    /// podman's cgroupfs parent (`/sys/fs/cgroup/<ctrl>/libpod_parent`) did not exist before: ours to remove.
    made_libpod_parent: bool,
}

fn libpod_parents() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|r| r.flatten().map(|e| e.path().join("libpod_parent")).filter(|p| p.is_dir()).collect())
        .unwrap_or_default()
}

impl Podman {
    fn new(podman: PathBuf) -> Self {
        let tmp = tempfile::Builder::new().prefix("beam-podman-test-").tempdir().expect("tempdir");
        Self { tmp, podman, image_imported: false, made_libpod_parent: libpod_parents().is_empty() }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// `timeout podman <isolated store flags> --runtime RUNTIME ARGS…`
    fn cmd_with(&self, runtime: &str, extra_global: &[&str], args: &[&str]) -> Command {
        let d = self.dir();
        let mut c = Command::new("timeout");
        c.args(["-k", "5", &STEP_TIMEOUT.to_string()]).arg(&self.podman);
        c.arg("--root").arg(d.join("store"));
        c.arg("--runroot").arg(d.join("run"));
        c.arg("--tmpdir").arg(d.join("tmp"));
        c.args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
        c.args(["--runtime", runtime]);
        c.args(extra_global).args(args);
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd_with(beam_oci(), &[], args).output().expect("spawn podman")
    }

    /// Run a step; on an unexpected exit status, replay it traced and panic with everything we know.
    fn step(&self, what: &str, args: &[&str], want_code: i32) -> Output {
        println!("podman step: {what}: podman … {}", args.join(" "));
        let out = self.run(args);
        if out.status.code() != Some(want_code) {
            let report = self.diagnose(args);
            panic!(
                "{what}: `podman {}` exited {:?}, wanted {want_code}\n--- stdout\n{}--- stderr\n{}{report}",
                args.join(" "),
                out.status.code(),
                text(&out.stdout),
                text(&out.stderr),
            );
        }
        out
    }

    /// Replays a failed podman command with a tracing runtime wrapper and podman's debug log; returns a report:
    /// every beam-oci invocation (argv, exit status) and beam-oci's log (errors included).
    fn diagnose(&self, args: &[&str]) -> String {
        let diag = self.dir().join("diag");
        std::fs::create_dir_all(&diag).unwrap();
        let calls = diag.join("calls.log");
        let log = diag.join("beam-oci.log");
        // Named beam-oci so podman treats it like the real one; podman/conmon may pass --log themselves.
        let wrapper = diag.join("beam-oci");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n\
                 case \" $* \" in *' --log '*|*' --log='*) set -- \"$@\" ;; *) set -- --log {log} \"$@\" ;; esac\n\
                 echo \"call: beam-oci $*\" >> {calls}\n\
                 {real} \"$@\"\n\
                 rc=$?\n\
                 echo \"  -> exit $rc\" >> {calls}\n\
                 exit $rc\n",
                log = log.display(),
                calls = calls.display(),
                real = beam_oci(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = self
            .cmd_with(wrapper.to_str().unwrap(), &["--log-level", "info"], args)
            .output()
            .expect("spawn podman");
        let debug: String = text(&out.stderr)
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("error") || l.contains("runtime") || l.contains("conmon") || l.contains("level=warn")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        format!(
            "\n=== replay with a tracing runtime (exit {:?})\n--- beam-oci invocations by podman/conmon\n{}\
             --- beam-oci log\n{}--- podman --log-level info (errors, runtime, conmon lines)\n{}--- replay stdout\n{}",
            out.status.code(),
            std::fs::read_to_string(&calls).unwrap_or_else(|_| "(beam-oci was never called)\n".into()),
            std::fs::read_to_string(&log).unwrap_or_else(|_| "(empty)\n".into()),
            debug,
            text(&out.stdout),
        )
    }

    /// Import a busybox rootfs as an image, offline.
    fn import_busybox(&mut self) {
        let rootfs = self.dir().join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("busybox-static at /bin/busybox");
        // Relative links (`busybox --install -s` would point them at the host path).
        let list = Command::new(BUSYBOX).arg("--list").output().expect("busybox --list");
        for applet in text(&list.stdout).lines() {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        let tarball = self.dir().join("rootfs.tar");
        let st = Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tarball).arg(".").status().unwrap();
        assert!(st.success(), "tar of the busybox rootfs failed");
        self.image_imported = true;
        self.step("import the busybox image", &["import", tarball.to_str().unwrap(), IMAGE], 0);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-f", "-a", "-t", "0"]);
        if self.image_imported {
            let _ = self.run(&["rmi", "-f", "-a"]);
        }
        // podman's cgroupfs parent (and conmon's cgroup in it), if this test made them; rmdir of a cgroup
        // that is still in use or has children just fails.
        if self.made_libpod_parent {
            for p in libpod_parents() {
                let _ = std::fs::remove_dir(p.join("conmon"));
                let _ = std::fs::remove_dir(&p);
            }
        }
        // Anything podman left mounted under our dir (a container's shm tmpfs, say): detach it before the
        // temp dir goes, deepest first.
        let prefix = self.dir().to_string_lossy().into_owned();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            eprintln!("podman test cleanup: unmounting leftover {m}");
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The container ids podman's store knows (all states).
fn container_ids(p: &Podman) -> Vec<String> {
    let out = p.run(&["ps", "-a", "-q", "--no-trunc"]);
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// No beam-oci state and no cgroup left behind for a container podman removed.
fn assert_gone(id: &str) {
    let st = Command::new(beam_oci()).args(["state", id]).output().unwrap();
    assert!(!st.status.success(), "beam-oci still has state for removed container {id}: {}", text(&st.stdout));
    let leaf = format!("libpod-{id}");
    for ctrl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = ctrl.path().join("libpod_parent").join(&leaf);
        assert!(!p.exists(), "cgroup left behind: {}", p.display());
    }
}

#[test]
#[ignore = "needs root"]
fn podman_runs_execs_and_removes_with_beam_oci() {
    require_root();
    let Some(podman) = which("podman") else {
        eprintln!("skipped: podman is not installed");
        return;
    };
    if which("conmon").is_none() && !Path::new("/usr/libexec/podman/conmon").exists() {
        eprintln!("skipped: conmon is not installed");
        return;
    }
    let mut p = Podman::new(podman);
    p.import_busybox();

    // 1. run --rm, attached: stdout and exit 0.
    let mut args = vec!["run", "--rm"];
    args.extend(RUN_OPTS);
    args.extend([IMAGE, "echo", "hi"]);
    let out = p.step("run --rm echo hi", &args, 0);
    assert_eq!(text(&out.stdout), "hi\n", "stderr: {}", text(&out.stderr));

    // 2. the container's exit status comes back through podman.
    let mut args = vec!["run", "--rm"];
    args.extend(RUN_OPTS);
    args.extend([IMAGE, "sh", "-c", "exit 3"]);
    p.step("run --rm sh -c 'exit 3'", &args, 3);
    assert!(container_ids(&p).is_empty(), "run --rm left containers behind");

    // 3. detached container + exec (plain, exit status, stdin) + rm -f.
    let mut args = vec!["run", "-d"];
    args.extend(RUN_OPTS);
    args.extend([IMAGE, "sleep", "100"]);
    let out = p.step("run -d sleep 100", &args, 0);
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "podman run -d should print the container id, got {id:?}");
    let st = p.step("inspect state", &["inspect", "--format", "{{.State.Status}} {{.State.Pid}}", &id], 0);
    assert!(text(&st.stdout).starts_with("running "), "container not running: {}", text(&st.stdout));

    let out = p.step("exec echo inside", &["exec", &id, "echo", "inside"], 0);
    assert_eq!(text(&out.stdout), "inside\n", "stderr: {}", text(&out.stderr));
    p.step("exec sh -c 'exit 4'", &["exec", &id, "sh", "-c", "exit 4"], 4);
    // exec sees the container's pid namespace: sleep is PID 1 there.
    let out = p.step("exec cat /proc/1/cmdline", &["exec", &id, "cat", "/proc/1/cmdline"], 0);
    assert_eq!(text(&out.stdout), "sleep\u{0}100\u{0}", "PID 1 in the container");
    // stdin reaches an exec'd process.
    let mut c = p.cmd_with(beam_oci(), &[], &["exec", "-i", &id, "cat"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn podman exec -i");
    child.stdin.take().unwrap().write_all(b"through stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "through stdin\n", "exec -i cat: stderr: {}", text(&out.stderr));

    p.step("rm -f", &["rm", "-f", "-t", "0", &id], 0);
    assert!(container_ids(&p).is_empty(), "rm -f left the container behind");
    assert_gone(&id);

    // 4. podman container checkpoint / restore through beam-oci's checkpoint and restore (CRIU).
    let criu_works = Command::new("criu").arg("check").output().is_ok_and(|o| o.status.success());
    if criu_works {
        let count = |p: &Podman, id: &str| -> u64 {
            let out = p.step("exec cat /tmp/count", &["exec", id, "cat", "/tmp/count"], 0);
            text(&out.stdout).trim().parse().unwrap_or(0)
        };
        let mut args = vec!["run", "-d"];
        args.extend(RUN_OPTS);
        let counter = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done";
        args.extend([IMAGE, "sh", "-c", counter]);
        let id = text(&p.step("run -d a counter", &args, 0).stdout).trim().to_string();
        let start = std::time::Instant::now();
        while count(&p, &id) < 3 {
            assert!(start.elapsed() < std::time::Duration::from_secs(20), "the counter never counted");
        }
        p.step("container checkpoint", &["container", "checkpoint", &id], 0);
        let st = p.step("inspect state", &["inspect", "--format", "{{.State.Status}}", &id], 0);
        assert_eq!(text(&st.stdout).trim(), "exited", "checkpointed");
        p.step("container restore", &["container", "restore", &id], 0);
        let (a, start) = (count(&p, &id), std::time::Instant::now());
        assert!(a >= 3, "the restored counter went on from where it was, not from 0: {a}");
        while count(&p, &id) <= a {
            assert!(start.elapsed() < std::time::Duration::from_secs(20), "the restored counter doesn't count");
        }
        p.step("rm -f", &["rm", "-f", "-t", "0", &id], 0);
        assert_gone(&id);
    } else {
        eprintln!("skipped checkpoint/restore: no working criu on PATH (scripts/deps.sh --test builds one)");
    }
    println!("podman drove beam-oci: run, exit status, run -d, exec (-i), rm -f, checkpoint/restore all passed");
}
