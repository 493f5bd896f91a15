//! A real beamd for integration tests: its own state root, run dir and socket in a temp dir, a small
//! blocking HTTP/1.1 client over the unix socket, and a guard that deletes every sandbox and stops
//! beamd on drop — even when the test fails.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Beamd {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub run_dir: PathBuf,
    pub socket: PathBuf,
    /// Extra beamd arguments (e.g. --listen).
    pub args: Vec<String>,
    child: Option<Child>,
}

/// A response: status, lower-cased headers, body (chunked encoding decoded).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// Assert a 4xx with a one-line `{code, message}` body; returns the message.
    pub fn api_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        let msg = v["message"].as_str().unwrap_or_else(|| panic!("no message: {v}")).to_string();
        assert!(v["code"].is_string(), "{v}");
        assert!(!msg.contains('\n') && !msg.is_empty(), "{msg:?}");
        msg
    }
}

/// The exec stream, demultiplexed.
#[derive(Debug, Default)]
pub struct ExecOut {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Value,
}

impl ExecOut {
    pub fn code(&self) -> i64 {
        self.exit["exit_code"].as_i64().unwrap_or_else(|| panic!("no exit frame: {self:?}"))
    }
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

pub fn beamd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_beamd")
}

pub fn beam_bin() -> &'static str {
    env!("CARGO_BIN_EXE_beam")
}

impl Beamd {
    pub fn start(name: &str) -> Beamd {
        Self::start_with(name, &[])
    }

    pub fn start_with(name: &str, args: &[&str]) -> Beamd {
        let tmp = tempfile::Builder::new().prefix(&format!("beamd-{name}-")).tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let run_dir = tmp.path().join("run");
        let socket = run_dir.join("beamd.sock");
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        // Tests never put a bridge in the real host's namespace: loopback-only sandboxes unless the test
        // brings a namespace of its own (--network bridge --network-netns …).
        if !args.iter().any(|a| a == "--network") {
            args.extend(["--network".into(), "none".into()]);
        }
        let mut b = Beamd { tmp, root, run_dir, socket, args, child: None };
        b.spawn();
        b
    }

    /// Start (or restart) the daemon process and wait until it answers.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("beamd.log"))
            .expect("log");
        let child = Command::new(beamd_bin())
            .arg("--root")
            .arg(&self.root)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn beamd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.try_request("GET", "/v1/version", None, &[])
                && r.status == 200
            {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("beamd exited with {st} before serving:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "beamd did not serve within 20 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// kill -9 the daemon (sandboxes keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the daemon and wait for it.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("beamd.log")).unwrap_or_default()
    }

    pub fn try_request(&self, method: &str, path: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> std::io::Result<Resp> {
        let mut s = UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: beam\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                req.push_str("Content-Type: application/json\r\n");
            }
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        if let Some(b) = body {
            // The server may answer (413) and close before reading it all: read the answer anyway.
            let _ = s.write_all(b);
        }
        read_response(&mut BufReader::new(s))
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        let b = body.map(|v| serde_json::to_vec(v).unwrap());
        self.try_request(method, path, b.as_deref(), &[]).unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.request("POST", path, Some(body))
    }

    /// Create a sandbox (201 expected); returns its JSON.
    pub fn create(&self, body: &Value) -> Value {
        let r = self.post("/v1/sandboxes", body);
        assert_eq!(r.status, 201, "create {body}: {}\n{}", r.text(), self.log());
        r.json()
    }

    /// Exec (no stdin) and collect the frames.
    pub fn exec(&self, sandbox: &str, body: &Value) -> ExecOut {
        let r = self.post(&format!("/v1/sandboxes/{sandbox}/exec"), body);
        assert_eq!(r.status, 200, "exec {body}: {}", r.text());
        demux(&r.body)
    }

    /// `sh -c SCRIPT` in a sandbox.
    pub fn sh(&self, sandbox: &str, script: &str) -> ExecOut {
        self.exec(sandbox, &serde_json::json!({"cmd": ["sh", "-c", script]}))
    }

    /// Every sandbox id this daemon knows.
    pub fn ids(&self) -> Vec<String> {
        let r = self.get("/v1/sandboxes");
        r.json()["sandboxes"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
    }

    /// `beam …` against this daemon.
    pub fn beam(&self) -> Command {
        let mut c = Command::new(beam_bin());
        c.env("BEAM_SOCKET", &self.socket).stdin(Stdio::null());
        c
    }

    /// Wait for a condition (polling, with a deadline); panics with `what` on timeout.
    pub fn await_until(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Mount points under this daemon's dirs.
    pub fn mounts(&self) -> Vec<String> {
        mounts_under(self.tmp.path())
    }
}

pub fn mounts_under(p: &Path) -> Vec<String> {
    let base = p.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&base))
        .collect()
}

/// cgroup dirs of a sandbox id in any hierarchy.
pub fn cgroups_of(id: &str) -> Vec<PathBuf> {
    let mut out = vec![];
    for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if let Ok(d) = std::fs::read_dir(base) {
            for h in d.flatten() {
                for cand in [h.path().join("beam").join(id), Path::new(base).join("beam").join(id)] {
                    if cand.exists() && !out.contains(&cand) {
                        out.push(cand);
                    }
                }
            }
        }
    }
    out
}

impl Drop for Beamd {
    fn drop(&mut self) {
        if self.child.is_none() && self.socket.exists() {
            // Killed by the test and not restarted: bring it back to clean up.
            self.spawn();
        }
        if self.child.is_some() {
            for id in self.ids() {
                let _ = self.try_request("DELETE", &format!("/v1/sandboxes/{id}"), None, &[]);
            }
        }
        self.terminate();
        for m in mounts_under(self.tmp.path()).iter().rev() {
            let c = std::ffi::CString::new(m.as_str()).unwrap();
            // SAFETY: umount2 on a path string we own.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn read_response<R: BufRead>(r: &mut R) -> std::io::Result<Resp> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = vec![];
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let mut body = vec![];
    if status == 101 || status == 204 {
        return Ok(Resp { status, headers, body });
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if n == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + n, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(len) = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Resp { status, headers, body })
}

/// Split an exec stream into stdout, stderr and the exit frame.
pub fn demux(bytes: &[u8]) -> ExecOut {
    let mut d = beam::api::frames::Decoder::new();
    d.push(bytes);
    let mut out = ExecOut::default();
    while let Some((stream, data)) = d.next_frame().expect("valid frames") {
        match stream {
            beam::api::frames::STDOUT => out.stdout.extend(data),
            beam::api::frames::STDERR => out.stderr.extend(data),
            beam::api::frames::EXIT => out.exit = serde_json::from_slice(&data).expect("exit JSON"),
            s => panic!("unexpected stream {s}"),
        }
    }
    assert_eq!(d.pending(), 0, "trailing partial frame");
    out
}

/// An upgraded exec connection: write client frames, read server frames.
pub struct Upgraded {
    pub stream: UnixStream,
    pub pid: i32,
    dec: beam::api::frames::Decoder,
    /// Frames read by `read_until` that were not stdout (stderr, exit): `finish` sees them.
    held: Vec<(u8, Vec<u8>)>,
}

impl Beamd {
    pub fn exec_upgraded(&self, sandbox: &str, body: &Value) -> Upgraded {
        let mut s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let b = serde_json::to_vec(body).unwrap();
        let req = format!(
            "POST /v1/sandboxes/{sandbox}/exec HTTP/1.1\r\nHost: beam\r\nConnection: Upgrade\r\nUpgrade: beam-stream\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            b.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(&b).unwrap();
        // Read the 101 head byte by byte so that no frame bytes are swallowed by a buffer.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let pid = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("x-beam-exec-pid:").map(|v| v.trim().parse().unwrap()))
            .expect("pid header");
        Upgraded { stream: s, pid, dec: beam::api::frames::Decoder::new(), held: Vec::new() }
    }
}

impl Upgraded {
    pub fn send(&mut self, stream: u8, data: &[u8]) {
        self.stream.write_all(&beam::api::frames::encode(stream, data)).unwrap();
    }
    /// Read frames until the exit frame.
    pub fn finish(&mut self) -> ExecOut {
        let mut out = ExecOut::default();
        let mut buf = vec![0u8; 65536];
        let mut frames: std::collections::VecDeque<(u8, Vec<u8>)> = std::mem::take(&mut self.held).into();
        loop {
            while let Some(f) = self.dec.next_frame().unwrap() {
                frames.push_back(f);
            }
            while let Some((stream, data)) = frames.pop_front() {
                match stream {
                    beam::api::frames::STDOUT => out.stdout.extend(data),
                    beam::api::frames::STDERR => out.stderr.extend(data),
                    beam::api::frames::EXIT => {
                        out.exit = serde_json::from_slice(&data).unwrap();
                        return out;
                    }
                    _ => {}
                }
            }
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed before the exit frame: {out:?}");
            self.dec.push(&buf[..n]);
        }
    }
    /// Read stdout until it contains `needle`.
    pub fn read_until(&mut self, needle: &str) -> String {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            while let Some((stream, data)) = self.dec.next_frame().unwrap() {
                if stream == beam::api::frames::STDOUT {
                    seen.extend(data);
                } else {
                    self.held.push((stream, data));
                }
            }
            let s = String::from_utf8_lossy(&seen).to_string();
            if s.contains(needle) {
                return s;
            }
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed before {needle:?}: {s}");
            self.dec.push(&buf[..n]);
        }
    }
}
