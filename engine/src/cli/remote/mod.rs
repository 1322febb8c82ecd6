//! Remote mode: the same verbs and flags as the local CLI, carried out through an Engine API server with
//! [`engine::client::ApiClient`] instead of on the engine root. Chosen in `cli::main` when `DRYDOCK_HOST` or
//! `DOCKER_HOST` is set (and `--root` is not given), and always when the binary is called as `docker` or
//! `docker-compose`. One file per area, as for the local verbs; output follows docker's CLI.
//! Exit codes are docker's: 125 for an API or client error, 126/127 when the server cannot run the command,
//! otherwise the container's.

mod container;
mod image;
mod network;
mod system;
mod volume;

use std::process::ExitCode;

use engine::client::{self, ApiClient};

use super::{Command, ExitError};

/// Runs one verb against the server behind `client`.
pub fn run(command: Command, client: &ApiClient) -> anyhow::Result<ExitCode> {
    match command {
        Command::Version => system::version(client),
        Command::Info => system::info(client),
        Command::System(super::SystemCommand::Info) => system::info(client),
        Command::Build(args) => image::build(*args, client),
        Command::Image(cmd) => image::run(cmd, client),
        Command::ImageGroup(cmd) => image::run_group(cmd, client),
        Command::Container(cmd) => container::run(cmd, client),
        Command::ContainerGroup(cmd) => container::run_group(cmd, client),
        Command::Registry(cmd) => image::registry(cmd, client),
        Command::Network(cmd) => network::run(cmd, client),
        Command::Volume(cmd) => volume::run(cmd, client),
        Command::Inspect(args) => inspect(args, client),
        Command::Compose(args) => super::compose::run_api(*args, client.host().clone()),
        Command::Serve(_) => anyhow::bail!("`serve` runs on an engine root, not through another server"),
    }
}

/// `engine inspect NAME…` over the API: containers first, then images (as docker does without `--type`).
fn inspect(args: super::InspectArgs, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let mut values = Vec::new();
    let mut missing = None;
    for name in &args.names {
        let mut found = None;
        if args.kind.as_deref() != Some("image") {
            found = optional(client.get_json(&format!("/containers/{}/json", client::encode(name))))?;
        }
        if found.is_none() && args.kind.as_deref() != Some("container") {
            found = optional(client.get_json(&format!("/images/{name}/json")))?;
        }
        match found {
            Some(v) => values.push(v),
            None => missing = missing.or(Some(name.clone())),
        }
    }
    super::print_inspect(&values, args.format.as_deref())?;
    if let Some(name) = missing {
        return Err(ExitError { code: 1, message: format!("No such object: {name}") }.into());
    }
    Ok(ExitCode::SUCCESS)
}

/// A 404 as `None`, other errors kept.
fn optional<T>(r: client::Result<T>) -> anyhow::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// docker's `filters` query value from `key=value` flags: `{"key": ["value", …]}`.
fn filters_json(filters: &[String]) -> anyhow::Result<String> {
    let mut map: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for f in filters {
        let (k, v) = f.split_once('=').ok_or_else(|| anyhow::anyhow!("invalid filter `{f}`: expected KEY=VALUE"))?;
        map.entry(k).or_default().push(v);
    }
    Ok(serde_json::to_string(&map)?)
}

/// Applies `f` to each name, printing the name on success as docker does; every name is tried, the first
/// error is returned and the others are printed.
fn each(names: &[String], mut f: impl FnMut(&str) -> anyhow::Result<()>) -> anyhow::Result<ExitCode> {
    let mut first_err = None;
    for name in names {
        match f(name) {
            Ok(()) => println!("{name}"),
            Err(e) if first_err.is_none() => first_err = Some(e),
            Err(e) => eprintln!("Error response from daemon: {}", super::chain(&e)),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_docker_json() {
        let f = filters_json(&["status=exited".into(), "label=a=b".into(), "status=created".into()]).expect("valid");
        assert_eq!(f, r#"{"label":["a=b"],"status":["exited","created"]}"#);
        assert!(filters_json(&["nokey".into()]).is_err_and(|e| e.to_string().contains("KEY=VALUE")));
    }
}
