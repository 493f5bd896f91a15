//! Building a [`RootfsPlan`] in the parent: validation, option parsing, every CString allocated up front.

use super::options::{self, Parsed};
use super::sys::MOUNT_ATTR_RDONLY;
use super::{
    CgroupHier, CgroupMount, DevPlan, FsParam, MountError, MountOp, PlannedDevice, PlannedMount,
    PlannedPath, RootfsOptions, RootfsPlan,
};
use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Mount, Spec};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// /proc entries a bind mount may cover (what lxcfs emulates), as runc allows.
const PROC_BIND_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/pressure/cpu",
    "/proc/pressure/io",
    "/proc/pressure/memory",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// runc's default devices: (path, major, minor).
const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn invalid(
    what: impl Into<String>,
    problem: impl Into<String>,
    hint: impl Into<String>,
) -> MountError {
    MountError::Invalid {
        what: what.into(),
        problem: problem.into(),
        hint: hint.into(),
    }
}

fn cstring(what: &str, s: &[u8]) -> Result<CString, MountError> {
    CString::new(s).map_err(|_| invalid(what, "contains a NUL byte", "remove the NUL byte"))
}

/// Lexically clean an absolute path like Go's `filepath.Clean`; `None` if it is not absolute.
pub(super) fn clean_abs(p: &str) -> Option<String> {
    if !p.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

fn under(path: &str, dir: &str) -> bool {
    path == dir
        || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
        || dir == "/"
}

fn params(list: &[(String, Option<String>)], what: &str) -> Result<Vec<FsParam>, MountError> {
    list.iter()
        .map(|(k, v)| {
            Ok(FsParam {
                key: cstring(what, k.as_bytes())?,
                value: v
                    .as_ref()
                    .map(|v| cstring(what, v.as_bytes()))
                    .transpose()?,
            })
        })
        .collect()
}

struct Namespaces {
    user: bool,
    cgroup: bool,
}

pub(super) fn build(
    spec: &Spec,
    rootfs: &Path,
    opts: &RootfsOptions,
) -> Result<RootfsPlan, MountError> {
    let rootfs_label = format!("root.path {}", rootfs.display());
    if !rootfs.is_absolute() {
        return Err(invalid(
            &rootfs_label,
            "is not absolute",
            "pass the canonical absolute rootfs path",
        ));
    }
    let linux = spec.linux().as_ref();
    let ns_list = linux.and_then(|l| l.namespaces().as_ref());
    let has = |t: LinuxNamespaceType| ns_list.is_some_and(|l| l.iter().any(|n| n.typ() == t));
    let ns = Namespaces {
        user: has(LinuxNamespaceType::User),
        cgroup: has(LinuxNamespaceType::Cgroup),
    };
    // No mount namespace in the spec: the container inherits the caller's (as the spec says), so its mounts
    // land there, under the rootfs; `/` keeps its propagation and the root is entered with chroot — a
    // pivot_root or MS_MOVE would replace `/` for every process sharing that namespace (runc chroots too).
    let inherit_mount_ns = !has(LinuxNamespaceType::Mount);
    if let Some(label) = linux
        .and_then(|l| l.mount_label().as_ref())
        .filter(|l| !l.is_empty())
    {
        tracing::warn!(mount_label = %label, "linux.mountLabel ignored: SELinux is not supported");
    }

    let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(options::root_propagation(s).ok_or_else(|| {
            invalid(
                "linux.rootfsPropagation",
                format!("unknown value {s:?}"),
                "use one of private, rprivate, shared, rshared, slave, rslave, unbindable, runbindable",
            )
        })?),
    };
    // An unbindable `/` could not be bind-mounted from (the rootfs bind would fail with EINVAL): start
    // from rslave and make the container's root unbindable at the end (`final_propagation`), as crun does.
    let root_propagation = propagation
        .filter(|p| p & libc::MS_UNBINDABLE == 0)
        .unwrap_or(libc::MS_SLAVE | libc::MS_REC);

    let spec_mounts: &[Mount] = spec.mounts().as_deref().unwrap_or(&[]);
    let mut mounts = Vec::with_capacity(spec_mounts.len());
    for (i, m) in spec_mounts.iter().enumerate() {
        mounts.push(plan_mount(i, m, opts, &ns)?);
    }

    let dev = plan_dev(spec, spec_mounts)?;
    let path_list =
        |list: Option<&Vec<String>>, field: &str| -> Result<Vec<PlannedPath>, MountError> {
            let mut out = Vec::new();
            for (i, p) in list.map(|v| v.as_slice()).unwrap_or(&[]).iter().enumerate() {
                let label = format!("linux.{field}[{i}] {p}");
                let clean = clean_abs(p).ok_or_else(|| {
                    invalid(&label, "is not an absolute path", "use an absolute path")
                })?;
                out.push(PlannedPath {
                    rel: cstring(&label, clean.trim_start_matches('/').as_bytes())?,
                    label,
                });
            }
            Ok(out)
        };
    let readonly_paths = path_list(
        linux.and_then(|l| l.readonly_paths().as_ref()),
        "readonlyPaths",
    )?;
    let masked_paths = path_list(linux.and_then(|l| l.masked_paths().as_ref()), "maskedPaths")?;

    let mountinfo = read_mountinfo();
    let rootfs_str = rootfs.to_string_lossy().into_owned();
    let rootfs_parent_private = parent_private(&mountinfo, &rootfs_str, root_propagation)
        .filter(|_| !inherit_mount_ns)
        .map(|p| cstring(&rootfs_label, p.as_bytes()))
        .transpose()?;
    let mut no_pivot_hide = Vec::new();
    if opts.no_pivot && !inherit_mount_ns {
        let mut hide: Vec<&str> = Vec::new();
        for mi in &mountinfo {
            let mp = mi.mount_point.as_str();
            if (mi.fstype == "proc" || mi.fstype == "sysfs")
                && !under(mp, &rootfs_str)
                && !hide.iter().any(|h| under(mp, h))
            {
                hide.push(mp);
            }
        }
        for mp in hide {
            no_pivot_hide.push(PlannedPath {
                label: format!("host mount {mp}"),
                rel: cstring(&rootfs_label, mp.as_bytes())?,
            });
        }
    }

    Ok(RootfsPlan {
        rootfs: cstring(&rootfs_label, rootfs.as_os_str().as_bytes())?,
        rootfs_label,
        root_propagation,
        rootfs_parent_private,
        mounts,
        dev,
        readonly_paths,
        masked_paths,
        root_readonly: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        final_propagation: propagation,
        no_pivot: opts.no_pivot,
        no_pivot_hide,
        inherit_mount_ns,
    })
}

fn plan_mount(
    i: usize,
    m: &Mount,
    opts: &RootfsOptions,
    ns: &Namespaces,
) -> Result<PlannedMount, MountError> {
    let dest_raw = m.destination().to_string_lossy().into_owned();
    let typ = m.typ().as_deref().unwrap_or("");
    let label = format!(
        "mounts[{i}] ({} on {dest_raw})",
        if typ.is_empty() { "bind" } else { typ }
    );
    let dest = clean_abs(&dest_raw).ok_or_else(|| {
        invalid(
            &label,
            "destination is not absolute",
            "write the destination as an absolute path inside the container",
        )
    })?;
    if dest == "/" {
        return Err(invalid(
            &label,
            "destination is the root itself",
            "use root.path for the root filesystem",
        ));
    }
    let parsed = options::parse(m.options().as_deref().unwrap_or(&[]));
    if let Some(idmap) = &parsed.idmap {
        return Err(invalid(
            &label,
            format!("option {idmap:?}: idmapped mounts are not supported yet"),
            "drop the option",
        ));
    }
    if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        return Err(invalid(
            &label,
            "uidMappings/gidMappings (idmapped mounts) are not supported yet",
            "drop them",
        ));
    }
    if parsed.tmpcopyup {
        return Err(invalid(
            &label,
            "option \"tmpcopyup\" is not supported yet",
            "drop the option",
        ));
    }
    let bind = typ == "bind" || parsed.is_bind();
    let source = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned());
    let param_list = |p: &Parsed| {
        let mut list = options::fs_params(&p.data);
        list.extend(p.sb_flags().into_iter().map(|f| (f.to_string(), None)));
        params(&list, &label)
    };
    let mut attrs = parsed.attrs();
    let op = if parsed.flags & libc::MS_REMOUNT != 0 {
        attrs.clr |= parsed.cleared_attrs();
        MountOp::Remount {
            params: params(&options::fs_params(&parsed.data), &label)?,
        }
    } else if bind {
        let src = source.filter(|s| !s.is_empty()).ok_or_else(|| {
            invalid(
                &label,
                "bind mount without a source",
                "set `source` to the host path to bind",
            )
        })?;
        let src = opts.bundle.join(&src); // an absolute `src` replaces the bundle path
        let meta = std::fs::metadata(&src).map_err(|e| {
            invalid(
                &label,
                format!("bind source {}: {e}", src.display()),
                "create the source or fix the path",
            )
        })?;
        check_proc_dest(&label, &dest, Some(&src), false)?;
        MountOp::Bind {
            source: cstring(&label, src.as_os_str().as_bytes())?,
            recursive: parsed.is_rbind(),
            file: !meta.is_dir(),
        }
    } else if typ == "cgroup" {
        cgroup_op(&label, &parsed, opts, ns)?
    } else if typ.is_empty() {
        return Err(invalid(
            &label,
            "mount without a type",
            "set `type` (e.g. tmpfs) or add the \"bind\" option",
        ));
    } else {
        check_proc_dest(&label, &dest, None, typ == "proc")?;
        let source = source
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| typ.to_string());
        MountOp::Fs {
            fstype: cstring(&label, typ.as_bytes())?,
            source: Some(cstring(&label, source.as_bytes())?),
            params: param_list(&parsed)?,
            fallback: (typ == "sysfs").then(|| c"/sys".to_owned()),
        }
    };
    // runc populates tmpfs and /dev before making them read-only.
    let ro_later = matches!(op, MountOp::Fs { .. })
        && (typ == "tmpfs" || dest == "/dev")
        && attrs.set & MOUNT_ATTR_RDONLY != 0;
    if ro_later {
        attrs.set &= !MOUNT_ATTR_RDONLY;
    }
    if !matches!(op, MountOp::Remount { .. }) {
        attrs.clr &= super::sys::MOUNT_ATTR_ATIME_MASK; // a new mount only adds flags
    }
    Ok(PlannedMount {
        rel: cstring(&label, dest.trim_start_matches('/').as_bytes())?,
        op,
        attrs,
        rec_attrs: parsed.rec,
        propagation: parsed.propagation.clone(),
        ro_later,
        no_symlink_leaf: typ == "proc" || typ == "sysfs",
        label,
    })
}

fn cgroup_op(
    label: &str,
    parsed: &Parsed,
    opts: &RootfsOptions,
    ns: &Namespaces,
) -> Result<MountOp, MountError> {
    let host_cgroup = c"/sys/fs/cgroup".to_owned();
    match &opts.cgroup {
        CgroupMount::V2 if ns.cgroup => Ok(MountOp::Fs {
            fstype: c"cgroup2".to_owned(),
            source: Some(c"cgroup2".to_owned()),
            params: params(&options::fs_params(&parsed.data), label)?,
            fallback: Some(host_cgroup),
        }),
        CgroupMount::V2 => {
            if ns.user {
                tracing::warn!(
                    "{label}: no cgroup namespace: bind-mounting the host's /sys/fs/cgroup"
                );
            }
            Ok(MountOp::Bind {
                source: host_cgroup,
                recursive: true,
                file: false,
            })
        }
        CgroupMount::V1 { hierarchies } => {
            let mut out = Vec::with_capacity(hierarchies.len());
            for (name, host) in hierarchies {
                let dir = name.strip_prefix("name=").unwrap_or(name);
                if dir.is_empty() || dir == "." || dir == ".." || dir.contains('/') {
                    return Err(invalid(
                        label,
                        format!("bad cgroup hierarchy name {name:?}"),
                        "use the hierarchy's directory name",
                    ));
                }
                let links = if dir.contains(',') {
                    dir.split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| cstring(label, s.as_bytes()))
                        .collect::<Result<_, _>>()?
                } else {
                    Vec::new()
                };
                out.push(CgroupHier {
                    name: cstring(label, dir.as_bytes())?,
                    host: cstring(label, host.as_os_str().as_bytes())?,
                    links,
                });
            }
            let tmpfs_params = params(&[("mode".into(), Some("755".into()))], label)?;
            Ok(MountOp::CgroupV1 {
                tmpfs_params,
                hierarchies: out,
            })
        }
    }
}

/// runc's checkProcMount: nothing may be mounted inside /proc except proc at /proc and binds over the
/// entries lxcfs emulates (a bind over /proc itself must come from a procfs).
fn check_proc_dest(
    label: &str,
    dest: &str,
    bind_src: Option<&Path>,
    is_proc: bool,
) -> Result<(), MountError> {
    if !under(dest, "/proc") || dest == "/" {
        return Ok(());
    }
    if dest == "/proc" {
        let ok = is_proc
            || bind_src.is_some_and(|s| {
                nix::sys::statfs::statfs(s)
                    .is_ok_and(|st| st.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
            });
        return if ok {
            Ok(())
        } else {
            Err(invalid(
                label,
                "only a proc filesystem may be mounted at /proc",
                "use type proc",
            ))
        };
    }
    if bind_src.is_some() && PROC_BIND_ALLOWED.contains(&dest) {
        return Ok(());
    }
    Err(invalid(
        label,
        "cannot mount inside /proc",
        format!(
            "only binds over {} are allowed",
            PROC_BIND_ALLOWED.join(", ")
        ),
    ))
}

fn plan_dev(spec: &Spec, mounts: &[Mount]) -> Result<Option<DevPlan>, MountError> {
    let is_bind = |m: &Mount| {
        m.typ().as_deref() == Some("bind")
            || m.options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"))
    };
    let at = |p: &'static str| {
        mounts
            .iter()
            .filter(move |m| clean_abs(&m.destination().to_string_lossy()).as_deref() == Some(p))
    };
    let dev_bind = at("/dev").any(is_bind);
    let dev_mounted = !dev_bind && at("/dev").next().is_some();
    let spec_devices = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .map(|v| v.as_slice())
        .unwrap_or(&[]);
    if dev_bind || (!dev_mounted && spec_devices.is_empty()) {
        return Ok(None);
    }
    let mut devices = Vec::new();
    let mut seen = Vec::new();
    for (i, d) in spec_devices.iter().enumerate() {
        let path = d.path().to_string_lossy().into_owned();
        let label = format!("linux.devices[{i}] {path}");
        let clean = clean_abs(&path)
            .ok_or_else(|| invalid(&label, "path is not absolute", "use e.g. /dev/fuse"))?;
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(invalid(
                    &label,
                    "type \"a\" is not a device node type",
                    "use c, b, u or p",
                ));
            }
        };
        let (major, minor) = (u32::try_from(d.major()), u32::try_from(d.minor()));
        let (Ok(major), Ok(minor)) = (major, minor) else {
            return Err(invalid(
                &label,
                "major/minor out of range",
                "use the numbers `ls -l` shows for the device",
            ));
        };
        devices.push(PlannedDevice {
            rel: cstring(&label, clean.trim_start_matches('/').as_bytes())?,
            kind,
            rdev: libc::makedev(major, minor),
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
            host: cstring(&label, clean.as_bytes())?,
            label,
        });
        seen.push(clean);
    }
    if dev_mounted {
        for &(path, major, minor) in DEFAULT_DEVICES {
            if seen.iter().any(|s| s == path) {
                continue;
            }
            devices.push(PlannedDevice {
                label: format!("default device {path}"),
                rel: cstring(path, path.trim_start_matches('/').as_bytes())?,
                kind: libc::S_IFCHR,
                rdev: libc::makedev(major, minor),
                mode: 0o666,
                uid: 0,
                gid: 0,
                host: cstring(path, path.as_bytes())?,
            });
        }
    }
    let ptmx = dev_mounted && at("/dev/pts").any(|m| m.typ().as_deref() == Some("devpts"));
    Ok(Some(DevPlan {
        devices,
        links: dev_mounted,
        kcore: Path::new("/proc/kcore").exists(),
        ptmx,
    }))
}

/// One line of a mountinfo file.
pub(crate) struct MountInfo {
    pub id: u64,
    /// The mounted subtree of its filesystem (`/` for a whole one; a bind shows its source dir).
    pub root: String,
    pub mount_point: String,
    pub fstype: String,
    /// The filesystem's own options (for cgroup v1: its controllers).
    pub super_options: String,
    pub shared: bool,
}

/// The runtime's own /proc/self/mountinfo (the child's mount namespace starts as a copy of it).
pub(super) fn read_mountinfo() -> Vec<MountInfo> {
    mountinfo_of("/proc/self/mountinfo").unwrap_or_else(|e| {
        tracing::warn!("reading /proc/self/mountinfo: {e}");
        Vec::new()
    })
}

/// A mountinfo file (`/proc/<pid>/mountinfo`), parsed.
pub(crate) fn mountinfo_of(path: &str) -> std::io::Result<Vec<MountInfo>> {
    Ok(std::fs::read_to_string(path)?.lines().filter_map(parse_mountinfo_line).collect())
}

fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let (pre, post) = line.split_once(" - ")?;
    let fields: Vec<&str> = pre.split(' ').collect();
    let post: Vec<&str> = post.split(' ').collect();
    Some(MountInfo {
        id: fields.first()?.parse().ok()?,
        root: unescape(fields.get(3)?),
        mount_point: unescape(fields.get(4)?),
        fstype: post.first()?.to_string(),
        super_options: post.get(2).map_or(String::new(), |o| o.to_string()),
        shared: fields.iter().skip(6).any(|f| f.starts_with("shared:")),
    })
}

/// Undo mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u16::from(b[i + 1] - b'0') * 64
                + u16::from(b[i + 2] - b'0') * 8
                + u16::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// runc's rootfsParentMountPrivate: pivot_root refuses a new root whose parent mount is shared, and a
/// shared parent would propagate the rootfs bind back to the host. Returns the parent's mount point if,
/// after `/` gets `root_propagation`, it would still be shared.
fn parent_private(mountinfo: &[MountInfo], rootfs: &str, root_propagation: u64) -> Option<String> {
    let parent = mountinfo
        .iter()
        .filter(|m| under(rootfs, &m.mount_point))
        .fold(None::<&MountInfo>, |best, m| match best {
            Some(b) if b.mount_point.len() > m.mount_point.len() => Some(b),
            _ => Some(m),
        })?;
    let shared = if root_propagation & libc::MS_REC != 0 || parent.mount_point == "/" {
        root_propagation & libc::MS_SHARED != 0
    } else {
        parent.shared
    };
    shared.then(|| parent.mount_point.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean_abs("/a//b/./c/../d/").as_deref(), Some("/a/b/d"));
        assert_eq!(clean_abs("/../..").as_deref(), Some("/"));
        assert_eq!(clean_abs("rel/x"), None);
        assert!(
            under("/proc/sys", "/proc") && under("/proc", "/proc") && !under("/procx", "/proc")
        );
    }

    #[test]
    fn mountinfo_and_parent() {
        let mi: Vec<MountInfo> = [
            "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
            "40 27 0:50 / /srv/my\\040dir rw master:3 - tmpfs tmpfs rw",
            "41 27 0:51 / /srv rw shared:7 - tmpfs tmpfs rw",
        ]
        .iter()
        .filter_map(|l| parse_mountinfo_line(l))
        .collect();
        assert_eq!(mi[1].mount_point, "/srv/my dir");
        assert_eq!((mi[1].id, mi[1].root.as_str(), mi[1].fstype.as_str(), mi[1].super_options.as_str()), (40, "/", "tmpfs", "rw"));
        assert!(mi[0].shared && !mi[1].shared && mi[2].shared);
        let slave = libc::MS_SLAVE | libc::MS_REC;
        assert_eq!(parent_private(&mi, "/srv/my dir/rootfs", slave), None);
        assert_eq!(
            parent_private(&mi, "/srv/x/rootfs", libc::MS_PRIVATE),
            Some("/srv".to_string())
        );
        assert_eq!(
            parent_private(&mi, "/home/rootfs", libc::MS_SHARED | libc::MS_REC),
            Some("/".to_string())
        );
    }
}
