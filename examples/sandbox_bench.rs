//! Sandbox latency and density against a running beamd; for benches/sandbox.sh.
//!
//! ```text
//! sandbox_bench create-exec N        create (busybox) → exec `echo hi` → the "hi" stdout frame, N times
//! sandbox_bench exec N ID [CMD…]     exec CMD (default `true`) → exit frame on a running sandbox, N times
//! sandbox_bench runc-exec N CTR [--runc PATH] [--root DIR]
//!                                    spawn `runc [--root DIR] exec CTR true` and wait, N times
//! sandbox_bench idle N               create N idle sandboxes (keep_warm_seconds -1), report beamd's RSS,
//!                                    host MemAvailable and the sandbox cgroups' memory, delete them all
//! ```
//! The socket is `$BEAM_SOCKET` (default /run/beam/beamd.sock). Each timing prints one line
//! `NAME n=… p50_ms=… p99_ms=… mean_ms=… min_ms=… max_ms=…` (p50/p99: nearest rank).
//!
//! The client is deliberately minimal: blocking std `UnixStream`, one keep-alive HTTP/1.1 connection per
//! phase, each request written with a single `write` and the response parsed by hand (Content-Length or
//! chunked), exec frames decoded with [`beam::api::frames::Decoder`] as the chunks arrive — so the numbers
//! are beamd's latency plus a few µs of client, not a client library's.

use beam::api::{self, CreateSandbox, ExecExit, ExecRequest, Sandbox, frames};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

/// Warm-up iterations before the timed ones (not counted).
const WARMUP_EXEC: usize = 20;
const WARMUP_RUNC: usize = 5;
const WARMUP_CREATE: usize = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let socket = std::env::var_os("BEAM_SOCKET").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(api::DEFAULT_SOCKET));
    let n = |s: Option<&String>| -> Res<usize> {
        s.ok_or("missing N")?.parse::<usize>().map_err(|e| format!("N: {e}")).and_then(|n| if n == 0 { Err("N must be > 0".into()) } else { Ok(n) })
    };
    let r = match args.first().map(String::as_str) {
        Some("create-exec") => n(args.get(1)).and_then(|n| create_exec(&socket, n)),
        Some("exec") => n(args.get(1)).and_then(|n| {
            let id = args.get(2).ok_or("exec N ID [CMD…]: missing ID")?;
            let cmd: Vec<String> = if args.len() > 3 { args[3..].to_vec() } else { vec!["true".into()] };
            exec_loop(&socket, n, id, &cmd)
        }),
        Some("runc-exec") => n(args.get(1)).and_then(|n| {
            let ctr = args.get(2).ok_or("runc-exec N CONTAINER_ID: missing CONTAINER_ID")?;
            let mut runc = "runc".to_string();
            let mut root = None;
            let mut rest = args[3..].iter();
            while let Some(a) = rest.next() {
                match a.as_str() {
                    "--runc" => runc = rest.next().ok_or("--runc PATH")?.clone(),
                    "--root" => root = Some(rest.next().ok_or("--root DIR")?.clone()),
                    o => return Err(format!("runc-exec: unknown argument {o:?}")),
                }
            }
            runc_exec(n, ctr, &runc, root.as_deref())
        }),
        Some("idle") => n(args.get(1)).and_then(|n| idle(&socket, n)),
        _ => Err("usage: sandbox_bench create-exec N | exec N ID [CMD…] | runc-exec N CTR [--runc PATH] [--root DIR] | idle N".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbox_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// --- statistics -------------------------------------------------------------------------------------------

fn report(name: &str, samples: &[Duration]) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "{name} n={} p50_ms={:.3} p99_ms={:.3} mean_ms={:.3} min_ms={:.3} max_ms={:.3}",
        ms.len(),
        rank(0.50),
        rank(0.99),
        mean,
        ms[0],
        ms[ms.len() - 1]
    );
}

// --- a minimal keep-alive HTTP/1.1 client -----------------------------------------------------------------

struct Conn {
    socket: PathBuf,
    s: Option<UnixStream>,
    buf: Vec<u8>,
    /// Start of unread bytes in `buf`.
    pos: usize,
}

enum BodyKind {
    Length(usize),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    kind: BodyKind,
    close: bool,
}

impl Conn {
    fn new(socket: &std::path::Path) -> Conn {
        Conn { socket: socket.to_path_buf(), s: None, buf: Vec::with_capacity(64 * 1024), pos: 0 }
    }

    fn stream(&mut self) -> Res<&mut UnixStream> {
        if self.s.is_none() {
            let s = UnixStream::connect(&self.socket).map_err(|e| format!("connect {}: {e}", self.socket.display()))?;
            s.set_read_timeout(Some(Duration::from_secs(120))).map_err(|e| e.to_string())?;
            self.s = Some(s);
            self.buf.clear();
            self.pos = 0;
        }
        Ok(self.s.as_mut().unwrap())
    }

    /// Write a whole request (head and JSON body) with one write.
    fn send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Res<()> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: beam\r\n");
        if let Some(b) = body {
            req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        self.stream()?.write_all(&bytes).map_err(|e| format!("{method} {path}: write: {e}"))
    }

    fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Read more bytes from the socket into the buffer; error at EOF.
    fn fill(&mut self) -> Res<()> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut tmp = [0u8; 16 * 1024];
        let s = self.s.as_mut().ok_or("not connected")?;
        let k = s.read(&mut tmp).map_err(|e| format!("read: {e}"))?;
        if k == 0 {
            return Err("beamd closed the connection".into());
        }
        self.buf.extend_from_slice(&tmp[..k]);
        Ok(())
    }

    fn read_line(&mut self) -> Res<String> {
        loop {
            if let Some(i) = self.unread().windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.unread()[..i]).into_owned();
                self.pos += i + 2;
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn read_head(&mut self) -> Res<Head> {
        let status_line = self.read_line()?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let (mut kind, mut close) = (BodyKind::UntilClose, false);
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            let Some((k, v)) = line.split_once(':') else { continue };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => kind = BodyKind::Length(v.parse().map_err(|_| format!("bad content-length {v:?}"))?),
                "transfer-encoding" if v.contains("chunked") => kind = BodyKind::Chunked,
                "connection" if v.contains("close") => close = true,
                _ => {}
            }
        }
        if status == 204 || status == 304 {
            kind = BodyKind::Length(0);
        }
        if matches!(kind, BodyKind::UntilClose) {
            close = true;
        }
        Ok(Head { status, kind, close })
    }

    /// Take up to `max` buffered body bytes, reading once if none are buffered.
    fn take(&mut self, max: usize) -> Res<Vec<u8>> {
        if self.unread().is_empty() {
            self.fill()?;
        }
        let k = self.unread().len().min(max);
        let v = self.unread()[..k].to_vec();
        self.pos += k;
        Ok(v)
    }

    /// Read a response body piece by piece as it arrives; `f` returns false to stop early (the rest of the
    /// body is then still read, so the connection stays usable).
    fn body(&mut self, head: &Head, mut f: impl FnMut(&[u8]) -> Res<bool>) -> Res<()> {
        let mut want = true;
        let mut deliver = |piece: &[u8], want: &mut bool| -> Res<()> {
            if *want && !piece.is_empty() {
                *want = f(piece)?;
            }
            Ok(())
        };
        match head.kind {
            BodyKind::Length(mut left) => {
                while left > 0 {
                    let p = self.take(left)?;
                    left -= p.len();
                    deliver(&p, &mut want)?;
                }
            }
            BodyKind::Chunked => loop {
                let line = self.read_line()?;
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| format!("bad chunk size line {line:?}"))?;
                if size == 0 {
                    // trailers, then the empty line
                    while !self.read_line()?.is_empty() {}
                    break;
                }
                let mut left = size;
                while left > 0 {
                    let p = self.take(left)?;
                    left -= p.len();
                    deliver(&p, &mut want)?;
                }
                if !self.read_line()?.is_empty() {
                    return Err("chunk not followed by CRLF".into());
                }
            },
            BodyKind::UntilClose => {
                while let Ok(p) = self.take(usize::MAX) {
                    deliver(&p, &mut want)?;
                }
            }
        }
        if head.close {
            self.s = None;
        }
        Ok(())
    }

    fn body_all(&mut self, head: &Head) -> Res<Vec<u8>> {
        let mut v = Vec::new();
        self.body(head, |p| {
            v.extend_from_slice(p);
            Ok(true)
        })?;
        Ok(v)
    }

    /// A JSON request with a whole response; non-2xx is an error carrying beamd's message.
    fn call(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Res<(u16, Vec<u8>)> {
        self.send(method, path, body)?;
        let head = self.read_head()?;
        let b = self.body_all(&head)?;
        if !(200..300).contains(&head.status) {
            return Err(format!("{method} {path}: {} {}", head.status, String::from_utf8_lossy(&b).trim()));
        }
        Ok((head.status, b))
    }

    fn create(&mut self, req: &CreateSandbox) -> Res<Sandbox> {
        let body = serde_json::to_vec(req).unwrap();
        let (_, b) = self.call("POST", "/v1/sandboxes", Some(&body))?;
        serde_json::from_slice(&b).map_err(|e| format!("create: bad Sandbox JSON ({e})"))
    }

    fn delete(&mut self, id: &str) -> Res<()> {
        self.call("DELETE", &format!("/v1/sandboxes/{id}"), None).map(|_| ())
    }

    /// Exec and read the stream. `on_frame(stream, payload)` is called as frames arrive (return false to stop
    /// looking; the stream is still read to its end). Returns the exit frame.
    fn exec(&mut self, id: &str, body: &[u8], mut on_frame: impl FnMut(u8, &[u8]) -> bool) -> Res<ExecExit> {
        let path = format!("/v1/sandboxes/{id}/exec");
        self.send("POST", &path, Some(body))?;
        let head = self.read_head()?;
        if head.status != 200 {
            let b = self.body_all(&head)?;
            return Err(format!("exec: {} {}", head.status, String::from_utf8_lossy(&b).trim()));
        }
        let mut dec = frames::Decoder::new();
        let mut exit = None;
        let mut watching = true;
        self.body(&head, |piece| {
            dec.push(piece);
            while let Some((stream, payload)) = dec.next_frame().map_err(|e| e.to_string())? {
                if stream == frames::EXIT {
                    exit = Some(serde_json::from_slice::<ExecExit>(&payload).map_err(|e| format!("exit frame: {e}"))?);
                } else if watching {
                    watching = on_frame(stream, &payload);
                }
            }
            Ok(true)
        })?;
        exit.ok_or_else(|| "exec stream ended without an exit frame".into())
    }
}

fn exec_body(cmd: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&ExecRequest { cmd: cmd.iter().map(|s| s.to_string()).collect(), ..Default::default() }).unwrap()
}

// --- the measurements -------------------------------------------------------------------------------------

/// create → exec `echo hi` → the "hi" frame; delete after each run, untimed.
fn create_exec(socket: &std::path::Path, n: usize) -> Res<()> {
    let mut c = Conn::new(socket);
    let req = CreateSandbox { image: "busybox".into(), ..Default::default() };
    let body = exec_body(&["echo", "hi"]);
    let (mut total, mut create, mut first) = (vec![], vec![], vec![]);
    for i in 0..WARMUP_CREATE + n {
        let t0 = Instant::now();
        let sb = c.create(&req)?;
        let t1 = Instant::now();
        let mut t2 = None;
        let mut out = Vec::new();
        let exit = c.exec(&sb.id, &body, |stream, payload| {
            if stream == frames::STDOUT {
                out.extend_from_slice(payload);
                if out.starts_with(b"hi") {
                    t2 = Some(Instant::now());
                    return false;
                }
            }
            true
        });
        // Delete even when the exec failed, so no sandbox is left behind.
        let del = c.delete(&sb.id);
        let exit = exit?;
        del?;
        let t2 = t2.ok_or_else(|| format!("run {i}: no \"hi\" on stdout (got {:?}, exit {exit:?})", String::from_utf8_lossy(&out)))?;
        if exit.exit_code != 0 {
            return Err(format!("run {i}: echo hi exited {exit:?}"));
        }
        if i >= WARMUP_CREATE {
            total.push(t2 - t0);
            create.push(t1 - t0);
            first.push(t2 - t1);
        }
    }
    report("create_to_first_output", &total);
    report("  create_request_only", &create);
    report("  first_exec_to_output", &first);
    Ok(())
}

/// exec CMD → exit frame, on one running sandbox.
fn exec_loop(socket: &std::path::Path, n: usize, id: &str, cmd: &[String]) -> Res<()> {
    let mut c = Conn::new(socket);
    let body = exec_body(&cmd.iter().map(String::as_str).collect::<Vec<_>>());
    let mut t = Vec::with_capacity(n);
    for i in 0..WARMUP_EXEC + n {
        let t0 = Instant::now();
        let exit = c.exec(id, &body, |_, _| true)?;
        let d = t0.elapsed();
        if exit.exit_code != 0 {
            return Err(format!("exec {cmd:?} exited {exit:?}"));
        }
        if i >= WARMUP_EXEC {
            t.push(d);
        }
    }
    report(&format!("beam_exec_{}", cmd.join("_")), &t);
    Ok(())
}

/// spawn `runc exec CTR true` and wait: the same shape as hyperfine -N.
fn runc_exec(n: usize, ctr: &str, runc: &str, root: Option<&str>) -> Res<()> {
    let mut t = Vec::with_capacity(n);
    for i in 0..WARMUP_RUNC + n {
        let mut cmd = Command::new(runc);
        if let Some(r) = root {
            cmd.args(["--root", r]);
        }
        cmd.args(["exec", ctr, "true"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let t0 = Instant::now();
        let out = cmd.output().map_err(|e| format!("spawn {runc}: {e}"))?;
        let d = t0.elapsed();
        if !out.status.success() {
            return Err(format!("runc exec {ctr} true: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
        }
        if i >= WARMUP_RUNC {
            t.push(d);
        }
    }
    report("runc_exec_true", &t);
    Ok(())
}

fn meminfo_kib(key: &str) -> Res<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("/proc/meminfo: no {key}"))
}

/// /proc/meminfo lines whose growth shows kernel-side cost per sandbox.
const KERNEL_KEYS: [&str; 6] = ["Slab", "SUnreclaim", "KernelStack", "PageTables", "Shmem", "Cached"];

fn vm_rss_kib(pid: i32) -> Res<u64> {
    let p = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{p}: no VmRSS"))
}

/// beamd's pid: the peer of our socket connection (SO_PEERCRED).
fn beamd_pid(c: &mut Conn) -> Res<i32> {
    let s = c.stream()?;
    let cred = nix::sys::socket::getsockopt(&*s, nix::sys::socket::sockopt::PeerCredentials).map_err(|e| format!("SO_PEERCRED: {e}"))?;
    Ok(cred.pid())
}

/// (usage, anon) bytes of a sandbox's memory cgroup: v2 memory.current / memory.stat anon, v1 (hybrid)
/// memory.usage_in_bytes / memory.stat rss.
fn cgroup_mem(id: &str) -> Res<(u64, u64)> {
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (dir, usage, anon_key) = if v2 {
        (format!("/sys/fs/cgroup/beam/{id}"), "memory.current", "anon")
    } else {
        (format!("/sys/fs/cgroup/memory/beam/{id}"), "memory.usage_in_bytes", "rss")
    };
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).map_err(|e| format!("{dir}/{f}: {e}"));
    let u = read(usage)?.trim().parse::<u64>().map_err(|e| format!("{dir}/{usage}: {e}"))?;
    let anon = read("memory.stat")?
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == anon_key).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    Ok((u, anon))
}

fn settle() {
    std::thread::sleep(Duration::from_secs(2));
}

/// N idle sandboxes: memory before/after; always deletes what it created.
fn idle(socket: &std::path::Path, n: usize) -> Res<()> {
    let mut c = Conn::new(socket);
    let pid = beamd_pid(&mut c)?;
    // Drop reclaimable caches' effect on the delta as far as possible: measure after a settle.
    settle();
    let rss0 = vm_rss_kib(pid)?;
    let avail0 = meminfo_kib("MemAvailable")?;
    let kernel0 = KERNEL_KEYS.iter().map(|k| meminfo_kib(k)).collect::<Res<Vec<_>>>()?;
    let req = CreateSandbox { image: "busybox".into(), keep_warm_seconds: Some(-1), ..Default::default() };
    let mut ids = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let t_all = Instant::now();
    let mut result = (|| -> Res<()> {
        for _ in 0..n {
            let t0 = Instant::now();
            let sb = c.create(&req)?;
            times.push(t0.elapsed());
            ids.push(sb.id);
        }
        Ok(())
    })();
    let create_wall = t_all.elapsed();
    if result.is_ok() {
        result = (|| -> Res<()> {
            settle();
            let rss1 = vm_rss_kib(pid)?;
            let avail1 = meminfo_kib("MemAvailable")?;
            let kernel1 = KERNEL_KEYS.iter().map(|k| meminfo_kib(k)).collect::<Res<Vec<_>>>()?;
            let (mut usage, mut anon) = (0u64, 0u64);
            for id in &ids {
                let (u, a) = cgroup_mem(id)?;
                usage += u;
                anon += a;
            }
            let nf = n as f64;
            report(&format!("idle_create_{n}_sequential"), &times);
            // Does create slow down as sandboxes pile up? The first and the last tenth, separately.
            let k = (n / 10).max(1);
            report("  idle_create_first_tenth", &times[..k]);
            report("  idle_create_last_tenth", &times[n - k..]);
            println!("idle_create_wall_s={:.2}", create_wall.as_secs_f64());
            println!("beamd_rss_kib before={rss0} after={rss1} delta_per_sandbox_kib={:.1}", (rss1 as f64 - rss0 as f64) / nf);
            println!(
                "host_memavailable_kib before={avail0} after={avail1} delta_per_sandbox_kib={:.1}",
                (avail0 as f64 - avail1 as f64) / nf
            );
            // Kernel memory that is not in the sandboxes' cgroups (namespaces, mounts, …) shows up here.
            let parts: Vec<String> = KERNEL_KEYS
                .iter()
                .zip(kernel0.iter().zip(&kernel1))
                .map(|(k, (a, b))| format!("{k}={:.1}", (*b as f64 - *a as f64) / nf))
                .collect();
            println!("host_meminfo_delta_per_sandbox_kib {}", parts.join(" "));
            println!(
                "cgroup_memory_sum_kib usage={} per_sandbox_kib={:.1} anon_sum_kib={} anon_per_sandbox_kib={:.1}",
                usage / 1024,
                usage as f64 / 1024.0 / nf,
                anon / 1024,
                anon as f64 / 1024.0 / nf
            );
            Ok(())
        })();
    }
    // Delete all, whatever happened above.
    let t_del = Instant::now();
    let mut del_err = None;
    for id in &ids {
        if let Err(e) = c.delete(id) {
            // One retry on a fresh connection (the old one may be broken).
            c.s = None;
            if let Err(e2) = c.delete(id) {
                del_err.get_or_insert(format!("delete {id}: {e}; retry: {e2}"));
            }
        }
    }
    let del_wall = t_del.elapsed();
    if result.is_ok() {
        settle();
        println!(
            "after_delete_all wall_s={:.2} beamd_rss_kib={} host_memavailable_kib={}",
            del_wall.as_secs_f64(),
            vm_rss_kib(pid)?,
            meminfo_kib("MemAvailable")?
        );
    }
    result?;
    match del_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
