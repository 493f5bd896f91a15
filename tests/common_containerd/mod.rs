//! A private containerd for the tests (tests/containerd.rs, tests/cri.rs): what a Kubernetes node runs, with
//! beam-oci as the runtime of containerd's runc v2 shim.
//!
//! Each `Containerd` is its own world under a temp dir: root, state, gRPC/ttrpc sockets, config, CNI dirs and
//! the beam-oci `--root` the shim passes (`<dir>/beam-oci/<namespace>`). containerd runs in a mount namespace of
//! its own (`unshare -m --propagation private`), with a tmpfs over `/run` in it: containerd 1.6 puts its shims'
//! sockets in `/run/containerd/s` and ctr its fifos in `/run/containerd/fifo` whatever the config says, so the
//! host's `/run/containerd` is never created or touched, and no mount containerd, its snapshotter, the CRI plugin
//! or beam-oci make reaches the host's mount table. ctr runs in that namespace too (`nsenter -m`); a gRPC client
//! just uses the socket, which lies in the temp dir.
//!
//! Dropping it tears everything down, whatever state the test left: tasks and containers deleted through ctr,
//! beam-oci state removed with `beam-oci delete --force`, containerd stopped (SIGTERM, then SIGKILL), every
//! process still in its mount namespace (the shims: all started by it) killed, the cgroups the test's
//! containers used removed, and any mount under the temp dir detached.
#![allow(dead_code)]

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every ctr call is bounded (seconds), so a hung shim or runtime fails the test instead of hanging it.
const CTR_TIMEOUT: u32 = 600;

pub fn beam_oci() -> &'static str {
    env!("CARGO_BIN_EXE_beam-oci")
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Why these tests can't run here (a tool missing), or None. Root is not a reason to skip: the tests are
/// `#[ignore = "needs root"]` and call `require_root()` (tests/common_root) first.
pub fn skip_reason() -> Option<String> {
    for tool in ["containerd", "ctr", "containerd-shim-runc-v2", "unshare", "nsenter", "timeout", "tar"] {
        if which(tool).is_none() {
            return Some(format!("{tool} is not installed (scripts/deps.sh --test installs containerd)"));
        }
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("busybox-static is not installed".into());
    }
    None
}

/// Poll until `f` holds; panic with `what` (and `diag()`) at the deadline.
pub fn await_cond(timeout: Duration, what: &str, mut f: impl FnMut() -> bool, diag: impl Fn() -> String) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}{}", diag());
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

pub struct Options {
    /// Load the CRI plugin (with `beam` as its only runtime handler and `sandbox_image`).
    pub cri: bool,
    pub sandbox_image: &'static str,
}

pub struct Containerd {
    pub tmp: tempfile::TempDir,
    child: Option<Child>,
    /// containerd's PID (unshare execs it: same process).
    pub pid: i32,
    /// containerd's mount namespace (`mnt:[inode]`): every process in it was started by this test.
    mnt_ns: String,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The runtime root the shim gives beam-oci, before it appends the containerd namespace.
    pub runtime_root: PathBuf,
    /// containerd namespaces to clean up.
    pub namespaces: Vec<String>,
    /// Cgroup paths (relative to each hierarchy) the test's containers live under; removed on drop.
    pub cgroup_parents: Vec<String>,
}

/// The containerd config (version 2) the tests use. With `cri`, the CRI plugin has one runtime handler, `beam`:
/// the runc v2 shim with beam-oci as its runtime binary (docs/kubernetes.md shows the same).
pub fn config_toml(dir: &Path, cri: bool, sandbox_image: &str) -> String {
    let d = dir.display();
    let mut disabled = vec![
        // /opt/containerd (the opt plugin) and snapshotters we don't use. (The v1 runtime stays: 1.6's tasks
        // service won't load without it; nothing here asks for a v1 shim.)
        "io.containerd.internal.v1.opt",
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.tracing.processor.v1.otlp",
    ];
    if !cri {
        disabled.push("io.containerd.grpc.v1.cri");
    }
    let disabled: Vec<String> = disabled.iter().map(|p| format!("{p:?}")).collect();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [{disabled}]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  restrict_oom_score_adj = {restrict_oom}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "beam"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.beam]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.beam.options]
        BinaryName = "{beam_oci}"
        Root = "{d}/beam-oci"
        SystemdCgroup = false
"#,
        disabled = disabled.join(", "),
        beam_oci = beam_oci(),
        restrict_oom = !has_cap_sys_resource(),
    )
}

/// Whether we hold CAP_SYS_RESOURCE. Without it (this VM's root lacks it, as in a container), no runtime can
/// lower a process's oom_score_adj (runc 1.1 fails the same way as beam-oci: "failed to update
/// /proc/self/oom_score_adj: Permission denied"), and the CRI plugin gives the pause container -998: so then the
/// config sets `restrict_oom_score_adj`, which clamps it to containerd's own score (what it is for).
pub fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0) // bit 24: CAP_SYS_RESOURCE
}

fn mnt_ns_of(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok().map(|p| p.to_string_lossy().into_owned())
}

impl Containerd {
    /// Start containerd and wait until it answers on its socket.
    pub fn start(name: &str, opts: Options) -> Self {
        let tmp = tempfile::Builder::new().prefix(&format!("beam-containerd-{name}-")).tempdir().expect("tempdir");
        let d = tmp.path();
        for sub in ["root", "state", "beam-oci", "cni/bin", "cni/conf.d", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let config = d.join("config.toml");
        std::fs::write(&config, config_toml(d, opts.cri, opts.sandbox_image)).unwrap();
        let log = d.join("containerd.log");
        let logf = std::fs::File::create(&log).unwrap();
        // The tmpfs over /run exists only in containerd's mount namespace (see the module doc).
        let script = format!(
            "mount -t tmpfs -o mode=0755,size=64m beam-test-run /run && mkdir /run/containerd && \
             exec containerd --config '{}' --log-level info",
            config.display()
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
            .env("TMPDIR", d.join("tmp"))
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        // Should the test process die without running the guard (SIGKILL), containerd goes with it.
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().expect("spawn unshare containerd");
        let pid = child.id() as i32;
        let mut c = Containerd {
            socket: d.join("containerd.sock"),
            config,
            log,
            runtime_root: d.join("beam-oci"),
            tmp,
            child: Some(child),
            pid,
            mnt_ns: String::new(),
            namespaces: vec![],
            cgroup_parents: vec![],
        };
        let ours = mnt_ns_of(std::process::id() as i32).expect("own mount namespace");
        let start = Instant::now();
        loop {
            if let Some(st) = c.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("containerd exited ({st}) before it was ready{}", c.diag());
            }
            // The namespace is containerd's once unshare has made it (and exec'd sh, then containerd).
            if let Some(ns) = mnt_ns_of(pid).filter(|ns| *ns != ours) {
                c.mnt_ns = ns;
                if c.socket.exists() && c.ctr(None, &["version"]).status.success() {
                    break;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(300), "containerd not ready after 300 s{}", c.diag());
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// `ctr --address <ours> [-n NS] ARGS…`, run in containerd's mount namespace, bounded.
    pub fn ctr_cmd(&self, ns: Option<&str>, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args(["-k", "5", &CTR_TIMEOUT.to_string(), "nsenter", "-t", &self.pid.to_string(), "-m", "--", "ctr"]);
        c.arg("--address").arg(&self.socket);
        if let Some(ns) = ns {
            c.args(["--namespace", ns]);
        }
        // ctr puts its fifos under $XDG_RUNTIME_DIR when it is set (the VM sets /run/user/0), and our /run
        // is a fresh tmpfs in containerd's namespace: use its default, /run/containerd/fifo, there.
        c.args(args).stdin(Stdio::null()).env_remove("XDG_RUNTIME_DIR");
        c
    }

    pub fn ctr(&self, ns: Option<&str>, args: &[&str]) -> Output {
        self.ctr_cmd(ns, args).output().expect("spawn ctr")
    }

    /// Run ctr and require exit status `want`; returns stdout. On anything else: panic with both outputs and
    /// the end of containerd's log.
    pub fn ctr_expect(&self, ns: &str, args: &[&str], want: i32) -> String {
        let out = self.ctr(Some(ns), args);
        if out.status.code() != Some(want) {
            panic!(
                "`ctr -n {ns} {}` exited {:?}, wanted {want}\n--- stdout\n{}--- stderr\n{}{}",
                args.join(" "),
                out.status.code(),
                text(&out.stdout),
                text(&out.stderr),
                self.diag()
            );
        }
        text(&out.stdout)
    }

    pub fn ctr_ok(&self, ns: &str, args: &[&str]) -> String {
        self.ctr_expect(ns, args, 0)
    }

    /// The lines of `ctr … ls -q`-style output.
    pub fn lines(&self, ns: &str, args: &[&str]) -> Vec<String> {
        self.ctr_ok(ns, args).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
    }

    /// A task's status as `ctr task ls` shows it (RUNNING, PAUSED, STOPPED, …), or None when there is no task.
    pub fn task_status(&self, ns: &str, id: &str) -> Option<String> {
        let out = self.ctr_ok(ns, &["task", "ls"]);
        out.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.last().unwrap_or(&"").to_string())
        })
    }

    pub fn await_task_status(&self, ns: &str, id: &str, want: &str) {
        await_cond(
            Duration::from_secs(300),
            &format!("task {id} to be {want}"),
            || self.task_status(ns, id).as_deref() == Some(want),
            || format!("\n(task ls: {}){}", self.ctr_ok(ns, &["task", "ls"]), self.diag()),
        );
    }

    /// Import an image archive into namespace `ns` (unpacked into the overlayfs snapshotter).
    pub fn import(&self, ns: &str, archive: &Path) {
        self.ctr_ok(ns, &["image", "import", archive.to_str().unwrap()]);
    }

    /// `beam-oci --root <runtime root>/<ns> …` (the runtime root the shim used for that namespace).
    pub fn beam_oci_cmd(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new(beam_oci());
        c.arg("--root").arg(self.runtime_root.join(ns)).args(args).stdin(Stdio::null());
        c
    }

    /// Container state dirs beam-oci still has for namespace `ns`.
    pub fn beam_oci_states(&self, ns: &str) -> Vec<String> {
        std::fs::read_dir(self.runtime_root.join(ns))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }

    /// Mount points in containerd's mount namespace and in ours whose line mentions `needle`.
    pub fn mounts_with(&self, needle: &str) -> Vec<String> {
        let mut out = vec![];
        for pid in [self.pid.to_string(), "self".to_string()] {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) {
                out.extend(s.lines().filter(|l| l.contains(needle)).map(|l| format!("[{pid}] {l}")));
            }
        }
        out
    }

    /// The end of containerd's log, for failure messages.
    pub fn diag(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains("msg=\"loading plugin")).collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("\n--- containerd log (last 40 lines of {})\n{tail}\n", self.log.display())
    }

    /// PIDs (other than containerd) in containerd's mount namespace: its shims, and whatever they run there.
    pub fn pids_in_namespace(&self) -> Vec<i32> {
        if self.mnt_ns.is_empty() {
            return vec![];
        }
        let Ok(rd) = std::fs::read_dir("/proc") else { return vec![] };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
            .filter(|&p| p != self.pid && mnt_ns_of(p).as_deref() == Some(self.mnt_ns.as_str()))
            .collect()
    }

    fn teardown(&mut self) {
        let alive = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if alive {
            for ns in self.namespaces.clone() {
                let q = |args: &[&str]| -> Vec<String> {
                    let o = self.ctr(Some(&ns), args);
                    text(&o.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
                };
                for t in q(&["task", "ls", "-q"]) {
                    eprintln!("containerd test cleanup: deleting task {ns}/{t}");
                    let _ = self.ctr(Some(&ns), &["task", "delete", "--force", &t]);
                }
                for c in q(&["container", "ls", "-q"]) {
                    eprintln!("containerd test cleanup: deleting container {ns}/{c}");
                    let _ = self.ctr(Some(&ns), &["container", "delete", &c]);
                }
            }
        }
        // Whatever beam-oci still has (a container whose shim died, say): its own forced delete kills the
        // init and removes the cgroup. Run in containerd's mount namespace while it exists.
        for ns in self.namespaces.clone() {
            for id in self.beam_oci_states(&ns) {
                eprintln!("containerd test cleanup: beam-oci delete --force {ns}/{id}");
                let mut cmd = if alive {
                    let mut c = Command::new("nsenter");
                    c.args(["-t", &self.pid.to_string(), "-m", "--", beam_oci()]);
                    c.arg("--root").arg(self.runtime_root.join(&ns)).args(["delete", "--force", &id]);
                    c
                } else {
                    self.beam_oci_cmd(&ns, &["delete", "--force", &id])
                };
                let _ = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
        }
        // containerd itself: SIGTERM, then SIGKILL.
        if let Some(mut child) = self.child.take() {
            use nix::sys::signal::{Signal, kill};
            let pid = nix::unistd::Pid::from_raw(self.pid);
            let _ = kill(pid, Signal::SIGTERM);
            let start = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Everything still in its mount namespace: started by it (shims), so ours to kill.
        let start = Instant::now();
        loop {
            let left = self.pids_in_namespace();
            if left.is_empty() || start.elapsed() > Duration::from_secs(10) {
                break;
            }
            for p in left {
                eprintln!("containerd test cleanup: killing {p} ({})", cmdline(p));
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The cgroups the test's containers used: any process still in one is a container process of ours
        // (the names are the test's own), so thaw and kill, then remove the dirs deepest first.
        for parent in self.cgroup_parents.clone() {
            kill_cgroup_tree(&parent);
        }
        for parent in self.cgroup_parents.clone() {
            let start = Instant::now();
            while !remove_cgroup_tree(&parent) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Mounts under our dir in our own namespace (there should be none: all of containerd's are in its own).
        let prefix = self.dir().to_string_lossy().into_owned();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            eprintln!("containerd test cleanup: unmounting leftover {m}");
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.teardown();
    }
}

pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline")).map(|b| text(&b).replace('\0', " ")).unwrap_or_default()
}

/// Every dir of cgroup path `rel` that exists on the host, in any hierarchy.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p = e.path().join(rel);
            if p.is_dir() {
                out.push(p);
            }
        }
    }
    let p = Path::new("/sys/fs/cgroup").join(rel);
    if p.is_dir() && !out.contains(&p) {
        out.push(p);
    }
    out
}

/// Every dir of cgroup `rel` and below it, in every hierarchy.
fn cgroup_tree(rel: &str) -> Vec<PathBuf> {
    let mut dirs = vec![];
    let mut stack = cgroup_dirs(rel);
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            stack.extend(rd.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
        dirs.push(d);
    }
    dirs
}

/// Thaw (v1 freezer) and SIGKILL every process in cgroup `rel` and below.
fn kill_cgroup_tree(rel: &str) {
    if rel.trim_matches('/').is_empty() {
        return; // never the root cgroup
    }
    let me = std::process::id() as i32;
    for d in cgroup_tree(rel) {
        let freezer = d.join("freezer.state");
        if std::fs::read_to_string(&freezer).is_ok_and(|s| s.trim() != "THAWED") {
            let _ = std::fs::write(&freezer, "THAWED");
        }
        for p in std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().lines() {
            if let Ok(p) = p.trim().parse::<i32>()
                && p != me
            {
                eprintln!("containerd test cleanup: killing {p} ({}) left in {}", cmdline(p), d.display());
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// rmdir cgroup `rel` and everything below it in every hierarchy; true when none is left.
fn remove_cgroup_tree(rel: &str) -> bool {
    if rel.trim_matches('/').is_empty() {
        return true; // never the root cgroup
    }
    let mut dirs = cgroup_tree(rel);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    let mut all = true;
    for d in dirs {
        if std::fs::remove_dir(&d).is_err() && d.exists() {
            all = false;
        }
    }
    all
}

/// A busybox root filesystem (busybox-static and relative applet links, /etc/passwd and group) at `dir`.
pub fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static at /bin/busybox");
    let list = Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
    for applet in text(&list.stdout).lines() {
        let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
        .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// An OCI image archive (a tar of an OCI image layout) with one uncompressed layer, the tar of `rootfs`, and
/// the image config `config` (Entrypoint, Cmd, …): what `ctr image import` reads. The name goes in the
/// `io.containerd.image.name` annotation, which ctr names the image after.
pub fn oci_archive(out: &Path, rootfs: &Path, name: &str, config: Value) -> PathBuf {
    let layout = out.with_extension("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob = |b: &[u8]| -> (String, usize) {
        let h = sha256_hex(b);
        std::fs::write(blobs.join(&h), b).unwrap();
        (format!("sha256:{h}"), b.len())
    };
    let layer = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(rootfs)
        .args(["-cf", "-", "."])
        .output()
        .expect("tar");
    assert!(layer.status.success(), "tar of {}: {}", rootfs.display(), text(&layer.stderr));
    let (layer_digest, layer_size) = blob(&layer.stdout);
    let mut cfg = config;
    if cfg.get("Env").is_none() {
        cfg["Env"] = json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    }
    let image_config = json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = blob(image_config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = blob(manifest.to_string().as_bytes());
    let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let st = Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(out).arg(".").status().unwrap();
    assert!(st.success(), "tar of the OCI layout {}", layout.display());
    out.to_path_buf()
}
