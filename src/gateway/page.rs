//! The gateway's own answers: small HTML pages, or `{code, message}` JSON (like the API's errors) for a
//! client that accepts JSON. Every one carries `X-Beam-Gateway: <code>`, so that a client can tell the
//! gateway's 404 from the sandbox's.

use crate::api::error::HttpError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::Response;

pub type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// Header on every answer the gateway makes itself.
pub const GATEWAY_HEADER: &str = "x-beam-gateway";

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed_unsync()
}

/// The gateway's own answers are the API's error type, written as a page or JSON.
impl HttpError {
    /// The answer: JSON (`{code, message}`) when the client wants it, else a small HTML page.
    pub fn page(self, json: bool) -> Response<Body> {
        let (ctype, body) = if json {
            let mut v = serde_json::to_vec(&self.body()).expect("error serializes");
            v.push(b'\n');
            ("application/json", v)
        } else {
            let title = format!("{} {}", self.status.as_u16(), self.status.canonical_reason().unwrap_or(""));
            let refresh = self.retry_after.map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">")).unwrap_or_default();
            let html = format!(
                "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>{refresh}</head>\n<body \
                 style=\"font-family:sans-serif;max-width:48em;margin:3em auto\">\n<h1>{t}</h1>\n<p>{m}</p>\n\
                 <hr><p><small>beam gateway</small></p>\n</body></html>\n",
                t = escape(&title),
                m = escape(&self.message),
            );
            ("text/html; charset=utf-8", html.into_bytes())
        };
        let mut r = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, ctype)
            .header(header::CACHE_CONTROL, "no-store")
            .header(GATEWAY_HEADER, self.code)
            .body(full(body))
            .expect("response builds");
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// Whether the client prefers JSON (it says `application/json` in Accept and not `text/html`).
pub fn wants_json(headers: &HeaderMap) -> bool {
    let accept: String = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    accept.contains("application/json") && !accept.contains("text/html")
}

pub fn redirect(status: u16, location: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::LOCATION, location)
        .header(GATEWAY_HEADER, "redirect")
        .body(full(Bytes::new()))
        .expect("response builds")
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        let r = HttpError::new(404, "not_found", "no sandbox \"<x>\"").page(false);
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()[GATEWAY_HEADER], "not_found");
        assert!(r.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        let r = HttpError::new(502, "bad_gateway", "x").retry(2).page(true);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert_eq!(escape("<a href='x'>&</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;");
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html,application/json;q=0.9"));
        assert!(!wants_json(&h));
    }
}
