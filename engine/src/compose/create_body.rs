//! The Docker Engine API's container create body (`POST /containers/create`) for the engine's [`CreateOptions`]:
//! the inverse of `engine serve`'s translation (`api::containers`), so a service resolved by
//! [`super::project::Bound::create_options`] is created over the API exactly as it would be locally.
//!
//! The options speak the CLI's language (`-p 8080:80`, `--restart on-failure:3`, `--memory 64m`); the body speaks
//! the API's (`PortBindings`, `RestartPolicy`, bytes), as the docker CLI and docker compose send them.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::project::{Error, Result};
use crate::container::create::{parse_memory, CreateOptions};
use crate::network::ports::parse_publish;

/// Looks up a variable of the client's environment (bare `KEY` entries of `environment:` take the client's value,
/// as docker compose resolves them before it calls the API).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The create body for `opts`; the container name goes in the query string, not here.
pub fn create_body(opts: &CreateOptions, env: EnvLookup) -> Result<Value> {
    let mut body = Map::new();
    body.insert("Image".into(), json!(opts.image));
    if !opts.cmd.is_empty() {
        body.insert("Cmd".into(), json!(opts.cmd));
    }
    if let Some(ep) = &opts.entrypoint {
        // The server takes the first word as the entrypoint; `[""]` resets the image's.
        body.insert("Entrypoint".into(), json!([ep]));
    }
    let env: Vec<String> = opts
        .env
        .iter()
        .filter_map(|e| match e.contains('=') {
            true => Some(e.clone()),
            false => env(e).map(|v| format!("{e}={v}")),
        })
        .collect();
    if !env.is_empty() {
        body.insert("Env".into(), json!(env));
    }
    insert_some(&mut body, "WorkingDir", &opts.workdir);
    insert_some(&mut body, "User", &opts.user);
    insert_some(&mut body, "Hostname", &opts.hostname);
    insert_some(&mut body, "StopSignal", &opts.stop_signal);
    if let Some(t) = opts.stop_timeout {
        body.insert("StopTimeout".into(), json!(t));
    }
    let labels: BTreeMap<&str, &str> = opts.labels.iter().map(|l| l.split_once('=').unwrap_or((l, ""))).collect();
    body.insert("Labels".into(), json!(labels));
    body.insert("Tty".into(), json!(opts.tty));
    body.insert("OpenStdin".into(), json!(opts.open_stdin));
    body.insert("AttachStdin".into(), json!(opts.open_stdin));
    body.insert("StdinOnce".into(), json!(opts.open_stdin));
    body.insert("AttachStdout".into(), json!(true));
    body.insert("AttachStderr".into(), json!(true));
    if opts.no_healthcheck {
        body.insert("Healthcheck".into(), json!({ "Test": ["NONE"] }));
    } else if let Some(h) = &opts.healthcheck {
        body.insert("Healthcheck".into(), serde_json::to_value(h).map_err(|e| Error::Other(e.to_string()))?);
    }
    if !opts.expose.is_empty() {
        let exposed: Map<String, Value> = opts.expose.iter().map(|p| (port_key(p), json!({}))).collect();
        body.insert("ExposedPorts".into(), Value::Object(exposed));
    }

    let mut host = Map::new();
    host.insert("Binds".into(), json!(opts.binds));
    if !opts.mounts.is_empty() {
        host.insert("Mounts".into(), Value::Array(opts.mounts.iter().map(|m| mount(m)).collect::<Result<_>>()?));
    }
    if !opts.tmpfs.is_empty() {
        let tmpfs: BTreeMap<&str, &str> = opts.tmpfs.iter().map(|t| t.split_once(':').unwrap_or((t, ""))).collect();
        host.insert("Tmpfs".into(), json!(tmpfs));
    }
    if !opts.volumes_from.is_empty() {
        host.insert("VolumesFrom".into(), json!(opts.volumes_from));
    }
    if let Some(n) = &opts.network {
        host.insert("NetworkMode".into(), json!(n));
    }
    let mut bindings: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for spec in &opts.publish {
        let parsed = parse_publish(spec).map_err(|e| Error::Other(format!("ports: {e}")))?;
        for b in parsed {
            let host_port = match b.host_ports {
                (0, 0) => String::new(),
                (a, z) if a == z => a.to_string(),
                (a, z) => format!("{a}-{z}"),
            };
            let host_ip = b.host_ip.map(|ip| ip.to_string()).unwrap_or_default();
            bindings
                .entry(format!("{}/{}", b.container_port, b.protocol))
                .or_default()
                .push(json!({ "HostIp": host_ip, "HostPort": host_port }));
        }
    }
    if !bindings.is_empty() {
        host.insert("PortBindings".into(), json!(bindings));
    }
    host.insert("PublishAllPorts".into(), json!(opts.publish_all));
    host.insert("AutoRemove".into(), json!(opts.auto_remove));
    if let Some(r) = &opts.restart {
        let (name, count) = match r.split_once(':') {
            Some((name, count)) => (
                name,
                count.parse::<i64>().map_err(|_| Error::Other(format!("restart: invalid retry count in {r:?}")))?,
            ),
            None => (r.as_str(), 0),
        };
        host.insert("RestartPolicy".into(), json!({ "Name": name, "MaximumRetryCount": count }));
    }
    if let Some(m) = &opts.memory {
        host.insert("Memory".into(), json!(parse_memory(m)?));
    }
    if let Some(c) = opts.cpus {
        host.insert("NanoCpus".into(), json!((c * 1e9) as i64));
    }
    if let Some(p) = opts.pids_limit {
        host.insert("PidsLimit".into(), json!(p));
    }
    if opts.init {
        host.insert("Init".into(), json!(true));
    }
    if !opts.security_opt.is_empty() {
        host.insert("SecurityOpt".into(), json!(opts.security_opt));
    }
    if !opts.add_hosts.is_empty() {
        host.insert("ExtraHosts".into(), json!(opts.add_hosts));
    }
    if !opts.dns.is_empty() {
        host.insert("Dns".into(), json!(opts.dns));
    }
    if !opts.dns_search.is_empty() {
        host.insert("DnsSearch".into(), json!(opts.dns_search));
    }
    if !opts.dns_options.is_empty() {
        host.insert("DnsOptions".into(), json!(opts.dns_options));
    }
    body.insert("HostConfig".into(), Value::Object(host));

    if let Some(network) = opts.network.as_ref().filter(|n| crate::container::network::connectable(n)) {
        let mut endpoint = Map::new();
        endpoint.insert("Aliases".into(), json!(opts.network_aliases));
        if let Some(ip) = &opts.ip {
            endpoint.insert("IPAMConfig".into(), json!({ "IPv4Address": ip }));
        }
        let mut endpoints = Map::new();
        endpoints.insert(network.clone(), Value::Object(endpoint));
        body.insert("NetworkingConfig".into(), json!({ "EndpointsConfig": endpoints }));
    }
    Ok(Value::Object(body))
}

fn insert_some(body: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        body.insert(key.into(), json!(v));
    }
}

/// `80` → `80/tcp`; `53/udp` stays.
fn port_key(p: &str) -> String {
    if p.contains('/') {
        p.to_string()
    } else {
        format!("{p}/tcp")
    }
}

/// A `--mount type=…,source=…,target=…[,readonly]` value as the API's `Mounts` entry.
fn mount(spec: &str) -> Result<Value> {
    let mut m = Map::new();
    for part in spec.split(',') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match k {
            "type" => m.insert("Type".into(), json!(v)),
            "source" | "src" => m.insert("Source".into(), json!(v)),
            "target" | "destination" | "dst" => m.insert("Target".into(), json!(v)),
            "readonly" | "ro" => m.insert("ReadOnly".into(), json!(v.is_empty() || v == "true" || v == "1")),
            _ => return Err(Error::Other(format!("mount {spec:?}: option {k:?} is not supported over the API"))),
        };
    }
    Ok(Value::Object(m))
}
