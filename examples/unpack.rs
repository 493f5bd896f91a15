//! Unpack one layer blob the way the image store does; for benches/unpack.sh.
//!
//! `unpack LAYER DEST [MEDIA_TYPE] [--simple]`: decompress (by media type, else by magic bytes) and hash on
//! a helper thread ([`LayerStream`]), unpack into DEST (an empty directory), print the stats and diff id.
//! `--simple`: decompress and unpack on one thread, without hashing.

use beam::image::unpack::{LayerStream, decompress, unpack};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let simple = args.iter().any(|a| a == "--simple");
    args.retain(|a| a != "--simple");
    let (layer, dest, media_type) = match &args[..] {
        [l, d] => (l, d, ""),
        [l, d, m] => (l, d, m.as_str()),
        _ => {
            eprintln!("usage: unpack LAYER DEST [MEDIA_TYPE] [--simple]");
            return ExitCode::from(2);
        }
    };
    let file = match std::fs::File::open(layer) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{layer}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if simple {
        decompress(Box::new(file), media_type).and_then(|r| unpack(r, Path::new(dest))).map(|s| (s, None))
    } else {
        let mut stream = LayerStream::spawn(file, media_type);
        match unpack(&mut stream, Path::new(dest)) {
            Ok(s) => stream.finish().map(|d| (s, Some(d))),
            Err(e) => Err(stream.abort().unwrap_or(e)),
        }
    };
    match result {
        Ok((stats, digest)) => {
            let digest = digest.map(|(d, n)| format!(" diff_id={d} tar_bytes={n}")).unwrap_or_default();
            eprintln!("files={} dirs={} bytes={}{digest}", stats.files, stats.dirs, stats.bytes);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
