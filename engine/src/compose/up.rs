//! `compose up`: make the running project match the files. In order: images (pull what is missing, build what
//! has a `build:` and no image yet or `--build`), networks and volumes (created once, labelled as compose does),
//! then each service in dependency order — wait for its `depends_on` conditions, then reconcile its containers:
//! unchanged ones are left running ("Running"), stopped ones started, changed ones (configuration hash or image)
//! recreated, and the count brought to the service's scale (extra containers removed from the highest number).
//!
//! Failure rolls back what this `up` created — containers, networks, volumes — so a bad port or a failed
//! dependency never leaves a half-started project behind. What existed before is left as it was.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::backend::{BuildRequest, ContainerInfo};
use super::model::{Condition, Service};
use super::order::{start_order, with_dependencies};
use super::project::{
    number_of, Bound, Error, Progress, Result, COMPOSE_VERSION, LABEL_CONFIG_HASH, LABEL_IMAGE, LABEL_NETWORK,
    LABEL_PROJECT, LABEL_VERSION, LABEL_VOLUME,
};
use crate::container::health::HealthOutcome;

/// `up` flags.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Services named on the command line (empty: all).
    pub services: Vec<String>,
    /// `--no-deps`: do not start the named services' dependencies.
    pub no_deps: bool,
    pub force_recreate: bool,
    pub no_recreate: bool,
    /// `--build`: build images before starting; `--no-build`: never build.
    pub build: bool,
    pub no_build: bool,
    /// `--scale SERVICE=N`.
    pub scale: BTreeMap<String, u32>,
    pub remove_orphans: bool,
    /// `--no-start`: create only.
    pub no_start: bool,
    /// How long to wait for a dependency to become healthy or complete.
    pub wait_timeout: Option<Duration>,
}

/// What `up` did, for `--abort-on-container-exit` and attaching.
#[derive(Debug, Default)]
pub struct UpOutcome {
    /// Containers of the selected services, in start order: (service, container id, container name).
    pub containers: Vec<(String, String, String)>,
}

/// Things created by this run, removed again if it fails.
#[derive(Default)]
struct Created {
    /// (ID, name)
    containers: Vec<(String, String)>,
    networks: Vec<String>,
    volumes: Vec<String>,
}

pub fn up(bound: &Bound, opts: &UpOptions, progress: &mut dyn FnMut(Progress)) -> Result<UpOutcome> {
    let project = bound.project;
    for name in opts.services.iter().chain(opts.scale.keys()) {
        bound.service(name)?;
    }
    let order = start_order(project)
        .map_err(|cycle| Error::Other(format!("dependency cycle detected: {}", cycle.join(" -> "))))?;
    let selected: Vec<String> = if opts.services.is_empty() {
        order.clone()
    } else if opts.no_deps {
        order.iter().filter(|s| opts.services.contains(s)).cloned().collect()
    } else {
        let wanted = with_dependencies(project, &opts.services);
        order.iter().filter(|s| wanted.contains(s)).cloned().collect()
    };

    let orphans = bound.orphans()?;
    if !orphans.is_empty() {
        if opts.remove_orphans {
            for c in &orphans {
                progress(Progress { kind: "Container", name: c.name.clone(), action: "Removing" });
                bound.backend.remove_container(&c.id, true, false)?;
                progress(Progress { kind: "Container", name: c.name.clone(), action: "Removed" });
            }
        } else {
            let names: Vec<&str> = orphans.iter().map(|c| c.name.as_str()).collect();
            progress(Progress {
                kind: "Warning",
                name: format!(
                    "Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
                    names.join(", ")
                ),
                action: "",
            });
        }
    }

    for name in &selected {
        ensure_image(bound, bound.service(name)?, opts, progress)?;
    }

    let mut created = Created::default();
    let result = converge(bound, opts, &selected, &mut created, progress);
    if result.is_err() {
        rollback(bound, &created, progress);
    }
    result
}

/// Makes sure the service's image is present: built (when it has `build:` and no image yet, or `opts.build`) or
/// pulled.
pub fn ensure_image(
    bound: &Bound,
    service: &Service,
    opts: &UpOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let image = bound.image_name(service);
    let present = bound.backend.image_id(&image)?.is_some();
    let service_error = |e: Error| Error::Service { service: service.name.clone(), message: e.to_string() };
    let policy = service.pull_policy.as_deref().unwrap_or("missing");
    let must_build = service.build.is_some()
        && !opts.no_build
        && (opts.build || policy == "build" || (!present && policy != "never"));
    if must_build {
        progress(Progress { kind: "Image", name: image.clone(), action: "Building" });
        let request =
            BuildRequest { service, image: &image, no_cache: false, pull: false, quiet: false, extra_args: &[] };
        bound.backend.build_image(&request).map_err(service_error)?;
        progress(Progress { kind: "Image", name: image.clone(), action: "Built" });
        return Ok(());
    }
    if present && policy != "always" {
        return Ok(());
    }
    if policy == "never" && !present {
        return Err(Error::Service {
            service: service.name.clone(),
            message: format!("image {image} not found and pull_policy is never"),
        });
    }
    if service.image.is_none() {
        return Err(Error::Service {
            service: service.name.clone(),
            message: format!("image {image} not found: build it with `compose build` or `compose up --build`"),
        });
    }
    progress(Progress { kind: "Image", name: image.clone(), action: "Pulling" });
    bound.backend.pull_image(&image, false).map_err(service_error)?;
    progress(Progress { kind: "Image", name: image, action: "Pulled" });
    Ok(())
}

fn converge(
    bound: &Bound,
    opts: &UpOptions,
    selected: &[String],
    created: &mut Created,
    progress: &mut dyn FnMut(Progress),
) -> Result<UpOutcome> {
    let project = bound.project;
    ensure_networks(bound, selected, created, progress)?;
    ensure_volumes(bound, selected, created, progress)?;
    let mut outcome = UpOutcome::default();
    for name in selected {
        let service = bound.service(name)?;
        if !opts.no_start {
            for (dep, d) in &service.depends_on {
                if selected.contains(dep) || project.services.contains_key(dep) {
                    wait_for(bound, dep, d.condition, d.required, opts.wait_timeout, progress)?;
                }
            }
        }
        let scale = opts.scale.get(name).copied().unwrap_or(service.replicas);
        let image_id = image_id_of(bound, service)?;
        let hash = bound.config_hash(service);
        let existing = bound.service_containers(name)?;
        let mut numbers_in_use = Vec::new();
        for c in &existing {
            let number = number_of(c);
            if number == 0 || number > scale {
                progress(Progress { kind: "Container", name: c.name.clone(), action: "Stopping" });
                bound.backend.stop_container(&c.id, service.stop_grace_period.map(|d| d.as_secs() as i64))?;
                progress(Progress { kind: "Container", name: c.name.clone(), action: "Removing" });
                bound.backend.remove_container(&c.id, true, false)?;
                progress(Progress { kind: "Container", name: c.name.clone(), action: "Removed" });
                continue;
            }
            numbers_in_use.push(number);
            let changed =
                c.label(LABEL_CONFIG_HASH) != Some(hash.as_str()) || c.label(LABEL_IMAGE) != Some(image_id.as_str());
            if (changed || opts.force_recreate) && !opts.no_recreate {
                progress(Progress { kind: "Container", name: c.name.clone(), action: "Recreate" });
                bound.backend.stop_container(&c.id, service.stop_grace_period.map(|d| d.as_secs() as i64))?;
                bound.backend.remove_container(&c.id, true, false)?;
                let id = create_container(bound, service, number, &image_id, created, progress)?;
                progress(Progress { kind: "Container", name: c.name.clone(), action: "Recreated" });
                if !opts.no_start {
                    start_container(bound, &id, &c.name, progress)?;
                }
                outcome.containers.push((name.clone(), id, c.name.clone()));
            } else {
                if c.is_running() {
                    progress(Progress { kind: "Container", name: c.name.clone(), action: "Running" });
                } else if !opts.no_start {
                    start_container(bound, &c.id, &c.name, progress)?;
                }
                outcome.containers.push((name.clone(), c.id.clone(), c.name.clone()));
            }
        }
        for number in 1..=scale {
            if numbers_in_use.contains(&number) {
                continue;
            }
            if service.container_name.is_some() && scale > 1 {
                return Err(Error::Service {
                    service: name.clone(),
                    message: "container_name is set, so the service cannot be scaled beyond 1 container".into(),
                });
            }
            let cname = bound.container_name(service, number);
            let id = create_container(bound, service, number, &image_id, created, progress)?;
            if !opts.no_start {
                start_container(bound, &id, &cname, progress)?;
            }
            outcome.containers.push((name.clone(), id, cname));
        }
    }
    Ok(outcome)
}

fn create_container(
    bound: &Bound,
    service: &Service,
    number: u32,
    image_id: &str,
    created: &mut Created,
    progress: &mut dyn FnMut(Progress),
) -> Result<String> {
    let name = bound.container_name(service, number);
    progress(Progress { kind: "Container", name: name.clone(), action: "Creating" });
    let opts = bound.create_options(service, number, image_id)?;
    let id = bound.backend.create_container(&opts)?;
    created.containers.push((id.clone(), name.clone()));
    for (network, aliases, ip) in bound.extra_networks(service) {
        let ip = parse_ip(service, ip.as_deref())?;
        bound.backend.connect_network(&id, &network, aliases, ip)?;
    }
    progress(Progress { kind: "Container", name, action: "Created" });
    Ok(id)
}

/// The ID of the image a service runs (present: `ensure_image` ran before).
pub fn image_id_of(bound: &Bound, service: &Service) -> Result<String> {
    let name = bound.image_name(service);
    bound.backend.image_id(&name)?.ok_or(Error::Image(crate::image::Error::NotFound(name)))
}

fn parse_ip(service: &Service, ip: Option<&str>) -> Result<Option<Ipv4Addr>> {
    ip.map(|s| {
        s.parse().map_err(|_| Error::Service {
            service: service.name.clone(),
            message: format!("invalid ipv4_address {s:?}"),
        })
    })
    .transpose()
}

fn start_container(bound: &Bound, id: &str, name: &str, progress: &mut dyn FnMut(Progress)) -> Result<()> {
    progress(Progress { kind: "Container", name: name.to_string(), action: "Starting" });
    bound.backend.start_container(id)?;
    progress(Progress { kind: "Container", name: name.to_string(), action: "Started" });
    Ok(())
}

/// Waits until `service`'s containers meet `condition` (`service_started` is met once `up` started them).
fn wait_for(
    bound: &Bound,
    service: &str,
    condition: Condition,
    required: bool,
    timeout: Option<Duration>,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let containers = bound.service_containers(service)?;
    if containers.is_empty() {
        if required {
            return Err(Error::Dependency { container: service.to_string(), reason: "has no container".into() });
        }
        return Ok(());
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    for c in containers {
        match condition {
            Condition::Started => {}
            Condition::Healthy => {
                progress(Progress { kind: "Container", name: c.name.clone(), action: "Waiting" });
                wait_healthy(bound, &c, deadline, progress)?;
            }
            Condition::CompletedSuccessfully => {
                progress(Progress { kind: "Container", name: c.name.clone(), action: "Waiting" });
                loop {
                    let state = bound.backend.inspect_container(&c.id)?;
                    if !state.is_running() && state.status != crate::container::Status::Created {
                        if state.exit_code == 0 {
                            progress(Progress { kind: "Container", name: c.name.clone(), action: "Exited" });
                            break;
                        }
                        return Err(Error::Dependency {
                            container: c.name.clone(),
                            reason: format!("didn't complete successfully: exit {}", state.exit_code),
                        });
                    }
                    if deadline.is_some_and(|d| Instant::now() > d) {
                        return Err(Error::Dependency {
                            container: c.name.clone(),
                            reason: "did not complete in time".into(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    Ok(())
}

/// Waits for a container's healthcheck to pass (docker compose's `service_healthy`).
fn wait_healthy(
    bound: &Bound,
    c: &ContainerInfo,
    deadline: Option<Instant>,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let reason = match bound.backend.wait_healthy(&c.id, left)? {
        HealthOutcome::Healthy => {
            progress(Progress { kind: "Container", name: c.name.clone(), action: "Healthy" });
            return Ok(());
        }
        HealthOutcome::Unhealthy => "is unhealthy".to_string(),
        HealthOutcome::Exited(code) => format!("exited ({code})"),
        HealthOutcome::NoHealthcheck => "has no healthcheck configured (service_healthy needs one)".to_string(),
        HealthOutcome::TimedOut(_) => "did not become healthy in time".to_string(),
    };
    Err(Error::Dependency { container: c.name.clone(), reason })
}

/// Creates the project networks and volumes `services` use that do not exist yet, as `up` would, for commands that
/// start a container without `up` (`run --no-deps`, or a service without dependencies). On failure, what this
/// call created is removed again.
pub fn ensure_resources(bound: &Bound, services: &[String], progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let mut created = Created::default();
    let result = ensure_networks(bound, services, &mut created, progress)
        .and_then(|()| ensure_volumes(bound, services, &mut created, progress));
    if result.is_err() {
        rollback(bound, &created, progress);
    }
    result
}

fn ensure_networks(
    bound: &Bound,
    selected: &[String],
    created: &mut Created,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let used: Vec<&String> = selected
        .iter()
        .filter_map(|s| bound.project.services.get(s))
        .filter(|s| s.network_mode.is_none())
        .flat_map(|s| s.networks.keys())
        .collect();
    for (key, config) in &bound.project.networks {
        if !used.contains(&key) {
            continue;
        }
        if bound.backend.network_labels(&config.name)?.is_some() {
            continue;
        }
        if config.external {
            return Err(Error::ExternalNetwork { name: config.name.clone() });
        }
        progress(Progress { kind: "Network", name: config.name.clone(), action: "Creating" });
        let mut labels = config.labels.clone();
        labels.insert(LABEL_PROJECT.into(), bound.project.name.clone());
        labels.insert(LABEL_NETWORK.into(), key.clone());
        labels.insert(LABEL_VERSION.into(), COMPOSE_VERSION.into());
        bound.backend.create_network(&crate::network::CreateOptions {
            name: config.name.clone(),
            driver: Some("bridge".into()),
            subnet: config.subnet.clone(),
            gateway: config.gateway.clone(),
            internal: config.internal,
            labels,
            options: BTreeMap::new(),
        })?;
        created.networks.push(config.name.clone());
        progress(Progress { kind: "Network", name: config.name.clone(), action: "Created" });
    }
    Ok(())
}

fn ensure_volumes(
    bound: &Bound,
    selected: &[String],
    created: &mut Created,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let used: Vec<String> = selected
        .iter()
        .filter_map(|s| bound.project.services.get(s))
        .flat_map(|s| s.volumes.iter())
        .filter_map(|v| match &v.kind {
            super::model::VolumeKind::Volume(Some(key)) => Some(key.clone()),
            _ => None,
        })
        .collect();
    for (key, config) in &bound.project.volumes {
        if !used.contains(key) {
            continue;
        }
        if bound.backend.volume_exists(&config.name)? {
            continue;
        }
        if config.external {
            return Err(Error::ExternalVolume { name: config.name.clone() });
        }
        progress(Progress { kind: "Volume", name: config.name.clone(), action: "Creating" });
        let mut labels = config.labels.clone();
        labels.insert(LABEL_PROJECT.into(), bound.project.name.clone());
        labels.insert(LABEL_VOLUME.into(), key.clone());
        labels.insert(LABEL_VERSION.into(), COMPOSE_VERSION.into());
        bound.backend.create_volume(&config.name, labels)?;
        created.volumes.push(config.name.clone());
        progress(Progress { kind: "Volume", name: config.name.clone(), action: "Created" });
    }
    Ok(())
}

/// Undoes what a failed `up` created; errors here are reported as progress warnings, the original error wins.
fn rollback(bound: &Bound, created: &Created, progress: &mut dyn FnMut(Progress)) {
    for (id, name) in created.containers.iter().rev() {
        progress(Progress { kind: "Container", name: name.clone(), action: "Removing" });
        match bound.backend.remove_container(id, true, true) {
            Ok(()) => progress(Progress { kind: "Container", name: name.clone(), action: "Removed" }),
            Err(e) => {
                progress(Progress { kind: "Warning", name: format!("cannot remove container {name}: {e}"), action: "" })
            }
        }
    }
    for name in created.networks.iter().rev() {
        progress(Progress { kind: "Network", name: name.clone(), action: "Removing" });
        match bound.backend.remove_network(name) {
            Ok(()) => progress(Progress { kind: "Network", name: name.clone(), action: "Removed" }),
            Err(e) => {
                progress(Progress { kind: "Warning", name: format!("cannot remove network {name}: {e}"), action: "" })
            }
        }
    }
    for name in created.volumes.iter().rev() {
        match bound.backend.remove_volume(name, true) {
            Ok(()) => progress(Progress { kind: "Volume", name: name.clone(), action: "Removed" }),
            Err(e) => {
                progress(Progress { kind: "Warning", name: format!("cannot remove volume {name}: {e}"), action: "" })
            }
        }
    }
}
