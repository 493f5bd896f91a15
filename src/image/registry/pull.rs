//! Pull: manifest (an index resolves to the host's platform), then the config and layers, at most
//! [`PARALLEL_BLOBS`] at a time, each HTTP body streamed through a bounded channel into
//! `store.put_blob` on a blocking thread (which hashes and verifies it before it lands), then the manifest
//! blob and `store.add_image`. Nothing but verified blobs reaches the store before the image is complete.

use super::manifest::{self, AnyManifest, Descriptor, Kind};
use super::{
    Ctx, PARALLEL_BLOBS, Progress, PullOptions, RegistryError, auth, block_on, client, retry,
};
use crate::image::digest::Digest;
use crate::image::reference;
use crate::image::store::{ImageRecord, Store};
use futures_util::{StreamExt, TryStreamExt, stream};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::io::{self, Read};
use tokio::sync::mpsc;

/// Pull `reference` (`busybox`, `127.0.0.1:5000/x:tag`, `…@sha256:…`) into `store`.
pub fn pull(
    store: &Store,
    reference: &str,
    opts: &PullOptions,
) -> Result<ImageRecord, RegistryError> {
    reference::parse(reference)?;
    block_on(|| pull_async(store, reference, opts))
}

/// [`pull`] for callers already inside a tokio runtime (needs a multi-thread runtime or `spawn_blocking`
/// capacity: store writes run on blocking threads).
pub async fn pull_async(
    store: &Store,
    reference: &str,
    opts: &PullOptions,
) -> Result<ImageRecord, RegistryError> {
    let r = reference::parse(reference)?;
    let ctx = Ctx::new(&r);
    ctx.not_local(&r)?;
    let want = match &opts.platform {
        Some(p) => manifest::parse_platform(p).map_err(RegistryError::Internal)?,
        None => manifest::host_platform(),
    };
    let auth = auth::resolve(
        &r,
        opts.username.as_deref(),
        opts.password.as_deref(),
        opts.docker_config.as_deref(),
    )?;
    let client = client(&r, opts.insecure, false);
    client
        .store_auth_if_needed(r.resolve_registry(), &auth)
        .await;
    let unsupported = |msg: String| RegistryError::Unsupported {
        reference: ctx.reference.clone(),
        msg,
    };

    // The manifest; an index or manifest list resolves to the wanted platform's manifest.
    let (mut bytes, mut digest) = fetch_manifest(&client, &r, &auth, &ctx, None).await?;
    let mut m = AnyManifest::parse(&bytes).map_err(unsupported)?;
    if m.kind().map_err(unsupported)? == Kind::Index {
        let entry =
            manifest::choose(m.entries(), &want).ok_or_else(|| RegistryError::NoPlatform {
                reference: ctx.reference.clone(),
                want: manifest::platform_string(&want),
                available: manifest::platforms_of(m.entries()),
            })?;
        let expected = entry.digest().map_err(unsupported)?;
        let child = r.clone_with_digest(expected.to_string());
        (bytes, digest) = fetch_manifest(&client, &child, &auth, &ctx, Some(&expected)).await?;
        m = AnyManifest::parse(&bytes).map_err(unsupported)?;
        if m.kind().map_err(unsupported)? != Kind::Image {
            return Err(unsupported(format!(
                "index entry {expected} is itself an index"
            )));
        }
    }
    let img = m.image().map_err(unsupported)?;
    tracing::debug!(manifest = %digest, layers = img.layers.len(), "pulling");

    // Config and layers (each once), in parallel, straight into the store.
    let progress = Progress::new(opts.quiet);
    let mut blobs: Vec<&Descriptor> = vec![&img.config];
    for l in &img.layers {
        if !blobs.iter().any(|b| b.digest == l.digest) {
            blobs.push(l);
        }
    }
    // Pin what we fetch so a concurrent `gc` can't delete a blob before the image record references it.
    let pin = PullPin::new(store, &digest, blobs.iter().filter_map(|b| Digest::parse(&b.digest).ok()))?;
    stream::iter(blobs)
        .map(|desc| fetch_blob(&client, &r, desc, store, &progress, &ctx))
        .buffer_unordered(PARALLEL_BLOBS)
        .try_collect::<Vec<()>>()
        .await?;

    // Then the manifest, and the image record (which unpacks the layers).
    let store = store.clone();
    let names = vec![reference::canonical(&r)];
    progress.println(&format!("{}: unpacking {}", ctx.reference, digest));
    let rec = tokio::task::spawn_blocking(move || -> Result<ImageRecord, RegistryError> {
        let stored = store.put_blob_bytes(&bytes)?;
        if stored != digest {
            return Err(RegistryError::Internal(format!(
                "manifest stored as {stored}, expected {digest}"
            )));
        }
        Ok(store.add_image(&stored, &names)?)
    })
    .await
    .map_err(|e| RegistryError::Internal(format!("image record task failed: {e}")))??;
    drop(pin);
    Ok(rec)
}

/// The blobs of a pull in progress, pinned in the store until the pull ends (either way).
struct PullPin {
    store: Store,
    owner: String,
}

impl PullPin {
    fn new(store: &Store, manifest: &Digest, blobs: impl Iterator<Item = Digest>) -> Result<Self, RegistryError> {
        let owner = format!("pull-{}-{}", std::process::id(), manifest.short());
        let mut all: Vec<Digest> = blobs.collect();
        all.push(manifest.clone());
        store.pin(&owner, &all)?;
        Ok(Self { store: store.clone(), owner })
    }
}

impl Drop for PullPin {
    fn drop(&mut self) {
        if let Err(e) = self.store.unpin(&self.owner) {
            tracing::warn!("unpinning pull {}: {e}", self.owner);
        }
    }
}

/// The raw manifest and its digest (checked against the body, and against `expected` when given).
async fn fetch_manifest(
    client: &Client,
    r: &Reference,
    auth: &RegistryAuth,
    ctx: &Ctx,
    expected: Option<&Digest>,
) -> Result<(Vec<u8>, Digest), RegistryError> {
    let (body, _header_digest) = retry(|_| async {
        client
            .pull_manifest_raw(r, auth, manifest::ACCEPTED_MANIFESTS)
            .await
            .map_err(|e| ctx.err(e))
    })
    .await?;
    let actual = Digest::of(&body);
    let want = expected
        .cloned()
        .or_else(|| r.digest().and_then(|d| Digest::parse(d).ok()));
    if let Some(want) = want
        && want != actual
    {
        return Err(RegistryError::DigestMismatch {
            registry: ctx.registry.clone(),
            expected: want.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok((body.to_vec(), actual))
}

/// One blob, unless the store has it: streamed into `put_blob`, verified there (and by the client).
async fn fetch_blob(
    client: &Client,
    r: &Reference,
    desc: &Descriptor,
    store: &Store,
    progress: &Progress,
    ctx: &Ctx,
) -> Result<(), RegistryError> {
    let d = desc.digest().map_err(|msg| RegistryError::Unsupported {
        reference: ctx.reference.clone(),
        msg,
    })?;
    let pb = progress.bar("pulling", &d, desc.size);
    if store.has_blob(&d) {
        pb.set_position(desc.size);
        pb.finish_with_message("exists");
        return Ok(());
    }
    let result = retry(|attempt| {
        let (pb, d) = (pb.clone(), d.clone());
        async move {
            pb.set_position(0);
            if attempt > 1 {
                pb.set_message(format!("retry {attempt}"));
            }
            let sized = client
                .pull_blob_stream(r, desc.digest.as_str())
                .await
                .map_err(|e| ctx.err(e))?;
            let (tx, rx) = mpsc::channel(16);
            let writer = {
                let (store, d) = (store.clone(), d.clone());
                tokio::task::spawn_blocking(move || {
                    store.put_blob(&mut ChanReader::new(rx), Some(&d))
                })
            };
            let mut body = sized.stream;
            let mut failed = None;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(b) => {
                        pb.inc(b.len() as u64);
                        if tx.send(Msg::Data(b)).await.is_err() {
                            break; // the writer failed; its error says why
                        }
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if failed.is_none() {
                let _ = tx.send(Msg::End).await;
            }
            drop(tx);
            let stored = writer
                .await
                .map_err(|e| RegistryError::Internal(format!("blob writer failed: {e}")))?;
            if let Some(e) = failed {
                return Err(ctx.io_err(e));
            }
            stored.map_err(|e| ctx.store_err(e))?;
            Ok(())
        }
    })
    .await;
    Progress::finish(&pb, result)
}

enum Msg<B> {
    Data(B),
    End,
}

/// The blocking side of the body channel. A channel closed before `End` is an error, never EOF, so an
/// aborted download can't pass for a short blob.
struct ChanReader<B> {
    rx: mpsc::Receiver<Msg<B>>,
    cur: Option<B>,
    pos: usize,
    done: bool,
}

impl<B> ChanReader<B> {
    fn new(rx: mpsc::Receiver<Msg<B>>) -> Self {
        ChanReader {
            rx,
            cur: None,
            pos: 0,
            done: false,
        }
    }
}

impl<B: AsRef<[u8]>> Read for ChanReader<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(c) = &self.cur {
                let rest = &c.as_ref()[self.pos..];
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.pos += n;
                    return Ok(n);
                }
                self.cur = None;
            }
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Msg::Data(b)) => {
                    self.cur = Some(b);
                    self.pos = 0;
                }
                Some(Msg::End) => self.done = true,
                None => return Err(io::Error::other("download aborted")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chan_reader_needs_end() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Msg::Data(b"ab".to_vec())).unwrap();
        tx.try_send(Msg::Data(b"c".to_vec())).unwrap();
        tx.try_send(Msg::End).unwrap();
        let mut s = String::new();
        ChanReader::new(rx).read_to_string(&mut s).unwrap();
        assert_eq!(s, "abc");

        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Msg::Data(b"ab".to_vec())).unwrap();
        drop(tx);
        assert!(ChanReader::new(rx).read_to_end(&mut Vec::new()).is_err());
    }
}
