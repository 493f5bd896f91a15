//! `beam cp`: files between the host and a sandbox, with `docker cp`'s rules. Bodies stream both
//! ways: downloads are written (or untarred) as they arrive; uploads are read (or tarred) on a
//! thread feeding the request body.

use crate::client::{self, Client, Error, q, sandbox_path, usage};
use crate::output::out;
use beam::api::{FileStat, FileType, Sandbox};
use bytes::Bytes;
use clap::Args;
use hyper::Method;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use tokio::sync::mpsc;

#[derive(Args)]
pub struct CpArgs {
    /// SANDBOX:PATH, a host path, or - (a tar on stdin).
    src: String,
    /// SANDBOX:PATH, a host path, or - (a tar on stdout).
    dst: String,
}

#[derive(Debug, PartialEq, Eq)]
enum Loc {
    Local(PathBuf),
    Stdio,
    Remote { sandbox: String, path: String },
}

/// Docker's rule: `NAME:PATH` is remote unless the part before the colon has a `/` (use `./a:b`
/// for a host file with a colon).
fn parse_loc(s: &str) -> Loc {
    if s == "-" {
        return Loc::Stdio;
    }
    if !s.starts_with('/')
        && !s.starts_with('.')
        && let Some((sb, p)) = s.split_once(':')
        && !sb.is_empty()
        && !sb.contains('/')
    {
        return Loc::Remote { sandbox: sb.to_string(), path: p.to_string() };
    }
    Loc::Local(PathBuf::from(s))
}

/// A sandbox path made absolute (relative ones start at the sandbox's workdir); whether it asked
/// for a directory's contents (`dir/.`).
fn remote_path(workdir: &str, p: &str) -> (String, bool) {
    let contents = p == "." || p.ends_with("/.");
    let p = p.strip_suffix('.').filter(|_| contents).unwrap_or(p);
    let abs = if p.starts_with('/') { p.to_string() } else { format!("{}/{p}", workdir.trim_end_matches('/')) };
    let trimmed = abs.trim_end_matches('/');
    (if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() }, contents)
}

/// The last component of a path ("" for /).
fn basename(p: &str) -> &str {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

fn join_remote(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

fn io_err(what: &Path, e: std::io::Error) -> Error {
    usage(format!("{}: {}", what.display(), client::reason(&e)))
}

pub async fn cp(c: &Client, a: CpArgs) -> Result<i32, Error> {
    let (src, dst) = (parse_loc(&a.src), parse_loc(&a.dst));
    match (src, dst) {
        (Loc::Remote { .. }, Loc::Remote { .. }) => {
            Err(usage("cp: copying between two sandboxes is not supported; copy to the host first"))
        }
        (Loc::Remote { sandbox, path }, local) => {
            let (path, contents) = resolve(c, &sandbox, &path).await?;
            download(c, &sandbox, &path, contents, local).await.map(|_| 0)
        }
        (local, Loc::Remote { sandbox, path }) => {
            let raw_dir = path.ends_with('/');
            let (path, _) = resolve(c, &sandbox, &path).await?;
            upload(c, &sandbox, &path, raw_dir, local).await.map(|_| 0)
        }
        _ => Err(usage("cp: one of SRC and DST must be SANDBOX:PATH (e.g. beam cp ./app.py web:/app/)")),
    }
}

async fn resolve(c: &Client, sandbox: &str, p: &str) -> Result<(String, bool), Error> {
    if p.is_empty() {
        return Err(usage(format!("cp: give a path inside the sandbox: {sandbox}:/PATH")));
    }
    let workdir = if p.starts_with('/') {
        "/".to_string()
    } else {
        let sb: Sandbox = c.get(&sandbox_path(sandbox, "")).await?;
        sb.workdir
    };
    Ok(remote_path(&workdir, p))
}

async fn stat(c: &Client, sandbox: &str, path: &str) -> Result<Option<FileStat>, Error> {
    match c.get::<FileStat>(&sandbox_path(sandbox, &format!("/files/stat?path={}", q(path)))).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Feed a response body to a blocking consumer (`f` reads it) on another thread.
async fn into_blocking<T: Send + 'static>(
    mut body: hyper::body::Incoming,
    f: impl FnOnce(ChanReader) -> Result<T, Error> + Send + 'static,
) -> Result<(T, u64), Error> {
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let h = tokio::task::spawn_blocking(move || f(ChanReader { rx, cur: Bytes::new() }));
    let mut n = 0u64;
    let fed: Result<(), Error> = async {
        while let Some(chunk) = client::next_chunk(&mut body).await? {
            n += chunk.len() as u64;
            if tx.send(chunk).await.is_err() {
                break; // the consumer stopped: its error says why
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    let r = h.await.map_err(|e| usage(format!("cp: {e}")))?;
    fed?;
    r.map(|t| (t, n))
}

/// A blocking reader over chunks from an async task.
struct ChanReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

async fn download(c: &Client, sandbox: &str, path: &str, contents: bool, dst: Loc) -> Result<(), Error> {
    let st: FileStat = c.get(&sandbox_path(sandbox, &format!("/files/stat?path={}", q(path)))).await?;
    let resp = c.call(Method::GET, &sandbox_path(sandbox, &format!("/files?path={}", q(path))), None::<&()>).await?;
    let is_tar = client::content_type(&resp) == "application/x-tar";
    let len = resp.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut body = resp.into_body();
    let name = basename(path).to_string();
    match dst {
        Loc::Stdio if is_tar => {
            while let Some(chunk) = client::next_chunk(&mut body).await? {
                out(&chunk)?;
            }
            Ok(())
        }
        Loc::Stdio => {
            // Like docker: a single file comes out as a one-entry tar.
            let size = len.unwrap_or(st.size);
            let mode = st.mode;
            let mtime = st.mtime.timestamp().max(0) as u64;
            let ((), n) = into_blocking(body, move |r| {
                let mut h = tar::Header::new_gnu();
                h.set_size(size);
                h.set_mode(mode & 0o7777);
                h.set_mtime(mtime);
                h.set_entry_type(tar::EntryType::Regular);
                let mut b = tar::Builder::new(StdoutWriter);
                b.append_data(&mut h, &name, r.take(size)).map_err(stdout_err)?;
                b.into_inner().map_err(stdout_err)?;
                Ok(())
            })
            .await?;
            if n != size {
                return Err(usage(format!("{sandbox}:{path}: got {n} bytes, expected {size}; the file changed while copying")));
            }
            Ok(())
        }
        Loc::Local(dst) if is_tar => {
            let existing = std::fs::metadata(&dst).ok();
            let (dir, strip) = match existing {
                Some(m) if m.is_dir() => (dst.clone(), if contents { 1 } else { 0 }),
                Some(_) => return Err(usage(format!("cp: cannot copy directory {sandbox}:{path} onto file {}", dst.display()))),
                None => {
                    let parent = dst.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                    if !parent.is_dir() {
                        return Err(usage(format!("cp: {}: no such directory", parent.display())));
                    }
                    std::fs::create_dir(&dst).map_err(|e| io_err(&dst, e))?;
                    (dst.clone(), 1)
                }
            };
            into_blocking(body, move |r| extract(r, &dir, strip)).await?;
            Ok(())
        }
        Loc::Local(dst) => {
            let target = if dst.is_dir() {
                dst.join(&name)
            } else if dst.as_os_str().to_string_lossy().ends_with('/') {
                return Err(usage(format!("cp: {}: no such directory", dst.display())));
            } else {
                dst
            };
            let mut f = std::fs::File::create(&target).map_err(|e| io_err(&target, e))?;
            while let Some(chunk) = client::next_chunk(&mut body).await? {
                f.write_all(&chunk).map_err(|e| io_err(&target, e))?;
            }
            f.set_permissions(std::fs::Permissions::from_mode(st.mode & 0o7777)).map_err(|e| io_err(&target, e))?;
            Ok(())
        }
        Loc::Remote { .. } => unreachable!("both remote is refused earlier"),
    }
}

struct StdoutWriter;

impl Write for StdoutWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

fn stdout_err(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe { Error::BrokenPipe } else { usage(format!("writing to stdout: {e}")) }
}

/// A tar entry's path below `dst`, with `strip` leading components removed; None for what the
/// stripping removes entirely; an error for absolute paths and `..`.
fn entry_rel(path: &Path, strip: usize, dst: &Path) -> Result<Option<PathBuf>, Error> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            _ => {
                return Err(usage(format!("cp: refusing tar entry {}: it would land outside {}", path.display(), dst.display())));
            }
        }
    }
    if parts.len() <= strip {
        return Ok(None);
    }
    Ok(Some(parts[strip..].iter().collect()))
}

/// Untar `r` into the existing dir `dst`, refusing entries that would land outside it (`..`,
/// absolute paths, or through symlinks the archive made).
pub fn extract(r: impl Read, dst: &Path, strip: usize) -> Result<(), Error> {
    let root = dst.canonicalize().map_err(|e| io_err(dst, e))?;
    let mut ar = tar::Archive::new(r);
    let bad = |e: std::io::Error| usage(format!("cp: reading the archive: {e}"));
    let mut dirs = Vec::new();
    for e in ar.entries().map_err(bad)? {
        let mut e = e.map_err(bad)?;
        let path = e.path().map_err(bad)?.into_owned();
        let Some(rel) = entry_rel(&path, strip, dst)? else { continue };
        let target = root.join(&rel);
        let outside = || usage(format!("cp: refusing tar entry {}: it would land outside {}", path.display(), dst.display()));
        let parent = target.parent().ok_or_else(outside)?;
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        if !parent.canonicalize().map_err(|e| io_err(parent, e))?.starts_with(&root) {
            return Err(outside());
        }
        let kind = e.header().entry_type();
        let existing = std::fs::symlink_metadata(&target).ok();
        match existing {
            Some(m) if m.file_type().is_symlink() => std::fs::remove_file(&target).map_err(|e| io_err(&target, e))?,
            Some(m) if m.is_dir() && !kind.is_dir() => {
                return Err(usage(format!("cp: cannot overwrite directory {} with a non-directory", target.display())));
            }
            Some(m) if !m.is_dir() && kind.is_dir() => {
                return Err(usage(format!("cp: cannot overwrite non-directory {} with a directory", target.display())));
            }
            Some(m) if !m.is_dir() => std::fs::remove_file(&target).map_err(|e| io_err(&target, e))?,
            _ => {}
        }
        match kind {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(|e| io_err(&target, e))?;
                // Modes (maybe read-only) are set once everything inside is written.
                dirs.push((target, e.header().mode().unwrap_or(0o755)));
            }
            tar::EntryType::Link => {
                let ln = e.link_name().map_err(bad)?.ok_or_else(outside)?.into_owned();
                let src = entry_rel(&ln, strip, dst)?.ok_or_else(outside)?;
                let src = root.join(src);
                if !src.parent().and_then(|p| p.canonicalize().ok()).is_some_and(|p| p.starts_with(&root)) {
                    return Err(outside());
                }
                std::fs::hard_link(&src, &target).map_err(|e| io_err(&target, e))?;
            }
            tar::EntryType::Block | tar::EntryType::Char => {
                tracing::warn!("cp: skipping device {}", path.display());
            }
            _ => {
                e.set_preserve_mtime(true);
                e.set_preserve_permissions(true);
                e.unpack(&target).map_err(|err| io_err(&target, err))?;
            }
        }
    }
    for (d, mode) in dirs.into_iter().rev() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode & 0o7777)).map_err(|e| io_err(&d, e))?;
    }
    Ok(())
}

/// A writer that sends what it gets as body chunks.
struct ChanWriter(mpsc::Sender<std::io::Result<Bytes>>);

impl Write for ChanWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(b)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "beamd stopped reading the upload"))?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A request body produced on a thread by `f` writing into it (errors abort the upload).
fn body_from_thread(f: impl FnOnce(&mut std::io::BufWriter<ChanWriter>) -> std::io::Result<()> + Send + 'static) -> client::Body {
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, ChanWriter(tx.clone()));
        if let Err(e) = f(&mut w).and_then(|_| w.flush()) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    client::channel_body(rx)
}

/// The contents of `dir` (not `dir` itself) as a tar, symlinks kept as links.
pub fn tar_dir(w: impl Write, dir: &Path) -> std::io::Result<()> {
    fn walk<W: Write>(b: &mut tar::Builder<W>, base: &Path, rel: &Path) -> std::io::Result<()> {
        let here = base.join(rel);
        let mut entries: Vec<_> = std::fs::read_dir(&here)
            .and_then(|d| d.collect::<Result<Vec<_>, _>>())
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", here.display())))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let r = rel.join(e.file_name());
            let full = base.join(&r);
            let ft = e.file_type()?;
            if ft.is_dir() {
                b.append_dir(&r, &full)?;
                walk(b, base, &r)?;
            } else if ft.is_file() || ft.is_symlink() {
                b.append_path_with_name(&full, &r).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", full.display())))?;
            } else {
                tracing::warn!("cp: skipping {} (not a file, directory or symlink)", full.display());
            }
        }
        Ok(())
    }
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    walk(&mut b, dir, Path::new(""))?;
    b.into_inner()?.flush()
}

async fn upload(c: &Client, sandbox: &str, path: &str, dir_wanted: bool, src: Loc) -> Result<(), Error> {
    let put_tar = |target: String, body: client::Body| async move {
        let resp = c.put_stream(&sandbox_path(sandbox, &format!("/files?path={}", q(&target))), "application/x-tar", None, body).await?;
        client::read_all(resp.into_body()).await.map(|_| ())
    };
    match src {
        Loc::Stdio => {
            let body = body_from_thread(|w| std::io::copy(&mut std::io::stdin().lock(), w).map(|_| ()));
            put_tar(path.to_string(), body).await
        }
        Loc::Local(p) => {
            let m = std::fs::metadata(&p).map_err(|e| io_err(&p, e))?;
            let remote = stat(c, sandbox, path).await?;
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            let contents = p.as_os_str().to_string_lossy().ends_with("/.") || p.as_os_str() == ".";
            if m.is_dir() {
                let target = match (&remote, &name) {
                    (Some(r), _) if r.kind != FileType::Dir => {
                        return Err(usage(format!("cp: cannot copy directory {} onto file {sandbox}:{path}", p.display())));
                    }
                    (Some(_), Some(n)) if !contents => join_remote(path, n),
                    _ => path.to_string(),
                };
                let dir = p.clone();
                put_tar(target, body_from_thread(move |w| tar_dir(w, &dir))).await
            } else if m.is_file() {
                let name = name.ok_or_else(|| usage(format!("cp: {}: not a file name", p.display())))?;
                let target = match &remote {
                    Some(r) if r.kind == FileType::Dir => join_remote(path, &name),
                    None if dir_wanted => return Err(usage(format!("cp: {sandbox}:{path}: no such directory"))),
                    _ => path.to_string(),
                };
                let mut f = std::fs::File::open(&p).map_err(|e| io_err(&p, e))?;
                let body = body_from_thread(move |w| std::io::copy(&mut f, w).map(|_| ()));
                let mode = m.permissions().mode() & 0o7777;
                let url = sandbox_path(sandbox, &format!("/files?path={}&mode={mode}", q(&target)));
                let resp = c.put_stream(&url, "application/octet-stream", Some(m.len()), body).await?;
                client::read_all(resp.into_body()).await.map(|_| ())
            } else {
                Err(usage(format!("cp: {}: not a regular file or directory", p.display())))
            }
        }
        Loc::Remote { .. } => unreachable!("both remote is refused earlier"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(parse_loc("web:/app"), Loc::Remote { sandbox: "web".into(), path: "/app".into() });
        assert_eq!(parse_loc("web:rel/x"), Loc::Remote { sandbox: "web".into(), path: "rel/x".into() });
        assert_eq!(parse_loc("-"), Loc::Stdio);
        assert_eq!(parse_loc("./a:b"), Loc::Local("./a:b".into()));
        assert_eq!(parse_loc("/tmp/a:b"), Loc::Local("/tmp/a:b".into()));
        assert_eq!(parse_loc("dir/a:b"), Loc::Local("dir/a:b".into()));
        assert_eq!(parse_loc("file.txt"), Loc::Local("file.txt".into()));
        assert_eq!(parse_loc(":x"), Loc::Local(":x".into()));
    }

    #[test]
    fn remote_paths() {
        assert_eq!(remote_path("/", "/app/"), ("/app".into(), false));
        assert_eq!(remote_path("/work", "src"), ("/work/src".into(), false));
        assert_eq!(remote_path("/work/", "src/."), ("/work/src".into(), true));
        assert_eq!(remote_path("/work", "."), ("/work".into(), true));
        assert_eq!(remote_path("/", "/"), ("/".into(), false));
        assert_eq!(basename("/a/b.txt"), "b.txt");
        assert_eq!(basename("/a/dir/"), "dir");
        assert_eq!(join_remote("/", "x"), "/x");
        assert_eq!(join_remote("/app", "x"), "/app/x");
    }

    #[test]
    fn both_or_neither_remote() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let c = Client::new(&client::DaemonArgs { socket: "/nonexistent".into(), url: None, token_file: None }).unwrap();
        let e = rt.block_on(cp(&c, CpArgs { src: "a:/x".into(), dst: "b:/y".into() })).unwrap_err();
        assert!(e.to_string().contains("two sandboxes"), "{e}");
        let e = rt.block_on(cp(&c, CpArgs { src: "./a".into(), dst: "/b".into() })).unwrap_err();
        assert!(e.to_string().contains("must be SANDBOX:PATH"), "{e}");
        let e = rt.block_on(cp(&c, CpArgs { src: "-".into(), dst: "-".into() })).unwrap_err();
        assert!(e.to_string().contains("must be SANDBOX:PATH"), "{e}");
        let e = rt.block_on(cp(&c, CpArgs { src: "web:".into(), dst: ".".into() })).unwrap_err();
        assert!(e.to_string().contains("give a path"), "{e}");
    }

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::write(root.join("d/a.txt"), "hello").unwrap();
        std::fs::write(root.join("d/sub/b.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("d/sub/b.sh"), std::fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("d/link")).unwrap();
    }

    #[test]
    fn tar_round_trip() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path());
        let mut tarball = Vec::new();
        tar_dir(&mut tarball, &t.path().join("d")).unwrap();
        let out = t.path().join("out");
        std::fs::create_dir(&out).unwrap();
        extract(tarball.as_slice(), &out, 0).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "hello");
        assert_eq!(std::fs::metadata(out.join("sub/b.sh")).unwrap().permissions().mode() & 0o777, 0o751);
        assert_eq!(std::fs::read_link(out.join("link")).unwrap(), Path::new("a.txt"));
        // Again over the same tree: files are replaced.
        extract(tarball.as_slice(), &out, 0).unwrap();

        // A server tar has the dir's own name on top: strip it to land the contents in DST.
        let mut b = tar::Builder::new(Vec::new());
        b.append_dir_all("d", t.path().join("d")).unwrap();
        let server = b.into_inner().unwrap();
        let out2 = t.path().join("out2");
        std::fs::create_dir(&out2).unwrap();
        extract(server.as_slice(), &out2, 1).unwrap();
        assert_eq!(std::fs::read_to_string(out2.join("sub/b.sh")).unwrap(), "#!/bin/sh\n");
        let out3 = t.path().join("out3");
        std::fs::create_dir(&out3).unwrap();
        extract(server.as_slice(), &out3, 0).unwrap();
        assert_eq!(std::fs::read_to_string(out3.join("d/a.txt")).unwrap(), "hello");
    }

    fn raw_entry(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        // Set the name bytes directly: tar's set_path refuses `..`, a hostile server would not.
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    #[test]
    fn refuses_escapes() {
        let t = tempfile::tempdir().unwrap();
        let dst = t.path().join("dst");
        std::fs::create_dir(&dst).unwrap();
        for (name, kind, link) in [
            ("../evil", tar::EntryType::Regular, None),
            ("/etc/evil", tar::EntryType::Regular, None),
            ("ok/../../evil", tar::EntryType::Regular, None),
        ] {
            let mut b = tar::Builder::new(Vec::new());
            raw_entry(&mut b, name, kind, link, b"x");
            let e = extract(b.into_inner().unwrap().as_slice(), &dst, 0).unwrap_err();
            assert!(e.to_string().contains("outside"), "{name}: {e}");
        }
        // A symlink to outside, then a file written through it.
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, "esc", tar::EntryType::Symlink, Some(t.path().to_str().unwrap()), b"");
        raw_entry(&mut b, "esc/evil", tar::EntryType::Regular, None, b"x");
        let e = extract(b.into_inner().unwrap().as_slice(), &dst, 0).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        // A hard link to a host file.
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, "hl", tar::EntryType::Link, Some("../secret"), b"");
        assert!(extract(b.into_inner().unwrap().as_slice(), &dst, 0).is_err());
        // A symlink replacing an existing file must not be written through.
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, "f", tar::EntryType::Symlink, Some("/etc/passwd"), b"");
        raw_entry(&mut b, "f", tar::EntryType::Regular, None, b"new");
        extract(b.into_inner().unwrap().as_slice(), &dst, 0).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("f")).unwrap(), "new");
        assert!(!t.path().join("evil").exists());
    }

    #[test]
    fn chan_reader_reads_across_chunks() {
        let (tx, rx) = mpsc::channel(4);
        let h = std::thread::spawn(move || {
            let mut s = String::new();
            ChanReader { rx, cur: Bytes::new() }.read_to_string(&mut s).unwrap();
            s
        });
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            for p in ["ab", "", "cde", "f"] {
                tx.send(Bytes::from(p)).await.unwrap();
            }
        });
        drop(tx);
        assert_eq!(h.join().unwrap(), "abcdef");
    }
}
