//! Compose: multi-container projects from `compose.yaml` / `docker-compose.yml`, per the Compose Specification.
//!
//! - [`node`]: the located YAML tree every later stage works on (positions for every error).
//! - [`interpolate`] and [`env_file`]: `${VAR}` rules and `.env` files.
//! - [`load`]: files, project name, merge of several `-f`, `include`, `extends`, profiles → [`model::Project`].
//! - [`model`]: the typed project, short and long syntaxes normalised, unknown keys reported.
//! - [`order`]: start order from `depends_on`, cycles named.

pub mod env_file;
pub mod interpolate;
pub mod load;
pub mod model;
pub mod node;
pub mod order;
#[cfg(test)]
mod tests;

pub use load::{load, LoadError, LoadOptions, LocatedDiagnostic};
pub use model::Project;
