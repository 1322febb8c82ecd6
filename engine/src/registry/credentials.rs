//! Registry credentials in docker's `config.json` format, so `engine login` and `docker login` (and podman,
//! skopeo) share one file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
//!
//! Only `auths.<registry>.auth` (base64 `user:password`) is read and written; every other key of the file
//! (`credsStore`, `credHelpers`, `HttpHeaders`, other registries) is kept as it was. Docker Hub is stored under
//! docker's key `https://index.docker.io/v1/`; lookups also accept the `https://host`, `http://host` and
//! `host/v1/` spellings other tools write. Credential helpers are not run (see `docs/registry.md`). The file is
//! written atomically with mode 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::auth::Credentials;
use super::{Error, Result, DOCKER_HUB, DOCKER_HUB_AUTH_KEY};

/// The docker configuration file in use.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    path: PathBuf,
}

impl CredentialStore {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_location() -> CredentialStore {
        let dir = match std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => {
                std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root")).join(".docker")
            }
        };
        CredentialStore { path: dir.join("config.json") }
    }

    pub fn at(path: PathBuf) -> CredentialStore {
        CredentialStore { path }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::Credentials { path: self.path.display().to_string(), message: message.into() }
    }

    fn read(&self) -> Result<Map<String, Value>> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
            Err(e) => return Err(self.err(e.to_string())),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(self.err("not a JSON object (fix or remove the file)")),
            Err(e) => Err(self.err(format!("{e} (fix or remove the file)"))),
        }
    }

    fn write(&self, config: &Map<String, Value>) -> Result<()> {
        let dir = self.path.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        fs::create_dir_all(&dir).map_err(|e| self.err(format!("cannot create {}: {e}", dir.display())))?;
        let mut staged = tempfile::NamedTempFile::new_in(&dir).map_err(|e| self.err(e.to_string()))?;
        staged.as_file().set_permissions(fs::Permissions::from_mode(0o600)).map_err(|e| self.err(e.to_string()))?;
        let json = serde_json::to_vec_pretty(config).map_err(|e| self.err(e.to_string()))?;
        staged.write_all(&json).and_then(|_| staged.write_all(b"\n")).map_err(|e| self.err(e.to_string()))?;
        staged.as_file().sync_all().map_err(|e| self.err(e.to_string()))?;
        staged.persist(&self.path).map_err(|e| self.err(e.error.to_string()))?;
        Ok(())
    }

    /// The credentials stored for `registry` (a reference's registry part, e.g. `docker.io`, `localhost:5000`).
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        let config = self.read()?;
        let Some(Value::Object(auths)) = config.get("auths") else { return Ok(None) };
        for (key, entry) in auths {
            if !key_matches(key, registry) {
                continue;
            }
            let Some(auth) = entry.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) else { continue };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| self.err(format!("auths.{key}.auth is not base64: {e}")))?;
            let decoded = String::from_utf8(decoded).map_err(|_| self.err(format!("auths.{key}.auth is not UTF-8")))?;
            let (username, password) =
                decoded.split_once(':').ok_or_else(|| self.err(format!("auths.{key}.auth is not user:password")))?;
            return Ok(Some(Credentials {
                username: username.to_owned(),
                password: password.trim_end_matches('\n').to_owned(),
            }));
        }
        Ok(None)
    }

    /// Saves credentials for `registry`, replacing any other spelling of its key.
    pub fn set(&self, registry: &str, credentials: &Credentials) -> Result<()> {
        let mut config = self.read()?;
        let auths = config.entry("auths").or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(auths) = auths else {
            return Err(self.err("`auths` is not an object (fix or remove the file)"));
        };
        auths.retain(|k, _| !key_matches(k, registry));
        let raw = format!("{}:{}", credentials.username, credentials.password);
        let mut entry = Map::new();
        entry.insert("auth".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(raw)));
        auths.insert(storage_key(registry), Value::Object(entry));
        self.write(&config)
    }

    /// Removes the credentials of `registry`; false if there were none.
    pub fn remove(&self, registry: &str) -> Result<bool> {
        let mut config = self.read()?;
        let Some(Value::Object(auths)) = config.get_mut("auths") else { return Ok(false) };
        let before = auths.len();
        auths.retain(|k, _| !key_matches(k, registry));
        if auths.len() == before {
            return Ok(false);
        }
        self.write(&config)?;
        Ok(true)
    }
}

/// The key docker writes for `registry`.
fn storage_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

/// Whether a `config.json` key names `registry` (docker normalises keys the same way: scheme and path dropped).
fn key_matches(key: &str, registry: &str) -> bool {
    let host = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    if registry == DOCKER_HUB {
        matches!(host, "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com")
    } else {
        host == registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_other_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config.json");
        fs::write(&path, r#"{"auths":{"ghcr.io":{"auth":"eDp5"}},"credHelpers":{"gcr.io":"gcloud"}}"#).expect("write");
        let store = CredentialStore::at(path.clone());
        let c = Credentials { username: "me".into(), password: "p:w".into() };
        store.set("localhost:5000", &c).expect("set");
        store.set("docker.io", &c).expect("set hub");
        assert_eq!(store.get("localhost:5000").expect("get"), Some(c.clone()));
        assert_eq!(store.get("docker.io").expect("get"), Some(c.clone()));
        assert_eq!(store.get("ghcr.io").expect("get").map(|c| c.username), Some("x".into()));
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.contains("credHelpers") && text.contains(DOCKER_HUB_AUTH_KEY), "{text}");
        assert_eq!(fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        assert!(store.remove("localhost:5000").expect("rm"));
        assert!(!store.remove("localhost:5000").expect("rm again"));
        assert_eq!(store.get("localhost:5000").expect("get"), None);
    }

    #[test]
    fn other_spellings_match() {
        assert!(key_matches("https://index.docker.io/v1/", "docker.io"));
        assert!(key_matches("http://localhost:5000", "localhost:5000"));
        assert!(key_matches("https://reg.lan:5000/v1/", "reg.lan:5000"));
        assert!(!key_matches("reg.lan", "reg.lan:5000"));
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config.json");
        fs::write(&path, "{not json").expect("write");
        let e = CredentialStore::at(path).get("x").expect_err("corrupt");
        assert!(e.to_string().contains("fix or remove the file"), "{e}");
    }
}
