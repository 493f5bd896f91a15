//! Images for sandboxes: found in the store, built from the embedded busybox recipe, or pulled.

use super::error::{Result, SandboxError};
use crate::image::store::{ImageRecord, Store};

/// Find an image, or fetch it: the embedded busybox recipe for `busybox`, else a registry pull.
pub async fn ensure_image(store: &Store, reference: &str, progress: &(dyn Fn(String) + Send + Sync)) -> Result<ImageRecord> {
    if reference.trim().is_empty() {
        return Err(SandboxError::invalid("image", "image is empty; name an image, e.g. \"busybox\""));
    }
    if let Ok(img) = store.resolve(reference) {
        return Ok(img);
    }
    let store = store.clone();
    if matches!(reference, "busybox" | "busybox:latest" | "beam.local/busybox" | "beam.local/busybox:latest") {
        progress(format!("building {reference} from the embedded recipe"));
        let opts = crate::image::recipe::BuildOptions { tag: None, quiet: true };
        return tokio::task::spawn_blocking(move || {
            crate::image::recipe::build_str(&store, crate::image::recipe::BUSYBOX_RECIPE, None, &opts)
        })
        .await
        .map_err(|e| SandboxError::Internal(e.to_string()))?
        .map_err(|e| SandboxError::Internal(e.to_string()));
    }
    progress(format!("pulling {reference}"));
    let opts = crate::image::registry::PullOptions { quiet: true, ..Default::default() };
    let r = reference.to_string();
    // The blocking pull (its own runtime on a scoped thread): the async one's futures aren't `Send`
    // enough for a spawned hyper task.
    let pulled = tokio::task::spawn_blocking(move || crate::image::registry::pull(&store, &r, &opts))
        .await
        .map_err(|e| SandboxError::Internal(e.to_string()))?;
    pulled.map_err(|e| {
        let msg = e.to_string();
        if msg.contains("not found") || msg.contains("invalid reference") || msg.contains("reference") {
            SandboxError::Image(format!("image {reference:?}: {msg}"))
        } else {
            SandboxError::Image(format!("image {reference:?} is not here and could not be pulled: {msg}"))
        }
    })
}
