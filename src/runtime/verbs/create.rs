//! `create`: set up the container and leave its init waiting for `start`.

use super::{Error, Result, write_pid_file};
use crate::runtime::cgroups::{self, Cgroup, CgroupMode};
use crate::runtime::channel::{self, Channel, Msg};
use crate::runtime::hooks;
use crate::runtime::init;
use crate::runtime::mounts::{self, CgroupMount, RootfsOptions};
use crate::runtime::plan::InitPlan;
use crate::runtime::spec::{Bundle, validate_id};
use crate::runtime::state::{ContainerState, Root, Status, pid_start_time};
use crate::runtime::sys::{self, CloneResult};
use nix::errno::Errno;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResources};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    /// The connected console socket, when process.terminal is set.
    pub console: Option<OwnedFd>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    /// Library callers (beamd): the container process's fds 0, 1, 2, … (at least 3); nothing else of
    /// the caller's is inherited and `preserve_fds` is ignored.
    pub fds: Vec<OwnedFd>,
}

/// Undo everything a failed create made: processes, cgroup, state dir.
struct Cleanup<'a> {
    root: &'a Root,
    id: String,
    cgroup: Option<Cgroup>,
    pids: Vec<i32>,
    /// Sharing the caller's mount namespace: the rootfs and the id of the mount on it before create.
    rootfs_before: Option<(PathBuf, Option<u64>)>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for &pid in &self.pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            // Reap it if it is our child (ECHILD otherwise, which is fine).
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        if let Some((rootfs, before)) = &self.rootfs_before {
            // The child's bind of the rootfs (with whatever it mounted on it) is on top: detach it.
            if let Some(now) = mounts::mount_id(rootfs).filter(|now| Some(*now) != *before)
                && let Err(e) = mounts::detach_rootfs(rootfs, now)
            {
                tracing::warn!("cleaning up after a failed create: {e}");
            }
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill_all(Signal::SIGKILL);
            if let Err(e) = cg.destroy() {
                tracing::warn!("cleaning up after a failed create: {e}");
            }
        }
        let _ = self.root.remove(&self.id);
    }
}

/// Receive the next message, turning a child error or hang-up into an `Error`.
fn next<'b>(chan: &Channel, buf: &'b mut [u8]) -> Result<Msg<'b>> {
    match chan.recv(buf) {
        Ok(Msg::Error(text)) => Err(Error::Child(String::from_utf8_lossy(text).into_owned())),
        Ok(m) => Ok(m),
        Err(Errno::EPIPE) => Err(Error::Child("the container process exited during setup".into())),
        Err(e) => Err(Error::errno("reading from the container process")(e)),
    }
}

/// Send to the container process. When that fails because it already exited, the reason it wrote
/// before exiting is still queued on the channel: report that instead of the broken pipe.
fn send(chan: &Channel, msg: &Msg<'_>) -> Result<()> {
    let Err(errno) = chan.send(msg) else { return Ok(()) };
    let mut pfd = [libc::pollfd { fd: chan.raw_fd(), events: libc::POLLIN, revents: 0 }];
    // SAFETY: poll on one live pollfd with a zero timeout.
    if unsafe { libc::poll(pfd.as_mut_ptr(), 1, 0) } == 1 {
        let mut buf = [0u8; 4096];
        if let Ok(Msg::Error(text)) = chan.recv(&mut buf) {
            return Err(Error::Child(String::from_utf8_lossy(text).into_owned()));
        }
    }
    Err(Error::errno("sync with the container process")(errno))
}

fn expect(chan: &Channel, want: Msg<'_>) -> Result<()> {
    let mut buf = [0u8; 4096];
    let got = next(chan, &mut buf)?;
    if std::mem::discriminant(&got) != std::mem::discriminant(&want) {
        return Err(Error::Child(format!("protocol error: expected {want:?}, got {got:?}")));
    }
    Ok(())
}

fn write_proc(pid: i32, file: &str, data: &str) -> Result<()> {
    let p = format!("/proc/{pid}/{file}");
    std::fs::write(&p, data).map_err(Error::io(format!("write {p}")))
}

/// The device rules runc adds after the spec's own: the default /dev nodes, ptys and mknod, plus every
/// node in `linux.devices` — so `devices: [{allow: false}]` (deny all) still leaves a working /dev.
pub(crate) fn with_default_devices(r: &LinuxResources, devices: &[LinuxDevice]) -> LinuxResources {
    let Some(rules) = r.devices().as_ref().filter(|d| !d.is_empty()) else { return r.clone() };
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(typ)
            .major(major.unwrap_or(-1))
            .minor(minor.unwrap_or(-1))
            .access(access)
            .build()
            .expect("device rule")
    };
    let mut all = rules.clone();
    all.push(rule(LinuxDeviceType::C, None, None, "m"));
    all.push(rule(LinuxDeviceType::B, None, None, "m"));
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)] {
        all.push(rule(LinuxDeviceType::C, Some(major), Some(minor), "rwm"));
    }
    all.push(rule(LinuxDeviceType::C, Some(136), None, "rwm"));
    for d in devices {
        all.push(rule(d.typ(), Some(d.major()), Some(d.minor()), "rwm"));
    }
    let mut r = r.clone();
    r.set_devices(Some(all));
    r
}

/// Create the container. On success its init waits in `created` state; on failure nothing is left.
pub fn create(root: &Root, opts: CreateOptions) -> Result<ContainerState> {
    validate_id(&opts.id)?;
    let bundle = Bundle::load(&opts.bundle)?;
    Ok(create_loaded(root, &bundle, opts)?.0)
}

/// `create` on an already loaded bundle; also returns the channel to the waiting init, over which
/// `run` starts it without going through start.sock.
#[allow(clippy::too_many_lines, reason = "create's steps in the order of docs/architecture.md, under one cleanup guard; split before adding to it")]
pub fn create_loaded(root: &Root, bundle: &Bundle, opts: CreateOptions) -> Result<(ContainerState, Channel)> {
    validate_id(&opts.id)?;
    let spec = &bundle.spec;
    let linux = spec.linux().as_ref().expect("validated");
    let process = spec.process().as_ref().expect("validated");
    if process.terminal().unwrap_or(false) && opts.console.is_none() {
        return Err(Error::Usage(
            "process.terminal is true but no --console-socket was given; pass one, or set terminal to false".into(),
        ));
    }
    let dir = root.reserve(&opts.id)?;
    let mut guard = Cleanup { root, id: opts.id.clone(), cgroup: None, pids: vec![], rootfs_before: None, armed: true };

    let cgroup = Cgroup::new(linux.cgroups_path().as_ref().and_then(|p| p.to_str()), &opts.id)?;
    cgroup.create()?;
    guard.cgroup = Some(cgroup.clone());
    if let Some(r) = linux.resources() {
        cgroup.apply(&with_default_devices(r, linux.devices().as_deref().unwrap_or_default()))?;
    }
    std::fs::write(dir.join("config.json"), serde_json::to_vec(spec).expect("spec serializes"))
        .map_err(Error::io("save config.json in the state dir"))?;

    let (_keep, sock_path) = super::short_unix_path(&dir, "start.sock")?;
    let listener = UnixListener::bind(&sock_path).map_err(Error::io(format!("bind {}", sock_path.display())))?;
    let cgroup_mount = match cgroups::mode()? {
        CgroupMode::V2 => CgroupMount::V2,
        _ => CgroupMount::V1 { hierarchies: cgroup.hierarchy_dirs()? },
    };
    let rootfs_opts = RootfsOptions { no_pivot: opts.no_pivot, cgroup: cgroup_mount, bundle: bundle.dir.clone() };
    let mut plan = InitPlan::new(bundle, &rootfs_opts, opts.console, opts.preserve_fds, OwnedFd::from(listener))?;
    let (parent_chan, child_chan) = channel::pair()?;
    if !opts.fds.is_empty() {
        if opts.fds.len() < 3 {
            return Err(Error::Usage("pass stdin, stdout and stderr (at least 3 fds) to the container".into()));
        }
        plan.process.fds = opts.fds.iter().map(|f| f.as_raw_fd()).collect();
        plan.process.preserve_fds = opts.fds.len() as i32 - 3;
    }
    // The child reports errors over its end until execve: keep it clear of the fds installed at 0..n.
    let child_chan = child_chan.at_least(opts.fds.len().max(3) as i32)?;
    let cgroup_fd = cgroup.v2_dir_fd()?;
    plan.late_cgroup = cgroup_fd.is_none() && !plan.runtime_hooks && plan.child_hooks.is_empty();
    if plan.rootfs.inherits_mount_ns() {
        guard.rootfs_before = Some((bundle.rootfs.clone(), mounts::mount_id(&bundle.rootfs)));
    }

    // SAFETY: the caller may be multi-threaded (beamd calls this from its blocking pool), so the child
    // may only do async-signal-safe work: it runs nothing but `init::container_child`, which makes
    // syscalls on memory the plan prepared before clone (no allocation, no locks; see plan.rs) and
    // never returns (it execs or `_exit`s).
    let pid = match unsafe { sys::clone(plan.ns.clone_flags, cgroup_fd.as_ref().map(|f| f.as_raw_fd())) } {
        Ok(CloneResult::Child) => {
            // SAFETY: closing our copy of the parent's end so that a dead parent reads as EOF here.
            unsafe { libc::close(parent_chan.raw_fd()) };
            init::container_child(&plan, &child_chan)
        }
        Ok(CloneResult::Parent(pid)) => pid,
        Err(e) => return Err(Error::errno("clone3 (creating the container's namespaces)")(e)),
    };
    drop(child_chan);
    guard.pids.push(pid);

    let ns = &plan.ns;
    if ns.unshare_user {
        expect(&parent_chan, Msg::UserNs)?;
    }
    if ns.new_user {
        write_proc(pid, "uid_map", &ns.uid_map)?;
        write_proc(pid, "gid_map", &ns.gid_map)?;
    }
    if let Some(adj) = process.oom_score_adj() {
        write_proc(pid, "oom_score_adj", &adj.to_string())?;
    }
    let recv_init_pid = |chan: &Channel| -> Result<i32> {
        let mut buf = [0u8; 64];
        match next(chan, &mut buf)? {
            Msg::Pid(p) => Ok(p),
            m => Err(Error::Child(format!("protocol error: expected the init pid, got {m:?}"))),
        }
    };
    let mut init_pid = pid;
    if plan.late_cgroup {
        // Let the child mount while we join it to the v1 hierarchies (see InitPlan::late_cgroup). With a
        // fork into the pid namespace the init is the one to join: it was forked before any join, and
        // it mounts while we write its pid.
        send(&parent_chan, &Msg::Go)?;
        if ns.fork {
            init_pid = recv_init_pid(&parent_chan)?;
            guard.pids.insert(0, init_pid);
        }
        cgroup.add_pid(init_pid)?;
        send(&parent_chan, &Msg::CgroupJoined)?;
    } else {
        if cgroup_fd.is_none() {
            cgroup.add_pid(pid)?;
        }
        send(&parent_chan, &Msg::Go)?;
        if ns.fork {
            init_pid = recv_init_pid(&parent_chan)?;
            guard.pids.insert(0, init_pid);
        }
    }
    if ns.fork {
        let _ = waitpid(Pid::from_raw(pid), None);
    }
    let mut state = ContainerState {
        id: opts.id.clone(),
        pid: init_pid,
        pid_start: pid_start_time(init_pid).unwrap_or(0),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: chrono::Utc::now(),
        owner: "root".into(),
        cgroup: cgroup.clone(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        started: false,
        rootfs_mount: None,
    };
    let creating = serde_json::to_vec(&state.oci_json(Status::Creating)).expect("state serializes");
    if !plan.child_hooks.is_empty() {
        send(&parent_chan, &Msg::State(&creating))?;
    }
    if plan.runtime_hooks {
        expect(&parent_chan, Msg::CreateRuntime)?;
        let h = spec.hooks().as_ref().expect("runtime_hooks implies hooks");
        #[allow(deprecated)]
        // runtime-tools (and crun) expect "created" on a prestart hook's stdin; createRuntime sees
        // "creating", as in runc: the container is still being set up when either runs.
        let created = serde_json::to_vec(&state.oci_json(Status::Created)).expect("state serializes");
        hooks::run_hooks("prestart", h.prestart().as_deref().unwrap_or_default(), &created)?;
        hooks::run_hooks("createRuntime", h.create_runtime().as_deref().unwrap_or_default(), &creating)?;
        send(&parent_chan, &Msg::HooksDone)?;
    }
    expect(&parent_chan, Msg::Ready)?;
    // Re-read the start time now that the init certainly exists in its final form.
    state.pid_start = pid_start_time(init_pid).unwrap_or(state.pid_start);
    if plan.rootfs.inherits_mount_ns() {
        state.rootfs_mount = mounts::mount_id(&bundle.rootfs);
    }
    root.save(&state)?;
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, init_pid)?;
    }
    guard.armed = false;
    Ok((state, parent_chan))
}
