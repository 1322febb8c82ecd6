//! `version` and `info` over the API: the client's and the server's versions as docker prints them, and the
//! server's `/info` summary.

use std::io::{self, Write};
use std::process::ExitCode;

use serde_json::Value;

use engine::client::{ApiClient, API_VERSION};

pub fn version(client: &ApiClient) -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    writeln!(out, "Client: Drydock Engine")?;
    writeln!(out, " Version:           {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, " API version:       {API_VERSION}")?;
    writeln!(out, " Host:              {}", client.host())?;
    writeln!(out)?;
    let v: Value = client.get_json("/version")?;
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    writeln!(out, "Server: {}", v["Platform"]["Name"].as_str().unwrap_or("Drydock Engine"))?;
    writeln!(out, " Engine:")?;
    writeln!(out, "  Version:          {}", s("Version"))?;
    writeln!(out, "  API version:      {} (minimum version {})", s("ApiVersion"), s("MinAPIVersion"))?;
    writeln!(out, "  OS/Arch:          {}/{}", s("Os"), s("Arch"))?;
    Ok(ExitCode::SUCCESS)
}

pub fn info(client: &ApiClient) -> anyhow::Result<ExitCode> {
    let v: Value = client.get_json("/info")?;
    let mut out = io::stdout().lock();
    let n = |k: &str| v[k].as_i64().unwrap_or(0);
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    writeln!(out, "Server:")?;
    writeln!(out, " Containers: {}", n("Containers"))?;
    writeln!(out, "  Running: {}", n("ContainersRunning"))?;
    writeln!(out, "  Paused: {}", n("ContainersPaused"))?;
    writeln!(out, "  Stopped: {}", n("ContainersStopped"))?;
    writeln!(out, " Images: {}", n("Images"))?;
    writeln!(out, " Server Version: {}", s("ServerVersion"))?;
    writeln!(out, " Storage Driver: {}", s("Driver"))?;
    writeln!(out, " Cgroup Driver: {}", s("CgroupDriver"))?;
    writeln!(out, " Kernel Version: {}", s("KernelVersion"))?;
    writeln!(out, " Operating System: {}", s("OperatingSystem"))?;
    writeln!(out, " Docker Root Dir: {}", s("DockerRootDir"))?;
    writeln!(out, " Name: {}", s("Name"))?;
    Ok(ExitCode::SUCCESS)
}
