//! Volume verbs over the API: `volume create|ls|inspect|rm|prune`.

use std::io::{self, Write};
use std::process::ExitCode;

use serde_json::{json, Value};

use engine::client::{encode, query, ApiClient};
use engine::humanize;

use super::super::volume::VolumeCommand;
use super::super::{print_inspect, table, ExitError};
use super::network::key_values;
use super::{each, optional};

pub fn run(cmd: VolumeCommand, client: &ApiClient) -> anyhow::Result<ExitCode> {
    match cmd {
        VolumeCommand::Create(a) => {
            let mut body = json!({
                "Driver": a.driver,
                "Labels": key_values(&a.labels),
                "DriverOpts": key_values(&a.options),
            });
            if let Some(n) = &a.name {
                body["Name"] = json!(n);
            }
            let v: Value = client.post_json("/volumes/create", Some(&body))?;
            println!("{}", v["Name"].as_str().unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        VolumeCommand::Ls(a) => {
            let v: Value = client.get_json("/volumes")?;
            let rows = v["Volumes"].as_array().cloned().unwrap_or_default();
            let s = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_owned();
            if a.quiet {
                let mut out = io::stdout().lock();
                for r in &rows {
                    writeln!(out, "{}", s(r, "Name"))?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            let cells: Vec<Vec<String>> = rows.iter().map(|r| vec![s(r, "Driver"), s(r, "Name")]).collect();
            table::print(&["DRIVER", "VOLUME NAME"], &cells)?;
            Ok(ExitCode::SUCCESS)
        }
        VolumeCommand::Inspect(a) => {
            let mut values = Vec::new();
            let mut missing = None;
            for name in &a.volumes {
                match optional(client.get_json::<Value>(&format!("/volumes/{}", encode(name))))? {
                    Some(v) => values.push(v),
                    None => missing = missing.or(Some(name.clone())),
                }
            }
            print_inspect(&values, a.format.as_deref())?;
            if let Some(name) = missing {
                return Err(ExitError { code: 1, message: format!("no such volume: {name}") }.into());
            }
            Ok(ExitCode::SUCCESS)
        }
        VolumeCommand::Rm(a) => each(&a.volumes, |name| {
            client.delete(&format!(
                "/volumes/{}{}",
                encode(name),
                query(&[("force", if a.force { "1" } else { "0" })])
            ))?;
            Ok(())
        }),
        VolumeCommand::Prune(a) => {
            let filters = if a.all { r#"{"all":["true"]}"# } else { "" };
            let v: Value =
                client.post_json::<Value, Value>(&format!("/volumes/prune{}", query(&[("filters", filters)])), None)?;
            let deleted: Vec<&str> =
                v["VolumesDeleted"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            if !deleted.is_empty() {
                println!("Deleted Volumes:");
                for name in deleted {
                    println!("{name}");
                }
                println!();
            }
            println!("Total reclaimed space: {}", humanize::size(v["SpaceReclaimed"].as_u64().unwrap_or(0)));
            Ok(ExitCode::SUCCESS)
        }
    }
}
