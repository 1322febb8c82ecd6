//! The engine's error type: one enum over the module errors, and the docker exit code each maps to.

/// Any engine failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Root(#[from] crate::root::Error),
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Reference(#[from] crate::reference::Error),
    #[error(transparent)]
    Container(#[from] crate::container::Error),
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
    #[error(transparent)]
    Archive(#[from] crate::archive::Error),
    #[error(transparent)]
    Network(#[from] crate::network::Error),
    #[error(transparent)]
    Volume(#[from] crate::volume::Error),
    #[error(transparent)]
    Build(#[from] crate::build::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Docker's exit code for an engine failure (the CLI's `125`).
pub const EXIT_ENGINE: u8 = 125;
/// The command could not be invoked (not executable, permission denied).
pub const EXIT_CANNOT_INVOKE: u8 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: u8 = 127;
