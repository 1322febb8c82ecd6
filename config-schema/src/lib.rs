//! CircleCI 2.0/2.1 configuration for Drydock: [`yaml`] reads the file into a located tree (budgets against
//! alias bombs, merge keys), [`read`] turns it into the typed [`model`], [`validate`] checks it across
//! references; every problem is a located [`Diagnostic`]. Processing (expansion of orbs, executors, commands,
//! parameters, matrices, `when`) and workflow planning build on this model.

pub mod diagnostic;
pub mod model;
pub mod read;
pub mod validate;
pub mod yaml;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use model::Config;
pub use validate::Options;

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

/// Parses and validates: the model if the configuration is valid, else every problem, in file order. A
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
    let config = read::config(&doc, &mut report);
    validate::validate(&config, options, &mut report);
    if report.is_empty() {
        Ok(config)
    } else {
        Err(report.finish())
    }
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
