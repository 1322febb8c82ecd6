//! The executor of `engine build`: walks the stages the target needs (see [`crate::build::stages`]) and runs
//! their instructions as docker's classic builder does, one image per step, printing `Step n/m : …`,
//! ` ---> Using cache` / ` ---> Running in …` and ` ---> <id>`.
//!
//! Each step turns the stage's current image ([`StepImage`], not in the index) into the next one: metadata
//! instructions change the config only; `RUN` commits a container's changes ([`crate::build::run`]);
//! `COPY`/`ADD`/`WORKDIR` write their layer directly ([`crate::build::copy`]). Before a step runs, the layer
//! cache ([`crate::build::cache`]) is asked with key = parent image ID + the step as expanded (+ content hash
//! for `COPY`/`ADD`); a hit reuses the recorded image, so an unchanged build reproduces the same image IDs, and a
//! miss changes the parent ID of every later step, which invalidates them. Only the final image is written to
//! the index (under each `-t` name, or nameless), so a failed build tags nothing and leaves no image behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, MediaType};

use crate::build::cache::{self, BuildCache, StepImage};
use crate::build::context::{select_in_tree, BuildContext};
use crate::build::copy::{self, CopyPlan, Source};
use crate::build::dockerignore::EntryKind;
use crate::build::image_mount::ImageMount;
use crate::build::instruction::{CommandLine, Healthcheck, NetworkMode, Transfer};
use crate::build::run::{RunOutcome, RunRequest};
use crate::build::stages::{Base, Dockerfile};
use crate::build::{Command, Instruction, Lexer, RunProgram};
use crate::container::ContainerStore;
use crate::digest::Digest;
use crate::image::store::Lease;
use crate::image::{HealthConfig, History, Image, ImageConfig, ImageStore};
use crate::reference::Reference;

/// Build args docker passes to `RUN` without an `ARG` declaring them (and leaves out of the cache key).
const PREDEFINED_ARGS: [&str; 8] =
    ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy"];

/// Errors of a build. Each says which step failed where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Dockerfile or `.dockerignore` problem found before or while running (names `file:line`).
    #[error(transparent)]
    Dockerfile(#[from] crate::build::Error),
    /// A step that cannot be carried out as written (`Dockerfile:7: COPY failed: …`).
    #[error("{file}:{line}: {message}")]
    Step { file: String, line: usize, message: String },
    /// A `RUN` exited non-zero (docker's wording).
    #[error("The command '{command}' returned a non-zero code: {code}")]
    RunFailed { command: String, code: i32 },
    /// `SIGINT`/`SIGTERM` during a `RUN`: its command was killed and its container removed.
    #[error("the build was interrupted: the running step was stopped and its container removed; nothing was tagged")]
    Interrupted,
    /// The base image (or a `COPY --from` image) could not be found or pulled.
    #[error("{file}:{line}: cannot get image {name}: {message}")]
    BaseImage { file: String, line: usize, name: String, message: String },
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Container(#[from] crate::container::Error),
    #[error(transparent)]
    Store(#[from] crate::image::store::Error),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Everything `engine build` takes besides the context.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's text and the name it has in messages (`Dockerfile`, `-`).
    pub dockerfile: String,
    pub dockerfile_name: String,
    /// `--build-arg` values (a bare `--build-arg K` is resolved from the environment by the caller).
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--pull`: fetch base images even when present.
    pub pull: bool,
    /// `--label`: added to the final image.
    pub labels: BTreeMap<String, String>,
    pub tags: Vec<Reference>,
    /// `-q`: no step output, no `RUN` output.
    pub quiet: bool,
    /// `--network`: the network of `RUN` steps without `--network=` (default: the `bridge` network).
    pub network: Option<String>,
}

/// Finds (or pulls) an image by name; `pull` forces a pull. Supplied by the caller, which knows registries.
pub type ImageResolver<'a> = dyn FnMut(&str, bool) -> std::result::Result<Image, String> + 'a;

/// What a finished build made.
#[derive(Debug, Clone)]
pub struct Built {
    pub image: Image,
    /// Build args given but never declared by an `ARG` (docker warns about them).
    pub unused_args: Vec<String>,
}

/// One stage's state between steps.
struct StageState {
    image: StepImage,
    /// `None` for an image built from scratch with no step yet.
    id: Option<Digest>,
    /// `ARG`s declared in the stage that have a value, in declaration order.
    args: Vec<(String, String)>,
    /// `CMD` set in this stage (an `ENTRYPOINT` then keeps it).
    cmd_set: bool,
}

impl StageState {
    /// Variables for expansion: the stage's args, overridden by the image's `ENV`.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.args.clone();
        for e in &self.image.config.config.env {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            env.push((k.to_owned(), v.to_owned()));
        }
        env
    }

    fn shell(&self) -> Vec<String> {
        let s = &self.image.config.config.shell;
        if s.is_empty() {
            vec!["/bin/sh".to_owned(), "-c".to_owned()]
        } else {
            s.clone()
        }
    }
}

/// The builder for one `engine build` call.
pub struct Builder<'a> {
    images: &'a ImageStore,
    containers: &'a ContainerStore,
    context: &'a BuildContext,
    opts: &'a BuildOptions,
    resolve: &'a mut ImageResolver<'a>,
    out: &'a mut dyn Write,
    cache: BuildCache,
    lease: Lease,
    staging: tempfile::TempDir,
    df: Dockerfile,
    lexer: Lexer,
    step: usize,
    total: usize,
    used_args: BTreeSet<String>,
    globals: BTreeMap<String, String>,
    /// The stored images stages started from: a build that changes nothing names the base image itself.
    bases: Vec<Image>,
}

/// Runs a build; returns the final image, already in the index under `opts.tags`.
pub fn build<'a>(
    images: &'a ImageStore,
    containers: &'a ContainerStore,
    context: &'a BuildContext,
    opts: &'a BuildOptions,
    resolve: &'a mut ImageResolver<'a>,
    out: &'a mut dyn Write,
) -> Result<Built> {
    let df = Dockerfile::parse(&opts.dockerfile, &opts.dockerfile_name)?;
    let root = images.root();
    let mut b = Builder {
        images,
        containers,
        context,
        opts,
        resolve,
        out,
        cache: BuildCache::open(root),
        lease: Lease::new(root)?,
        staging: root.staging_dir("build").map_err(io_err("cannot create a staging directory"))?,
        lexer: df.lexer(),
        df,
        step: 0,
        total: 0,
        used_args: BTreeSet::new(),
        globals: BTreeMap::new(),
        bases: Vec::new(),
    };
    b.run()
}

impl Builder<'_> {
    fn say(&mut self, line: &str) -> Result<()> {
        if !self.opts.quiet {
            writeln!(self.out, "{line}").and_then(|()| self.out.flush()).map_err(io_err("cannot write the output"))?;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<Built> {
        self.globals = self.df.global_args(&self.opts.build_args)?;
        for i in &self.df.global_args {
            if let Command::Arg(defs) = &i.command {
                self.used_args.extend(defs.iter().map(|d| d.name.clone()));
            }
        }
        let target = self.df.stage_for_target(self.opts.target.as_deref())?.index;
        let order = self.df.needed_stages(target, &self.globals)?;
        self.total = order.iter().map(|&i| 1 + self.df.stages[i].instructions.len()).sum();
        let mut built: BTreeMap<usize, StepImage> = BTreeMap::new();
        for index in order {
            let image = self.build_stage(index, &built)?;
            built.insert(index, image);
        }
        let Some(mut last) = built.remove(&target) else {
            return Err(crate::build::Error::StageIndex { index: target, count: self.df.stages.len() }.into());
        };
        if !self.opts.labels.is_empty() {
            last.config.config.labels.extend(self.opts.labels.clone());
        }
        let image = self.commit(last)?;
        if self.opts.quiet {
            writeln!(self.out, "{}", image.id).map_err(io_err("cannot write the output"))?;
        } else {
            self.say(&format!("Successfully built {}", image.id.short()))?;
            for t in &self.opts.tags {
                self.say(&format!("Successfully tagged {}", t.familiar()))?;
            }
        }
        let unused_args = self
            .opts
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str()))
            .cloned()
            .collect();
        Ok(Built { image, unused_args })
    }

    /// Writes the final image to the index under every tag (or nameless).
    fn commit(&mut self, last: StepImage) -> Result<Image> {
        // `FROM image` and nothing that changes it: the result is that very image (docker gives its ID too).
        if let Some(base) = self.bases.iter().find(|b| b.config == last.config && b.layers == last.layers) {
            let mut image = base.clone();
            for t in &self.opts.tags {
                image = self.images.tag(&base.id.to_string(), &t.to_string())?;
            }
            return Ok(image);
        }
        if self.opts.tags.is_empty() {
            return Ok(self.images.commit_image(last.config, last.layers, None)?);
        }
        let mut image = None;
        for t in &self.opts.tags {
            image = Some(self.images.commit_image(last.config.clone(), last.layers.clone(), Some(t))?);
        }
        image.ok_or_else(|| Error::Io { context: "no image".into(), source: io::Error::other("no tags") })
    }

    fn step_error(&self, line: usize, message: impl Into<String>) -> Error {
        Error::Step { file: self.df.file.clone(), line, message: message.into() }
    }

    fn expand(&self, state: &StageState, word: &str, line: usize) -> Result<String> {
        self.lexer.expand(word, &state.env()).map_err(|source| {
            crate::build::Error::Expand {
                location: crate::build::Location { file: self.df.file.clone(), line, column: None },
                source,
            }
            .into()
        })
    }

    fn expand_words(&self, state: &StageState, word: &str, line: usize) -> Result<Vec<String>> {
        self.lexer.expand_words(word, &state.env()).map_err(|source| {
            crate::build::Error::Expand {
                location: crate::build::Location { file: self.df.file.clone(), line, column: None },
                source,
            }
            .into()
        })
    }

    fn build_stage(&mut self, index: usize, built: &BTreeMap<usize, StepImage>) -> Result<StepImage> {
        let stage = self.df.stages[index].clone();
        self.step += 1;
        self.say(&format!("Step {}/{} : {}", self.step, self.total, stage.from_instruction.original))?;
        let line = stage.from_instruction.line;
        let (image, id) = match self.df.base_of(index, &self.globals)? {
            Base::Scratch => {
                let config = ImageConfig { architecture: "amd64".into(), os: "linux".into(), ..ImageConfig::default() };
                (StepImage { config, layers: Vec::new() }, None)
            }
            Base::Stage(i) => {
                let image = built.get(&i).cloned().ok_or_else(|| self.step_error(line, "base stage was not built"))?;
                let id = image.id();
                (image, Some(id))
            }
            Base::Image(name) => {
                let image = (self.resolve)(&name, self.opts.pull).map_err(|message| Error::BaseImage {
                    file: self.df.file.clone(),
                    line,
                    name: name.clone(),
                    message,
                })?;
                let id = image.id.clone();
                self.bases.push(image.clone());
                (StepImage { config: image.config, layers: image.layers }, Some(id))
            }
        };
        if let Some(id) = &id {
            self.say(&format!(" ---> {}", id.short()))?;
        }
        let mut state = StageState { image, id, args: Vec::new(), cmd_set: false };
        let triggers = std::mem::take(&mut state.image.config.config.on_build);
        if !triggers.is_empty() {
            self.say(&format!(
                "# Executing {} build trigger{}",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            ))?;
            // The triggers are consumed: the new image does not carry them on (docker's rule).
            state.id = Some(state.image.id());
            for t in &triggers {
                let parsed =
                    crate::build::parser::parse(t, &format!("{} (ONBUILD trigger of line {line})", self.df.file))?;
                for i in parsed.instructions {
                    if matches!(i.command, Command::From(_) | Command::Onbuild(_) | Command::Maintainer(_)) {
                        return Err(self.step_error(line, format!("{} is not allowed as an ONBUILD trigger", i.name())));
                    }
                    let i = Instruction { line, end_line: line, ..i };
                    self.execute(&mut state, &i, built)?;
                }
            }
            if let Some(id) = &state.id {
                self.say(&format!(" ---> {}", id.short()))?;
            }
        }
        for instruction in &stage.instructions {
            self.step += 1;
            self.say(&format!("Step {}/{} : {}", self.step, self.total, instruction.original))?;
            self.execute(&mut state, instruction, built)?;
            if let Some(id) = &state.id {
                self.say(&format!(" ---> {}", id.short()))?;
            }
        }
        Ok(state.image)
    }

    /// Looks the step up in the cache; on a miss runs `make` and records its result. Returns whether it hit.
    fn cached(
        &mut self,
        state: &mut StageState,
        key_text: &str,
        make: &mut dyn FnMut(&mut Self, &StageState) -> Result<StepImage>,
    ) -> Result<()> {
        let key = cache::key(state.id.as_ref(), key_text);
        if !self.opts.no_cache {
            if let Some(hit) = self.cache.get(&key) {
                self.say(" ---> Using cache")?;
                for l in &hit.layers {
                    if let Ok(d) = l.digest().to_string().parse::<Digest>() {
                        self.lease.add(&d)?;
                    }
                }
                state.id = Some(hit.id());
                state.image = hit;
                return Ok(());
            }
        }
        let next = make(self, state)?;
        if let Err(e) = self.cache.put(&key, &next) {
            tracing::warn!("cannot record the build cache: {e}");
        }
        state.id = Some(next.id());
        state.image = next;
        Ok(())
    }

    /// A new image from the current one with a changed config and no layer.
    fn metadata_step(
        &mut self,
        state: &mut StageState,
        key_text: String,
        change: impl Fn(&mut ImageConfig),
    ) -> Result<()> {
        let created_by = format!("/bin/sh -c #(nop)  {key_text}");
        self.cached(state, &key_text, &mut |_, state| {
            let mut image = state.image.clone();
            change(&mut image.config);
            push_history(&mut image.config, created_by.clone(), true);
            Ok(image)
        })
    }

    fn execute(
        &mut self,
        state: &mut StageState,
        instruction: &Instruction,
        built: &BTreeMap<usize, StepImage>,
    ) -> Result<()> {
        let line = instruction.line;
        match &instruction.command {
            Command::From(_) => Err(self.step_error(line, "FROM inside a stage")),
            Command::Maintainer(name) => {
                let name = name.clone();
                self.metadata_step(state, format!("MAINTAINER {name}"), move |c| c.author = Some(name.clone()))
            }
            Command::Env(pairs) => {
                let mut set = Vec::new();
                for kv in pairs {
                    set.push((self.expand(state, &kv.key, line)?, self.expand(state, &kv.value, line)?));
                }
                let text = set.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
                self.metadata_step(state, format!("ENV {text}"), move |c| {
                    for (k, v) in &set {
                        let entry = format!("{k}={v}");
                        match c.config.env.iter_mut().find(|e| e.split_once('=').map_or(e.as_str(), |p| p.0) == k) {
                            Some(e) => *e = entry,
                            None => c.config.env.push(entry),
                        }
                    }
                })
            }
            Command::Label(pairs) => {
                let mut set = Vec::new();
                for kv in pairs {
                    set.push((self.expand(state, &kv.key, line)?, self.expand(state, &kv.value, line)?));
                }
                let text = set.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
                self.metadata_step(state, format!("LABEL {text}"), move |c| {
                    c.config.labels.extend(set.iter().cloned());
                })
            }
            Command::Arg(defs) => {
                let mut text = Vec::new();
                for def in defs {
                    let name = self.expand(state, &def.name, line)?;
                    self.used_args.insert(name.clone());
                    let value = match (self.opts.build_args.get(&name), &def.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(d)) => Some(self.expand(state, d, line)?),
                        (None, None) => self.globals.get(&name).cloned(),
                    };
                    state.args.retain(|(k, _)| k != &name);
                    if let Some(v) = value {
                        state.args.push((name.clone(), v));
                    }
                    // The key has the declaration as written: a changed value invalidates where it is used.
                    text.push(match &def.default {
                        Some(d) => format!("{name}={d}"),
                        None => name,
                    });
                }
                self.metadata_step(state, format!("ARG {}", text.join(" ")), |_| {})
            }
            Command::Expose(words) => {
                let mut ports = Vec::new();
                for w in words {
                    for p in self.expand_words(state, w, line)? {
                        ports.push(normalise_port(&p).map_err(|m| self.step_error(line, m))?);
                    }
                }
                let text = ports.join(" ");
                self.metadata_step(state, format!("EXPOSE {text}"), move |c| {
                    for p in &ports {
                        c.config.exposed_ports.insert(p.clone(), Default::default());
                    }
                })
            }
            Command::Volume(words) => {
                let mut vols = Vec::new();
                for w in words {
                    vols.extend(self.expand_words(state, w, line)?);
                }
                if vols.iter().any(|v| v.trim().is_empty()) {
                    return Err(self.step_error(line, "VOLUME specified can not be an empty string"));
                }
                let text = format!("[{}]", vols.join(" "));
                self.metadata_step(state, format!("VOLUME {text}"), move |c| {
                    for v in &vols {
                        c.config.volumes.insert(v.clone(), Default::default());
                    }
                })
            }
            Command::User(user) => {
                let user = self.expand(state, user, line)?;
                self.metadata_step(state, format!("USER {user}"), move |c| c.config.user = user.clone())
            }
            Command::StopSignal(sig) => {
                let sig = self.expand(state, sig, line)?;
                crate::container::kill::parse_signal(&sig).map_err(|_| {
                    self.step_error(line, format!("invalid STOPSIGNAL {sig:?}: use a name like SIGTERM or a number"))
                })?;
                self.metadata_step(state, format!("STOPSIGNAL {sig}"), move |c| {
                    c.config.stop_signal = Some(sig.clone())
                })
            }
            Command::Shell(args) => {
                let args = args.clone();
                self.metadata_step(state, format!("SHELL {}", json(&args)), move |c| c.config.shell = args.clone())
            }
            Command::Onbuild(onbuild) => {
                let expr = onbuild.expression.clone();
                self.metadata_step(state, format!("ONBUILD {expr}"), move |c| c.config.on_build.push(expr.clone()))
            }
            Command::Cmd(cmd) => {
                let argv = self.command_line(state, cmd);
                state.cmd_set = true;
                self.metadata_step(state, format!("CMD {}", json(&argv)), move |c| c.config.cmd = Some(argv.clone()))
            }
            Command::Entrypoint(cmd) => {
                let argv = self.command_line(state, cmd);
                let keep_cmd = state.cmd_set;
                self.metadata_step(state, format!("ENTRYPOINT {}", json(&argv)), move |c| {
                    c.config.entrypoint = if argv.is_empty() { None } else { Some(argv.clone()) };
                    if !keep_cmd {
                        // docker: an ENTRYPOINT resets a CMD inherited from the base image.
                        c.config.cmd = None;
                    }
                })
            }
            Command::Healthcheck(h) => {
                let config = match h {
                    Healthcheck::None => HealthConfig { test: vec!["NONE".into()], ..HealthConfig::default() },
                    Healthcheck::Check { test, interval, timeout, start_period, start_interval, retries } => {
                        HealthConfig {
                            test: test.clone(),
                            interval: interval.as_nanos() as i64,
                            timeout: timeout.as_nanos() as i64,
                            start_period: start_period.as_nanos() as i64,
                            start_interval: start_interval.as_nanos() as i64,
                            retries: i64::from(*retries),
                        }
                    }
                };
                let text = serde_json::to_string(&config).unwrap_or_default();
                self.metadata_step(state, format!("HEALTHCHECK {text}"), move |c| {
                    c.config.healthcheck = Some(config.clone())
                })
            }
            Command::Workdir(dir) => {
                let dir = self.expand(state, dir, line)?;
                let path = clean_abs(&join_workdir(&state.image.config.config.working_dir, &dir));
                let key = format!("WORKDIR {path}");
                let created_by = format!("/bin/sh -c #(nop) {key}");
                self.cached(state, &key, &mut |b, state| {
                    let mut image = state.image.clone();
                    image.config.config.working_dir = path.clone();
                    let view = b.mount(&state.image)?;
                    let layer = if view.host_path(&path).is_dir() {
                        None
                    } else {
                        let tar = b.staging.path().join("workdir.tar");
                        let file = fs::File::create(&tar).map_err(io_err("cannot write the WORKDIR layer"))?;
                        copy::workdir_layer(&view, &path, io::BufWriter::new(file))
                            .map_err(|m| b.step_error(line, format!("WORKDIR {path}: {m}")))?;
                        Some(tar)
                    };
                    drop(view);
                    let empty = layer.is_none();
                    if let Some(tar) = layer {
                        b.add_layer(&mut image, &tar)?;
                    }
                    push_history(&mut image.config, created_by.clone(), empty);
                    Ok(image)
                })
            }
            Command::Run(run) => {
                if !run.mounts.is_empty() {
                    return Err(self.step_error(
                        line,
                        "RUN --mount is a BuildKit feature this builder does not support: use COPY, or a multi-stage COPY --from",
                    ));
                }
                if matches!(run.security, Some(crate::build::instruction::Security::Insecure)) {
                    return Err(self.step_error(line, "RUN --security=insecure is not supported"));
                }
                let network = match run.network {
                    Some(NetworkMode::None) => crate::network::NONE_NETWORK.to_owned(),
                    Some(NetworkMode::Host) => crate::network::HOST_NETWORK.to_owned(),
                    _ => match self.opts.network.as_deref() {
                        None | Some("default") => crate::network::DEFAULT_NETWORK.to_owned(),
                        Some(n) => n.to_owned(),
                    },
                };
                let mut binds = Vec::new();
                let argv = match run.program() {
                    RunProgram::Shell(s) => {
                        let mut a = state.shell();
                        a.push(s);
                        a
                    }
                    RunProgram::Exec(a) => a,
                    RunProgram::Script { name, body } => {
                        let host = self.staging.path().join(format!("script-{}", self.step));
                        fs::write(&host, &body).map_err(io_err("cannot write the heredoc script"))?;
                        set_mode(&host, 0o755)?;
                        let target = format!("/dev/pipes/{name}");
                        binds.push(format!("{}:{target}:ro", host.display()));
                        let mut a = state.shell();
                        a.push(target);
                        a
                    }
                };
                // Args in effect: declared ones, plus the predefined proxy args (kept out of the key).
                let declared: Vec<String> = state.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let mut env: Vec<String> = declared.clone();
                for p in PREDEFINED_ARGS {
                    if let Some(v) = self.opts.build_args.get(p) {
                        if !state.args.iter().any(|(k, _)| k == p) {
                            env.push(format!("{p}={v}"));
                        }
                    }
                }
                let image_env: BTreeSet<String> = state
                    .image
                    .config
                    .config
                    .env
                    .iter()
                    .map(|e| e.split_once('=').map_or(e.as_str(), |p| p.0).to_owned())
                    .collect();
                env.retain(|e| !image_env.contains(e.split_once('=').map_or(e.as_str(), |p| p.0)));
                let prefix = if declared.is_empty() {
                    String::new()
                } else {
                    format!("|{} {} ", declared.len(), declared.join(" "))
                };
                let command = argv.join(" ");
                let key = format!("RUN {prefix}{} network={network}", json(&argv));
                let created_by = format!("{prefix}{command}");
                let quiet = self.opts.quiet;
                self.cached(state, &key, &mut |b, state| {
                    let req = RunRequest {
                        argv: argv.clone(),
                        env: env.clone(),
                        network: &network,
                        binds: binds.clone(),
                        quiet,
                    };
                    let staging = b.staging.path().to_path_buf();
                    let mut announce = |id: &str| {
                        if !quiet {
                            let _ = writeln!(b.out, " ---> Running in {}", &id[..12]);
                            let _ = b.out.flush();
                        }
                    };
                    let outcome =
                        crate::build::run::run(b.containers, b.images, &state.image, &req, &staging, &mut announce)?;
                    match outcome {
                        RunOutcome::Failed { code, .. } => Err(Error::RunFailed { command: command.clone(), code }),
                        RunOutcome::Interrupted => Err(Error::Interrupted),
                        RunOutcome::Done { container, layer } => {
                            b.say(&format!("Removing intermediate container {}", &container[..12]))?;
                            let mut image = state.image.clone();
                            b.add_layer(&mut image, &layer)?;
                            let _ = fs::remove_file(&layer);
                            push_history(&mut image.config, created_by.clone(), false);
                            Ok(image)
                        }
                    }
                })
            }
            Command::Copy(c) if c.parents => {
                Err(self.step_error(line, "COPY --parents is not supported by this builder"))
            }
            Command::Copy(c) => self.transfer(state, line, "COPY", &c.transfer, c.from.as_deref(), false, None, built),
            Command::Add(a) => {
                if a.checksum.is_some() || a.keep_git_dir.is_some() {
                    return Err(self.step_error(line, "ADD --checksum and --keep-git-dir are not supported"));
                }
                self.transfer(state, line, "ADD", &a.transfer, None, true, a.unpack, built)
            }
        }
    }

    fn command_line(&self, state: &StageState, cmd: &CommandLine) -> Vec<String> {
        match cmd {
            CommandLine::Exec(a) => a.clone(),
            CommandLine::Shell(s) => {
                let mut a = state.shell();
                a.push(s.clone());
                a
            }
        }
    }

    fn mount(&self, image: &StepImage) -> Result<ImageMount> {
        let dirs = self.images.layer_dirs(&as_image(image))?;
        ImageMount::new(self.images.root(), &dirs).map_err(io_err("cannot mount the image for the build"))
    }

    /// Stores `tar` as a layer blob and appends it to `image`.
    fn add_layer(&self, image: &mut StepImage, tar: &Path) -> Result<()> {
        let (diff_id, size) = self.images.add_layer_tar(tar, &self.lease)?;
        let digest: oci_spec::image::Digest = diff_id.to_string().parse().map_err(|e: oci_spec::OciSpecError| {
            Error::Io { context: "layer digest".into(), source: io::Error::other(e.to_string()) }
        })?;
        image.config.rootfs.diff_ids.push(diff_id.to_string());
        image.layers.push(Descriptor::new(MediaType::ImageLayer, size, digest));
        Ok(())
    }

    #[expect(clippy::too_many_arguments, reason = "COPY and ADD share this; a struct would only rename the list")]
    fn transfer(
        &mut self,
        state: &mut StageState,
        line: usize,
        verb: &str,
        t: &Transfer,
        from: Option<&str>,
        is_add: bool,
        unpack: Option<bool>,
        built: &BTreeMap<usize, StepImage>,
    ) -> Result<()> {
        if !t.excludes.is_empty() {
            return Err(self.step_error(line, format!("{verb} --exclude is not supported by this builder")));
        }
        let fail = |b: &Self, m: String| b.step_error(line, format!("{verb} failed: {m}"));
        let dest = self.expand(state, &t.dest, line)?;
        let mut dest_abs = clean_abs(&join_workdir(&state.image.config.config.working_dir, &dest));
        if (dest.ends_with('/') || dest == "." || dest.ends_with("/.")) && !dest_abs.ends_with('/') {
            dest_abs.push('/');
        }
        let chown = t.chown.as_deref().map(|c| self.expand(state, c, line)).transpose()?;
        let chmod = match &t.chmod {
            Some(m) => {
                let m = self.expand(state, m, line)?;
                Some(u32::from_str_radix(&m, 8).ok().filter(|v| *v <= 0o7777).ok_or_else(|| {
                    self.step_error(line, format!("invalid --chmod={m}: use an octal mode such as 755"))
                })?)
            }
            None => None,
        };
        // Where the sources come from: the context, a built stage or an image.
        let mut from_view: Option<ImageMount> = None;
        if let Some(f) = from {
            let stage = match f.parse::<usize>() {
                Ok(i) => Some(i),
                Err(_) => self.df.stages.iter().find(|s| s.name() == Some(f.to_lowercase().as_str())).map(|s| s.index),
            };
            let image = match stage {
                Some(i) => {
                    built.get(&i).cloned().ok_or_else(|| self.step_error(line, format!("stage {f} was not built")))?
                }
                None => {
                    let image = (self.resolve)(f, false).map_err(|message| Error::BaseImage {
                        file: self.df.file.clone(),
                        line,
                        name: f.to_owned(),
                        message,
                    })?;
                    StepImage { config: image.config, layers: image.layers }
                }
            };
            from_view = Some(self.mount(&image)?);
        }
        let mut sources = Vec::new();
        let mut described = Vec::new();
        for src in &t.sources {
            let src = self.expand(state, src, line)?;
            described.push(src.clone());
            if is_add && (src.starts_with("http://") || src.starts_with("https://")) {
                let (name, host) = self.fetch(&src, &dest_abs).map_err(|m| fail(self, m))?;
                sources.push(Source::File { name, host, mode: 0o600 });
                continue;
            }
            if is_add && src.contains("://") {
                return Err(fail(self, format!("{src}: only local files and http(s) URLs can be added")));
            }
            let selected = match &from_view {
                Some(view) => select_in_tree(&view.path(), &src),
                None => self.context.select(&src),
            }
            .map_err(|m| fail(self, m))?;
            for sel in selected {
                let archive = is_add
                    && from.is_none()
                    && unpack != Some(false)
                    && sel.kind == EntryKind::File
                    && copy::archive_kind(&sel.host).map_err(|e| fail(self, e.to_string()))?.is_some();
                sources.push(if archive { Source::Archive(sel.host) } else { Source::Tree(sel) });
            }
        }
        for (n, inline) in t.inline.iter().enumerate() {
            let data = if inline.expand {
                Lexer::for_heredoc_body().expand(&inline.data, &state.env()).map_err(|source| {
                    Error::Dockerfile(crate::build::Error::Expand {
                        location: crate::build::Location { file: self.df.file.clone(), line, column: None },
                        source,
                    })
                })?
            } else {
                inline.data.clone()
            };
            let host = self.staging.path().join(format!("inline-{}-{n}", self.step));
            fs::write(&host, data).map_err(io_err("cannot write a heredoc file"))?;
            described.push(format!("<<{}", inline.name));
            sources.push(Source::File { name: inline.name.clone(), host, mode: 0o644 });
        }
        if sources.is_empty() {
            return Err(fail(self, "no source files were specified".to_owned()));
        }
        let hash = copy::content_hash(&sources).map_err(|e| fail(self, format!("cannot read the sources: {e}")))?;
        let flags = format!(
            "{}{}{}",
            from.map(|f| format!("--from={f} ")).unwrap_or_default(),
            chown.as_ref().map(|c| format!("--chown={c} ")).unwrap_or_default(),
            chmod.map(|m| format!("--chmod={m:o} ")).unwrap_or_default()
        );
        let key = format!("{verb} {flags}{} {dest_abs} content={hash}", described.join(" "));
        let created_by = format!("/bin/sh -c #(nop) {verb} {flags}{} in {dest_abs} ", described.join(" "));
        // `from_view` stays mounted until the layer is written: the sources are paths inside it.
        let mut sources = Some(sources);
        self.cached(state, &key, &mut |b, state| {
            let sources = sources.take().unwrap_or_default();
            let view = b.mount(&state.image)?;
            let owner = match &chown {
                Some(spec) => Some(resolve_owner(&view.path(), spec).map_err(|m| fail(b, m))?),
                None => None,
            };
            let plan = CopyPlan { sources, dest: dest_abs.clone(), owner, mode: chmod };
            let tar = b.staging.path().join("copy-layer.tar");
            let file = fs::File::create(&tar).map_err(io_err("cannot write the layer"))?;
            copy::write_layer(&plan, &view, io::BufWriter::new(file)).map_err(|m| fail(b, m))?;
            drop(view);
            let mut image = state.image.clone();
            b.add_layer(&mut image, &tar)?;
            let _ = fs::remove_file(&tar);
            push_history(&mut image.config, created_by.clone(), false);
            Ok(image)
        })
    }

    /// Downloads `url` for `ADD` into the staging directory; the file is named after the URL's last path
    /// component (or the destination's, when the destination is a file).
    fn fetch(&self, url: &str, dest: &str) -> std::result::Result<(String, PathBuf), String> {
        let name = url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.rsplit('/').next())
            .filter(|n| !n.is_empty() && !n.contains(':'))
            .map(str::to_owned)
            .or_else(|| dest.rsplit('/').next().filter(|n| !n.is_empty()).map(str::to_owned))
            .ok_or_else(|| format!("cannot determine a file name for {url}: give a destination file name"))?;
        let response = ureq::get(url).call().map_err(|e| format!("cannot download {url}: {e}"))?;
        let host = self.staging.path().join(format!("url-{}-{name}", self.step));
        let mut file = fs::File::create(&host).map_err(|e| format!("cannot store {url}: {e}"))?;
        let mut body = response.into_body();
        io::copy(&mut body.as_reader(), &mut file).map_err(|e| format!("cannot download {url}: {e}"))?;
        Ok((name, host))
    }
}

/// A step image as the container and image code want it (never indexed).
fn as_image(step: &StepImage) -> Image {
    let id = step.id();
    Image {
        id: id.clone(),
        manifest_digest: id,
        config: step.config.clone(),
        names: Vec::new(),
        layers: step.layers.clone(),
    }
}

fn push_history(config: &mut ImageConfig, created_by: String, empty_layer: bool) {
    let now = crate::image::now_rfc3339();
    config.created = Some(now.clone());
    config.history.push(History {
        created: Some(now),
        author: None,
        created_by: Some(created_by),
        comment: None,
        empty_layer,
    });
}

fn json(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_err(format!("cannot chmod {}", path.display())))
}

/// `dest` made absolute against the working directory, keeping a trailing `/`.
fn join_workdir(workdir: &str, dest: &str) -> String {
    if dest.starts_with('/') {
        return dest.to_owned();
    }
    let base = if workdir.is_empty() { "/" } else { workdir };
    format!("{}/{}", base.trim_end_matches('/'), dest)
}

/// An absolute path with `.`/`..` resolved and no trailing `/` (except the root).
fn clean_abs(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `EXPOSE` words as docker stores them: `80` → `80/tcp`; protocols tcp, udp, sctp; ranges allowed.
fn normalise_port(p: &str) -> std::result::Result<String, String> {
    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let valid_port = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
    let ok_port = match port.split_once('-') {
        Some((a, b)) => valid_port(a) && valid_port(b),
        None => valid_port(port),
    };
    if !ok_port || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid EXPOSE {p:?}: use PORT[/tcp|udp|sctp], e.g. 8080/tcp"));
    }
    Ok(format!("{port}/{proto}"))
}

/// `--chown=user[:group]` resolved in the destination image: names through its `/etc/passwd` and `/etc/group`,
/// numbers as they are; without a group the gid is the uid (docker's rule).
fn resolve_owner(rootfs: &Path, spec: &str) -> std::result::Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => crate::container::user::resolve(rootfs, user).map_err(|e| format!("--chown={spec}: {e}"))?.uid,
    };
    let gid = match group {
        None => uid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                crate::container::user::resolve(rootfs, &format!("0:{g}"))
                    .map_err(|e| format!("--chown={spec}: {e}"))?
                    .gid
            }
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_join_the_workdir() {
        assert_eq!(join_workdir("/app", "src/"), "/app/src/");
        assert_eq!(join_workdir("", "x"), "/x");
        assert_eq!(join_workdir("/app", "/abs"), "/abs");
        assert_eq!(clean_abs("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_abs("/.."), "/");
    }

    #[test]
    fn exposed_ports_normalise_like_docker() {
        assert_eq!(normalise_port("80").as_deref(), Ok("80/tcp"));
        assert_eq!(normalise_port("53/UDP").as_deref(), Ok("53/udp"));
        assert_eq!(normalise_port("8000-8010").as_deref(), Ok("8000-8010/tcp"));
        assert!(normalise_port("http").is_err());
        assert!(normalise_port("80/icmp").is_err());
    }
}
