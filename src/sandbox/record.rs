//! A sandbox's persisted record (`<root>/sandboxes/<id>/sandbox.json`) and the files beside it.

use crate::api::{ExitReason, Publish, Sandbox, SandboxNetwork, SandboxState, Security};
use std::collections::BTreeMap;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Files of one sandbox, all in its dir.
pub const RECORD_FILE: &str = "sandbox.json";
pub const BUNDLE_DIR: &str = "bundle";
/// The init's control socket (bound by beamd, listened on by the init).
pub const INIT_SOCKET: &str = "init.sock";
/// The entrypoint's output, written (and bounded) by the init.
pub const LOG_FILE: &str = "log";
/// `code=N signal=S`, written by the init right before it exits.
pub const STATUS_FILE: &str = "status";
/// The init's own diagnostics.
pub const INIT_LOG_FILE: &str = "init.log";

/// What beamd keeps about a sandbox beyond what the API shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The part the API shows ([`Stored::view`]).
    pub sandbox: Stored,
    /// The sandbox's environment (the image's merged with the request's), for exec.
    pub env: Vec<String>,
    /// The default user (entrypoint and exec), inside the sandbox.
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// Set when beamd starts stopping it (stop, delete, idle, timeout): the reason it will exit with.
    pub stop_reason: Option<ExitReason>,
    /// Index of its uid range (uid_base = BASE + slot * RANGE), while it lives.
    pub uid_slot: Option<u32>,
    /// /proc/<pid>/stat start time of its init, to tell it from a recycled pid.
    pub pid_start: Option<u64>,
}

/// A sandbox as stored: what `api::Sandbox` shows, less what is computed for each view (its gateway
/// `urls`, `last_activity_at`, `expires_at`). Its own type, so that the wire format can change without
/// changing the disk format; its JSON is the same as the API's for the fields both have (a record
/// written by an older beamd, with the view fields in it, still loads: serde skips them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stored {
    pub id: String,
    pub name: Option<String>,
    pub image: String,
    pub image_id: String,
    pub state: SandboxState,
    pub reason: Option<ExitReason>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub workdir: String,
    pub user: String,
    pub cpu: f64,
    pub memory_mib: u64,
    pub pids: u32,
    pub ports: Vec<u16>,
    #[serde(default)]
    pub published: Vec<Publish>,
    #[serde(default)]
    pub authorized: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub keep_warm_seconds: i64,
    pub timeout_seconds: Option<u64>,
    pub tags: BTreeMap<String, String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub exited_at: Option<chrono::DateTime<chrono::Utc>>,
    pub pid: Option<i32>,
    pub security: Security,
    #[serde(default = "SandboxNetwork::none")]
    pub network: SandboxNetwork,
}

/// What a view adds to the stored sandbox.
pub struct ViewParts {
    pub urls: BTreeMap<String, String>,
    pub last_activity_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Stored {
    /// The API's view of it.
    pub fn view(&self, v: ViewParts) -> Sandbox {
        let s = self.clone();
        Sandbox {
            id: s.id,
            name: s.name,
            image: s.image,
            image_id: s.image_id,
            state: s.state,
            reason: s.reason,
            exit_code: s.exit_code,
            error: s.error,
            entrypoint: s.entrypoint,
            workdir: s.workdir,
            user: s.user,
            cpu: s.cpu,
            memory_mib: s.memory_mib,
            pids: s.pids,
            ports: s.ports,
            urls: v.urls,
            published: s.published,
            authorized: s.authorized,
            token: s.token,
            keep_warm_seconds: s.keep_warm_seconds,
            timeout_seconds: s.timeout_seconds,
            tags: s.tags,
            created_at: s.created_at,
            started_at: s.started_at,
            exited_at: s.exited_at,
            last_activity_at: v.last_activity_at,
            expires_at: v.expires_at,
            pid: s.pid,
            security: s.security,
            network: s.network,
        }
    }
}

impl Record {
    pub fn dir(root: &Path, id: &str) -> PathBuf {
        root.join(id)
    }

    /// Write atomically (tmp + fsync + rename).
    pub fn save(&self, sandboxes: &Path) -> std::io::Result<()> {
        let dir = Self::dir(sandboxes, &self.sandbox.id);
        let tmp = dir.join(".sandbox.json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).expect("record serializes"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(RECORD_FILE))
    }

    pub fn load(dir: &Path) -> Result<Record, String> {
        let p = dir.join(RECORD_FILE);
        let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))
    }
}

/// A new sandbox id: `sbx-` and 12 characters of [a-z0-9] from the kernel's random pool.
pub fn new_id() -> Result<String, crate::random::RandomError> {
    Ok(format!("sbx-{}", crate::random::alnum(12)?))
}

/// A valid sandbox name: 1–63 of [A-Za-z0-9_.-], starting with a letter or digit, and not `sbx-…`
/// (ids and names share `{ref}` in URLs).
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(format!(
            "name {name:?} is not valid; use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit"
        ));
    }
    if name.starts_with("sbx-") {
        return Err(format!("name {name:?} starts with \"sbx-\", which is reserved for ids; pick another name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record written by a beamd whose record held the whole API view (urls, last_activity_at,
    /// expires_at) still loads, and a stored sandbox's view round-trips through the API type.
    #[test]
    fn records_keep_their_disk_format() {
        let d = tempfile::tempdir().unwrap();
        let old = r#"{"sandbox": {"id": "sbx-aaaaaaaaaaaa", "name": "web", "image": "busybox", "image_id": "sha256:00",
            "state": "running", "reason": null, "exit_code": null, "error": null, "entrypoint": null, "workdir": "/",
            "user": "0:0", "cpu": 1.0, "memory_mib": 1024, "pids": 1024, "ports": [8080],
            "urls": {"8080": "http://sbx-aaaaaaaaaaaa-8080.localhost:8790/"}, "published": [], "authorized": false,
            "keep_warm_seconds": 600, "timeout_seconds": null, "tags": {}, "created_at": "2026-12-01T00:00:00Z",
            "started_at": null, "exited_at": null, "last_activity_at": "2026-12-01T00:00:00Z", "expires_at": null,
            "pid": 42, "security": {"uid_base": null, "seccomp": true, "landlock": null, "no_new_privs": true,
            "capabilities": []}}, "env": [], "uid": 0, "gid": 0, "groups": [], "stop_reason": null,
            "uid_slot": null, "pid_start": 7}"#;
        let dir = d.path().join("sbx-aaaaaaaaaaaa");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(RECORD_FILE), old).unwrap();
        let r = Record::load(&dir).unwrap();
        assert_eq!((r.sandbox.name.as_deref(), r.sandbox.pid, r.pid_start), (Some("web"), Some(42), Some(7)));
        assert_eq!(r.sandbox.network, SandboxNetwork::none());
        r.save(d.path()).unwrap();
        let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(RECORD_FILE)).unwrap()).unwrap();
        assert!(saved["sandbox"].get("urls").is_none(), "view fields are not stored: {saved}");
        let at = chrono::Utc::now();
        let v = r.sandbox.view(ViewParts { urls: BTreeMap::new(), last_activity_at: at, expires_at: None });
        assert_eq!((v.id.as_str(), v.ports.as_slice(), v.last_activity_at), ("sbx-aaaaaaaaaaaa", &[8080u16][..], at));
        let back: Stored = serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
        assert_eq!(back, r.sandbox);
    }

    #[test]
    fn ids_and_names() {
        let a = new_id().unwrap();
        assert!(a.starts_with("sbx-") && a.len() == 16, "{a}");
        assert_ne!(a, new_id().unwrap());
        assert!(validate_name("web-1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("sbx-abc").is_err());
        assert!(validate_name(&"a".repeat(64)).is_err());
    }
}
