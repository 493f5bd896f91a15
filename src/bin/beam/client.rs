//! A small HTTP/1.1 client for beamd's API: one connection per request, over the unix socket or TCP;
//! and what the commands share to address it: percent-encoded query values and sandbox paths, and
//! waiting for a sandbox to exit.
//!
//! Bodies are streamed both ways: responses are read frame by frame by the callers, and request
//! bodies can come from a channel fed by a file reader or a tar builder thread.

use beam::api::{self, ApiError, Sandbox, SandboxState};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Where beamd listens, and how to authenticate (global flags of `beam`).
#[derive(Args, Clone, Debug)]
pub struct DaemonArgs {
    /// beamd's unix socket.
    #[arg(long, global = true, help_heading = "Global options", env = "BEAM_SOCKET", default_value = api::DEFAULT_SOCKET, value_name = "PATH")]
    pub socket: PathBuf,
    /// Talk to beamd over TCP instead of the socket (http://HOST:PORT).
    #[arg(long, global = true, help_heading = "Global options", env = "BEAM_URL", value_name = "URL")]
    pub url: Option<String>,
    /// File holding the API token for --url (sent as a bearer token; or set BEAM_TOKEN).
    #[arg(long, global = true, help_heading = "Global options", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach beamd at {at} ({reason}); {hint}")]
    Unreachable { at: String, reason: String, hint: &'static str },
    /// An error answer of the API (its message is meant for the user as is).
    #[error("{message}")]
    Api { status: StatusCode, code: String, message: String },
    /// The connection broke or beamd answered something that is not the API.
    #[error("{0}")]
    Protocol(String),
    /// Bad input or a local failure, already phrased for the user.
    #[error("{0}")]
    Usage(String),
    /// Our stdout went away (`beam logs … | head`): stop quietly.
    #[error("broken pipe")]
    BrokenPipe,
}

impl Error {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { status: StatusCode::NOT_FOUND, .. })
    }
}

/// Shorthand for a user-facing error line.
pub fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A request body fed by a channel: whoever holds the sender streams the bytes; an `Err` aborts
/// the request.
pub fn channel_body(rx: mpsc::Receiver<std::io::Result<Bytes>>) -> Body {
    let s = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r.map(Frame::data), rx)) });
    StreamBody::new(s).boxed_unsync()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Unix(PathBuf),
    Tcp { host: String, port: u16 },
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

#[derive(Debug, Clone)]
pub struct Client {
    target: Target,
    token: Option<String>,
}

/// `http://HOST:PORT[/]` → (host, port).
fn parse_url(url: &str) -> Result<(String, u16), Error> {
    let bad = || usage(format!("--url {url:?}: use http://HOST:PORT"));
    if url.starts_with("https://") {
        return Err(usage(format!(
            "--url {url:?}: beamd serves plain http only; use http://HOST:PORT (through a tunnel such as ssh -L for a remote host)"
        )));
    }
    let rest = url.strip_prefix("http://").ok_or_else(bad)?.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(bad());
    }
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, p) = r.split_once(']').ok_or_else(bad)?;
        (h.to_string(), p.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => 80,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// Errno text without Rust's " (os error N)" suffix.
pub fn reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(c) => nix::errno::Errno::from_raw(c).desc().to_string(),
        None => e.to_string(),
    }
}

/// What a path segment leaves as it is: RFC 3986's unreserved characters; all else is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// What a query value leaves as it is: the same, and `/` (allowed there, and it keeps paths readable).
const QUERY_VALUE: &AsciiSet = &SEGMENT.remove(b'/');

/// A query value.
pub fn q(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// A path segment (a sandbox id or name).
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// `/v1/sandboxes/{ref}{rest}`.
pub fn sandbox_path(r: &str, rest: &str) -> String {
    format!("{}/sandboxes/{}{rest}", api::PREFIX, seg(r))
}

/// Wait until the sandbox has exited (in rounds, so no connection sits idle for long).
pub async fn wait_exited(c: &Client, id: &str) -> Result<Sandbox, Error> {
    loop {
        let sb: Sandbox = c.json(Method::POST, &sandbox_path(id, "/wait?timeout_seconds=60"), None::<&()>).await?;
        if sb.state == SandboxState::Exited {
            return Ok(sb);
        }
    }
}

impl Client {
    pub fn new(args: &DaemonArgs) -> Result<Self, Error> {
        let target = match &args.url {
            Some(u) if !u.is_empty() => {
                let (host, port) = parse_url(u)?;
                Target::Tcp { host, port }
            }
            _ => Target::Unix(args.socket.clone()),
        };
        let token = match &args.token_file {
            Some(p) => {
                let t = std::fs::read_to_string(p).map_err(|e| usage(format!("--token-file {}: {}", p.display(), reason(&e))))?;
                Some(t.trim().to_string())
            }
            None => std::env::var("BEAM_TOKEN").ok().map(|t| t.trim().to_string()),
        }
        .filter(|t| !t.is_empty());
        Ok(Client { target, token })
    }

    fn at(&self) -> String {
        match &self.target {
            Target::Unix(p) => p.display().to_string(),
            Target::Tcp { host, port } if host.contains(':') => format!("http://[{host}]:{port}"),
            Target::Tcp { host, port } => format!("http://{host}:{port}"),
        }
    }

    async fn connect(&self) -> Result<Box<dyn Io>, Error> {
        let r: std::io::Result<Box<dyn Io>> = match &self.target {
            Target::Unix(p) => tokio::net::UnixStream::connect(p).await.map(|s| Box::new(s) as Box<dyn Io>),
            Target::Tcp { host, port } => tokio::net::TcpStream::connect((host.as_str(), *port)).await.map(|s| Box::new(s) as Box<dyn Io>),
        };
        r.map_err(|e| Error::Unreachable {
            at: self.at(),
            reason: reason(&e),
            hint: match (&self.target, e.kind()) {
                (Target::Unix(_), std::io::ErrorKind::PermissionDenied) => "run beam as root (sudo) or as a member of the socket's group",
                (Target::Unix(_), _) => "start it with: sudo beamd",
                (Target::Tcp { .. }, _) => "start it with: sudo beamd --listen HOST:PORT --token-file FILE, or check --url",
            },
        })
    }

    /// A request builder with the Host and Authorization headers set.
    pub fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        let host = match &self.target {
            Target::Unix(_) => "beamd".to_string(),
            Target::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Target::Tcp { host, port } => format!("{host}:{port}"),
        };
        let mut b = Request::builder().method(method).uri(path).header(HOST, host);
        if let Some(t) = &self.token {
            b = b.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        b
    }

    /// Send a request on a fresh connection; an error status becomes [`Error::Api`].
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, Error> {
        let io = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| Error::Protocol(format!("beamd at {}: {e}", self.at())))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("connection to beamd: {e}");
            }
        });
        let what = format!("{} {}", req.method(), req.uri().path());
        let resp = sender.send_request(req).await.map_err(|e| Error::Protocol(format!("beamd at {}: {what}: {e}", self.at())))?;
        check(resp).await
    }

    /// A request with an optional JSON body.
    pub async fn call<B: Serialize>(&self, method: Method, path: &str, body: Option<&B>) -> Result<Response<Incoming>, Error> {
        let b = self.request(method, path);
        let req = match body {
            Some(v) => b.header(CONTENT_TYPE, "application/json").body(full(serde_json::to_vec(v).expect("json body"))),
            None => b.body(empty()),
        }
        .map_err(|e| Error::Protocol(format!("bad request {path}: {e}")))?;
        self.send(req).await
    }

    /// A JSON request whose JSON answer is decoded into `T`.
    pub async fn json<B: Serialize, T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&B>) -> Result<T, Error> {
        let resp = self.call(method, path, body).await?;
        let bytes = read_all(resp.into_body()).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Protocol(format!("beamd answered {path} with unexpected JSON ({e}); are beam and beamd the same version?")))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.json(Method::GET, path, None::<&()>).await
    }

    /// A request whose answer has no body worth reading (204).
    pub async fn no_content<B: Serialize>(&self, method: Method, path: &str, body: Option<&B>) -> Result<(), Error> {
        let resp = self.call(method, path, body).await?;
        read_all(resp.into_body()).await?;
        Ok(())
    }

    /// POST a JSON body asking to switch to `beam-stream`; the raw bidirectional connection.
    pub async fn upgrade<B: Serialize>(&self, path: &str, body: &B) -> Result<(hyper::HeaderMap, TokioIo<hyper::upgrade::Upgraded>), Error> {
        let req = self
            .request(Method::POST, path)
            .header(CONTENT_TYPE, "application/json")
            .header(CONNECTION, "Upgrade")
            .header(UPGRADE, api::UPGRADE_PROTOCOL)
            .body(full(serde_json::to_vec(body).expect("json body")))
            .map_err(|e| Error::Protocol(format!("bad request {path}: {e}")))?;
        let mut resp = self.send(req).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(Error::Protocol(format!("beamd answered {} instead of switching {path} to {}", resp.status(), api::UPGRADE_PROTOCOL)));
        }
        let up = hyper::upgrade::on(&mut resp).await.map_err(|e| Error::Protocol(format!("upgrading {path}: {e}")))?;
        Ok((resp.headers().clone(), TokioIo::new(up)))
    }

    /// PUT a streamed body (`len`: its length when known).
    pub async fn put_stream(&self, path: &str, content_type: &str, len: Option<u64>, body: Body) -> Result<Response<Incoming>, Error> {
        let mut b = self.request(Method::PUT, path).header(CONTENT_TYPE, content_type);
        if let Some(l) = len {
            b = b.header(CONTENT_LENGTH, l);
        }
        let req = b.body(body).map_err(|e| Error::Protocol(format!("bad request {path}: {e}")))?;
        self.send(req).await
    }
}

/// Turn an error status into [`Error::Api`] (from the ApiError body when there is one).
async fn check(resp: Response<Incoming>) -> Result<Response<Incoming>, Error> {
    let status = resp.status();
    if status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(resp);
    }
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(f) = body.frame().await {
        let Ok(f) = f else { break };
        if let Ok(d) = f.into_data() {
            buf.extend_from_slice(&d);
            if buf.len() > 64 * 1024 {
                break;
            }
        }
    }
    Err(api_error(status, &buf))
}

fn api_error(status: StatusCode, body: &[u8]) -> Error {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => Error::Api { status, code: e.code, message: e.message },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let line = text.lines().next().unwrap_or("").trim();
            let message = if line.is_empty() { format!("beamd answered {status}") } else { format!("beamd answered {status}: {line}") };
            Error::Api { status, code: String::new(), message }
        }
    }
}

/// Read a whole (small) body.
pub async fn read_all(body: Incoming) -> Result<Bytes, Error> {
    body.collect().await.map(|c| c.to_bytes()).map_err(|e| Error::Protocol(format!("reading beamd's answer: {e}")))
}

/// The next chunk of a streamed body; None at its end.
pub async fn next_chunk(body: &mut Incoming) -> Result<Option<Bytes>, Error> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(Error::Protocol(format!("reading from beamd: {e}"))),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    return Ok(Some(d));
                }
            }
        }
    }
}

/// The response's Content-Type, without parameters.
pub fn content_type<B>(resp: &Response<B>) -> String {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("http://127.0.0.1:7000").unwrap(), ("127.0.0.1".into(), 7000));
        assert_eq!(parse_url("http://host:7000/").unwrap(), ("host".into(), 7000));
        assert_eq!(parse_url("http://[::1]:8080").unwrap(), ("::1".into(), 8080));
        assert_eq!(parse_url("http://host").unwrap(), ("host".into(), 80));
        for bad in ["127.0.0.1:7000", "http://", "http://h:x", "http://h:1/v1", "ftp://h:1", "http://:80"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(parse_url("https://h:1").unwrap_err().to_string().contains("plain http"));
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(q("/tmp/a b+c&d=é"), "/tmp/a%20b%2Bc%26d%3D%C3%A9");
        assert_eq!(seg("a/b"), "a%2Fb");
        assert_eq!(q("k=v"), "k%3Dv");
        assert_eq!(sandbox_path("web 1", "/logs"), "/v1/sandboxes/web%201/logs");
        assert_eq!(seg("A-z.0_9~"), "A-z.0_9~");
        assert_eq!(q("a!*'();:@$,?#[]"), "a%21%2A%27%28%29%3B%3A%40%24%2C%3F%23%5B%5D");
    }

    #[test]
    fn unreachable_line() {
        let args = DaemonArgs { socket: "/nonexistent/beamd.sock".into(), url: None, token_file: None };
        let c = Client::new(&args).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let e = rt.block_on(c.get::<api::Version>("/v1/version")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot reach beamd at /nonexistent/beamd.sock (No such file or directory); start it with: sudo beamd"
        );
    }

    #[test]
    fn api_errors() {
        let e = api_error(StatusCode::NOT_FOUND, br#"{"code":"not_found","message":"no sandbox named web"}"#);
        assert_eq!(e.to_string(), "no sandbox named web");
        assert!(e.is_not_found());
        let e = api_error(StatusCode::BAD_GATEWAY, b"upstream down\nmore");
        assert_eq!(e.to_string(), "beamd answered 502 Bad Gateway: upstream down");
        let e = api_error(StatusCode::INTERNAL_SERVER_ERROR, b"");
        assert_eq!(e.to_string(), "beamd answered 500 Internal Server Error");
    }
}
