//! `create` (and the first half of `run`): resolve the image, merge its config with the flags as docker does,
//! pick a unique name, and lay out the container directory — record, state, overlay directories and the
//! `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` files. Nothing runs yet; `start` does that.
//!
//! Docker's merge rules: `--entrypoint` replaces the image's ENTRYPOINT *and* drops its CMD (unless command
//! arguments are given); arguments after the image replace CMD; `-e` and `--env-file` override image variables
//! of the same name; `PATH` gets docker's default when the image sets none; `-w` and `-u` replace WORKDIR and
//! USER; `--health-*` flags override the image's HEALTHCHECK field by field (`--no-healthcheck` disables it, see
//! [`super::health::merge_config`]). The hostname defaults to the first 12 characters of the ID.
//!
//! Everything the flags name is resolved here, so a bad flag fails `create`, not a later `start`: the network
//! (`--network`, default `bridge`; see [`super::network::plan`]), published ports (`-p`, and `-P` from the
//! image's `EXPOSE`s) and mounts (`-v`, `--mount`, `--tmpfs`, `--volumes-from`, the image's `VOLUME`s; see
//! [`super::mounts::resolve`], which creates named and anonymous volumes — removed again if create fails).
//!
//! `/etc/resolv.conf` is the host's, minus `127.x`/`::1` nameservers (they would point into the container's
//! own loopback); if none remain, docker's fallback `8.8.8.8` and `8.8.4.4` is used. With `--network host`
//! the host's files are copied unchanged.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use rand::RngCore;

use super::mounts::{self, MountFlags};
use super::rootfs::RootfsDirs;
use super::store::{write_json, Container, ContainerStore, HostConfig, RestartPolicy, RunSettings, State};
use super::{io_err, names, spec, Error, Result};
use crate::image::config::Empty;
use crate::image::{HealthConfig, ImageStore, RunConfig};
use crate::network::ports::{self, PortBinding};
use crate::volume::VolumeStore;

/// Everything `create`/`run` takes from the command line.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub image: String,
    /// Arguments after the image (replace CMD).
    pub cmd: Vec<String>,
    pub name: Option<String>,
    /// `-e KEY=VALUE` or `-e KEY` (taken from this process's environment, dropped if unset).
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// `--entrypoint` (`Some("")` clears it).
    pub entrypoint: Option<String>,
    /// `-v` values.
    pub binds: Vec<String>,
    /// `--mount` values.
    pub mounts: Vec<String>,
    /// `--tmpfs` values.
    pub tmpfs: Vec<String>,
    pub volumes_from: Vec<String>,
    /// `--network` (default: the built-in `bridge`).
    pub network: Option<String>,
    pub network_aliases: Vec<String>,
    /// `--ip`.
    pub ip: Option<String>,
    /// `-p` values.
    pub publish: Vec<String>,
    /// `-P`: every port the image exposes, to random host ports.
    pub publish_all: bool,
    pub hostname: Option<String>,
    /// `--add-host NAME:IP` (IP may be `host-gateway`: the gateway of the container's first network).
    pub add_hosts: Vec<String>,
    /// `--dns`, `--dns-search`, `--dns-option`: replace the matching lines of the container's resolv.conf.
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--expose PORT[/PROTO]` or a range `A-B[/PROTO]`: added to the image's exposed ports (for `-P`).
    pub expose: Vec<String>,
    /// `--memory` as given (`32m`, `1g`, bytes).
    pub memory: Option<String>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub restart: Option<String>,
    pub auto_remove: bool,
    pub init: bool,
    pub tty: bool,
    pub open_stdin: bool,
    pub labels: Vec<String>,
    pub security_opt: Vec<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    /// `--health-*` (or compose's `healthcheck:`): overrides the image's `HEALTHCHECK` field by field, as docker
    /// does (see [`super::health::merge_config`]).
    pub healthcheck: Option<HealthConfig>,
    /// `--no-healthcheck`: disable the image's check.
    pub no_healthcheck: bool,
}

/// Parses a docker memory size: a number with an optional `b`, `k`, `m`, `g` suffix (binary units).
pub fn parse_memory(s: &str) -> Result<i64> {
    let bad = || Error::InvalidInput {
        what: "memory size",
        value: s.to_owned(),
        hint: "use a number with an optional unit: b, k, m, g (e.g. 32m)".into(),
    };
    let lower = s.trim().to_ascii_lowercase();
    let lower =
        lower.strip_suffix('b').filter(|r| r.ends_with(|c: char| c.is_ascii_alphabetic())).unwrap_or(&lower).to_owned();
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('b') => (&lower[..lower.len() - 1], 1),
        _ => (lower.as_str(), 1),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if n < 0.0 {
        return Err(bad());
    }
    let bytes = (n * mult as f64) as i64;
    if bytes > 0 && bytes < 6 << 20 {
        return Err(Error::InvalidInput {
            what: "memory size",
            value: s.to_owned(),
            hint: "the minimum memory limit allowed is 6MB".into(),
        });
    }
    Ok(bytes)
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// Merges `-e`/`--env-file` values over the image's environment.
fn merge_env(image_env: &[String], opts: &CreateOptions) -> Result<Vec<String>> {
    let mut env = image_env.to_vec();
    let mut set = |entry: String| {
        env.retain(|e| env_key(e) != env_key(&entry));
        env.push(entry);
    };
    for path in &opts.env_files {
        let text = fs::read_to_string(path).map_err(io_err(format!("cannot read env file {}", path.display())))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if let Some(e) = expand_env_arg(line) {
                set(e);
            }
        }
    }
    for e in &opts.env {
        if let Some(e) = expand_env_arg(e) {
            set(e);
        }
    }
    if !env.iter().any(|e| env_key(e) == "PATH") {
        env.insert(0, format!("PATH={}", spec::DEFAULT_PATH));
    }
    Ok(env)
}

/// `KEY=VALUE` as is; a bare `KEY` takes this process's value, or is dropped when unset (docker's rule).
fn expand_env_arg(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_owned())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

/// Creates a container; returns its record.
pub fn create(store: &ContainerStore, images: &ImageStore, opts: &CreateOptions) -> Result<Container> {
    let image = images.resolve(&opts.image)?;
    create_from_image(store, images, &image, opts)
}

/// Creates a container from an image already at hand (`opts.image` is only recorded): the builder's `RUN` steps
/// start from intermediate images that are not in the index.
pub fn create_from_image(
    store: &ContainerStore,
    images: &ImageStore,
    image: &crate::image::Image,
    opts: &CreateOptions,
) -> Result<Container> {
    let ic: &RunConfig = &image.config.config;
    let (entrypoint, cmd) = match &opts.entrypoint {
        Some(e) => {
            (if e.is_empty() { None } else { Some(vec![e.clone()]) }, (!opts.cmd.is_empty()).then(|| opts.cmd.clone()))
        }
        None => (ic.entrypoint.clone(), if opts.cmd.is_empty() { ic.cmd.clone() } else { Some(opts.cmd.clone()) }),
    };
    let mut argv: Vec<String> = entrypoint.clone().unwrap_or_default();
    argv.extend(cmd.clone().unwrap_or_default());
    if argv.is_empty() {
        return Err(Error::InvalidInput {
            what: "command",
            value: String::new(),
            hint: "no command specified: give one after the image name".into(),
        });
    }
    let mut labels: BTreeMap<String, String> = ic.labels.clone();
    for l in &opts.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_owned(), v.to_owned());
    }
    let (network, networks) =
        super::network::plan(store.root(), opts.network.as_deref(), &opts.network_aliases, opts.ip.as_deref())?;
    let joined = super::network::joined_container(&network).map(|id| store.load(id)).transpose()?;
    if joined.is_some() {
        check_shared_network_flags(opts)?;
    }
    let mut exposed_ports = ic.exposed_ports.clone();
    for e in &opts.expose {
        for port in ports::parse_expose(e)? {
            exposed_ports.insert(port, Empty {});
        }
    }
    let port_bindings = port_bindings(opts, &exposed_ports, &networks)?;
    let extra_hosts = opts.add_hosts.iter().map(|h| parse_add_host(h)).collect::<Result<Vec<_>>>()?;
    for d in &opts.dns {
        d.parse::<std::net::IpAddr>().map_err(|_| Error::InvalidInput {
            what: "--dns",
            value: d.clone(),
            hint: "give the address of a name server (e.g. 10.0.0.2)".into(),
        })?;
    }
    for o in &opts.security_opt {
        if !matches!(
            o.as_str(),
            "seccomp=unconfined" | "seccomp:unconfined" | "no-new-privileges" | "no-new-privileges:true"
        ) {
            return Err(Error::InvalidInput {
                what: "--security-opt",
                value: o.clone(),
                hint: "only seccomp=unconfined is supported".into(),
            });
        }
    }
    let restart_policy = match &opts.restart {
        Some(r) => RestartPolicy::parse(r)?,
        None => RestartPolicy { name: "no".into(), maximum_retry_count: 0 },
    };
    if opts.auto_remove && !restart_policy.is_none() {
        return Err(Error::InvalidInput {
            what: "--restart",
            value: restart_policy.name,
            hint: "conflicting options: --restart and --rm".into(),
        });
    }
    let memory = opts.memory.as_deref().map(parse_memory).transpose()?.unwrap_or(0);
    let nano_cpus = match opts.cpus {
        Some(c) if !(0.0..=1024.0).contains(&c) => {
            return Err(Error::InvalidInput {
                what: "--cpus",
                value: c.to_string(),
                hint: "use a positive number of CPUs".into(),
            })
        }
        Some(c) => (c * 1e9) as i64,
        None => 0,
    };
    let healthcheck =
        super::health::merge_config(ic.healthcheck.as_ref(), opts.healthcheck.as_ref(), opts.no_healthcheck)?;
    let layers = images.layer_dirs(image)?;

    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let id = hex::encode(raw);
    // Sharing another container's network namespace means sharing its name too, as docker does.
    let hostname = match &joined {
        Some(j) => j.config.hostname.clone(),
        None => opts.hostname.clone().unwrap_or_else(|| id[..12].to_owned()),
    };
    let env = merge_env(&ic.env, opts)?;
    let config = RunSettings {
        hostname: hostname.clone(),
        user: opts.user.clone().unwrap_or_else(|| ic.user.clone()),
        env,
        cmd,
        entrypoint,
        working_dir: opts.workdir.clone().unwrap_or_else(|| ic.working_dir.clone()),
        image: opts.image.clone(),
        labels,
        tty: opts.tty,
        open_stdin: opts.open_stdin,
        stop_signal: opts.stop_signal.clone().or_else(|| ic.stop_signal.clone()),
        stop_timeout: opts.stop_timeout,
        exposed_ports,
        volumes: ic.volumes.clone(),
        healthcheck,
    };
    let mut host_config = HostConfig {
        binds: opts.binds.clone(),
        network_mode: network.clone(),
        networks,
        port_bindings,
        publish_all_ports: opts.publish_all,
        mount_points: Vec::new(),
        volumes_from: opts.volumes_from.clone(),
        extra_hosts: extra_hosts.iter().map(|(n, a)| format!("{n}:{a}")).collect(),
        dns: opts.dns.clone(),
        dns_search: opts.dns_search.clone(),
        dns_options: opts.dns_options.clone(),
        restart_policy,
        memory,
        nano_cpus,
        pids_limit: opts.pids_limit.unwrap_or(0),
        auto_remove: opts.auto_remove,
        init: opts.init,
        security_opt: opts.security_opt.clone(),
    };
    // Volumes last: creating them is the only side effect outside the container directory.
    let volumes = VolumeStore::open(store.root())?;
    let flags =
        MountFlags { volumes: &opts.binds, mounts: &opts.mounts, tmpfs: &opts.tmpfs, volumes_from: &opts.volumes_from };
    host_config.mount_points = mounts::resolve(store, &volumes, &flags, ic.volumes.keys().map(String::as_str))?;
    let container = Container {
        id: id.clone(),
        name: String::new(),
        created: crate::image::now_rfc3339(),
        image_id: image.id.to_string(),
        path: argv[0].clone(),
        args: argv[1..].to_vec(),
        config,
        host_config,
        layers,
    };

    let anonymous: Vec<String> =
        container.host_config.mount_points.iter().filter(|m| m.anonymous).map(|m| m.name.clone()).collect();
    // Lay everything out in a staging directory, then take the name and move it into place under the lock.
    let dir = store.dir(&id);
    fs::create_dir_all(&dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    let result = (|| {
        RootfsDirs::of(&dir, &container).create()?;
        write_etc_files(&dir, &hostname, network == "host", &container.host_config)?;
        let lock = store.lock()?;
        let name = match &opts.name {
            Some(n) => {
                let n = names::validate(n)?;
                if let Some(other) = store.name_taken(&n, None)? {
                    return Err(Error::NameInUse { name: n, id: other });
                }
                n
            }
            None => {
                let taken: Vec<String> =
                    store.ids()?.iter().filter_map(|i| store.load(i).ok()).map(|c| c.name).collect();
                names::random_name(|n| taken.iter().any(|t| t == n))
            }
        };
        let container = Container { name, ..container };
        write_json(&dir.join("state.json"), &State::default())?;
        store.save(&container, &lock)?;
        Ok(container)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&dir);
        for name in &anonymous {
            let _ = volumes.remove(name, true, &|_| None);
        }
    }
    result
}

/// `-p` and `-P` as bindings. Published ports need a network with an address: with `host` they are dropped (as
/// docker does, with a warning), with `none` they are an error.
fn port_bindings(
    opts: &CreateOptions,
    exposed: &BTreeMap<String, Empty>,
    networks: &[super::NetworkAttachment],
) -> Result<Vec<PortBinding>> {
    let mut bindings = Vec::new();
    for p in &opts.publish {
        bindings.extend(ports::parse_publish(p)?);
    }
    if opts.publish_all {
        let already = |b: &PortBinding| bindings.iter().any(|x: &PortBinding| x.container_port == b.container_port);
        let all = ports::publish_all(exposed.keys().map(String::as_str))?;
        let extra: Vec<PortBinding> = all.into_iter().filter(|b| !already(b)).collect();
        bindings.extend(extra);
    }
    if !bindings.is_empty() && networks.is_empty() {
        if opts.network.as_deref() == Some(crate::network::HOST_NETWORK) {
            tracing::warn!("published ports are discarded when using host network mode");
            return Ok(Vec::new());
        }
        return Err(Error::InvalidInput {
            what: "--publish",
            value: opts.publish.first().cloned().unwrap_or_else(|| "-P".into()),
            hint: "a container without a network cannot publish ports (use --network bridge or a user network)".into(),
        });
    }
    Ok(bindings)
}

/// With `--network container:X`, the flags that describe a network namespace of one's own are refused, as
/// docker refuses them ("conflicting options").
fn check_shared_network_flags(opts: &CreateOptions) -> Result<()> {
    let conflicts = [
        ("--hostname", opts.hostname.is_some()),
        ("--publish", !opts.publish.is_empty() || opts.publish_all),
        ("--network-alias", !opts.network_aliases.is_empty()),
        ("--ip", opts.ip.is_some()),
        ("--add-host", !opts.add_hosts.is_empty()),
        ("--dns", !(opts.dns.is_empty() && opts.dns_search.is_empty() && opts.dns_options.is_empty())),
        ("--expose", !opts.expose.is_empty()),
    ];
    match conflicts.iter().find(|(_, given)| *given) {
        Some((flag, _)) => Err(Error::InvalidInput {
            what: flag,
            value: opts.network.clone().unwrap_or_default(),
            hint: format!("conflicting options: {flag} and the network mode (the container shares another's network)"),
        }),
        None => Ok(()),
    }
}

/// `--add-host NAME:IP` (also `NAME=IP`, and IPv6 addresses with their colons) → (name, address or
/// `host-gateway`).
pub fn parse_add_host(s: &str) -> Result<(String, String)> {
    let bad = |hint: &str| Error::InvalidInput { what: "--add-host", value: s.to_owned(), hint: hint.into() };
    let (name, addr) = s.split_once('=').or_else(|| s.split_once(':')).ok_or_else(|| bad("use NAME:IP"))?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad("the host name is empty or has spaces"));
    }
    if addr != HOST_GATEWAY && addr.parse::<std::net::IpAddr>().is_err() {
        return Err(bad("the address must be an IPv4 or IPv6 address, or host-gateway"));
    }
    Ok((name.to_owned(), addr.to_owned()))
}

/// The `--add-host` address that stands for the host as seen from the container: the gateway of the container's
/// first network, known at start (`host` network: the host's loopback).
pub const HOST_GATEWAY: &str = "host-gateway";

/// Writes `hosts`, `hostname` and `resolv.conf` into the container directory.
fn write_etc_files(dir: &std::path::Path, hostname: &str, host_network: bool, hc: &HostConfig) -> Result<()> {
    let write = |name: &str, content: String| {
        let p = dir.join(name);
        fs::write(&p, content).map_err(io_err(format!("cannot write {}", p.display())))
    };
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut hosts = if host_network {
        fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_owned()
    };
    // `host-gateway` entries are written at start, once the gateway is known (see `extra_hosts_at_start`).
    // Stored as docker does, `NAME:IP`: names have no colons, so the first one splits (IPv6 addresses keep theirs).
    for (name, addr) in hc.extra_hosts.iter().filter_map(|h| h.split_once(':')) {
        match addr {
            HOST_GATEWAY if host_network => hosts.push_str(&format!("127.0.0.1\t{name}\n")),
            HOST_GATEWAY => {}
            _ => hosts.push_str(&format!("{addr}\t{name}\n")),
        }
    }
    let resolv = resolv_conf(if host_network { host_resolv } else { container_resolv_conf(&host_resolv) }, hc);
    if host_network {
        write("hosts", hosts)?;
        write("resolv.conf", resolv)?;
        let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
        return write("hostname", format!("{host}\n"));
    }
    hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
    write("hosts", hosts)?;
    write("hostname", format!("{hostname}\n"))?;
    write("resolv.conf", resolv)
}

/// `base` with its `nameserver`, `search` and `options` lines replaced by `--dns`, `--dns-search` and
/// `--dns-option` where those are given.
fn resolv_conf(base: String, hc: &HostConfig) -> String {
    if hc.dns.is_empty() && hc.dns_search.is_empty() && hc.dns_options.is_empty() {
        return base;
    }
    let replaced = |l: &str| match l.split_whitespace().next() {
        Some("nameserver") => !hc.dns.is_empty(),
        Some("search" | "domain") => !hc.dns_search.is_empty(),
        Some("options") => !hc.dns_options.is_empty(),
        _ => false,
    };
    let mut text: String = base.lines().filter(|l| !replaced(l)).map(|l| format!("{l}\n")).collect();
    for d in &hc.dns {
        text.push_str(&format!("nameserver {d}\n"));
    }
    if !hc.dns_search.is_empty() {
        text.push_str(&format!("search {}\n", hc.dns_search.join(" ")));
    }
    if !hc.dns_options.is_empty() {
        text.push_str(&format!("options {}\n", hc.dns_options.join(" ")));
    }
    text
}

/// At each start, once the first network's gateway is known: the `host-gateway` lines of `--add-host`, added to
/// the hosts file (in place, above Drydock's network section) if not there yet.
pub fn extra_hosts_at_start(
    hosts_path: &std::path::Path,
    hc: &HostConfig,
    gateway: Option<std::net::Ipv4Addr>,
) -> Result<()> {
    let Some(gateway) = gateway else { return Ok(()) };
    let lines: Vec<String> = hc
        .extra_hosts
        .iter()
        .filter_map(|h| h.split_once(':'))
        .filter(|(_, a)| *a == HOST_GATEWAY)
        .map(|(n, _)| format!("{gateway}\t{n}"))
        .collect();
    crate::network::hosts::ensure_lines(hosts_path, &lines)
        .map_err(io_err(format!("cannot update {}", hosts_path.display())))
}

/// The host's resolv.conf without loopback nameservers; docker's public fallback if none remain.
pub fn container_resolv_conf(host: &str) -> String {
    let is_loopback_ns = |l: &str| {
        let mut f = l.split_whitespace();
        f.next() == Some("nameserver") && f.next().is_some_and(|a| a.starts_with("127.") || a == "::1")
    };
    let mut out: Vec<&str> = host.lines().filter(|l| !is_loopback_ns(l)).collect();
    let mut text = String::new();
    if !out.iter().any(|l| l.split_whitespace().next() == Some("nameserver")) {
        out.push("nameserver 8.8.8.8");
        out.push("nameserver 8.8.4.4");
    }
    for l in out {
        text.push_str(l);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_like_docker() {
        assert_eq!(parse_memory("32m").ok(), Some(32 << 20));
        assert_eq!(parse_memory("1g").ok(), Some(1 << 30));
        assert_eq!(parse_memory("64mb").ok(), Some(64 << 20));
        assert_eq!(parse_memory("10485760").ok(), Some(10 << 20));
        assert!(parse_memory("1k").is_err(), "below docker's 6MB minimum");
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn resolv_conf_drops_loopback_nameservers() {
        assert_eq!(
            container_resolv_conf("nameserver 127.0.0.53\nsearch lan\n"),
            "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(container_resolv_conf("nameserver 10.0.0.1\n"), "nameserver 10.0.0.1\n");
    }

    #[test]
    fn env_flags_override_image_values() -> Result<()> {
        let opts = CreateOptions { env: vec!["A=2".into(), "B=3".into()], ..Default::default() };
        let env = merge_env(&["A=1".into(), "PATH=/bin".into()], &opts)?;
        assert_eq!(env, ["PATH=/bin", "A=2", "B=3"]);
        let env = merge_env(&[], &CreateOptions::default())?;
        assert_eq!(env, [format!("PATH={}", spec::DEFAULT_PATH)]);
        Ok(())
    }
}
