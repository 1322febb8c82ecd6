//! The typed compose model (services, networks, volumes) and its conversion from the located tree. The
//! conversion is where a compose file's mistakes are found: wrong types, bad ports and volumes, unknown keys
//! (reported with a suggestion) and keys of the Compose Specification that Drydock does not implement (reported
//! as warnings, never silently dropped). Short and long syntaxes are normalised here, so the runtime sees one
//! shape per concept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::node::{Node, Pos, Value};

/// One problem found in a compose file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub pos: Pos,
    /// Key path, e.g. `services.web.ports[0]`.
    pub path: String,
    pub message: String,
}

/// A whole compose project after loading, merging, interpolation and normalisation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Project {
    pub name: String,
    /// The project directory: relative paths (build contexts, bind mounts, env files) resolve against it.
    pub working_dir: PathBuf,
    pub services: BTreeMap<String, Service>,
    pub networks: BTreeMap<String, NetworkConfig>,
    pub volumes: BTreeMap<String, VolumeConfig>,
    /// Services left out because none of their profiles is active.
    pub disabled_services: Vec<String>,
    /// Non-fatal findings (unsupported keys, unset variables), printed before the command runs.
    pub warnings: Vec<String>,
    /// The resolved tree, for `compose config`.
    pub resolved: Option<Node>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Service {
    pub name: String,
    pub image: Option<String>,
    pub build: Option<BuildConfig>,
    /// `None`: the image's CMD.
    pub command: Option<Vec<String>>,
    /// `None`: the image's ENTRYPOINT; `Some(vec![])` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// `KEY → Some(value)`; `KEY → None` takes the value from the environment of the compose command.
    pub environment: BTreeMap<String, Option<String>>,
    pub ports: Vec<PortConfig>,
    pub expose: Vec<String>,
    pub volumes: Vec<ServiceVolume>,
    pub volumes_from: Vec<String>,
    pub tmpfs: Vec<String>,
    /// Networks this service joins (`default` when none is listed and no `network_mode`).
    pub networks: BTreeMap<String, ServiceNetwork>,
    pub network_mode: Option<String>,
    pub depends_on: BTreeMap<String, Dependency>,
    pub healthcheck: Option<Healthcheck>,
    pub restart: Option<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub container_name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub init: bool,
    pub tty: bool,
    pub stdin_open: bool,
    pub privileged: bool,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub extra_hosts: Vec<String>,
    /// `dns`, `dns_search`, `dns_opt` (each a string or a list).
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_opt: Vec<String>,
    /// Number of containers (`scale`, or `deploy.replicas`).
    pub replicas: u32,
    pub cpus: Option<f64>,
    /// Memory limit as given (`512m`).
    pub memory: Option<String>,
    pub pids_limit: Option<i64>,
    pub stop_signal: Option<String>,
    pub stop_grace_period: Option<Duration>,
    pub pull_policy: Option<String>,
    pub profiles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildConfig {
    /// Absolute context directory.
    pub context: PathBuf,
    pub dockerfile: Option<String>,
    pub args: BTreeMap<String, Option<String>>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    pub pull: bool,
}

/// A published port in long form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortConfig {
    pub target: u16,
    /// Empty: a random host port. May be a range `8000-8010`.
    pub published: String,
    pub host_ip: Option<String>,
    pub protocol: String,
}

impl PortConfig {
    /// The same port as a `docker run -p` value.
    pub fn to_publish_flag(&self) -> String {
        let proto = if self.protocol == "tcp" { String::new() } else { format!("/{}", self.protocol) };
        match (&self.host_ip, self.published.is_empty()) {
            (Some(ip), _) => format!("{ip}:{}:{}{proto}", self.published, self.target),
            (None, true) => format!("{}{proto}", self.target),
            (None, false) => format!("{}:{}{proto}", self.published, self.target),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeKind {
    /// A host path (absolute after loading).
    Bind(PathBuf),
    /// A top-level volume by its key in the file, or an anonymous one.
    Volume(Option<String>),
    Tmpfs {
        size: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceVolume {
    pub kind: VolumeKind,
    pub target: String,
    pub read_only: bool,
    pub no_copy: bool,
    /// `create_host_path` for binds (short syntax: true).
    pub create_host_path: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceNetwork {
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    #[default]
    Started,
    Healthy,
    CompletedSuccessfully,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dependency {
    pub condition: Condition,
    pub restart: bool,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Healthcheck {
    /// `["NONE"]` disables the image's check; otherwise `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
    pub disable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkConfig {
    /// The engine-level name (`PROJECT_KEY` unless `name:` or external).
    pub name: String,
    pub driver: Option<String>,
    pub external: bool,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeConfig {
    /// The engine-level name (`PROJECT_KEY` unless `name:` or external).
    pub name: String,
    pub driver: Option<String>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
}

/// Top-level keys of the Compose Specification.
const TOP_LEVEL_KEYS: &[&str] =
    &["version", "name", "services", "networks", "volumes", "configs", "secrets", "include"];

/// Service keys Drydock honours.
const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "volumes_from",
    "tmpfs",
    "networks",
    "network_mode",
    "depends_on",
    "healthcheck",
    "restart",
    "working_dir",
    "user",
    "hostname",
    "container_name",
    "labels",
    "init",
    "tty",
    "stdin_open",
    "privileged",
    "read_only",
    "cap_add",
    "cap_drop",
    "security_opt",
    "extra_hosts",
    "dns",
    "dns_search",
    "dns_opt",
    "scale",
    "deploy",
    "cpus",
    "mem_limit",
    "pids_limit",
    "stop_signal",
    "stop_grace_period",
    "pull_policy",
    "profiles",
    "extends",
];

/// Service keys of the specification Drydock accepts but does not implement: reported as warnings.
const SERVICE_KEYS_UNSUPPORTED: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "cgroup",
    "cgroup_parent",
    "configs",
    "cpu_count",
    "cpu_percent",
    "cpu_shares",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_runtime",
    "cpu_rt_period",
    "cpuset",
    "credential_spec",
    "develop",
    "device_cgroup_rules",
    "devices",
    "domainname",
    "driver_opts",
    "external_links",
    "gpus",
    "group_add",
    "ipc",
    "isolation",
    "label_file",
    "links",
    "logging",
    "mac_address",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "platform",
    "post_start",
    "pre_stop",
    "provider",
    "runtime",
    "secrets",
    "shm_size",
    "storage_opt",
    "sysctls",
    "ulimits",
    "use_api_socket",
    "userns_mode",
    "uts",
];

/// Reads typed values out of located nodes, collecting every problem instead of stopping at the first.
pub struct Reader<'a> {
    pub diagnostics: Vec<Diagnostic>,
    pub warnings: Vec<String>,
    pub working_dir: &'a Path,
}

impl<'a> Reader<'a> {
    pub fn new(working_dir: &'a Path) -> Reader<'a> {
        Reader { diagnostics: Vec::new(), warnings: Vec::new(), working_dir }
    }

    pub fn error(&mut self, node: &Node, path: &str, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic { pos: node.pos, path: path.to_string(), message: message.into() });
    }

    fn error_at(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic { pos, path: path.to_string(), message: message.into() });
    }

    fn map<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [(super::node::Key, Node)]> {
        match &node.value {
            Value::Map(m) => Some(m),
            Value::Null => Some(&[]),
            _ => {
                self.error(node, path, format!("must be a mapping, found {}", node.kind()));
                None
            }
        }
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => node.scalar_text(),
            _ => {
                self.error(node, path, format!("must be a string, found {}", node.kind()));
                None
            }
        }
    }

    fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            // Interpolated values arrive as strings.
            Value::Str(s) if matches!(s.as_str(), "true" | "True" | "TRUE" | "yes") => Some(true),
            Value::Str(s) if matches!(s.as_str(), "false" | "False" | "FALSE" | "no") => Some(false),
            _ => {
                self.error(node, path, format!("must be a boolean, found {}", node.kind()));
                None
            }
        }
    }

    fn uint(&mut self, node: &Node, path: &str) -> Option<u64> {
        let parsed = match &node.value {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(node, path, format!("must be a non-negative integer, found {}", describe(node)));
        }
        parsed
    }

    fn float(&mut self, node: &Node, path: &str) -> Option<f64> {
        let parsed = match &node.value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(node, path, format!("must be a number, found {}", describe(node)));
        }
        parsed
    }

    /// A string or a list of strings.
    fn string_list(&mut self, node: &Node, path: &str) -> Vec<String> {
        match &node.value {
            Value::Seq(items) => {
                items.iter().enumerate().filter_map(|(i, item)| self.string(item, &format!("{path}[{i}]"))).collect()
            }
            Value::Null => Vec::new(),
            _ => self.string(node, path).into_iter().collect(),
        }
    }

    /// A command: a string is split like a shell would (no expansion), a list is taken as it is.
    fn command(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Null => None,
            Value::Seq(_) => Some(self.string_list(node, path)),
            _ => {
                let text = self.string(node, path)?;
                match split_command(&text) {
                    Some(words) => Some(words),
                    None => {
                        self.error(node, path, "unbalanced quotes in command string");
                        None
                    }
                }
            }
        }
    }

    /// `KEY: value` mapping or `["KEY=value", "KEY"]` list; values may be null (take from the environment).
    fn key_values(&mut self, node: &Node, path: &str) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    let value = match &v.value {
                        Value::Null => None,
                        Value::Seq(_) | Value::Map(_) => {
                            self.error(
                                v,
                                &format!("{path}.{}", k.name),
                                format!("must be a string, found {}", v.kind()),
                            );
                            continue;
                        }
                        _ => v.scalar_text(),
                    };
                    out.insert(k.name.clone(), value);
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let Some(text) = self.string(item, &format!("{path}[{i}]")) else { continue };
                    match text.split_once('=') {
                        Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                        None => out.insert(text, None),
                    };
                }
            }
            Value::Null => {}
            _ => self.error(node, path, format!("must be a mapping or a list of KEY=VALUE, found {}", node.kind())),
        }
        out
    }

    fn labels(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
        self.key_values(node, path).into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect()
    }

    fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let text = self.string(node, path)?;
        match parse_duration(&text) {
            Some(d) => Some(d),
            None => {
                self.error(
                    node,
                    path,
                    format!("invalid duration {text:?}: use a number with a unit, e.g. 30s, 1m30s, 500ms"),
                );
                None
            }
        }
    }

    /// Flags keys that are not in `known`: unknown ones are errors with a suggestion, specification keys Drydock
    /// does not implement are warnings.
    fn check_keys(&mut self, node: &Node, path: &str, known: &[&str], unsupported: &[&str]) {
        let Some(entries) = node.as_map() else { return };
        for (k, _) in entries {
            if known.contains(&k.name.as_str()) || k.name.starts_with("x-") {
                continue;
            }
            if unsupported.contains(&k.name.as_str()) {
                self.warnings.push(format!("{path}.{}: not supported by drydock; ignored", k.name));
                continue;
            }
            let hint = suggest(&k.name, known.iter().chain(unsupported))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            self.error_at(k.pos, &format!("{path}.{}", k.name), format!("unknown key `{}`{hint}", k.name));
        }
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        let expanded = match p.strip_prefix("~/") {
            Some(rest) => {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(rest)).unwrap_or_else(|| PathBuf::from(p))
            }
            None => PathBuf::from(p),
        };
        if expanded.is_absolute() {
            expanded
        } else {
            normalize(&self.working_dir.join(expanded))
        }
    }
}

fn describe(node: &Node) -> String {
    match node.scalar_text() {
        Some(t) => format!("{:?}", t),
        None => node.kind().to_string(),
    }
}

/// The closest candidate within a small edit distance, for "did you mean".
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Removes `.` and resolves `..` lexically (compose does not follow symlinks when resolving paths).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Go-style durations as compose accepts them: `1h2m3s`, `1.5s`, `300ms`, `10us`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return (secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs_f64(total))
}

/// Splits a command string into words like a POSIX shell without expansion (what compose does with
/// `command: echo "a b"`). `None` on unbalanced quotes.
pub fn split_command(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => word.push(other),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => word.push(c),
                            '\n' => {}
                            other => {
                                word.push('\\');
                                word.push(other);
                            }
                        },
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(other) => word.push(other),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// Converts the merged, interpolated tree into the typed project. `Err` carries every error found.
pub fn project_from_tree(
    tree: &Node,
    name: &str,
    working_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Project, (Vec<Diagnostic>, Vec<String>)> {
    let mut r = Reader::new(working_dir);
    let mut project = Project { name: name.to_string(), working_dir: working_dir.to_path_buf(), ..Project::default() };
    r.check_keys(tree, "", TOP_LEVEL_KEYS, &[]);
    for key in ["configs", "secrets"] {
        if tree.get(key).and_then(Node::as_map).is_some_and(|m| !m.is_empty()) {
            r.warnings.push(format!("top-level `{key}` is not supported by drydock; ignored"));
        }
    }
    if let Some(networks) = tree.get("networks") {
        if let Some(entries) = r.map(networks, "networks") {
            for (k, v) in entries {
                let path = format!("networks.{}", k.name);
                let config = network_config(&mut r, v, &path, name, &k.name);
                project.networks.insert(k.name.clone(), config);
            }
        }
    }
    if let Some(volumes) = tree.get("volumes") {
        if let Some(entries) = r.map(volumes, "volumes") {
            for (k, v) in entries {
                let path = format!("volumes.{}", k.name);
                let config = volume_config(&mut r, v, &path, name, &k.name);
                project.volumes.insert(k.name.clone(), config);
            }
        }
    }
    match tree.get("services") {
        None => r.error_at(Pos::default(), "services", "no services defined: add a top-level `services:` mapping"),
        Some(services) => {
            if let Some(entries) = r.map(services, "services") {
                for (k, v) in entries {
                    let path = format!("services.{}", k.name);
                    if let Some(service) = service(&mut r, v, &path, k, env) {
                        project.services.insert(k.name.clone(), service);
                    }
                }
            }
        }
    }
    let needs_default =
        project.services.values().any(|s| s.network_mode.is_none() && s.networks.contains_key("default"));
    if needs_default && !project.networks.contains_key("default") {
        project.networks.insert(
            "default".to_string(),
            NetworkConfig { name: format!("{name}_default"), ..NetworkConfig::default() },
        );
    }
    check_references(&mut r, &project, tree);
    if r.diagnostics.is_empty() {
        project.warnings = r.warnings;
        Ok(project)
    } else {
        Err((r.diagnostics, r.warnings))
    }
}

fn network_config(r: &mut Reader, node: &Node, path: &str, project: &str, key: &str) -> NetworkConfig {
    let mut config = NetworkConfig { name: format!("{project}_{key}"), ..NetworkConfig::default() };
    r.check_keys(
        node,
        path,
        &["name", "driver", "external", "internal", "labels", "ipam", "attachable"],
        &["driver_opts", "enable_ipv6", "enable_ipv4"],
    );
    let Some(entries) = r.map(node, path) else { return config };
    for (k, v) in entries {
        let p = format!("{path}.{}", k.name);
        match k.name.as_str() {
            "name" => config.name = r.string(v, &p).unwrap_or(config.name),
            "driver" => {
                config.driver = r.string(v, &p);
                if !matches!(config.driver.as_deref(), Some("bridge" | "default")) {
                    r.error(v, &p, "only the `bridge` driver is supported");
                }
            }
            "external" => config.external = external(r, v, &p),
            "internal" => config.internal = r.bool(v, &p).unwrap_or(false),
            "labels" => config.labels = r.labels(v, &p),
            "ipam" => {
                if let Some(first) = v.get("config").and_then(Node::as_seq).and_then(<[Node]>::first) {
                    config.subnet = first.get("subnet").and_then(Node::scalar_text);
                    config.gateway = first.get("gateway").and_then(Node::scalar_text);
                }
            }
            _ => {}
        }
    }
    if config.external && node.get("name").is_none() {
        config.name = key.to_string();
    }
    config
}

fn external(r: &mut Reader, v: &Node, path: &str) -> bool {
    match &v.value {
        // Legacy `external: {name: x}` form.
        Value::Map(_) => true,
        _ => r.bool(v, path).unwrap_or(false),
    }
}

fn volume_config(r: &mut Reader, node: &Node, path: &str, project: &str, key: &str) -> VolumeConfig {
    let mut config = VolumeConfig { name: format!("{project}_{key}"), ..VolumeConfig::default() };
    r.check_keys(node, path, &["name", "driver", "external", "labels"], &["driver_opts"]);
    let Some(entries) = r.map(node, path) else { return config };
    for (k, v) in entries {
        let p = format!("{path}.{}", k.name);
        match k.name.as_str() {
            "name" => config.name = r.string(v, &p).unwrap_or(config.name),
            "driver" => {
                config.driver = r.string(v, &p);
                if config.driver.as_deref() != Some("local") {
                    r.error(v, &p, "only the `local` volume driver is supported");
                }
            }
            "external" => config.external = external(r, v, &p),
            "labels" => config.labels = r.labels(v, &p),
            _ => {}
        }
    }
    if config.external && node.get("name").is_none() {
        config.name = key.to_string();
    }
    config
}

fn service(
    r: &mut Reader,
    node: &Node,
    path: &str,
    key: &super::node::Key,
    env: &BTreeMap<String, String>,
) -> Option<Service> {
    let name = key.name.as_str();
    let entries = r.map(node, path)?;
    r.check_keys(node, path, SERVICE_KEYS, SERVICE_KEYS_UNSUPPORTED);
    let mut s = Service { name: name.to_string(), replicas: 1, ..Service::default() };
    let mut env_files: Vec<(PathBuf, bool, Node, String)> = Vec::new();
    for (k, v) in entries {
        let p = format!("{path}.{}", k.name);
        match k.name.as_str() {
            "image" => s.image = r.string(v, &p),
            "build" => s.build = build_config(r, v, &p),
            "command" => s.command = r.command(v, &p),
            "entrypoint" => {
                s.entrypoint = r.command(v, &p).or(if v.value == Value::Null { None } else { Some(Vec::new()) })
            }
            "environment" => s.environment.extend(r.key_values(v, &p)),
            "env_file" => {
                let items: Vec<Node> = match &v.value {
                    Value::Seq(items) => items.clone(),
                    _ => vec![v.clone()],
                };
                for (i, item) in items.iter().enumerate() {
                    let ip = format!("{p}[{i}]");
                    let (file, required) = match &item.value {
                        Value::Map(_) => {
                            let file = item.get("path").and_then(Node::scalar_text);
                            let required = item.get("required").map(|n| r.bool(n, &ip).unwrap_or(true)).unwrap_or(true);
                            match file {
                                Some(f) => (f, required),
                                None => {
                                    r.error(item, &ip, "env_file entry needs a `path`");
                                    continue;
                                }
                            }
                        }
                        _ => match r.string(item, &ip) {
                            Some(f) => (f, true),
                            None => continue,
                        },
                    };
                    env_files.push((r.resolve_path(&file), required, item.clone(), ip));
                }
            }
            "ports" => {
                if let Some(items) = seq(r, v, &p) {
                    for (i, item) in items.iter().enumerate() {
                        s.ports.extend(port_config(r, item, &format!("{p}[{i}]")));
                    }
                }
            }
            "expose" => s.expose = r.string_list(v, &p),
            "volumes" => {
                if let Some(items) = seq(r, v, &p) {
                    for (i, item) in items.iter().enumerate() {
                        s.volumes.extend(service_volume(r, item, &format!("{p}[{i}]")));
                    }
                }
            }
            "volumes_from" => s.volumes_from = r.string_list(v, &p),
            "tmpfs" => s.tmpfs = r.string_list(v, &p),
            "networks" => s.networks = service_networks(r, v, &p),
            "network_mode" => s.network_mode = r.string(v, &p),
            "depends_on" => s.depends_on = depends_on(r, v, &p),
            "healthcheck" => s.healthcheck = healthcheck(r, v, &p),
            "restart" => {
                s.restart = r.string(v, &p);
                if let Some(policy) = &s.restart {
                    let base = policy.split(':').next().unwrap_or_default();
                    if !matches!(base, "no" | "always" | "on-failure" | "unless-stopped") {
                        r.error(
                            v,
                            &p,
                            format!(
                                "invalid restart policy {policy:?}: use no, always, on-failure[:N] or unless-stopped"
                            ),
                        );
                    }
                }
            }
            "working_dir" => s.working_dir = r.string(v, &p),
            "user" => s.user = r.string(v, &p),
            "hostname" => s.hostname = r.string(v, &p),
            "container_name" => s.container_name = r.string(v, &p),
            "labels" => s.labels = r.labels(v, &p),
            "init" => s.init = r.bool(v, &p).unwrap_or(false),
            "tty" => s.tty = r.bool(v, &p).unwrap_or(false),
            "stdin_open" => s.stdin_open = r.bool(v, &p).unwrap_or(false),
            "privileged" => s.privileged = r.bool(v, &p).unwrap_or(false),
            "read_only" => s.read_only = r.bool(v, &p).unwrap_or(false),
            "cap_add" => s.cap_add = r.string_list(v, &p),
            "cap_drop" => s.cap_drop = r.string_list(v, &p),
            "security_opt" => s.security_opt = r.string_list(v, &p),
            "extra_hosts" => {
                s.extra_hosts = match &v.value {
                    Value::Map(_) => r.labels(v, &p).into_iter().map(|(h, ip)| format!("{h}:{ip}")).collect(),
                    _ => r.string_list(v, &p),
                }
            }
            "dns" => s.dns = r.string_list(v, &p),
            "dns_search" => s.dns_search = r.string_list(v, &p),
            "dns_opt" => s.dns_opt = r.string_list(v, &p),
            "scale" => s.replicas = r.uint(v, &p).and_then(|n| u32::try_from(n).ok()).unwrap_or(1),
            "deploy" => deploy(r, v, &p, &mut s),
            "cpus" => s.cpus = r.float(v, &p),
            "mem_limit" => s.memory = r.string(v, &p),
            "pids_limit" => s.pids_limit = r.uint(v, &p).and_then(|n| i64::try_from(n).ok()),
            "stop_signal" => s.stop_signal = r.string(v, &p),
            "stop_grace_period" => s.stop_grace_period = r.duration(v, &p),
            "pull_policy" => {
                s.pull_policy = r.string(v, &p);
                if !matches!(
                    s.pull_policy.as_deref(),
                    Some("always" | "never" | "missing" | "if_not_present" | "build" | "daily" | "weekly")
                ) {
                    r.error(v, &p, "pull_policy must be one of always, never, missing, build");
                }
            }
            "profiles" => s.profiles = r.string_list(v, &p),
            _ => {}
        }
    }
    // Variables from env files come first; `environment` wins over them (compose's precedence).
    let lookup: std::collections::HashMap<String, String> = env.clone().into_iter().collect();
    for (file, required, item, ip) in env_files {
        match std::fs::read_to_string(&file) {
            Ok(text) => match super::env_file::parse(&text, &lookup) {
                Ok(vars) => {
                    for (k, v) in vars {
                        s.environment.entry(k).or_insert(Some(v));
                    }
                }
                Err(e) => r.error(&item, &ip, format!("{}:{}: {}", file.display(), e.line, e.message)),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
            Err(e) => r.error(&item, &ip, format!("cannot read env file {}: {e}", file.display())),
        }
    }
    if s.network_mode.is_none() && s.networks.is_empty() {
        s.networks.insert("default".to_string(), ServiceNetwork::default());
    }
    // As docker compose: sharing a service's namespace or volumes makes it a dependency (started first).
    let implied =
        s.network_mode.as_deref().and_then(|m| m.strip_prefix("service:")).map(str::to_owned).into_iter().chain(
            s.volumes_from
                .iter()
                .filter(|v| !v.starts_with("container:"))
                .map(|v| v.split(':').next().unwrap_or_default().to_owned()),
        );
    for dep in implied.collect::<Vec<_>>() {
        s.depends_on.entry(dep).or_insert(Dependency { required: true, ..Dependency::default() });
    }
    if s.image.is_none() && s.build.is_none() {
        r.error_at(key.pos, path, "service has neither an image nor a build context: add `image:` or `build:`");
    }
    Some(s)
}

fn seq<'n>(r: &mut Reader, node: &'n Node, path: &str) -> Option<&'n [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        Value::Null => Some(&[]),
        _ => {
            r.error(node, path, format!("must be a list, found {}", node.kind()));
            None
        }
    }
}

fn build_config(r: &mut Reader, node: &Node, path: &str) -> Option<BuildConfig> {
    if let Value::Str(context) = &node.value {
        return Some(BuildConfig { context: r.resolve_path(context), ..BuildConfig::default() });
    }
    let entries = r.map(node, path)?;
    r.check_keys(
        node,
        path,
        &["context", "dockerfile", "args", "target", "labels", "no_cache", "pull"],
        &[
            "cache_from",
            "cache_to",
            "additional_contexts",
            "dockerfile_inline",
            "entitlements",
            "extra_hosts",
            "isolation",
            "network",
            "platforms",
            "privileged",
            "secrets",
            "shm_size",
            "ssh",
            "tags",
            "ulimits",
        ],
    );
    let mut config = BuildConfig { context: r.working_dir.to_path_buf(), ..BuildConfig::default() };
    for (k, v) in entries {
        let p = format!("{path}.{}", k.name);
        match k.name.as_str() {
            "context" => {
                if let Some(c) = r.string(v, &p) {
                    if c.contains("://") || c.starts_with("git@") {
                        r.error(
                            v,
                            &p,
                            "remote build contexts are not supported: clone the repository and use a local path",
                        );
                    }
                    config.context = r.resolve_path(&c);
                }
            }
            "dockerfile" => config.dockerfile = r.string(v, &p),
            "args" => config.args = r.key_values(v, &p),
            "target" => config.target = r.string(v, &p),
            "labels" => config.labels = r.labels(v, &p),
            "no_cache" => config.no_cache = r.bool(v, &p).unwrap_or(false),
            "pull" => config.pull = r.bool(v, &p).unwrap_or(false),
            _ => {}
        }
    }
    Some(config)
}

fn port_config(r: &mut Reader, node: &Node, path: &str) -> Vec<PortConfig> {
    match &node.value {
        Value::Map(_) => {
            r.check_keys(
                node,
                path,
                &["target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"],
                &[],
            );
            let Some(target) = node.get("target") else {
                r.error(node, path, "port needs a `target` (the container port)");
                return Vec::new();
            };
            let Some(target) = r.uint(target, &format!("{path}.target")).and_then(port_number) else {
                return Vec::new();
            };
            let published = node.get("published").and_then(Node::scalar_text).unwrap_or_default();
            let protocol = node.get("protocol").and_then(Node::scalar_text).unwrap_or_else(|| "tcp".into());
            if !matches!(protocol.as_str(), "tcp" | "udp") {
                r.error(node, path, format!("invalid protocol {protocol:?}: use tcp or udp"));
            }
            vec![PortConfig { target, published, host_ip: node.get("host_ip").and_then(Node::scalar_text), protocol }]
        }
        _ => {
            let Some(text) = node.scalar_text() else {
                r.error(node, path, format!("must be a port string or mapping, found {}", node.kind()));
                return Vec::new();
            };
            match parse_port_short(&text) {
                Ok(ports) => ports,
                Err(msg) => {
                    r.error(node, path, format!("invalid port {text:?}: {msg}"));
                    Vec::new()
                }
            }
        }
    }
}

fn port_number(n: u64) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p > 0)
}

/// Short port syntax: `[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTOCOL]`; a container range gives one
/// entry per port.
pub fn parse_port_short(text: &str) -> Result<Vec<PortConfig>, String> {
    let (rest, protocol) = match text.rsplit_once('/') {
        Some((rest, proto @ ("tcp" | "udp"))) => (rest, proto.to_string()),
        Some((_, proto)) => return Err(format!("unknown protocol {proto:?}: use tcp or udp")),
        None => (text, "tcp".to_string()),
    };
    // IPv6 host addresses come in brackets: `[::1]:8080:80`.
    let (host_ip, rest) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, tail) = after.split_once("]:").ok_or("missing `]:` after an IPv6 address")?;
        (Some(ip.to_string()), tail)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, rest),
            3 => (Some(parts[0].to_string()), &rest[parts[0].len() + 1..]),
            _ => return Err("too many `:` separators".into()),
        }
    };
    let (published, target) = match rest.split_once(':') {
        Some((p, t)) => (p, t),
        None => ("", rest),
    };
    let range = |s: &str| -> Result<(u16, u16), String> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let a: u16 = a.parse().map_err(|_| format!("{s:?} is not a port number"))?;
        let b: u16 = b.parse().map_err(|_| format!("{s:?} is not a port number"))?;
        if a == 0 || b < a {
            return Err(format!("{s:?} is not a valid port or range"));
        }
        Ok((a, b))
    };
    let (t0, t1) = range(target)?;
    if !published.is_empty() {
        let (p0, p1) = range(published)?;
        if p1 - p0 != t1 - t0 && t0 != t1 {
            return Err("host and container port ranges differ in size".into());
        }
        if t0 != t1 {
            return Ok((t0..=t1)
                .map(|t| PortConfig {
                    target: t,
                    published: (p0 + (t - t0)).to_string(),
                    host_ip: host_ip.clone(),
                    protocol: protocol.clone(),
                })
                .collect());
        }
    }
    Ok((t0..=t1)
        .map(|t| PortConfig {
            target: t,
            published: published.to_string(),
            host_ip: host_ip.clone(),
            protocol: protocol.clone(),
        })
        .collect())
}

fn service_volume(r: &mut Reader, node: &Node, path: &str) -> Option<ServiceVolume> {
    if let Value::Map(_) = node.value {
        r.check_keys(
            node,
            path,
            &["type", "source", "target", "read_only", "bind", "volume", "tmpfs", "consistency"],
            &["image"],
        );
        let kind = node.get("type").and_then(Node::scalar_text).unwrap_or_else(|| "volume".into());
        let source = node.get("source").and_then(Node::scalar_text);
        let Some(target) = node.get("target").and_then(Node::scalar_text) else {
            r.error(node, path, "volume needs a `target` (the path in the container)");
            return None;
        };
        let read_only = node.get("read_only").and_then(|n| r.bool(n, &format!("{path}.read_only"))).unwrap_or(false);
        let kind = match kind.as_str() {
            "bind" => match source {
                Some(s) => VolumeKind::Bind(r.resolve_path(&s)),
                None => {
                    r.error(node, path, "a bind mount needs a `source`");
                    return None;
                }
            },
            "volume" => VolumeKind::Volume(source),
            "tmpfs" => VolumeKind::Tmpfs {
                size: node
                    .get("tmpfs")
                    .and_then(|t| t.get("size"))
                    .and_then(Node::scalar_text)
                    .and_then(|s| crate::volume::mount::parse_size(&s)),
            },
            other => {
                r.error(node, path, format!("unsupported volume type {other:?}: use bind, volume or tmpfs"));
                return None;
            }
        };
        let no_copy = node.get("volume").and_then(|v| v.get("nocopy")).is_some_and(|n| n.value == Value::Bool(true));
        let create_host_path =
            node.get("bind").and_then(|b| b.get("create_host_path")).is_none_or(|n| n.value == Value::Bool(true));
        check_target(r, node, path, &target);
        return Some(ServiceVolume { kind, target, read_only, no_copy, create_host_path });
    }
    let text = r.string(node, path)?;
    // `SOURCE:TARGET[:MODE]` or `TARGET`.
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, ""),
        [s, t] => (Some(*s), *t, ""),
        [s, t, m] => (Some(*s), *t, *m),
        _ => {
            r.error(node, path, format!("invalid volume {text:?}: use SOURCE:TARGET[:ro]"));
            return None;
        }
    };
    let modes: Vec<&str> = mode.split(',').filter(|m| !m.is_empty()).collect();
    for m in &modes {
        if !matches!(
            *m,
            "ro" | "rw"
                | "z"
                | "Z"
                | "nocopy"
                | "cached"
                | "delegated"
                | "consistent"
                | "rprivate"
                | "private"
                | "rshared"
                | "shared"
                | "rslave"
                | "slave"
        ) {
            r.error(node, path, format!("invalid volume mode {m:?} in {text:?}"));
        }
    }
    let kind = match source {
        None => VolumeKind::Volume(None),
        Some(s) if s.starts_with('.') || s.starts_with('/') || s.starts_with('~') => {
            VolumeKind::Bind(r.resolve_path(s))
        }
        Some(s) => VolumeKind::Volume(Some(s.to_string())),
    };
    check_target(r, node, path, target);
    Some(ServiceVolume {
        kind,
        target: target.to_string(),
        read_only: modes.contains(&"ro"),
        no_copy: modes.contains(&"nocopy"),
        create_host_path: true,
    })
}

fn check_target(r: &mut Reader, node: &Node, path: &str, target: &str) {
    if !target.starts_with('/') || target == "/" {
        r.error(node, path, format!("volume target {target:?} must be an absolute path other than /"));
    }
}

fn service_networks(r: &mut Reader, node: &Node, path: &str) -> BTreeMap<String, ServiceNetwork> {
    let mut out = BTreeMap::new();
    match &node.value {
        Value::Seq(_) => {
            for name in r.string_list(node, path) {
                out.insert(name, ServiceNetwork::default());
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                let p = format!("{path}.{}", k.name);
                r.check_keys(
                    v,
                    &p,
                    &["aliases", "ipv4_address"],
                    &[
                        "ipv6_address",
                        "link_local_ips",
                        "mac_address",
                        "driver_opts",
                        "priority",
                        "gw_priority",
                        "interface_name",
                    ],
                );
                let mut net = ServiceNetwork::default();
                if let Some(a) = v.get("aliases") {
                    net.aliases = r.string_list(a, &format!("{p}.aliases"));
                }
                net.ipv4_address = v.get("ipv4_address").and_then(Node::scalar_text);
                out.insert(k.name.clone(), net);
            }
        }
        _ => r.error(node, path, format!("must be a list or a mapping, found {}", node.kind())),
    }
    out
}

fn depends_on(r: &mut Reader, node: &Node, path: &str) -> BTreeMap<String, Dependency> {
    let mut out = BTreeMap::new();
    match &node.value {
        Value::Seq(_) => {
            for name in r.string_list(node, path) {
                out.insert(name, Dependency { required: true, ..Dependency::default() });
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                let p = format!("{path}.{}", k.name);
                r.check_keys(v, &p, &["condition", "restart", "required"], &[]);
                let mut dep = Dependency { required: true, ..Dependency::default() };
                if let Some(c) = v.get("condition") {
                    dep.condition = match c.scalar_text().as_deref() {
                        Some("service_started") => Condition::Started,
                        Some("service_healthy") => Condition::Healthy,
                        Some("service_completed_successfully") => Condition::CompletedSuccessfully,
                        _ => {
                            r.error(
                                c,
                                &format!("{p}.condition"),
                                "condition must be service_started, service_healthy or service_completed_successfully",
                            );
                            Condition::Started
                        }
                    };
                }
                if let Some(n) = v.get("restart") {
                    dep.restart = r.bool(n, &format!("{p}.restart")).unwrap_or(false);
                }
                if let Some(n) = v.get("required") {
                    dep.required = r.bool(n, &format!("{p}.required")).unwrap_or(true);
                }
                out.insert(k.name.clone(), dep);
            }
        }
        _ => r.error(node, path, format!("must be a list or a mapping, found {}", node.kind())),
    }
    out
}

fn healthcheck(r: &mut Reader, node: &Node, path: &str) -> Option<Healthcheck> {
    let entries = r.map(node, path)?;
    r.check_keys(
        node,
        path,
        &["test", "interval", "timeout", "start_period", "start_interval", "retries", "disable"],
        &[],
    );
    let mut h = Healthcheck::default();
    for (k, v) in entries {
        let p = format!("{path}.{}", k.name);
        match k.name.as_str() {
            "test" => {
                h.test = match &v.value {
                    Value::Seq(_) => r.string_list(v, &p),
                    _ => r.string(v, &p).map(|t| vec!["CMD-SHELL".to_string(), t]).unwrap_or_default(),
                };
                if !matches!(h.test.first().map(String::as_str), Some("CMD" | "CMD-SHELL" | "NONE")) {
                    r.error(v, &p, "test must be a string, or a list starting with CMD, CMD-SHELL or NONE");
                }
            }
            "interval" => h.interval = r.duration(v, &p),
            "timeout" => h.timeout = r.duration(v, &p),
            "start_period" => h.start_period = r.duration(v, &p),
            "start_interval" => h.start_interval = r.duration(v, &p),
            "retries" => h.retries = r.uint(v, &p).and_then(|n| u32::try_from(n).ok()),
            "disable" => h.disable = r.bool(v, &p).unwrap_or(false),
            _ => {}
        }
    }
    Some(h)
}

fn deploy(r: &mut Reader, node: &Node, path: &str, s: &mut Service) {
    let Some(entries) = r.map(node, path) else { return };
    r.check_keys(
        node,
        path,
        &["replicas", "resources", "restart_policy", "labels", "mode"],
        &["endpoint_mode", "placement", "rollback_config", "update_config"],
    );
    for (k, v) in entries {
        let p = format!("{path}.{}", k.name);
        match k.name.as_str() {
            "replicas" => s.replicas = r.uint(v, &p).and_then(|n| u32::try_from(n).ok()).unwrap_or(1),
            "resources" => {
                r.check_keys(v, &p, &["limits", "reservations"], &[]);
                if let Some(limits) = v.get("limits") {
                    let lp = format!("{p}.limits");
                    r.check_keys(limits, &lp, &["cpus", "memory", "pids"], &["devices"]);
                    if let Some(c) = limits.get("cpus") {
                        s.cpus = r.float(c, &format!("{lp}.cpus"));
                    }
                    if let Some(m) = limits.get("memory") {
                        s.memory = r.string(m, &format!("{lp}.memory"));
                    }
                    if let Some(n) = limits.get("pids") {
                        s.pids_limit = r.uint(n, &format!("{lp}.pids")).and_then(|n| i64::try_from(n).ok());
                    }
                }
                if v.get("reservations").is_some() {
                    r.warnings.push(format!("{p}.reservations: not supported by drydock; ignored"));
                }
            }
            "restart_policy" => {
                r.check_keys(v, &p, &["condition", "max_attempts", "delay", "window"], &[]);
                let condition = v.get("condition").and_then(Node::scalar_text).unwrap_or_else(|| "any".into());
                let attempts = v.get("max_attempts").and_then(Node::scalar_text);
                s.restart = Some(match (condition.as_str(), attempts) {
                    ("none", _) => "no".to_string(),
                    ("on-failure", Some(n)) => format!("on-failure:{n}"),
                    ("on-failure", None) => "on-failure".to_string(),
                    ("any", _) => "always".to_string(),
                    (other, _) => {
                        r.error(
                            v,
                            &p,
                            format!("invalid restart_policy.condition {other:?}: use none, on-failure or any"),
                        );
                        "no".to_string()
                    }
                });
            }
            "labels" => {
                r.warnings.push(format!("{p}: deploy labels apply to swarm services; ignored"));
            }
            "mode" if v.scalar_text().as_deref() != Some("replicated") => {
                r.error(v, &p, "only `replicated` mode is supported");
            }
            _ => {}
        }
    }
}

/// Cross-references: depends_on, networks, volumes and volumes_from name things that exist; no dependency
/// cycles.
fn check_references(r: &mut Reader, project: &Project, tree: &Node) {
    let node_of = |service: &str, key: &str| -> Node {
        tree.get("services")
            .and_then(|s| s.get(service))
            .and_then(|s| s.get(key).or(Some(s)))
            .cloned()
            .unwrap_or_else(|| Node::new(Value::Null))
    };
    for (name, s) in &project.services {
        for dep in s.depends_on.keys() {
            if !project.services.contains_key(dep) {
                let hint = suggest(dep, project.services.keys().map(String::as_str).collect::<Vec<_>>().iter())
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                r.error(
                    &node_of(name, "depends_on"),
                    &format!("services.{name}.depends_on"),
                    format!("depends on undefined service `{dep}`{hint}"),
                );
            }
        }
        for net in s.networks.keys() {
            if net != "default" && !project.networks.contains_key(net) {
                r.error(
                    &node_of(name, "networks"),
                    &format!("services.{name}.networks"),
                    format!("service refers to undefined network `{net}`: declare it under the top-level `networks:`"),
                );
            }
        }
        for v in &s.volumes {
            if let VolumeKind::Volume(Some(vol)) = &v.kind {
                if !project.volumes.contains_key(vol) {
                    r.error(
                        &node_of(name, "volumes"),
                        &format!("services.{name}.volumes"),
                        format!(
                            "service refers to undefined volume `{vol}`: declare it under the top-level `volumes:`"
                        ),
                    );
                }
            }
        }
        for from in &s.volumes_from {
            let target = from.split(':').next().unwrap_or_default();
            if !target.starts_with("container:")
                && !project.services.contains_key(target)
                && !from.starts_with("container:")
            {
                r.error(
                    &node_of(name, "volumes_from"),
                    &format!("services.{name}.volumes_from"),
                    format!("volumes_from refers to undefined service `{target}`"),
                );
            }
        }
        if let Some(mode) = &s.network_mode {
            if let Some(other) = mode.strip_prefix("service:") {
                if !project.services.contains_key(other) {
                    r.error(
                        &node_of(name, "network_mode"),
                        &format!("services.{name}.network_mode"),
                        format!("network_mode refers to undefined service `{other}`"),
                    );
                }
            }
        }
    }
    if let Err(cycle) = super::order::start_order(project) {
        r.error_at(Pos::default(), "services", format!("dependency cycle detected: {}", cycle.join(" -> ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ports() {
        let p = parse_port_short("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            p,
            vec![PortConfig {
                target: 80,
                published: "8080".into(),
                host_ip: Some("127.0.0.1".into()),
                protocol: "udp".into()
            }]
        );
        assert_eq!(p[0].to_publish_flag(), "127.0.0.1:8080:80/udp");
        let p = parse_port_short("3000").unwrap();
        assert_eq!(p[0].to_publish_flag(), "3000");
        let p = parse_port_short("9090-9091:8080-8081").unwrap();
        assert_eq!(p.iter().map(PortConfig::to_publish_flag).collect::<Vec<_>>(), ["9090:8080", "9091:8081"]);
        let p = parse_port_short("[::1]:6001:6000").unwrap();
        assert_eq!(p[0].host_ip.as_deref(), Some("::1"));
        assert_eq!(parse_port_short("8000-9000:80").unwrap()[0].published, "8000-9000");
        assert!(parse_port_short("http").is_err());
        assert!(parse_port_short("80/sctp").is_err());
        assert!(parse_port_short("1:2:3:4").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("10 parsecs"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(split_command(r#"sh -c "echo 'a b' && exit 3""#).unwrap(), ["sh", "-c", "echo 'a b' && exit 3"]);
        assert_eq!(split_command("python  test.py").unwrap(), ["python", "test.py"]);
        assert_eq!(split_command(r"echo a\ b ''").unwrap(), ["echo", "a b", ""]);
        assert!(split_command("echo \"open").is_none());
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("imgae", ["image", "build"].iter()), Some("image"));
        assert_eq!(suggest("depend_on", SERVICE_KEYS.iter()), Some("depends_on"));
        assert_eq!(suggest("zzzzzz", SERVICE_KEYS.iter()), None);
    }
}
