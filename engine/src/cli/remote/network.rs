//! Network verbs over the API: `network create|ls|inspect|rm|prune|connect|disconnect`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::process::ExitCode;

use serde_json::{json, Value};

use engine::client::{encode, ApiClient};

use super::super::network::NetworkCommand;
use super::super::{print_inspect, table, ExitError};
use super::{each, optional};

/// `KEY=VALUE` flags as a map (a bare KEY has an empty value).
pub fn key_values(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

pub fn run(cmd: NetworkCommand, client: &ApiClient) -> anyhow::Result<ExitCode> {
    match cmd {
        NetworkCommand::Create(a) => {
            let mut ipam = serde_json::Map::new();
            if let Some(s) = &a.subnet {
                ipam.insert("Subnet".into(), json!(s));
            }
            if let Some(g) = &a.gateway {
                ipam.insert("Gateway".into(), json!(g));
            }
            let body = json!({
                "Name": a.name,
                "Driver": a.driver,
                "Internal": a.internal,
                "IPAM": {"Config": if ipam.is_empty() { vec![] } else { vec![Value::Object(ipam)] }},
                "Labels": key_values(&a.labels),
                "Options": key_values(&a.options),
            });
            let v: Value = client.post_json("/networks/create", Some(&body))?;
            println!("{}", v["Id"].as_str().unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Ls(a) => {
            let rows: Vec<Value> = client.get_json("/networks")?;
            let id = |v: &Value| {
                let id = v["Id"].as_str().unwrap_or_default();
                if a.no_trunc {
                    id.to_owned()
                } else {
                    id.chars().take(12).collect()
                }
            };
            if a.quiet {
                let mut out = io::stdout().lock();
                for r in &rows {
                    writeln!(out, "{}", id(r))?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                    vec![id(r), s("Name"), s("Driver"), s("Scope")]
                })
                .collect();
            table::print(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &cells)?;
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Inspect(a) => {
            let mut values = Vec::new();
            let mut missing = None;
            for name in &a.networks {
                match optional(client.get_json::<Value>(&format!("/networks/{}", encode(name))))? {
                    Some(v) => values.push(v),
                    None => missing = missing.or(Some(name.clone())),
                }
            }
            print_inspect(&values, a.format.as_deref())?;
            if let Some(name) = missing {
                return Err(ExitError { code: 1, message: format!("network {name} not found") }.into());
            }
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Rm(a) => each(&a.networks, |name| {
            client.delete(&format!("/networks/{}", encode(name)))?;
            Ok(())
        }),
        NetworkCommand::Prune(_) => {
            let v: Value = client.post_json::<Value, Value>("/networks/prune", None)?;
            let deleted: Vec<&str> =
                v["NetworksDeleted"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            if !deleted.is_empty() {
                println!("Deleted Networks:");
                for name in deleted {
                    println!("{name}");
                }
                println!();
            }
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Connect(a) => {
            if a.netns.is_some() {
                anyhow::bail!("--netns connects a namespace file on the engine's host: run it with --root there");
            }
            let mut endpoint = json!({"Aliases": a.aliases});
            if let Some(ip) = &a.ip {
                endpoint["IPAMConfig"] = json!({"IPv4Address": ip});
            }
            let body = json!({"Container": a.container, "EndpointConfig": endpoint});
            client.post(&format!("/networks/{}/connect", encode(&a.network)), Some(&body))?;
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Disconnect(a) => {
            let body = json!({"Container": a.container, "Force": a.force});
            client.post(&format!("/networks/{}/disconnect", encode(&a.network)), Some(&body))?;
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Publish(_) => {
            anyhow::bail!("`network publish` is internal to the engine's host: run it with --root there")
        }
    }
}
