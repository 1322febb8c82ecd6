//! Registry authentication: parsing `WWW-Authenticate` challenges and asking a token server for a Bearer token.
//!
//! A registry answers `401` to `GET /v2/` with either `Basic realm="…"` (send the credentials on every request)
//! or `Bearer realm="…",service="…",scope="…"` (the docker token protocol: `GET realm?service=…&scope=…`, with
//! the credentials as Basic auth if there are any, returns `{"token": …}` or `{"access_token": …}`). The client
//! asks for every scope it needs at once (`repository:app:pull,push` plus `repository:other:pull` for a
//! cross-repository mount), as docker does.

use base64::Engine as _;

use super::{Error, Result};

/// A user name and password (or an identity token used as the password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

impl Credentials {
    /// The `Authorization` header value for Basic auth.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// What a `401` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` header value; `None` for schemes we do not speak.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
        let params = parse_params(rest);
        let get = |k: &str| params.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
        if scheme.eq_ignore_ascii_case("basic") {
            Some(Challenge::Basic)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Some(Challenge::Bearer { realm: get("realm")?, service: get("service"), scope: get("scope") })
        } else {
            None
        }
    }
}

/// `key="value", key2=value2` with commas allowed inside quotes and `\"` escapes.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    out
}

/// The token server's answer.
#[derive(Debug, serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// Asks the token server of a Bearer challenge for a token covering `scopes`.
pub fn fetch_token(
    agent: &ureq::Agent,
    registry: &str,
    repository: &str,
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
    credentials: Option<&Credentials>,
) -> Result<String> {
    let mut request = agent.get(realm);
    if let Some(service) = service {
        request = request.query("service", service);
    }
    for scope in scopes {
        request = request.query("scope", scope);
    }
    if let Some(c) = credentials {
        request = request.header("Authorization", c.basic_header());
    }
    let mut response = request
        .call()
        .map_err(|e| Error::Connect { registry: registry.to_owned(), message: format!("token server {realm}: {e}") })?;
    let status = response.status().as_u16();
    match status {
        200 => {}
        401 | 403 => {
            return Err(if credentials.is_some() {
                Error::Denied {
                    registry: registry.to_owned(),
                    repository: repository.to_owned(),
                    detail: format!(" by the token server {realm} (HTTP {status}): the credentials were refused"),
                }
            } else {
                Error::Unauthorized { registry: registry.to_owned(), repository: repository.to_owned() }
            });
        }
        _ => {
            return Err(Error::Status {
                registry: registry.to_owned(),
                method: "GET".into(),
                path: realm.to_owned(),
                status,
                detail: " (token server)".into(),
            })
        }
    }
    let body =
        response.body_mut().with_config().limit(1 << 20).read_to_vec().map_err(|e| Error::Connect {
            registry: registry.to_owned(),
            message: format!("token server {realm}: {e}"),
        })?;
    let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| Error::Protocol {
        registry: registry.to_owned(),
        what: "token response".into(),
        message: e.to_string(),
    })?;
    token.token.or(token.access_token).filter(|t| !t.is_empty()).ok_or_else(|| Error::Protocol {
        registry: registry.to_owned(),
        what: "token response".into(),
        message: "it has neither `token` nor `access_token`".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(Challenge::parse(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            Challenge::parse("bearer realm=http://x/token"),
            Some(Challenge::Bearer { realm: "http://x/token".into(), service: None, scope: None })
        );
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None, "a Bearer challenge needs a realm");
    }

    #[test]
    fn basic_header_and_redacted_debug() {
        let c = Credentials { username: "user".into(), password: "pass".into() };
        assert_eq!(c.basic_header(), "Basic dXNlcjpwYXNz");
        assert!(!format!("{c:?}").contains("pass\""));
    }
}
