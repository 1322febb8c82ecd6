//! From the located YAML tree to the typed [`Config`]: shapes and key names are checked here (unknown keys with a
//! suggestion, wrong types, missing required keys); references between things are checked later by
//! [`crate::validate`].
//!
//! Top-level keys outside the reference (`references:`, `defaults:`, `aliases:` …) are accepted silently, as
//! CircleCI does, because real configs use them as homes for YAML anchors — unless the key is a near-miss of a
//! real one (`wrokflows`), which is an error with a suggestion.

use std::collections::BTreeMap;

use crate::diagnostic::{item_path, join, suggest, Report};
use crate::model::*;
use crate::yaml::{Pos, Yaml, YamlValue};

// The keys each part of a configuration accepts: the reader checks them, and `crate::schema` builds the JSON
// Schema from them, so the two cannot drift apart.
pub(crate) const TOP_KEYS: &[&str] =
    &["version", "setup", "orbs", "executors", "commands", "parameters", "jobs", "workflows"];
pub(crate) const ORB_KEYS: &[&str] =
    &["orbs", "executors", "commands", "jobs", "description", "display", "version", "parameters", "examples"];
pub(crate) const ENV_KEYS: &[&str] =
    &["docker", "machine", "macos", "resource_class", "shell", "working_directory", "environment"];
pub(crate) const JOB_KEYS: &[&str] =
    &["executor", "parallelism", "steps", "parameters", "type", "description", "circleci_ip_ranges", "branches"];
pub(crate) const EXECUTOR_KEYS: &[&str] = &["parameters", "description"];
pub(crate) const DOCKER_KEYS: &[&str] =
    &["image", "name", "entrypoint", "command", "user", "environment", "auth", "aws_auth"];
pub(crate) const COMMAND_KEYS: &[&str] = &["description", "parameters", "steps"];
pub(crate) const PARAMETER_KEYS: &[&str] = &["type", "description", "default", "enum"];
pub(crate) const WORKFLOW_KEYS: &[&str] = &["jobs", "triggers", "when", "unless"];

pub(crate) const RUN_KEYS: &[&str] =
    &["command", "name", "shell", "environment", "background", "working_directory", "no_output_timeout", "when"];
/// Arguments of the other built-in steps (`run`/`deploy` take [`RUN_KEYS`] or a string).
pub(crate) const STEP_KEYS: &[(&str, &[&str])] = &[
    ("checkout", &["path", "method", "name"]),
    ("save_cache", &["paths", "key", "name", "when"]),
    ("restore_cache", &["key", "keys", "name"]),
    ("store_artifacts", &["path", "destination", "name"]),
    ("store_test_results", &["path", "name"]),
    ("persist_to_workspace", &["root", "paths", "name"]),
    ("attach_workspace", &["at", "name"]),
    ("setup_remote_docker", &["version", "docker_layer_caching", "name"]),
    ("add_ssh_keys", &["fingerprints", "name"]),
    ("when", &["condition", "steps"]),
    ("unless", &["condition", "steps"]),
];
pub(crate) const FILTERS_KEYS: &[&str] = &["branches", "tags"];
pub(crate) const FILTER_KEYS: &[&str] = &["only", "ignore"];
pub(crate) const MATRIX_KEYS: &[&str] = &["parameters", "exclude", "alias"];
pub(crate) const TRIGGER_KEYS: &[&str] = &["schedule"];
pub(crate) const SCHEDULE_KEYS: &[&str] = &["cron", "filters"];

fn step_keys(name: &str) -> &'static [&'static str] {
    STEP_KEYS.iter().find(|(n, _)| *n == name).map_or(&[], |(_, keys)| keys)
}

/// Reads a parsed document. Problems go to `report`; the returned model holds everything that could be read.
pub fn config(doc: &Yaml, report: &mut Report) -> Config {
    let mut c = Config::default();
    if !doc.is_map() {
        report.error(
            doc.pos,
            "",
            format!("the configuration must be a map of keys (version, jobs, workflows, …), found {}", doc.kind()),
        );
        return c;
    }
    for (pos, key, value) in doc.entries() {
        c.sections.insert(key.clone(), *pos);
        if !TOP_KEYS.contains(&key.as_str()) {
            if let Some(s) = suggest(key, TOP_KEYS.iter().copied()) {
                report.push(*pos, key, format!("unknown top-level key `{key}`"), Some(s));
            }
        }
        let _ = value;
    }
    match doc.get("version") {
        None => report.error(Pos { line: 1, column: 1 }, "version", "missing `version`: add `version: 2.1` at the top"),
        Some(v) => {
            c.version_pos = v.pos;
            c.version = match &v.value {
                YamlValue::Int(i) => i.to_string(),
                YamlValue::Float(f) => format!("{f:.1}"),
                YamlValue::Str(s) => s.clone(),
                _ => String::new(),
            };
            if !matches!(c.version.as_str(), "2" | "2.0" | "2.1") {
                report.error(
                    v.pos,
                    "version",
                    format!(
                        "unsupported version `{}`: use 2.1 (or 2.0)",
                        v.scalar_text().unwrap_or_else(|| v.kind().into())
                    ),
                );
            }
        }
    }
    if let Some(v) = doc.get("setup") {
        c.setup = boolean(v, "setup", report).unwrap_or(false);
    }
    if let Some(v) = doc.get("orbs") {
        c.orbs = orbs(v, "orbs", report);
    }
    if let Some(v) = doc.get("executors") {
        c.executors = named(v, "executors", report, executor);
    }
    if let Some(v) = doc.get("commands") {
        c.commands = named(v, "commands", report, command);
    }
    if let Some(v) = doc.get("parameters") {
        c.parameters = parameters(v, "parameters", report);
    }
    if let Some(v) = doc.get("jobs") {
        c.jobs = named(v, "jobs", report, job);
    }
    if let Some(v) = doc.get("workflows") {
        c.workflows = workflows(v, report);
    }
    c
}

fn map<'a>(v: &'a Yaml, path: &str, report: &mut Report) -> Option<&'a [(Pos, String, Yaml)]> {
    match &v.value {
        YamlValue::Map(m) => Some(m),
        YamlValue::Null => Some(&[]),
        _ => {
            report.error(v.pos, path, format!("must be a map, found {}", v.kind()));
            None
        }
    }
}

fn list<'a>(v: &'a Yaml, path: &str, report: &mut Report) -> Option<&'a [Yaml]> {
    match &v.value {
        YamlValue::Seq(s) => Some(s),
        YamlValue::Null => Some(&[]),
        _ => {
            report.error(v.pos, path, format!("must be a list, found {}", v.kind()));
            None
        }
    }
}

fn string(v: &Yaml, path: &str, report: &mut Report) -> Option<String> {
    match &v.value {
        YamlValue::Str(s) => Some(s.clone()),
        YamlValue::Int(_) | YamlValue::Float(_) | YamlValue::Bool(_) => v.scalar_text(),
        _ => {
            report.error(v.pos, path, format!("must be a string, found {}", v.kind()));
            None
        }
    }
}

fn boolean(v: &Yaml, path: &str, report: &mut Report) -> Option<bool> {
    match &v.value {
        YamlValue::Bool(b) => Some(*b),
        _ => {
            report.error(v.pos, path, format!("must be true or false, found {}", v.kind()));
            None
        }
    }
}

/// A string or a list of strings.
fn strings(v: &Yaml, path: &str, report: &mut Report) -> Vec<String> {
    match &v.value {
        YamlValue::Seq(items) => {
            items.iter().enumerate().filter_map(|(i, item)| string(item, &item_path(path, i), report)).collect()
        }
        YamlValue::Null => Vec::new(),
        _ => string(v, path, report).into_iter().collect(),
    }
}

/// A scalar or a list of scalars, kept located.
fn values(v: &Yaml) -> Vec<Yaml> {
    match &v.value {
        YamlValue::Seq(items) => items.clone(),
        YamlValue::Null => Vec::new(),
        _ => vec![v.clone()],
    }
}

/// Reports keys of `v` outside `known`, with a suggestion. `what` names the thing in the message.
fn check_keys(v: &Yaml, path: &str, what: &str, known: &[&[&str]], report: &mut Report) {
    for (pos, key, _) in v.entries() {
        if known.iter().any(|set| set.contains(&key.as_str())) {
            continue;
        }
        let all = known.iter().flat_map(|s| s.iter().copied());
        report.push(*pos, &join(path, key), format!("unknown key `{key}` in {what}"), suggest(key, all));
    }
}

fn named<T>(
    v: &Yaml,
    path: &str,
    report: &mut Report,
    read: fn(&Yaml, &str, &str, &mut Report) -> T,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    if let Some(entries) = map(v, path, report) {
        for (_, name, value) in entries {
            out.insert(name.clone(), read(value, &join(path, name), name, report));
        }
    }
    out
}

fn orbs(v: &Yaml, path: &str, report: &mut Report) -> BTreeMap<String, Orb> {
    let mut out = BTreeMap::new();
    let Some(entries) = map(v, path, report) else { return out };
    for (pos, name, value) in entries {
        let p = join(path, name);
        let orb = match &value.value {
            YamlValue::Str(reference) => {
                if !is_orb_reference(reference) {
                    report.error(
                        value.pos,
                        &p,
                        format!(
                            "orb reference `{reference}` is not `namespace/name@version` (e.g. `circleci/node@5.1`)"
                        ),
                    );
                }
                Orb::Registry { reference: reference.clone(), pos: value.pos, resolved: None }
            }
            YamlValue::Map(_) => {
                Orb::Inline(Box::new(inline_orb(value, *pos, &p, &format!("inline orb `{name}`"), report)))
            }
            _ => {
                report.error(
                    value.pos,
                    &p,
                    format!("an orb is a reference like `circleci/node@5.1` or an inline map, found {}", value.kind()),
                );
                continue;
            }
        };
        out.insert(name.clone(), orb);
    }
    out
}

/// `namespace/name@version` (the version may be `volatile` or a partial semver such as `5` or `5.1`).
pub fn is_orb_reference(s: &str) -> bool {
    let ok = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    match s.split_once('/').and_then(|(ns, rest)| Some((ns, rest.split_once('@')?))) {
        Some((namespace, (name, version))) => ok(namespace) && ok(name) && ok(version),
        None => false,
    }
}

/// An orb's body: inline under `orbs:`, or a whole file of the local orb directory. `what` names it in messages.
pub fn inline_orb(v: &Yaml, pos: Pos, path: &str, what: &str, report: &mut Report) -> InlineOrb {
    check_keys(v, path, what, &[ORB_KEYS], report);
    InlineOrb {
        pos,
        file: None,
        description: v.get("description").and_then(Yaml::scalar_text),
        orbs: v.get("orbs").map(|o| orbs(o, &join(path, "orbs"), report)).unwrap_or_default(),
        executors: v.get("executors").map(|o| named(o, &join(path, "executors"), report, executor)).unwrap_or_default(),
        commands: v.get("commands").map(|o| named(o, &join(path, "commands"), report, command)).unwrap_or_default(),
        jobs: v.get("jobs").map(|o| named(o, &join(path, "jobs"), report, job)).unwrap_or_default(),
    }
}

/// A typed value, or a `<< … >>` template kept for processing. `expected` says what a value must be; `choices`
/// (if it is one of a few words) feed the suggestion.
fn maybe_template<T>(
    v: &Yaml,
    path: &str,
    expected: &str,
    choices: &[&str],
    report: &mut Report,
    read: impl Fn(&Yaml) -> Option<T>,
) -> Option<MaybeTemplate<T>> {
    if let Some(s) = v.as_str().filter(|s| s.contains("<<")) {
        return Some(MaybeTemplate::Template(s.to_string()));
    }
    match read(v) {
        Some(x) => Some(MaybeTemplate::Value(x)),
        None => {
            let found = v.scalar_text().map_or_else(|| v.kind().to_string(), |t| format!("`{t}`"));
            let suggestion = v.as_str().and_then(|s| suggest(s, choices.iter().copied()));
            report.push(v.pos, path, format!("must be {expected}, found {found}"), suggestion);
            None
        }
    }
}

pub fn parameters(v: &Yaml, path: &str, report: &mut Report) -> BTreeMap<String, Parameter> {
    let mut out = BTreeMap::new();
    let Some(entries) = map(v, path, report) else { return out };
    for (pos, name, value) in entries {
        let p = join(path, name);
        if !value.is_map() {
            report.error(
                value.pos,
                &p,
                format!(
                    "a parameter declaration is a map with `type` (and `default`, `description`), found {}",
                    value.kind()
                ),
            );
            continue;
        }
        check_keys(value, &p, &format!("parameter `{name}`"), &[PARAMETER_KEYS], report);
        let kind = match value.get("type") {
            None => {
                report.error(
                    *pos,
                    &p,
                    format!("parameter `{name}` has no `type` (one of {})", ParameterKind::ALL.join(", ")),
                );
                continue;
            }
            Some(t) => match t.as_str().and_then(ParameterKind::parse) {
                Some(k) => k,
                None => {
                    let text = t.scalar_text().unwrap_or_default();
                    report.push(
                        t.pos,
                        &join(&p, "type"),
                        format!("unknown parameter type `{text}` (one of {})", ParameterKind::ALL.join(", ")),
                        suggest(&text, ParameterKind::ALL),
                    );
                    continue;
                }
            },
        };
        let enum_values = value.get("enum").map(|e| strings(e, &join(&p, "enum"), report)).unwrap_or_default();
        if kind == ParameterKind::Enum && enum_values.is_empty() {
            report.error(*pos, &p, format!("enum parameter `{name}` needs an `enum:` list of allowed values"));
        }
        out.insert(
            name.clone(),
            Parameter {
                pos: *pos,
                kind,
                description: value.get("description").and_then(Yaml::scalar_text),
                default: value.get("default").cloned(),
                enum_values,
            },
        );
    }
    out
}

fn environment_map(v: &Yaml, path: &str, report: &mut Report) -> Vec<(String, Yaml)> {
    match &v.value {
        YamlValue::Map(entries) => entries.iter().map(|(_, k, v)| (k.clone(), v.clone())).collect(),
        YamlValue::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let text = string(item, &item_path(path, i), report)?;
                let (k, val) = text.split_once('=').unwrap_or((text.as_str(), ""));
                Some((k.to_string(), Yaml::at(item.pos, YamlValue::Str(val.to_string()))))
            })
            .collect(),
        YamlValue::Null => Vec::new(),
        // A template (`environment: << parameters.env >>`) is expanded by the processor.
        YamlValue::Str(s) if s.contains("<<") => vec![(String::new(), v.clone())],
        _ => {
            report.error(v.pos, path, format!("must be a map of variables, found {}", v.kind()));
            Vec::new()
        }
    }
}

fn env_part(v: &Yaml, path: &str, report: &mut Report) -> Environment {
    let mut env = Environment::default();
    if let Some(d) = v.get("docker") {
        let p = join(path, "docker");
        if let Some(items) = list(d, &p, report) {
            for (i, item) in items.iter().enumerate() {
                let ip = item_path(&p, i);
                if !item.is_map() {
                    report.error(
                        item.pos,
                        &ip,
                        format!("a docker image entry is a map with `image:`, found {}", item.kind()),
                    );
                    continue;
                }
                check_keys(item, &ip, "a docker image", &[DOCKER_KEYS], report);
                let Some(image) = item.get("image") else {
                    report.error(item.pos, &ip, "docker image entry has no `image`");
                    continue;
                };
                env.docker.push(DockerImage {
                    pos: item.pos,
                    image: image.clone(),
                    name: item.get("name").cloned(),
                    entrypoint: item.get("entrypoint").cloned(),
                    command: item.get("command").cloned(),
                    user: item.get("user").cloned(),
                    environment: item
                        .get("environment")
                        .map(|e| environment_map(e, &join(&ip, "environment"), report))
                        .unwrap_or_default(),
                    auth: item.get("auth").cloned(),
                    aws_auth: item.get("aws_auth").cloned(),
                });
            }
        }
    }
    env.machine = v.get("machine").cloned();
    env.macos = v.get("macos").cloned();
    env.resource_class = v.get("resource_class").cloned();
    env.shell = v.get("shell").cloned();
    env.working_directory = v.get("working_directory").cloned();
    if let Some(e) = v.get("environment") {
        env.environment = environment_map(e, &join(path, "environment"), report);
    }
    env
}

/// An `executors:` entry named `name` at `path`.
pub fn executor(v: &Yaml, path: &str, name: &str, report: &mut Report) -> Executor {
    let mut e = Executor { pos: v.pos, body: v.clone(), ..Executor::default() };
    if map(v, path, report).is_none() {
        return e;
    }
    check_keys(v, path, &format!("executor `{name}`"), &[ENV_KEYS, EXECUTOR_KEYS], report);
    e.description = v.get("description").and_then(Yaml::scalar_text);
    if let Some(p) = v.get("parameters") {
        e.parameters = parameters(p, &join(path, "parameters"), report);
    }
    e.env = env_part(v, path, report);
    e
}

/// A `commands:` entry named `name` at `path`.
pub fn command(v: &Yaml, path: &str, name: &str, report: &mut Report) -> Command {
    let mut c = Command { pos: v.pos, body: v.clone(), ..Command::default() };
    if map(v, path, report).is_none() {
        return c;
    }
    check_keys(v, path, &format!("command `{name}`"), &[COMMAND_KEYS], report);
    c.description = v.get("description").and_then(Yaml::scalar_text);
    if let Some(p) = v.get("parameters") {
        c.parameters = parameters(p, &join(path, "parameters"), report);
    }
    match v.get("steps") {
        Some(s) => c.steps = steps(s, &join(path, "steps"), report),
        // A misspelt `steps` key is reported as such (with the suggestion); "no steps" would only repeat it.
        None if v.entries().iter().any(|(_, k, _)| suggest(k, ["steps"]).is_some()) => {}
        None => report.error(v.pos, path, format!("command `{name}` has no `steps`")),
    }
    c
}

/// A `jobs:` entry named `name` at `path`.
pub fn job(v: &Yaml, path: &str, name: &str, report: &mut Report) -> Job {
    let mut j = Job { pos: v.pos, body: v.clone(), ..Job::default() };
    if map(v, path, report).is_none() {
        return j;
    }
    check_keys(v, path, &format!("job `{name}`"), &[ENV_KEYS, JOB_KEYS], report);
    j.description = v.get("description").and_then(Yaml::scalar_text);
    if let Some(t) = v.get("type") {
        j.kind = match t.as_str() {
            Some("build") => JobType::Build,
            Some("approval") => JobType::Approval,
            Some("no-op") => JobType::NoOp,
            _ => {
                report.error(t.pos, &join(path, "type"), "job type must be build, approval or no-op");
                JobType::Build
            }
        };
    }
    if let Some(e) = v.get("executor") {
        j.executor = executor_ref(e, &join(path, "executor"), report);
    }
    j.env = env_part(v, path, report);
    if let Some(p) = v.get("parallelism") {
        j.parallelism =
            maybe_template(p, &join(path, "parallelism"), "a whole number of at least 1", &[], report, |x| {
                match x.value {
                    YamlValue::Int(n) if n >= 1 => u32::try_from(n).ok(),
                    _ => None,
                }
            });
    }
    if let Some(p) = v.get("parameters") {
        j.parameters = parameters(p, &join(path, "parameters"), report);
    }
    if let Some(c) = v.get("circleci_ip_ranges") {
        j.circleci_ip_ranges = boolean(c, &join(path, "circleci_ip_ranges"), report).unwrap_or(false);
    }
    match v.get("steps") {
        Some(s) => j.steps = steps(s, &join(path, "steps"), report),
        // A misspelt `steps` key is reported as such (with the suggestion); "no steps" would only repeat it.
        None if j.kind == JobType::Build && !v.entries().iter().any(|(_, k, _)| suggest(k, ["steps"]).is_some()) => {
            report.error(v.pos, path, format!("job `{name}` has no `steps`"))
        }
        None => {}
    }
    j
}

fn executor_ref(v: &Yaml, path: &str, report: &mut Report) -> Option<ExecutorRef> {
    match &v.value {
        YamlValue::Str(name) => Some(ExecutorRef { pos: v.pos, name: name.clone(), args: Vec::new() }),
        YamlValue::Map(entries) => {
            let Some(name) = v.get("name").and_then(Yaml::as_str) else {
                report.error(v.pos, path, "an executor with arguments needs `name:`");
                return None;
            };
            let args = entries.iter().filter(|(_, k, _)| k != "name").map(|(_, k, v)| (k.clone(), v.clone())).collect();
            Some(ExecutorRef { pos: v.pos, name: name.to_string(), args })
        }
        _ => {
            report.error(v.pos, path, format!("executor must be a name or a map with `name:`, found {}", v.kind()));
            None
        }
    }
}

pub fn steps(v: &Yaml, path: &str, report: &mut Report) -> Vec<Step> {
    let mut out = Vec::new();
    // A `steps` parameter used as the whole list: `steps: << parameters.steps >>`.
    if let YamlValue::Str(s) = &v.value {
        if s.contains("<<") {
            out.push(Step { pos: v.pos, kind: StepKind::Parameter { template: s.trim().to_string() } });
            return out;
        }
    }
    let Some(items) = list(v, path, report) else { return out };
    for (i, item) in items.iter().enumerate() {
        let ip = item_path(path, i);
        // `- steps: << parameters.x >>` (or a literal list) splices steps in place, as CircleCI allows.
        if let [(_, key, inner)] = item.entries() {
            if key == "steps" {
                let mut inner_steps = steps(inner, &join(&ip, "steps"), report);
                let kind = match (&inner.value, inner_steps.len()) {
                    (YamlValue::Str(_), 1) => inner_steps.remove(0).kind,
                    _ => StepKind::Steps(inner_steps),
                };
                out.push(Step { pos: item.pos, kind });
                continue;
            }
        }
        // `- << parameters.x >>`: a steps parameter as one step.
        if let Some(s) = item.as_str().filter(|s| s.contains("<<")) {
            out.push(Step { pos: item.pos, kind: StepKind::Parameter { template: s.trim().to_string() } });
            continue;
        }
        if let Some(step) = step(item, &ip, report) {
            out.push(step);
        }
    }
    out
}

fn step(v: &Yaml, path: &str, report: &mut Report) -> Option<Step> {
    let pos = v.pos;
    let (name, args, name_pos) = match &v.value {
        YamlValue::Str(s) => (s.trim().to_string(), None, v.pos),
        YamlValue::Map(entries) if entries.len() == 1 => {
            let (p, k, a) = &entries[0];
            (k.clone(), Some(a), *p)
        }
        YamlValue::Map(entries) => {
            let keys: Vec<&str> = entries.iter().map(|(_, k, _)| k.as_str()).collect();
            let mut message =
                format!("a step has exactly one key (the step's name), found {}: {}", keys.len(), keys.join(", "));
            // `- run:` with its settings at the same indentation instead of under it.
            if let Some((_, first, _)) = entries.first().filter(|(_, _, v)| v.value == YamlValue::Null) {
                message.push_str(&format!("; indent {} under `{first}:`", quoted_list(&keys[1..])));
            }
            report.error(v.pos, path, message);
            return None;
        }
        _ => {
            report.error(v.pos, path, format!("a step is a name or a one-key map, found {}", v.kind()));
            return None;
        }
    };
    let p = join(path, &name);
    let none = Yaml::at(name_pos, YamlValue::Null);
    let a = args.unwrap_or(&none);
    let arg_map = |known: &[&str], report: &mut Report| -> bool {
        match &a.value {
            YamlValue::Map(_) => {
                check_keys(a, &p, &format!("step `{name}`"), &[known], report);
                true
            }
            YamlValue::Null => true,
            _ => {
                report.error(a.pos, &p, format!("`{name}` takes a map of arguments, found {}", a.kind()));
                false
            }
        }
    };
    let require = |key: &str, report: &mut Report| -> Option<Yaml> {
        let found = a.get(key).cloned();
        if found.is_none() {
            report.error(a.pos, &p, format!("step `{name}` needs `{key}`"));
        }
        found
    };
    let kind = match name.as_str() {
        "checkout" => {
            arg_map(step_keys("checkout"), report);
            StepKind::Checkout { path: a.get("path").cloned(), method: a.get("method").cloned() }
        }
        "run" | "deploy" => {
            let run = match &a.value {
                YamlValue::Str(_) => Run { command: a.clone(), ..Run::default() },
                YamlValue::Map(_) => {
                    check_keys(a, &p, &format!("step `{name}`"), &[RUN_KEYS], report);
                    let command = require("command", report)?;
                    Run {
                        command,
                        name: a.get("name").cloned(),
                        shell: a.get("shell").cloned(),
                        environment: a
                            .get("environment")
                            .map(|e| environment_map(e, &join(&p, "environment"), report))
                            .unwrap_or_default(),
                        background: a.get("background").and_then(|b| {
                            maybe_template(
                                b,
                                &join(&p, "background"),
                                "true or false",
                                &["true", "false"],
                                report,
                                |x| match x.value {
                                    YamlValue::Bool(b) => Some(b),
                                    _ => None,
                                },
                            )
                        }),
                        working_directory: a.get("working_directory").cloned(),
                        no_output_timeout: a.get("no_output_timeout").cloned(),
                        when: a.get("when").and_then(|w| {
                            maybe_template(
                                w,
                                &join(&p, "when"),
                                "on_success, on_fail or always",
                                &["on_success", "on_fail", "always"],
                                report,
                                |x| x.as_str().and_then(RunWhen::parse),
                            )
                        }),
                    }
                }
                _ => {
                    report.error(
                        a.pos,
                        &p,
                        format!("`{name}` takes a command string or a map with `command:`, found {}", a.kind()),
                    );
                    return None;
                }
            };
            if name == "run" {
                StepKind::Run(run)
            } else {
                StepKind::Deploy(run)
            }
        }
        "save_cache" => {
            arg_map(step_keys("save_cache"), report);
            let key = require("key", report)?;
            let paths = require("paths", report).map(|p| values(&p)).unwrap_or_default();
            StepKind::SaveCache { name: a.get("name").cloned(), key, paths, when: a.get("when").cloned() }
        }
        "restore_cache" => {
            arg_map(step_keys("restore_cache"), report);
            let mut keys: Vec<Yaml> = a.get("key").map(values).unwrap_or_default();
            keys.extend(a.get("keys").map(values).unwrap_or_default());
            if keys.is_empty() {
                report.error(a.pos, &p, "step `restore_cache` needs `key` or `keys`");
            }
            StepKind::RestoreCache { name: a.get("name").cloned(), keys }
        }
        "store_artifacts" => {
            arg_map(step_keys("store_artifacts"), report);
            StepKind::StoreArtifacts { path: require("path", report)?, destination: a.get("destination").cloned() }
        }
        "store_test_results" => {
            arg_map(step_keys("store_test_results"), report);
            StepKind::StoreTestResults { path: require("path", report)? }
        }
        "persist_to_workspace" => {
            arg_map(step_keys("persist_to_workspace"), report);
            let root = require("root", report)?;
            let paths = require("paths", report).map(|p| values(&p)).unwrap_or_default();
            StepKind::PersistToWorkspace { root, paths }
        }
        "attach_workspace" => {
            arg_map(step_keys("attach_workspace"), report);
            StepKind::AttachWorkspace { at: require("at", report)? }
        }
        "setup_remote_docker" => {
            arg_map(step_keys("setup_remote_docker"), report);
            StepKind::SetupRemoteDocker {
                version: a.get("version").cloned(),
                docker_layer_caching: a.get("docker_layer_caching").cloned(),
            }
        }
        "add_ssh_keys" => {
            arg_map(step_keys("add_ssh_keys"), report);
            StepKind::AddSshKeys { fingerprints: a.get("fingerprints").map(values).unwrap_or_default() }
        }
        "when" | "unless" => {
            arg_map(step_keys(&name), report);
            let condition = logic(&require("condition", report)?, &join(&p, "condition"), report);
            let inner = require("steps", report).map(|s| steps(&s, &join(&p, "steps"), report)).unwrap_or_default();
            if name == "when" {
                StepKind::When { condition, steps: inner }
            } else {
                StepKind::Unless { condition, steps: inner }
            }
        }
        _ => {
            let args = match &a.value {
                YamlValue::Map(entries) => entries.iter().map(|(_, k, v)| (k.clone(), v.clone())).collect(),
                YamlValue::Null => Vec::new(),
                _ => {
                    report.error(a.pos, &p, format!("arguments of `{name}` must be a map, found {}", a.kind()));
                    Vec::new()
                }
            };
            StepKind::Invoke { name: name.clone(), args }
        }
    };
    Some(Step { pos, kind })
}

/// A logic statement: `and`, `or`, `not`, `equal`, `matches`, or a value.
pub fn logic(v: &Yaml, path: &str, report: &mut Report) -> Logic {
    if let YamlValue::Map(entries) = &v.value {
        if entries.len() == 1 {
            let (pos, key, arg) = &entries[0];
            let p = join(path, key);
            let items = |report: &mut Report| -> Vec<Yaml> {
                match &arg.value {
                    YamlValue::Seq(s) => s.clone(),
                    _ => {
                        report.error(arg.pos, &p, format!("`{key}` takes a list, found {}", arg.kind()));
                        Vec::new()
                    }
                }
            };
            match key.as_str() {
                "and" => {
                    return Logic::And(
                        items(report).iter().enumerate().map(|(i, x)| logic(x, &item_path(&p, i), report)).collect(),
                    )
                }
                "or" => {
                    return Logic::Or(
                        items(report).iter().enumerate().map(|(i, x)| logic(x, &item_path(&p, i), report)).collect(),
                    )
                }
                "not" => return Logic::Not(Box::new(logic(arg, &p, report))),
                "equal" => return Logic::Equal(items(report)),
                "matches" => {
                    check_keys(arg, &p, "`matches`", &[&["pattern", "value"]], report);
                    match (arg.get("pattern"), arg.get("value")) {
                        (Some(pattern), Some(value)) => {
                            if let Some(re) = pattern.as_str().filter(|s| !s.contains("<<")) {
                                if let Err(e) = regex::Regex::new(re) {
                                    report.error(
                                        pattern.pos,
                                        &join(&p, "pattern"),
                                        format!("invalid regular expression: {}", first_line(&e.to_string())),
                                    );
                                }
                            }
                            return Logic::Matches { pattern: pattern.clone(), value: value.clone() };
                        }
                        _ => {
                            report.error(*pos, &p, "`matches` needs `pattern` and `value`");
                            return Logic::Value(Yaml::at(*pos, YamlValue::Bool(false)));
                        }
                    }
                }
                other => {
                    report.push(
                        *pos,
                        &p,
                        format!("unknown logic operator `{other}`"),
                        suggest(other, ["and", "or", "not", "equal", "matches"]),
                    );
                }
            }
        }
    }
    Logic::Value(v.clone())
}

/// `` `a`, `b` `` for messages.
fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

/// The line of a multi-line library error that says what is wrong (regex and cron errors end with it).
pub fn first_line(s: &str) -> String {
    let line = s.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or(s);
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

fn workflows(v: &Yaml, report: &mut Report) -> BTreeMap<String, Workflow> {
    let mut out = BTreeMap::new();
    let Some(entries) = map(v, "workflows", report) else { return out };
    for (pos, name, value) in entries {
        // `workflows: version: 2` of 2.0 configs.
        if name == "version" {
            continue;
        }
        let p = join("workflows", name);
        if map(value, &p, report).is_none() {
            continue;
        }
        check_keys(value, &p, &format!("workflow `{name}`"), &[WORKFLOW_KEYS], report);
        let mut w = Workflow { pos: *pos, body: value.clone(), ..Workflow::default() };
        match value.get("jobs") {
            None => report.error(*pos, &p, format!("workflow `{name}` has no `jobs`")),
            Some(jobs) => {
                if let Some(items) = list(jobs, &join(&p, "jobs"), report) {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(j) = workflow_job(item, &format!("{p}.jobs[{i}]"), report) {
                            w.jobs.push(j);
                        }
                    }
                }
            }
        }
        if let Some(t) = value.get("triggers") {
            let tp = join(&p, "triggers");
            if let Some(items) = list(t, &tp, report) {
                for (i, item) in items.iter().enumerate() {
                    let ip = item_path(&tp, i);
                    check_keys(item, &ip, "a trigger", &[TRIGGER_KEYS], report);
                    let Some(s) = item.get("schedule") else {
                        report.error(item.pos, &ip, "a trigger needs `schedule:`");
                        continue;
                    };
                    let sp = join(&ip, "schedule");
                    check_keys(s, &sp, "a schedule", &[SCHEDULE_KEYS], report);
                    let Some(cron) = s.get("cron") else {
                        report.error(s.pos, &sp, "a schedule needs `cron:`");
                        continue;
                    };
                    let filters =
                        s.get("filters").map(|f| filters(f, &join(&sp, "filters"), report)).unwrap_or_default();
                    w.triggers.push(Schedule {
                        pos: s.pos,
                        cron: cron.scalar_text().unwrap_or_default(),
                        cron_pos: cron.pos,
                        filters,
                    });
                }
            }
        }
        w.when = value.get("when").map(|x| logic(x, &join(&p, "when"), report));
        w.unless = value.get("unless").map(|x| logic(x, &join(&p, "unless"), report));
        out.insert(name.clone(), w);
    }
    out
}

pub fn workflow_job(v: &Yaml, path: &str, report: &mut Report) -> Option<WorkflowJob> {
    let (job, body, pos) = match &v.value {
        YamlValue::Str(s) => (s.clone(), None, v.pos),
        YamlValue::Map(entries) if entries.len() == 1 => {
            let (p, k, b) = &entries[0];
            (k.clone(), Some(b), *p)
        }
        YamlValue::Map(entries) if entries.first().is_some_and(|(_, _, v)| v.value == YamlValue::Null) => {
            let keys: Vec<&str> = entries.iter().skip(1).map(|(_, k, _)| k.as_str()).collect();
            let first = &entries[0].1;
            report.error(
                v.pos,
                path,
                format!(
                    "a workflow job is a one-key map `{first}: {{…}}`: indent {} under `{first}:`",
                    quoted_list(&keys)
                ),
            );
            return None;
        }
        _ => {
            report.error(
                v.pos,
                path,
                format!("a workflow job is a job name or a one-key map `job: {{…}}`, found {}", v.kind()),
            );
            return None;
        }
    };
    let mut j = WorkflowJob { pos, job: job.clone(), ..WorkflowJob::default() };
    let Some(body) = body else { return Some(j) };
    let p = join(path, &job);
    if map(body, &p, report).is_none() {
        return Some(j);
    }
    for (kpos, key, value) in body.entries() {
        let kp = join(&p, key);
        match key.as_str() {
            "requires" => j.requires = requires(value, &kp, report),
            "filters" => j.filters = filters(value, &kp, report),
            "context" => j.context = strings(value, &kp, report),
            "type" => {
                if value.as_str() == Some("approval") {
                    j.approval = true;
                } else {
                    report.error(value.pos, &kp, "the only workflow job type is `approval`");
                }
            }
            "name" => j.name = string(value, &kp, report),
            "matrix" => j.matrix = matrix(value, &kp, report),
            "pre-steps" => j.pre_steps = steps(value, &kp, report),
            "post-steps" => j.post_steps = steps(value, &kp, report),
            _ => {
                let _ = kpos;
                j.args.push((key.clone(), value.clone()));
            }
        }
    }
    Some(j)
}

fn requires(v: &Yaml, path: &str, report: &mut Report) -> Vec<Requirement> {
    let mut out = Vec::new();
    let one = |item: &Yaml, report: &mut Report, out: &mut Vec<Requirement>, ip: &str| match &item.value {
        YamlValue::Str(name) => {
            out.push(Requirement { pos: item.pos, name: name.clone(), statuses: vec![RequiredStatus::Success] })
        }
        YamlValue::Map(entries) => {
            for (pos, name, st) in entries {
                let texts: Vec<Yaml> = values(st);
                let mut statuses = Vec::new();
                for t in texts {
                    let s = t.scalar_text().unwrap_or_default();
                    match RequiredStatus::parse(&s) {
                        Some(x) => statuses.push(x),
                        None => report.push(
                            t.pos,
                            &join(ip, name),
                            format!("unknown status `{s}` (success, failed, canceled, not_run or terminal)"),
                            suggest(&s, ["success", "failed", "canceled", "not_run", "terminal"]),
                        ),
                    }
                }
                out.push(Requirement { pos: *pos, name: name.clone(), statuses });
            }
        }
        _ => {
            report.error(item.pos, ip, format!("a requirement is a job name or `name: status`, found {}", item.kind()))
        }
    };
    match &v.value {
        YamlValue::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                one(item, report, &mut out, &item_path(path, i));
            }
        }
        YamlValue::Map(_) => one(v, report, &mut out, path),
        YamlValue::Null => {}
        _ => report.error(v.pos, path, format!("requires must be a list of job names, found {}", v.kind())),
    }
    out
}

fn filters(v: &Yaml, path: &str, report: &mut Report) -> Filters {
    let mut f = Filters::default();
    if map(v, path, report).is_none() {
        return f;
    }
    check_keys(v, path, "filters", &[FILTERS_KEYS], report);
    if let Some(b) = v.get("branches") {
        f.branches = filter(b, &join(path, "branches"), report);
    }
    if let Some(t) = v.get("tags") {
        f.tags = filter(t, &join(path, "tags"), report);
    }
    f
}

fn filter(v: &Yaml, path: &str, report: &mut Report) -> Filter {
    let mut f = Filter { pos: v.pos, set: true, ..Filter::default() };
    if map(v, path, report).is_none() {
        return f;
    }
    check_keys(v, path, "a filter", &[FILTER_KEYS], report);
    for (key, target) in [("only", &mut f.only), ("ignore", &mut f.ignore)] {
        let Some(x) = v.get(key) else { continue };
        for (i, item) in values(x).iter().enumerate() {
            let ip = if matches!(x.value, YamlValue::Seq(_)) { format!("{path}.{key}[{i}]") } else { join(path, key) };
            let Some(text) = item.scalar_text() else {
                report.error(item.pos, &ip, format!("a filter pattern is a string, found {}", item.kind()));
                continue;
            };
            let pattern = Pattern::parse(&text);
            if let Pattern::Regex(re) = &pattern {
                if let Err(e) = regex::Regex::new(re) {
                    report.error(
                        item.pos,
                        &ip,
                        format!("invalid regular expression /{re}/: {}", first_line(&e.to_string())),
                    );
                    continue;
                }
            }
            target.push(pattern);
        }
    }
    f
}

fn matrix(v: &Yaml, path: &str, report: &mut Report) -> Option<Matrix> {
    map(v, path, report)?;
    check_keys(v, path, "matrix", &[MATRIX_KEYS], report);
    let mut m = Matrix { pos: v.pos, alias: v.get("alias").and_then(Yaml::scalar_text), ..Matrix::default() };
    match v.get("parameters") {
        None => report.error(v.pos, path, "matrix needs `parameters:`"),
        Some(p) => {
            for (_, name, vals) in p.entries() {
                match &vals.value {
                    YamlValue::Seq(items) => m.parameters.push((name.clone(), items.clone())),
                    _ => report.error(
                        vals.pos,
                        &join(&join(path, "parameters"), name),
                        format!("matrix values must be a list, found {}", vals.kind()),
                    ),
                }
            }
        }
    }
    if let Some(e) = v.get("exclude") {
        for item in e.items() {
            m.exclude.push(item.entries().iter().map(|(_, k, v)| (k.clone(), v.clone())).collect());
        }
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Config, Vec<String>) {
        let mut report = Report::new("t.yml");
        let doc = crate::yaml::parse(text).unwrap_or_else(|e| panic!("{}", e.message));
        let config = config(&doc, &mut report);
        (config, report.finish().0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn step_forms() {
        let (c, problems) = read(
            "version: 2.1\njobs:\n  b:\n    docker: [{image: x}]\n    parameters:\n\
             \x20     extra: {type: steps, default: []}\n    steps:\n      - checkout\n      - run: echo hi\n\
             \x20     - run: {command: make, background: true, when: always}\n\
             \x20     - restore_cache: {keys: [a, b]}\n      - << parameters.extra >>\n      - steps: [checkout]\n\
             \x20     - orb/cmd: {x: 1}\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let steps = &c.jobs["b"].steps;
        assert!(matches!(steps[0].kind, StepKind::Checkout { path: None, method: None }));
        let StepKind::Run(run) = &steps[1].kind else { panic!("{:?}", steps[1]) };
        assert_eq!(run.command.as_str(), Some("echo hi"));
        let StepKind::Run(run) = &steps[2].kind else { panic!("{:?}", steps[2]) };
        assert_eq!(run.background, Some(MaybeTemplate::Value(true)));
        assert_eq!(run.when, Some(MaybeTemplate::Value(RunWhen::Always)));
        assert!(matches!(&steps[3].kind, StepKind::RestoreCache { keys, .. } if keys.len() == 2));
        assert!(matches!(&steps[4].kind, StepKind::Parameter { template } if template == "<< parameters.extra >>"));
        assert!(matches!(&steps[5].kind, StepKind::Steps(inner) if inner.len() == 1));
        assert!(matches!(&steps[6].kind, StepKind::Invoke { name, args } if name == "orb/cmd" && args.len() == 1));
        assert_eq!(steps[1].pos, Pos { line: 9, column: 9 });
    }

    #[test]
    fn templates_in_typed_slots() {
        let (c, problems) = read(
            "version: 2.1\njobs:\n  b:\n    parameters: {n: {type: integer, default: 2}}\n    docker: [{image: x}]\n\
             \x20   parallelism: << parameters.n >>\n    steps: [checkout]\n  c:\n    machine: true\n\
             \x20   parallelism: 3\n    steps: [checkout]\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.jobs["b"].parallelism, Some(MaybeTemplate::Template("<< parameters.n >>".into())));
        assert_eq!(c.jobs["c"].parallelism, Some(MaybeTemplate::Value(3)));
    }

    #[test]
    fn workflow_jobs() {
        let (c, problems) = read(
            "version: 2.1\nworkflows:\n  version: 2\n  w:\n    jobs:\n      - a\n      - b:\n          name: b1\n\
             \x20         requires: [a, {c: [success, failed]}]\n          context: [x, y]\n\
             \x20         filters: {branches: {only: main}, tags: {ignore: [/^v.*/]}}\n          arg: 1\n\
             \x20     - c:\n          matrix: {alias: cs, parameters: {v: [1, 2]}, exclude: [{v: 2}]}\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!c.workflows.contains_key("version"));
        let jobs = &c.workflows["w"].jobs;
        assert_eq!(jobs[1].display_name(), "b1");
        assert_eq!(jobs[1].requires[1].statuses, [RequiredStatus::Success, RequiredStatus::Failed]);
        assert_eq!(jobs[1].context, ["x", "y"]);
        assert_eq!(jobs[1].filters.branches.only, [Pattern::Literal("main".into())]);
        assert_eq!(jobs[1].filters.tags.ignore, [Pattern::Regex("^v.*".into())]);
        assert_eq!(jobs[1].args.len(), 1);
        let m = jobs[2].matrix.as_ref().map(|m| (m.alias.clone(), m.parameters.len(), m.exclude.len()));
        assert_eq!(m, Some((Some("cs".into()), 1, 1)));
    }

    #[test]
    fn executors_by_name_or_with_arguments() {
        let (c, problems) = read(
            "version: 2.1\njobs:\n  a: {executor: e, steps: [checkout]}\n  b:\n    executor: {name: o/e, size: large}\n\
             \x20   steps: [checkout]\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.jobs["a"].executor.as_ref().map(|e| e.name.as_str()), Some("e"));
        let b = c.jobs["b"].executor.as_ref().map(|e| (e.name.as_str(), e.args.len()));
        assert_eq!(b, Some(("o/e", 1)));
    }

    #[test]
    fn logic_statements() {
        let mut report = Report::new("t.yml");
        let doc = crate::yaml::parse("and: [true, {not: {equal: [a, b]}}, {matches: {pattern: '^x', value: y}}]")
            .unwrap_or_else(|e| panic!("{}", e.message));
        let l = logic(&doc, "when", &mut report);
        assert!(report.is_empty());
        let Logic::And(items) = l else { panic!("{l:?}") };
        assert!(matches!(&items[1], Logic::Not(inner) if matches!(**inner, Logic::Equal(ref v) if v.len() == 2)));
        assert!(matches!(&items[2], Logic::Matches { .. }));
    }

    #[test]
    fn orb_references() {
        assert!(is_orb_reference("circleci/node@5.1.0"));
        assert!(is_orb_reference("circleci/node@volatile"));
        assert!(!is_orb_reference("circleci/node"));
        assert!(!is_orb_reference("node@5"));
        assert!(!is_orb_reference("circleci/@5"));
    }
}
