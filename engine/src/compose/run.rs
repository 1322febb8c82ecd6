//! `compose run SERVICE [CMD…]` and `compose exec SERVICE CMD…`.
//!
//! `run` starts the service's dependencies (unless `--no-deps`), then a one-off container named
//! `PROJECT-SERVICE-run-XXXXXXXXXXXX` with the service's configuration, the given command, no published ports
//! (unless `--service-ports`), and returns the command's exit code — the seeds' `docker-compose run app
//! python test.py` flow. `exec` runs a command in a running container of the service.

use rand::RngCore;

use super::project::{Bound, Error, Progress, Result, LABEL_CONFIG_HASH, LABEL_NUMBER, LABEL_ONEOFF};
use super::up::{self, UpOptions};
use crate::container::exec;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub service: String,
    /// Replaces the service's command when not empty.
    pub command: Vec<String>,
    pub remove: bool,
    pub detach: bool,
    pub env: Vec<String>,
    pub entrypoint: Option<String>,
    pub no_deps: bool,
    pub name: Option<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub volumes: Vec<String>,
    pub publish: Vec<String>,
    pub service_ports: bool,
    pub tty: bool,
    pub interactive: bool,
    pub labels: Vec<String>,
}

/// What `run` did: the exit code when attached, the container when detached.
#[derive(Debug)]
pub enum RunOutcome {
    Exited(i32),
    Detached { id: String, name: String },
}

pub fn run(bound: &Bound, opts: &RunOptions, progress: &mut dyn FnMut(Progress)) -> Result<RunOutcome> {
    let service = bound.service(&opts.service)?;
    let deps: Vec<String> = service.depends_on.keys().cloned().collect();
    if !opts.no_deps && !deps.is_empty() {
        up::up(bound, &UpOptions { services: deps, ..UpOptions::default() }, progress)?;
    }
    // The dependencies' `up` made the project networks and volumes; without one, `run` makes them itself.
    up::ensure_resources(bound, std::slice::from_ref(&service.name), progress)?;
    up::ensure_image(bound, service, &UpOptions::default(), progress)?;
    let image_id = up::image_id_of(bound, service)?;
    let mut create_opts = bound.create_options(service, 0, &image_id)?;
    let mut suffix = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut suffix);
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}-run-{}", bound.project.name, service.name, hex::encode(suffix)));
    create_opts.name = Some(name.clone());
    create_opts
        .labels
        .retain(|l| !l.starts_with(LABEL_NUMBER) && !l.starts_with(LABEL_ONEOFF) && !l.starts_with(LABEL_CONFIG_HASH));
    create_opts.labels.push(format!("{LABEL_ONEOFF}=True"));
    create_opts.labels.extend(opts.labels.iter().cloned());
    if !opts.command.is_empty() {
        create_opts.cmd = opts.command.clone();
        if service.entrypoint.is_some() && opts.entrypoint.is_none() {
            // The service's entrypoint stays; only its command is replaced.
            if let Some(ep) = &service.entrypoint {
                create_opts.cmd = ep.iter().skip(1).cloned().chain(opts.command.iter().cloned()).collect();
            }
        }
    }
    if let Some(ep) = &opts.entrypoint {
        create_opts.entrypoint = Some(ep.clone());
        create_opts.cmd = opts.command.clone();
    }
    create_opts.env.extend(opts.env.iter().cloned());
    if opts.user.is_some() {
        create_opts.user = opts.user.clone();
    }
    if opts.workdir.is_some() {
        create_opts.workdir = opts.workdir.clone();
    }
    create_opts.binds.extend(opts.volumes.iter().cloned());
    if !opts.service_ports {
        create_opts.publish.clear();
    }
    create_opts.publish.extend(opts.publish.iter().cloned());
    // A one-off container never restarts and, with --rm, is removed when it exits.
    create_opts.restart = None;
    create_opts.auto_remove = opts.remove;
    create_opts.tty = opts.tty;
    create_opts.open_stdin = opts.interactive;
    let id = bound.backend.create_container(&create_opts)?;
    for (network, aliases, ip) in bound.extra_networks(service) {
        let ip = ip.map(|s| s.parse().map_err(|_| Error::Other(format!("invalid ipv4_address {s:?}")))).transpose()?;
        bound.backend.connect_network(&id, &network, aliases, ip)?;
    }
    if opts.detach {
        bound.backend.start_container(&id)?;
        return Ok(RunOutcome::Detached { id, name });
    }
    Ok(RunOutcome::Exited(bound.backend.start_attached(&id)?))
}

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub service: String,
    pub index: u32,
    pub command: Vec<String>,
    pub detach: bool,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub interactive: bool,
}

/// `exec`: runs a command in container `index` of the service; returns its exit code.
pub fn exec(bound: &Bound, opts: &ExecOptions) -> Result<i32> {
    let c = super::lifecycle::container_of(bound, &opts.service, opts.index.max(1))?;
    if !c.is_running() {
        return Err(Error::Other(format!(
            "service {:?} is not running (container {} is {})",
            opts.service,
            c.name,
            c.status.as_str()
        )));
    }
    let exec_opts = exec::ExecOptions {
        cmd: opts.command.clone(),
        detach: opts.detach,
        env: opts.env.clone(),
        user: opts.user.clone(),
        workdir: opts.workdir.clone(),
        tty: opts.tty,
        interactive: opts.interactive,
    };
    bound.backend.exec(&c.id, &exec_opts)
}
