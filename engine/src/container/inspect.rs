//! `inspect`: docker's container JSON (the fields docker users and tools read most), built from the record,
//! the live state, and the network records (`NetworkSettings`, see [`super::network::inspect_json`]).

use serde_json::{json, Value};

use super::rootfs::RootfsDirs;
use super::store::{Container, ContainerStore, State, ZERO_TIME};

fn time_or_zero(s: &str) -> &str {
    if s.is_empty() {
        ZERO_TIME
    } else {
        s
    }
}

/// The inspect document of container `c` in state `state`.
pub fn inspect_json(store: &ContainerStore, c: &Container, state: &State) -> Value {
    let dir = store.dir(&c.id);
    let dirs = RootfsDirs::of(&dir, c);
    let lower: Vec<String> = dirs.lower.iter().map(|p| p.display().to_string()).collect();
    let mounts = super::mounts::inspect_json(&c.host_config.mount_points);
    let hc = &c.host_config;
    let mut port_bindings = serde_json::Map::new();
    for b in &hc.port_bindings {
        let host_port = match b.host_ports {
            (0, 0) => String::new(),
            (a, z) if a == z => a.to_string(),
            (a, z) => format!("{a}-{z}"),
        };
        let entry = json!({"HostIp": b.host_ip.map(|ip| ip.to_string()).unwrap_or_default(), "HostPort": host_port});
        let key = format!("{}/{}", b.container_port, b.protocol);
        match port_bindings.get_mut(&key).and_then(Value::as_array_mut) {
            Some(list) => list.push(entry),
            None => {
                port_bindings.insert(key, json!([entry]));
            }
        }
    }
    let cfg = &c.config;
    let mut state_json = json!({
        "Status": state.status.as_str(),
        "Running": state.is_running() && state.status != super::Status::Restarting,
        "Paused": state.status == super::Status::Paused,
        "Restarting": state.status == super::Status::Restarting,
        "OOMKilled": state.oom_killed,
        "Dead": state.status == super::Status::Dead,
        "Pid": state.pid,
        "ExitCode": state.exit_code,
        "Error": state.error,
        "StartedAt": time_or_zero(&state.started_at),
        "FinishedAt": time_or_zero(&state.finished_at),
    });
    // Docker shows `Health` only for a container with a healthcheck that has started.
    if let (Some(h), Some(obj)) = (&state.health, state_json.as_object_mut()) {
        obj.insert("Health".into(), json!(h));
    }
    json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "State": state_json,
        "Image": c.image_id,
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": store.log_path(&c.id),
        "Name": format!("/{}", c.name),
        "RestartCount": state.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "HostConfig": {
            "Binds": if hc.binds.is_empty() { Value::Null } else { json!(hc.binds) },
            "NetworkMode": hc.network_mode,
            "PortBindings": port_bindings,
            "PublishAllPorts": hc.publish_all_ports,
            "VolumesFrom": if hc.volumes_from.is_empty() { Value::Null } else { json!(hc.volumes_from) },
            "ExtraHosts": if hc.extra_hosts.is_empty() { Value::Null } else { json!(hc.extra_hosts) },
            "Dns": hc.dns,
            "DnsSearch": hc.dns_search,
            "DnsOptions": hc.dns_options,
            "RestartPolicy": hc.restart_policy,
            "AutoRemove": hc.auto_remove,
            "Memory": hc.memory,
            "NanoCpus": hc.nano_cpus,
            "PidsLimit": if hc.pids_limit > 0 { json!(hc.pids_limit) } else { Value::Null },
            "Init": hc.init,
            "SecurityOpt": if hc.security_opt.is_empty() { Value::Null } else { json!(hc.security_opt) },
        },
        "GraphDriver": {
            "Name": "overlay2",
            "Data": {
                "LowerDir": lower.join(":"),
                "UpperDir": dirs.upper,
                "WorkDir": dirs.work,
                "MergedDir": dirs.merged,
            },
        },
        "Mounts": mounts,
        "NetworkSettings": super::network::inspect_json(store.root(), c, state),
        "Config": {
            "Hostname": cfg.hostname,
            "Domainname": "",
            "User": cfg.user,
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "StdinOnce": false,
            "Env": cfg.env,
            "Cmd": cfg.cmd,
            "Image": cfg.image,
            "ExposedPorts": if cfg.exposed_ports.is_empty() { Value::Null } else { json!(cfg.exposed_ports) },
            "Volumes": if cfg.volumes.is_empty() { Value::Null } else { json!(cfg.volumes) },
            "WorkingDir": cfg.working_dir,
            "Entrypoint": cfg.entrypoint,
            "OnBuild": Value::Null,
            "Labels": cfg.labels,
            "StopSignal": cfg.stop_signal,
            "StopTimeout": cfg.stop_timeout,
            "Healthcheck": cfg.healthcheck,
        },
    })
}
