//! `coordinator serve --with-runner`: the embedded default's local runner. The coordinator starts the
//! `runner agent` binary (next to its own executable, else on `PATH`) as a child in its process group, with a
//! registration token it creates itself, and stops it when it stops: on SIGINT/SIGTERM the runner gets SIGTERM
//! (it leases no more jobs and finishes the running ones) and the coordinator keeps serving until it exited, so
//! those jobs can report completion. The child also gets `PR_SET_PDEATHSIG`, so a coordinator killed with
//! SIGKILL does not leave a runner behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::store::runners::TokenKind;
use crate::store::Store;

/// How long a stopping runner may take to finish its jobs before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// Where the local runner keeps its state.
#[derive(Debug, Clone)]
pub struct LocalRunnerOptions {
    /// The runner's `--data-dir` (registration, caches).
    pub data_dir: PathBuf,
    /// The engine's state directory (`--root`); `None`: the runner's default (`DRYDOCK_ROOT` or /var/lib/drydock).
    pub engine_root: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalRunnerError {
    #[error(
        "cannot find the `runner` binary next to {exe} or on PATH: build it (`cargo build -p runner`) or serve \
         without --with-runner"
    )]
    NotFound { exe: String },
    #[error("cannot create a registration token for the local runner: {0}")]
    Token(#[from] crate::store::StoreError),
    #[error("cannot start the local runner {path}: {source}")]
    Spawn { path: PathBuf, source: std::io::Error },
}

/// The `runner` binary: next to this executable, else the first on `PATH`.
pub fn runner_binary() -> Result<PathBuf, LocalRunnerError> {
    let exe = std::env::current_exe().unwrap_or_default();
    if let Some(sibling) = exe.parent().map(|d| d.join("runner")).filter(|p| p.is_file()) {
        return Ok(sibling);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("runner"))
        .find(|p| p.is_file())
        .ok_or_else(|| LocalRunnerError::NotFound { exe: exe.display().to_string() })
}

/// Starts `runner agent` against `url` with a fresh registration token.
pub async fn start(store: &Store, url: &str, options: &LocalRunnerOptions) -> Result<Child, LocalRunnerError> {
    let binary = runner_binary()?;
    let token = store.create_token(TokenKind::RunnerRegistration).await?;
    start_binary(&binary, url, &token, options)
}

fn start_binary(
    binary: &Path,
    url: &str,
    token: &str,
    options: &LocalRunnerOptions,
) -> Result<Child, LocalRunnerError> {
    let mut command = Command::new(binary);
    command
        .arg("agent")
        .arg("--url")
        .arg(url)
        .arg("--name")
        .arg("local")
        .arg("--data-dir")
        .arg(&options.data_dir)
        // The token travels in the environment, not in argv where `ps` shows it.
        .env("DRYDOCK_REGISTRATION_TOKEN", token)
        .kill_on_drop(true);
    if let Some(root) = &options.engine_root {
        command.arg("--root").arg(root);
    }
    // SAFETY: prctl is async-signal-safe and touches only the child being started.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|source| LocalRunnerError::Spawn { path: binary.to_path_buf(), source })?;
    tracing::info!(runner.pid = child.id(), binary = %binary.display(), %url, "local runner started");
    Ok(child)
}

/// Asks the runner to stop (SIGTERM) and waits for it, killing it after [`STOP_GRACE`].
pub async fn stop(mut child: Child) {
    if let Some(pid) = child.id() {
        // A pid from `Child::id` of a child not yet reaped: it cannot have been reused.
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        if let Err(e) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
            tracing::warn!(runner.pid = %pid, error = %e, "cannot signal the local runner");
        }
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(Ok(status)) => tracing::info!(%status, "local runner stopped"),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot wait for the local runner"),
        Err(_) => {
            tracing::warn!(grace_s = STOP_GRACE.as_secs(), "the local runner did not stop in time: killing it");
            let _ = child.kill().await;
        }
    }
}
