//! The few manifest shapes pull, push and the archive importers read: OCI / Docker v2 schema 2 image
//! manifests and OCI indexes / Docker manifest lists, plus the host-platform choice among index entries.
//! Manifests are stored byte for byte as received (their digest names them), so these types only read.

use crate::image::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Every manifest media type a pull accepts (sent as `Accept`).
pub const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Layer media types the store can unpack (gzip, zstd or plain tar; OCI, Docker and non-distributable).
pub fn is_supported_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn digest(&self) -> Result<Digest, String> {
        Digest::parse(&self.digest).map_err(|e| e.to_string())
    }
    pub fn is_index(&self) -> bool {
        matches!(self.media_type.as_str(), OCI_INDEX | DOCKER_MANIFEST_LIST)
    }
}

/// An image manifest or an index: which one is told by `kind()`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnyManifest {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    Index,
}

/// A parsed image manifest: config and layers, base first.
#[derive(Debug, Clone)]
pub struct ImageManifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl AnyManifest {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let m: AnyManifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("manifest is not valid JSON: {e}"))?;
        if m.schema_version != 2 {
            return Err(match m.schema_version {
                1 => "Docker schema 1 manifests are not supported (re-push the image with a current tool)".into(),
                v => format!("unsupported manifest schemaVersion {v}"),
            });
        }
        Ok(m)
    }

    pub fn kind(&self) -> Result<Kind, String> {
        match self.media_type.as_deref() {
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => Ok(Kind::Index),
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => Ok(Kind::Image),
            Some(other) => Err(format!("unsupported manifest media type {other}")),
            // OCI lets mediaType be absent: tell by shape.
            None if self.manifests.is_some() => Ok(Kind::Index),
            None if self.config.is_some() => Ok(Kind::Image),
            None => Err("manifest has neither layers nor manifests".into()),
        }
    }

    /// The image manifest view; errors name unsupported layer types.
    pub fn image(self) -> Result<ImageManifest, String> {
        let media_type = self
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_MANIFEST.into());
        let config = self.config.ok_or("image manifest has no config")?;
        let layers = self.layers.unwrap_or_default();
        config.digest()?;
        for l in &layers {
            l.digest()?;
            if !is_supported_layer(&l.media_type) {
                return Err(format!(
                    "layer {} has unsupported media type {}",
                    l.digest, l.media_type
                ));
            }
        }
        Ok(ImageManifest {
            media_type,
            config,
            layers,
        })
    }

    pub fn entries(&self) -> &[Descriptor] {
        self.manifests.as_deref().unwrap_or(&[])
    }
}

/// `linux/amd64`, `linux/arm64/v8`, … (GOARCH names).
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other, // arm, riscv64, s390x, mips64 …
    };
    Platform {
        architecture: architecture.into(),
        os: "linux".into(),
        variant: None,
    }
}

/// Parse `os/arch[/variant]` (e.g. `linux/arm64`).
pub fn parse_platform(s: &str) -> Result<Platform, String> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: (*os).into(),
            architecture: (*arch).into(),
            variant: None,
        }),
        [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
            Ok(Platform {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: Some((*variant).into()),
            })
        }
        _ => Err(format!(
            "platform {s:?} is not os/arch[/variant] (e.g. linux/amd64)"
        )),
    }
}

pub fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{}", p.os, p.architecture, v),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// The index entry for `want`: same os and architecture; a wanted variant must match (arm64's `v8` is
/// its default). Among several matches an exact variant wins, then the first. Attestation manifests
/// (`unknown/unknown`) never match.
pub fn choose<'a>(entries: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    let default_variant = |arch: &str| match arch {
        "arm64" => Some("v8"),
        _ => None,
    };
    let norm = |p: &Platform| {
        p.variant
            .clone()
            .or_else(|| default_variant(&p.architecture).map(String::from))
    };
    let candidates: Vec<&Descriptor> = entries
        .iter()
        .filter(|e| {
            e.platform.as_ref().is_some_and(|p| {
                p.os == want.os
                    && p.architecture == want.architecture
                    && (want.variant.is_none() || norm(p) == norm(want))
            })
        })
        .collect();
    candidates
        .iter()
        .find(|e| e.platform.as_ref().map(norm) == Some(norm(want)))
        .or(candidates.first())
        .copied()
}

/// `linux/amd64, linux/arm64` for error messages.
pub fn platforms_of(entries: &[Descriptor]) -> String {
    let v: Vec<String> = entries
        .iter()
        .filter_map(|e| e.platform.as_ref().map(platform_string))
        .collect();
    if v.is_empty() {
        "no platform information".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>, d: char) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", d.to_string().repeat(64)),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
            }),
            annotations: Default::default(),
        }
    }

    #[test]
    fn platform_choice() {
        let es = vec![
            entry("arm", Some("v7"), 'a'),
            entry("arm64", Some("v8"), 'b'),
            entry("amd64", None, 'c'),
        ];
        let pick = |s: &str| {
            choose(&es, &parse_platform(s).unwrap()).map(|e| e.digest.chars().last().unwrap())
        };
        assert_eq!(pick("linux/amd64"), Some('c'));
        assert_eq!(pick("linux/arm64"), Some('b'));
        assert_eq!(pick("linux/arm64/v8"), Some('b'));
        assert_eq!(pick("linux/arm/v7"), Some('a'));
        assert_eq!(pick("linux/arm/v6"), None);
        assert_eq!(pick("linux/s390x"), None);
        assert!(
            choose(&es, &host_platform()).is_some()
                || !matches!(std::env::consts::ARCH, "x86_64" | "aarch64")
        );
        assert!(parse_platform("linux").is_err());
    }

    #[test]
    fn kinds() {
        let m = AnyManifest::parse(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        assert_eq!(m.kind().unwrap(), Kind::Index);
        assert!(AnyManifest::parse(br#"{"schemaVersion":1}"#).is_err());
        let img = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"sha256:{h}","size":2}},
               "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:{h}","size":3}}]}}"#,
            h = "0".repeat(64)
        );
        let m = AnyManifest::parse(img.as_bytes()).unwrap();
        assert_eq!(m.kind().unwrap(), Kind::Image);
        assert_eq!(m.image().unwrap().layers.len(), 1);
        let bad = img.replace("tar+zstd", "tar+lz4");
        assert!(AnyManifest::parse(bad.as_bytes()).unwrap().image().is_err());
    }
}
