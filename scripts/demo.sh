#!/usr/bin/env bash
# Install what is needed, build beam, and run a busybox container with beam-oci (no registry needed).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $EUID -eq 0 ]] || { echo "run as root: sudo bash scripts/demo.sh" >&2; exit 1; }
bash scripts/deps.sh
cargo build --release --quiet
bin=target/release/beam-oci
bundle=$(mktemp -d /tmp/beam-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/proc" "$bundle/rootfs/sys" "$bundle/rootfs/dev" "$bundle/rootfs/tmp"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$bundle/rootfs/bin/$a"; done
"$PWD/$bin" spec --bundle "$bundle"
# non-interactive: no terminal; print who and where we are
python3 - "$bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "echo hello from a beam container: pid $$, hostname $(hostname); grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; ls /"]
json.dump(c, open(p, "w"), indent=2)
PY
echo "==> $bin run --bundle $bundle demo"
"$bin" run --bundle "$bundle" "demo-$$"
