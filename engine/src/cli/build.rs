//! `engine build`: parses docker's flags, reads the context (a directory, or a tar or Dockerfile on stdin) and
//! the Dockerfile, hands them to [`engine::build::executor::build`] with a resolver that pulls missing base
//! images, and prints the classic builder's output. Every build failure exits 1, as `docker build` does.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use engine::build::context::BuildContext;
use engine::build::executor::{self, BuildOptions};
use engine::container::ContainerStore;
use engine::image::ImageStore;
use engine::reference::Reference;

use super::{Context, ExitError};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag (NAME[:TAG]); may be repeated.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from stdin).
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Build up to this stage.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the layer cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Always pull the base images.
    #[arg(long)]
    pub pull: bool,
    /// Set metadata on the image (KEY=VALUE).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    /// Network for RUN steps: bridge (default), none, host or a network name.
    #[arg(long)]
    pub network: Option<String>,
    /// Write the image ID to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// The context directory, or `-` for a tar (or a lone Dockerfile) on stdin.
    pub context: String,
}

/// What stdin held for `engine build -`.
enum StdinContext {
    Tar(Vec<u8>),
    Dockerfile(String),
}

pub(super) fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io::stdin().lock().read_to_end(&mut buf).context("cannot read standard input")?;
    Ok(buf)
}

pub(super) fn is_archive(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b]) || (bytes.len() >= 262 && &bytes[257..262] == b"ustar")
}

pub fn build(a: BuildArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let code = |e: anyhow::Error| -> anyhow::Error {
        let message = super::chain(&e);
        ExitError { code: 1, message }.into()
    };
    build_inner(a, ctx).map_err(code)
}

fn build_inner(a: BuildArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let root = ctx.open_root()?;
    let images = ImageStore::open(&root)?;
    let containers = ContainerStore::open(&root);
    let tags = a.tags.iter().map(|t| Reference::parse(t)).collect::<Result<Vec<_>, _>>()?;
    let mut build_args = BTreeMap::new();
    for arg in &a.build_args {
        match arg.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_owned(), v.to_owned());
            }
            None => {
                if let Ok(v) = std::env::var(arg) {
                    build_args.insert(arg.clone(), v);
                }
            }
        }
    }
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_owned(), v.to_owned());
    }
    let stdin = if a.context == "-" {
        let bytes = read_stdin()?;
        Some(if is_archive(&bytes) {
            StdinContext::Tar(bytes)
        } else {
            StdinContext::Dockerfile(String::from_utf8(bytes).context("the Dockerfile on stdin is not UTF-8")?)
        })
    } else {
        None
    };
    let empty_dir;
    let context = match &stdin {
        Some(StdinContext::Tar(bytes)) => BuildContext::from_tar(&root, bytes.as_slice())?,
        Some(StdinContext::Dockerfile(_)) => {
            // A lone Dockerfile has an empty context: COPY finds nothing.
            empty_dir = root.staging_dir("build-context").context("cannot create a staging directory")?;
            BuildContext::from_dir(empty_dir.path())?
        }
        None => {
            let dir = Path::new(&a.context);
            if !dir.is_dir() {
                anyhow::bail!("unable to prepare context: path {:?} not found (give a directory or -)", a.context);
            }
            BuildContext::from_dir(dir)?
        }
    };
    let (dockerfile, dockerfile_name) = match (&stdin, a.file.as_deref()) {
        (Some(StdinContext::Dockerfile(text)), _) => (text.clone(), "Dockerfile".to_owned()),
        (Some(StdinContext::Tar(_)), Some("-")) | (None, Some("-")) if a.context == "-" => {
            anyhow::bail!("invalid argument: can't use stdin for both build context and dockerfile")
        }
        (None, Some("-")) => {
            let bytes = read_stdin()?;
            (String::from_utf8(bytes).context("the Dockerfile on stdin is not UTF-8")?, "Dockerfile".to_owned())
        }
        (_, file) => {
            let (path, name) = match file {
                // In a tar context the file is inside the context; otherwise relative to the current directory.
                Some(f) if matches!(stdin, Some(StdinContext::Tar(_))) => (context.dir().join(f), f.to_owned()),
                Some(f) => (PathBuf::from(f), f.to_owned()),
                None => (context.dir().join("Dockerfile"), "Dockerfile".to_owned()),
            };
            // In a tar context, the file must be a regular file of the context, not a link out of it.
            if matches!(stdin, Some(StdinContext::Tar(_))) {
                let rel = Path::new(&name);
                let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
                if !engine::image::layer::parents_stay_in_root(context.dir(), rel) || !regular || rel.is_absolute() {
                    anyhow::bail!("the Dockerfile {name} must be a regular file inside the build context");
                }
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("unable to read the Dockerfile {} (give one with -f)", path.display()))?;
            let name = Path::new(&name).file_name().map_or(name.clone(), |n| n.to_string_lossy().into_owned());
            (text, name)
        }
    };
    let opts = BuildOptions {
        dockerfile,
        dockerfile_name,
        build_args,
        target: a.target.clone(),
        no_cache: a.no_cache,
        pull: a.pull,
        labels,
        tags,
        quiet: a.quiet,
        network: a.network.clone(),
    };
    let mut resolve = |name: &str, pull: bool| -> Result<engine::image::Image, String> {
        if !pull {
            match images.resolve(name) {
                Ok(image) => return Ok(image),
                Err(engine::image::Error::NotFound(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        super::registry::pull_for_build(&images, name, a.quiet).map_err(|e| super::chain(&e))?;
        images.resolve(name).map_err(|e| e.to_string())
    };
    let mut stdout = io::stdout();
    let built = executor::build(&images, &containers, &context, &opts, &mut resolve, &mut stdout)?;
    if !built.unused_args.is_empty() {
        eprintln!("[Warning] One or more build-args [{}] were not consumed", built.unused_args.join(" "));
    }
    if let Some(path) = &a.iidfile {
        std::fs::write(path, built.image.id.to_string())
            .with_context(|| format!("cannot write the image ID to {}", path.display()))?;
    }
    let _ = stdout.flush();
    Ok(ExitCode::SUCCESS)
}
