//! The sandbox manager: every sandbox's record, its lifecycle (create → running → stopping → exited),
//! keep-warm and timeout timers, and re-adoption of running sandboxes when beamd restarts.
//!
//! Sandboxes outlive beamd: their init (PID 1) is a child of beamd only until beamd exits; its bundle
//! (rootfs mount, user namespace bind, layer pins) is detached from beamd's memory. Everything needed
//! to find them again lives on disk: `<root>/sandboxes/<id>/` (record, bundle, init socket, log,
//! status) and the runtime's state under `<run_dir>/runtime`.

use crate::api::{self, CreateSandbox, Sandbox, SandboxState, Security};
use crate::image::store::{ImageRecord, Store};
use crate::runtime::state::Root;
use crate::sandbox::initclient::InitClient;
use crate::sandbox::record::{self, Record};
use chrono::Utc;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// First host uid/gid of sandbox uid ranges, and the size of each range.
pub const UID_BASE: u32 = 0x1000_0000;
pub const UID_RANGE: u32 = 65536;
/// Number of ranges (keeps every host id below 2^31).
pub const UID_SLOTS: u32 = 0x7000;
pub const DEFAULT_KEEP_WARM: i64 = 600;
pub const DEFAULT_CPU: f64 = 1.0;
pub const DEFAULT_MEMORY_MIB: u64 = 1024;
pub const DEFAULT_PIDS: u32 = 1024;
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Entrypoint log bound (the init drops the oldest half past it).
pub const LOG_MAX: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl SandboxError {
    pub fn http_status(&self) -> u16 {
        match self {
            SandboxError::BadRequest(_) => 400,
            SandboxError::NotFound(_) => 404,
            SandboxError::Conflict(_) => 409,
            SandboxError::Internal(_) => 500,
        }
    }
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::BadRequest(_) => "bad_request",
            SandboxError::NotFound(_) => "not_found",
            SandboxError::Conflict(_) => "conflict",
            SandboxError::Internal(_) => "internal",
        }
    }
}

type Result<T> = std::result::Result<T, SandboxError>;

fn internal(what: impl std::fmt::Display) -> impl FnOnce(String) -> SandboxError {
    move |e| SandboxError::Internal(format!("{what}: {e}"))
}

#[derive(Debug, Clone)]
pub struct Config {
    /// State root: the image store (`images/`) and `sandboxes/`.
    pub root: PathBuf,
    /// Runtime state and the init binary (a tmpfs like /run/beam: gone at reboot, with the sandboxes).
    pub run_dir: PathBuf,
    /// Sandbox networking (bridge, veths, NAT, egress policy); None: every sandbox gets loopback only.
    pub network: Option<NetworkConfig>,
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

/// One sandbox in memory.
pub struct Entry {
    pub id: String,
    rec: Mutex<Record>,
    exited: watch::Sender<bool>,
    /// Operations in flight (exec streams, file transfers, log follows): the sandbox is not idle.
    inflight: AtomicUsize,
    /// Unix milliseconds of the last API call on it.
    last_activity: AtomicI64,
}

/// Counts an operation as activity for as long as it lives.
pub struct ActiveGuard(Arc<Entry>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Entry {
    #[doc(hidden)] // pub for fuzz/api_requests
    pub fn new(rec: Record) -> Arc<Entry> {
        let exited = rec.sandbox.state == SandboxState::Exited;
        Arc::new(Entry {
            id: rec.sandbox.id.clone(),
            rec: Mutex::new(rec),
            exited: watch::channel(exited).0,
            inflight: AtomicUsize::new(0),
            last_activity: AtomicI64::new(Utc::now().timestamp_millis()),
        })
    }

    pub fn record(&self) -> Record {
        self.rec.lock().expect("record lock").clone()
    }

    /// Read the record in place (no clone; for hot paths). `f` runs under the record's lock: keep it short.
    pub fn with_record<T>(&self, f: impl FnOnce(&Record) -> T) -> T {
        f(&self.rec.lock().expect("record lock"))
    }

    pub fn state(&self) -> SandboxState {
        self.rec.lock().expect("record lock").sandbox.state
    }

    /// It never came to be (a failed create): wake whoever waits for its exit.
    pub(crate) fn gone(&self) {
        self.exited.send_replace(true);
    }

    /// An API call touched it: push its idle deadline out.
    pub fn touch(&self) {
        self.last_activity.store(Utc::now().timestamp_millis(), Ordering::SeqCst);
    }

    pub fn active(self: &Arc<Self>) -> ActiveGuard {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        ActiveGuard(self.clone())
    }

    /// Resolves when the sandbox has exited.
    pub async fn exited(&self) {
        let mut rx = self.exited.subscribe();
        let _ = rx.wait_for(|e| *e).await;
    }

    /// The API view.
    pub fn view(&self) -> Sandbox {
        let rec = self.rec.lock().expect("record lock");
        let mut s = rec.sandbox.clone();
        let last = chrono::DateTime::from_timestamp_millis(self.last_activity.load(Ordering::SeqCst)).unwrap_or_else(Utc::now);
        s.last_activity_at = last;
        if s.state == SandboxState::Running {
            let idle = u64::try_from(s.keep_warm_seconds).ok().and_then(|k| deadline(last, k));
            let idle = idle.filter(|_| self.inflight.load(Ordering::SeqCst) == 0);
            let timeout = s.timeout_seconds.and_then(|t| deadline(s.created_at, t));
            s.expires_at = match (idle, timeout) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        } else {
            s.expires_at = None;
        }
        s.urls = if s.state == SandboxState::Exited { BTreeMap::new() } else { crate::gateway::urls(&s.id, &s.ports) };
        s
    }
}

/// `at` plus `secs` seconds; None when that is past what a timestamp holds: a deadline that never comes
/// (`keep_warm_seconds`/`timeout_seconds` take any i64/u64; found by fuzz/api_requests — the unchecked sum
/// panicked under the record's lock, poisoning it).
pub(crate) fn deadline(at: chrono::DateTime<Utc>, secs: u64) -> Option<chrono::DateTime<Utc>> {
    at.checked_add_signed(chrono::TimeDelta::try_seconds(i64::try_from(secs).ok()?)?)
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
}

impl Manager {
    /// Open the store and state dirs and install the init binary; [`Manager::recover`] then finds
    /// the sandboxes of a previous beamd.
    pub fn open(cfg: Config) -> Result<Arc<Manager>> {
        let store = Store::open(&cfg.root.join("images")).map_err(|e| SandboxError::Internal(e.to_string()))?;
        let sandboxes_dir = cfg.root.join("sandboxes");
        std::fs::create_dir_all(&sandboxes_dir).map_err(|e| internal(sandboxes_dir.display())(e.to_string()))?;
        check_traversable(&cfg.root, &sandboxes_dir)?;
        let runtime_dir = cfg.run_dir.join("runtime");
        std::fs::create_dir_all(&runtime_dir).map_err(|e| internal(runtime_dir.display())(e.to_string()))?;
        let runtime = Root::new(&runtime_dir).map_err(|e| SandboxError::Internal(e.to_string()))?;
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
            .ok_or_else(|| {
                SandboxError::NotFound(format!("no sandbox {reference:?}; `beam container list -a` shows them all"))
            })
    }

    /// A running sandbox (for exec, files, processes), touched as activity.
    pub fn get_running(&self, reference: &str) -> Result<Arc<Entry>> {
        let e = self.get(reference)?;
        let state = e.state();
        if state != SandboxState::Running {
            return Err(SandboxError::Conflict(format!(
                "sandbox {} is {}, not running; start a new one with `beam run`",
                e.id,
                state.as_str()
            )));
        }
        e.touch();
        Ok(e)
    }

    pub fn list(&self, f: &ListFilter) -> Vec<Sandbox> {
        let entries: Vec<Arc<Entry>> = self.entries.lock().expect("entries lock").values().cloned().collect();
        let mut out: Vec<Sandbox> = entries
            .iter()
            .map(|e| e.view())
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
            return Err(SandboxError::Conflict(format!(
                "a sandbox named {name:?} already exists; pick another name or remove it (`beam rm {name}`)"
            )));
        }
        let mut rec = rec;
        if want_userns {
            let used: std::collections::HashSet<u32> =
                entries.values().filter_map(|e| e.rec.lock().expect("record lock").uid_slot).collect();
            let slot = (0..UID_SLOTS).find(|s| !used.contains(s)).ok_or_else(|| {
                SandboxError::Conflict("every sandbox uid range is in use; stop some sandboxes".into())
            })?;
            rec.uid_slot = Some(slot);
            rec.sandbox.security.uid_base = Some(UID_BASE + slot * UID_RANGE);
        }
        let dir = self.sandbox_dir(&rec.sandbox.id);
        std::fs::create_dir(&dir).map_err(|e| internal(dir.display())(e.to_string()))?;
        if let Err(e) = rec.save(&self.sandboxes_dir) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(internal("saving the sandbox record")(e.to_string()));
        }
        let e = Entry::new(rec);
        entries.insert(e.id.clone(), e.clone());
        Ok(e)
    }

    /// Find an image, or fetch it: the embedded busybox recipe for `busybox`, else a registry pull.
    pub async fn ensure_image(&self, reference: &str, progress: &(dyn Fn(String) + Send + Sync)) -> Result<ImageRecord> {
        if reference.trim().is_empty() {
            return Err(SandboxError::BadRequest("image is empty; name an image, e.g. \"busybox\"".into()));
        }
        if let Ok(img) = self.store.resolve(reference) {
            return Ok(img);
        }
        let store = self.store.clone();
        if matches!(reference, "busybox" | "busybox:latest" | "beam.local/busybox" | "beam.local/busybox:latest") {
            progress(format!("building {reference} from the embedded recipe"));
            let opts = crate::image::recipe::BuildOptions { tag: None, quiet: true };
            return tokio::task::spawn_blocking(move || {
                crate::image::recipe::build_str(&store, crate::image::recipe::BUSYBOX_RECIPE, None, &opts)
            })
            .await
            .map_err(|e| SandboxError::Internal(e.to_string()))?
            .map_err(|e| SandboxError::Internal(e.to_string()));
        }
        progress(format!("pulling {reference}"));
        let opts = crate::image::registry::PullOptions { quiet: true, ..Default::default() };
        let r = reference.to_string();
        // The blocking pull (its own runtime on a scoped thread): the async one's futures aren't `Send`
        // enough for a spawned hyper task.
        let pulled = tokio::task::spawn_blocking(move || crate::image::registry::pull(&store, &r, &opts))
            .await
            .map_err(|e| SandboxError::Internal(e.to_string()))?;
        pulled.map_err(|e| {
            let msg = e.to_string();
            if msg.contains("not found") || msg.contains("invalid reference") || msg.contains("reference") {
                SandboxError::BadRequest(format!("image {reference:?}: {msg}"))
            } else {
                SandboxError::BadRequest(format!("image {reference:?} is not here and could not be pulled: {msg}"))
            }
        })
    }

    /// Change a running sandbox's keep-warm and timeout.
    pub fn update(&self, e: &Arc<Entry>, u: &api::UpdateSandbox) -> Result<Sandbox> {
        if let Some(k) = u.keep_warm_seconds {
            check_keep_warm(k)?;
        }
        if e.state() == SandboxState::Exited {
            return Err(SandboxError::Conflict(format!("sandbox {} has exited; its TTLs can't change", e.id)));
        }
        e.touch();
        if u.block_network.is_some() || u.cidr_allowlist.is_some() {
            let rec = e.record();
            let (Some(net), api::NetworkMode::Bridge) = (&self.net, rec.sandbox.network.mode) else {
                return Err(SandboxError::BadRequest(format!(
                    "sandbox {} has no bridge network; block_network and cidr_allowlist apply to network \"bridge\" only",
                    e.id
                )));
            };
            let block = u.block_network.unwrap_or(rec.sandbox.network.block_network);
            let allow = u.cidr_allowlist.clone().unwrap_or(rec.sandbox.network.cidr_allowlist);
            let policy = parse_policy(block, allow.as_deref())?;
            net.update_policy(&e.id, &policy).map_err(|err| SandboxError::Internal(format!("sandbox networking: {err}")))?;
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
        Ok(e.view())
    }

    /// Validate a create request into the parts the lifecycle needs.
    #[doc(hidden)] // pub for fuzz/api_requests
    pub fn validate(&self, req: &CreateSandbox) -> Result<(f64, u64, u32, i64)> {
        let bad = |m: String| SandboxError::BadRequest(m);
        let cpu = req.cpu.unwrap_or(DEFAULT_CPU);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        if !(cpu >= 0.01 && cpu <= cores) {
            return Err(bad(format!("cpu {cpu} is out of range; ask for 0.01 to {cores} cores (this host has {cores})")));
        }
        let memory = match &req.memory {
            Some(m) => api::parse_memory(m).map_err(bad)?,
            None => DEFAULT_MEMORY_MIB,
        };
        let pids = req.pids.unwrap_or(DEFAULT_PIDS);
        if pids < 8 {
            return Err(bad(format!("pids {pids} is too low for a sandbox; ask for at least 8")));
        }
        let keep_warm = req.keep_warm_seconds.unwrap_or(DEFAULT_KEEP_WARM);
        check_keep_warm(keep_warm)?;
        if let Some(n) = &req.name {
            record::validate_name(n).map_err(bad)?;
        }
        if req.ports.contains(&0) {
            return Err(bad("port 0 is not a port; use 1-65535".into()));
        }
        for (k, v) in &req.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(bad(format!("env {k:?}: names must be non-empty without '=' and values without NUL")));
            }
        }
        for k in req.tags.keys() {
            if k.is_empty() || k.contains('=') {
                return Err(bad(format!("tag {k:?}: keys must be non-empty and without '='")));
            }
        }
        if let Some(p) = &req.landlock {
            crate::sandbox::config::validate_landlock(p).map_err(|e| bad(e.to_string()))?;
        }
        crate::sandbox::config::sandbox_caps(&req.capabilities).map_err(|e| bad(e.to_string()))?;
        if req.network == Some(api::NetworkMode::Bridge) && self.net.is_none() {
            return Err(bad("network \"bridge\" is not available: this beamd runs without sandbox networking; start it with --network bridge".into()));
        }
        if (req.block_network || req.cidr_allowlist.is_some()) && self.network_mode(req) != api::NetworkMode::Bridge {
            return Err(bad("block_network and cidr_allowlist need network \"bridge\" (with network \"none\" there is no egress at all)".into()));
        }
        parse_policy(req.block_network, req.cidr_allowlist.as_deref())?;
        if let Some(w) = &req.workdir
            && !w.starts_with('/')
        {
            return Err(bad(format!("workdir {w:?} must be an absolute path")));
        }
        Ok((cpu, memory, pids, keep_warm))
    }

    /// A fresh pending record for a validated request.
    #[doc(hidden)] // pub for fuzz/api_requests
    pub fn pending_record(&self, req: &CreateSandbox, img: &ImageRecord, v: (f64, u64, u32, i64)) -> Record {
        let now = Utc::now();
        let (cpu, memory_mib, pids, keep_warm_seconds) = v;
        Record {
            sandbox: Sandbox {
                id: record::new_id(),
                name: req.name.clone(),
                image: req.image.clone(),
                image_id: img.id.to_string(),
                state: SandboxState::Pending,
                reason: None,
                exit_code: None,
                error: None,
                entrypoint: None,
                workdir: "/".into(),
                user: "0:0".into(),
                cpu,
                memory_mib,
                pids,
                ports: req.ports.clone(),
                urls: BTreeMap::new(),
                published: req.publish.clone(),
                authorized: req.authorized,
                token: req.authorized.then(crate::gateway::new_token),
                keep_warm_seconds,
                timeout_seconds: req.timeout_seconds.filter(|t| *t > 0),
                tags: req.tags.clone(),
                created_at: now,
                started_at: None,
                exited_at: None,
                last_activity_at: now,
                expires_at: None,
                pid: None,
                security: Security {
                    uid_base: None,
                    seccomp: !req.insecure_no_seccomp,
                    landlock: None,
                    no_new_privs: true,
                    // Checked by validate; an unchecked request gets the default set, never more.
                    capabilities: crate::sandbox::config::sandbox_caps(&req.capabilities)
                        .unwrap_or_else(|_| crate::sandbox::config::sandbox_caps(&[]).expect("the default set")),
                },
                network: api::SandboxNetwork {
                    mode: self.network_mode(req),
                    ip: None,
                    gateway: None,
                    block_network: req.block_network,
                    cidr_allowlist: req.cidr_allowlist.clone(),
                },
            },
            env: Vec::new(),
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            stop_reason: None,
            uid_slot: None,
            pid_start: None,
        }
    }

    /// The network a request gets: as asked, else bridge when beamd has networking.
    pub(crate) fn network_mode(&self, req: &CreateSandbox) -> api::NetworkMode {
        req.network.unwrap_or(if self.net.is_some() { api::NetworkMode::Bridge } else { api::NetworkMode::None })
    }

    /// Remove an exited sandbox's record and dir.
    pub fn forget(&self, e: &Entry) -> Result<()> {
        if e.state() != SandboxState::Exited {
            return Err(SandboxError::Conflict(format!("sandbox {} is still {}; stop it first", e.id, e.state().as_str())));
        }
        let dir = self.sandbox_dir(&e.id);
        std::fs::remove_dir_all(&dir).or_else(not_found_ok).map_err(|err| internal(dir.display())(err.to_string()))?;
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
        SandboxError::Internal(format!(
            "sandbox networking: {e}; or start beamd with --network none (every sandbox loopback only)"
        ))
    };
    let host = match &n.host_netns {
        None => crate::netns::open_current_netns().map_err(err)?,
        Some(p) => std::fs::File::open(p)
            .map(std::os::fd::OwnedFd::from)
            .map_err(|e| SandboxError::Internal(format!("--network-netns {}: {e}", p.display())))?,
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

/// Parse an egress policy's CIDRs.
pub(crate) fn parse_policy(block: bool, allow: Option<&[String]>) -> Result<crate::netns::Policy> {
    let cidrs = allow
        .map(|list| {
            list.iter()
                .map(|c| {
                    c.parse::<ipnet::Ipv4Net>().map_err(|_| {
                        SandboxError::BadRequest(format!("cidr_allowlist entry {c:?} is not an IPv4 CIDR; write it like 10.0.0.0/8 or 1.1.1.1/32"))
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    Ok(crate::netns::Policy { block_network: block, cidr_allowlist: cidrs })
}

/// Sandboxes run as unprivileged host uids (their user namespace's range), and the runtime reaches their
/// root filesystem under `sandboxes` as that uid: every dir on the way must be searchable by others.
/// beamd's own dirs are fixed (o+x); a parent that isn't is an error naming it.
fn check_traversable(root: &Path, sandboxes: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let sandboxes = std::fs::canonicalize(sandboxes).map_err(|e| internal(sandboxes.display())(e.to_string()))?;
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    for dir in sandboxes.ancestors() {
        let Ok(meta) = std::fs::metadata(dir) else { continue };
        let mode = meta.permissions().mode();
        if mode & 0o001 != 0 {
            continue;
        }
        if dir.starts_with(&root) {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o011))
                .map_err(|e| internal(format!("chmod o+x {}", dir.display()))(e.to_string()))?;
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

fn check_keep_warm(k: i64) -> Result<()> {
    if k == -1 || k >= 1 {
        return Ok(());
    }
    Err(SandboxError::BadRequest(format!(
        "keep_warm_seconds {k} is not valid; use a number of seconds ≥ 1, or -1 to never stop an idle sandbox"
    )))
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
        internal(format!("installing the sandbox init at {}", path.display()))(e.to_string())
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keep-warm and timeouts past the end of time (PATCH {"keep_warm_seconds": 9223372036854775807} made
    /// every later view of the sandbox panic): they never expire, and nothing panics.
    #[test]
    fn far_deadlines_never_come() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config { root: d.path().join("root"), run_dir: d.path().join("run"), network: None };
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
            let v = mgr.validate(&req).unwrap();
            let mut rec = mgr.pending_record(&req, &img, v);
            rec.sandbox.state = SandboxState::Running;
            let e = Entry::new(rec);
            let s = e.view();
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
