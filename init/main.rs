//! beam-init: the PID 1 of every beam sandbox.
//!
//! It reaps every process of the sandbox, runs the optional entrypoint (its output appended to a
//! bounded log), forwards signals to it, and serves beamd's control socket: ping, ps, kill and exec
//! (see `src/sandbox/initproto.rs`). std only, no external crates: build.rs compiles this file with a
//! plain `rustc` into a static binary that beamd copies into each sandbox.
//!
//! Usage: `beam-init [--uid N] [--gid N] [--groups a,b,c] [--log-max BYTES] [-- ENTRYPOINT ARGS...]`
//! (`--log-max` defaults to 8 MiB; 0 means no bound), with fd 0 = /dev/null, fds 1 and 2 =
//! diagnostics, fd 3 = the listening control socket (SOCK_SEQPACKET), fd 4 = the entrypoint log
//! (O_APPEND), fd 5 = the status file.

#![deny(unsafe_op_in_unsafe_fn)]

#[path = "../src/sandbox/initproto.rs"]
#[allow(dead_code)]
mod initproto;

use initproto::{ExecSpec, MAX_PACKET, ProcessInfo, Reply, Request};
use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString, c_int, c_uint, c_ulong};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use sys::{SIGCHLD, SIGHUP, SIGINT, SIGKILL, SIGPIPE, SIGQUIT, SIGSTOP, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};

/// The few libc items the init needs (LP64 Linux layouts; values are the same on x86_64 and aarch64).
mod sys {
    use std::ffi::{c_int, c_uint, c_ulong, c_void};

    /// glibc's sigset_t (1024 bits), opaque.
    pub type SigSet = [u64; 16];

    #[repr(C)]
    pub struct PollFd {
        pub fd: c_int,
        pub events: i16,
        pub revents: i16,
    }

    #[repr(C)]
    pub struct IoVec {
        pub base: *mut c_void,
        pub len: usize,
    }

    #[repr(C)]
    pub struct MsgHdr {
        pub name: *mut c_void,
        pub namelen: u32,
        pub iov: *mut IoVec,
        pub iovlen: usize,
        pub control: *mut c_void,
        pub controllen: usize,
        pub flags: c_int,
    }

    #[repr(C)]
    pub struct WinSize {
        pub rows: u16,
        pub cols: u16,
        pub xpixel: u16,
        pub ypixel: u16,
    }

    extern "C" {
        pub fn signalfd(fd: c_int, mask: *const SigSet, flags: c_int) -> c_int;
        pub fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
        pub fn sigemptyset(set: *mut SigSet) -> c_int;
        pub fn sigfillset(set: *mut SigSet) -> c_int;
        pub fn sigaddset(set: *mut SigSet, sig: c_int) -> c_int;
        pub fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
        pub fn kill(pid: c_int, sig: c_int) -> c_int;
        pub fn poll(fds: *mut PollFd, n: c_ulong, timeout: c_int) -> c_int;
        pub fn sendmsg(fd: c_int, msg: *const MsgHdr, flags: c_int) -> isize;
        pub fn recvmsg(fd: c_int, msg: *mut MsgHdr, flags: c_int) -> isize;
        pub fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
        pub fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
        pub fn prctl(option: c_int, ...) -> c_int;
        pub fn fallocate(fd: c_int, mode: c_int, offset: i64, len: i64) -> c_int;
        pub fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int;
        pub fn setsid() -> c_int;
        pub fn setgroups(n: usize, list: *const u32) -> c_int;
        pub fn setgid(gid: u32) -> c_int;
        pub fn setuid(uid: u32) -> c_int;
        pub fn fchown(fd: c_int, uid: u32, gid: u32) -> c_int;
        pub fn getpid() -> c_int;
        pub fn signal(sig: c_int, handler: usize) -> usize;
    }

    pub const SIGHUP: c_int = 1;
    pub const SIGINT: c_int = 2;
    pub const SIGQUIT: c_int = 3;
    pub const SIGKILL: c_int = 9;
    pub const SIGUSR1: c_int = 10;
    pub const SIGUSR2: c_int = 12;
    pub const SIGPIPE: c_int = 13;
    pub const SIGSTOP: c_int = 19;
    pub const SIG_DFL: usize = 0;
    pub const SIGTERM: c_int = 15;
    pub const SIGCHLD: c_int = 17;
    pub const SIGWINCH: c_int = 28;
    pub const SIG_BLOCK: c_int = 0;
    pub const SIG_SETMASK: c_int = 2;
    pub const SFD_NONBLOCK: c_int = 0o4000;
    pub const SFD_CLOEXEC: c_int = 0o2000000;
    pub const WNOHANG: c_int = 1;
    pub const POLLIN: i16 = 0x1;
    pub const POLLOUT: i16 = 0x4;
    pub const POLLERR: i16 = 0x8;
    pub const POLLHUP: i16 = 0x10;
    pub const POLLNVAL: i16 = 0x20;
    pub const SOL_SOCKET: c_int = 1;
    pub const SCM_RIGHTS: c_int = 1;
    pub const MSG_CTRUNC: c_int = 0x8;
    pub const MSG_TRUNC: c_int = 0x20;
    pub const MSG_DONTWAIT: c_int = 0x40;
    pub const MSG_NOSIGNAL: c_int = 0x4000;
    pub const MSG_CMSG_CLOEXEC: c_int = 0x4000_0000;
    pub const F_SETFD: c_int = 2;
    pub const F_GETFL: c_int = 3;
    pub const F_SETFL: c_int = 4;
    pub const FD_CLOEXEC: c_int = 1;
    pub const O_RDWR: c_int = 2;
    pub const O_NOCTTY: c_int = 0o400;
    pub const O_NONBLOCK: c_int = 0o4000;
    pub const O_CLOEXEC: c_int = 0o2000000;
    pub const CLOSE_RANGE_CLOEXEC: c_int = 4;
    pub const TIOCSCTTY: c_ulong = 0x540E;
    pub const TIOCSWINSZ: c_ulong = 0x5414;
    pub const TIOCGPTN: c_ulong = 0x8004_5430;
    pub const TIOCSPTLCK: c_ulong = 0x4004_5431;
    pub const TIOCGPTPEER: c_ulong = 0x5441;
    pub const PR_SET_DUMPABLE: c_int = 4;
    pub const PR_SET_CHILD_SUBREAPER: c_int = 36;
    pub const FALLOC_FL_COLLAPSE_RANGE: c_int = 0x08;
    pub const ENOENT: i32 = 2;
    pub const ENOEXEC: i32 = 8;
    pub const EACCES: i32 = 13;
    pub const ENOTDIR: i32 = 20;
    pub const EINVAL: i32 = 22;
    pub const EMFILE: i32 = 24;
    pub const ENFILE: i32 = 23;
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_LOG_MAX: u64 = 8 << 20;
const FD_CONTROL: RawFd = 3;
const FD_LOG: RawFd = 4;
const FD_STATUS: RawFd = 5;
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNS: usize = 512;
/// A process's command line in `Ps` is cut at this many bytes.
const MAX_CMD: usize = 4096;
const CMSG_HDR: usize = 16;

/// One line to the diagnostics fd; never fails (there is nowhere else to report).
macro_rules! diag {
    ($($t:tt)*) => {{
        let line = format!("beam-init: {}\n", format_args!($($t)*));
        let _ = io::stderr().write_all(line.as_bytes());
    }};
}

fn check(ret: c_int) -> io::Result<c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Send `sig` to `pid`'s process group, or to `pid` alone when it leads none.
fn kill_group(pid: i32, sig: c_int) {
    // SAFETY: kill has no memory effects; pid > 0, so -pid names exactly that process group.
    if pid > 0 && unsafe { sys::kill(-pid, sig) } < 0 {
        // SAFETY: as above.
        unsafe { sys::kill(pid, sig) };
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: F_GETFL/F_SETFL only change the file status flags of an fd we own.
    unsafe {
        let flags = sys::fcntl(fd, sys::F_GETFL);
        if flags >= 0 {
            sys::fcntl(fd, sys::F_SETFL, flags | sys::O_NONBLOCK);
        }
    }
}

#[derive(Clone)]
struct Identity {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

struct Args {
    identity: Option<Identity>,
    log_max: u64,
    entrypoint: Vec<OsString>,
}

fn parse_args(mut it: impl Iterator<Item = OsString>) -> Result<Args, String> {
    fn value<T: std::str::FromStr>(flag: &str, v: Option<OsString>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| format!("{flag}: bad value {v:?}"))
    }
    let (mut uid, mut gid, mut groups) = (None, None, None);
    let mut log_max = DEFAULT_LOG_MAX;
    let mut entrypoint = Vec::new();
    while let Some(arg) = it.next() {
        match arg.to_str().unwrap_or("") {
            "--" => {
                entrypoint = it.by_ref().collect();
                break;
            }
            "--uid" => uid = Some(value::<u32>("--uid", it.next())?),
            "--gid" => gid = Some(value::<u32>("--gid", it.next())?),
            "--log-max" => log_max = value("--log-max", it.next())?,
            "--groups" => {
                let list: String = value("--groups", it.next())?;
                let parsed: Result<Vec<u32>, _> = list.split(',').filter(|g| !g.is_empty()).map(str::parse).collect();
                groups = Some(parsed.map_err(|_| format!("--groups: bad list {list:?}"))?);
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    let identity = (uid.is_some() || gid.is_some() || groups.is_some()).then(|| Identity {
        uid: uid.unwrap_or(0),
        gid: gid.unwrap_or(0),
        groups: groups.unwrap_or_default(),
    });
    Ok(Args { identity, log_max, entrypoint })
}

/// Find `name` like execvp does, but in `search` (a PATH value) relative to `cwd`.
fn resolve(name: &OsStr, search: &OsStr, cwd: &Path) -> io::Result<PathBuf> {
    if name.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(name));
    }
    let mut denied = false;
    if !name.is_empty() {
        for dir in search.as_bytes().split(|&b| b == b':') {
            let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
            let candidate = cwd.join(dir).join(name);
            match fs::metadata(&candidate) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(candidate),
                Ok(m) if m.is_file() => denied = true,
                _ => {}
            }
        }
    }
    Err(io::Error::from_raw_os_error(if denied { sys::EACCES } else { sys::ENOENT }))
}

/// Runs in the forked child, before exec: only async-signal-safe system calls on data prepared
/// before the fork (std has already dup'ed stdio, changed directory and reset SIGPIPE, but it
/// leaves the signal mask alone: the init's "everything blocked" must not reach the process).
fn child_setup(identity: &Option<Identity>, ctty: bool) -> io::Result<()> {
    let mut none: sys::SigSet = [0; 16];
    // SAFETY: `none` is a valid sigset_t-sized buffer, written by sigemptyset, read by sigprocmask.
    check(unsafe { sys::sigemptyset(&mut none) })?;
    // SAFETY: as above; the old mask is not asked for.
    check(unsafe { sys::sigprocmask(sys::SIG_SETMASK, &none, std::ptr::null_mut()) })?;
    // SAFETY: setsid has no memory effects.
    check(unsafe { sys::setsid() })?;
    if let Some(id) = identity {
        // SAFETY: the pointer and length describe the live `groups` vector.
        check(unsafe { sys::setgroups(id.groups.len(), id.groups.as_ptr()) })?;
        // SAFETY: setgid/setuid have no memory effects.
        check(unsafe { sys::setgid(id.gid) })?;
        // SAFETY: as above.
        check(unsafe { sys::setuid(id.uid) })?;
    }
    if ctty {
        // SAFETY: TIOCSCTTY takes an int argument by value; fd 0 is the pty slave (std dup'ed it).
        check(unsafe { sys::ioctl(0, sys::TIOCSCTTY, 0 as c_ulong) })?;
    }
    Ok(())
}

fn prepare_child(cmd: &mut Command, identity: Option<Identity>, ctty: bool) {
    // SAFETY: child_setup only makes async-signal-safe system calls and allocates nothing.
    unsafe { cmd.pre_exec(move || child_setup(&identity, ctty)) };
}

/// A new pty: (master, slave), the window size set when given.
fn open_pty(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let master = OpenOptions::new().read(true).write(true).custom_flags(sys::O_NOCTTY).open("/dev/ptmx")?;
    let fd = master.as_raw_fd();
    let unlock: c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int through the pointer, valid for the call.
    check(unsafe { sys::ioctl(fd, sys::TIOCSPTLCK, &unlock as *const c_int) })?;
    if rows != 0 || cols != 0 {
        let ws = sys::WinSize { rows, cols, xpixel: 0, ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize through the pointer, valid for the call.
        check(unsafe { sys::ioctl(fd, sys::TIOCSWINSZ, &ws as *const sys::WinSize) })?;
    }
    let flags = (sys::O_RDWR | sys::O_NOCTTY | sys::O_CLOEXEC) as c_ulong;
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd, which we then own.
    let peer = unsafe { sys::ioctl(fd, sys::TIOCGPTPEER, flags) };
    let slave = if peer >= 0 {
        // SAFETY: `peer` is a fresh fd that nothing else owns.
        unsafe { OwnedFd::from_raw_fd(peer) }
    } else {
        let mut n: c_uint = 0;
        // SAFETY: TIOCGPTN writes one unsigned int through the pointer, valid for the call.
        check(unsafe { sys::ioctl(fd, sys::TIOCGPTN, &mut n as *mut c_uint) })?;
        let path = format!("/dev/pts/{n}");
        OpenOptions::new().read(true).write(true).custom_flags(sys::O_NOCTTY).open(path)?.into()
    };
    Ok((master.into(), slave))
}

/// Spawn an exec request: `(pid, pty master)` or `(errno, one-line message)`.
fn spawn_exec(spec: &ExecSpec, mut fds: Vec<OwnedFd>) -> Result<(i32, Option<OwnedFd>), (i32, String)> {
    let name = &spec.args[0];
    let fail = |e: io::Error, hint: &str| (errno(&e), format!("exec {name:?}: {e}{hint}"));
    if !spec.tty && fds.len() != 3 {
        let msg = format!("exec {name:?}: needs 3 fds (stdin, stdout, stderr), got {}", fds.len());
        return Err((sys::EINVAL, msg));
    }
    if spec.tty && !fds.is_empty() {
        return Err((sys::EINVAL, format!("exec {name:?}: a tty exec takes no fds, got {}", fds.len())));
    }
    let cwd = Path::new(if spec.cwd.is_empty() { "." } else { &spec.cwd });
    match fs::metadata(cwd) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err((sys::ENOTDIR, format!("exec {name:?}: working directory {cwd:?} is not a directory"))),
        Err(e) => return Err((errno(&e), format!("exec {name:?}: working directory {cwd:?}: {e}"))),
    }
    let search = spec.env.iter().find_map(|kv| kv.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    let program = resolve(name.as_ref(), search.as_ref(), cwd)
        .map_err(|e| fail(e, "; is it installed in the image and on PATH?"))?;

    let mut cmd = Command::new(program);
    cmd.arg0(name).args(&spec.args[1..]).env_clear().current_dir(cwd);
    cmd.envs(spec.env.iter().filter_map(|kv| kv.split_once('=')));
    let master = if spec.tty {
        let (master, slave) = open_pty(spec.rows, spec.cols).map_err(|e| fail(e, " (opening a pty)"))?;
        // The user owns its terminal, as with runc; failure (an unmapped id) only costs re-opens.
        // SAFETY: fchown has no memory effects on a valid fd.
        unsafe { sys::fchown(slave.as_raw_fd(), spec.uid, spec.gid) };
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| fail(e, " (dup of the pty)"));
        fds = vec![dup(&slave)?, dup(&slave)?, slave];
        Some(master)
    } else {
        None
    };
    let mut fds = fds.into_iter();
    let (Some(stdin), Some(stdout), Some(stderr)) = (fds.next(), fds.next(), fds.next()) else {
        return Err((sys::EINVAL, format!("exec {name:?}: missing stdio")));
    };
    cmd.stdin(Stdio::from(stdin)).stdout(Stdio::from(stdout)).stderr(Stdio::from(stderr));
    let identity = Identity { uid: spec.uid, gid: spec.gid, groups: spec.groups.clone() };
    prepare_child(&mut cmd, Some(identity), spec.tty);
    let child = cmd.spawn().map_err(|e| fail(e, ""))?;
    Ok((child.id() as i32, master))
}

/// `(code, signal)` of a waitpid status: the exit code, or 128 + signal.
fn decode_wait(status: c_int) -> (i32, i32) {
    match status & 0x7f {
        0 => ((status >> 8) & 0xff, 0),
        sig => (128 + sig, sig),
    }
}

fn read_process(pid: i32) -> Option<ProcessInfo> {
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    let stat = String::from_utf8_lossy(&stat);
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so cut at the last ')'.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = stat.get(open + 1..close)?;
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.to_string();
    let ppid = rest.next()?.parse().ok()?;
    let status = fs::read(format!("/proc/{pid}/status")).ok()?;
    let status = String::from_utf8_lossy(&status);
    let field = |key: &str| {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        line.split_whitespace().next()?.parse::<u64>().ok()
    };
    let uid = field("Uid:")? as u32;
    let rss_kib = field("VmRSS:").unwrap_or(0);
    let mut raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    while raw.last() == Some(&0) {
        raw.pop();
    }
    let mut cmd: String = String::from_utf8_lossy(&raw).replace('\0', " ");
    if cmd.is_empty() {
        cmd = format!("[{comm}]");
    }
    if cmd.len() > MAX_CMD {
        let mut cut = MAX_CMD;
        while !cmd.is_char_boundary(cut) {
            cut -= 1;
        }
        cmd.truncate(cut);
    }
    Some(ProcessInfo { pid, ppid, uid, state, rss_kib, cmd })
}

/// Every process in the init's /proc, by pid, cut short where the reply would not fit a packet.
fn list_processes() -> Vec<ProcessInfo> {
    let mut pids: Vec<i32> = match fs::read_dir("/proc") {
        Ok(dir) => dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
        Err(_) => Vec::new(),
    };
    pids.sort_unstable();
    let mut budget = MAX_PACKET - 1024;
    let mut list = Vec::new();
    for p in pids.into_iter().filter_map(read_process) {
        let cost = 64 + p.state.len() + p.cmd.len();
        if cost > budget {
            break;
        }
        budget -= cost;
        list.push(p);
    }
    list
}

fn cmsg_align(n: usize) -> usize {
    (n + 7) & !7
}

#[repr(C, align(8))]
struct CmsgBuf([u8; 256]);

/// Send one packet, with `fd` attached via SCM_RIGHTS when given.
fn send_packet(sock: RawFd, data: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    let mut iov = sys::IoVec { base: data.as_ptr() as *mut _, len: data.len() };
    let mut control = CmsgBuf([0; 256]);
    let mut msg = sys::MsgHdr {
        name: std::ptr::null_mut(),
        namelen: 0,
        iov: &mut iov,
        iovlen: 1,
        control: std::ptr::null_mut(),
        controllen: 0,
        flags: 0,
    };
    if let Some(fd) = fd {
        let c = &mut control.0;
        c[..8].copy_from_slice(&(CMSG_HDR + 4).to_ne_bytes());
        c[8..12].copy_from_slice(&sys::SOL_SOCKET.to_ne_bytes());
        c[12..16].copy_from_slice(&sys::SCM_RIGHTS.to_ne_bytes());
        c[16..20].copy_from_slice(&fd.to_ne_bytes());
        msg.control = c.as_mut_ptr().cast();
        msg.controllen = CMSG_HDR + cmsg_align(4);
    }
    // SAFETY: msg points at iov, data and control, all alive for the call; the kernel only reads them.
    let n = unsafe { sys::sendmsg(sock, &msg, sys::MSG_NOSIGNAL | sys::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

enum Received {
    Packet(usize, Vec<OwnedFd>),
    /// A zero-length read: the peer hung up, or sent an empty packet.
    Empty,
    /// Larger than MAX_PACKET, or more fds than fit.
    Truncated,
}

fn ne_bytes<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// The fds of every SCM_RIGHTS message in a control buffer, now owned by us.
fn parse_rights(control: &[u8]) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    let mut off = 0;
    while off + CMSG_HDR <= control.len() {
        let len = usize::from_ne_bytes(ne_bytes(&control[off..]));
        let level = i32::from_ne_bytes(ne_bytes(&control[off + 8..]));
        let kind = i32::from_ne_bytes(ne_bytes(&control[off + 12..]));
        if len < CMSG_HDR || off + len > control.len() {
            break;
        }
        if level == sys::SOL_SOCKET && kind == sys::SCM_RIGHTS {
            for raw in control[off + CMSG_HDR..off + len].chunks_exact(4) {
                // SAFETY: the kernel just installed this fd for us; nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(i32::from_ne_bytes(ne_bytes(raw))) });
            }
        }
        off += cmsg_align(len);
    }
    fds
}

fn recv_packet(sock: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut iov = sys::IoVec { base: buf.as_mut_ptr().cast(), len: buf.len() };
    let mut control = CmsgBuf([0; 256]);
    let mut msg = sys::MsgHdr {
        name: std::ptr::null_mut(),
        namelen: 0,
        iov: &mut iov,
        iovlen: 1,
        control: control.0.as_mut_ptr().cast(),
        controllen: control.0.len(),
        flags: 0,
    };
    // SAFETY: msg points at buf (via iov) and control, both alive and writable for their lengths.
    let n = unsafe { sys::recvmsg(sock, &mut msg, sys::MSG_CMSG_CLOEXEC | sys::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let fds = parse_rights(&control.0[..msg.controllen.min(control.0.len())]);
    Ok(if msg.flags & (sys::MSG_TRUNC | sys::MSG_CTRUNC) != 0 {
        Received::Truncated
    } else if n == 0 {
        Received::Empty
    } else {
        Received::Packet(n as usize, fds)
    })
}

/// The entrypoint log (fd 4), kept under `max` bytes by dropping its oldest half.
struct Log {
    file: File,
    size: u64,
    max: u64,
    failed: bool,
}

impl Log {
    fn append(&mut self, data: &[u8]) {
        match self.file.write_all(data) {
            Ok(()) => self.size += data.len() as u64,
            Err(e) if !self.failed => {
                self.failed = true;
                diag!("writing the entrypoint log: {e}");
            }
            Err(_) => {}
        }
        if self.max > 0 && self.size > self.max {
            self.bound();
        }
    }

    fn bound(&mut self) {
        let size = self.file.metadata().map(|m| m.len()).unwrap_or(self.size);
        let cut = (size / 2) & !4095;
        let fd = self.file.as_raw_fd();
        // SAFETY: fallocate has no memory effects; collapsing needs block-aligned ranges below EOF.
        if cut > 0 && unsafe { sys::fallocate(fd, sys::FALLOC_FL_COLLAPSE_RANGE, 0, cut as i64) } == 0 {
            self.size = size - cut;
            return;
        }
        // Not supported here (tmpfs, …): start over.
        let note = b"[beam-init: log truncated]\n";
        let _ = self.file.set_len(0);
        let _ = self.file.write_all(note);
        self.size = note.len() as u64;
    }
}

struct Entrypoint {
    pid: i32,
    /// stdout and stderr pipes; None once at EOF.
    pipes: Vec<Option<File>>,
    /// (code, signal) once reaped.
    status: Option<(i32, i32)>,
}

struct Packet {
    data: Vec<u8>,
    fd: Option<OwnedFd>,
}

struct Conn {
    sock: OwnedFd,
    outbox: VecDeque<Packet>,
    /// The process exec'd on this connection, while it runs.
    exec_pid: Option<i32>,
    /// Close once the outbox is flushed.
    closing: bool,
}

enum Slot {
    Signals,
    Listener,
    Pipe(usize),
    Conn(u64),
}

struct Init {
    listener: UnixListener,
    listening: bool,
    signals: File,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    /// exec'd pid → its connection.
    execs: HashMap<i32, u64>,
    entry: Option<Entrypoint>,
    has_entrypoint: bool,
    log: Log,
    status: File,
    buf: Vec<u8>,
}

impl Init {
    fn running_entrypoint(&self) -> Option<i32> {
        self.entry.as_ref().filter(|e| e.status.is_none()).map(|e| e.pid)
    }

    fn run(mut self) -> ! {
        loop {
            let mut pfds = Vec::new();
            let mut slots = Vec::new();
            let mut add = |fd: RawFd, events: i16, slot: Slot| {
                pfds.push(sys::PollFd { fd, events, revents: 0 });
                slots.push(slot);
            };
            add(self.signals.as_raw_fd(), sys::POLLIN, Slot::Signals);
            if self.listening && self.conns.len() < MAX_CONNS {
                add(self.listener.as_raw_fd(), sys::POLLIN, Slot::Listener);
            }
            for (i, p) in self.entry.iter().flat_map(|e| e.pipes.iter().enumerate()) {
                if let Some(p) = p {
                    add(p.as_raw_fd(), sys::POLLIN, Slot::Pipe(i));
                }
            }
            for (id, c) in &self.conns {
                let events = if !c.outbox.is_empty() { sys::POLLOUT } else if c.closing { 0 } else { sys::POLLIN };
                add(c.sock.as_raw_fd(), events, Slot::Conn(*id));
            }
            let timeout = if self.listening { -1 } else { 1000 };
            // SAFETY: pfds is a valid, writable array of pfds.len() pollfd structs for the call.
            let n = unsafe { sys::poll(pfds.as_mut_ptr(), pfds.len() as c_ulong, timeout) };
            self.listening = true;
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    diag!("poll: {e}");
                }
                continue;
            }
            for (p, slot) in pfds.iter().zip(slots) {
                if p.revents == 0 {
                    continue;
                }
                match slot {
                    Slot::Signals => self.on_signals(),
                    Slot::Listener => self.accept_all(),
                    Slot::Pipe(i) => self.pump(i, 16),
                    Slot::Conn(id) => self.on_conn(id, p.revents),
                }
            }
            if let Some((code, sig)) = self.entry.as_ref().and_then(|e| e.status) {
                diag!("entrypoint exited: code={code} signal={sig}");
                self.finish(code, sig);
            }
        }
    }

    /// Leave: the entrypoint's last output to the log, exec'd process groups killed, the status written.
    fn finish(&mut self, code: i32, sig: i32) -> ! {
        for i in 0..self.entry.as_ref().map_or(0, |e| e.pipes.len()) {
            self.pump(i, 1024);
        }
        for pid in self.execs.keys() {
            kill_group(*pid, SIGKILL);
        }
        let _ = self.status.write_all(initproto::format_status(code, sig).as_bytes());
        std::process::exit(code)
    }

    fn on_signals(&mut self) {
        let mut buf = [0u8; 128 * 16];
        while let Ok(n @ 1..) = self.signals.read(&mut buf) {
            for info in buf[..n].chunks_exact(128) {
                let sig = u32::from_ne_bytes(ne_bytes(info)) as c_int;
                self.on_signal(sig);
            }
        }
    }

    fn on_signal(&mut self, sig: c_int) {
        if sig == SIGCHLD {
            return self.reap();
        }
        match self.running_entrypoint() {
            // SAFETY: kill has no memory effects.
            Some(pid) => unsafe {
                sys::kill(pid, sig);
            },
            None if !self.has_entrypoint && [SIGTERM, SIGINT, SIGQUIT, SIGHUP].contains(&sig) => {
                diag!("signal {sig}: stopping");
                self.finish(0, 0)
            }
            None => {}
        }
    }

    fn reap(&mut self) {
        loop {
            let mut status: c_int = 0;
            // SAFETY: waitpid writes one int through the pointer, valid for the call.
            let pid = unsafe { sys::waitpid(-1, &mut status, sys::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let (code, signal) = decode_wait(status);
            if let Some(e) = self.entry.as_mut().filter(|e| e.pid == pid) {
                e.status = Some((code, signal));
            } else if let Some(id) = self.execs.remove(&pid) {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.exec_pid = None;
                    c.closing = true;
                    c.outbox.push_back(Packet { data: Reply::Exited { code, signal }.encode(), fd: None });
                }
                self.flush(id);
            }
        }
    }

    fn pump(&mut self, i: usize, max_reads: usize) {
        let Some(pipe) = self.entry.as_mut().and_then(|e| e.pipes.get_mut(i)) else { return };
        for _ in 0..max_reads {
            let Some(file) = pipe else { return };
            match file.read(&mut self.buf) {
                Ok(0) => *pipe = None,
                Ok(n) => self.log.append(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => *pipe = None,
            }
        }
    }

    fn accept_all(&mut self) {
        while self.conns.len() < MAX_CONNS {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let conn = Conn { sock: stream.into(), outbox: VecDeque::new(), exec_pid: None, closing: false };
                    self.conns.insert(self.next_conn, conn);
                    self.next_conn += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(errno(&e), sys::EMFILE | sys::ENFILE) => {
                    self.listening = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    diag!("accept on the control socket: {e}");
                    self.listening = false;
                    return;
                }
            }
        }
    }

    fn drop_conn(&mut self, id: u64) {
        if let Some(pid) = self.conns.remove(&id).and_then(|c| c.exec_pid) {
            // beamd hung up before the process exited: the protocol says kill it.
            self.execs.remove(&pid);
            kill_group(pid, SIGKILL);
        }
    }

    fn send(&mut self, id: u64, reply: Reply, fd: Option<OwnedFd>) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.outbox.push_back(Packet { data: reply.encode(), fd });
        }
        self.flush(id);
    }

    fn flush(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        while let Some(p) = c.outbox.front() {
            match send_packet(c.sock.as_raw_fd(), &p.data, p.fd.as_ref().map(|f| f.as_raw_fd())) {
                Ok(()) => drop(c.outbox.pop_front()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.drop_conn(id),
            }
        }
        if c.closing {
            self.drop_conn(id);
        }
    }

    fn on_conn(&mut self, id: u64, revents: i16) {
        if revents & sys::POLLOUT != 0 {
            self.flush(id);
        }
        let Some(c) = self.conns.get(&id) else { return };
        let hangup = revents & (sys::POLLHUP | sys::POLLERR | sys::POLLNVAL) != 0;
        if c.closing || !c.outbox.is_empty() {
            if hangup {
                self.drop_conn(id);
            }
            return;
        }
        if revents & sys::POLLIN == 0 && !hangup {
            return;
        }
        match recv_packet(c.sock.as_raw_fd(), &mut self.buf) {
            Ok(Received::Packet(n, fds)) => {
                let request = Request::decode(&self.buf[..n]).map_err(|e| e.to_string());
                self.on_request(id, request, fds);
            }
            Ok(Received::Empty) if hangup => self.drop_conn(id),
            Ok(Received::Empty) => self.on_request(id, Err("init protocol: empty packet".into()), Vec::new()),
            Ok(Received::Truncated) => {
                let msg = format!("init protocol: packet larger than {MAX_PACKET} bytes or too many fds");
                self.on_request(id, Err(msg), Vec::new());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.drop_conn(id),
        }
    }

    fn on_request(&mut self, id: u64, request: Result<Request, String>, fds: Vec<OwnedFd>) {
        let exec_pid = self.conns.get(&id).and_then(|c| c.exec_pid);
        let reply = match request {
            Err(message) => {
                // A bad client gets one error, then the connection closes.
                if let Some(c) = self.conns.get_mut(&id) {
                    c.closing = true;
                }
                Reply::Error { errno: 0, message }
            }
            Ok(Request::Ping) => Reply::Pong { entrypoint_pid: self.running_entrypoint().unwrap_or(0) },
            Ok(Request::Ps) => Reply::Processes(list_processes()),
            Ok(Request::Kill { pid, sig }) => kill_reply(pid, sig),
            Ok(Request::Signal { sig }) => match exec_pid {
                Some(pid) => return kill_group(pid, sig),
                None => Reply::Error { errno: sys::EINVAL, message: "signal: no process runs on this connection".into() },
            },
            Ok(Request::Exec(_)) if exec_pid.is_some() => {
                Reply::Error { errno: sys::EINVAL, message: "exec: this connection already runs a process".into() }
            }
            Ok(Request::Exec(spec)) => match spawn_exec(&spec, fds) {
                Ok((pid, master)) => {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.exec_pid = Some(pid);
                    }
                    self.execs.insert(pid, id);
                    return self.send(id, Reply::Started { pid }, master);
                }
                Err((errno, message)) => Reply::Error { errno, message },
            },
        };
        self.send(id, reply, None);
    }
}

fn kill_reply(pid: i32, sig: i32) -> Reply {
    if pid == 0 || pid == -1 {
        return Reply::Error { errno: sys::EINVAL, message: format!("kill: refusing pid {pid}") };
    }
    // SAFETY: kill has no memory effects.
    if unsafe { sys::kill(pid, sig) } == 0 {
        return Reply::Ok;
    }
    let e = io::Error::last_os_error();
    Reply::Error { errno: errno(&e), message: format!("kill {pid} (signal {sig}): {e}") }
}

/// Block every signal and return a signalfd for the ones the init handles. Dispositions then go
/// back to the default: an ignored signal (SIG_IGN survives exec) would stay ignored in every
/// process of the sandbox.
fn take_signals() -> io::Result<File> {
    let mut all: sys::SigSet = [0; 16];
    let mut mine: sys::SigSet = [0; 16];
    let handled = [SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH];
    // SAFETY: the sets are valid, writable sigset_t-sized buffers; sigprocmask only reads `all`.
    unsafe {
        sys::sigfillset(&mut all);
        check(sys::sigprocmask(sys::SIG_BLOCK, &all, std::ptr::null_mut()))?;
        sys::sigemptyset(&mut mine);
        for sig in handled {
            sys::sigaddset(&mut mine, sig);
        }
    }
    for sig in (1..=64).filter(|s| ![SIGKILL, SIGSTOP, SIGPIPE].contains(s)) {
        // SAFETY: installs no handler, only the default action; errors (reserved signals) are harmless.
        unsafe { sys::signal(sig, sys::SIG_DFL) };
    }
    // SAFETY: `mine` is a valid sigset; the new fd is ours alone.
    let fd = check(unsafe { sys::signalfd(-1, &mine, sys::SFD_NONBLOCK | sys::SFD_CLOEXEC) })?;
    // SAFETY: fd is a fresh signalfd nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Exit before fd 5 has an owner: a diagnostic, the status file, the code.
fn die(code: i32, msg: &str) -> ! {
    diag!("{msg}");
    // SAFETY: fd 5 is the status file beamd gave us, and nothing else in the process owns it yet.
    let mut status = unsafe { File::from_raw_fd(FD_STATUS) };
    let _ = status.write_all(initproto::format_status(code, 0).as_bytes());
    std::process::exit(code)
}

fn spawn_entrypoint(args: &Args) -> io::Result<Entrypoint> {
    let name = &args.entrypoint[0];
    let search = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let mut cmd = Command::new(resolve(name, &search, Path::new("."))?);
    cmd.arg0(name).args(&args.entrypoint[1..]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    prepare_child(&mut cmd, args.identity.clone(), false);
    let mut child = cmd.spawn()?;
    let out = child.stdout.take().map(OwnedFd::from);
    let err = child.stderr.take().map(OwnedFd::from);
    let pipes = [out, err]
        .into_iter()
        .flatten()
        .map(|fd| {
            set_nonblocking(fd.as_raw_fd());
            Some(File::from(fd))
        })
        .collect();
    Ok(Entrypoint { pid: child.id() as i32, pipes, status: None })
}

fn main() {
    // SAFETY: prctl with integer arguments has no memory effects. Not dumpable: processes of the
    // sandbox cannot ptrace the init or open its fds through /proc/1/fd.
    unsafe { sys::prctl(sys::PR_SET_DUMPABLE, 0 as c_ulong) };
    // SAFETY: getpid/prctl have no memory effects. Outside a PID namespace, still reap orphans.
    if unsafe { sys::getpid() } != 1 {
        // SAFETY: as above.
        unsafe { sys::prctl(sys::PR_SET_CHILD_SUBREAPER, 1 as c_ulong) };
    }
    for fd in [FD_CONTROL, FD_LOG, FD_STATUS] {
        // SAFETY: F_SETFD changes only the fd flags; a missing fd is reported, not touched.
        if unsafe { sys::fcntl(fd, sys::F_SETFD, sys::FD_CLOEXEC) } < 0 {
            diag!("fd {fd} is not open: {}", io::Error::last_os_error());
            std::process::exit(1);
        }
    }
    // SAFETY: close_range with CLOEXEC only marks stray inherited fds; errors (old kernels) are harmless.
    unsafe { sys::close_range(6, c_uint::MAX, sys::CLOSE_RANGE_CLOEXEC) };

    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => die(2, &format!("{e}\nusage: beam-init [--uid N] [--gid N] [--groups a,b,c] [--log-max BYTES] [-- CMD ARGS...]")),
    };
    let signals = take_signals().unwrap_or_else(|e| die(1, &format!("signalfd: {e}")));
    // SAFETY: fds 3, 4, 5 are ours by contract with beamd, and nothing else in this process wraps them.
    let (listener, log, status) =
        unsafe { (UnixListener::from_raw_fd(FD_CONTROL), File::from_raw_fd(FD_LOG), File::from_raw_fd(FD_STATUS)) };
    set_nonblocking(listener.as_raw_fd());
    let size = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut init = Init {
        listener,
        listening: true,
        signals,
        conns: HashMap::new(),
        next_conn: 0,
        execs: HashMap::new(),
        entry: None,
        has_entrypoint: !args.entrypoint.is_empty(),
        log: Log { file: log, size, max: args.log_max, failed: false },
        status,
        buf: vec![0; MAX_PACKET],
    };
    if init.has_entrypoint {
        match spawn_entrypoint(&args) {
            Ok(e) => init.entry = Some(e),
            Err(e) => {
                let code = if matches!(errno(&e), sys::EACCES | sys::ENOEXEC) { 126 } else { 127 };
                diag!("cannot start the entrypoint {:?}: {e}", args.entrypoint[0]);
                init.finish(code, 0);
            }
        }
    }
    init.run()
}
