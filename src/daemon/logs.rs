//! `GET /v1/sandboxes/{ref}/logs`: the entrypoint's output from the log file the init writes (bounded
//! by the init), optionally followed until the sandbox exits.

use super::http::{HttpError, Resp, streaming};
use crate::api::SandboxState;
use crate::sandbox::{Entry, Manager};
use crate::sandbox::record;
use bytes::Bytes;
use hyper::StatusCode;
use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(100);

pub async fn logs(mgr: Arc<Manager>, e: Arc<Entry>, follow: bool, tail: Option<u64>) -> Result<Resp, HttpError> {
    let path = mgr.sandbox_dir(&e.id).join(record::LOG_FILE);
    let mut f = match tokio::fs::File::open(&path).await {
        Ok(f) => Some(f),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(HttpError::internal(format!("{}: {err}", path.display()))),
    };
    let mut offset = 0u64;
    if let (Some(f), Some(t)) = (f.as_mut(), tail) {
        let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        offset = len.saturating_sub(t);
        f.seek(SeekFrom::Start(offset)).await.map_err(|err| HttpError::internal(err.to_string()))?;
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let guard = follow.then(|| e.active());
    tokio::spawn(async move {
        let _guard = guard;
        let Some(mut f) = f else { return };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match f.read(&mut buf).await {
                Ok(0) => {}
                Ok(n) => {
                    offset += n as u64;
                    if tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(err) => {
                    let _ = tx.send(Err(err)).await;
                    return;
                }
            }
            // At the end of what is written so far.
            if !follow {
                return;
            }
            if e.state() == SandboxState::Exited {
                // One more read above ran after the exit was recorded (the init wrote its last bytes
                // before it exited): done.
                match f.read(&mut buf).await {
                    Ok(n) if n > 0 => {
                        let _ = tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await;
                        continue;
                    }
                    _ => return,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = e.exited() => {}
                _ = tx.closed() => return,
            }
            // The init drops the oldest half of a full log: if the file shrank, go on from its end.
            if let Ok(m) = f.metadata().await
                && m.len() < offset
            {
                offset = m.len();
                let _ = f.seek(SeekFrom::Start(offset)).await;
            }
        }
    });
    Ok(streaming(StatusCode::OK, "application/octet-stream", rx))
}
