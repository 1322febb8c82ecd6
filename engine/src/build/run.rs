//! `RUN` as the classic builder runs it: a throwaway container made from the step's image (its env, workdir,
//! user; the command already wrapped in the stage's `SHELL`), started through the ordinary monitor with its
//! output on the build's stdout/stderr (or discarded with `-q`), and — when it exits 0 — its overlay upper
//! directory turned into the step's layer. The container is removed whatever happens ([`RunGuard`]).
//!
//! Network: the default `bridge`, as docker's classic builder does (so `RUN wget …` works); `RUN --network=none`
//! and `--network=host` are honoured. The image's `VOLUME`s are not mounted (no anonymous volumes for a build
//! step) but what the step writes under them is dropped from the layer, as docker drops it; its `HEALTHCHECK` is
//! not run: a build step is not a service.

use std::fs::{self, File};
use std::io::BufWriter;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::build::cache::StepImage;
use crate::container::create::{create_from_image, CreateOptions};
use crate::container::monitor::{self, Started};
use crate::container::rootfs::layer_tar;
use crate::container::ContainerStore;
use crate::image::{Image, ImageStore};

/// What a `RUN` step needs beyond the image.
pub struct RunRequest<'a> {
    /// The full argv (shell + script, or the exec form).
    pub argv: Vec<String>,
    /// Build args in effect, as `KEY=value` (not overriding the image's `ENV`).
    pub env: Vec<String>,
    /// `none`, `host` or `bridge`.
    pub network: &'a str,
    /// Read-only bind mounts (`host:container:ro`) for heredoc scripts.
    pub binds: Vec<String>,
    /// Discard the command's output (`build -q`).
    pub quiet: bool,
}

/// How a `RUN` ended.
pub enum RunOutcome {
    /// Exit 0: the layer tar of its changes.
    Done { container: String, layer: PathBuf },
    /// A non-zero exit code.
    Failed { container: String, code: i32 },
    /// `SIGINT`/`SIGTERM` reached the build: the command was killed.
    Interrupted,
}

/// Removes the build container when the step is over, however it ends.
struct RunGuard<'a> {
    store: &'a ContainerStore,
    id: String,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = crate::container::remove::remove(self.store, &self.id, true, true) {
            tracing::warn!(container.id = %self.id, "cannot remove the build container: {e}");
        }
    }
}

/// Runs `req` in a container from `step`; on success writes the layer tar into `staging`. `announce` is called
/// with the container ID once it exists (for ` ---> Running in …`).
pub fn run(
    containers: &ContainerStore,
    images: &ImageStore,
    step: &StepImage,
    req: &RunRequest<'_>,
    staging: &Path,
    announce: &mut dyn FnMut(&str),
) -> crate::container::Result<RunOutcome> {
    let mut config = step.config.clone();
    let volumes: Vec<String> = std::mem::take(&mut config.config.volumes).into_keys().collect();
    config.config.healthcheck = None;
    let id = step.id();
    let image = Image { id: id.clone(), manifest_digest: id, config, names: Vec::new(), layers: step.layers.clone() };
    // A volume path the image lacks gets a tmpfs, so the path exists (docker's anonymous volume creates it) and
    // what is written there vanishes with the step; an existing one stays visible and its changes are dropped
    // from the layer afterwards (see `discard_volume_changes`).
    let lower = images.layer_dirs(&image)?;
    let tmpfs: Vec<String> = volumes
        .iter()
        .filter(|v| {
            let rel = v.trim_matches('/');
            !rel.is_empty() && !lower.iter().any(|l| l.join(rel).symlink_metadata().is_ok())
        })
        .cloned()
        .collect();
    let opts = CreateOptions {
        tmpfs,
        image: image.id.to_string(),
        cmd: req.argv.clone(),
        entrypoint: Some(String::new()),
        env: req.env.clone(),
        network: Some(req.network.to_owned()),
        binds: req.binds.clone(),
        ..CreateOptions::default()
    };
    // Block SIGINT/SIGTERM before the container exists: one arriving from here on is read from the signalfd
    // (and kills the command) instead of killing this process and stranding the container.
    let signals = SignalBlock::new()?;
    let container = create_from_image(containers, images, &image, &opts)?;
    let guard = RunGuard { store: containers, id: container.id.clone() };
    announce(&container.id);
    let stdio = stdio(req.quiet).map_err(crate::container::io_err("cannot set up the build container's output"))?;
    let mut spawned = monitor::spawn_with_stdio(containers.root(), &container.id, &stdio)?;
    drop(stdio);
    let code = match spawned.started()? {
        Started::Pid(pid) => match wait_killing_on_signal(&mut spawned, pid, &signals)? {
            (_, true) => return Ok(RunOutcome::Interrupted),
            (Some(code), false) => code,
            (None, false) => containers.state(&container.id).map(|s| s.exit_code)?,
        },
        Started::Failed(code, message) => {
            return Err(crate::container::Error::Invoke { code, message });
        }
    };
    if code != 0 {
        return Ok(RunOutcome::Failed { container: guard.id.clone(), code });
    }
    let upper = containers.dir(&container.id).join("upper");
    drop_mountpoint_stubs(&upper, &image, images);
    discard_volume_changes(&upper, &volumes, &image, images)
        .map_err(crate::container::io_err("cannot discard the changes under the image's volumes"))?;
    let layer = staging.join("run-layer.tar");
    let file = File::create(&layer).map_err(crate::container::io_err(format!("cannot create {}", layer.display())))?;
    layer_tar(&upper, BufWriter::new(file))?;
    Ok(RunOutcome::Done { container: guard.id.clone(), layer })
}

/// SIGINT and SIGTERM blocked for this thread and readable from a signalfd; unblocked on drop.
struct SignalBlock {
    mask: nix::sys::signal::SigSet,
    fd: nix::sys::signalfd::SignalFd,
}

impl SignalBlock {
    fn new() -> crate::container::Result<SignalBlock> {
        use nix::sys::signal::{SigSet, Signal};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block().map_err(crate::container::sys_err("cannot block signals"))?;
        match SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
            Ok(fd) => Ok(SignalBlock { mask, fd }),
            Err(e) => {
                let _ = mask.thread_unblock();
                Err(crate::container::sys_err("cannot create a signalfd")(e))
            }
        }
    }
}

impl Drop for SignalBlock {
    fn drop(&mut self) {
        // A signal still pending here was meant for the build: it takes its default action once unblocked.
        let _ = self.mask.thread_unblock();
    }
}

/// Waits for the step's exit code (and whether the build was interrupted). `SIGINT`/`SIGTERM` cancel the build
/// as they cancel `docker build`: the command is killed (a container's PID 1 ignores `SIGINT`), and the caller
/// still removes the container on its way out.
fn wait_killing_on_signal(
    spawned: &mut monitor::Spawned,
    pid: i32,
    signals: &SignalBlock,
) -> crate::container::Result<(Option<i32>, bool)> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::os::fd::AsFd;

    let mut interrupted = false;
    loop {
        let mut fds =
            [PollFd::new(spawned.fd(), PollFlags::POLLIN), PollFd::new(signals.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(crate::container::sys_err("cannot wait for the build container")(e)),
            Ok(_) => {}
        }
        let exited = fds[0].revents().is_some_and(|r| !r.is_empty());
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            while let Ok(Some(_)) = signals.fd.read_signal() {
                interrupted = true;
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if exited {
            return Ok((spawned.exited(), interrupted));
        }
    }
}

/// stdin from /dev/null; stdout and stderr this process's (or /dev/null when quiet).
fn stdio(quiet: bool) -> std::io::Result<[OwnedFd; 3]> {
    let null = || -> std::io::Result<OwnedFd> { Ok(File::options().read(true).write(true).open("/dev/null")?.into()) };
    if quiet {
        return Ok([null()?, null()?, null()?]);
    }
    let out = std::io::stdout();
    let err = std::io::stderr();
    use std::os::fd::AsFd;
    Ok([null()?, out.as_fd().try_clone_to_owned()?, err.as_fd().try_clone_to_owned()?])
}

/// What a `RUN` writes under a path the image declares as a `VOLUME` is not part of the layer: docker mounts an
/// anonymous volume there for the step and drops it afterwards. We mount nothing and drop the changes instead
/// (whiteouts under it included), leaving the directory itself, as docker leaves the mount point.
fn discard_volume_changes(upper: &Path, volumes: &[String], image: &Image, images: &ImageStore) -> std::io::Result<()> {
    if volumes.is_empty() {
        return Ok(());
    }
    let lower = images.layer_dirs(image).unwrap_or_default();
    for v in volumes {
        let rel = v.trim_matches('/');
        // A RUN step may have made a parent a symlink to a host path: never follow it from here.
        if rel.is_empty() || !crate::image::layer::parents_stay_in_root(upper, Path::new(rel)) {
            continue;
        }
        let p = upper.join(rel);
        let Ok(meta) = p.symlink_metadata() else { continue };
        if meta.is_dir() {
            fs::remove_dir_all(&p)?;
            let in_lower = |l: &PathBuf| {
                crate::image::layer::parents_stay_in_root(l, Path::new(rel)) && l.join(rel).symlink_metadata().is_ok()
            };
            if !lower.iter().any(in_lower) {
                fs::create_dir(&p)?;
            }
        }
    }
    Ok(())
}

/// The runtime creates empty mount points for `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` (and the
/// `/proc`, `/sys`, `/dev` directories) when the image lacks them; they are not the command's doing, so they do
/// not belong in the layer (docker keeps them in a hidden init layer).
fn drop_mountpoint_stubs(upper: &Path, image: &Image, images: &ImageStore) {
    let lower = images.layer_dirs(image).unwrap_or_default();
    let stays = |root: &Path, rel: &str| crate::image::layer::parents_stay_in_root(root, Path::new(rel));
    let in_image = |rel: &str| lower.iter().any(|l| stays(l, rel) && l.join(rel).symlink_metadata().is_ok());
    for rel in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        let p = upper.join(rel);
        // `RUN ln -s /root /etc` must not make this remove a host file.
        if !stays(upper, rel) {
            continue;
        }
        if p.symlink_metadata().is_ok_and(|m| m.is_file() && m.len() == 0) && !in_image(rel) {
            let _ = fs::remove_file(&p);
        }
    }
    for rel in ["dev", "proc", "sys", "etc"] {
        let p = upper.join(rel);
        let empty = fs::read_dir(&p).is_ok_and(|mut d| d.next().is_none());
        if empty && !in_image(rel) {
            let _ = fs::remove_dir(&p);
        }
    }
}
