//! HTTP plumbing for beamd: body types, JSON in and out, errors as `{code, message}`, query strings.

use crate::sandbox::SandboxError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Response, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use tokio::sync::mpsc;

pub type Body = BoxBody<Bytes, std::io::Error>;
pub type Resp = Response<Body>;

/// Largest JSON request body.
pub const MAX_JSON: usize = 1 << 20;

pub use crate::api::error::HttpError;

/// An API error as beamd's JSON answer.
impl HttpError {
    pub fn into_response(self) -> Resp {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, "{}", self.message);
        }
        let mut r = json_response(self.status, &self.body());
        if let Some(a) = self.allow.and_then(|a| header::HeaderValue::from_str(&a).ok()) {
            r.headers_mut().insert(header::ALLOW, a);
        }
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        r
    }
}

/// The one place a sandbox error becomes an HTTP status and slug: the caller's mistakes are 4xx,
/// beamd's own failures 500.
impl From<SandboxError> for HttpError {
    fn from(e: SandboxError) -> Self {
        use crate::image::bundle::BundleError;
        let (status, code) = match &e {
            SandboxError::Invalid { .. } | SandboxError::Image(_) | SandboxError::Start(_) => (400, "bad_request"),
            SandboxError::Bundle(BundleError::Invalid(_) | BundleError::User { .. }) => (400, "bad_request"),
            SandboxError::NotFound { .. } => (404, "not_found"),
            SandboxError::NotRunning { .. }
            | SandboxError::StillRunning { .. }
            | SandboxError::NameTaken { .. }
            | SandboxError::Conflict(_) => (409, "conflict"),
            SandboxError::Net(_)
            | SandboxError::Store(_)
            | SandboxError::Bundle(_)
            | SandboxError::Layer(_)
            | SandboxError::Runtime(_)
            | SandboxError::Io { .. }
            | SandboxError::Internal(_) => (500, "internal"),
        };
        HttpError::new(status, code, e.to_string())
    }
}

/// A files error: a missing path is a 404, an existing one a 409, beamd's own I/O a 500, the rest the
/// caller's (bad paths, modes, tar streams) a 400.
impl From<crate::sandbox::files::FilesError> for HttpError {
    fn from(e: crate::sandbox::files::FilesError) -> Self {
        use crate::sandbox::files::FilesError;
        let (status, code) = match &e {
            FilesError::NotFound { .. } => (404, "not_found"),
            FilesError::AlreadyExists { .. } => (409, "conflict"),
            FilesError::Io { .. } => (500, "internal"),
            _ => (400, "bad_request"),
        };
        HttpError::new(status, code, e.to_string())
    }
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

pub fn json_response<T: Serialize>(status: StatusCode, v: &T) -> Resp {
    let mut body = serde_json::to_vec(v).expect("response serializes");
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("response builds")
}

pub fn ok_json<T: Serialize>(v: &T) -> Resp {
    json_response(StatusCode::OK, v)
}

pub fn no_content() -> Resp {
    Response::builder().status(StatusCode::NO_CONTENT).body(empty()).expect("response builds")
}

/// A streaming body fed by a channel; the sender's task ends the body by dropping it.
pub fn channel_body(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b.map(Frame::data), rx)) });
    BodyExt::boxed(StreamBody::new(stream))
}

pub fn streaming(status: StatusCode, content_type: &str, rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Resp {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(channel_body(rx))
        .expect("response builds")
}

/// Read a JSON body (≤ [`MAX_JSON`]); an empty body is `{}`.
pub async fn read_json<T: DeserializeOwned>(body: Incoming, content_type: Option<&str>) -> Result<T, HttpError> {
    // curl -d sends application/x-www-form-urlencoded: take it as JSON too, refuse real other types.
    if let Some(ct) = content_type
        && !["application/json", "application/x-www-form-urlencoded", "text/plain"].iter().any(|t| ct.starts_with(t))
    {
        return Err(HttpError::new(
            415,
            "unsupported_media_type",
            format!("content type {ct:?} is not JSON; send Content-Type: application/json"),
        ));
    }
    let bytes = match Limited::new(body, MAX_JSON).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(HttpError::new(
                413,
                "payload_too_large",
                format!("request body is larger than {} KiB; JSON requests are small — upload files through the files API", MAX_JSON / 1024),
            ));
        }
        Err(e) => return Err(HttpError::bad_request(format!("reading the request body: {e}"))),
    };
    parse_json(&bytes)
}

/// A JSON request body (already read, within [`MAX_JSON`]) as `T`: an empty or all-whitespace body is `{}`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(bytes).map_err(|e| HttpError::bad_request(format!("request body is not valid JSON for this call: {e}")))
}

/// Parse a query string into a multimap (percent-decoded; '+' is a space, as HTML forms and curl
/// --data-urlencode write it).
pub fn query(q: Option<&str>) -> Result<BTreeMap<String, Vec<String>>, HttpError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let part = |s: &str| decode(&s.replace('+', " "));
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(part(k)?).or_default().push(part(v)?);
    }
    Ok(out)
}

/// Percent-decode a path segment (RFC 3986: '+' is itself). A '%' not followed by two hex digits, or
/// bytes that are not UTF-8 once decoded, are a 400.
pub fn decode(s: &str) -> Result<String, HttpError> {
    let b = s.as_bytes();
    let hex = |i: usize| b.get(i).is_some_and(u8::is_ascii_hexdigit);
    if (0..b.len()).any(|i| b[i] == b'%' && !(hex(i + 1) && hex(i + 2))) {
        return Err(HttpError::bad_request(format!("bad percent-encoding in {s:?}; write a '%' as %25")));
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|d| d.into_owned())
        .map_err(|_| HttpError::bad_request(format!("{s:?} is not UTF-8 once decoded")))
}

/// One query value.
pub fn one<'a>(q: &'a BTreeMap<String, Vec<String>>, key: &str) -> Option<&'a str> {
    q.get(key).and_then(|v| v.last()).map(String::as_str)
}

pub fn flag(q: &BTreeMap<String, Vec<String>>, key: &str) -> Result<bool, HttpError> {
    match one(q, key) {
        None => Ok(false),
        Some("" | "1" | "true" | "yes") => Ok(true),
        Some("0" | "false" | "no") => Ok(false),
        Some(v) => Err(HttpError::bad_request(format!("query {key}={v:?} is not a boolean; use true or false"))),
    }
}

pub fn number<T: std::str::FromStr>(q: &BTreeMap<String, Vec<String>>, key: &str) -> Result<Option<T>, HttpError> {
    one(q, key)
        .map(|v| v.parse::<T>().map_err(|_| HttpError::bad_request(format!("query {key}={v:?} is not a valid number"))))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statuses the API promises (docs/api.md): the caller's mistakes 4xx, beamd's failures 500.
    #[test]
    fn errors_map_to_statuses_once() {
        use crate::api::SandboxState;
        use crate::sandbox::files::FilesError;
        let st = |e: SandboxError| {
            let h = HttpError::from(e);
            (h.status.as_u16(), h.code)
        };
        assert_eq!(st(SandboxError::invalid("cpu", "x")), (400, "bad_request"));
        assert_eq!(st(SandboxError::Image("x".into())), (400, "bad_request"));
        assert_eq!(st(SandboxError::Start("x".into())), (400, "bad_request"));
        assert_eq!(st(SandboxError::NotFound { reference: "a".into() }), (404, "not_found"));
        assert_eq!(st(SandboxError::NotRunning { id: "a".into(), state: SandboxState::Exited }), (409, "conflict"));
        assert_eq!(st(SandboxError::StillRunning { id: "a".into(), state: SandboxState::Running }), (409, "conflict"));
        assert_eq!(st(SandboxError::NameTaken { name: "a".into() }), (409, "conflict"));
        assert_eq!(st(SandboxError::io("x")(std::io::Error::other("y"))), (500, "internal"));
        let m = HttpError::from(SandboxError::NotRunning { id: "sbx-a".into(), state: SandboxState::Exited }).message;
        assert_eq!(m, "sandbox sbx-a is exited, not running; start a new one with `beam run`");
        let fe = |e: FilesError| HttpError::from(e).status.as_u16();
        assert_eq!(fe(FilesError::NotFound { path: "/a".into(), hint: "" }), 404);
        assert_eq!(fe(FilesError::AlreadyExists { path: "/a".into(), hint: "" }), 409);
        assert_eq!(fe(FilesError::RemoveRoot), 400);
        assert_eq!(fe(FilesError::Io { path: "/a".into(), op: "read", source: std::io::Error::other("x") }), 500);
    }

    #[test]
    fn queries() {
        let q = query(Some("path=%2Ftmp%2Fa+b&tag=k%3Dv&tag=x=y&follow")).unwrap();
        assert_eq!(one(&q, "path"), Some("/tmp/a b"));
        assert_eq!(q["tag"], vec!["k=v".to_string(), "x=y".to_string()]);
        assert!(flag(&q, "follow").unwrap());
        assert!(query(Some("path=%zz")).is_err());
        // '+' is a space in a query, itself in a path (RFC 3986); %2B is '+' in both.
        assert_eq!(one(&query(Some("a=1%2B1+x")).unwrap(), "a"), Some("1+1 x"));
        assert_eq!(decode("a+b%2Bc%20d").unwrap(), "a+b+c d");
        for bad in ["%", "%4", "a%g0", "%c3%28"] {
            assert_eq!(decode(bad).unwrap_err().status, 400, "{bad}");
        }
        assert!(query(Some("path=%2")).is_err());
        assert!(number::<u64>(&q, "path").is_err());
    }
}
