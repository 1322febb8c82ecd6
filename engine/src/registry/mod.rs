//! The registry client: OCI distribution / Docker Registry HTTP API v2, blocking, one verb per file.
//!
//! - [`client`]: HTTP with auth (Bearer token and Basic), https-then-http for insecure registries, bounded
//!   retries on 5xx and connection errors, errors that name registry, repository and status.
//! - [`auth`]: `WWW-Authenticate` challenges and the token endpoint.
//! - [`credentials`]: `~/.docker/config.json` (`DOCKER_CONFIG`), shared with docker, podman and skopeo.
//! - [`manifest`]: manifests, indexes / manifest lists, platform choice (`linux/amd64`).
//! - [`pull`], [`push`], [`login`]: the verbs behind `engine pull`, `engine push`, `engine login/logout`.
//!
//! Everything that comes from a registry is untrusted: manifests and blobs are verified against their digest
//! before they are stored, and pulled images go through an [`crate::image::adopt::Ingest`] so a failed pull
//! leaves the store as it was. Decisions (compression on push, insecure registries, credentials, retries) are
//! written down in `docs/registry.md`.

pub mod auth;
pub mod client;
pub mod credentials;
pub mod login;
pub mod manifest;
pub mod pull;
pub mod push;

use crate::digest::Digest;

pub use client::Client;
pub use pull::{pull, PullEvent, PullOptions, PullOutcome};
pub use push::{push, PushEvent, PushOutcome};

/// Docker Hub's name in references and in `config.json` lookups.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The key docker uses for Docker Hub credentials in `config.json`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";
/// Comma-separated registries (`host[:port]`) that may be reached over plain HTTP or unverified TLS.
pub const INSECURE_ENV: &str = "DRYDOCK_INSECURE_REGISTRIES";

/// Errors talking to a registry. Messages name the registry, the repository and the HTTP status, and say what
/// to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "unauthorized: {registry} requires authentication for {repository} (HTTP 401): run `engine login {registry}`"
    )]
    Unauthorized { registry: String, repository: String },
    #[error(
        "denied: access to {repository} on {registry} is forbidden (HTTP 403){detail}: check the account's permissions"
    )]
    Denied { registry: String, repository: String, detail: String },
    #[error("manifest unknown: {image} not found in {registry}")]
    ManifestUnknown { image: String, registry: String },
    #[error("blob unknown: {digest} not found in {repository} on {registry} (HTTP 404)")]
    BlobUnknown { registry: String, repository: String, digest: Digest },
    #[error("{registry} answered HTTP {status} to {method} {path}{detail}")]
    Status { registry: String, method: String, path: String, status: u16, detail: String },
    #[error("cannot reach registry {registry}: {message} (check the address; a registry serving plain HTTP must be listed with --insecure-registry or {INSECURE_ENV})")]
    Connect { registry: String, message: String },
    #[error("the connection to registry {registry} broke while {message}, {attempts} times; nothing was stored (try again; if it keeps failing, check the registry's logs or a proxy in between)")]
    Interrupted { registry: String, message: String, attempts: u32 },
    #[error("registry {registry} sent an invalid {what}: {message}")]
    Protocol { registry: String, what: String, message: String },
    #[error("{what} {expected} from {registry}/{repository} failed verification: its content hashes to {actual} (the registry or a proxy corrupted it; nothing was stored)")]
    DigestMismatch { registry: String, repository: String, what: &'static str, expected: Digest, actual: Digest },
    #[error("no manifest for {platform} in the manifest list of {image} (it has: {available})")]
    NoPlatform { image: String, platform: String, available: String },
    #[error("unsupported manifest media type `{0}` (only OCI and Docker schema 2 images can be pulled; re-push the image with a current client)")]
    UnsupportedManifest(String),
    #[error("invalid platform `{0}` (expected os/arch[/variant], e.g. linux/amd64)")]
    InvalidPlatform(String),
    #[error("{message}")]
    Push { image: String, message: String },
    #[error("credentials file {path}: {message}")]
    Credentials { path: String, message: String },
    #[error("login to {registry} failed: {message}")]
    Login { registry: String, message: String },
    #[error("not logged in to {0}")]
    NotLoggedIn(String),
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Reference(#[from] crate::reference::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// How to reach registries: which ones may use plain HTTP (or unverified TLS).
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `host[:port]` entries from `--insecure-registry` and [`INSECURE_ENV`].
    pub insecure: Vec<String>,
}

impl RegistryOptions {
    /// Options with the insecure registries named in `flags` plus those in the environment.
    pub fn from_flags_and_env(flags: &[String]) -> RegistryOptions {
        let mut insecure: Vec<String> = flags.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        if let Ok(env) = std::env::var(INSECURE_ENV) {
            insecure.extend(env.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
        }
        RegistryOptions { insecure }
    }

    /// True when `registry` may be reached over plain HTTP: loopback always (as docker treats 127.0.0.0/8), and
    /// every registry listed as insecure.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = host_of(registry);
        host == "localhost"
            || host.starts_with("127.")
            || host == "::1"
            || host == "[::1]"
            || self.insecure.iter().any(|i| {
                let i = i.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
                i == registry || (!i.contains(':') && i == host)
            })
    }
}

/// The host part of `host[:port]` (IPv6 literals keep their brackets).
fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.split_once(']').map_or(registry, |(h, _)| h).trim_start_matches('[');
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

/// The host that serves the API of `registry` (a reference's registry part): Docker Hub's is not `docker.io`.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB || registry == "index.docker.io" {
        DOCKER_HUB_API
    } else {
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_registries_are_insecure() {
        let o = RegistryOptions { insecure: vec!["myreg:5000".into(), "http://other.lan".into()] };
        assert!(o.is_insecure("localhost:5000"));
        assert!(o.is_insecure("127.0.0.1:41234"));
        assert!(o.is_insecure("myreg:5000"));
        assert!(!o.is_insecure("myreg:5001"));
        assert!(o.is_insecure("other.lan:8080"));
        assert!(!o.is_insecure("docker.io"));
        assert!(!o.is_insecure("ghcr.io"));
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("localhost:5000"), "localhost:5000");
    }
}
