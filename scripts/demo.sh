#!/usr/bin/env bash
# Install what is needed, build beam, start beamd (unless one is serving), `beam run` a sandbox of the
# busybox image (built from the embedded recipe: no registry, no network), exec in it, stop it; serve HTTP
# from a sandbox and fetch it through beamd's gateway URL — then a container through beam-oci, the
# runc-compatible runtime, on a plain OCI bundle. A beamd started here is stopped at the end (with no
# sandbox left it removes its bridge and nftables tables).
set -euo pipefail
cd "$(dirname "$0")/.."
# It needs root (namespaces, cgroups, mounts): as a user it runs itself again through sudo, keeping the
# user's Rust toolchain (PATH, CARGO_HOME, RUSTUP_HOME), so the same command works for root and for users.
if [[ $EUID -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "scripts/demo.sh needs root: run it as root (sudo is not installed)" >&2; exit 1; }
  exec sudo env PATH="$PATH" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" bash "$PWD/scripts/demo.sh" "$@"
fi
bash scripts/deps.sh
cargo build --release --quiet
beam=target/release/beam
oci=target/release/beam-oci
root=${BEAM_ROOT:-/var/lib/beam}

sock=${BEAM_SOCKET:-/run/beam/beamd.sock}
export BEAM_SOCKET=$sock
started=
cleanup() {
  [[ -n "${id:-}" ]] && "$beam" rm -f "$id" >/dev/null 2>&1 || true
  [[ -n "$started" ]] && kill "$started" 2>/dev/null && wait "$started" 2>/dev/null || true
  rm -rf "${bundle:-}"
}
trap cleanup EXIT
if ! "$beam" version >/dev/null 2>&1; then
  echo "==> starting beamd (socket $sock, state $root; log /tmp/beamd-demo.log)"
  target/release/beamd --root "$root" --socket "$sock" >/tmp/beamd-demo.log 2>&1 &
  started=$!
  for _ in $(seq 100); do "$beam" version >/dev/null 2>&1 && break; sleep 0.1; done
fi
echo "==> beam run --image busybox   (built from the embedded recipe: the host's busybox-static, no network)"
id=$("$beam" run --image busybox --name "demo-$$" --memory 256Mi --cpu 0.5)
echo "==> beam exec $id -- sh -c …"
"$beam" exec "$id" -- sh -c 'echo "hello from a beam sandbox: pid $$, $(id), hostname $(hostname)"; grep -E "^(CapEff|NoNewPrivs|Seccomp)" /proc/self/status; head -1 /proc/self/uid_map'
"$beam" container list
echo "==> beam stop $id"
"$beam" stop "$id"
"$beam" rm "$id" >/dev/null
id=

echo "==> beam run -d --ports 8080 … httpd   (a web server in a sandbox, reached through beamd's gateway)"
id=$("$beam" run -d --image busybox --name "web-$$" --ports 8080 -- \
  sh -c 'mkdir -p /tmp/www && echo "hello from $(hostname) through the gateway" > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www')
url=$("$beam" container inspect "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["urls"]["8080"])')
echo "==> curl $url"
for _ in $(seq 100); do curl -fsS --max-time 2 "$url" && break; sleep 0.1; done
"$beam" rm -f "$id" >/dev/null
id=

echo "==> $oci run  (an OCI bundle, as podman or containerd would hand it over)"
bundle=$(mktemp -d /tmp/beam-demo.XXXXXX)
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
