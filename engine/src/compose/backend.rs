//! What compose's verbs need from a container engine, as one trait: the orchestration in [`super::up`],
//! [`super::down`], [`super::run`] and [`super::lifecycle`] is written against [`Backend`] only, so the same
//! `up`/`down`/`run` drive the engine library directly ([`super::local::LocalBackend`], an engine root on this
//! machine) or an `engine serve` / Docker Engine API server (the API backend, client-side orchestration as the
//! real docker compose does).
//!
//! Containers are described by [`ContainerInfo`] (what a container list reports: labels, state, ports), created
//! from the engine's own [`CreateOptions`] (what [`super::project::Bound::create_options`] resolves a service
//! into; the API backend translates them into the Docker API's create body).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::model::Service;
use super::project::Result;
use crate::container::create::CreateOptions;
use crate::container::exec::ExecOptions;
use crate::container::health::HealthOutcome;
use crate::container::logs::LogOptions;
use crate::container::Status;
use crate::network::ports::PublishedPort;

/// A container as compose sees it: identity, compose labels, lifecycle state and published ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// The image as the container was created with (`busybox`, `demo-web`).
    pub image: String,
    /// `sha256:…` of that image.
    pub image_id: String,
    /// The command line, path and arguments joined by spaces (for `ps`).
    pub command: String,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 creation time.
    pub created: String,
    pub status: Status,
    /// docker's status column (`Up 3 seconds`, `Exited (0) 2 minutes ago`).
    pub status_text: String,
    pub exit_code: i32,
    /// Host ports bound while running.
    pub ports: Vec<PublishedPort>,
}

impl ContainerInfo {
    pub fn is_running(&self) -> bool {
        matches!(self.status, Status::Running | Status::Restarting | Status::Paused)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// A service image build, as `compose build` / `up --build` ask for it.
#[derive(Debug, Clone, Copy)]
pub struct BuildRequest<'a> {
    pub service: &'a Service,
    /// The tag to give the result (`image:` or `PROJECT-SERVICE`).
    pub image: &'a str,
    pub no_cache: bool,
    pub pull: bool,
    pub quiet: bool,
    /// `--build-arg` values given on the command line, on top of the service's `build.args`.
    pub extra_args: &'a [String],
}

/// The engine operations compose orchestrates. Implementations are shared by the log threads of `up` and `logs`,
/// hence `Sync`.
pub trait Backend: Sync {
    /// Every container carrying `com.docker.compose.project=PROJECT`, running or not.
    fn project_containers(&self, project: &str) -> Result<Vec<ContainerInfo>>;
    /// Every container of the engine (for "is this image still used" before `down --rmi`).
    fn all_containers(&self) -> Result<Vec<ContainerInfo>>;
    /// One container by ID or name.
    fn inspect_container(&self, id: &str) -> Result<ContainerInfo>;
    /// Creates a container; returns its ID.
    fn create_container(&self, opts: &CreateOptions) -> Result<String>;
    /// Connects a created container to one more network before it starts.
    fn connect_network(&self, id: &str, network: &str, aliases: Vec<String>, ip: Option<Ipv4Addr>) -> Result<()>;
    fn start_container(&self, id: &str) -> Result<()>;
    /// Starts a container attached to this process's stdin/stdout/stderr; returns its exit code when it ends.
    fn start_attached(&self, id: &str) -> Result<i32>;
    fn stop_container(&self, id: &str, timeout_s: Option<i64>) -> Result<()>;
    fn restart_container(&self, id: &str, timeout_s: Option<i64>) -> Result<()>;
    /// Sends a signal given by name or number (`SIGKILL`, `TERM`, `9`).
    fn kill_container(&self, id: &str, signal: &str) -> Result<()>;
    /// Removes a container (`force`: even running; `volumes`: its anonymous volumes too). A container already
    /// gone is not an error.
    fn remove_container(&self, id: &str, force: bool, volumes: bool) -> Result<()>;
    /// Waits until the container's healthcheck passes, fails, or it exits (`timeout` `None`: no limit).
    fn wait_healthy(&self, id: &str, timeout: Option<Duration>) -> Result<HealthOutcome>;
    /// Runs a command in a running container; returns its exit code.
    fn exec(&self, id: &str, opts: &ExecOptions) -> Result<i32>;
    /// Copies the container's logs to `out`/`err` (following until it stops with `opts.follow`).
    fn logs(&self, id: &str, opts: &LogOptions, out: &mut dyn Write, err: &mut dyn Write) -> Result<()>;
    /// `top`: column titles and one row per process.
    fn top(&self, id: &str) -> Result<(Vec<String>, Vec<Vec<String>>)>;

    /// A network's labels, `None` when there is no network of that name.
    fn network_labels(&self, name: &str) -> Result<Option<BTreeMap<String, String>>>;
    fn create_network(&self, opts: &crate::network::CreateOptions) -> Result<()>;
    fn remove_network(&self, name: &str) -> Result<()>;
    fn volume_exists(&self, name: &str) -> Result<bool>;
    fn create_volume(&self, name: &str, labels: BTreeMap<String, String>) -> Result<()>;
    /// Removes a volume (`force`: also when it does not exist).
    fn remove_volume(&self, name: &str, force: bool) -> Result<()>;

    /// The ID of an image by name or ID, `None` when it is not present.
    fn image_id(&self, name: &str) -> Result<Option<String>>;
    /// The size of an image in bytes (`None` when it is not present).
    fn image_size(&self, name: &str) -> Result<Option<u64>>;
    /// Removes an image tag (refused while a container uses the image).
    fn remove_image(&self, name: &str) -> Result<()>;
    /// Pulls an image, printing progress on stderr unless `quiet`.
    fn pull_image(&self, name: &str, quiet: bool) -> Result<()>;
    fn push_image(&self, name: &str) -> Result<()>;
    /// Builds a service's image from its `build:` section.
    fn build_image(&self, request: &BuildRequest) -> Result<()>;
}
