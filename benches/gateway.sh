#!/usr/bin/env bash
# benches/gateway.sh — beamd's gateway under wrk, beside the same sandbox reached straight and through nginx.
#
# Usage (root):   sudo benches/gateway.sh
# Env knobs:      ROUNDS (default 3), DURATION (wrk -d, default 10s), THREADS (wrk -t, default 2),
#                 CONNS (wrk -c, default 32), WARMUP (default 2s per target before the first round),
#                 SERIAL (default 5s: the -t1 -c1 run per target and round),
#                 SBX_CPU (the sandbox's `cpu` limit; default: beam's default, 1 core),
#                 NO_BUILD=1 (use the binaries already in target/release)
#
# Setup: a network namespace of our own (held by `unshare --net sleep infinity`) stands in for the host's
# network: a release beamd with its own temp --root/--run-dir runs with `--network bridge --network-netns
# /proc/<pid>/ns/net`, so beam0 and the `inet beam` table live in that namespace, never the real host's.
# The gateway listens on 127.0.0.1:<free port> in the real host's namespace. One busybox sandbox serves a
# 1 KiB file (/tmp/www/1k.txt) with `httpd -f -p 8080`. In every round, with the same wrk settings,
# /1k.txt is fetched:
#   gateway (path)   http://127.0.0.1:<gw>/sandbox/<id>/8080/1k.txt          (host namespace)
#   gateway (host)   http://127.0.0.1:<gw>/1k.txt -H 'Host: <id>-8080.localhost'   (host namespace)
#   direct           http://<sandbox ip>:8080/1k.txt                           (wrk in the test namespace)
#   nginx            http://127.0.0.1:<port>/1k.txt, nginx proxy_pass to <sandbox ip>:8080 with upstream
#                    keepalive, worker_processes 2, access_log off             (nginx + wrk in the test namespace)
# Each round then fetches it again with `wrk -t1 -c1` (one request at a time: the added latency without
# queueing). The order of the four rotates from round to round. busybox httpd answers every request with
# `Connection: close`, so every request is a new TCP connection to the sandbox for all four (wrk reconnects
# for `direct`; the gateway and nginx keep wrk's connection and dial upstream anew each time). wrk's latency
# starts when it writes a request, after its connect: `direct` rows leave out the TCP handshake that the
# proxies' rows include (their upstream connect).
#
# Also printed for each loaded run: CPU µs per request (all cores from /proc/stat, beamd's process, nginx's
# master + workers, the sandbox's cgroup), the sandbox's CFS throttled time (its cpu limit, 1 core by
# default, capping the server) and listen-queue overflows in the sandbox (busybox httpd listens with a
# backlog of 9; an overflow costs the client a 1 s SYN retransmission: the ≈1 s p99 of the proxied rows).
# The test namespace gets net.ipv4.tcp_tw_reuse=1 (see below).
#
# Cleanup (trap, even on failure): the sandbox deleted, beamd stopped, nginx and the namespace's holder killed
# (by the pids we started), the temp dir removed; then the real host is checked: no beam0, no `beam` nft
# table, no mounts under the temp dir, no cgroup of a sandbox this beamd made.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "gateway.sh: needs root" >&2; exit 1; }

need_pkgs=()
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v nginx >/dev/null || need_pkgs+=(nginx-light)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    # Don't let the package start a system nginx on port 80 (Debian's policy-rc.d convention).
    made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
    fi
    installed=1
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >&2; then
        apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >&2 || installed=
    fi
    if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
    [ -n "$installed" ] || { echo "gateway.sh: could not install ${need_pkgs[*]}" >&2; exit 1; }
fi
for t in wrk nginx unshare nsenter nft ip curl jq python3 cargo; do
    command -v "$t" >/dev/null || { echo "gateway.sh: $t not installed" >&2; exit 1; }
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2s}
SERIAL=${SERIAL:-5s}
WRK=(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency)

if [ -z "${NO_BUILD:-}" ]; then
    (cd "$REPO" && cargo build --release --bin beamd --bin beam) >&2
fi
BEAMD=$REPO/target/release/beamd
[ -x "$BEAMD" ] || { echo "gateway.sh: $BEAMD missing" >&2; exit 1; }

host_beam() { { ip -o link show beam0 2>/dev/null | wc -l; nft list tables 2>/dev/null | grep -cw beam || true; } | tr '\n' ' '; }
HOST_BEAM_BEFORE=$(host_beam)
[ "$HOST_BEAM_BEFORE" = "0 0 " ] || echo "gateway.sh: note: the host already has beam0 or a beam table (not ours)" >&2

T=$(mktemp -d /tmp/beam-gw-bench.XXXXXX)
# Sandboxes run as an unprivileged mapped root: it must be able to traverse to its rootfs under $T.
chmod 755 "$T"
export BEAM_SOCKET="$T/run/beamd.sock"
BEAMD_PID=
NS_PID=
NGINX_PID=
RESULTS="$T/results.txt"

api() { curl -sS --max-time 60 --unix-socket "$BEAM_SOCKET" "$@"; }
in_ns() { nsenter --net="/proc/$NS_PID/ns/net" "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_beamd() {
    # setsid: a Ctrl-C of this script must not reach beamd before the trap has deleted the sandbox.
    setsid "$BEAMD" --root "$T/root" --run-dir "$T/run" --gateway "127.0.0.1:$GW_PORT" \
        --network bridge --network-netns "/proc/$NS_PID/ns/net" >>"$T/beamd.log" 2>&1 </dev/null &
    BEAMD_PID=$!
    for _ in $(seq 200); do
        api -o /dev/null http://beam/v1/version 2>/dev/null && return 0
        kill -0 "$BEAMD_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "gateway.sh: beamd did not start; its log:" >&2
    tail -20 "$T/beamd.log" >&2
    return 1
}

stop_pid() { # pid: TERM, then KILL after 5 s
    local p=$1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p"
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p"
    wait "$p" 2>/dev/null || true
}

cleanup() {
    local rc=$? leak=
    set +e
    stop_pid "$NGINX_PID"
    # beamd deletes the sandboxes (veth, lease, unmounts, cgroups, uid range); if it died, a fresh one
    # re-adopts them (only while the namespace is still there).
    if [ -d "$T/root/sandboxes" ] && [ -n "$(ls -A "$T/root/sandboxes" 2>/dev/null)" ]; then
        if [ -n "$NS_PID" ] && kill -0 "$NS_PID" 2>/dev/null && { [ -z "$BEAMD_PID" ] || ! kill -0 "$BEAMD_PID" 2>/dev/null; }; then
            echo "gateway.sh: beamd is gone; restarting it to delete its sandboxes" >&2
            start_beamd
        fi
        local ids
        ids=$(api http://beam/v1/sandboxes 2>/dev/null | jq -r '.sandboxes[].id' 2>/dev/null)
        for id in $ids; do api -X DELETE "http://beam/v1/sandboxes/$id" >/dev/null; done
    fi
    stop_pid "$BEAMD_PID"
    stop_pid "$NS_PID"
    local left
    left=$(grep -o 'sbx-[a-z0-9]\{12\}' "$T/beamd.log" 2>/dev/null | sort -u | while read -r id; do
               find /sys/fs/cgroup -maxdepth 4 -type d -path "*/beam/$id" 2>/dev/null; done | sort -r)
    if [ -n "$left" ]; then
        echo "gateway.sh: WARNING: leftover cgroups, removing:" >&2
        echo "$left" >&2
        echo "$left" | while read -r d; do rmdir "$d" 2>/dev/null; done
        rc=1 leak=1
    fi
    local mnts
    mnts=$(awk -v t="$T" '$5 == t || index($5, t "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    if [ -n "$mnts" ]; then
        echo "gateway.sh: WARNING: mounts left under $T, unmounting:" >&2
        echo "$mnts" >&2
        echo "$mnts" | while read -r m; do umount -l "$m"; done
        rc=1 leak=1
    fi
    local p
    for p in $(ls /proc | grep -E '^[0-9]+$'); do
        if { tr '\0' ' ' < "/proc/$p/cmdline"; } 2>/dev/null | grep -qF "$T/"; then
            echo "gateway.sh: ERROR: process $p still runs from $T: $(tr '\0' ' ' < "/proc/$p/cmdline")" >&2
            rc=1 leak=1
        fi
    done
    rm -rf --one-file-system "$T"
    if [ "$(host_beam)" != "$HOST_BEAM_BEFORE" ]; then
        echo "gateway.sh: ERROR: the real host's beam0 / beam nft table changed: $(host_beam)(before: $HOST_BEAM_BEFORE)" >&2
        rc=1 leak=1
    fi
    local any
    any=$(find /sys/fs/cgroup -path '*beam/sbx*' 2>/dev/null | head -5)
    [ -z "$any" ] || echo "gateway.sh: note: sandbox cgroups of another beamd exist on this host: $any" >&2
    [ -n "$leak" ] || echo "gateway.sh: cleaned up; host has no beam0, no beam table, no leftover mounts/cgroups/processes of this run" >&2
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the namespace standing in for the host's network -----------------------------------------------------
unshare --net sleep infinity </dev/null &
NS_PID=$!
me=$(readlink /proc/self/ns/net)
for _ in $(seq 100); do
    ns=$(readlink "/proc/$NS_PID/ns/net" 2>/dev/null || true)
    [ -n "$ns" ] && [ "$ns" != "$me" ] && break
    sleep 0.02
done
[ "$(readlink "/proc/$NS_PID/ns/net")" != "$me" ] || { echo "gateway.sh: unshare --net did not take" >&2; exit 1; }
in_ns ip link set lo up
# Every request is a new connection (see above), ≈5000/s, and the client side of most of them ends in
# TIME-WAIT for 60 s: in 10 s that's more than the 28k ports of ip_local_port_range to one address, and the
# next run (direct or nginx, both connect from this namespace to <sandbox ip>:8080) would pay for the last
# one's. The gateway's upstream connections go to 127.0.0.1 inside the sandbox's namespace, where the
# kernel's default tcp_tw_reuse=2 (loopback only) already reuses them; tcp_tw_reuse=1 here gives direct and
# nginx the same. Only this namespace's sysctl (it is per namespace and dies with it).
in_ns sysctl -q -w net.ipv4.tcp_tw_reuse=1

# --- beamd and the sandbox --------------------------------------------------------------------------------
GW_PORT=$(free_port)
start_beamd
api -H 'Content-Type: application/json' -d '{"image":"busybox"}' http://beam/v1/images/pull | tail -1 | grep -q '"done"' ||
    { echo "gateway.sh: building the busybox image failed" >&2; exit 1; }
# /tmp/www, not /www: `/` itself is not writable in a sandbox (landlock; docs/api.md "Security defaults").
SPEC=$(jq -cn '{image:"busybox", ports:[8080], keep_warm_seconds:-1,
    entrypoint:["sh","-c","mkdir -p /tmp/www && head -c 1024 /dev/zero | tr '"'"'\\0'"'"' x > /tmp/www/1k.txt && exec httpd -f -p 8080 -h /tmp/www"]}')
[ -z "${SBX_CPU:-}" ] || SPEC=$(jq -c --argjson c "$SBX_CPU" '. + {cpu: $c}' <<<"$SPEC")
SBX=$(api -H 'Content-Type: application/json' -d "$SPEC" http://beam/v1/sandboxes)
ID=$(jq -r .id <<<"$SBX")
IP=$(jq -r .network.ip <<<"$SBX")
SBX_PID=$(jq -r .pid <<<"$SBX")
case "$ID" in sbx-*) ;; *) echo "gateway.sh: create failed: $SBX" >&2; exit 1;; esac
case "$IP" in [0-9]*) ;; *) echo "gateway.sh: the sandbox has no bridge address: $SBX" >&2; exit 1;; esac

GW_PATH_URL="http://127.0.0.1:$GW_PORT/sandbox/$ID/8080/1k.txt"
GW_HOST_URL="http://127.0.0.1:$GW_PORT/1k.txt"
GW_HOST="$ID-8080.localhost"
DIRECT_URL="http://$IP:8080/1k.txt"
ok=
for _ in $(seq 200); do
    n=$(curl -s --max-time 2 -o /dev/null -w '%{http_code} %{size_download}' "$GW_PATH_URL" || true)
    [ "$n" = "200 1024" ] && { ok=1; break; }
    sleep 0.05
done
if [ -z "$ok" ]; then
    echo "gateway.sh: the sandbox did not answer through the gateway (last: $n); sandbox and its log:" >&2
    api "http://beam/v1/sandboxes/$ID" | jq -c '{state, reason, exit_code, error}' >&2
    api "http://beam/v1/sandboxes/$ID/logs" >&2
    exit 1
fi
n=$(curl -s --max-time 2 -o /dev/null -w '%{http_code} %{size_download}' -H "Host: $GW_HOST" "$GW_HOST_URL")
[ "$n" = "200 1024" ] || { echo "gateway.sh: host form: $n" >&2; exit 1; }
n=$(in_ns curl -s --max-time 2 -o /dev/null -w '%{http_code} %{size_download}' "$DIRECT_URL")
[ "$n" = "200 1024" ] || { echo "gateway.sh: direct from the test namespace: $n" >&2; exit 1; }

# --- nginx in the test namespace ----------------------------------------------------------------------------
NGX_PORT=18080   # the test namespace is empty: any port is free
mkdir -p "$T/nginx/tmp"
cat > "$T/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
daemon off;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $T/nginx/tmp/body;
    proxy_temp_path $T/nginx/tmp/proxy;
    fastcgi_temp_path $T/nginx/tmp/fastcgi;
    uwsgi_temp_path $T/nginx/tmp/uwsgi;
    scgi_temp_path $T/nginx/tmp/scgi;
    upstream sandbox {
        server $IP:8080;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://sandbox;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
# nsenter --net execs nginx in place (no fork), so $! is nginx's master.
# (not through the in_ns function: a backgrounded function is a subshell, and $! would be that subshell)
nsenter --net="/proc/$NS_PID/ns/net" nginx -e "$T/nginx/error.log" -p "$T/nginx/" -c "$T/nginx/nginx.conf" \
    </dev/null >>"$T/nginx/out.log" 2>&1 &
NGINX_PID=$!
NGINX_URL="http://127.0.0.1:$NGX_PORT/1k.txt"
ok=
for _ in $(seq 100); do
    n=$(in_ns curl -s --max-time 2 -o /dev/null -w '%{http_code} %{size_download}' "$NGINX_URL" || true)
    [ "$n" = "200 1024" ] && { ok=1; break; }
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.05
done
[ "$(cat "/proc/$NGINX_PID/comm" 2>/dev/null)" = nginx ] || { echo "gateway.sh: pid $NGINX_PID is not nginx's master" >&2; exit 1; }
[ -n "$ok" ] || { echo "gateway.sh: nginx did not answer (last: $n): $(cat "$T/nginx/error.log" "$T/nginx/out.log")" >&2; exit 1; }

# --- wrk ----------------------------------------------------------------------------------------------------
# TCP counters of a namespace, read through a process in it: listen queue overflows/drops (a SYN or the
# handshake's last ACK dropped: the client retries after 1 s) and SYN retransmissions.
tcp_counters() { # pid
    python3 - "/proc/$1/net/netstat" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.startswith("TcpExt:")]
d = dict(zip(rows[0][1:], map(int, rows[1][1:])))
print(d["ListenOverflows"], d["ListenDrops"], d["TCPSynRetrans"])
PY
}
# The sandbox's CPU use and CFS throttling (its cpu limit, 1 core by default), both in µs.
sbx_cpu() {
    local v1=/sys/fs/cgroup/cpu/beam/$ID v1a=/sys/fs/cgroup/cpuacct/beam/$ID v2=/sys/fs/cgroup/beam/$ID
    if [ -e "$v1/cpu.stat" ]; then
        local u
        u=$(cat "$v1a/cpuacct.usage" 2>/dev/null || cat "$v1/cpuacct.usage" 2>/dev/null || echo 0)
        echo "$(( u / 1000 )) $(( $(awk '$1 == "throttled_time" {print $2}' "$v1/cpu.stat") / 1000 ))"
    elif [ -e "$v2/cpu.stat" ]; then
        awk '$1 == "usage_usec" {u = $2} $1 == "throttled_usec" {t = $2} END {print u + 0, t + 0}' "$v2/cpu.stat"
    else
        echo "0 0"
    fi
}
# CPU ticks (1/CLK_TCK s): all cores busy (/proc/stat), beamd (all its threads, exited ones included),
# nginx (master + workers).
cpu_ticks() {
    local w p n=0
    w=$(cat "/proc/$NGINX_PID/task/$NGINX_PID/children" 2>/dev/null || true)
    for p in "$NGINX_PID" $w; do
        n=$(( n + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) ))
    done
    echo "$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat) $(awk '{print $14 + $15}' "/proc/$BEAMD_PID/stat") $n"
}
run_target() { # name, round, wrk args…  (output to $T/wrk.<name>.<round>, counters appended)
    local name=$1 round=$2; shift 2
    local sb ns cpu sc
    sb=$(tcp_counters "$SBX_PID"); ns=$(tcp_counters "$NS_PID"); cpu=$(cpu_ticks); sc=$(sbx_cpu)
    local out="$T/wrk.$name.$round" netns="--net=/proc/$NS_PID/ns/net"
    # Redirections on the commands themselves, not on the `case`: a trap that fires while a redirected
    # compound command runs would inherit its redirection (cleanup's messages would land in $out).
    case "$name" in
        gateway_path) wrk "$@" "$GW_PATH_URL" >"$out" 2>&1 ;;
        gateway_host) wrk "$@" -H "Host: $GW_HOST" "$GW_HOST_URL" >"$out" 2>&1 ;;
        direct)       nsenter "$netns" wrk "$@" "$DIRECT_URL" >"$out" 2>&1 ;;
        nginx)        nsenter "$netns" wrk "$@" "$NGINX_URL" >"$out" 2>&1 ;;
    esac
    python3 - "$sb" "$(tcp_counters "$SBX_PID")" "$ns" "$(tcp_counters "$NS_PID")" "$cpu" "$(cpu_ticks)" \
        "$(getconf CLK_TCK)" "$sc" "$(sbx_cpu)" >> "$T/wrk.$name.$round" <<'PY'
import sys
a, b, c, d, e, f = ([int(x) for x in v.split()] for v in sys.argv[1:7])
hz = int(sys.argv[7])
g, h = ([int(x) for x in v.split()] for v in sys.argv[8:10])
print(f"COUNTERS sbx_listen_overflows={b[0]-a[0]} testns_syn_retrans={d[2]-c[2]} sbx_syn_retrans={b[2]-a[2]} "
      f"cpu_s={(f[0]-e[0])/hz:.2f} beamd_cpu_s={(f[1]-e[1])/hz:.2f} nginx_cpu_s={(f[2]-e[2])/hz:.2f} "
      f"sbx_cpu_s={(h[0]-g[0])/1e6:.3f} sbx_throttled_ms={(h[1]-g[1])/1e3:.0f}")
PY
}
TARGETS=(gateway_path direct nginx gateway_host)

report() { # name, round → one result line (from $T/wrk.<name>.<round>)
    python3 - "$T/wrk.$1.$2" "$1" "$2" <<'PY' | tee -a "$RESULTS"
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    x, u = float(m.group(1)), m.group(2)
    return x * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[u]
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
p = dict((k, ms(v)) for k, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M))
req = re.search(r"(\d+) requests in", text)
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if not rps or "50" not in p:
    sys.exit(f"gateway.sh: wrk output not understood for {sys.argv[2]}:\n{text}")
errs = sum(int(x) for x in sock.groups()) if sock else 0
ctr = dict(x.split("=") for x in re.search(r"^COUNTERS (.*)$", text, re.M).group(1).split())
n = int(req.group(1))
us = lambda k: f"{float(ctr.pop(k)) * 1e6 / n:.0f}"
sbx = us("sbx_cpu_s")
print(f"{sys.argv[2]:16s} round={sys.argv[3]} rps={float(rps.group(1)):.0f} p50_ms={p['50']:.3f} "
      f"p99_ms={p['99']:.3f} requests={n} non2xx={non2xx.group(1) if non2xx else 0} sockerr={errs} "
      f"cpu_us_per_req={us('cpu_s')} beamd_us_per_req={us('beamd_cpu_s')} nginx_us_per_req={us('nginx_cpu_s')} "
      f"sbx_us_per_req={sbx} "
      + " ".join(f"{k}={v}" for k, v in ctr.items()))
PY
}

{
echo "# gateway bench: $(date -u +%FT%TZ), $(nproc) cores, kernel $(uname -r)"
echo "# beamd=$BEAMD (release; --gateway 127.0.0.1:$GW_PORT, --network bridge in test netns of pid $NS_PID)"
echo "# $(wrk -v 2>&1 | head -1); $(nginx -v 2>&1); load: ${WRK[*]:1}; serial: wrk -t1 -c1 -d$SERIAL --latency; $ROUNDS rounds"
echo "# sandbox $ID at $IP (cpu limit $(jq -r .cpu <<<"$SBX")): busybox httpd -f (Connection: close on every response), /1k.txt = 1024 bytes"
echo "# loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this host competes for the same cores)"
} | tee "$RESULTS"

echo "## warm-up: $WARMUP per target" >&2
for t in "${TARGETS[@]}"; do run_target "$t" warmup -t"$THREADS" -c"$CONNS" -d"$WARMUP"; done

for r in $(seq "$ROUNDS"); do
    # rotate the order from round to round
    order=("${TARGETS[@]:$(( (r - 1) % 4 ))}" "${TARGETS[@]:0:$(( (r - 1) % 4 ))}")
    echo "## round $r: ${order[*]}" >&2
    for t in "${order[@]}"; do
        run_target "$t" "$r" "${WRK[@]:1}" && report "$t" "$r"
    done
    # one request at a time: the latency a request gains, without queueing behind others
    for t in "${order[@]}"; do
        run_target "$t" "$r" -t1 -c1 -d"$SERIAL" --latency && mv "$T/wrk.$t.$r" "$T/wrk.$t@c1.$r" && report "$t@c1" "$r"
    done
done
echo "# loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"

# --- summary ------------------------------------------------------------------------------------------------
echo
python3 - "$RESULTS" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    if line.startswith("#") or "rps=" not in line:
        continue
    name, *kv = line.split()
    d = dict(x.split("=", 1) for x in kv)
    runs.setdefault(name, {})[int(d["round"])] = {k: float(v) for k, v in d.items() if k != "round"}
names = ["gateway_path", "gateway_host", "direct", "nginx"]
rounds = sorted(runs["direct"])
med = lambda f: statistics.median(f(r) for r in rounds)
for suffix, title in [("", "under load (-c CONNS)"), ("@c1", "one request at a time (-c1)")]:
    print(f"{title}:")
    print("| target | " + " | ".join(f"r{r} req/s | r{r} p50 ms | r{r} p99 ms" for r in rounds) + " |")
    print("|---|" + "---:|" * (3 * len(rounds)))
    for n in names:
        cells = []
        for r in rounds:
            x = runs[n + suffix][r]
            cells += [f"{x['rps']:.0f}", f"{x['p50_ms']:.2f}", f"{x['p99_ms']:.2f}"]
        print(f"| {n} | " + " | ".join(cells) + " |")
    print()
print("Under load, per round: CPU µs per request (all cores / the proxy's process / the sandbox's cgroup),")
print("the sandbox's CFS throttling (ms over the run: >0 means its cpu limit was the bottleneck) and listen-queue overflows:")
for n in names:
    print(f"  {n:13s} " + "  ".join(f"r{r}: {runs[n][r]['cpu_us_per_req']:.0f}/"
          + (f"{runs[n][r]['beamd_us_per_req']:.0f}" if n.startswith("gateway") else
             f"{runs[n][r]['nginx_us_per_req']:.0f}" if n == "nginx" else "-")
          + f"/{runs[n][r]['sbx_us_per_req']:.0f} thr {runs[n][r]['sbx_throttled_ms']:.0f} ovf {runs[n][r]['sbx_listen_overflows']:.0f}"
          for r in rounds))
bad = [(n, r, int(x["non2xx"]), int(x["sockerr"])) for n in runs for r, x in runs[n].items() if x["non2xx"] or x["sockerr"]]
if bad:
    print("note: (target, round, non-2xx, socket errors):", bad)
print()
ok = lambda b: "met" if b else "NOT met"
for gw in ["gateway_path", "gateway_host"]:
    print(f"{gw}:")
    for r in rounds:
        g, d, x = runs[gw][r], runs["direct"][r], runs["nginx"][r]
        g1, d1, x1 = runs[gw + "@c1"][r], runs["direct@c1"][r], runs["nginx@c1"][r]
        print(f"  round {r}: gateway/direct {g['rps'] / d['rps']:.2f}× (target ≥ 0.8: {ok(g['rps'] >= 0.8 * d['rps'])}), "
              f"gateway/nginx {g['rps'] / x['rps']:.2f}× (target > 1: {ok(g['rps'] > x['rps'])}); "
              f"added p50 vs direct: loaded {g['p50_ms'] - d['p50_ms']:+.2f} ms (nginx {x['p50_ms'] - d['p50_ms']:+.2f}), "
              f"-c1 {1e3 * (g1['p50_ms'] - d1['p50_ms']):+.0f} µs (nginx {1e3 * (x1['p50_ms'] - d1['p50_ms']):+.0f})")
    gd = med(lambda r: runs[gw][r]["rps"] / runs["direct"][r]["rps"])
    gn = med(lambda r: runs[gw][r]["rps"] / runs["nginx"][r]["rps"])
    add = med(lambda r: runs[gw][r]["p50_ms"] - runs["direct"][r]["p50_ms"])
    add1 = med(lambda r: runs[gw + "@c1"][r]["p50_ms"] - runs["direct@c1"][r]["p50_ms"])
    print(f"  median of rounds: gateway/direct {gd:.2f}× ({ok(gd >= 0.8)}), gateway/nginx {gn:.2f}× ({ok(gn > 1)}), "
          f"added p50 {add:+.2f} ms loaded, {1e3 * add1:+.0f} µs at -c1")
PY
