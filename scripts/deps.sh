#!/usr/bin/env bash
# Install the Debian packages beam's build, demo and tests need (idempotent).
set -euo pipefail
need=(busybox-static procps pkg-config python3 nftables iproute2 curl)
# protoc: the k8s-cri dev-dependency (tests/cri.rs) generates its gRPC code at build time, for every test build
need+=(protobuf-compiler)
if [[ "${1:-}" == "--test" ]]; then
  # reference runtimes for the podman test and the benchmarks; qemu + kmod for the cgroup v2 VM
  need+=(runc crun podman uidmap hyperfine qemu-system-x86 kmod python3-pip)
  # images: a real registry, debootstrap for recipes, skopeo/umoci to make test fixtures, zstd for benches
  need+=(docker-registry debootstrap skopeo umoci zstd)
  # the OCI runtime-tools validation suite (scripts/conformance.sh builds it from ../shared/conformance)
  need+=(golang-go make jq)
  # what a Kubernetes node runs: containerd (its runc v2 shim and CRI plugin) driving beam-oci; ctr comes with it
  need+=(containerd)
fi
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install a Rust toolchain (https://rustup.rs) and re-run" >&2
  exit 1
fi
