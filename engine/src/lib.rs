//! Drydock's container engine: an OCI image store, containers run through youki's libcontainer, and the
//! operations behind the docker-like `engine` CLI. Daemonless: every call works on a state directory guarded by
//! file locks (see [`root`]). The CLI (`src/main.rs`, `src/cli/`) only parses arguments and prints.

pub mod api;
pub mod archive;
pub mod build;
pub mod client;
pub mod compose;
pub mod container;
pub mod digest;
pub mod error;
pub mod humanize;
pub mod image;
pub mod network;
pub mod reference;
pub mod registry;
pub mod root;
pub mod volume;

pub use error::{Error, Result};
