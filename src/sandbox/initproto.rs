//! The wire format between beamd and beam-init (a sandbox's PID 1), over the init's control socket.
//!
//! This file uses `std` only: it is compiled into beamd as `beam::sandbox::initproto` and into the
//! static `beam-init` binary (build.rs) with `#[path]`.
//!
//! Transport: a `SOCK_SEQPACKET` unix socket; one message per packet. beamd binds it on the host at
//! `<sandbox dir>/init.sock` and hands the listening fd to the init as fd 3. A packet is a tag byte
//! followed by fields; a field is a u32 little-endian length and that many bytes. Integers are fields
//! of exactly 4 (i32/u32) or 2 (u16) bytes, little-endian; strings are UTF-8; lists are a u32 count
//! field followed by the items.
//!
//! Conversations (each on its own connection):
//! - `Ping` → `Pong` (more requests may follow on the same connection; so for `Kill` and `Ps`).
//! - `Kill{pid,sig}` → `Ok` or `Error` (pid as seen inside the sandbox).
//! - `Ps` → `Processes`.
//! - `Exec` (+ 3 fds via SCM_RIGHTS: stdin, stdout, stderr — none when `tty`) → `Started{pid}` (+ the pty
//!   master fd via SCM_RIGHTS when `tty`) or `Error`; later `Exited` when the process is reaped, after
//!   which the init closes the connection. beamd may send `Signal{sig}` meanwhile (delivered to the
//!   process group of the exec'd process). If beamd closes the connection before `Exited`, the init
//!   SIGKILLs that process group.

use std::fmt;

/// Largest packet either side sends (the default socket buffer holds ~208 KiB).
pub const MAX_PACKET: usize = 192 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// argv; args[0] is looked up in PATH from `env` (then the default PATH) when it has no '/'.
    pub args: Vec<String>,
    /// The complete environment, `KEY=VALUE`.
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub tty: bool,
    pub rows: u16,
    pub cols: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Ping,
    Exec(ExecSpec),
    /// On an exec connection: signal the process group of the exec'd process.
    Signal { sig: i32 },
    Kill { pid: i32, sig: i32 },
    Ps,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    pub ppid: i32,
    pub uid: u32,
    /// The one-letter state from /proc/<pid>/stat (R, S, D, Z, T, …).
    pub state: String,
    pub rss_kib: u64,
    /// cmdline joined with spaces, or `[comm]` when the cmdline is empty.
    pub cmd: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `entrypoint_pid` is 0 when the sandbox has no entrypoint (or it has exited).
    Pong { entrypoint_pid: i32 },
    Started { pid: i32 },
    /// `signal` is 0 for a normal exit, else the terminating signal (and `code` is 128 + signal).
    Exited { code: i32, signal: i32 },
    Ok,
    Processes(Vec<ProcessInfo>),
    /// `errno` is 0 when the error is not a system call's.
    Error { errno: i32, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "init protocol: {}", self.0)
    }
}

impl std::error::Error for ProtoError {}

const T_PING: u8 = 1;
const T_EXEC: u8 = 2;
const T_SIGNAL: u8 = 3;
const T_KILL: u8 = 4;
const T_PS: u8 = 5;
const R_PONG: u8 = 101;
const R_STARTED: u8 = 102;
const R_EXITED: u8 = 103;
const R_OK: u8 = 104;
const R_PROCESSES: u8 = 105;
const R_ERROR: u8 = 106;

struct Enc(Vec<u8>);

impl Enc {
    fn new(tag: u8) -> Self {
        Enc(vec![tag])
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn strs(&mut self, v: &[String]) -> &mut Self {
        self.u32(v.len() as u32);
        for s in v {
            self.str(s);
        }
        self
    }
}

struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    fn field(&mut self) -> Result<&'a [u8], ProtoError> {
        if self.buf.len() < 4 {
            return Err(ProtoError("truncated packet".into()));
        }
        let n = u32::from_le_bytes(self.buf[..4].try_into().unwrap()) as usize;
        if self.buf.len() - 4 < n {
            return Err(ProtoError("field longer than the packet".into()));
        }
        let f = &self.buf[4..4 + n];
        self.buf = &self.buf[4 + n..];
        Ok(f)
    }
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ProtoError> {
        self.field()?.try_into().map_err(|_| ProtoError(format!("expected a {N}-byte integer")))
    }
    fn i32(&mut self) -> Result<i32, ProtoError> {
        Ok(i32::from_le_bytes(self.fixed()?))
    }
    fn u32(&mut self) -> Result<u32, ProtoError> {
        Ok(u32::from_le_bytes(self.fixed()?))
    }
    fn u64(&mut self) -> Result<u64, ProtoError> {
        Ok(u64::from_le_bytes(self.fixed()?))
    }
    fn u16(&mut self) -> Result<u16, ProtoError> {
        Ok(u16::from_le_bytes(self.fixed()?))
    }
    fn str(&mut self) -> Result<String, ProtoError> {
        String::from_utf8(self.field()?.to_vec()).map_err(|_| ProtoError("a string is not UTF-8".into()))
    }
    fn count(&mut self) -> Result<usize, ProtoError> {
        let n = self.u32()? as usize;
        // Every item takes at least a 4-byte length: refuse counts the packet cannot hold.
        if n > self.buf.len() / 4 {
            return Err(ProtoError("list count larger than the packet".into()));
        }
        Ok(n)
    }
    fn strs(&mut self) -> Result<Vec<String>, ProtoError> {
        let n = self.count()?;
        (0..n).map(|_| self.str()).collect()
    }
    fn end(self) -> Result<(), ProtoError> {
        if self.buf.is_empty() { Ok(()) } else { Err(ProtoError("trailing bytes in packet".into())) }
    }
}

fn split(packet: &[u8]) -> Result<(u8, Dec<'_>), ProtoError> {
    match packet.split_first() {
        Some((&tag, rest)) => Ok((tag, Dec { buf: rest })),
        None => Err(ProtoError("empty packet".into())),
    }
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Ping => Enc::new(T_PING).0,
            Request::Exec(s) => {
                let mut e = Enc::new(T_EXEC);
                e.strs(&s.args).strs(&s.env).str(&s.cwd).u32(s.uid).u32(s.gid);
                e.u32(s.groups.len() as u32);
                for g in &s.groups {
                    e.u32(*g);
                }
                e.bytes(&[s.tty as u8]).u16(s.rows).u16(s.cols);
                e.0
            }
            Request::Signal { sig } => Enc::new(T_SIGNAL).i32(*sig).0.clone(),
            Request::Kill { pid, sig } => Enc::new(T_KILL).i32(*pid).i32(*sig).0.clone(),
            Request::Ps => Enc::new(T_PS).0,
        }
    }

    pub fn decode(packet: &[u8]) -> Result<Request, ProtoError> {
        let (tag, mut d) = split(packet)?;
        let r = match tag {
            T_PING => Request::Ping,
            T_EXEC => {
                let args = d.strs()?;
                let env = d.strs()?;
                let cwd = d.str()?;
                let uid = d.u32()?;
                let gid = d.u32()?;
                let n = d.count()?;
                let groups = (0..n).map(|_| d.u32()).collect::<Result<_, _>>()?;
                let tty = d.fixed::<1>()?[0] != 0;
                let rows = d.u16()?;
                let cols = d.u16()?;
                if args.is_empty() {
                    return Err(ProtoError("exec without a command".into()));
                }
                Request::Exec(ExecSpec { args, env, cwd, uid, gid, groups, tty, rows, cols })
            }
            T_SIGNAL => Request::Signal { sig: d.i32()? },
            T_KILL => Request::Kill { pid: d.i32()?, sig: d.i32()? },
            T_PS => Request::Ps,
            t => return Err(ProtoError(format!("unknown request tag {t}"))),
        };
        d.end()?;
        Ok(r)
    }
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Pong { entrypoint_pid } => Enc::new(R_PONG).i32(*entrypoint_pid).0.clone(),
            Reply::Started { pid } => Enc::new(R_STARTED).i32(*pid).0.clone(),
            Reply::Exited { code, signal } => Enc::new(R_EXITED).i32(*code).i32(*signal).0.clone(),
            Reply::Ok => Enc::new(R_OK).0,
            Reply::Processes(list) => {
                let mut e = Enc::new(R_PROCESSES);
                e.u32(list.len() as u32);
                for p in list {
                    e.i32(p.pid).i32(p.ppid).u32(p.uid).str(&p.state).u64(p.rss_kib).str(&p.cmd);
                }
                e.0
            }
            Reply::Error { errno, message } => Enc::new(R_ERROR).i32(*errno).str(message).0.clone(),
        }
    }

    pub fn decode(packet: &[u8]) -> Result<Reply, ProtoError> {
        let (tag, mut d) = split(packet)?;
        let r = match tag {
            R_PONG => Reply::Pong { entrypoint_pid: d.i32()? },
            R_STARTED => Reply::Started { pid: d.i32()? },
            R_EXITED => Reply::Exited { code: d.i32()?, signal: d.i32()? },
            R_OK => Reply::Ok,
            R_PROCESSES => {
                let n = d.count()?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(ProcessInfo {
                        pid: d.i32()?,
                        ppid: d.i32()?,
                        uid: d.u32()?,
                        state: d.str()?,
                        rss_kib: d.u64()?,
                        cmd: d.str()?,
                    });
                }
                Reply::Processes(list)
            }
            R_ERROR => Reply::Error { errno: d.i32()?, message: d.str()? },
            t => return Err(ProtoError(format!("unknown reply tag {t}"))),
        };
        d.end()?;
        Ok(r)
    }
}

/// The text the init writes to its status fd (fd 5) before it exits: `code=<n> signal=<s>\n`, where
/// `signal` is the signal that ended the entrypoint (0 if none) and `code` its exit status (128 + signal
/// for a signal). With no entrypoint, a stopped init writes `code=0 signal=0`.
pub fn format_status(code: i32, signal: i32) -> String {
    format!("code={code} signal={signal}\n")
}

/// Parse [`format_status`]'s text: `(code, signal)`.
pub fn parse_status(text: &str) -> Option<(i32, i32)> {
    let mut code = None;
    let mut signal = None;
    for word in text.split_whitespace() {
        if let Some(v) = word.strip_prefix("code=") {
            code = v.parse().ok();
        } else if let Some(v) = word.strip_prefix("signal=") {
            signal = v.parse().ok();
        }
    }
    Some((code?, signal?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let exec = Request::Exec(ExecSpec {
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 1000,
            gid: 100,
            groups: vec![10, 20],
            tty: true,
            rows: 24,
            cols: 80,
        });
        for r in [exec, Request::Ping, Request::Signal { sig: 15 }, Request::Kill { pid: 7, sig: 9 }, Request::Ps] {
            assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn replies_round_trip() {
        let ps = Reply::Processes(vec![ProcessInfo {
            pid: 1,
            ppid: 0,
            uid: 0,
            state: "S".into(),
            rss_kib: 812,
            cmd: "beam-init".into(),
        }]);
        for r in [
            ps,
            Reply::Pong { entrypoint_pid: 0 },
            Reply::Started { pid: 42 },
            Reply::Exited { code: 137, signal: 9 },
            Reply::Ok,
            Reply::Error { errno: 2, message: "no such file".into() },
        ] {
            assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn bad_packets_are_errors() {
        assert!(Request::decode(&[]).is_err());
        assert!(Request::decode(&[99]).is_err());
        assert!(Request::decode(&[T_KILL, 4, 0, 0, 0, 1]).is_err());
        // A count claiming more items than the packet holds.
        assert!(Reply::decode(&[R_PROCESSES, 4, 0, 0, 0, 255, 255, 255, 255]).is_err());
        let mut p = Request::Ping.encode();
        p.push(0);
        assert!(Request::decode(&p).is_err());
        // Exec with an empty argv.
        let e = ExecSpec { args: vec![], env: vec![], cwd: "/".into(), uid: 0, gid: 0, groups: vec![], tty: false, rows: 0, cols: 0 };
        assert!(Request::decode(&Request::Exec(e).encode()).is_err());
    }

    #[test]
    fn status_text() {
        assert_eq!(parse_status(&format_status(137, 9)), Some((137, 9)));
        assert_eq!(parse_status("garbage"), None);
    }
}
