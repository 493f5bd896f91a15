#!/usr/bin/env bash
# Run a command as root inside a VM booted from Debian's 6.1 kernel: pure cgroup v2, all controllers.
#
#   tests/vm/run.sh CMD [ARG...]
#
# virtme-ng boots the kernel under QEMU (TCG: nested KVM hangs on our hosts) with the host's root shared
# read-only (/tmp, /var, /etc… get a throw-away overlay), so host-built binaries run as they are. The
# command runs in the current directory; its output is printed and its exit status becomes ours
# (vng does not propagate it: the guest writes it into a shared read-write dir).
#
# Installs what it lacks (idempotent): qemu-system-x86 and kmod (apt), virtme-ng (pip), and the newest
# linux-image-6.1.0-N-amd64-unsigned, unpacked into $BEAM_VM_CACHE.
#
# Environment:
#   BEAM_VM_CACHE    kernel cache (default /var/cache/beam-vm)
#   BEAM_VM_KERNEL   a vmlinuz to boot instead (its modules must sit at ../lib/modules/<version>)
#   BEAM_VM_MEMORY   guest memory (default 2G)     BEAM_VM_CPUS  guest CPUs (default 2)
#   BEAM_VM_TIMEOUT  seconds for boot + command (default 1800)
#   BEAM_VM_VERBOSE  1: stream the guest console (kernel log included) instead of the command's output
#   BEAM_VM_OUT      a host dir the guest may write to (results to keep); everything else is read-only
#   RUST_LOG, RUST_BACKTRACE, RUST_TEST_THREADS are passed into the guest.
set -euo pipefail

die() { echo "tests/vm/run.sh: $*" >&2; exit 125; }
[ $# -ge 1 ] || die "usage: tests/vm/run.sh CMD [ARG...]"
[ "$(id -u)" = 0 ] || die "run as root (apt-get, and the command runs as root in the guest)"

CACHE=${BEAM_VM_CACHE:-/var/cache/beam-vm}
MEMORY=${BEAM_VM_MEMORY:-2G}
CPUS=${BEAM_VM_CPUS:-2}
TIMEOUT=${BEAM_VM_TIMEOUT:-1800}

apt_lists_present() { compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }
apt_install() {
    apt_lists_present || apt-get update -q >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; then
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
    fi
}

# --- tools ---
command -v qemu-system-x86_64 >/dev/null || apt_install qemu-system-x86
command -v modprobe >/dev/null || apt_install kmod
SCRIPTS=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
VNG=$(command -v vng || true)
[ -n "$VNG" ] || VNG="$SCRIPTS/vng"
if [ ! -x "$VNG" ]; then
    python3 -m pip install -q virtme-ng >&2
    VNG="$SCRIPTS/vng"
    [ -x "$VNG" ] || die "virtme-ng installed but no vng in $SCRIPTS"
fi

# --- kernel ---
newest_cached() { compgen -G "$CACHE/root/boot/vmlinuz-6.1.0-*-amd64" | sort -V | tail -n1; }
KERNEL=${BEAM_VM_KERNEL:-$(newest_cached || true)}
if [ -z "$KERNEL" ]; then
    find_pkg() { apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' | awk '{print $1}' | sort -V | tail -n1; }
    apt_lists_present || apt-get update -q >&2
    PKG=$(find_pkg)
    if [ -z "$PKG" ]; then apt-get update -q >&2; PKG=$(find_pkg); fi
    [ -n "$PKG" ] || die "no linux-image-6.1.0-*-amd64-unsigned package in the apt sources"
    mkdir -p "$CACHE/debs"
    echo "tests/vm/run.sh: fetching $PKG into $CACHE" >&2
    (cd "$CACHE/debs" && apt-get download -q "$PKG" >&2)
    dpkg -x "$(ls -t "$CACHE"/debs/"$PKG"_*.deb | head -n1)" "$CACHE/root"
    rm -f "$CACHE"/debs/*.deb
    KERNEL=$(newest_cached)
fi
[ -f "$KERNEL" ] || die "kernel $KERNEL not found"
# The guest sees the host's /lib/modules (and a throw-away /var), not this kernel's modules: copy the few
# the tests load (BEAM_VM_MODULES) with their dependencies under target/, where the guest can
# `modprobe -d "$BEAM_VM_MODROOT" loop` (e.g. to loop-mount an ext4 that supports idmapped layers).
MODROOT=$(dirname "$(dirname "$KERNEL")")
KVER=${KERNEL##*/vmlinuz-}
GUESTMOD=$PWD/target/vm-modules
if [ -d "$MODROOT/lib/modules/$KVER" ]; then
    [ -s "$MODROOT/lib/modules/$KVER/modules.dep" ] || depmod -b "$MODROOT" "$KVER"
    for m in ${BEAM_VM_MODULES:-loop ext4}; do
        modprobe -d "$MODROOT" -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}' |
            while read -r ko; do
                rel=${ko#"$MODROOT"/}
                mkdir -p "$GUESTMOD/$(dirname "$rel")"
                cp -u "$ko" "$GUESTMOD/$rel"
            done
    done
    cp -u "$MODROOT/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo} "$GUESTMOD/lib/modules/$KVER/" 2>/dev/null || true
    depmod -b "$GUESTMOD" "$KVER" || echo "tests/vm/run.sh: depmod failed; modules won't load in the guest" >&2
fi

# --- guest script ---
RW=$(mktemp -d /tmp/beam-vm.XXXXXX)
trap 'rm -rf "$RW"' EXIT
{
    echo '#!/bin/bash'
    echo 'grep -qs "^cgroup2 /sys/fs/cgroup cgroup2" /proc/mounts || mount -t cgroup2 cgroup2 /sys/fs/cgroup'
    printf 'export BEAM_VM_MODROOT=%q\n' "$GUESTMOD"
    for v in RUST_LOG RUST_BACKTRACE RUST_TEST_THREADS; do
        [ -z "${!v:-}" ] || printf 'export %s=%q\n' "$v" "${!v}"
    done
    printf 'cd %q || exit 126\n' "$PWD"
    printf '%q ' "$@"
    if [ "${BEAM_VM_VERBOSE:-0}" = 1 ]; then
        printf '2>&1 | tee %q/out\n' "$RW"
        echo "echo \${PIPESTATUS[0]} > $RW/status"
    else
        printf '> %q/out 2>&1\n' "$RW"
        echo "echo \$? > $RW/status"
    fi
} > "$RW/guest.sh"
chmod +x "$RW/guest.sh"

# --- boot ---
echo "tests/vm/run.sh: booting $(basename "$KERNEL") (TCG, $CPUS CPUs, $MEMORY): $*" >&2
START=$(date +%s%N)
VNG_ARGS=(--run "$KERNEL" --disable-kvm --verbose --cpus "$CPUS" --memory "$MEMORY" --rwdir "$RW" --exec "$RW/guest.sh")
if [ -n "${BEAM_VM_OUT:-}" ]; then
    mkdir -p "$BEAM_VM_OUT"
    VNG_ARGS=(--rwdir "$BEAM_VM_OUT" "${VNG_ARGS[@]}")
fi
if [ "${BEAM_VM_VERBOSE:-0}" = 1 ]; then
    timeout "$TIMEOUT" "$VNG" "${VNG_ARGS[@]}" </dev/null 2>&1 | tee "$RW/console.log" || true
else
    timeout "$TIMEOUT" "$VNG" "${VNG_ARGS[@]}" </dev/null >"$RW/console.log" 2>&1 || true
    [ -f "$RW/out" ] && cat "$RW/out"
fi
MS=$((($(date +%s%N) - START) / 1000000))
ELAPSED=$((MS / 1000)).$(printf %03d $((MS % 1000)))

if [ ! -s "$RW/status" ]; then
    echo "tests/vm/run.sh: the command did not finish in the VM (timeout ${TIMEOUT}s?); console tail:" >&2
    tail -n 40 "$RW/console.log" >&2
    exit 125
fi
STATUS=$(cat "$RW/status")
echo "tests/vm/run.sh: exit status $STATUS after ${ELAPSED}s (boot + command)" >&2
exit "$STATUS"
