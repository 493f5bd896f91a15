//! Terminals: `process.terminal` with runc's `--console-socket` protocol.
//!
//! The pty is created INSIDE the container (from the container's `/dev/ptmx`, so the slave lives in the
//! container's devpts instance) and its master is sent to whoever listens on the console socket
//! (podman/conmon, containerd-shim, or `beam-oci run -t` itself) with SCM_RIGHTS, exactly as runc does.
//! The payload of that message is the slave's name (`/dev/pts/N`), as runc sends it.
//!
//! - Parent (before clone): [`connect_console_socket`] → an `OwnedFd` (SOCK_CLOEXEC) handed to the child.
//!   Paths longer than `sun_path` (108 bytes) are reached via `/proc/self/fd/<dirfd>/<name>`.
//! - Child (after pivot_root, before dropping privileges): [`setup_pty`] opens a new pty master from the
//!   container's `/dev/ptmx`, **calls `setsid()` itself** (an `EPERM` — already a session leader, e.g. the
//!   caller did it — is accepted), makes the slave the controlling terminal (`TIOCSCTTY`) and stdio (0,1,2),
//!   sets the window size and sends the master over the socket. It does not allocate (safe between clone
//!   and execve). The master is closed afterwards; the socket is borrowed and NOT closed: it is
//!   SOCK_CLOEXEC, so execve closes it (the caller must keep it above fd 2).
//! - Other end: [`receive_pty_master`] (a listener from [`bind_console_socket`]) or [`recv_pty_master`]
//!   (one end of [`console_socketpair`], for `run -t`/`exec -t` without `--console-socket`), then
//!   [`relay`] copies the runtime's own stdin/stdout to and from the master in the foreground.

use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::socket::{
    AddressFamily, Backlog, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, bind,
    connect, listen, recvmsg, socket, socketpair,
};
use nix::sys::stat::Mode;
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

const PTY_HINT: &str = "the container needs devpts mounted on /dev/pts (newinstance, ptmxmode=0666) and /dev/ptmx \
                        as a symlink to pts/ptmx (or the ptmx device)";

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "console socket {path}: connect failed: {source}; pass the path of a listening unix stream socket \
         (e.g. conmon's) with --console-socket"
    )]
    Connect { path: PathBuf, source: Errno },
    #[error(
        "console socket {path}: bind/listen failed: {source}; choose a path in an existing writable directory \
         that is not already in use"
    )]
    Bind { path: PathBuf, source: Errno },
    #[error("console socket {path}: {reason}")]
    Path { path: PathBuf, reason: &'static str },
    #[error(
        "console socket: creating a socket failed: {0}; check the open-files limit (ulimit -n)"
    )]
    Socket(Errno),
    #[error("setting up the container's terminal: {op} failed: {errno}; {hint}")]
    Pty {
        op: &'static str,
        errno: Errno,
        hint: &'static str,
    },
    #[error("receiving the pty master from the console socket: {op} failed: {errno}")]
    Receive { op: &'static str, errno: Errno },
    #[error("receiving the pty master: {0}")]
    Protocol(&'static str),
    #[error("console relay: {op} failed: {errno}")]
    Relay { op: &'static str, errno: Errno },
}

fn pty_err(op: &'static str, errno: Errno) -> ConsoleError {
    ConsoleError::Pty {
        op,
        errno,
        hint: PTY_HINT,
    }
}

/// Runs `f` with a `sockaddr_un` for `path`; when `path` does not fit in `sun_path`, goes through
/// `/proc/self/fd/<dirfd>/<name>` with `dirfd` an O_PATH fd of the parent directory (kept open during `f`).
fn with_unix_addr<T>(
    path: &Path,
    f: impl FnOnce(&UnixAddr) -> nix::Result<T>,
) -> Result<nix::Result<T>, ConsoleError> {
    match UnixAddr::new(path) {
        Ok(addr) => Ok(f(&addr)),
        Err(Errno::ENAMETOOLONG) => {
            let name = path.file_name().ok_or_else(|| ConsoleError::Path {
                path: path.to_owned(),
                reason: "the path names no socket file; pass the socket's full path",
            })?;
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let dir = open(
                parent,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|_| ConsoleError::Path {
                path: path.to_owned(),
                reason: "its directory cannot be opened; check that the directory exists",
            })?;
            let mut short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            short.push(name);
            let addr = UnixAddr::new(&short).map_err(|_| ConsoleError::Path {
                path: path.to_owned(),
                reason: "the socket's file name is too long even via /proc/self/fd; use a shorter name",
            })?;
            let result = f(&addr);
            drop(dir);
            Ok(result)
        }
        Err(_) => Err(ConsoleError::Path {
            path: path.to_owned(),
            reason: "not a valid unix socket path (contains a NUL byte?)",
        }),
    }
}

fn stream_socket() -> Result<OwnedFd, ConsoleError> {
    socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(ConsoleError::Socket)
}

/// Parent side, before clone: connects to the console socket at `path` (SOCK_STREAM, SOCK_CLOEXEC).
pub fn connect_console_socket(path: &Path) -> Result<OwnedFd, ConsoleError> {
    let sock = stream_socket()?;
    with_unix_addr(path, |addr| connect(sock.as_raw_fd(), addr))?.map_err(|source| {
        ConsoleError::Connect {
            path: path.to_owned(),
            source,
        }
    })?;
    tracing::debug!(path = %path.display(), "connected to console socket");
    Ok(sock)
}

/// A listening console socket at `path` (for `run` and tests). The caller removes the file when done.
pub fn bind_console_socket(path: &Path) -> Result<UnixListener, ConsoleError> {
    let sock = stream_socket()?;
    with_unix_addr(path, |addr| bind(sock.as_raw_fd(), addr))?.map_err(|source| {
        ConsoleError::Bind {
            path: path.to_owned(),
            source,
        }
    })?;
    listen(&sock, Backlog::MAXCONN).map_err(|source| ConsoleError::Bind {
        path: path.to_owned(),
        source,
    })?;
    Ok(UnixListener::from(sock))
}

/// A connected pair (both CLOEXEC): give the first to the child as its console socket, receive the master
/// on the second with [`recv_pty_master`]. Used by `run -t`/`exec -t` without `--console-socket`.
pub fn console_socketpair() -> Result<(OwnedFd, OwnedFd), ConsoleError> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ConsoleError::Socket)
}

/// Child side: [`setup_pty_at`] with the container's `/dev/ptmx`. `size` is `(rows, cols)`
/// (OCI `consoleSize.height`, `.width`). Does not allocate.
pub fn setup_pty(socket: BorrowedFd<'_>, size: Option<(u16, u16)>) -> Result<(), ConsoleError> {
    setup_pty_at(c"/dev/ptmx", socket, size)
}

/// `-1` → the errno, else the value. Does not allocate.
fn check(ret: libc::c_int, op: &'static str) -> Result<libc::c_int, ConsoleError> {
    if ret < 0 {
        Err(pty_err(op, Errno::last()))
    } else {
        Ok(ret)
    }
}

/// Writes `/dev/pts/<n>` NUL-terminated into `buf`; returns its length without the NUL. Does not allocate.
fn format_pts_name(n: u32, buf: &mut [u8; 32]) -> usize {
    const PREFIX: &[u8] = b"/dev/pts/";
    buf.fill(0);
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let mut count = 0;
    let mut v = n;
    loop {
        digits[count] = b'0' + (v % 10) as u8;
        count += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..count {
        buf[PREFIX.len() + i] = digits[count - 1 - i];
    }
    PREFIX.len() + count
}

/// [`setup_pty`] with an explicit ptmx path (tests use the host's). Opens a pty master at `ptmx`, unlocks
/// it, opens the slave (TIOCGPTPEER, falling back to `/dev/pts/N` on kernels before 4.13), calls `setsid()`
/// (EPERM accepted), makes the slave the controlling terminal and fds 0,1,2, sets the window size, sends the
/// master (payload: the slave name) over `socket` with SCM_RIGHTS and closes the master. Does not allocate.
pub fn setup_pty_at(
    ptmx: &CStr,
    socket: BorrowedFd<'_>,
    size: Option<(u16, u16)>,
) -> Result<(), ConsoleError> {
    // SAFETY: `ptmx` is a valid NUL-terminated string; open returns a new fd or -1.
    let fd = check(
        unsafe {
            libc::open(
                ptmx.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        },
        "open /dev/ptmx",
    )?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };

    let unlock: libc::c_int = 0;
    check(
        // SAFETY: TIOCSPTLCK reads an int through the pointer, which is valid for the call (unlockpt).
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) },
        "unlockpt (TIOCSPTLCK)",
    )?;
    let mut n: libc::c_uint = 0;
    check(
        // SAFETY: TIOCGPTN writes an unsigned int through the pointer, which is valid for the call.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) },
        "ptsname (TIOCGPTN)",
    )?;
    let mut name = [0u8; 32];
    let name_len = format_pts_name(n, &mut name);

    let slave_flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes the open flags as an int argument and returns a new fd or -1.
    let mut fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, slave_flags) };
    if fd < 0 {
        let errno = Errno::last();
        if errno != Errno::EINVAL && errno != Errno::ENOTTY {
            return Err(pty_err("open the pty slave (TIOCGPTPEER)", errno));
        }
        fd = check(
            // SAFETY: `name` is NUL-terminated (format_pts_name zero-fills the rest of the 32-byte buffer).
            unsafe { libc::open(name.as_ptr().cast(), slave_flags) },
            "open /dev/pts/N",
        )?;
    }
    // SAFETY: `fd` is a new fd owned by nobody else.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };

    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } < 0 && Errno::last() != Errno::EPERM {
        return Err(pty_err("setsid", Errno::last()));
    }
    check(
        // SAFETY: TIOCSCTTY takes an int argument (0: do not steal a terminal from another session).
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) },
        "TIOCSCTTY",
    )?;
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        check(
            // SAFETY: TIOCSWINSZ reads a winsize through the pointer, which is valid for the call.
            unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
            "TIOCSWINSZ",
        )?;
    }

    send_fd(socket, master.as_raw_fd(), &name[..name_len])?;
    drop(master);

    for target in 0..=2 {
        if slave.as_raw_fd() != target {
            check(
                // SAFETY: dup2 on two valid fd numbers; the target is replaced atomically.
                unsafe { libc::dup2(slave.as_raw_fd(), target) },
                "dup2 the pty slave onto stdio",
            )?;
        }
        // dup2 clears FD_CLOEXEC, but not when the slave already was `target`.
        check(
            // SAFETY: fcntl F_SETFD on a valid fd.
            unsafe { libc::fcntl(target, libc::F_SETFD, 0) },
            "fcntl(F_SETFD) on stdio",
        )?;
    }
    if slave.as_raw_fd() <= 2 {
        // It is now one of the stdio fds: keep it open.
        let _ = std::os::fd::IntoRawFd::into_raw_fd(slave);
    }
    Ok(())
}

/// Sends `fd` with SCM_RIGHTS and `payload` (non-empty) as data, with a stack control buffer (no allocation;
/// nix's `sendmsg` allocates its cmsg buffer).
fn send_fd(socket: BorrowedFd<'_>, fd: RawFd, payload: &[u8]) -> Result<(), ConsoleError> {
    #[repr(C)]
    union CmsgBuf {
        _align: libc::cmsghdr,
        bytes: [u8; 64],
    }
    let mut control = CmsgBuf { bytes: [0; 64] };
    // SAFETY: CMSG_SPACE is pure arithmetic.
    let space = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) } as usize;
    debug_assert!(space <= 64);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: taking a raw pointer into the union's byte array, which is fully initialised.
    msg.msg_control = unsafe { control.bytes.as_mut_ptr() }.cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `space` zeroed, cmsghdr-aligned bytes, so CMSG_FIRSTHDR returns a
    // valid non-null header pointer inside the buffer and CMSG_DATA a pointer with room for one int.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
    }
    loop {
        // SAFETY: `msg` points at the live `iov`, `payload` and `control` for the duration of the call.
        let ret = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if ret >= 0 {
            return Ok(());
        }
        let errno = Errno::last();
        if errno != Errno::EINTR {
            return Err(ConsoleError::Pty {
                op: "send the pty master over the console socket",
                errno,
                hint: "the console socket's listener must stay connected until it receives the master",
            });
        }
    }
}

/// Receives one pty master (and the slave name sent as payload) from a connected console socket.
fn recv_master_named(sock: BorrowedFd<'_>) -> Result<(OwnedFd, String), ConsoleError> {
    let mut data = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (fds, len) = loop {
        let mut iov = [std::io::IoSliceMut::new(&mut data)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds: Vec<OwnedFd> = Vec::new();
                let cmsgs = msg.cmsgs().map_err(|errno| ConsoleError::Receive {
                    op: "recvmsg (control)",
                    errno,
                })?;
                for c in cmsgs {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        // SAFETY: the kernel installed these fds in our table for us; nobody else owns them.
                        fds.extend(
                            raw.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                break (fds, msg.bytes);
            }
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                return Err(ConsoleError::Receive {
                    op: "recvmsg",
                    errno,
                });
            }
        }
    };
    let mut fds = fds.into_iter();
    let master = fds.next().ok_or(ConsoleError::Protocol(
        "the container closed the console socket without sending a pty master; see the runtime's error for why \
         it failed to start",
    ))?;
    let name = String::from_utf8_lossy(&data[..len])
        .trim_end_matches('\0')
        .to_owned();
    tracing::debug!(pty = %name, "received pty master");
    Ok((master, name))
}

/// Receives the pty master from a connected console socket (e.g. the second end of [`console_socketpair`]).
pub fn recv_pty_master(sock: BorrowedFd<'_>) -> Result<OwnedFd, ConsoleError> {
    recv_master_named(sock).map(|(fd, _)| fd)
}

/// Accepts one connection on `listener` and receives the pty master from it (blocks).
pub fn receive_pty_master(listener: &UnixListener) -> Result<OwnedFd, ConsoleError> {
    let (stream, _) = listener.accept().map_err(|e| ConsoleError::Receive {
        op: "accept",
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
    })?;
    recv_pty_master(stream.as_fd())
}

/// Puts a terminal in raw mode and restores the saved settings on drop.
struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    fn enter(fd: BorrowedFd<'a>) -> Result<Self, ConsoleError> {
        let saved = tcgetattr(fd).map_err(|errno| ConsoleError::Relay {
            op: "tcgetattr(stdin)",
            errno,
        })?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSANOW, &raw).map_err(|errno| ConsoleError::Relay {
            op: "tcsetattr(stdin)",
            errno,
        })?;
        Ok(Self { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        if let Err(e) = tcsetattr(self.fd, SetArg::TCSANOW, &self.saved) {
            tracing::warn!(error = %e, "could not restore the terminal settings; run `stty sane`");
        }
    }
}

/// Foreground `run -t`/`exec -t`: puts our stdin in raw mode when it is a tty (restored at the end), copies
/// its window size to the pty, and relays stdin → master and master → stdout until the master hangs up
/// (every slave fd in the container is closed). When stdin is not a tty, its end sends ^D (VEOF) to the pty.
pub fn relay(master: OwnedFd) -> Result<(), ConsoleError> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let input = stdin.as_fd();
    let tty = nix::unistd::isatty(input).unwrap_or(false);
    let _raw = if tty {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ/TIOCSWINSZ read/write a winsize through a pointer valid for the call.
        unsafe {
            if libc::ioctl(input.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0 {
                libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
            }
        }
        Some(RawMode::enter(input)?)
    } else {
        None
    };
    relay_fds(master.as_fd(), input, stdout.as_fd(), !tty)
}

fn relay_err(op: &'static str) -> impl Fn(Errno) -> ConsoleError {
    move |errno| ConsoleError::Relay { op, errno }
}

/// The relay loop behind [`relay`], on explicit fds. `master` is made non-blocking so that a container that
/// does not read its input can never block output.
fn relay_fds(
    master: BorrowedFd<'_>,
    input: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
    eof_on_input_end: bool,
) -> Result<(), ConsoleError> {
    use nix::fcntl::{FcntlArg, fcntl};
    let flags = OFlag::from_bits_retain(
        fcntl(master, FcntlArg::F_GETFL).map_err(relay_err("fcntl(master)"))?,
    );
    fcntl(master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))
        .map_err(relay_err("fcntl(master)"))?;

    let mut out =
        std::fs::File::from(
            output
                .try_clone_to_owned()
                .map_err(|e| ConsoleError::Relay {
                    op: "dup(stdout)",
                    errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                })?,
        );
    let mut buf = [0u8; 8192];
    let mut pending: Vec<u8> = Vec::new();
    let mut input_open = true;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: master.as_raw_fd(),
                events: libc::POLLIN | if pending.is_empty() { 0 } else { libc::POLLOUT },
                revents: 0,
            },
            libc::pollfd {
                fd: if input_open && pending.is_empty() {
                    input.as_raw_fd()
                } else {
                    -1
                },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of 2 pollfds for the duration of the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                errno => return Err(ConsoleError::Relay { op: "poll", errno }),
            }
        }
        let m = fds[0].revents;
        if m & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match nix::unistd::read(master, &mut buf) {
                Ok(0) | Err(Errno::EIO) => break, // every slave fd is closed
                Ok(n) => {
                    out.write_all(&buf[..n]).map_err(|e| ConsoleError::Relay {
                        op: "write(stdout)",
                        errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                    })?;
                    out.flush().ok();
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(errno) => {
                    return Err(ConsoleError::Relay {
                        op: "read(master)",
                        errno,
                    });
                }
            }
        }
        if m & libc::POLLOUT != 0 && !pending.is_empty() {
            match nix::unistd::write(master, &pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(Errno::EIO) => break,
                Err(errno) => {
                    return Err(ConsoleError::Relay {
                        op: "write(master)",
                        errno,
                    });
                }
            }
        }
        if fds[1].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match nix::unistd::read(input, &mut buf) {
                Ok(0) | Err(Errno::EIO) => {
                    input_open = false;
                    if eof_on_input_end {
                        pending.push(4); // VEOF: a reading shell sees end of input
                    }
                }
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(errno) => {
                    return Err(ConsoleError::Relay {
                        op: "read(stdin)",
                        errno,
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
