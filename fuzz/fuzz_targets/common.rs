//! Shared by the targets that touch the file system: a fixed scratch dir per target (on tmpfs when there is
//! one) and snapshots of a tree, to assert that nothing outside the directory under test changed.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `$BEAM_FUZZ_TMP/beam-fuzz-<target>` (default `/dev/shm`, else `/tmp`), emptied and made afresh. A fixed
/// path, so that seeds and the dictionary can name it in absolute symlink targets; run one instance of a
/// target at a time (scripts/fuzz.sh does).
pub fn scratch(target: &str) -> PathBuf {
    let base = std::env::var_os("BEAM_FUZZ_TMP").map(PathBuf::from).unwrap_or_else(|| {
        if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { PathBuf::from("/tmp") }
    });
    let dir = base.join(format!("beam-fuzz-{target}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the fuzz scratch dir");
    dir
}

/// What a snapshot keeps of one node (never following symlinks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ino: (u64, u64),
    pub nlink: u64,
    pub link: Option<PathBuf>,
    pub content: Option<Vec<u8>>,
    pub xattrs: Vec<String>,
}

fn xattr_names(p: &Path) -> Vec<String> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: `c` is NUL-terminated and `buf` is writable for its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut v: Vec<String> =
        buf[..n as usize].split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into()).collect();
    v.sort();
    v
}

/// Every node under `root` (relative paths; `root` itself as ""), skipping the relative paths in `skip`
/// (and all beneath them).
pub fn snapshot(root: &Path, skip: &BTreeSet<PathBuf>) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), skip, &mut out);
    out
}

fn walk(root: &Path, rel: &Path, skip: &BTreeSet<PathBuf>, out: &mut BTreeMap<PathBuf, Node>) {
    if skip.contains(rel) {
        return;
    }
    let p = root.join(rel);
    let Ok(m) = std::fs::symlink_metadata(&p) else { return };
    let ft = m.file_type();
    out.insert(
        rel.to_path_buf(),
        Node {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: if ft.is_dir() { 0 } else { m.size() },
            mtime: (m.mtime(), m.mtime_nsec()),
            ino: (m.dev(), m.ino()),
            nlink: if ft.is_dir() { 0 } else { m.nlink() },
            link: ft.is_symlink().then(|| std::fs::read_link(&p).unwrap_or_default()),
            content: ft.is_file().then(|| std::fs::read(&p).unwrap_or_default()),
            xattrs: xattr_names(&p),
        },
    );
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(&p).into_iter().flatten().flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            walk(root, &rel.join(n), skip, out);
        }
    }
}

/// Forget the mtime of the dir at `rel`: the harness itself creates and removes the
/// directory under test in it each run.
pub fn without_mtime(mut snap: BTreeMap<PathBuf, Node>, rel: &str) -> BTreeMap<PathBuf, Node> {
    if let Some(n) = snap.get_mut(Path::new(rel)) {
        n.mtime = (0, 0);
    }
    snap
}

/// The (dev, ino) of every node under `root`.
pub fn inodes(root: &Path) -> BTreeSet<(u64, u64)> {
    snapshot(root, &BTreeSet::new()).into_values().map(|n| n.ino).collect()
}

/// Panics with the first difference between two snapshots.
pub fn assert_same(what: &str, before: &BTreeMap<PathBuf, Node>, after: &BTreeMap<PathBuf, Node>) {
    if before == after {
        return;
    }
    for (k, v) in after {
        match before.get(k) {
            None => panic!("{what}: {k:?} appeared: {v:?}"),
            Some(b) if b != v => panic!("{what}: {k:?} changed: {b:?} -> {v:?}"),
            _ => {}
        }
    }
    for k in before.keys() {
        if !after.contains_key(k) {
            panic!("{what}: {k:?} disappeared");
        }
    }
}

/// Remove `dir` and everything beneath it, whatever the modes (we are root; chmod first for non-root runs).
pub fn remove_all(dir: &Path) {
    if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return;
    }
    let _ = std::process::Command::new("chmod").arg("-R").arg("u+rwx").arg(dir).status();
    std::fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("removing {}: {e}", dir.display()));
}
