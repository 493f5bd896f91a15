//! beamd's async client for a sandbox's init (`beam-init`, PID 1), over the init's control socket.
//!
//! Every call opens its own connection (a `SOCK_SEQPACKET` unix socket, see [`initproto`]): `ping`,
//! `ps` and `kill` are one request and one reply; `exec` keeps its connection in the returned
//! [`ExecHandle`] until the process exits. Dropping an `ExecHandle` before [`ExecHandle::wait`] has
//! returned closes that connection, and the init then SIGKILLs the process group of the exec'd
//! process.
//!
//! [`initproto`]: super::initproto

use super::initproto::{MAX_PACKET, Reply, Request};
pub use super::initproto::{ExecSpec, ProcessInfo};
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// How long `connect` retries while the init's listen backlog is full.
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum InitClientError {
    /// The init is gone: nothing listens on its socket (ECONNREFUSED, ENOENT), or it hung up in the
    /// middle of a conversation. The sandbox has stopped (or is stopping).
    #[error("sandbox init at {path} is gone: {what}")]
    Dead { path: PathBuf, what: String },
    /// The init refused the request (its `Error` reply): an exec that could not start (missing
    /// command, bad cwd or user, …), a kill of a bad pid (`errno` ESRCH), a malformed request.
    /// `message` is one line naming the command, fit for the API's user (a 400).
    #[error("sandbox init at {path}: {message}")]
    Exec { path: PathBuf, errno: i32, message: String },
    #[error("sandbox init at {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// A malformed or unexpected message, or a request this client will not send.
    #[error("sandbox init at {path}: {what}")]
    Protocol { path: PathBuf, what: String },
}

impl InitClientError {
    /// True when the init is gone (the sandbox stopped), as opposed to a failed request.
    pub fn is_dead(&self) -> bool {
        matches!(self, InitClientError::Dead { .. })
    }
}

pub type Result<T, E = InitClientError> = std::result::Result<T, E>;

/// A client for one sandbox's init, named by its control socket's path on the host.
#[derive(Debug, Clone)]
pub struct InitClient {
    path: PathBuf,
}

impl InitClient {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        InitClient { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the init answers; returns the entrypoint's pid (0 when there is none or it exited).
    pub async fn ping(&self) -> Result<i32> {
        match self.call(Request::Ping).await? {
            Reply::Pong { entrypoint_pid } => Ok(entrypoint_pid),
            other => Err(self.unexpected("ping", other)),
        }
    }

    /// The processes of the sandbox (pids as seen inside it).
    pub async fn ps(&self) -> Result<Vec<ProcessInfo>> {
        match self.call(Request::Ps).await? {
            Reply::Processes(list) => Ok(list),
            other => Err(self.unexpected("ps", other)),
        }
    }

    /// Send `sig` to `pid` (as seen inside the sandbox; negative for a process group).
    pub async fn kill(&self, pid: i32, sig: i32) -> Result<()> {
        match self.call(Request::Kill { pid, sig }).await? {
            Reply::Ok => Ok(()),
            other => Err(self.unexpected("kill", other)),
        }
    }

    /// Start a process in the sandbox. `stdio` is its stdin, stdout and stderr, required unless
    /// `spec.tty` (then the init makes a pty and the handle carries its master). The fds should be
    /// in blocking mode (the process gets them as they are). Returns once the process runs, or with
    /// [`InitClientError::Exec`] when it could not start.
    pub async fn exec(&self, spec: ExecSpec, stdio: Option<[OwnedFd; 3]>) -> Result<ExecHandle> {
        let tty = spec.tty;
        match (tty, &stdio) {
            (true, Some(_)) => return Err(self.protocol("exec: a tty exec takes no stdio fds".into())),
            (false, None) => return Err(self.protocol("exec: a non-tty exec needs stdin, stdout and stderr".into())),
            _ => {}
        }
        let conn = Conn::connect(&self.path).await?;
        let raw: Vec<RawFd> = stdio.iter().flatten().map(|fd| fd.as_raw_fd()).collect();
        conn.send(&Request::Exec(spec), &raw).await?;
        // The init holds its own copies now.
        drop(stdio);
        match conn.recv("exec").await? {
            (Reply::Started { pid }, mut fds) => {
                let pty_master = match (tty, fds.len()) {
                    (true, 1) => fds.pop(),
                    (false, 0) => None,
                    (_, n) => return Err(self.protocol(format!("exec: Started came with {n} fds"))),
                };
                Ok(ExecHandle { pid, pty_master, conn, exited: Mutex::new(None) })
            }
            (other, _) => Err(self.unexpected("exec", other)),
        }
    }

    async fn call(&self, request: Request) -> Result<Reply> {
        let conn = Conn::connect(&self.path).await?;
        conn.send(&request, &[]).await?;
        Ok(conn.recv("a reply").await?.0)
    }

    fn protocol(&self, what: String) -> InitClientError {
        InitClientError::Protocol { path: self.path.clone(), what }
    }

    fn unexpected(&self, what: &str, reply: Reply) -> InitClientError {
        unexpected(&self.path, what, reply)
    }
}

fn unexpected(path: &Path, what: &str, reply: Reply) -> InitClientError {
    match reply {
        Reply::Error { errno, message } => InitClientError::Exec { path: path.to_owned(), errno, message },
        other => InitClientError::Protocol { path: path.to_owned(), what: format!("{what}: unexpected reply {other:?}") },
    }
}

/// A process exec'd in a sandbox. Dropping the handle before [`ExecHandle::wait`] returned closes
/// the connection, and the init then SIGKILLs the process's group.
#[derive(Debug)]
pub struct ExecHandle {
    /// The pid as seen inside the sandbox.
    pub pid: i32,
    /// The pty master of a tty exec (take it to relay the terminal; resize with TIOCSWINSZ on it).
    pub pty_master: Option<OwnedFd>,
    conn: Conn,
    exited: Mutex<Option<(i32, i32)>>,
}

impl ExecHandle {
    /// Send `sig` to the process's group. Signalling a process that already exited is no error.
    pub async fn signal(&self, sig: i32) -> Result<()> {
        match self.conn.send(&Request::Signal { sig }, &[]).await {
            // The init closes the connection only once the process is gone (or it is itself gone).
            Err(InitClientError::Dead { .. }) => Ok(()),
            other => other,
        }
    }

    /// Wait for the process to exit: `(code, signal)`, with `code` = 128 + signal when killed.
    /// Can run concurrently with [`ExecHandle::signal`]; later calls return the same result.
    pub async fn wait(&self) -> Result<(i32, i32)> {
        let cached = *self.exited.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(status) = cached {
            return Ok(status);
        }
        let what = format!("process {}", self.pid);
        match self.conn.recv(&what).await? {
            (Reply::Exited { code, signal }, _) => {
                *self.exited.lock().unwrap_or_else(|e| e.into_inner()) = Some((code, signal));
                Ok((code, signal))
            }
            (other, _) => Err(unexpected(&self.conn.path, "wait", other)),
        }
    }
}

/// One connection to the init.
#[derive(Debug)]
struct Conn {
    fd: AsyncFd<OwnedFd>,
    path: PathBuf,
}

impl Conn {
    async fn connect(path: &Path) -> Result<Conn> {
        let io_err = |what, e: Errno| InitClientError::Io { path: path.to_owned(), what, source: e.into() };
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, flags, None).map_err(|e| io_err("socket", e))?;
        let addr = UnixAddr::new(path).map_err(|e| io_err("socket path", e))?;
        let deadline = Instant::now() + CONNECT_PATIENCE;
        loop {
            match socket::connect(fd.as_raw_fd(), &addr) {
                Ok(()) => break,
                Err(Errno::EINTR) => {}
                // A unix socket's connect fails with EAGAIN, not EINPROGRESS, while the backlog is full.
                Err(Errno::EAGAIN) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(e @ (Errno::ECONNREFUSED | Errno::ENOENT)) => {
                    return Err(InitClientError::Dead { path: path.to_owned(), what: format!("connect: {e}") });
                }
                Err(e) => return Err(io_err("connect", e)),
            }
        }
        // SAFETY: an OwnedFd stays open and names the same socket until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register(fd) }
            .map_err(|e| InitClientError::Io { path: path.to_owned(), what: "register with tokio", source: e.into() })?;
        Ok(Conn { fd, path: path.to_owned() })
    }

    fn dead(&self, what: String) -> InitClientError {
        InitClientError::Dead { path: self.path.clone(), what }
    }

    fn io(&self, what: &'static str, source: io::Error) -> InitClientError {
        InitClientError::Io { path: self.path.clone(), what, source }
    }

    async fn send(&self, request: &Request, fds: &[RawFd]) -> Result<()> {
        let data = request.encode();
        if data.len() > MAX_PACKET {
            let what = format!("request of {} bytes is larger than {MAX_PACKET}", data.len());
            return Err(InitClientError::Protocol { path: self.path.clone(), what });
        }
        let cmsgs: Vec<ControlMessage> = if fds.is_empty() { vec![] } else { vec![ControlMessage::ScmRights(fds)] };
        loop {
            let mut guard = self.fd.writable().await.map_err(|e| self.io("wait to send", e))?;
            let sent = guard.try_io(|fd| {
                let iov = [IoSlice::new(&data)];
                socket::sendmsg::<()>(fd.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None).map_err(io::Error::from)
            });
            match sent {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => {
                    return Err(self.dead(format!("it hung up: {e}")));
                }
                Ok(Err(e)) => return Err(self.io("send", e)),
                Err(_would_block) => continue,
            }
        }
    }

    /// The next reply and the fds that came with it; an error naming `what` when the init hangs up.
    async fn recv(&self, what: &str) -> Result<(Reply, Vec<OwnedFd>)> {
        let mut buf = vec![0u8; MAX_PACKET];
        loop {
            let mut guard = self.fd.readable().await.map_err(|e| self.io("wait to receive", e))?;
            match guard.try_io(|fd| recv_packet(fd.as_raw_fd(), &mut buf)) {
                Ok(Ok((0, _, _))) => return Err(self.dead(format!("it went away before {what} finished"))),
                Ok(Ok((n, flags, fds))) => {
                    if flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC) {
                        let what = "a reply larger than MAX_PACKET or with too many fds".into();
                        return Err(InitClientError::Protocol { path: self.path.clone(), what });
                    }
                    let reply = Reply::decode(&buf[..n])
                        .map_err(|e| InitClientError::Protocol { path: self.path.clone(), what: e.to_string() })?;
                    return Ok((reply, fds));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ECONNRESET) => {
                    return Err(self.dead(format!("it went away before {what} finished: {e}")));
                }
                Ok(Err(e)) => return Err(self.io("receive", e)),
                Err(_would_block) => continue,
            }
        }
    }
}

fn recv_packet(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, MsgFlags, Vec<OwnedFd>)> {
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these fds in this process for us; nothing else owns them.
            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Ok((msg.bytes, msg.flags, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// beamd runs these on tokio's multi-threaded runtime: the futures must be Send.
    #[allow(dead_code)]
    fn futures_are_send(client: &InitClient, handle: &ExecHandle, spec: ExecSpec) {
        assert_send(&client.ping());
        assert_send(&client.ps());
        assert_send(&client.kill(1, 15));
        assert_send(&client.exec(spec, None));
        assert_send(&handle.signal(15));
        assert_send(&handle.wait());
    }

    #[tokio::test]
    async fn no_init_is_dead() {
        let dir = tempfile::tempdir().unwrap();
        let missing = InitClient::new(dir.path().join("init.sock"));
        let err = missing.ping().await.unwrap_err();
        assert!(err.is_dead(), "{err}");
        assert!(err.to_string().contains("init.sock"), "{err}");

        // A socket file nobody listens on any more.
        let path = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = InitClient::new(&path).ps().await.unwrap_err();
        assert!(err.is_dead(), "{err}");
    }

    #[tokio::test]
    async fn exec_checks_its_stdio() {
        let client = InitClient::new("/nonexistent/init.sock");
        let spec = ExecSpec {
            args: vec!["true".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            groups: vec![],
            tty: false,
            rows: 0,
            cols: 0,
        };
        let err = client.exec(spec, None).await.unwrap_err();
        assert!(matches!(err, InitClientError::Protocol { .. }), "{err}");
    }
}
