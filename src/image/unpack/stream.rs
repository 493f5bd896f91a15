//! Layer decompression: by media type, or by magic bytes when the type does not say; and [`LayerStream`],
//! which decompresses and hashes on helper threads so that this work overlaps with the file system work
//! of [`super::unpack`] (what `tar -xzf` gets from running gzip as a separate process).

use super::UnpackError;
use crate::image::digest::{Digest, HashingWriter};
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The compression a layer media type names: `Some(Gzip)` for `…tar+gzip` and Docker's `…tar.gzip`,
/// `Some(Zstd)` for `…tar+zstd`; `None` when the type does not say for sure (plain `…tar`, Docker's
/// `…diff.tar`, unknown types): then the data's magic bytes decide.
pub fn compression_of(media_type: &str) -> Option<Compression> {
    let t = media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if t.ends_with("+gzip") || t.ends_with(".tar.gzip") || t.ends_with(".tar.gz") {
        Some(Compression::Gzip)
    } else if t.ends_with("+zstd") || t.ends_with(".tar.zstd") {
        Some(Compression::Zstd)
    } else {
        None
    }
}

/// Wrap `r` in the decompressor `media_type` calls for (gzip via a multi-member decoder, zstd, or none);
/// for plain-tar and unknown types the first bytes decide (1f 8b: gzip, 28 b5 2f fd: zstd, else a tar).
/// An unknown `+suffix` compression whose data is neither gzip nor zstd is an error.
pub fn decompress<'a>(mut r: Box<dyn Read + 'a>, media_type: &str) -> Result<Box<dyn Read + 'a>, UnpackError> {
    let compression = match compression_of(media_type) {
        Some(c) => c,
        None => {
            let mut magic = [0u8; 4];
            let n = read_up_to(&mut r, &mut magic).map_err(UnpackError::Read)?;
            let head = magic[..n].to_vec();
            let sniffed = if head.starts_with(&GZIP_MAGIC) {
                Compression::Gzip
            } else if head.starts_with(&ZSTD_MAGIC) {
                Compression::Zstd
            } else {
                Compression::None
            };
            let base = media_type.split(';').next().unwrap_or("");
            if sniffed == Compression::None
                && let Some((_, suffix)) = base.rsplit_once('+')
            {
                return Err(UnpackError::Unsupported(format!(
                    "layer media type {media_type:?}: compression {suffix:?} is not supported (gzip, zstd or an \
                     uncompressed tar are)"
                )));
            }
            r = Box::new(io::Cursor::new(head).chain(r));
            sniffed
        }
    };
    Ok(match compression {
        Compression::None => r,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r).map_err(UnpackError::Read)?),
    })
}

/// Read until `buf` is full or EOF; the number of bytes read.
fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

const CHUNK: usize = 512 * 1024;
const DEPTH: usize = 8;

/// The uncompressed stream of a layer blob, decompressed on one helper thread and sha256-hashed on another.
///
/// Read it to the end of the tar (e.g. with [`super::unpack`]), then call [`LayerStream::finish`] for the
/// digest and size of the *whole* uncompressed stream (the helpers go on past the tar's end-of-archive
/// marker to EOF, as the diff id covers every byte). Dropping it without `finish` cancels the helpers.
pub struct LayerStream {
    rx: Option<Receiver<io::Result<Arc<Vec<u8>>>>>,
    recycle: SyncSender<Vec<u8>>,
    cur: Arc<Vec<u8>>,
    pos: usize,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<Helper>>,
}

/// The helpers' result: the digest and size of the stream; `Err(None)` when cancelled.
type Helper = Result<(Digest, u64), Option<UnpackError>>;

impl LayerStream {
    /// Start decompressing `r` (compressed as `media_type` says or as its magic bytes show).
    pub fn spawn<R: Read + Send + 'static>(r: R, media_type: &str) -> Self {
        let (tx, rx) = sync_channel(DEPTH);
        let (recycle, recycled) = sync_channel(DEPTH * 2);
        let cancel = Arc::new(AtomicBool::new(false));
        let media_type = media_type.to_string();
        let stop = cancel.clone();
        let hasher_recycle = recycle.clone();
        let thread = std::thread::Builder::new()
            .name("layer-decompress".into())
            .spawn(move || pump(Box::new(r), &media_type, &tx, (hasher_recycle, &recycled), &stop))
            .expect("spawning a thread");
        Self { rx: Some(rx), recycle, cur: Arc::default(), pos: 0, cancel, thread: Some(thread) }
    }

    /// Let the helpers go through the rest of the stream; the sha256 digest and byte count of all of it.
    pub fn finish(mut self) -> Result<(Digest, u64), UnpackError> {
        self.rx = None; // the decompressor stops sending; the hasher goes on to EOF
        self.join().map_err(|e| e.unwrap_or_else(|| UnpackError::Read(io::Error::other("cancelled"))))
    }

    /// Stop the helpers (after the reader failed); their own error, if they failed first (say the data is
    /// not in the format the media type names): that is the root cause to report.
    pub fn abort(mut self) -> Option<UnpackError> {
        self.cancel.store(true, Ordering::Relaxed);
        self.rx = None;
        self.join().err().flatten()
    }

    fn join(&mut self) -> Helper {
        let thread = self.thread.take().expect("joined once");
        thread
            .join()
            .unwrap_or_else(|_| Err(Some(UnpackError::Read(io::Error::other("the decompression thread panicked")))))
    }
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            let Some(rx) = &self.rx else { return Ok(0) };
            match rx.recv() {
                Ok(Ok(chunk)) => {
                    let old = std::mem::replace(&mut self.cur, chunk);
                    self.pos = 0;
                    if let Ok(old) = Arc::try_unwrap(old) {
                        let _ = self.recycle.try_send(old); // else the hasher still has it: let it go
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // the helper finished (or failed; finish() reports why)
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for LayerStream {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.cancel.store(true, Ordering::Relaxed);
            self.rx = None;
            let _ = self.join();
        }
    }
}

/// The decompression thread: decompress into chunks, each shared with the reader and with a hashing thread;
/// once the reader stops listening, go on to EOF for the hash alone.
fn pump(
    r: Box<dyn Read + Send>,
    media_type: &str,
    tx: &SyncSender<io::Result<Arc<Vec<u8>>>>,
    (recycle, recycled): (SyncSender<Vec<u8>>, &Receiver<Vec<u8>>),
    cancel: &AtomicBool,
) -> Helper {
    let fail = |e: UnpackError| {
        let _ = tx.send(Err(io::Error::other(e.to_string())));
        Some(e)
    };
    let mut dec = decompress(r, media_type).map_err(fail)?;
    std::thread::scope(|s| {
        let (to_hasher, chunks) = sync_channel::<Arc<Vec<u8>>>(DEPTH);
        let hasher = std::thread::Builder::new()
            .name("layer-sha256".into())
            .spawn_scoped(s, move || {
                let mut h = HashingWriter::new(io::sink());
                for chunk in chunks {
                    h.write_all(&chunk).expect("writing to a sink");
                    if let Ok(buf) = Arc::try_unwrap(chunk) {
                        let _ = recycle.try_send(buf); // the reader is done with it too
                    }
                }
                let (_, digest, n) = h.finish();
                (digest, n)
            })
            .expect("spawning a thread");
        let mut listening = true;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(None);
            }
            let mut buf = recycled.try_recv().unwrap_or_default();
            buf.resize(CHUNK, 0);
            let n = match read_up_to(&mut dec, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let err = UnpackError::Read(io::Error::new(e.kind(), format!("decompressing the layer: {e}")));
                    return Err(fail(err));
                }
            };
            if n == 0 {
                break;
            }
            buf.truncate(n);
            let chunk = Arc::new(buf);
            if to_hasher.send(chunk.clone()).is_err() {
                break; // the hasher is gone (it panicked); join() says so
            }
            if listening && tx.send(Ok(chunk)).is_err() {
                listening = false;
            }
        }
        drop(to_hasher);
        hasher.join().map_err(|_| Some(UnpackError::Read(io::Error::other("the hashing thread panicked"))))
    })
}
