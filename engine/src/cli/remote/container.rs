//! Container verbs over the API: `run` (create, attach, wait, start: the docker CLI's order, so no output is
//! lost), `create`, `start`, `stop`, `kill`, `restart`, `rm`, `wait`, `ps`, `logs`, `exec`, `inspect`, `port`,
//! `top`, `rename`, `cp` (archive GET/PUT), `pause`, `unpause`, `prune`.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{json, Value};

use engine::client::{self, encode, query, ApiClient, Hijacked, RequestBody};
use engine::humanize;

use super::super::container::{
    ContainerCommand, ContainerGroupCommand, CpArgs, CreateArgs, ExecArgs, LogsArgs, PsArgs, RunArgs, StartArgs,
};
use super::super::{table, ExitError};
use super::{each, filters_json};

pub fn run(cmd: ContainerCommand, client: &ApiClient) -> anyhow::Result<ExitCode> {
    match cmd {
        ContainerCommand::Run(args) => run_container(*args, client),
        ContainerCommand::Create(args) => {
            let id = create(&args, client)?;
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Start(args) => start(args, client),
        ContainerCommand::Stop(args) => each(&args.containers, |name| {
            let q = args.time.map(|t| t.to_string());
            let pairs: Vec<(&str, &str)> = q.as_deref().map(|t| ("t", t)).into_iter().collect();
            client.post::<Value>(&format!("/containers/{}/stop{}", encode(name), query(&pairs)), None)?;
            Ok(())
        }),
        ContainerCommand::Restart(args) => each(&args.containers, |name| {
            let q = args.time.map(|t| t.to_string());
            let pairs: Vec<(&str, &str)> = q.as_deref().map(|t| ("t", t)).into_iter().collect();
            client.post::<Value>(&format!("/containers/{}/restart{}", encode(name), query(&pairs)), None)?;
            Ok(())
        }),
        ContainerCommand::Kill(args) => each(&args.containers, |name| {
            let q = query(&[("signal", args.signal.as_str())]);
            client.post::<Value>(&format!("/containers/{}/kill{q}", encode(name)), None)?;
            Ok(())
        }),
        ContainerCommand::Pause(args) => each(&args.containers, |name| {
            client.post::<Value>(&format!("/containers/{}/pause", encode(name)), None)?;
            Ok(())
        }),
        ContainerCommand::Unpause(args) => each(&args.containers, |name| {
            client.post::<Value>(&format!("/containers/{}/unpause", encode(name)), None)?;
            Ok(())
        }),
        ContainerCommand::Rm(args) => each(&args.containers, |name| {
            let q = query(&[("force", flag(args.force)), ("v", flag(args.volumes))]);
            client.delete(&format!("/containers/{}{q}", encode(name)))?;
            Ok(())
        }),
        ContainerCommand::Wait(args) => {
            for name in &args.containers {
                let v: Value = client.post_json::<Value, Value>(&format!("/containers/{}/wait", encode(name)), None)?;
                println!("{}", v["StatusCode"].as_i64().unwrap_or(-1));
            }
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Ps(args) => ps(args, client),
        ContainerCommand::Logs(args) => logs(args, client),
        ContainerCommand::Exec(args) => exec(args, client),
        ContainerCommand::Top(args) => {
            let v: Value = client.get_json(&format!("/containers/{}/top", encode(&args.container)))?;
            let header: Vec<String> = strings(&v["Titles"]);
            let rows: Vec<Vec<String>> =
                v["Processes"].as_array().map_or(Vec::new(), |r| r.iter().map(strings).collect());
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            table::print(&header, &rows)?;
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Diff(args) => {
            let v: Value = client.get_json(&format!("/containers/{}/changes", encode(&args.container)))?;
            let mut out = io::stdout().lock();
            for change in v.as_array().into_iter().flatten() {
                let kind = match change["Kind"].as_i64() {
                    Some(0) => "C",
                    Some(1) => "A",
                    _ => "D",
                };
                writeln!(out, "{kind} {}", change["Path"].as_str().unwrap_or_default())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Cp(args) => cp(args, client),
        ContainerCommand::Commit(args) => {
            let (repo, tag) = match &args.repository {
                Some(r) => split_tag(r),
                None => (String::new(), String::new()),
            };
            let mut pairs =
                vec![("container", args.container.as_str()), ("repo", repo.as_str()), ("tag", tag.as_str())];
            pairs.push(("pause", flag(args.pause)));
            if let Some(m) = &args.message {
                pairs.push(("comment", m));
            }
            if let Some(a) = &args.author {
                pairs.push(("author", a));
            }
            let changes = args.change.join("\n");
            if !changes.is_empty() {
                pairs.push(("changes", &changes));
            }
            let v: Value = client.post_json::<Value, Value>(&format!("/commit{}", query(&pairs)), None)?;
            println!("{}", v["Id"].as_str().unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Export(args) => {
            let mut res = client.request(
                hyper::Method::GET,
                &format!("/containers/{}/export", encode(&args.container)),
                &[],
                RequestBody::Empty,
            )?;
            match &args.output {
                Some(path) => {
                    let mut file =
                        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
                    io::copy(&mut res, &mut file).with_context(|| format!("cannot write {}", path.display()))?;
                }
                None => {
                    if io::stdout().is_terminal() {
                        anyhow::bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
                    }
                    io::copy(&mut res, &mut io::stdout().lock())?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Rename(args) => {
            let q = query(&[("name", args.new_name.as_str())]);
            client.post::<Value>(&format!("/containers/{}/rename{q}", encode(&args.container)), None)?;
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Port(args) => port(&args.container, args.port.as_deref(), client),
        ContainerCommand::ContainerMonitor(_) => anyhow::bail!("the container monitor runs on an engine root"),
    }
}

pub fn run_group(cmd: ContainerGroupCommand, client: &ApiClient) -> anyhow::Result<ExitCode> {
    match cmd {
        ContainerGroupCommand::Verb(v) => run(v, client),
        ContainerGroupCommand::Ls(args) => ps(args, client),
        ContainerGroupCommand::Inspect(args) => {
            let mut values = Vec::new();
            let mut missing = None;
            for name in &args.containers {
                match super::optional(client.get_json::<Value>(&format!("/containers/{}/json", encode(name))))? {
                    Some(v) => values.push(v),
                    None => missing = missing.or(Some(name.clone())),
                }
            }
            super::super::print_inspect(&values, args.format.as_deref())?;
            if let Some(name) = missing {
                return Err(ExitError { code: 1, message: format!("No such container: {name}") }.into());
            }
            Ok(ExitCode::SUCCESS)
        }
        ContainerGroupCommand::Prune(_) => {
            let v: Value = client.post_json::<Value, Value>("/containers/prune", None)?;
            let mut out = io::stdout().lock();
            let deleted = strings(&v["ContainersDeleted"]);
            if !deleted.is_empty() {
                writeln!(out, "Deleted Containers:")?;
                for id in deleted {
                    writeln!(out, "{id}")?;
                }
                writeln!(out)?;
            }
            writeln!(out, "Total reclaimed space: {}", humanize::size(v["SpaceReclaimed"].as_u64().unwrap_or(0)))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_owned)).collect())
        .unwrap_or_default()
}

/// `repo:tag` → (`repo`, `tag`); a port in the registry host is not a tag.
fn split_tag(r: &str) -> (String, String) {
    match r.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
        _ => (r.to_owned(), String::new()),
    }
}

/// A container's exit code as this process's (the low 8 bits, as docker).
fn exit(code: i64) -> ExitCode {
    ExitCode::from((code & 0xff) as u8)
}

/// The docker `POST /containers/create` body for the flags.
fn create_body(a: &CreateArgs) -> anyhow::Result<Value> {
    // Environment: files first, then -e; a bare KEY takes this shell's value (dropped when unset, as docker).
    let mut env = Vec::new();
    for file in &a.env_file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("cannot read --env-file {}", file.display()))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            env.push(line.to_owned());
        }
    }
    env.extend(a.env.iter().cloned());
    let env: Vec<String> = env
        .into_iter()
        .filter_map(|e| if e.contains('=') { Some(e) } else { std::env::var(&e).ok().map(|v| format!("{e}={v}")) })
        .collect();
    let image = a.image_and_command.first().cloned().unwrap_or_default();
    let cmd = &a.image_and_command[1.min(a.image_and_command.len())..];
    let mut port_bindings: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in &a.publish {
        let (binding, container_port) = split_publish(p)?;
        port_bindings.entry(container_port).or_default().push(binding);
    }
    let restart = a.restart.as_deref().map(|r| {
        let (name, count) = r.split_once(':').unwrap_or((r, "0"));
        json!({"Name": name, "MaximumRetryCount": count.parse::<i64>().unwrap_or(0)})
    });
    let memory = match &a.memory {
        Some(m) => Some(engine::container::create::parse_memory(m).with_context(|| format!("invalid --memory `{m}`"))?),
        None => None,
    };
    let mut mounts = Vec::new();
    for m in &a.mount {
        mounts.push(mount_json(m)?);
    }
    let tmpfs: BTreeMap<String, String> = a
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((path, opts)) => (path.to_owned(), opts.to_owned()),
            None => (t.clone(), String::new()),
        })
        .collect();
    let labels: BTreeMap<String, String> = a
        .label
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect();
    let mut body = json!({
        "Image": image,
        "Env": env,
        "Tty": a.tty,
        "OpenStdin": a.interactive,
        "StdinOnce": a.interactive,
        "AttachStdin": a.interactive,
        "AttachStdout": true,
        "AttachStderr": true,
        "Labels": labels,
        "HostConfig": {
            "Binds": a.volume,
            "Mounts": mounts,
            "Tmpfs": tmpfs,
            "VolumesFrom": a.volumes_from,
            "PortBindings": port_bindings,
            "PublishAllPorts": a.publish_all,
            "AutoRemove": a.rm,
            "Init": a.init,
            "SecurityOpt": a.security_opt,
            "ExtraHosts": a.add_host,
            "Dns": a.dns,
            "DnsSearch": a.dns_search,
            "DnsOptions": a.dns_option,
        },
    });
    let set = |body: &mut Value, key: &str, v: Value| {
        if let Some(o) = body.as_object_mut() {
            o.insert(key.to_owned(), v);
        }
    };
    let set_host = |body: &mut Value, key: &str, v: Value| {
        if let Some(o) = body["HostConfig"].as_object_mut() {
            o.insert(key.to_owned(), v);
        }
    };
    // The terminal's size from the start (docker's ConsoleSize, [height, width]), so the first prompt fits.
    if let Some((rows, cols)) = a.tty.then(|| engine::container::tty::window_size(0)).flatten() {
        set_host(&mut body, "ConsoleSize", json!([rows, cols]));
    }
    if !cmd.is_empty() {
        set(&mut body, "Cmd", json!(cmd));
    }
    if let Some(e) = &a.entrypoint {
        set(&mut body, "Entrypoint", json!([e]));
        if cmd.is_empty() {
            // docker: a new entrypoint drops the image's CMD.
            set(&mut body, "Cmd", json!([]));
        }
    }
    for (key, v) in
        [("WorkingDir", &a.workdir), ("User", &a.user), ("Hostname", &a.hostname), ("StopSignal", &a.stop_signal)]
    {
        if let Some(v) = v {
            set(&mut body, key, json!(v));
        }
    }
    if let Some(t) = a.stop_timeout {
        set(&mut body, "StopTimeout", json!(t));
    }
    let health = engine::container::health::HealthFlags {
        cmd: a.health_cmd.clone(),
        interval: a.health_interval,
        timeout: a.health_timeout,
        start_period: a.health_start_period,
        start_interval: a.health_start_interval,
        retries: a.health_retries,
    }
    .to_override();
    if a.no_healthcheck {
        set(&mut body, "Healthcheck", json!({"Test": ["NONE"]}));
    } else if let Some(h) = health {
        set(&mut body, "Healthcheck", serde_json::to_value(h)?);
    }
    if !a.expose.is_empty() {
        let ports: BTreeMap<String, Value> = a
            .expose
            .iter()
            .map(|p| (if p.contains('/') { p.clone() } else { format!("{p}/tcp") }, json!({})))
            .collect();
        set(&mut body, "ExposedPorts", json!(ports));
    }
    if let Some(n) = &a.network {
        set_host(&mut body, "NetworkMode", json!(n));
        let mut endpoint = json!({"Aliases": a.network_alias});
        if let Some(ip) = &a.ip {
            endpoint["IPAMConfig"] = json!({"IPv4Address": ip});
        }
        set(&mut body, "NetworkingConfig", json!({"EndpointsConfig": {n: endpoint}}));
    }
    if let Some(r) = restart {
        set_host(&mut body, "RestartPolicy", r);
    }
    if let Some(m) = memory {
        set_host(&mut body, "Memory", json!(m));
    }
    if let Some(c) = a.cpus {
        set_host(&mut body, "NanoCpus", json!((c * 1e9) as i64));
    }
    if let Some(p) = a.pids_limit {
        set_host(&mut body, "PidsLimit", json!(p));
    }
    Ok(body)
}

/// `-p [IP:][HOST-PORT:]CONTAINER-PORT[/PROTO]` → (a `PortBindings` entry, `PORT/PROTO`).
fn split_publish(p: &str) -> anyhow::Result<(Value, String)> {
    let (spec, proto) = p.rsplit_once('/').unwrap_or((p, "tcp"));
    let (ip, rest) = if let Some(v6) = spec.strip_prefix('[') {
        let (ip, rest) = v6.split_once("]:").ok_or_else(|| anyhow::anyhow!("invalid -p `{p}`"))?;
        (ip.to_owned(), rest.to_owned())
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.as_slice() {
            [_] | [_, _] => (String::new(), spec.to_owned()),
            [ip, host, container] => (ip.to_string(), format!("{host}:{container}")),
            _ => anyhow::bail!("invalid -p `{p}`: expected [IP:][HOST-PORT:]CONTAINER-PORT[/udp]"),
        }
    };
    let (host_port, container_port) = match rest.split_once(':') {
        Some((h, c)) => (h.to_owned(), c.to_owned()),
        None => (String::new(), rest),
    };
    if container_port.is_empty() {
        anyhow::bail!("invalid -p `{p}`: no container port");
    }
    Ok((json!({"HostIp": ip, "HostPort": host_port}), format!("{container_port}/{proto}")))
}

/// `--mount type=…,source=…,target=…[,readonly]` → a `Mounts` entry.
fn mount_json(spec: &str) -> anyhow::Result<Value> {
    let mut m = serde_json::Map::new();
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, "true"));
        match k {
            "type" => m.insert("Type".into(), json!(v)),
            "source" | "src" => m.insert("Source".into(), json!(v)),
            "target" | "destination" | "dst" => m.insert("Target".into(), json!(v)),
            "readonly" | "ro" => m.insert("ReadOnly".into(), json!(v != "false" && v != "0")),
            other => anyhow::bail!("--mount `{spec}`: the option `{other}` is not supported over the Engine API"),
        };
    }
    Ok(Value::Object(m))
}

/// Creates the container, pulling its image first when the server does not have it (as `docker run` does).
fn create(a: &CreateArgs, client: &ApiClient) -> anyhow::Result<String> {
    let body = create_body(a)?;
    let q = match &a.name {
        Some(n) => query(&[("name", n)]),
        None => String::new(),
    };
    let path = format!("/containers/create{q}");
    let v: Value = match client.post_json::<Value, Value>(&path, Some(&body)) {
        Err(e) if e.is_not_found() => {
            let image = body["Image"].as_str().unwrap_or_default().to_owned();
            eprintln!("Unable to find image '{image}' locally");
            super::image::pull_image(&image, false, client, &mut io::stderr())?;
            client.post_json::<Value, Value>(&path, Some(&body))?
        }
        other => other?,
    };
    for w in v["Warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", w.as_str().unwrap_or_default());
    }
    v["Id"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("the server's create answer has no Id"))
}

/// A start error as docker's CLI reports it: 127 for a command that is not found, 126 for one that cannot be
/// run, else 125.
fn start_error(e: client::Error) -> anyhow::Error {
    let message = e.to_string();
    let lower = message.to_ascii_lowercase();
    let code = if lower.contains("not found") || lower.contains("no such file") {
        127
    } else if lower.contains("permission denied") || lower.contains("cannot execute") {
        126
    } else {
        engine::error::EXIT_ENGINE
    };
    ExitError { code, message: format!("Error response from daemon: {message}") }.into()
}

fn run_container(args: RunArgs, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let a = &args.create;
    let id = create(a, client)?;
    if args.detach {
        client.post::<Value>(&format!("/containers/{id}/start"), None).map_err(start_error)?;
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    // The docker CLI's order: attach, wait, then start — the attach stream is ready before the first byte.
    let stdin = flag(a.interactive);
    let hijacked = client.upgrade(
        &format!(
            "/containers/{id}/attach{}",
            query(&[("stream", "1"), ("stdin", stdin), ("stdout", "1"), ("stderr", "1")])
        ),
        RequestBody::Empty,
    )?;
    let condition = if a.rm { "removed" } else { "next-exit" };
    let mut wait = client.request(
        hyper::Method::POST,
        &format!("/containers/{id}/wait{}", query(&[("condition", condition)])),
        &[],
        RequestBody::Empty,
    )?;
    if let Err(e) = client.post::<Value>(&format!("/containers/{id}/start"), None) {
        if a.rm {
            let _ = client.delete(&format!("/containers/{id}?force=1"));
        }
        return Err(start_error(e));
    }
    pump(&hijacked, a.interactive, a.tty)?;
    let v: Value = serde_json::from_slice(&wait.body_bytes()?).context("the server's wait answer is not JSON")?;
    if let Some(msg) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
        anyhow::bail!("{msg}");
    }
    Ok(exit(v["StatusCode"].as_i64().unwrap_or(i64::from(engine::error::EXIT_ENGINE))))
}

/// Copies a hijacked stream to stdout/stderr (demultiplexed without a TTY) and, with `interactive`, stdin to it
/// on a thread of its own (half-closing the stream at stdin's end, which is the container's EOF).
fn pump(h: &Hijacked, interactive: bool, tty: bool) -> anyhow::Result<()> {
    // With -t on a terminal, keys go to the container as typed (the container's TTY does the echo and the line
    // editing); the terminal is restored when the guard drops.
    let raw = if tty && interactive { RawTerminal::enter() } else { None };
    if interactive {
        let mut writer = h.writer().context("cannot copy stdin to the attached stream")?;
        let (typed, typed_eof) = raw.as_ref().map_or((Vec::new(), false), |r| (r.typed.clone(), r.typed_eof));
        std::thread::spawn(move || {
            if writer.write_all(&typed).is_ok() && !typed_eof {
                let _ = io::copy(&mut io::stdin().lock(), &mut writer);
            }
            let _ = writer.shutdown(std::net::Shutdown::Write);
        });
    }
    let mut reader = h.reader().context("cannot read the attached stream")?;
    let r = if tty {
        io::copy(&mut reader, &mut io::stdout().lock()).map(|_| ())
    } else {
        client::demux(&mut reader, &mut io::stdout().lock(), &mut io::stderr().lock())
    };
    r.context("the attached stream broke")
}

/// This terminal in raw mode until dropped (`None` when stdin is not a terminal).
struct RawTerminal {
    saved: nix::sys::termios::Termios,
    /// Input typed before raw mode, read in the terminal's line mode (see [`RawTerminal::enter`]).
    typed: Vec<u8>,
    /// That input ended with the EOF character (^D at the start of a line): the container's stdin ends there.
    typed_eof: bool,
}

impl RawTerminal {
    /// Raw mode, after reading what was already typed in line mode: a pending EOF character is a marker in the
    /// line discipline's buffer that reads as a NUL byte once the terminal is raw (it reached the container as
    /// input, whose TTY echoed it: the output ended with a stray NUL). Read in line mode, it is the end of input.
    fn enter() -> Option<RawTerminal> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = tcgetattr(&stdin).ok()?;
        let (typed, typed_eof) = read_pending_lines();
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { saved, typed, typed_eof })
    }
}

/// The complete lines waiting on the terminal on stdin (line mode), and whether an EOF character followed them;
/// non-blocking reads, so nothing waits for input that is not there.
fn read_pending_lines() -> (Vec<u8>, bool) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::AsRawFd;
    let stdin = io::stdin().as_raw_fd();
    let Ok(flags) = fcntl(stdin, FcntlArg::F_GETFL) else { return (Vec::new(), false) };
    let flags = OFlag::from_bits_truncate(flags);
    if fcntl(stdin, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).is_err() {
        return (Vec::new(), false);
    }
    let (mut typed, mut eof, mut buf) = (Vec::new(), false, [0u8; 4096]);
    loop {
        match nix::unistd::read(stdin, &mut buf) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => typed.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    let _ = fcntl(stdin, FcntlArg::F_SETFL(flags));
    (typed, eof)
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

fn start(args: StartArgs, client: &ApiClient) -> anyhow::Result<ExitCode> {
    if !(args.attach || args.interactive) {
        return each(&args.containers, |name| {
            client.post::<Value>(&format!("/containers/{}/start", encode(name)), None).map_err(start_error)?;
            Ok(())
        });
    }
    let [name] = args.containers.as_slice() else {
        anyhow::bail!("you cannot start and attach multiple containers at once");
    };
    let v: Value = client.get_json(&format!("/containers/{}/json", encode(name)))?;
    let id = v["Id"].as_str().unwrap_or(name).to_owned();
    let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = flag(args.interactive);
    let hijacked = client.upgrade(
        &format!(
            "/containers/{id}/attach{}",
            query(&[("stream", "1"), ("stdin", stdin), ("stdout", "1"), ("stderr", "1")])
        ),
        RequestBody::Empty,
    )?;
    let mut wait = client.request(
        hyper::Method::POST,
        &format!("/containers/{id}/wait?condition=next-exit"),
        &[],
        RequestBody::Empty,
    )?;
    client.post::<Value>(&format!("/containers/{id}/start"), None).map_err(start_error)?;
    pump(&hijacked, args.interactive, tty)?;
    let v: Value = serde_json::from_slice(&wait.body_bytes()?).context("the server's wait answer is not JSON")?;
    Ok(exit(v["StatusCode"].as_i64().unwrap_or(i64::from(engine::error::EXIT_ENGINE))))
}

fn ps(args: PsArgs, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let filters = filters_json(&args.filter)?;
    let last = if args.latest { Some(1) } else { args.last };
    let limit = last.map(|n| n.to_string());
    let mut pairs = vec![("all", flag(args.all || last.is_some())), ("filters", filters.as_str())];
    if let Some(l) = &limit {
        pairs.push(("limit", l));
    }
    let rows: Vec<Value> = client.get_json(&format!("/containers/json{}", query(&pairs)))?;
    let short = |id: &str| if args.no_trunc { id.to_owned() } else { id[..12.min(id.len())].to_owned() };
    let mut out = io::stdout().lock();
    if args.quiet {
        for r in &rows {
            writeln!(out, "{}", short(r["Id"].as_str().unwrap_or_default()))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut cells = Vec::new();
    for r in &rows {
        let mut command = r["Command"].as_str().unwrap_or_default().to_owned();
        if !args.no_trunc && command.chars().count() > 20 {
            command = format!("{}…", command.chars().take(19).collect::<String>());
        }
        let created = r["Created"].as_i64().unwrap_or(0);
        let created = chrono::DateTime::from_timestamp(created, 0).map(|t| t.to_rfc3339()).unwrap_or_default();
        let running_for = humanize::since(&created);
        let names =
            strings(&r["Names"]).iter().map(|n| n.trim_start_matches('/').to_owned()).collect::<Vec<_>>().join(",");
        let ports = ports_column(&r["Ports"]);
        let id = short(r["Id"].as_str().unwrap_or_default());
        let image = r["Image"].as_str().unwrap_or_default().to_owned();
        let status = r["Status"].as_str().unwrap_or_default().to_owned();
        if let Some(f) = &args.format {
            let doc = json!({"ID": id, "Image": image, "Command": format!("\"{command}\""), "CreatedAt": created,
                "RunningFor": running_for, "Status": status, "State": r["State"], "Names": names, "Ports": ports});
            writeln!(out, "{}", table::render_template(f, &doc))?;
            continue;
        }
        cells.push(vec![id, image, format!("\"{command}\""), running_for, status, ports, names]);
    }
    if args.format.is_some() {
        return Ok(ExitCode::SUCCESS);
    }
    drop(out);
    table::print(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], &cells)?;
    Ok(ExitCode::SUCCESS)
}

/// docker ps's PORTS column from the list's `Ports`.
fn ports_column(ports: &Value) -> String {
    ports
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let private = p["PrivatePort"].as_u64().unwrap_or(0);
            let kind = p["Type"].as_str().unwrap_or("tcp");
            match p["PublicPort"].as_u64() {
                Some(public) if public > 0 => {
                    format!("{}:{public}->{private}/{kind}", p["IP"].as_str().unwrap_or("0.0.0.0"))
                }
                _ => format!("{private}/{kind}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn port(container: &str, wanted: Option<&str>, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let v: Value = client.get_json(&format!("/containers/{}/json", encode(container)))?;
    let mut out = io::stdout().lock();
    let mut found = false;
    if let Some(map) = v["NetworkSettings"]["Ports"].as_object() {
        for (container_port, bindings) in map {
            if let Some(w) = wanted {
                let w = if w.contains('/') { w.to_owned() } else { format!("{w}/tcp") };
                if *container_port != w {
                    continue;
                }
            }
            for b in bindings.as_array().into_iter().flatten() {
                let ip = b["HostIp"].as_str().unwrap_or("0.0.0.0");
                let hp = b["HostPort"].as_str().unwrap_or_default();
                found = true;
                if wanted.is_some() {
                    writeln!(out, "{ip}:{hp}")?;
                } else {
                    writeln!(out, "{container_port} -> {ip}:{hp}")?;
                }
            }
        }
    }
    if let (Some(w), false) = (wanted, found) {
        anyhow::bail!("No public port '{w}' published for {container}");
    }
    Ok(ExitCode::SUCCESS)
}

fn logs(args: LogsArgs, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let v: Value = client.get_json(&format!("/containers/{}/json", encode(&args.container)))?;
    let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut pairs = vec![
        ("stdout", "1"),
        ("stderr", "1"),
        ("follow", flag(args.follow)),
        ("timestamps", flag(args.timestamps)),
        ("tail", args.tail.as_str()),
    ];
    if let Some(s) = &args.since {
        pairs.push(("since", s));
    }
    let mut res = client.request(
        hyper::Method::GET,
        &format!("/containers/{}/logs{}", encode(&args.container), query(&pairs)),
        &[],
        RequestBody::Empty,
    )?;
    if tty {
        io::copy(&mut res, &mut io::stdout().lock())?;
    } else {
        client::demux(&mut res, &mut io::stdout().lock(), &mut io::stderr().lock())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn exec(args: ExecArgs, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let (container, cmd) = args.container_and_command.split_first().ok_or_else(|| anyhow::anyhow!("no container"))?;
    let mut body = json!({
        "Cmd": cmd,
        "Env": args.env,
        "Tty": args.tty,
        "AttachStdin": args.interactive,
        "AttachStdout": !args.detach,
        "AttachStderr": !args.detach,
    });
    if let Some(o) = body.as_object_mut() {
        if let Some(w) = &args.workdir {
            o.insert("WorkingDir".into(), json!(w));
        }
        if let Some(u) = &args.user {
            o.insert("User".into(), json!(u));
        }
    }
    let created: Value = client.post_json(&format!("/containers/{}/exec", encode(container)), Some(&body))?;
    let id = created["Id"].as_str().ok_or_else(|| anyhow::anyhow!("the server's exec answer has no Id"))?.to_owned();
    let mut start = json!({"Detach": args.detach, "Tty": args.tty});
    if let Some((rows, cols)) = args.tty.then(|| engine::container::tty::window_size(0)).flatten() {
        start["ConsoleSize"] = json!([rows, cols]);
    }
    if args.detach {
        client.post(&format!("/exec/{id}/start"), Some(&start))?;
        return Ok(ExitCode::SUCCESS);
    }
    let hijacked = client.upgrade(&format!("/exec/{id}/start"), RequestBody::json(&start)?)?;
    pump(&hijacked, args.interactive, args.tty)?;
    let v: Value = client.get_json(&format!("/exec/{id}/json"))?;
    Ok(exit(v["ExitCode"].as_i64().unwrap_or(i64::from(engine::error::EXIT_ENGINE))))
}

/// Splits `CONTAINER:PATH`; `None` for a host path (absolute, relative with `.`, or without a colon).
fn split_container_path(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    s.split_once(':')
}

fn cp(args: CpArgs, client: &ApiClient) -> anyhow::Result<ExitCode> {
    match (split_container_path(&args.source), split_container_path(&args.dest)) {
        (Some((name, path)), None) => {
            let mut res = client.request(
                hyper::Method::GET,
                &format!("/containers/{}/archive{}", encode(name), query(&[("path", path)])),
                &[],
                RequestBody::Empty,
            )?;
            if args.dest == "-" {
                io::copy(&mut res, &mut io::stdout().lock())?;
            } else {
                let staging = tempfile::NamedTempFile::new()?;
                io::copy(&mut res, &mut io::BufWriter::new(staging.reopen()?))?;
                engine::container::cp::host_extract(
                    io::BufReader::new(staging.reopen()?),
                    std::path::Path::new(&args.dest),
                )?;
            }
        }
        (None, Some((name, path))) => {
            let body: Box<dyn Read + Send> = if args.source == "-" {
                Box::new(io::stdin())
            } else {
                let src = std::path::PathBuf::from(&args.source);
                let base = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| ".".into());
                // Into an existing directory under the source's name; else as the destination path itself.
                let stat = client.request(
                    hyper::Method::HEAD,
                    &format!("/containers/{}/archive{}", encode(name), query(&[("path", path)])),
                    &[],
                    RequestBody::Empty,
                );
                let is_dir = match stat {
                    Ok(res) => res
                        .header("X-Docker-Container-Path-Stat")
                        .and_then(path_stat_mode)
                        .is_some_and(|mode| mode & (1 << 31) != 0),
                    Err(e) if e.is_not_found() => false,
                    Err(e) => return Err(e.into()),
                };
                let (dir, name_in_dir) = if is_dir {
                    (path.to_owned(), base)
                } else {
                    let p = std::path::Path::new(path);
                    let parent = p
                        .parent()
                        .map(|x| x.display().to_string())
                        .filter(|x| !x.is_empty())
                        .unwrap_or_else(|| "/".into());
                    (parent, p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(base))
                };
                let mut tar = Vec::new();
                engine::container::cp::host_archive(&src, &name_in_dir, &mut tar)?;
                client
                    .request(
                        hyper::Method::PUT,
                        &format!("/containers/{}/archive{}", encode(name), query(&[("path", &dir)])),
                        &[("Content-Type", "application/x-tar".to_owned())],
                        RequestBody::Bytes(tar),
                    )?
                    .discard()?;
                return Ok(ExitCode::SUCCESS);
            };
            client
                .request(
                    hyper::Method::PUT,
                    &format!("/containers/{}/archive{}", encode(name), query(&[("path", path)])),
                    &[("Content-Type", "application/x-tar".to_owned())],
                    RequestBody::Reader(body),
                )?
                .discard()?;
        }
        _ => anyhow::bail!(
            "copying between containers or between host paths is not supported: one side must be CONTAINER:PATH"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The Go `FileMode` in docker's base64 JSON `X-Docker-Container-Path-Stat` header.
fn path_stat_mode(header: &str) -> Option<u64> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(header.trim()).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v["mode"].as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_flags_become_port_bindings() {
        let b = |p: &str| split_publish(p).map(|(v, port)| (v.to_string(), port)).ok();
        assert_eq!(b("80"), Some((r#"{"HostIp":"","HostPort":""}"#.into(), "80/tcp".into())));
        assert_eq!(b("8080:80"), Some((r#"{"HostIp":"","HostPort":"8080"}"#.into(), "80/tcp".into())));
        assert_eq!(
            b("127.0.0.1:8080:80/udp"),
            Some((r#"{"HostIp":"127.0.0.1","HostPort":"8080"}"#.into(), "80/udp".into()))
        );
        assert_eq!(b("[::1]:53:53/udp"), Some((r#"{"HostIp":"::1","HostPort":"53"}"#.into(), "53/udp".into())));
        assert_eq!(b("1:2:3:4"), None);
    }

    #[test]
    fn mounts_and_tags_parse() {
        let m = mount_json("type=bind,source=/a,target=/b,readonly").expect("valid mount");
        assert_eq!(m, json!({"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": true}));
        assert!(mount_json("type=bind,target=/b,bind-propagation=shared")
            .is_err_and(|e| e.to_string().contains("bind-propagation")));
        assert_eq!(split_tag("localhost:5000/app:1"), ("localhost:5000/app".into(), "1".into()));
        assert_eq!(split_tag("localhost:5000/app"), ("localhost:5000/app".into(), String::new()));
    }

    #[test]
    fn start_errors_map_to_docker_exit_codes() {
        let code = |m: &str| {
            let e = start_error(client::Error::Api { status: hyper::StatusCode::BAD_REQUEST, message: m.into() });
            e.downcast_ref::<ExitError>().map(|x| x.code)
        };
        assert_eq!(code("exec: \"nope\": executable file not found in $PATH"), Some(127));
        assert_eq!(code("exec /etc/passwd: permission denied"), Some(126));
        assert_eq!(code("cannot set up the network"), Some(125));
    }
}
