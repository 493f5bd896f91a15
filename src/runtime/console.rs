//! Terminals: `process.terminal` with `--console-socket`.
//!
//! CONTRACT:
//! - Parent (before clone): `connect_console_socket(path)` → an `OwnedFd` (O_CLOEXEC) handed to the child.
//! - Child (after pivot_root, before dropping privileges): `setup_pty(&socket_fd, size)` opens a new pty
//!   master from the container's `/dev/ptmx`, makes the slave the controlling terminal and stdio (0,1,2),
//!   and sends the master over the socket with SCM_RIGHTS. Must not allocate.
//! - `receive_pty_master(listener)` is the other end (used by `run -t`, `exec -t` and tests).

use std::os::fd::OwnedFd;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console socket {path}: {source}; pass a listening unix socket path with --console-socket")]
    Connect { path: String, source: std::io::Error },
}

pub fn connect_console_socket(path: &Path) -> Result<OwnedFd, ConsoleError> {
    Err(ConsoleError::Connect { path: path.display().to_string(), source: std::io::Error::other("not implemented") })
}
