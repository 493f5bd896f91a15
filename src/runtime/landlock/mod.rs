//! landlock: an unprivileged filesystem and TCP-port sandbox applied right before execve.
//!
//! CONTRACT (for `plan.rs` and `init.rs`):
//! - [`parse_annotations`] and [`LandlockPlan::new`] run in the parent before clone and may allocate:
//!   the ABI query, the handled-access masks, the ruleset attribute and the paths as C strings.
//! - [`LandlockPlan::apply`] runs in the child after pivot_root and every mount (a landlocked
//!   process may not change its mount topology), after no_new_privs and right before seccomp and
//!   execve. It is async-signal-safe: raw `landlock_*` syscalls, `open(O_PATH)`, `fstat`, `close`
//!   on memory of the plan and the stack. `landlock_restrict_self` needs no_new_privs **or**
//!   CAP_SYS_ADMIN in the caller's user namespace: the caller sets NNP first (beamd always does)
//!   or applies the plan while it still holds CAP_SYS_ADMIN (EPERM otherwise).
//!
//! # How users ask for it
//! `beam-oci` reads annotations of config.json (parsed by [`parse_annotations`]); beamd builds a
//! [`LandlockPolicy`] itself for every sandbox and exec.
//!
//! | annotation                     | value                                        |
//! |--------------------------------|----------------------------------------------|
//! | `run.beam.landlock.ro`         | absolute paths, `:`-separated: read + execute |
//! | `run.beam.landlock.rw`         | absolute paths, `:`-separated: every right    |
//! | `run.beam.landlock.tcp_bind`   | ports, `,`-separated; `""` = no port          |
//! | `run.beam.landlock.tcp_connect`| ports, `,`-separated; `""` = no port          |
//! | `run.beam.landlock.best_effort`| `true` / `false` (default `false`)            |
//!
//! e.g. `podman run --runtime beam-oci --annotation run.beam.landlock.ro=/usr:/bin:/lib:/etc
//! --annotation run.beam.landlock.rw=/tmp:/dev --annotation run.beam.landlock.tcp_bind= …`.
//! Any other `run.beam.landlock.*` key is an error (typo guard).
//!
//! # Semantics
//! - Paths are resolved **inside the container** (after pivot_root), following symlinks; a rule
//!   covers the inode it names and everything beneath it (`/bin` → `/usr/bin` on merged-usr
//!   images grants `/usr/bin`). A path that does not exist in the container (ENOENT/ENOTDIR) is
//!   skipped: that only removes access, so it never weakens the sandbox. A path naming a file
//!   (not a directory) gets only the file rights of its class.
//! - Filesystem: when `read_only` or `read_write` is non-empty, every filesystem right the kernel
//!   knows is handled, so anything not listed is denied (EACCES). `read_only` = EXECUTE,
//!   READ_FILE, READ_DIR. `read_write` = every right (write, create, remove, rename/link (REFER),
//!   truncate, device ioctls). A path in both lists gets the union (read-write). When both lists
//!   are empty the filesystem is not restricted (only TCP, if asked) — an empty allowlist would
//!   not even let the process exec.
//! - TCP: `None` = not restricted; `Some(ports)` = only those ports for bind(2) / connect(2)
//!   (`Some([])` = none; port 0 in the bind list allows an ephemeral bind). UDP and unix sockets
//!   are never restricted.
//! - Only accesses made after `apply` are checked: fds already open (stdio, preserved fds) keep
//!   working. The domain is inherited by every child and across execve.
//!
//! # Kernel ABIs
//! | ABI | kernel | what we use                             | on an older kernel |
//! |-----|--------|-----------------------------------------|--------------------|
//! | 1   | 5.13   | 13 base fs rights                       | unavailable: error, or nothing enforced with best effort |
//! | 2   | 5.19   | REFER (rename/link across directories) | ABI 1 always denies such renames, even in rw paths (stricter) |
//! | 3   | 6.2    | TRUNCATE                                | truncate(2) can't be denied, so read-only files could be emptied: error, or dropped with best effort |
//! | 4   | 6.7    | TCP bind/connect                        | error, or the TCP policy dropped with best effort |
//! | 5   | 6.10   | IOCTL_DEV                               | device ioctls not restricted (not part of ro/rw promises) |
//! | 6+  | 6.12   | scopes (signals, abstract unix sockets) | not used: no policy field asks for them |
//!
//! With `best_effort`, whatever the kernel can't enforce is dropped, logged (`tracing::warn!`) and
//! listed by [`LandlockPlan::dropped`]; without it, [`LandlockPlan::new`] fails naming the ABI needed.

#[cfg(test)]
mod tests;

use nix::errno::Errno;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Annotation keys read by [`parse_annotations`].
pub const ANNOTATION_PREFIX: &str = "run.beam.landlock.";
pub const ANNOTATION_RO: &str = "run.beam.landlock.ro";
pub const ANNOTATION_RW: &str = "run.beam.landlock.rw";
pub const ANNOTATION_TCP_BIND: &str = "run.beam.landlock.tcp_bind";
pub const ANNOTATION_TCP_CONNECT: &str = "run.beam.landlock.tcp_connect";
pub const ANNOTATION_BEST_EFFORT: &str = "run.beam.landlock.best_effort";
const ANNOTATION_KEYS: [&str; 5] =
    [ANNOTATION_RO, ANNOTATION_RW, ANNOTATION_TCP_BIND, ANNOTATION_TCP_CONNECT, ANNOTATION_BEST_EFFORT];

// ---- Kernel ABI (include/uapi/linux/landlock.h). ---------------------------------------------

const CREATE_RULESET_VERSION: libc::c_uint = 1 << 0;
const RULE_PATH_BENEATH: libc::c_int = 1;
const RULE_NET_PORT: libc::c_int = 2;

const FS_EXECUTE: u64 = 1 << 0;
const FS_WRITE_FILE: u64 = 1 << 1;
const FS_READ_FILE: u64 = 1 << 2;
const FS_READ_DIR: u64 = 1 << 3;
/// ABI 1: EXECUTE through MAKE_SYM (bits 0..=12).
const FS_ABI1: u64 = (1 << 13) - 1;
const FS_REFER: u64 = 1 << 13; // ABI 2
const FS_TRUNCATE: u64 = 1 << 14; // ABI 3
const FS_IOCTL_DEV: u64 = 1 << 15; // ABI 5
/// Rights that apply to a file (not a directory); a rule on a file may only carry these.
const FS_FILE_RIGHTS: u64 = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;
const FS_READ_ONLY: u64 = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;

const NET_BIND_TCP: u64 = 1 << 0; // ABI 4
const NET_CONNECT_TCP: u64 = 1 << 1; // ABI 4

/// `struct landlock_ruleset_attr`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr` (packed in the uapi header: 12 bytes).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// `struct landlock_net_port_attr`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

/// Every filesystem right that ABI `abi` knows.
fn fs_rights(abi: u32) -> u64 {
    let mut m = 0;
    if abi >= 1 {
        m |= FS_ABI1;
    }
    if abi >= 2 {
        m |= FS_REFER;
    }
    if abi >= 3 {
        m |= FS_TRUNCATE;
    }
    if abi >= 5 {
        m |= FS_IOCTL_DEV;
    }
    m
}

/// The kernel's landlock ABI version (≥ 1), or the errno that says why there is none:
/// ENOSYS = not built in, EOPNOTSUPP = built in but not enabled (`lsm=` boot parameter).
pub fn abi_version() -> Result<u32, Errno> {
    // SAFETY: with a NULL attr, size 0 and the VERSION flag the kernel reads no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 { Err(Errno::last()) } else { Ok(rc as u32) }
}

// ---- Policy and its parsing. -------------------------------------------------------------------

/// What a sandbox may touch. See the module documentation for the semantics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LandlockPolicy {
    /// Read + execute (files and directories beneath), inside the container.
    pub read_only: Vec<PathBuf>,
    /// Every filesystem right, inside the container.
    pub read_write: Vec<PathBuf>,
    /// `None`: bind(2) not restricted; `Some(ports)`: only these TCP ports.
    pub tcp_bind: Option<Vec<u16>>,
    /// `None`: connect(2) not restricted; `Some(ports)`: only these TCP ports.
    pub tcp_connect: Option<Vec<u16>>,
    /// Drop (and report) what the kernel can't enforce instead of failing.
    pub best_effort: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("{key}: unknown landlock annotation; use one of {}", ANNOTATION_KEYS.join(", "))]
    UnknownKey { key: String },
    #[error("{key}: no path given; list absolute paths separated by ':' or remove the key")]
    NoPaths { key: &'static str },
    #[error("{key}: {path:?} is not an absolute path; paths are inside the container, write it as \"/{}\"", path.trim_start_matches("./"))]
    RelativePath { key: &'static str, path: String },
    #[error("{key}: {path:?} contains a NUL byte; remove it")]
    Nul { key: &'static str, path: String },
    #[error("{key}: {token:?} is not a TCP port; use numbers 0-65535 separated by ',' (\"\" allows none)")]
    Port { key: &'static str, token: String },
    #[error("{key}: {value:?} is not a boolean; use \"true\" or \"false\"")]
    Bool { key: &'static str, value: String },
    #[error(
        "landlock is not available on this kernel ({}); set run.beam.landlock.best_effort=true \
         (LandlockPolicy::best_effort) to run without it, or drop the landlock policy",
        errno.desc()
    )]
    Unavailable { errno: Errno },
    #[error(
        "{what} needs landlock ABI {need} (Linux {kernel}) but this kernel has ABI {have}; set \
         run.beam.landlock.best_effort=true (LandlockPolicy::best_effort) to drop it, or remove it"
    )]
    AbiTooOld { what: &'static str, need: u32, kernel: &'static str, have: u32 },
}

/// The landlock policy asked for by `run.beam.landlock.*` annotations; `None` when none of the
/// ro/rw/tcp keys is present (`best_effort` alone is validated but asks for nothing).
pub fn parse_annotations(annotations: &HashMap<String, String>) -> Result<Option<LandlockPolicy>, LandlockError> {
    if let Some(key) = annotations
        .keys()
        .filter(|k| k.starts_with(ANNOTATION_PREFIX) && !ANNOTATION_KEYS.contains(&k.as_str()))
        .min()
    {
        return Err(LandlockError::UnknownKey { key: key.clone() });
    }
    let best_effort = match annotations.get(ANNOTATION_BEST_EFFORT).map(|v| v.trim()) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => return Err(LandlockError::Bool { key: ANNOTATION_BEST_EFFORT, value: v.into() }),
    };
    if ![ANNOTATION_RO, ANNOTATION_RW, ANNOTATION_TCP_BIND, ANNOTATION_TCP_CONNECT]
        .iter()
        .any(|k| annotations.contains_key(*k))
    {
        return Ok(None);
    }
    let paths = |key: &'static str| -> Result<Vec<PathBuf>, LandlockError> {
        let Some(v) = annotations.get(key) else { return Ok(Vec::new()) };
        let list: Vec<PathBuf> = v.split(':').map(str::trim).filter(|p| !p.is_empty()).map(PathBuf::from).collect();
        if list.is_empty() {
            return Err(LandlockError::NoPaths { key });
        }
        for p in &list {
            check_path(key, p)?;
        }
        Ok(list)
    };
    let ports = |key: &'static str| -> Result<Option<Vec<u16>>, LandlockError> {
        let Some(v) = annotations.get(key) else { return Ok(None) };
        let mut list = Vec::new();
        for token in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            list.push(token.parse::<u16>().map_err(|_| LandlockError::Port { key, token: token.into() })?);
        }
        list.sort_unstable();
        list.dedup();
        Ok(Some(list))
    };
    Ok(Some(LandlockPolicy {
        read_only: paths(ANNOTATION_RO)?,
        read_write: paths(ANNOTATION_RW)?,
        tcp_bind: ports(ANNOTATION_TCP_BIND)?,
        tcp_connect: ports(ANNOTATION_TCP_CONNECT)?,
        best_effort,
    }))
}

fn check_path(key: &'static str, p: &Path) -> Result<CString, LandlockError> {
    if !p.is_absolute() {
        return Err(LandlockError::RelativePath { key, path: p.display().to_string() });
    }
    CString::new(p.as_os_str().as_bytes()).map_err(|_| LandlockError::Nul { key, path: p.display().to_string() })
}

// ---- The plan (parent) and its application (child). ------------------------------------------

#[derive(Debug, Clone)]
struct PathRule {
    path: CString,
    /// Rights for a directory; masked with [`FS_FILE_RIGHTS`] when the path is a file.
    access: u64,
}

/// Everything [`LandlockPlan::apply`] needs, prepared in the parent.
#[derive(Debug, Clone)]
pub struct LandlockPlan {
    abi: u32,
    attr: RulesetAttr,
    attr_size: usize,
    paths: Vec<PathRule>,
    ports: Vec<NetPortAttr>,
    dropped: Vec<String>,
}

/// A failure of [`LandlockPlan::apply`]: the step, the path it concerned (if any) and the errno.
/// Formats without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyError<'a> {
    pub step: &'static str,
    pub path: Option<&'a CStr>,
    pub errno: Errno,
}

impl std::fmt::Display for ApplyError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "landlock: {}", self.step)?;
        if let Some(p) = self.path {
            write!(f, " {p:?}")?;
        }
        write!(f, ": {}", self.errno.desc())
    }
}

impl LandlockPlan {
    /// Query the kernel's ABI and prepare the ruleset for `policy`. Fails when the kernel can't
    /// enforce the policy and `best_effort` is off, or when a path is relative or has a NUL.
    pub fn new(policy: &LandlockPolicy) -> Result<Self, LandlockError> {
        let plan = Self::for_abi(policy, abi_version())?;
        for d in &plan.dropped {
            tracing::warn!(dropped = %d, "landlock (best effort): the kernel can't enforce part of the policy");
        }
        Ok(plan)
    }

    /// [`Self::new`] for a given answer of [`abi_version`] (tests cover every ABI with it).
    fn for_abi(policy: &LandlockPolicy, abi: Result<u32, Errno>) -> Result<Self, LandlockError> {
        let mut dropped = Vec::new();
        let fs_asked = !policy.read_only.is_empty() || !policy.read_write.is_empty();
        let net_asked = policy.tcp_bind.is_some() || policy.tcp_connect.is_some();
        let mut paths = Vec::new();
        let ro = policy.read_only.iter().map(|p| check_path("LandlockPolicy.read_only", p)).collect::<Result<Vec<_>, _>>()?;
        let rw = policy.read_write.iter().map(|p| check_path("LandlockPolicy.read_write", p)).collect::<Result<Vec<_>, _>>()?;
        let abi = match abi {
            Ok(v) => v,
            Err(errno) if !policy.best_effort => return Err(LandlockError::Unavailable { errno }),
            Err(errno) => {
                if fs_asked || net_asked {
                    dropped.push(format!("the whole policy: landlock is not available ({})", errno.desc()));
                }
                0
            }
        };
        let mut attr = RulesetAttr::default();
        if fs_asked && abi >= 1 {
            if abi < 3 {
                if !policy.best_effort {
                    return Err(LandlockError::AbiTooOld {
                        what: "denying truncate(2) on read-only paths",
                        need: 3,
                        kernel: "6.2",
                        have: abi,
                    });
                }
                dropped.push(format!("truncate(2) restriction (needs ABI 3, kernel has {abi})"));
            }
            attr.handled_access_fs = fs_rights(abi);
            for (list, access) in [(ro, FS_READ_ONLY), (rw, attr.handled_access_fs)] {
                paths.extend(list.into_iter().map(|path| PathRule { path, access: access & attr.handled_access_fs }));
            }
        }
        let mut ports = Vec::new();
        if net_asked && abi >= 1 {
            if abi < 4 {
                if !policy.best_effort {
                    return Err(LandlockError::AbiTooOld {
                        what: "a TCP port policy (tcp_bind/tcp_connect)",
                        need: 4,
                        kernel: "6.7",
                        have: abi,
                    });
                }
                dropped.push(format!("the TCP port policy (needs ABI 4, kernel has {abi})"));
            } else {
                for (list, right) in [(&policy.tcp_bind, NET_BIND_TCP), (&policy.tcp_connect, NET_CONNECT_TCP)] {
                    if let Some(list) = list {
                        attr.handled_access_net |= right;
                        ports.extend(list.iter().map(|&p| NetPortAttr { allowed_access: right, port: p as u64 }));
                    }
                }
            }
        }
        // Older kernels accept a larger attr only when the extra bytes are zero; pass their size anyway.
        let attr_size = match abi {
            0..=3 => 8,
            4 | 5 => 16,
            _ => std::mem::size_of::<RulesetAttr>(),
        };
        Ok(Self { abi, attr, attr_size, paths, ports, dropped })
    }

    /// The kernel's landlock ABI seen by [`Self::new`] (0 = unavailable).
    pub fn abi(&self) -> u32 {
        self.abi
    }

    /// What best effort dropped, one human-readable line each (empty when everything is enforced).
    pub fn dropped(&self) -> &[String] {
        &self.dropped
    }

    /// True when [`Self::apply`] has nothing to enforce (no policy, or everything dropped).
    pub fn is_noop(&self) -> bool {
        self.attr.handled_access_fs == 0 && self.attr.handled_access_net == 0
    }

    /// CHILD side: restrict the calling thread (and everything it execs or forks) to the plan.
    /// Async-signal-safe. Call after the last mount and after no_new_privs (or with
    /// CAP_SYS_ADMIN). Paths are opened relative to the current root; missing ones are skipped.
    pub fn apply(&self) -> Result<(), ApplyError<'_>> {
        if self.is_noop() {
            return Ok(());
        }
        // SAFETY: `attr` is a live repr(C) landlock_ruleset_attr and `attr_size` ≤ its size; the
        // kernel only reads it.
        let ruleset = unsafe {
            libc::syscall(libc::SYS_landlock_create_ruleset, &self.attr as *const RulesetAttr, self.attr_size, 0u32)
        };
        if ruleset < 0 {
            return Err(ApplyError { step: "landlock_create_ruleset", path: None, errno: Errno::last() });
        }
        let ruleset = ruleset as libc::c_int;
        let result = self.add_rules_and_restrict(ruleset);
        // SAFETY: closing the ruleset fd we created above; the domain keeps its own reference.
        unsafe { libc::close(ruleset) };
        result
    }

    fn add_rules_and_restrict(&self, ruleset: libc::c_int) -> Result<(), ApplyError<'_>> {
        for rule in &self.paths {
            let fail = |step| ApplyError { step, path: Some(rule.path.as_c_str()), errno: Errno::last() };
            // SAFETY: open on a NUL-terminated path owned by the plan.
            let fd = unsafe { libc::open(rule.path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            if fd < 0 {
                if matches!(Errno::last(), Errno::ENOENT | Errno::ENOTDIR) {
                    continue; // Not in this root: skipping only removes access.
                }
                return Err(fail("open(O_PATH)"));
            }
            // SAFETY: all-zero is a valid `stat`; fstat on an O_PATH fd fills our stack struct.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: see above.
            let rc = if unsafe { libc::fstat(fd, &mut st) } < 0 {
                Err(fail("fstat"))
            } else {
                let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                let attr = PathBeneathAttr {
                    allowed_access: if is_dir { rule.access } else { rule.access & FS_FILE_RIGHTS },
                    parent_fd: fd,
                };
                // SAFETY: `attr` is a live packed landlock_path_beneath_attr; the kernel reads it.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_landlock_add_rule,
                        ruleset,
                        RULE_PATH_BENEATH,
                        &attr as *const PathBeneathAttr,
                        0u32,
                    )
                };
                if rc < 0 { Err(fail("landlock_add_rule(path)")) } else { Ok(()) }
            };
            // SAFETY: closing the O_PATH fd opened above (errno of a failure was already taken).
            unsafe { libc::close(fd) };
            rc?;
        }
        for attr in &self.ports {
            // SAFETY: `attr` is a live repr(C) landlock_net_port_attr owned by the plan.
            let rc = unsafe {
                libc::syscall(libc::SYS_landlock_add_rule, ruleset, RULE_NET_PORT, attr as *const NetPortAttr, 0u32)
            };
            if rc < 0 {
                return Err(ApplyError { step: "landlock_add_rule(tcp port)", path: None, errno: Errno::last() });
            }
        }
        // SAFETY: integer arguments only.
        if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) } < 0 {
            return Err(ApplyError {
                step: "landlock_restrict_self (needs no_new_privs or CAP_SYS_ADMIN)",
                path: None,
                errno: Errno::last(),
            });
        }
        Ok(())
    }
}
