//! `events`: resource stats (`--stats`: once) and OOM notifications.

use super::{Result, load_in};
use crate::runtime::state::{Root, Status};
use std::io::Write;
use std::time::Duration;

/// One `{"type":"stats",...}` event.
pub fn stats(root: &Root, id: &str) -> Result<serde_json::Value> {
    let (st, _) = load_in(root, id, &[Status::Created, Status::Running, Status::Paused], "no stats for a stopped container")?;
    Ok(st.cgroup.stats()?.to_event(id))
}

/// Print stats every `interval` and an `oom` event whenever the OOM-kill count rises, until the
/// container stops.
pub fn stream(root: &Root, id: &str, interval: Duration, out: &mut dyn Write) -> Result<()> {
    let (st, _) = load_in(root, id, &[Status::Created, Status::Running, Status::Paused], "the container is not running")?;
    let mut ooms = st.cgroup.oom_kill_count().unwrap_or(0);
    while st.alive() {
        let now = st.cgroup.oom_kill_count().unwrap_or(ooms);
        if now > ooms {
            ooms = now;
            let _ = writeln!(out, "{}", serde_json::json!({"type": "oom", "id": id}));
        }
        if let Ok(s) = st.cgroup.stats() {
            let _ = writeln!(out, "{}", s.to_event(id));
        }
        let _ = out.flush();
        super::wait_pid_gone(st.pid, interval);
    }
    Ok(())
}
