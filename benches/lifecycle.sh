#!/usr/bin/env bash
# benches/lifecycle.sh — container lifecycle latency: beam-oci beside runc and crun, one hyperfine run,
# the same busybox bundle, the same unshare wrapper.
#
# Usage (root):   cargo build --release && sudo benches/lifecycle.sh
# Env knobs:      RUNS (default 100), WARMUP (default 5), BEAM (default target/release/beam-oci),
#                 KEEP_JSON=path (copy hyperfine's JSON there)
#
# What is measured (hyperfine -N, so no shell is spawned around the command):
#   run         `<rt> --root R run --bundle B <id>` of /bin/true (the runtime deletes the container on exit)
#   c+s+d       one tiny sh script doing `<rt> create`, `<rt> start`, `<rt> delete --force`
#   baselines   `unshare -p -f -m -u -i -n true` (five namespaces + fork, no runtime at all), the unshare
#               wrapper on its own, and beam-oci/runc `run` without the wrapper (to show the wrapper's cost).
#
# Why the wrapper: crun 1.8 refuses this hybrid-cgroup host (v1 controllers + cgroup2 at
# /sys/fs/cgroup/unified) unless it sees an empty /sys/fs/cgroup/unified/cgroup.controllers. We give it one
# only inside a private mount namespace:
#     unshare -m --propagation private  ns-wrap  <rt> …    where ns-wrap = bind empty file ; exec "$@"
# and, to keep the comparison fair, beam-oci and runc go through exactly the same wrapper. The host's mount
# table is checked before and after (the bind must never show there).
#
# A fixed container id per (runtime, scenario) is used; hyperfine's --prepare deletes it (--force) before
# every timed iteration, so a failed iteration can never poison the next one, and the prepare time is not
# counted. Everything the script makes (containers, state roots, the bundle, cgroups named after its ids)
# is removed on exit, even on failure.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "lifecycle.sh: needs root" >&2; exit 1; }
for t in hyperfine runc crun unshare python3; do
    command -v "$t" >/dev/null || { echo "lifecycle.sh: $t not installed" >&2; exit 1; }
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
BEAM=${BEAM:-$REPO/target/release/beam-oci}
[ -x "$BEAM" ] || { echo "lifecycle.sh: $BEAM missing: run cargo build --release" >&2; exit 1; }
BEAM=$(readlink -f "$BEAM")
RUNC=$(command -v runc)
CRUN=$(command -v crun)
BUSYBOX=${BUSYBOX:-/bin/busybox}
RUNS=${RUNS:-100}
WARMUP=${WARMUP:-5}

T=$(mktemp -d /tmp/beam-bench.XXXXXX)
TAG="bb$$"           # every container id starts with this; cgroups are found and checked by it
declare -A ROOT=([beam]="$T/root-beam" [runc]="$T/root-runc" [crun]="$T/root-crun")
declare -A BIN=([beam]="$BEAM" [runc]="$RUNC" [crun]="$CRUN")

host_binds() { grep -c 'cgroup.controllers' /proc/self/mountinfo || true; }
BINDS_BEFORE=$(host_binds)

cleanup() {
    local rc=$?
    set +e
    for rt in beam runc crun; do
        for sfx in run raw cs; do
            "$T/wrap" "${BIN[$rt]}" --root "${ROOT[$rt]}" delete --force "$TAG-$rt-$sfx" >/dev/null 2>&1
        done
    done
    # cgroups named after our ids (runc: /<ctrl>/<id>, beam: /<ctrl>/beam/<id>, crun: wherever it put them)
    local left
    left=$(find /sys/fs/cgroup -maxdepth 4 -type d -name "$TAG-*" 2>/dev/null | sort -r)
    if [ -n "$left" ]; then
        echo "lifecycle.sh: WARNING: leftover cgroups, removing:" >&2
        echo "$left" >&2
        echo "$left" | while read -r d; do rmdir "$d" 2>/dev/null; done
    fi
    rm -rf "$T"
    if [ "$(host_binds)" != "$BINDS_BEFORE" ]; then
        echo "lifecycle.sh: ERROR: the host mount table changed (cgroup.controllers bind leaked)" >&2
        rc=1
    fi
    exit $rc
}
trap cleanup EXIT INT TERM

# --- the bundle -------------------------------------------------------------------------------------------
B="$T/bundle"
mkdir -p "$B/rootfs/bin" "$B/rootfs/proc" "$B/rootfs/dev" "$B/rootfs/sys" "$B/rootfs/tmp" "$B/rootfs/etc"
cp "$BUSYBOX" "$B/rootfs/bin/busybox"
"$B/rootfs/bin/busybox" --install -s "$B/rootfs/bin"
# --install -s makes absolute links to the host path of the binary: make them relative
for f in "$B"/rootfs/bin/*; do [ -L "$f" ] && ln -sfn busybox "$f"; done
if ! (cd "$B" && "$BEAM" spec) 2>"$T/spec.err"; then
    echo "lifecycle.sh: WARNING: 'beam-oci spec' failed ($(head -c 300 "$T/spec.err" | tr '\n' ' ')); using 'runc spec'" >&2
    rm -f "$B/config.json"
    "$RUNC" spec --bundle "$B"
fi
python3 - "$B/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
# crun 1.8 rejects ociVersion 1.2.x ("unknown version specified"); nothing here needs more than 1.0.
c["ociVersion"] = "1.0.2"
json.dump(c, open(p, "w"), indent=2)
PY

# --- helper scripts ---------------------------------------------------------------------------------------
: > "$T/empty"
cat > "$T/ns-wrap" <<W
#!/bin/sh
# runs inside 'unshare -m --propagation private' (util-linux makes / rprivate there, like
# 'mount --make-rprivate /'), then hides the unified hierarchy's controllers from crun's hybrid check
mount --bind $T/empty /sys/fs/cgroup/unified/cgroup.controllers && exec "\$@"
W
cat > "$T/wrap" <<W
#!/bin/sh
exec unshare -m --propagation private $T/ns-wrap "\$@"
W
cat > "$T/csd" <<'W'
#!/bin/sh
# csd <runtime> <root> <bundle> <id>: create, start, delete --force
rt=$1 root=$2 b=$3 id=$4
"$rt" --root "$root" create --bundle "$b" "$id" && "$rt" --root "$root" start "$id" &&
    exec "$rt" --root "$root" delete --force "$id"
W
cat > "$T/del" <<'W'
#!/bin/sh
# del <cmd…>: run it quietly and always succeed (hyperfine --prepare: the id usually does not exist)
"$@" >/dev/null 2>&1
exit 0
W
chmod +x "$T/ns-wrap" "$T/wrap" "$T/csd" "$T/del"

# the wrapper must leave the host untouched and actually show crun an empty file
inside=$("$T/wrap" sh -c 'wc -c < /sys/fs/cgroup/unified/cgroup.controllers')
[ "$inside" = 0 ] || { echo "lifecycle.sh: wrapper did not hide cgroup.controllers" >&2; exit 1; }
[ "$(host_binds)" = "$BINDS_BEFORE" ] || { echo "lifecycle.sh: wrapper leaked a mount into the host" >&2; exit 1; }

# sanity: every runtime can run the bundle once (so hyperfine does not abort half-way with a cryptic error)
for rt in beam runc crun; do
    if ! out=$("$T/wrap" "${BIN[$rt]}" --root "${ROOT[$rt]}" run --bundle "$B" "$TAG-$rt-run" </dev/null 2>&1); then
        echo "lifecycle.sh: $rt run failed: $out" >&2
        exit 1
    fi
done

# --- measure ----------------------------------------------------------------------------------------------
echo "# lifecycle bench: $(date -u +%FT%TZ), $(nproc) cores, kernel $(uname -r)"
echo "# beam-oci=$BEAM  runc=$($RUNC --version | head -1)  crun=$($CRUN --version | head -1)"
echo "# all rows marked [ns] run as 'unshare -m --propagation private ns-wrap <cmd>' (private mount ns +"
echo "#   an empty file bound over /sys/fs/cgroup/unified/cgroup.controllers, which crun needs on this hybrid host)"
echo

args=(-N --warmup "$WARMUP" --runs "$RUNS" --export-json "$T/h.json" --export-markdown "$T/h.md" --style basic)
for rt in beam crun runc; do
    id="$TAG-$rt-run"
    args+=(-n "$rt run [ns]"
        --prepare "$T/wrap $T/del ${BIN[$rt]} --root ${ROOT[$rt]} delete --force $id"
        "$T/wrap ${BIN[$rt]} --root ${ROOT[$rt]} run --bundle $B $id")
done
for rt in beam crun runc; do
    id="$TAG-$rt-cs"
    args+=(-n "$rt create+start+delete [ns]"
        --prepare "$T/wrap $T/del ${BIN[$rt]} --root ${ROOT[$rt]} delete --force $id"
        "$T/wrap $T/csd ${BIN[$rt]} ${ROOT[$rt]} $B $id")
done
for rt in beam runc; do
    id="$TAG-$rt-raw"
    args+=(-n "$rt run (no wrapper)"
        --prepare "$T/del ${BIN[$rt]} --root ${ROOT[$rt]} delete --force $id"
        "${BIN[$rt]} --root ${ROOT[$rt]} run --bundle $B $id")
done
args+=(-n "baseline: unshare -p -f -m -u -i -n true" --prepare true "unshare -p -f -m -u -i -n true")
args+=(-n "baseline: the [ns] wrapper alone (true)" --prepare true "$T/wrap true")

hyperfine "${args[@]}" </dev/null

echo
cat "$T/h.md"
echo
python3 - "$T/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = lambda k: r[k]["median"] * 1000
print("medians (ms):")
for k, x in r.items():
    print(f"  {k:44s} {med(k):8.2f}   (mean {x['mean']*1000:.2f} ± {x['stddev']*1000:.2f})")
print()
for what in ["run [ns]", "create+start+delete [ns]"]:
    b, c, u = med(f"beam {what}"), med(f"crun {what}"), med(f"runc {what}")
    print(f"{what:26s} beam/crun = {b/c:.2f}   beam/runc = {b/u:.2f}   (target beam/crun <= 0.80: "
          f"{'met' if b/c <= 0.80 else 'NOT met'})")
# The v1 cgroup attach is bimodal (an RCU grace period or not; see docs/performance.md), which makes the
# median jump between runs of this script; the lower quartile is a steadier view of the "fast" mode.
def p25(k):
    t = sorted(r[k]["times"]); return t[len(t) // 4] * 1000
print("\nlower quartiles (ms):", ", ".join(f"{rt} run {p25(f'{rt} run [ns]'):.2f}" for rt in ("beam", "crun", "runc")))
for what in ["run [ns]", "create+start+delete [ns]"]:
    b, c, u = (p25(f"{rt} {what}") for rt in ("beam", "crun", "runc"))
    print(f"  p25 {what:22s} beam/crun = {b/c:.2f}   beam/runc = {b/u:.2f}")
w = med("baseline: the [ns] wrapper alone (true)")
print(f"\nwrapper overhead ≈ {w:.2f} ms (included equally in every [ns] row); net of it:")
for what in ["run [ns]", "create+start+delete [ns]"]:
    b, c, u = (med(f"{rt} {what}") - w for rt in ("beam", "crun", "runc"))
    print(f"  {what:26s} beam/crun = {b/c:.2f}   beam/runc = {b/u:.2f}")
PY
[ -n "${KEEP_JSON:-}" ] && cp "$T/h.json" "$KEEP_JSON"
exit 0
