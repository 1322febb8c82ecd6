//! `compose down`: stop and remove the project's containers (one-off `run` containers included), then the
//! networks it created; with `-v` its named volumes and the containers' anonymous volumes; with `--rmi` the
//! images (`local`: only those built for services without an `image:`; `all`: every service image). External
//! networks and volumes are never touched. Resources still used by another container stay, with a warning.

use super::project::{Bound, Progress, Result, LABEL_PROJECT};
use crate::container::{remove, stop};

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
    let containers = bound.all_containers()?;
    let orphans: Vec<String> = bound.orphans()?.into_iter().map(|(c, _)| c.id).collect();
    let mut stopped = Vec::new();
    for (c, state) in containers.iter().rev() {
        if orphans.contains(&c.id) && !opts.remove_orphans {
            continue;
        }
        if state.is_running() {
            progress(Progress { kind: "Container", name: c.name.clone(), action: "Stopping" });
            stop::stop(&bound.containers, &c.id, opts.timeout)?;
            progress(Progress { kind: "Container", name: c.name.clone(), action: "Stopped" });
        }
        stopped.push(c);
    }
    for c in stopped {
        progress(Progress { kind: "Container", name: c.name.clone(), action: "Removing" });
        remove::remove(&bound.containers, &c.id, true, opts.volumes)?;
        progress(Progress { kind: "Container", name: c.name.clone(), action: "Removed" });
    }
    let networks = bound.networks()?;
    for config in project.networks.values().filter(|n| !n.external) {
        let Ok(net) = networks.resolve(&config.name) else { continue };
        if net.labels.get(LABEL_PROJECT) != Some(&project.name) {
            continue;
        }
        progress(Progress { kind: "Network", name: config.name.clone(), action: "Removing" });
        match networks.remove(&config.name) {
            Ok(_) => progress(Progress { kind: "Network", name: config.name.clone(), action: "Removed" }),
            Err(e) => progress(Progress { kind: "Warning", name: format!("network {}: {e}", config.name), action: "" }),
        }
    }
    if opts.volumes {
        let volumes = bound.volumes()?;
        for config in project.volumes.values().filter(|v| !v.external) {
            if volumes.get(&config.name).is_err() {
                continue;
            }
            progress(Progress { kind: "Volume", name: config.name.clone(), action: "Removing" });
            match volumes.remove(&config.name, false, &|_| None) {
                Ok(()) => progress(Progress { kind: "Volume", name: config.name.clone(), action: "Removed" }),
                Err(e) => {
                    progress(Progress { kind: "Warning", name: format!("volume {}: {e}", config.name), action: "" })
                }
            }
        }
    }
    if opts.images != RemoveImages::None {
        let users: Vec<(String, String)> =
            bound.containers.list()?.into_iter().map(|(c, _)| (c.image_id.clone(), c.name.clone())).collect();
        let used_by = |d: &crate::digest::Digest| {
            users.iter().find(|(image, _)| *image == d.to_string()).map(|(_, name)| name.clone())
        };
        for service in project.services.values() {
            if opts.images == RemoveImages::Local && service.image.is_some() {
                continue;
            }
            let name = bound.image_name(service);
            if bound.images.resolve(&name).is_err() {
                continue;
            }
            progress(Progress { kind: "Image", name: name.clone(), action: "Removing" });
            match bound.images.remove(&name, false, &used_by) {
                Ok(_) => progress(Progress { kind: "Image", name, action: "Removed" }),
                Err(e) => progress(Progress { kind: "Warning", name: format!("image {name}: {e}"), action: "" }),
            }
        }
    }
    Ok(())
}
