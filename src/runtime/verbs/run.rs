//! `run`: create + start, then (unless --detach) wait for the container, forwarding signals, and delete it.

use super::create::{CreateOptions, create_loaded};
use crate::runtime::channel::Msg;
use super::{Error, Result, delete, start};
use crate::runtime::console;
use crate::runtime::state::Root;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, SigmaskHow, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use std::os::fd::AsFd;
use std::path::PathBuf;

pub struct RunOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    pub detach: bool,
    /// Keep the container's state after it exits (runc --keep).
    pub keep: bool,
}

impl RunOptions {
    /// The usual case for library callers: run `bundle` as `id` in the foreground and delete it after.
    pub fn foreground(id: String, bundle: PathBuf) -> Self {
        Self {
            id,
            bundle,
            pid_file: None,
            console_socket: None,
            preserve_fds: 0,
            no_pivot: false,
            detach: false,
            keep: false,
        }
    }
}

/// Start a created container over the channel `create_loaded` returned: EOF means the process
/// exec'd, a message says why it did not. The caller then marks it started (`start::started`).
pub fn start_over_channel(chan: &crate::runtime::channel::Channel) -> Result<()> {
    let mut buf = [0u8; 4096];
    match chan.send(&Msg::Start) {
        Err(e) => Err(Error::errno("starting the container")(e)),
        Ok(()) => match chan.recv(&mut buf) {
            Err(nix::errno::Errno::EPIPE) => Ok(()),
            Ok(Msg::Error(text)) => Err(Error::Child(String::from_utf8_lossy(text).into_owned())),
            Ok(m) => Err(Error::Child(format!("protocol error: unexpected {m:?} at start"))),
            Err(e) => Err(Error::errno("starting the container")(e)),
        },
    }
}

/// Returns the container's exit code (0 when detached).
pub fn run(root: &Root, opts: RunOptions) -> Result<i32> {
    // The container's init may be forked by our child (pid namespace joins): make sure it is reparented
    // to us so we can wait for it.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    crate::runtime::spec::validate_id(&opts.id)?;
    let bundle = crate::runtime::spec::Bundle::load(&opts.bundle)?;
    let terminal = bundle.spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    let (console, relay_end) = super::console_for(opts.console_socket.as_deref(), terminal, opts.detach)?;
    let (mut st, chan) = create_loaded(
        root,
        &bundle,
        CreateOptions {
            id: opts.id.clone(),
            bundle: opts.bundle.clone(),
            pid_file: opts.pid_file.clone(),
            console,
            preserve_fds: opts.preserve_fds,
            no_pivot: opts.no_pivot,
            fds: Vec::new(),
        },
    )?;
    let master = match relay_end {
        Some(sock) => Some(console::recv_pty_master(sock.as_fd())?),
        None => None,
    };
    let failed = start_over_channel(&chan).err();
    drop(chan);
    if let Some(e) = failed {
        let _ = delete::delete(root, &opts.id, true);
        return Err(e);
    }
    start::started(root, &mut st, &bundle.spec)?;
    if opts.detach {
        return Ok(0);
    }
    let code = match master {
        Some(m) => {
            console::relay(m)?;
            wait_exit(st.pid)?
        }
        None => forward_until_exit(st.pid)?,
    };
    if !opts.keep {
        delete::delete(root, &opts.id, true)?;
    }
    Ok(code)
}

fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

pub fn wait_exit(pid: i32) -> Result<i32> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(ws) => {
                if let Some(c) = exit_code(ws) {
                    return Ok(c);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::errno(format!("wait for the container's init {pid}"))(e)),
        }
    }
}

/// Forward the usual terminating signals to `pid` until it exits; return its exit code.
pub fn forward_until_exit(pid: i32) -> Result<i32> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
        set.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(Error::errno("block signals"))?;
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(Error::errno("signalfd"))?;
    let pidfd = crate::runtime::sys::pidfd_open(pid).map_err(Error::errno(format!("pidfd_open {pid}")))?;
    loop {
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN), PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::errno("poll")(e)),
            Ok(_) => {}
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return wait_exit(pid);
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                let _ = kill(Pid::from_raw(pid), sig);
            }
        }
    }
}
