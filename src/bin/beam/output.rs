//! What the sandbox commands print and how: writing to stdout and stderr, streaming a body to
//! stdout, tables, durations, a sandbox's status and the exit status to give for it.

use crate::client::{self, Client, Error, usage};
use beam::api::{self, Sandbox, SandboxState};
use hyper::Method;
use std::io::Write;

/// Write to our stdout now (streams: logs, exec output, downloads).
pub fn out(b: &[u8]) -> Result<(), Error> {
    let mut o = std::io::stdout().lock();
    o.write_all(b).and_then(|_| o.flush()).map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => Error::BrokenPipe,
        _ => usage(format!("writing to stdout: {e}")),
    })
}

/// Write to our stderr now; errors are ignored (nowhere left to report them).
pub fn err_out(b: &[u8]) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(b);
    let _ = e.flush();
}

/// Copy a streamed body to our stdout as it arrives.
pub async fn stream_to_stdout(c: &Client, path: &str) -> Result<(), Error> {
    let resp = c.call(Method::GET, path, None::<&()>).await?;
    let mut body = resp.into_body();
    while let Some(chunk) = client::next_chunk(&mut body).await? {
        out(&chunk)?;
    }
    Ok(())
}

/// A table with columns sized to their contents (the last one unpadded).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for r in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<width$}   ", width = w[i]));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

/// `1m 20s`, `2h 5m`, `3d 4h`.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// An exit reason as the API spells it (`oom-killed`).
pub fn reason_str(r: api::ExitReason) -> String {
    serde_json::to_value(r).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// `running`, `exited (0)`, `exited (137) stopped`.
pub fn status(sb: &Sandbox) -> String {
    if sb.state != SandboxState::Exited {
        return sb.state.as_str().to_string();
    }
    let mut s = "exited".to_string();
    if let Some(c) = sb.exit_code {
        s.push_str(&format!(" ({c})"));
    }
    match sb.reason {
        Some(api::ExitReason::Exited) | None => {}
        Some(r) => {
            s.push(' ');
            s.push_str(&reason_str(r));
        }
    }
    s
}

/// The exit status to give for an exited sandbox.
pub fn exit_status(sb: &Sandbox) -> i32 {
    sb.exit_code.unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        let t = table(&["ID", "STATUS", "CMD"], &[vec!["a".into(), "running".into(), "sh -c x".into()], vec!["bbbbbb".into(), "x".into(), "".into()]]);
        assert_eq!(t, "ID       STATUS    CMD\na        running   sh -c x\nbbbbbb   x\n");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(80), "1m 20s");
        assert_eq!(duration(3600 * 2 + 300), "2h 5m");
        assert_eq!(duration(86400 * 3 + 3600 * 4 + 7), "3d 4h");
        assert_eq!(duration(-3), "0s");
    }
}
