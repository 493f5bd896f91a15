//! The sandbox manager: the sandboxes beamd knows (by id and name, in memory and on disk) and the
//! config every sandbox's view depends on. The lifecycle (create → running → stopping → exited) is in
//! [`super::lifecycle`], keep-warm and timeouts in [`super::timers`], re-adoption after a restart in
//! [`super::recovery`], images in [`super::images`], ports in [`super::ports`], uid ranges in
//! [`super::uids`].
//!
//! Sandboxes outlive beamd: their init (PID 1) is a child of beamd only until beamd exits; its bundle
//! (rootfs mount, user namespace bind, layer pins) is detached from beamd's memory. Everything needed
//! to find them again lives on disk: `<root>/sandboxes/<id>/` (record, bundle, init socket, log,
//! status) and the runtime's state under `<run_dir>/runtime`.

use super::entry::Entry;
use super::error::{Result, SandboxError};
use super::initclient::InitClient;
use super::ports::PublicUrls;
use super::record::{self, Record};
use super::validate::{self, Offer};
use crate::api::{self, Sandbox, SandboxState};
use crate::image::store::Store;
use crate::netns::dial::{Dialer, NetnsDialer};
use crate::runtime::state::Root;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const DEFAULT_KEEP_WARM: i64 = 600;
pub const DEFAULT_CPU: f64 = 1.0;
pub const DEFAULT_MEMORY_MIB: u64 = 1024;
pub const DEFAULT_PIDS: u32 = 1024;
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Entrypoint log bound (the init drops the oldest half past it).
pub const LOG_MAX: u64 = 8 << 20;

#[derive(Debug, Clone)]
pub struct Config {
    /// State root: the image store (`images/`) and `sandboxes/`.
    pub root: PathBuf,
    /// Runtime state and the init binary (a tmpfs like /run/beam: gone at reboot, with the sandboxes).
    pub run_dir: PathBuf,
    /// Sandbox networking (bridge, veths, NAT, egress policy); None: every sandbox gets loopback only.
    pub network: Option<NetworkConfig>,
    /// The gateway's URL scheme; None: no gateway serves, sandboxes show no `urls`.
    pub public: Option<PublicUrls>,
}

/// `beamd --network bridge`.
#[derive(Debug, Clone, Default)]
pub struct NetworkConfig {
    /// The network namespace the bridge lives in (default: beamd's own, the host's). Tests pass one they made.
    pub host_netns: Option<PathBuf>,
    pub subnet: Option<ipnet::Ipv4Net>,
    /// The MTU of sandbox links (default: the host's uplink MTU).
    pub mtu: Option<u32>,
}

/// Filters of `GET /v1/sandboxes`.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub state: Option<SandboxState>,
    pub name: Option<String>,
    pub tags: Vec<(String, String)>,
}

pub struct Manager {
    pub(crate) cfg: Config,
    pub(crate) store: Store,
    pub(crate) runtime: Root,
    pub(crate) sandboxes_dir: PathBuf,
    pub(crate) init_path: PathBuf,
    entries: Mutex<BTreeMap<String, Arc<Entry>>>,
    pub landlock_abi: u32,
    pub cgroup: String,
    /// Sandbox networking, when beamd runs with `--network bridge`.
    pub(crate) net: Option<Arc<crate::netns::Network>>,
    /// How beamd reaches ports inside sandboxes (forwards here; the gateway shares it).
    dialer: Arc<dyn Dialer>,
}

impl Manager {
    /// Open the store and state dirs and install the init binary; [`Manager::recover`] then finds
    /// the sandboxes of a previous beamd.
    pub fn open(cfg: Config) -> Result<Arc<Manager>> {
        let store = Store::open(&cfg.root.join("images"))?;
        let sandboxes_dir = cfg.root.join("sandboxes");
        std::fs::create_dir_all(&sandboxes_dir).map_err(SandboxError::io(sandboxes_dir.display()))?;
        check_traversable(&cfg.root, &sandboxes_dir)?;
        let runtime_dir = cfg.run_dir.join("runtime");
        std::fs::create_dir_all(&runtime_dir).map_err(SandboxError::io(runtime_dir.display()))?;
        let runtime = Root::new(&runtime_dir).map_err(crate::runtime::verbs::Error::from)?;
        let init_path = install_init(&cfg.run_dir)?;
        let landlock_abi = crate::runtime::landlock::abi_version().unwrap_or(0);
        let cgroup = match crate::runtime::cgroups::mode() {
            Ok(crate::runtime::cgroups::CgroupMode::V2) => "v2",
            Ok(_) => "v1/hybrid",
            Err(e) => return Err(SandboxError::Internal(format!("cgroups: {e}"))),
        }
        .to_string();
        let net = match &cfg.network {
            None => None,
            Some(n) => Some(Arc::new(open_network(&cfg.root, n)?)),
        };
        Ok(Arc::new(Manager {
            cfg,
            store,
            runtime,
            sandboxes_dir,
            init_path,
            entries: Mutex::new(BTreeMap::new()),
            landlock_abi,
            cgroup,
            net,
            dialer: Arc::new(NetnsDialer::new()),
        }))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        Record::dir(&self.sandboxes_dir, id)
    }

    /// By id or name.
    pub fn get(&self, reference: &str) -> Result<Arc<Entry>> {
        let entries = self.entries.lock().expect("entries lock");
        if let Some(e) = entries.get(reference) {
            return Ok(e.clone());
        }
        entries
            .values()
            .find(|e| e.rec.lock().expect("record lock").sandbox.name.as_deref() == Some(reference))
            .cloned()
            .ok_or_else(|| SandboxError::NotFound { reference: reference.to_string() })
    }

    /// A running sandbox (for exec, files, processes), touched as activity.
    pub fn get_running(&self, reference: &str) -> Result<Arc<Entry>> {
        let e = self.get(reference)?;
        let state = e.state();
        if state != SandboxState::Running {
            return Err(SandboxError::NotRunning { id: e.id.clone(), state });
        }
        e.touch();
        Ok(e)
    }

    pub fn list(&self, f: &ListFilter) -> Vec<Sandbox> {
        let entries: Vec<Arc<Entry>> = self.entries.lock().expect("entries lock").values().cloned().collect();
        let mut out: Vec<Sandbox> = entries
            .iter()
            .map(|e| self.view(e))
            .filter(|s| f.state.is_none_or(|st| s.state == st))
            .filter(|s| f.name.as_ref().is_none_or(|n| s.name.as_ref() == Some(n)))
            .filter(|s| f.tags.iter().all(|(k, v)| s.tags.get(k) == Some(v)))
            .collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        out
    }

    pub fn init_client(&self, e: &Entry) -> InitClient {
        InitClient::new(self.sandbox_dir(&e.id).join(record::INIT_SOCKET))
    }

    pub(crate) fn entries(&self) -> Vec<Arc<Entry>> {
        self.entries.lock().expect("entries lock").values().cloned().collect()
    }

    pub(crate) fn insert(&self, e: Arc<Entry>) {
        self.entries.lock().expect("entries lock").insert(e.id.clone(), e);
    }

    pub(crate) fn remove_entry(&self, id: &str) {
        self.entries.lock().expect("entries lock").remove(id);
    }

    /// Update a record in memory and on disk.
    pub(crate) fn update_record(&self, e: &Entry, f: impl FnOnce(&mut Record)) -> Record {
        let mut rec = e.rec.lock().expect("record lock");
        f(&mut rec);
        if let Err(err) = rec.save(&self.sandboxes_dir) {
            tracing::error!(sandbox = %e.id, "saving the sandbox record: {err}");
        }
        if rec.sandbox.state == SandboxState::Exited {
            e.exited.send_replace(true);
        }
        rec.clone()
    }

    /// Reserve a name and a uid slot and register a pending sandbox (saved to disk first, so that a
    /// crash in the middle leaves something [`Manager::recover`] cleans up).
    pub(crate) fn reserve(&self, rec: Record, want_userns: bool) -> Result<Arc<Entry>> {
        let mut entries = self.entries.lock().expect("entries lock");
        if let Some(name) = &rec.sandbox.name
            && entries.values().any(|e| e.rec.lock().expect("record lock").sandbox.name.as_ref() == Some(name))
        {
            return Err(SandboxError::NameTaken { name: name.clone() });
        }
        let mut rec = rec;
        if want_userns {
            let used: std::collections::HashSet<u32> =
                entries.values().filter_map(|e| e.rec.lock().expect("record lock").uid_slot).collect();
            let (slot, base) = super::uids::free_slot(&used).ok_or_else(|| {
                SandboxError::Conflict("every sandbox uid range is in use; stop some sandboxes".into())
            })?;
            rec.uid_slot = Some(slot);
            rec.sandbox.security.uid_base = Some(base);
        }
        let dir = self.sandbox_dir(&rec.sandbox.id);
        std::fs::create_dir(&dir).map_err(SandboxError::io(dir.display()))?;
        if let Err(e) = rec.save(&self.sandboxes_dir) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(SandboxError::io("saving the sandbox record")(e));
        }
        let e = Entry::new(rec);
        entries.insert(e.id.clone(), e.clone());
        Ok(e)
    }

    /// Change a running sandbox's keep-warm and timeout.
    pub fn update(&self, e: &Arc<Entry>, u: &api::UpdateSandbox) -> Result<Sandbox> {
        if let Some(k) = u.keep_warm_seconds {
            validate::check_keep_warm(k)?;
        }
        if e.state() == SandboxState::Exited {
            return Err(SandboxError::Conflict(format!("sandbox {} has exited; its TTLs can't change", e.id)));
        }
        e.touch();
        if u.block_network.is_some() || u.cidr_allowlist.is_some() {
            let rec = e.record();
            let (Some(net), api::NetworkMode::Bridge) = (&self.net, rec.sandbox.network.mode) else {
                return Err(SandboxError::invalid(
                    "block_network",
                    format!(
                        "sandbox {} has no bridge network; block_network and cidr_allowlist apply to network \"bridge\" only",
                        e.id
                    ),
                ));
            };
            let block = u.block_network.unwrap_or(rec.sandbox.network.block_network);
            let allow = u.cidr_allowlist.clone().unwrap_or(rec.sandbox.network.cidr_allowlist);
            let policy = validate::parse_policy(block, allow.as_deref())?;
            net.update_policy(&e.id, &policy)?;
            self.update_record(e, |r| {
                r.sandbox.network.block_network = block;
                r.sandbox.network.cidr_allowlist = allow;
            });
        }
        self.update_record(e, |r| {
            if let Some(k) = u.keep_warm_seconds {
                r.sandbox.keep_warm_seconds = k;
            }
            if let Some(t) = u.timeout_seconds {
                r.sandbox.timeout_seconds = (t > 0).then_some(t);
            }
        });
        Ok(self.view(e))
    }

    /// What this beamd offers requests (validation and pending records: [`super::validate`]).
    pub fn offer(&self) -> Offer {
        Offer { bridge: self.net.is_some() }
    }

    /// A sandbox's API view under this beamd's config (its gateway URLs).
    pub fn view(&self, e: &Entry) -> Sandbox {
        e.view(self.cfg.public.as_ref())
    }

    /// How beamd dials ports inside sandboxes (shared by forwards and the gateway).
    pub fn dialer(&self) -> Arc<dyn Dialer> {
        self.dialer.clone()
    }

    /// Remove an exited sandbox's record and dir.
    pub fn forget(&self, e: &Entry) -> Result<()> {
        if e.state() != SandboxState::Exited {
            return Err(SandboxError::StillRunning { id: e.id.clone(), state: e.state() });
        }
        let dir = self.sandbox_dir(&e.id);
        std::fs::remove_dir_all(&dir).or_else(not_found_ok).map_err(SandboxError::io(dir.display()))?;
        self.remove_entry(&e.id);
        Ok(())
    }

    pub fn version(&self) -> api::Version {
        api::Version {
            version: env!("CARGO_PKG_VERSION").into(),
            api: "v1".into(),
            cgroup: self.cgroup.clone(),
            landlock_abi: self.landlock_abi,
        }
    }

    pub fn sandboxes_dir(&self) -> &Path {
        &self.sandboxes_dir
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
}

/// The bridge, firewall table and leases (under `<root>/network`), ready for sandboxes.
fn open_network(root: &Path, n: &NetworkConfig) -> Result<crate::netns::Network> {
    let err = |e: crate::netns::NetError| {
        SandboxError::Internal(format!("sandbox networking: {e}; or start beamd with --network none (every sandbox loopback only)"))
    };
    let host = match &n.host_netns {
        None => crate::netns::open_current_netns().map_err(err)?,
        Some(p) => std::fs::File::open(p)
            .map(std::os::fd::OwnedFd::from)
            .map_err(SandboxError::io(format!("--network-netns {}", p.display())))?,
    };
    let mut cfg = crate::netns::NetConfig::new(root.join("network"));
    cfg.subnet = n.subnet;
    cfg.mtu = n.mtu;
    let net = crate::netns::Network::new(host, cfg).map_err(err)?;
    net.ensure().map_err(err)?;
    Ok(net)
}

/// A sandbox's cgroup: beamd leaves `linux.cgroupsPath` unset, so it is the runtime's default, `/beam/<id>`,
/// derivable without reading the runtime state.
pub(crate) fn sandbox_cgroup(id: &str) -> Option<crate::runtime::cgroups::Cgroup> {
    crate::runtime::cgroups::Cgroup::new(None, id).ok()
}


/// Sandboxes run as unprivileged host uids (their user namespace's range), and the runtime reaches their
/// root filesystem under `sandboxes` as that uid: every dir on the way must be searchable by others.
/// beamd's own dirs are fixed (o+x); a parent that isn't is an error naming it.
fn check_traversable(root: &Path, sandboxes: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let sandboxes = std::fs::canonicalize(sandboxes).map_err(SandboxError::io(sandboxes.display()))?;
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    for dir in sandboxes.ancestors() {
        let Ok(meta) = std::fs::metadata(dir) else { continue };
        let mode = meta.permissions().mode();
        if mode & 0o001 != 0 {
            continue;
        }
        if dir.starts_with(&root) {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o011))
                .map_err(SandboxError::io(format!("chmod o+x {}", dir.display())))?;
            continue;
        }
        return Err(SandboxError::Internal(format!(
            "{} (mode {:o}) can't be traversed by sandbox users: sandboxes run as unprivileged host uids that must \
             reach their root filesystems under {}; run `chmod o+x {}` or pick another --root",
            dir.display(),
            mode & 0o7777,
            sandboxes.display(),
            dir.display()
        )));
    }
    Ok(())
}

fn not_found_ok(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
}


/// Write the embedded init binary to `<run_dir>/beam-init` (0555, root-owned) unless it is already there.
fn install_init(run_dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = run_dir.join("beam-init");
    let bytes = crate::sandbox::INIT_BINARY;
    if std::fs::read(&path).is_ok_and(|b| b == bytes) {
        return Ok(path);
    }
    let tmp = run_dir.join(format!(".beam-init.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, bytes)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        SandboxError::io(format!("installing the sandbox init at {}", path.display()))(e)
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CreateSandbox;
    use crate::image::store::ImageRecord;
    use crate::sandbox::entry::deadline;
    use chrono::Utc;

    /// Keep-warm and timeouts past the end of time (PATCH {"keep_warm_seconds": 9223372036854775807} made
    /// every later view of the sandbox panic): they never expire, and nothing panics.
    #[test]
    fn far_deadlines_never_come() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config { root: d.path().join("root"), run_dir: d.path().join("run"), network: None, public: None };
        let mgr = Manager::open(cfg).unwrap();
        let img = ImageRecord {
            id: crate::image::digest::Digest::of(b"config"),
            manifest: crate::image::digest::Digest::of(b"manifest"),
            manifest_media_type: String::new(),
            layers: Vec::new(),
            names: Vec::new(),
            added: Utc::now(),
        };
        let far = [(i64::MAX, None), (1 << 62, Some(1 << 62)), (1, Some(u64::MAX)), (1, Some(i64::MAX as u64))];
        for (keep_warm, timeout) in far {
            let req = CreateSandbox {
                image: "busybox".into(),
                keep_warm_seconds: Some(keep_warm),
                timeout_seconds: timeout,
                ..Default::default()
            };
            let v = mgr.offer().validate(&req).unwrap();
            let mut rec = mgr.offer().pending_record(&req, &img, v).unwrap();
            rec.sandbox.state = SandboxState::Running;
            let e = Entry::new(rec);
            let s = mgr.view(&e);
            let idle_only = (keep_warm == 1).then(|| s.last_activity_at + chrono::Duration::seconds(1));
            assert_eq!(s.expires_at, idle_only, "{keep_warm} {timeout:?}");
            let u = api::UpdateSandbox { keep_warm_seconds: Some(i64::MAX), timeout_seconds: Some(u64::MAX), ..Default::default() };
            assert_eq!(mgr.update(&e, &u).unwrap().expires_at, None);
        }
        let now = Utc::now();
        assert_eq!(deadline(now, 10), Some(now + chrono::Duration::seconds(10)));
        assert_eq!(deadline(now, u64::MAX), None);
        assert_eq!(deadline(now, i64::MAX as u64), None);
    }
}
