//! `POST /v1/sandboxes/{ref}/exec`: run a process through the sandbox's init and stream its output as
//! frames ([`crate::api::frames`]); with an upgraded connection, also stdin, resize and signals.

use super::http::{HttpError, Resp, channel_body, empty};
use crate::api::{ExecExit, ExecExitReason, ExecRequest, Resize, SignalRequest, frames};
use crate::image::bundle;
use crate::sandbox::initclient::{ExecHandle, InitClientError};
use crate::sandbox::initproto::{ExecSpec, MAX_PACKET, Request as InitRequest};
use crate::sandbox::{Entry, Manager};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// Output still buffered in the pipes is always read; after the process exits, a background child that
/// keeps the pipes open gets this long before the stream ends.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);

/// The checks of an exec request that need no sandbox: stdin and tty only on an upgraded connection, and
/// the timeout (returned) a positive number of seconds.
pub fn check_request(body: &ExecRequest, upgrade: bool) -> Result<Option<Duration>, HttpError> {
    if (body.stdin || body.tty) && !upgrade {
        return Err(HttpError::bad_request(
            "stdin and tty need a two-way stream: send `Connection: Upgrade` and `Upgrade: beam-stream`",
        ));
    }
    body.timeout_seconds
        .map(|t| match Duration::try_from_secs_f64(t) {
            Ok(d) if t > 0.0 => Ok(d),
            // try_from_secs_f64 refuses NaN, negatives and what a Duration can't hold (from_secs_f64 panicked).
            _ => Err(HttpError::bad_request(format!("timeout_seconds {t} must be a positive number of seconds"))),
        })
        .transpose()
}

/// The ExecSpec for a request: the sandbox's env, workdir and user unless overridden.
pub fn exec_spec(e: &Entry, r: &ExecRequest) -> Result<ExecSpec, HttpError> {
    if r.cmd.is_empty() || r.cmd[0].is_empty() {
        return Err(HttpError::bad_request("cmd is empty; give the command to run, e.g. [\"sh\", \"-c\", \"echo hi\"]"));
    }
    let rec = e.record();
    for (k, v) in &r.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(HttpError::bad_request(format!("env {k:?}: names must be non-empty without '=' and values without NUL")));
        }
    }
    let mut over: Vec<String> = r.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if r.tty && !rec.env.iter().chain(&over).any(|e| e.starts_with("TERM=")) {
        over.push("TERM=xterm".into());
    }
    let env = bundle::merge_env(&rec.env, &over);
    let cwd = r.cwd.clone().unwrap_or_else(|| rec.sandbox.workdir.clone());
    if !cwd.starts_with('/') {
        return Err(HttpError::bad_request(format!("cwd {cwd:?} must be an absolute path inside the sandbox")));
    }
    let (uid, gid, groups) = match &r.user {
        None => (rec.uid, rec.gid, rec.groups.clone()),
        Some(u) => {
            let pid = rec.sandbox.pid.ok_or_else(|| HttpError::new(409, "conflict", "the sandbox is not running"))?;
            let root = bundle::open_root(std::path::Path::new(&format!("/proc/{pid}/root")))
                .map_err(|e| HttpError::internal(e.to_string()))?;
            bundle::resolve_user(&root, u).map_err(|e| HttpError::bad_request(e.to_string()))?
        }
    };
    let spec = ExecSpec {
        args: r.cmd.clone(),
        env,
        cwd,
        uid,
        gid,
        groups,
        tty: r.tty,
        rows: r.rows.unwrap_or(24),
        cols: r.cols.unwrap_or(80),
    };
    if InitRequest::Exec(spec.clone()).encode().len() > MAX_PACKET - 1024 {
        return Err(HttpError::new(413, "payload_too_large", "the command and environment are too large (over ~190 KiB); pass data through a file"));
    }
    Ok(spec)
}

fn pipe() -> Result<(OwnedFd, OwnedFd), HttpError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| HttpError::internal(format!("pipe2: {e}")))
}

fn pipe_reader(fd: OwnedFd) -> Result<tokio::net::unix::pipe::Receiver, HttpError> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd).map_err(|e| HttpError::internal(format!("pipe: {e}")))
}

/// The process's output side: two pipes, or one pty master.
enum Output {
    Pipes { out: tokio::net::unix::pipe::Receiver, err: tokio::net::unix::pipe::Receiver },
    Pty(Arc<AsyncFd<OwnedFd>>),
}

enum OutSrc {
    Pipe(tokio::net::unix::pipe::Receiver),
    Pty(Arc<AsyncFd<OwnedFd>>),
}

/// Where stdin frames go.
enum Input {
    None,
    Pipe(tokio::net::unix::pipe::Sender),
    Pty(Arc<AsyncFd<OwnedFd>>),
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    Ok(())
}

async fn pty_read(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|inner| nix::unistd::read(inner.get_ref(), buf).map_err(std::io::Error::from)) {
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn pty_write_all(fd: &AsyncFd<OwnedFd>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|inner| nix::unistd::write(inner.get_ref(), data).map_err(std::io::Error::from)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

fn resize(fd: &AsyncFd<OwnedFd>, r: Resize) {
    let ws = libc::winsize { ws_row: r.rows, ws_col: r.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize struct we own; the fd is a pty master we hold.
    unsafe { libc::ioctl(fd.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

async fn read_some<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    r.read(buf).await
}

/// Handle the exec call.
#[allow(clippy::too_many_lines, reason = "the exec request's whole life (checks, init request, both stream modes, the exit frame) reads best in one place; split before adding to it")]
pub async fn exec(mgr: Arc<Manager>, e: Arc<Entry>, mut req: Request<Incoming>) -> Result<Resp, HttpError> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(crate::api::UPGRADE_PROTOCOL));
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body: ExecRequest = super::http::read_json(req.into_body(), ct.as_deref()).await?;
    let timeout = check_request(&body, upgrade)?;
    let spec = exec_spec(&e, &body)?;
    let (stdio, output, input) = if body.tty {
        (None, None, None)
    } else {
        let (in_r, in_w) = if body.stdin {
            let (r, w) = pipe()?;
            (r, Some(w))
        } else {
            let null = std::fs::File::open("/dev/null").map_err(|e| HttpError::internal(format!("/dev/null: {e}")))?;
            (OwnedFd::from(null), None)
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        (Some([in_r, out_w, err_w]), Some((out_r, err_r)), in_w)
    };
    let guard = e.active();
    let oom_before = oom_count(&e);
    let handle = mgr.init_client(&e).exec(spec, stdio).await.map_err(|err| match err {
        InitClientError::Exec { message, .. } => HttpError::bad_request(message),
        InitClientError::Dead { .. } => HttpError::new(409, "conflict", format!("sandbox {} is no longer running", e.id)),
        other => HttpError::internal(other.to_string()),
    })?;
    let pid = handle.pid;
    let (output, input) = match (output, handle.pty_master.as_ref()) {
        (Some((o, er)), _) => (
            Output::Pipes { out: pipe_reader(o)?, err: pipe_reader(er)? },
            match input {
                Some(w) => Input::Pipe(
                    tokio::net::unix::pipe::Sender::from_owned_fd(w).map_err(|e| HttpError::internal(format!("pipe: {e}")))?,
                ),
                None => Input::None,
            },
        ),
        (None, Some(m)) => {
            let m = m.try_clone().map_err(|e| HttpError::internal(format!("pty: {e}")))?;
            set_nonblocking(&m).map_err(|e| HttpError::internal(format!("pty: {e}")))?;
            // SAFETY: `m` is an OwnedFd the AsyncFd owns; it stays open until the AsyncFd drops.
            let afd = unsafe { AsyncFd::register(m) }.map_err(|e| HttpError::internal(format!("pty: {e}")))?;
            let afd = Arc::new(afd);
            (Output::Pty(afd.clone()), Input::Pty(afd))
        }
        (None, None) => return Err(HttpError::internal("the init sent no pty for a tty exec")),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let (sig_tx, sig_rx) = mpsc::channel::<i32>(4);
    let signals = on_upgrade.is_some().then_some(sig_rx);
    let run = Run { e: e.clone(), handle, output, timeout, oom_before, signals, _guard: guard };
    match on_upgrade {
        None => {
            tokio::spawn(run.pump(tx));
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, crate::api::STREAM_CONTENT_TYPE)
                .header(crate::api::EXEC_PID_HEADER, pid.to_string())
                .body(channel_body(rx))
                .expect("response builds"))
        }
        Some(on_upgrade) => {
            tokio::spawn(async move {
                let upgraded = match on_upgrade.await {
                    Ok(u) => u,
                    Err(err) => {
                        tracing::warn!("exec upgrade failed: {err}");
                        return;
                    }
                };
                let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
                let handle_signals = sig_tx;
                let writer = tokio::spawn(async move {
                    let mut rx = rx;
                    while let Some(Ok(b)) = rx.recv().await {
                        if wr.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    let _ = wr.shutdown().await;
                });
                let reader = tokio::spawn(async move {
                    let mut input = input;
                    let mut dec = frames::Decoder::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match rd.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        dec.push(&buf[..n]);
                        loop {
                            let (stream, data) = match dec.next_frame() {
                                Ok(Some(f)) => f,
                                Ok(None) => break,
                                Err(err) => {
                                    tracing::warn!("exec stream from client: {err}");
                                    return;
                                }
                            };
                            match stream {
                                frames::STDIN if data.is_empty() => {
                                    if let Input::Pipe(_) = input {
                                        input = Input::None;
                                    }
                                }
                                frames::STDIN => match &mut input {
                                    Input::Pipe(w) => {
                                        if w.write_all(&data).await.is_err() {
                                            input = Input::None;
                                        }
                                    }
                                    Input::Pty(m) => {
                                        let _ = pty_write_all(m, &data).await;
                                    }
                                    Input::None => {}
                                },
                                frames::RESIZE => {
                                    if let (Input::Pty(m), Ok(r)) = (&input, serde_json::from_slice::<Resize>(&data)) {
                                        resize(m, r);
                                    }
                                }
                                frames::SIGNAL => {
                                    if let Some(sig) = serde_json::from_slice::<SignalRequest>(&data)
                                        .ok()
                                        .and_then(|s| crate::runtime::verbs::parse_signal(&s.signal).ok())
                                    {
                                        let _ = handle_signals.send(sig as i32).await;
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                });
                run.pump(tx).await;
                reader.abort();
                let _ = writer.await;
            });
            Ok(Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, crate::api::UPGRADE_PROTOCOL)
                .header(crate::api::EXEC_PID_HEADER, pid.to_string())
                .body(empty())
                .expect("response builds"))
        }
    }
}

/// The OOM kills in the sandbox's cgroup so far (one file read; the cgroup is named after the sandbox).
fn oom_count(e: &Entry) -> u64 {
    crate::sandbox::manager::sandbox_cgroup(&e.id).and_then(|cg| cg.oom_kill_count().ok()).unwrap_or(0)
}

struct Run {
    e: Arc<Entry>,
    handle: ExecHandle,
    output: Output,
    timeout: Option<Duration>,
    oom_before: u64,
    /// Signals from the client (upgraded connections).
    signals: Option<mpsc::Receiver<i32>>,
    _guard: crate::sandbox::ActiveGuard,
}

impl Run {
    /// Stream output until the process exits and its pipes drain; then the exit frame.
    async fn pump(self, tx: Tx) {
        let Run { e, handle, output, timeout, oom_before, mut signals, _guard } = self;
        let (mut out_src, mut err_src) = match output {
            Output::Pipes { out, err } => (OutSrc::Pipe(out), Some(err)),
            Output::Pty(m) => (OutSrc::Pty(m), None),
        };
        let mut out_buf = vec![0u8; 64 * 1024];
        let mut err_buf = vec![0u8; 64 * 1024];
        let (mut out_done, mut err_done) = (false, err_src.is_none());
        let wait = handle.wait();
        tokio::pin!(wait);
        let mut status: Option<Result<(i32, i32), InitClientError>> = None;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut timed_out = false;
        let mut drain_until: Option<tokio::time::Instant> = None;
        let send = |stream: u8, data: &[u8]| {
            let tx = tx.clone();
            let frame = Bytes::from(frames::encode(stream, data));
            async move { tx.send(Ok(frame)).await.is_ok() }
        };
        loop {
            if out_done && err_done && status.is_some() {
                break;
            }
            tokio::select! {
                r = async {
                    match &mut out_src {
                        OutSrc::Pipe(out) => read_some(out, &mut out_buf).await,
                        OutSrc::Pty(m) => pty_read(m, &mut out_buf).await,
                    }
                }, if !out_done => match r {
                    Ok(0) | Err(_) => out_done = true,
                    Ok(n) => if !send(frames::STDOUT, &out_buf[..n]).await { return },
                },
                r = async {
                    match &mut err_src {
                        Some(err) => read_some(err, &mut err_buf).await,
                        None => std::future::pending().await,
                    }
                }, if !err_done => match r {
                    Ok(0) | Err(_) => err_done = true,
                    Ok(n) => if !send(frames::STDERR, &err_buf[..n]).await { return },
                },
                r = &mut wait, if status.is_none() => {
                    status = Some(r);
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                }
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() && !timed_out && status.is_none() => {
                    timed_out = true;
                    let _ = handle.signal(libc::SIGKILL).await;
                }
                _ = async { tokio::time::sleep_until(drain_until.expect("guarded")).await }, if drain_until.is_some() => break,
                Some(sig) = async { match &mut signals { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                    let _ = handle.signal(sig).await;
                }
                _ = tx.closed() => {
                    // The client went away: dropping the handle makes the init kill the process group.
                    return;
                }
            }
        }
        let exit = match status.expect("loop ends with a status") {
            Ok((code, signal)) => {
                let reason = if timed_out {
                    ExecExitReason::Timeout
                } else if signal == libc::SIGKILL && oom_count(&e) > oom_before {
                    ExecExitReason::OomKilled
                } else if signal != 0 {
                    ExecExitReason::Killed
                } else {
                    ExecExitReason::Exited
                };
                ExecExit {
                    exit_code: code,
                    signal: (signal != 0).then_some(signal),
                    reason,
                    message: timed_out.then(|| format!("killed after {:.1} s (timeout_seconds)", timeout.unwrap_or_default().as_secs_f64())),
                }
            }
            Err(err) => ExecExit {
                exit_code: 137,
                signal: Some(libc::SIGKILL),
                reason: ExecExitReason::Killed,
                message: Some(format!("the sandbox stopped while the process ran ({err})")),
            },
        };
        let _ = send(frames::EXIT, &serde_json::to_vec(&exit).expect("exit serializes")).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timeout no Duration holds was a panic in the handler (Duration::from_secs_f64 of
    /// `{"cmd": ["a"], "timeout_seconds": 1e300}`, seen while writing fuzz/api_requests); now a 400 like NaN
    /// or ≤ 0.
    #[test]
    fn exec_timeouts() {
        let req = |t: f64| ExecRequest { cmd: vec!["a".into()], timeout_seconds: Some(t), ..Default::default() };
        assert_eq!(check_request(&req(1.5), false).unwrap(), Some(Duration::from_millis(1500)));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300, f64::MAX] {
            let e = check_request(&req(bad), false).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{bad}: {}", e.message);
        }
        let e = ExecRequest { cmd: vec!["sh".into()], tty: true, ..Default::default() };
        assert!(check_request(&e, false).is_err());
        assert_eq!(check_request(&e, true).unwrap(), None);
    }
}
