//! The per-sandbox gateway token (`authorized: true`): `Authorization: Bearer <token>`, `?beam_token=<token>`
//! (which also sets a cookie, so that a browser keeps working), or that cookie. The gateway's own token
//! never reaches the sandbox: it is removed from the header, query and cookies it came in.

use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, COOKIE, HeaderValue};

pub const QUERY_PARAM: &str = "beam_token";

/// Where the token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Header,
    Query,
    Cookie,
}

pub fn cookie_name(id: &str) -> String {
    format!("beam_token_{id}")
}

/// Constant-time string comparison.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let (scheme, rest) = s.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn query_values<'a>(query: Option<&'a str>, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    query.unwrap_or("").split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then_some(v)
    })
}

fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
}

/// Whether the request carries the sandbox's token, and where.
pub fn find(headers: &HeaderMap, query: Option<&str>, id: &str, token: &str) -> Option<Via> {
    if headers.get_all(AUTHORIZATION).iter().filter_map(bearer).any(|t| same(t, token)) {
        return Some(Via::Header);
    }
    if query_values(query, QUERY_PARAM).any(|t| same(t, token)) {
        return Some(Via::Query);
    }
    let name = cookie_name(id);
    if cookies(headers).any(|(k, v)| k == name && same(v, token)) {
        return Some(Via::Cookie);
    }
    None
}

/// Remove the gateway token from what goes to the sandbox; returns the query without `beam_token`.
pub fn scrub(headers: &mut HeaderMap, query: Option<&str>, id: &str, token: &str) -> Option<String> {
    let auth: Vec<HeaderValue> =
        headers.get_all(AUTHORIZATION).iter().filter(|v| !bearer(v).is_some_and(|t| same(t, token))).cloned().collect();
    headers.remove(AUTHORIZATION);
    for v in auth {
        headers.append(AUTHORIZATION, v);
    }
    let name = cookie_name(id);
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.split_once('=').is_none_or(|(k, _)| k != name))
        .map(str::to_string)
        .collect();
    if headers.contains_key(COOKIE) {
        headers.remove(COOKIE);
        if let Ok(v) = HeaderValue::from_str(&kept.join("; "))
            && !kept.is_empty()
        {
            headers.insert(COOKIE, v);
        }
    }
    strip_param(query)
}

/// The query without `beam_token` (None when nothing is left).
pub fn strip_param(query: Option<&str>) -> Option<String> {
    let q = query?;
    let kept: Vec<&str> =
        q.split('&').filter(|p| !p.is_empty() && p.split_once('=').map_or(*p, |(k, _)| k) != QUERY_PARAM).collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The cookie that keeps a browser authorized after `?beam_token=`: host-only, under `path`.
pub fn set_cookie(id: &str, token: &str, path: &str) -> HeaderValue {
    let path = if path.is_empty() { "/" } else { path };
    HeaderValue::from_str(&format!("{}={token}; Path={path}; HttpOnly; SameSite=Lax", cookie_name(id)))
        .unwrap_or_else(|_| HeaderValue::from_static("beam_token=invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn finds_the_token() {
        let id = "sbx-a";
        assert_eq!(find(&headers(&[("authorization", "Bearer tok")]), None, id, "tok"), Some(Via::Header));
        assert_eq!(find(&headers(&[("authorization", "bearer  tok")]), None, id, "tok"), Some(Via::Header));
        assert_eq!(find(&headers(&[("authorization", "Bearer nope")]), None, id, "tok"), None);
        assert_eq!(find(&headers(&[]), Some("a=1&beam_token=tok"), id, "tok"), Some(Via::Query));
        assert_eq!(find(&headers(&[]), Some("beam_token=to"), id, "tok"), None);
        assert_eq!(find(&headers(&[("cookie", "x=1; beam_token_sbx-a=tok")]), None, id, "tok"), Some(Via::Cookie));
        assert_eq!(find(&headers(&[("cookie", "beam_token_sbx-b=tok")]), None, id, "tok"), None);
    }

    #[test]
    fn scrubs_the_token() {
        let mut h = headers(&[("authorization", "Bearer tok"), ("cookie", "x=1; beam_token_sbx-a=tok; y=2")]);
        let q = scrub(&mut h, Some("beam_token=tok&a=1"), "sbx-a", "tok");
        assert_eq!(q.as_deref(), Some("a=1"));
        assert!(h.get(AUTHORIZATION).is_none());
        assert_eq!(h.get(COOKIE).unwrap(), "x=1; y=2");
        // The app's own credentials stay.
        let mut h = headers(&[("authorization", "token jupyter"), ("cookie", "beam_token_sbx-a=tok")]);
        assert_eq!(scrub(&mut h, Some("beam_token=tok"), "sbx-a", "tok"), None);
        assert_eq!(h.get(AUTHORIZATION).unwrap(), "token jupyter");
        assert!(h.get(COOKIE).is_none());
        assert_eq!(strip_param(Some("a=1&b")).as_deref(), Some("a=1&b"));
    }

    #[test]
    fn cookie() {
        assert_eq!(set_cookie("sbx-a", "tok", "").to_str().unwrap(), "beam_token_sbx-a=tok; Path=/; HttpOnly; SameSite=Lax");
        assert!(set_cookie("sbx-a", "tok", "/sandbox/sbx-a/80").to_str().unwrap().contains("Path=/sandbox/sbx-a/80;"));
    }
}
