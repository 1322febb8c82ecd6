//! `engine login` / `engine logout`: check credentials against the registry's `/v2/` endpoint, then save them
//! to (or remove them from) docker's `config.json` (see [`super::credentials`]). Nothing is saved when the
//! registry refuses them.

use super::auth::Credentials;
use super::client::Client;
use super::credentials::CredentialStore;
use super::{Error, RegistryOptions, Result, DOCKER_HUB};

/// The registry name as `login` takes it: `localhost:5000`, `https://index.docker.io/v1/`, nothing for Docker
/// Hub. Scheme and path are dropped, Docker Hub's aliases become `docker.io`.
pub fn normalise_registry(arg: Option<&str>) -> String {
    let Some(arg) = arg.map(str::trim).filter(|a| !a.is_empty()) else { return DOCKER_HUB.to_owned() };
    let host = arg.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_owned(),
        h => h.to_owned(),
    }
}

/// Verifies `credentials` against `registry` and saves them.
pub fn login(
    registry: &str,
    credentials: Credentials,
    options: &RegistryOptions,
    store: &CredentialStore,
) -> Result<()> {
    if credentials.username.is_empty() {
        return Err(Error::Login {
            registry: registry.to_owned(),
            message: "a user name is required (-u USER)".into(),
        });
    }
    let refused = |e: Error| match e {
        Error::Denied { .. } | Error::Unauthorized { .. } => Error::Login {
            registry: registry.to_owned(),
            message: "the registry refused the user name or password".into(),
        },
        e => e,
    };
    let mut client = Client::connect(registry, "", Vec::new(), Some(credentials.clone()), options).map_err(refused)?;
    client.verify_login().map_err(refused)?;
    store.set(registry, &credentials)
}

/// Removes the saved credentials of `registry`; an error if there were none.
pub fn logout(registry: &str, store: &CredentialStore) -> Result<()> {
    if store.remove(registry)? {
        Ok(())
    } else {
        Err(Error::NotLoggedIn(registry.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_arguments() {
        assert_eq!(normalise_registry(None), "docker.io");
        assert_eq!(normalise_registry(Some("https://index.docker.io/v1/")), "docker.io");
        assert_eq!(normalise_registry(Some("localhost:5000")), "localhost:5000");
        assert_eq!(normalise_registry(Some("http://127.0.0.1:5000/")), "127.0.0.1:5000");
    }
}
