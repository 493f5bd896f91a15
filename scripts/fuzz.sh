#!/usr/bin/env bash
# scripts/fuzz.sh — run the cargo-fuzz targets in fuzz/, one at a time, on one core each (not part of CI).
#
# Usage (root: layer_unpack and files_api chown and mknod):
#   sudo scripts/fuzz.sh TARGET|all|new [SECONDS]      # SECONDS per target, default 600
#   sudo scripts/fuzz.sh list
# `new` = the file-system and API targets (layer_unpack bundle_config api_requests files_api); `all` = every
# target in fuzz/Cargo.toml. Env: FUZZ_ARGS (more libFuzzer flags), NO_BUILD=1, BEAM_FUZZ_TMP (scratch
# dirs, default /dev/shm), NICE (default 10).
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain. Builds with `cargo +nightly fuzz
# build` (address sanitizer, release, the fuzz crate's own target dir fuzz/target), then runs each binary
# directly with `-jobs=1 -workers=1` (one fuzzing process), a 10 s per-input timeout (a hang is a finding),
# a 2 GiB RSS limit, the target's dictionary (fuzz/dicts) and corpus (fuzz/corpus/<target>, seeded by
# fuzz/seeds.py when empty), LeakSanitizer suppressions from fuzz/lsan.supp. Crashes land in
# fuzz/artifacts/<target>/; logs in fuzz/target/fuzz-logs/<target>-<time>.log.
# Prints per target: runs, seconds, execs/s, corpus size, crashes; exits 1 if any target crashed.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
FUZZ=$REPO/fuzz
cd "$FUZZ"

targets_all() { sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^beam-fuzz$'; }
NEW="layer_unpack bundle_config api_requests files_api"

what=${1:-}
secs=${2:-600}
case "$what" in
    "" | -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    list) targets_all; exit 0 ;;
    all) targets=$(targets_all) ;;
    new) targets=$NEW ;;
    *) targets_all | grep -qx "$what" || { echo "fuzz.sh: no target $what (scripts/fuzz.sh list)" >&2; exit 2; }
       targets=$what ;;
esac
[[ $secs =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a number" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "fuzz.sh: run as root (the unpack and files targets chown and mknod)" >&2; exit 1; }
cargo +nightly fuzz --version >/dev/null 2>&1 || { echo "fuzz.sh: cargo-fuzz missing: cargo install cargo-fuzz" >&2; exit 1; }

triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir=$FUZZ/target/$triple/release
mkdir -p "$FUZZ/target/fuzz-logs"
if [ -z "${NO_BUILD:-}" ]; then
    for t in $targets; do
        echo "==> building $t" >&2
        nice -n "${NICE:-10}" cargo +nightly fuzz build -O "$t" >&2
    done
fi

failed=0
summary=()
for t in $targets; do
    corpus=$FUZZ/corpus/$t
    artifacts=$FUZZ/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    if [ -z "$(ls -A "$corpus")" ] && [ -f "$FUZZ/seeds.py" ]; then
        python3 "$FUZZ/seeds.py" "$FUZZ/corpus" "$t"
    fi
    dict=()
    [ -f "$FUZZ/dicts/$t.dict" ] && dict=(-dict="$FUZZ/dicts/$t.dict")
    crashes_before=$(find "$artifacts" -type f | wc -l)
    log=$FUZZ/target/fuzz-logs/$t-$(date -u +%Y%m%dT%H%M%SZ).log
    echo "==> $t for ${secs}s (log $log)" >&2
    start=$(date +%s)
    # -jobs=1 makes libFuzzer run the fuzzing process as a child that writes fuzz-0.log in the cwd: run it
    # in a scratch dir and keep that log.
    work=$(mktemp -d /tmp/beam-fuzz-run.XXXXXX)
    rc=0
    (cd "$work" && LSAN_OPTIONS="suppressions=$FUZZ/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}" nice -n "${NICE:-10}" "$bin_dir/$t" -jobs=1 -workers=1 -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" ${FUZZ_ARGS:-} \
        "$corpus") >"$log.driver" 2>&1 || rc=$?
    cat "$work"/fuzz-*.log >"$log" 2>/dev/null || true
    cat "$log.driver" >>"$log"
    rm -rf "$work" "$log.driver" "${BEAM_FUZZ_TMP:-/dev/shm}/beam-fuzz-$t" "/tmp/beam-fuzz-$t"
    elapsed=$(( $(date +%s) - start ))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    crashes=$(( $(find "$artifacts" -type f | wc -l) - crashes_before ))
    size=$(find "$corpus" -type f | wc -l)
    rate=$(( ${runs:-0} / (elapsed > 0 ? elapsed : 1) ))
    line=$(printf '%-16s runs=%-10s secs=%-5s execs/s=%-7s corpus=%-6s new_artifacts=%s rc=%s' \
        "$t" "${runs:-?}" "$elapsed" "$rate" "$size" "$crashes" "$rc")
    summary+=("$line")
    echo "$line" >&2
    if [ "$crashes" -gt 0 ] || [ "$rc" -ne 0 ]; then
        failed=1
        grep -m5 -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" >&2 || true
    fi
done
printf '%s\n' "${summary[@]}"
exit $failed
