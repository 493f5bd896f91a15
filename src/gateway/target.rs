//! Which sandbox and port a gateway request is for: `<sandbox>-<port>.<domain>` in the Host header, or
//! `/sandbox/<sandbox>/<port>/…` in the path. `<sandbox>` is an id or a name.

/// How the request named its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Host,
    Path,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The sandbox id or name as written.
    pub sandbox: String,
    pub port: u16,
    pub style: Style,
    /// The path prefix stripped before proxying: "" (Host style) or `/sandbox/<sandbox>/<port>`.
    pub prefix: String,
    /// The path the sandbox sees (starts with '/').
    pub path: String,
    /// The query, without '?'.
    pub query: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Target(Target),
    /// `/sandbox/<sandbox>/<port>` without the trailing slash: redirect here (so relative links work).
    AddSlash(String),
    /// Not a sandbox URL.
    Other,
}

/// A port from a URL: 1–65535, digits only.
pub fn port(s: &str) -> Result<u16, String> {
    let n = (!s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse::<u32>().ok())
        .flatten();
    match n {
        Some(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!("{s:?} is not a port; use a number from 1 to 65535")),
    }
}

/// The host name of a Host header value: lower case, without the port or a trailing dot.
fn host_name(host: &str) -> String {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match h.rsplit_once(':') {
            Some((name, p)) if p.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        }
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `s` can be a sandbox id or name (ids are `sbx-` + [a-z0-9]; names are letters, digits, `_.-`).
fn sandbox_like(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Route a request. `Err` is a 400 message.
pub fn parse(host: Option<&str>, path_and_query: &str, domain: &str) -> Result<Parsed, String> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (path_and_query, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    if !path.starts_with('/') {
        // `OPTIONS *` and the like: nothing a sandbox is asked through the gateway.
        return Err(format!("request target {path:?} is not a path; ask for /… (the gateway proxies paths only)"));
    }
    if let Some(h) = host {
        let name = host_name(h);
        if let Some(label) = name.strip_suffix(domain).and_then(|l| l.strip_suffix('.')) {
            let (sandbox, p) = label.rsplit_once('-').filter(|(s, _)| !s.is_empty()).ok_or_else(|| {
                format!("host {name:?} names no port: use <sandbox>-<port>.{domain}, e.g. sbx-0a1b2c3d4e5f-8888.{domain}")
            })?;
            let port = port(p).map_err(|m| format!("host {name:?}: {m}"))?;
            if !sandbox_like(sandbox) {
                return Err(format!("host {name:?}: {sandbox:?} is not a sandbox id or name"));
            }
            return Ok(Parsed::Target(Target {
                sandbox: sandbox.to_string(),
                port,
                style: Style::Host,
                prefix: String::new(),
                path: path.to_string(),
                query,
            }));
        }
    }
    let Some(rest) = path.strip_prefix("/sandbox/") else { return Ok(Parsed::Other) };
    let mut parts = rest.splitn(3, '/');
    let sandbox = parts.next().unwrap_or("");
    let p = parts.next();
    let tail = parts.next();
    if sandbox.is_empty() {
        return Err("the path names no sandbox: use /sandbox/<sandbox>/<port>/".into());
    }
    let Some(p) = p.filter(|p| !p.is_empty()) else {
        return Err(format!("the path names no port: use /sandbox/{sandbox}/<port>/"));
    };
    let port = port(p).map_err(|m| format!("/sandbox/{sandbox}/{p}: {m}"))?;
    if !sandbox_like(sandbox) {
        return Err(format!("/sandbox/{sandbox}/{p}: {sandbox:?} is not a sandbox id or name"));
    }
    let prefix = format!("/sandbox/{sandbox}/{p}");
    let Some(tail) = tail else {
        let q = query.map(|q| format!("?{q}")).unwrap_or_default();
        return Ok(Parsed::AddSlash(format!("{prefix}/{q}")));
    };
    Ok(Parsed::Target(Target {
        sandbox: sandbox.to_string(),
        port,
        style: Style::Path,
        prefix,
        path: format!("/{tail}"),
        query,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(p: Parsed) -> Target {
        match p {
            Parsed::Target(t) => t,
            other => panic!("not a target: {other:?}"),
        }
    }

    #[test]
    fn by_host() {
        let t = target(parse(Some("sbx-0a1b2c3d4e5f-8888.localhost:8790"), "/tree?x=1", "localhost").unwrap());
        assert_eq!((t.sandbox.as_str(), t.port, t.style), ("sbx-0a1b2c3d4e5f", 8888, Style::Host));
        assert_eq!((t.path.as_str(), t.query.as_deref(), t.prefix.as_str()), ("/tree", Some("x=1"), ""));
        // Names with dashes and dots; upper case is folded; a trailing dot is fine.
        let t = target(parse(Some("My.Web-1-80.Sandboxes.Example.COM."), "/", "sandboxes.example.com").unwrap());
        assert_eq!((t.sandbox.as_str(), t.port), ("my.web-1", 80));
        assert!(parse(Some("web.localhost"), "/", "localhost").unwrap_err().contains("no port"));
        assert!(parse(Some("web-0.localhost"), "/", "localhost").unwrap_err().contains("not a port"));
        assert!(parse(Some("web-70000.localhost"), "/", "localhost").unwrap_err().contains("70000"));
        assert!(parse(Some("web-x.localhost"), "/", "localhost").unwrap_err().contains("\"x\""));
        assert!(parse(Some("-80.localhost"), "/", "localhost").is_err());
    }

    #[test]
    fn by_path() {
        let t = target(parse(Some("127.0.0.1:8790"), "/sandbox/web/8080/a/b?c=d", "localhost").unwrap());
        assert_eq!((t.sandbox.as_str(), t.port, t.style), ("web", 8080, Style::Path));
        assert_eq!((t.prefix.as_str(), t.path.as_str(), t.query.as_deref()), ("/sandbox/web/8080", "/a/b", Some("c=d")));
        let t = target(parse(Some("localhost:8790"), "/sandbox/web/8080/", "localhost").unwrap());
        assert_eq!(t.path, "/");
        assert_eq!(parse(None, "/sandbox/web/8080?t=1", "localhost").unwrap(), Parsed::AddSlash("/sandbox/web/8080/?t=1".into()));
        assert!(parse(None, "/sandbox/web/", "localhost").unwrap_err().contains("no port"));
        assert!(parse(None, "/sandbox/web/0/", "localhost").unwrap_err().contains("not a port"));
        assert!(parse(None, "/sandbox/web/65536/", "localhost").is_err());
        assert!(parse(None, "/sandbox//80/", "localhost").is_err());
        assert_eq!(parse(Some("[::1]:8790"), "/", "localhost").unwrap(), Parsed::Other);
        assert_eq!(parse(Some("localhost"), "/sandboxes", "localhost").unwrap(), Parsed::Other);
    }

    #[test]
    fn odd_targets_are_400s() {
        // found by fuzz/gateway_target: a sandbox "name" with spaces, a request target that is no path
        assert!(parse(Some("d   -1.localhost"), "/", "localhost").is_err());
        assert!(parse(Some("x-1.localhost"), "*", "localhost").is_err());
        assert!(parse(None, "/sandbox/a%20b/80/", "localhost").is_err());
        assert!(parse(None, "/sandbox/my_box.1/80/", "localhost").is_ok());
    }

    #[test]
    fn ports() {
        assert_eq!(port("1"), Ok(1));
        assert_eq!(port("65535"), Ok(65535));
        for bad in ["", "0", "65536", "-1", "+80", "8o", "99999999999"] {
            assert!(port(bad).is_err(), "{bad}");
        }
    }
}
