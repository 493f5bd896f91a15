//! Push: every blob of a local image that the registry lacks (config and layers, at most
//! [`PARALLEL_BLOBS`] at a time, each streamed from its store file in one monolithic PUT), then the
//! manifest exactly as stored, so the pushed manifest digest equals the local one.

use super::manifest::{AnyManifest, Descriptor};
use super::{
    Ctx, PARALLEL_BLOBS, Progress, PushOptions, RegistryError, auth, block_on, client, retry,
};
use crate::image::digest::Digest;
use crate::image::reference;
use crate::image::store::Store;
use futures_util::{StreamExt, TryStreamExt, stream};
use oci_client::errors::OciDistributionError;
use oci_client::{Client, Reference, RegistryOperation};
use tokio::io::AsyncReadExt;

const CHUNK: usize = 1 << 20;

/// Push local image `local` (name, `name@digest` or id) to `target` (`registry/repo:tag`).
/// Returns the manifest digest, which is the local one.
pub fn push(
    store: &Store,
    local: &str,
    target: &str,
    opts: &PushOptions,
) -> Result<Digest, RegistryError> {
    reference::parse(target)?;
    block_on(|| push_async(store, local, target, opts))
}

pub async fn push_async(
    store: &Store,
    local: &str,
    target: &str,
    opts: &PushOptions,
) -> Result<Digest, RegistryError> {
    let t = reference::parse(target)?;
    let ctx = Ctx::new(&t);
    ctx.not_local(&t)?;
    let rec = store.resolve(local)?;
    let bytes = store.read_blob(&rec.manifest)?;
    let unsupported = |msg: String| RegistryError::Unsupported {
        reference: local.to_string(),
        msg,
    };
    let m = AnyManifest::parse(&bytes).map_err(unsupported)?;
    let media_type = m
        .media_type
        .clone()
        .unwrap_or_else(|| rec.manifest_media_type.clone());
    let img = m.image().map_err(unsupported)?;
    let digest = Digest::of(&bytes);
    if let Some(d) = t.digest()
        && d != digest.to_string()
    {
        return Err(RegistryError::Internal(format!(
            "{target}: the image's manifest is {digest}, not {d}"
        )));
    }

    let auth = auth::resolve(
        &t,
        opts.username.as_deref(),
        opts.password.as_deref(),
        opts.docker_config.as_deref(),
    )?;
    let client = client(&t, opts.insecure, true);
    // Authenticate up front so bad credentials or a dead registry fail before any upload starts.
    retry(|_| async {
        client
            .auth(&t, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| ctx.err(e))
    })
    .await?;

    let progress = Progress::new(opts.quiet);
    let mut blobs: Vec<&Descriptor> = img.layers.iter().collect();
    if !blobs.iter().any(|b| b.digest == img.config.digest) {
        blobs.push(&img.config);
    }
    stream::iter(blobs)
        .map(|desc| push_blob(&client, &t, desc, store, &progress, &ctx))
        .buffer_unordered(PARALLEL_BLOBS)
        .try_collect::<Vec<()>>()
        .await?;

    let content_type = media_type
        .parse()
        .map_err(|_| RegistryError::Internal(format!("bad manifest media type {media_type:?}")))?;
    retry(|_| {
        let content_type = Clone::clone(&content_type);
        let body = bytes.clone();
        async {
            client
                .push_manifest_raw(&t, body, content_type)
                .await
                .map_err(|e| ctx.err(e))
        }
    })
    .await?;
    progress.println(&format!("{}: pushed {digest}", ctx.reference));
    Ok(digest)
}

async fn push_blob(
    client: &Client,
    t: &Reference,
    desc: &Descriptor,
    store: &Store,
    progress: &Progress,
    ctx: &Ctx,
) -> Result<(), RegistryError> {
    let d = desc.digest().map_err(RegistryError::Internal)?;
    let path = store.blob_path(&d);
    let size = std::fs::metadata(&path)
        .map_err(|e| {
            RegistryError::Internal(format!(
                "blob {d} is missing from the local store ({e}); pull the image again"
            ))
        })?
        .len();
    let pb = progress.bar("pushing", &d, size);
    let exists = retry(|_| async {
        client
            .blob_exists(t, &desc.digest)
            .await
            .map_err(|e| ctx.err(e))
    })
    .await;
    if let Ok(true) = exists {
        pb.set_position(size);
        pb.finish_with_message("exists");
        return Ok(());
    }
    let result = retry(|attempt| {
        let (pb, path, digest) = (pb.clone(), path.clone(), desc.digest.clone());
        async move {
            pb.set_position(0);
            if attempt > 1 {
                pb.set_message(format!("retry {attempt}"));
            }
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| RegistryError::Internal(format!("{}: {e}", path.display())))?;
            let pb2 = pb.clone();
            let body = stream::unfold(Some(file), move |f| {
                let pb = pb2.clone();
                async move {
                    let mut f = f?;
                    let mut buf = vec![0u8; CHUNK];
                    match f.read(&mut buf).await {
                        Ok(0) => None,
                        Ok(n) => {
                            buf.truncate(n);
                            pb.inc(n as u64);
                            Some((Ok(buf.into()), Some(f)))
                        }
                        Err(e) => Some((Err(OciDistributionError::IoError(e)), None)),
                    }
                }
            });
            client
                .push_blob_stream(t, body, &digest, Some(size))
                .await
                .map_err(|e| ctx.err(e))?;
            Ok(())
        }
    })
    .await;
    Progress::finish(&pb, result)
}
