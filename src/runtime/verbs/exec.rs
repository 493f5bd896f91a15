//! `exec`: run another process inside a created or running container — every namespace of its init,
//! its cgroup, and the same security (capabilities, no_new_privs, seccomp) as the spec gives.

use super::run::{forward_until_exit, wait_exit};
use super::{Error, Result, load_in, saved_spec, write_pid_file};
use crate::runtime::channel::{self, Channel, Msg};
use crate::runtime::console;
use crate::runtime::init::{self, InitError};
use crate::runtime::namespaces::proc_name;
use crate::runtime::plan::ProcessPlan;
use crate::runtime::state::{Root, Status};
use crate::runtime::sys::{self, CloneResult, StackBuf};
use nix::errno::Errno;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Process};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

#[derive(Default)]
pub struct ExecOptions {
    pub id: String,
    /// A process.json (OCI `process` object) instead of args and the flags below.
    pub process: Option<PathBuf>,
    pub args: Vec<String>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    /// "uid[:gid]"
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub no_new_privs: bool,
    pub preserve_fds: i32,
}

fn build_process(base: &Process, opts: &ExecOptions) -> Result<Process> {
    if let Some(p) = &opts.process {
        let text = std::fs::read(p).map_err(Error::io(format!("read --process {}", p.display())))?;
        return serde_json::from_slice(&text)
            .map_err(|e| Error::Usage(format!("--process {}: invalid OCI process JSON: {e}", p.display())));
    }
    if opts.args.is_empty() {
        return Err(Error::Usage("exec needs a command: beam-oci exec ID -- CMD [ARG...] or --process FILE".into()));
    }
    let mut p = base.clone();
    p.set_args(Some(opts.args.clone()));
    p.set_terminal(Some(opts.tty));
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.clone());
    }
    if !opts.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &opts.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    let mut user = p.user().clone();
    if let Some(u) = &opts.user {
        let bad = || Error::Usage(format!("--user {u:?}: use numeric uid[:gid], e.g. 1000:1000"));
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        user.set_uid(uid.parse().map_err(|_| bad())?);
        user.set_gid(gid.parse().map_err(|_| bad())?);
    }
    if !opts.additional_gids.is_empty() {
        user.set_additional_gids(Some(opts.additional_gids.clone()));
    }
    p.set_user(user);
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

/// Open the namespaces of `pid` that differ from ours: (fd, CLONE_NEW* type), user first.
fn target_namespaces(pid: i32, types: &[LinuxNamespaceType]) -> Result<Vec<(OwnedFd, libc::c_int, &'static str)>> {
    let mut out = Vec::new();
    for &t in types {
        let name = proc_name(t);
        let theirs = format!("/proc/{pid}/ns/{name}");
        let same = match (std::fs::metadata(&theirs), std::fs::metadata(format!("/proc/self/ns/{name}"))) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            continue;
        }
        let f = std::fs::File::open(&theirs).map_err(Error::io(format!("open {theirs}")))?;
        let flag = match t {
            LinuxNamespaceType::User => libc::CLONE_NEWUSER,
            LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
            LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
            LinuxNamespaceType::Network => libc::CLONE_NEWNET,
            LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
            LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
            LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
        };
        out.push((OwnedFd::from(f), flag, name));
    }
    out.sort_by_key(|(_, f, _)| *f != libc::CLONE_NEWUSER);
    Ok(out)
}

/// Returns the exit code of the process (0 when detached).
pub fn exec(root: &Root, opts: ExecOptions) -> Result<i32> {
    let (st, _) = load_in(
        root,
        &opts.id,
        &[Status::Created, Status::Running],
        "exec needs a created or running container (resume a paused one first)",
    )?;
    let spec = saved_spec(root, &opts.id)?;
    let base = spec.process().clone().unwrap_or_default();
    let process = build_process(&base, &opts)?;
    let linux = spec.linux().clone().unwrap_or_default();
    let types: Vec<_> = linux.namespaces().iter().flatten().map(|n| n.typ()).collect();
    let nss = target_namespaces(st.pid, &types)?;

    let terminal = process.terminal().unwrap_or(false);
    let (console, relay_end) = super::console_for(opts.console_socket.as_deref(), terminal, opts.detach)?;
    let plan = ProcessPlan::new(&process, linux.seccomp().as_ref(), spec.annotations().as_ref(), console, opts.preserve_fds)?;
    // pid and time namespaces apply to children: enter them here so the clone is born inside.
    for (fd, flag, name) in &nss {
        if *flag == libc::CLONE_NEWPID || *flag == libc::CLONE_NEWTIME {
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::from_bits_truncate(*flag))
                .map_err(Error::errno(format!("setns into container {:?}'s {name} namespace", opts.id)))?;
        }
    }
    let joins: Vec<_> = nss
        .iter()
        .filter(|(_, f, _)| *f != libc::CLONE_NEWPID && *f != libc::CLONE_NEWTIME)
        .map(|(fd, f, _)| (fd.as_raw_fd(), *f))
        .collect();
    let (parent_chan, child_chan) = channel::pair()?;
    let cgroup_fd = st.cgroup.v2_dir_fd()?;
    // SAFETY: beam-oci is single-threaded; the child only runs `exec_child` on prepared data.
    let pid = match unsafe { sys::clone(0, cgroup_fd.as_ref().map(|f| f.as_raw_fd())) } {
        Ok(CloneResult::Child) => {
            // SAFETY: close our copy of the parent's end so a dead parent reads as EOF.
            unsafe { libc::close(parent_chan.raw_fd()) };
            exec_child(&joins, &plan, &child_chan)
        }
        Ok(CloneResult::Parent(pid)) => pid,
        Err(e) => return Err(Error::errno("clone3 for exec")(e)),
    };
    drop(child_chan);
    let reap = |e: Error| {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid), None);
        e
    };
    if cgroup_fd.is_none() {
        st.cgroup.add_pid(pid).map_err(|e| reap(e.into()))?;
    }
    parent_chan.send(&Msg::Go).map_err(|e| reap(Error::errno("sync with the exec process")(e)))?;
    let master = match relay_end {
        Some(sock) => match console::recv_pty_master(sock.as_fd()) {
            Ok(m) => Some(m),
            Err(e) => return Err(reap(child_error(&parent_chan).unwrap_or(e.into()))),
        },
        None => None,
    };
    if let Some(e) = child_error(&parent_chan) {
        return Err(reap(e));
    }
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, pid)?;
    }
    if opts.detach {
        return Ok(0);
    }
    match master {
        Some(m) => {
            console::relay(m)?;
            wait_exit(pid)
        }
        None => forward_until_exit(pid),
    }
}

/// Wait for the exec child's verdict: EOF means it exec'd; a message is its error.
fn child_error(chan: &Channel) -> Option<Error> {
    let mut buf = [0u8; 4096];
    match chan.recv(&mut buf) {
        Err(Errno::EPIPE) => None,
        Ok(Msg::Error(text)) => Some(Error::Child(String::from_utf8_lossy(text).into_owned())),
        Ok(m) => Some(Error::Child(format!("protocol error: unexpected {m:?} from the exec process"))),
        Err(e) => Some(Error::errno("reading from the exec process")(e)),
    }
}

#[allow(clippy::result_large_err)] // InitError lives on the stack: the child must not allocate
fn exec_child(joins: &[(i32, libc::c_int)], plan: &ProcessPlan, chan: &Channel) -> ! {
    let err = (|| -> std::result::Result<(), InitError> {
        // SAFETY: prctl with integer arguments (see init.rs: CVE-2019-5736).
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        for &(fd, flag) in joins {
            // SAFETY: setns on fds opened by the parent.
            if unsafe { libc::setns(fd, flag) } < 0 {
                let mut b = StackBuf::<1024>::new();
                let _ = std::fmt::Write::write_fmt(&mut b, format_args!("exec: setns: {}", Errno::last().desc()));
                return Err(init::error_from(b));
            }
        }
        if chan.expect(&Msg::Go).is_err() {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(1) };
        }
        let mut exe = StackBuf::<4096>::new();
        init::prepare_process(plan, &mut exe)?;
        Err(init::exec_process(plan, &mut exe))
    })();
    if let Err(e) = err {
        let _ = chan.send(&Msg::Error(e.as_bytes()));
    }
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(127) }
}
