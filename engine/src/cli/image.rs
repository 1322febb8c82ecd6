//! Image verbs: `import`, `images`, `tag`, `rmi`, `history`, and the `image …` group (`ls`, `rm`, `prune`,
//! `inspect`, `tag`, `history`, `import`).

use std::fs::File;
use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use engine::humanize;
use engine::image::{change, import::ImportOptions, ImageStore, Removal, RunConfig};
use engine::reference::Reference;

use super::{container, table, Context};

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Create an image from a root filesystem tar (plain or gzip), a file or `-` for stdin.
    Import(ImportArgs),
    /// List images.
    Images(ImagesArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Remove images.
    Rmi(RmiArgs),
    /// Show the history of an image.
    History(HistoryArgs),
}

#[derive(Subcommand, Debug)]
pub enum ImageGroupCommand {
    Import(ImportArgs),
    #[command(alias = "list")]
    Ls(ImagesArgs),
    Tag(TagArgs),
    #[command(alias = "remove")]
    Rm(RmiArgs),
    History(HistoryArgs),
    /// Display detailed information on one or more images.
    Inspect(ImageInspectArgs),
    /// Remove unused images.
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, WORKDIR, USER…).
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// Commit message for the history.
    #[arg(short, long)]
    pub message: Option<String>,
    /// The tar file, or `-` for standard input.
    pub file: String,
    /// REPOSITORY[:TAG] to name the image.
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate build images).
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only images of this repository (and tag).
    pub repository: Option<String>,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Force removal (untag everywhere, even if a container uses the image).
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long)]
    pub no_trunc: bool,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct ImageInspectArgs {
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only nameless ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(cmd: ImageCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Import(a) => import(a, ctx),
        ImageCommand::Images(a) => images(a, ctx),
        ImageCommand::Tag(a) => tag(a, ctx),
        ImageCommand::Rmi(a) => rmi(a, ctx),
        ImageCommand::History(a) => history(a, ctx),
    }
}

pub fn run_group(cmd: ImageGroupCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageGroupCommand::Import(a) => import(a, ctx),
        ImageGroupCommand::Ls(a) => images(a, ctx),
        ImageGroupCommand::Tag(a) => tag(a, ctx),
        ImageGroupCommand::Rm(a) => rmi(a, ctx),
        ImageGroupCommand::History(a) => history(a, ctx),
        ImageGroupCommand::Inspect(a) => inspect(a, ctx),
        ImageGroupCommand::Prune(a) => prune(a, ctx),
    }
}

fn store(ctx: &Context) -> anyhow::Result<ImageStore> {
    Ok(ImageStore::open(&ctx.open_root()?)?)
}

fn import(a: ImportArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let name = a.name.as_deref().map(Reference::parse).transpose()?;
    let mut run_config = RunConfig::default();
    for c in &a.changes {
        change::apply(&mut run_config, c)?;
    }
    let options = ImportOptions { name, message: a.message, run_config };
    let image = if a.file == "-" {
        store.import(io::stdin().lock(), "-", options)
    } else {
        let file = File::open(&a.file).with_context(|| format!("cannot open {}", a.file))?;
        store.import(file, &a.file, options)
    }
    .with_context(|| format!("cannot import {}", if a.file == "-" { "standard input" } else { &a.file }))?;
    println!("{}", image.id);
    Ok(ExitCode::SUCCESS)
}

fn images(a: ImagesArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let filter = a.repository.as_deref().map(Reference::parse_bare).transpose()?;
    let mut rows = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for image in store.list()? {
        let id = if a.no_trunc { image.id.to_string() } else { image.id.short().to_owned() };
        let created = image.config.created.as_deref().map(humanize::since).unwrap_or_default();
        let size = humanize::size(store.image_size(&image));
        let names: Vec<&Reference> = image.names.iter().filter(|n| n.tag.is_some()).collect();
        let names: Vec<Option<&Reference>> =
            if names.is_empty() { vec![None] } else { names.into_iter().map(Some).collect() };
        for name in names {
            if let Some(f) = &filter {
                let matches = name
                    .is_some_and(|n| n.name() == f.name() && f.tag.as_ref().is_none_or(|t| n.tag.as_ref() == Some(t)));
                if !matches {
                    continue;
                }
            }
            let (repo, tag) = match name {
                Some(n) => (n.familiar_name(), n.tag.clone().unwrap_or_default()),
                None => ("<none>".to_owned(), "<none>".to_owned()),
            };
            if !ids.contains(&id) {
                ids.push(id.clone());
            }
            rows.push(vec![repo, tag, id.clone(), created.clone(), size.clone()]);
        }
    }
    if a.quiet {
        let mut out = io::stdout().lock();
        for id in ids {
            writeln!(out, "{id}")?;
        }
    } else {
        table::print(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn tag(a: TagArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    store(ctx)?.tag(&a.source, &a.target)?;
    Ok(ExitCode::SUCCESS)
}

fn rmi(a: RmiArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let users = container::image_users(ctx)?;
    let used_by = |id: &engine::digest::Digest| users.iter().find(|(i, _)| i == id).map(|(_, c)| c.clone());
    let mut failed = None;
    for name in &a.images {
        match store.remove(name, a.force, &used_by) {
            Ok(removals) => {
                for r in removals {
                    match r {
                        Removal::Untagged(n) => println!("Untagged: {}", n.familiar()),
                        Removal::Deleted(d) => println!("Deleted: {d}"),
                    }
                }
            }
            Err(e) => {
                eprintln!("Error: {e}");
                failed = Some(e);
            }
        }
    }
    Ok(if failed.is_some() { ExitCode::from(engine::error::EXIT_ENGINE) } else { ExitCode::SUCCESS })
}

fn history(a: HistoryArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let image = store.resolve(&a.image)?;
    let rows = store.history(&image);
    if a.quiet {
        for (id, _, _) in rows {
            println!("{}", id.map_or("<missing>".to_owned(), |d| d.short().to_owned()));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(id, h, size)| {
            let id =
                id.map_or("<missing>".to_owned(), |d| if a.no_trunc { d.to_string() } else { d.short().to_owned() });
            let mut by = h.created_by.unwrap_or_default().replace('\t', " ");
            if !a.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            let created = h.created.as_deref().map(humanize::since).unwrap_or_default();
            vec![id, created, by, humanize::size(size), h.comment.unwrap_or_default()]
        })
        .collect();
    table::print(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

fn inspect(a: ImageInspectArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let mut values = Vec::new();
    let mut missing = None;
    for name in &a.images {
        match store.resolve(name) {
            Ok(image) => values.push(store.inspect_json(&image)),
            Err(e) => missing = Some(e),
        }
    }
    super::print_inspect(&values, a.format.as_deref())?;
    match missing {
        Some(e) => Err(e.into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn prune(a: PruneArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let users = container::image_users(ctx)?;
    let (removals, reclaimed) = store.prune(a.all, &|id| users.iter().any(|(i, _)| i == id))?;
    // Build cache records whose layers went with the pruned images are misses now: drop them.
    engine::build::cache::BuildCache::open(store.root()).prune_dangling();
    if !removals.is_empty() {
        println!("Deleted Images:");
        for r in removals {
            match r {
                Removal::Untagged(n) => println!("untagged: {}", n.familiar()),
                Removal::Deleted(d) => println!("deleted: {d}"),
            }
        }
        println!();
    }
    println!("Total reclaimed space: {}", humanize::size(reclaimed));
    Ok(ExitCode::SUCCESS)
}
