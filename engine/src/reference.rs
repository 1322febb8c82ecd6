//! Image references as docker reads them: `busybox` is `docker.io/library/busybox:latest`, a first component
//! with a `.` or `:` (or `localhost`) is a registry, tags and `@sha256:` digests are optional.
//!
//! Follows distribution/reference's grammar: path components are lowercase alphanumerics joined by `.`, `_`,
//! `__` or runs of `-`; a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; the whole name is at most 255 characters.

use std::fmt;

use crate::digest::Digest;

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";

/// A reference that does not follow docker's grammar.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid reference format: `{0}` (repository names must be lowercase, e.g. `registry:5000/team/app:1.0`)")]
    Invalid(String),
    #[error(
        "invalid reference format: tag `{tag}` in `{reference}` (tags are letters, digits, `_`, `.`, `-`, at most 128)"
    )]
    InvalidTag { reference: String, tag: String },
    #[error("invalid reference format: `{0}` has an invalid digest (expected @sha256:<64 hex>)")]
    InvalidDigest(String),
    #[error("invalid reference format: `{0}` is longer than 255 characters")]
    TooLong(String),
}

/// A fully normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host (and port): `docker.io`, `localhost:5000`.
    pub registry: String,
    /// Repository path inside the registry: `library/busybox`, `team/app`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `s`; without tag or digest the tag is `latest`.
    pub fn parse(s: &str) -> Result<Reference, Error> {
        let mut r = Reference::parse_bare(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(r)
    }

    /// Parses and normalises `s` without adding a default tag (for `docker pull -a`-like uses and repo filters).
    pub fn parse_bare(s: &str) -> Result<Reference, Error> {
        let invalid = || Error::Invalid(s.to_owned());
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d.parse::<Digest>().map_err(|_| Error::InvalidDigest(s.to_owned()))?)),
            None => (s, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (&name_tag[..last_slash + i], Some(&name_tag[last_slash + i + 1..])),
            None => (name_tag, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(Error::InvalidTag { reference: s.to_owned(), tag: tag.to_owned() });
            }
        }
        if name.is_empty() {
            return Err(invalid());
        }
        if name.len() > 255 {
            return Err(Error::TooLong(s.to_owned()));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DEFAULT_REGISTRY.to_owned()
        } else {
            registry
        };
        if !valid_registry(&registry) || !path.split('/').all(valid_component) {
            return Err(invalid());
        }
        let repository =
            if registry == DEFAULT_REGISTRY && !path.contains('/') { format!("library/{path}") } else { path };
        Ok(Reference { registry, repository, tag: tag.map(str::to_owned), digest })
    }

    /// `registry/repository` without tag or digest: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short name docker shows: `busybox`, `team/app`, `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            self.repository.strip_prefix("library/").unwrap_or(&self.repository).to_owned()
        } else {
            self.name()
        }
    }

    /// The short form with tag/digest: `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// The same reference with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference { tag: Some(tag.to_owned()), digest: None, ..self.clone() }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_registry(host: &str) -> bool {
    let (host, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    host_ok && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()))
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|s| s == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        Reference::parse(s).map(|r| r.to_string()).unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(full("team/app"), "docker.io/team/app:latest");
        assert_eq!(full("index.docker.io/library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("localhost:5000/app:v1"), "localhost:5000/app:v1");
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("ghcr.io/org/sub/app:1.0-rc.1"), "ghcr.io/org/sub/app:1.0-rc.1");
        assert_eq!(full("127.0.0.1:5000/a__b/c-d.e"), "127.0.0.1:5000/a__b/c-d.e:latest");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(full(&format!("busybox@{d}")), format!("docker.io/library/busybox@{d}"));
    }

    #[test]
    fn familiar_forms() {
        let r = Reference::parse("docker.io/library/busybox").ok();
        assert_eq!(r.as_ref().map(Reference::familiar).as_deref(), Some("busybox:latest"));
        let r = Reference::parse("localhost:5000/app:1").ok();
        assert_eq!(r.map(|r| r.familiar()).as_deref(), Some("localhost:5000/app:1"));
    }

    #[test]
    fn rejects_what_docker_rejects() {
        for bad in
            ["", "Busybox", "busybox:", "busybox:-x", "a//b", "app/", "-app", "a..b", "busybox@sha256:12", ":tag"]
        {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be invalid");
        }
        assert!(Reference::parse(&"a".repeat(256)).is_err());
    }
}
