#!/usr/bin/env bash
# The pure cgroup v2 path: build the test binaries here, run them as root in a Debian 6.1 VM
# (tests/vm/run.sh), where /sys/fs/cgroup is cgroup2 with every controller.
#
#   tests/vm/cgroup-v2.sh [EXTRA TEST ARGS...]      e.g. tests/vm/cgroup-v2.sh --nocapture
#
# BEAM_TEST_BIN=path skips the build and runs that lib test binary instead.
# To add a suite, append a command to GUEST below (one boot runs them all; the first failure fails the run).
set -euo pipefail
cd "$(dirname "$0")/../.."

# Test executables from cargo's JSON messages: `test_bins --lib` or `test_bins --test NAME`.
test_bins() {
    cargo test "$@" --no-run --message-format=json-render-diagnostics |
        python3 -c '
import json, sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])'
}

BIN=${BEAM_TEST_BIN:-$(test_bins --lib | tail -n1)}
[ -x "$BIN" ] || { echo "cgroup-v2.sh: no lib test binary (build failed?)" >&2; exit 1; }
# beam-oci end to end (the binary path is compiled into the test executable).
OCI=$(test_bins --test oci_runtime | tail -n1)
[ -x "$OCI" ] || { echo "cgroup-v2.sh: no oci_runtime test binary (build failed?)" >&2; exit 1; }

# containerd's runc v2 shim driving beam-oci (ctr) and the kubelet's CRI calls, on the v2 kernel.
CTRD=$(test_bins --test containerd | tail -n1)
[ -x "$CTRD" ] || { echo "cgroup-v2.sh: no containerd test binary (build failed?)" >&2; exit 1; }
CRI=$(test_bins --test cri | tail -n1)
[ -x "$CRI" ] || { echo "cgroup-v2.sh: no cri test binary (build failed?)" >&2; exit 1; }

# beamd end to end (sandboxes: user namespaces, idmapped layers, CLONE_INTO_CGROUP, v2 limits).
BEAMD=$(test_bins --test beamd_api | tail -n1)
[ -x "$BEAMD" ] || { echo "cgroup-v2.sh: no beamd_api test binary (build failed?)" >&2; exit 1; }
# beam-oci checkpoint/restore through CRIU (tests/checkpoint.rs): the guest's first criu on PATH is Debian's
# 3.17, which works on 6.1. CRIU needs what the guest can't autoload: the sock_diag modules to collect a
# netns's sockets, nf_tables for iptables-save/-restore (its network dump and lock; the lock's rules need
# xt_mark through nft_compat) and nf_conntrack_netlink to dump conntrack entries (without it: -EINVAL).
CKPT=$(test_bins --test checkpoint | tail -n1)
[ -x "$CKPT" ] || { echo "cgroup-v2.sh: no checkpoint test binary (build failed?)" >&2; exit 1; }
CKPTMODS="unix_diag inet_diag tcp_diag udp_diag netlink_diag raw_diag af_packet_diag nf_conntrack_netlink nft_compat xt_mark"
# Filesystem snapshots (the v2 freezer, the upper dir of an idmapped overlay on 6.1).
SNAP=$(test_bins --test beamd_snapshot | tail -n1)
[ -x "$SNAP" ] || { echo "cgroup-v2.sh: no beamd_snapshot test binary (build failed?)" >&2; exit 1; }
# beamd's bridge networking (veth, bridge, nftables NAT and policy) on another kernel than the host's.
NET=$(test_bins --test beamd_net | tail -n1)
[ -x "$NET" ] || { echo "cgroup-v2.sh: no beamd_net test binary (build failed?)" >&2; exit 1; }
# Modules run.sh copies for the guest (the guest can't autoload: its /lib/modules is the host's).
NETMODS="nf_tables nft_chain_nat nft_masq nft_ct nft_meta_bridge bridge veth"
export BEAM_VM_MODULES="loop ext4 $NETMODS $CKPTMODS"

# The OCI validation suite in the VM (scripts/conformance.sh; built here, run there) only with
# BEAM_CONFORMANCE_VM=1, for docs/conformance.md, and not as a CI gate: under TCG a suite test takes 20-300 s,
# and the suite's own fixed 5-10 s waits for a container's status then time out ("timeout in waiting for the
# container status"), so its results there say more about the emulator than about the runtime. The host
# stage (scripts/test.sh) runs the whole suite and gates on tests/conformance/expected-pass.txt.
CONF=()
if [ "${BEAM_CONFORMANCE_VM:-}" = 1 ] && bash scripts/conformance.sh build; then
    export BEAM_VM_OUT=$PWD/target/vm-out
    mkdir -p "$BEAM_VM_OUT"
    for rt in target/debug/beam-oci runc crun; do
        CONF+=("TEST_TIMEOUT=600 RTVAL_LOGS=$BEAM_VM_OUT/logs bash scripts/conformance.sh run $rt $BEAM_VM_OUT/vm-$(basename $rt).tsv${BEAM_CONFORMANCE_FILTER:+ '$BEAM_CONFORMANCE_FILTER'}")
    done
fi

q() { printf '%q ' "$@"; }
# Every test binary runs with --include-ignored: the kernel tests are #[ignore = "needs root"], so without it
# each suite would run only its few root-free tests and still report ok.
GUEST=(
    "echo '== cgroup unit + kernel tests (pure v2)'"
    "$(q "$BIN" runtime::cgroups --test-threads=2 --include-ignored "$@")"
    "echo '== beam-oci end to end (pure v2)'"
    "$(q "$OCI" --test-threads=2 --include-ignored "$@")"
    "echo '== beamd sandboxes end to end (pure v2)'"
    # The guest's /tmp is tmpfs/9p, which 6.1 can't idmap: put the state on a loop-mounted ext4.
    "modprobe -d \"\$BEAM_VM_MODROOT\" loop && modprobe -d \"\$BEAM_VM_MODROOT\" ext4 && truncate -s 1G /tmp/beam-ext4.img && mkfs.ext4 -q -F /tmp/beam-ext4.img"
    "mkdir -p /tmp/beam-ext4 && mount -o loop /tmp/beam-ext4.img /tmp/beam-ext4"
    "TMPDIR=/tmp/beam-ext4 $(q "$BEAMD" --test-threads=2 --include-ignored "$@")"
    "TMPDIR=/tmp/beam-ext4 $(q "$SNAP" --test-threads=2 --include-ignored "$@")"
    "echo '== containerd + CRI on beam-oci (pure v2)'"
    # On ext4 too: containerd's overlay snapshots can't have their upper on the guest's overlay /tmp.
    "TMPDIR=/tmp/beam-ext4 $(q "$CTRD" --test-threads=2 --include-ignored "$@")"
    "TMPDIR=/tmp/beam-ext4 $(q "$CRI" --test-threads=2 --include-ignored "$@")"
    "echo '== beamd bridge networking (6.1 kernel, pure v2)'"
    "modprobe -d \"\$BEAM_VM_MODROOT\" -a $NETMODS"
    "TMPDIR=/tmp/beam-ext4 $(q "$NET" --test-threads=2 --include-ignored "$@")"
    "echo '== beam-oci checkpoint/restore through CRIU (pure v2)'; criu --version"
    "modprobe -d \"\$BEAM_VM_MODROOT\" -a $CKPTMODS"
    "TMPDIR=/tmp/beam-ext4 $(q "$CKPT" --test-threads=2 --include-ignored "$@")"
    "${CONF[@]}"
)
SCRIPT=$(printf '%s && ' "${GUEST[@]}")
exec tests/vm/run.sh bash -c "set -o pipefail; ${SCRIPT}true"
