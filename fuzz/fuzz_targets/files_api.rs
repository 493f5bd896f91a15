//! The files API (`sandbox::files::SandboxFs`, what `GET/PUT/DELETE …/files`, `…/files/stat|list|mkdir`
//! run) with arbitrary paths, modes and tar uploads, on a fresh sandbox root per run whose symlinks point
//! out of it (absolute, `../`, into a sibling `outside/`, at `/etc`): never panics, never changes anything
//! outside the root, never hardlinks to a file outside it, and leaves no upload temp file behind.
//!
//! Input: lines, each an op letter and its argument — `s` stat, `l` list, `m`/`M` mkdir (-p), `r`/`R`
//! remove (-r), `o` open + read, `w` upload (create_file + write + commit), `c` an upload dropped without
//! commit, `t` download as tar, `j` a `POST …/files/mkdir` JSON body, `q` a `PUT` `?mode=` value then an
//! upload with it; `x PATH` extracts the rest of the input (after that line) as a tar into PATH. Byte 0's
//! low bit picks a sandbox with a user namespace (ids mapped from 100000) or without.
#![no_main]
#[path = "common.rs"]
mod common;

use beam::api::Mkdir;
use beam::sandbox::files::SandboxFs;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::PathBuf;
use std::sync::LazyLock;

struct Fixture {
    work: PathBuf,
    root: PathBuf,
    before: BTreeMap<PathBuf, common::Node>,
    outside_inodes: BTreeSet<(u64, u64)>,
    skip: BTreeSet<PathBuf>,
}

static FIX: LazyLock<Fixture> = LazyLock::new(|| {
    let work = common::scratch("files_api");
    let outside = work.join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    std::fs::set_permissions(outside.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(outside.join("dir/file"), b"file").unwrap();
    let root = work.join("root");
    let skip: BTreeSet<PathBuf> = [PathBuf::from("root")].into();
    let before = common::without_mtime(common::snapshot(&work, &skip), "");
    let outside_inodes = common::inodes(&outside);
    Fixture { work, root, before, outside_inodes, skip }
});

/// The sandbox root: a few files and dirs, and symlinks that lead out of it when followed on the host.
fn make_root(f: &Fixture) {
    let r = &f.root;
    std::fs::create_dir_all(r.join("a/b")).unwrap();
    std::fs::create_dir_all(r.join("empty")).unwrap();
    std::fs::write(r.join("a/file"), b"hello").unwrap();
    std::fs::write(r.join("a/b/deep"), b"deep").unwrap();
    let outside = f.work.join("outside");
    symlink(&outside, r.join("abs_out")).unwrap();
    symlink("../outside", r.join("rel_out")).unwrap();
    symlink("../../outside/secret", r.join("a/secret_link")).unwrap();
    symlink("/etc", r.join("etc")).unwrap();
    symlink("loop", r.join("loop")).unwrap();
    symlink("/proc/self/root", r.join("magic")).unwrap();
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let f = &*FIX;
    make_root(f);
    let fs = SandboxFs::open_root(&f.root, (first & 1 == 1).then_some(100_000)).unwrap();
    let mut input = rest;
    while !input.is_empty() {
        let (line, next) = match input.iter().position(|b| *b == b'\n') {
            Some(i) => (&input[..i], &input[i + 1..]),
            None => (input, &[][..]),
        };
        input = next;
        let Some((&op, arg)) = line.split_first() else { continue };
        let arg = String::from_utf8_lossy(arg);
        let arg = arg.as_ref();
        match op {
            b's' => drop(fs.stat(arg)),
            b'l' => drop(fs.list(arg)),
            b'm' => drop(fs.mkdir(arg, false, 0o755)),
            b'M' => drop(fs.mkdir(arg, true, 0o700)),
            b'r' => drop(fs.remove(arg, false)),
            b'R' => drop(fs.remove(arg, true)),
            b'o' => {
                if let Ok((mut file, _)) = fs.open_read(arg) {
                    let mut buf = Vec::new();
                    let _ = Read::take(&mut file, 1 << 16).read_to_end(&mut buf);
                }
            }
            b'w' | b'c' => {
                if let Ok(mut up) = fs.create_file(arg, 0o644) {
                    let _ = up.write_all(b"uploaded");
                    if op == b'w' {
                        let _ = up.commit();
                    }
                }
            }
            b't' => drop(fs.write_tar(arg, std::io::sink())),
            b'j' => {
                let Ok(m) = beam::daemon::http::parse_json::<Mkdir>(arg.as_bytes()) else { continue };
                let mode = m.mode.unwrap_or(0o755);
                if mode <= 0o7777 {
                    let _ = fs.mkdir(&m.path, m.parents, mode);
                }
            }
            b'q' => {
                let (mode, path) = arg.split_once(' ').unwrap_or((arg, "/a/q"));
                if let Ok(mode) = beam::daemon::files::parse_mode(mode)
                    && let Ok(mut up) = fs.create_file(path, mode)
                {
                    let _ = up.write_all(b"q");
                    let _ = up.commit();
                }
            }
            b'x' => {
                let _ = fs.extract_tar(arg, input);
                break;
            }
            _ => {}
        }
    }
    drop(fs);
    let after = common::without_mtime(common::snapshot(&f.work, &f.skip), "");
    common::assert_same("outside the sandbox root", &f.before, &after);
    let inside = common::snapshot(&f.root, &BTreeSet::new());
    let named_upload = data.windows(12).any(|w| w == b"beam-upload-");
    for (p, n) in &inside {
        assert!(!f.outside_inodes.contains(&n.ino), "{p:?} in the root shares an inode with a file outside it: {n:?}");
        if !named_upload {
            let name = p.file_name().map(|s| s.to_string_lossy()).unwrap_or_default();
            assert!(!name.contains(".beam-upload-"), "an upload's temp file was left behind: {p:?}");
        }
    }
    common::remove_all(&f.root);
});
