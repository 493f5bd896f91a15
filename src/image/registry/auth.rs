//! Which credentials to present: flags first, then `~/.docker/config.json` (`$DOCKER_CONFIG/config.json`)
//! `auths.<registry>.auth` (base64 `user:password`), else anonymous. oci_client turns Basic credentials
//! into a bearer token when the registry asks for one (`WWW-Authenticate: Bearer realm=…`).

use super::RegistryError;
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use std::path::{Path, PathBuf};

pub(crate) fn resolve(
    r: &Reference,
    username: Option<&str>,
    password: Option<&str>,
    docker_config: Option<&Path>,
) -> Result<RegistryAuth, RegistryError> {
    match (username, password) {
        (Some(u), p) => return Ok(RegistryAuth::Basic(u.into(), p.unwrap_or_default().into())),
        (None, Some(_)) => {
            return Err(RegistryError::Credentials(
                "a password needs a --username".into(),
            ));
        }
        (None, None) => {}
    }
    let path = match docker_config {
        Some(p) => p.to_path_buf(),
        None => match default_config_path() {
            Some(p) => p,
            None => return Ok(RegistryAuth::Anonymous),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(e) => {
            return Err(RegistryError::Credentials(format!(
                "{}: {e}",
                path.display()
            )));
        }
    };
    from_config(&text, r.registry())
        .map_err(|e| RegistryError::Credentials(format!("{}: {e}", path.display())))
}

fn default_config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The keys docker itself would file `registry`'s credentials under.
fn keys_for(registry: &str) -> Vec<String> {
    if registry == "docker.io"
        || registry == "index.docker.io"
        || registry == "registry-1.docker.io"
    {
        return [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
        ]
        .map(String::from)
        .to_vec();
    }
    vec![
        registry.into(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ]
}

fn host_of_key(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

pub(crate) fn from_config(text: &str, registry: &str) -> Result<RegistryAuth, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let keys = keys_for(registry);
    let entry = keys.iter().find_map(|k| auths.get(k)).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| keys.iter().any(|w| host_of_key(k) == host_of_key(w)))
            .map(|(_, v)| v)
    });
    let Some(entry) = entry else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let Some(token) = entry
        .get("registrytoken")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
    {
        return Ok(RegistryAuth::Bearer(token.into()));
    }
    if let Some(b64) = entry
        .get("auth")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
    {
        let raw = base64_decode(b64)
            .ok_or_else(|| format!("auths.{registry}.auth is not valid base64"))?;
        let s =
            String::from_utf8(raw).map_err(|_| format!("auths.{registry}.auth is not UTF-8"))?;
        let (u, p) = s
            .split_once(':')
            .ok_or_else(|| format!("auths.{registry}.auth is not user:password"))?;
        return Ok(RegistryAuth::Basic(u.into(), p.into()));
    }
    match (
        entry.get("username").and_then(|u| u.as_str()),
        entry.get("password").and_then(|p| p.as_str()),
    ) {
        (Some(u), Some(p)) => Ok(RegistryAuth::Basic(u.into(), p.into())),
        _ => Ok(RegistryAuth::Anonymous),
    }
}

/// Standard base64 (padding optional).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim().bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert!(base64_decode("!!").is_none());
    }

    #[test]
    fn docker_config() {
        let cfg = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},
                      "127.0.0.1:5000":{"auth":"YTpiOmM="},
                      "https://ghcr.io":{"username":"u","password":"p"}}}"#;
        assert_eq!(
            from_config(cfg, "docker.io").unwrap(),
            RegistryAuth::Basic("user".into(), "pass".into())
        );
        assert_eq!(
            from_config(cfg, "127.0.0.1:5000").unwrap(),
            RegistryAuth::Basic("a".into(), "b:c".into())
        );
        assert_eq!(
            from_config(cfg, "ghcr.io").unwrap(),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        assert_eq!(
            from_config(cfg, "quay.io").unwrap(),
            RegistryAuth::Anonymous
        );
        assert_eq!(
            from_config("{}", "quay.io").unwrap(),
            RegistryAuth::Anonymous
        );
        assert!(from_config("nope", "quay.io").is_err());
    }
}
