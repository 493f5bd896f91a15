//! Turn an image bundle's config.json into a sandbox's: beam-init as PID 1 (bind-mounted read-only at
//! [`INIT_PATH`]), root inside, no_new_privs, cgroup limits, landlock annotations, hostname.

use crate::api::LandlockPolicy;
use serde_json::{Value, json};
use std::path::Path;

/// Where the init binary appears inside every sandbox (a read-only bind of beamd's copy). /dev is the
/// runtime's tmpfs, so nothing is written into the image's filesystem.
pub const INIT_PATH: &str = "/dev/.beam-init";

/// Top-level dirs that stay read-only under the default landlock policy.
pub const SYSTEM_DIRS: [&str; 8] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "boot"];

/// What the sandbox's PID 1 runs and as whom.
#[derive(Debug, Clone)]
pub struct InitArgs {
    /// The entrypoint's argv; empty = none (the sandbox just stays up).
    pub entrypoint: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub log_max: u64,
}

/// Limits; always set.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub cpu: f64,
    pub memory_mib: u64,
    pub pids: u32,
}

pub const CPU_PERIOD_US: u64 = 100_000;

/// The default landlock policy for a rootfs: everything readable, system dirs read-only, every other
/// top-level entry (and /usr/local, /tmp, /dev, /proc, /run) writable. "/" itself is not writable:
/// new top-level entries can't be created.
pub fn default_landlock(rootfs: &Path) -> LandlockPolicy {
    let mut rw: Vec<String> =
        ["/tmp", "/dev", "/proc", "/run", "/usr/local", "/var", "/home", "/root"].iter().map(|s| s.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir(rootfs) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if SYSTEM_DIRS.contains(&name.as_str()) {
                continue;
            }
            // A symlink at the top (e.g. /bin -> usr/bin) is resolved by landlock inside the sandbox;
            // don't grant through it.
            if e.file_type().map(|t| t.is_symlink()).unwrap_or(true) {
                continue;
            }
            let p = format!("/{name}");
            if !rw.contains(&p) {
                rw.push(p);
            }
        }
    }
    rw.sort();
    LandlockPolicy { ro: vec!["/".into()], rw, tcp_bind: vec![], tcp_connect: vec![] }
}

/// Rewrite `spec` (a bundle's config.json) for a sandbox.
#[allow(clippy::too_many_arguments)]
pub fn sandbox_spec(
    spec: &mut Value,
    id: &str,
    init_host_path: &Path,
    init: &InitArgs,
    limits: Limits,
    landlock: Option<(&LandlockPolicy, bool)>,
    seccomp: bool,
) {
    let mut args = vec![INIT_PATH.to_string(), "--uid".into(), init.uid.to_string(), "--gid".into(), init.gid.to_string()];
    if !init.groups.is_empty() {
        args.push("--groups".into());
        args.push(init.groups.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
    }
    args.push("--log-max".into());
    args.push(init.log_max.to_string());
    if !init.entrypoint.is_empty() {
        args.push("--".into());
        args.extend(init.entrypoint.iter().cloned());
    }
    let p = &mut spec["process"];
    p["args"] = json!(args);
    p["user"] = json!({"uid": 0, "gid": 0});
    p["terminal"] = json!(false);
    p["noNewPrivileges"] = json!(true);
    if !seccomp {
        spec["linux"].as_object_mut().expect("linux").remove("seccomp");
    }
    spec["hostname"] = json!(id);
    spec["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": INIT_PATH,
        "type": "bind",
        "source": init_host_path,
        "options": ["bind", "ro", "nosuid", "nodev"],
    }));
    let memory = limits.memory_mib * 1024 * 1024;
    spec["linux"]["resources"] = json!({
        "memory": {"limit": memory},
        "cpu": {"quota": (limits.cpu * CPU_PERIOD_US as f64).round() as i64, "period": CPU_PERIOD_US},
        "pids": {"limit": limits.pids},
    });
    if let Some((policy, best_effort)) = landlock {
        let a = spec["annotations"].as_object_mut().map(|_| ()).is_some();
        if !a {
            spec["annotations"] = json!({});
        }
        let ann = spec["annotations"].as_object_mut().expect("object");
        if !policy.ro.is_empty() {
            ann.insert("run.beam.landlock.ro".into(), json!(policy.ro.join(":")));
        }
        if !policy.rw.is_empty() {
            ann.insert("run.beam.landlock.rw".into(), json!(policy.rw.join(":")));
        }
        let ports = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        if !policy.tcp_bind.is_empty() {
            ann.insert("run.beam.landlock.tcp_bind".into(), json!(ports(&policy.tcp_bind)));
        }
        if !policy.tcp_connect.is_empty() {
            ann.insert("run.beam.landlock.tcp_connect".into(), json!(ports(&policy.tcp_connect)));
        }
        ann.insert("run.beam.landlock.best_effort".into(), json!(best_effort.to_string()));
    }
}

/// Check a user-given landlock policy: absolute paths without ':' (the annotation separator).
pub fn validate_landlock(p: &LandlockPolicy) -> Result<(), String> {
    for path in p.ro.iter().chain(&p.rw) {
        if !path.starts_with('/') || path.contains(':') || path.contains('\0') {
            return Err(format!(
                "landlock path {path:?} must be an absolute path inside the sandbox without ':' (e.g. \"/data\")"
            ));
        }
    }
    if p.ro.is_empty() && p.rw.is_empty() {
        return Err("landlock policy lists no paths; give ro and/or rw paths, or set insecure_no_landlock".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_rewrite() {
        let mut spec = json!({
            "process": {"args": ["sh"], "user": {"uid": 5, "gid": 5}, "env": []},
            "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}, "namespaces": []},
            "mounts": [],
        });
        let init = InitArgs { entrypoint: vec!["python3".into(), "-m".into(), "http.server".into()], uid: 1000, gid: 1000, groups: vec![27], log_max: 1 << 20 };
        let policy = LandlockPolicy { ro: vec!["/".into()], rw: vec!["/tmp".into()], tcp_bind: vec![8888], tcp_connect: vec![] };
        sandbox_spec(&mut spec, "sbx-1", Path::new("/run/beam/beam-init"), &init, Limits { cpu: 0.5, memory_mib: 512, pids: 100 }, Some((&policy, true)), true);
        assert_eq!(
            spec["process"]["args"],
            json!([INIT_PATH, "--uid", "1000", "--gid", "1000", "--groups", "27", "--log-max", "1048576", "--", "python3", "-m", "http.server"])
        );
        assert_eq!(spec["process"]["user"], json!({"uid": 0, "gid": 0}));
        assert_eq!(spec["process"]["noNewPrivileges"], json!(true));
        assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], json!(50_000));
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], json!(512u64 << 20));
        assert_eq!(spec["annotations"]["run.beam.landlock.rw"], json!("/tmp"));
        assert_eq!(spec["annotations"]["run.beam.landlock.tcp_bind"], json!("8888"));
        assert!(spec["linux"]["seccomp"].is_object());
        assert_eq!(spec["mounts"][0]["destination"], json!(INIT_PATH));
    }

    #[test]
    fn default_policy_keeps_system_dirs_read_only() {
        let d = tempfile::tempdir().unwrap();
        for n in ["usr", "etc", "opt", "lib"] {
            std::fs::create_dir(d.path().join(n)).unwrap();
        }
        std::os::unix::fs::symlink("usr/bin", d.path().join("bin")).unwrap();
        let p = default_landlock(d.path());
        assert_eq!(p.ro, vec!["/"]);
        assert!(p.rw.contains(&"/etc".to_string()) && p.rw.contains(&"/opt".to_string()));
        assert!(p.rw.contains(&"/usr/local".to_string()));
        assert!(!p.rw.iter().any(|r| r == "/usr" || r == "/lib" || r == "/bin"));
    }

    #[test]
    fn policy_validation() {
        let bad = LandlockPolicy { ro: vec!["relative".into()], ..Default::default() };
        assert!(validate_landlock(&bad).is_err());
        assert!(validate_landlock(&LandlockPolicy::default()).is_err());
        let ok = LandlockPolicy { rw: vec!["/data".into()], ..Default::default() };
        assert!(validate_landlock(&ok).is_ok());
    }
}
