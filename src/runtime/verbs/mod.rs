//! The lifecycle verbs, one file each, as `beam-oci` (and later beamd) call them.

pub mod checkpoint;
pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod run;
pub mod spec;
pub mod start;
pub mod update;

use crate::runtime::cgroups::CgroupError;
use crate::runtime::channel::ChannelError;
use crate::runtime::console::ConsoleError;
use crate::runtime::hooks::HookError;
use crate::runtime::plan::PlanError;
use crate::runtime::spec::SpecError;
use crate::runtime::state::{ContainerState, Root, StateError, Status};
use oci_spec::runtime::Spec;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Mount(#[from] crate::runtime::mounts::MountError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The container's own process reported a failure (the text names the field and the fix).
    #[error("{0}")]
    Child(String),
    #[error("container {id:?} is {status}: {hint}")]
    WrongState { id: String, status: Status, hint: &'static str },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
    pub fn errno(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> Error {
        let what = what.into();
        move |e| Error::Io { what, source: std::io::Error::from(e) }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Options every verb gets from the global flags.
#[derive(Debug, Clone)]
pub struct Global {
    pub root: PathBuf,
}

impl Global {
    pub fn root(&self) -> Result<Root> {
        Ok(Root::new(&self.root)?)
    }
}

/// The copy of config.json kept in the state dir at create time.
pub fn saved_spec(root: &Root, id: &str) -> Result<Spec> {
    let p = root.dir(id).join("config.json");
    let text = std::fs::read(&p).map_err(Error::io(format!("read {}", p.display())))?;
    serde_json::from_slice(&text).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))
}

/// A path to `dir/name` short enough for sun_path (108 bytes), via /proc/self/fd when needed.
/// The returned fd must stay open while the path is used.
pub fn short_unix_path(dir: &Path, name: &str) -> Result<(Option<OwnedFd>, PathBuf)> {
    let full = dir.join(name);
    if full.as_os_str().len() < 100 {
        return Ok((None, full));
    }
    let fd: OwnedFd = std::fs::File::open(dir).map_err(Error::io(format!("open {}", dir.display())))?.into();
    let p = PathBuf::from(format!("/proc/self/fd/{}/{name}", fd.as_raw_fd()));
    Ok((Some(fd), p))
}

/// The console for a process with `terminal`: (the fd handed to the child, our end to relay from).
/// With `--console-socket` the child sends the pty master there; in the foreground without one, we make a
/// socketpair, receive the master ourselves and relay our stdio (`console::relay`).
pub fn console_for(socket: Option<&Path>, terminal: bool, detach: bool) -> Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    use crate::runtime::console;
    Ok(match (socket, terminal) {
        (Some(p), true) => (Some(console::connect_console_socket(p)?), None),
        (None, true) if !detach => {
            let (ours, theirs) = console::console_socketpair()?;
            (Some(theirs), Some(ours))
        }
        (None, true) => {
            return Err(Error::Usage("a terminal with --detach needs --console-socket to hand the pty to".into()));
        }
        _ => (None, None),
    })
}

/// Write a pid file atomically (podman and conmon read it as soon as it appears).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("beam-tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(Error::io(format!("write pid file {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(Error::io(format!("write pid file {}", path.display())))
}

/// Load a container and require one of `allowed` statuses.
pub fn load_in(root: &Root, id: &str, allowed: &[Status], hint: &'static str) -> Result<(ContainerState, Status)> {
    let st = root.load(id)?;
    let status = st.status();
    if !allowed.contains(&status) {
        return Err(Error::WrongState { id: id.into(), status, hint });
    }
    Ok((st, status))
}

/// Wait (without polling) until `pid` has exited, up to `timeout`. Returns false on timeout.
pub fn wait_pid_gone(pid: i32, timeout: std::time::Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let Ok(fd) = crate::runtime::sys::pidfd_open(pid) else { return true };
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
    matches!(poll(&mut fds, ms), Ok(n) if n > 0)
}

/// Parse a signal given by name (KILL, SIGKILL, kill) or number.
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal> {
    use nix::sys::signal::Signal;
    use std::str::FromStr;
    let bad = || Error::Usage(format!("invalid signal {s:?}; use a name like TERM or KILL, or a number like 15"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    Signal::from_str(&name).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
