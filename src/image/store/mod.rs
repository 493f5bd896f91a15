//! The content-addressed image store under the state root (default /var/lib/beam):
//!
//! ```text
//! <root>/blobs/sha256/<hex>     manifests, configs, compressed layers — verified on write
//! <root>/layers/<diff-id hex>/  each layer unpacked once, shared by every image and sandbox (overlay lowerdir)
//! <root>/images/<id hex>.json   one ImageRecord per image (id = config digest)
//! <root>/pins/<owner>.json      layers a live sandbox/container uses (gc keeps them)
//! <root>/tmp/                   in-progress writes (temp name → verify → rename; cleaned on open)
//! <root>/lock                   flock: exclusive for record, name and pin changes and gc
//! ```
//!
//! CONTRACT (other modules build on these signatures):
//! - Every write goes to `tmp/` first and is renamed into place only after verification, so an interrupted
//!   pull or unpack leaves no half-written blob or layer. Mutations take an exclusive flock on `<root>/lock`.
//! - `rm`/`gc` never delete a layer that an image record or a pin still references.
//!
//! Details:
//! - Blob and layer renames are atomic and idempotent (same name, same content), so they need no lock;
//!   a layer unpacked twice concurrently keeps the first rename and discards the other.
//! - Each temp entry is flocked by its writer; `open` and `gc` remove only unlocked ones (crashed writers).
//! - Blobs are fsynced before their rename; a layer's file system is `syncfs`ed before its rename.
//! - Pins keep any digest: layers by diff id, and blobs too — a pull may pin the blobs it has fetched
//!   until `add_image` references them, so that a concurrent `gc` cannot take them.
//! - Names are unique: giving a name to one image takes it off any other (which stays, nameless and
//!   resolvable by id, like Docker's dangling images, until removed by id).

mod fsutil;
mod resolve;
#[cfg(test)]
mod tests;

use crate::image::digest::{Digest, HashingWriter};
use crate::image::unpack::{LayerStream, UnpackError, unpack};
use chrono::{DateTime, Utc};
use fsutil::{Lock, io_err, remove_any, sync_dir, tree_size, write_atomic};
use resolve::Match;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Layers unpacked at once by `add_image`.
const PARALLEL_UNPACKS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("image store {path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error("blob {expected}: content hashes to {actual}; the source is corrupt or was tampered with — pull it again")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("image {0:?} not found; `beam image ls` lists local images, `beam image pull {0}` fetches it")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("blob {0} is not in the image store; pull the image again")]
    BlobMissing(Digest),
    #[error(
        "layer blob {blob}: its uncompressed content hashes to {actual}, but the image config lists diff id \
         {expected}; the image is corrupt — pull it again"
    )]
    DiffIdMismatch { blob: Digest, expected: Digest, actual: Digest },
    #[error("unpacking layer blob {blob}: {source}")]
    Unpack { blob: Digest, source: UnpackError },
    #[error("{reference:?} is ambiguous: it matches {matches}; use a full name or a longer id")]
    Ambiguous { reference: String, matches: String },
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the (possibly compressed) blob.
    pub blob: Digest,
    pub media_type: String,
    /// Digest of the uncompressed tar (the config's rootfs.diff_ids entry); names the unpacked dir.
    pub diff_id: Digest,
    /// Compressed size in bytes.
    pub size: u64,
}

/// What the store knows about one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image id: the config blob's digest.
    pub id: Digest,
    pub manifest: Digest,
    pub manifest_media_type: String,
    /// Layers, base first.
    pub layers: Vec<LayerRecord>,
    /// References that point at it, canonical form (`registry/repo:tag`).
    pub names: Vec<String>,
    /// When it entered this store.
    pub added: DateTime<Utc>,
}

/// What `gc` removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Convert an oci-spec digest; only sha256 is supported.
fn digest_of(d: &oci_spec::image::Digest, what: &str) -> Result<Digest, StoreError> {
    Digest::parse(d.as_ref())
        .map_err(|_| StoreError::Invalid(format!("{what} digest {d} is not supported: only sha256 digests are")))
}

fn check_name(name: &str) -> Result<(), StoreError> {
    let bad = |why: &str| Err(StoreError::Invalid(format!("image name {name:?} {why}")));
    if name.is_empty() {
        return bad("is empty");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains whitespace or control characters");
    }
    if name.starts_with("sha256:") || (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())) {
        return bad("looks like an image id; pick a name such as `registry/repo:tag`");
    }
    Ok(())
}

fn check_owner(owner: &str) -> Result<(), StoreError> {
    let ok = !owner.is_empty()
        && owner.len() <= 200
        && !owner.starts_with('.')
        && owner.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "pin owner {owner:?}: use 1-200 characters of [A-Za-z0-9._-], not starting with `.`"
        )))
    }
}

impl Store {
    /// Open (creating the layout if needed) the store at `root`; removes leftovers in tmp/.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let store = Self { root: root.to_path_buf() };
        for dir in ["blobs/sha256", "layers", "images", "pins", "tmp"] {
            let p = root.join(dir);
            std::fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
        }
        let _lock = store.lock()?;
        store.clean_tmp()?;
        Ok(store)
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }
    /// Stream a blob in; verify against `expected` when given. Returns (digest, size).
    pub fn put_blob(&self, r: &mut dyn Read, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        let tmp = self.tmp_file("blob", None)?;
        let res = (|| {
            let file: &std::fs::File = &tmp.lock;
            let mut w = BufWriter::with_capacity(1 << 20, HashingWriter::new(file));
            std::io::copy(r, &mut w).map_err(|e| io_err(&tmp.path, format!("writing a blob: {e}")))?;
            let hashing = w.into_inner().map_err(|e| io_err(&tmp.path, e.error()))?;
            let (file, digest, size) = hashing.finish();
            if let Some(expected) = expected
                && *expected != digest
            {
                return Err(StoreError::DigestMismatch { expected: expected.clone(), actual: digest });
            }
            file.sync_all().map_err(|e| io_err(&tmp.path, e))?;
            let dest = self.blob_path(&digest);
            std::fs::rename(&tmp.path, &dest).map_err(|e| io_err(&dest, e))?;
            sync_dir(dest.parent().expect("blob paths have a parent"))?;
            Ok((digest, size))
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp.path);
        }
        res
    }
    pub fn put_blob_bytes(&self, b: &[u8]) -> Result<Digest, StoreError> {
        let d = Digest::of(b);
        if self.has_blob(&d) {
            return Ok(d);
        }
        self.put_blob(&mut &b[..], Some(&d)).map(|(d, _)| d)
    }
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(d);
        std::fs::read(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::BlobMissing(d.clone()),
            _ => io_err(&p, e),
        })
    }
    /// The unpacked layer's directory (an overlayfs lowerdir).
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).exists()
    }
    /// Unpack a stored layer blob (gzip, zstd or plain tar, by media type or magic) once; verify the
    /// uncompressed digest against `diff_id` when given. Returns the diff id.
    pub fn unpack_layer(
        &self,
        blob: &Digest,
        media_type: &str,
        diff_id: Option<&Digest>,
    ) -> Result<Digest, StoreError> {
        if let Some(d) = diff_id
            && self.has_layer(d)
        {
            return Ok(d.clone());
        }
        let path = self.blob_path(blob);
        let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::BlobMissing(blob.clone()),
            _ => io_err(&path, e),
        })?;
        let tmp = self.tmp_dir("layer")?;
        let res = (|| {
            let started = std::time::Instant::now();
            let mut stream = LayerStream::spawn(file, media_type);
            let stats = match unpack(&mut stream, &tmp.path) {
                Ok(stats) => stats,
                // A decompression failure shows up as a read error; report the helper's own, clearer one.
                Err(e) => return Err(StoreError::Unpack { blob: blob.clone(), source: stream.abort().unwrap_or(e) }),
            };
            let (actual, size) = stream.finish().map_err(|source| StoreError::Unpack { blob: blob.clone(), source })?;
            if let Some(expected) = diff_id
                && *expected != actual
            {
                return Err(StoreError::DiffIdMismatch { blob: blob.clone(), expected: expected.clone(), actual });
            }
            nix::unistd::syncfs(&*tmp.lock).map_err(|e| io_err(&tmp.path, format!("syncfs: {e}")))?;
            let dest = self.layer_dir(&actual);
            match std::fs::rename(&tmp.path, &dest) {
                Ok(()) => sync_dir(&self.root.join("layers"))?,
                // Someone else unpacked it meanwhile: same content, keep theirs.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => remove_any(&tmp.path)?,
                Err(e) => return Err(io_err(&dest, e)),
            }
            tracing::debug!(blob = %blob, diff_id = %actual, files = stats.files, dirs = stats.dirs,
                bytes = stats.bytes, tar_bytes = size, ms = started.elapsed().as_millis() as u64, "unpacked a layer");
            Ok(actual)
        })();
        if res.is_err() {
            let _ = remove_any(&tmp.path);
        }
        res
    }
    /// Record an image whose manifest and config blobs (and layer blobs) are in the store: unpacks missing
    /// layers (in parallel), writes the record, points `names` at it (moving them off other images).
    pub fn add_image(&self, manifest: &Digest, names: &[String]) -> Result<ImageRecord, StoreError> {
        for n in names {
            check_name(n)?;
        }
        let (manifest_media_type, m) = self.parse_manifest(manifest)?;
        let id = digest_of(m.config().digest(), "config")?;
        let config = self.parse_config(&id)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != m.layers().len() {
            return Err(StoreError::Invalid(format!(
                "image {manifest}: the manifest lists {} layers but the config's rootfs.diff_ids has {}; the image \
                 is malformed",
                m.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (desc, diff_id) in m.layers().iter().zip(diff_ids) {
            let diff_id = Digest::parse(diff_id)
                .map_err(|e| StoreError::Invalid(format!("image config {id}: rootfs.diff_ids: {e}")))?;
            layers.push(LayerRecord {
                blob: digest_of(desc.digest(), "layer")?,
                media_type: String::from(desc.media_type().clone()),
                diff_id,
                size: desc.size(),
            });
        }
        // Unpack outside the lock; then, under it, check that no concurrent gc took anything in between.
        for _attempt in 0..3 {
            for l in &layers {
                if !self.has_blob(&l.blob) {
                    return Err(StoreError::BlobMissing(l.blob.clone()));
                }
            }
            self.unpack_missing(&layers)?;
            let lock = self.lock()?;
            let all_there = [manifest, &id].into_iter().all(|d| self.has_blob(d))
                && layers.iter().all(|l| self.has_blob(&l.blob) && self.has_layer(&l.diff_id));
            if !all_there {
                continue;
            }
            let mut rec = match self.load(&id)? {
                Some(old) => ImageRecord { manifest: manifest.clone(), manifest_media_type, layers, ..old },
                None => ImageRecord {
                    id: id.clone(),
                    manifest: manifest.clone(),
                    manifest_media_type,
                    layers,
                    names: Vec::new(),
                    added: Utc::now(),
                },
            };
            for n in names {
                if !rec.names.contains(n) {
                    rec.names.push(n.clone());
                }
            }
            self.take_names(&lock, &rec.id, names)?;
            self.save(&lock, &rec)?;
            return Ok(rec);
        }
        Err(StoreError::Invalid(format!(
            "image {manifest}: its blobs or layers keep disappearing (a concurrent `beam image prune`?); try again"
        )))
    }
    /// By canonical name (`registry/repo:tag`), `name@sha256:…`, full id or a unique id prefix (≥ 4 hex);
    /// also a short name that names exactly one image (`busybox` → `beam.local/busybox:latest`).
    pub fn resolve(&self, reference: &str) -> Result<ImageRecord, StoreError> {
        let mut records = self.images()?;
        let i = resolve::find(&records, reference)?.index();
        Ok(records.swap_remove(i))
    }
    /// Every image record, oldest first.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let path = entry.map_err(|e| io_err(&dir, e))?.path();
            if path.extension().is_some_and(|x| x == "json") {
                out.push(read_json(&path)?);
            }
        }
        out.sort_by(|a: &ImageRecord, b| a.added.cmp(&b.added).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }
    /// The image's config (Env, Entrypoint, Cmd, WorkingDir, User, ExposedPorts…).
    pub fn config(&self, img: &ImageRecord) -> Result<oci_spec::image::ImageConfiguration, StoreError> {
        self.parse_config(&img.id)
    }
    /// Give `img` the name `name` (taking it off any other image).
    pub fn tag(&self, img: &ImageRecord, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        let lock = self.lock()?;
        let mut rec = self.load(&img.id)?.ok_or_else(|| StoreError::NotFound(img.id.to_string()))?;
        if !rec.names.iter().any(|n| n == name) {
            rec.names.push(name.to_string());
        }
        self.take_names(&lock, &rec.id, &[name.to_string()])?;
        self.save(&lock, &rec)
    }
    /// Remove a name; the record goes when no name is left (layers stay until `gc`). By id (or digest), the
    /// record goes at once unless it still has more than one name (then remove those by name).
    pub fn remove(&self, reference: &str) -> Result<(), StoreError> {
        let lock = self.lock()?;
        let mut records = self.images()?;
        let m = resolve::find(&records, reference)?;
        let mut rec = records.swap_remove(m.index());
        match m {
            Match::Name(_, name) => rec.names.retain(|n| *n != name),
            Match::Id(_) if rec.names.len() > 1 => {
                return Err(StoreError::Invalid(format!(
                    "image {} has several names ({}); remove them by name",
                    rec.id.short(),
                    rec.names.join(", ")
                )));
            }
            Match::Id(_) => rec.names.clear(),
        }
        if rec.names.is_empty() {
            let path = self.record_path(&rec.id);
            std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            sync_dir(&self.root.join("images"))
        } else {
            self.save(&lock, &rec)
        }
    }
    /// Layers a live container uses; gc keeps pinned layers (and blobs with a pinned digest). Replaces
    /// `owner`'s previous pin.
    pub fn pin(&self, owner: &str, layers: &[Digest]) -> Result<(), StoreError> {
        check_owner(owner)?;
        let lock = self.lock()?;
        let json = serde_json::to_vec_pretty(layers).expect("digests serialize");
        write_atomic(self, &lock, &self.root.join("pins").join(format!("{owner}.json")), &json)
    }
    pub fn unpin(&self, owner: &str) -> Result<(), StoreError> {
        check_owner(owner)?;
        let _lock = self.lock()?;
        let path = self.root.join("pins").join(format!("{owner}.json"));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path, e)),
        }
    }
    /// Delete blobs and layers no image record or pin references (and leftovers of crashed writers).
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let _lock = self.lock()?;
        let mut keep: HashSet<Digest> = HashSet::new();
        for rec in self.images()? {
            keep.insert(rec.id);
            keep.insert(rec.manifest);
            for l in rec.layers {
                keep.insert(l.blob);
                keep.insert(l.diff_id);
            }
        }
        let pins = self.root.join("pins");
        for entry in std::fs::read_dir(&pins).map_err(|e| io_err(&pins, e))? {
            let path = entry.map_err(|e| io_err(&pins, e))?.path();
            if path.extension().is_some_and(|x| x == "json") {
                keep.extend(read_json::<Vec<Digest>>(&path)?);
            }
        }
        let mut report = GcReport::default();
        for (dir, is_layer) in [("blobs/sha256", false), ("layers", true)] {
            let dir = self.root.join(dir);
            for entry in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
                let entry = entry.map_err(|e| io_err(&dir, e))?;
                let name = entry.file_name();
                let Ok(d) = Digest::parse(&format!("sha256:{}", name.to_string_lossy())) else {
                    continue; // not ours: leave it alone
                };
                if keep.contains(&d) {
                    continue;
                }
                let path = entry.path();
                report.bytes += tree_size(&path);
                remove_any(&path)?;
                if is_layer {
                    report.layers += 1;
                } else {
                    report.blobs += 1;
                }
            }
        }
        self.clean_tmp()?;
        tracing::info!(blobs = report.blobs, layers = report.layers, bytes = report.bytes, "image store gc");
        Ok(report)
    }

    fn record_path(&self, id: &Digest) -> PathBuf {
        self.root.join("images").join(format!("{}.json", id.hex()))
    }

    fn load(&self, id: &Digest) -> Result<Option<ImageRecord>, StoreError> {
        let path = self.record_path(id);
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    fn save(&self, lock: &Lock, rec: &ImageRecord) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(rec).expect("records serialize");
        write_atomic(self, lock, &self.record_path(&rec.id), &json)
    }

    /// Take `names` off every image but `id`.
    fn take_names(&self, lock: &Lock, id: &Digest, names: &[String]) -> Result<(), StoreError> {
        for mut other in self.images()? {
            if other.id != *id && other.names.iter().any(|n| names.contains(n)) {
                other.names.retain(|n| !names.contains(n));
                self.save(lock, &other)?;
            }
        }
        Ok(())
    }

    /// The manifest's media type and contents; OCI and Docker v2 image manifests only.
    fn parse_manifest(&self, d: &Digest) -> Result<(String, oci_spec::image::ImageManifest), StoreError> {
        let bytes = self.read_blob(d)?;
        let invalid = |why: String| StoreError::Invalid(format!("manifest {d}: {why}"));
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let media_type = v.get("mediaType").and_then(|t| t.as_str()).unwrap_or(OCI_MANIFEST).to_string();
        match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => {}
            t if t.contains("index") || t.contains("manifest.list") => {
                return Err(invalid(format!("{t} is an index of per-platform manifests; add one of those instead")));
            }
            t => return Err(invalid(format!("media type {t:?} is not an OCI or Docker v2 image manifest"))),
        }
        if v.get("schemaVersion").and_then(|s| s.as_u64()) != Some(2) {
            return Err(invalid("schemaVersion is not 2".into()));
        }
        let m = oci_spec::image::ImageManifest::from_reader(&bytes[..]).map_err(|e| invalid(e.to_string()))?;
        Ok((media_type, m))
    }

    fn parse_config(&self, id: &Digest) -> Result<oci_spec::image::ImageConfiguration, StoreError> {
        let bytes = self.read_blob(id)?;
        oci_spec::image::ImageConfiguration::from_reader(&bytes[..])
            .map_err(|e| StoreError::Invalid(format!("image config {id}: {e}; the image is malformed")))
    }

    /// Unpack the layers not yet in the store, at most [`PARALLEL_UNPACKS`] at a time; the first error
    /// (in layer order) wins, and no half-unpacked layer remains.
    fn unpack_missing(&self, layers: &[LayerRecord]) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        let todo: Vec<&LayerRecord> =
            layers.iter().filter(|l| !self.has_layer(&l.diff_id) && seen.insert(&l.diff_id)).collect();
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let errors: Mutex<Vec<(usize, StoreError)>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..todo.len().min(PARALLEL_UNPACKS) {
                s.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(l) = todo.get(i) else { break };
                        if let Err(e) = self.unpack_layer(&l.blob, &l.media_type, Some(&l.diff_id)) {
                            failed.store(true, Ordering::Relaxed);
                            errors.lock().expect("not poisoned").push((i, e));
                        }
                    }
                });
            }
        });
        let mut errors = errors.into_inner().expect("not poisoned");
        errors.sort_by_key(|(i, _)| *i);
        match errors.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| io_err(path, format!("{e}; the file is corrupt — remove it (and pull its image again)")))
}
