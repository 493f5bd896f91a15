//! Arbitrary bytes as a layer blob through the image store's real unpack path (`decompress` or
//! `LayerStream`, then `unpack`) into an empty layer directory: never panics, never hangs, and never
//! changes anything outside the layer directory — not the sibling `outside/` tree that absolute and `../`
//! symlinks in seeds point at, not the dirs above it — and never hardlinks to a file outside.
//!
//! Byte 0 picks how the rest is fed: 0 as the blob itself (the media type picked by byte 1; the
//! decompressor sniffs magic bytes when the type doesn't say), 1 gzip-compressed by the harness (so the tar
//! inside is what mutates), 2 zstd-compressed by the harness, 3 as the blob through `LayerStream` (the
//! store's threaded decompress + hash). Decompressed data is capped at 64 MiB (zstd can expand a 64 KiB
//! input to gigabytes).
#![no_main]
#[path = "common.rs"]
mod common;

use beam::image::unpack::{LayerStream, decompress, unpack};
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read, Write};
use std::path::PathBuf;
use std::sync::LazyLock;

const MEDIA_TYPES: &[&str] = &[
    "",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.oci.image.layer.v1.tar+bzip2",
];
const CAP: u64 = 64 << 20;

struct Fixture {
    /// `<scratch>`: everything here but `a/b/layer` must stay as it was.
    work: PathBuf,
    layer: PathBuf,
    before: BTreeMap<PathBuf, common::Node>,
    outside_inodes: BTreeSet<(u64, u64)>,
    skip: BTreeSet<PathBuf>,
}

static FIX: LazyLock<Fixture> = LazyLock::new(|| {
    let work = common::scratch("layer_unpack");
    let base = work.join("a/b");
    let outside = base.join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    std::fs::write(outside.join("dir/file"), b"file").unwrap();
    std::fs::write(work.join("a/top"), b"top").unwrap();
    std::os::unix::fs::symlink("/etc", outside.join("etc")).unwrap();
    let layer = base.join("layer");
    let skip: BTreeSet<PathBuf> = [PathBuf::from("a/b/layer")].into();
    let before = common::without_mtime(common::snapshot(&work, &skip), "a/b");
    let outside_inodes = common::inodes(&outside);
    Fixture { work, layer, before, outside_inodes, skip }
});

fn compress(kind: u8, data: &[u8]) -> Vec<u8> {
    if kind == 1 {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    } else {
        zstd::stream::encode_all(data, 1).unwrap()
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let f = &*FIX;
    std::fs::create_dir(&f.layer).unwrap();
    let (mode, media) = (data[0] % 4, MEDIA_TYPES[data[1] as usize % MEDIA_TYPES.len()]);
    let body = &data[2..];
    match mode {
        0 | 1 | 2 => {
            let (blob, media) = match mode {
                0 => (body.to_vec(), media),
                1 => (compress(1, body), "application/vnd.oci.image.layer.v1.tar+gzip"),
                _ => (compress(2, body), "application/vnd.oci.image.layer.v1.tar+zstd"),
            };
            if let Ok(r) = decompress(Box::new(Cursor::new(blob)), media) {
                let _ = unpack(r.take(CAP), &f.layer);
            }
        }
        _ => {
            let mut s = LayerStream::spawn(Cursor::new(body.to_vec()), media);
            match unpack((&mut s).take(CAP), &f.layer) {
                Ok(_) => {
                    let _ = s.finish();
                }
                Err(_) => {
                    let _ = s.abort();
                }
            }
        }
    }
    let after = common::without_mtime(common::snapshot(&f.work, &f.skip), "a/b");
    common::assert_same("outside the layer dir", &f.before, &after);
    for n in common::snapshot(&f.layer, &BTreeSet::new()).values() {
        assert!(!f.outside_inodes.contains(&n.ino), "the layer shares an inode with a file outside it: {n:?}");
    }
    common::remove_all(&f.layer);
});
