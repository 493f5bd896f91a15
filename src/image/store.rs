//! The content-addressed image store under the state root (default /var/lib/beam):
//!
//! ```text
//! <root>/blobs/sha256/<hex>     manifests, configs, compressed layers — verified on write
//! <root>/layers/<diff-id hex>/  each layer unpacked once, shared by every image and sandbox (overlay lowerdir)
//! <root>/images/<id hex>.json   one ImageRecord per image (id = config digest)
//! <root>/pins/<owner>.json      layers a live sandbox/container uses (gc keeps them)
//! <root>/tmp/                   in-progress writes (temp name → verify → rename; cleaned on open)
//! ```
//!
//! CONTRACT (other modules build on these signatures):
//! - Every write goes to `tmp/` first and is renamed into place only after verification, so an interrupted
//!   pull or unpack leaves no half-written blob or layer. Mutations take an exclusive flock on `<root>/lock`.
//! - `rm`/`gc` never delete a layer that an image record or a pin still references.

use crate::image::digest::Digest;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

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

impl Store {
    /// Open (creating the layout if needed) the store at `root`; removes leftovers in tmp/.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        Ok(Self { root: root.to_path_buf() })
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
    pub fn put_blob(&self, _r: &mut dyn Read, _expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        todo!("store")
    }
    pub fn put_blob_bytes(&self, _b: &[u8]) -> Result<Digest, StoreError> {
        todo!("store")
    }
    pub fn read_blob(&self, _d: &Digest) -> Result<Vec<u8>, StoreError> {
        todo!("store")
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
    pub fn unpack_layer(&self, _blob: &Digest, _media_type: &str, _diff_id: Option<&Digest>) -> Result<Digest, StoreError> {
        todo!("store")
    }
    /// Record an image whose manifest and config blobs (and layer blobs) are in the store: unpacks missing
    /// layers (in parallel), writes the record, points `names` at it (moving them off other images).
    pub fn add_image(&self, _manifest: &Digest, _names: &[String]) -> Result<ImageRecord, StoreError> {
        todo!("store")
    }
    /// By canonical name (`registry/repo:tag`), `name@sha256:…`, full id or a unique id prefix (≥ 4 hex).
    pub fn resolve(&self, _reference: &str) -> Result<ImageRecord, StoreError> {
        todo!("store")
    }
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        todo!("store")
    }
    /// The image's config (Env, Entrypoint, Cmd, WorkingDir, User, ExposedPorts…).
    pub fn config(&self, _img: &ImageRecord) -> Result<oci_spec::image::ImageConfiguration, StoreError> {
        todo!("store")
    }
    pub fn tag(&self, _img: &ImageRecord, _name: &str) -> Result<(), StoreError> {
        todo!("store")
    }
    /// Remove a name; the record goes when no name is left (layers stay until `gc`).
    pub fn remove(&self, _reference: &str) -> Result<(), StoreError> {
        todo!("store")
    }
    /// Layers a live container uses; gc keeps pinned layers.
    pub fn pin(&self, _owner: &str, _layers: &[Digest]) -> Result<(), StoreError> {
        todo!("store")
    }
    pub fn unpin(&self, _owner: &str) -> Result<(), StoreError> {
        todo!("store")
    }
    /// Delete blobs and layers no image record or pin references.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let _unused: HashSet<Digest> = HashSet::new();
        todo!("store")
    }
}
