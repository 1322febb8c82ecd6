//! `volume …` verbs: `create`, `ls`, `inspect`, `rm`, `prune`. Each parses its flags, calls one
//! `engine::volume::VolumeStore` function and prints docker's output. Which container uses a volume comes from
//! the container records (their mount points), for `rm`'s refusal and `prune`'s choice.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use engine::container::{mounts, ContainerStore};
use engine::humanize;
use engine::volume::VolumeStore;

use super::{table, Context};

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes.
    Inspect(InspectArgs),
    /// Remove one or more volumes.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused anonymous volumes (all unused volumes with -a).
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Volume driver (only local).
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Set metadata on the volume (KEY=VALUE).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Set driver specific options (KEY=VALUE).
    #[arg(short = 'o', long = "opt")]
    pub options: Vec<String>,
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display volume names.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Remove volumes even if a container uses them.
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(cmd: VolumeCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        VolumeCommand::Create(a) => create(a, ctx),
        VolumeCommand::Ls(a) => ls(a, ctx),
        VolumeCommand::Inspect(a) => inspect(a, ctx),
        VolumeCommand::Rm(a) => rm(a, ctx),
        VolumeCommand::Prune(a) => prune(a, ctx),
    }
}

fn store(ctx: &Context) -> anyhow::Result<VolumeStore> {
    Ok(VolumeStore::open(&ctx.open_root()?)?)
}

fn key_values(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

/// (volume name, container ID) for every volume a container mounts.
fn volume_users(ctx: &Context) -> anyhow::Result<Vec<(String, String)>> {
    Ok(mounts::volume_users(&ContainerStore::open(&ctx.open_root()?))?)
}

fn create(a: CreateArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if a.driver != "local" {
        anyhow::bail!("plugin \"{}\" not found: only the local volume driver exists", a.driver);
    }
    let v = store(ctx)?.create(a.name.as_deref(), key_values(&a.labels), key_values(&a.options))?;
    println!("{}", v.name);
    Ok(ExitCode::SUCCESS)
}

fn ls(a: LsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let volumes = store(ctx)?.list()?;
    if a.quiet {
        let mut out = std::io::stdout().lock();
        for v in &volumes {
            writeln!(out, "{}", v.name)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = volumes.iter().map(|v| vec![v.driver.clone(), v.name.clone()]).collect();
    table::print(&["DRIVER", "VOLUME NAME"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

fn inspect(a: InspectArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let mut values = Vec::new();
    let mut missing = None;
    for name in &a.volumes {
        match store.get(name) {
            Ok(v) => values.push(store.inspect_json(&v)),
            Err(e) => missing = Some(e),
        }
    }
    super::print_inspect(&values, a.format.as_deref())?;
    match missing {
        Some(e) => Err(e.into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn rm(a: RmArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let users = volume_users(ctx)?;
    let used_by = |name: &str| users.iter().find(|(v, _)| v == name).map(|(_, c)| c.clone());
    let mut failed = false;
    for name in &a.volumes {
        match store.remove(name, a.force, &used_by) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(engine::error::EXIT_ENGINE) } else { ExitCode::SUCCESS })
}

fn prune(a: PruneArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let users = volume_users(ctx)?;
    let (removed, reclaimed) = store.prune(a.all, &|name| users.iter().any(|(v, _)| v == name))?;
    if !removed.is_empty() {
        println!("Deleted Volumes:");
        for name in removed {
            println!("{name}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", humanize::size(reclaimed));
    Ok(ExitCode::SUCCESS)
}
