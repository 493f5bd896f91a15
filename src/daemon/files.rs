//! The files API: every path is resolved inside the sandbox's root ([`crate::sandbox::files`]); bodies
//! stream both ways through a blocking thread and a small channel, so memory stays flat for big files.

use super::http::{self, HttpError, Resp, flag, no_content, one, streaming};
use crate::api::{FileType, Mkdir};
use crate::sandbox::files::SandboxFs;
use crate::sandbox::Entry;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode, header};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

const CHUNK: usize = 256 * 1024;

fn open_fs(e: &Entry) -> Result<SandboxFs, HttpError> {
    let rec = e.record();
    let pid = rec.sandbox.pid.ok_or_else(|| HttpError::new(409, "conflict", format!("sandbox {} is not running", e.id)))?;
    Ok(SandboxFs::open_root(Path::new(&format!("/proc/{pid}/root")), rec.sandbox.security.uid_base)?)
}

fn path_param(q: &BTreeMap<String, Vec<String>>) -> Result<String, HttpError> {
    one(q, "path")
        .map(str::to_string)
        .ok_or_else(|| HttpError::bad_request("missing ?path=; give an absolute path inside the sandbox"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, HttpError> + Send + 'static) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| HttpError::internal(format!("file task: {e}")))?
}

/// A `Write` that sends chunks to a response body.
struct ChannelWriter(mpsc::Sender<Result<Bytes, std::io::Error>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A `Read` over request body chunks.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Feed a request body into a channel for a blocking reader.
fn body_reader(body: Incoming) -> ChannelReader {
    let (tx, rx) = mpsc::channel::<Result<Bytes, String>>(4);
    tokio::spawn(async move {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data()
                        && tx.send(Ok(data)).await.is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("reading the upload: {e}"))).await;
                    return;
                }
            }
        }
    });
    ChannelReader { rx, cur: Bytes::new() }
}

/// The files routes of a sandbox (see `routes::ROUTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilesOp {
    /// `GET …/files?path=`: a file's bytes, or a directory as a tar stream.
    Download,
    /// `PUT …/files?path=`: a file, or a tar unpacked into a directory.
    Upload,
    /// `DELETE …/files?path=[&recursive=true]`.
    Remove,
    Stat,
    List,
    Mkdir,
}

pub async fn files(e: Arc<Entry>, op: FilesOp, req: Request<Incoming>, q: &BTreeMap<String, Vec<String>>) -> Result<Resp, HttpError> {
    let guard = e.active();
    let fs = open_fs(&e)?;
    match op {
        FilesOp::Download => {
            let path = path_param(q)?;
            let (fs, p) = (Arc::new(fs), path.clone());
            let fs2 = fs.clone();
            let st = blocking(move || Ok(fs2.stat(&p)?)).await?;
            let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
            if st.kind == FileType::Dir {
                tokio::task::spawn_blocking(move || {
                    let _guard = guard;
                    let tx2 = tx.clone();
                    if let Err(err) = fs.write_tar(&path, ChannelWriter(tx)) {
                        let _ = tx2.blocking_send(Err(std::io::Error::other(err.to_string())));
                    }
                });
                return Ok(streaming(StatusCode::OK, "application/x-tar", rx));
            }
            let p = path.clone();
            let (mut file, st) = blocking(move || Ok(fs.open_read(&p)?)).await?;
            tokio::task::spawn_blocking(move || {
                let _guard = guard;
                let mut buf = vec![0u8; CHUNK];
                loop {
                    match file.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            if tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                                return;
                            }
                        }
                        Err(err) => {
                            let _ = tx.blocking_send(Err(err));
                            return;
                        }
                    }
                }
            });
            let mut r = streaming(StatusCode::OK, "application/octet-stream", rx);
            r.headers_mut().insert(header::CONTENT_LENGTH, st.size.into());
            Ok(r)
        }
        FilesOp::Upload => {
            let path = path_param(q)?;
            let is_tar = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("application/x-tar"));
            let mode = match one(q, "mode") {
                None => 0o644,
                Some(v) => parse_mode(v)?,
            };
            let reader = body_reader(req.into_body());
            if is_tar {
                let p = path.clone();
                let st = blocking(move || {
                    fs.extract_tar(&p, reader)?;
                    Ok(fs.stat(&p)?)
                })
                .await?;
                drop(guard);
                return Ok(http::json_response(StatusCode::CREATED, &st));
            }
            let st = blocking(move || {
                let mut up = fs.create_file(&path, mode)?;
                let mut reader = reader;
                std::io::copy(&mut reader, &mut up).map_err(|err| HttpError::bad_request(format!("upload to {path:?}: {err}")))?;
                Ok(up.commit()?)
            })
            .await?;
            drop(guard);
            Ok(http::json_response(StatusCode::CREATED, &st))
        }
        FilesOp::Remove => {
            let path = path_param(q)?;
            let recursive = flag(q, "recursive")?;
            blocking(move || Ok(fs.remove(&path, recursive)?)).await?;
            Ok(no_content())
        }
        FilesOp::Stat => {
            let path = path_param(q)?;
            let st = blocking(move || Ok(fs.stat(&path)?)).await?;
            Ok(http::ok_json(&st))
        }
        FilesOp::List => {
            let path = path_param(q)?;
            let l = blocking(move || Ok(fs.list(&path)?)).await?;
            Ok(http::ok_json(&l))
        }
        FilesOp::Mkdir => {
            let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
            let body: Mkdir = http::read_json(req.into_body(), ct.as_deref()).await?;
            let mode = body.mode.unwrap_or(0o755);
            if mode > 0o7777 {
                return Err(HttpError::bad_request(format!("mode {mode:o} is not a permission mode (0-07777)")));
            }
            let st = blocking(move || Ok(fs.mkdir(&body.path, body.parents, mode)?)).await?;
            Ok(http::json_response(StatusCode::CREATED, &st))
        }
    }
}

/// `420`, `0644` or `0o644`.
#[doc(hidden)] // pub for fuzz/files_api
pub fn parse_mode(v: &str) -> Result<u32, HttpError> {
    let bad = || HttpError::bad_request(format!("mode {v:?} is not a permission mode; use octal like 0644 or decimal like 420"));
    let m = if let Some(o) = v.strip_prefix("0o") {
        u32::from_str_radix(o, 8).map_err(|_| bad())?
    } else if v.len() > 1 && v.starts_with('0') {
        u32::from_str_radix(&v[1..], 8).map_err(|_| bad())?
    } else {
        v.parse().map_err(|_| bad())?
    };
    if m > 0o7777 {
        return Err(bad());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    #[test]
    fn modes() {
        assert_eq!(super::parse_mode("0644").unwrap(), 0o644);
        assert_eq!(super::parse_mode("0o755").unwrap(), 0o755);
        assert_eq!(super::parse_mode("420").unwrap(), 420);
        assert!(super::parse_mode("0999").is_err());
        assert!(super::parse_mode("99999").is_err());
    }
}
