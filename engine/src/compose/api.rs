//! The [`Backend`] over the Docker Engine API (`engine serve`, or dockerd): compose orchestrates on the client, as
//! the real docker compose does, and each operation is one or two API calls through [`ApiClient`]. This is what
//! `docker compose …` / `docker-compose …` inside a CI job use (`DRYDOCK_HOST`/`DOCKER_HOST`, see
//! docs/engine-compose.md "Over the API").
//!
//! - Containers are found by the `com.docker.compose.project` label filter and created from the body
//!   [`super::create_body`] makes; `run` attaches before it starts (the server's `wait` answers its headers at
//!   once, so the exit code is read after the output, also for `--rm` containers that are gone by then).
//! - Build contexts are sent as tars of the directory as `.dockerignore` filters it ([`walk_context`]), streamed
//!   from a thread through a pipe.
//! - Health is polled from the container's inspect document (`State.Health.Status`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};

use super::backend::{Backend, BuildRequest, ContainerInfo};
use super::create_body::create_body;
use super::project::{Error, Result, LABEL_PROJECT};
use crate::build::dockerignore::IgnoreMatcher;
use crate::client::{demux, encode, query, ApiClient, Host, RequestBody};
use crate::container::create::CreateOptions;
use crate::container::exec::ExecOptions;
use crate::container::health::HealthOutcome;
use crate::container::logs::LogOptions;
use crate::container::tty::{window_size, RawMode};
use crate::container::Status;
use crate::network::ports::{Protocol, PublishedPort};

/// How often health and completion are polled.
const POLL: Duration = Duration::from_millis(100);

/// Compose over an Engine API server.
pub struct ApiBackend {
    host: Host,
    client: ApiClient,
}

impl ApiBackend {
    pub fn new(host: Host) -> Result<ApiBackend> {
        Ok(ApiBackend { client: ApiClient::new(host.clone())?, host })
    }

    /// A client of its own for a thread (`logs` of several containers at once): one client, one runtime, one
    /// caller at a time.
    fn own_client(&self) -> Result<ApiClient> {
        Ok(ApiClient::new(self.host.clone())?)
    }

    fn list(&self, filters: Option<Value>) -> Result<Vec<ContainerInfo>> {
        let filters = filters.map(|f| f.to_string());
        let mut pairs = vec![("all", "1")];
        if let Some(f) = &filters {
            pairs.push(("filters", f.as_str()));
        }
        let rows: Vec<Value> = self.client.get_json(&format!("/containers/json{}", query(&pairs)))?;
        rows.iter().map(info_from_list).collect()
    }

    /// Gives a TTY this terminal's size (`POST …/resize?h=&w=`); best effort, as docker's CLI does it.
    fn resize(&self, path: &str) {
        let Some((rows, cols)) = window_size(1) else { return };
        let (h, w) = (rows.to_string(), cols.to_string());
        if let Err(e) = self.client.post::<Value>(&format!("{path}{}", query(&[("h", &h), ("w", &w)])), None) {
            tracing::debug!(error = %e, "terminal resize not applied");
        }
    }

    fn inspect_json(&self, id: &str) -> Result<Value> {
        Ok(self.client.get_json(&format!("/containers/{}/json", encode(id)))?)
    }

    /// Reads a JSON-lines progress stream (pull, push, build): `stream`/`status` lines go to stderr unless
    /// `quiet`; an `error` line is the error.
    fn progress(&self, lines: impl Iterator<Item = crate::client::Result<Value>>, quiet: bool) -> Result<()> {
        let mut err = io::stderr().lock();
        for line in lines {
            let line = line?;
            if let Some(message) = line.get("error").and_then(Value::as_str) {
                return Err(Error::Other(message.trim_end().to_string()));
            }
            if quiet {
                continue;
            }
            if let Some(text) = line.get("stream").and_then(Value::as_str) {
                let _ = err.write_all(text.as_bytes());
            } else if let Some(status) = line.get("status").and_then(Value::as_str) {
                let _ = match line.get("id").and_then(Value::as_str) {
                    Some(id) => writeln!(err, "{id}: {status}"),
                    None => writeln!(err, "{status}"),
                };
            }
        }
        Ok(())
    }
}

/// A row of `GET /containers/json`.
fn info_from_list(row: &Value) -> Result<ContainerInfo> {
    let text = |key: &str| row.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let id = text("Id");
    if id.is_empty() {
        return Err(Error::Other(format!("the server listed a container without an Id: {row}")));
    }
    let name = row
        .get("Names")
        .and_then(|n| n.get(0))
        .and_then(Value::as_str)
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_else(|| id.clone());
    let status_text = text("Status");
    let created = row
        .get("Created")
        .and_then(Value::as_i64)
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_default();
    let ports = row
        .get("Ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| {
                    Some(PublishedPort {
                        container_port: u16::try_from(p.get("PrivatePort")?.as_u64()?).ok()?,
                        protocol: protocol(p.get("Type").and_then(Value::as_str).unwrap_or("tcp")),
                        host_ip: p.get("IP")?.as_str()?.parse().ok()?,
                        host_port: u16::try_from(p.get("PublicPort")?.as_u64()?).ok()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ContainerInfo {
        name,
        image: text("Image"),
        image_id: text("ImageID"),
        command: text("Command"),
        labels: labels(row.get("Labels")),
        created,
        status: status(&text("State")),
        exit_code: exit_code_in(&status_text),
        status_text,
        ports,
        id,
    })
}

/// `GET /containers/{id}/json`.
fn info_from_inspect(doc: &Value) -> ContainerInfo {
    let at = |path: &[&str]| path.iter().try_fold(doc, |v, k| v.get(k));
    let text = |path: &[&str]| at(path).and_then(Value::as_str).unwrap_or_default().to_string();
    let status = status(&text(&["State", "Status"]));
    let exit_code = at(&["State", "ExitCode"]).and_then(Value::as_i64).unwrap_or(0) as i32;
    let mut ports = Vec::new();
    if let Some(map) = at(&["NetworkSettings", "Ports"]).and_then(Value::as_object) {
        for (key, bindings) in map {
            let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
            let Ok(container_port) = port.parse::<u16>() else { continue };
            for b in bindings.as_array().into_iter().flatten() {
                let ip = b.get("HostIp").and_then(Value::as_str).unwrap_or("0.0.0.0");
                let host_port = b.get("HostPort").and_then(Value::as_str).and_then(|p| p.parse().ok());
                if let (Ok(host_ip), Some(host_port)) = (ip.parse(), host_port) {
                    ports.push(PublishedPort { container_port, protocol: protocol(proto), host_ip, host_port });
                }
            }
        }
    }
    let command = std::iter::once(text(&["Path"]))
        .chain(
            at(&["Args"]).and_then(Value::as_array).into_iter().flatten().filter_map(|a| a.as_str().map(String::from)),
        )
        .collect::<Vec<_>>()
        .join(" ");
    ContainerInfo {
        id: text(&["Id"]),
        name: text(&["Name"]).trim_start_matches('/').to_string(),
        image: text(&["Config", "Image"]),
        image_id: text(&["Image"]),
        command,
        labels: labels(at(&["Config", "Labels"])),
        created: text(&["Created"]),
        status_text: match status {
            Status::Exited => format!("Exited ({exit_code})"),
            other => other.as_str().to_string(),
        },
        status,
        exit_code,
        ports,
    }
}

fn labels(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

fn status(s: &str) -> Status {
    match s {
        "running" => Status::Running,
        "paused" => Status::Paused,
        "restarting" => Status::Restarting,
        "removing" => Status::Removing,
        "exited" => Status::Exited,
        "dead" => Status::Dead,
        _ => Status::Created,
    }
}

fn protocol(s: &str) -> Protocol {
    match s {
        "udp" => Protocol::Udp,
        _ => Protocol::Tcp,
    }
}

/// The code in docker's `Exited (3) 2 minutes ago`, 0 otherwise.
fn exit_code_in(status_text: &str) -> i32 {
    status_text
        .strip_prefix("Exited (")
        .and_then(|rest| rest.split_once(')'))
        .and_then(|(code, _)| code.parse().ok())
        .unwrap_or(0)
}

/// Copies an attached stream to stdout/stderr: demultiplexed without a TTY, raw with one.
fn copy_stream(mut reader: impl Read, tty: bool, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<()> {
    if tty {
        io::copy(&mut reader, out)?;
        out.flush()
    } else {
        demux(&mut reader, &mut WriteRef(out), &mut WriteRef(err))
    }
}

/// `&mut dyn Write` as a sized `Write` (what [`demux`] takes).
struct WriteRef<'a>(&'a mut dyn Write);

impl Write for WriteRef<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Streams stdin to a hijacked connection from a thread, then half-closes it (the container sees the end of its
/// input). The thread is left to end with the process when stdin never closes.
fn pump_stdin(hijacked: &crate::client::Hijacked) -> Result<()> {
    let mut writer =
        hijacked.writer().map_err(|e| Error::Other(format!("cannot write to the attached stream: {e}")))?;
    std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut writer);
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    Ok(())
}

impl Backend for ApiBackend {
    fn project_containers(&self, project: &str) -> Result<Vec<ContainerInfo>> {
        self.list(Some(json!({ "label": [format!("{LABEL_PROJECT}={project}")] })))
    }

    fn all_containers(&self) -> Result<Vec<ContainerInfo>> {
        self.list(None)
    }

    fn inspect_container(&self, id: &str) -> Result<ContainerInfo> {
        Ok(info_from_inspect(&self.inspect_json(id)?))
    }

    fn create_container(&self, opts: &CreateOptions) -> Result<String> {
        let body = create_body(opts, &|k| std::env::var(k).ok())?;
        let name = opts.name.clone().unwrap_or_default();
        let path = match name.is_empty() {
            true => "/containers/create".to_string(),
            false => format!("/containers/create{}", query(&[("name", &name)])),
        };
        let created: Value = self.client.post_json(&path, Some(&body))?;
        created
            .get("Id")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| Error::Other(format!("the server's answer to {path} has no Id: {created}")))
    }

    fn connect_network(&self, id: &str, network: &str, aliases: Vec<String>, ip: Option<Ipv4Addr>) -> Result<()> {
        let mut endpoint = json!({ "Aliases": aliases });
        if let Some(ip) = ip {
            endpoint["IPAMConfig"] = json!({ "IPv4Address": ip.to_string() });
        }
        let body = json!({ "Container": id, "EndpointConfig": endpoint });
        self.client.post(&format!("/networks/{}/connect", encode(network)), Some(&body))?;
        Ok(())
    }

    fn start_container(&self, id: &str) -> Result<()> {
        self.client.post::<Value>(&format!("/containers/{}/start", encode(id)), None)?;
        Ok(())
    }

    fn start_attached(&self, id: &str) -> Result<i32> {
        let doc = self.inspect_json(id)?;
        let tty = doc.pointer("/Config/Tty").and_then(Value::as_bool).unwrap_or(false);
        let stdin = doc.pointer("/Config/OpenStdin").and_then(Value::as_bool).unwrap_or(false);
        let auto_remove = doc.pointer("/HostConfig/AutoRemove").and_then(Value::as_bool).unwrap_or(false);
        // The wait is asked first (its headers come at once) so an auto-removed container's code is not lost.
        let condition = if auto_remove { "removed" } else { "next-exit" };
        let waiter = self.own_client()?;
        let wait = waiter.request(
            Method::POST,
            &format!("/containers/{}/wait{}", encode(id), query(&[("condition", condition)])),
            &[],
            RequestBody::Empty,
        )?;
        let mut pairs = vec![("stream", "1"), ("stdout", "1"), ("stderr", "1")];
        if stdin {
            pairs.push(("stdin", "1"));
        }
        let hijacked =
            self.client.upgrade(&format!("/containers/{}/attach{}", encode(id), query(&pairs)), RequestBody::Empty)?;
        if stdin {
            pump_stdin(&hijacked)?;
        }
        let reader = hijacked.reader().map_err(|e| Error::Other(format!("cannot read the attached stream: {e}")))?;
        // With a TTY the local terminal is raw while attached (keys go through unchanged) and sized as ours.
        let _raw = if tty && stdin { RawMode::enter(0) } else { None };
        self.start_container(id)?;
        if tty {
            self.resize(&format!("/containers/{}/resize", encode(id)));
        }
        let copied = copy_stream(reader, tty, &mut io::stdout().lock(), &mut io::stderr().lock());
        let result: Value = wait.json()?;
        copied.map_err(|e| Error::Other(format!("reading the output of container {id}: {e}")))?;
        if let Some(message) = result.pointer("/Error/Message").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            return Err(Error::Other(message.to_string()));
        }
        Ok(result.get("StatusCode").and_then(Value::as_i64).unwrap_or(0) as i32)
    }

    fn stop_container(&self, id: &str, timeout_s: Option<i64>) -> Result<()> {
        let t = timeout_s.map(|t| t.to_string());
        let pairs: Vec<(&str, &str)> = t.iter().map(|t| ("t", t.as_str())).collect();
        self.client.post::<Value>(&format!("/containers/{}/stop{}", encode(id), query(&pairs)), None)?;
        Ok(())
    }

    fn restart_container(&self, id: &str, timeout_s: Option<i64>) -> Result<()> {
        let t = timeout_s.map(|t| t.to_string());
        let pairs: Vec<(&str, &str)> = t.iter().map(|t| ("t", t.as_str())).collect();
        self.client.post::<Value>(&format!("/containers/{}/restart{}", encode(id), query(&pairs)), None)?;
        Ok(())
    }

    fn kill_container(&self, id: &str, signal: &str) -> Result<()> {
        self.client.post::<Value>(&format!("/containers/{}/kill{}", encode(id), query(&[("signal", signal)])), None)?;
        Ok(())
    }

    fn remove_container(&self, id: &str, force: bool, volumes: bool) -> Result<()> {
        let flag = |b: bool| if b { "1" } else { "0" };
        let path = format!("/containers/{}{}", encode(id), query(&[("force", flag(force)), ("v", flag(volumes))]));
        match self.client.delete(&path) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop).map_err(Error::from),
        }
    }

    fn wait_healthy(&self, id: &str, timeout: Option<Duration>) -> Result<HealthOutcome> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let doc = self.inspect_json(id)?;
            let health = doc.pointer("/State/Health/Status").and_then(Value::as_str);
            let running = doc.pointer("/State/Running").and_then(Value::as_bool).unwrap_or(false);
            match health {
                Some("healthy") => return Ok(HealthOutcome::Healthy),
                Some("unhealthy") => return Ok(HealthOutcome::Unhealthy),
                _ if !running && doc.pointer("/State/Status").and_then(Value::as_str) != Some("created") => {
                    let code = doc.pointer("/State/ExitCode").and_then(Value::as_i64).unwrap_or(0) as i32;
                    return Ok(HealthOutcome::Exited(code));
                }
                None => {
                    let test = doc.pointer("/Config/Healthcheck/Test").and_then(Value::as_array);
                    let none = test.is_none_or(|t| t.is_empty() || t[0].as_str() == Some("NONE"));
                    if none {
                        return Ok(HealthOutcome::NoHealthcheck);
                    }
                }
                Some(_) => {}
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Ok(HealthOutcome::TimedOut(None));
            }
            std::thread::sleep(POLL);
        }
    }

    fn exec(&self, id: &str, opts: &ExecOptions) -> Result<i32> {
        let body = json!({
            "Cmd": opts.cmd,
            "Env": opts.env,
            "User": opts.user.clone().unwrap_or_default(),
            "WorkingDir": opts.workdir.clone().unwrap_or_default(),
            "Tty": opts.tty,
            "AttachStdin": opts.interactive && !opts.detach,
            "AttachStdout": !opts.detach,
            "AttachStderr": !opts.detach,
        });
        let created: Value = self.client.post_json(&format!("/containers/{}/exec", encode(id)), Some(&body))?;
        let exec_id = created
            .get("Id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Other(format!("the server's exec answer has no Id: {created}")))?
            .to_string();
        let start = json!({ "Detach": opts.detach, "Tty": opts.tty });
        let path = format!("/exec/{}/start", encode(&exec_id));
        if opts.detach {
            self.client.post(&path, Some(&start))?;
            return Ok(0);
        }
        let hijacked = self.client.upgrade(&path, RequestBody::json(&start)?)?;
        if opts.interactive {
            pump_stdin(&hijacked)?;
        }
        let _raw = if opts.tty && opts.interactive { RawMode::enter(0) } else { None };
        if opts.tty {
            self.resize(&format!("/exec/{}/resize", encode(&exec_id)));
        }
        let reader = hijacked.reader().map_err(|e| Error::Other(format!("cannot read the exec stream: {e}")))?;
        copy_stream(reader, opts.tty, &mut io::stdout().lock(), &mut io::stderr().lock())
            .map_err(|e| Error::Other(format!("reading the output of exec in {id}: {e}")))?;
        let inspect: Value = self.client.get_json(&format!("/exec/{}/json", encode(&exec_id)))?;
        Ok(inspect.get("ExitCode").and_then(Value::as_i64).unwrap_or(0) as i32)
    }

    fn logs(&self, id: &str, opts: &LogOptions, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
        let client = self.own_client()?;
        let doc: Value = client.get_json(&format!("/containers/{}/json", encode(id)))?;
        let tty = doc.pointer("/Config/Tty").and_then(Value::as_bool).unwrap_or(false);
        let tail = opts.tail.map_or("all".to_string(), |t| t.to_string());
        let flag = |b: bool| if b { "1" } else { "0" };
        let mut pairs = vec![
            ("stdout", "1"),
            ("stderr", "1"),
            ("follow", flag(opts.follow)),
            ("timestamps", flag(opts.timestamps)),
            ("tail", tail.as_str()),
        ];
        if let Some(since) = &opts.since {
            pairs.push(("since", since.as_str()));
        }
        let res = client.request(
            Method::GET,
            &format!("/containers/{}/logs{}", encode(id), query(&pairs)),
            &[],
            RequestBody::Empty,
        )?;
        copy_stream(res, tty, out, err).map_err(|e| Error::Other(format!("reading the logs of {id}: {e}")))
    }

    fn top(&self, id: &str) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let doc: Value = self.client.get_json(&format!("/containers/{}/top", encode(id)))?;
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().into_iter().flatten().map(|s| s.as_str().unwrap_or_default().to_string()).collect()
        };
        let titles = doc.get("Titles").map(strings).unwrap_or_default();
        let rows = doc.get("Processes").and_then(Value::as_array).into_iter().flatten().map(strings).collect();
        Ok((titles, rows))
    }

    fn network_labels(&self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        match self.client.get_json::<Value>(&format!("/networks/{}", encode(name))) {
            Ok(doc) => Ok(Some(labels(doc.get("Labels")))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn create_network(&self, opts: &crate::network::CreateOptions) -> Result<()> {
        let mut ipam = serde_json::Map::new();
        if opts.subnet.is_some() || opts.gateway.is_some() {
            let mut config = serde_json::Map::new();
            if let Some(s) = &opts.subnet {
                config.insert("Subnet".into(), json!(s));
            }
            if let Some(g) = &opts.gateway {
                config.insert("Gateway".into(), json!(g));
            }
            ipam.insert("Config".into(), json!([config]));
        }
        let body = json!({
            "Name": opts.name,
            "Driver": opts.driver.clone().unwrap_or_else(|| "bridge".into()),
            "Internal": opts.internal,
            "Labels": opts.labels,
            "Options": opts.options,
            "IPAM": ipam,
        });
        self.client.post_json::<Value, _>("/networks/create", Some(&body))?;
        Ok(())
    }

    fn remove_network(&self, name: &str) -> Result<()> {
        self.client.delete(&format!("/networks/{}", encode(name)))?;
        Ok(())
    }

    fn volume_exists(&self, name: &str) -> Result<bool> {
        match self.client.get_json::<Value>(&format!("/volumes/{}", encode(name))) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn create_volume(&self, name: &str, labels: BTreeMap<String, String>) -> Result<()> {
        let body = json!({ "Name": name, "Labels": labels });
        self.client.post_json::<Value, _>("/volumes/create", Some(&body))?;
        Ok(())
    }

    fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let path = format!("/volumes/{}{}", encode(name), query(&[("force", if force { "1" } else { "0" })]));
        match self.client.delete(&path) {
            Err(e) if force && e.is_not_found() => Ok(()),
            other => other.map(drop).map_err(Error::from),
        }
    }

    fn image_id(&self, name: &str) -> Result<Option<String>> {
        match self.client.get_json::<Value>(&format!("/images/{name}/json")) {
            Ok(doc) => Ok(doc.get("Id").and_then(Value::as_str).map(String::from)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn image_size(&self, name: &str) -> Result<Option<u64>> {
        match self.client.get_json::<Value>(&format!("/images/{name}/json")) {
            Ok(doc) => Ok(doc.get("Size").and_then(Value::as_u64)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn remove_image(&self, name: &str) -> Result<()> {
        self.client.delete(&format!("/images/{name}"))?;
        Ok(())
    }

    fn pull_image(&self, name: &str, quiet: bool) -> Result<()> {
        let res = self.client.request(
            Method::POST,
            &format!("/images/create{}", query(&[("fromImage", name)])),
            &auth_header(name)?,
            RequestBody::Empty,
        )?;
        self.progress(res.json_lines(), quiet)
    }

    fn push_image(&self, name: &str) -> Result<()> {
        let res = self.client.request(
            Method::POST,
            &format!("/images/{name}/push"),
            &auth_header(name)?,
            RequestBody::Empty,
        )?;
        self.progress(res.json_lines(), false)
    }

    fn build_image(&self, request: &BuildRequest) -> Result<()> {
        let Some(build) = &request.service.build else { return Ok(()) };
        let (dockerfile, outside) = dockerfile_for(&build.context, build.dockerfile.as_deref())?;
        let mut args: BTreeMap<String, String> = build
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().or_else(|| std::env::var(k).ok()).map(|v| (k.clone(), v)))
            .collect();
        for a in request.extra_args {
            match a.split_once('=') {
                Some((k, v)) => args.insert(k.to_string(), v.to_string()),
                None => std::env::var(a).ok().and_then(|v| args.insert(a.clone(), v)),
            };
        }
        let args = serde_json::to_string(&args).map_err(|e| Error::Other(e.to_string()))?;
        let labels = serde_json::to_string(&build.labels).map_err(|e| Error::Other(e.to_string()))?;
        let flag = |b: bool| if b { "1" } else { "0" };
        let mut pairs = vec![
            ("t", request.image),
            ("dockerfile", dockerfile.as_str()),
            ("buildargs", args.as_str()),
            ("labels", labels.as_str()),
            ("nocache", flag(request.no_cache || build.no_cache)),
            ("pull", flag(request.pull || build.pull)),
            ("q", flag(request.quiet)),
        ];
        if let Some(t) = &build.target {
            pairs.push(("target", t.as_str()));
        }
        let tar = match &outside {
            None => context_tar(&build.context, &dockerfile)?,
            Some(text) => {
                let matcher = IgnoreMatcher::from_file(&build.context.join(".dockerignore"))?.keep(".dockerignore");
                crate::build::context::tar_of(&build.context, &matcher, Some((dockerfile.as_str(), text)))?
            }
        };
        let res = self.client.request(
            Method::POST,
            &format!("/build{}", query(&pairs)),
            &[("Content-Type", "application/x-tar".to_string())],
            RequestBody::Reader(Box::new(tar)),
        )?;
        self.progress(res.json_lines(), request.quiet)
    }
}

/// The `X-Registry-Auth` header for the registry of image `name`, from this side's credentials (what
/// `docker login` / `engine login` saved here, as the remote CLI sends them); none without credentials.
fn auth_header(name: &str) -> Result<Vec<(&'static str, String)>> {
    let Ok(reference) = crate::reference::Reference::parse(name) else { return Ok(Vec::new()) };
    let registry = crate::registry::login::normalise_registry(Some(&reference.registry));
    match crate::registry::credentials::CredentialStore::default_location().get(&registry) {
        Ok(Some(c)) => Ok(vec![("X-Registry-Auth", crate::client::registry_auth(&c.username, &c.password, &registry))]),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(Error::Other(format!("cannot read the credentials for {registry}: {e}"))),
    }
}

/// The Dockerfile a service's build names, as the server finds it in the context: its path in the context
/// (compose resolves a relative `dockerfile` from the context), or — when it lies outside, as
/// `dockerfile: ../docker/Dockerfile.test` often does — its text, sent in the tar as `.drydock-dockerfile`
/// (what the remote `engine build -f` does).
fn dockerfile_for(context: &Path, dockerfile: Option<&str>) -> Result<(String, Option<Vec<u8>>)> {
    let Some(f) = dockerfile else { return Ok(("Dockerfile".into(), None)) };
    let path = if Path::new(f).is_absolute() { PathBuf::from(f) } else { context.join(f) };
    let inside = path
        .canonicalize()
        .ok()
        .zip(context.canonicalize().ok())
        .and_then(|(p, c)| p.strip_prefix(&c).ok().map(|r| r.to_string_lossy().into_owned()));
    match inside {
        Some(rel) if !rel.is_empty() => Ok((rel, None)),
        _ => {
            let text = std::fs::read(&path)
                .map_err(|e| Error::Other(format!("cannot read the Dockerfile {}: {e}", path.display())))?;
            Ok((".drydock-dockerfile".into(), Some(text)))
        }
    }
}

/// The build context `dir` as a tar: the paths `.dockerignore` keeps (the Dockerfile and `.dockerignore` always).
pub fn context_tar(dir: &Path, dockerfile: &str) -> Result<File> {
    let matcher = IgnoreMatcher::from_file(&dir.join(".dockerignore"))?.keep(dockerfile).keep(".dockerignore");
    Ok(crate::build::context::tar_of(dir, &matcher, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dockerfile_outside_the_context_travels_in_the_tar() -> Result<()> {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("app/sub")).expect("mkdir");
        std::fs::write(dir.path().join("app/sub/Dockerfile.x"), "FROM busybox\n").expect("write");
        std::fs::write(dir.path().join("Dockerfile.test"), "FROM busybox\nRUN true\n").expect("write");
        let context = dir.path().join("app");
        assert_eq!(dockerfile_for(&context, None)?, ("Dockerfile".into(), None));
        assert_eq!(dockerfile_for(&context, Some("sub/Dockerfile.x"))?, ("sub/Dockerfile.x".into(), None));
        let outside = dockerfile_for(&context, Some("../Dockerfile.test"))?;
        assert_eq!(outside, (".drydock-dockerfile".into(), Some(b"FROM busybox\nRUN true\n".to_vec())));
        let missing = dockerfile_for(&context, Some("../nope")).expect_err("a missing Dockerfile is an error");
        assert!(missing.to_string().contains("nope"), "{missing}");
        Ok(())
    }

    #[test]
    fn list_rows_become_container_infos() -> Result<()> {
        let row = json!({
            "Id": "abc", "Names": ["/demo-web-1"], "Image": "busybox", "ImageID": "sha256:1",
            "Command": "httpd -f", "Created": 1_700_000_000, "State": "exited",
            "Status": "Exited (3) 2 seconds ago",
            "Labels": { "com.docker.compose.project": "demo" },
            "Ports": [{ "IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp" }],
        });
        let c = info_from_list(&row)?;
        assert_eq!((c.name.as_str(), c.status, c.exit_code), ("demo-web-1", Status::Exited, 3));
        assert_eq!(c.label(LABEL_PROJECT), Some("demo"));
        assert_eq!(c.ports.len(), 1);
        assert_eq!(c.ports[0].host_address(), "127.0.0.1:8080");
        assert!(c.created.starts_with("2023-11-14T22:13:20"));
        assert!(info_from_list(&json!({ "Names": ["/x"] })).is_err());
        Ok(())
    }

    #[test]
    fn inspect_documents_become_container_infos() {
        let doc = json!({
            "Id": "abc", "Name": "/demo-app-run-1", "Image": "sha256:1", "Path": "sh", "Args": ["-c", "exit 3"],
            "Created": "2024-01-01T00:00:00Z",
            "State": { "Status": "running", "Running": true, "ExitCode": 0 },
            "Config": { "Image": "busybox", "Labels": { "com.docker.compose.oneoff": "True" } },
            "NetworkSettings": { "Ports": { "80/tcp": [{ "HostIp": "0.0.0.0", "HostPort": "32768" }], "53/udp": null } },
        });
        let c = info_from_inspect(&doc);
        assert_eq!((c.name.as_str(), c.command.as_str()), ("demo-app-run-1", "sh -c exit 3"));
        assert!(c.is_running());
        assert_eq!(c.ports.iter().map(|p| p.host_port).collect::<Vec<_>>(), [32768]);
    }

    #[test]
    fn build_contexts_are_tars_of_what_dockerignore_keeps() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("Dockerfile"), "FROM busybox\n")?;
        std::fs::write(dir.path().join(".dockerignore"), "secret*\nDockerfile\n")?;
        std::fs::write(dir.path().join("secret.txt"), "no")?;
        std::fs::create_dir(dir.path().join("src"))?;
        std::fs::write(dir.path().join("src/main.sh"), "echo hi")?;
        let mut names = Vec::new();
        let mut archive = tar::Archive::new(context_tar(dir.path(), "Dockerfile")?);
        for entry in archive.entries()? {
            names.push(entry?.path()?.display().to_string().trim_end_matches('/').to_string());
        }
        names.sort();
        assert_eq!(names, [".dockerignore", "Dockerfile", "src", "src/main.sh"]);
        Ok(())
    }
}
