#!/usr/bin/env bash
# The OCI runtime-tools validation suite (from ../shared/conformance) against beam-oci, runc or crun.
#
#   scripts/conformance.sh run RUNTIME OUT.tsv [FILTER]   run the suite; per-test results into OUT.tsv
#   scripts/conformance.sh check OUT.tsv [EXPECTED]       fail when a test in EXPECTED (default
#                                                         tests/conformance/expected-pass.txt) did not pass
#   scripts/conformance.sh doc                            docs/conformance.md from tests/conformance/results/*.tsv
#   scripts/conformance.sh build                          only build the suite (Go, ~15 s)
#
# The suite is built once into target/rtval (golang-go, make, jq from Debian). Its runner puts every test
# in a private mount namespace and the suite's cgroups under /rtval, so nothing reaches the host.
# Environment: BEAM_SHARED (default ../shared beside the repo), RTVAL_BUILD (default target/rtval),
# HIDE_HYBRID=1 for crun on a hybrid host (see ../shared/conformance/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SHARED=${BEAM_SHARED:-$(cd .. && pwd)/shared}
KIT=$SHARED/conformance
BUILD=${RTVAL_BUILD:-$REPO/target/rtval}
SUITE=$BUILD/runtime-tools
EXPECTED_DEFAULT=tests/conformance/expected-pass.txt

die() { echo "conformance.sh: $*" >&2; exit 2; }

build() {
    [ -d "$KIT" ] || die "no conformance kit at $KIT; set BEAM_SHARED to the folder that holds conformance/"
    if [ -x "$SUITE/runtimetest" ] && [ -x "$SUITE/validation/default/default.t" ]; then return; fi
    command -v go >/dev/null && command -v make >/dev/null && command -v jq >/dev/null ||
        die "the suite needs golang-go, make and jq: apt-get install -y golang-go make jq (scripts/deps.sh --test does)"
    rm -rf "$BUILD" && mkdir -p "$BUILD"
    tar -C "$BUILD" -xzf "$KIT"/runtime-tools-*.tar.gz
    echo "==> building the OCI validation suite in $SUITE" >&2
    (cd "$SUITE" && GOFLAGS=-mod=vendor GOCACHE="$BUILD/gocache" make runtimetest validation-executables >/dev/null)
}

run() {
    local rt=$1 out=$2 filter=${3:-}
    build
    # Per-test TAP and stderr stay here for diagnosis.
    local res
    res=$(realpath -m "${RTVAL_LOGS:-${TMPDIR:-/tmp}/beam-conformance}/$(basename "$out" .tsv)")
    rm -rf "$res" && mkdir -p "$res"
    chmod 755 "$(dirname "$res")" "$res" # bundles live below it: user-namespaced containers must reach them
    # The runner's own exit status says whether every test passed; `check` decides what counts.
    RTVAL_DIR=$SUITE RESULTS=$res bash "$KIT/run-validation.sh" "$rt" "$filter" || true
    [ -s "$res/results.tsv" ] || die "the runner wrote no results (see $res)"
    mkdir -p "$(dirname "$out")"
    cp "$res/results.tsv" "$out"
    echo "conformance: results in $out, per-test logs in $res"
}

check() {
    local tsv=$1 expected=${2:-$EXPECTED_DEFAULT} bad=0 t st
    [ -f "$expected" ] || die "no expected-pass list $expected"
    while read -r t; do
        [[ -z "$t" || "$t" == \#* ]] && continue
        st=$(awk -F'\t' -v t="$t" '$1 == t {print $2}' "$tsv")
        if [ "$st" != PASS ] && [ "$st" != SKIP ]; then
            echo "conformance regression: $t passed before and is ${st:-missing} now (see its TAP in the run's log)" >&2
            bad=1
        fi
    done <"$expected"
    local newly
    newly=$(awk -F'\t' 'NR > 1 && ($2 == "PASS" || $2 == "SKIP") {print $1}' "$tsv" | grep -vxFf <(grep -v '^#' "$expected") || true)
    [ -z "$newly" ] || echo "conformance: passing now but not in $expected (add them unless they race; see the notes): $(echo $newly)" >&2
    local pass total
    pass=$(awk -F'\t' 'NR > 1 && ($2 == "PASS" || $2 == "SKIP")' "$tsv" | wc -l)
    total=$(awk -F'\t' 'NR > 1' "$tsv" | wc -l)
    echo "conformance: $pass/$total tests passed; $(grep -cv '^#' "$expected") expected, $([ $bad = 0 ] && echo 'all passed' || echo 'REGRESSIONS above')"
    return $bad
}

doc() {
    python3 - "$REPO" <<'EOF'
import csv, pathlib, sys
repo = pathlib.Path(sys.argv[1])
res = repo / "tests/conformance/results"
cols = [("host", "beam-oci"), ("host", "runc"), ("host", "crun"), ("vm", "beam-oci"), ("vm", "runc"), ("vm", "crun")]
data, tests = {}, []
for where, rt in cols:
    f = res / f"{where}-{rt}.tsv"
    if not f.exists():
        continue
    for row in csv.DictReader(f.open(), delimiter="\t"):
        data[(where, rt, row["test"])] = row["status"]
        if row["test"] not in tests:
            tests.append(row["test"])
notes = {}
nf = repo / "tests/conformance/notes.tsv"
for line in nf.read_text().splitlines():
    if line and not line.startswith("#"):
        t, _, why = line.partition("\t")
        notes[t] = why
present = [c for c in cols if any(k[:2] == c for k in data)]
def total(c):
    got = [data[k] for k in data if k[:2] == c]
    return f"{sum(s in ('PASS', 'SKIP') for s in got)}/{len(got)}"
head = " | ".join(f"{rt} ({'this host' if w == 'host' else 'v2 VM'})" for w, rt in present)
out = [
    "# OCI runtime conformance",
    "",
    "The OCI runtime-tools validation suite (opencontainers/runtime-tools 260e151, the suite runc, crun and",
    "youki check themselves with), run by `scripts/conformance.sh` against beam-oci, runc 1.1.5 and crun 1.8.1",
    "(Debian 12) on this host (kernel 6.18, hybrid cgroups: v1 controllers, cgroup2 holding only hugetlb) and",
    "in the pure cgroup v2 VM (Debian's 6.1 kernel, `tests/vm/run.sh`). Made by `scripts/conformance.sh doc`",
    "from `tests/conformance/results/`. `scripts/test.sh` (CI) runs the whole suite on the host against the",
    "beam-oci it built and fails when a test in `tests/conformance/expected-pass.txt` stops passing. In the VM",
    "it runs only on request (`BEAM_CONFORMANCE_VM=1 tests/vm/cgroup-v2.sh`): under TCG emulation one test takes",
    "20–300 s and the suite's own fixed waits time out, so a VM cell that failed by timeout says little.",
    "A – means the test was not run there. Tests that can pass only by winning a race with the container's",
    "own process (killsig, pidfile, poststart) are not in the expected-pass list.",
    "",
    "| test | " + head + " | why a test fails |",
    "|---|" + "---|" * len(present) + "---|",
]
mark = {"PASS": "pass", "SKIP": "skip", "FAIL": "**fail**", "TIMEOUT": "**timeout**", "ERROR": "**error**"}
for t in sorted(tests):
    cells = [mark.get(data.get((w, rt, t), ""), "–") for w, rt in present]
    out.append(f"| {t} | " + " | ".join(cells) + f" | {notes.get(t, '')} |")
out.append("| **passed** | " + " | ".join(total(c) for c in present) + " | |")
out += ["", "Re-make: `scripts/conformance.sh run target/release/beam-oci tests/conformance/results/host-beam-oci.tsv`",
        "(likewise `runc`, and `HIDE_HYBRID=1 … crun` here), the VM columns with `BEAM_CONFORMANCE_VM=1 tests/vm/cgroup-v2.sh`,",
        "then `scripts/conformance.sh doc`.", ""]
(repo / "docs/conformance.md").write_text("\n".join(out))
print("wrote docs/conformance.md")
EOF
}

case "${1:-}" in
    build) build ;;
    run) [ $# -ge 3 ] || die "usage: conformance.sh run RUNTIME OUT.tsv [FILTER]"; run "$2" "$3" "${4:-}" ;;
    check) [ $# -ge 2 ] || die "usage: conformance.sh check OUT.tsv [EXPECTED]"; check "$2" "${3:-}" ;;
    doc) doc ;;
    *) die "usage: conformance.sh build | run RUNTIME OUT.tsv [FILTER] | check OUT.tsv [EXPECTED] | doc" ;;
esac
