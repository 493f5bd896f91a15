//! beam-init (the sandbox's PID 1, `beam::sandbox::INIT_BINARY`) with its client
//! (`beam::sandbox::initclient`), no container needed: the init runs as PID 1 of a fresh PID (and
//! mount, for /proc) namespace through `unshare --pid --fork --kill-child --mount-proc`, or as a
//! plain child where a test needs host pids, with fds 3/4/5 set up as beamd does. Needs root.

mod common_root;
use common_root::require_root;

use beam::sandbox::INIT_BINARY;
use beam::sandbox::initclient::{ExecHandle, ExecSpec, InitClient, InitClientError};
use beam::sandbox::initproto::{self, Reply, Request};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::unistd::Pid;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

/// A running beam-init; kills it (and, outside a PID namespace, everything under it) on drop.
struct Init {
    child: Child,
    dir: tempfile::TempDir,
    log: PathBuf,
    client: InitClient,
    pid_ns: bool,
}

struct Opts<'a> {
    args: &'a [&'a str],
    /// Run as PID 1 of a new PID namespace (pids in replies are then the namespace's).
    pid_ns: bool,
    /// Where the entrypoint log lives (default: the test's temp dir).
    log_dir: Option<&'a Path>,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts { args: &[], pid_ns: true, log_dir: None }
    }
}

/// `fd` duplicated to a number >= 100 (so dup2 onto 3, 4, 5 in the child cannot clobber a source).
fn high_fd(fd: impl AsFd) -> OwnedFd {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd that we own (or -1).
    let n = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
    assert!(n >= 0, "F_DUPFD_CLOEXEC: {}", std::io::Error::last_os_error());
    // SAFETY: n is a fresh fd nothing else owns.
    unsafe { OwnedFd::from_raw_fd(n) }
}

impl Init {
    fn start(opts: Opts) -> Init {
        let dir = tempfile::Builder::new().prefix("beam-init-test-").tempdir().unwrap();
        let bin = dir.path().join("beam-init");
        fs::write(&bin, INIT_BINARY).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        let sock_path = dir.path().join("init.sock");
        let listener =
            socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).unwrap();
        socket::bind(listener.as_raw_fd(), &UnixAddr::new(&sock_path).unwrap()).unwrap();
        socket::listen(&listener, Backlog::new(64).unwrap()).unwrap();
        let name = dir.path().file_name().unwrap().to_string_lossy().into_owned();
        let log = opts.log_dir.unwrap_or(dir.path()).join(format!("{name}.log"));
        let log_file = OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let status = File::create(dir.path().join("status")).unwrap();
        let diag = File::create(dir.path().join("diag")).unwrap();
        // Kept open until spawn returns; the child gets them as 3, 4, 5.
        let high = [high_fd(&listener), high_fd(&log_file), high_fd(&status)];
        let fds = [0, 1, 2].map(|i| high[i].as_raw_fd());

        let mut cmd = if opts.pid_ns {
            let mut c = Command::new("unshare");
            c.args(["--pid", "--fork", "--kill-child", "--mount-proc"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        cmd.args(opts.args).stdin(Stdio::null()).stdout(diag.try_clone().unwrap()).stderr(diag);
        // SAFETY: only dup2 (async-signal-safe) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for (i, fd) in fds.iter().enumerate() {
                    if libc::dup2(*fd, 3 + i as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        // Another test thread may hold our freshly written binary open across its fork: retry ETXTBSY.
        let start = Instant::now();
        let child = loop {
            match cmd.spawn() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && start.elapsed() < DEADLINE => {
                    std::thread::yield_now()
                }
                other => break other.unwrap(),
            }
        };
        Init { child, dir, log, client: InitClient::new(sock_path), pid_ns: opts.pid_ns }
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn log(&self) -> Vec<u8> {
        fs::read(&self.log).unwrap_or_default()
    }

    /// Wait (with the deadline) for the init (or unshare around it) to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "init did not exit; diagnostics: {}", self.read("diag"));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The init's pid on the host (inside unshare, its only child).
    fn host_pid(&self) -> i32 {
        let me = self.child.id() as i32;
        if !self.pid_ns {
            return me;
        }
        let start = Instant::now();
        loop {
            let children = fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                return pid.parse().unwrap();
            }
            assert!(start.elapsed() < DEADLINE, "unshare has no child");
            std::thread::yield_now();
        }
    }
}

/// Every descendant of `pid`, children before grandchildren.
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let children = fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// Wait (with the deadline) until `pid` is gone (reaped by its parent).
fn await_gone(pid: i32) {
    let start = Instant::now();
    while kill(Pid::from_raw(pid), None).is_ok() && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // Kill from the bottom up, so that each process is reaped by its own parent: outside a
            // PID namespace the init's stray descendants (it reaps them), then the init; inside
            // one, the init (the kernel kills the rest and unshare reaps it), then unshare.
            let me = self.child.id() as i32;
            if self.pid_ns {
                if let Some(&init) = descendants(me).first() {
                    let _ = kill(Pid::from_raw(init), Signal::SIGKILL);
                }
                let start = Instant::now();
                while self.child.try_wait().ok().flatten().is_none() && start.elapsed() < DEADLINE {
                    std::thread::sleep(Duration::from_millis(5));
                }
            } else {
                for pid in descendants(me) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    await_gone(pid);
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("beam-init diagnostics:\n{}", self.read("diag"));
        }
        let _ = fs::remove_file(&self.log);
    }
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn spec(args: &[&str]) -> ExecSpec {
    ExecSpec {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/usr/bin:/bin".into()],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        groups: vec![],
        tty: false,
        rows: 0,
        cols: 0,
    }
}

/// Pipes for an exec: (stdio to send, stdout reader, stderr reader).
fn pipes() -> ([OwnedFd; 3], File, File) {
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let null = File::open("/dev/null").unwrap();
    ([null.into(), out_w, err_w], out_r.into(), err_r.into())
}

/// Run to completion with pipes: (stdout, stderr, (code, signal)).
async fn run(client: &InitClient, spec: ExecSpec) -> (String, String, (i32, i32)) {
    let (stdio, mut out, mut err) = pipes();
    let handle = within("exec", client.exec(spec, Some(stdio))).await.unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let err = tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let status = within("wait", handle.wait()).await.unwrap();
    let out = within("stdout", out).await.unwrap().unwrap();
    let err = within("stderr", err).await.unwrap().unwrap();
    (out, err, status)
}

#[tokio::test]
#[ignore = "needs root"]
async fn exec_with_pipes() {
    require_root();
    let init = Init::start(Opts::default());
    assert_eq!(within("ping", init.client.ping()).await.unwrap(), 0);
    let (out, err, status) = run(&init.client, spec(&["sh", "-c", "echo out; echo err >&2; exit 3"])).await;
    assert_eq!((out.as_str(), err.as_str(), status), ("out\n", "err\n", (3, 0)));
    // No fd of the init reaches the process (ls's own directory fd is 3).
    let (out, _, status) = run(&init.client, spec(&["ls", "/proc/self/fd"])).await;
    assert_eq!((out.as_str(), status), ("0\n1\n2\n3\n", (0, 0)));
}

#[tokio::test]
#[ignore = "needs root"]
async fn exec_errors_leave_the_init_serving() {
    require_root();
    let init = Init::start(Opts::default());
    let (stdio, _, _) = pipes();
    match within("exec", init.client.exec(spec(&["nosuchcmd", "x"]), Some(stdio))).await {
        Err(InitClientError::Exec { errno, message, .. }) => {
            assert_eq!(errno, libc::ENOENT);
            assert!(message.contains("\"nosuchcmd\"") && message.contains("PATH"), "{message}");
        }
        other => panic!("expected an exec error, got {other:?}"),
    }
    let noexec = init.dir.path().join("noexec");
    fs::write(&noexec, "#!/bin/sh\n").unwrap();
    let (stdio, _, _) = pipes();
    let err = init.client.exec(spec(&[noexec.to_str().unwrap()]), Some(stdio)).await.unwrap_err();
    assert!(matches!(err, InitClientError::Exec { errno: libc::EACCES, .. }), "{err}");
    let (stdio, _, _) = pipes();
    let mut bad_cwd = spec(&["true"]);
    bad_cwd.cwd = "/no/such/dir".into();
    let err = init.client.exec(bad_cwd, Some(stdio)).await.unwrap_err();
    assert!(matches!(&err, InitClientError::Exec { errno: libc::ENOENT, message, .. } if message.contains("/no/such/dir")), "{err}");
    // Kill of a pid that does not exist.
    let err = init.client.kill(99_999_999, 15).await.unwrap_err();
    assert!(matches!(err, InitClientError::Exec { errno: libc::ESRCH, .. }), "{err}");
    assert_eq!(within("ping", init.client.ping()).await.unwrap(), 0);
}

#[tokio::test]
#[ignore = "needs root"]
async fn exec_env_cwd_user_and_path() {
    require_root();
    let init = Init::start(Opts::default());
    let mut s = spec(&["sh", "-c", "echo $FOO; pwd; id -u; id -g; id -G"]);
    s.env.push("FOO=bar baz".into());
    s.cwd = "/tmp".into();
    (s.uid, s.gid, s.groups) = (65534, 65534, vec![65534, 100]);
    let (out, err, status) = run(&init.client, s).await;
    assert_eq!(status, (0, 0), "{err}");
    assert_eq!(out, "bar baz\n/tmp\n65534\n65534\n65534 100\n");
    // The init blocks every signal; its processes start with none blocked (a shell would unblock
    // them itself, so ask grep).
    let (out, _, _) = run(&init.client, spec(&["grep", "SigBlk", "/proc/self/status"])).await;
    assert_eq!(out, "SigBlk:\t0000000000000000\n");

    // args[0] is looked up in the PATH of spec.env; without one, in the default PATH.
    let bin = init.dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    fs::write(bin.join("beam-hello"), "#!/bin/sh\necho \"hello $0\"\n").unwrap();
    fs::set_permissions(bin.join("beam-hello"), fs::Permissions::from_mode(0o755)).unwrap();
    let mut s = spec(&["beam-hello"]);
    s.env = vec![format!("PATH=/nonexistent:{}", bin.display())];
    let (out, _, status) = run(&init.client, s).await;
    // The kernel hands a #! script its path, as execvp would.
    assert_eq!((out, status), (format!("hello {}/beam-hello\n", bin.display()), (0, 0)));
    let mut s = spec(&["env"]);
    s.env.clear();
    let (out, _, status) = run(&init.client, s).await;
    assert_eq!((out.as_str(), status), ("", (0, 0)));
}

/// Read from a pty master until `needle` shows up (or the deadline passes).
fn read_until(master: &mut File, seen: &mut String, needle: &str) {
    let start = Instant::now();
    while !seen.contains(needle) {
        let left = DEADLINE.saturating_sub(start.elapsed());
        assert!(!left.is_zero(), "no {needle:?} from the pty; got {seen:?}");
        let mut fds = [nix::poll::PollFd::new(master.as_fd(), nix::poll::PollFlags::POLLIN)];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)).unwrap() == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match master.read(&mut buf) {
            Ok(n) if n > 0 => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            other => panic!("pty read: {other:?}; got {seen:?}"),
        }
    }
}

#[tokio::test]
#[ignore = "needs root"]
async fn exec_with_a_tty() {
    require_root();
    let init = Init::start(Opts::default());
    let mut s = spec(&["sh", "-c", "tty; stty size; read line; stty size"]);
    (s.tty, s.rows, s.cols) = (true, 30, 100);
    let mut handle: ExecHandle = within("exec", init.client.exec(s, None)).await.unwrap();
    let mut master = File::from(handle.pty_master.take().expect("a pty master"));
    let mut seen = String::new();
    read_until(&mut master, &mut seen, "30 100");
    let tty = seen.lines().next().unwrap_or("").trim();
    assert!(
        tty.strip_prefix("/dev/pts/").is_some_and(|n| n.parse::<u32>().is_ok()),
        "tty printed {tty:?}"
    );
    let ws = libc::winsize { ws_row: 40, ws_col: 120, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize through the pointer, valid for the call.
    assert_eq!(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
    master.write_all(b"go\n").unwrap();
    read_until(&mut master, &mut seen, "40 120");
    assert_eq!(within("wait", handle.wait()).await.unwrap(), (0, 0));
}

#[tokio::test]
#[ignore = "needs root"]
async fn signal_and_kill_and_ps() {
    require_root();
    let init = Init::start(Opts::default());
    let (stdio, _, _) = pipes();
    let handle = within("exec", init.client.exec(spec(&["sleep", "100"]), Some(stdio))).await.unwrap();
    let list = within("ps", init.client.ps()).await.unwrap();
    let sleep = list.iter().find(|p| p.pid == handle.pid).unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!((sleep.ppid, sleep.uid, sleep.cmd.as_str()), (1, 0, "sleep 100"), "{sleep:?}");
    assert!(list.iter().any(|p| p.pid == 1 && p.cmd.contains("beam-init")), "{list:?}");
    handle.signal(libc::SIGTERM).await.unwrap();
    let status = within("wait", handle.wait()).await.unwrap();
    assert!(matches!(status, (143, 15) | (137, 9)), "{status:?}");
    // Signalling a process that is gone is no error.
    handle.signal(libc::SIGTERM).await.unwrap();

    let (stdio, _, _) = pipes();
    let handle = within("exec", init.client.exec(spec(&["sleep", "100"]), Some(stdio))).await.unwrap();
    within("kill", init.client.kill(handle.pid, libc::SIGKILL)).await.unwrap();
    assert_eq!(within("wait", handle.wait()).await.unwrap(), (137, 9));
}

#[tokio::test]
#[ignore = "needs root"]
async fn dropping_the_handle_kills_the_process() {
    require_root();
    let init = Init::start(Opts { pid_ns: false, ..Opts::default() });
    let (stdio, _, _) = pipes();
    let handle = within("exec", init.client.exec(spec(&["sleep", "100"]), Some(stdio))).await.unwrap();
    let pid = Pid::from_raw(handle.pid);
    assert!(kill(pid, None).is_ok());
    drop(handle);
    // Gone once the init has killed and reaped it.
    let start = Instant::now();
    while kill(pid, None).is_ok() {
        assert!(start.elapsed() < DEADLINE, "pid {pid} still exists");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(within("ping", init.client.ping()).await.unwrap(), 0);
}

#[test]
#[ignore = "needs root"]
fn entrypoint_exit_code_log_and_status() {
    require_root();
    let mut init = Init::start(Opts {
        args: &["--uid", "65534", "--gid", "65534", "--", "sh", "-c", "echo hello; id -u; echo oops >&2; exit 7"],
        ..Opts::default()
    });
    assert_eq!(init.wait_exit().code(), Some(7));
    let log = String::from_utf8(init.log()).unwrap();
    assert!(log.contains("hello\n") && log.contains("65534\n") && log.contains("oops\n"), "{log:?}");
    assert_eq!(initproto::parse_status(&init.read("status")), Some((7, 0)));

    let mut init = Init::start(Opts { args: &["--", "no-such-entrypoint"], ..Opts::default() });
    assert_eq!(init.wait_exit().code(), Some(127));
    assert_eq!(init.read("status"), "code=127 signal=0\n");
    assert!(init.read("diag").contains("no-such-entrypoint"), "{}", init.read("diag"));
}

#[tokio::test]
#[ignore = "needs root"]
async fn signals_are_forwarded_to_the_entrypoint() {
    require_root();
    let mut init = Init::start(Opts { args: &["--", "sleep", "100"], ..Opts::default() });
    let pid = within("ping", init.client.ping()).await.unwrap();
    assert!(pid > 1, "entrypoint pid {pid}");
    kill(Pid::from_raw(init.host_pid()), Signal::SIGTERM).unwrap();
    assert_eq!(init.wait_exit().code(), Some(143));
    assert_eq!(init.read("status"), "code=143 signal=15\n");
}

#[test]
#[ignore = "needs root"]
fn sigterm_without_entrypoint_exits_zero() {
    require_root();
    let mut init = Init::start(Opts { pid_ns: false, ..Opts::default() });
    // Once it answers, its signals are set up.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(within("ping", init.client.ping())).unwrap();
    kill(Pid::from_raw(init.host_pid()), Signal::SIGTERM).unwrap();
    let status = init.wait_exit();
    assert_eq!((status.code(), status.signal()), (Some(0), None));
    assert_eq!(init.read("status"), "code=0 signal=0\n");
}

fn log_bound(log_dir: Option<&Path>) -> Vec<u8> {
    // ~2.9 MB of numbered lines, then a last one.
    let script = "seq 1 400000; echo LAST";
    let mut init = Init::start(Opts {
        args: &["--log-max", "1048576", "--", "sh", "-c", script],
        log_dir,
        ..Opts::default()
    });
    assert_eq!(init.wait_exit().code(), Some(0));
    let log = init.log();
    assert!(log.len() <= (1 << 20) + (256 << 10), "log is {} bytes", log.len());
    assert!(log.ends_with(b"399999\n400000\nLAST\n"), "log ends with {:?}", String::from_utf8_lossy(&log[log.len().saturating_sub(40)..]));
    log
}

#[test]
#[ignore = "needs root"]
fn log_is_bounded_by_collapsing() {
    require_root();
    let log = log_bound(None);
    // ext4/xfs collapse the oldest half in place: no restart marker, and the start is gone.
    if !String::from_utf8_lossy(&log).contains("[beam-init: log truncated]") {
        assert!(!log.starts_with(b"1\n2\n"));
        assert!(log.len() > 256 << 10, "only {} bytes left", log.len());
    }
}

#[test]
#[ignore = "needs root"]
fn log_is_bounded_by_truncating_on_tmpfs() {
    require_root();
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("skipped: no /dev/shm");
        return;
    }
    let log = log_bound(Some(shm));
    assert!(String::from_utf8_lossy(&log).contains("[beam-init: log truncated]\n"));
}

/// A raw SOCK_SEQPACKET connection to the init (blocking), for what InitClient never sends.
fn raw_conn(init: &Init) -> OwnedFd {
    let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).unwrap();
    let tv = nix::sys::time::TimeVal::new(DEADLINE.as_secs() as i64, 0);
    socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &tv).unwrap();
    socket::connect(fd.as_raw_fd(), &UnixAddr::new(init.client.path()).unwrap()).unwrap();
    fd
}

fn raw_call(fd: &OwnedFd, packet: &[u8]) -> Option<Reply> {
    socket::send(fd.as_raw_fd(), packet, socket::MsgFlags::empty()).unwrap();
    let mut buf = vec![0u8; initproto::MAX_PACKET];
    let n = socket::recv(fd.as_raw_fd(), &mut buf, socket::MsgFlags::empty()).unwrap();
    (n > 0).then(|| Reply::decode(&buf[..n]).unwrap())
}

#[tokio::test]
#[ignore = "needs root"]
async fn malformed_packets_get_an_error_and_a_close() {
    require_root();
    let init = Init::start(Opts::default());
    for packet in [vec![99u8, 1, 2], vec![], Request::Exec(spec(&["true"])).encode()] {
        let fd = raw_conn(&init);
        match raw_call(&fd, &packet) {
            Some(Reply::Error { message, .. }) => assert!(!message.is_empty()),
            other => panic!("{packet:?}: expected an error, got {other:?}"),
        }
        // Garbage closes the connection; an exec without its 3 fds is only refused.
        if packet.first() != Some(&2) {
            let mut buf = [0u8; 64];
            assert_eq!(socket::recv(fd.as_raw_fd(), &mut buf, socket::MsgFlags::empty()).unwrap(), 0);
        }
    }
    // Several requests on one connection.
    let fd = raw_conn(&init);
    assert_eq!(raw_call(&fd, &Request::Ping.encode()), Some(Reply::Pong { entrypoint_pid: 0 }));
    assert!(matches!(raw_call(&fd, &Request::Ps.encode()), Some(Reply::Processes(_))));
    assert!(matches!(raw_call(&fd, &Request::Signal { sig: 15 }.encode()), Some(Reply::Error { .. })));
    assert_eq!(within("ping", init.client.ping()).await.unwrap(), 0);
}

#[tokio::test]
#[ignore = "needs root"]
async fn a_dead_init_is_reported_as_dead() {
    require_root();
    let init = Init::start(Opts::default());
    let (stdio, _, _) = pipes();
    let handle = within("exec", init.client.exec(spec(&["sleep", "100"]), Some(stdio))).await.unwrap();
    let client = init.client.clone();
    drop(init);
    let err = within("wait", handle.wait()).await.unwrap_err();
    assert!(err.is_dead() && err.to_string().contains("went away"), "{err}");
    let err = within("ping", client.ping()).await.unwrap_err();
    assert!(err.is_dead(), "{err}");
}

#[tokio::test]
#[ignore = "needs root"]
async fn orphans_are_reaped_and_many_clients_are_served() {
    require_root();
    let init = Init::start(Opts::default());
    // The shell exits at once; its background children re-parent to the init (PID 1), which reaps them.
    let (_, _, status) = run(&init.client, spec(&["sh", "-c", "sleep 0.2 & sleep 0.2 & exit 0"])).await;
    assert_eq!(status, (0, 0));
    let start = Instant::now();
    loop {
        let list = within("ps", init.client.ps()).await.unwrap();
        if list.iter().all(|p| p.pid == 1) {
            break;
        }
        assert!(list.iter().all(|p| p.ppid == 1 || p.pid == 1), "{list:?}");
        assert!(start.elapsed() < DEADLINE, "not reaped: {list:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pings = futures_util::future::join_all((0..50).map(|_| init.client.ping()));
    for pong in within("50 pings", pings).await {
        assert_eq!(pong.unwrap(), 0);
    }
}
