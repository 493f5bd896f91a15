//! `delete`: remove a stopped (or, with --force, any) container and everything it had.

use super::{Error, Result, saved_spec, wait_pid_gone};
use crate::runtime::cgroups::Cgroup;
use crate::runtime::hooks;
use crate::runtime::mounts;
use crate::runtime::state::{ContainerState, Root, StateError, Status};
use nix::sys::signal::Signal;
use std::time::Duration;

pub fn delete(root: &Root, id: &str, force: bool) -> Result<()> {
    let st = match root.load(id) {
        Ok(st) => st,
        Err(StateError::NotFound(_)) if force => return remove_half_created(root, id),
        Err(e) => return Err(e.into()),
    };
    let status = st.status();
    match status {
        Status::Stopped | Status::Created => {}
        _ if force => {}
        _ => {
            return Err(Error::WrongState {
                id: id.into(),
                status,
                hint: "stop it first (beam-oci kill) or use delete --force",
            });
        }
    }
    destroy(root, &st)
}

/// A `create` killed before it wrote state.json (SIGKILL: its cleanup guard never ran) leaves its state dir
/// and maybe its cgroup with a process in it; `delete --force` removes both. Nothing there is fine.
fn remove_half_created(root: &Root, id: &str) -> Result<()> {
    if !root.dir(id).exists() {
        return Ok(());
    }
    let spec = saved_spec(root, id).ok();
    let path = spec.as_ref().and_then(|s| s.linux().as_ref()).and_then(|l| l.cgroups_path().clone());
    let cgroup = Cgroup::new(path.as_deref().and_then(|p| p.to_str()), id)?;
    let _ = cgroup.kill_all(Signal::SIGKILL);
    cgroup.destroy()?;
    root.remove(id)?;
    Ok(())
}

/// Kill whatever is left, remove the cgroup, run poststop hooks, remove the state dir.
pub fn destroy(root: &Root, st: &ContainerState) -> Result<()> {
    if st.alive() {
        // A frozen cgroup can't die: thaw after queueing SIGKILL.
        let _ = st.cgroup.kill_all(Signal::SIGKILL);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(st.pid), Signal::SIGKILL);
        let _ = st.cgroup.thaw();
        if !wait_pid_gone(st.pid, Duration::from_secs(10)) {
            return Err(Error::Child(format!(
                "container {:?}: init {} did not exit within 10 s of SIGKILL; try delete again",
                st.id, st.pid
            )));
        }
    }
    if !st.cgroup.pids().unwrap_or_default().is_empty() {
        st.cgroup.kill_all(Signal::SIGKILL)?;
    }
    st.cgroup.destroy()?;
    if let Some(id) = st.rootfs_mount {
        mounts::detach_rootfs(&st.rootfs, id)?;
    }
    let poststop = saved_spec(root, &st.id).ok().and_then(|s| s.hooks().as_ref().and_then(|h| h.poststop().clone()));
    if let Some(h) = poststop {
        let json = serde_json::to_vec(&st.oci_json(Status::Stopped)).expect("state serializes");
        hooks::run_hooks_warn("poststop", &h, &json);
    }
    root.remove(&st.id)?;
    Ok(())
}
