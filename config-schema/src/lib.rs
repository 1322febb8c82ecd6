//! CircleCI 2.0/2.1 configuration for Drydock: [`yaml`] reads the file into a located tree (budgets against
//! alias bombs, merge keys), [`read`] turns it into the typed [`model`], [`orb`] reads registry orbs from a local
//! orb directory, [`validate`] checks it across references; every problem is a located [`Diagnostic`].
//! [`process`](mod@process) expands a checked model for one pipeline (orbs, executors, commands, parameters,
//! matrices, `when`) into the [`spec`] types the coordinator and the runner consume: jobs, commands, executors
//! and workflows keep the YAML `body` they were read from, [`template`] substitutes `<< … >>` into it, and the
//! result is read again with [`read::job`] and friends — as CircleCI itself expands. [`plan`](mod@plan) decides
//! which workflows and jobs of a processed configuration run for a trigger (branch, tag or schedule).
//! [`schema`] builds the JSON Schema of the accepted configuration from the reader's key tables.
//! [`wire`] holds the messages between runners and the coordinator (job assignment, events, result).
//!
//! Entry points: [`parse`] (syntax and shapes only), [`check`] (parse, resolve orbs, validate), [`load`] (a file),
//! [`process_text`] and [`process_file`] (check, then process).

pub mod diagnostic;
pub mod model;
pub mod orb;
pub mod plan;
pub mod process;
pub mod read;
pub mod schema;
pub mod spec;
pub mod template;
pub mod validate;
pub mod wire;
pub mod yaml;

use std::path::PathBuf;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use model::Config;
pub use plan::{plan, Plan, Trigger};
pub use process::{process, Pipeline};
pub use spec::{JobSpec, ProcessedConfig};

/// How to read a configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Registry orbs available offline: `<dir>/<namespace>/<name>.yml` (see [`orb`]).
    pub orb_dir: Option<PathBuf>,
}

/// Parses `text` (named `file` in messages) into the model, or every problem found while reading it.
pub fn parse(text: &str, file: &str) -> Result<Config, Diagnostics> {
    let mut report = diagnostic::Report::new(file);
    let doc = match yaml::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            report.error(e.pos, "", e.message);
            return Err(report.finish());
        }
    };
    let config = read::config(&doc, &mut report);
    if report.is_empty() {
        Ok(config)
    } else {
        Err(report.finish())
    }
}

/// Parses, reads registry orbs from the local orb directory, and validates: the model (orbs resolved) if the
/// configuration is valid, else every problem — the configuration's in file order, then those of orb files. A
/// document that reads as YAML is validated even when some keys were wrong, so one run shows everything.
pub fn check(text: &str, file: &str, options: &Options) -> Result<Config, Diagnostics> {
    let mut report = diagnostic::Report::new(file);
    let doc = match yaml::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            report.error(e.pos, "", e.message);
            return Err(report.finish());
        }
    };
    let mut config = read::config(&doc, &mut report);
    let in_orb_files = orb::resolve(&mut config.orbs, options, &mut report);
    validate::validate(&config, &mut report);
    if report.is_empty() && in_orb_files.is_empty() {
        Ok(config)
    } else {
        let mut all = report.finish();
        all.0.extend(in_orb_files);
        Err(all)
    }
}

/// Checks `text` (named `file` in messages) and processes it for `pipeline`.
pub fn process_text(
    text: &str,
    file: &str,
    options: &Options,
    pipeline: &Pipeline,
) -> Result<ProcessedConfig, Diagnostics> {
    let config = check(text, file, options)?;
    process(&config, file, pipeline)
}

/// Reads, checks and processes a configuration file.
pub fn process_file(
    path: &std::path::Path,
    options: &Options,
    pipeline: &Pipeline,
) -> Result<ProcessedConfig, Diagnostics> {
    let config = load(path, options)?;
    process(&config, &path.display().to_string(), pipeline)
}

/// Reads and checks a configuration file.
pub fn load(path: &std::path::Path, options: &Options) -> Result<Config, Diagnostics> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => check(&text, &file, options),
        Err(e) => Err(Diagnostics(vec![Diagnostic {
            file,
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
            suggestion: None,
        }])),
    }
}
