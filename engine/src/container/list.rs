//! `ps`: containers with their state, filtered as docker's `--filter` does (`id`, `name`, `status`, `label`,
//! `ancestor`, `exited`; several values of one key match any, different keys must all match).

use std::collections::BTreeMap;

use super::health::HealthStatus;
use super::store::{Container, ContainerStore, State, Status};
use super::{Error, Result};
use crate::image::ImageStore;

/// Parsed `--filter key=value` flags.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    by_key: BTreeMap<String, Vec<String>>,
}

impl Filters {
    pub fn parse(args: &[String]) -> Result<Filters> {
        let mut f = Filters::default();
        for a in args {
            let (k, v) = a.split_once('=').ok_or_else(|| Error::InvalidInput {
                what: "filter",
                value: a.clone(),
                hint: "use key=value, e.g. status=exited or name=web".into(),
            })?;
            if !matches!(k, "id" | "name" | "status" | "label" | "ancestor" | "exited") {
                return Err(Error::InvalidInput {
                    what: "filter",
                    value: a.clone(),
                    hint: "known keys: id, name, status, label, ancestor, exited".into(),
                });
            }
            f.by_key.entry(k.to_owned()).or_default().push(v.to_owned());
        }
        Ok(f)
    }

    /// True if the filters ask for stopped containers too (docker's `ps` shows them then without `-a`).
    pub fn wants_stopped(&self) -> bool {
        self.by_key.contains_key("exited")
            || self.by_key.get("status").is_some_and(|v| v.iter().any(|s| s != "running"))
    }

    fn matches(&self, c: &Container, s: &State, images: Option<&ImageStore>) -> bool {
        self.by_key.iter().all(|(k, values)| {
            values.iter().any(|v| match k.as_str() {
                "id" => c.id.starts_with(v.as_str()),
                "name" => c.name.contains(v.trim_start_matches('/')),
                "status" => s.status.as_str() == v,
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => c.config.labels.get(lk).is_some_and(|x| x == lv),
                    None => c.config.labels.contains_key(v),
                },
                "exited" => s.status == Status::Exited && v.parse::<i32>().is_ok_and(|n| n == s.exit_code),
                "ancestor" => {
                    c.config.image == *v
                        || c.image_id == *v
                        || c.image_id.trim_start_matches("sha256:").starts_with(v.trim_start_matches("sha256:"))
                        || images.and_then(|i| i.resolve(v).ok()).is_some_and(|img| img.id.to_string() == c.image_id)
                }
                _ => false,
            })
        })
    }
}

/// Containers to show: running ones (all with `all`), newest first, filtered; `last` keeps the newest N.
pub fn list(
    store: &ContainerStore,
    images: Option<&ImageStore>,
    all: bool,
    filters: &Filters,
    last: Option<usize>,
) -> Result<Vec<(Container, State)>> {
    let show_all = all || filters.wants_stopped() || last.is_some();
    let mut out: Vec<(Container, State)> = store
        .list()?
        .into_iter()
        .filter(|(c, s)| (show_all || s.is_running()) && filters.matches(c, s, images))
        .collect();
    if let Some(n) = last {
        out.truncate(n);
    }
    Ok(out)
}

/// Docker's STATUS column: `Up 5 seconds`, `Up 5 seconds (healthy)`, `Exited (0) 2 minutes ago`, `Created`,
/// `Restarting (1) …`.
pub fn status_text(s: &State) -> String {
    let ago = |t: &str| crate::humanize::since(t);
    match s.status {
        Status::Running => {
            let up = format!("Up {}", ago(&s.started_at).trim_end_matches(" ago"));
            match &s.health {
                Some(h) if h.status == HealthStatus::Starting => format!("{up} (health: starting)"),
                Some(h) => format!("{up} ({})", h.status.as_str()),
                None => up,
            }
        }
        Status::Exited => format!("Exited ({}) {}", s.exit_code, ago(&s.finished_at)),
        Status::Restarting => format!("Restarting ({}) {}", s.exit_code, ago(&s.finished_at)),
        Status::Created => "Created".to_owned(),
        Status::Paused => format!("Up {} (Paused)", ago(&s.started_at).trim_end_matches(" ago")),
        Status::Removing => "Removal In Progress".to_owned(),
        Status::Dead => "Dead".to_owned(),
    }
}
