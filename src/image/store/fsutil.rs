//! File plumbing of the store: the lock, temp entries that crash recovery can tell from live ones, atomic
//! writes, directory sizes.

use super::{Store, StoreError};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub(super) fn io_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io { path: path.to_path_buf(), msg: e.to_string() }
}

/// A file or directory under `<root>/tmp` that this process is writing: flocked for as long as it lives, so
/// that `open`/`gc` of another process can tell it from a crashed writer's leftover.
pub(super) struct TmpEntry {
    pub path: PathBuf,
    pub lock: Flock<File>,
}

/// An exclusive or shared hold of `<root>/lock`.
pub(super) type Lock = Flock<File>;

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    pub(super) fn lock_with(&self, arg: FlockArg) -> Result<Lock, StoreError> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        Flock::lock(file, arg).map_err(|(_, e)| io_err(&path, format!("taking the store lock: {e}")))
    }

    /// The exclusive store lock, for changes to records, names and pins, and for gc.
    pub(super) fn lock(&self) -> Result<Lock, StoreError> {
        self.lock_with(FlockArg::LockExclusive)
    }

    fn tmp_name(&self, kind: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root.join("tmp").join(format!("{kind}-{}-{nanos:x}-{n}", std::process::id()))
    }

    /// A new temp file, open for writing and flocked. Created under the shared store lock (unless the
    /// caller passes the exclusive one it holds) so that a concurrent cleanup, which holds it exclusively,
    /// never sees the file unlocked.
    pub(super) fn tmp_file(&self, kind: &str, held: Option<&Lock>) -> Result<TmpEntry, StoreError> {
        let _shared = if held.is_none() { Some(self.lock_with(FlockArg::LockShared)?) } else { None };
        let path = self.tmp_name(kind);
        let file =
            OpenOptions::new().write(true).create_new(true).mode(0o644).open(&path).map_err(|e| io_err(&path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io_err(&path, e))?;
        Ok(TmpEntry { path, lock })
    }

    /// A new empty temp directory (mode 0755), flocked (see [`Store::tmp_file`]).
    pub(super) fn tmp_dir(&self, kind: &str) -> Result<TmpEntry, StoreError> {
        let _shared = self.lock_with(FlockArg::LockShared)?;
        let path = self.tmp_name(kind);
        std::fs::DirBuilder::new().mode(0o755).create(&path).map_err(|e| io_err(&path, e))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| io_err(&path, e))?;
        let dir = File::open(&path).map_err(|e| io_err(&path, e))?;
        let lock = Flock::lock(dir, FlockArg::LockExclusive).map_err(|(_, e)| io_err(&path, e))?;
        Ok(TmpEntry { path, lock })
    }

    /// Remove what crashed writers left in tmp/: every entry nobody holds a flock on. The caller holds the
    /// exclusive store lock, so no writer is between creating and locking its entry.
    pub(super) fn clean_tmp(&self) -> Result<(), StoreError> {
        let tmp = self.root.join("tmp");
        for entry in std::fs::read_dir(&tmp).map_err(|e| io_err(&tmp, e))? {
            let path = entry.map_err(|e| io_err(&tmp, e))?.path();
            let Ok(f) = File::open(&path) else { continue };
            match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(held) => {
                    tracing::info!(path = %path.display(), "removing a leftover of an interrupted write");
                    remove_any(&path)?;
                    drop(held);
                }
                Err((_, Errno::EWOULDBLOCK)) => {} // a live writer's
                Err((_, e)) => return Err(io_err(&path, e)),
            }
        }
        Ok(())
    }
}

/// Remove a file or a directory tree (never following symlinks); a missing path is fine.
pub(super) fn remove_any(path: &Path) -> Result<(), StoreError> {
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    r.map_err(|e| io_err(path, e))
}

pub(super) fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path).and_then(|d| d.sync_all()).map_err(|e| io_err(path, e))
}

/// Write `bytes` to `dest` atomically: a temp file in tmp/, fsync, rename, fsync of the directory. The
/// caller holds the exclusive store lock.
pub(super) fn write_atomic(store: &Store, held: &Lock, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = store.tmp_file("write", Some(held))?;
    let res = (|| {
        let mut f: &File = &tmp.lock;
        f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| io_err(&tmp.path, e))?;
        std::fs::rename(&tmp.path, dest).map_err(|e| io_err(dest, e))?;
        sync_dir(dest.parent().expect("store paths have a parent"))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp.path);
    }
    res
}

/// Apparent size of a tree: regular files and symlinks, each inode once; never follows symlinks.
pub(super) fn tree_size(path: &Path) -> u64 {
    fn walk(p: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
        let Ok(m) = std::fs::symlink_metadata(p) else { return 0 };
        if m.is_dir() {
            let Ok(rd) = std::fs::read_dir(p) else { return 0 };
            return rd.flatten().map(|e| walk(&e.path(), seen)).sum();
        }
        if m.nlink() > 1 && !seen.insert((m.dev(), m.ino())) {
            return 0;
        }
        m.len()
    }
    walk(path, &mut Default::default())
}
