//! Containers: records on disk, overlay root filesystems, the OCI runtime spec, and the lifecycle verbs, each
//! in its own file (`create.rs`, `start.rs`, `stop.rs`, `kill.rs`, `remove.rs`, `exec.rs`, `commit.rs`, …).
//!
//! A container lives in `<root>/containers/<id>/` (see [`store`]); it is run by youki's `libcontainer` from a
//! per-container **monitor** process (see [`monitor`] for the process structure and why). The CLI
//! (`src/cli/container.rs`) maps each docker verb onto one function here and only parses and prints.

pub mod cgroupfs;
pub mod commit;
pub mod cp;
pub mod create;
pub mod diff;
pub mod exec;
pub mod export;
pub mod health;
pub mod init;
pub mod inspect;
pub mod kill;
pub mod list;
pub mod logs;
pub mod monitor;
pub mod mounts;
pub mod names;
pub mod network;
pub mod pause;
pub mod prestart;
pub mod prune;
pub mod remove;
pub mod rename;
pub mod restart;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod start;
pub mod stop;
pub mod store;
pub mod top;
pub mod trim;
pub mod tty;
pub mod user;
pub mod wait;
pub mod workload;

use std::io;
use std::path::PathBuf;

pub use store::{
    Container, ContainerStore, HostConfig, MountKind, MountPoint, NetworkAttachment, RestartPolicy, RunSettings, State,
    Status,
};

/// Docker's exit code for an engine failure.
pub const EXIT_ENGINE: u8 = 125;
/// The command could not be invoked (not executable, permission denied).
pub const EXIT_CANNOT_INVOKE: u8 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// Errors of container operations. Each maps to docker's exit code through [`Error::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("container ID prefix `{0}` is ambiguous: it matches several containers (give more characters)")]
    Ambiguous(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("invalid container name \"{0}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error(
        "cannot remove container {0}: container is running: stop the container before removing or force remove (-f)"
    )]
    RemoveRunning(String),
    #[error("container {0} is not running (start it first)")]
    NotRunning(String),
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    #[error("invalid {what} `{value}`: {hint}")]
    InvalidInput { what: &'static str, value: String, hint: String },
    #[error("unable to find user {user}: no matching entries in passwd file (use a numeric uid or add the user to the image)")]
    UnknownUser { user: String },
    #[error("unable to find group {group}: no matching entries in group file (use a numeric gid)")]
    UnknownGroup { group: String },
    /// The command could not be run: `code` is 126 (not executable) or 127 (not found).
    #[error("{message}")]
    Invoke { code: u8, message: String },
    #[error("cannot start container {id}: {message}")]
    Start { id: String, message: String },
    #[error("container runtime: {0}")]
    Runtime(String),
    #[error("could not find the file {path} in container {container}")]
    NoSuchPath { container: String, path: String },
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Root(#[from] crate::root::Error),
    #[error(transparent)]
    Reference(#[from] crate::reference::Error),
    #[error(transparent)]
    Network(#[from] crate::network::Error),
    #[error(transparent)]
    Ports(#[from] crate::network::ports::Error),
    #[error(transparent)]
    Proxy(#[from] crate::network::proxy::Error),
    #[error(transparent)]
    Volume(#[from] crate::volume::Error),
    #[error(transparent)]
    Mount(#[from] crate::volume::mount::Error),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("{context}: {source}")]
    Sys { context: String, source: nix::Error },
    #[error("container record {path} is corrupt: {message} (remove the container with `engine rm -f`)")]
    Corrupt { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Docker's exit code for this error: 126/127 when the command cannot be invoked or found, else 125.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Invoke { code, .. } => *code,
            _ => EXIT_ENGINE,
        }
    }
}

impl From<libcontainer::error::LibcontainerError> for Error {
    fn from(e: libcontainer::error::LibcontainerError) -> Error {
        Error::Runtime(error_chain(&e))
    }
}

/// Held around everything that changes the process's working directory to bind or connect a unix socket by a
/// short relative name (libcontainer's tenant builder does so for its notify socket, [`tty::ConsoleListener`] for
/// the console socket): the working directory is process-wide, so two threads doing it at once (the runner runs a
/// workflow's jobs concurrently in one process) would connect to a name in the other's directory.
pub(crate) fn cwd_lock() -> std::sync::MutexGuard<'static, ()> {
    static CWD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CWD.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `e` and its sources on one line (libcontainer's errors keep the useful part in their sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let part = c.to_string();
        if !s.contains(&part) {
            s.push_str(": ");
            s.push_str(&part);
        }
        cur = c.source();
    }
    s
}

/// Wraps an `io::Error` with what was being done.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Wraps a `nix::Error` with what was being done.
pub(crate) fn sys_err(context: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let context = context.into();
    move |source| Error::Sys { context, source }
}
