//! Container endpoints: create (docker's `Config` + `HostConfig` JSON mapped onto
//! [`crate::container::create::CreateOptions`]), list, inspect, start, stop, kill, restart, wait, logs, resize,
//! remove. Each handler resolves the name or ID prefix, then calls the same library function as the CLI verb.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::attach::{self, channel_body, log_stream};
use super::{blocking, parse_json, read_body, ApiError, ApiResult, ApiState, Json, Query, Scope};
use crate::container::create::CreateOptions;
use crate::container::logs::LogOptions;
use crate::container::monitor::{self, Started};
use crate::container::{self as ctr, ContainerStore, Error as ContainerError};
use crate::image::{HealthConfig, ImageStore};
use crate::network::{Error as NetworkError, NetworkStore};
use crate::volume::{Error as VolumeError, VolumeStore};

/// A string or a list of strings (docker's `StrSlice`, used by `Cmd` and `Entrypoint`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrSlice {
    One(String),
    Many(Vec<String>),
}

impl StrSlice {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrSlice::One(s) => vec![s],
            StrSlice::Many(v) => v,
        }
    }
}

/// The parts of docker's create body this engine understands; other fields are ignored, as older daemons do.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    image: Option<String>,
    cmd: Option<StrSlice>,
    entrypoint: Option<StrSlice>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    hostname: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    tty: Option<bool>,
    open_stdin: Option<bool>,
    stop_signal: Option<String>,
    stop_timeout: Option<i64>,
    healthcheck: Option<HealthConfig>,
    exposed_ports: Option<BTreeMap<String, Value>>,
    host_config: Option<HostConfigBody>,
    networking_config: Option<NetworkingConfigBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostConfigBody {
    /// `[height, width]` of the client's terminal (API 1.42+, sent with `Tty`): the pty's size from the start.
    console_size: Option<Vec<u16>>,
    binds: Option<Vec<String>>,
    network_mode: Option<String>,
    port_bindings: Option<HashMap<String, Option<Vec<PortBindingBody>>>>,
    publish_all_ports: Option<bool>,
    auto_remove: Option<bool>,
    restart_policy: Option<RestartPolicyBody>,
    memory: Option<i64>,
    nano_cpus: Option<i64>,
    pids_limit: Option<i64>,
    init: Option<bool>,
    mounts: Option<Vec<MountBody>>,
    tmpfs: Option<BTreeMap<String, String>>,
    volumes_from: Option<Vec<String>>,
    security_opt: Option<Vec<String>>,
    extra_hosts: Option<Vec<String>>,
    dns: Option<Vec<String>>,
    dns_search: Option<Vec<String>>,
    dns_options: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PortBindingBody {
    host_ip: Option<String>,
    host_port: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartPolicyBody {
    name: Option<String>,
    maximum_retry_count: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct MountBody {
    #[serde(rename = "Type")]
    kind: Option<String>,
    source: Option<String>,
    target: Option<String>,
    read_only: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkingConfigBody {
    endpoints_config: Option<HashMap<String, Option<EndpointBody>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointBody {
    aliases: Option<Vec<String>>,
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpamBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EndpointIpamBody {
    #[serde(rename = "IPv4Address")]
    ipv4_address: Option<String>,
}

/// Maps docker's create body onto the CLI's options (the same merge rules then apply).
fn create_options(body: CreateBody, name: Option<String>) -> ApiResult<CreateOptions> {
    let image =
        body.image.filter(|i| !i.is_empty()).ok_or_else(|| ApiError::bad_request("config: Image is required"))?;
    let mut cmd = body.cmd.map(StrSlice::into_vec).unwrap_or_default();
    // The CLI's `--entrypoint` is one word; the API's is a list: its first word is the entrypoint and the rest
    // go in front of the command, which gives the same argv.
    let entrypoint = match body.entrypoint.map(StrSlice::into_vec) {
        None => None,
        Some(words) => {
            let mut words = words.into_iter();
            let first = words.next().unwrap_or_default();
            let rest: Vec<String> = words.collect();
            cmd = rest.into_iter().chain(cmd).collect();
            Some(first)
        }
    };
    let hc = body.host_config.unwrap_or_default();
    let mut publish = Vec::new();
    for (container_port, bindings) in hc.port_bindings.unwrap_or_default() {
        for b in bindings.unwrap_or_default() {
            let ip = b.host_ip.unwrap_or_default();
            let port = b.host_port.unwrap_or_default();
            publish.push(match (ip.is_empty(), port.is_empty()) {
                (true, true) => container_port.clone(),
                (true, false) => format!("{port}:{container_port}"),
                (false, _) if ip.contains(':') => format!("[{ip}]:{port}:{container_port}"),
                (false, _) => format!("{ip}:{port}:{container_port}"),
            });
        }
    }
    let restart = match hc.restart_policy {
        Some(RestartPolicyBody { name: Some(n), maximum_retry_count }) if !n.is_empty() && n != "no" => {
            Some(match maximum_retry_count {
                Some(c) if c > 0 && n == "on-failure" => format!("{n}:{c}"),
                _ => n,
            })
        }
        _ => None,
    };
    let mut mounts = Vec::new();
    for m in hc.mounts.unwrap_or_default() {
        let kind = m.kind.unwrap_or_else(|| "volume".into());
        let mut spec = format!("type={kind}");
        if let Some(s) = m.source.filter(|s| !s.is_empty()) {
            spec.push_str(&format!(",source={s}"));
        }
        let target =
            m.target.filter(|t| !t.is_empty()).ok_or_else(|| ApiError::bad_request("Mounts: Target is required"))?;
        spec.push_str(&format!(",target={target}"));
        if m.read_only == Some(true) {
            spec.push_str(",readonly");
        }
        mounts.push(spec);
    }
    let tmpfs = hc
        .tmpfs
        .unwrap_or_default()
        .into_iter()
        .map(|(target, opts)| if opts.is_empty() { target } else { format!("{target}:{opts}") })
        .collect();
    let network = hc.network_mode.filter(|n| !n.is_empty() && n != "default");
    let endpoints: Vec<EndpointBody> = body
        .networking_config
        .and_then(|n| n.endpoints_config)
        .map(|eps| eps.into_values().flatten().collect())
        .unwrap_or_default();
    let ip = endpoints
        .iter()
        .find_map(|e| e.ipam_config.as_ref().and_then(|i| i.ipv4_address.clone()))
        .filter(|a| !a.is_empty());
    let network_aliases = endpoints.into_iter().flat_map(|e| e.aliases.unwrap_or_default()).collect();
    let (healthcheck, no_healthcheck) = match body.healthcheck {
        Some(h) if h.test.first().is_some_and(|t| t == "NONE") => (None, true),
        other => (other, false),
    };
    Ok(CreateOptions {
        image,
        cmd,
        name,
        // A bare `KEY` would take the *server's* value in the library's CLI rules; the docker CLI has already
        // expanded those, so the API keeps only `KEY=VALUE` entries.
        env: body.env.unwrap_or_default().into_iter().filter(|e| e.contains('=')).collect(),
        workdir: body.working_dir.filter(|w| !w.is_empty()),
        user: body.user.filter(|u| !u.is_empty()),
        entrypoint,
        binds: hc.binds.unwrap_or_default(),
        mounts,
        tmpfs,
        volumes_from: hc.volumes_from.unwrap_or_default(),
        network,
        network_aliases,
        ip,
        add_hosts: hc.extra_hosts.unwrap_or_default(),
        dns: hc.dns.unwrap_or_default(),
        dns_search: hc.dns_search.unwrap_or_default(),
        dns_options: hc.dns_options.unwrap_or_default(),
        expose: body.exposed_ports.unwrap_or_default().into_keys().collect(),
        publish,
        publish_all: hc.publish_all_ports.unwrap_or(false),
        hostname: body.hostname.filter(|h| !h.is_empty()),
        memory: hc.memory.filter(|m| *m > 0).map(|m| m.to_string()),
        cpus: hc.nano_cpus.filter(|n| *n > 0).map(|n| n as f64 / 1e9),
        pids_limit: hc.pids_limit.filter(|p| *p > 0),
        restart,
        auto_remove: hc.auto_remove.unwrap_or(false),
        init: hc.init.unwrap_or(false),
        tty: body.tty.unwrap_or(false),
        open_stdin: body.open_stdin.unwrap_or(false),
        labels: body.labels.unwrap_or_default().into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        security_opt: hc.security_opt.unwrap_or_default(),
        stop_signal: body.stop_signal.filter(|s| !s.is_empty()),
        stop_timeout: body.stop_timeout,
        healthcheck,
        no_healthcheck,
        ..Default::default()
    })
}

/// `POST /containers/create?name=`: 201 `{"Id", "Warnings"}`; a missing image is docker's 404
/// `No such image: …`, on which the docker CLI pulls and tries again.
pub async fn create(State(state): State<ApiState>, q: Query, body: Body) -> ApiResult<Response> {
    let bytes = read_body(body).await?;
    let parsed: CreateBody = parse_json(&bytes)?;
    let name = q.get("name").filter(|n| !n.is_empty()).map(|n| n.trim_start_matches('/').to_owned());
    let console_size = match parsed.host_config.as_ref().and_then(|h| h.console_size.as_deref()) {
        Some(&[rows, cols]) if parsed.tty == Some(true) && rows > 0 && cols > 0 => Some((rows, cols)),
        _ => None,
    };
    let mut opts = create_options(parsed, name)?;
    // Clients start what they create (docker run = create, attach, start): let the kernel's cgroup grace period
    // pass meanwhile (see container::prestart, "Warming ahead").
    ctr::prestart::warm_ahead(WARM_AHEAD);
    let root = state.root.clone();
    let scope = state.scope.clone();
    let id = blocking(move || {
        let images = ImageStore::open(&root)?;
        let store = ContainerStore::open(&root);
        // The docker CLI pulls the image on *any* 404 from create: only a missing image may be one; a missing
        // network, volume or container named by the body is bad input (400).
        let not_image = |e: ApiError| match e.status {
            StatusCode::NOT_FOUND => ApiError::bad_request(e.message),
            _ => e,
        };
        if let Some(scope) = &scope {
            enforce_scope(scope, &store, &mut opts).map_err(not_image)?;
        }
        let c = match ctr::create::create(&store, &images, &opts) {
            // docker's wording, with the tag the CLI will pull (`busybox` → `busybox:latest`).
            Err(ContainerError::Image(crate::image::Error::NotFound(_))) => {
                let familiar = crate::reference::Reference::parse(&opts.image)
                    .map(|r| r.familiar())
                    .unwrap_or_else(|_| opts.image.clone());
                return Err(ApiError::not_found(format!("No such image: {familiar}")));
            }
            other => other.map_err(|e| not_image(e.into()))?,
        };
        if let Some((rows, cols)) = console_size {
            let path = store.dir(&c.id).join(ctr::tty::WINSIZE_FILE);
            ctr::tty::write_size_file(&path, rows, cols)
                .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))?;
        }
        Ok(c.id)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": id, "Warnings": [] })).into_response()).into_response())
}

/// A scoped server's create: the container gets the scope's label, and everything it names — a user-defined
/// network, named volumes, containers whose volumes or network namespace it shares — must be in the scope
/// (else 404, as if it did not exist). A named volume that does not exist yet is made here, with the label,
/// rather than by the library without it.
///
/// What would reach past the job is refused with 403 (see [`refuse_host_access`]).
fn enforce_scope(scope: &Scope, store: &ContainerStore, opts: &mut CreateOptions) -> ApiResult<()> {
    refuse_host_access(opts)?;
    opts.labels.retain(|l| l.split_once('=').map_or(l.as_str(), |(k, _)| k) != scope.key);
    opts.labels.push(format!("{}={}", scope.key, scope.value));
    let mut containers: Vec<&str> = opts.volumes_from.iter().map(|v| v.split(':').next().unwrap_or(v)).collect();
    if let Some(network) = opts.network.as_deref() {
        if let Some(other) = network.strip_prefix("container:") {
            containers.push(other);
        } else if !matches!(network, "bridge" | "host" | "none") {
            let n = NetworkStore::open(store.root())?.resolve(network)?;
            if !n.builtin && !scope.holds(&n.labels) {
                return Err(NetworkError::NotFound(network.to_owned()).into());
            }
        }
    }
    for name in containers {
        super::scoped_container(Some(scope), store, name)?;
    }
    let volumes = VolumeStore::open(store.root())?;
    let named = opts
        .binds
        .iter()
        .filter_map(|b| b.split(':').next().filter(|src| !src.starts_with('/') && b.contains(':')))
        .chain(opts.mounts.iter().filter(|m| m.starts_with("type=volume,")).filter_map(|m| {
            m.split(',').find_map(|kv| kv.strip_prefix("source=").or_else(|| kv.strip_prefix("src=")))
        }));
    for name in named {
        match volumes.get(name) {
            Ok(v) if scope.holds(&v.labels) => {}
            Ok(_) => return Err(VolumeError::NotFound(name.to_owned()).into()),
            Err(VolumeError::NotFound(_)) => {
                let labels = BTreeMap::from([(scope.key.clone(), scope.value.clone())]);
                volumes.create(Some(name), labels, BTreeMap::new())?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A scoped server is a CI job's Docker engine (`setup_remote_docker`), running as root on the runner's host: what
/// would give the job that host is refused, as CircleCI's remote Docker (a separate machine) never offers it —
/// host paths as bind mounts (the job's own files are not there either: `docker cp` or a build context carry
/// them), the host's network namespace, and security options that lift the default confinement.
fn refuse_host_access(opts: &CreateOptions) -> ApiResult<()> {
    let scoped = "this engine is scoped to one CI job (`engine serve --scope`)";
    let host_bind = opts.binds.iter().find(|b| b.starts_with('/'));
    let bind_mount = opts.mounts.iter().find(|m| m.split(',').any(|kv| kv == "type=bind"));
    if let Some(path) = host_bind.or(bind_mount) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "bind mount `{path}` refused: {scoped} and host paths are not shared with jobs; use a named volume, \
                 or copy files in with `docker cp` or a build context"
            ),
        ));
    }
    if opts.network.as_deref() == Some("host") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("network `host` refused: {scoped}; use the default network or a network the job creates"),
        ));
    }
    let weakening = |o: &str| {
        let o = o.replace(':', "=");
        o.ends_with("=unconfined") || o == "no-new-privileges=false" || o.starts_with("label=disable")
    };
    if let Some(o) = opts.security_opt.iter().find(|o| weakening(o)) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("security option `{o}` refused: {scoped}")));
    }
    Ok(())
}

/// docker's `filters` query parameter: `{"status":["exited"]}` or `{"status":{"exited":true}}`, as `key=value`.
pub fn parse_filters(raw: Option<&str>) -> ApiResult<Vec<String>> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else { return Ok(Vec::new()) };
    let value: Value = serde_json::from_str(raw).map_err(|e| {
        ApiError::bad_request(format!("invalid filters: {e} (expected JSON such as {{\"status\":[\"exited\"]}})"))
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::bad_request("invalid filters: expected a JSON object"));
    };
    let mut out = Vec::new();
    for (key, values) in map {
        match values {
            Value::Array(items) => {
                for v in items {
                    let v = v.as_str().ok_or_else(|| {
                        ApiError::bad_request(format!("invalid filters: {key} values must be strings"))
                    })?;
                    out.push(format!("{key}={v}"));
                }
            }
            Value::Object(set) => out.extend(
                set.into_iter().filter(|(_, on)| on.as_bool() == Some(true)).map(|(v, _)| format!("{key}={v}")),
            ),
            _ => return Err(ApiError::bad_request(format!("invalid filters: {key} must be a list or a set"))),
        }
    }
    Ok(out)
}

/// `GET /containers/json?all=&filters=&limit=`.
pub async fn list(State(state): State<ApiState>, q: Query) -> ApiResult<Json<Value>> {
    let filters = parse_filters(q.get("filters"))?;
    let all = q.flag("all");
    let limit = q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let images = ImageStore::open(&root)?;
        let filters = ctr::list::Filters::parse(&filters)?;
        let mut rows = ctr::list::list(&store, Some(&images), all, &filters, None)?;
        rows.retain(|(c, _)| super::in_scope(scope.as_ref(), &c.config.labels));
        rows.truncate(limit.unwrap_or(usize::MAX));
        let out: Vec<Value> = rows
            .iter()
            .map(|(c, s)| {
                // Not the full inspect document: it reads every network record, per row (30 ms for 200 rows).
                let mut networks = serde_json::Map::new();
                if c.host_config.networks.is_empty() {
                    networks.insert(c.host_config.network_mode.clone(), json!({}));
                }
                for a in &c.host_config.networks {
                    networks.insert(a.name.clone(), json!({ "NetworkID": a.network_id, "Aliases": a.aliases }));
                }
                let created = chrono::DateTime::parse_from_rfc3339(&c.created).map_or(0, |t| t.timestamp());
                let ports: Vec<Value> = s
                    .ports
                    .iter()
                    .map(|p| json!({"IP": p.host_ip.to_string(), "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.protocol.to_string()}))
                    .collect();
                let command = std::iter::once(c.path.as_str()).chain(c.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
                json!({
                    "Id": c.id,
                    "Names": [format!("/{}", c.name)],
                    "Image": c.config.image,
                    "ImageID": c.image_id,
                    "Command": command,
                    "Created": created,
                    "Ports": ports,
                    "Labels": c.config.labels,
                    "State": s.state_str(),
                    "Status": ctr::list::status_text(s),
                    "HostConfig": { "NetworkMode": c.host_config.network_mode },
                    "NetworkSettings": { "Networks": networks },
                    "Mounts": ctr::mounts::inspect_json(&c.host_config.mount_points),
                })
            })
            .collect();
        Ok(Json(Value::Array(out)))
    })
    .await
}

/// `GET /containers/{id}/json`.
pub async fn inspect(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        let s = store.state(&c.id)?;
        Ok(Json(ctr::inspect::inspect_json(&store, &c, &s)))
    })
    .await
}

/// `POST /containers/{id}/start`: 204, or 304 when it already runs. A parked attach (see [`attach`]) becomes
/// the monitor's stdio; a thread then waits for the monitor's exit report.
/// How long a create or start request keeps the cgroup migration lock warm (see container::prestart).
const WARM_AHEAD: std::time::Duration = std::time::Duration::from_millis(500);

pub async fn start(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    ctr::prestart::warm_ahead(WARM_AHEAD);
    let root = state.root.clone();
    let attachments = state.attach.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        if store.state(&c.id)?.is_running() {
            return Err(ContainerError::AlreadyRunning(c.id).into());
        }
        let Some(stdio) = attachments.take(&c.id) else {
            ctr::start::start(&store, &c.id)?;
            return Ok(StatusCode::NO_CONTENT);
        };
        let mut spawned = monitor::spawn_with_stdio(&root, &c.id, &stdio)?;
        // Only the monitor may hold the container ends now, or the attach stream would never see EOF.
        drop(stdio);
        match spawned.started()? {
            Started::Pid(_) => {
                attachments.watch(&c.id);
                let id = c.id.clone();
                let watcher = attachments.clone();
                std::thread::Builder::new()
                    .name("engine-api-exit".into())
                    .spawn(move || watcher.finish_watch(&id, spawned.exited()))
                    .map_err(|e| ApiError::internal(format!("cannot start a thread: {e}")))?;
                Ok(StatusCode::NO_CONTENT)
            }
            Started::Failed(code, message) if code == ctr::EXIT_ENGINE => {
                Err(ContainerError::Start { id: c.id, message }.into())
            }
            Started::Failed(code, message) => Err(ContainerError::Invoke { code, message }.into()),
        }
    })
    .await
}

/// `POST /containers/{id}/stop?t=`: 204, or 304 when it was not running.
pub async fn stop(State(state): State<ApiState>, Path(name): Path<String>, q: Query) -> ApiResult<StatusCode> {
    let timeout = q.int("t")?;
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        if ctr::stop::stop(&store, &c.id, timeout)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::new(StatusCode::NOT_MODIFIED, ""))
        }
    })
    .await
}

/// `POST /containers/{id}/kill?signal=` (default `SIGKILL`): 204, 409 when it is not running.
pub async fn kill(State(state): State<ApiState>, Path(name): Path<String>, q: Query) -> ApiResult<StatusCode> {
    let signal = ctr::kill::parse_signal(q.get("signal").filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        if !store.state(&c.id)?.is_running() {
            return Err(ApiError::conflict(format!("Container {} is not running", c.id)));
        }
        ctr::kill::kill(&store, &c.id, signal)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `POST /containers/{id}/restart?t=`.
pub async fn restart(State(state): State<ApiState>, Path(name): Path<String>, q: Query) -> ApiResult<StatusCode> {
    let timeout = q.int("t")?;
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        ctr::restart::restart(&store, &c.id, timeout)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `DELETE /containers/{id}?force=&v=`.
pub async fn remove(State(state): State<ApiState>, Path(name): Path<String>, q: Query) -> ApiResult<StatusCode> {
    let (force, volumes) = (q.flag("force"), q.flag("v"));
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        ctr::remove::remove(&store, &c.id, force, volumes)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `POST /containers/{id}/resize?h=&w=`: the new size goes to the container's monitor, which holds the pty
/// master (a size file in the container's directory, then `SIGWINCH`; see `container::tty::WINSIZE_FILE`).
/// A container without a TTY has nothing to resize (200, as docker); one that does not run is a 409.
pub async fn resize(State(state): State<ApiState>, Path(name): Path<String>, q: Query) -> ApiResult<StatusCode> {
    let (rows, cols) = window_size_query(&q)?;
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        let s = store.state(&c.id)?;
        if !s.is_running() || s.monitor_pid <= 0 {
            return Err(ApiError::conflict(format!("cannot resize container {}: it is not running", c.name)));
        }
        if c.config.tty {
            let path = store.dir(&c.id).join(ctr::tty::WINSIZE_FILE);
            ctr::tty::write_size_file(&path, rows, cols)
                .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))?;
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.monitor_pid), nix::sys::signal::Signal::SIGWINCH);
        }
        Ok(StatusCode::OK)
    })
    .await
}

/// The `h` and `w` of a resize request (both required, 1–65535).
pub(super) fn window_size_query(q: &Query) -> ApiResult<(u16, u16)> {
    let get = |key: &str| -> ApiResult<u16> {
        match q.int(key)? {
            Some(v) if (1..=i64::from(u16::MAX)).contains(&v) => Ok(v as u16),
            Some(v) => {
                Err(ApiError::bad_request(format!("invalid value for query parameter {key}: {v} is not 1 to 65535")))
            }
            None => Err(ApiError::bad_request(format!("query parameter {key} is required"))),
        }
    };
    Ok((get("h")?, get("w")?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

/// `POST /containers/{id}/wait?condition=not-running|next-exit|removed`. The status line and headers go out at
/// once (the docker CLI waits for them before it starts the container); the body `{"StatusCode": n}` follows
/// when the condition holds.
pub async fn wait(State(state): State<ApiState>, Path(name): Path<String>, q: Query) -> ApiResult<Response> {
    let condition = match q.get("condition").unwrap_or("") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid condition `{other}`: use not-running, next-exit or removed"
            )));
        }
    };
    let root = state.root.clone();
    let scope = state.scope.clone();
    let (id, initial, no_restarts) = blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        let s = store.state(&c.id)?;
        Ok((c.id, s, c.host_config.restart_policy.is_none()))
    })
    .await?;
    // A monitor that restarts its container does not report the exits in between: those are seen in the state
    // file only, looked at every 5 ms.
    let longest = Duration::from_millis(if no_restarts { 500 } else { 5 });
    let (tx, rx) = mpsc::channel(1);
    let root = state.root.clone();
    let attachments = state.attach.clone();
    tokio::task::spawn_blocking(move || {
        let store = ContainerStore::open(&root);
        let mut last = initial.clone();
        let mut seen_running = initial.is_running();
        let code = loop {
            if tx.is_closed() {
                return;
            }
            // A removed container's state reads as the default (not an error): its state file is the witness.
            let state = store.state(&id).and_then(|s| {
                if store.dir(&id).join("state.json").exists() {
                    Ok(s)
                } else {
                    Err(ContainerError::NotFound(id.clone()))
                }
            });
            match state {
                Ok(s) => {
                    let done = match condition {
                        WaitCondition::NotRunning => !s.is_running(),
                        WaitCondition::NextExit => {
                            !s.is_running() && (seen_running || s.finished_at != initial.finished_at)
                        }
                        WaitCondition::Removed => false,
                    };
                    seen_running |= s.is_running();
                    last = s;
                    if done {
                        attachments.forget_exit(&id);
                        break last.exit_code;
                    }
                }
                // Gone (`--rm`, or removed meanwhile): the exit code from the monitor this server watches, else
                // the last state read.
                Err(_) => break attachments.await_exit(&id).unwrap_or(last.exit_code),
            }
            // A container this server started: woken by its monitor's exit report (the state is written before
            // it), so `docker run` gets its exit code at once. Others: one state file read per look.
            attachments.pause_for_exit(&id, Duration::from_millis(5), longest);
        };
        let body = json!({ "StatusCode": code, "Error": null }).to_string();
        let _ = tx.blocking_send(axum::body::Bytes::from(body));
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], channel_body(rx)).into_response())
}

/// `GET /containers/{id}/logs?stdout=&stderr=&follow=&tail=&timestamps=&since=`: docker's framing without a
/// TTY, raw bytes with one.
pub async fn logs(State(state): State<ApiState>, Path(name): Path<String>, q: Query) -> ApiResult<Response> {
    let wanted = [q.flag("stdout"), q.flag("stderr")];
    if !wanted[0] && !wanted[1] {
        return Err(ApiError::bad_request("Bad parameters: you must choose at least one stream"));
    }
    let tail = match q.get("tail").unwrap_or("all") {
        "all" | "" => None,
        n => Some(
            n.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid tail `{n}`: use a number or all")))?,
        ),
    };
    let since = q.get("since").filter(|s| !s.is_empty() && *s != "0").map(str::to_owned);
    if let Some(s) = &since {
        ctr::logs::parse_since(s)?;
    }
    let opts = LogOptions { follow: q.flag("follow"), tail, timestamps: q.flag("timestamps"), since };
    let root = state.root.clone();
    let scope = state.scope.clone();
    let (id, tty) = blocking(move || {
        let c = super::scoped_container(scope.as_ref(), &ContainerStore::open(&root), &name)?;
        Ok((c.id, c.config.tty))
    })
    .await?;
    let rx = log_stream(state.root.clone(), id, opts, tty, wanted);
    let content_type = if tty { attach::RAW_STREAM } else { attach::MULTIPLEXED_STREAM };
    Ok(([(header::CONTENT_TYPE, content_type)], channel_body(rx)).into_response())
}

/// `GET /containers/{id}/top`: `{"Titles", "Processes"}` (`ps_args` is ignored: the columns are fixed).
pub async fn top(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        if !store.state(&c.id)?.is_running() {
            return Err(ApiError::conflict(format!("Container {} is not running", c.id)));
        }
        let rows = ctr::top::top(&store, &c.id)?;
        Ok(Json(json!({ "Titles": ctr::top::HEADER, "Processes": rows })))
    })
    .await
}

/// `POST /containers/{id}/pause` and `/unpause` (the cgroup freezer): 204.
pub async fn pause_or_unpause(
    State(state): State<ApiState>,
    Path((name, verb)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let pause = match verb.as_str() {
        "pause" => true,
        "unpause" => false,
        other => return Err(ApiError::not_found(format!("page not found: POST /containers/{name}/{other}"))),
    };
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        if pause {
            ctr::pause::pause(&store, &c.id)?;
        } else {
            ctr::pause::unpause(&store, &c.id)?;
        }
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `POST /containers/{id}/rename?name=`: 204.
pub async fn rename(State(state): State<ApiState>, Path(name): Path<String>, q: Query) -> ApiResult<StatusCode> {
    let new_name = q.get("name").filter(|n| !n.is_empty()).map(|n| n.trim_start_matches('/').to_owned());
    let new_name =
        new_name.ok_or_else(|| ApiError::bad_request("name is required: POST /containers/ID/rename?name=NEW"))?;
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        ctr::rename::rename(&store, &c.id, &new_name)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `GET /containers/{id}/changes`: `[{"Path", "Kind"}]` with docker's kinds (0 changed, 1 added, 2 deleted).
pub async fn changes(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        let out: Vec<Value> = ctr::diff::diff(&store, &c.id)?
            .into_iter()
            .map(|ch| {
                let kind = match ch.kind {
                    'A' => 1,
                    'D' => 2,
                    _ => 0,
                };
                json!({ "Path": ch.path, "Kind": kind })
            })
            .collect();
        Ok(Json(Value::Array(out)))
    })
    .await
}

/// `GET /containers/{id}/export`: the container's filesystem as a tar stream.
pub async fn export(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult<Response> {
    let root = state.root.clone();
    let scope = state.scope.clone();
    let id =
        blocking(move || Ok(super::scoped_container(scope.as_ref(), &ContainerStore::open(&root), &name)?.id)).await?;
    let root = state.root.clone();
    let body = attach::tar_body(move |out| {
        ctr::export::export(&ContainerStore::open(&root), &id, out).map_err(|e| e.to_string())
    });
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], body).into_response())
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`: 201 `{"Id"}`.
pub async fn commit(State(state): State<ApiState>, q: Query) -> ApiResult<Response> {
    let name =
        q.get("container").filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("container is required"))?;
    let name = name.to_owned();
    let reference = match (q.get("repo").filter(|r| !r.is_empty()), q.get("tag").filter(|t| !t.is_empty())) {
        (Some(r), Some(t)) => Some(format!("{r}:{t}")),
        (Some(r), None) => Some(r.to_owned()),
        (None, _) => None,
    };
    let opts = ctr::commit::CommitOptions {
        message: q.get("comment").filter(|m| !m.is_empty()).map(str::to_owned),
        author: q.get("author").filter(|a| !a.is_empty()).map(str::to_owned),
        // `docker commit -c A -c B` repeats the parameter; older clients joined them with newlines.
        changes: q.all("changes").flat_map(str::lines).map(str::to_owned).collect(),
        reference,
        pause: q.get("pause").is_none_or(|p| q.flag("pause") || p.is_empty()),
    };
    let root = state.root.clone();
    let scope = state.scope.clone();
    let id = blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        Ok(ctr::commit::commit(&store, &ImageStore::open(&root)?, &c.id, &opts)?.id.to_string())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": id }))).into_response())
}

/// docker's `X-Docker-Container-Path-Stat` header (base64 of the JSON stat), or 404 naming the path.
fn path_stat_header(store: &ContainerStore, id: &str, path: &str) -> ApiResult<axum::http::HeaderValue> {
    use base64::Engine as _;
    let stat = ctr::cp::path_stat(store, id, path)?
        .ok_or_else(|| ApiError::not_found(format!("Could not find the file {path} in container {id}")))?;
    let json = json!({
        "name": stat.name, "size": stat.size, "mode": stat.mode, "mtime": stat.mtime, "linkTarget": stat.link_target,
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(json.to_string());
    axum::http::HeaderValue::from_str(&encoded).map_err(|e| ApiError::internal(format!("cannot encode the stat: {e}")))
}

const PATH_STAT: &str = "X-Docker-Container-Path-Stat";

/// `HEAD /containers/{id}/archive?path=`: the stat header only (`docker cp` asks before copying).
pub async fn archive_head(State(state): State<ApiState>, Path(name): Path<String>, q: Query) -> ApiResult<Response> {
    let path = q.get("path").filter(|p| !p.is_empty()).ok_or_else(|| ApiError::bad_request("path is required"))?;
    let path = path.to_owned();
    let root = state.root.clone();
    let scope = state.scope.clone();
    let header = blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        path_stat_header(&store, &c.id, &path)
    })
    .await?;
    Ok(([(PATH_STAT, header)], StatusCode::OK).into_response())
}

/// `GET /containers/{id}/archive?path=`: the path as a tar stream, with the stat header.
pub async fn archive_get(State(state): State<ApiState>, Path(name): Path<String>, q: Query) -> ApiResult<Response> {
    let path = q.get("path").filter(|p| !p.is_empty()).ok_or_else(|| ApiError::bad_request("path is required"))?;
    let path = path.to_owned();
    let root = state.root.clone();
    let scope = state.scope.clone();
    let p = path.clone();
    let (id, header) = blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        let header = path_stat_header(&store, &c.id, &p)?;
        Ok((c.id, header))
    })
    .await?;
    let root = state.root.clone();
    let body = attach::tar_body(move |out| {
        ctr::cp::archive(&ContainerStore::open(&root), &id, &path, out).map_err(|e| e.to_string())
    });
    Ok((
        [
            (header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/x-tar")),
            (PATH_STAT.parse().map_err(|_| ApiError::internal("bad header name"))?, header),
        ],
        body,
    )
        .into_response())
}

/// `PUT /containers/{id}/archive?path=DIR`: unpacks the tar body into directory `DIR` (staged to a file first;
/// the same protections as image layers: nothing lands outside the container's root).
pub async fn archive_put(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    q: Query,
    body: Body,
) -> ApiResult<StatusCode> {
    let dir = q.get("path").filter(|p| !p.is_empty()).ok_or_else(|| ApiError::bad_request("path is required"))?;
    let dir = dir.to_owned();
    let (staging, _) = super::stage_body(&state.root, body, "the archive").await?;
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        let input = staging.reopen().map_err(|e| ApiError::internal(format!("cannot read the staged archive: {e}")))?;
        ctr::cp::extract(&store, &c.id, &dir, std::io::BufReader::new(input))?;
        Ok(StatusCode::OK)
    })
    .await
}

/// `POST /containers/prune`: removes stopped containers; `{"ContainersDeleted", "SpaceReclaimed"}`.
pub async fn prune(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let Some(scope) = scope else {
            let (ids, bytes) = ctr::prune::prune(&store)?;
            return Ok(Json(json!({ "ContainersDeleted": ids, "SpaceReclaimed": bytes })));
        };
        let mut ids = Vec::new();
        let mut bytes = 0;
        for (c, s) in store.list()? {
            if s.is_running() || !scope.holds(&c.config.labels) {
                continue;
            }
            bytes += crate::image::layer::dir_size(&store.dir(&c.id).join("upper"));
            ctr::remove::remove(&store, &c.id, false, false)?;
            ids.push(c.id);
        }
        Ok(Json(json!({ "ContainersDeleted": ids, "SpaceReclaimed": bytes })))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(body: &str) -> ApiResult<CreateOptions> {
        create_options(parse_json(body.as_bytes())?, None)
    }

    #[test]
    fn docker_create_bodies_map_to_options() -> Result<(), String> {
        let o = options(
            r#"{"Image":"busybox","Cmd":["echo","hi"],"Entrypoint":null,"Env":["A=1","BARE"],"Tty":false,
               "HostConfig":{"AutoRemove":true,"NetworkMode":"default","RestartPolicy":{"Name":"no"},
               "PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]},"Memory":67108864,"NanoCpus":1500000000,
               "Mounts":[{"Type":"bind","Source":"/tmp","Target":"/data","ReadOnly":true}],"Tmpfs":{"/run":"size=1m"}}}"#,
        )
        .map_err(|e| e.message)?;
        assert_eq!(o.image, "busybox");
        assert_eq!(o.cmd, ["echo", "hi"]);
        assert_eq!(o.env, ["A=1"]);
        assert!(o.auto_remove && o.network.is_none() && o.restart.is_none());
        assert_eq!(o.publish, ["8080:80/tcp"]);
        assert_eq!(o.memory.as_deref(), Some("67108864"));
        assert_eq!(o.cpus, Some(1.5));
        assert_eq!(o.mounts, ["type=bind,source=/tmp,target=/data,readonly"]);
        assert_eq!(o.tmpfs, ["/run:size=1m"]);
        let o = options(r#"{"Image":"x","Entrypoint":["sh","-c"],"Cmd":"exit 3"}"#).map_err(|e| e.message)?;
        assert_eq!((o.entrypoint.as_deref(), o.cmd), (Some("sh"), vec!["-c".to_owned(), "exit 3".to_owned()]));
        Ok(())
    }

    /// What compose sends over the API (`compose::create_body`) is read back as the options it was made from.
    #[test]
    fn compose_create_bodies_round_trip() -> Result<(), String> {
        let sent = CreateOptions {
            image: "busybox".into(),
            cmd: vec!["-c".into(), "exit 3".into()],
            name: Some("demo-app-1".into()),
            env: vec!["A=1".into(), "FROM_CLIENT".into(), "UNSET_HERE".into()],
            workdir: Some("/w".into()),
            user: Some("1000".into()),
            entrypoint: Some("sh".into()),
            binds: vec!["demo_data:/data:ro".into(), "/anon".into()],
            tmpfs: vec!["/run:size=1m".into()],
            network: Some("demo_default".into()),
            network_aliases: vec!["app".into(), "web".into()],
            ip: Some("10.5.0.9".into()),
            publish: vec!["127.0.0.1:8080:80/tcp".into(), "53/udp".into()],
            hostname: Some("h".into()),
            add_hosts: vec!["db:10.0.0.2".into()],
            dns: vec!["10.0.0.53".into()],
            expose: vec!["9000/tcp".into()],
            memory: Some("64m".into()),
            cpus: Some(0.5),
            restart: Some("on-failure:3".into()),
            init: true,
            labels: vec!["com.docker.compose.service=app".into()],
            stop_signal: Some("SIGINT".into()),
            stop_timeout: Some(3),
            healthcheck: Some(HealthConfig {
                test: vec!["CMD".into(), "true".into()],
                interval: 1,
                ..HealthConfig::default()
            }),
            ..CreateOptions::default()
        };
        let lookup = |k: &str| (k == "FROM_CLIENT").then(|| "v".to_string());
        let body = crate::compose::create_body::create_body(&sent, &lookup).map_err(|e| e.to_string())?;
        let got = options(&body.to_string()).map_err(|e| e.message)?;
        assert_eq!(got.env, ["A=1", "FROM_CLIENT=v"]);
        assert_eq!(got.publish.len(), 2);
        assert!(
            got.publish.contains(&"127.0.0.1:8080:80/tcp".to_string()) && got.publish.contains(&"53/udp".to_string())
        );
        assert_eq!(got.memory.as_deref(), Some("67108864"));
        let mut got_aliases = got.network_aliases.clone();
        got_aliases.sort();
        assert_eq!(got_aliases, ["app", "web"]);
        let strip = |o: CreateOptions| CreateOptions {
            name: None,
            env: Vec::new(),
            publish: Vec::new(),
            memory: None,
            network_aliases: Vec::new(),
            ..o
        };
        assert_eq!(format!("{:?}", strip(got)), format!("{:?}", strip(sent)));
        Ok(())
    }

    #[test]
    fn bad_create_bodies_are_400s() {
        assert!(options("{").is_err_and(|e| e.status == StatusCode::BAD_REQUEST));
        assert!(options(r#"{"Cmd":["true"]}"#).is_err_and(|e| e.message.contains("Image is required")));
        assert!(options(r#"{"Image":"x","Tty":"yes"}"#).is_err_and(|e| e.status == StatusCode::BAD_REQUEST));
    }

    #[test]
    fn filters_accept_both_docker_forms() -> Result<(), String> {
        assert_eq!(parse_filters(Some(r#"{"status":["exited"]}"#)).map_err(|e| e.message)?, ["status=exited"]);
        assert_eq!(parse_filters(Some(r#"{"label":{"a=b":true}}"#)).map_err(|e| e.message)?, ["label=a=b"]);
        assert!(parse_filters(Some("nope")).is_err());
        Ok(())
    }
}
