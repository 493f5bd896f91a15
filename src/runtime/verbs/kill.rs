//! `kill`: signal the container's init, or every process in its cgroup with `--all`.

use super::{Error, Result, load_in};
use crate::runtime::state::{Root, Status};
use nix::sys::signal::{Signal, kill as sys_kill};
use nix::unistd::Pid;

/// The words containerd's runc shim looks for to tell "already exited" from a real failure.
const NOT_RUNNING: &str = "container not running: only a created, running or paused container can be signalled";

pub fn kill(root: &Root, id: &str, sig: Signal, all: bool) -> Result<()> {
    if all {
        // As runc: `--all` on a stopped container signals whatever is still in its cgroup (nothing, once
        // the init's children are gone too) and succeeds. containerd's shim runs `kill --all … KILL`
        // after every exit, and treats any failure it can't classify as an error of the stop.
        let st = root.load(id)?;
        st.cgroup.kill_all(sig)?;
        return Ok(());
    }
    let (st, _) = load_in(root, id, &[Status::Created, Status::Running, Status::Paused], NOT_RUNNING)?;
    sys_kill(Pid::from_raw(st.pid), sig).map_err(Error::errno(format!("kill {} of container {id:?}", st.pid)))?;
    Ok(())
}
