//! Real-kernel tests (root only: `#[ignore = "needs root"]`, run with `--include-ignored`). Every mount
//! happens in a forked child that first unshares its mount namespace and makes `/` rslave, so nothing
//! propagates to the host; the child execs busybox inside the new root and the parent checks what it
//! printed. Between fork and exec the child only makes syscalls.

use super::*;
use crate::test_support::require_root;
use serde_json::{Value, json};

use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;

mod kernel;
mod plan;

const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];
const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A bundle in a temp dir: `rootfs/` with busybox, plus host-side sources.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("beam-mounts-")
            .tempdir()
            .unwrap();
        let b = Self { dir };
        let rootfs = b.rootfs();
        for d in ["bin", "etc", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
        b
    }
    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
    fn plan(
        &self,
        spec: Value,
        no_pivot: bool,
        cgroup: CgroupMount,
    ) -> Result<RootfsPlan, MountError> {
        let spec: Spec = serde_json::from_value(spec).expect("spec json");
        let opts = RootfsOptions {
            no_pivot,
            cgroup,
            bundle: self.path(),
        };
        RootfsPlan::new(&spec, &std::fs::canonicalize(self.rootfs()).unwrap(), &opts)
    }
}

fn runc_mounts(devpts_gid: bool) -> Vec<Value> {
    let mut pts = vec![
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ];
    if devpts_gid {
        pts.push("gid=5");
    }
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": pts}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ]
}

fn spec(mounts: Vec<Value>, linux: Value, readonly_root: bool) -> Value {
    json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs", "readonly": readonly_root},
        "mounts": mounts,
        "linux": linux,
    })
}

/// How the forked child is set up before `prepare`.
#[derive(Default)]
struct Setup<'a> {
    /// Extra CLONE_NEW* flags (a PID namespace makes the child fork once more to become pid 1).
    unshare: i32,
    /// Enter a user namespace mapping root to root (no CAP_MKNOD, no sysfs without a netns).
    userns: bool,
    /// Run after `prepare`, before `enter`: must only make syscalls.
    before_enter: Option<&'a dyn Fn() -> bool>,
}

struct Outcome {
    code: i32,
    out: String,
    failure: Option<ChildFailure>,
}

impl Outcome {
    fn line(&self, key: &str) -> &str {
        let prefix = format!("{key}=");
        self.out
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {key}= in:\n{}", self.out))
    }
    fn mount_points(&self) -> Vec<String> {
        self.mountinfo().iter().map(|f| f[4].clone()).collect()
    }
    fn mountinfo(&self) -> Vec<Vec<String>> {
        let text = self
            .out
            .split("MOUNTINFO-BEGIN\n")
            .nth(1)
            .and_then(|s| s.split("MOUNTINFO-END").next());
        text.expect("mountinfo in output")
            .lines()
            .map(|l| l.split(' ').map(str::to_string).collect())
            .collect()
    }
}

fn write_file(path: &CStr, data: &[u8]) -> bool {
    // SAFETY: open/write/close on a NUL-terminated path and a live buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let ok = libc::write(fd, data.as_ptr().cast(), data.len()) == data.len() as isize;
        libc::close(fd);
        ok
    }
}

/// Fork; in the child set up namespaces, run prepare/enter/finalize and exec `busybox sh -c script`
/// inside the new root with stdout+stderr to a pipe.
fn run(plan: &RootfsPlan, setup: &Setup, script: &str) -> Outcome {
    let argv_c: Vec<CString> = ["/bin/busybox", "sh", "-c", script]
        .iter()
        .map(|s| CString::new(*s).unwrap())
        .collect();
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let env_c = [CString::new("PATH=/bin").unwrap()];
    let envp = [env_c[0].as_ptr(), std::ptr::null()];
    let mut out = [0 as RawFd; 2];
    let mut fail = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into each array; open of a constant path.
    let devnull = unsafe {
        assert_eq!(libc::pipe2(out.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert_eq!(libc::pipe2(fail.as_mut_ptr(), libc::O_CLOEXEC), 0);
        libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC)
    };
    // SAFETY: the child below only makes syscalls (and our no-allocation plan methods) until execve/_exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: we are the freshly forked, single-threaded child.
        unsafe { child(plan, setup, out[1], fail[1], devnull, &argv, &envp) }
    }
    // SAFETY: the parent owns the read ends; the write ends and devnull are closed here once.
    let (mut out_r, mut fail_r) = unsafe {
        libc::close(out[1]);
        libc::close(fail[1]);
        libc::close(devnull);
        (
            std::fs::File::from_raw_fd(out[0]),
            std::fs::File::from_raw_fd(fail[0]),
        )
    };
    let mut text = String::new();
    out_r.read_to_string(&mut text).unwrap();
    let mut fbytes = Vec::new();
    fail_r.read_to_end(&mut fbytes).unwrap();
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let failure = <&[u8; 9]>::try_from(fbytes.as_slice())
        .ok()
        .and_then(ChildFailure::from_bytes);
    Outcome {
        code,
        out: text,
        failure,
    }
}

unsafe fn child(
    plan: &RootfsPlan,
    setup: &Setup,
    out_w: RawFd,
    fail_w: RawFd,
    devnull: RawFd,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    let report = |f: ChildFailure, code: i32| -> ! {
        let b = f.to_bytes();
        // SAFETY: write of a stack buffer, then _exit.
        unsafe {
            libc::write(fail_w, b.as_ptr().cast(), b.len());
            libc::_exit(code)
        }
    };
    // SAFETY: plain syscalls in a single-threaded child; every failure ends in _exit.
    unsafe {
        libc::dup2(devnull, 0);
        if setup.userns
            && (libc::unshare(libc::CLONE_NEWUSER) != 0
                || !write_file(c"/proc/self/setgroups", b"deny")
                || !write_file(c"/proc/self/uid_map", b"0 0 1")
                || !write_file(c"/proc/self/gid_map", b"0 0 1"))
        {
            libc::_exit(80);
        }
        if libc::unshare(libc::CLONE_NEWNS | setup.unshare) != 0 {
            libc::_exit(81);
        }
        if setup.unshare & libc::CLONE_NEWPID != 0 {
            let pid = libc::fork();
            if pid < 0 {
                libc::_exit(82);
            }
            if pid > 0 {
                let mut st = 0;
                libc::waitpid(pid, &mut st, 0);
                libc::_exit(if libc::WIFEXITED(st) {
                    libc::WEXITSTATUS(st)
                } else {
                    83
                });
            }
        }
        // Test-harness safety net, before anything else is mounted.
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_SLAVE | libc::MS_REC,
            std::ptr::null(),
        ) != 0
        {
            libc::_exit(84);
        }
        if let Err(f) = plan.prepare() {
            report(f, 91);
        }
        if let Some(check) = setup.before_enter
            && !check()
        {
            libc::_exit(92);
        }
        if let Err(f) = plan.enter() {
            report(f, 93);
        }
        if let Err(f) = plan.finalize() {
            report(f, 94);
        }
        libc::dup2(out_w, 1);
        libc::dup2(out_w, 2);
        libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
        libc::_exit(95)
    }
}

fn assert_ok(plan: &RootfsPlan, o: &Outcome) {
    let why = o
        .failure
        .map(|f| plan.explain(f).to_string())
        .unwrap_or_default();
    assert_eq!(
        o.code, 0,
        "child failed (exit {}): {why}\n{}",
        o.code, o.out
    );
}

/// Host mount points mentioning `needle` (must stay empty: nothing leaked to the host).
fn host_mounts_with(needle: &str) -> Vec<String> {
    super::build::read_mountinfo()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|m| m.contains(needle))
        .collect()
}

/// A masked file that exists on this kernel (/proc/kcore needs CONFIG_PROC_KCORE).
fn masked_file() -> &'static str {
    ["/proc/kcore", "/proc/timer_list", "/proc/keys"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap()
}

fn probe() -> String {
    format!("MASKED_FILE={}\n{PROBE}", masked_file())
}

const PROBE: &str = r#"
B=/bin/busybox
echo MOUNTINFO-BEGIN; $B cat /proc/self/mountinfo; echo MOUNTINFO-END
echo "devnull=$(echo hello > /dev/null && $B wc -c < /dev/null)"
echo "devfd=$($B readlink /dev/fd)"
echo "stdin=$($B readlink /dev/stdin)"
echo "ptmx=$($B readlink /dev/ptmx)"
echo "null=$($B stat -c '%a %F %t:%T' /dev/null)"
echo "zero=$($B head -c 5 /dev/zero | $B wc -c)"
echo "masked=$($B wc -c < $MASKED_FILE)"
echo "etc=$($B touch /etc/newfile 2>&1)"
echo "shm=$($B touch /dev/shm/ok && echo ok)"
v=$($B cat /proc/sys/vm/overcommit_memory)
echo "procsys=$( (echo $v > /proc/sys/vm/overcommit_memory) 2>&1)"
echo "sysw=$($B touch /sys/kernel/x 2>&1)"
echo "firmware=$($B ls -A /sys/firmware | $B wc -l)"
echo "pwd=$(pwd)"
"#;

fn line_is(o: &Outcome, key: &str, want: &str) {
    assert_eq!(o.line(key), want, "{key}=\n{}", o.out);
}

fn has_line_with(o: &Outcome, key: &str, needle: &str) {
    let v = o.line(key);
    assert!(
        v.contains(needle),
        "{key}={v:?} should contain {needle:?}\n{}",
        o.out
    );
}

#[test]
fn invalid_specs_are_rejected_with_a_fix() {
    let b = Bundle::new();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"destination": "rel/path", "type": "tmpfs", "source": "tmpfs"}),
            "not absolute",
        ),
        (
            json!({"destination": "/x", "type": "bind", "source": "/", "options": ["rbind", "idmap"]}),
            "not supported yet",
        ),
        (
            json!({"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}),
            "tmpcopyup",
        ),
        (
            json!({"destination": "/x", "type": "bind", "options": ["bind"]}),
            "without a source",
        ),
        (
            json!({"destination": "/x", "type": "bind", "source": "no-such-dir", "options": ["bind"]}),
            "bind source",
        ),
        (
            json!({"destination": "/proc/sys/kernel", "type": "tmpfs", "source": "tmpfs"}),
            "inside /proc",
        ),
        (
            json!({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}),
            "only a proc",
        ),
        (
            json!({"destination": "/x", "source": "tmpfs"}),
            "without a type",
        ),
    ];
    for (m, needle) in cases {
        let dest = m["destination"].as_str().unwrap().to_string();
        let err = b.plan(
            spec(
                vec![json!({"destination": "/proc", "type": "proc"}), m],
                json!({}),
                false,
            ),
            false,
            CgroupMount::V2,
        );
        let msg = err.expect_err(needle).to_string();
        assert!(
            msg.contains(needle)
                && msg.contains("mounts[1]")
                && msg.contains(&dest)
                && msg.contains("fix:"),
            "{msg}"
        );
    }
    let bad = spec(vec![], json!({"rootfsPropagation": "sideways"}), false);
    assert!(
        b.plan(bad, false, CgroupMount::V2)
            .unwrap_err()
            .to_string()
            .contains("rootfsPropagation")
    );
    let bad = spec(
        vec![],
        json!({"devices": [{"path": "/dev/x", "type": "a"}]}),
        false,
    );
    assert!(
        b.plan(bad, false, CgroupMount::V2)
            .unwrap_err()
            .to_string()
            .contains("linux.devices[0] /dev/x")
    );
    // Allowed: lxcfs-style binds over /proc entries.
    let ok = spec(
        vec![
            json!({"destination": "/proc/meminfo", "type": "bind", "source": "/proc/meminfo", "options": ["bind"]}),
        ],
        json!({}),
        false,
    );
    assert!(b.plan(ok, false, CgroupMount::V2).is_ok());
    for (i, s) in Step::ALL.iter().enumerate() {
        assert_eq!(*s as u8 as usize, i, "Step::ALL order");
    }
    let f = ChildFailure {
        step: Step::PivotRoot,
        index: 0,
        errno: libc::EINVAL,
    };
    assert_eq!(ChildFailure::from_bytes(&f.to_bytes()), Some(f));
}
