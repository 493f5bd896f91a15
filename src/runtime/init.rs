//! The child, from clone to execve, in this order (docs/architecture.md draws it):
//! namespaces → (fork into the pid namespace) → mounts → pivot_root → sysctl → masked/readonly paths →
//! hostname → console → rlimits → wait for `start` → user/groups → capabilities, landlock and seccomp → execve.
//!
//! Everything here runs between clone and execve, so it only makes syscalls on memory the parent
//! prepared ([`crate::runtime::plan`]) or on stack buffers. Two documented exceptions allocate:
//! hooks run in the container (createContainer/startContainer, via std::process) and error paths.
//! Both only happen in the single-threaded `beam-oci` binary.

// InitError is a 1 KiB stack buffer on purpose: the child must not allocate, so no Box.
#![allow(clippy::result_large_err)]

use crate::runtime::channel::{Channel, Msg};
use crate::runtime::plan::{InitPlan, ProcessPlan};
use crate::runtime::sys::{self, StackBuf};
use crate::runtime::{console, hooks, mounts};
use nix::errno::Errno;
use std::ffi::CStr;
use std::fmt::Write;
use std::os::fd::{AsFd, AsRawFd, RawFd};

/// A failure in the child: a message on the stack, sent to the parent.
pub struct InitError(StackBuf<1024>);

impl InitError {
    fn new(what: std::fmt::Arguments<'_>) -> Self {
        let mut b = StackBuf::new();
        let _ = b.write_fmt(what);
        Self(b)
    }
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Wrap an already formatted message.
pub fn error_from(b: StackBuf<1024>) -> InitError {
    InitError(b)
}

macro_rules! fail {
    ($($t:tt)*) => { InitError::new(format_args!($($t)*)) };
}

fn check(ret: libc::c_int, what: &str) -> Result<(), InitError> {
    if ret < 0 { Err(fail!("{what}: {}", Errno::last().desc())) } else { Ok(()) }
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit never returns and runs no atexit handlers (async-signal-safe).
    unsafe { libc::_exit(code) }
}

/// Entry point of the container's init after clone. Never returns.
pub fn container_child(plan: &InitPlan, chan: &Channel) -> ! {
    let mut exe = StackBuf::<4096>::new();
    // The container state JSON for hooks the child runs itself (sent by the parent).
    let mut state = [0u8; 16384];
    let state_len = match setup(plan, chan, &mut exe, &mut state) {
        Ok(n) => n,
        Err(e) => {
            let _ = chan.send(&Msg::Error(e.as_bytes()));
            exit(1);
        }
    };
    // Created: block until `beam-oci start` connects to start.sock, or `run` (which still holds the
    // channel) says Start. Either way, a failure from here on is written back to that peer.
    let conn = wait_for_start(plan, chan);
    let err = match hooks::run_hooks("startContainer", &plan.child_hooks.start_container, &state[..state_len]) {
        Err(e) => {
            let mut b = StackBuf::<1024>::new();
            let _ = write!(b, "{e}");
            InitError(b)
        }
        Ok(()) => exec_process(&plan.process, &mut exe),
    };
    // Tell the starter why the process could not be started; success closes `conn` on exec.
    match conn {
        Starter::Socket(fd) => {
            // SAFETY: writing a live buffer to the accepted connection.
            unsafe { libc::write(fd, err.as_bytes().as_ptr().cast(), err.as_bytes().len()) };
        }
        Starter::Channel => {
            let _ = chan.send(&Msg::Error(err.as_bytes()));
        }
    }
    exit(127)
}

/// Who started us: a `start` connection on start.sock, or `run` over the channel.
enum Starter {
    Socket(RawFd),
    Channel,
}

fn wait_for_start(plan: &InitPlan, chan: &Channel) -> Starter {
    let listener = plan.start_listener.as_raw_fd();
    let mut fds = [
        libc::pollfd { fd: listener, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: chan.raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    let mut n = 2;
    loop {
        // SAFETY: poll on our own array of n live pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, -1) } < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            exit(1);
        }
        if n == 2 && fds[1].revents != 0 {
            let mut buf = [0u8; 16];
            match chan.recv(&mut buf) {
                Ok(Msg::Start) => return Starter::Channel,
                // `create` exited and closed its end: from now on only start.sock counts.
                _ => n = 1,
            }
        }
        if fds[0].revents & libc::POLLIN != 0 {
            // SAFETY: accept4 on our listening socket; we don't need the peer address.
            let fd = unsafe { libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
            if fd >= 0 {
                return Starter::Socket(fd);
            }
            if Errno::last() != Errno::EINTR && Errno::last() != Errno::EAGAIN {
                exit(1);
            }
        }
    }
}

fn setup(plan: &InitPlan, chan: &Channel, exe: &mut StackBuf<4096>, state: &mut [u8]) -> Result<usize, InitError> {
    // Nobody in the container may open our /proc/<pid>/exe (the runtime binary) — CVE-2019-5736.
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }, "prctl(PR_SET_DUMPABLE)")?;
    let ns = &plan.ns;
    for (fd, kind) in &ns.joins {
        // SAFETY: setns on an fd the parent opened for us.
        check(unsafe { libc::setns(fd.as_raw_fd(), *kind) }, "setns into a linux.namespaces path")?;
    }
    if ns.unshare_user {
        // SAFETY: unshare with flags only.
        check(unsafe { libc::unshare(libc::CLONE_NEWUSER) }, "unshare(user namespace)")?;
        chan.send(&Msg::UserNs).map_err(|e| fail!("sync with parent: {}", e.desc()))?;
    }
    chan.expect(&Msg::Go).map_err(|e| fail!("waiting for the runtime: {}", e.desc()))?;
    // In a new or joined user namespace we are still host uid 0, which the namespace doesn't map: become its root.
    if ns.new_user || ns.joins.iter().any(|(_, kind)| *kind == libc::CLONE_NEWUSER) {
        become_root()?;
    }
    let unshare = |flags| -> Result<(), InitError> {
        if flags != 0 {
            // SAFETY: unshare with flags only.
            check(unsafe { libc::unshare(flags) }, "unshare(namespaces)")?;
        }
        Ok(())
    };
    let cgroupns_later = if plan.late_cgroup { ns.unshare_flags & libc::CLONE_NEWCGROUP } else { 0 };
    unshare(ns.unshare_flags & !cgroupns_later)?;
    if let Some(offsets) = &ns.time_offsets {
        write_file(c"/proc/self/timens_offsets", offsets.as_bytes())
            .map_err(|e| fail!("linux.timeOffsets: write /proc/self/timens_offsets: {}", e.desc()))?;
    }
    if ns.fork {
        fork_into_namespaces(chan)?;
    }
    let mut state_len = 0;
    if !plan.child_hooks.is_empty() {
        match chan.recv(state) {
            Ok(Msg::State(s)) => state_len = s.len(),
            _ => return Err(fail!("waiting for the container state from the runtime")),
        }
        // The payload starts after the 1-byte tag.
        state.copy_within(1..=state_len, 0);
    }
    if plan.runtime_hooks {
        chan.send(&Msg::CreateRuntime).map_err(|e| fail!("sync with parent: {}", e.desc()))?;
        chan.expect(&Msg::HooksDone).map_err(|_| fail!("createRuntime hooks failed"))?;
    }
    mounts::prepare_rootfs(&plan.rootfs).map_err(|e| fail!("{e}"))?;
    if plan.late_cgroup {
        chan.expect(&Msg::CgroupJoined).map_err(|e| fail!("waiting for the runtime: {}", e.desc()))?;
        unshare(cgroupns_later)?;
    }
    hooks::run_hooks("createContainer", &plan.child_hooks.create_container, &state[..state_len]).map_err(|e| fail!("{e}"))?;
    mounts::enter_rootfs(&plan.rootfs).map_err(|e| fail!("{e}"))?;
    for (path, value) in &plan.sysctl {
        write_file(path, value.as_bytes())
            .map_err(|e| fail!("linux.sysctl {}: {}; is that sysctl namespaced?", path.to_string_lossy(), e.desc()))?;
    }
    mounts::finalize_rootfs(&plan.rootfs).map_err(|e| fail!("{e}"))?;
    if let Some(h) = &plan.hostname {
        // SAFETY: sethostname reads len bytes of a live buffer.
        check(unsafe { libc::sethostname(h.as_ptr(), h.as_bytes().len()) }, "hostname: sethostname (needs a uts namespace)")?;
    }
    if let Some(d) = &plan.domainname {
        // SAFETY: setdomainname reads len bytes of a live buffer.
        check(unsafe { libc::setdomainname(d.as_ptr(), d.as_bytes().len()) }, "domainname: setdomainname (needs a uts namespace)")?;
    }
    make_cwd(&plan.process.cwd);
    prepare_process(&plan.process, exe)?;
    chan.send(&Msg::Ready).map_err(|e| fail!("sync with parent: {}", e.desc()))?;
    Ok(state_len)
}

/// After the parent wrote our maps: become root of the new user namespace, with no supplementary groups.
fn become_root() -> Result<(), InitError> {
    // SAFETY: credential syscalls with integer arguments / an empty list.
    unsafe {
        check(sys::setresgid(0, 0, 0), "setresgid(0) in the user namespace (is gid 0 mapped?)")?;
        check(sys::setgroups(0, std::ptr::null()), "setgroups([]) in the user namespace")?;
        check(sys::setresuid(0, 0, 0), "setresuid(0) in the user namespace (is uid 0 mapped?)")?;
    }
    Ok(())
}

/// Fork once more so the container's init is born inside the (joined or unshared) pid/time namespace.
/// The middle process reports the new pid and exits; the new one waits on a pipe until that is done,
/// so the parent always learns the pid before any other message.
fn fork_into_namespaces(chan: &Channel) -> Result<(), InitError> {
    let mut p = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into our array.
    check(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, "pipe2")?;
    // Not libc::fork: this process is a raw clone of a possibly multi-threaded caller (beamd), so glibc's
    // fork would take its atfork and malloc locks, which a thread that does not exist here may hold.
    // SAFETY: a raw clone with fork semantics; both sides only make raw syscalls until execve/_exit.
    let pid = match unsafe { sys::clone(0, None) } {
        Ok(sys::CloneResult::Child) => 0,
        Ok(sys::CloneResult::Parent(pid)) => pid,
        Err(_) => -1,
    };
    match pid {
        -1 => Err(fail!("fork into the pid namespace: {}", Errno::last().desc())),
        0 => {
            let mut b = [0u8; 1];
            // SAFETY: plain fd syscalls on the pipe we made; read returns 0 once the writer exits.
            unsafe {
                libc::close(p[1]);
                while libc::read(p[0], b.as_mut_ptr().cast(), 1) < 0 && Errno::last() == Errno::EINTR {}
                libc::close(p[0]);
            }
            Ok(())
        }
        child => {
            let code = if chan.send(&Msg::Pid(child)).is_ok() { 0 } else { 1 };
            exit(code)
        }
    }
}

fn write_file(path: &CStr, data: &[u8]) -> Result<(), Errno> {
    // SAFETY: open/write/close on a C string path and a live buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(Errno::last());
        }
        let r = libc::write(fd, data.as_ptr().cast(), data.len());
        let e = Errno::last();
        libc::close(fd);
        if r < 0 { Err(e) } else { Ok(()) }
    }
}

/// Create process.cwd inside the new root if it is missing (as runc does); errors surface at chdir.
fn make_cwd(cwd: &CStr) {
    let bytes = cwd.to_bytes();
    let mut b = StackBuf::<4096>::new();
    for (i, &c) in bytes.iter().enumerate() {
        if c == b'/' && i > 0 {
            b.clear();
            b.push(&bytes[..i]);
            // SAFETY: mkdir on a NUL-terminated stack path; EEXIST is fine.
            unsafe { libc::mkdir(b.as_cstr().as_ptr(), 0o755) };
        }
    }
    // SAFETY: as above.
    unsafe { libc::mkdir(cwd.as_ptr(), 0o755) };
}

/// Steps shared by create and exec before the wait: session, console, rlimits, executable lookup.
pub fn prepare_process(p: &ProcessPlan, exe: &mut StackBuf<4096>) -> Result<(), InitError> {
    // SAFETY: setsid has no arguments; EPERM (already a group leader) is harmless.
    unsafe { libc::setsid() };
    if p.terminal {
        let Some(sock) = &p.console else {
            return Err(fail!("process.terminal is true but no console socket was given; pass --console-socket"));
        };
        console::setup_pty(sock.as_fd(), p.console_size).map_err(|e| fail!("{e}"))?;
    }
    for (res, lim) in &p.rlimits {
        // SAFETY: setrlimit reads our rlimit struct.
        check(unsafe { libc::setrlimit(*res, lim) }, "process.rlimits: setrlimit")?;
    }
    resolve_exe(p, exe)
}

/// Find argv[0] the way execvp would, but inside the container and without allocating.
fn resolve_exe(p: &ProcessPlan, exe: &mut StackBuf<4096>) -> Result<(), InitError> {
    let name = p.argv.first().to_bytes();
    exe.clear();
    if name.contains(&b'/') {
        exe.push(name);
        return Ok(());
    }
    for dir in &p.path_dirs {
        exe.clear();
        exe.push(dir.to_bytes());
        exe.push(b"/");
        exe.push(name);
        // SAFETY: zeroed stat is a valid out-parameter; stat reads a NUL-terminated path.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: see above.
        if unsafe { libc::stat(exe.as_cstr().as_ptr(), &mut st) } == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFREG
            && st.st_mode & 0o111 != 0
        {
            return Ok(());
        }
    }
    Err(fail!(
        "exec: {:?}: executable file not found in $PATH; check process.args[0] and PATH in process.env",
        p.name
    ))
}

/// Make `fds` (a library caller's) the process's fds 0..n. Each is first copied above n, so that no
/// source is overwritten before it is copied; the channel to the parent is above n too (create).
fn install_fds(fds: &[RawFd]) -> Result<(), InitError> {
    const MAX: usize = 16;
    if fds.is_empty() {
        return Ok(());
    }
    if fds.len() > MAX {
        return Err(fail!("at most {MAX} fds can be passed to the container process"));
    }
    let n = fds.len() as libc::c_int;
    let mut high = [0 as RawFd; MAX];
    for (i, &src) in fds.iter().enumerate() {
        // SAFETY: fcntl on an inherited fd; the copy is close-on-exec until dup2 below.
        high[i] = unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, n) };
        check(high[i], "fcntl(F_DUPFD_CLOEXEC) of a passed fd")?;
    }
    for (target, &src) in high[..fds.len()].iter().enumerate() {
        // SAFETY: dup2 between fds we own; the target loses close-on-exec, as it must.
        check(unsafe { libc::dup2(src, target as RawFd) }, "dup2 of a passed fd")?;
    }
    Ok(())
}

/// The last steps: user, capabilities, no_new_privs, seccomp (runc's order), fds, execve.
/// Returns only on failure.
pub fn exec_process(p: &ProcessPlan, exe: &mut StackBuf<4096>) -> InitError {
    match exec_process_inner(p, exe) {
        Err(e) => e,
        Ok(()) => unreachable!("execve returned success"),
    }
}

fn exec_process_inner(p: &ProcessPlan, exe: &mut StackBuf<4096>) -> Result<(), InitError> {
    let load_seccomp = || -> Result<(), InitError> {
        if let Some(s) = &p.seccomp {
            s.load().map_err(|e| fail!("linux.seccomp: loading the filter: {}", e.desc()))?;
        }
        Ok(())
    };
    let apply_landlock = || -> Result<(), InitError> {
        if let Some(l) = &p.landlock {
            l.apply().map_err(|e| fail!("{e}"))?;
        }
        Ok(())
    };
    // Without no_new_privs, landlock and a seccomp filter need CAP_SYS_ADMIN: apply them while we have it.
    if !p.no_new_privs {
        apply_landlock()?;
        load_seccomp()?;
    }
    p.caps.drop_bounding().map_err(|e| fail!("process.capabilities.bounding: {}", e.desc()))?;
    // SAFETY: credential syscalls with integer arguments and a live gid slice.
    unsafe {
        if sys::setgroups(p.groups.len(), p.groups.as_ptr()) < 0 && !(p.groups.is_empty() && Errno::last() == Errno::EPERM) {
            return Err(fail!("process.user.additionalGids: setgroups: {}", Errno::last().desc()));
        }
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")?;
        check(sys::setresgid(p.gid, p.gid, p.gid), "process.user.gid: setresgid (is it mapped?)")?;
        check(sys::setresuid(p.uid, p.uid, p.uid), "process.user.uid: setresuid (is it mapped?)")?;
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")?;
    }
    p.caps.apply().map_err(|e| fail!("process.capabilities: capset: {}", e.desc()))?;
    // SAFETY: chdir on a C string.
    if unsafe { libc::chdir(p.cwd.as_ptr()) } < 0 {
        return Err(fail!(
            "process.cwd {:?}: {}; create it in the root filesystem or change process.cwd",
            p.cwd,
            Errno::last().desc()
        ));
    }
    if let Some(m) = p.umask {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(m) };
    }
    if p.no_new_privs {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }, "prctl(PR_SET_NO_NEW_PRIVS)")?;
        apply_landlock()?;
        load_seccomp()?;
    }
    install_fds(&p.fds)?;
    sys::cloexec_from(3 + p.preserve_fds);
    // SAFETY: execve with a NUL-terminated path and NULL-terminated argv/envp arrays owned by the plan.
    unsafe { libc::execve(exe.as_cstr().as_ptr(), p.argv.as_ptr(), p.envp.as_ptr()) };
    Err(fail!("exec {:?}: {}", exe.as_cstr(), Errno::last().desc()))
}
