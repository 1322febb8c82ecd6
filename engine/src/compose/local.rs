//! The [`Backend`] on an engine root of this machine: each operation is the engine library's own verb
//! (`container::create`, `start`, `stop`…, [`NetworkStore`], [`VolumeStore`], [`ImageStore`]), as `engine run`
//! and friends call them. Pulling, pushing and building print the registry client's and the builder's progress,
//! which live in the CLI: the CLI hands them in as [`ImageTools`].

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::backend::{Backend, BuildRequest, ContainerInfo};
use super::project::{Error, Result, LABEL_PROJECT};
use crate::container::create::CreateOptions;
use crate::container::exec::ExecOptions;
use crate::container::health::HealthOutcome;
use crate::container::logs::LogOptions;
use crate::container::{
    create, exec, health, kill, list, logs, network as cnet, remove, restart, start, stop, top, Container,
    ContainerStore, State,
};
use crate::image::ImageStore;
use crate::network::NetworkStore;
use crate::root::Root;
use crate::volume::VolumeStore;

/// Image operations whose progress output belongs to the CLI (registry pulls and pushes, the builder).
pub trait ImageTools: Sync {
    fn pull(&self, images: &ImageStore, name: &str, quiet: bool) -> std::result::Result<(), String>;
    fn push(&self, name: &str) -> std::result::Result<(), String>;
    fn build(&self, request: &BuildRequest) -> std::result::Result<(), String>;
}

/// Compose on an engine root opened by this process.
pub struct LocalBackend<'t> {
    pub root: Root,
    pub containers: ContainerStore,
    pub images: ImageStore,
    tools: &'t dyn ImageTools,
}

impl<'t> LocalBackend<'t> {
    pub fn open(root: &Root, tools: &'t dyn ImageTools) -> Result<LocalBackend<'t>> {
        Ok(LocalBackend {
            root: root.clone(),
            containers: ContainerStore::open(root),
            images: ImageStore::open(root)?,
            tools,
        })
    }

    fn networks(&self) -> Result<NetworkStore> {
        Ok(NetworkStore::open(&self.root)?)
    }

    fn volumes(&self) -> Result<VolumeStore> {
        Ok(VolumeStore::open(&self.root)?)
    }
}

/// A stored container and its state as compose's [`ContainerInfo`].
pub fn container_info(c: Container, s: &State) -> ContainerInfo {
    let command =
        std::iter::once(c.path.as_str()).chain(c.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
    ContainerInfo {
        id: c.id,
        name: c.name,
        image: c.config.image,
        image_id: c.image_id,
        command,
        labels: c.config.labels,
        created: c.created,
        status: s.status,
        status_text: list::status_text(s),
        exit_code: s.exit_code,
        ports: s.ports.clone(),
    }
}

impl Backend for LocalBackend<'_> {
    fn project_containers(&self, project: &str) -> Result<Vec<ContainerInfo>> {
        Ok(self
            .containers
            .list()?
            .into_iter()
            .filter(|(c, _)| c.config.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project))
            .map(|(c, s)| container_info(c, &s))
            .collect())
    }

    fn all_containers(&self) -> Result<Vec<ContainerInfo>> {
        Ok(self.containers.list()?.into_iter().map(|(c, s)| container_info(c, &s)).collect())
    }

    fn inspect_container(&self, id: &str) -> Result<ContainerInfo> {
        let c = self.containers.load(id)?;
        let s = self.containers.state(&c.id)?;
        Ok(container_info(c, &s))
    }

    fn create_container(&self, opts: &CreateOptions) -> Result<String> {
        Ok(create::create(&self.containers, &self.images, opts)?.id)
    }

    fn connect_network(&self, id: &str, network: &str, aliases: Vec<String>, ip: Option<Ipv4Addr>) -> Result<()> {
        Ok(cnet::connect(&self.containers, id, network, aliases, ip)?)
    }

    fn start_container(&self, id: &str) -> Result<()> {
        start::start(&self.containers, id)?;
        Ok(())
    }

    fn start_attached(&self, id: &str) -> Result<i32> {
        Ok(start::start_attached(&self.containers, id)?)
    }

    fn stop_container(&self, id: &str, timeout_s: Option<i64>) -> Result<()> {
        stop::stop(&self.containers, id, timeout_s)?;
        Ok(())
    }

    fn restart_container(&self, id: &str, timeout_s: Option<i64>) -> Result<()> {
        Ok(restart::restart(&self.containers, id, timeout_s)?)
    }

    fn kill_container(&self, id: &str, signal: &str) -> Result<()> {
        Ok(kill::kill(&self.containers, id, kill::parse_signal(signal)?)?)
    }

    fn remove_container(&self, id: &str, force: bool, volumes: bool) -> Result<()> {
        match remove::remove(&self.containers, id, force, volumes) {
            Err(crate::container::Error::NotFound(_)) => Ok(()),
            other => Ok(other?),
        }
    }

    fn wait_healthy(&self, id: &str, timeout: Option<Duration>) -> Result<HealthOutcome> {
        Ok(health::wait_healthy(&self.containers, id, timeout)?)
    }

    fn exec(&self, id: &str, opts: &ExecOptions) -> Result<i32> {
        Ok(exec::exec(&self.containers, id, opts)?)
    }

    fn logs(&self, id: &str, opts: &LogOptions, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
        Ok(logs::logs(&self.containers, id, opts, out, err)?)
    }

    fn top(&self, id: &str) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let rows = top::top(&self.containers, id)?;
        Ok((top::HEADER.iter().map(|s| s.to_string()).collect(), rows))
    }

    fn network_labels(&self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        match self.networks()?.resolve(name) {
            Ok(net) => Ok(Some(net.labels)),
            Err(crate::network::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn create_network(&self, opts: &crate::network::CreateOptions) -> Result<()> {
        self.networks()?.create(opts)?;
        Ok(())
    }

    fn remove_network(&self, name: &str) -> Result<()> {
        self.networks()?.remove(name)?;
        Ok(())
    }

    fn volume_exists(&self, name: &str) -> Result<bool> {
        match self.volumes()?.get(name) {
            Ok(_) => Ok(true),
            Err(crate::volume::Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn create_volume(&self, name: &str, labels: BTreeMap<String, String>) -> Result<()> {
        self.volumes()?.create(Some(name), labels, BTreeMap::new())?;
        Ok(())
    }

    fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        Ok(self.volumes()?.remove(name, force, &|_| None)?)
    }

    fn image_id(&self, name: &str) -> Result<Option<String>> {
        match self.images.resolve(name) {
            Ok(image) => Ok(Some(image.id.to_string())),
            Err(crate::image::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn image_size(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.images.resolve(name).ok().map(|i| self.images.image_size(&i)))
    }

    fn remove_image(&self, name: &str) -> Result<()> {
        let users: Vec<(String, String)> =
            self.containers.list()?.into_iter().map(|(c, _)| (c.image_id.clone(), c.name.clone())).collect();
        let used_by = |d: &crate::digest::Digest| {
            users.iter().find(|(image, _)| *image == d.to_string()).map(|(_, name)| name.clone())
        };
        self.images.remove(name, false, &used_by)?;
        Ok(())
    }

    fn pull_image(&self, name: &str, quiet: bool) -> Result<()> {
        self.tools.pull(&self.images, name, quiet).map_err(Error::Other)
    }

    fn push_image(&self, name: &str) -> Result<()> {
        self.tools.push(name).map_err(Error::Other)
    }

    fn build_image(&self, request: &BuildRequest) -> Result<()> {
        self.tools.build(request).map_err(Error::Other)
    }
}
