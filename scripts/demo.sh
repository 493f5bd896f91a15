#!/usr/bin/env bash
# Install what is needed, build beam, build the embedded busybox image (no registry, no network) and run a
# container of it — then the same through beam-oci, the runc-compatible runtime, on a plain OCI bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $EUID -eq 0 ]] || { echo "run as root: sudo bash scripts/demo.sh" >&2; exit 1; }
bash scripts/deps.sh
cargo build --release --quiet
beam=target/release/beam
oci=target/release/beam-oci
root=${BEAM_ROOT:-/var/lib/beam}

echo "==> $beam image build busybox   (the embedded recipe: the host's busybox-static, no network)"
"$beam" --root "$root" image build busybox
"$beam" --root "$root" image ls
echo "==> $beam image run busybox -- sh -c …"
"$beam" --root "$root" image run busybox -- sh -c 'echo "hello from a beam container: pid $$, $(id)"; grep -E "^(CapEff|NoNewPrivs|Seccomp)" /proc/self/status'

echo "==> $oci run  (an OCI bundle, as podman or containerd would hand it over)"
bundle=$(mktemp -d /tmp/beam-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/proc" "$bundle/rootfs/sys" "$bundle/rootfs/dev" "$bundle/rootfs/tmp"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$bundle/rootfs/bin/$a"; done
"$PWD/$oci" spec --bundle "$bundle"
python3 - "$bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "echo hello from beam-oci: pid $$, hostname $(hostname)"]
json.dump(c, open(p, "w"), indent=2)
PY
"$oci" run --bundle "$bundle" "demo-$$"
