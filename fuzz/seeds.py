#!/usr/bin/env python3
"""Seed corpora for the file-system and API fuzz targets: `python3 fuzz/seeds.py CORPUS_ROOT [TARGET...]`
writes CORPUS_ROOT/<target>/seed-* (deterministic; scripts/fuzz.sh runs it for a target whose corpus dir
is empty). Inputs follow each target's format (see the doc comment at the top of its fuzz_targets/*.rs)."""

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

SHM = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
TMP = os.environ.get("BEAM_FUZZ_TMP", SHM)
UNPACK_OUTSIDE = f"{TMP}/beam-fuzz-layer_unpack/a/b/outside"
FILES_OUTSIDE = f"{TMP}/beam-fuzz-files_api/outside"


def tar_bytes(entries, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            kind, name = e[0], e[1]
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            data = b""
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, e[2] if len(e) > 2 else 0o755
            elif kind == "file":
                info.type, data = tarfile.REGTYPE, e[2]
                info.mode = e[3] if len(e) > 3 else 0o644
            elif kind == "sym":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, e[2], 0o777
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, e[2]
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "blk":
                info.type, info.devmajor, info.devminor = tarfile.BLKTYPE, 7, 0
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "pax":
                info.type, data = tarfile.REGTYPE, e[2]
                info.pax_headers = e[3]
            info.size = len(data)
            if len(e) > 4 and kind == "file":
                info.uid, info.gid = e[4]
            t.addfile(info, io.BytesIO(data) if data else None)
    # Drop tarfile's padding to a 10 KiB record: the end-of-archive marker (two zero blocks) is enough.
    v = buf.getvalue().rstrip(b"\0")
    v += b"\0" * (-len(v) % 512)
    return v + b"\0" * 1024


def layers(outside):
    basic = [
        ("dir", "./"),
        ("dir", "bin"),
        ("file", "bin/sh", b"#!/bin/sh\necho hi\n", 0o755),
        ("file", "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644, (0, 0)),
        ("file", "usr/bin/su", b"su", 0o4755, (0, 0)),
        ("sym", "bin/ls", "/bin/busybox"),
        ("hard", "bin/sh2", "bin/sh"),
        ("fifo", "run/fifo"),
        ("chr", "dev/null"),
        ("file", "home/u/f", b"f", 0o600, (1000, 1000)),
    ]
    escapes = [
        ("sym", "abs", outside),
        ("file", "abs/evil", b"evil"),
        ("sym", "rel", "../outside"),
        ("file", "rel/evil", b"evil"),
        ("sym", "up", "../../.."),
        ("dir", "up/x"),
        ("hard", "leak", "../outside/secret"),
        ("hard", "leak2", outside + "/secret"),
        ("file", "../outside/evil", b"evil"),
        ("file", "/abs-name", b"evil"),
        ("sym", "etc", "/etc"),
        ("file", "etc/evil", b"evil"),
        ("sym", "s", "."),
        ("file", "s/s/s/x", b"x"),
    ]
    whiteouts = [
        ("dir", "d"),
        ("file", "d/.wh..wh..opq", b""),
        ("file", "d/.wh.gone", b""),
        ("file", ".wh..wh.plnk", b""),
        ("file", "x", b"1"),
        ("dir", "x"),
        ("file", "x", b"2"),
        ("file", ".wh.", b""),
        ("file", ".wh...", b""),
    ]
    pax = [
        ("pax", "p/xattr", b"data", {"SCHILY.xattr.user.k": "v", "SCHILY.xattr.trusted.overlay.opaque": "y",
                                    "SCHILY.xattr.security.capability": "\x01\x00", "mtime": "1600000000.123456789"}),
        ("pax", "p/" + "n" * 200 + "/long", b"long", {"mtime": "-1.5"}),
    ]
    out = {
        "basic": tar_bytes(basic),
        "escapes": tar_bytes(escapes),
        "whiteouts": tar_bytes(whiteouts),
        "pax": tar_bytes(pax, tarfile.PAX_FORMAT),
        "ustar": tar_bytes(basic[:4], tarfile.USTAR_FORMAT),
    }
    return out


def zstd(data):
    if shutil.which("zstd") is None:
        return None
    return subprocess.run(["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE, check=True).stdout


def seeds_layer_unpack():
    s = {}
    for name, t in layers(UNPACK_OUTSIDE).items():
        s[f"raw-{name}"] = bytes([0, 1]) + t
        s[f"gzip-{name}"] = bytes([1, 0]) + t
        s[f"zstd-{name}"] = bytes([2, 0]) + t
        s[f"stream-gz-{name}"] = bytes([3, 2]) + gzip.compress(t)
    t = layers(UNPACK_OUTSIDE)["basic"]
    s["sniff-gz"] = bytes([0, 0]) + gzip.compress(t)
    s["multi-gz"] = bytes([0, 4]) + gzip.compress(t[:1024]) + gzip.compress(t[1024:])
    s["bzip2-type"] = bytes([0, 6]) + t
    z = zstd(t)
    if z:
        s["sniff-zstd"] = bytes([0, 0]) + z
        s["stream-zstd"] = bytes([3, 3]) + z
    return s


def spec(**over):
    base = {
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "fuzz",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0, "additionalGids": [1, 2], "umask": 18},
            "args": ["sh", "-c", "echo hi"],
            "env": ["PATH=/usr/bin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_CHOWN"],
                             "permitted": ["CAP_CHOWN"], "inheritable": [], "ambient": []},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
            "consoleSize": {"height": 24, "width": 80},
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/mnt/src", "type": "bind", "source": "src", "options": ["rbind", "ro", "rprivate"]},
            {"destination": "/mnt/file", "source": "file", "options": ["bind", "nosuid"]},
            {"destination": "/proc/cpuinfo", "source": "file", "options": ["bind"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ["pid", "network", "ipc", "uts", "mount", "cgroup", "user"]],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000", "net/ipv4/ping_group_range": "0 0"},
            "maskedPaths": ["/proc/kcore", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/bus"],
            "rootfsPropagation": "rslave",
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}],
            "resources": {"memory": {"limit": 1 << 30}, "pids": {"limit": 100}},
            "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                        "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                                     {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                                      "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]},
            "timeOffsets": {},
        },
        "annotations": {"run.beam.landlock.ro": "/usr:/bin", "run.beam.landlock.rw": "/tmp",
                        "run.beam.landlock.tcp_connect": "80,443", "run.beam.landlock.best_effort": "true"},
        "hooks": {"createContainer": [{"path": "/bin/true", "args": ["true"]}]},
    }
    base.update(over)
    return base


def seeds_bundle_config():
    s = {"full": spec()}
    joined = spec()
    joined["linux"] = dict(joined["linux"], namespaces=[
        {"type": "pid"}, {"type": "network", "path": "/proc/1/ns/net"}, {"type": "mount"}, {"type": "time"},
        {"type": "user", "path": "/proc/self/ns/user"}])
    joined["linux"]["timeOffsets"] = {"monotonic": {"secs": 10, "nanosecs": 0}}
    s["joined"] = joined
    minimal = {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
               "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}}, "linux": {}}
    s["minimal"] = minimal
    s["no-mount-ns"] = dict(minimal, linux={"namespaces": [{"type": "pid"}]},
                            mounts=[{"destination": "/proc", "type": "proc", "source": "proc"}])
    s["bad-sysctl"] = dict(minimal, linux={"namespaces": [{"type": "network"}], "sysctl": {"kernel.panic": "1"}})
    return {k: json.dumps(v).encode() for k, v in s.items()}


def seeds_api_requests():
    bodies = {
        0: [{"image": "busybox", "name": "web", "memory": "512Mi", "cpu": 0.5, "cmd": ["httpd", "-f"],
             "keep_warm_seconds": 300, "tags": {"team": "ml"}, "ports": [8080], "timeout_seconds": 60,
             "env": {"A": "b"}, "workdir": "/tmp", "user": "1000:1000", "pids": 64, "network": "none",
             "landlock": {"ro": ["/usr"], "rw": ["/tmp"], "tcp_bind": [80], "tcp_connect": [443]},
             "publish": [{"port": 5432, "host_port": 15432, "host_ip": "127.0.0.1"}],
             "authorized": True, "insecure_no_userns": True, "capabilities": ["NET_RAW", "CAP_MKNOD"]},
            {"image": "busybox", "landlock": {"preset": "read-only-system", "rw": ["/data"]}},
            {"image": "busybox", "landlock": {"preset": "writable-root"}, "capabilities": ["SYS_ADMIN"]},
            {"image": "busybox", "memory": 1024, "keep_warm_seconds": -1},
            {"image": "busybox", "memory": "1.5Gi", "block_network": True, "cidr_allowlist": ["10.0.0.0/8"]},
            {"image": "x", "timeout_seconds": 1, "keep_warm_seconds": 1}],
        1: [{"keep_warm_seconds": 5, "timeout_seconds": 0}, {"timeout_seconds": 100},
            {"block_network": True, "cidr_allowlist": None}, {"cidr_allowlist": ["1.1.1.1/32"]}],
        2: [{"cmd": ["sh", "-c", "echo hi"], "env": {"X": "1"}, "cwd": "/", "tty": True, "stdin": True,
             "timeout_seconds": 1.5, "rows": 24, "cols": 80},
            {"cmd": ["id"], "user": "root"}, {"cmd": ["id"], "user": "0:0"}, {"cmd": ["id"], "user": "nobody:nogroup"}],
        3: [{"port": 8080}, {"port": 0}, {"port": 70000, "host_port": 1, "host_ip": "::1"}],
        4: [{"grace_seconds": 2}, {}],
        5: [{"signal": "TERM"}, {"signal": "SIGKILL"}, {"signal": "9"}],
        6: [{"image": "busybox"}, {"image": "127.0.0.1:5000/team/app:1"}, {"image": "sha256:" + "a" * 64}],
        7: [{"path": "/tmp/x", "parents": True, "mode": 448}],
    }
    s = {}
    for route, list_ in bodies.items():
        for i, b in enumerate(list_):
            prefix = bytes([route]) + (b"\x01" if route in (1, 2) else b"")
            s[f"r{route}-{i}"] = prefix + json.dumps(b).encode()
    s["r8-0"] = bytes([8]) + b"path=%2Ftmp%2Fa+b&tag=k%3Dv&follow&timeout_seconds=1.5&tail_bytes=10"
    s["r9-0"] = bytes([9]) + b"sandboxes/web%2Dx/files/stat"
    return s


def seeds_files_api():
    t = tar_bytes([("dir", "d"), ("file", "d/f", b"f"), ("sym", "d/l", "/etc/passwd"), ("hard", "d/h", "d/f"),
                   ("sym", "d/out", "../../outside"), ("file", "d/out/evil", b"evil"),
                   ("hard", "d/leak", "../outside/secret"), ("file", "../evil", b"evil"), ("chr", "d/null")])
    ops = {
        "basic": b"\x01s /a/file\nl /a\nm /new\nM /p/q/r\nw /a/up\nc /a/dropped\no /a/file\nt /a\nr /a/file\nR /a\n",
        "escapes": b"\x00s /abs_out/secret\nl /rel_out\no /a/secret_link\nw /abs_out/new\nw /rel_out/secret\n"
                   b"M /abs_out/x/y\nR /abs_out\nR /rel_out/dir\nm /etc/x\no /magic/etc/passwd\nt /\nl /loop\n"
                   b"o /../../outside/secret\nw /a/../../outside/secret\n",
        "json": b"\x01j {\"path\": \"/j/k\", \"parents\": true, \"mode\": 448}\nq 0644 /a/q\nq 0o7777 /rel_out/q\n",
        "tar": b"\x01x /up\n" + t,
        "tar-through-link": b"\x00x /abs_out\n" + t,
    }
    return ops


TARGETS = {
    "layer_unpack": seeds_layer_unpack,
    "bundle_config": seeds_bundle_config,
    "api_requests": seeds_api_requests,
    "files_api": seeds_files_api,
}


def main():
    root = sys.argv[1]
    for target in sys.argv[2:] or TARGETS:
        if target not in TARGETS:
            continue
        d = os.path.join(root, target)
        os.makedirs(d, exist_ok=True)
        for name, data in TARGETS[target]().items():
            with open(os.path.join(d, f"seed-{name}"), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
