//! seccomp: `linux.seccomp` from config.json compiled to a classic BPF program.
//!
//! CONTRACT (used by `plan.rs` and `init.rs`):
//! - `compile` runs in the parent before clone and may allocate.
//! - `SeccompProgram::load` runs in the child right before execve: it must be async-signal-safe
//!   (no allocation, no locks) — only the seccomp(2) syscall on memory prepared by `compile`.

use oci_spec::runtime::LinuxSeccomp;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: {0}")]
    Invalid(String),
}

/// A compiled filter ready to load.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    _private: (),
}

/// Compile the OCI seccomp section for the host architecture.
pub fn compile(_seccomp: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    Err(SeccompError::Invalid("not implemented yet".into()))
}

impl SeccompProgram {
    /// Load the filter into the calling thread (all threads with TSYNC). Async-signal-safe.
    pub fn load(&self) -> Result<(), nix::errno::Errno> {
        Err(nix::errno::Errno::ENOSYS)
    }
}

/// The Docker-equivalent default profile shipped in seccomp/default.json.
pub fn default_profile() -> LinuxSeccomp {
    serde_json::from_str(include_str!("../../seccomp/default.json")).expect("seccomp/default.json is valid")
}
