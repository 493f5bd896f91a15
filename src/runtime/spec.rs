//! Loading and validating an OCI bundle's `config.json`.

use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bundle {0}: no config.json there; pass --bundle with the directory that holds config.json and rootfs")]
    NoConfig(PathBuf),
    #[error("{path}: invalid config.json: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("{path}: {field}: {msg}")]
    Field { path: PathBuf, field: &'static str, msg: String },
    #[error("root.path {0}: no such directory; create the container's root filesystem there or fix root.path in config.json")]
    NoRootfs(PathBuf),
    #[error("container id {0:?} is invalid: use letters, digits, '_', '+', '-' and '.', not '.' or '..' alone, at most 1024 characters")]
    BadId(String),
}

/// A loaded bundle: the spec plus the absolute bundle dir and canonical rootfs.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub spec: Spec,
}

/// Validate a container id the way runc does: `^[\w+.-]+$`, not `.` or `..`.
pub fn validate_id(id: &str) -> Result<(), SpecError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok { Ok(()) } else { Err(SpecError::BadId(id.to_string())) }
}

impl Bundle {
    /// Read `<dir>/config.json` and check the parts every container needs.
    pub fn load(dir: &Path) -> Result<Self, SpecError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let config = dir.join("config.json");
        let text = match std::fs::read_to_string(&config) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SpecError::NoConfig(dir)),
            Err(e) => return Err(SpecError::Invalid { path: config, msg: e.to_string() }),
        };
        let spec: Spec = serde_json::from_str(&text).map_err(|e| SpecError::Invalid {
            path: config.clone(),
            msg: format!("{e} (check the JSON against the OCI runtime spec)"),
        })?;
        let field = |field, msg: &str| SpecError::Field { path: config.clone(), field, msg: msg.to_string() };
        let root = spec.root().as_ref().ok_or_else(|| field("root", "missing; add {\"root\": {\"path\": \"rootfs\"}}"))?;
        let rootfs = if root.path().is_absolute() { root.path().clone() } else { dir.join(root.path()) };
        let rootfs = match std::fs::canonicalize(&rootfs) {
            Ok(p) if p.is_dir() => p,
            _ => return Err(SpecError::NoRootfs(rootfs)),
        };
        let process = spec.process().as_ref().ok_or_else(|| field("process", "missing; add a process with args"))?;
        match process.args() {
            Some(a) if !a.is_empty() => {}
            _ => return Err(field("process.args", "empty; give the command to run, e.g. [\"sh\"]")),
        }
        if !process.cwd().is_absolute() {
            return Err(field("process.cwd", "must be an absolute path, e.g. \"/\""));
        }
        if spec.linux().is_none() {
            return Err(field("linux", "missing; beam-oci runs Linux containers only"));
        }
        Ok(Self { dir, rootfs, spec })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-1.2_3+x", &"f".repeat(64)] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "x\0"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn load_errors_name_the_problem() {
        let d = tempfile::tempdir().unwrap();
        let e = Bundle::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("no config.json"), "{e}");
        std::fs::write(d.path().join("config.json"), "{not json").unwrap();
        let e = Bundle::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("invalid config.json"), "{e}");
        std::fs::write(d.path().join("config.json"), r#"{"ociVersion":"1.2.0","root":{"path":"nope"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},"linux":{}}"#).unwrap();
        let e = Bundle::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("root.path") && e.contains("nope"), "{e}");
        std::fs::create_dir(d.path().join("nope")).unwrap();
        Bundle::load(d.path()).unwrap();
    }
}
