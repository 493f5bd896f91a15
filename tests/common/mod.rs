//! Shared helpers for the integration tests: busybox bundles, a per-test runtime root, and a guard
//! that deletes every container the test made, even when the test fails.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "/bin/busybox";

pub fn beam_oci() -> &'static str {
    env!("CARGO_BIN_EXE_beam-oci")
}

static N: AtomicUsize = AtomicUsize::new(0);

/// A test's world: its own `--root`, bundles under a temp dir, and cleanup on drop.
pub struct Ctx {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    prefix: String,
}

impl Ctx {
    pub fn new(name: &str) -> Self {
        let tmp = tempfile::Builder::new().prefix(&format!("beam-test-{name}-")).tempdir().expect("tempdir");
        let root = tmp.path().join("state");
        let n = N.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("t{}-{}-{n}", std::process::id(), name);
        Self { tmp, root, prefix }
    }

    /// A container id unique to this test run.
    pub fn id(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// `beam-oci --root <ours> ARGS…`
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(beam_oci());
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Run to completion. stdout/stderr go to files, not pipes: a created container's init inherits
    /// them and would hold a pipe open long after beam-oci exits (as with runc).
    pub fn run(&self, args: &[&str]) -> Output {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let (o, e) = (self.tmp.path().join(format!(".out{n}")), self.tmp.path().join(format!(".err{n}")));
        let status = self
            .cmd(args)
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap())
            .status()
            .expect("spawn beam-oci");
        let out = Output { status, stdout: std::fs::read(&o).unwrap(), stderr: std::fs::read(&e).unwrap() };
        let _ = (std::fs::remove_file(o), std::fs::remove_file(e));
        out
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "beam-oci {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run, require failure with exit status 1; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "beam-oci {args:?} should fail with status 1:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A bundle with a busybox rootfs and a default config running `args`.
    pub fn bundle(&self, name: &str, args: &[&str]) -> Bundle {
        Bundle::busybox(&self.tmp.path().join(name), args)
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state JSON")
    }

    /// Await a container status (bounded).
    pub fn await_status(&self, id: &str, want: &str) {
        await_cond(Duration::from_secs(10), || self.state(id)["status"] == want, &format!("{id} to be {want}"));
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if let Ok(out) = self.cmd(&["list", "-q"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self.cmd(&["delete", "--force", id]).output();
            }
        }
    }
}

/// Poll a condition until it holds or the deadline passes (then panic with `what`).
pub fn await_cond(timeout: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// An OCI bundle on disk.
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    pub fn busybox(dir: &Path, args: &[&str]) -> Self {
        let rootfs = dir.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("busybox-static at /bin/busybox");
        // Relative links (`busybox --install -s` would point them at the host path).
        let list = Command::new(BUSYBOX).arg("--list").output().expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        let mut config = beam::runtime::verbs::spec::default_spec(false, 0, 0);
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        config["root"]["readonly"] = json!(false);
        let b = Self { dir: dir.to_path_buf(), config };
        b.save();
        b
    }

    pub fn save(&self) {
        std::fs::write(self.dir.join("config.json"), serde_json::to_string_pretty(&self.config).unwrap()).unwrap();
    }

    pub fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every dir of cgroup `/beam/<id>`-style path `rel` that exists on the host, in any hierarchy.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let mut out = vec![];
    let rel = rel.trim_start_matches('/');
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p = e.path().join(rel);
            if p.exists() {
                out.push(p);
            }
        }
    }
    let p = Path::new("/sys/fs/cgroup").join(rel);
    if p.exists() && !out.contains(&p) {
        out.push(p);
    }
    out
}

/// Mount points on the host whose path contains `needle`.
pub fn host_mounts_with(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}
