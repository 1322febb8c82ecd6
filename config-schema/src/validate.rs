//! Semantic checks across a configuration: every reference resolves (jobs, commands, executors, orbs,
//! required jobs), parameters are passed with the right types and none that is required is missing, workflow
//! graphs have no cycles or duplicates, crons and filters are valid, tag filters reach upstream jobs, and 2.0
//! configs use no 2.1 feature. All problems are reported, each at its place.

use std::collections::{BTreeMap, BTreeSet};

use crate::diagnostic::{item_path, join, suggest, Report};
use crate::model::*;
use crate::yaml::{Pos, Yaml, YamlValue};

/// Things a job or step may reference, with orb prefixes (`orb/name`): the configuration's, or inside an
/// inline orb that orb's own (an orb's jobs name its commands and executors without a prefix).
struct Scope<'a> {
    orbs: &'a BTreeMap<String, Orb>,
    commands: BTreeMap<String, &'a Command>,
    executors: BTreeMap<String, &'a Executor>,
    jobs: BTreeMap<String, &'a Job>,
}

impl<'a> Scope<'a> {
    fn new(
        orbs: &'a BTreeMap<String, Orb>,
        commands: &'a BTreeMap<String, Command>,
        executors: &'a BTreeMap<String, Executor>,
        jobs: &'a BTreeMap<String, Job>,
    ) -> Scope<'a> {
        let mut s = Scope {
            orbs,
            commands: commands.iter().map(|(k, v)| (k.clone(), v)).collect(),
            executors: executors.iter().map(|(k, v)| (k.clone(), v)).collect(),
            jobs: jobs.iter().map(|(k, v)| (k.clone(), v)).collect(),
        };
        for (name, orb) in orbs {
            if let Some(o) = orb.contents() {
                s.add_orb(name, o);
            }
        }
        s
    }

    fn add_orb(&mut self, prefix: &str, orb: &'a InlineOrb) {
        for (k, v) in &orb.commands {
            self.commands.insert(format!("{prefix}/{k}"), v);
        }
        for (k, v) in &orb.executors {
            self.executors.insert(format!("{prefix}/{k}"), v);
        }
        for (k, v) in &orb.jobs {
            self.jobs.insert(format!("{prefix}/{k}"), v);
        }
        for (name, inner) in &orb.orbs {
            if let Some(o) = inner.contents() {
                self.add_orb(&format!("{prefix}/{name}"), o);
            }
        }
    }

    /// Whether `name` is in an orb whose contents are unknown (a registry orb not found locally, which is
    /// reported already): references into it are not reported again.
    fn in_unknown_orb(&self, name: &str) -> bool {
        name.split_once('/').is_some_and(|(prefix, _)| self.orbs.get(prefix).is_some_and(|o| o.contents().is_none()))
    }

    /// Message and suggestion for a reference to a `kind` (command, job, executor) that does not exist.
    fn unknown<T>(&self, kind: &str, name: &str, known: &BTreeMap<String, T>) -> (String, Option<String>) {
        if let Some((prefix, _)) = name.split_once('/') {
            if !self.orbs.contains_key(prefix) {
                return (
                    format!("unknown orb `{prefix}` in `{name}`: declare it under `orbs:`"),
                    suggest(prefix, self.orbs.keys().map(String::as_str)),
                );
            }
            let own = format!("{prefix}/");
            let rest = name.strip_prefix(&own).unwrap_or(name);
            let in_orb = known.keys().filter_map(|k| k.strip_prefix(&own));
            return (format!("orb `{prefix}` has no {kind} `{rest}`"), suggest(rest, in_orb));
        }
        (format!("unknown {kind} `{name}`"), suggest(name, known.keys().map(String::as_str)))
    }
}

/// Checks a whole configuration (registry orbs already resolved by [`crate::orb::resolve`]).
pub fn validate(config: &Config, report: &mut Report) {
    let scope = Scope::new(&config.orbs, &config.commands, &config.executors, &config.jobs);
    if !config.is_v21() {
        for section in ["orbs", "commands", "executors", "parameters"] {
            if let Some(pos) = config.sections.get(section) {
                report.error(
                    *pos,
                    section,
                    format!("`{section}` needs `version: 2.1` (this config is version {})", config.version),
                );
            }
        }
        for (name, j) in &config.jobs {
            if let Some((_, p)) = j.parameters.iter().next() {
                report.error(
                    p.pos,
                    &format!("jobs.{name}.parameters"),
                    format!("job parameters need `version: 2.1` (this config is version {})", config.version),
                );
            }
        }
        for (name, w) in &config.workflows {
            for (i, j) in w.jobs.iter().enumerate() {
                if let Some(m) = &j.matrix {
                    report.error(
                        m.pos,
                        &format!("workflows.{name}.jobs[{i}].{}.matrix", j.job),
                        format!("`matrix` needs `version: 2.1` (this config is version {})", config.version),
                    );
                }
            }
        }
    }
    for (name, p) in &config.parameters {
        check_default(p, &format!("parameters.{name}"), report);
    }
    check_definitions(&scope, config, "", &config.executors, &config.commands, &config.jobs, report);
    check_inline_orbs(config, &config.orbs, "orbs", report);
    for (name, w) in &config.workflows {
        check_workflow(&scope, name, w, report);
        // `<< parameters.x >>` in a workflow (pre-steps, arguments) is the job's; only pipeline ones are checked.
        check_references(&w.body, None, &config.parameters, &join("workflows", name), report);
    }
}

/// The executors, commands and jobs of inline orbs, each orb in its own scope. Orbs read from the local orb
/// directory are not checked here: their positions are in another file.
fn check_inline_orbs(config: &Config, orbs: &BTreeMap<String, Orb>, path: &str, report: &mut Report) {
    for (name, orb) in orbs {
        if let Orb::Inline(o) = orb {
            let p = join(path, name);
            let scope = Scope::new(&o.orbs, &o.commands, &o.executors, &o.jobs);
            check_definitions(&scope, config, &p, &o.executors, &o.commands, &o.jobs, report);
            check_inline_orbs(config, &o.orbs, &join(&p, "orbs"), report);
        }
    }
}

/// Executors, commands and jobs defined at `prefix` (`` for the configuration, `orbs.NAME` in an orb).
fn check_definitions(
    scope: &Scope,
    config: &Config,
    prefix: &str,
    executors: &BTreeMap<String, Executor>,
    commands: &BTreeMap<String, Command>,
    jobs: &BTreeMap<String, Job>,
    report: &mut Report,
) {
    for (name, e) in executors {
        let path = join(&join(prefix, "executors"), name);
        check_references(&e.body, Some(&e.parameters), &config.parameters, &path, report);
        for (pname, p) in &e.parameters {
            check_default(p, &format!("{path}.parameters.{pname}"), report);
        }
        if e.env.is_empty() {
            report.error(
                e.pos,
                &path,
                format!("executor `{name}` defines no environment: add `docker:`, `machine:` or `macos:`"),
            );
        }
    }
    for (name, c) in commands {
        let path = join(&join(prefix, "commands"), name);
        check_references(&c.body, Some(&c.parameters), &config.parameters, &path, report);
        for (pname, p) in &c.parameters {
            check_default(p, &format!("{path}.parameters.{pname}"), report);
        }
        check_steps(scope, &c.steps, &c.parameters, &join(&path, "steps"), report);
        check_steps_params_outside_steps(&c.parameters, &c.steps, &path, report);
    }
    for (name, j) in jobs {
        let path = join(&join(prefix, "jobs"), name);
        check_references(&j.body, Some(&j.parameters), &config.parameters, &path, report);
        check_job(scope, name, &path, j, report);
    }
}

/// `<< parameters.x >>` and `<< pipeline.parameters.x >>` in the strings of `body` name declared parameters.
/// The `parameters:` declarations themselves are skipped (their defaults may mention other templates).
fn check_references(
    body: &Yaml,
    params: Option<&BTreeMap<String, Parameter>>,
    pipeline: &BTreeMap<String, Parameter>,
    path: &str,
    report: &mut Report,
) {
    match &body.value {
        YamlValue::Str(s) if s.contains("<<") => {
            for (scope, name) in template_refs(s) {
                let (declared, what): (&BTreeMap<String, Parameter>, &str) = match scope {
                    "parameters" => match params {
                        Some(p) => (p, "parameter"),
                        None => continue,
                    },
                    "pipeline.parameters" => (pipeline, "pipeline parameter"),
                    _ => continue,
                };
                if !declared.contains_key(name) {
                    let message = if declared.is_empty() && scope == "parameters" {
                        format!("unknown {what} `{name}` (no parameters are declared here)")
                    } else {
                        format!("unknown {what} `{name}`")
                    };
                    report.push(body.pos, path, message, suggest(name, declared.keys().map(String::as_str)));
                }
            }
        }
        YamlValue::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                check_references(item, params, pipeline, &item_path(path, i), report);
            }
        }
        YamlValue::Map(entries) => {
            for (_, key, value) in entries {
                if key != "parameters" {
                    check_references(value, params, pipeline, &join(path, key), report);
                }
            }
        }
        _ => {}
    }
}

/// `(scope, name)` of every `<< scope.name >>` in `s`, e.g. `("parameters", "x")`, `("pipeline.parameters", "y")`.
fn template_refs(s: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("<<") {
        let Some(len) = rest[start..].find(">>") else { break };
        let inner = rest[start + 2..start + len].trim();
        if let Some((scope, name)) = inner.rsplit_once('.') {
            if scope == "parameters" || scope == "pipeline.parameters" {
                out.push((scope, name.trim()));
            }
        }
        rest = &rest[start + len + 2..];
    }
    out
}

fn is_template(v: &Yaml) -> bool {
    v.as_str().is_some_and(|s| s.contains("<<"))
}

/// Checks a value against a parameter's type; `what` names it in messages.
pub(crate) fn check_value(p: &Parameter, v: &Yaml, path: &str, what: &str, report: &mut Report) {
    if is_template(v) {
        return;
    }
    let ok = match p.kind {
        ParameterKind::Boolean => matches!(v.value, YamlValue::Bool(_)),
        ParameterKind::Integer => matches!(v.value, YamlValue::Int(_)),
        ParameterKind::String | ParameterKind::EnvVarName => {
            matches!(v.value, YamlValue::Str(_) | YamlValue::Int(_) | YamlValue::Float(_) | YamlValue::Bool(_))
        }
        ParameterKind::Enum => {
            let text = v.scalar_text().unwrap_or_default();
            if !p.enum_values.contains(&text) {
                report.push(
                    v.pos,
                    path,
                    format!(
                        "{what} is `{text}`, which is not one of the allowed values ({})",
                        p.enum_values.join(", ")
                    ),
                    suggest(&text, p.enum_values.iter().map(String::as_str)),
                );
            }
            return;
        }
        ParameterKind::Steps => matches!(v.value, YamlValue::Seq(_)),
        ParameterKind::Executor => matches!(v.value, YamlValue::Str(_) | YamlValue::Map(_)),
    };
    if !ok {
        let yaml11 = match v.as_str() {
            Some("yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y") => Some("true"),
            Some("no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N") => Some("false"),
            _ => None,
        };
        match yaml11.filter(|_| p.kind == ParameterKind::Boolean) {
            Some(b) => report.push(
                v.pos,
                path,
                format!("{what} must be of type boolean, found the string `{}` (YAML 1.2)", v.as_str().unwrap_or("")),
                Some(b.to_string()),
            ),
            None => report.error(v.pos, path, format!("{what} must be of type {}, found {}", p.kind.name(), v.kind())),
        }
    }
    if p.kind == ParameterKind::EnvVarName {
        if let Some(s) = v.as_str() {
            if !s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                report.error(
                    v.pos,
                    path,
                    format!(
                        "{what} is `{s}`, which is not an environment variable name (letters, digits and `_`, \
                         not starting with a digit)"
                    ),
                );
            }
        }
    }
}

fn check_default(p: &Parameter, path: &str, report: &mut Report) {
    if let Some(d) = &p.default {
        check_value(p, d, &join(path, "default"), "the default", report);
    }
}

/// Arguments against declared parameters: unknown names (with a suggestion), type errors, missing required ones.
fn check_args(
    params: &BTreeMap<String, Parameter>,
    args: &[(String, Yaml)],
    pos: Pos,
    path: &str,
    what: &str,
    ignore: &[&str],
    report: &mut Report,
) {
    for (name, value) in args {
        if ignore.contains(&name.as_str()) {
            continue;
        }
        match params.get(name) {
            Some(p) => check_value(p, value, &join(path, name), &format!("parameter `{name}` of {what}"), report),
            None => report.push(
                value.pos,
                &join(path, name),
                format!("{what} has no parameter `{name}`"),
                suggest(name, params.keys().map(String::as_str)),
            ),
        }
    }
    for (name, p) in params {
        if p.default.is_none() && !args.iter().any(|(a, _)| a == name) {
            report.error(
                pos,
                path,
                format!("{what} requires parameter `{name}` ({}), which is not given", p.kind.name()),
            );
        }
    }
}

/// `<< parameters.NAME >>` names used in a string.
fn parameter_refs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("<<") {
        let Some(end) = rest[start..].find(">>") else { break };
        let inner = rest[start + 2..start + end].trim();
        if let Some(name) = inner.strip_prefix("parameters.") {
            out.push(name.trim().to_string());
        }
        rest = &rest[start + end + 2..];
    }
    out
}

fn check_steps(scope: &Scope, steps: &[Step], params: &BTreeMap<String, Parameter>, path: &str, report: &mut Report) {
    for (i, step) in steps.iter().enumerate() {
        let sp = item_path(path, i);
        match &step.kind {
            StepKind::Parameter { template } => {
                // Unknown names are reported by `check_references`; here only the type matters.
                for r in parameter_refs(template) {
                    if let Some(p) = params.get(&r).filter(|p| p.kind != ParameterKind::Steps) {
                        let message =
                            format!("parameter `{r}` is a {}, not steps: it cannot be used as a step", p.kind.name());
                        report.error(step.pos, &sp, message);
                    }
                }
            }
            StepKind::Steps(inner) => check_steps(scope, inner, params, &join(&sp, "steps"), report),
            StepKind::Invoke { name, args } => match scope.commands.get(name) {
                Some(c) => check_args(
                    &c.parameters,
                    args,
                    step.pos,
                    &join(&sp, name),
                    &format!("command `{name}`"),
                    &[],
                    report,
                ),
                None if scope.in_unknown_orb(name) => {}
                None if name.contains('/') => {
                    let (message, suggestion) = scope.unknown("command", name, &scope.commands);
                    report.push(step.pos, &sp, message, suggestion);
                }
                None => {
                    let candidates: Vec<&str> =
                        scope.commands.keys().map(String::as_str).chain(BUILTIN_STEPS).collect();
                    report.push(step.pos, &sp, format!("unknown step or command `{name}`"), suggest(name, candidates));
                }
            },
            StepKind::When { steps: inner, .. } | StepKind::Unless { steps: inner, .. } => {
                check_steps(scope, inner, params, &join(&sp, step.kind.name()), report)
            }
            _ => {}
        }
    }
}

/// A `steps` parameter may only appear as a step (or as a `steps:` list), never inside a value.
fn check_steps_params_outside_steps(
    params: &BTreeMap<String, Parameter>,
    steps: &[Step],
    path: &str,
    report: &mut Report,
) {
    let steps_params: BTreeSet<&str> =
        params.iter().filter(|(_, p)| p.kind == ParameterKind::Steps).map(|(k, _)| k.as_str()).collect();
    if steps_params.is_empty() {
        return;
    }
    fn walk(v: &Yaml, path: &str, names: &BTreeSet<&str>, report: &mut Report) {
        match &v.value {
            YamlValue::Str(s) => {
                for r in parameter_refs(s) {
                    if names.contains(r.as_str()) {
                        report.error(
                            v.pos,
                            path,
                            format!(
                                "parameter `{r}` has type steps: it can only be used as a step, not inside a value"
                            ),
                        );
                    }
                }
            }
            YamlValue::Seq(items) => items.iter().for_each(|i| walk(i, path, names, report)),
            YamlValue::Map(entries) => entries.iter().for_each(|(_, _, x)| walk(x, path, names, report)),
            _ => {}
        }
    }
    for (i, step) in steps.iter().enumerate() {
        let sp = format!("{path}.steps[{i}].{}", step.kind.name());
        match &step.kind {
            StepKind::Run(r) | StepKind::Deploy(r) => {
                walk(&r.command, &sp, &steps_params, report);
                if let Some(n) = &r.name {
                    walk(n, &sp, &steps_params, report);
                }
            }
            StepKind::Invoke { args, .. } => args.iter().for_each(|(_, v)| walk(v, &sp, &steps_params, report)),
            _ => {}
        }
    }
}

fn check_job(scope: &Scope, name: &str, path: &str, j: &Job, report: &mut Report) {
    let path = path.to_string();
    for (pname, p) in &j.parameters {
        check_default(p, &format!("{path}.parameters.{pname}"), report);
    }
    if let (Some(e), false) = (&j.executor, j.env.is_empty()) {
        let kind = if !j.env.docker.is_empty() {
            "docker"
        } else if j.env.machine.is_some() {
            "machine"
        } else {
            "macos"
        };
        report.error(
            e.pos,
            &join(&path, "executor"),
            format!("job `{name}` names executor `{}` and also `{kind}:`: keep one of them", e.name),
        );
    }
    if j.kind == JobType::Build {
        match &j.executor {
            Some(e) => match scope.executors.get(&e.name) {
                Some(ex) => {
                    let what = format!("executor `{}`", e.name);
                    check_args(&ex.parameters, &e.args, e.pos, &join(&path, "executor"), &what, &[], report)
                }
                None if scope.in_unknown_orb(&e.name) || e.name.contains("<<") => {}
                None => {
                    let (message, suggestion) = scope.unknown("executor", &e.name, &scope.executors);
                    report.push(e.pos, &join(&path, "executor"), message, suggestion);
                }
            },
            // An environment written but unreadable (`docker:` entries without `image`) is reported where it is.
            None if j.env.is_empty() && ["docker", "machine", "macos"].iter().all(|k| j.body.get(k).is_none()) => {
                report.error(
                    j.pos,
                    &path,
                    format!(
                        "job `{name}` has no executor: add `docker:` (with an `image`), `machine:`, `macos:` or \
                     `executor:`"
                    ),
                )
            }
            None => {}
        }
    }
    check_steps(scope, &j.steps, &j.parameters, &join(&path, "steps"), report);
    check_steps_params_outside_steps(&j.parameters, &j.steps, &path, report);
}

fn check_workflow(scope: &Scope, name: &str, w: &Workflow, report: &mut Report) {
    let path = join("workflows", name);
    let mut names: BTreeMap<String, Pos> = BTreeMap::new();
    // Every name a `requires` may use: display names, matrix aliases, and expanded matrix names by prefix.
    let mut matrix_prefixes: Vec<String> = Vec::new();
    for (i, j) in w.jobs.iter().enumerate() {
        let jp = format!("{path}.jobs[{i}]");
        let display = j.display_name().to_string();
        if j.matrix.is_none() {
            if let Some(first) = names.get(&display) {
                let message = format!(
                    "job name `{display}` is used twice in workflow `{name}` (first on line {}): give one a \
                     different `name:`",
                    first.line
                );
                report.error(j.pos, &jp, message);
            } else {
                names.insert(display.clone(), j.pos);
            }
        } else {
            matrix_prefixes.push(format!("{display}-"));
            let alias = j.matrix.as_ref().and_then(|m| m.alias.clone()).unwrap_or_else(|| j.job.clone());
            names.entry(alias).or_insert(j.pos);
        }
        match scope.jobs.get(&j.job) {
            Some(job) => {
                let what = format!("job `{}`", j.job);
                let mut args = j.args.clone();
                if let Some(m) = &j.matrix {
                    let mp = format!("{jp}.{}.matrix.parameters", j.job);
                    for (p, vals) in &m.parameters {
                        // Every value is checked here; the first one also stands in for the argument below.
                        match job.parameters.get(p) {
                            Some(decl) => {
                                for (k, v) in vals.iter().enumerate() {
                                    let vp = format!("{mp}.{p}[{k}]");
                                    check_value(decl, v, &vp, &format!("matrix value of parameter `{p}`"), report);
                                }
                            }
                            None => report.push(
                                m.pos,
                                &join(&mp, p),
                                format!("{what} has no parameter `{p}`"),
                                suggest(p, job.parameters.keys().map(String::as_str)),
                            ),
                        }
                        if let Some(v) = vals.first() {
                            args.push((p.clone(), v.clone()));
                        }
                    }
                    let matrix_params: Vec<&str> = m.parameters.iter().map(|(p, _)| p.as_str()).collect();
                    check_args(&job.parameters, &args, j.pos, &join(&jp, &j.job), &what, &matrix_params, report);
                } else {
                    check_args(&job.parameters, &args, j.pos, &join(&jp, &j.job), &what, &[], report);
                }
            }
            None if j.approval || scope.in_unknown_orb(&j.job) => {}
            None if j.job.contains('/') => {
                let (message, suggestion) = scope.unknown("job", &j.job, &scope.jobs);
                report.push(j.pos, &jp, message, suggestion);
            }
            None => report.push(
                j.pos,
                &jp,
                format!("workflow `{name}` runs job `{}`, which is not defined", j.job),
                suggest(&j.job, scope.jobs.keys().map(String::as_str)),
            ),
        }
        check_steps(scope, &j.pre_steps, &BTreeMap::new(), &join(&jp, "pre-steps"), report);
        check_steps(scope, &j.post_steps, &BTreeMap::new(), &join(&jp, "post-steps"), report);
    }
    let known = |req: &str| names.contains_key(req) || matrix_prefixes.iter().any(|p| req.starts_with(p.as_str()));
    for (i, j) in w.jobs.iter().enumerate() {
        for r in &j.requires {
            if !known(&r.name) {
                report.push(
                    r.pos,
                    &format!("{path}.jobs[{i}].{}.requires", j.job),
                    format!(
                        "job `{}` requires `{}`, which is not a job of workflow `{name}`",
                        j.display_name(),
                        r.name
                    ),
                    suggest(&r.name, names.keys().map(String::as_str)),
                );
            }
        }
    }
    // Cycles through `requires`.
    let edges: BTreeMap<&str, Vec<&str>> =
        w.jobs.iter().map(|j| (j.display_name(), j.requires.iter().map(|r| r.name.as_str()).collect())).collect();
    if let Some(cycle) = find_cycle(&edges) {
        let pos = w.jobs.iter().find(|j| j.display_name() == cycle[0]).map_or(w.pos, |j| j.pos);
        report.error(pos, &join(&path, "jobs"), format!("requires forms a cycle: {}", cycle.join(" -> ")));
    }
    // A job with a tag filter runs on tags only if every job upstream of it has a tag filter too.
    let by_name: BTreeMap<&str, &WorkflowJob> = w.jobs.iter().map(|j| (j.display_name(), j)).collect();
    for j in &w.jobs {
        if !j.filters.tags.set {
            continue;
        }
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&str> = j.requires.iter().map(|r| r.name.as_str()).collect();
        while let Some(up) = todo.pop() {
            if !seen.insert(up) {
                continue;
            }
            if let Some(u) = by_name.get(up) {
                if !u.filters.tags.set {
                    let message = format!(
                        "job `{}` has a tag filter, but upstream job `{up}` has none: add `filters: {{tags: …}}` to \
                         `{up}` or the downstream job never runs for tags",
                        j.display_name()
                    );
                    report.error(u.pos, &format!("{path}.jobs"), message);
                }
                todo.extend(u.requires.iter().map(|r| r.name.as_str()));
            }
        }
    }
    for (i, t) in w.triggers.iter().enumerate() {
        if let Err(msg) = cron_schedule(&t.cron) {
            report.error(t.cron_pos, &format!("{path}.triggers[{i}].schedule.cron"), msg);
        }
        if !t.filters.branches.set {
            report.error(
                t.pos,
                &format!("{path}.triggers[{i}].schedule"),
                "a scheduled trigger needs `filters: {branches: {only: …}}`",
            );
        }
    }
}

/// A CircleCI cron (5 fields: minute hour day-of-month month day-of-week, UTC, Sunday = 0 or 7) as a
/// [`cron::Schedule`]. The `cron` crate wants seconds first and counts days of the week from Sunday = 1, so the
/// expression is translated; ranges are checked here so messages use CircleCI's numbering.
pub fn cron_schedule(expr: &str) -> Result<cron::Schedule, String> {
    use std::str::FromStr;
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "invalid cron `{expr}`: use 5 fields (minute hour day-of-month month day-of-week), found {}",
            fields.len()
        ));
    }
    const LIMITS: [(&str, u32, u32); 5] =
        [("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7)];
    for (field, (what, min, max)) in fields.iter().zip(LIMITS) {
        for item in field.split(',') {
            let (range, step) = item.split_once('/').map_or((item, None), |(r, s)| (r, Some(s)));
            if step.is_some_and(|s| s.parse::<u32>().map_or(true, |n| n == 0)) {
                return Err(format!("invalid cron `{expr}`: the step in `{item}` must be a whole number above 0"));
            }
            for bound in range.split('-') {
                if let Ok(n) = bound.parse::<u32>() {
                    if n < min || n > max {
                        return Err(format!("invalid cron `{expr}`: {what} {n} is out of range {min}-{max}"));
                    }
                }
            }
        }
    }
    let dow = crate_days_of_week(fields[4]).map_err(|m| format!("invalid cron `{expr}`: {m}"))?;
    let translated = format!("0 {} {} {} {} {dow}", fields[0], fields[1], fields[2], fields[3]);
    cron::Schedule::from_str(&translated)
        .map_err(|e| format!("invalid cron `{expr}`: {}", crate::read::first_line(&e.to_string())))
}

/// A day-of-week field with Sunday = 0 (or 7) as the `cron` crate's Sunday = 1 … Saturday = 7: numeric items
/// become an explicit list (`5-7` is Friday, Saturday, Sunday, which no single range of the crate can say);
/// `*` and names pass through.
fn crate_days_of_week(field: &str) -> Result<String, String> {
    let mut out: Vec<String> = Vec::new();
    for item in field.split(',') {
        let (range, step) = item.split_once('/').map_or((item, None), |(r, s)| (r, Some(s)));
        if range == "*" || range.chars().any(|c| c.is_ascii_alphabetic()) {
            out.push(item.to_string());
            continue;
        }
        let number = |s: &str| s.parse::<u32>().map_err(|_| format!("`{item}` is not a day of the week"));
        let (start, end) = match range.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            // `3/2` means from 3 to the end of the week, every 2 days.
            None if step.is_some() => (number(range)?, 6),
            None => (number(range)?, number(range)?),
        };
        if start > end {
            return Err(format!("the range `{range}` runs backwards"));
        }
        let step = step.map_or(Ok(1), number)?.max(1);
        let mut day = start;
        while day <= end {
            let ordinal = (day % 7 + 1).to_string();
            if !out.contains(&ordinal) {
                out.push(ordinal);
            }
            day += step;
        }
    }
    Ok(out.join(","))
}

pub(crate) fn find_cycle<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<String>> {
    fn visit<'a>(
        n: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n, 1);
        stack.push(n);
        for m in edges.get(n).into_iter().flatten() {
            if edges.contains_key(m) {
                if let Some(c) = visit(m, edges, state, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crons() {
        assert!(cron_schedule("0 0 * * *").is_ok());
        assert!(cron_schedule("*/15 9-17 * * 1-5").is_ok());
        assert!(cron_schedule("0 3 * * 0").is_ok());
        assert!(cron_schedule("0 3 1,15 */2 MON-FRI").is_ok());
        assert_eq!(
            cron_schedule("0 0 * *").err().as_deref(),
            Some("invalid cron `0 0 * *`: use 5 fields (minute hour day-of-month month day-of-week), found 4")
        );
        assert_eq!(
            cron_schedule("61 0 * * *").err().as_deref(),
            Some("invalid cron `61 0 * * *`: minute 61 is out of range 0-59")
        );
        assert!(cron_schedule("0 0 * * 8").is_err());
        assert!(cron_schedule("0 0 * * 1/0").is_err());
    }

    #[test]
    fn days_of_week_count_from_sunday_zero() {
        assert_eq!(crate_days_of_week("0").as_deref(), Ok("1"));
        assert_eq!(crate_days_of_week("7").as_deref(), Ok("1"));
        assert_eq!(crate_days_of_week("1-5").as_deref(), Ok("2,3,4,5,6"));
        assert_eq!(crate_days_of_week("5-7").as_deref(), Ok("6,7,1"));
        assert_eq!(crate_days_of_week("0-6/2").as_deref(), Ok("1,3,5,7"));
        assert_eq!(crate_days_of_week("*").as_deref(), Ok("*"));
        assert_eq!(crate_days_of_week("SAT,SUN").as_deref(), Ok("SAT,SUN"));
        assert!(crate_days_of_week("5-2").is_err());
    }

    #[test]
    fn sunday_schedules_fire_on_sunday() {
        use chrono::Datelike;
        let next = cron_schedule("0 3 * * 0").ok().and_then(|s| s.upcoming(chrono::Utc).next());
        assert_eq!(next.map(|t| t.weekday()), Some(chrono::Weekday::Sun));
    }

    #[test]
    fn template_references() {
        assert_eq!(
            template_refs("<< parameters.a >>-<<pipeline.parameters.b>> << pipeline.git.branch >> << parameters.a"),
            [("parameters", "a"), ("pipeline.parameters", "b")]
        );
    }

    #[test]
    fn parameter_references() {
        assert_eq!(parameter_refs("echo << parameters.a >> and <<parameters.b>>; << pipeline.id >>"), ["a", "b"]);
    }
}
