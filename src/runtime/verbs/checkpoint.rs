//! `checkpoint` and `restore` (runc's verbs): a running container's processes — memory, open files,
//! pipes, sockets, namespaces and mount tree — dumped to an image dir by CRIU, and a container brought
//! back from one (under the same or a new id, with its own cgroup).
//!
//! CRIU is driven through its command line (`criu dump` / `criu restore`), not its RPC: one process per
//! dump or restore with the same options runc passes over RPC, a log file that names the failure, and no
//! protobuf code in beam. How runc hands a container to CRIU, and what beam does the same way:
//! - the container's stdio usually points outside it (the caller's /dev/null, pipes, a log file): each is
//!   declared external at dump (`--external file[MNT:INO]`) and recorded in `descriptors.json` in the
//!   image dir; at restore the caller's own fds 0–2 take their place (`--inherit-fd`);
//! - bind mounts come from outside the container: declared `--external mnt[DEST]:DEST` at dump and mapped
//!   to the bundle's sources at restore;
//! - the restored processes go into the new container's own cgroup: CRIU runs inside it (it writes
//!   itself to `cgroup.procs` before exec) with `--manage-cgroups=ignore`, in a private mount namespace
//!   where the rootfs is a bind mount of itself (`--root`), so nothing is left on the host's mount table.
//!
//! Without `--leave-running` the checkpointed container is destroyed afterwards, as runc does.

use super::{Error, Result};
use crate::runtime::cgroups::Cgroup;
use crate::runtime::mounts::{MountInfo, mountinfo_of};
use crate::runtime::spec::Bundle;
use crate::runtime::state::{ContainerState, Root, Status, pid_start_time};
use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What stdio pointed to, saved beside CRIU's images (runc's file of the same name).
const DESCRIPTORS: &str = "descriptors.json";
/// The container's cgroup mounts that show only its own cgroup (no cgroup namespace: podman on v1):
/// `[mount point, controllers]`, re-pointed at the new container's cgroup on restore.
const CGROUP_MOUNTS: &str = "beam-cgroup-mounts.json";

/// CRIU's options shared by both verbs (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct CriuOptions {
    /// The criu binary (`--criu`, else `criu` on PATH).
    pub criu: Option<PathBuf>,
    pub image_path: PathBuf,
    /// Where CRIU writes its log (default: the image dir).
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
}

impl CriuOptions {
    fn binary(&self) -> PathBuf {
        self.criu.clone().unwrap_or_else(|| PathBuf::from("criu"))
    }

    /// `criu --version`'s (major, minor).
    fn version(&self) -> Option<(u32, u32)> {
        let out = Command::new(self.binary()).arg("--version").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let v = text.lines().find_map(|l| l.strip_prefix("Version:"))?.trim();
        let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
        Some((parts.next()??, parts.next()??))
    }

    fn work(&self) -> &Path {
        self.work_path.as_deref().unwrap_or(&self.image_path)
    }

    fn common(&self, cmd: &mut Command, log: &str) {
        cmd.arg("--images-dir").arg(&self.image_path).arg("--work-dir").arg(self.work()).args(["--log-file", log, "-v4"]);
        // CRIU locks the network during a dump (iptables/nft rules) only to keep established TCP
        // connections consistent: without them there is nothing to lock, and a host without iptables or
        // nf_tables would fail for no reason. `skip` exists since CRIU 3.18 (Debian 12 has 3.17).
        if !self.tcp_established && self.version().is_some_and(|v| v >= (3, 18)) {
            cmd.args(["--network-lock", "skip"]);
        }
        for (on, flag) in [
            (self.tcp_established, "--tcp-established"),
            (self.ext_unix_sk, "--ext-unix-sk"),
            (self.shell_job, "--shell-job"),
            (self.file_locks, "--file-locks"),
        ] {
            if on {
                cmd.arg(flag);
            }
        }
    }

    /// Run CRIU with our stdio (a restore hands our fds 0-2 to the container: `--inherit-fd`); on
    /// failure, the last errors of its log in the error.
    fn run(&self, mut cmd: Command, what: &str, log: &str) -> Result<()> {
        let status = cmd.status().map_err(|e| {
            Error::Usage(format!(
                "{what}: running {}: {e}; install CRIU ≥ 4.1 on kernels ≥ 6.13 (scripts/deps.sh builds it) or pass --criu PATH",
                self.binary().display()
            ))
        })?;
        if status.success() {
            return Ok(());
        }
        let log_text = std::fs::read_to_string(self.work().join(log)).unwrap_or_default();
        let lines: Vec<&str> = log_text.lines().collect();
        // The first error that matters (not the harmless rlimit one) and what CRIU logged just before it.
        let first = lines.iter().position(|l| l.contains("Error") && !l.contains("RLIMIT_NOFILE"));
        let tail = first
            .map(|i| lines[i.saturating_sub(2)..(i + 2).min(lines.len())].iter().map(|l| l.trim()).collect::<Vec<_>>().join(" | "))
            .unwrap_or_default();
        Err(Error::Child(format!(
            "{what} failed ({status}){}; the whole log is {}",
            if tail.is_empty() { String::new() } else { format!(": {tail}") },
            self.work().join(log).display()
        )))
    }
}

/// Bind mounts of the spec: (destination, source). CRIU must be told they come from outside.
fn bind_mounts(spec: &oci_spec::runtime::Spec) -> Vec<(PathBuf, PathBuf)> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| {
            m.typ().as_deref() == Some("bind")
                || m.options().iter().flatten().any(|o| o == "bind" || o == "rbind")
        })
        .filter_map(|m| Some((m.destination().clone(), m.source().clone()?)))
        .collect()
}

/// `checkpoint`: dump a running container into `o.image_path`.
pub fn checkpoint(root: &Root, id: &str, o: &CriuOptions, leave_running: bool) -> Result<()> {
    let st = root.load(id)?;
    let status = st.status();
    if status != Status::Running {
        return Err(Error::WrongState { id: id.into(), status, hint: "only a running container can be checkpointed" });
    }
    std::fs::create_dir_all(&o.image_path).map_err(Error::io(format!("creating {}", o.image_path.display())))?;
    std::fs::create_dir_all(o.work()).map_err(Error::io(format!("creating {}", o.work().display())))?;
    let spec = super::saved_spec(root, id)?;
    let mut cmd = Command::new(o.binary());
    cmd.arg("dump").arg("--tree").arg(st.pid.to_string()).arg("--root").arg(&st.rootfs);
    o.common(&mut cmd, "dump.log");
    if leave_running {
        cmd.arg("--leave-running");
    }
    for (dest, _) in bind_mounts(&spec) {
        cmd.arg("--external").arg(format!("mnt[{}]:{}", dest.display(), dest.display()));
    }
    // Cgroup mounts whose root is the container's own cgroup, not the hierarchy's root: CRIU can't
    // dump them as mounts of their own; they are external, bound to the new cgroup on restore.
    let mounts = mountinfo_of(&format!("/proc/{}/mountinfo", st.pid))
        .map_err(Error::io(format!("reading /proc/{}/mountinfo", st.pid)))?;
    let cgroup_mounts = own_cgroup_mounts(&mounts);
    for (mp, _) in &cgroup_mounts {
        cmd.arg("--external").arg(format!("mnt[{mp}]:{mp}"));
    }
    let cg = serde_json::to_vec(&cgroup_mounts).expect("cgroup mounts serialize");
    std::fs::write(o.image_path.join(CGROUP_MOUNTS), cg).map_err(Error::io(format!("writing {CGROUP_MOUNTS}")))?;
    // stdio that points outside the container's mount namespace.
    let inside: HashSet<u64> = mounts.iter().map(|m| m.id).collect();
    let mut descriptors = Vec::new();
    for fd in 0..3 {
        let target = std::fs::read_link(format!("/proc/{}/fd/{fd}", st.pid))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let key = if target.starts_with("pipe:") || target.starts_with("socket:") {
            target
        } else {
            match fd_mount_and_inode(st.pid, fd) {
                Some((mnt, ino)) if !inside.contains(&mnt) => {
                    let key = format!("file[{mnt:x}:{ino:x}]");
                    cmd.arg("--external").arg(&key);
                    key
                }
                _ => String::new(),
            }
        };
        descriptors.push(key);
    }
    let d = serde_json::to_vec(&descriptors).expect("descriptors serialize");
    std::fs::write(o.image_path.join(DESCRIPTORS), d).map_err(Error::io("writing descriptors.json"))?;
    o.run(cmd, &format!("checkpoint of container {id:?}"), "dump.log")?;
    if !leave_running {
        super::wait_pid_gone(st.pid, std::time::Duration::from_secs(10));
        super::delete::destroy(root, &st)?;
    }
    Ok(())
}

/// `(mount point, controllers)` of each cgroup mount whose root is not its hierarchy's root.
fn own_cgroup_mounts(mounts: &[MountInfo]) -> Vec<(String, String)> {
    mounts
        .iter()
        .filter(|m| matches!(m.fstype.as_str(), "cgroup" | "cgroup2") && m.root != "/")
        .map(|m| {
            let controllers = match m.fstype.as_str() {
                "cgroup2" => String::new(),
                _ => m.super_options.split(',').filter(|o| is_cgroup_controller(o)).collect::<Vec<_>>().join(","),
            };
            (m.mount_point.clone(), controllers)
        })
        .collect()
}

/// A v1 mount option that names a hierarchy (a controller, or `name=…`), not a mount flag.
fn is_cgroup_controller(o: &str) -> bool {
    !matches!(o, "rw" | "ro" | "xattr" | "noprefix" | "clone_children" | "cpuset_v2_mode" | "favordynmods") && !o.starts_with("release_agent=")
}

/// The new cgroup's dir for a recorded hierarchy (same controllers; "" is v2).
fn hierarchy_dir(dirs: &[(String, PathBuf)], controllers: &str) -> Option<PathBuf> {
    let want: HashSet<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
    dirs.iter()
        .find(|(name, _)| name.split(',').filter(|c| !c.is_empty()).collect::<HashSet<_>>() == want)
        .map(|(_, d)| d.clone())
}

/// The mount id (from fdinfo) and inode of a process's fd.
fn fd_mount_and_inode(pid: i32, fd: i32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let mnt = info.lines().find_map(|l| l.strip_prefix("mnt_id:"))?.trim().parse().ok()?;
    let ino = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).ok()?.ino();
    Some((mnt, ino))
}

/// `restore`'s options beyond CRIU's.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    /// Return once restored (else wait for the container's init and return its exit status).
    pub detach: bool,
    pub criu: CriuOptions,
}

/// `restore`: a new container `o.id` from the images in `o.criu.image_path`, on the bundle's rootfs.
pub fn restore(root: &Root, o: &RestoreOptions) -> Result<i32> {
    let bundle = Bundle::load(&o.bundle)?;
    let c = &o.criu;
    let descriptors: Vec<String> = std::fs::read(c.image_path.join(DESCRIPTORS))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            Error::Usage(format!(
                "{} has no readable {DESCRIPTORS}: is it a beam-oci (or runc) checkpoint? (--image-path)",
                c.image_path.display()
            ))
        })?;
    let dir = root.reserve(&o.id)?;
    let linux = bundle.spec.linux().clone().unwrap_or_default();
    let cgroup = match Cgroup::new(linux.cgroups_path().as_ref().and_then(|p| p.to_str()), &o.id) {
        Ok(cg) => cg,
        Err(e) => {
            let _ = root.remove(&o.id);
            return Err(e.into());
        }
    };
    let restored = (|| -> Result<i32> {
        cgroup.create()?;
        if let Some(r) = linux.resources() {
            cgroup.apply(&super::create::with_default_devices(r, linux.devices().as_deref().unwrap_or_default()))?;
        }
        std::fs::write(dir.join("config.json"), serde_json::to_vec(&bundle.spec).expect("spec serializes"))
            .map_err(Error::io("save config.json in the state dir"))?;
        std::fs::create_dir_all(c.work()).map_err(Error::io(format!("creating {}", c.work().display())))?;
        let pid_file = dir.join("criu.pid");
        let mut cmd = Command::new(c.binary());
        cmd.arg("restore").arg("--root").arg(&bundle.rootfs).arg("--restore-detached").arg("--pidfile").arg(&pid_file);
        cmd.arg("--manage-cgroups=ignore");
        c.common(&mut cmd, "restore.log");
        for (dest, src) in bind_mounts(&bundle.spec) {
            let src = if src.is_absolute() { src } else { bundle.dir.join(src) };
            cmd.arg("--external").arg(format!("mnt[{}]:{}", dest.display(), src.display()));
        }
        let cgroup_mounts: Vec<(String, String)> = std::fs::read(c.image_path.join(CGROUP_MOUNTS))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let dirs = cgroup.hierarchy_dirs()?;
        for (mp, controllers) in &cgroup_mounts {
            let dir = hierarchy_dir(&dirs, controllers).ok_or_else(|| {
                Error::Usage(format!(
                    "the checkpoint mounts cgroup hierarchy {controllers:?} at {mp}, which this host doesn't have; restore it on a host with the same cgroup layout"
                ))
            })?;
            cmd.arg("--external").arg(format!("mnt[{mp}]:{}", dir.display()));
        }
        for (fd, key) in descriptors.iter().enumerate() {
            if !key.is_empty() {
                cmd.arg("--inherit-fd").arg(format!("fd[{fd}]:{key}"));
            }
        }
        let procs: Vec<CString> = dirs
            .into_iter()
            .map(|(_, d)| CString::new(d.join("cgroup.procs").as_os_str().as_bytes()).expect("no NUL in a cgroup path"))
            .collect();
        let rootfs = CString::new(bundle.rootfs.as_os_str().as_bytes())
            .map_err(|_| Error::Usage(format!("rootfs {} contains a NUL byte", bundle.rootfs.display())))?;
        // SAFETY: the closure runs in the child between fork and exec and only makes raw syscalls
        // (unshare, mount, open, write, close) on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                enter_cgroup(&procs)?;
                private_root(&rootfs)
            });
        }
        if !o.detach {
            // The restored init is re-parented to us when criu exits (--restore-detached): we wait for it.
            nix::sys::prctl::set_child_subreaper(true).map_err(Error::errno("PR_SET_CHILD_SUBREAPER"))?;
        }
        c.run(cmd, &format!("restore of container {:?}", o.id), "restore.log")?;
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| Error::Child(format!("criu restored container {:?} but wrote no pid to {}", o.id, pid_file.display())))?;
        let st = ContainerState {
            id: o.id.clone(),
            pid,
            pid_start: pid_start_time(pid).unwrap_or(0),
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: chrono::Utc::now(),
            owner: "root".into(),
            cgroup: cgroup.clone(),
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
            started: true,
            rootfs_mount: None,
        };
        root.save(&st)?;
        if let Some(p) = &o.pid_file {
            std::fs::write(p, pid.to_string()).map_err(Error::io(format!("writing {}", p.display())))?;
        }
        if o.detach {
            return Ok(0);
        }
        let code = match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => c,
            Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => 128 + s as i32,
            _ => 0,
        };
        Ok(code)
    })();
    if restored.is_err() {
        let _ = cgroup.kill_all(nix::sys::signal::Signal::SIGKILL);
        let _ = cgroup.destroy();
        let _ = root.remove(&o.id);
    }
    restored
}

/// In the child before exec: move into the cgroup (every hierarchy) by writing "0" to its cgroup.procs.
fn enter_cgroup(procs: &[CString]) -> std::io::Result<()> {
    for p in procs {
        // SAFETY: open/write/close on a NUL-terminated path and a static buffer (async-signal-safe).
        let fd = unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: as above.
        let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        if n != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// In the child before exec: a private mount namespace in which the rootfs is a mount point of its own
/// (CRIU restores the container's mount tree under `--root`, which must be one).
fn private_root(rootfs: &CString) -> std::io::Result<()> {
    // SAFETY: unshare and mount are raw syscalls on NUL-terminated strings prepared before the fork.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0
            || libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0
            || libc::mount(rootfs.as_ptr(), rootfs.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null()) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
