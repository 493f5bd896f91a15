#!/usr/bin/env bash
# benches/pull_run.sh — time from `beam image pull` of an image that is already in the store to the first
# output of a container of it, beside `podman pull` + `podman run` of the same image from the same registry.
#
# Usage (root): cargo build --release && sudo benches/pull_run.sh      RUNS (default 30)
# Starts Debian's docker-registry on 127.0.0.1 (a free port, temp storage), pushes the embedded busybox image,
# pulls it once (so later pulls are cached: only the manifest is fetched), then measures
#   beam:   beam image pull -q REF && beam image run REF -- true
#   podman: podman pull -q REF && podman run --rm --network none … REF true   (isolated storage, vfs)
# Everything it made (registry, stores, podman storage) is removed on exit.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "pull_run.sh: needs root" >&2; exit 1; }
for t in hyperfine docker-registry python3; do command -v "$t" >/dev/null || { echo "pull_run.sh: $t missing" >&2; exit 1; }; done
REPO=$(cd "$(dirname "$0")/.." && pwd)
BEAM=$(readlink -f "${BEAM:-$REPO/target/release/beam}")
[ -x "$BEAM" ] || { echo "pull_run.sh: $BEAM missing: cargo build --release" >&2; exit 1; }
RUNS=${RUNS:-30}
TMP=$(mktemp -d /tmp/beam-pullrun.XXXXXX)
REG_PID=
cleanup() {
    if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null || true; fi
    if command -v podman >/dev/null; then podman --root "$TMP/podman" --runroot "$TMP/podman-run" --storage-driver vfs rmi -a -f >/dev/null 2>&1 || true; fi
    umount -R "$TMP/podman" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$TMP/registry.yml" <<YML
version: 0.1
storage: {filesystem: {rootdirectory: $TMP/registry}}
http: {addr: 127.0.0.1:$PORT}
log: {level: error}
YML
docker-registry serve "$TMP/registry.yml" >"$TMP/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v2/')" 2>/dev/null && break; sleep 0.1; done
REF=127.0.0.1:$PORT/bench/busybox:1

"$BEAM" --root "$TMP/seed" image build -q busybox >/dev/null
"$BEAM" --root "$TMP/seed" image push -q busybox "$REF" >/dev/null
"$BEAM" --root "$TMP/beam" image pull -q "$REF" >/dev/null    # now cached

cmds=(-n beam "$BEAM --root $TMP/beam image pull -q $REF >/dev/null && $BEAM --root $TMP/beam image run $REF -- true")
if command -v podman >/dev/null; then
    P="podman --root $TMP/podman --runroot $TMP/podman-run --storage-driver vfs --cgroup-manager cgroupfs --events-backend file"
    $P pull -q --tls-verify=false "$REF" >/dev/null
    # podman with runc: crun refuses this hybrid-cgroup host (see benches/lifecycle.sh)
    cmds+=(-n podman "$P pull -q --tls-verify=false $REF >/dev/null && $P run --runtime runc --rm --network none --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 $REF true")
fi
hyperfine --warmup 3 --runs "$RUNS" --export-json "$TMP/h.json" "${cmds[@]}"
python3 - "$TMP/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = {k: sorted(v["times"])[len(v["times"]) // 2] * 1000 for k, v in r.items()}
for k, v in med.items():
    print(f"median {k:8s} {v:8.1f} ms")
if "podman" in med:
    print(f"beam/podman = {med['beam'] / med['podman']:.2f}")
PY
