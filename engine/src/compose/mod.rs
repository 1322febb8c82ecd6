//! Compose: multi-container projects from `compose.yaml` / `docker-compose.yml`, per the Compose Specification.
//!
//! - [`node`]: the located YAML tree every later stage works on (positions for every error).
//! - [`interpolate`] and [`env_file`]: `${VAR}` rules and `.env` files.
//! - [`load`]: files, project name, merge of several `-f`, `include`, `extends`, profiles → [`model::Project`].
//! - [`model`]: the typed project, short and long syntaxes normalised, unknown keys reported.
//! - [`order`]: start order from `depends_on`, cycles named.
//! - [`backend`]: what the verbs need from an engine, as a trait; [`local`] implements it on an engine root of this
//!   machine, [`api`] on an `engine serve` / Docker Engine API server ([`create_body`]: the create request).
//! - [`project`]: a project bound to a backend — its containers by label, names, service → create options.
//! - [`up`], [`down`], [`run`] (also `exec`), [`lifecycle`] (`ps`, `stop`, `start`, `restart`, `rm`, `kill`): the verbs.

pub mod api;
pub mod backend;
pub mod create_body;
pub mod down;
pub mod env_file;
pub mod interpolate;
pub mod lifecycle;
pub mod load;
pub mod local;
pub mod model;
pub mod node;
pub mod order;
pub mod project;
pub mod run;
#[cfg(test)]
mod tests;
pub mod up;

pub use load::{load, LoadError, LoadOptions, LocatedDiagnostic};
pub use model::Project;
