//! Image references: `busybox`, `ghcr.io/org/app:1.2`, `127.0.0.1:5000/x@sha256:…`.
//!
//! Parsing is `oci_client::Reference`'s (Docker's own normalization rules): a name without a registry
//! is on Docker Hub (`busybox` → `docker.io/library/busybox:latest`), the tag defaults to `latest`.
//! The canonical form is what the store records as an image's name: `registry/repository:tag`, or
//! `registry/repository@sha256:…` when the reference has a digest. Images built locally (recipes)
//! live under the registry [`LOCAL_REGISTRY`].

pub use oci_client::Reference;

/// The registry part of locally built images' names (`beam.local/python:latest`).
pub const LOCAL_REGISTRY: &str = "beam.local";

#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error("invalid image reference {input:?}: {reason}")]
    Invalid { input: String, reason: String },
}

/// Parse an image reference, normalizing Docker Hub names as Docker does.
pub fn parse(s: &str) -> Result<Reference, RefError> {
    let invalid = |reason: String| RefError::Invalid {
        input: s.to_string(),
        reason,
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(invalid("empty".into()));
    }
    if t != s || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace".into()));
    }
    // `docker://` and `oci://`-style transports are not references.
    if t.contains("://") {
        return Err(invalid(
            "a reference has no scheme; drop the `…://` prefix".into(),
        ));
    }
    let r: Reference = t
        .parse()
        .map_err(|e: oci_client::ParseError| invalid(e.to_string()))?;
    if r.repository().is_empty() {
        return Err(invalid("no repository name".into()));
    }
    if r.repository().chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid("repository names must be lowercase".into()));
    }
    Ok(r)
}

/// `registry/repository:tag` (tag defaults to `latest`), or `registry/repository@sha256:…` when the
/// reference carries a digest (the digest wins over a tag, as it decides what is pulled).
pub fn canonical(r: &Reference) -> String {
    match r.digest() {
        Some(d) => format!("{}/{}@{}", r.registry(), r.repository(), d),
        None => format!(
            "{}/{}:{}",
            r.registry(),
            r.repository(),
            r.tag().unwrap_or("latest")
        ),
    }
}

/// Parse and canonicalize in one step.
pub fn normalize(s: &str) -> Result<String, RefError> {
    parse(s).map(|r| canonical(&r))
}

/// True for registries that may be reached over plain http without `--insecure`:
/// localhost, 127.0.0.1 and [::1], with or without a port.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                registry
            }
        })
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_normalization() {
        for (input, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox:1",
                "docker.io/library/busybox:1",
            ),
            (
                "jupyter/base-notebook",
                "docker.io/jupyter/base-notebook:latest",
            ),
            ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/a/b:c", "localhost:5000/a/b:c"),
            ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest"),
            ("beam.local/python", "beam.local/python:latest"),
        ] {
            assert_eq!(normalize(input).unwrap(), want, "{input}");
        }
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize(&format!("busybox@{d}")).unwrap(),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            normalize(&format!("busybox:1@{d}")).unwrap(),
            format!("docker.io/library/busybox@{d}")
        );
    }

    #[test]
    fn bad_references() {
        for bad in [
            "",
            " busybox",
            "Busybox",
            "busybox:",
            "docker://busybox",
            "a@sha256:abc",
            "x/Y:z",
            "a b",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse("busybox").unwrap().tag() == Some("latest"));
    }

    #[test]
    fn loopback() {
        for (r, want) in [
            ("localhost", true),
            ("localhost:5000", true),
            ("127.0.0.1:38211", true),
            ("[::1]:5000", true),
            ("[::1]", true),
            ("docker.io", false),
            ("127.0.0.2:5000", false),
            ("localhost.example.com", false),
        ] {
            assert_eq!(is_loopback_registry(r), want, "{r}");
        }
    }
}
