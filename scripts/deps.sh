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
# CRIU for beam-oci checkpoint/restore (tests/checkpoint.rs): Debian 12's criu 3.17 fails on kernels ≥ 6.13
# ("Unexpected rt vDSO area bounds", fixed in 4.1), so unless a working one is there, build CRIU 4.1.1 from
# the upstream source next to the project (../shared/criu, or $BEAM_SHARED/criu; about 20 s on 2 cores)
# into /usr/local/sbin/criu. Without that source the checkpoint test says it skipped.
if [[ "${1:-}" == "--test" ]]; then
  works() { "$1" check >/dev/null 2>&1; }
  if ! { command -v criu >/dev/null && works criu; } && ! works /usr/local/sbin/criu; then
    shared=${BEAM_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
    src=$shared/criu/criu_4.1.1.orig.tar.xz
    if [[ -f "$src" ]]; then
      echo "==> building CRIU 4.1.1 from $src"
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -qq --no-install-recommends build-essential pkg-config uuid-dev libprotobuf-c-dev \
        protobuf-c-compiler libprotobuf-dev libnl-3-dev libnet1-dev libcap-dev >/dev/null
      work=$(mktemp -d /tmp/beam-criu.XXXXXX)
      tar -C "$work" -xf "$src"
      make -C "$work/criu-4.1.1" -j"$(nproc)" criu >"$work/build.log" 2>&1 || { tail -20 "$work/build.log" >&2; exit 1; }
      install -m 0755 "$work/criu-4.1.1/criu/criu" /usr/local/sbin/criu
      rm -rf "$work"
      works /usr/local/sbin/criu || echo "==> /usr/local/sbin/criu check fails on this kernel: checkpoint tests will fail" >&2
    else
      echo "==> no working CRIU and no CRIU source at $src: beam-oci checkpoint/restore tests will skip"
    fi
  fi
fi
