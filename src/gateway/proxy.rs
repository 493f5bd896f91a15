//! The proxy: one downstream connection (hyper server) to upstream connections into sandboxes (a hyper client
//! connection per upstream TCP connection). An upstream connection is reused for the next request of the
//! same downstream connection while it targets the same sandbox port; bodies stream both ways; an upgrade
//! (WebSocket) is forwarded and, on 101, the two upgraded connections are spliced.
//!
//! Keep-warm: every proxied request (until its response body is done), every kept upstream connection
//! (while its downstream connection is open) and every upgraded connection holds the sandbox's
//! `Entry::active()` guard.

use super::Gateway;
use super::auth::{self, Via};
use crate::netns::dial::Dial;
use super::page::{self, Body};
use crate::api::error::HttpError;
use super::target::{self, Parsed, Style, Target};
use crate::api::SandboxState;
use crate::sandbox::record::Stored;
use crate::sandbox::{ActiveGuard, Entry};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1 as client;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// One downstream connection.
pub struct Conn {
    gw: Arc<Gateway>,
    peer: SocketAddr,
    /// The upstream connection kept for the next request.
    upstream: Mutex<Option<Upstream>>,
}

struct Upstream {
    /// (sandbox id, its init's pid, port)
    key: (String, i32, u16),
    sender: client::SendRequest<Incoming>,
    /// An open connection keeps its sandbox warm.
    _warm: ActiveGuard,
}

enum SendError {
    Dial(std::io::Error),
    Http(hyper::Error),
}

impl Conn {
    pub fn new(gw: Arc<Gateway>, peer: SocketAddr) -> Conn {
        Conn { gw, peer, upstream: Mutex::new(None) }
    }
}

/// Answer one downstream request: proxied, or one of the gateway's pages.
pub async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Response<Body> {
    let json = page::wants_json(req.headers());
    match conn.proxy(req).await {
        Ok(r) => r,
        Err(p) => {
            tracing::debug!(status = p.status.as_u16(), "gateway: {}", p.message);
            p.page(json)
        }
    }
}

fn exited(id: &str, s: &Stored) -> HttpError {
    let reason = s.reason.and_then(|r| serde_json::to_value(r).ok()).and_then(|v| v.as_str().map(str::to_string));
    let how = match (reason, s.exit_code) {
        (Some(r), Some(c)) => format!(" (reason {r}, exit code {c})"),
        (Some(r), None) => format!(" (reason {r})"),
        _ => String::new(),
    };
    HttpError::new(410, "gone", format!("sandbox {id} has exited{how}; its URLs ended with it. Start a new one with `beam run`"))
}

impl Conn {
    #[allow(clippy::too_many_lines, reason = "the proxy's decisions in request order (route, lookup, state, auth, dial, upgrade); split before adding to it")]
    async fn proxy(&self, mut req: Request<Incoming>) -> Result<Response<Body>, HttpError> {
        let gw = &self.gw;
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
        let t = match target::parse(host.as_deref(), &pq, &gw.domain).map_err(|m| HttpError::new(400, "bad_request", m))? {
            Parsed::Target(t) => t,
            Parsed::AddSlash(to) => return Ok(page::redirect(308, &to)),
            Parsed::Other => return Err(self.index()),
        };
        let e = gw.lookup(&t.sandbox, t.style == Style::Host).map_err(|_| {
            HttpError::new(404, "not_found", format!("no sandbox {:?}; `beam container list -a` shows them", t.sandbox))
        })?;
        // The token first: without it, nothing more about the sandbox is told.
        let (token, cookie, pid, pid_start) = e.with_record(|rec| {
            let s = &rec.sandbox;
            let token = s.token.clone().filter(|_| s.authorized);
            let mut cookie = None;
            if let Some(tok) = &token {
                match auth::find(req.headers(), t.query.as_deref(), &e.id, tok) {
                    None => {
                        return Err(HttpError::new(
                            401,
                            "unauthorized",
                            format!(
                                "sandbox {} needs its token: send Authorization: Bearer <token>, or open the URL once \
                                 with ?{}=<token> (the sandbox's `token`, shown by the API and `beam container inspect`)",
                                t.sandbox,
                                auth::QUERY_PARAM
                            ),
                        ));
                    }
                    Some(Via::Query) => cookie = Some(auth::set_cookie(&e.id, tok, &t.prefix)),
                    Some(_) => {}
                }
            }
            match s.state {
                SandboxState::Running => {}
                SandboxState::Pending => {
                    return Err(HttpError::new(503, "unavailable", format!("sandbox {} is starting; try again in a moment", e.id)).retry(1));
                }
                SandboxState::Stopping => {
                    return Err(HttpError::new(503, "unavailable", format!("sandbox {} is stopping; start a new one with `beam run`", e.id)));
                }
                SandboxState::Exited => return Err(exited(&e.id, s)),
            }
            if !s.ports.contains(&t.port) {
                let exposed = if s.ports.is_empty() {
                    "it exposes no ports".to_string()
                } else {
                    format!("it exposes {}", s.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", "))
                };
                return Err(HttpError::new(
                    404,
                    "not_found",
                    format!(
                        "port {} of sandbox {} is not exposed ({exposed}); create it with --ports {}, or expose it \
                         with POST /v1/sandboxes/{}/ports {{\"port\": {}}}",
                        t.port, e.id, t.port, e.id, t.port
                    ),
                ));
            }
            let Some(pid) = s.pid else {
                return Err(HttpError::new(503, "unavailable", format!("sandbox {} has no running init", e.id)).retry(1));
            };
            Ok((token, cookie, pid, rec.pid_start))
        })?;
        let warm = e.active();
        gw.watch(&e);
        let dial = Dial { id: e.id.clone(), pid, pid_start, port: t.port };

        let upgrade = is_upgrade(req.headers());
        let down_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let close = has_token(&parts.headers, header::CONNECTION, "close");
        let query = match &token {
            Some(tok) => auth::scrub(&mut parts.headers, t.query.as_deref(), &e.id, tok),
            None => t.query.clone(),
        };
        request_headers(&mut parts.headers, upgrade, self.peer, host.as_deref(), &t);
        let pq = match &query {
            Some(q) => format!("{}?{q}", t.path),
            None => t.path.clone(),
        };
        parts.uri = pq.parse::<Uri>().map_err(|err| HttpError::new(400, "bad_request", format!("path {pq:?}: {err}")))?;
        parts.version = Version::HTTP_11;
        let key = (e.id.clone(), pid, t.port);
        let (mut resp, up) = self.send(&e, key, &dial, Request::from_parts(parts, body)).await.map_err(|err| {
            // A sandbox that exited meanwhile says so.
            if e.state() == SandboxState::Exited {
                return exited(&e.id, &e.record().sandbox);
            }
            self.send_error(err, &e.id, t.port)
        })?;

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(down) = down_upgrade else {
                return Err(HttpError::new(502, "bad_gateway", format!("port {} of sandbox {} switched protocols unasked", t.port, e.id)));
            };
            let up_upgrade = hyper::upgrade::on(&mut resp);
            let id = e.id.clone();
            tokio::spawn(async move {
                // The upstream connection (and its activity guard) lives until the splice ends.
                let _up = up;
                let _warm = warm;
                match tokio::try_join!(down, up_upgrade) {
                    Ok((d, u)) => {
                        let (mut d, mut u) = (TokioIo::new(d), TokioIo::new(u));
                        if let Err(err) = tokio::io::copy_bidirectional(&mut d, &mut u).await {
                            tracing::debug!(sandbox = %id, "gateway upgraded connection: {err}");
                        }
                    }
                    Err(err) => tracing::debug!(sandbox = %id, "gateway upgrade: {err}"),
                }
            });
            let (parts, _) = resp.into_parts();
            return Ok(Response::from_parts(parts, page::full(Bytes::new())));
        }

        let keep = !upgrade && !close && resp.version() == Version::HTTP_11 && !has_token(resp.headers(), header::CONNECTION, "close");
        if keep {
            *self.upstream.lock().expect("upstream lock") = Some(up);
        }
        let h = resp.headers_mut();
        strip_hop_by_hop(h);
        if t.style == Style::Path
            && let Some(loc) = h.get(header::LOCATION).and_then(|l| l.to_str().ok())
            && loc.starts_with('/')
            && !loc.starts_with("//")
            && let Ok(v) = HeaderValue::from_str(&format!("{}{loc}", t.prefix))
        {
            h.insert(header::LOCATION, v);
        }
        if let Some(c) = cookie {
            h.append(header::SET_COOKIE, c);
        }
        let (parts, body) = resp.into_parts();
        Ok(Response::from_parts(parts, Guarded { inner: body, _warm: warm }.boxed_unsync()))
    }

    /// Send on the kept upstream connection when it fits (once more on a fresh one if it turns out closed
    /// before the request went out), else on a new one.
    async fn send(
        &self,
        e: &Arc<Entry>,
        key: (String, i32, u16),
        dial: &Dial,
        mut req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, Upstream), SendError> {
        let mut kept = self.upstream.lock().expect("upstream lock").take().filter(|u| u.key == key && !u.sender.is_closed());
        loop {
            let reused = kept.is_some();
            let mut up = match kept.take() {
                Some(u) => u,
                None => {
                    let s = self.gw.dialer.dial(dial).await.map_err(SendError::Dial)?;
                    let (sender, conn) = client::Builder::new().handshake(TokioIo::new(s)).await.map_err(SendError::Http)?;
                    tokio::spawn(async move {
                        if let Err(err) = conn.with_upgrades().await {
                            tracing::debug!("gateway upstream connection: {err}");
                        }
                    });
                    Upstream { key: key.clone(), sender, _warm: e.active() }
                }
            };
            if let Err(err) = up.sender.ready().await {
                if reused {
                    continue;
                }
                return Err(SendError::Http(err));
            }
            match up.sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, up)),
                Err(mut err) => match err.take_message() {
                    Some(r) if reused => req = r,
                    _ => return Err(SendError::Http(err.into_error())),
                },
            }
        }
    }

    fn send_error(&self, err: SendError, id: &str, port: u16) -> HttpError {
        use std::io::ErrorKind;
        match err {
            SendError::Dial(e) if e.kind() == ErrorKind::ConnectionRefused => {
                HttpError::new(502, "bad_gateway", format!("nothing listens on port {port} in sandbox {id} (yet)")).retry(2)
            }
            SendError::Dial(e) if e.kind() == ErrorKind::TimedOut => {
                HttpError::new(504, "gateway_timeout", format!("port {port} in sandbox {id} did not answer: {e}"))
            }
            SendError::Dial(e) if e.kind() == ErrorKind::NotFound => {
                HttpError::new(410, "gone", format!("sandbox {id} has exited; start a new one with `beam run`"))
            }
            SendError::Dial(e) => HttpError::new(502, "bad_gateway", format!("connecting to port {port} in sandbox {id}: {e}")),
            SendError::Http(e) => HttpError::new(502, "bad_gateway", format!("port {port} in sandbox {id}: {e}")),
        }
    }

    /// The gateway's own 404: how its URLs look.
    fn index(&self) -> HttpError {
        let d = &self.gw.domain;
        let p = if self.gw.port == 80 { String::new() } else { format!(":{}", self.gw.port) };
        HttpError::new(
            404,
            "not_found",
            format!(
                "this is beam's gateway; a sandbox's port is at http://<sandbox>-<port>.{d}{p}/ or at \
                 /sandbox/<sandbox>/<port>/ on this host (the sandbox's `urls` lists them)"
            ),
        )
    }
}

/// A response body that keeps its sandbox warm until it is done (or dropped).
struct Guarded {
    inner: Incoming,
    _warm: ActiveGuard,
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a comma-separated header (Connection) lists `token`.
fn has_token(h: &HeaderMap, name: HeaderName, token: &str) -> bool {
    h.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE) && has_token(h, header::CONNECTION, "upgrade")
}

/// Remove the hop-by-hop headers (RFC 9110 7.6.1), including those the Connection header names.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authorization", "proxy-authenticate"] {
        h.remove(n);
    }
}

/// The upstream request's headers: hop-by-hop ones removed (an upgrade's kept), `X-Forwarded-*` added.
/// The Host header stays as the client sent it (apps compare it with Origin, e.g. Jupyter's WebSockets).
fn request_headers(h: &mut HeaderMap, upgrade: bool, peer: SocketAddr, host: Option<&str>, t: &Target) {
    let upgrade_to = h.get(header::UPGRADE).cloned();
    strip_hop_by_hop(h);
    if let (true, Some(u)) = (upgrade, upgrade_to) {
        h.insert(header::UPGRADE, u);
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let ip = peer.ip().to_string();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        h.entry("x-forwarded-host").or_insert(v.clone());
        h.entry(header::HOST).or_insert(v);
    }
    h.entry("x-forwarded-proto").or_insert(HeaderValue::from_static("http"));
    if t.style == Style::Path
        && let Ok(v) = HeaderValue::from_str(&t.prefix)
    {
        h.insert("x-forwarded-prefix", v);
    }
    if !h.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(&format!("127.0.0.1:{}", t.port))
    {
        h.insert(header::HOST, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn target(style: Style) -> Target {
        Target {
            sandbox: "web".into(),
            port: 8080,
            style,
            prefix: if style == Style::Path { "/sandbox/web/8080".into() } else { String::new() },
            path: "/".into(),
            query: None,
        }
    }

    #[test]
    fn hop_by_hop() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
            ("upgrade", "websocket"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["content-length"]);
    }

    #[test]
    fn upstream_headers() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("x-forwarded-for", "10.0.0.1")]);
        assert!(is_upgrade(&h));
        request_headers(&mut h, true, peer, Some("web-8080.localhost:8790"), &target(Style::Host));
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-host"], "web-8080.localhost:8790");
        assert_eq!(h[header::HOST], "web-8080.localhost:8790");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("x-forwarded-prefix"));

        let mut h = headers(&[("connection", "keep-alive")]);
        assert!(!is_upgrade(&h));
        request_headers(&mut h, false, peer, None, &target(Style::Path));
        assert!(!h.contains_key(header::CONNECTION));
        assert_eq!(h["x-forwarded-prefix"], "/sandbox/web/8080");
        assert_eq!(h[header::HOST], "127.0.0.1:8080");
        assert!(has_token(&headers(&[("connection", "Keep-Alive, Close")]), header::CONNECTION, "close"));
    }
}
