//! OCI bundles from stored images: an overlay rootfs over the image's layers plus a `config.json` made
//! from the image config and the caller's overrides, with Docker's rules:
//!
//! - args = entrypoint + cmd; overriding the entrypoint resets the image's cmd unless a cmd is given too;
//! - env = the image's Env (plus a default PATH when it has none) with overrides replacing same keys
//!   (`KEY` alone takes the caller's own value, like `docker run -e KEY`);
//! - cwd = WorkingDir or `/`, created in a writable rootfs when missing;
//! - user = `uid[:gid]` or names looked up in the image's own /etc/passwd and /etc/group (opened with
//!   `RESOLVE_IN_ROOT`, so a symlinked /etc/passwd can't reach the host's), plus the user's
//!   supplementary groups;
//! - ExposedPorts → annotation `org.opencontainers.image.exposedPorts` (comma list), Labels → annotations;
//! - Docker's default seccomp profile and 14 default capabilities, no `noNewPrivileges` (setuid tools in images work as under Docker);
//! - `network: false` → a new, empty network namespace; `true` → the host's network namespace and the
//!   host's /etc/resolv.conf and /etc/hosts bind-mounted read-only (so DNS works in build steps).
//!
//! - `userns: Some((uid, gid, size))` → a user namespace owned by the bundle mapping container 0..size to
//!   host uid..uid+size (gid likewise), bind-mounted at `<dir>/userns` so that any process can open it; the
//!   layers are mounted idmapped through it ([`rootfs::mount_idmapped`]): shared and unshifted on disk, while
//!   upper/ and work/ belong to the mapped root. The config has the maps as uidMappings/gidMappings and a
//!   user namespace entry: a new one with those maps (the runtime's one-clone3 fast path), or, with
//!   [`USERNS_JOIN_BY_PATH`], `{"type":"user","path":"<dir>/userns"}`. Either way the container's root is
//!   host uid `uid`, which is whom the idmapped layers show as owner — an idmapped mount carries the maps,
//!   not the namespace, so the container need not be in the very namespace that made it.
//!
//! The image's layers are pinned in the store under the bundle dir's canonical path ([`pin_owner`]) while the bundle
//! lives, so `gc` keeps them. [`Bundle::destroy`] unmounts, unpins and deletes; dropping a bundle without
//! destroying it still unmounts and unpins (best effort) but leaves the dir for inspection.

use crate::image::rootfs::{self, Rootfs, RootfsError};
use crate::image::store::{ImageRecord, Store, StoreError};
use crate::image::userns::{UserNs, UsernsError};
use serde_json::{Value, json};
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Userns(#[from] UsernsError),
    #[error("bundle {path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error("user {user:?}: {msg}")]
    User { user: String, msg: String },
    #[error("{0}")]
    Invalid(String),
}

/// What a container changes relative to its image's config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Replaces the image's Entrypoint (and then its Cmd too, unless `cmd` is given).
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` (replaces the image's KEY) or `KEY` (the caller's own value, skipped if unset).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// `uid[:gid]` or `name[:group]`, resolved in the image.
    pub user: Option<String>,
    /// A read-only root: a lowerdir-only overlay and `root.readonly`.
    pub readonly: bool,
    /// false: a new, empty network namespace; true: share the host's.
    pub network: bool,
    pub terminal: bool,
    pub hostname: Option<String>,
    /// Run in a user namespace: container ids 0..size map to host uid base..base+size and gid
    /// base..base+size. The layers are mounted idmapped (unchanged on disk); upper/ belongs to the base ids.
    pub userns: Option<(u32, u32, u32)>,
}

/// A bundle dir with a mounted rootfs and a config.json, ready for the runtime.
#[derive(Debug)]
pub struct Bundle {
    /// The bundle dir (canonical): `config.json`, `rootfs/`, `upper/`, `work/`.
    pub dir: PathBuf,
    pub rootfs: Rootfs,
    pub readonly: bool,
    /// Paths inside the rootfs (relative, e.g. `etc/resolv.conf`) bind-mounted from the host; a commit of
    /// the upper dir leaves them out.
    pub host_files: Vec<String>,
    /// The bundle's user namespace (`Overrides::userns`), bound at [`USERNS_FILE`] in the dir.
    pub userns: Option<UserNs>,
    store: Store,
    owner: String,
    live: bool,
}

/// Where a bundle's user namespace is bind-mounted, relative to the bundle dir.
pub const USERNS_FILE: &str = "userns";
/// Whether config.json joins the bundle's own user namespace by path (true) or asks the runtime for a new
/// one with the same maps (false). Joining needs a runtime that becomes root in a joined user namespace
/// before it mounts (runc and crun do; beam's init does so only for a new one: mounting /dev/pts in the
/// container's /dev tmpfs then fails with EOVERFLOW, as the host uid 0 is unmapped there).
pub const USERNS_JOIN_BY_PATH: bool = true;

/// The path of the default PATH when an image sets none (Docker's).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The annotation carrying the image's ExposedPorts.
pub const EXPOSED_PORTS_ANNOTATION: &str = "org.opencontainers.image.exposedPorts";
/// Docker's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];
const HOST_FILES: [&str; 2] = ["etc/resolv.conf", "etc/hosts"];

impl Bundle {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    /// The pin owner in the store ([`pin_owner`] of the dir).
    pub fn owner(&self) -> &str {
        &self.owner
    }
    /// Hand the bundle over to something that outlives this value (beamd's sandboxes, which outlive
    /// beamd itself): the rootfs stays mounted, the layers pinned and the user namespace bound, until
    /// [`remove_stale`] tears them down.
    pub fn detach(mut self) {
        self.live = false;
        if let Some(ns) = self.userns.as_mut() {
            ns.keep_bound();
        }
    }

    /// Unmount the rootfs, unpin the layers and delete the bundle dir (upper included).
    pub fn destroy(mut self) -> Result<(), BundleError> {
        self.live = false;
        let unmounted = rootfs::unmount(&self.rootfs);
        let unbound = self.userns.as_mut().map_or(Ok(()), UserNs::unbind);
        let unpinned = self.store.unpin(&self.owner);
        unmounted?;
        unbound?;
        unpinned?;
        self.userns = None;
        rootfs::remove(&self.dir)?;
        Ok(())
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if self.live {
            let _ = rootfs::unmount(&self.rootfs);
            // Dropping the namespace unbinds it.
            self.userns = None;
            let _ = self.store.unpin(&self.owner);
        }
    }
}

/// Make a bundle in `dir` (created; must be empty if it exists) for `image`.
pub fn create(store: &Store, image: &ImageRecord, dir: &Path, o: &Overrides) -> Result<Bundle, BundleError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| BundleError::Io { path, msg: e.to_string() }
    };
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BundleError::Io {
            path: dir.into(),
            msg: "exists and is not empty; remove it or pick another dir".into(),
        });
    }
    let config = store.config(image)?;
    let cfg = config.config().clone().unwrap_or_default();
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let dir = std::fs::canonicalize(dir).map_err(io(dir))?;
    let owner = pin_owner(&dir);
    let diff_ids: Vec<_> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
    // Pin first, then check: a concurrent gc can't take a layer between the check and the mount.
    if let Err(e) = store.pin(&owner, &diff_ids) {
        let _ = std::fs::remove_dir(&dir);
        return Err(e.into());
    }
    if let Some(l) = diff_ids.iter().find(|d| !store.has_layer(d)) {
        let _ = store.unpin(&owner);
        let _ = std::fs::remove_dir(&dir);
        return Err(BundleError::Invalid(format!(
            "image {}: layer {l} is not unpacked in the store; pull or import the image again",
            image.id.short()
        )));
    }
    let layer_dirs: Vec<PathBuf> = diff_ids.iter().map(|d| store.layer_dir(d)).collect();
    let mounted = match o.userns {
        None => rootfs::mount(&layer_dirs, &dir, o.readonly).map(|r| (r, None)).map_err(BundleError::from),
        Some(range) => mount_in_userns(&layer_dirs, &dir, o.readonly, range),
    };
    let (rootfs, userns) = match mounted {
        Ok(r) => r,
        Err(e) => {
            let _ = store.unpin(&owner);
            let _ = rootfs::remove(&dir);
            return Err(e);
        }
    };
    let mut b = Bundle {
        dir,
        rootfs,
        readonly: o.readonly,
        host_files: Vec::new(),
        userns,
        store: store.clone(),
        owner,
        live: true,
    };
    match write_spec(&mut b, image, &cfg, o) {
        Ok(()) => Ok(b),
        Err(e) => {
            let _ = b.destroy();
            Err(e)
        }
    }
}

/// A user namespace for `(uid base, gid base, size)`, bound at `<dir>/userns`, and the rootfs mounted
/// idmapped through it. On failure nothing stays mounted or bound.
fn mount_in_userns(
    layers: &[PathBuf],
    dir: &Path,
    readonly: bool,
    (uid, gid, size): (u32, u32, u32),
) -> Result<(Rootfs, Option<UserNs>), BundleError> {
    let mut ns = UserNs::new(&[(0, uid, size)], &[(0, gid, size)])?;
    ns.bind(&dir.join(USERNS_FILE))?;
    let r = rootfs::mount_idmapped(layers, dir, readonly, ns.fd(), uid, gid)?;
    Ok((r, Some(ns)))
}

fn write_spec(
    b: &mut Bundle,
    image: &ImageRecord,
    cfg: &oci_spec::image::Config,
    o: &Overrides,
) -> Result<(), BundleError> {
    let entrypoint = o.entrypoint.clone().unwrap_or_else(|| cfg.entrypoint().clone().unwrap_or_default());
    let cmd = match (&o.cmd, &o.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => cfg.cmd().clone().unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(BundleError::Invalid(format!(
            "image {} has no Entrypoint or Cmd: give a command to run",
            image.names.first().map_or(image.id.short(), String::as_str)
        )));
    }
    let mut env = cfg.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    if o.terminal && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let overrides: Vec<String> = o
        .env
        .iter()
        .filter_map(|e| match e.contains('=') {
            true => Some(e.clone()),
            false => std::env::var(e).ok().map(|v| format!("{e}={v}")),
        })
        .collect();
    let env = merge_env(&env, &overrides);

    let mut cwd =
        o.workdir.clone().or_else(|| cfg.working_dir().clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        cwd.insert(0, '/');
    }
    let root = open_root(&b.rootfs.merged)?;
    if !b.readonly && cwd != "/" {
        mkdir_in_root(&root, &cwd).map_err(|e| BundleError::Io {
            path: b.rootfs.merged.join(cwd.trim_start_matches('/')),
            msg: format!("creating the working dir: {e}"),
        })?;
    }
    let user_spec = o.user.clone().or_else(|| cfg.user().clone()).unwrap_or_default();
    let (uid, gid, groups) = resolve_user(&root, &user_spec)?;

    let mut spec = crate::runtime::verbs::spec::default_spec(false, 0, 0);
    let caps: Vec<&str> = DEFAULT_CAPS.to_vec();
    spec["process"] = json!({
        "terminal": o.terminal,
        "user": {"uid": uid, "gid": gid, "additionalGids": groups},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": spec["process"]["rlimits"].clone(),
        "noNewPrivileges": false,
    });
    if groups.is_empty() {
        spec["process"]["user"].as_object_mut().expect("object").remove("additionalGids");
    }
    // Docker's default seccomp profile (seccomp/default.json), as `docker run` applies it.
    spec["linux"]["seccomp"] =
        serde_json::to_value(crate::runtime::seccomp::default_profile()).expect("profile serializes");
    spec["root"] = json!({"path": b.rootfs.merged.to_string_lossy(), "readonly": o.readonly});
    if let Some(h) = &o.hostname {
        spec["hostname"] = json!(h);
    }
    if let Some(ns) = &b.userns {
        let path = ns.bound().expect("a bundle's user namespace is bound").to_path_buf();
        let maps = |m: &[crate::image::userns::IdMap]| -> Value {
            m.iter().map(|&(c, h, s)| json!({"containerID": c, "hostID": h, "size": s})).collect()
        };
        let entry = if USERNS_JOIN_BY_PATH { json!({"type": "user", "path": path}) } else { json!({"type": "user"}) };
        spec["linux"]["namespaces"].as_array_mut().expect("array").push(entry);
        spec["linux"]["uidMappings"] = maps(ns.uid_map());
        spec["linux"]["gidMappings"] = maps(ns.gid_map());
        if o.network {
            // sysfs mounts only from a network namespace the user namespace owns: bind the host's instead.
            for m in spec["mounts"].as_array_mut().expect("array").iter_mut().filter(|m| m["type"] == "sysfs") {
                *m = json!({"destination": m["destination"].clone(), "type": "none", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
            }
        }
    }
    if o.network {
        spec["linux"]["namespaces"].as_array_mut().expect("array").retain(|n| n["type"] != "network");
        for f in HOST_FILES {
            let host = Path::new("/").join(f);
            if host.is_file() {
                spec["mounts"].as_array_mut().expect("array").push(json!({
                    "destination": host, "type": "bind", "source": host,
                    "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
                }));
                b.host_files.push(f.to_string());
            }
        }
    }
    let mut annotations = serde_json::Map::new();
    if let Some(labels) = cfg.labels() {
        for (k, v) in labels {
            annotations.insert(k.clone(), json!(v));
        }
    }
    if let Some(ports) = cfg.exposed_ports().as_ref().filter(|p| !p.is_empty()) {
        let mut ports = ports.clone();
        ports.sort();
        annotations.insert(EXPOSED_PORTS_ANNOTATION.into(), json!(ports.join(",")));
    }
    if !annotations.is_empty() {
        spec["annotations"] = Value::Object(annotations);
    }
    serde_json::from_value::<oci_spec::runtime::Spec>(spec.clone())
        .map_err(|e| BundleError::Invalid(format!("generated config.json does not parse as an OCI spec: {e}")))?;
    let path = b.config_path();
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).expect("json"))
        .map_err(|e| BundleError::Io { path, msg: e.to_string() })
}

/// The store pin owner for a bundle dir: its canonical path made into a pin name (`/` → `_`, other bytes
/// outside `[A-Za-z0-9._-]` → `_`, the last 150 characters kept) plus 16 hex digits of the path's sha256,
/// so distinct dirs never share a pin and the name still says whose pin it is.
pub fn pin_owner(canonical_dir: &Path) -> String {
    let path = canonical_dir.to_string_lossy();
    let clean: String =
        path.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    let clean = clean.trim_start_matches(['_', '.']);
    let tail = &clean[clean.len().saturating_sub(150)..];
    let hash = crate::image::digest::Digest::of(path.as_bytes());
    format!("{}{}{}", tail.trim_start_matches(['_', '.']), if tail.is_empty() { "" } else { "-" }, &hash.hex()[..16])
}

/// `base` with `over` applied: a key in `over` replaces the same key in place, new keys are appended.
pub fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let mut out: Vec<String> = base.to_vec();
    for e in over {
        match out.iter().position(|b| key(b) == key(e)) {
            Some(i) => out[i] = e.clone(),
            None => out.push(e.clone()),
        }
    }
    out
}

/// Open a root filesystem dir for [`resolve_user`].
pub fn open_root(merged: &Path) -> Result<File, BundleError> {
    File::open(merged).map_err(|e| BundleError::Io { path: merged.into(), msg: e.to_string() })
}

/// openat2(root, rel, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS).
fn open_in_root(root: &File, rel: &str, flags: i32) -> std::io::Result<File> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let rel = rel.trim_start_matches('/');
    let c = CString::new(if rel.is_empty() { "." } else { rel }).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    loop {
        // SAFETY: `c` is NUL-terminated and `how` is a valid open_how for the size passed.
        let r = unsafe {
            libc::syscall(libc::SYS_openat2, root.as_raw_fd(), c.as_ptr(), &how as *const OpenHow, size_of::<OpenHow>())
        };
        if r >= 0 {
            // SAFETY: openat2 returned a new descriptor we own.
            return Ok(File::from(unsafe { OwnedFd::from_raw_fd(r as i32) }));
        }
        let e = std::io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
            return Err(e);
        }
    }
}

/// Read a file inside the root (symlinks resolved inside it); a missing file reads as empty.
pub(crate) fn read_in_root(root: &File, rel: &str) -> std::io::Result<String> {
    match open_in_root(root, rel, libc::O_RDONLY) {
        Ok(mut f) => {
            let mut s = String::new();
            f.read_to_string(&mut s)?;
            Ok(s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// `mkdir -p` inside the root: each existing prefix is resolved inside it, missing ones made with mkdirat
/// relative to their resolved parent.
fn mkdir_in_root(root: &File, path: &str) -> std::io::Result<()> {
    let dir_flags = libc::O_PATH | libc::O_DIRECTORY;
    let mut parent = open_in_root(root, "", dir_flags)?;
    let mut prefix = String::new();
    for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        prefix.push('/');
        prefix.push_str(comp);
        parent = match open_in_root(root, &prefix, dir_flags) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && comp != ".." => {
                let c = CString::new(comp).map_err(|_| std::io::ErrorKind::InvalidInput)?;
                // SAFETY: `c` is NUL-terminated; `parent` is an open directory descriptor.
                if unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), 0o755) } != 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::AlreadyExists {
                        return Err(e);
                    }
                }
                open_in_root(root, &prefix, dir_flags)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(())
}

/// (uid, gid, supplementary gids) for a Docker-style user spec, looked up in the image's own files.
pub fn resolve_user(root: &File, spec: &str) -> Result<(u32, u32, Vec<u32>), BundleError> {
    let err = |msg: String| BundleError::User { user: spec.into(), msg };
    if spec.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |f: &str| read_in_root(root, f).map_err(|e| err(format!("reading the image's /{f}: {e}")));
    let passwd = read("etc/passwd")?;
    // name:x:uid:gid:gecos:home:shell
    let entries: Vec<(String, u32, u32)> = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
        })
        .collect();
    let (name, uid, pgid) = match user.parse::<u32>() {
        Ok(uid) => match entries.iter().find(|e| e.1 == uid) {
            Some((n, _, g)) => (Some(n.clone()), uid, *g),
            None => (None, uid, 0),
        },
        Err(_) => match entries.iter().find(|e| e.0 == user) {
            Some((n, u, g)) => (Some(n.clone()), *u, *g),
            None => return Err(err(format!("no user {user:?} in the image's /etc/passwd; use a numeric uid[:gid]"))),
        },
    };
    let groups_file = read("etc/group")?;
    // name:x:gid:member,member
    let groups: Vec<(String, u32, Vec<String>)> = groups_file
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members =
                f.get(3).map_or(Vec::new(), |m| m.split(',').filter(|s| !s.is_empty()).map(String::from).collect());
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, members))
        })
        .collect();
    let gid = match group.filter(|g| !g.is_empty()) {
        None => pgid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match groups.iter().find(|e| e.0 == g) {
                Some(e) => e.1,
                None => return Err(err(format!("no group {g:?} in the image's /etc/group; use a numeric gid"))),
            },
        },
    };
    let mut extra: Vec<u32> = match &name {
        Some(n) => groups.iter().filter(|g| g.2.contains(n) && g.1 != gid).map(|g| g.1).collect(),
        None => Vec::new(),
    };
    extra.sort_unstable();
    extra.dedup();
    Ok((uid, gid, extra))
}

/// Tear down a bundle whose owner died without `destroy` (e.g. a `beam image run` killed with SIGKILL): the
/// user-namespace bind, the rootfs (and any idmapped lowers), the layer pin and the dir. Stop the container
/// first. A missing dir is not an error.
pub fn remove_stale(store: &Store, dir: &Path) -> Result<(), BundleError> {
    let Ok(dir) = std::fs::canonicalize(dir) else { return Ok(()) };
    let userns = dir.join(USERNS_FILE);
    if rootfs::is_mount_point(&userns) {
        let c = std::ffi::CString::new(userns.as_os_str().as_encoded_bytes())
            .map_err(|_| BundleError::Invalid(format!("{} has a NUL byte", userns.display())))?;
        // SAFETY: umount2 on a NUL-terminated path we own; no memory is shared with the kernel after return.
        if unsafe { libc::umount2(c.as_ptr(), libc::UMOUNT_NOFOLLOW | libc::MNT_DETACH) } != 0 {
            return Err(BundleError::Io { path: userns, msg: std::io::Error::last_os_error().to_string() });
        }
    }
    let merged = dir.join("rootfs");
    if rootfs::is_mount_point(&merged) {
        rootfs::unmount(&Rootfs { merged, upper: dir.join("upper"), work: dir.join("work") })?;
    }
    rootfs::remove(&dir)?;
    store.unpin(&pin_owner(&dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_owners_are_valid_and_distinct() {
        let a = pin_owner(Path::new("/var/lib/beam/sandboxes/a-b/c"));
        let b = pin_owner(Path::new("/var/lib/beam/sandboxes/a/b-c"));
        assert_ne!(a, b);
        assert!(a.starts_with("var_lib_beam_sandboxes_a-b_c-"), "{a}");
        for o in [a, b, pin_owner(Path::new("/")), pin_owner(Path::new(&format!("/.x/{}", "é".repeat(300))))] {
            assert!(!o.is_empty() && o.len() <= 200 && !o.starts_with('.'), "{o}");
            assert!(o.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)), "{o}");
        }
    }

    #[test]
    fn env_merge_replaces_in_place() {
        let base = vec!["PATH=/bin".to_string(), "A=1".into()];
        let over = vec!["A=2".to_string(), "B=3".into()];
        assert_eq!(merge_env(&base, &over), ["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn users_resolve_in_the_image() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n")
            .unwrap();
        std::fs::write(t.path().join("etc/group"), "root:x:0:\napp:x:1001:\nstaff:x:50:app,other\nwheel:x:10:root\n")
            .unwrap();
        let root = File::open(t.path()).unwrap();
        assert_eq!(resolve_user(&root, "").unwrap(), (0, 0, vec![]));
        assert_eq!(resolve_user(&root, "app").unwrap(), (1000, 1001, vec![50]));
        assert_eq!(resolve_user(&root, "1000").unwrap(), (1000, 1001, vec![50]));
        assert_eq!(resolve_user(&root, "app:staff").unwrap(), (1000, 50, vec![]));
        assert_eq!(resolve_user(&root, "4242:7").unwrap(), (4242, 7, vec![]));
        assert_eq!(resolve_user(&root, "root").unwrap(), (0, 0, vec![10]));
        assert!(resolve_user(&root, "nobody").unwrap_err().to_string().contains("passwd"));
        assert!(resolve_user(&root, "app:nogroup").unwrap_err().to_string().contains("group"));
    }

    #[test]
    fn mkdir_stays_in_root() {
        let t = tempfile::tempdir().unwrap();
        let root_dir = t.path().join("root");
        std::fs::create_dir(&root_dir).unwrap();
        std::os::unix::fs::symlink("/nonexistent-host-dir", root_dir.join("escape")).unwrap();
        std::os::unix::fs::symlink(t.path().join("outside"), root_dir.join("abs")).unwrap();
        let root = File::open(&root_dir).unwrap();
        mkdir_in_root(&root, "/app/sub").unwrap();
        assert!(root_dir.join("app/sub").is_dir());
        mkdir_in_root(&root, "/../../up").unwrap();
        assert!(root_dir.join("up").is_dir());
        // An absolute symlink resolves inside the root, never on the host.
        let _ = mkdir_in_root(&root, "/abs/x");
        assert!(!t.path().join("outside").exists());
    }
}

