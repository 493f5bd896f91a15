//! Unpacking on the real file system. Most tests need root (devices, chown, trusted.* xattrs):
//! `#[ignore = "needs root"]` and [`require_root`]; the rest run as anyone.

use super::*;
use crate::image::digest::Digest;
use std::ffi::CStr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use crate::test_support::require_root;

/// An in-memory layer tar.
pub(crate) struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    pub(crate) fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    /// A header with `name` copied in verbatim (no normalization: malicious names included).
    fn header(kind: tar::EntryType, name: &str, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn add(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    pub(crate) fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.add(Self::header(tar::EntryType::Directory, name, mode, 0), b"")
    }

    pub(crate) fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.add(Self::header(tar::EntryType::Regular, name, mode, data.len() as u64), data)
    }

    fn file_owned(&mut self, name: &str, mode: u32, uid: u64, gid: u64, mtime: u64, data: &[u8]) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, name, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.add(h, data)
    }

    fn link(&mut self, kind: tar::EntryType, name: &str, target: &str) -> &mut Self {
        let mut h = Self::header(kind, name, 0o777, 0);
        h.set_link_name_literal(target).unwrap();
        self.add(h, b"")
    }

    fn node(&mut self, kind: tar::EntryType, name: &str, mode: u32, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(kind, name, mode, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.add(h, b"")
    }

    fn pax(&mut self, fields: &[(&str, &[u8])]) -> &mut Self {
        self.0.append_pax_extensions(fields.iter().copied()).unwrap();
        self
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.0, tar::Builder::new(Vec::new())).into_inner().unwrap()
    }
}

fn getxattr(path: &Path, name: &CStr) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated; `buf` is writable for its length.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// `<tmp>/dest`, an empty directory with a test-owned parent (so `../x` lands somewhere we can check).
fn dest() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("dest");
    std::fs::create_dir(&d).unwrap();
    (t, d)
}

#[test]
#[ignore = "needs root"]
fn layer_contents_and_metadata() {
    require_root();
    let tar = Tar::new()
        .dir("./", 0o755)
        .dir("./etc/", 0o755)
        .file_owned("./etc/hello", 0o4755, 1000, 1001, 1_234_567_890, b"hello world")
        .link(tar::EntryType::Link, "./etc/hello2", "./etc/hello")
        .link(tar::EntryType::Symlink, "./etc/abs", "/etc/passwd")
        .link(tar::EntryType::Symlink, "./etc/rel", "../nowhere/../x")
        .node(tar::EntryType::Char, "./dev/null", 0o666, 1, 3)
        .node(tar::EntryType::Block, "./dev/loop9", 0o660, 7, 9)
        .node(tar::EntryType::Fifo, "./run/fifo", 0o600, 0, 0)
        .pax(&[("SCHILY.xattr.user.foo", b"bar"), ("mtime", b"1500000000.25")])
        .file("./x/tagged", 0o644, b"x")
        .dir("./opq/", 0o700)
        .file("./opq/.wh..wh..opq", 0o644, b"")
        .file("./.wh.gone", 0o644, b"")
        .dir("./sticky/", 0o1777)
        .file("./sticky/child", 0o600, b"c")
        .finish();
    let (_t, d) = dest();
    let stats = unpack(&tar[..], &d).unwrap();
    assert_eq!(stats, UnpackStats { files: 10, dirs: 3, bytes: 13 });

    let hello = std::fs::metadata(d.join("etc/hello")).unwrap();
    assert_eq!(std::fs::read(d.join("etc/hello")).unwrap(), b"hello world");
    assert_eq!((hello.uid(), hello.gid(), hello.mode() & 0o7777), (1000, 1001, 0o4755));
    assert_eq!(hello.mtime(), 1_234_567_890);
    assert_eq!(std::fs::metadata(d.join("etc/hello2")).unwrap().ino(), hello.ino());
    assert_eq!(hello.nlink(), 2);
    assert_eq!(std::fs::read_link(d.join("etc/abs")).unwrap(), Path::new("/etc/passwd"));
    assert_eq!(std::fs::read_link(d.join("etc/rel")).unwrap(), Path::new("../nowhere/../x"));

    let null = std::fs::metadata(d.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!((null.rdev(), null.mode() & 0o7777), (libc::makedev(1, 3), 0o666));
    let lp = std::fs::metadata(d.join("dev/loop9")).unwrap();
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), libc::makedev(7, 9));
    assert!(std::fs::metadata(d.join("run/fifo")).unwrap().file_type().is_fifo());

    let tagged = d.join("x/tagged");
    assert_eq!(getxattr(&tagged, c"user.foo").as_deref(), Some(&b"bar"[..]));
    let m = std::fs::metadata(&tagged).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_500_000_000, 250_000_000));
    // Implicit parents: 0755.
    assert_eq!(std::fs::metadata(d.join("x")).unwrap().mode() & 0o7777, 0o755);

    assert_eq!(getxattr(&d.join("opq"), c"trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert!(!d.join("opq/.wh..wh..opq").exists());
    let wh = std::fs::symlink_metadata(d.join("gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!d.join(".wh.gone").exists());

    // Directory modes and mtimes are applied after their children.
    let sticky = std::fs::metadata(d.join("sticky")).unwrap();
    assert_eq!((sticky.mode() & 0o7777, sticky.mtime()), (0o1777, 1_600_000_000));
    assert_eq!(std::fs::metadata(d.join("etc")).unwrap().mtime(), 1_600_000_000);
    assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o7777, 0o755);
}

#[test]
#[ignore = "needs root"]
fn later_entries_replace_earlier_ones() {
    require_root();
    let tar = Tar::new()
        .file("a", 0o644, b"first")
        .file("a", 0o600, b"second")
        .link(tar::EntryType::Symlink, "b", "a")
        .file("b", 0o644, b"not a link")
        .dir("c/", 0o755)
        .file("c", 0o644, b"empty dir replaced")
        .file("d", 0o644, b"file replaced by a dir")
        .dir("d/", 0o755)
        .finish();
    let (_t, d) = dest();
    unpack(&tar[..], &d).unwrap();
    assert_eq!(std::fs::read(d.join("a")).unwrap(), b"second");
    assert_eq!(std::fs::metadata(d.join("a")).unwrap().mode() & 0o777, 0o600);
    assert!(std::fs::symlink_metadata(d.join("b")).unwrap().is_file());
    assert_eq!(std::fs::read(d.join("c")).unwrap(), b"empty dir replaced");
    assert!(d.join("d").is_dir());
}

fn rejected(tar: &[u8], entry: &str) -> String {
    let (_t, d) = dest();
    let err = unpack(tar, &d).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("{entry:?}")), "{msg}");
    assert!(matches!(err, UnpackError::Unsafe { .. }), "{err:?}");
    assert!(!d.parent().unwrap().join("escape").exists());
    msg
}

#[test]
fn parent_dir_escape_is_rejected() {
    rejected(&Tar::new().file("../escape", 0o644, b"x").finish(), "../escape");
    rejected(&Tar::new().file("./a/../../escape", 0o644, b"x").finish(), "./a/../../escape");
}

#[test]
fn absolute_path_is_rejected() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("abs");
    let name = target.to_str().unwrap().to_string();
    rejected(&Tar::new().file(&name, 0o644, b"x").finish(), &name);
    assert!(!target.exists());
}

#[test]
#[ignore = "needs root"]
fn write_through_planted_symlink_is_rejected() {
    require_root();
    let outside = tempfile::tempdir().unwrap();
    let tar = Tar::new()
        .link(tar::EntryType::Symlink, "a", outside.path().to_str().unwrap())
        .file("a/file", 0o644, b"pwned")
        .finish();
    let msg = rejected(&tar, "a/file");
    assert!(msg.contains("symlink"), "{msg}");
    assert!(!outside.path().join("file").exists());
    // Through a relative symlink pointing up and out, too.
    let tar = Tar::new()
        .dir("d/", 0o755)
        .link(tar::EntryType::Symlink, "d/up", "../..")
        .file("d/up/escape", 0o644, b"x")
        .finish();
    rejected(&tar, "d/up/escape");
}

#[test]
#[ignore = "needs root"]
fn hardlink_out_of_the_layer_is_rejected() {
    require_root();
    let msg = rejected(&Tar::new().link(tar::EntryType::Link, "passwd", "../../etc/passwd").finish(), "passwd");
    assert!(msg.contains("hardlink target"), "{msg}");
    rejected(&Tar::new().link(tar::EntryType::Link, "passwd", "/etc/passwd").finish(), "passwd");
    // A hardlink through a symlink planted earlier.
    let tar =
        Tar::new().link(tar::EntryType::Symlink, "etc", "/etc").link(tar::EntryType::Link, "pw", "etc/passwd").finish();
    rejected(&tar, "pw");
}

#[test]
fn pax_times() {
    let t = |s| parse_pax_time(s).map(|t: TimeSpec| (t.tv_sec(), t.tv_nsec()));
    assert_eq!(t("12"), Some((12, 0)));
    assert_eq!(t("12.5"), Some((12, 500_000_000)));
    assert_eq!(t("12.0000000019"), Some((12, 1)));
    assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
    assert_eq!(t("x"), None);
}

#[test]
#[ignore = "needs root"]
fn decompression_by_type_and_magic() {
    require_root();
    let tar = Tar::new().file("f", 0o644, &vec![7u8; 100_000]).finish();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let cases: [(&[u8], &str); 7] = [
        (&gz, "application/vnd.oci.image.layer.v1.tar+gzip"),
        (&gz, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        (&zst, "application/vnd.oci.image.layer.v1.tar+zstd"),
        (&tar, "application/vnd.oci.image.layer.v1.tar"),
        (&gz, "application/vnd.oci.image.layer.v1.tar"),
        (&zst, "application/octet-stream"),
        (&tar, ""),
    ];
    for (data, mt) in cases {
        let mut out = Vec::new();
        decompress(Box::new(data), mt).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, tar, "{mt}");

        let mut stream = LayerStream::spawn(io::Cursor::new(data.to_vec()), mt);
        let (_t, d) = dest();
        unpack(&mut stream, &d).unwrap();
        assert_eq!(stream.finish().unwrap(), (Digest::of(&tar), tar.len() as u64), "{mt}");
        assert_eq!(std::fs::read(d.join("f")).unwrap().len(), 100_000);
    }
    let err = decompress(Box::new(&tar[..]), "application/vnd.oci.image.layer.v1.tar+bzip2").err().unwrap();
    assert!(matches!(err, UnpackError::Unsupported(_)), "{err}");
    // Through the helper thread, the reader sees a read error and `abort` gives the cause.
    let mut stream = LayerStream::spawn(io::Cursor::new(tar.clone()), "application/vnd.oci.image.layer.v1.tar+bzip2");
    let (_t, d) = dest();
    assert!(unpack(&mut stream, &d).is_err());
    assert!(matches!(stream.abort(), Some(UnpackError::Unsupported(_))));
}

#[test]
fn corrupt_stream_is_an_error() {
    let tar = Tar::new().file("f", 0o644, &vec![1u8; 300_000]).finish();
    let mut gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let n = gz.len();
    gz.truncate(n / 2);
    let mut stream = LayerStream::spawn(io::Cursor::new(gz), "application/vnd.oci.image.layer.v1.tar+gzip");
    let (_t, d) = dest();
    let err = unpack(&mut stream, &d).unwrap_err();
    assert!(err.to_string().contains("corrupt or truncated"), "{err}");
}
