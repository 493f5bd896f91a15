//! `features`: what this runtime supports, in the OCI features document format.

/// The OCI runtime features JSON.
pub fn features() -> serde_json::Value {
    let ns = ["cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time"];
    let caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["async","atime","bind","defaults","dev","diratime","dirsync","exec","mand","noatime",
            "nodev","nodiratime","noexec","nomand","norelatime","nostrictatime","nosuid","nosymfollow",
            "private","rbind","relatime","remount","ro","rprivate","rshared","rslave","runbindable","rw",
            "shared","slave","strictatime","suid","sync","unbindable"],
        "linux": {
            "namespaces": ns,
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW","SCMP_ACT_ERRNO","SCMP_ACT_KILL","SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD","SCMP_ACT_LOG","SCMP_ACT_TRACE","SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ","SCMP_CMP_GE","SCMP_CMP_GT","SCMP_CMP_LE","SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ","SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64","SCMP_ARCH_AARCH64"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false}
        },
        "annotations": {"io.github.beam.runtime": "beam-oci"}
    })
}
