#!/usr/bin/env bash
# benches/soak.sh — create → exec → stop → rm cycles through beamd, PARALLEL at a time, then check that
# nothing is left and that beamd's memory and fds are back where they were (issue 10, "Soak and fuzz").
#
# Usage (root):   sudo benches/soak.sh
# Env knobs:      CYCLES (default 1000), PARALLEL (default 4), WARMUP (default 20 cycles, before the
#                 baseline is taken), RSS_TOLERANCE (percent, default 10), STOP_GRACE (seconds, default 5),
#                 NETNS=private (the bridge in a network namespace made here instead of the host's),
#                 NO_BUILD=1 (use target/release as it is), KEEP=1 (keep the temp dir and its logs).
#
# It starts its own release beamd (own --root, --run-dir, socket, gateway on a free loopback port) with
# the default bridge networking: on the host that means the `beam0` bridge, the nftables tables `inet beam`
# and `bridge beam`, and net.ipv4.ip_forward on while they exist — all made and removed by beamd itself
# (removed by its clean shutdown: SIGTERM, then wait). It refuses to start when beam0 or those tables are
# already there (another beamd's), since they would be shared. The busybox image is built from the embedded
# recipe (`beam image build busybox`, no network). Each cycle, with the `beam` CLI: `beam run --image
# busybox` (a sandbox with no entrypoint), `beam exec ID -- echo ok` (checks the output), `beam stop -t
# STOP_GRACE ID`, `beam rm ID`. The sandboxes send no traffic at all.
#
# Checked after the cycles (beamd still running), each printed with its numbers:
#   - no sandbox left in beamd's list, no dir under <root>/sandboxes, none under <run-dir>/runtime;
#   - no mount under the temp dir beyond the baseline's (host's and beamd's mount tables);
#   - no cgroup named after a soak sandbox (/sys/fs/cgroup/*/beam/<id>, v1 and v2);
#   - no process left below beamd, so no sandbox network namespace held;
#   - no `bm-*` veth of a soak sandbox; no element in beam's nft sets (blocked, restricted, allowed, bound);
#   - no lease under <root>/network/leases;
#   - beamd's open fds (/proc/PID/fd) equal to the baseline's; its VmRSS within RSS_TOLERANCE % of it.
# And after beamd's clean shutdown: no beam0, no beam nft tables, ip_forward as it was, no mount under the
# temp dir. Exits non-zero when a cycle or a check failed. Cleanup (trap EXIT): the remaining soak sandboxes
# removed, beamd stopped by SIGTERM (waited for), the namespace holder (NETNS=private) killed by its PID, the
# temp dir removed.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "soak.sh: needs root" >&2; exit 1; }
for t in curl jq ip nft python3; do
    command -v "$t" >/dev/null || { echo "soak.sh: $t not installed" >&2; exit 1; }
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
CYCLES=${CYCLES:-1000}
PARALLEL=${PARALLEL:-4}
WARMUP=${WARMUP:-20}
RSS_TOLERANCE=${RSS_TOLERANCE:-10}
STOP_GRACE=${STOP_GRACE:-5}
NETNS=${NETNS:-host}

if [ -z "${NO_BUILD:-}" ]; then
    (cd "$REPO" && cargo build --release --bin beamd --bin beam) >&2
fi
BEAMD=$REPO/target/release/beamd
BEAM=$REPO/target/release/beam
for b in "$BEAMD" "$BEAM"; do [ -x "$b" ] || { echo "soak.sh: $b missing" >&2; exit 1; }; done

T=$(mktemp -d /tmp/beam-soak.XXXXXX)
chmod 755 "$T" # sandboxes' mapped root must traverse to their rootfs under it
export BEAM_SOCKET="$T/run/beamd.sock" BEAM_ROOT="$T/root"
BEAMD_PID=
HOLDER_PID=
IDS=$T/ids
: >"$IDS"
FAILED=0

# Where beam's network lives: the host's namespace, or one held by a process started here.
innet() { if [ -n "$HOLDER_PID" ]; then nsenter --net="/proc/$HOLDER_PID/ns/net" "$@"; else "$@"; fi; }
if [ "$NETNS" = private ]; then
    unshare --net sleep infinity &
    HOLDER_PID=$!
    sleep 0.2
fi

api() { curl -sS --max-time 60 --unix-socket "$BEAM_SOCKET" "$@"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$BEAMD_PID/status"; }
fds() { ls "/proc/$BEAMD_PID/fd" | wc -l; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$BEAMD_PID/status"; }
mounts_here() { # mounts (nsfs binds included) under the temp dir, in our mount table and beamd's
    { grep -F " $T" /proc/self/mountinfo || true
      if [ -n "$BEAMD_PID" ] && [ -d "/proc/$BEAMD_PID" ]; then grep -F " $T" "/proc/$BEAMD_PID/mountinfo" || true; fi
    } | wc -l
}
bridge_exists() { innet ip link show beam0 >/dev/null 2>&1; }
tables() { innet nft list tables 2>/dev/null | grep -E '^table (inet|bridge) beam$' || true; }
ip_forward() { innet cat /proc/sys/net/ipv4/ip_forward; }

check() { # check NAME OK(0/1) DETAIL
    if [ "$2" = 0 ]; then printf '  ok    %-34s %s\n' "$1" "$3"; else printf '  FAIL  %-34s %s\n' "$1" "$3"; FAILED=1; fi
}

cleanup() {
    local rc=$?
    set +e
    if [ -n "$BEAMD_PID" ] && kill -0 "$BEAMD_PID" 2>/dev/null; then
        # Whatever a failed run left: its sandboxes go first, so that the shutdown can remove the network.
        for id in $(api http://beam/v1/sandboxes 2>/dev/null | jq -r '.sandboxes[].id' 2>/dev/null); do
            grep -qx "$id" "$IDS" && "$BEAM" rm -f "$id" >/dev/null 2>&1
        done
        kill -TERM "$BEAMD_PID"
        for _ in $(seq 600); do kill -0 "$BEAMD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$BEAMD_PID" 2>/dev/null && echo "soak.sh: beamd $BEAMD_PID still running after 60 s; left running" >&2
    fi
    [ -n "$HOLDER_PID" ] && kill "$HOLDER_PID" 2>/dev/null && wait "$HOLDER_PID" 2>/dev/null
    if [ -n "${KEEP:-}" ]; then echo "soak.sh: kept $T" >&2; else rm -rf "$T"; fi
    exit "$rc"
}
trap cleanup EXIT

if bridge_exists || [ -n "$(tables)" ]; then
    echo "soak.sh: beam0 or the beam nftables tables already exist (another beamd's?); stop it, or run with NETNS=private" >&2
    exit 1
fi
FORWARD_BEFORE=$(ip_forward)
GW_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

echo "==> building the busybox image (embedded recipe) in $T/root" >&2
"$BEAM" image build busybox >/dev/null

net_args=()
[ -n "$HOLDER_PID" ] && net_args=(--network-netns "/proc/$HOLDER_PID/ns/net")
# setsid: a Ctrl-C of this script must not reach beamd before the trap has removed the sandboxes.
setsid "$BEAMD" --root "$T/root" --run-dir "$T/run" --gateway "127.0.0.1:$GW_PORT" "${net_args[@]}" \
    >>"$T/beamd.log" 2>&1 </dev/null &
BEAMD_PID=$!
for _ in $(seq 200); do
    api -o /dev/null http://beam/v1/version 2>/dev/null && break
    kill -0 "$BEAMD_PID" 2>/dev/null || { echo "soak.sh: beamd exited; its log:" >&2; tail -20 "$T/beamd.log" >&2; exit 1; }
    sleep 0.05
done
RSS_START=$(rss_kib) FDS_START=$(fds) THREADS_START=$(threads)

# One cycle; its duration in ms on stdout, or "FAIL <step> <cycle>" (details in $T/fail.<cycle>).
cycle() {
    local n=$1 t0 id out
    t0=$(date +%s%N)
    if ! id=$("$BEAM" run --image busybox 2>"$T/fail.$n"); then echo "FAIL run $n"; return; fi
    echo "$id" >>"$IDS"
    if ! out=$("$BEAM" exec "$id" -- echo ok 2>>"$T/fail.$n") || [ "$out" != ok ]; then
        echo "exec output: $out" >>"$T/fail.$n"; echo "FAIL exec $n"; "$BEAM" rm -f "$id" >/dev/null 2>&1; return
    fi
    if ! "$BEAM" stop -t "$STOP_GRACE" "$id" >/dev/null 2>>"$T/fail.$n"; then echo "FAIL stop $n"; "$BEAM" rm -f "$id" >/dev/null 2>&1; return; fi
    if ! "$BEAM" rm "$id" >/dev/null 2>>"$T/fail.$n"; then echo "FAIL rm $n"; return; fi
    rm -f "$T/fail.$n"
    echo $(( ($(date +%s%N) - t0) / 1000000 ))
}

# run_cycles COUNT OUT: COUNT cycles, PARALLEL workers (worker k does cycles k, k+P, …); durations in OUT.
run_cycles() {
    local count=$1 out=$2 k pids=()
    for k in $(seq 0 $((PARALLEL - 1))); do
        ( for ((n = k; n < count; n += PARALLEL)); do cycle "$n"; done >"$out.$k" ) &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    cat "$out".* >"$out"
    rm -f "$out".*
}

echo "==> warm-up: $WARMUP cycles, $PARALLEL at a time" >&2
run_cycles "$WARMUP" "$T/warmup"
sleep 1
RSS_BASE=$(rss_kib) FDS_BASE=$(fds) THREADS_BASE=$(threads) MOUNTS_BASE=$(mounts_here)

echo "==> soak: $CYCLES cycles, $PARALLEL at a time (beamd pid $BEAMD_PID, log $T/beamd.log)" >&2
S0=$(date +%s%N)
# A sampler: beamd's RSS, fds and threads every 5 s, for the record.
( while kill -0 "$BEAMD_PID" 2>/dev/null; do echo "$(date +%s) $(rss_kib) $(fds) $(threads)"; sleep 5; done ) >"$T/samples" 2>/dev/null &
SAMPLER=$!
run_cycles "$CYCLES" "$T/soak"
S1=$(date +%s%N)
kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null || true
sleep 2 # let exits and async cleanups settle (netns teardown is asynchronous in the kernel)

fails=$(grep -c '^FAIL' "$T/soak" || true)
ok=$(grep -cv '^FAIL' "$T/soak" || true)
secs=$(awk -v a="$S0" -v b="$S1" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
stats=$({ grep -v '^FAIL' "$T/soak" || true; } | sort -n | awk '{a[NR] = $1} function q(p) {return a[int((NR - 1) * p) + 1]}
    END {if (NR) printf "p50 %d ms, p90 %d ms, p99 %d ms, max %d ms", q(0.5), q(0.9), q(0.99), a[NR]}')
RSS_END=$(rss_kib) FDS_END=$(fds) THREADS_END=$(threads) MOUNTS_END=$(mounts_here)
RSS_MAX=$(awk 'BEGIN {m=0} $2 > m {m=$2} END {print m}' "$T/samples")
# Growth over the second half tells a leak (still climbing) from allocator warm-up (flat by then).
RSS_MID=$(awk '{a[NR] = $2} END {print a[int((NR + 1) / 2)]}' "$T/samples")
FDS_MAX=$(awk 'BEGIN {m=0} $3 > m {m=$3} END {print m}' "$T/samples")

echo
echo "soak: $CYCLES cycles (create → exec → stop → rm), $PARALLEL at a time, bridge network ($NETNS netns)"
echo "  cycles ok $ok, failed $fails, in $secs s: $(awk -v n="$ok" -v s="$secs" 'BEGIN {printf "%.2f", n / s}') cycles/s; per cycle $stats"
echo "  beamd RSS KiB: start $RSS_START, after warm-up $RSS_BASE, end $RSS_END (max sampled $RSS_MAX; mid-soak $RSS_MID, so $((RSS_END - RSS_MID)) KiB over the second half)"
echo "  beamd fds: start $FDS_START, after warm-up $FDS_BASE, end $FDS_END (max sampled $FDS_MAX); threads $THREADS_START / $THREADS_BASE / $THREADS_END"
echo "checks (beamd running):"
check "cycles" "$([ "$fails" = 0 ] && echo 0 || echo 1)" "$fails failed$( [ "$fails" = 0 ] || echo ": $(grep '^FAIL' "$T/soak" | head -3 | tr '\n' ';') see $T/fail.*")"
left=$(api http://beam/v1/sandboxes | jq '.sandboxes | length')
check "sandboxes listed" "$([ "$left" = 0 ] && echo 0 || echo 1)" "$left"
sdirs=$({ find "$T/root/sandboxes" -mindepth 1 -maxdepth 1 || true; } | wc -l)
check "<root>/sandboxes entries" "$([ "$sdirs" = 0 ] && echo 0 || echo 1)" "$sdirs"
rdirs=$({ find "$T/run/runtime" -mindepth 1 -maxdepth 1 -name 'sbx-*' 2>/dev/null || true; } | wc -l)
check "<run-dir>/runtime states" "$([ "$rdirs" = 0 ] && echo 0 || echo 1)" "$rdirs"
check "mounts under the temp dir" "$([ "$MOUNTS_END" -le "$MOUNTS_BASE" ] && echo 0 || echo 1)" "$MOUNTS_END (baseline $MOUNTS_BASE)"
cg=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -type d -path '*/beam/sbx-*' 2>/dev/null | awk -F/ '{print $NF}' | sort -u | grep -Fxf "$IDS" | wc -l || true)
check "cgroups of soak sandboxes" "$([ "$cg" = 0 ] && echo 0 || echo 1)" "$cg"
kids=$({ ps -o pid= --ppid "$BEAMD_PID" || true; } | wc -l)
check "processes below beamd" "$([ "$kids" = 0 ] && echo 0 || echo 1)" "$kids"
veths=$(innet ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | { grep '^bm-' || true; } | while read -r v; do
    if grep -q "^sbx-${v#bm-}$" "$IDS"; then echo "$v"; fi; done | wc -l)
check "veths of soak sandboxes" "$([ "$veths" = 0 ] && echo 0 || echo 1)" "$veths"
elems=0
for s in "inet beam blocked" "inet beam restricted" "inet beam allowed" "bridge beam bound"; do
    # shellcheck disable=SC2086
    n=$({ innet nft -j list set $s 2>/dev/null || true; } | jq '[.nftables[] | select(.set) | .set.elem // [] | length] | add // 0')
    elems=$((elems + ${n:-0}))
done
check "nft set elements" "$([ "$elems" = 0 ] && echo 0 || echo 1)" "$elems"
leases=$({ find "$T/root/network/leases" -mindepth 1 2>/dev/null || true; } | wc -l)
check "leases" "$([ "$leases" = 0 ] && echo 0 || echo 1)" "$leases"
check "beamd fds back to the baseline" "$([ "$FDS_END" -le "$FDS_BASE" ] && echo 0 || echo 1)" "$FDS_END vs $FDS_BASE"
rss_pct=$(awk -v a="$RSS_BASE" -v b="$RSS_END" 'BEGIN {printf "%+.1f", (b - a) * 100 / a}')
check "beamd RSS within ${RSS_TOLERANCE}%" "$(awk -v p="$rss_pct" -v t="$RSS_TOLERANCE" 'BEGIN {print (p <= t && p >= -t) ? 0 : 1}')" "$rss_pct % ($RSS_BASE → $RSS_END KiB)"

echo "checks (after beamd's clean shutdown):"
kill -TERM "$BEAMD_PID"
t0=$(date +%s%N)
while kill -0 "$BEAMD_PID" 2>/dev/null; do sleep 0.05; done
wait "$BEAMD_PID" 2>/dev/null || true
echo "  beamd exited $(( ($(date +%s%N) - t0) / 1000000 )) ms after SIGTERM"
BEAMD_PID=
check "bridge beam0" "$(bridge_exists && echo 1 || echo 0)" "$(bridge_exists && echo present || echo gone)"
tb=$(tables | wc -l)
check "nft tables inet/bridge beam" "$([ "$tb" = 0 ] && echo 0 || echo 1)" "$tb"
fw=$(ip_forward)
check "net.ipv4.ip_forward" "$([ "$fw" = "$FORWARD_BEFORE" ] && echo 0 || echo 1)" "$fw (was $FORWARD_BEFORE)"
m=$(mounts_here)
check "mounts under the temp dir" "$([ "$m" = 0 ] && echo 0 || echo 1)" "$m"
[ "$FAILED" = 0 ] && echo "soak: PASS" || echo "soak: FAIL"
exit "$FAILED"
