//! OCI hooks: prestart, createRuntime, createContainer, startContainer, poststart, poststop.
//!
//! [`run_hooks`] runs each hook in order: `path` is the executable, `args` is the whole argv (args[0] is
//! argv[0]; with no args argv[0] is `path`), the environment is exactly `env` (empty when absent), and the
//! container state JSON is written to its stdin, which is then closed (a hook that exits without reading it
//! is fine: EPIPE is ignored; this relies on SIGPIPE being ignored, as Rust's runtime does in every binary).
//! stdout is inherited; stderr is captured (the last 4 KiB) and quoted in the error when the hook fails.
//! `timeout` (seconds, > 0) is enforced by SIGKILL of the hook's own pid (not its descendants). With
//! [`run_hooks`] the first failure stops the sequence; [`run_hooks_warn`] (poststart, poststop) logs each
//! failure as a warning and runs the remaining hooks, as the runtime spec says for those two.
//!
//! The wait uses poll(2) on a pidfd (plus the stdin/stderr pipes) with the remaining timeout, so nothing
//! sleeps in a loop; only on kernels without pidfd_open (< 5.3) does it fall back to 50 ms polling.
//!
//! Callers decide what a failure means: a poststart or poststop failure is only a warning (the lifecycle
//! goes on), every other kind fails the operation.
//!
//! `std::process::Command` is used here: hooks run in the runtime parent or in the container child of the
//! single-threaded `beam-oci`, never between clone and execve of a multi-threaded process.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use oci_spec::runtime::Hook;

/// How much of a hook's stderr is kept for the error message.
const STDERR_TAIL: usize = 4096;

fn tail_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; its stderr ended with: {stderr}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(
        "{kind} hook #{index} ({path}) could not be started: {source}; the path must name an executable file \
         as seen by the runtime (prestart/createRuntime/poststart/poststop: the host; createContainer/\
         startContainer: the container)"
    )]
    Spawn {
        kind: &'static str,
        index: usize,
        path: String,
        source: io::Error,
    },
    #[error("{kind} hook #{index} ({path}) failed with {status}{tail}", tail = tail_suffix(.stderr))]
    Failed {
        kind: &'static str,
        index: usize,
        path: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error(
        "{kind} hook #{index} ({path}) timed out after {secs}s and was killed; make it finish sooner or raise \
         its `timeout`{tail}",
        tail = tail_suffix(.stderr)
    )]
    TimedOut {
        kind: &'static str,
        index: usize,
        path: String,
        secs: i64,
        stderr: String,
    },
    #[error(
        "{kind} hook #{index} ({path}) has timeout {timeout}; the OCI spec requires a timeout > 0 seconds"
    )]
    InvalidTimeout {
        kind: &'static str,
        index: usize,
        path: String,
        timeout: i64,
    },
    #[error("{kind} hook #{index} ({path}): {op} failed: {source}")]
    Io {
        kind: &'static str,
        index: usize,
        path: String,
        op: &'static str,
        source: io::Error,
    },
}

/// Runs `hooks` of `kind` (e.g. "prestart") in order with `state_json` on each one's stdin; stops at the
/// first failure. See the module docs.
pub fn run_hooks(kind: &'static str, hooks: &[Hook], state_json: &[u8]) -> Result<(), HookError> {
    for (index, hook) in hooks.iter().enumerate() {
        run_hook(kind, index, hook, state_json)?;
    }
    Ok(())
}

/// Runs every hook of `kind` in order, logging each failure as a warning instead of stopping (the spec's
/// rule for poststart and poststop). Returns how many failed.
pub fn run_hooks_warn(kind: &'static str, hooks: &[Hook], state_json: &[u8]) -> usize {
    let mut failed = 0;
    for (index, hook) in hooks.iter().enumerate() {
        if let Err(e) = run_hook(kind, index, hook, state_json) {
            tracing::warn!("{e}; going on with the remaining {kind} hooks");
            failed += 1;
        }
    }
    failed
}

fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no pointers are involved.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a non-negative result is a new fd that only we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A hook process with its pipes, driven by one poll loop.
struct Running<'a> {
    child: Child,
    pidfd: Option<OwnedFd>,
    stdin: Option<ChildStdin>,
    input: &'a [u8],
    stderr: Option<ChildStderr>,
    captured: Vec<u8>,
}

impl Running<'_> {
    /// Writes what the pipe takes; closes stdin when everything is written or the hook closed its end.
    fn feed(&mut self) -> io::Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Ok(());
        };
        while !self.input.is_empty() {
            match stdin.write(self.input) {
                Ok(n) => self.input = &self.input[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::BrokenPipe => break, // the hook does not read its stdin
                Err(e) => return Err(e),
            }
        }
        self.stdin = None;
        Ok(())
    }

    /// Reads what is available from stderr, keeping the last STDERR_TAIL bytes; closes it at EOF.
    fn drain_stderr(&mut self) -> io::Result<()> {
        let Some(stderr) = self.stderr.as_mut() else {
            return Ok(());
        };
        let mut buf = [0u8; 4096];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) => {
                    self.stderr = None;
                    return Ok(());
                }
                Ok(n) => {
                    self.captured.extend_from_slice(&buf[..n]);
                    if self.captured.len() > STDERR_TAIL {
                        let excess = self.captured.len() - STDERR_TAIL;
                        self.captured.drain(..excess);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.captured).trim().to_owned()
    }

    /// Waits until the hook exits (`Some(status)`) or `deadline` passes (`None`).
    fn wait(&mut self, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
        loop {
            self.feed()?;
            if self.pidfd.is_none()
                && let Some(status) = self.child.try_wait()?
            {
                return Ok(Some(status));
            }
            let mut timeout_ms: i32 = -1;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                timeout_ms = left.as_millis().min(i32::MAX as u128) as i32;
            }
            if self.pidfd.is_none() {
                timeout_ms = if timeout_ms < 0 {
                    50
                } else {
                    timeout_ms.min(50)
                };
            }
            let fd_or_skip = |fd: Option<i32>| fd.unwrap_or(-1);
            let mut fds = [
                libc::pollfd {
                    fd: fd_or_skip(self.pidfd.as_ref().map(|f| f.as_raw_fd())),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: fd_or_skip(self.stdin.as_ref().map(|f| f.as_raw_fd())),
                    events: libc::POLLOUT,
                    revents: 0,
                },
                libc::pollfd {
                    fd: fd_or_skip(self.stderr.as_ref().map(|f| f.as_raw_fd())),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid array of 3 pollfds for the duration of the call.
            if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) } < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[2].revents != 0 {
                self.drain_stderr()?;
            }
            if fds[0].revents != 0 {
                // Exited. Take what stderr already holds, but don't wait for EOF: a daemonised grandchild
                // may keep the pipe open forever.
                self.drain_stderr()?;
                return self.child.wait().map(Some);
            }
        }
    }
}

fn run_hook(
    kind: &'static str,
    index: usize,
    hook: &Hook,
    state_json: &[u8],
) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let io_err = |op: &'static str| {
        let path = path.clone();
        move |source: io::Error| HookError::Io {
            kind,
            index,
            path,
            op,
            source,
        }
    };
    let timeout = match hook.timeout() {
        Some(t) if t <= 0 => {
            return Err(HookError::InvalidTimeout {
                kind,
                index,
                path,
                timeout: t,
            });
        }
        t => t,
    };
    let args = hook.args().as_deref().unwrap_or_default();
    let mut cmd = Command::new(hook.path());
    match args.first() {
        Some(arg0) => cmd.arg0(arg0),
        None => cmd.arg0(hook.path()),
    };
    cmd.args(args.iter().skip(1)).env_clear();
    for entry in hook.env().as_deref().unwrap_or_default() {
        match entry.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                cmd.env(key, value);
            }
            _ => {
                tracing::warn!(kind, index, %path, entry, "ignoring hook env entry that is not KEY=VALUE")
            }
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());

    tracing::debug!(kind, index, %path, ?args, ?timeout, "running hook");
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        kind,
        index,
        path: path.clone(),
        source,
    })?;
    let pidfd = pidfd_open(child.id());
    let stdin = child.stdin.take();
    let stderr = child.stderr.take();
    let mut running = Running {
        child,
        pidfd,
        stdin,
        input: state_json,
        stderr,
        captured: Vec::new(),
    };
    let setup = (|| {
        if let Some(s) = &running.stdin {
            set_nonblocking(s)?;
        }
        if let Some(s) = &running.stderr {
            set_nonblocking(s)?;
        }
        Ok(())
    })();
    let deadline = timeout.map(|t| started + Duration::from_secs(t as u64));
    let waited = setup.and_then(|()| running.wait(deadline));
    let status = match waited {
        Ok(Some(status)) => status,
        Ok(None) | Err(_) => {
            // Timed out, or we could not watch it: never leave the hook running. Kill only its own pid.
            let _ = running.child.kill();
            let _ = running.child.wait();
            let _ = running.drain_stderr();
            return Err(match waited {
                Err(e) => io_err("waiting for the hook")(e),
                _ => {
                    let secs = timeout.unwrap_or_default();
                    tracing::warn!(kind, index, %path, secs, "hook timed out; killed it");
                    HookError::TimedOut {
                        kind,
                        index,
                        path,
                        secs,
                        stderr: running.stderr_text(),
                    }
                }
            });
        }
    };
    let stderr = running.stderr_text();
    if !status.success() {
        return Err(HookError::Failed {
            kind,
            index,
            path,
            status,
            stderr,
        });
    }
    tracing::debug!(kind, index, %path, elapsed_ms = started.elapsed().as_millis() as u64, stderr, "hook done");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;
    use std::path::Path;

    fn sh(script: &str) -> Hook {
        HookBuilder::default()
            .path("/bin/busybox")
            .args(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
            .build()
            .unwrap()
    }

    fn q(p: &Path) -> String {
        p.display().to_string()
    }

    #[test]
    fn hooks_run_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = q(&dir.path().join("order"));
        let hooks: Vec<Hook> = (1..=3).map(|i| sh(&format!("echo {i} >> {f}"))).collect();
        run_hooks("prestart", &hooks, b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "1\n2\n3\n");
        run_hooks("poststop", &[], b"{}").unwrap();
    }

    #[test]
    fn state_arrives_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("state");
        let state =
            br#"{"ociVersion":"1.2.0","id":"c1","status":"created","pid":42,"bundle":"/b"}"#;
        run_hooks("createRuntime", &[sh(&format!("cat > {}", q(&f)))], state).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), state);

        // A large state to a hook that never reads it: no EPIPE failure, no deadlock on a full pipe.
        let big = vec![b'x'; 1 << 20];
        run_hooks("poststart", &[sh("exit 0")], &big).unwrap();
    }

    #[test]
    fn env_is_exactly_the_given_one_and_argv0_is_args0() {
        let dir = tempfile::tempdir().unwrap();
        let env_file = q(&dir.path().join("env"));
        let argv_file = q(&dir.path().join("argv"));
        // The trailing `true` keeps busybox from exec'ing the last command in place (which rewrites argv).
        let mut hook = sh(&format!(
            "cat /proc/$$/environ > {env_file}; cat /proc/$$/cmdline > {argv_file}; true"
        ));
        hook.set_env(Some(vec![
            "A=1".into(),
            "B=two words".into(),
            "C=x=y".into(),
        ]));
        run_hooks("prestart", &[hook.clone()], b"{}").unwrap();
        assert_eq!(
            std::fs::read(&env_file).unwrap(),
            b"A=1\0B=two words\0C=x=y\0"
        );
        assert!(std::fs::read(&argv_file).unwrap().starts_with(b"sh\0-c\0"));

        hook.set_env(None);
        run_hooks("prestart", &[hook], b"{}").unwrap();
        assert_eq!(std::fs::read(&env_file).unwrap(), b"");
    }

    #[test]
    fn failure_stops_the_sequence_and_names_index_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let f = q(&dir.path().join("order"));
        let hooks = [
            sh(&format!("echo 1 >> {f}")),
            sh("echo boom >&2; exit 7"),
            sh(&format!("echo 3 >> {f}")),
        ];
        let err = run_hooks("createContainer", &hooks, b"{}").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, HookError::Failed { index: 1, .. }), "{msg}");
        assert!(
            msg.contains("createContainer hook #1 (/bin/busybox)"),
            "{msg}"
        );
        assert!(
            msg.contains("exit status: 7") && msg.contains("boom"),
            "{msg}"
        );
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "1\n");
    }

    #[test]
    fn warn_runs_the_remaining_hooks_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let f = q(&dir.path().join("order"));
        let hooks = [sh("exit 1"), sh(&format!("echo 2 >> {f}")), sh("exit 3"), sh(&format!("echo 4 >> {f}"))];
        assert_eq!(run_hooks_warn("poststart", &hooks, b"{}"), 2);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "2\n4\n");
    }

    #[test]
    fn stderr_is_bounded_to_its_tail() {
        let err = run_hooks(
            "prestart",
            &[sh(
                "i=0; while [ $i -lt 2000 ]; do echo line$i >&2; i=$((i+1)); done; \
                                            exit 1",
            )],
            b"",
        )
        .unwrap_err();
        let HookError::Failed { stderr, .. } = err else {
            panic!("{err}")
        };
        assert!(
            stderr.len() <= STDERR_TAIL && stderr.ends_with("line1999"),
            "{}",
            stderr.len()
        );
    }

    #[test]
    fn timeout_kills_the_hook() {
        let mut hook = HookBuilder::default()
            .path("/bin/busybox")
            .args(vec!["sleep".to_string(), "30".to_string()])
            .build()
            .unwrap();
        hook.set_timeout(Some(1));
        let started = Instant::now();
        let err = run_hooks("startContainer", &[hook.clone()], b"{}").unwrap_err();
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_millis(2500), "took {elapsed:?}");
        assert!(elapsed >= Duration::from_millis(900), "took {elapsed:?}");
        assert!(err.to_string().contains("timed out after 1s"), "{err}");

        hook.set_timeout(Some(0));
        assert!(matches!(
            run_hooks("prestart", &[hook], b"").unwrap_err(),
            HookError::InvalidTimeout { .. }
        ));
    }

    #[test]
    fn missing_executable_is_named() {
        let hook = HookBuilder::default()
            .path("/nonexistent/hook-bin")
            .build()
            .unwrap();
        let err = run_hooks("prestart", &[hook], b"{}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/hook-bin") && err.contains("could not be started"),
            "{err}"
        );
    }
}
