//! `engine serve`: the Docker Engine API over a unix socket (and optionally loopback TCP), see `engine::api`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use super::Context;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Unix socket to listen on (`DOCKER_HOST=unix://PATH` for clients).
    #[arg(long, default_value = "/run/drydock.sock")]
    pub socket: PathBuf,
    /// Also listen on this loopback TCP address (no TLS, no authentication: loopback only).
    #[arg(long, value_name = "127.0.0.1:PORT")]
    pub tcp: Option<SocketAddr>,
    /// Only see and touch containers, networks and volumes labelled LABEL=VALUE (and label what is created);
    /// images are shared. One scope per CI job.
    #[arg(long, value_name = "LABEL=VALUE", value_parser = engine::api::Scope::parse)]
    pub scope: Option<engine::api::Scope>,
}

pub fn run(args: ServeArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let root = ctx.open_root()?;
    engine::api::serve(root, &args.socket, args.tcp, args.scope)?;
    Ok(ExitCode::SUCCESS)
}
