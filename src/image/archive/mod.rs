//! Images from files: OCI image layout directories, oci-archive tars (the same, tarred) and docker-archive
//! tars (`docker save`), each optionally gzip or zstd compressed; and `export_oci_layout`.
//!
//! Tars are read as streams, never extracted to disk: a first pass keeps the small files (index.json,
//! manifest.json, manifests, configs) in memory and notes the rest; a second pass streams the needed big
//! blobs straight into `store.put_blob`, which verifies each against its digest. Docker archives hold
//! uncompressed layer tars named by path; they become `application/vnd.oci.image.layer.v1.tar` blobs
//! (digest = the config's diff id) under a synthesized OCI manifest.

use crate::image::digest::Digest;
use crate::image::reference::{self, LOCAL_REGISTRY, RefError};
use crate::image::registry::manifest::{self as mf, AnyManifest, Descriptor, Kind};
use crate::image::store::{ImageRecord, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Files up to this size are kept in memory during the first pass over a tar.
const SMALL: u64 = 4 << 20;
/// …up to this much in all.
const SMALL_TOTAL: u64 = 256 << 20;
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error(
        "{path}: not an OCI layout, oci-archive or docker-archive (no oci-layout, index.json or manifest.json)"
    )]
    UnknownFormat { path: PathBuf },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("{path}: no image named {name:?} (it has: {available})")]
    NoSuchImage {
        path: PathBuf,
        name: String,
        available: String,
    },
    #[error(transparent)]
    Reference(#[from] RefError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Import every image in `path` (or, with `name`, the one whose ref name / RepoTag is `name`, or the only
/// one; it is then recorded under `name` alone). Indexes resolve to the host platform.
pub fn import(
    store: &Store,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ArchiveError> {
    let ctx = Ctx {
        path: path.to_path_buf(),
    };
    let meta = std::fs::metadata(path).map_err(|e| ctx.io(e))?;
    if meta.is_dir() {
        if !path.join("index.json").is_file() {
            return Err(ArchiveError::UnknownFormat { path: path.into() });
        }
        return import_oci(store, &mut DirSource { root: path.into() }, &ctx, name);
    }
    let mut src = TarSource::scan(path)?;
    let oci = src.small.contains_key("index.json")
        && (src.small.contains_key("oci-layout") || !src.has("manifest.json"));
    if oci {
        import_oci(store, &mut src, &ctx, name)
    } else if src.has("manifest.json") {
        import_docker(store, &mut src, &ctx, name)
    } else {
        Err(ArchiveError::UnknownFormat { path: path.into() })
    }
}

/// Write image `reference` from the store as an OCI image layout at `dir` (created if needed; an existing
/// layout gains the image, replacing any entry of the same ref name).
pub fn export_oci_layout(store: &Store, reference: &str, dir: &Path) -> Result<(), ArchiveError> {
    let ctx = Ctx {
        path: dir.to_path_buf(),
    };
    let rec = store.resolve(reference)?;
    let bytes = store.read_blob(&rec.manifest)?;
    let m = AnyManifest::parse(&bytes)
        .map_err(|m| ctx.invalid(m))?
        .image()
        .map_err(|m| ctx.invalid(m))?;
    let blobs_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir).map_err(|e| ctx.io(e))?;
    let mut digests = vec![rec.manifest.clone()];
    for d in std::iter::once(&m.config).chain(&m.layers) {
        digests.push(d.digest().map_err(|m| ctx.invalid(m))?);
    }
    for d in &digests {
        let to = blobs_dir.join(d.hex());
        if !to.exists() {
            let tmp = blobs_dir.join(format!(".{}.tmp", d.hex()));
            std::fs::copy(store.blob_path(d), &tmp).map_err(|e| ctx.io(e))?;
            std::fs::rename(&tmp, &to).map_err(|e| ctx.io(e))?;
        }
    }
    let mut annotations = BTreeMap::new();
    if let Some(n) = rec
        .names
        .iter()
        .find(|n| !n.contains('@'))
        .or(rec.names.first())
    {
        let r = reference::parse(n)?;
        annotations.insert(
            REF_NAME.to_string(),
            r.tag().unwrap_or("latest").to_string(),
        );
        annotations.insert(CONTAINERD_NAME.to_string(), n.clone());
    }
    let entry = Descriptor {
        media_type: m.media_type.clone(),
        digest: rec.manifest.to_string(),
        size: bytes.len() as u64,
        platform: None,
        annotations,
    };
    let index_path = dir.join("index.json");
    let mut manifests: Vec<Descriptor> = match std::fs::read(&index_path) {
        Ok(b) => AnyManifest::parse(&b)
            .map_err(|m| ctx.invalid(format!("index.json: {m}")))?
            .manifests
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    manifests.retain(|d| {
        d.digest != entry.digest
            && d.annotations
                .get(REF_NAME)
                .is_none_or(|n| Some(n) != entry.annotations.get(REF_NAME))
    });
    manifests.push(entry);
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Index {
        schema_version: u32,
        media_type: &'static str,
        manifests: Vec<Descriptor>,
    }
    let index = serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: mf::OCI_INDEX,
        manifests,
    })
    .map_err(|e| ctx.invalid(e.to_string()))?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(|e| ctx.io(e))?;
    std::fs::write(&index_path, index).map_err(|e| ctx.io(e))?;
    Ok(())
}

struct Ctx {
    path: PathBuf,
}

impl Ctx {
    fn io(&self, e: io::Error) -> ArchiveError {
        ArchiveError::Io {
            path: self.path.clone(),
            msg: e.to_string(),
        }
    }
    fn invalid(&self, msg: impl Into<String>) -> ArchiveError {
        ArchiveError::Invalid {
            path: self.path.clone(),
            msg: msg.into(),
        }
    }
    /// `beam.local/<file stem>:<tag>` for images whose only name is a bare tag.
    fn local_name(&self, tag: &str) -> String {
        let stem = self
            .path
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let stem = stem.split('.').next().unwrap_or("").to_ascii_lowercase();
        let mut repo: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        repo = repo.trim_matches('-').to_string();
        if repo.is_empty() {
            repo = "imported".into();
        }
        format!("{LOCAL_REGISTRY}/{repo}:{tag}")
    }
}

/// A file wanted in the store: `rel` (a path inside the layout/archive) must hash to `expected`;
/// `decompress`: store the gzip/zstd-decompressed content (docker layers).
struct Want {
    rel: String,
    expected: Digest,
    decompress: bool,
}

trait Source {
    fn read_small(&mut self, rel: &str, ctx: &Ctx) -> Result<Vec<u8>, ArchiveError>;
    /// Put every wanted file into the store (verified); files the store already has are skipped.
    fn store_files(&mut self, store: &Store, wants: &[Want], ctx: &Ctx)
    -> Result<(), ArchiveError>;
}

fn blob_rel(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// gzip / zstd / plain, by magic.
fn decompressed<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(1 << 16, r);
    let head = br.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(br))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(br)?)
    } else {
        Box::new(br)
    })
}

fn put(store: &Store, r: impl Read, w: &Want) -> Result<(), ArchiveError> {
    let mut r: Box<dyn Read> = if w.decompress {
        decompressed(r).map_err(|e| ArchiveError::Invalid {
            path: w.rel.clone().into(),
            msg: e.to_string(),
        })?
    } else {
        Box::new(r)
    };
    store.put_blob(&mut r, Some(&w.expected))?;
    Ok(())
}

struct DirSource {
    root: PathBuf,
}

impl Source for DirSource {
    fn read_small(&mut self, rel: &str, ctx: &Ctx) -> Result<Vec<u8>, ArchiveError> {
        std::fs::read(self.root.join(rel)).map_err(|e| ctx.invalid(format!("{rel}: {e}")))
    }
    fn store_files(
        &mut self,
        store: &Store,
        wants: &[Want],
        ctx: &Ctx,
    ) -> Result<(), ArchiveError> {
        for w in wants.iter().filter(|w| !store.has_blob(&w.expected)) {
            let f = File::open(self.root.join(&w.rel))
                .map_err(|e| ctx.invalid(format!("{}: {e}", w.rel)))?;
            put(store, f, w)?;
        }
        Ok(())
    }
}

/// A (possibly compressed) tar, read in passes.
struct TarSource {
    path: PathBuf,
    /// Small regular files by normalized path.
    small: HashMap<String, Vec<u8>>,
    /// Every regular file seen (path → size).
    files: HashMap<String, u64>,
    /// Symlinks and hardlinks: path → target path (normalized).
    links: HashMap<String, String>,
}

/// `./a/b/` → `a/b`; `..` resolved; None when it climbs out.
fn norm(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

impl TarSource {
    fn open(path: &Path) -> Result<tar::Archive<Box<dyn Read>>, ArchiveError> {
        let ctx = Ctx { path: path.into() };
        let f = File::open(path).map_err(|e| ctx.io(e))?;
        Ok(tar::Archive::new(decompressed(f).map_err(|e| ctx.io(e))?))
    }

    fn scan(path: &Path) -> Result<Self, ArchiveError> {
        let ctx = Ctx { path: path.into() };
        let bad = |e: io::Error| ctx.invalid(format!("not a readable tar: {e}"));
        let mut src = TarSource {
            path: path.into(),
            small: HashMap::new(),
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let mut kept = 0u64;
        let mut ar = Self::open(path)?;
        for entry in ar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let Some(p) = entry.path().ok().and_then(|p| norm(&p.to_string_lossy())) else {
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.to_string_lossy().to_string())
                else {
                    continue;
                };
                let joined = if kind.is_symlink() && !target.starts_with('/') {
                    format!(
                        "{}/{}",
                        p.rsplit_once('/').map_or("", |(dir, _)| dir),
                        target
                    )
                } else {
                    target
                };
                if let Some(t) = norm(&joined) {
                    src.links.insert(p, t);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = entry.size();
            src.files.insert(p.clone(), size);
            if size <= SMALL && kept + size <= SMALL_TOTAL {
                let mut b = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut b).map_err(bad)?;
                kept += size;
                src.small.insert(p, b);
            }
        }
        Ok(src)
    }

    fn resolve(&self, rel: &str) -> String {
        let mut p = rel.to_string();
        for _ in 0..16 {
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        p
    }

    fn has(&self, rel: &str) -> bool {
        self.files.contains_key(&self.resolve(rel))
    }
}

impl Source for TarSource {
    fn read_small(&mut self, rel: &str, ctx: &Ctx) -> Result<Vec<u8>, ArchiveError> {
        let p = self.resolve(rel);
        if let Some(b) = self.small.get(&p) {
            return Ok(b.clone());
        }
        if !self.files.contains_key(&p) {
            return Err(ctx.invalid(format!("{rel} is missing")));
        }
        let mut ar = Self::open(&self.path)?;
        for entry in ar.entries().map_err(|e| ctx.io(e))? {
            let mut entry = entry.map_err(|e| ctx.io(e))?;
            if entry
                .path()
                .ok()
                .and_then(|x| norm(&x.to_string_lossy()))
                .as_deref()
                == Some(p.as_str())
            {
                let mut b = Vec::new();
                entry.read_to_end(&mut b).map_err(|e| ctx.io(e))?;
                return Ok(b);
            }
        }
        Err(ctx.invalid(format!("{rel} is missing")))
    }

    fn store_files(
        &mut self,
        store: &Store,
        wants: &[Want],
        ctx: &Ctx,
    ) -> Result<(), ArchiveError> {
        let mut by_path: HashMap<String, &Want> = HashMap::new();
        for w in wants.iter().filter(|w| !store.has_blob(&w.expected)) {
            let p = self.resolve(&w.rel);
            if !self.files.contains_key(&p) {
                return Err(ctx.invalid(format!("{} is missing", w.rel)));
            }
            match self.small.get(&p) {
                Some(b) => put(store, &b[..], w)?,
                None => {
                    by_path.entry(p).or_insert(w);
                }
            }
        }
        if by_path.is_empty() {
            return Ok(());
        }
        let mut ar = Self::open(&self.path)?;
        for entry in ar.entries().map_err(|e| ctx.io(e))? {
            let entry = entry.map_err(|e| ctx.io(e))?;
            let Some(p) = entry.path().ok().and_then(|x| norm(&x.to_string_lossy())) else {
                continue;
            };
            if let Some(w) = by_path.remove(&p) {
                put(store, entry, w)?;
            }
            if by_path.is_empty() {
                break;
            }
        }
        match by_path.keys().next() {
            Some(p) => Err(ctx.invalid(format!("{p} is missing"))),
            None => Ok(()),
        }
    }
}

/// One image to import: its manifest and the names to give it.
struct Pick {
    manifest: Digest,
    names: Vec<String>,
    label: String,
}

#[allow(clippy::too_many_lines, reason = "one pass over an OCI layout's index, manifests and blobs; split before adding to it")]
fn import_oci(
    store: &Store,
    src: &mut dyn Source,
    ctx: &Ctx,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ArchiveError> {
    let index = src.read_small("index.json", ctx)?;
    let index = AnyManifest::parse(&index).map_err(|m| ctx.invalid(format!("index.json: {m}")))?;
    let host = mf::host_platform();
    let mut entries: Vec<&Descriptor> = index.entries().iter().collect();
    // A multi-platform top-level index: keep the host's entries (and those that name no platform).
    if entries.iter().any(|e| e.platform.is_some()) {
        let all: Vec<Descriptor> = entries.iter().map(|e| (*e).clone()).collect();
        let keep: Vec<&Descriptor> = entries
            .iter()
            .copied()
            .filter(|e| {
                e.platform.is_none() || mf::choose(std::slice::from_ref(*e), &host).is_some()
            })
            .collect();
        if keep.is_empty() {
            return Err(ctx.invalid(format!(
                "no image for {} (it has: {})",
                mf::platform_string(&host),
                mf::platforms_of(&all)
            )));
        }
        entries = keep;
    }
    if entries.is_empty() {
        return Err(ctx.invalid("index.json lists no images"));
    }
    let label = |e: &Descriptor| {
        e.annotations
            .get(CONTAINERD_NAME)
            .or(e.annotations.get(REF_NAME))
            .cloned()
            .unwrap_or_else(|| e.digest.clone())
    };
    let default_names = |e: &Descriptor| -> Vec<String> {
        if let Some(n) = e
            .annotations
            .get(CONTAINERD_NAME)
            .and_then(|n| reference::normalize(n).ok())
        {
            return vec![n];
        }
        match e.annotations.get(REF_NAME) {
            Some(n) if n.contains('/') => reference::normalize(n).ok().into_iter().collect(),
            Some(tag) if !tag.is_empty() => vec![ctx.local_name(tag)],
            _ => vec![],
        }
    };
    if let Some(n) = name {
        let want = reference::normalize(n).ok();
        let matching: Vec<&Descriptor> = entries
            .iter()
            .copied()
            .filter(|e| {
                e.annotations.get(REF_NAME).is_some_and(|r| r == n)
                    || e.annotations.get(CONTAINERD_NAME).is_some_and(|r| r == n)
                    || (want.is_some() && default_names(e).first() == want.as_ref())
            })
            .collect();
        entries = match (matching.is_empty(), entries.len()) {
            (false, _) => matching,
            (true, 1) => entries,
            (true, _) => {
                let available = entries
                    .iter()
                    .map(|e| label(e))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ArchiveError::NoSuchImage {
                    path: ctx.path.clone(),
                    name: n.into(),
                    available,
                });
            }
        };
    }
    // Resolve nested indexes to the host platform; merge names of entries that share a manifest.
    let mut picks: Vec<Pick> = Vec::new();
    for e in entries {
        let mut names = match name {
            // A bare tag that selected the entry keeps the entry's own naming.
            Some(n) if n.contains('/') || e.annotations.get(REF_NAME).is_none_or(|r| r != n) => {
                vec![reference::normalize(n)?]
            }
            _ => default_names(e),
        };
        let mut d = e.clone();
        for _ in 0..4 {
            if !(d.is_index() || d.media_type.is_empty()) {
                break;
            }
            let b = src.read_small(&blob_rel(&d.digest().map_err(|m| ctx.invalid(m))?), ctx)?;
            let m = AnyManifest::parse(&b).map_err(|m| ctx.invalid(m))?;
            if m.kind().map_err(|m| ctx.invalid(m))? == Kind::Image {
                break;
            }
            d = mf::choose(m.entries(), &host)
                .ok_or_else(|| {
                    ctx.invalid(format!(
                        "{}: no image for {} (it has: {})",
                        label(e),
                        mf::platform_string(&host),
                        mf::platforms_of(m.entries())
                    ))
                })?
                .clone();
        }
        let manifest = d.digest().map_err(|m| ctx.invalid(m))?;
        match picks.iter_mut().find(|p| p.manifest == manifest) {
            Some(p) => p.names.append(&mut names),
            None => picks.push(Pick {
                manifest,
                names,
                label: label(e),
            }),
        }
    }
    // Blobs first (verified), then each image.
    let mut wants = Vec::new();
    let mut manifests = Vec::new();
    for p in &picks {
        let b = src.read_small(&blob_rel(&p.manifest), ctx)?;
        if Digest::of(&b) != p.manifest {
            return Err(ctx.invalid(format!(
                "{}: manifest {} does not match its digest",
                p.label, p.manifest
            )));
        }
        let m = AnyManifest::parse(&b)
            .and_then(|m| m.image())
            .map_err(|m| ctx.invalid(format!("{}: {m}", p.label)))?;
        for d in std::iter::once(&m.config).chain(&m.layers) {
            let expected = d.digest().map_err(|m| ctx.invalid(m))?;
            if !wants.iter().any(|w: &Want| w.expected == expected) {
                wants.push(Want {
                    rel: blob_rel(&expected),
                    expected,
                    decompress: false,
                });
            }
        }
        manifests.push(b);
    }
    src.store_files(store, &wants, ctx)?;
    let mut out = Vec::new();
    for (p, b) in picks.iter_mut().zip(manifests) {
        store.put_blob_bytes(&b)?;
        p.names.dedup();
        out.push(store.add_image(&p.manifest, &p.names)?);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct DockerConfig {
    rootfs: DockerRootfs,
}

#[derive(Deserialize)]
struct DockerRootfs {
    diff_ids: Vec<Digest>,
}

#[allow(clippy::too_many_lines, reason = "one pass over a docker-archive's manifest, configs and layers; split before adding to it")]
fn import_docker(
    store: &Store,
    src: &mut TarSource,
    ctx: &Ctx,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ArchiveError> {
    let mj = src.read_small("manifest.json", ctx)?;
    let mut entries: Vec<DockerEntry> =
        serde_json::from_slice(&mj).map_err(|e| ctx.invalid(format!("manifest.json: {e}")))?;
    if entries.is_empty() {
        return Err(ctx.invalid("manifest.json lists no images"));
    }
    let tags = |e: &DockerEntry| -> Vec<String> {
        e.repo_tags
            .iter()
            .flatten()
            .filter_map(|t| reference::normalize(t).ok())
            .collect()
    };
    if let Some(n) = name {
        let want = reference::normalize(n)?;
        let has = |e: &DockerEntry| {
            tags(e).contains(&want) || e.repo_tags.iter().flatten().any(|t| t == n)
        };
        if entries.iter().any(has) {
            entries.retain(has);
        } else if entries.len() > 1 {
            let available = entries
                .iter()
                .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ArchiveError::NoSuchImage {
                path: ctx.path.clone(),
                name: n.into(),
                available,
            });
        }
    }
    struct Img {
        config: Vec<u8>,
        diff_ids: Vec<Digest>,
        names: Vec<String>,
    }
    let mut imgs = Vec::new();
    let mut wants: Vec<Want> = Vec::new();
    for e in &entries {
        let rel = norm(&e.config)
            .ok_or_else(|| ctx.invalid(format!("bad config path {:?}", e.config)))?;
        let config = src.read_small(&rel, ctx)?;
        let digest = Digest::of(&config);
        let stem = rel
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".json");
        if stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) && stem != digest.hex() {
            return Err(ctx.invalid(format!("config {rel} hashes to {digest}")));
        }
        let c: DockerConfig =
            serde_json::from_slice(&config).map_err(|e| ctx.invalid(format!("{rel}: {e}")))?;
        if c.rootfs.diff_ids.len() != e.layers.len() {
            return Err(ctx.invalid(format!(
                "{rel} lists {} diff ids for {} layers",
                c.rootfs.diff_ids.len(),
                e.layers.len()
            )));
        }
        for (l, diff_id) in e.layers.iter().zip(&c.rootfs.diff_ids) {
            let lrel = norm(l).ok_or_else(|| ctx.invalid(format!("bad layer path {l:?}")))?;
            if !wants.iter().any(|w| w.expected == *diff_id) {
                wants.push(Want {
                    rel: lrel,
                    expected: diff_id.clone(),
                    decompress: true,
                });
            }
        }
        let names = match name {
            Some(n) => vec![reference::normalize(n)?],
            None => tags(e),
        };
        imgs.push(Img {
            config,
            diff_ids: c.rootfs.diff_ids,
            names,
        });
    }
    src.store_files(store, &wants, ctx)?;
    let mut out = Vec::new();
    for img in imgs {
        let config = store.put_blob_bytes(&img.config)?;
        let mut layers = Vec::new();
        for d in &img.diff_ids {
            let size = std::fs::metadata(store.blob_path(d))
                .map_err(|e| ctx.io(e))?
                .len();
            layers.push(Descriptor {
                media_type: mf::OCI_LAYER_TAR.into(),
                digest: d.to_string(),
                size,
                platform: None,
                annotations: Default::default(),
            });
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Manifest<'a> {
            schema_version: u32,
            media_type: &'a str,
            config: Descriptor,
            layers: Vec<Descriptor>,
        }
        let m = Manifest {
            schema_version: 2,
            media_type: mf::OCI_MANIFEST,
            config: Descriptor {
                media_type: mf::OCI_CONFIG.into(),
                digest: config.to_string(),
                size: img.config.len() as u64,
                platform: None,
                annotations: Default::default(),
            },
            layers,
        };
        let bytes = serde_json::to_vec(&m).map_err(|e| ctx.invalid(e.to_string()))?;
        let manifest = store.put_blob_bytes(&bytes)?;
        out.push(store.add_image(&manifest, &img.names)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
