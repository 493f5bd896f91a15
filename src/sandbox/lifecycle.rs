//! Sandbox lifecycle: create, watch for exit, finish, stop.

use super::config::{self, InitArgs, Limits};
use super::entry::Entry;
use super::error::{Result, SandboxError};
use super::manager::{LOG_MAX, Manager};
use super::uids::UID_RANGE;
use super::ports;
use super::record::{self, Record};
use crate::api::{CreateSandbox, ExitReason, Sandbox, SandboxState};
use crate::image::bundle::{self, Overrides};
use crate::image::store::ImageRecord;
use crate::runtime::state::{ContainerState, pid_start_time};
use crate::runtime::verbs;
use chrono::Utc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// What the blocking part of create learned.
/// The host side of a bridge network, made by a task running beside the sandbox's creation
/// ([`crate::netns::Network::reserve`]); unused for loopback-only sandboxes.
type NetReservation = std::sync::mpsc::Receiver<crate::netns::Result<crate::netns::Reserved>>;

struct Created {
    state: ContainerState,
    env: Vec<String>,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    entrypoint: Option<Vec<String>>,
    workdir: String,
    landlock: Option<crate::api::LandlockPolicy>,
    /// Bridge mode: its address.
    network: Option<crate::netns::SandboxNet>,
}

fn open_fd(path: &Path, flags: i32, mode: u32) -> std::io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: open with a NUL-terminated path; the fd is owned by the returned OwnedFd.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A listening SOCK_SEQPACKET unix socket at `path` (the init's control socket).
fn control_listener(path: &Path) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, listen, socket, Backlog};
    let _ = std::fs::remove_file(path);
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
    bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    listen(&fd, Backlog::new(128).expect("backlog"))?;
    Ok(fd)
}

impl Manager {
    /// Create and start a sandbox; returns once its init answers.
    pub async fn create(self: &Arc<Self>, req: CreateSandbox) -> Result<Sandbox> {
        let offer = self.offer();
        let limits = offer.validate(&req)?;
        // Host ports first: a taken one fails the create before anything is made.
        let forwards = req
            .publish
            .iter()
            .map(|p| ports::bind(p).map(|l| (l, p.port)))
            .collect::<Result<Vec<_>>>()?;
        let img = super::images::ensure_image(&self.store, &req.image, &|_| {}).await?;
        let rec = offer.pending_record(&req, &img, limits)?;
        let policy = super::validate::parse_policy(req.block_network, req.cidr_allowlist.as_deref())?;
        let e = self.reserve(rec, !req.insecure_no_userns)?;
        // A bridge network's host side (lease, firewall: an `nft` run) is made while the sandbox is.
        let (net_tx, net_rx) = std::sync::mpsc::sync_channel(1);
        let reserving = match (&self.net, offer.network_mode(&req)) {
            (Some(net), crate::api::NetworkMode::Bridge) => {
                let (net, id) = (net.clone(), e.id.clone());
                let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                // A thread of its own, not the blocking pool: create_blocking waits for it there, and a full
                // pool must not be able to starve it.
                // If it can't start, its channels close: the create fails with "never set up".
                let started = std::thread::Builder::new().name("beam-net-reserve".into()).spawn(move || {
                    let _ = net_tx.send(net.reserve(&id, &policy));
                    let _ = done_tx.send(());
                });
                if let Err(err) = started {
                    tracing::warn!(sandbox = %e.id, "starting the network setup thread: {err}");
                }
                Some(done_rx)
            }
            _ => None,
        };
        let mgr = self.clone();
        let (e2, req2) = (e.clone(), req.clone());
        let created = tokio::task::spawn_blocking(move || mgr.create_blocking(&e2, &req2, &img, net_rx))
            .await
            .map_err(|err| SandboxError::Internal(format!("the create task failed: {err}")));
        let bridged = reserving.is_some();
        if let Some(r) = reserving {
            let _ = r.await;
        }
        let c = match created.and_then(|c| c) {
            Ok(c) => c,
            Err(err) => {
                // The reservation is finished by now (awaited above): release it, whatever failed.
                if let (Some(net), true) = (&self.net, bridged) {
                    let (net, id) = (net.clone(), e.id.clone());
                    let _ = tokio::task::spawn_blocking(move || net.detach(&id)).await;
                }
                e.gone();
                self.remove_entry(&e.id);
                let _ = std::fs::remove_dir_all(self.sandbox_dir(&e.id));
                return Err(err);
            }
        };
        let pid = c.state.pid;
        self.update_record(&e, |r| {
            r.env = c.env;
            r.uid = c.uid;
            r.gid = c.gid;
            r.groups = c.groups;
            r.sandbox.entrypoint = c.entrypoint;
            r.sandbox.workdir = c.workdir;
            r.sandbox.user = format!("{}:{}", c.uid, c.gid);
            r.sandbox.security.landlock = c.landlock;
            if let Some(n) = &c.network {
                r.sandbox.network.ip = Some(n.ip.to_string());
                r.sandbox.network.gateway = Some(n.gateway.to_string());
            }
            // A stop that came in while it was being created keeps it `stopping` (SIGTERM below).
            if r.sandbox.state == SandboxState::Pending {
                r.sandbox.state = SandboxState::Running;
            }
            r.sandbox.started_at = Some(Utc::now());
            r.sandbox.pid = Some(pid);
            r.pid_start = Some(c.state.pid_start);
        });
        self.watch(e.clone(), pid);
        for (l, port) in forwards {
            ports::serve(self.dialer(), e.clone(), l, port);
        }
        if e.record().stop_reason.is_some() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            return Ok(self.view(&e));
        }
        // The init accepts on its socket once it runs; one ping proves it serves.
        let ping = tokio::time::timeout(Duration::from_secs(10), self.init_client(&e).ping()).await;
        match ping {
            Ok(Ok(_)) => {}
            Ok(Err(err)) if e.state() != SandboxState::Exited => {
                tracing::warn!(sandbox = %e.id, "the init did not answer: {err}");
            }
            Err(_) => tracing::warn!(sandbox = %e.id, "the init did not answer within 10 s"),
            _ => {}
        }
        tracing::info!(sandbox = %e.id, image = %req.image, pid, "sandbox running");
        e.touch();
        Ok(self.view(&e))
    }

    fn create_blocking(&self, e: &Entry, req: &CreateSandbox, img: &ImageRecord, reserved: NetReservation) -> Result<Created> {
        let rec = e.record();
        let id = &rec.sandbox.id;
        let dir = self.sandbox_dir(id);
        let has_entrypoint = req.entrypoint.is_some() || req.cmd.is_some() || req.image_command;
        let overrides = Overrides {
            entrypoint: if has_entrypoint { req.entrypoint.clone() } else { Some(vec![config::INIT_PATH.into()]) },
            cmd: if has_entrypoint { req.cmd.clone() } else { Some(vec![]) },
            env: req.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            workdir: req.workdir.clone(),
            user: req.user.clone(),
            readonly: false,
            network: false,
            terminal: false,
            hostname: Some(id.clone()),
            userns: rec.sandbox.security.uid_base.map(|b| (b, b, UID_RANGE)),
        };
        let b = bundle::create(&self.store, img, &dir.join(record::BUNDLE_DIR), &overrides)?;
        // From here on, a failure must undo the bundle (Drop of `b` unmounts and unpins).
        let config_path = b.config_path();
        let read = std::fs::read(&config_path).map_err(SandboxError::io(config_path.display()))?;
        let mut spec: serde_json::Value = serde_json::from_slice(&read)
            .map_err(|err| SandboxError::Internal(format!("{}: {err}", config_path.display())))?;
        let proc_ = &spec["process"];
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
        };
        let args = strings(&proc_["args"]);
        let env = strings(&proc_["env"]);
        let workdir = proc_["cwd"].as_str().unwrap_or("/").to_string();
        let uid = proc_["user"]["uid"].as_u64().unwrap_or(0) as u32;
        let gid = proc_["user"]["gid"].as_u64().unwrap_or(0) as u32;
        let groups: Vec<u32> = proc_["user"]["additionalGids"]
            .as_array()
            .map(|a| a.iter().filter_map(|g| g.as_u64().map(|g| g as u32)).collect())
            .unwrap_or_default();
        let entrypoint = has_entrypoint.then_some(args);
        let landlock = if req.insecure_no_landlock || self.landlock_abi == 0 {
            None
        } else {
            Some(config::landlock_policy(req.landlock.as_ref(), &b.rootfs.merged))
        };
        let init = InitArgs { entrypoint: entrypoint.clone().unwrap_or_default(), uid, gid, groups: groups.clone(), log_max: LOG_MAX };
        let limits = Limits { cpu: rec.sandbox.cpu, memory_mib: rec.sandbox.memory_mib, pids: rec.sandbox.pids };
        let hardening = config::Hardening {
            landlock: landlock.as_ref().map(|(p, be)| (p, *be)),
            seccomp: !req.insecure_no_seccomp,
            capabilities: &rec.sandbox.security.capabilities,
            mapped_ids: rec.sandbox.security.uid_base.map(|_| UID_RANGE),
        };
        config::sandbox_spec(&mut spec, id, &self.init_path, &init, limits, hardening);
        std::fs::write(&config_path, serde_json::to_vec_pretty(&spec).expect("spec serializes"))
            .map_err(SandboxError::io(config_path.display()))?;

        let io = SandboxError::io;
        let devnull = open_fd(Path::new("/dev/null"), libc::O_RDONLY, 0).map_err(io("/dev/null"))?;
        let init_log = dir.join(record::INIT_LOG_FILE);
        let diag = open_fd(&init_log, libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND, 0o600).map_err(io("init log"))?;
        let diag2 = diag.try_clone().map_err(io("init log"))?;
        let listener = control_listener(&dir.join(record::INIT_SOCKET)).map_err(io("the init's control socket"))?;
        let log = open_fd(&dir.join(record::LOG_FILE), libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND, 0o600)
            .map_err(io("the sandbox log"))?;
        let status = open_fd(&dir.join(record::STATUS_FILE), libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o600)
            .map_err(io("the status file"))?;

        let loaded = crate::runtime::spec::Bundle::load(&b.dir).map_err(verbs::Error::from)?;
        let opts = verbs::create::CreateOptions {
            id: id.clone(),
            bundle: b.dir.clone(),
            pid_file: None,
            console: None,
            preserve_fds: 0,
            no_pivot: false,
            fds: vec![devnull, diag, diag2, listener, log, status],
        };
        let (mut st, chan) = verbs::create::create_loaded(&self.runtime, &loaded, opts).map_err(SandboxError::from)?;
        // Before the entrypoint runs: its network (a veth on beamd's bridge, or loopback only).
        let network = match self.setup_network(&rec, &st, &b.rootfs.merged, reserved) {
            Ok(n) => n,
            Err(err) => {
                drop(chan);
                let _ = verbs::delete::delete(&self.runtime, id, true);
                if let Some(net) = &self.net {
                    let _ = net.detach(id);
                }
                return Err(err);
            }
        };
        if let Err(err) = verbs::run::start_over_channel(&chan) {
            drop(chan);
            let _ = verbs::delete::delete(&self.runtime, id, true);
            if let (Some(net), Some(_)) = (&self.net, &network) {
                let _ = net.detach(id);
            }
            return Err(err.into());
        }
        drop(chan);
        verbs::start::started(&self.runtime, &mut st, &loaded.spec).map_err(SandboxError::from)?;
        b.detach();
        Ok(Created {
            state: st,
            env,
            uid,
            gid,
            groups,
            entrypoint,
            workdir,
            landlock: landlock.map(|(p, _)| p),
            network,
        })
    }

    /// Bridge mode: a veth with a leased address, the egress policy, /etc/resolv.conf and /etc/hosts in
    /// the rootfs. None mode: loopback up.
    fn setup_network(
        &self,
        rec: &Record,
        st: &ContainerState,
        rootfs: &Path,
        reserved: NetReservation,
    ) -> Result<Option<crate::netns::SandboxNet>> {
        let id = &rec.sandbox.id;
        let net_err = SandboxError::Net;
        let (Some(net), crate::api::NetworkMode::Bridge) = (&self.net, rec.sandbox.network.mode) else {
            let ns = crate::netns::open_netns_of_pid(st.pid).map_err(net_err)?;
            crate::netns::loopback_up(std::os::fd::AsFd::as_fd(&ns)).map_err(net_err)?;
            return Ok(None);
        };
        let r = reserved
            .recv()
            .map_err(|_| SandboxError::Internal("sandbox networking: the host side was never set up".into()))?
            .map_err(net_err)?;
        let ns = crate::netns::open_netns_of_pid(st.pid).map_err(net_err)?;
        let sn = net.connect(id, &r, std::os::fd::AsFd::as_fd(&ns)).map_err(net_err)?;
        let fs = super::files::SandboxFs::open_root(rootfs, rec.sandbox.security.uid_base).map_err(|e| {
            let _ = net.detach(id);
            SandboxError::Internal(format!("opening the sandbox's root filesystem: {e}"))
        })?;
        let write = |path: &str, text: &str| -> std::result::Result<(), super::files::FilesError> {
            let mut up = fs.create_file(path, 0o644)?;
            std::io::Write::write_all(&mut up, text.as_bytes()).map_err(|e| super::files::FilesError::Io {
                path: path.into(),
                op: "write",
                source: e,
            })?;
            up.commit().map(|_| ())
        };
        let written = fs
            .mkdir("/etc", true, 0o755)
            .and_then(|_| write("/etc/resolv.conf", &sn.resolv_conf))
            .and_then(|_| write("/etc/hosts", &sn.hosts));
        if let Err(e) = written {
            let _ = net.detach(id);
            return Err(SandboxError::Internal(format!("writing the sandbox's /etc/resolv.conf and /etc/hosts: {e}")));
        }
        Ok(Some(sn))
    }

    /// Follow the init's exit (pidfd) and then clean up.
    pub(crate) fn watch(self: &Arc<Self>, e: Arc<Entry>, pid: i32) {
        let mgr = self.clone();
        tokio::spawn(async move {
            match crate::runtime::sys::pidfd_open(pid) {
                // SAFETY: the pidfd is an OwnedFd the AsyncFd owns until it drops.
                Ok(fd) => match unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) } {
                    Ok(afd) => {
                        let _ = afd.readable().await;
                    }
                    Err(err) => {
                        tracing::error!(sandbox = %e.id, "watching pid {pid}: {err}; polling instead");
                        while nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok() {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                },
                Err(err) => tracing::debug!(sandbox = %e.id, "pidfd_open({pid}): {err}: already gone"),
            }
            let m = mgr.clone();
            let e2 = e.clone();
            let _ = tokio::task::spawn_blocking(move || m.finish(&e2)).await;
        });
    }

    /// The init is gone: decide why, tear everything down, record it.
    pub(super) fn finish(&self, e: &Entry) {
        let rec = e.record();
        let id = &rec.sandbox.id;
        if let Some(pid) = rec.sandbox.pid {
            // Reap it if it is our child (it is, unless beamd restarted since).
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        }
        let dir = self.sandbox_dir(id);
        let st = self.runtime.load(id).ok();
        let oom = st.as_ref().and_then(|s| s.cgroup.oom_kill_count().ok()).unwrap_or(0) > 0;
        let status = std::fs::read_to_string(dir.join(record::STATUS_FILE))
            .ok()
            .and_then(|t| super::initproto::parse_status(&t));
        let last_diag = std::fs::read_to_string(dir.join(record::INIT_LOG_FILE))
            .ok()
            .and_then(|t| t.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_string));
        let (reason, code, error) = match (rec.stop_reason, status) {
            (Some(r), s) => (r, s.map(|s| s.0), None),
            (None, s) if oom && s.is_none_or(|s| s.1 == libc::SIGKILL) => (ExitReason::OomKilled, Some(137), None),
            (None, Some((code, _))) => (ExitReason::Exited, Some(code), last_diag.filter(|_| code == 126 || code == 127)),
            (None, None) => (
                ExitReason::Error,
                None,
                Some(last_diag.unwrap_or_else(|| "the sandbox's init died without reporting a status".into())),
            ),
        };
        let torn = match &st {
            Some(st) => verbs::delete::destroy(&self.runtime, st),
            None => verbs::delete::delete(&self.runtime, id, true),
        };
        if let Err(err) = torn {
            tracing::error!(sandbox = %id, "removing the container: {err}");
        }
        if let Err(err) = bundle::remove_stale(&self.store, &dir.join(record::BUNDLE_DIR)) {
            tracing::error!(sandbox = %id, "removing the bundle: {err}");
        }
        let _ = std::fs::remove_file(dir.join(record::INIT_SOCKET));
        if let Some(net) = &self.net
            && let Err(err) = net.detach(id)
        {
            tracing::error!(sandbox = %id, "releasing the network: {err}");
        }
        tracing::info!(sandbox = %id, reason = ?reason, code = ?code, "sandbox exited");
        self.update_record(e, |r| {
            r.sandbox.state = SandboxState::Exited;
            r.sandbox.reason = Some(reason);
            r.sandbox.exit_code = code;
            r.sandbox.error = error;
            r.sandbox.exited_at = Some(Utc::now());
            r.sandbox.pid = None;
            r.uid_slot = None;
        });
    }

    /// Stop a sandbox: SIGTERM to its init (forwarded to the entrypoint), SIGKILL to its cgroup after
    /// `grace`. Returns once it has exited.
    pub async fn stop(self: &Arc<Self>, e: &Arc<Entry>, reason: ExitReason, grace: Duration) -> Sandbox {
        let rec = e.record();
        if rec.sandbox.state == SandboxState::Exited {
            return self.view(e);
        }
        let first = rec.stop_reason.is_none();
        let rec = self.update_record(e, |r| {
            r.stop_reason.get_or_insert(reason);
            if matches!(r.sandbox.state, SandboxState::Running | SandboxState::Pending) {
                r.sandbox.state = SandboxState::Stopping;
            }
        });
        if let (true, Some(pid)) = (first, rec.sandbox.pid)
            && rec.pid_start.is_none_or(|s| pid_start_time(pid) == Some(s))
        {
            tracing::info!(sandbox = %e.id, ?reason, "stopping");
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(grace, e.exited()).await.is_err() {
            tracing::info!(sandbox = %e.id, "still running {} s after SIGTERM: SIGKILL", grace.as_secs());
            if let Ok(st) = self.runtime.load(&e.id) {
                let _ = st.cgroup.kill_all(Signal::SIGKILL);
            }
            if let Some(pid) = rec.sandbox.pid
                && rec.pid_start.is_none_or(|s| pid_start_time(pid) == Some(s))
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            e.exited().await;
        }
        self.view(e)
    }
}
