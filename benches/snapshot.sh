#!/usr/bin/env bash
# benches/snapshot.sh — a filesystem snapshot of a sandbox that added SIZE_MB (default 10) of files to its
# image, beside `podman commit` of a container with the same change, and beside a tar of the whole root
# filesystem (what archiving the merged rootfs costs), in one run.
#
# Usage (root): cargo build --release && sudo benches/snapshot.sh        RUNS (default 10), SIZE_MB (10)
#   beam:   beam snapshot fs SANDBOX          (through beamd: freeze, commit the upper dir as one
#                                              zstd layer, record the image, thaw)
#   podman: podman commit CONTAINER           (same busybox image pulled from a local registry; its own
#                                              storage under the temp dir, overlay driver when the temp
#                                              dir's filesystem takes it, else vfs — printed)
#   tar:    tar -C /proc/PID/root -cf - . | zstd -3   (the sandbox's whole merged root filesystem)
# Prints medians, the ratios and the sizes (beam's layer, podman's image diff, the whole-rootfs tar).
# Everything made (beamd, its root, the registry, podman's storage) is removed on exit.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "snapshot.sh: needs root" >&2; exit 1; }
for t in hyperfine docker-registry python3 curl zstd; do
    command -v "$t" >/dev/null || { echo "snapshot.sh: $t missing (scripts/deps.sh --test)" >&2; exit 1; }
done
REPO=$(cd "$(dirname "$0")/.." && pwd)
BEAM=$REPO/target/release/beam
BEAMD=$REPO/target/release/beamd
for b in "$BEAM" "$BEAMD"; do [ -x "$b" ] || { echo "snapshot.sh: $b missing: cargo build --release" >&2; exit 1; }; done
RUNS=${RUNS:-10}
SIZE_MB=${SIZE_MB:-10}
T=$(mktemp -d /tmp/beam-snapbench.XXXXXX)
chmod 755 "$T"
export BEAM_SOCKET="$T/run/beamd.sock"
BEAMD_PID= REG_PID= P=
cleanup() {
    set +e
    if [ -n "$P" ]; then $P rm -f -a >/dev/null 2>&1; $P rmi -a -f >/dev/null 2>&1; fi
    umount -R "$T/podman" 2>/dev/null
    if [ -n "$BEAMD_PID" ]; then
        for id in $(curl -s --unix-socket "$BEAM_SOCKET" http://beam/v1/sandboxes | python3 -c 'import json,sys; [print(s["id"]) for s in json.load(sys.stdin)["sandboxes"]]' 2>/dev/null); do
            curl -s -X DELETE --unix-socket "$BEAM_SOCKET" "http://beam/v1/sandboxes/$id" >/dev/null
        done
        kill "$BEAMD_PID"; wait "$BEAMD_PID" 2>/dev/null
    fi
    if [ -n "$REG_PID" ]; then kill "$REG_PID"; wait "$REG_PID" 2>/dev/null; fi
    rm -rf "$T"
}
trap cleanup EXIT

setsid "$BEAMD" --root "$T/root" --run-dir "$T/run" --network none --gateway none >"$T/beamd.log" 2>&1 </dev/null &
BEAMD_PID=$!
for _ in $(seq 200); do curl -sf -o /dev/null --unix-socket "$BEAM_SOCKET" http://beam/v1/version && break; sleep 0.05; done
ID=$("$BEAM" run -d --image busybox --keep-warm-seconds -1)
CHANGE="mkdir -p /data && for i in \$(seq $SIZE_MB); do head -c 1048576 /dev/urandom > /data/f\$i; done"
"$BEAM" exec "$ID" -- sh -c "$CHANGE"
PID=$(curl -s --unix-socket "$BEAM_SOCKET" "http://beam/v1/sandboxes/$ID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')

cmds=(-n beam "$BEAM snapshot fs $ID >/dev/null 2>&1"
      -n tar "tar -C /proc/$PID/root --one-file-system -cf - . | zstd -3 -q > $T/whole.tar.zst")
if command -v podman >/dev/null; then
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'version: 0.1\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\nlog: {level: error}\n' "$T/registry" "$PORT" > "$T/registry.yml"
    docker-registry serve "$T/registry.yml" >"$T/registry.log" 2>&1 &
    REG_PID=$!
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/v2/" && break; sleep 0.1; done
    REF=127.0.0.1:$PORT/bench/busybox:1
    "$BEAM" --root "$T/seed" image build -q busybox >/dev/null
    "$BEAM" --root "$T/seed" image push -q busybox "$REF" >/dev/null
    DRIVER=overlay
    mkdir -p "$T/podman"
    PB="podman --root $T/podman --runroot $T/podman-run --cgroup-manager cgroupfs --events-backend file"
    $PB --storage-driver overlay info >/dev/null 2>&1 || DRIVER=vfs
    P="$PB --storage-driver $DRIVER"
    $P pull -q --tls-verify=false "$REF" >/dev/null
    # runc: crun refuses this hybrid-cgroup host (see benches/lifecycle.sh)
    $P run -d --runtime runc --name snapbench --network none --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 "$REF" sleep 100000 >/dev/null
    $P exec snapbench sh -c "$CHANGE"
    echo "podman storage driver: $DRIVER"
    cmds+=(-n podman "$P commit -q snapbench >/dev/null")
fi
hyperfine --warmup 1 --runs "$RUNS" --export-json "$T/h.json" "${cmds[@]}"
LAYER=$("$BEAM" snapshot fs "$ID" 2>&1 >/dev/null | sed -n 's/.*(\([0-9]*\) bytes compressed.*/\1/p')
WHOLE=$(stat -c %s "$T/whole.tar.zst")
PODMAN_SIZE=
if [ -n "$P" ]; then PODMAN_SIZE=$($P history --format '{{.Size}}' "$($P commit -q snapbench)" | head -1); fi
python3 - "$T/h.json" "$LAYER" "$WHOLE" "$PODMAN_SIZE" "$SIZE_MB" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = {k: sorted(v["times"])[len(v["times"]) // 2] * 1000 for k, v in r.items()}
for k, v in med.items():
    print(f"median {k:8s} {v:8.1f} ms")
for k in ("podman", "tar"):
    if k in med:
        print(f"beam/{k} = {med['beam'] / med[k]:.2f}")
print(f"change: {sys.argv[5]} MiB of random data; beam layer {int(sys.argv[2]) / 2**20:.1f} MiB (zstd), "
      f"whole rootfs tar {int(sys.argv[3]) / 2**20:.1f} MiB (zstd)" + (f", podman layer {sys.argv[4]}" if sys.argv[4] else ""))
PY
