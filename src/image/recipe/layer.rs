//! Writing layers: a directory tree (an overlay upper dir, or a whole root filesystem) to a zstd tar
//! blob in the store, and new image configs/manifests on top of a parent image.
//!
//! Upper-dir conversion (the inverse of unpacking): a 0:0 character device is an overlay whiteout and
//! becomes an empty `.wh.NAME` file; a dir with `trusted.overlay.opaque=y` gets a `.wh..wh..opq` entry
//! first thing inside it. Other `trusted.overlay.*` xattrs are overlay bookkeeping and are dropped; every
//! other xattr (security.capability…) travels as a PAX `SCHILY.xattr.` record. Hard links inside the
//! tree stay hard links. Entries are sorted, so equal trees give equal tars.

use super::RecipeError;
use crate::image::digest::HashingWriter;
use crate::image::store::{ImageRecord, LayerRecord, Store};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub const ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const ZSTD_LEVEL: i32 = 3;

type Sink = HashingWriter<zstd::Encoder<'static, BufWriter<File>>>;

/// A layer being written to a temp file: tar → sha256 (the diff id) → zstd → file.
pub struct LayerWriter {
    pub tar: tar::Builder<Sink>,
    path: PathBuf,
}

fn io_err(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> RecipeError {
    let context = context.to_string();
    move |e| RecipeError::Io { context, msg: e.to_string() }
}

impl LayerWriter {
    pub fn create(path: &Path) -> Result<Self, RecipeError> {
        let f = File::create(path).map_err(io_err(format!("creating {}", path.display())))?;
        let enc =
            zstd::Encoder::new(BufWriter::with_capacity(1 << 20, f), ZSTD_LEVEL).map_err(io_err("starting zstd"))?;
        let mut tar = tar::Builder::new(HashingWriter::new(enc));
        tar.mode(tar::HeaderMode::Complete);
        Ok(Self { tar, path: path.to_path_buf() })
    }

    /// Finish the tar, store the compressed blob, delete the temp file.
    pub fn finish(self, store: &Store) -> Result<LayerRecord, RecipeError> {
        let ctx = format!("writing layer {}", self.path.display());
        let hw = self.tar.into_inner().map_err(io_err(&ctx))?;
        let (enc, diff_id, _) = hw.finish();
        let mut buf = enc.finish().map_err(io_err(&ctx))?;
        buf.flush().map_err(io_err(&ctx))?;
        drop(buf);
        let mut f = File::open(&self.path).map_err(io_err(&ctx))?;
        let stored = store.put_blob(&mut f, None);
        let _ = std::fs::remove_file(&self.path);
        let (blob, size) = stored?;
        Ok(LayerRecord { blob, media_type: ZSTD_LAYER.into(), diff_id, size })
    }
}

/// How [`append_tree`] reads the tree.
pub struct TreeOptions<'a> {
    /// An overlay upper dir: whiteouts and opaque markers become `.wh.` entries.
    pub overlay_upper: bool,
    /// Relative paths (`etc/resolv.conf`) left out when they are regular files (bind-mount targets).
    pub skip_files: &'a [String],
    /// Force every entry's mtime (reproducible layers), or keep the tree's.
    pub mtime: Option<u64>,
    /// The tree belongs to a user namespace's range `(first host id, size)`: owners are written as the
    /// namespace sees them (host id − first); an id outside the range becomes 65534 (nobody), as the
    /// namespace shows it.
    pub id_range: Option<(u32, u32)>,
}

/// Append everything under `root` (not `root` itself) to the tar.
pub fn append_tree<W: Write>(tar: &mut tar::Builder<W>, root: &Path, o: &TreeOptions) -> Result<(), RecipeError> {
    let mut links = HashMap::new();
    walk(tar, root, Path::new(""), o, &mut links).map_err(io_err(format!("archiving {}", root.display())))
}

fn walk<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    rel: &Path,
    o: &TreeOptions,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name();
        let rel_path = rel.join(&name);
        let m = std::fs::symlink_metadata(&path)?;
        let ft = m.file_type();
        let mut h = header(&m, o);
        if o.overlay_upper && ft.is_char_device() && m.rdev() == 0 {
            let mut wh = std::ffi::OsString::from(".wh.");
            wh.push(&name);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(0);
            h.set_mode(0o644);
            tar.append_data(&mut h, rel.join(wh), std::io::empty())?;
            continue;
        }
        if ft.is_file() && o.skip_files.iter().any(|s| Path::new(s) == rel_path) {
            continue;
        }
        let xattrs = if ft.is_symlink() { Vec::new() } else { xattrs(&path)? };
        let pax: Vec<(String, &[u8])> = xattrs
            .iter()
            .filter(|(k, _)| !k.starts_with("trusted.overlay."))
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        let append_pax =
            |tar: &mut tar::Builder<W>| tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)));
        if ft.is_dir() {
            append_pax(tar)?;
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            tar.append_data(&mut h, &rel_path, std::io::empty())?;
            let opaque = xattrs.iter().any(|(k, v)| k == "trusted.overlay.opaque" && v == b"y");
            if o.overlay_upper && opaque {
                let mut oh = header(&m, o);
                oh.set_entry_type(tar::EntryType::Regular);
                oh.set_size(0);
                oh.set_mode(0o644);
                tar.append_data(&mut oh, rel_path.join(".wh..wh..opq"), std::io::empty())?;
            }
            walk(tar, &path, &rel_path, o, links)?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    tar.append_link(&mut h, &rel_path, first)?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), rel_path.clone());
            }
            append_pax(tar)?;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.len());
            tar.append_data(&mut h, &rel_path, File::open(&path)?)?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            tar.append_link(&mut h, &rel_path, std::fs::read_link(&path)?)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            append_pax(tar)?;
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            });
            h.set_size(0);
            if !ft.is_fifo() {
                h.set_device_major(libc::major(m.rdev()))?;
                h.set_device_minor(libc::minor(m.rdev()))?;
            }
            tar.append_data(&mut h, &rel_path, std::io::empty())?;
        } // sockets are not archived (like tar)
    }
    Ok(())
}

fn header(m: &std::fs::Metadata, o: &TreeOptions) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(m.mode() & 0o7777);
    h.set_uid(u64::from(shift_id(m.uid(), o.id_range)));
    h.set_gid(u64::from(shift_id(m.gid(), o.id_range)));
    h.set_mtime(o.mtime.unwrap_or(m.mtime().max(0) as u64));
    h
}

/// A host id as the user namespace of `range` sees it.
fn shift_id(id: u32, range: Option<(u32, u32)>) -> u32 {
    match range {
        None => id,
        Some((first, size)) if id >= first && id - first < size => id - first,
        Some(_) => 65534,
    }
}

/// (name, value) of every xattr on `path` (not following a final symlink).
fn xattrs(path: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut names = vec![0u8; 4096];
    let n = loop {
        // SAFETY: `names` is writable for its length; `c` is NUL-terminated.
        let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let cname = CString::new(name).expect("split at NUL");
        let mut val = vec![0u8; 256];
        loop {
            // SAFETY: as above; `val` is writable for its length.
            let r = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
            if r >= 0 {
                val.truncate(r as usize);
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ERANGE) || val.len() > 1 << 20 {
                return Err(e);
            }
            val.resize(val.len() * 8, 0);
        }
        out.push((OsStr::from_bytes(name).to_string_lossy().into_owned(), val));
    }
    Ok(out)
}

/// The OCI architecture name of this build.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Write a new image: the parent's config (or an empty one) edited by `edit`, the parent's layers plus
/// `layer`, a history entry; record it under `names`.
pub fn write_image(
    store: &Store,
    parent: Option<&ImageRecord>,
    layer: Option<LayerRecord>,
    created_by: &str,
    names: &[String],
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Result<ImageRecord, RecipeError> {
    let mut config: Value = match parent {
        Some(p) => serde_json::from_slice(&store.read_blob(&p.id)?)
            .map_err(|e| RecipeError::Io { context: format!("parent config {}", p.id), msg: e.to_string() })?,
        None => {
            json!({"architecture": oci_arch(), "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}})
        }
    };
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    config["created"] = json!(now);
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    edit(config["config"].as_object_mut().expect("object"));
    if !config["rootfs"]["diff_ids"].is_array() {
        config["rootfs"] = json!({"type": "layers", "diff_ids": []});
    }
    if !config["history"].is_array() {
        config["history"] = json!([]);
    }
    let mut history = json!({"created": now, "created_by": created_by, "comment": "beam build"});
    match &layer {
        Some(l) => config["rootfs"]["diff_ids"].as_array_mut().expect("array").push(json!(l.diff_id)),
        None => history["empty_layer"] = json!(true),
    }
    config["history"].as_array_mut().expect("array").push(history);
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_digest = store.put_blob_bytes(&config_bytes)?;
    let layers: Vec<Value> = parent
        .map_or(&[][..], |p| p.layers.as_slice())
        .iter()
        .chain(layer.iter())
        .map(|l| json!({"mediaType": l.media_type, "digest": l.blob, "size": l.size}))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": layers,
    });
    let manifest_digest = store.put_blob_bytes(&serde_json::to_vec(&manifest).expect("json"))?;
    Ok(store.add_image(&manifest_digest, names)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_shift_out_of_a_user_namespace_range() {
        let r = Some((0x1000_0000, 65536));
        assert_eq!(super::shift_id(0x1000_0000, r), 0);
        assert_eq!(super::shift_id(0x1000_0000 + 1000, r), 1000);
        assert_eq!(super::shift_id(0x1000_0000 + 65535, r), 65535);
        // Outside the range: what the namespace shows for an unmapped id.
        assert_eq!(super::shift_id(0x1000_0000 + 65536, r), 65534);
        assert_eq!(super::shift_id(0, r), 65534);
        assert_eq!(super::shift_id(1000, None), 1000);
    }
}
