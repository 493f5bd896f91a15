//! Sandboxes: beamd's long-lived containers, their init (PID 1) protocol, files and lifecycle.

pub mod config;
pub mod entry;
pub mod error;
pub mod files;
pub mod images;
pub mod initclient;
pub mod initproto;
pub mod lifecycle;
pub mod manager;
pub mod ports;
pub mod record;
pub mod snapshots;
pub mod recovery;
pub mod timers;
pub mod uids;
pub mod validate;

pub use entry::{ActiveGuard, Entry};
pub use error::SandboxError;
pub use manager::Manager;

/// The sandbox init (`init/main.rs`): a static binary built by build.rs, which beamd writes into each
/// sandbox and runs as its PID 1 (fds: 3 = the listening control socket, 4 = the entrypoint log,
/// 5 = the status file; see [`initproto`] and [`initclient`]).
pub const INIT_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/beam-init"));
