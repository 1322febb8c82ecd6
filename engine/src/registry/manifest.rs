//! Manifests as registries and archives carry them: OCI image manifests and indexes, Docker schema 2 manifests
//! and manifest lists. Parsed at the edge into types whose digests are valid sha256 digests; the bytes are kept
//! as received, because a manifest's digest is the hash of its exact bytes.
//!
//! An index / manifest list is resolved to one platform ([`Platform::select`]): `linux/amd64` by default, the
//! variant compared only when asked for, attestation manifests (`unknown/unknown`) never chosen.

use serde::Deserialize;

use super::{Error, Result};
use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<PlatformSpec>,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A descriptor's `platform`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PlatformSpec {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An OCI index or Docker manifest list.
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest of either kind.
#[derive(Debug, Clone)]
pub enum Manifest {
    Image { media_type: String, manifest: ImageManifest },
    Index { media_type: String, index: Index },
}

impl Manifest {
    /// Parses `bytes`; `content_type` is what the registry (or descriptor) said, if anything. Without one, the
    /// `mediaType` field decides, and without that the shape (`manifests` vs `config` + `layers`).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::UnsupportedManifest(format!("(not JSON: {e})")))?;
        let field = value.get("mediaType").and_then(|m| m.as_str()).map(str::to_owned);
        let declared = content_type
            .filter(|c| {
                !c.is_empty() && *c != "application/json" && *c != "text/plain" && *c != "application/octet-stream"
            })
            .map(str::to_owned)
            .or(field);
        let schema = value.get("schemaVersion").and_then(|s| s.as_u64()).unwrap_or(0);
        let kind = match declared.as_deref() {
            Some(t @ (OCI_INDEX | DOCKER_LIST)) => (true, t.to_owned()),
            Some(t @ (OCI_MANIFEST | DOCKER_MANIFEST)) => (false, t.to_owned()),
            Some(t) if t == DOCKER_SCHEMA1 || t == DOCKER_SCHEMA1_SIGNED || schema == 1 => {
                return Err(Error::UnsupportedManifest(t.to_owned()))
            }
            Some(t) => return Err(Error::UnsupportedManifest(t.to_owned())),
            None if schema == 1 => return Err(Error::UnsupportedManifest(DOCKER_SCHEMA1.to_owned())),
            None if value.get("manifests").is_some() => (true, OCI_INDEX.to_owned()),
            None => (false, OCI_MANIFEST.to_owned()),
        };
        let invalid = |e: serde_json::Error| Error::UnsupportedManifest(format!("{} (invalid: {e})", kind.1));
        if kind.0 {
            let index: Index = serde_json::from_value(value).map_err(invalid)?;
            Ok(Manifest::Index { media_type: kind.1, index })
        } else {
            let manifest: ImageManifest = serde_json::from_value(value).map_err(invalid)?;
            Ok(Manifest::Image { media_type: kind.1, manifest })
        }
    }
}

/// A platform to pick from an index: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Platform {
        Platform { os: "linux".into(), architecture: "amd64".into(), variant: None }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => {
                Ok(Platform { os: os.to_string(), architecture: arch.to_string(), variant: None })
            }
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => {
                Ok(Platform { os: os.to_string(), architecture: arch.to_string(), variant: Some(v.to_string()) })
            }
            _ => Err(Error::InvalidPlatform(s.to_owned())),
        }
    }
}

impl Platform {
    /// The manifest of `index` for this platform, or an error listing what the index has.
    pub fn select<'a>(&self, index: &'a Index, image: &str) -> Result<&'a Descriptor> {
        let found = index.manifests.iter().find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == self.os
                    && p.architecture == self.architecture
                    && self.variant.as_ref().is_none_or(|v| p.variant.as_ref() == Some(v))
            })
        });
        found.ok_or_else(|| {
            let available: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect();
            Error::NoPlatform {
                image: image.to_owned(),
                platform: self.to_string(),
                available: if available.is_empty() { "no platforms".into() } else { available.join(", ") },
            }
        })
    }
}

/// Whether a layer media type is one we can unpack (tar, tar+gzip; foreign layers are refused).
pub fn is_known_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_LAYER
            | OCI_LAYER_GZIP
            | DOCKER_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | ""
    ) || media_type == "application/vnd.docker.image.rootfs.diff.tar"
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn list() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}},
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D2}","size":2,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        )
    }

    #[test]
    fn picks_linux_amd64_from_a_list() {
        let Ok(Manifest::Index { index, media_type }) = Manifest::parse(list().as_bytes(), None) else {
            panic!("index")
        };
        assert_eq!(media_type, DOCKER_LIST);
        let d = Platform::default().select(&index, "x").expect("amd64");
        assert_eq!(d.digest.to_string(), D2);
        let arm: Platform = "linux/arm/v7".parse().expect("platform");
        assert_eq!(arm.select(&index, "x").expect("arm").digest.to_string(), D1);
        let e = "linux/s390x".parse::<Platform>().expect("p").select(&index, "x").expect_err("none");
        assert!(e.to_string().contains("linux/arm/v7, linux/amd64"), "{e}");
        assert!("linux".parse::<Platform>().is_err());
    }

    #[test]
    fn refuses_schema1_and_bad_digests() {
        let s1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(Manifest::parse(s1, None), Err(Error::UnsupportedManifest(_))));
        let bad = br#"{"schemaVersion":2,"config":{"digest":"md5:00","size":1},"layers":[]}"#;
        assert!(Manifest::parse(bad, Some(OCI_MANIFEST)).is_err());
        let ok = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":1}},"layers":[]}}"#
        );
        assert!(matches!(Manifest::parse(ok.as_bytes(), Some("application/json")), Ok(Manifest::Image { .. })));
    }
}
