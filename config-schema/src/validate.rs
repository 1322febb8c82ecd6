//! Semantic checks across a configuration: every reference resolves (jobs, commands, executors, orbs,
//! required jobs), parameters are passed with the right types and none that is required is missing, workflow
//! graphs have no cycles or duplicates, crons and filters are valid, tag filters reach upstream jobs, and 2.0
//! configs use no 2.1 feature. All problems are reported, each at its place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::diagnostic::{join, suggest, Report};
use crate::model::*;
use crate::yaml::{Pos, Yaml, YamlValue};

/// Where registry orbs may be found offline: `<dir>/<namespace>/<name>.yml` (the version is not checked).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub orb_dir: Option<PathBuf>,
}

/// Things a job or step may reference, with orb prefixes (`orb/name`).
struct Scope<'a> {
    config: &'a Config,
    commands: BTreeMap<String, &'a Command>,
    executors: BTreeMap<String, &'a Executor>,
    jobs: BTreeMap<String, &'a Job>,
}

impl<'a> Scope<'a> {
    fn new(config: &'a Config) -> Scope<'a> {
        let mut s = Scope {
            config,
            commands: config.commands.iter().map(|(k, v)| (k.clone(), v)).collect(),
            executors: config.executors.iter().map(|(k, v)| (k.clone(), v)).collect(),
            jobs: config.jobs.iter().map(|(k, v)| (k.clone(), v)).collect(),
        };
        for (name, orb) in &config.orbs {
            if let Orb::Inline(o) = orb {
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
            if let Orb::Inline(o) = inner {
                self.add_orb(&format!("{prefix}/{name}"), o);
            }
        }
    }

    /// Orb prefixes that are registry references (their contents are unknown offline).
    fn registry_orbs(&self) -> Vec<&'a str> {
        self.config.orbs.iter().filter(|(_, o)| matches!(o, Orb::Registry { .. })).map(|(k, _)| k.as_str()).collect()
    }

    fn in_registry_orb(&self, name: &str) -> bool {
        name.split_once('/').is_some_and(|(prefix, _)| self.registry_orbs().contains(&prefix))
    }
}

pub fn validate(config: &Config, options: &Options, report: &mut Report) {
    let scope = Scope::new(config);
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
    }
    for (name, orb) in &config.orbs {
        if let Orb::Registry { reference, pos } = orb {
            let found =
                options.orb_dir.as_ref().is_some_and(|dir| local_orb_path(dir, reference).is_some_and(|p| p.is_file()));
            if !found {
                report.error(
                    *pos,
                    &join("orbs", name),
                    format!(
                        "orb `{name}` ({reference}) is in CircleCI's orb registry, which cannot be reached offline: inline it under `orbs:` or put it in the local orb directory as {}",
                        local_orb_path(options.orb_dir.as_deref().unwrap_or(std::path::Path::new("<orb-dir>")), reference)
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| "<orb-dir>/<namespace>/<name>.yml".into())
                    ),
                );
            }
        }
    }
    for (name, p) in &config.parameters {
        check_default(p, &format!("parameters.{name}"), report);
    }
    for (name, e) in &config.executors {
        let path = join("executors", name);
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
    for (name, c) in &config.commands {
        let path = join("commands", name);
        for (pname, p) in &c.parameters {
            check_default(p, &format!("{path}.parameters.{pname}"), report);
        }
        check_steps(&scope, &c.steps, &c.parameters, &join(&path, "steps"), report);
        check_steps_params_outside_steps(&c.parameters, &c.steps, &path, report);
    }
    for (name, j) in &config.jobs {
        check_job(&scope, name, j, report);
    }
    for (name, w) in &config.workflows {
        check_workflow(&scope, name, w, report);
    }
}

/// `<dir>/<namespace>/<name>.yml` for `namespace/name@version`.
pub fn local_orb_path(dir: &std::path::Path, reference: &str) -> Option<PathBuf> {
    let name = reference.split('@').next()?;
    let (namespace, orb) = name.split_once('/')?;
    Some(dir.join(namespace).join(format!("{orb}.yml")))
}

fn is_template(v: &Yaml) -> bool {
    v.as_str().is_some_and(|s| s.contains("<<"))
}

/// Checks a value against a parameter's type; `what` names it in messages.
fn check_value(p: &Parameter, v: &Yaml, path: &str, what: &str, report: &mut Report) {
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
                    format!("{what} `{text}` is not one of the allowed values ({})", p.enum_values.join(", ")),
                    suggest(&text, p.enum_values.iter().map(String::as_str)),
                );
            }
            return;
        }
        ParameterKind::Steps => matches!(v.value, YamlValue::Seq(_)),
        ParameterKind::Executor => matches!(v.value, YamlValue::Str(_) | YamlValue::Map(_)),
    };
    if !ok {
        report.error(v.pos, path, format!("{what} must be of type {}, found {}", p.kind.name(), v.kind()));
    }
    if p.kind == ParameterKind::EnvVarName {
        if let Some(s) = v.as_str() {
            if !s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                report.error(v.pos, path, format!("{what}: `{s}` is not a valid environment variable name"));
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
        let sp = format!("{path}[{i}]");
        match &step.kind {
            StepKind::Invoke { name, args } => {
                if name.contains("<<") {
                    for r in parameter_refs(name) {
                        match params.get(&r) {
                            Some(p) if p.kind == ParameterKind::Steps => {}
                            Some(p) => report.error(
                                step.pos,
                                &sp,
                                format!(
                                    "parameter `{r}` is a {}, not steps: it cannot be used as a step",
                                    p.kind.name()
                                ),
                            ),
                            None => report.push(
                                step.pos,
                                &sp,
                                format!("unknown parameter `{r}`"),
                                suggest(&r, params.keys().map(String::as_str)),
                            ),
                        }
                    }
                    continue;
                }
                match scope.commands.get(name) {
                    Some(c) => check_args(
                        &c.parameters,
                        args,
                        step.pos,
                        &join(&sp, name),
                        &format!("command `{name}`"),
                        &[],
                        report,
                    ),
                    None if scope.in_registry_orb(name) => {}
                    None => {
                        let candidates: Vec<&str> =
                            scope.commands.keys().map(String::as_str).chain(BUILTIN_STEPS).collect();
                        report.push(
                            step.pos,
                            &sp,
                            format!("unknown step or command `{name}`"),
                            suggest(name, candidates),
                        );
                    }
                }
            }
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

fn check_job(scope: &Scope, name: &str, j: &Job, report: &mut Report) {
    let path = join("jobs", name);
    for (pname, p) in &j.parameters {
        check_default(p, &format!("{path}.parameters.{pname}"), report);
    }
    if j.kind == JobType::Build {
        match &j.executor {
            Some(e) => match scope.executors.get(&e.name) {
                Some(ex) => check_args(&ex.parameters, &e.args, e.pos, &join(&path, "executor"), &format!("executor `{}`", e.name), &[], report),
                None if scope.in_registry_orb(&e.name) || e.name.contains("<<") => {}
                None => report.push(
                    e.pos,
                    &join(&path, "executor"),
                    format!("unknown executor `{}`", e.name),
                    suggest(&e.name, scope.executors.keys().map(String::as_str)),
                ),
            },
            None if j.env.is_empty() => report.error(
                j.pos,
                &path,
                format!("job `{name}` has no executor: add `docker:` (with an `image`), `machine:`, `macos:` or `executor:`"),
            ),
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
                report.error(j.pos, &jp, format!("job name `{display}` is used twice in workflow `{name}` (first on line {}): give one a different `name:`", first.line));
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
                let mut args = j.args.clone();
                if let Some(m) = &j.matrix {
                    for (p, vals) in &m.parameters {
                        if let Some(v) = vals.first() {
                            args.push((p.clone(), v.clone()));
                        }
                    }
                }
                check_args(&job.parameters, &args, j.pos, &join(&jp, &j.job), &format!("job `{}`", j.job), &[], report);
            }
            None if j.approval || scope.in_registry_orb(&j.job) => {}
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
                    report.error(u.pos, &format!("{path}.jobs"), format!("job `{}` has a tag filter, but upstream job `{up}` has none: add `filters: {{tags: …}}` to `{up}` or the downstream job never runs for tags", j.display_name()));
                }
                todo.extend(u.requires.iter().map(|r| r.name.as_str()));
            }
        }
    }
    for (i, t) in w.triggers.iter().enumerate() {
        if let Err(msg) = check_cron(&t.cron) {
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

/// A 5-field cron (minute hour day-of-month month day-of-week), as CircleCI takes it.
pub fn check_cron(expr: &str) -> Result<(), String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "invalid cron `{expr}`: use 5 fields (minute hour day-of-month month day-of-week), found {}",
            fields.len()
        ));
    }
    use std::str::FromStr;
    cron::Schedule::from_str(&format!("0 {expr}"))
        .map(|_| ())
        .map_err(|e| format!("invalid cron `{expr}`: {}", crate::read::first_line(&e.to_string())))
}

fn find_cycle<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<String>> {
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
        assert!(check_cron("0 0 * * *").is_ok());
        assert!(check_cron("*/15 9-17 * * 1-5").is_ok());
        assert!(check_cron("0 0 * *").is_err());
        assert!(check_cron("61 0 * * *").is_err());
    }

    #[test]
    fn parameter_references() {
        assert_eq!(parameter_refs("echo << parameters.a >> and <<parameters.b>>; << pipeline.id >>"), ["a", "b"]);
    }

    #[test]
    fn local_orb_paths() {
        assert_eq!(
            local_orb_path(std::path::Path::new("/orbs"), "circleci/node@5.1"),
            Some(PathBuf::from("/orbs/circleci/node.yml"))
        );
    }
}
