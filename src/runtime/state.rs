//! A container's state on disk: `<root>/<id>/state.json`, plus the runtime-private files beside it
//! (`config.json` copy, `start.sock` until started).

use crate::runtime::cgroups::Cgroup;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {0:?} does not exist; `beam-oci list` shows the containers under this --root")]
    NotFound(String),
    #[error("container {0:?} already exists; pick another id or `beam-oci delete {0}` first")]
    Exists(String),
    #[error("state of container {id:?} at {path}: {msg}")]
    Io { id: String, path: PathBuf, msg: String },
    #[error("runtime root {path}: {msg}; pass a writable directory with --root")]
    Root { path: PathBuf, msg: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What the runtime remembers about a container between invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    /// Start time of `pid` (field 22 of /proc/<pid>/stat), to tell it from a recycled pid.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: DateTime<Utc>,
    pub owner: String,
    pub cgroup: Cgroup,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// Set once `start` has exec'd the user process.
    #[serde(default)]
    pub started: bool,
    /// A container without a mount namespace of its own made its mounts in the caller's namespace, on a
    /// bind of its rootfs: that mount's id, which `delete` detaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_mount: Option<u64>,
}

/// The runtime root (`--root`, default /run/beam-oci).
#[derive(Debug, Clone)]
pub struct Root {
    pub path: PathBuf,
}

impl Root {
    pub fn new(path: &Path) -> Result<Self, StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| StateError::Root { path: path.to_path_buf(), msg: e.to_string() })?;
        Ok(Self { path: path.to_path_buf() })
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Reserve `<root>/<id>` atomically (mkdir fails if it exists).
    pub fn reserve(&self, id: &str) -> Result<PathBuf, StateError> {
        let dir = self.dir(id);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(StateError::Exists(id.into())),
            Err(e) => Err(StateError::Io { id: id.into(), path: dir, msg: e.to_string() }),
        }
    }

    pub fn load(&self, id: &str) -> Result<ContainerState, StateError> {
        let path = self.dir(id).join("state.json");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StateError::NotFound(id.into())),
            Err(e) => return Err(StateError::Io { id: id.into(), path, msg: e.to_string() }),
        };
        serde_json::from_slice(&text).map_err(|e| StateError::Io { id: id.into(), path, msg: e.to_string() })
    }

    /// Write state.json atomically (temp file + rename).
    pub fn save(&self, st: &ContainerState) -> Result<(), StateError> {
        let dir = self.dir(&st.id);
        let tmp = dir.join(".state.json.tmp");
        let err = |e: std::io::Error| StateError::Io { id: st.id.clone(), path: dir.join("state.json"), msg: e.to_string() };
        std::fs::write(&tmp, serde_json::to_vec(st).expect("state serializes")).map_err(err)?;
        std::fs::rename(&tmp, dir.join("state.json")).map_err(err)
    }

    /// Remove the container's state dir.
    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        match std::fs::remove_dir_all(self.dir(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::Io { id: id.into(), path: self.dir(id), msg: e.to_string() }),
        }
    }

    /// Ids of every container under the root, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.path)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("state.json").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }
}

/// Start time (clock ticks since boot) of a live pid, or None when it is gone or a zombie.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The comm field may contain spaces and parens: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // rest starts at field 3 (state); starttime is field 22.
    fields.nth(22 - 4)?.parse().ok()
}

impl ContainerState {
    /// Whether the container's init process is still the one we started.
    pub fn alive(&self) -> bool {
        pid_start_time(self.pid) == Some(self.pid_start)
    }

    /// The live status, derived from the process and the cgroup freezer.
    pub fn status(&self) -> Status {
        if !self.alive() {
            return Status::Stopped;
        }
        if !self.started {
            return Status::Created;
        }
        if self.cgroup.is_frozen().unwrap_or(false) {
            return Status::Paused;
        }
        Status::Running
    }

    /// The OCI state JSON (as `state` prints and hooks receive on stdin).
    pub fn oci_json(&self, status: Status) -> serde_json::Value {
        let mut v = serde_json::json!({
            "ociVersion": "1.2.0",
            "id": self.id,
            "pid": if status == Status::Stopped { 0 } else { self.pid },
            "status": status,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "owner": self.owner,
        });
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::to_value(&self.annotations).expect("annotations serialize");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_read() {
        let me = std::process::id() as i32;
        assert!(pid_start_time(me).unwrap() > 0);
        assert_eq!(pid_start_time(0), None);
        assert_eq!(pid_start_time(i32::MAX), None);
    }

    #[test]
    fn reserve_is_exclusive_and_remove_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(&d.path().join("r")).unwrap();
        root.reserve("c1").unwrap();
        assert!(matches!(root.reserve("c1"), Err(StateError::Exists(_))));
        assert!(matches!(root.load("c1"), Err(StateError::NotFound(_))));
        root.remove("c1").unwrap();
        root.remove("c1").unwrap();
    }
}
