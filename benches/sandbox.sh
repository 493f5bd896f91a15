#!/usr/bin/env bash
# benches/sandbox.sh — beamd sandbox latency and density (issue 4), beside `runc exec` in the same run.
#
# Usage (root):   sudo benches/sandbox.sh
# Env knobs:      CREATE_RUNS (default 200), EXEC_RUNS (default 500), RUNC_RUNS (default 100),
#                 IDLE (default 200), NO_BUILD=1 (use the binaries already in target/release)
#
# What is measured (client: examples/sandbox_bench.rs — blocking std UnixStream, hand-written keep-alive
# HTTP/1.1, one write per request, exec frames decoded with beam::api::frames::Decoder as they arrive):
#   1. create → first output   POST /v1/sandboxes {"image":"busybox"}, then POST …/exec {"cmd":["echo","hi"]}
#                              until the stdout frame "hi" arrives; the clock runs from before the create
#                              request to that frame. DELETE after each run, untimed. Also split into the
#                              create request alone and the first exec (exec request → "hi").
#   2. exec round trip         POST …/exec {"cmd":["true"]} (and ["echo","hi"]) → exit frame, on one running
#                              sandbox; beside `runc exec <ctr> true` spawned as a process and waited for
#                              (the same shape as hyperfine -N), on a runc container of the same busybox
#                              rootfs (a copy of the busybox image's unpacked layer from beamd's store).
#   3. idle density            IDLE sandboxes with keep_warm_seconds -1: beamd's VmRSS before/after, host
#                              MemAvailable delta / IDLE, and the sum of the sandboxes' memory cgroups
#                              (v1: memory/beam/<id>/memory.usage_in_bytes, v2: beam/<id>/memory.current).
#
# The runc container is started (`runc run -d … sleep 100000`) through the same private-mount-namespace
# wrapper benches/lifecycle.sh uses (an empty file bound over /sys/fs/cgroup/unified/cgroup.controllers,
# only inside that namespace); `runc exec` needs no wrapper on this host and is timed without one, so runc
# is not charged for an extra unshare. Everything made here (beamd and its temp root/run dir, every
# sandbox, the runc container and its cgroups) is removed on exit, even on failure.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "sandbox.sh: needs root" >&2; exit 1; }
for t in runc unshare curl jq python3 cargo; do
    command -v "$t" >/dev/null || { echo "sandbox.sh: $t not installed" >&2; exit 1; }
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
CREATE_RUNS=${CREATE_RUNS:-200}
EXEC_RUNS=${EXEC_RUNS:-500}
RUNC_RUNS=${RUNC_RUNS:-100}
IDLE=${IDLE:-200}
RUNC=$(command -v runc)

if [ -z "${NO_BUILD:-}" ]; then
    (cd "$REPO" && cargo build --release --bin beamd --bin beam --example sandbox_bench) >&2
fi
BEAMD=$REPO/target/release/beamd
BENCH=$REPO/target/release/examples/sandbox_bench
for b in "$BEAMD" "$BENCH"; do [ -x "$b" ] || { echo "sandbox.sh: $b missing" >&2; exit 1; }; done

T=$(mktemp -d /tmp/beam-sbx-bench.XXXXXX)
# Sandboxes run as an unprivileged mapped root: it must be able to traverse to its rootfs under $T.
chmod 755 "$T"
export BEAM_SOCKET="$T/run/beamd.sock"
CTR="sbxbench$$"
BEAMD_PID=
RESULTS="$T/results.txt"

host_binds() { grep -c 'cgroup.controllers' /proc/self/mountinfo || true; }
BINDS_BEFORE=$(host_binds)

api() { curl -sS --max-time 60 --unix-socket "$BEAM_SOCKET" "$@"; }

start_beamd() {
    # setsid: a Ctrl-C of this script must not reach beamd before the trap has deleted the sandboxes.
    # --network none: loopback-only sandboxes, like runc's (no bridge on this host; bridge attach is measured
    # separately, see docs/performance.md).
    setsid "$BEAMD" --root "$T/root" --run-dir "$T/run" --network none >>"$T/beamd.log" 2>&1 </dev/null &
    BEAMD_PID=$!
    for _ in $(seq 200); do
        api -o /dev/null http://beam/v1/version 2>/dev/null && return 0
        kill -0 "$BEAMD_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "sandbox.sh: beamd did not start; its log:" >&2
    tail -20 "$T/beamd.log" >&2
    return 1
}

cleanup() {
    local rc=$?
    set +e
    "$RUNC" --root "$T/runc-root" delete --force "$CTR" >/dev/null 2>&1
    # beamd deletes the sandboxes (unmounts, cgroups, uid ranges); if it died, a fresh one re-adopts them.
    if [ -d "$T/root/sandboxes" ] && [ -n "$(ls -A "$T/root/sandboxes" 2>/dev/null)" ]; then
        if [ -z "$BEAMD_PID" ] || ! kill -0 "$BEAMD_PID" 2>/dev/null; then
            echo "sandbox.sh: beamd is gone; restarting it to delete its sandboxes" >&2
            start_beamd
        fi
        local ids
        ids=$(api http://beam/v1/sandboxes 2>/dev/null | jq -r '.sandboxes[].id' 2>/dev/null)
        if [ -n "$ids" ]; then
            echo "sandbox.sh: deleting $(echo "$ids" | wc -l) leftover sandbox(es)" >&2
            for id in $ids; do api -X DELETE "http://beam/v1/sandboxes/$id" >/dev/null; done
        fi
    fi
    if [ -n "$BEAMD_PID" ] && kill -0 "$BEAMD_PID" 2>/dev/null; then
        kill -TERM "$BEAMD_PID"
        for _ in $(seq 100); do kill -0 "$BEAMD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$BEAMD_PID" 2>/dev/null && kill -KILL "$BEAMD_PID"
        wait "$BEAMD_PID" 2>/dev/null
    fi
    # Every sandbox id this beamd ever made (from its log), and the runc container: no cgroup may remain.
    local left
    left=$( { grep -o 'sbx-[a-z0-9]\{12\}' "$T/beamd.log" 2>/dev/null | sort -u | while read -r id; do
                find /sys/fs/cgroup -maxdepth 4 -type d -path "*/beam/$id" 2>/dev/null; done
              find /sys/fs/cgroup -maxdepth 4 -type d -name "$CTR" 2>/dev/null; } | sort -r)
    if [ -n "$left" ]; then
        echo "sandbox.sh: WARNING: leftover cgroups, removing:" >&2
        echo "$left" >&2
        echo "$left" | while read -r d; do rmdir "$d" 2>/dev/null; done
    fi
    local mnts
    mnts=$(awk -v t="$T" '$5 == t || index($5, t "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    if [ -n "$mnts" ]; then
        echo "sandbox.sh: WARNING: mounts left under $T, unmounting:" >&2
        echo "$mnts" >&2
        echo "$mnts" | while read -r m; do umount -l "$m"; done
    fi
    rm -rf --one-file-system "$T"
    if [ "$(host_binds)" != "$BINDS_BEFORE" ]; then
        echo "sandbox.sh: ERROR: the host mount table changed (cgroup.controllers bind leaked)" >&2
        rc=1
    fi
    exit $rc
}
trap cleanup EXIT INT TERM

# --- beamd, warmed ----------------------------------------------------------------------------------------
start_beamd
api -H 'Content-Type: application/json' -d '{"image":"busybox"}' http://beam/v1/images/pull | tail -1 | grep -q '"done"' ||
    { echo "sandbox.sh: building the busybox image failed" >&2; exit 1; }
id=$(api -H 'Content-Type: application/json' -d '{"image":"busybox"}' http://beam/v1/sandboxes | jq -r .id)
case "$id" in sbx-*) ;; *) echo "sandbox.sh: warm-up create failed" >&2; exit 1;; esac
api -X DELETE "http://beam/v1/sandboxes/$id" >/dev/null

cgmode=v2; [ -e /sys/fs/cgroup/cgroup.controllers ] || cgmode="v1/hybrid"
{
echo "# sandbox bench: $(date -u +%FT%TZ), $(nproc) cores, kernel $(uname -r), cgroups $cgmode"
echo "# beamd=$BEAMD (release, own --root/--run-dir under $T)  runc=$($RUNC --version | head -1)"
echo "# loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this host competes for the same cores)"
} | tee "$RESULTS"

# --- 1. create → first exec output ------------------------------------------------------------------------
echo "## 1. create → first output, $CREATE_RUNS runs (+3 warm-up)" >&2
"$BENCH" create-exec "$CREATE_RUNS" | tee -a "$RESULTS"

# --- 2. exec round trip, beam and runc --------------------------------------------------------------------
echo "## 2. exec round trip: beam $EXEC_RUNS runs, runc $RUNC_RUNS runs (+20/+5 warm-up)" >&2
EXEC_ID=$(api -H 'Content-Type: application/json' -d '{"image":"busybox","keep_warm_seconds":-1}' http://beam/v1/sandboxes | jq -r .id)
case "$EXEC_ID" in sbx-*) ;; *) echo "sandbox.sh: create for exec failed" >&2; exit 1;; esac
"$BENCH" exec "$EXEC_RUNS" "$EXEC_ID" true | tee -a "$RESULTS"
"$BENCH" exec "$EXEC_RUNS" "$EXEC_ID" echo hi | tee -a "$RESULTS"
api -X DELETE "http://beam/v1/sandboxes/$EXEC_ID" >/dev/null

# runc: the busybox image's one unpacked layer (what every beam sandbox's overlay has as its lower), copied.
layers=("$T"/root/images/layers/*/)
[ "${#layers[@]}" = 1 ] || { echo "sandbox.sh: expected one busybox layer, found ${#layers[@]}" >&2; exit 1; }
B="$T/bundle"
mkdir -p "$B"
cp -a "${layers[0]}" "$B/rootfs"
"$RUNC" spec --bundle "$B"
python3 - "$B/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["sleep", "100000"]
json.dump(c, open(p, "w"), indent=2)
PY
: > "$T/empty"
cat > "$T/ns-wrap" <<W
#!/bin/sh
# inside 'unshare -m --propagation private': hide the unified hierarchy's controllers (lifecycle.sh's wrapper)
mount --bind $T/empty /sys/fs/cgroup/unified/cgroup.controllers && exec "\$@"
W
cat > "$T/wrap" <<W
#!/bin/sh
exec unshare -m --propagation private $T/ns-wrap "\$@"
W
chmod +x "$T/ns-wrap" "$T/wrap"
"$T/wrap" "$RUNC" --root "$T/runc-root" run -d --bundle "$B" "$CTR" </dev/null >/dev/null 2>"$T/runc.err" ||
    { echo "sandbox.sh: runc run -d failed: $(cat "$T/runc.err")" >&2; exit 1; }
[ "$(host_binds)" = "$BINDS_BEFORE" ] || { echo "sandbox.sh: wrapper leaked a mount into the host" >&2; exit 1; }
"$BENCH" runc-exec "$RUNC_RUNS" "$CTR" --runc "$RUNC" --root "$T/runc-root" | tee -a "$RESULTS"
"$RUNC" --root "$T/runc-root" delete --force "$CTR"

# --- 3. idle density --------------------------------------------------------------------------------------
echo "## 3. $IDLE idle sandboxes" >&2
"$BENCH" idle "$IDLE" | tee -a "$RESULTS"

# --- summary ----------------------------------------------------------------------------------------------
echo "# loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"
echo
python3 - "$RESULTS" "$IDLE" <<'PY'
import sys
rows, kv = {}, {}
for line in open(sys.argv[1]):
    if line.startswith("#"):
        continue
    parts = line.split()
    if not parts:
        continue
    d = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    if "p50_ms" in d:
        rows[parts[0]] = {k: float(v) for k, v in d.items()}
    else:
        kv[parts[0]] = d
print(f"| {'measurement':34s} | {'n':>4s} | {'p50 ms':>8s} | {'p99 ms':>8s} | {'mean ms':>8s} |")
print(f"|{'-'*36}|{'-'*6}|{'-'*10}|{'-'*10}|{'-'*10}|")
for k, r in rows.items():
    print(f"| {k.strip():34s} | {int(r['n']):4d} | {r['p50_ms']:8.2f} | {r['p99_ms']:8.2f} | {r['mean_ms']:8.2f} |")
print()
ce = rows["create_to_first_output"]
ok = lambda b: "met" if b else "NOT met"
print(f"create → first output p50 {ce['p50_ms']:.2f} ms (target ≤ 15 ms: {ok(ce['p50_ms'] <= 15)}), "
      f"p99 {ce['p99_ms']:.2f} ms")
be, ru = rows["beam_exec_true"], rows["runc_exec_true"]
r50, r99 = ru["p50_ms"] / be["p50_ms"], ru["p99_ms"] / be["p99_ms"]
print(f"exec true: beam p50 {be['p50_ms']:.2f} ms (target ≤ 2 ms: {ok(be['p50_ms'] <= 2)}); "
      f"runc exec p50 {ru['p50_ms']:.2f} ms")
print(f"  runc/beam = {r50:.1f}× at p50, {r99:.1f}× at p99 (target ≥ 10×: {ok(r50 >= 10)})")
n = int(sys.argv[2])
rss, av, cg = kv["beamd_rss_kib"], kv["host_memavailable_kib"], kv["cgroup_memory_sum_kib"]
print(f"{n} idle sandboxes: beamd RSS {int(rss['before'])/1024:.1f} → {int(rss['after'])/1024:.1f} MiB "
      f"({float(rss['delta_per_sandbox_kib']):.1f} KiB/sandbox); host MemAvailable "
      f"{-float(av['delta_per_sandbox_kib']):+.0f} KiB/sandbox; cgroups {float(cg['per_sandbox_kib']):.0f} KiB/sandbox "
      f"(anon {float(cg['anon_per_sandbox_kib']):.0f} KiB)")
PY
