#!/usr/bin/env bash
# Layer unpacking: beam (examples/unpack.rs, the image store's code path: decompress + sha256 on a helper
# thread, unpack with openat2-confined creates) beside GNU tar on the same ~200 MB layer, gzip -6 and zstd -3.
#
#   benches/unpack.sh [RUNS]        (root; needs hyperfine, python3, gzip, zstd, GNU tar)
#
# Every run unpacks into a fresh empty directory (hyperfine --prepare, after a `sync` so that the previous
# run's writeback does not land in the next one's time). Prints mean times and beam/tar ratios (≤ 1.0: beam is
# at least as fast). Temp files live under ${TMPDIR:-/tmp} and are removed on exit.
set -euo pipefail

RUNS=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/beam-unpack-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

for tool in hyperfine python3 gzip zstd tar; do
    command -v "$tool" >/dev/null || { echo "benches/unpack.sh: $tool is needed (apt-get install $tool)" >&2; exit 1; }
done

echo "== building examples/unpack (release)" >&2
(cd "$ROOT" && cargo build --release --example unpack -q)
BEAM="$ROOT/target/release/examples/unpack"

echo "== generating the test layer" >&2
# ~200 MB in ~4000 files (sizes log-uniform 64 B .. 1 MiB, half random bytes, half text-like), 200
# directories, some symlinks and hardlinks; fixed seed and mtimes, so every run builds the same tar.
python3 - "$WORK/layer.tar" <<'PY'
import io, math, random, sys, tarfile
rng = random.Random(20240611)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(2000)]
text = b" ".join(rng.choice(words) + (b"\n" if rng.random() < 0.1 else b"") for _ in range(400_000))  # ~2.6 MB
target, total, n = 200 << 20, 0, 0
dirs = [f"usr/share/pkg{d // 20}/sub{d % 20}" for d in range(200)]
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, kind, data=b"", mode=0o644, link=""):
        i = tarfile.TarInfo(name)
        i.type, i.mode, i.mtime, i.uid, i.gid, i.uname, i.gname = kind, mode, 1_700_000_000, 0, 0, "root", "root"
        i.size, i.linkname = len(data), link
        t.addfile(i, io.BytesIO(data) if data else None)
    for prefix in sorted({"/".join(d.split("/")[:k]) for d in dirs for k in range(1, 5)}):
        add(prefix, tarfile.DIRTYPE, mode=0o755)
    files = []
    while total < target:
        size = int(math.exp(rng.uniform(math.log(64), math.log(1 << 20))))
        if n % 2:
            data = rng.randbytes(size)
        else:
            off = rng.randrange(len(text) - size)
            data = text[off:off + size]
        name = f"{dirs[n % len(dirs)]}/file{n}.bin"
        add(name, tarfile.REGTYPE, data, 0o755 if n % 7 == 0 else 0o644)
        files.append(name)
        total, n = total + size, n + 1
    for k in range(0, len(files), 50):
        add(f"{files[k]}.lnk", tarfile.SYMTYPE, link=files[k].rsplit("/", 1)[1])
        add(f"{files[k]}.hard", tarfile.LNKTYPE, link=files[k])
print(f"{n} files, {total / 2**20:.0f} MiB of content", file=sys.stderr)
PY
gzip -6 -k -c "$WORK/layer.tar" >"$WORK/layer.tar.gz"
zstd -3 -q -c "$WORK/layer.tar" >"$WORK/layer.tar.zst"
ls -l "$WORK"/layer.tar* | awk '{printf "   %s %d MB\n", $NF, $5 / 1e6}' >&2

D="$WORK/dest"
prep="rm -rf $D && mkdir $D && sync"
hyperfine --runs "$RUNS" --warmup 1 --prepare "$prep" --export-json "$WORK/result.json" \
    -n beam-gzip "$BEAM $WORK/layer.tar.gz $D application/vnd.oci.image.layer.v1.tar+gzip" \
    -n tar-gzip "tar -xzf $WORK/layer.tar.gz -C $D" \
    -n beam-zstd "$BEAM $WORK/layer.tar.zst $D application/vnd.oci.image.layer.v1.tar+zstd" \
    -n tar-zstd "tar --zstd -xf $WORK/layer.tar.zst -C $D" \
    -n beam-gzip-1thread "$BEAM $WORK/layer.tar.gz $D application/vnd.oci.image.layer.v1.tar+gzip --simple" \
    -n beam-zstd-1thread "$BEAM $WORK/layer.tar.zst $D application/vnd.oci.image.layer.v1.tar+zstd --simple"

python3 - "$WORK/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
print("\nmean ± stddev (s):")
for name, x in r.items():
    print(f"  {name:20} {x['mean']:.3f} ± {x['stddev']:.3f}")
print("\ntime ratio beam / tar (≤ 1.0: beam at least as fast):")
for c in ("gzip", "zstd"):
    print(f"  {c}: {r['beam-' + c]['mean'] / r['tar-' + c]['mean']:.2f}"
          f"   (1 thread, no hashing: {r['beam-' + c + '-1thread']['mean'] / r['tar-' + c]['mean']:.2f})")
PY
