//! The gateway's routing of untrusted Host headers and request paths: never panics; a target's port is
//! 1–65535, its path starts with '/', and prefix + path is the request's path (nothing of it is lost or
//! invented), the query passed through unchanged.
#![no_main]
use beam::gateway::target::{Parsed, Style, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    // "<host>\n<path?query>", the host optional.
    let (host, pq) = match s.split_once('\n') {
        Some((h, p)) => (Some(h), p),
        None => (None, s),
    };
    let (path, query) = match pq.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (pq, None),
    };
    if let Ok(Parsed::Target(t)) = parse(host, pq, "localhost") {
        assert!(t.port >= 1);
        assert!(t.path.starts_with('/'), "{t:?}");
        assert_eq!(t.query.as_deref(), query);
        let whole = if path.is_empty() { "/" } else { path };
        match t.style {
            Style::Host => assert_eq!(t.path, whole),
            Style::Path => assert_eq!(format!("{}{}", t.prefix, t.path), whole),
        }
    }
});
