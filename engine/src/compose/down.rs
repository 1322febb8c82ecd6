//! `compose down`: stop and remove the project's containers (one-off `run` containers included), then the
//! networks it created; with `-v` its named volumes and the containers' anonymous volumes; with `--rmi` the
//! images (`local`: only those built for services without an `image:`; `all`: every service image). External
//! networks and volumes are never touched. Resources still used by another container stay, with a warning.

use super::project::{Bound, Progress, Result, LABEL_PROJECT};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RemoveImages {
    #[default]
    None,
    Local,
    All,
}

#[derive(Debug, Clone, Default)]
pub struct DownOptions {
    pub volumes: bool,
    pub images: RemoveImages,
    pub remove_orphans: bool,
    pub timeout: Option<i64>,
}

pub fn down(bound: &Bound, opts: &DownOptions, progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let project = bound.project;
    let backend = bound.backend;
    let containers = bound.all_containers()?;
    let orphans: Vec<String> = bound.orphans()?.into_iter().map(|c| c.id).collect();
    let mut stopped = Vec::new();
    for c in containers.iter().rev() {
        if orphans.contains(&c.id) && !opts.remove_orphans {
            continue;
        }
        if c.is_running() {
            progress(Progress { kind: "Container", name: c.name.clone(), action: "Stopping" });
            backend.stop_container(&c.id, opts.timeout)?;
            progress(Progress { kind: "Container", name: c.name.clone(), action: "Stopped" });
        }
        stopped.push(c);
    }
    for c in stopped {
        progress(Progress { kind: "Container", name: c.name.clone(), action: "Removing" });
        backend.remove_container(&c.id, true, opts.volumes)?;
        progress(Progress { kind: "Container", name: c.name.clone(), action: "Removed" });
    }
    for config in project.networks.values().filter(|n| !n.external) {
        let Some(labels) = backend.network_labels(&config.name)? else { continue };
        if labels.get(LABEL_PROJECT) != Some(&project.name) {
            continue;
        }
        progress(Progress { kind: "Network", name: config.name.clone(), action: "Removing" });
        match backend.remove_network(&config.name) {
            Ok(()) => progress(Progress { kind: "Network", name: config.name.clone(), action: "Removed" }),
            Err(e) => progress(Progress { kind: "Warning", name: format!("network {}: {e}", config.name), action: "" }),
        }
    }
    if opts.volumes {
        for config in project.volumes.values().filter(|v| !v.external) {
            if !backend.volume_exists(&config.name)? {
                continue;
            }
            progress(Progress { kind: "Volume", name: config.name.clone(), action: "Removing" });
            match backend.remove_volume(&config.name, false) {
                Ok(()) => progress(Progress { kind: "Volume", name: config.name.clone(), action: "Removed" }),
                Err(e) => {
                    progress(Progress { kind: "Warning", name: format!("volume {}: {e}", config.name), action: "" })
                }
            }
        }
    }
    if opts.images != RemoveImages::None {
        for service in project.services.values() {
            if opts.images == RemoveImages::Local && service.image.is_some() {
                continue;
            }
            let name = bound.image_name(service);
            if backend.image_id(&name)?.is_none() {
                continue;
            }
            progress(Progress { kind: "Image", name: name.clone(), action: "Removing" });
            match backend.remove_image(&name) {
                Ok(()) => progress(Progress { kind: "Image", name, action: "Removed" }),
                Err(e) => progress(Progress { kind: "Warning", name: format!("image {name}: {e}"), action: "" }),
            }
        }
    }
    Ok(())
}
