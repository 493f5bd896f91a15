#!/usr/bin/env bash
# Layer unpacking: beam (examples/unpack.rs, the image store's code path: decompress + sha256 on a helper
# thread, unpack with openat2-confined creates) beside GNU tar on the same ~200 MB layer, gzip -6 and zstd -3.
#
#   benches/unpack.sh [RUNS]        (root; needs hyperfine, python3, gzip, zstd, GNU tar)
#
# Every run unpacks into a fresh empty directory on a scratch ext4 loop file system (hyperfine --prepare).
# Prints median/mean/min times and beam/tar ratios (≤ 1.0: beam is at least as fast). Temp files live under
# ${TMPDIR:-/tmp} and are removed on exit.
set -euo pipefail

RUNS=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/beam-unpack-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

for tool in hyperfine python3 gzip zstd tar mkfs.ext4; do
    command -v "$tool" >/dev/null || { echo "benches/unpack.sh: $tool is needed (apt-get install $tool)" >&2; exit 1; }
done

echo "== building examples/unpack (release)" >&2
(cd "$ROOT" && cargo build --release --example unpack -q)
BEAM="$ROOT/target/release/examples/unpack"

echo "== generating the test layer" >&2
# ~200 MB in ~3700 files (sizes log-uniform 64 B .. 512 KiB, half random bytes, half text-like) in 200
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
        size = int(math.exp(rng.uniform(math.log(64), math.log(512 << 10))))
        files.append((f"{dirs[n % len(dirs)]}/file{n}.bin", size, n))
        total, n = total + size, n + 1
    files.sort()  # a directory's files together, as image builders write them
    for name, size, k in files:
        if k % 2:
            data = rng.randbytes(size)
        else:
            off = rng.randrange(len(text) - size)
            data = text[off:off + size]
        add(name, tarfile.REGTYPE, data, 0o755 if k % 7 == 0 else 0o644)
        if k % 50 == 0:
            add(f"{name}.lnk", tarfile.SYMTYPE, link=name.rsplit("/", 1)[1])
            add(f"{name}.hard", tarfile.LNKTYPE, link=name)
print(f"{n} files, {total / 2**20:.0f} MiB of content", file=sys.stderr)
PY
gzip -6 -k -c "$WORK/layer.tar" >"$WORK/layer.tar.gz"
zstd -3 -q -c "$WORK/layer.tar" >"$WORK/layer.tar.zst"
ls -l "$WORK"/layer.tar* | awk '{printf "   %s %d MB\n", $NF, $5 / 1e6}' >&2

# The destinations live on a fresh ext4 file system (default mkfs options, so journaled) in a loop file: the
# host's own file system state (here: no journal, where inode allocation scans past inodes deleted in the
# last 60 s, and whatever other users delete) would otherwise swamp the difference between the tools.
# Each run gets a fresh empty $D; `sync` so that one run's writeback does not land in the next one's time.
MNT="$WORK/mnt"
mkdir "$MNT"
truncate -s 3G "$WORK/fs.img"
mkfs.ext4 -q -F "$WORK/fs.img"
if mount -o loop "$WORK/fs.img" "$MNT" 2>/dev/null; then
    trap 'umount "$MNT" || umount -l "$MNT"; rm -rf "$WORK"' EXIT
else
    echo "   (could not mount a loop file system; unpacking into $WORK: expect more noise)" >&2
fi
D="$MNT/dest"
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
print("\n  (s)                  median    mean ± stddev      min   cpu (user+sys)")
for name, x in r.items():
    print(f"  {name:20} {x['median']:6.3f}   {x['mean']:6.3f} ± {x['stddev']:.3f}   {x['min']:6.3f}   "
          f"{x['user'] + x['system']:.3f}")
print("\ntime ratio beam / tar, medians (min in parentheses); ≤ 1.0: beam at least as fast")
for c in ("gzip", "zstd"):
    b, b1, t = r["beam-" + c], r["beam-" + c + "-1thread"], r["tar-" + c]
    print(f"  {c}: {b['median'] / t['median']:.2f} ({b['min'] / t['min']:.2f})"
          f"   one thread, no hashing: {b1['median'] / t['median']:.2f} ({b1['min'] / t['min']:.2f})")
PY
