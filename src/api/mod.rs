//! beamd's HTTP/JSON API: the request and response bodies, shared by the server (`beamd`) and the
//! client (`beam`). docs/api.md describes the routes; docs/openapi.yaml is the machine-readable form.

pub mod error;
pub mod frames;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API's path prefix.
pub const PREFIX: &str = "/v1";
/// Default unix socket of beamd.
pub const DEFAULT_SOCKET: &str = "/run/beam/beamd.sock";
/// Content type of an exec stream (see [`frames`]).
pub const STREAM_CONTENT_TYPE: &str = "application/vnd.beam.stream";
/// The `Upgrade` protocol name for a bidirectional exec (stdin or tty).
pub const UPGRADE_PROTOCOL: &str = "beam-stream";
/// Response header carrying the exec'd process's pid (inside the sandbox).
pub const EXEC_PID_HEADER: &str = "x-beam-exec-pid";

/// Every 4xx/5xx body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    /// A stable slug: bad_request, not_found, conflict, payload_too_large, unsupported_media_type,
    /// method_not_allowed, unauthorized, internal.
    pub code: String,
    /// One line: what was wrong and how to fix it.
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    Pending,
    Running,
    Stopping,
    Exited,
}

impl SandboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Pending => "pending",
            SandboxState::Running => "running",
            SandboxState::Stopping => "stopping",
            SandboxState::Exited => "exited",
        }
    }
}

/// Why a sandbox exited.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ExitReason {
    /// The entrypoint exited by itself.
    Exited,
    /// Stopped through the API (stop, delete) or beamd's shutdown of it.
    Stopped,
    OomKilled,
    /// Its maximum lifetime (timeout_seconds) passed.
    Timeout,
    /// No activity for keep_warm_seconds.
    Idle,
    /// It could not be created, or died in a way beamd did not cause (see `error`).
    Error,
}

/// A memory size: a number of MiB (`1024`, `"1024"`) or a string with a unit (`"1Gi"`, `"512Mi"`,
/// `"2G"`, `"300M"`, `"1.5Gi"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum MemorySize {
    MiB(f64),
    Text(String),
}

/// A named landlock filesystem policy (`preset` of a [`LandlockPolicy`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LandlockPreset {
    /// The default: the whole root filesystem (the sandbox's own overlay upper layer) readable and
    /// writable, as under Docker: `mkdir /app`, writing /usr/bin, `apt-get install` work. What beam puts
    /// into a sandbox (its init at /dev/.beam-init) stays read-only through its mount, and landlock keeps
    /// every mount where it is.
    WritableRoot,
    /// System dirs read-only: `/` itself, /bin, /sbin, /lib*, /usr (but /usr/local), /boot and /dev's own
    /// entry list (its devices, /dev/pts, /dev/shm, /dev/mqueue stay usable) are read-only; every other
    /// top-level dir of the image, /tmp, /run, /var, /home, /root and /proc writable.
    ReadOnlySystem,
}

impl LandlockPreset {
    pub fn as_str(self) -> &'static str {
        match self {
            LandlockPreset::WritableRoot => "writable-root",
            LandlockPreset::ReadOnlySystem => "read-only-system",
        }
    }
}

/// Per-sandbox landlock policy. With a `preset`, `ro`/`rw` paths are added to the preset's; without one,
/// `ro`/`rw` are the whole filesystem policy, and with no paths either the default preset
/// (`writable-root`) applies (a TCP-only policy).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LandlockPolicy {
    /// A named filesystem policy to start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<LandlockPreset>,
    /// Paths readable (and executable) with everything beneath them.
    #[serde(default)]
    pub ro: Vec<String>,
    /// Paths readable and writable with everything beneath them.
    #[serde(default)]
    pub rw: Vec<String>,
    /// TCP ports processes may bind (needs landlock ABI 4); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_bind: Vec<u16>,
    /// TCP ports processes may connect to (needs landlock ABI 4); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_connect: Vec<u16>,
}

/// `POST /v1/sandboxes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateSandbox {
    /// An image reference or id; pulled if missing (`busybox` builds from the embedded recipe).
    pub image: String,
    /// Replaces the image's Entrypoint (Docker's rules). With neither `entrypoint` nor `cmd` nor
    /// `image_command`, the sandbox runs no entrypoint and stays up for exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Run the image's own Entrypoint + Cmd.
    #[serde(default, skip_serializing_if = "is_false")]
    pub image_command: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// `uid[:gid]` or `name[:group]` in the image; the entrypoint's and exec's default user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Fractional cores (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Default 1 GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySize>,
    /// Default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
    /// Ports the gateway exposes (`urls` in the answer); more with `POST …/ports`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Sandbox ports forwarded as raw TCP from host ports (`published` in the answer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<Publish>,
    /// Require a per-sandbox token at the gateway (`token` in the answer).
    #[serde(default, skip_serializing_if = "is_false")]
    pub authorized: bool,
    /// Idle seconds before the sandbox is stopped (default 600; -1 never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_warm_seconds: Option<i64>,
    /// Maximum lifetime in seconds from creation (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock: Option<LandlockPolicy>,
    /// Capabilities added to the default set (podman's 11), e.g. `["NET_RAW"]` for raw sockets; `CAP_` is
    /// optional. Only NET_RAW, MKNOD and AUDIT_WRITE (the rest of Docker's 14) can be added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// `bridge` (its own address on beamd's bridge, NAT egress) or `none` (loopback only); default:
    /// beamd's `--network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkMode>,
    /// No egress at all (bridge mode).
    #[serde(default, skip_serializing_if = "is_false")]
    pub block_network: bool,
    /// Egress only to these CIDRs (bridge mode), e.g. `["10.1.0.0/16", "1.1.1.1/32"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr_allowlist: Option<Vec<String>>,
    /// Opt-outs of the secure defaults; each must be asked for by name.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_no_userns: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_no_seccomp: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_no_landlock: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Bridge,
    None,
}

/// A sandbox's network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxNetwork {
    pub mode: NetworkMode,
    /// Its address on beamd's bridge (bridge mode).
    pub ip: Option<String>,
    pub gateway: Option<String>,
    pub block_network: bool,
    pub cidr_allowlist: Option<Vec<String>>,
}

/// The security a sandbox runs with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Security {
    /// Host uid (and gid) that root inside maps to; None without a user namespace.
    pub uid_base: Option<u32>,
    pub seccomp: bool,
    /// The landlock policy applied (None: off or not supported by the kernel).
    pub landlock: Option<LandlockPolicy>,
    pub no_new_privs: bool,
    /// The capabilities of the sandbox's root (bounding, effective and permitted sets), `CAP_` names.
    pub capabilities: Vec<String>,
}

/// A sandbox as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sandbox {
    pub id: String,
    pub name: Option<String>,
    /// The image as asked for, and its id.
    pub image: String,
    pub image_id: String,
    pub state: SandboxState,
    pub reason: Option<ExitReason>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// The entrypoint's argv; None when the sandbox runs none.
    pub entrypoint: Option<Vec<String>>,
    pub workdir: String,
    pub user: String,
    pub cpu: f64,
    pub memory_mib: u64,
    pub pids: u32,
    pub ports: Vec<u16>,
    /// The gateway's URL of each exposed port, keyed by the port as a string; empty when the gateway is
    /// off or the sandbox has exited.
    #[serde(default)]
    pub urls: BTreeMap<String, String>,
    /// Raw TCP forwards from host ports (they end with the sandbox).
    #[serde(default)]
    pub published: Vec<Publish>,
    /// Whether the gateway requires `token`.
    #[serde(default)]
    pub authorized: bool,
    /// The gateway token (`Authorization: Bearer …` or `?beam_token=…`) when `authorized`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub keep_warm_seconds: i64,
    pub timeout_seconds: Option<u64>,
    pub tags: BTreeMap<String, String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub exited_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_activity_at: chrono::DateTime<chrono::Utc>,
    /// When the sandbox will be stopped for idleness or its timeout, whichever comes first.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Host pid of the sandbox's init while it runs.
    pub pid: Option<i32>,
    pub security: Security,
    /// Absent in records written before networking existed (= loopback only).
    #[serde(default = "SandboxNetwork::none")]
    pub network: SandboxNetwork,
}

impl SandboxNetwork {
    pub fn none() -> SandboxNetwork {
        SandboxNetwork { mode: NetworkMode::None, ip: None, gateway: None, block_network: false, cidr_allowlist: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SandboxList {
    pub sandboxes: Vec<Sandbox>,
}

/// `PATCH /v1/sandboxes/{ref}`: change the TTLs of a running sandbox.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpdateSandbox {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_warm_seconds: Option<i64>,
    /// New maximum lifetime, counted from creation; 0 removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Change the egress policy of a bridge-mode sandbox (both fields replace the current ones when given;
    /// an empty `cidr_allowlist` allows nothing, `null` removes the allowlist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_network: Option<bool>,
    /// Absent: unchanged; `null` (`Some(None)`): no allowlist any more; a list: the new allowlist.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub cidr_allowlist: Option<Option<Vec<String>>>,
}

/// A field that is present (even as `null`) deserializes to `Some`; an absent one stays `None` (`default`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `POST /v1/sandboxes/{ref}/ports`: expose one more port of a running sandbox through the gateway.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExposePort {
    /// 1–65535 (a wider type, so that 0 or 70000 get a clear message instead of a JSON error).
    pub port: i64,
    /// Also forward it as raw TCP from this host port (like `publish` at create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    /// The host address for `host_port` (default 127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_host_ip")]
    pub host_ip: Option<std::net::IpAddr>,
}

/// A sandbox port forwarded as raw TCP from a host address: beamd listens on `host_ip:host_port` and
/// splices each connection to `port` inside the sandbox (any TCP protocol, not only HTTP).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// The port inside the sandbox.
    pub port: u16,
    /// The host port beamd listens on.
    pub host_port: u16,
    /// The host address beamd listens on: 127.0.0.1 by default, 0.0.0.0 for every address.
    #[serde(default = "loopback", deserialize_with = "host_ip")]
    pub host_ip: std::net::IpAddr,
}

/// Where `publish` listens unless told otherwise: the host's loopback only.
pub const DEFAULT_HOST_IP: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn loopback() -> std::net::IpAddr {
    DEFAULT_HOST_IP
}

/// An IP address, with a message that says what to write instead of serde's "invalid IP address syntax".
fn host_ip<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::net::IpAddr, D::Error> {
    parse_host_ip(&String::deserialize(d)?)
}

/// `null` is the default, as with any optional field.
fn some_host_ip<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<std::net::IpAddr>, D::Error> {
    Option::<String>::deserialize(d)?.map(|s| parse_host_ip(&s)).transpose()
}

fn parse_host_ip<E: serde::de::Error>(s: &str) -> Result<std::net::IpAddr, E> {
    s.parse()
        .map_err(|_| E::custom(format!("host_ip {s:?} is not an IP address; use e.g. 127.0.0.1 (the default) or 0.0.0.0")))
}

/// `POST /v1/sandboxes/{ref}/stop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StopSandbox {
    /// Seconds between SIGTERM and SIGKILL (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
}

/// `POST /v1/sandboxes/{ref}/exec`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    /// Added to (and overriding) the sandbox's environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// `uid[:gid]` or `name[:group]`; default: the sandbox's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A pseudo-terminal (stdout only, stderr merged); needs the upgraded connection.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tty: bool,
    /// Keep stdin open for frames from the client; needs the upgraded connection.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdin: bool,
    /// Kill the process (its process group) after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
}

/// The last frame of an exec stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecExit {
    pub exit_code: i32,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    pub reason: ExecExitReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How an exec'd process ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ExecExitReason {
    /// It exited by itself (`exit_code` is its status).
    Exited,
    /// Its `timeout_seconds` passed and beamd killed it.
    Timeout,
    /// SIGKILL while the sandbox's cgroup hit its memory limit.
    OomKilled,
    /// Any other signal: from the API, or because the sandbox stopped.
    Killed,
    /// It could not run (see `message`).
    Error,
}

/// A resize frame's body.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resize {
    pub rows: u16,
    pub cols: u16,
}

/// A signal frame's body and `POST …/processes/{pid}/signal`: a name (`TERM`, `SIGKILL`) or number.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignalRequest {
    pub signal: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Process {
    /// Pid inside the sandbox.
    pub pid: i32,
    pub ppid: i32,
    /// Uid inside the sandbox.
    pub uid: u32,
    pub state: String,
    pub rss_kib: u64,
    pub cmd: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessList {
    pub processes: Vec<Process>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    File,
    Dir,
    Symlink,
    Other,
}

/// `GET …/files/stat` and the entries of `GET …/files/list`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileStat {
    /// The absolute path inside the sandbox.
    pub path: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FileType,
    pub size: u64,
    /// Permission bits (e.g. 420 = 0o644).
    pub mode: u32,
    /// Owner as seen inside the sandbox.
    pub uid: u32,
    pub gid: u32,
    pub mtime: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileList {
    pub path: String,
    pub entries: Vec<FileStat>,
}

/// `POST …/files/mkdir`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mkdir {
    pub path: String,
    /// Create missing parents (like mkdir -p); an existing dir is then not an error.
    #[serde(default)]
    pub parents: bool,
    /// Default 0o755.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// `POST /v1/sandboxes/{ref}/snapshots/filesystem`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFilesystem {
    /// A name for the new image (`myapp:v1`, `localhost:5000/team/app:1`); without one it is known by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// A sandbox's filesystem committed as an image: its parent image's layers plus one layer with what the
/// sandbox changed, and the parent's config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FilesystemSnapshot {
    /// The new image's id (`sha256:…`): `beam run --image <id>` runs it.
    pub image_id: String,
    pub names: Vec<String>,
    /// The image the sandbox ran.
    pub parent_image_id: String,
    /// The sandbox it was taken from.
    pub sandbox: String,
    /// The new layer: its diff id (the digest of the uncompressed tar) and compressed size in bytes.
    pub layer_diff_id: String,
    pub layer_size: u64,
    /// How long the sandbox was frozen for the copy, in milliseconds.
    pub frozen_ms: u64,
}

/// `POST /v1/images/pull`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    pub image: String,
}

/// One line of the `POST /v1/images/pull` response (newline-delimited JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PullProgress {
    /// A human line ("pulling busybox", "building busybox from the embedded recipe", "done").
    pub status: String,
    /// Set on the last line of a successful pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Set on the last line of a failed pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageSummary {
    pub id: String,
    pub names: Vec<String>,
    pub size: u64,
    pub created: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageList {
    pub images: Vec<ImageSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Version {
    pub version: String,
    pub api: String,
    /// "v2" or "v1/hybrid".
    pub cgroup: String,
    /// The kernel's landlock ABI (0: none).
    pub landlock_abi: u32,
}

/// Parse a memory size into MiB: numbers are MiB; units Ki, Mi, Gi, Ti (binary), K, M, G, T
/// (decimal), and B/no unit on a string with a unit-less number meaning MiB.
pub fn parse_memory(m: &MemorySize) -> Result<u64, String> {
    let bad = |s: &str| {
        format!("memory {s:?} is not a size; use MiB as a number (1024) or a unit: 512Mi, 1Gi, 2G")
    };
    let mib = match m {
        MemorySize::MiB(n) => *n,
        MemorySize::Text(s) => {
            let t = s.trim();
            let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: f64 = num.parse().map_err(|_| bad(s))?;
            let bytes_per = match unit.trim() {
                "" | "Mi" | "MiB" => 1024.0 * 1024.0,
                "Ki" | "KiB" => 1024.0,
                "Gi" | "GiB" => 1024.0 * 1024.0 * 1024.0,
                "Ti" | "TiB" => 1024.0f64.powi(4),
                "K" | "KB" | "k" => 1e3,
                "M" | "MB" => 1e6,
                "G" | "GB" => 1e9,
                "T" | "TB" => 1e12,
                _ => return Err(bad(s)),
            };
            n * bytes_per / (1024.0 * 1024.0)
        }
    };
    if !mib.is_finite() || mib < 6.0 {
        return Err(format!("memory {m:?} is below the 6 MiB minimum a sandbox needs; ask for more"));
    }
    if mib > (1u64 << 20) as f64 {
        return Err(format!("memory {m:?} is larger than any host; ask for less"));
    }
    Ok(mib.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        let t = |s: &str| parse_memory(&MemorySize::Text(s.into()));
        assert_eq!(t("1024"), Ok(1024));
        assert_eq!(t("1Gi"), Ok(1024));
        assert_eq!(t("1.5Gi"), Ok(1536));
        assert_eq!(t("512Mi"), Ok(512));
        assert_eq!(t("2G"), Ok(1907));
        assert_eq!(parse_memory(&MemorySize::MiB(256.0)), Ok(256));
        assert!(t("lots").is_err());
        assert!(t("1Xi").is_err());
        assert!(t("1Ki").is_err());
        assert!(t("-5").is_err());
    }

    #[test]
    fn update_tells_an_absent_allowlist_from_null() {
        let u = |s: &str| serde_json::from_str::<UpdateSandbox>(s).unwrap().cidr_allowlist;
        assert_eq!(u("{}"), None);
        assert_eq!(u(r#"{"cidr_allowlist": null}"#), Some(None));
        assert_eq!(u(r#"{"cidr_allowlist": []}"#), Some(Some(vec![])));
        assert_eq!(u(r#"{"cidr_allowlist": ["1.1.1.1/32"]}"#), Some(Some(vec!["1.1.1.1/32".to_string()])));
        let back = serde_json::to_string(&UpdateSandbox { cidr_allowlist: Some(None), ..Default::default() }).unwrap();
        assert_eq!(back, r#"{"cidr_allowlist":null}"#);
    }

    #[test]
    fn create_rejects_unknown_fields() {
        let e = serde_json::from_str::<CreateSandbox>(r#"{"image":"busybox","memroy":"1Gi"}"#).unwrap_err();
        assert!(e.to_string().contains("memroy"), "{e}");
        let c: CreateSandbox = serde_json::from_str(r#"{"image":"busybox","memory":"1Gi","env":{"A":"1"}}"#).unwrap();
        assert_eq!(c.memory, Some(MemorySize::Text("1Gi".into())));
    }
}
