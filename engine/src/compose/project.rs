//! A loaded compose project bound to an engine ([`Backend`]): the containers, networks and volumes that belong to it
//! (found by docker compose's `com.docker.compose.*` labels, so `docker compose` users see the same model),
//! their names (`PROJECT-SERVICE-N`, `PROJECT_default`, `PROJECT_NAME`), and the translation of a service into
//! the engine's `create` options. The verbs (`up`, `down`, `run`, …) build on this.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::backend::{Backend, ContainerInfo};
use super::model::{Project, Service, VolumeKind};
use crate::container::create::CreateOptions;

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_IMAGE: &str = "com.docker.compose.image";
pub const LABEL_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const LABEL_DEPENDS_ON: &str = "com.docker.compose.depends_on";
pub const LABEL_VERSION: &str = "com.docker.compose.version";
pub const LABEL_NETWORK: &str = "com.docker.compose.network";
pub const LABEL_VOLUME: &str = "com.docker.compose.volume";

/// The compose version our labels claim: docker compose v2's scheme, implemented by Drydock.
pub const COMPOSE_VERSION: &str = "2.29.0";

/// Errors of compose operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such service: {0}")]
    NoSuchService(String),
    #[error("service {service}: {message}")]
    Service { service: String, message: String },
    #[error(
        "network {name} declared as external, but could not be found: create it with `engine network create {name}`"
    )]
    ExternalNetwork { name: String },
    #[error(
        "volume {name} declared as external, but could not be found: create it with `engine volume create {name}`"
    )]
    ExternalVolume { name: String },
    #[error("dependency failed to start: container {container} {reason}")]
    Dependency { container: String, reason: String },
    #[error("service {0} has no container: start the project with `compose up` first")]
    NotRunning(String),
    #[error(transparent)]
    Container(#[from] crate::container::Error),
    #[error(transparent)]
    Network(#[from] crate::network::Error),
    #[error(transparent)]
    Volume(#[from] crate::volume::Error),
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Root(#[from] crate::root::Error),
    /// From the Engine API server (compose over the API).
    #[error(transparent)]
    Api(#[from] crate::client::Error),
    #[error(transparent)]
    Build(#[from] crate::build::Error),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// docker's exit code for this error (the container's own for `run`, else 125… compose uses 1 for its own
    /// failures; we keep the engine's convention of 125 for engine errors).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Container(e) => e.exit_code(),
            _ => 1,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// One step `up`/`down` report, printed by the CLI as docker compose does (` ✔ Container app-web-1  Started`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// `Network`, `Volume`, `Container`, `Image`.
    pub kind: &'static str,
    pub name: String,
    /// `Creating`, `Created`, `Starting`, `Started`, `Running`, `Recreate`, `Stopping`, `Stopped`, `Removing`,
    /// `Removed`, `Waiting`, `Healthy`, `Exited`, `Pulling`, `Pulled`, `Building`, `Built`.
    pub action: &'static str,
}

/// A project with the engine it acts on.
pub struct Bound<'a> {
    pub project: &'a Project,
    pub backend: &'a dyn Backend,
}

impl<'a> Bound<'a> {
    pub fn new(project: &'a Project, backend: &'a dyn Backend) -> Bound<'a> {
        Bound { project, backend }
    }

    pub fn service(&self, name: &str) -> Result<&'a Service> {
        self.project.services.get(name).ok_or_else(|| Error::NoSuchService(name.to_string()))
    }

    /// Every container of the project (including one-off `run` containers), oldest first.
    pub fn all_containers(&self) -> Result<Vec<ContainerInfo>> {
        let mut out = self.backend.project_containers(&self.project.name)?;
        out.retain(|c| c.label(LABEL_PROJECT) == Some(self.project.name.as_str()));
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// The service's regular (not one-off) containers ordered by their number.
    pub fn service_containers(&self, service: &str) -> Result<Vec<ContainerInfo>> {
        let mut out: Vec<ContainerInfo> = self
            .all_containers()?
            .into_iter()
            .filter(|c| c.label(LABEL_SERVICE) == Some(service) && c.label(LABEL_ONEOFF) != Some("True"))
            .collect();
        out.sort_by_key(number_of);
        Ok(out)
    }

    /// Containers of services that are no longer in the files (docker compose's "orphans").
    pub fn orphans(&self) -> Result<Vec<ContainerInfo>> {
        Ok(self
            .all_containers()?
            .into_iter()
            .filter(|c| {
                c.label(LABEL_ONEOFF) != Some("True")
                    && c.label(LABEL_SERVICE).is_none_or(|s| {
                        !self.project.services.contains_key(s) && !self.project.disabled_services.iter().any(|d| d == s)
                    })
            })
            .collect())
    }

    /// `PROJECT-SERVICE-N`, or the service's `container_name`.
    pub fn container_name(&self, service: &Service, number: u32) -> String {
        match &service.container_name {
            Some(name) => name.clone(),
            None => format!("{}-{}-{number}", self.project.name, service.name),
        }
    }

    /// The image a service runs: its `image`, or `PROJECT-SERVICE` for a build-only service (compose v2's name).
    pub fn image_name(&self, service: &Service) -> String {
        match &service.image {
            Some(image) => image.clone(),
            None => format!("{}-{}", self.project.name, service.name),
        }
    }

    /// Engine-level name of a network key of the project.
    pub fn network_name(&self, key: &str) -> String {
        self.project.networks.get(key).map(|n| n.name.clone()).unwrap_or_else(|| format!("{}_{key}", self.project.name))
    }

    /// Engine-level name of a volume key of the project.
    pub fn volume_name(&self, key: &str) -> String {
        self.project.volumes.get(key).map(|v| v.name.clone()).unwrap_or_else(|| format!("{}_{key}", self.project.name))
    }

    /// The hash of everything in a service's configuration that shapes its containers: when it changes, `up`
    /// recreates them. Computed from the resolved tree (so any key counts, not just those the model reads),
    /// minus the keys that only affect scaling or building.
    pub fn config_hash(&self, service: &Service) -> String {
        let mut json = self
            .project
            .resolved
            .as_ref()
            .and_then(|t| t.get("services"))
            .and_then(|s| s.get(&service.name))
            .map(|n| n.to_json())
            .unwrap_or(serde_json::Value::Null);
        if let Some(map) = json.as_object_mut() {
            for key in ["scale", "build", "pull_policy", "profiles"] {
                map.remove(key);
            }
            if let Some(deploy) = map.get_mut("deploy").and_then(|d| d.as_object_mut()) {
                deploy.remove("replicas");
            }
        }
        let bytes = serde_json::to_vec(&sort_keys(json)).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    /// The `create` options for container `number` of `service`; `image_id` is recorded for change detection.
    pub fn create_options(&self, service: &Service, number: u32, image_id: &str) -> Result<CreateOptions> {
        let mut labels: BTreeMap<String, String> = service.labels.clone();
        labels.insert(LABEL_PROJECT.into(), self.project.name.clone());
        labels.insert(LABEL_SERVICE.into(), service.name.clone());
        labels.insert(LABEL_NUMBER.into(), number.to_string());
        labels.insert(LABEL_ONEOFF.into(), "False".into());
        labels.insert(LABEL_CONFIG_HASH.into(), self.config_hash(service));
        labels.insert(LABEL_IMAGE.into(), image_id.to_string());
        labels.insert(LABEL_WORKING_DIR.into(), self.project.working_dir.display().to_string());
        labels.insert(LABEL_VERSION.into(), COMPOSE_VERSION.into());
        let deps: Vec<String> = service
            .depends_on
            .iter()
            .map(|(name, d)| {
                let cond = match d.condition {
                    super::model::Condition::Started => "service_started",
                    super::model::Condition::Healthy => "service_healthy",
                    super::model::Condition::CompletedSuccessfully => "service_completed_successfully",
                };
                format!("{name}:{cond}:{}", d.restart)
            })
            .collect();
        labels.insert(LABEL_DEPENDS_ON.into(), deps.join(","));

        let (entrypoint, cmd) = match &service.entrypoint {
            // docker's API: an explicit entrypoint drops the image's CMD; the command (if any) follows it.
            Some(ep) if ep.is_empty() => (Some(String::new()), service.command.clone().unwrap_or_default()),
            Some(ep) => {
                let mut rest = ep[1..].to_vec();
                rest.extend(service.command.clone().unwrap_or_default());
                (Some(ep[0].clone()), rest)
            }
            None => (None, service.command.clone().unwrap_or_default()),
        };

        let mut binds = Vec::new();
        let mut tmpfs = service.tmpfs.clone();
        for v in &service.volumes {
            let mut mode: Vec<&str> = Vec::new();
            if v.read_only {
                mode.push("ro");
            }
            if v.no_copy {
                mode.push("nocopy");
            }
            let suffix = if mode.is_empty() { String::new() } else { format!(":{}", mode.join(",")) };
            match &v.kind {
                VolumeKind::Bind(source) => {
                    if !v.create_host_path && !source.exists() {
                        return Err(Error::Service {
                            service: service.name.clone(),
                            message: format!(
                                "bind source {} does not exist (create_host_path is false)",
                                source.display()
                            ),
                        });
                    }
                    binds.push(format!("{}:{}{suffix}", source.display(), v.target));
                }
                VolumeKind::Volume(Some(key)) => binds.push(format!("{}:{}{suffix}", self.volume_name(key), v.target)),
                VolumeKind::Volume(None) => binds.push(v.target.clone()),
                VolumeKind::Tmpfs { size } => tmpfs.push(match size {
                    Some(size) => format!("{}:size={size}", v.target),
                    None => v.target.clone(),
                }),
            }
        }

        let mut volumes_from = Vec::new();
        for from in &service.volumes_from {
            let (target, mode) = match from.rsplit_once(':') {
                Some((t, m @ ("ro" | "rw"))) => (t, Some(m)),
                _ => (from.as_str(), None),
            };
            let container = match target.strip_prefix("container:") {
                Some(name) => name.to_string(),
                None => {
                    let other = self.service_containers(target)?;
                    match other.first() {
                        Some(c) => c.name.clone(),
                        None => return Err(Error::NotRunning(target.to_string())),
                    }
                }
            };
            volumes_from.push(match mode {
                Some(m) => format!("{container}:{m}"),
                None => container,
            });
        }

        let (network, aliases, ip) = match &service.network_mode {
            Some(mode) => (Some(self.network_mode(mode)?), Vec::new(), None),
            None => match service.networks.iter().next() {
                Some((key, net)) => {
                    let mut aliases = vec![service.name.clone()];
                    aliases.extend(net.aliases.iter().cloned());
                    (Some(self.network_name(key)), aliases, net.ipv4_address.clone())
                }
                None => (None, Vec::new(), None),
            },
        };

        Ok(CreateOptions {
            image: self.image_name(service),
            cmd,
            name: Some(self.container_name(service, number)),
            env: service
                .environment
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect(),
            workdir: service.working_dir.clone(),
            user: service.user.clone(),
            entrypoint,
            binds,
            tmpfs,
            volumes_from,
            network,
            network_aliases: aliases,
            ip,
            publish: service.ports.iter().map(|p| p.to_publish_flag()).collect(),
            hostname: service.hostname.clone(),
            add_hosts: service.extra_hosts.clone(),
            dns: service.dns.clone(),
            dns_search: service.dns_search.clone(),
            dns_options: service.dns_opt.clone(),
            expose: service.expose.clone(),
            memory: service.memory.clone(),
            cpus: service.cpus,
            pids_limit: service.pids_limit,
            restart: service.restart.clone(),
            init: service.init,
            tty: service.tty,
            open_stdin: service.stdin_open,
            labels: labels.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            security_opt: service.security_opt.clone(),
            stop_signal: service.stop_signal.clone(),
            stop_timeout: service.stop_grace_period.map(|d| d.as_secs() as i64),
            healthcheck: service.healthcheck.as_ref().filter(|h| !h.disable).map(|h| {
                let ns = |d: Option<std::time::Duration>| d.map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64);
                crate::image::config::HealthConfig {
                    test: h.test.clone(),
                    interval: ns(h.interval),
                    timeout: ns(h.timeout),
                    start_period: ns(h.start_period),
                    start_interval: ns(h.start_interval),
                    retries: h.retries.map_or(0, i64::from),
                }
            }),
            no_healthcheck: service.healthcheck.as_ref().is_some_and(|h| h.disable),
            ..CreateOptions::default()
        })
    }

    /// Extra networks a service joins after the first (connected before the container starts).
    pub fn extra_networks(&self, service: &Service) -> Vec<(String, Vec<String>, Option<String>)> {
        if service.network_mode.is_some() {
            return Vec::new();
        }
        service
            .networks
            .iter()
            .skip(1)
            .map(|(key, net)| {
                let mut aliases = vec![service.name.clone()];
                aliases.extend(net.aliases.iter().cloned());
                (self.network_name(key), aliases, net.ipv4_address.clone())
            })
            .collect()
    }

    fn network_mode(&self, mode: &str) -> Result<String> {
        match mode.split_once(':') {
            Some(("service", name)) => {
                let containers = self.service_containers(name)?;
                match containers.first() {
                    Some(c) => Ok(format!("container:{}", c.name)),
                    None => Err(Error::NotRunning(name.to_string())),
                }
            }
            _ => Ok(mode.to_string()),
        }
    }
}

/// The container number label, 0 when missing.
pub fn number_of(c: &ContainerInfo) -> u32 {
    c.label(LABEL_NUMBER).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn sort_keys(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<String, serde_json::Value> = map.into_iter().map(|(k, v)| (k, sort_keys(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}
