//! Snapshots of a running sandbox.
//!
//! A filesystem snapshot commits what the sandbox changed — its overlay upper dir — as ONE new OCI layer
//! on top of its image's layers, with the image's config (env, workdir, entrypoint), and records that as
//! an ordinary image in beam's store (`beam run --image <id>`, `beam image push`, kept by `gc`). The
//! sandbox's cgroup is frozen for the copy, so the layer is one consistent moment, and thawed after; the
//! sandbox keeps running. Only the diff is written (overlayfs whiteouts become `.wh.` entries, opaque dirs
//! `.wh..wh..opq`, xattrs are kept), with owners as the sandbox sees them (its user namespace's range
//! shifted back to 0–65535). Like `docker commit`, the files beam writes into a bridged sandbox
//! (`/etc/resolv.conf`, `/etc/hosts`) are left out.

use super::entry::Entry;
use super::error::{Result, SandboxError};
use super::manager::{Manager, sandbox_cgroup};
use super::record;
use super::uids::UID_RANGE;
use crate::api::{FilesystemSnapshot, NetworkMode, SnapshotFilesystem};
use crate::image::recipe::layer::{self, LayerWriter, TreeOptions};
use std::sync::Arc;
use std::time::Instant;

/// Files beam itself writes into a bridged sandbox's root: not part of what the sandbox made.
const BEAM_WRITTEN: &[&str] = &["etc/resolv.conf", "etc/hosts"];

/// Thaws the cgroup when dropped, whatever happened while it was frozen.
struct Frozen(crate::runtime::cgroups::Cgroup);

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Err(e) = self.0.thaw() {
            tracing::error!("thawing {:?} after a snapshot: {e}", self.0);
        }
    }
}

/// `POST /v1/sandboxes/{ref}/snapshots/filesystem`: commit a running sandbox's filesystem as an image.
pub async fn filesystem(mgr: &Arc<Manager>, e: &Arc<Entry>, req: &SnapshotFilesystem) -> Result<FilesystemSnapshot> {
    let names = match &req.tag {
        None => Vec::new(),
        Some(t) => vec![crate::image::reference::normalize(t).map_err(|err| {
            SandboxError::invalid("tag", format!("tag {t:?} is not an image name ({err}); use NAME[:TAG], e.g. myapp:v1"))
        })?],
    };
    let _warm = e.active();
    // One snapshot at a time per sandbox: another's thaw must not end this one's freeze.
    let _one = e.snapshotting.lock().await;
    let rec = e.record();
    let parent = mgr.store().resolve(&rec.sandbox.image_id).map_err(|err| {
        SandboxError::Conflict(format!(
            "the image sandbox {} was made from ({}) is no longer in the store ({err}); a snapshot adds a layer to it",
            e.id, rec.sandbox.image
        ))
    })?;
    let cgroup = sandbox_cgroup(&e.id).ok_or_else(|| SandboxError::Internal(format!("sandbox {} has no cgroup", e.id)))?;
    let dir = mgr.sandbox_dir(&e.id);
    let upper = dir.join(record::BUNDLE_DIR).join("upper");
    let skip: Vec<String> = match rec.sandbox.network.mode {
        NetworkMode::Bridge => BEAM_WRITTEN.iter().map(|s| s.to_string()).collect(),
        NetworkMode::None => Vec::new(),
    };
    let id_range = rec.sandbox.security.uid_base.map(|b| (b, UID_RANGE));
    let (store, id, parent_id) = (mgr.store().clone(), e.id.clone(), parent.id.to_string());
    tokio::task::spawn_blocking(move || -> Result<FilesystemSnapshot> {
        let tmp = dir.join(".snapshot.layer.tar.zst");
        let written = (|| {
            let mut w = LayerWriter::create(&tmp)?;
            let o = TreeOptions { overlay_upper: true, skip_files: &skip, mtime: None, id_range };
            cgroup.freeze().map_err(|err| SandboxError::Internal(format!("freezing sandbox {id}: {err}")))?;
            let frozen = Frozen(cgroup);
            let started = Instant::now();
            layer::append_tree(&mut w.tar, &upper, &o)?;
            drop(frozen);
            let frozen_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            Ok::<_, SandboxError>((w.finish(&store)?, frozen_ms))
        })();
        let _ = std::fs::remove_file(&tmp);
        let (layer, frozen_ms) = written?;
        let (diff_id, size) = (layer.diff_id.to_string(), layer.size);
        let img = layer::write_image(&store, Some(&parent), Some(layer), &format!("beam snapshot fs {id}"), &names, |_| {})?;
        tracing::info!(sandbox = %id, image = %img.id, frozen_ms, "filesystem snapshot");
        Ok(FilesystemSnapshot {
            image_id: img.id.to_string(),
            names: img.names,
            parent_image_id: parent_id,
            sandbox: id,
            layer_diff_id: diff_id,
            layer_size: size,
            frozen_ms,
        })
    })
    .await
    .map_err(|err| SandboxError::Internal(format!("the snapshot task failed: {err}")))?
}
