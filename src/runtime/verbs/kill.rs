//! `kill`: signal the container's init, or every process in its cgroup with `--all`.

use super::{Error, Result, load_in};
use crate::runtime::state::{Root, Status};
use nix::sys::signal::{Signal, kill as sys_kill};
use nix::unistd::Pid;

pub fn kill(root: &Root, id: &str, sig: Signal, all: bool) -> Result<()> {
    let (st, _) = load_in(
        root,
        id,
        &[Status::Created, Status::Running, Status::Paused],
        "only a created, running or paused container can be signalled",
    )?;
    if all {
        st.cgroup.kill_all(sig)?;
    } else {
        sys_kill(Pid::from_raw(st.pid), sig).map_err(Error::errno(format!("kill {} of container {id:?}", st.pid)))?;
    }
    Ok(())
}
