//! `beam exec` and `beam shell`: a command in a running sandbox, its output demultiplexed from the
//! exec stream; with -i/-t over an upgraded connection carrying stdin, resizes and signals.

use crate::args::parse_env;
use crate::client::{self, Client, Error, sandbox_path, usage};
use crate::output::{err_out, out};
use beam::api::frames::{self, Decoder};
use beam::api::{self, ExecExit, ExecExitReason, ExecRequest, FileStat, FileType, Resize, SignalRequest};
use clap::Args;
use hyper::Method;
use std::io::{IsTerminal, Read};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

#[derive(Args)]
pub struct ExecArgs {
    /// Keep stdin open and send it to the command.
    #[arg(long, short = 'i')]
    interactive: bool,
    /// A terminal for the command (this one in raw mode; needs a terminal on stdin).
    #[arg(long, short = 't')]
    tty: bool,
    /// Environment variable KEY=VALUE; KEY alone passes on this shell's value (repeatable).
    #[arg(long, short = 'e', value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory inside the sandbox.
    #[arg(long, short = 'w')]
    workdir: Option<String>,
    /// uid[:gid] or name[:group] (default: the sandbox's user).
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// Kill the command after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Sandbox id or name.
    id: String,
    /// The command and its arguments (after `--` when they start with a dash).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    cmd: Vec<String>,
}

/// Demultiplexes an exec stream: output frames go to the sinks, the exit frame is kept.
pub struct Demux {
    dec: Decoder,
    pub exit: Option<ExecExit>,
}

impl Demux {
    pub fn new() -> Self {
        Demux { dec: Decoder::new(), exit: None }
    }

    /// Feed bytes from the stream; complete frames are handed to `sink(stream, payload)`.
    pub fn feed(&mut self, data: &[u8], sink: &mut impl FnMut(u8, &[u8]) -> Result<(), Error>) -> Result<(), Error> {
        self.dec.push(data);
        while let Some((stream, payload)) = self.dec.next_frame().map_err(|e| Error::Protocol(e.to_string()))? {
            match stream {
                frames::STDOUT | frames::STDERR => sink(stream, &payload)?,
                frames::EXIT => {
                    let e = serde_json::from_slice(&payload)
                        .map_err(|e| Error::Protocol(format!("exec stream: bad exit frame ({e})")))?;
                    self.exit = Some(e);
                }
                _ => tracing::debug!("exec stream: ignoring a frame on stream {stream}"),
            }
        }
        Ok(())
    }

    /// The exit status at the end of the stream.
    pub fn finish(self) -> Result<ExecExit, Error> {
        self.exit.ok_or_else(|| Error::Protocol("the exec stream ended before the command's exit status (did beamd stop?)".into()))
    }
}

/// Our stdout and stderr as a frame sink.
fn to_stdio(stream: u8, payload: &[u8]) -> Result<(), Error> {
    if stream == frames::STDERR {
        err_out(payload);
        Ok(())
    } else {
        out(payload)
    }
}

/// `5`, `0.5`.
fn secs(t: f64) -> String {
    format!("{t}")
}

/// The messages to print for an exit frame (after the terminal is restored).
fn exit_lines(e: &ExecExit, timeout: Option<f64>) -> Option<String> {
    match e.reason {
        ExecExitReason::Timeout => Some(match timeout {
            Some(t) => format!("beam: exec timed out after {} s", secs(t)),
            None => "beam: exec timed out".into(),
        }),
        ExecExitReason::Error => Some(format!("beam: {}", e.message.as_deref().unwrap_or("exec failed"))),
        _ => None,
    }
}

struct Opts {
    id: String,
    req: ExecRequest,
}

pub async fn exec(c: &Client, a: ExecArgs) -> Result<i32, Error> {
    if let Some(t) = a.timeout
        && !(t.is_finite() && t > 0.0)
    {
        return Err(usage(format!("--timeout {t}: give a positive number of seconds")));
    }
    if a.tty && !std::io::stdin().is_terminal() {
        return Err(usage("-t needs a terminal on stdin; drop -t (keep -i) to pipe input to the command"));
    }
    let mut env = parse_env(&a.env, |k| std::env::var(k).ok())?;
    if a.tty && !env.contains_key("TERM") {
        env.insert("TERM".into(), std::env::var("TERM").ok().filter(|t| !t.is_empty()).unwrap_or_else(|| "xterm".into()));
    }
    let (rows, cols) = if a.tty { winsize().map_or((None, None), |(r, c)| (Some(r), Some(c))) } else { (None, None) };
    let req = ExecRequest {
        cmd: a.cmd,
        env,
        cwd: a.workdir,
        user: a.user,
        tty: a.tty,
        stdin: a.interactive,
        timeout_seconds: a.timeout,
        rows,
        cols,
    };
    let o = Opts { id: a.id, req };
    let e = if a.tty || a.interactive { exec_upgraded(c, &o).await? } else { exec_plain(c, &o).await? };
    if let Some(l) = exit_lines(&e, a.timeout) {
        err_out(format!("{l}\n").as_bytes());
    }
    Ok(e.exit_code)
}

/// `beam shell ID`: bash if the sandbox has /bin/bash, else sh; a terminal when we have one.
pub async fn shell(c: &Client, id: &str) -> Result<i32, Error> {
    let stat: Result<FileStat, Error> = c.get(&sandbox_path(id, &format!("/files/stat?path={}", client::q("/bin/bash")))).await;
    let cmd = match stat {
        Ok(s) if matches!(s.kind, FileType::File | FileType::Symlink) => "/bin/bash",
        Ok(_) => "sh",
        Err(e) if e.is_not_found() => "sh",
        Err(e) => return Err(e),
    };
    let tty = std::io::stdin().is_terminal();
    let a = ExecArgs {
        interactive: true,
        tty,
        env: vec![],
        workdir: None,
        user: None,
        timeout: None,
        id: id.to_string(),
        cmd: vec![cmd.to_string()],
    };
    exec(c, a).await
}

/// Without stdin or a terminal: a plain POST whose body is the exec stream. Ctrl-C is passed on to
/// the process (SIGINT, then SIGKILL); a third one leaves it running.
async fn exec_plain(c: &Client, o: &Opts) -> Result<ExecExit, Error> {
    let resp = c.call(Method::POST, &sandbox_path(&o.id, "/exec"), Some(&o.req)).await?;
    let ct = client::content_type(&resp);
    if ct != api::STREAM_CONTENT_TYPE {
        return Err(Error::Protocol(format!("beamd answered exec with {ct:?} instead of an exec stream")));
    }
    let pid: Option<i32> = resp.headers().get(api::EXEC_PID_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let mut body = resp.into_body();
    let mut d = Demux::new();
    let mut int = signal(SignalKind::interrupt()).map_err(|e| usage(format!("SIGINT handler: {e}")))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| usage(format!("SIGTERM handler: {e}")))?;
    let mut interrupts = 0;
    loop {
        let sig = tokio::select! {
            chunk = client::next_chunk(&mut body) => match chunk? {
                Some(b) => {
                    d.feed(&b, &mut to_stdio)?;
                    continue;
                }
                None => break,
            },
            _ = int.recv() => {
                interrupts += 1;
                match interrupts {
                    1 => "INT",
                    2 => "KILL",
                    _ => {
                        err_out(format!("beam: left the command running in sandbox {}\n", o.id).as_bytes());
                        return Ok(ExecExit { exit_code: 130, signal: None, reason: ExecExitReason::Killed, message: Some("interrupted".into()) });
                    }
                }
            }
            _ = term.recv() => "TERM",
        };
        match pid {
            Some(p) => {
                let path = sandbox_path(&o.id, &format!("/processes/{p}/signal"));
                if let Err(e) = c.no_content(Method::POST, &path, Some(&SignalRequest { signal: sig.into() })).await {
                    tracing::debug!("passing SIG{sig} on: {e}");
                }
            }
            None => {
                err_out(b"beam: beamd did not say the process's pid; leaving it running\n");
                return Ok(ExecExit { exit_code: 130, signal: None, reason: ExecExitReason::Killed, message: Some("interrupted".into()) });
            }
        }
    }
    d.finish()
}

/// The local terminal in raw mode until dropped.
struct RawMode(nix::sys::termios::Termios);

impl RawMode {
    fn enter() -> Result<Self, Error> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let orig = tcgetattr(&stdin).map_err(|e| usage(format!("reading the terminal's settings: {}", e.desc())))?;
        let mut raw = orig.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).map_err(|e| usage(format!("putting the terminal in raw mode: {}", e.desc())))?;
        Ok(RawMode(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.0);
    }
}

/// The local terminal's (rows, cols).
fn winsize() -> Option<(u16, u16)> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO, libc::STDERR_FILENO] {
        // SAFETY: winsize is plain integers; all-zero is a valid value.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes a winsize into the struct we own.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

fn json_frame<T: serde::Serialize>(stream: u8, v: &T) -> Vec<u8> {
    frames::encode(stream, &serde_json::to_vec(v).expect("json frame"))
}

/// Copy our stdin into stdin frames on a thread (reads block); EOF sends the empty frame that closes it.
fn stdin_pump(tx: mpsc::Sender<Vec<u8>>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(frames::encode(frames::STDIN, &buf[..n])).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!("reading stdin: {e}");
                    break;
                }
            }
        }
        let _ = tx.blocking_send(frames::encode(frames::STDIN, b""));
    });
}

/// With stdin and/or a terminal: the upgraded connection, frames both ways.
async fn exec_upgraded(c: &Client, o: &Opts) -> Result<ExecExit, Error> {
    let (_headers, io) = c.upgrade(&sandbox_path(&o.id, "/exec"), &o.req).await?;
    let _raw = if o.req.tty { Some(RawMode::enter()?) } else { None };
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    if o.req.stdin {
        stdin_pump(tx.clone());
    }
    let writer = tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            if let Err(e) = wr.write_all(&f).await {
                tracing::debug!("exec stream: {e}");
                break;
            }
            let _ = wr.flush().await;
        }
    });
    let mut sigs = Vec::new();
    let mut kinds = vec![(SignalKind::terminate(), "TERM"), (SignalKind::hangup(), "HUP")];
    if !o.req.tty {
        // In raw mode ^C is a byte for the remote terminal; otherwise pass SIGINT on.
        kinds.push((SignalKind::interrupt(), "INT"));
    }
    for (k, name) in kinds {
        let mut s = signal(k).map_err(|e| usage(format!("signal handler: {e}")))?;
        let tx = tx.clone();
        sigs.push(tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(json_frame(frames::SIGNAL, &SignalRequest { signal: name.into() })).await.is_err() {
                    break;
                }
            }
        }));
    }
    if o.req.tty {
        let mut s = signal(SignalKind::window_change()).map_err(|e| usage(format!("SIGWINCH handler: {e}")))?;
        let tx = tx.clone();
        sigs.push(tokio::spawn(async move {
            while s.recv().await.is_some() {
                if let Some((rows, cols)) = winsize()
                    && tx.send(json_frame(frames::RESIZE, &Resize { rows, cols })).await.is_err()
                {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut d = Demux::new();
    let mut buf = vec![0u8; 64 * 1024];
    let r = loop {
        match rd.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = d.feed(&buf[..n], &mut to_stdio) {
                    break Err(e);
                }
                if d.exit.is_some() {
                    break Ok(());
                }
            }
            Err(e) => break Err(Error::Protocol(format!("exec stream: {e}"))),
        }
    };
    writer.abort();
    for s in sigs {
        s.abort();
    }
    r?;
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::tests::parse;

    fn exec_args(args: &[&str]) -> ExecArgs {
        match parse::<ExecArgs>(args) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn exec_parsing() {
        let a = exec_args(&["-it", "sb", "--", "sh", "-c", "echo hi"]);
        assert!(a.interactive && a.tty);
        assert_eq!((a.id.as_str(), a.cmd.clone()), ("sb", vec!["sh".to_string(), "-c".into(), "echo hi".into()]));
        let a = exec_args(&["--timeout", "2.5", "-e", "A=1", "sb", "ls", "-la"]);
        assert_eq!(a.cmd, vec!["ls".to_string(), "-la".into()]);
        assert_eq!(a.timeout, Some(2.5));
        assert!(!a.interactive);
        // Flags after the command are the command's.
        let a = exec_args(&["sb", "grep", "-i", "x"]);
        assert_eq!(a.cmd, vec!["grep".to_string(), "-i".into(), "x".into()]);
        assert!(!a.interactive);
        assert!(parse::<ExecArgs>(&["sb"]).is_err());
    }

    #[test]
    fn demux_in_pieces() {
        let mut s = frames::encode(frames::STDOUT, b"hello ");
        s.extend(frames::encode(frames::STDERR, b"oops"));
        s.extend(frames::encode(frames::STDOUT, b"world"));
        s.extend(frames::encode(frames::EXIT, br#"{"exit_code":3,"signal":null,"reason":"exited"}"#));
        for piece in [1, 5, 8, 1000] {
            let (mut o, mut e) = (Vec::new(), Vec::new());
            let mut d = Demux::new();
            for ch in s.chunks(piece) {
                d.feed(ch, &mut |st, p| {
                    if st == frames::STDOUT { o.extend_from_slice(p) } else { e.extend_from_slice(p) }
                    Ok(())
                })
                .unwrap();
            }
            assert_eq!((o.as_slice(), e.as_slice()), (&b"hello world"[..], &b"oops"[..]));
            assert_eq!(d.finish().unwrap().exit_code, 3);
        }
        let mut d = Demux::new();
        d.feed(&frames::encode(frames::STDOUT, b"x"), &mut |_, _| Ok(())).unwrap();
        assert!(d.finish().unwrap_err().to_string().contains("ended before"));
        let mut d = Demux::new();
        assert!(d.feed(&frames::encode(frames::EXIT, b"{"), &mut |_, _| Ok(())).is_err());
    }

    #[test]
    fn exit_messages() {
        let e = |reason: &str, message: Option<&str>| ExecExit {
            exit_code: 137,
            signal: Some(9),
            reason: serde_json::from_value(serde_json::Value::String(reason.into())).unwrap(),
            message: message.map(Into::into),
        };
        assert_eq!(exit_lines(&e("timeout", None), Some(5.0)).unwrap(), "beam: exec timed out after 5 s");
        assert_eq!(exit_lines(&e("timeout", None), Some(0.5)).unwrap(), "beam: exec timed out after 0.5 s");
        assert_eq!(exit_lines(&e("error", Some("no such command: pyhton")), None).unwrap(), "beam: no such command: pyhton");
        assert_eq!(exit_lines(&e("exited", None), None), None);
        assert_eq!(exit_lines(&e("killed", None), None), None);
    }

    #[test]
    fn control_frames() {
        let f = json_frame(frames::RESIZE, &Resize { rows: 24, cols: 80 });
        let mut d = Decoder::new();
        d.push(&f);
        let (s, p) = d.next_frame().unwrap().unwrap();
        assert_eq!(s, frames::RESIZE);
        assert_eq!(serde_json::from_slice::<Resize>(&p).unwrap(), Resize { rows: 24, cols: 80 });
    }
}
