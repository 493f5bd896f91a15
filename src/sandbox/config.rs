//! Turn an image bundle's config.json into a sandbox's: beam-init as PID 1 (bind-mounted read-only at
//! [`INIT_PATH`]), root inside, no_new_privs, cgroup limits, capabilities, the ping sysctl, landlock
//! annotations, hostname.
//!
//! # The default landlock policy (`writable-root`), and why it is what it is
//!
//! A sandbox's root filesystem is its own copy-on-write overlay upper layer, so root inside may change
//! all of it — `mkdir /app && echo hi > /app/x`, writing /usr/bin, `apt-get install`, `pip install` — as
//! on Docker, Beam, Modal and E2B. Landlock is an allow-list: a rule grants rights on an inode and
//! everything beneath it, the rights of all the rules on a path's ancestors add up, and no rule can take a
//! right away. A file made later in a new top-level dir (`/app/x`) has one ancestor with a rule: `/`
//! (rules name inodes that exist when the ruleset is made). So a writable `/app/x` needs WRITE_FILE,
//! MAKE_REG, … granted on `/`, and that grant reaches `/dev/.beam-init` too: **no landlock ruleset makes
//! new top-level dirs writable and keeps any one path read-only.** (Granting every right on each existing
//! top-level entry but /dev, on /dev's entries but `.beam-init`, and only the make/remove rights on `/`
//! itself lets `mkdir /app` succeed and then fails `echo hi > /app/x` with EACCES.)
//!
//! So the default grants every filesystem right on `/`, and what beam puts into a sandbox is protected by
//! how it is mounted — which landlock then pins in place:
//! - `/dev/.beam-init` (PID 1, the parent of every exec) is a read-only, nosuid, nodev bind mount of
//!   beamd's copy: writing, truncating, chmod or chown it is EROFS, or EACCES where permissions are checked
//!   first (its owner, host root, is not mapped in the sandbox, so CAP_DAC_OVERRIDE/CAP_FOWNER don't
//!   apply); unlinking it or renaming anything over it is EBUSY (it is a mount point).
//! - Unmounting it or mounting over it is refused three times over: it needs CAP_SYS_ADMIN, which a
//!   sandbox never has (it can't be added, see [`ADDABLE_CAPS`]); the default seccomp profile allows
//!   neither mount(2), umount2(2) nor unshare(2)/setns(2); and **a process in a landlock domain may not
//!   change its mount topology at all** (mount, umount, remount, pivot_root and move_mount are EPERM
//!   whatever its capabilities, e.g. in a nested user namespace, and also with `insecure_no_seccomp`).
//!   That is what landlock adds by default; it keeps the masked and read-only /proc and /sys paths as the
//!   runtime left them too.
//! - A path that resolves outside the sandbox's own mount tree (into another mount namespace) is denied:
//!   only `/` of the sandbox's tree has a rule.
//! - `/etc/resolv.conf` and `/etc/hosts` (bridge networking) are the sandbox's own files, editable as
//!   under Docker: egress is enforced by nftables outside the sandbox, not by them. beam's other channels
//!   to the init (its control socket, the log and status files) are fds handed over at creation, never
//!   paths inside the sandbox.
//!
//! The preset `read-only-system` ([`LandlockPreset::ReadOnlySystem`], opt-in) is the stricter set:
//! `/` read-only, system dirs read-only, /dev read-only but its devices and mounts, the rest writable —
//! there landlock itself also keeps `/dev/.beam-init` read-only. A policy's own `ro`/`rw` paths are
//! added to its preset's (rights only add up), and TCP port rules apply on top of either.

use crate::api::{LandlockPolicy, LandlockPreset};
use serde_json::{Value, json};
use std::path::Path;
use std::str::FromStr;

/// Where the init binary appears inside every sandbox (a read-only bind of beamd's copy). /dev is the
/// runtime's tmpfs, so nothing is written into the image's filesystem.
pub const INIT_PATH: &str = "/dev/.beam-init";

/// Top-level dirs that stay read-only under the `read-only-system` landlock preset.
pub const SYSTEM_DIRS: [&str; 8] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "boot"];

/// Writable under `read-only-system` whether or not the image has them at the top (missing ones are
/// skipped when the rules are applied).
const WRITABLE_DIRS: [&str; 8] = ["/tmp", "/proc", "/run", "/usr/local", "/var", "/home", "/root", "/sys"];

/// /dev's entries that stay usable under `read-only-system` (the runtime's devices and mounts; /dev/ptmx
/// resolves into /dev/pts). Everything else in /dev — `.beam-init` first — is read-only there.
const DEV_ENTRIES: [&str; 11] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/console",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
];

/// A sandbox's capabilities by default: podman's 11 (Docker's 14 without NET_RAW, MKNOD and
/// AUDIT_WRITE). `ping` still works without NET_RAW through ICMP datagram sockets
/// ([`ping_group_range`]).
pub const DEFAULT_CAPS: [&str; 11] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// What `capabilities` at create may add back: the rest of Docker's default 14, no more.
pub const ADDABLE_CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_MKNOD", "CAP_NET_RAW"];

/// A create request's security settings that don't fit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("capabilities: {0:?} is not a capability; use names like \"NET_RAW\" (a sandbox can add {addable})", addable = short_names(&ADDABLE_CAPS))]
    UnknownCapability(String),
    #[error("capabilities: {0} can't be added to a sandbox; only {addable} can (the default set is {default})", addable = short_names(&ADDABLE_CAPS), default = short_names(&DEFAULT_CAPS))]
    CapabilityNotAddable(String),
    #[error("landlock path {0:?} must be an absolute path inside the sandbox without ':' (e.g. \"/data\")")]
    LandlockPath(String),
    #[error("landlock: ro paths add nothing to preset \"writable-root\" (everything is writable); use preset \"read-only-system\", or give ro/rw paths without a preset")]
    ReadOnlyUnderWritableRoot,
}

fn short_names(caps: &[&str]) -> String {
    caps.iter().map(|c| c.trim_start_matches("CAP_")).collect::<Vec<_>>().join(", ")
}

/// The capability set of a sandbox that asks for `extra` (names with or without `CAP_`, any case):
/// [`DEFAULT_CAPS`] plus those of [`ADDABLE_CAPS`] it names, as `CAP_` names.
pub fn sandbox_caps(extra: &[String]) -> Result<Vec<String>, ConfigError> {
    let mut added = Vec::new();
    for name in extra {
        let upper = name.trim().to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
        if caps::Capability::from_str(&full).is_err() {
            return Err(ConfigError::UnknownCapability(name.clone()));
        }
        if DEFAULT_CAPS.contains(&full.as_str()) {
            continue;
        }
        if !ADDABLE_CAPS.contains(&full.as_str()) {
            return Err(ConfigError::CapabilityNotAddable(full.trim_start_matches("CAP_").to_string()));
        }
        added.push(full);
    }
    let mut out: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    out.extend(ADDABLE_CAPS.iter().filter(|c| added.iter().any(|a| a == *c)).map(|c| c.to_string()));
    Ok(out)
}

/// `net.ipv4.ping_group_range` for a sandbox: every gid it has, so that any user inside may open ICMP
/// datagram sockets (`ping` without NET_RAW). The kernel reads the range through the writer's user
/// namespace and refuses gids that aren't mapped there, so with a user namespace of `mapped` ids it is
/// `0 mapped-1`; without one, every gid (`0 2147483647`).
pub fn ping_group_range(mapped: Option<u32>) -> String {
    match mapped {
        Some(n) => format!("0 {}", n.saturating_sub(1)),
        None => "0 2147483647".into(),
    }
}

/// What the sandbox's root may do.
#[derive(Debug, Clone, Copy)]
pub struct Hardening<'a> {
    /// The landlock policy to apply and whether best effort (None: no landlock).
    pub landlock: Option<(&'a LandlockPolicy, bool)>,
    pub seccomp: bool,
    /// `CAP_` names (bounding, effective and permitted sets).
    pub capabilities: &'a [String],
    /// Ids mapped in the sandbox's user namespace (None: no user namespace).
    pub mapped_ids: Option<u32>,
}

/// What beam-init runs and as whom.
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

/// The landlock policy a sandbox gets for the policy it asked for (None: the default) over `rootfs`
/// (the merged root, whose top-level entries `read-only-system` lists), and whether it is applied best
/// effort (only the default is). See the module documentation for the design.
pub fn landlock_policy(asked: Option<&LandlockPolicy>, rootfs: &Path) -> (LandlockPolicy, bool) {
    let best_effort = asked.is_none();
    let asked = asked.cloned().unwrap_or_default();
    let preset = match asked.preset {
        Some(p) => Some(p),
        None if asked.ro.is_empty() && asked.rw.is_empty() => Some(LandlockPreset::WritableRoot),
        None => None,
    };
    let (mut ro, mut rw) = match preset {
        None => (vec![], vec![]),
        Some(LandlockPreset::WritableRoot) => (vec![], vec!["/".to_string()]),
        Some(LandlockPreset::ReadOnlySystem) => (vec!["/".to_string()], read_only_system_rw(rootfs)),
    };
    for (list, add) in [(&mut ro, &asked.ro), (&mut rw, &asked.rw)] {
        for p in add {
            if !list.contains(p) {
                list.push(p.clone());
            }
        }
    }
    (LandlockPolicy { preset, ro, rw, tcp_bind: asked.tcp_bind, tcp_connect: asked.tcp_connect }, best_effort)
}

/// The writable paths of `read-only-system`: every top-level dir of the image but [`SYSTEM_DIRS`] and
/// /dev, [`WRITABLE_DIRS`], and /dev's [`DEV_ENTRIES`]. Top-level symlinks are not granted through (landlock
/// would resolve them inside the sandbox: `/bin -> usr/bin` must not open /usr/bin).
fn read_only_system_rw(rootfs: &Path) -> Vec<String> {
    let mut rw: Vec<String> = WRITABLE_DIRS.iter().chain(&DEV_ENTRIES).map(|s| s.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir(rootfs) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if SYSTEM_DIRS.contains(&name.as_str()) || name == "dev" {
                continue;
            }
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
    rw
}

/// Rewrite `spec` (a bundle's config.json) for a sandbox.
pub fn sandbox_spec(spec: &mut Value, id: &str, init_host_path: &Path, init: &InitArgs, limits: Limits, h: Hardening<'_>) {
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
    p["capabilities"] = json!({"bounding": h.capabilities, "effective": h.capabilities, "permitted": h.capabilities});
    if !h.seccomp {
        spec["linux"].as_object_mut().expect("linux").remove("seccomp");
    }
    // A net.* sysctl: the sandbox always has a network namespace of its own (bridge or none).
    if !spec["linux"]["sysctl"].is_object() {
        spec["linux"]["sysctl"] = json!({});
    }
    spec["linux"]["sysctl"]["net.ipv4.ping_group_range"] = json!(ping_group_range(h.mapped_ids));
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
    if let Some((policy, best_effort)) = h.landlock {
        if !spec["annotations"].is_object() {
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

/// Check a user-given landlock policy: absolute paths without ':' (the annotation separator), and no
/// `ro` paths under `writable-root` (they could only add rights it already grants).
pub fn validate_landlock(p: &LandlockPolicy) -> Result<(), ConfigError> {
    for path in p.ro.iter().chain(&p.rw) {
        if !path.starts_with('/') || path.contains(':') || path.contains('\0') {
            return Err(ConfigError::LandlockPath(path.clone()));
        }
    }
    if p.preset == Some(LandlockPreset::WritableRoot) && !p.ro.is_empty() {
        return Err(ConfigError::ReadOnlyUnderWritableRoot);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn spec_rewrite() {
        let mut spec = json!({
            "process": {"args": ["sh"], "user": {"uid": 5, "gid": 5}, "env": []},
            "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}, "namespaces": []},
            "mounts": [],
        });
        let init = InitArgs { entrypoint: vec!["python3".into(), "-m".into(), "http.server".into()], uid: 1000, gid: 1000, groups: vec![27], log_max: 1 << 20 };
        let policy = LandlockPolicy { ro: vec!["/".into()], rw: vec!["/tmp".into()], tcp_bind: vec![8888], ..Default::default() };
        let caps = sandbox_caps(&[]).unwrap();
        let h = Hardening { landlock: Some((&policy, true)), seccomp: true, capabilities: &caps, mapped_ids: Some(65536) };
        sandbox_spec(&mut spec, "sbx-1", Path::new("/run/beam/beam-init"), &init, Limits { cpu: 0.5, memory_mib: 512, pids: 100 }, h);
        assert_eq!(
            spec["process"]["args"],
            json!([INIT_PATH, "--uid", "1000", "--gid", "1000", "--groups", "27", "--log-max", "1048576", "--", "python3", "-m", "http.server"])
        );
        assert_eq!(spec["process"]["user"], json!({"uid": 0, "gid": 0}));
        assert_eq!(spec["process"]["noNewPrivileges"], json!(true));
        assert_eq!(spec["process"]["capabilities"]["bounding"], json!(DEFAULT_CAPS));
        assert_eq!(spec["process"]["capabilities"]["effective"], json!(DEFAULT_CAPS));
        assert_eq!(spec["linux"]["sysctl"]["net.ipv4.ping_group_range"], json!("0 65535"));
        assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], json!(50_000));
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], json!(512u64 << 20));
        assert_eq!(spec["annotations"]["run.beam.landlock.rw"], json!("/tmp"));
        assert_eq!(spec["annotations"]["run.beam.landlock.tcp_bind"], json!("8888"));
        assert!(spec["linux"]["seccomp"].is_object());
        assert_eq!(spec["mounts"][0]["destination"], json!(INIT_PATH));
    }

    #[test]
    fn ping_range_covers_the_mapped_gids() {
        assert_eq!(ping_group_range(Some(65536)), "0 65535");
        assert_eq!(ping_group_range(None), "0 2147483647");
    }

    #[test]
    fn capabilities_are_podmans_plus_what_is_asked() {
        let def = sandbox_caps(&[]).unwrap();
        assert_eq!(def, strings(&DEFAULT_CAPS));
        for gone in ["CAP_NET_RAW", "CAP_MKNOD", "CAP_AUDIT_WRITE"] {
            assert!(!def.iter().any(|c| c == gone), "{gone} in the default set");
        }
        let raw = sandbox_caps(&strings(&["net_raw"])).unwrap();
        assert_eq!(raw.len(), 12);
        assert!(raw.contains(&"CAP_NET_RAW".to_string()));
        // Any spelling; one already in the default set is accepted and changes nothing; duplicates collapse.
        let all = sandbox_caps(&strings(&["CAP_MKNOD", "AUDIT_WRITE", "NET_RAW", "net_raw", "CHOWN"])).unwrap();
        assert_eq!(all.len(), 14);
        assert_eq!(&all[11..], strings(&ADDABLE_CAPS).as_slice());
        let e = sandbox_caps(&strings(&["NET_RAWW"])).unwrap_err();
        assert_eq!(e, ConfigError::UnknownCapability("NET_RAWW".into()));
        let m = e.to_string();
        assert!(m.contains("\"NET_RAWW\"") && m.contains("AUDIT_WRITE, MKNOD, NET_RAW") && !m.contains('\n'), "{m}");
        let e = sandbox_caps(&strings(&["sys_admin"])).unwrap_err();
        assert_eq!(e, ConfigError::CapabilityNotAddable("SYS_ADMIN".into()));
        assert!(sandbox_caps(&strings(&[""])).is_err());
    }

    #[test]
    fn default_policy_is_the_whole_root_writable() {
        let d = tempfile::tempdir().unwrap();
        let (p, best_effort) = landlock_policy(None, d.path());
        assert!(best_effort);
        assert_eq!(p, LandlockPolicy { preset: Some(LandlockPreset::WritableRoot), rw: strings(&["/"]), ..Default::default() });
        // A TCP-only policy gets the default filesystem rules, strictly.
        let tcp = LandlockPolicy { tcp_bind: vec![8080], ..Default::default() };
        let (p, best_effort) = landlock_policy(Some(&tcp), d.path());
        assert!(!best_effort);
        assert_eq!((p.preset, p.ro.is_empty(), p.rw, p.tcp_bind), (Some(LandlockPreset::WritableRoot), true, strings(&["/"]), vec![8080]));
        // Paths without a preset are the whole policy, as they always were.
        let own = LandlockPolicy { ro: strings(&["/"]), rw: strings(&["/tmp"]), ..Default::default() };
        let (p, _) = landlock_policy(Some(&own), d.path());
        assert_eq!((p.preset, p.ro, p.rw), (None, strings(&["/"]), strings(&["/tmp"])));
    }

    #[test]
    fn read_only_system_keeps_system_dirs_and_dev_read_only() {
        let d = tempfile::tempdir().unwrap();
        for n in ["usr", "etc", "opt", "lib", "dev"] {
            std::fs::create_dir(d.path().join(n)).unwrap();
        }
        std::os::unix::fs::symlink("usr/bin", d.path().join("bin")).unwrap();
        let asked = LandlockPolicy { preset: Some(LandlockPreset::ReadOnlySystem), rw: strings(&["/usr/share/data"]), ..Default::default() };
        let (p, best_effort) = landlock_policy(Some(&asked), d.path());
        assert!(!best_effort);
        assert_eq!(p.ro, vec!["/"]);
        for want in ["/etc", "/opt", "/usr/local", "/tmp", "/dev/null", "/dev/pts", "/dev/shm", "/usr/share/data"] {
            assert!(p.rw.iter().any(|r| r == want), "{want} not writable: {:?}", p.rw);
        }
        for not in ["/usr", "/lib", "/bin", "/dev", INIT_PATH] {
            assert!(!p.rw.iter().any(|r| r == not), "{not} writable: {:?}", p.rw);
        }
    }

    #[test]
    fn policy_validation() {
        let bad = LandlockPolicy { ro: vec!["relative".into()], ..Default::default() };
        assert_eq!(validate_landlock(&bad), Err(ConfigError::LandlockPath("relative".into())));
        assert!(validate_landlock(&LandlockPolicy { rw: vec!["/a:b".into()], ..Default::default() }).is_err());
        assert!(validate_landlock(&LandlockPolicy::default()).is_ok(), "empty = the default preset");
        let ro_in_rw_root = LandlockPolicy { preset: Some(LandlockPreset::WritableRoot), ro: vec!["/usr".into()], ..Default::default() };
        assert_eq!(validate_landlock(&ro_in_rw_root), Err(ConfigError::ReadOnlyUnderWritableRoot));
        let ok = LandlockPolicy { rw: vec!["/data".into()], ..Default::default() };
        assert!(validate_landlock(&ok).is_ok());
        let preset: LandlockPolicy = serde_json::from_str(r#"{"preset": "read-only-system"}"#).unwrap();
        assert_eq!(preset.preset, Some(LandlockPreset::ReadOnlySystem));
        assert!(serde_json::from_str::<LandlockPolicy>(r#"{"preset": "readonly"}"#).is_err());
    }
}
