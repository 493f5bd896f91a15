//! The one guard for integration tests that need root (each `tests/*.rs` that has such tests declares
//! `mod common_root;`).
//!
//! A root test is marked `#[ignore = "needs root"]`, so a plain `cargo test` as a user lists it as
//! ignored instead of reporting it passed, and starts with [`require_root`], so when it does run
//! (`--include-ignored` or `--ignored`) without root it fails instead of passing having done nothing.
//! There is no environment switch: a root test that runs is a root test that must do its job.
//! As root: `sudo -E cargo test -- --include-ignored` (scripts/test.sh and tests/vm/cgroup-v2.sh do).
#![allow(dead_code)]

pub const NEEDS_ROOT: &str = "needs root: run the root tests as root: sudo -E cargo test -- --include-ignored";

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Fails the test (never skips it) when not root.
#[track_caller]
pub fn require_root() {
    assert!(is_root(), "{NEEDS_ROOT}");
}
