//! Shared by the library's unit tests (compiled only for them).

/// What a root test says when it runs without root.
pub(crate) const NEEDS_ROOT: &str = "needs root: run the root tests as root: sudo -E cargo test -- --include-ignored";

/// The guard for the library's unit tests that need root (tests/common_root is the integration tests'
/// twin). Such a test is `#[ignore = "needs root"]`, so a plain `cargo test` as a user lists it as
/// ignored, and calls this first, so that when it does run (`--include-ignored`) without root it fails
/// instead of passing having done nothing. No environment switch: a root test that runs must do its job.
#[track_caller]
pub(crate) fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "{NEEDS_ROOT}");
}
