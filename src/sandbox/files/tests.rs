//! Tests for the files API, on tempdirs standing in for a sandbox root; a marker file outside the root
//! must never be read, written or removed. Whatever creates files needs root (new entries get the
//! sandbox's owners): those tests are `#[ignore = "needs root"]` and call `require_root()`; the
//! read-only and refusal tests run as anyone.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::{FilesError, SandboxFs};
use crate::api::FileType;
use crate::test_support::require_root;

const SECRET: &[u8] = b"SECRET outside the sandbox";

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    marker: PathBuf,
    fs: SandboxFs,
}

fn fixture(id_base: Option<u32>) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&outside).unwrap();
    let marker = outside.join("marker");
    fs::write(&marker, SECRET).unwrap();
    let fs = SandboxFs::open_root(&root, id_base).unwrap();
    Fixture { _tmp: tmp, root, outside, marker, fs }
}

impl Fixture {
    /// The marker is intact and nothing else appeared outside the root.
    fn assert_outside_untouched(&self) {
        assert_eq!(fs::read(&self.marker).unwrap(), SECRET);
        let names: Vec<_> = fs::read_dir(&self.outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec!["marker"], "something appeared outside the root");
        let tmp: Vec<_> = fs::read_dir(self.root.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(tmp.len(), 2, "something appeared next to the root: {tmp:?}");
    }

    fn host(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    fn upload(&self, path: &str, mode: u32, data: &[u8]) -> crate::api::FileStat {
        let mut up = self.fs.create_file(path, mode).unwrap();
        up.write_all(data).unwrap();
        up.commit().unwrap()
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, FilesError> {
        let (mut f, _) = self.fs.open_read(path)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        Ok(v)
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
#[ignore = "needs root"]
fn stat_list_mkdir_remove_read_round_trip() {
    require_root();
    let f = fixture(None);
    let st = f.fs.mkdir("/a", false, 0o755).unwrap();
    assert_eq!((st.path.as_str(), st.name.as_str(), st.kind, st.mode), ("/a", "a", FileType::Dir, 0o755));
    let e = f.fs.mkdir("/a", false, 0o755).unwrap_err();
    assert!(matches!(e, FilesError::AlreadyExists { .. }), "{e}");
    f.fs.mkdir("/a", true, 0o755).unwrap();
    let e = f.fs.mkdir("/a/b/c", false, 0o755).unwrap_err();
    assert!(matches!(e, FilesError::NotFound { .. }), "{e}");
    let st = f.fs.mkdir("/a/b/c", true, 0o700).unwrap();
    assert_eq!((st.path.as_str(), st.mode), ("/a/b/c", 0o700));
    assert_eq!(fs::metadata(f.host("/a/b")).unwrap().mode() & 0o7777, 0o755);

    let st = f.upload("/a/f", 0o644, b"hello");
    assert_eq!(
        (st.path.as_str(), st.name.as_str(), st.kind, st.size, st.mode),
        ("/a/f", "f", FileType::File, 5, 0o644)
    );
    assert_eq!(fs::read(f.host("/a/f")).unwrap(), b"hello");

    let list = f.fs.list("/a").unwrap();
    assert_eq!(list.path, "/a");
    let got: Vec<_> = list.entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(got, vec![("/a/b", FileType::Dir), ("/a/f", FileType::File)]);
    let root = f.fs.list("/").unwrap();
    assert_eq!(root.entries.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), vec!["/a"]);
    let st = f.fs.stat("/").unwrap();
    assert_eq!((st.name.as_str(), st.kind), ("/", FileType::Dir));
    // Paths are cleaned lexically.
    assert_eq!(f.fs.stat("//a/./b/../f").unwrap().path, "/a/f");

    let (mut file, st) = f.fs.open_read("/a/f").unwrap();
    let mut s = String::new();
    file.read_to_string(&mut s).unwrap();
    assert_eq!((s.as_str(), st.size, st.path.as_str()), ("hello", 5, "/a/f"));

    let e = f.fs.list("/a/f").unwrap_err();
    assert!(matches!(e, FilesError::NotADirectory { .. }), "{e}");
    let e = f.fs.remove("/a", false).unwrap_err();
    assert!(matches!(e, FilesError::NotEmpty { .. }), "{e}");
    assert_eq!(e.to_string(), r#"path "/a" is a non-empty directory; pass recursive=true to remove it"#);
    f.fs.remove("/a/b/c", false).unwrap(); // empty dir: fine without recursive
    f.fs.remove("/a/f", false).unwrap();
    f.fs.remove("/a", true).unwrap();
    assert!(matches!(f.fs.stat("/a"), Err(FilesError::NotFound { .. })));
    assert!(matches!(f.fs.remove("/a", true), Err(FilesError::NotFound { .. })));
    assert!(matches!(f.fs.remove("/", true), Err(FilesError::RemoveRoot)));
    assert!(matches!(f.fs.remove("/x/..", true), Err(FilesError::RemoveRoot)));
    assert!(f.root.is_dir());
    f.assert_outside_untouched();
}

#[test]
fn bad_paths_are_rejected_with_clear_messages() {
    let f = fixture(None);
    let e = f.fs.stat("relative").unwrap_err();
    assert_eq!(e.to_string(), r#"path "relative" must be absolute (start with /)"#);
    assert!(matches!(e, FilesError::NotAbsolute { .. }), "{e}");
    for p in ["", "/a\0b", &format!("/{}", "a".repeat(5000))] {
        let e = f.fs.stat(p).unwrap_err();
        assert!(matches!(e, FilesError::InvalidPath { .. }), "{p:?}: {e}");
    }
    let e = f.fs.stat("/etc/nope").unwrap_err();
    assert_eq!(e.to_string(), r#"path "/etc/nope": no such file or directory in the sandbox"#);
    let e = f.fs.stat(&format!("/{}", "n".repeat(300))).unwrap_err();
    assert!(matches!(e, FilesError::InvalidPath { .. }), "{e}");
    assert!(matches!(f.fs.mkdir("/m", false, 0o10000), Err(FilesError::InvalidMode { .. })));
    assert!(matches!(f.fs.create_file("/m", 0o20644), Err(FilesError::InvalidMode { .. })));
    assert!(matches!(f.fs.create_file("/", 0o644), Err(FilesError::IsADirectory { .. })));
    assert!(matches!(f.fs.create_file("/no/such/dir/f", 0o644), Err(FilesError::NotFound { .. })));
    fs::write(f.host("/file"), b"x").unwrap();
    let e = f.fs.create_file("/file/f", 0o644).unwrap_err();
    assert!(matches!(e, FilesError::NotADirectory { .. }), "{e}");
    assert_eq!(fs::read(f.host("/file")).unwrap(), b"x");
}

#[test]
#[ignore = "needs root"]
fn modes_are_exact_despite_umask() {
    require_root();
    let f = fixture(None);
    for (p, mode) in [("/d777", 0o777), ("/sticky", 0o1777), ("/d500", 0o500)] {
        assert_eq!(f.fs.mkdir(p, false, mode).unwrap().mode, mode);
        assert_eq!(fs::metadata(f.host(p)).unwrap().mode() & 0o7777, mode, "{p}");
    }
    assert_eq!(f.fs.mkdir("/p/q", true, 0o777).unwrap().mode, 0o777);
    for (p, mode) in [("/f666", 0o666), ("/suid", 0o4755), ("/f600", 0o600), ("/f000", 0)] {
        assert_eq!(f.upload(p, mode, b"data").mode, mode);
        assert_eq!(fs::metadata(f.host(p)).unwrap().mode() & 0o7777, mode, "{p}");
        assert_eq!(f.fs.stat(p).unwrap().mode, mode);
    }
}

#[test]
#[ignore = "needs root"]
fn ownership_maps_through_the_user_namespace() {
    require_root();
    let f = fixture(Some(100_000));
    f.fs.mkdir("/x/y", true, 0o755).unwrap();
    for p in ["/x", "/x/y"] {
        let m = fs::metadata(f.host(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (100_000, 100_000), "{p}");
    }
    let st = f.upload("/x/y/file", 0o644, b"hi");
    assert_eq!((st.uid, st.gid), (0, 0));
    let m = fs::metadata(f.host("/x/y/file")).unwrap();
    assert_eq!((m.uid(), m.gid()), (100_000, 100_000));
    assert_eq!((f.fs.stat("/x/y/file").unwrap().uid, f.fs.stat("/x").unwrap().gid), (0, 0));

    std::os::unix::fs::chown(f.host("/x/y/file"), Some(5), Some(6)).unwrap();
    let st = f.fs.stat("/x/y/file").unwrap();
    assert_eq!((st.uid, st.gid), (65534, 65534));
    std::os::unix::fs::chown(f.host("/x/y/file"), Some(101_000), Some(165_535)).unwrap();
    let st = f.fs.stat("/x/y/file").unwrap();
    assert_eq!((st.uid, st.gid), (1000, 65535));
    std::os::unix::fs::chown(f.host("/x/y/file"), Some(165_536), Some(99_999)).unwrap();
    let st = &f.fs.list("/x/y").unwrap().entries[0];
    assert_eq!((st.uid, st.gid), (65534, 65534));

    let g = fixture(None);
    let st = g.upload("/file", 0o644, b"hi");
    assert_eq!((st.uid, st.gid), (0, 0));
    std::os::unix::fs::chown(g.host("/file"), Some(5), Some(7)).unwrap();
    let st = g.fs.stat("/file").unwrap();
    assert_eq!((st.uid, st.gid), (5, 7));
}

fn temp_names(dir: &Path) -> Vec<String> {
    names(dir).into_iter().filter(|n| n.contains(".beam-upload-")).collect()
}

#[test]
#[ignore = "needs root"]
fn upload_is_atomic_and_a_dropped_upload_leaves_nothing() {
    require_root();
    let f = fixture(None);
    fs::write(f.host("/t"), b"old contents").unwrap();
    let mut up = f.fs.create_file("/t", 0o600).unwrap();
    up.write_all(b"new contents, part 1;").unwrap();
    up.flush().unwrap();
    // Before commit, readers see the old file, and the data sits in one temp file.
    assert_eq!(fs::read(f.host("/t")).unwrap(), b"old contents");
    assert_eq!(f.read("/t").unwrap(), b"old contents");
    let temps = temp_names(&f.root);
    assert_eq!(temps.len(), 1);
    assert!(temps[0].starts_with(".t.beam-upload-"), "{temps:?}");
    up.write_all(b" part 2").unwrap();
    let st = up.commit().unwrap();
    assert_eq!((st.size, st.mode), (28, 0o600));
    assert_eq!(fs::read(f.host("/t")).unwrap(), b"new contents, part 1; part 2");
    assert!(temp_names(&f.root).is_empty());

    let mut up = f.fs.create_file("/t", 0o644).unwrap();
    up.write_all(b"never committed").unwrap();
    drop(up);
    assert_eq!(names(&f.root), vec!["t"]);
    assert_eq!(fs::read(f.host("/t")).unwrap(), b"new contents, part 1; part 2");

    // The target turned into a directory before commit: an error, and no temp is left.
    let mut up = f.fs.create_file("/late", 0o644).unwrap();
    up.write_all(b"x").unwrap();
    fs::create_dir(f.host("/late")).unwrap();
    fs::write(f.host("/late/inner"), b"keep").unwrap();
    let e = up.commit().unwrap_err();
    assert!(matches!(e, FilesError::IsADirectory { .. }), "{e}");
    assert_eq!(names(&f.root), vec!["late", "t"]);
    assert_eq!(fs::read(f.host("/late/inner")).unwrap(), b"keep");

    let e = f.fs.create_file("/late", 0o644).unwrap_err();
    assert!(matches!(e, FilesError::IsADirectory { .. }), "{e}");
    // A very long name still gets a valid temp name.
    let long = format!("/{}", "L".repeat(255));
    f.upload(&long, 0o644, b"long");
    assert_eq!(f.read(&long).unwrap(), b"long");
}

#[test]
#[ignore = "needs root"]
fn upload_replaces_a_symlink_instead_of_writing_through_it() {
    require_root();
    let f = fixture(None);
    symlink(&f.marker, f.host("/link")).unwrap();
    f.upload("/link", 0o644, b"replaced");
    assert!(fs::symlink_metadata(f.host("/link")).unwrap().file_type().is_file());
    assert_eq!(fs::read(f.host("/link")).unwrap(), b"replaced");
    f.assert_outside_untouched();
}

#[test]
#[ignore = "needs root"]
fn escapes_stay_inside_the_root() {
    require_root();
    let f = fixture(None);
    symlink("/", f.host("/escape")).unwrap();
    symlink("/etc/passwd", f.host("/abs")).unwrap();
    symlink("../outside/marker", f.host("/rel")).unwrap();
    symlink("../outside", f.host("/reldir")).unwrap();
    symlink(&f.marker, f.host("/mark")).unwrap();
    symlink(&f.outside, f.host("/outdir")).unwrap();
    let escapes = ["/escape/../../../etc/passwd", "/abs", "/rel", "/mark", "/../outside/marker", "/outdir/marker"];
    for p in escapes {
        let e = f.read(p).unwrap_err();
        assert!(matches!(e, FilesError::NotFound { .. }), "{p}: {e}");
    }
    // With an /etc/passwd inside the root, the same paths find that one.
    fs::create_dir(f.host("/etc")).unwrap();
    fs::write(f.host("/etc/passwd"), b"inside").unwrap();
    assert_eq!(f.read("/escape/../../../etc/passwd").unwrap(), b"inside");
    assert_eq!(f.read("/abs").unwrap(), b"inside");
    assert_eq!(f.read("/escape/escape/etc/passwd").unwrap(), b"inside");

    let st = f.fs.stat("/mark").unwrap();
    assert_eq!((st.kind, st.link_target.as_deref()), (FileType::Symlink, f.marker.to_str()));
    let e = f.fs.list("/escape").unwrap_err();
    assert!(matches!(e, FilesError::NotADirectory { .. }), "{e}");
    assert!(f.fs.list("/escape/etc").is_ok());

    for p in ["/mark/x", "/outdir/pwn", "/rel/pwn"] {
        assert!(f.fs.create_file(p, 0o644).is_err(), "{p}");
        assert!(f.fs.mkdir(p, false, 0o755).is_err(), "{p}");
        assert!(f.fs.remove(p, true).is_err(), "{p}");
    }
    // mkdir -p through a symlink that dangles inside the root fails, like mkdir -p does.
    for p in ["/reldir/made", "/outdir/x/y"] {
        let e = f.fs.mkdir(p, true, 0o755).unwrap_err();
        assert!(matches!(e, FilesError::NotFound { .. }), "{p}: {e}");
    }
    // Once their targets exist inside the root, writes through them land there.
    fs::create_dir(f.host("/outside")).unwrap();
    fs::create_dir_all(f.root.join(f.outside.strip_prefix("/").unwrap())).unwrap();
    f.fs.mkdir("/reldir/made", true, 0o755).unwrap();
    assert!(f.host("/outside/made").is_dir());
    f.upload("/reldir/made/f", 0o644, b"in");
    assert_eq!(fs::read(f.host("/outside/made/f")).unwrap(), b"in");
    f.fs.mkdir("/outdir/x/y", true, 0o755).unwrap();
    assert!(f.root.join(f.outside.strip_prefix("/").unwrap()).join("x/y").is_dir());
    f.upload("/outdir/pwn", 0o644, b"in");
    f.upload("/outside/marker", 0o644, b"inner marker");
    assert_eq!(f.read("/rel").unwrap(), b"inner marker");
    // mkdir onto an existing symlink is refused, even one to a directory.
    let e = f.fs.mkdir("/reldir", true, 0o755).unwrap_err();
    assert!(matches!(e, FilesError::AlreadyExists { .. }), "{e}");
    assert!(fs::symlink_metadata(f.host("/reldir")).unwrap().file_type().is_symlink());

    // Removing symlinks removes the links only.
    for p in ["/mark", "/outdir", "/rel", "/escape"] {
        f.fs.remove(p, true).unwrap();
        assert!(fs::symlink_metadata(f.host(p)).is_err());
    }
    f.assert_outside_untouched();
}

#[test]
fn magic_links_are_never_followed() {
    // The host's own root stands in for a sandbox with /proc mounted; read-only lookups only.
    let host = SandboxFs::open_root(Path::new("/"), None).unwrap();
    for p in ["/proc/self/root/etc/hostname", "/proc/self/cwd", "/proc/self/exe"] {
        let e = host.open_read(p).unwrap_err();
        assert!(matches!(e, FilesError::SymlinkLoop { .. }), "{p}: {e}");
    }
    assert!(host.stat("/proc/self/root").unwrap().link_target.is_some());
}

#[test]
fn recursive_remove_never_follows_symlinks() {
    let f = fixture(None);
    fs::create_dir_all(f.host("/keep")).unwrap();
    fs::write(f.host("/keep/k"), b"k").unwrap();
    fs::create_dir_all(f.host("/d/sub/deeper")).unwrap();
    fs::write(f.host("/d/f"), b"f").unwrap();
    fs::write(f.host("/d/sub/deeper/g"), b"g").unwrap();
    symlink(&f.outside, f.host("/d/out_abs")).unwrap();
    symlink("../../outside", f.host("/d/out_rel")).unwrap();
    symlink("/", f.host("/d/sub/root")).unwrap();
    symlink("/keep", f.host("/d/sub/deeper/keep")).unwrap();
    symlink(&f.marker, f.host("/d/marker")).unwrap();
    f.fs.remove("/d", true).unwrap();
    assert_eq!(names(&f.root), vec!["keep"]);
    assert_eq!(fs::read(f.host("/keep/k")).unwrap(), b"k");
    f.assert_outside_untouched();
}

#[test]
fn open_read_refuses_directories_and_special_files() {
    let f = fixture(None);
    fs::create_dir(f.host("/dir")).unwrap();
    let e = f.fs.open_read("/dir").unwrap_err();
    assert!(matches!(e, FilesError::IsADirectory { .. }), "{e}");
    nix::unistd::mkfifo(&f.host("/fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let e = f.fs.open_read("/fifo").unwrap_err(); // must not block waiting for a writer
    assert!(matches!(e, FilesError::NotRegularFile { kind: "FIFO", .. }), "{e}");
    assert_eq!(f.fs.stat("/fifo").unwrap().kind, FileType::Other);
    // A symlink to a file inside the root is followed for reading.
    fs::write(f.host("/dir/file"), b"via link").unwrap();
    symlink("dir/file", f.host("/l")).unwrap();
    let (_, st) = f.fs.open_read("/l").unwrap();
    assert_eq!((st.kind, st.size), (FileType::File, 8));
    // mkdir -p through a file fails; over a file fails.
    let e = f.fs.mkdir("/dir/file/x", true, 0o755).unwrap_err();
    assert!(matches!(e, FilesError::NotADirectory { .. }), "{e}");
    let e = f.fs.mkdir("/dir/file", true, 0o755).unwrap_err();
    assert!(e.to_string().contains("is not a directory"), "{e}");
}

// ---- tar ----

struct RawEntry<'a> {
    name: &'a [u8],
    kind: EntryType,
    data: &'a [u8],
    link: &'a [u8],
    uid: u64,
    /// Declared size when it differs from data.len() (a truncated stream).
    size: Option<u64>,
}

fn entry<'a>(name: &'a str, kind: EntryType, data: &'a [u8], link: &'a str) -> RawEntry<'a> {
    RawEntry { name: name.as_bytes(), kind, data, link: link.as_bytes(), uid: 0, size: None }
}

/// A tar built by hand, so names the tar crate's builder refuses (`..`, absolute) can be tested.
fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..e.name.len()].copy_from_slice(e.name);
            gnu.linkname[..e.link.len()].copy_from_slice(e.link);
        }
        h.set_entry_type(e.kind);
        h.set_size(e.size.unwrap_or(e.data.len() as u64));
        h.set_mode(if e.kind == EntryType::Directory { 0o755 } else { 0o644 });
        h.set_uid(e.uid);
        h.set_gid(e.uid);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(e.data);
        if e.size.is_some() {
            return out; // truncated: the stream just ends
        }
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
#[ignore = "needs root"]
fn tar_round_trip_stores_symlinks_not_their_targets() {
    require_root();
    let f = fixture(Some(100_000));
    f.fs.mkdir("/src/sub", true, 0o755).unwrap();
    f.fs.mkdir("/src/empty", false, 0o700).unwrap();
    f.upload("/src/a.txt", 0o640, b"alpha");
    f.upload("/src/sub/b.bin", 0o755, &[7u8; 3000]);
    std::os::unix::fs::chown(f.host("/src/sub/b.bin"), Some(100_007), Some(5)).unwrap();
    symlink(&f.outside, f.host("/src/link")).unwrap();
    symlink("a.txt", f.host("/src/rel")).unwrap();
    for l in ["/src/link", "/src/rel"] {
        std::os::unix::fs::lchown(f.host(l), Some(100_000), Some(100_000)).unwrap();
    }
    let _socket = std::os::unix::net::UnixListener::bind(f.host("/src/sock")).unwrap();

    let mut tar_bytes = Vec::new();
    f.fs.write_tar("/src", &mut tar_bytes).unwrap();
    assert!(!tar_bytes.windows(SECRET.len()).any(|w| w == SECRET), "the symlink's target was archived");
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut seen = Vec::new();
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let link = e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
        seen.push((
            e.path().unwrap().to_string_lossy().into_owned(),
            h.entry_type(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            link,
        ));
    }
    let outside = f.outside.to_string_lossy().into_owned();
    use EntryType::*;
    assert_eq!(
        seen,
        vec![
            ("src".into(), Directory, 0, 0, None),
            ("src/a.txt".into(), Regular, 0, 0, None),
            ("src/empty".into(), Directory, 0, 0, None),
            ("src/link".into(), Symlink, 0, 0, Some(outside.clone())),
            ("src/rel".into(), Symlink, 0, 0, Some("a.txt".into())),
            ("src/sub".into(), Directory, 0, 0, None),
            ("src/sub/b.bin".into(), Regular, 7, 65534, None),
        ]
    );

    assert_eq!(f.fs.extract_tar("/dst/deep", tar_bytes.as_slice()).unwrap(), 7);
    let d = f.host("/dst/deep/src");
    assert_eq!(fs::read(d.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(fs::metadata(d.join("a.txt")).unwrap().permissions().mode() & 0o7777, 0o640);
    assert_eq!(fs::metadata(d.join("empty")).unwrap().permissions().mode() & 0o7777, 0o700);
    assert_eq!(fs::read(d.join("sub/b.bin")).unwrap(), vec![7u8; 3000]);
    let m = fs::metadata(d.join("sub/b.bin")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777, m.mtime()),
        (100_007, 165_534, 0o755, fs::metadata(f.host("/src/sub/b.bin")).unwrap().mtime())
    );
    assert_eq!(fs::read_link(d.join("link")).unwrap(), f.outside);
    assert_eq!(fs::symlink_metadata(d.join("link")).unwrap().uid(), 100_000);
    assert_eq!(fs::read_link(d.join("rel")).unwrap(), Path::new("a.txt"));
    assert!(temp_names(&d).is_empty());
    // Extracting again over the existing tree replaces files in place.
    assert_eq!(f.fs.extract_tar("/dst/deep", tar_bytes.as_slice()).unwrap(), 7);

    // A single file, a symlink, and the whole root.
    let mut one = Vec::new();
    f.fs.write_tar("/src/link", &mut one).unwrap();
    let mut a = tar::Archive::new(one.as_slice());
    let only: Vec<_> = a.entries().unwrap().map(|e| e.unwrap().header().entry_type()).collect();
    assert_eq!(only, vec![Symlink]);
    let mut all = Vec::new();
    f.fs.write_tar("/", &mut all).unwrap();
    let mut a = tar::Archive::new(all.as_slice());
    let paths: Vec<_> =
        a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(paths[0], "./");
    assert!(paths.contains(&"src/sub/b.bin".to_string()), "{paths:?}");
    assert!(matches!(f.fs.write_tar("/src/sock", Vec::new()), Err(FilesError::NotRegularFile { kind: "socket", .. })));
    f.assert_outside_untouched();
}

#[test]
#[ignore = "needs root"]
fn tar_escapes_are_refused() {
    require_root();
    let f = fixture(Some(100_000));
    let outside = f.outside.to_str().unwrap().to_string();
    let marker = f.marker.to_str().unwrap().to_string();
    let pwn = format!("{outside}/pwn");
    let cases: Vec<(&str, Vec<RawEntry>)> = vec![
        ("dotdot", vec![entry("../x", EntryType::Regular, b"x", "")]),
        ("dotdot-deep", vec![entry("ok/../../../outside/pwn", EntryType::Regular, b"x", "")]),
        ("absolute", vec![entry(&pwn, EntryType::Regular, b"x", "")]),
        (
            "symlink-then-file",
            vec![entry("a", EntryType::Symlink, b"", &outside), entry("a/pwn", EntryType::Regular, b"x", "")],
        ),
        (
            "symlink-then-dir",
            vec![entry("b", EntryType::Symlink, b"", "../../outside"), entry("b/pwn/", EntryType::Directory, b"", "")],
        ),
        ("hardlink-dotdot", vec![entry("h", EntryType::Link, b"", "../outside/marker")]),
        ("hardlink-absolute", vec![entry("h", EntryType::Link, b"", &marker)]),
        (
            "hardlink-via-symlink",
            vec![entry("s", EntryType::Symlink, b"", &outside), entry("h", EntryType::Link, b"", "s/marker")],
        ),
        ("device", vec![entry("dev", EntryType::Char, b"", "")]),
        ("big-uid", vec![RawEntry { uid: 70_000, ..entry("u", EntryType::Regular, b"x", "") }]),
    ];
    for (what, entries) in cases {
        let dir = format!("/x-{what}");
        let e = f.fs.extract_tar(&dir, raw_tar(&entries).as_slice()).unwrap_err();
        assert!(matches!(e, FilesError::BadTarEntry { .. }), "{what}: {e}");
        let last = String::from_utf8_lossy(entries.last().unwrap().name).into_owned();
        assert!(e.to_string().contains(&format!("{last:?}")), "{what}: the message names the entry: {e}");
        assert!(temp_names(&f.host(&dir)).is_empty(), "{what}");
        assert!(!f.host(&dir).join("pwn").exists() && !f.host(&dir).join("h").exists(), "{what}");
        f.assert_outside_untouched();
    }
    assert!(!f.root.parent().unwrap().join("x").exists());
    // The same large uid is fine without a user namespace; a valid hard link works.
    let g = fixture(None);
    let ok = raw_tar(&[
        RawEntry { uid: 70_000, ..entry("u", EntryType::Regular, b"x", "") },
        entry("d/f", EntryType::Regular, b"file", ""),
        entry("d/h", EntryType::Link, b"", "d/f"),
        entry("fifo", EntryType::Fifo, b"", ""),
    ]);
    assert_eq!(g.fs.extract_tar("/", ok.as_slice()).unwrap(), 3);
    assert_eq!(fs::metadata(g.host("/u")).unwrap().uid(), 70_000);
    assert_eq!(fs::metadata(g.host("/d/f")).unwrap().ino(), fs::metadata(g.host("/d/h")).unwrap().ino());
    assert!(!g.host("/fifo").exists());
    assert_eq!(names(&g.root), vec!["d", "u"]);
    g.assert_outside_untouched();
}

#[test]
#[ignore = "needs root"]
fn a_failed_extract_leaves_no_partial_file() {
    require_root();
    let f = fixture(None);
    fs::create_dir(f.host("/dst")).unwrap();
    fs::write(f.host("/dst/big"), b"old").unwrap();
    let data = vec![b'z'; 600];
    let truncated = raw_tar(&[
        entry("first", EntryType::Regular, b"complete", ""),
        RawEntry { size: Some(10_000), ..entry("big", EntryType::Regular, &data, "") },
    ]);
    let e = f.fs.extract_tar("/dst", truncated.as_slice()).unwrap_err();
    assert!(matches!(e, FilesError::BadTar { .. }), "{e}");
    assert_eq!(fs::read(f.host("/dst/big")).unwrap(), b"old");
    assert_eq!(fs::read(f.host("/dst/first")).unwrap(), b"complete");
    assert_eq!(names(&f.host("/dst")), vec!["big", "first"]);
    // Garbage is a bad request too, and extracting into a file is refused.
    let e = f.fs.extract_tar("/dst", &[1u8; 700][..]).unwrap_err();
    assert!(matches!(e, FilesError::BadTar { .. }), "{e}");
    let e = f.fs.extract_tar("/dst/big", raw_tar(&[]).as_slice()).unwrap_err();
    assert!(matches!(e, FilesError::NotADirectory { .. }), "{e}");
}

/// xorshift64*: deterministic, incompressible-looking test data.
fn fill(state: &mut u64, buf: &mut [u8]) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let v = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

#[test]
#[ignore = "needs root"]
fn a_big_file_streams_through_upload_read_and_tar() {
    require_root();
    const SIZE: usize = 50 << 20;
    let f = fixture(Some(100_000));
    let mut up = f.fs.create_file("/big", 0o644).unwrap();
    let (mut state, mut sent, mut buf) = (0x9E37_79B9_7F4A_7C15u64, Sha256::new(), vec![0u8; 1 << 20]);
    for _ in 0..SIZE / buf.len() {
        fill(&mut state, &mut buf);
        sent.update(&buf);
        up.write_all(&buf).unwrap();
    }
    let sent = sent.finalize();
    assert_eq!(up.commit().unwrap().size, SIZE as u64);

    let (mut file, st) = f.fs.open_read("/big").unwrap();
    assert_eq!(st.size, SIZE as u64);
    let mut got = Sha256::new();
    let mut n = 0;
    loop {
        let k = file.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        got.update(&buf[..k]);
        n += k;
    }
    assert_eq!((n, got.finalize()), (SIZE, sent));

    let mut tar_bytes = Vec::new();
    f.fs.write_tar("/big", &mut tar_bytes).unwrap();
    assert_eq!(f.fs.extract_tar("/copy", tar_bytes.as_slice()).unwrap(), 1);
    let copied = fs::read(f.host("/copy/big")).unwrap();
    assert_eq!(Sha256::digest(&copied), sent);
}
