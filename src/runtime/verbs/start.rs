//! `start`: let a created container's init exec the user process.

use super::{Error, Result, load_in, saved_spec};
use crate::runtime::hooks;
use crate::runtime::state::{ContainerState, Root, Status};
use oci_spec::runtime::Spec;
use std::io::Read;
use std::os::unix::net::UnixStream;

pub fn start(root: &Root, id: &str) -> Result<()> {
    let (mut st, _) = load_in(root, id, &[Status::Created], "only a created container can be started")?;
    let dir = root.dir(id);
    let (_keep, path) = super::short_unix_path(&dir, "start.sock")?;
    let mut conn = UnixStream::connect(&path).map_err(Error::io(format!("connect to container {id:?}'s init")))?;
    // The init closes the connection when it execs (close-on-exec) or writes why it could not.
    let mut why = String::new();
    conn.read_to_string(&mut why).map_err(Error::io(format!("wait for container {id:?} to start")))?;
    if !why.is_empty() {
        let _ = std::fs::remove_file(dir.join("start.sock"));
        return Err(Error::Child(why));
    }
    let spec = saved_spec(root, id)?;
    started(root, &mut st, &spec)
}

/// After the user process exec'd: record it, drop start.sock, run the poststart hooks (a failing
/// poststart hook is a warning, as the spec says).
pub fn started(root: &Root, st: &mut ContainerState, spec: &Spec) -> Result<()> {
    let _ = std::fs::remove_file(root.dir(&st.id).join("start.sock"));
    st.started = true;
    root.save(st)?;
    if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststart().as_ref()) {
        let json = serde_json::to_vec(&st.oci_json(Status::Running)).expect("state serializes");
        hooks::run_hooks_warn("poststart", h, &json);
    }
    Ok(())
}
