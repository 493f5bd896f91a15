#!/usr/bin/env bash
# The whole test suite: unit + integration tests on this host, then the cgroup tests and the runtime
# tests again inside a pure cgroup v2 VM (Debian 6.1 kernel under qemu).
set -euo pipefail
cd "$(dirname "$0")/.."
# It needs root (namespaces, cgroups, mounts): as a user it runs itself again through sudo, keeping the
# user's Rust toolchain (PATH, CARGO_HOME, RUSTUP_HOME), so the same command works for root and for users.
if [[ $EUID -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "scripts/test.sh needs root: run it as root (sudo is not installed)" >&2; exit 1; }
  exec sudo env PATH="$PATH" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" bash "$PWD/scripts/test.sh" "$@"
fi
bash scripts/deps.sh --test
echo "==> cargo test (host: $(grep -c cgroup2 /proc/self/mountinfo) cgroup2 mount(s), kernel $(uname -r))"
# --include-ignored: the tests that need root are #[ignore = "needs root"] (a user's plain `cargo test` lists
# them as ignored); here, as root, they all run, and one that somehow runs without root fails (docs/testing.md).
cargo test --all-targets -- --test-threads=2 --include-ignored
# The OCI validation suite against the beam-oci cargo test just built; fails on a test that passed before.
if [[ -d ../shared/conformance || -n "${BEAM_SHARED:-}" ]]; then
    echo "==> OCI validation suite (host)"
    bash scripts/conformance.sh run target/debug/beam-oci target/conformance/host-beam-oci.tsv
    bash scripts/conformance.sh check target/conformance/host-beam-oci.tsv
else
    echo "==> OCI validation suite skipped: no conformance kit at ../shared/conformance (BEAM_SHARED)"
fi
if [[ "${BEAM_SKIP_VM:-}" == 1 ]]; then
  echo "==> cgroup v2 VM skipped (BEAM_SKIP_VM=1)"
else
  echo "==> cgroup v2 VM"
  bash tests/vm/cgroup-v2.sh
fi
