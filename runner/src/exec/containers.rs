//! The containers of one docker-executor job: the primary (the first image, kept alive by a sleep loop under
//! an init process while steps are exec'd into it) and the service containers (the other images), which join
//! the primary's network namespace — `--network container:<primary>` — so they are reachable on `localhost`,
//! and under their `name` through the primary's `/etc/hosts`. Everything is removed when the [`JobContainers`]
//! is dropped (a failed job, an error, Ctrl-C), unless the user asked to keep it.

use config_schema::spec::DockerImageSpec;
use engine::container::create::CreateOptions;
use engine::container::ContainerStore;
use engine::image::ImageStore;
use engine::reference::Reference;
use engine::registry::auth::Credentials;
use engine::registry::credentials::CredentialStore;
use engine::registry::{PullOptions, RegistryOptions};

use super::error::ExecError;

/// What keeps the primary container alive: steps run beside it through exec.
const KEEP_ALIVE: &str = "while :; do sleep 86400; done";

/// The containers of a job; removed on drop unless `keep`.
pub struct JobContainers<'a> {
    store: &'a ContainerStore,
    /// Primary first.
    pub ids: Vec<String>,
    pub keep: bool,
}

impl Drop for JobContainers<'_> {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Services first: they live in the primary's network namespace.
        for id in self.ids.iter().rev() {
            let _ = engine::container::remove::remove(self.store, id, true, true);
        }
    }
}

impl<'a> JobContainers<'a> {
    pub fn primary(&self) -> &str {
        self.ids.first().map(String::as_str).unwrap_or_default()
    }
}

/// `$NAME` and `${NAME}` in `text` replaced from `vars` (later entries win); unknown names become empty, as a
/// shell would expand them.
pub fn expand_vars(text: &str, vars: &[(String, String)]) -> String {
    let lookup = |name: &str| vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(braced) = after.strip_prefix('{') {
            if let Some(end) = braced.find('}') {
                out.push_str(&lookup(&braced[..end]));
                rest = &braced[end + 1..];
                continue;
            }
        }
        let len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        if len == 0 {
            out.push('$');
        } else {
            out.push_str(&lookup(&after[..len]));
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// Pulls `spec.image` unless the store has it, with the entry's `auth` (its `$VARS` expanded from `vars`) for
/// that pull only, else `engine login`'s credentials; `on_pull` is told before a pull starts.
pub fn ensure_image(
    images: &ImageStore,
    spec: &DockerImageSpec,
    vars: &[(String, String)],
    on_pull: &mut dyn FnMut(&str),
) -> Result<(), ExecError> {
    let image = spec.image.as_str();
    match images.resolve(image) {
        Ok(_) => return Ok(()),
        Err(engine::image::Error::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    on_pull(image);
    let pull_err = |message: String| ExecError::Pull { image: image.to_owned(), message };
    let reference = Reference::parse(image).map_err(|e| pull_err(e.to_string()))?;
    // `auth:` goes to a throwaway docker config for this pull: the user's own file is not touched.
    let auth_dir;
    let credentials = match &spec.auth {
        Some(auth) => {
            auth_dir =
                tempfile::tempdir().map_err(|e| pull_err(format!("cannot create a temporary directory: {e}")))?;
            let store = CredentialStore::at(auth_dir.path().join("config.json"));
            let credentials = Credentials {
                username: expand_vars(&auth.username, vars),
                password: expand_vars(&auth.password, vars),
            };
            store.set(&reference.registry, &credentials).map_err(|e| pull_err(e.to_string()))?;
            store
        }
        None => CredentialStore::default_location(),
    };
    let options =
        PullOptions { platform: Default::default(), registry: RegistryOptions::from_flags_and_env(&[]), credentials };
    engine::registry::pull(images, &reference, &options, &mut |_| {}).map_err(|e| pull_err(e.to_string()))?;
    Ok(())
}

/// A list as written (`["a", "b"]`), or one string split on whitespace.
fn words(v: &[String]) -> Vec<String> {
    match v {
        [one] => one.split_whitespace().map(str::to_owned).collect(),
        _ => v.to_vec(),
    }
}

/// Docker's entrypoint and command for an image entry: the entrypoint's first word replaces the image's
/// ENTRYPOINT, the rest of it and `command` become the arguments.
fn entrypoint_and_cmd(spec: &DockerImageSpec) -> (Option<String>, Vec<String>) {
    let entry = words(&spec.entrypoint);
    let command = words(&spec.command);
    match entry.split_first() {
        Some((first, rest)) => (Some(first.clone()), rest.iter().cloned().chain(command).collect()),
        None => (None, command),
    }
}

/// Creates and starts the primary and service containers of a job; `primary_binds` (`HOST:CONTAINER[:ro]`)
/// are mounted into the primary only (the remote docker socket and client).
pub fn start<'a>(
    store: &'a ContainerStore,
    images: &ImageStore,
    job: &str,
    docker: &[DockerImageSpec],
    primary_binds: Vec<String>,
    keep: bool,
) -> Result<JobContainers<'a>, ExecError> {
    let mut containers = JobContainers { store, ids: Vec::new(), keep };
    let Some((primary, services)) = docker.split_first() else {
        return Err(ExecError::UnsupportedExecutor { job: job.to_owned() });
    };
    let label = format!("drydock.job={job}");
    let env = |s: &DockerImageSpec| s.environment.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
    // Service names resolve to the shared loopback from the primary (and so from every service).
    let add_hosts = services.iter().filter_map(|s| s.name.as_ref()).map(|n| format!("{n}:127.0.0.1")).collect();
    let opts = CreateOptions {
        image: primary.image.clone(),
        // CircleCI replaces the primary's command: it only has to stay up while steps are exec'd into it.
        entrypoint: Some(String::new()),
        cmd: vec!["/bin/sh".into(), "-c".into(), KEEP_ALIVE.into()],
        init: true,
        env: env(primary),
        user: primary.user.clone(),
        labels: vec![label.clone(), "drydock.role=primary".into()],
        add_hosts,
        binds: primary_binds,
        ..CreateOptions::default()
    };
    let fail = |role: &'static str, image: &str| {
        let image = image.to_owned();
        move |source| ExecError::Container { role, image, source }
    };
    let c = engine::container::create::create(store, images, &opts).map_err(fail("primary", &primary.image))?;
    containers.ids.push(c.id.clone());
    engine::container::start::start(store, &c.id).map_err(fail("primary", &primary.image))?;
    let network = format!("container:{}", c.id);
    for s in services {
        let (entrypoint, cmd) = entrypoint_and_cmd(s);
        let opts = CreateOptions {
            image: s.image.clone(),
            entrypoint,
            cmd,
            env: env(s),
            user: s.user.clone(),
            network: Some(network.clone()),
            labels: vec![label.clone(), "drydock.role=service".into()],
            ..CreateOptions::default()
        };
        let sc = engine::container::create::create(store, images, &opts).map_err(fail("service", &s.image))?;
        containers.ids.push(sc.id.clone());
        engine::container::start::start(store, &sc.id).map_err(fail("service", &s.image))?;
    }
    Ok(containers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_values_expand_variables() {
        let vars = [("USER".to_owned(), "bot".to_owned()), ("PASS".to_owned(), "p4ss".to_owned())];
        assert_eq!(expand_vars("$USER", &vars), "bot");
        assert_eq!(expand_vars("${PASS}-x $NOPE $ end$", &vars), "p4ss-x  $ end$");
        assert_eq!(expand_vars("plain", &vars), "plain");
    }

    #[test]
    fn entrypoint_and_command_follow_docker() {
        let s = DockerImageSpec {
            image: "busybox".into(),
            entrypoint: vec!["httpd -f".into()],
            command: vec!["-p".into(), "8000".into()],
            ..DockerImageSpec::default()
        };
        assert_eq!(entrypoint_and_cmd(&s), (Some("httpd".into()), vec!["-f".into(), "-p".into(), "8000".into()]));
        let s = DockerImageSpec { image: "x".into(), command: vec!["redis-server --port 7000".into()], ..s };
        let s = DockerImageSpec { entrypoint: vec![], ..s };
        assert_eq!(entrypoint_and_cmd(&s), (None, vec!["redis-server".into(), "--port".into(), "7000".into()]));
    }
}
