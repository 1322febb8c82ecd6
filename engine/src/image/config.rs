//! The image configuration blob (`application/vnd.oci.image.config.v1+json`), in Docker's field names.
//!
//! Why not `oci_spec::image::ImageConfiguration`: its `Config` keeps `ExposedPorts`, `Volumes` and `Labels` in
//! `HashMap`s, so serialising the same config twice can give two digests — image IDs and the build cache need
//! byte-stable JSON — and it has no field for Docker's `Healthcheck`, `OnBuild` or `Shell`, which Dockerfiles
//! set. This type keeps every map ordered (BTreeMap) and carries those fields; manifests, descriptors and the
//! index still come from `oci-spec`. Configs pulled from registries are stored byte for byte as received and only
//! read through this type, so fields we do not model are never lost from a pulled image.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// The empty JSON object docker uses as the value of set-like maps (`"ExposedPorts": {"80/tcp": {}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The whole configuration blob.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: RunConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

/// The execution defaults of an image (`config` in the blob).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub shell: Vec<String>,
}

/// Docker's `Healthcheck` (durations in nanoseconds, as docker stores them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `[]` inherit, `["NONE"]` disabled, `["CMD", args…]` or `["CMD-SHELL", command]`.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

/// The layers of an image, as uncompressed digests (diff IDs), bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> RootFs {
        RootFs { kind: "layers".to_owned(), diff_ids: Vec::new() }
    }
}

/// One history entry; entries with `empty_layer` made no layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Docker writes `null` for empty lists and maps; treat it as empty.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl ImageConfig {
    /// Byte-stable JSON of this config: the same config always gives the same digest.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain structs, strings and BTreeMaps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_configs_with_nulls() {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],
            "Entrypoint":null,"ExposedPorts":null,"Volumes":{"/data":{}},"OnBuild":null,"Labels":null,
            "Image":"sha256:x","ArgsEscaped":true},"rootfs":{"type":"layers","diff_ids":["sha256:a"]},
            "history":[{"created":"2024-01-01T00:00:00Z","created_by":"/bin/sh","empty_layer":true}],
            "container_config":{"Hostname":"x"}}"#;
        let c: ImageConfig = serde_json::from_str(json).expect("parses");
        assert_eq!(c.config.cmd, Some(vec!["sh".to_owned()]));
        assert!(c.config.exposed_ports.is_empty());
        assert!(c.config.volumes.contains_key("/data"));
        assert!(c.history[0].empty_layer);
    }

    #[test]
    fn serialisation_is_stable() {
        let mut c = ImageConfig::default();
        for p in ["8080/tcp", "443/tcp", "80/tcp"] {
            c.config.exposed_ports.insert(p.to_owned(), Empty {});
        }
        c.config.labels.insert("b".into(), "2".into());
        c.config.labels.insert("a".into(), "1".into());
        let once = c.to_json();
        let again: ImageConfig = serde_json::from_slice(&once).expect("round trip");
        assert_eq!(again.to_json(), once);
        assert!(String::from_utf8_lossy(&once).contains(r#""ExposedPorts":{"443/tcp":{},"80/tcp":{},"8080/tcp":{}}"#));
    }
}
