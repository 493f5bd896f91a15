//! A sandbox's persisted record (`<root>/sandboxes/<id>/sandbox.json`) and the files beside it.

use crate::api::{ExitReason, Sandbox};
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
    pub sandbox: Sandbox,
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
