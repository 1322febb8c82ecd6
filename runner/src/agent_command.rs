//! `runner agent`: parses the options into [`runner::agent::AgentOptions`], installs the SIGTERM/SIGINT
//! handlers (first: drain, second: cancel) and runs [`runner::agent::run`]. Logs go to stderr through
//! `tracing` (`DRYDOCK_LOG` filters them, default `info`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;
use runner::agent::{self, AgentOptions, Signals};

#[derive(Args)]
pub struct AgentArgs {
    /// The coordinator's base URL, e.g. http://ci.example.com:8080.
    #[arg(long, env = "DRYDOCK_COORDINATOR_URL")]
    url: String,
    /// A registration token (`coordinator token create --runner`); needed only until the runner is registered
    /// (its own token is then kept in DATA_DIR/agent.json).
    #[arg(long, env = "DRYDOCK_REGISTRATION_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The runner's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Labels, key=value,key2=value2.
    #[arg(long, default_value = "")]
    labels: String,
    /// A resource class this runner takes (repeatable); none: any job.
    #[arg(long = "resource-class", value_name = "CLASS")]
    resource_class: Vec<String>,
    /// How many jobs run at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// The runner's data directory (registration, caches, spooled logs).
    #[arg(long, env = "DRYDOCK_RUNNER_DATA", default_value = "/var/lib/drydock-runner")]
    data_dir: PathBuf,
    /// The engine's state directory.
    #[arg(long, env = "DRYDOCK_ROOT", default_value = "/var/lib/drydock")]
    root: PathBuf,
}

static SIGNALS: Signals = Signals { stop_leasing: AtomicBool::new(false), cancel_jobs: AtomicBool::new(false) };

extern "C" fn on_signal(_: std::os::raw::c_int) {
    // Only atomics: async-signal-safe.
    if SIGNALS.stop_leasing.swap(true, Ordering::SeqCst) {
        SIGNALS.cancel_jobs.store(true, Ordering::SeqCst);
    }
}

fn install_signal_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only touches atomics.
        let _ = unsafe { sigaction(s, &action) };
    }
}

fn host_name() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "runner".to_owned())
}

pub fn run(args: AgentArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRYDOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal (not for journald or a log file).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(ansi).with_env_filter(filter).init();
    let labels = match agent::parse_labels(&args.labels) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.concurrency == 0 {
        eprintln!("error: --concurrency must be at least 1");
        return ExitCode::from(2);
    }
    let opts = AgentOptions {
        url: args.url,
        registration_token: args.token,
        name: args.name.unwrap_or_else(host_name),
        labels,
        resource_classes: args.resource_class,
        concurrency: args.concurrency,
        data_dir: args.data_dir,
        engine_root: args.root,
    };
    install_signal_handlers();
    tracing::info!(url = %opts.url, concurrency = opts.concurrency, "runner agent starting");
    match agent::run(&opts, &SIGNALS) {
        Ok(()) => {
            tracing::info!("runner agent stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
