//! Atomic uploads: a temp file next to the target, renamed over it on commit.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, fstat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};

use super::{FilesError, Ids, sys_err};
use crate::api::FileStat;

/// Unique among this process's uploads (a counter), and across processes when the kernel gives
/// randomness (a name taken anyway fails the exclusive create, which the caller retries).
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let extra = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r = crate::random::u64().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (u64::from(std::process::id()) << 32)
    });
    r ^ extra.rotate_left(17)
}

/// `.<name>.beam-upload-<random>`, kept under NAME_MAX however long `name` is.
pub(super) fn temp_name(name: &[u8]) -> Vec<u8> {
    let stem = &name[..name.len().min(200)];
    let mut t = Vec::with_capacity(stem.len() + 32);
    t.push(b'.');
    t.extend_from_slice(stem);
    t.extend_from_slice(format!(".beam-upload-{:016x}", random_u64()).as_bytes());
    t
}

/// A temporary directory entry that is unlinked on drop unless disarmed.
pub(super) struct TempEntry {
    pub(super) dir: OwnedFd,
    pub(super) name: Vec<u8>,
    pub(super) armed: bool,
}

impl TempEntry {
    /// Renames the temp entry over `target` in the same dir and disarms it.
    pub(super) fn rename_to(&mut self, target: &[u8]) -> nix::Result<()> {
        renameat(&self.dir, self.name.as_slice(), &self.dir, target)?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for TempEntry {
    fn drop(&mut self) {
        if self.armed {
            let _ = unlinkat(&self.dir, self.name.as_slice(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// Creates a fresh regular file under a temp name in `dir`, owned by (uid, gid) with `mode`.
pub(super) fn create_temp_file(
    dir: OwnedFd,
    name: &[u8],
    uid: u32,
    gid: u32,
    mode: Mode,
) -> nix::Result<(std::fs::File, TempEntry)> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut tries = 0;
    let (fd, tmp) = loop {
        let tmp = temp_name(name);
        match openat(&dir, tmp.as_slice(), flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => break (fd, tmp),
            Err(Errno::EEXIST) if tries < 8 => tries += 1,
            Err(e) => return Err(e),
        }
    };
    let temp = TempEntry { dir, name: tmp, armed: true };
    fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    fchmod(&fd, mode)?;
    Ok((std::fs::File::from(fd), temp))
}

/// An upload in progress: write to it, then `commit`. Dropped without commit, the temp file is
/// unlinked and the target is untouched.
#[derive(Debug)]
pub struct Upload {
    file: std::fs::File,
    temp: TempEntry,
    /// The target's name in the temp file's dir.
    target: String,
    /// The cleaned sandbox path, and the path as given (for messages).
    path: String,
    given: String,
    mode: Mode,
    ids: Ids,
}

impl std::fmt::Debug for TempEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempEntry")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("armed", &self.armed)
            .finish()
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Upload {
    pub(super) fn new(
        (file, temp): (std::fs::File, TempEntry),
        target: &str,
        path: String,
        given: &str,
        mode: Mode,
        ids: Ids,
    ) -> Self {
        Upload { file, temp, target: target.to_string(), path, given: given.to_string(), mode, ids }
    }

    /// Atomically replaces the target with what was written; returns its metadata.
    pub fn commit(mut self) -> Result<FileStat, FilesError> {
        let given = self.given.clone();
        self.file.flush().map_err(|e| FilesError::Io { path: given.clone(), op: "writing", source: e })?;
        // Writes by a process without CAP_FSETID clear setuid/setgid: set the mode once more.
        fchmod(&self.file, self.mode).map_err(|e| sys_err(&given, "chmod", e))?;
        let target = self.target.clone();
        self.temp.rename_to(target.as_bytes()).map_err(|e| match e {
            Errno::EISDIR | Errno::ENOTEMPTY | Errno::EEXIST => {
                FilesError::IsADirectory { path: given.clone(), hint: "remove it first, or upload to a path inside it" }
            }
            e => sys_err(&given, "renaming the upload into place", e),
        })?;
        let st = fstat(&self.file).map_err(|e| sys_err(&given, "stat", e))?;
        Ok(self.ids.stat(self.path.clone(), &target, &st, None))
    }
}
