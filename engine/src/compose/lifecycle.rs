//! The small verbs on a project's existing containers: `ps`, `stop`, `start`, `restart`, `rm`, `kill`, `port`.
//! Each selects containers by service (all when none is named) and calls the [`super::backend::Backend`]'s verb on
//! each.

use super::backend::ContainerInfo;
use super::project::{Bound, Error, Progress, Result, LABEL_ONEOFF, LABEL_SERVICE};

/// The project's containers of `services` (all services when empty); one-off `run` containers only with
/// `include_oneoff`.
pub fn select(bound: &Bound, services: &[String], include_oneoff: bool) -> Result<Vec<ContainerInfo>> {
    for s in services {
        bound.service(s)?;
    }
    Ok(bound
        .all_containers()?
        .into_iter()
        .filter(|c| {
            let service = c.label(LABEL_SERVICE).unwrap_or_default().to_string();
            let oneoff = c.label(LABEL_ONEOFF) == Some("True");
            (services.is_empty() || services.contains(&service)) && (include_oneoff || !oneoff)
        })
        .collect())
}

pub fn stop_services(
    bound: &Bound,
    services: &[String],
    timeout: Option<i64>,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    // Reverse dependency order: dependants stop before what they depend on.
    let order = super::order::start_order(bound.project).unwrap_or_default();
    let mut containers = select(bound, services, false)?;
    containers.sort_by_key(|c| {
        let s = c.label(LABEL_SERVICE).unwrap_or_default().to_string();
        std::cmp::Reverse(order.iter().position(|o| *o == s).unwrap_or(usize::MAX))
    });
    for c in containers {
        if !c.is_running() {
            continue;
        }
        progress(Progress { kind: "Container", name: c.name.clone(), action: "Stopping" });
        bound.backend.stop_container(&c.id, timeout)?;
        progress(Progress { kind: "Container", name: c.name.clone(), action: "Stopped" });
    }
    Ok(())
}

pub fn start_services(bound: &Bound, services: &[String], progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let order = super::order::start_order(bound.project).unwrap_or_default();
    let mut containers = select(bound, services, false)?;
    if containers.is_empty() {
        return Err(Error::Other("no containers to start: create them with `compose up`".into()));
    }
    containers.sort_by_key(|c| {
        let s = c.label(LABEL_SERVICE).unwrap_or_default().to_string();
        order.iter().position(|o| *o == s).unwrap_or(usize::MAX)
    });
    for c in containers {
        if c.is_running() {
            continue;
        }
        progress(Progress { kind: "Container", name: c.name.clone(), action: "Starting" });
        bound.backend.start_container(&c.id)?;
        progress(Progress { kind: "Container", name: c.name.clone(), action: "Started" });
    }
    Ok(())
}

pub fn restart_services(
    bound: &Bound,
    services: &[String],
    timeout: Option<i64>,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    for c in select(bound, services, false)? {
        progress(Progress { kind: "Container", name: c.name.clone(), action: "Restarting" });
        bound.backend.restart_container(&c.id, timeout)?;
        progress(Progress { kind: "Container", name: c.name.clone(), action: "Started" });
    }
    Ok(())
}

/// `rm`: removes stopped containers (running ones too with `stop_first`, as `rm -s`).
pub fn remove_services(
    bound: &Bound,
    services: &[String],
    stop_first: bool,
    volumes: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<usize> {
    let mut removed = 0;
    for c in select(bound, services, true)? {
        if c.is_running() {
            if !stop_first {
                continue;
            }
            bound.backend.stop_container(&c.id, None)?;
        }
        progress(Progress { kind: "Container", name: c.name.clone(), action: "Removing" });
        bound.backend.remove_container(&c.id, true, volumes)?;
        progress(Progress { kind: "Container", name: c.name.clone(), action: "Removed" });
        removed += 1;
    }
    Ok(removed)
}

pub fn kill_services(
    bound: &Bound,
    services: &[String],
    signal: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    crate::container::kill::parse_signal(signal)?;
    for c in select(bound, services, false)? {
        if c.is_running() {
            bound.backend.kill_container(&c.id, signal)?;
            progress(Progress { kind: "Container", name: c.name.clone(), action: "Killed" });
        }
    }
    Ok(())
}

/// The container of `service` with compose's `--index` (1-based).
pub fn container_of(bound: &Bound, service: &str, index: u32) -> Result<ContainerInfo> {
    bound.service(service)?;
    bound
        .service_containers(service)?
        .into_iter()
        .find(|c| super::project::number_of(c) == index)
        .ok_or_else(|| Error::NotRunning(service.to_string()))
}
