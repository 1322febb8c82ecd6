//! `network …` verbs: `create`, `ls`, `inspect`, `rm`, `prune`, `connect`, `disconnect`. Each parses its flags,
//! calls one `engine::network::NetworkStore` function and prints docker's output.
//!
//! `connect` and `disconnect` take a container (running: at once; in any case: at its later starts); the hidden `--netns PATH` (with an optional `--container-id`) connects a
//! bare network namespace instead, which is how the tests exercise networking without the container runtime.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use engine::container::ContainerStore;
use engine::network::{
    inspect::inspect_json, ipam, ports, proxy::Proxy, ContainerEndpointRequest, CreateOptions, NetworkStore,
};

use super::{table, Context};

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks.
    Inspect(InspectArgs),
    /// Remove one or more networks.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks (an unused default bridge gives its device and subnet back).
    Prune(PruneArgs),
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
    /// Relay host ports to an address with the userland proxy, printing what was bound, until killed (a test
    /// and debugging aid: the runtime runs the same proxy in each container's monitor).
    #[command(hide = true)]
    Publish(PublishArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver to manage the network (only bridge).
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format (default: the next free one of the pool).
    #[arg(long)]
    pub subnet: Option<String>,
    /// Gateway address in the subnet (default: its first address).
    #[arg(long)]
    pub gateway: Option<String>,
    /// Restrict external access to the network.
    #[arg(long)]
    pub internal: bool,
    /// Set metadata on the network (KEY=VALUE).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Set driver specific options (KEY=VALUE).
    #[arg(short = 'o', long = "opt")]
    pub options: Vec<String>,
    pub name: String,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display network IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate the output.
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Add a network-scoped alias for the container.
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// IPv4 address (user-defined networks only).
    #[arg(long)]
    pub ip: Option<String>,
    /// Connect this network namespace file instead of a running container (CONTAINER is then its name).
    #[arg(long, hide = true)]
    pub netns: Option<PathBuf>,
    /// With --netns: the container ID to record (default: a random one).
    #[arg(long, hide = true, requires = "netns")]
    pub container_id: Option<String>,
    pub network: String,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from the network.
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The address to relay to.
    #[arg(long)]
    pub container_ip: String,
    /// [IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], as `run -p`.
    #[arg(short = 'p', long = "publish", required = true)]
    pub ports: Vec<String>,
}

pub fn run(cmd: NetworkCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        NetworkCommand::Create(a) => create(a, ctx),
        NetworkCommand::Ls(a) => ls(a, ctx),
        NetworkCommand::Inspect(a) => inspect(a, ctx),
        NetworkCommand::Rm(a) => rm(a, ctx),
        NetworkCommand::Prune(a) => prune(a, ctx),
        NetworkCommand::Connect(a) => connect(a, ctx),
        NetworkCommand::Disconnect(a) => disconnect(a, ctx),
        NetworkCommand::Publish(a) => publish(a),
    }
}

fn store(ctx: &Context) -> anyhow::Result<NetworkStore> {
    Ok(NetworkStore::open(&ctx.open_root()?)?)
}

/// `KEY=VALUE` pairs (a bare `KEY` has an empty value, as docker's labels).
fn key_values(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

fn create(a: CreateArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let opts = CreateOptions {
        name: a.name,
        driver: Some(a.driver),
        subnet: a.subnet,
        gateway: a.gateway,
        internal: a.internal,
        labels: key_values(&a.labels),
        options: key_values(&a.options),
    };
    let network = store(ctx)?.create(&opts)?;
    println!("{}", network.id);
    Ok(ExitCode::SUCCESS)
}

fn ls(a: LsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let networks = store(ctx)?.list()?;
    if a.quiet {
        let mut out = std::io::stdout().lock();
        for n in &networks {
            writeln!(out, "{}", if a.no_trunc { &n.id } else { n.short_id() })?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = networks
        .iter()
        .map(|n| {
            let id = if a.no_trunc { n.id.clone() } else { n.short_id().to_owned() };
            vec![id, n.name.clone(), n.driver.clone(), "local".to_owned()]
        })
        .collect();
    table::print(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

fn inspect(a: InspectArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let mut values = Vec::new();
    let mut missing = None;
    for name in &a.networks {
        match store.resolve(name) {
            Ok(n) => values.push(inspect_json(&n)),
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
    let mut failed = false;
    for name in &a.networks {
        match store.remove(name) {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(engine::error::EXIT_ENGINE) } else { ExitCode::SUCCESS })
}

fn prune(_a: PruneArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let removed = store(ctx)?.prune()?;
    if !removed.is_empty() {
        println!("Deleted Networks:");
        for name in removed {
            println!("{name}");
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

fn connect(a: ConnectArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let root = ctx.open_root()?;
    let store = NetworkStore::open(&root)?;
    let ip = a.ip.as_deref().map(ipam::parse_address).transpose()?;
    let (container_id, container_name, netns_path) = match a.netns {
        Some(path) => (a.container_id.unwrap_or_else(engine::network::random_id), a.container, path),
        None => {
            let containers = ContainerStore::open(&root);
            let c = containers.resolve(&a.container)?;
            engine::container::network::connect(&containers, &c.id, &a.network, a.aliases, ip)
                .with_context(|| format!("cannot connect {} to network {}", c.name, a.network))?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let req = ContainerEndpointRequest { container_id, container_name, aliases: a.aliases, ip, netns_path };
    store
        .connect(&a.network, &req)
        .with_context(|| format!("cannot connect {} to network {}", req.container_name, a.network))?;
    Ok(ExitCode::SUCCESS)
}

fn disconnect(a: DisconnectArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let root = ctx.open_root()?;
    let store = NetworkStore::open(&root)?;
    // A container of this engine leaves for good (its record changes too); anything else (a namespace joined
    // with --netns) is looked up on the network by name or ID.
    let containers = ContainerStore::open(&root);
    if let Ok(c) = containers.resolve(&a.container) {
        engine::container::network::disconnect(&containers, &c.id, &a.network, a.force)?;
        return Ok(ExitCode::SUCCESS);
    }
    match store.disconnect(&a.network, &a.container) {
        Err(engine::network::Error::NotConnected { .. }) if a.force => Ok(ExitCode::SUCCESS),
        r => r.map(|()| ExitCode::SUCCESS).map_err(Into::into),
    }
}

fn publish(a: PublishArgs) -> anyhow::Result<ExitCode> {
    let ip: std::net::IpAddr =
        a.container_ip.parse().with_context(|| format!("invalid --container-ip `{}`", a.container_ip))?;
    let mut bindings = Vec::new();
    for p in &a.ports {
        bindings.extend(ports::parse_publish(p)?);
    }
    let proxy = Proxy::bind(&bindings, ip)?;
    {
        let mut out = std::io::stdout().lock();
        for line in ports::port_lines(&proxy.published(), None, "")? {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    match proxy.serve()? {}
}
