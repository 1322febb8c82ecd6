//! The HTTP side of the registry protocol, for one repository of one registry, on a blocking `ureq` agent.
//!
//! `Client::connect` pings `GET /v2/` to learn the scheme and the auth challenge: `https` always first; for a
//! registry that is insecure (loopback, `--insecure-registry`, `DRYDOCK_INSECURE_REGISTRIES`) TLS is not
//! verified and plain `http` is tried when TLS fails, as dockerd does. It then asks for a token (Bearer) or uses
//! Basic credentials. Every request:
//! - carries the current `Authorization`; a `401` later on (an expired token) re-authorizes once and retries;
//! - is retried on connection errors and `5xx` answers, at most [`MAX_ATTEMPTS`] times with exponential backoff
//!   from [`FIRST_BACKOFF`] — request bodies are bytes or a file that is reopened, so retries resend them whole;
//! - maps statuses to errors that name the registry, the repository and the HTTP status.
//!
//! Redirects (blob downloads are often redirected to object storage) are followed without the `Authorization`
//! header, so a registry's token never leaks to another host.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use ureq::http::{self, Response};
use ureq::Body as ResponseBody;

use super::auth::{self, Challenge, Credentials};
use super::{api_host, Error, RegistryOptions, Result};
use crate::digest::Digest;

/// Attempts per request (the first one included) on connection errors and `5xx`.
pub const MAX_ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled before each further one (0.25 s, 0.5 s, 1 s).
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Manifests larger than this are refused (distribution's own limit is 4 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Every manifest type we can read, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A request body that can be sent again on retry.
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// A file sent with its length as `Content-Length` (reopened on every attempt).
    File(PathBuf),
}

/// The answer to an upload that tried to mount a blob from another repository.
#[derive(Debug)]
pub enum Mount {
    Mounted,
    /// The registry could not mount it and opened an upload session instead.
    Upload(String),
}

/// A connection to one repository of one registry.
pub struct Client {
    agent: ureq::Agent,
    registry: String,
    repository: String,
    base: String,
    credentials: Option<Credentials>,
    challenge: Option<Challenge>,
    authorization: Option<String>,
    scopes: Vec<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).field("repository", &self.repository).finish_non_exhaustive()
    }
}

fn agent(verify_tls: bool) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder().disable_verification(!verify_tls).build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .user_agent(concat!("drydock-engine/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .max_redirects(5)
        .build()
        .new_agent()
}

fn is_retryable(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(_)
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
    )
}

impl Client {
    /// Connects to `registry` (a reference's registry part) for `repository`, asking for `scopes`
    /// (`repository:NAME:pull[,push]`).
    pub fn connect(
        registry: &str,
        repository: &str,
        scopes: Vec<String>,
        credentials: Option<Credentials>,
        options: &RegistryOptions,
    ) -> Result<Client> {
        let host = api_host(registry);
        let insecure = options.is_insecure(registry);
        let mut candidates = vec![(format!("https://{host}"), agent(!insecure))];
        if insecure {
            candidates.push((format!("http://{host}"), agent(false)));
        }
        let mut last_error = String::new();
        let count = candidates.len();
        for (n, (base, agent)) in candidates.into_iter().enumerate() {
            // With a plain-HTTP fallback, a failed TLS attempt moves on at once instead of retrying.
            let retry = n + 1 == count;
            let mut client = Client {
                agent,
                registry: registry.to_owned(),
                repository: repository.to_owned(),
                base,
                credentials: credentials.clone(),
                challenge: None,
                authorization: None,
                scopes: scopes.clone(),
            };
            match client.ping(retry) {
                Ok(()) => {
                    client.authorize()?;
                    return Ok(client);
                }
                Err(Error::Connect { message, .. }) => last_error = message,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Connect { registry: registry.to_owned(), message: last_error })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `GET /v2/`: learns whether and how to authenticate.
    fn ping(&mut self, retry: bool) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let attempts = if retry { MAX_ATTEMPTS } else { 1 };
        let response = self.send_raw("GET", &url, &[], &Body::Empty, false, attempts)?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            401 => {
                self.challenge = challenge_of(&response);
                if self.challenge.is_none() {
                    return Err(Error::Protocol {
                        registry: self.registry.clone(),
                        what: "authentication challenge".into(),
                        message: "HTTP 401 without a Basic or Bearer WWW-Authenticate header".into(),
                    });
                }
                Ok(())
            }
            404 => Err(Error::Protocol {
                registry: self.registry.clone(),
                what: "answer to GET /v2/".into(),
                message: "HTTP 404: this is not a registry serving the v2 API".into(),
            }),
            status => Err(Error::Status {
                registry: self.registry.clone(),
                method: "GET".into(),
                path: "/v2/".into(),
                status,
                detail: String::new(),
            }),
        }
    }

    /// Sets `Authorization` for the current challenge (a fresh token for Bearer).
    fn authorize(&mut self) -> Result<()> {
        self.authorization = match &self.challenge {
            None => None,
            Some(Challenge::Basic) => self.credentials.as_ref().map(Credentials::basic_header),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let token = auth::fetch_token(
                    &self.agent,
                    &self.registry,
                    &self.repository,
                    realm,
                    service.as_deref(),
                    &self.scopes,
                    self.credentials.as_ref(),
                )?;
                Some(format!("Bearer {token}"))
            }
        };
        Ok(())
    }

    /// Whether the registry asked for credentials and none were given (for `login` and error messages).
    pub fn authenticated(&self) -> bool {
        self.authorization.is_some()
    }

    /// Checks that the credentials work: `GET /v2/` with them must succeed.
    pub fn verify_login(&mut self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let response = self.send(&url, "GET", &[], &Body::Empty)?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(Error::Login {
                registry: self.registry.clone(),
                message: "the registry refused the user name or password (HTTP 401)".into(),
            }),
            status => Err(self.status_error("GET", "/v2/", status, response)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{}", self.base, self.repository, path)
    }

    /// Resolves an upload `Location` (absolute or relative to the registry).
    fn location_url(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    /// One request with retries and one re-authorization on `401`.
    fn send(
        &mut self,
        url: &str,
        method: &str,
        headers: &[(&str, String)],
        body: &Body,
    ) -> Result<Response<ResponseBody>> {
        let response = self.send_raw(method, url, headers, body, true, MAX_ATTEMPTS)?;
        if response.status().as_u16() != 401 || self.challenge.is_none() {
            return Ok(response);
        }
        if let Some(Challenge::Bearer { .. }) = challenge_of(&response) {
            self.challenge = challenge_of(&response);
        }
        self.authorize()?;
        self.send_raw(method, url, headers, body, true, MAX_ATTEMPTS)
    }

    fn send_raw(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &Body,
        with_auth: bool,
        attempts: u32,
    ) -> Result<Response<ResponseBody>> {
        let mut attempt = 1;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let result = self.attempt(method, url, headers, body, with_auth);
            let retry = match &result {
                Ok(r) => r.status().is_server_error(),
                Err(e) => is_retryable(e),
            };
            if retry && attempt < attempts {
                tracing::debug!(registry = %self.registry, method, url, attempt, "retrying after a failed request");
                std::thread::sleep(backoff);
                backoff *= 2;
                attempt += 1;
                continue;
            }
            return result.map_err(|e| Error::Connect {
                registry: self.registry.clone(),
                message: format!("{method} {url}: {e}"),
            });
        }
    }

    fn attempt(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &Body,
        with_auth: bool,
    ) -> std::result::Result<Response<ResponseBody>, ureq::Error> {
        let mut builder = http::Request::builder().method(method).uri(url);
        if with_auth {
            if let Some(a) = &self.authorization {
                builder = builder.header("Authorization", a);
            }
        }
        for (k, v) in headers {
            builder = builder.header(*k, v);
        }
        match body {
            Body::Empty => {
                let builder = if matches!(method, "PUT" | "POST" | "PATCH") {
                    builder.header("Content-Length", "0")
                } else {
                    builder
                };
                self.agent.run(builder.body(())?)
            }
            Body::Bytes(b) => self.agent.run(builder.body(b.as_slice())?),
            Body::File(path) => {
                let file = File::open(path)?;
                let len = file.metadata()?.len();
                self.agent.run(builder.header("Content-Length", len).body(file)?)
            }
        }
    }

    /// An error for an unexpected status, with the registry's own error message when it sent one.
    fn status_error(&self, method: &str, path: &str, status: u16, mut response: Response<ResponseBody>) -> Error {
        let body = response.body_mut().with_config().limit(64 * 1024).read_to_vec().unwrap_or_default();
        let detail = registry_message(&body).map(|m| format!(": {m}")).unwrap_or_default();
        match status {
            401 => Error::Unauthorized { registry: self.registry.clone(), repository: self.repository.clone() },
            403 => Error::Denied { registry: self.registry.clone(), repository: self.repository.clone(), detail },
            _ => Error::Status {
                registry: self.registry.clone(),
                method: method.to_owned(),
                path: format!("/v2/{}/{path}", self.repository),
                status,
                detail,
            },
        }
    }

    /// `GET /v2/<name>/manifests/<reference>`: the bytes, the media type the registry says, and its
    /// `Docker-Content-Digest`. `image` names the reference in a 404 error.
    pub fn get_manifest(&mut self, reference: &str, image: &str) -> Result<(Vec<u8>, Option<String>, Option<Digest>)> {
        let path = format!("manifests/{reference}");
        let url = self.url(&path);
        let mut response = self.send(&url, "GET", &[("Accept", MANIFEST_ACCEPT.to_owned())], &Body::Empty)?;
        match response.status().as_u16() {
            200 => {}
            404 => return Err(Error::ManifestUnknown { image: image.to_owned(), registry: self.registry.clone() }),
            status => return Err(self.status_error("GET", &path, status, response)),
        }
        let content_type =
            header(&response, "content-type").map(|c| c.split(';').next().unwrap_or(&c).trim().to_owned());
        let digest = header(&response, "docker-content-digest").and_then(|d| d.parse().ok());
        let bytes =
            response.body_mut().with_config().limit(MAX_MANIFEST_BYTES).read_to_vec().map_err(|e| Error::Protocol {
                registry: self.registry.clone(),
                what: format!("manifest {reference}"),
                message: e.to_string(),
            })?;
        Ok((bytes, content_type, digest))
    }

    /// `HEAD /v2/<name>/manifests/<reference>`: the digest if the registry has it.
    pub fn manifest_digest(&mut self, reference: &str) -> Result<Option<Digest>> {
        let path = format!("manifests/{reference}");
        let url = self.url(&path);
        let response = self.send(&url, "HEAD", &[("Accept", MANIFEST_ACCEPT.to_owned())], &Body::Empty)?;
        match response.status().as_u16() {
            200 => Ok(header(&response, "docker-content-digest").and_then(|d| d.parse().ok())),
            404 => Ok(None),
            status => Err(self.status_error("HEAD", &path, status, response)),
        }
    }

    /// `GET /v2/<name>/blobs/<digest>`: a reader over the blob (not yet verified) and its announced length.
    pub fn get_blob(&mut self, digest: &Digest) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
        let path = format!("blobs/{digest}");
        let url = self.url(&path);
        let response = self.send(&url, "GET", &[], &Body::Empty)?;
        match response.status().as_u16() {
            200 => {}
            404 => {
                return Err(Error::BlobUnknown {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    digest: digest.clone(),
                })
            }
            status => return Err(self.status_error("GET", &path, status, response)),
        }
        let length = response.body().content_length();
        Ok((Box::new(response.into_body().into_reader()), length))
    }

    /// `HEAD /v2/<name>/blobs/<digest>`: whether the repository has the blob.
    pub fn has_blob(&mut self, digest: &Digest) -> Result<bool> {
        let path = format!("blobs/{digest}");
        let url = self.url(&path);
        let response = self.send(&url, "HEAD", &[], &Body::Empty)?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(self.status_error("HEAD", &path, status, response)),
        }
    }

    /// `POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repo>`: 201 when mounted, else an upload session.
    pub fn mount_blob(&mut self, digest: &Digest, from: &str) -> Result<Mount> {
        let path = format!("blobs/uploads/?mount={digest}&from={from}");
        let url = self.url(&path);
        let response = self.send(&url, "POST", &[], &Body::Empty)?;
        match response.status().as_u16() {
            201 => Ok(Mount::Mounted),
            202 => Ok(Mount::Upload(self.upload_location(&response)?)),
            status => Err(self.status_error("POST", &path, status, response)),
        }
    }

    /// `POST /v2/<name>/blobs/uploads/`: a new upload session's URL.
    pub fn start_upload(&mut self) -> Result<String> {
        let path = "blobs/uploads/";
        let url = self.url(path);
        let response = self.send(&url, "POST", &[], &Body::Empty)?;
        match response.status().as_u16() {
            202 => self.upload_location(&response),
            status => Err(self.status_error("POST", path, status, response)),
        }
    }

    fn upload_location(&self, response: &Response<ResponseBody>) -> Result<String> {
        let location = header(response, "location").ok_or_else(|| Error::Protocol {
            registry: self.registry.clone(),
            what: "upload session".into(),
            message: "HTTP 202 without a Location header".into(),
        })?;
        Ok(self.location_url(&location))
    }

    /// Finishes an upload session monolithically: `PUT <location>?digest=<digest>` with the whole blob.
    pub fn finish_upload(&mut self, location: &str, digest: &Digest, body: Body) -> Result<()> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let response = self.send(&url, "PUT", &[("Content-Type", "application/octet-stream".to_owned())], &body)?;
        match response.status().as_u16() {
            201 | 204 => Ok(()),
            400 => {
                let path = format!("blobs/uploads/…?digest={digest}");
                match self.status_error("PUT", &path, 400, response) {
                    Error::Status { detail, .. }
                        if detail.contains("DIGEST_INVALID") || detail.to_lowercase().contains("digest") =>
                    {
                        Err(Error::Protocol {
                            registry: self.registry.clone(),
                            what: "answer to a blob upload".into(),
                            message: format!("it refused {digest} as the digest of the uploaded content{detail}"),
                        })
                    }
                    e => Err(e),
                }
            }
            status => Err(self.status_error("PUT", "blobs/uploads/…", status, response)),
        }
    }

    /// `PUT /v2/<name>/manifests/<reference>`; returns the digest the registry computed, if it says.
    pub fn put_manifest(&mut self, reference: &str, bytes: &[u8], media_type: &str) -> Result<Option<Digest>> {
        let path = format!("manifests/{reference}");
        let url = self.url(&path);
        let response =
            self.send(&url, "PUT", &[("Content-Type", media_type.to_owned())], &Body::Bytes(bytes.to_vec()))?;
        match response.status().as_u16() {
            200..=299 => Ok(header(&response, "docker-content-digest").and_then(|d| d.parse().ok())),
            status => Err(self.status_error("PUT", &path, status, response)),
        }
    }
}

fn header(response: &Response<ResponseBody>, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn challenge_of(response: &Response<ResponseBody>) -> Option<Challenge> {
    response.headers().get_all("www-authenticate").iter().filter_map(|v| v.to_str().ok()).find_map(Challenge::parse)
}

/// The first message of a registry error body (`{"errors":[{"code":…,"message":…}]}`).
fn registry_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let first = v.get("errors")?.as_array()?.first()?;
    let code = first.get("code").and_then(|c| c.as_str()).unwrap_or("");
    let message = first.get("message").and_then(|c| c.as_str()).unwrap_or("");
    Some(format!("{code} {message}").trim().to_owned()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_bodies() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(registry_message(body).as_deref(), Some("MANIFEST_UNKNOWN manifest unknown"));
        assert_eq!(registry_message(b"<html>"), None);
    }
}
