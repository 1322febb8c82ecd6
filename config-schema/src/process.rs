//! Processing, as CircleCI's `config process` does on its servers: a checked [`Config`] and the pipeline's
//! values become a [`ProcessedConfig`] — every workflow job expanded into a [`JobSpec`] with nothing left to
//! resolve. The stages, in CircleCI's order:
//!
//! 1. pipeline parameters: declared defaults, overridden by the given values (type-checked; unknown or missing
//!    required ones are errors); pipeline values (`pipeline.git.branch` …) as given, others empty;
//! 2. workflows: `<< pipeline.* >>` substituted, `when`/`unless` evaluated (workflows that do not run are left
//!    out), matrices expanded (`build-macos-0.1`: values ordered by parameter name, `exclude` removed, `requires`
//!    on the alias fanned out to every instance);
//! 3. jobs: arguments bound to parameters (defaults, types), substituted into the job's YAML, which is read
//!    again; the executor (by name or with arguments, orb executors included) expanded the same way and the
//!    job's own settings laid over it; pre-steps and post-steps added;
//! 4. steps: commands expanded recursively with their arguments (a command that invokes itself is an error
//!    naming the loop), `steps` parameters spliced, `when`/`unless` steps evaluated.
//!
//! Names resolve in the scope they are written in: an orb's job uses its orb's commands and executors by their
//! short names. Problems are collected, located like the validator's (FILE:LINE:COL: PATH: message); nothing is
//! returned half-processed.

use std::collections::{BTreeMap, HashMap};

use crate::diagnostic::{item_path, join, suggest, Diagnostics, Report};
use crate::model::*;
use crate::read;
use crate::spec::*;
use crate::template::{truthy, Bindings};
use crate::yaml::{Pos, Yaml, YamlValue};

/// Commands inside commands are followed this deep (deeper is certainly a loop through `steps` parameters).
const MAX_DEPTH: usize = 32;
/// Steps one job may expand to: commands that invoke others several times grow exponentially.
const MAX_STEPS: usize = 10_000;
/// Command invocations one configuration may expand (steps dropped by a false `when` count too), so a
/// hostile configuration cannot make processing take exponential time without producing steps.
const MAX_INVOCATIONS: usize = 100_000;
/// Jobs one matrix may expand to.
const MAX_MATRIX_JOBS: usize = 1_000;

/// The pipeline a configuration is processed for. As JSON (a fixture's `pipeline.json`):
/// `{"parameters": {"deploy": true}, "values": {"git.branch": "main"}}`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pipeline {
    /// Values of pipeline parameters (`<< pipeline.parameters.x >>`), e.g. from `--pipeline-parameters`.
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// Pipeline values by name without the `pipeline.` prefix: `git.branch`, `git.tag`, `git.revision`,
    /// `number` … (see [`crate::template::PIPELINE_VALUES`]); those not given are empty strings.
    pub values: BTreeMap<String, String>,
}

/// Processes a checked configuration (see [`crate::check`]) read from `file`.
pub fn process(config: &Config, file: &str, pipeline: &Pipeline) -> Result<ProcessedConfig, Diagnostics> {
    let mut report = Report::new(file);
    let pipeline_parameters = pipeline_parameters(config, pipeline, &mut report);
    let mut p = Processor {
        report,
        bindings: Bindings {
            parameters: None,
            matrix: None,
            pipeline_parameters: &pipeline_parameters,
            pipeline_values: &pipeline.values,
        },
        root: Scope::root(config),
        invocations: 0,
        expanded: HashMap::new(),
    };
    let out = p.config(config);
    if p.report.is_empty() {
        Ok(out)
    } else {
        Err(p.report.finish())
    }
}

/// Declared pipeline parameters with their values: given ones checked against the declaration, the rest from
/// defaults.
fn pipeline_parameters(config: &Config, pipeline: &Pipeline, report: &mut Report) -> BTreeMap<String, Yaml> {
    let mut out = BTreeMap::new();
    for (name, value) in &pipeline.parameters {
        let path = format!("parameters.{name}");
        let value = from_json(value);
        match config.parameters.get(name) {
            Some(decl) => {
                let what = format!("pipeline parameter `{name}`");
                // The value comes from outside the file: point at the declaration, which says the type.
                let value = Yaml { pos: decl.pos, ..value };
                crate::validate::check_value(decl, &value, &path, &what, report);
                out.insert(name.clone(), normalise(decl, value));
            }
            None => report.push(
                Pos::default(),
                &path,
                format!(
                    "pipeline parameter `{name}` is given but not declared: declare it under `parameters:` or leave \
                     it out"
                ),
                suggest(name, config.parameters.keys().map(String::as_str)),
            ),
        }
    }
    for (name, decl) in &config.parameters {
        if out.contains_key(name) {
            continue;
        }
        match &decl.default {
            Some(d) => {
                out.insert(name.clone(), normalise(decl, d.clone()));
            }
            None => {
                report.error(
                    decl.pos,
                    &format!("parameters.{name}"),
                    format!(
                        "pipeline parameter `{name}` ({}) has no default and no value was given: pass it (runner: \
                         `--pipeline-parameters '{{\"{name}\": …}}'`) or give it a default",
                        decl.kind.name()
                    ),
                );
                // Reported once, here: its uses are not reported again as unknown.
                out.insert(name.clone(), Yaml::new(YamlValue::Str(String::new())));
            }
        }
    }
    out
}

fn from_json(v: &serde_json::Value) -> Yaml {
    Yaml::new(match v {
        serde_json::Value::Null => YamlValue::Null,
        serde_json::Value::Bool(b) => YamlValue::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => YamlValue::Int(i),
            None => YamlValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => YamlValue::Str(s.clone()),
        serde_json::Value::Array(items) => YamlValue::Seq(items.iter().map(from_json).collect()),
        serde_json::Value::Object(m) => {
            YamlValue::Map(m.iter().map(|(k, v)| (Pos::default(), k.clone(), from_json(v))).collect())
        }
    })
}

/// A value as its parameter's type substitutes it: string-like types as text (`version: 3` in a string
/// parameter is `"3"`), the others as they are.
fn normalise(decl: &Parameter, v: Yaml) -> Yaml {
    match decl.kind {
        ParameterKind::String | ParameterKind::EnvVarName | ParameterKind::Enum => match v.scalar_text() {
            Some(t) => Yaml { value: YamlValue::Str(t), ..v },
            None => v,
        },
        _ => v,
    }
}

/// What names resolve against: the configuration's own definitions, or inside an orb that orb's.
#[derive(Clone, Copy)]
struct Scope<'a> {
    /// The file definitions of this scope are in, when it is not the configuration (a local orb's).
    file: Option<&'a str>,
    orbs: &'a BTreeMap<String, Orb>,
    commands: &'a BTreeMap<String, Command>,
    executors: &'a BTreeMap<String, Executor>,
    jobs: &'a BTreeMap<String, Job>,
}

impl<'a> Scope<'a> {
    fn root(c: &'a Config) -> Scope<'a> {
        Scope { file: None, orbs: &c.orbs, commands: &c.commands, executors: &c.executors, jobs: &c.jobs }
    }

    /// An orb's scope; an inline orb inside a local orb file is in that file too.
    fn orb(self, o: &'a InlineOrb) -> Scope<'a> {
        let file = o.file.as_deref().or(self.file);
        Scope { file, orbs: &o.orbs, commands: &o.commands, executors: &o.executors, jobs: &o.jobs }
    }

    /// The scope `name` lives in and its last part: `node/test` → (orb `node`, `test`).
    fn enter<'n>(self, name: &'n str) -> Option<(Scope<'a>, &'n str)> {
        match name.split_once('/') {
            None => Some((self, name)),
            Some((orb, rest)) => self.orb(self.orbs.get(orb)?.contents()?).enter(rest),
        }
    }

    fn command(self, name: &str) -> Option<(Scope<'a>, &'a Command)> {
        let (s, last) = self.enter(name)?;
        Some((s, s.commands.get(last)?))
    }

    fn executor(self, name: &str) -> Option<(Scope<'a>, &'a Executor)> {
        let (s, last) = self.enter(name)?;
        Some((s, s.executors.get(last)?))
    }

    fn job(self, name: &str) -> Option<(Scope<'a>, &'a Job)> {
        let (s, last) = self.enter(name)?;
        Some((s, s.jobs.get(last)?))
    }
}

struct Processor<'a> {
    report: Report,
    /// Pipeline parameters and values; `parameters` and `matrix` are bound per substitution.
    bindings: Bindings<'a>,
    root: Scope<'a>,
    /// Command invocations expanded so far (see [`MAX_INVOCATIONS`]).
    invocations: usize,
    /// Commands already expanded without a problem, by command, nesting depth and bound arguments: the steps
    /// they gave and the invocations inside them. Jobs invoking the same command with the same arguments (a
    /// shared `setup` command, nested commands with fixed arguments) expand it once.
    expanded: HashMap<(usize, usize, String), (Vec<SpecStep>, usize)>,
}

/// One expanded entry of a workflow's `jobs:` (a matrix entry gives several).
struct Instance {
    pos: Pos,
    name: String,
    /// The matrix alias this instance answers to in `requires`.
    alias: Option<String>,
    kind: JobKind,
    requires: Vec<Requirement>,
    context: Vec<String>,
    filters: FiltersSpec,
    spec: Option<JobSpec>,
}

impl<'a> Processor<'a> {
    fn config(&mut self, config: &'a Config) -> ProcessedConfig {
        let mut out = ProcessedConfig { version: 2, setup: config.setup, ..ProcessedConfig::default() };
        // Where each job name was first defined, to catch one name meaning two different jobs.
        let mut defined: BTreeMap<String, (String, Pos)> = BTreeMap::new();
        let implicit;
        let workflows: Vec<(&str, &Workflow)> = if config.workflows.is_empty() && config.jobs.contains_key("build") {
            // A 2.0 configuration without workflows runs its `build` job.
            implicit = Workflow {
                jobs: vec![WorkflowJob { job: "build".into(), ..WorkflowJob::default() }],
                body: Yaml::new(YamlValue::Map(vec![(
                    Pos::default(),
                    "jobs".into(),
                    Yaml::new(YamlValue::Seq(vec![Yaml::new(YamlValue::Str("build".into()))])),
                )])),
                ..Workflow::default()
            };
            vec![("workflow", &implicit)]
        } else {
            config.workflows.iter().map(|(k, v)| (k.as_str(), v)).collect()
        };
        for (name, w) in workflows {
            let path = join("workflows", name);
            if !self.runs(w, &path) {
                continue;
            }
            let instances = self.workflow_instances(&path, w);
            let spec = self.workflow_spec(name, &path, w, instances, &mut out.jobs, &mut defined);
            out.workflows.insert(name.to_string(), spec);
        }
        out
    }

    /// Whether the workflow's `when` holds and its `unless` does not.
    fn runs(&mut self, w: &Workflow, path: &str) -> bool {
        let mut yes = true;
        for (key, wanted) in [("when", true), ("unless", false)] {
            if let Some(v) = w.body.get(key) {
                let p = join(path, key);
                let v = self.bindings.substitute(v, &p, &mut self.report);
                let condition = read::logic(&v, &p, &mut self.report);
                yes &= self.eval(&condition, &p) == wanted;
            }
        }
        yes
    }

    fn eval(&mut self, l: &Logic, path: &str) -> bool {
        match l {
            Logic::Value(v) => truthy(v),
            Logic::And(items) => !items.is_empty() && items.iter().all(|x| self.eval(x, path)),
            Logic::Or(items) => items.iter().any(|x| self.eval(x, path)),
            Logic::Not(x) => !self.eval(x, path),
            Logic::Equal(items) => {
                let values: Vec<serde_json::Value> = items.iter().map(Yaml::to_json).collect();
                !values.is_empty() && values.windows(2).all(|w| w[0] == w[1])
            }
            Logic::Matches { pattern, value } => {
                let text = pattern.scalar_text().unwrap_or_default();
                match regex::Regex::new(&text) {
                    Ok(re) => re.is_match(&value.scalar_text().unwrap_or_default()),
                    Err(e) => {
                        let message = format!("invalid regular expression: {}", read::first_line(&e.to_string()));
                        self.report.error(pattern.pos, &join(path, "matches.pattern"), message);
                        false
                    }
                }
            }
        }
    }

    /// Every entry of the workflow's `jobs:` with pipeline values substituted and matrices expanded.
    fn workflow_instances(&mut self, path: &str, w: &Workflow) -> Vec<Instance> {
        let mut out = Vec::new();
        let Some(jobs) = w.body.get("jobs") else { return out };
        for (i, raw) in jobs.items().iter().enumerate() {
            let jp = format!("{path}.jobs[{i}]");
            let entry = self.bindings.substitute(raw, &jp, &mut self.report);
            let Some(j) = read::workflow_job(&entry, &jp, &mut self.report) else { continue };
            let Some(m) = &j.matrix else {
                let name = j.display_name().to_string();
                out.push(self.instance(&entry, &jp, j, name, BTreeMap::new(), None));
                continue;
            };
            let mut params = m.parameters.clone();
            params.sort_by(|a, b| a.0.cmp(&b.0));
            let count = params.iter().try_fold(1usize, |n, (_, values)| n.checked_mul(values.len()));
            if count.is_none_or(|n| n > MAX_MATRIX_JOBS) {
                let sizes: Vec<String> = params.iter().map(|(_, v)| v.len().to_string()).collect();
                let message = format!(
                    "the matrix expands to {} jobs, more than {MAX_MATRIX_JOBS}: split it or use fewer values",
                    sizes.join(" × ")
                );
                self.report.error(m.pos, &join(&jp, "matrix"), message);
                continue;
            }
            let alias = m.alias.clone().unwrap_or_else(|| j.job.clone());
            let named = entry.entries().first().and_then(|(_, _, b)| b.get("name")).is_some();
            for combo in combinations(&params) {
                let excluded = m.exclude.iter().any(|ex| {
                    !ex.is_empty()
                        && ex
                            .iter()
                            .all(|(k, v)| combo.iter().any(|(ck, cv)| ck == k && cv.scalar_text() == v.scalar_text()))
                });
                if excluded {
                    continue;
                }
                let values: BTreeMap<String, Yaml> = combo.iter().cloned().collect();
                // `<< matrix.x >>` in the entry (a `name:`, `requires:`), then the values as arguments.
                let matrix_bindings = Bindings { matrix: Some(&values), ..self.bindings };
                let entry = matrix_bindings.substitute(&entry, &jp, &mut self.report);
                let Some(mut j) = read::workflow_job(&entry, &jp, &mut self.report) else { continue };
                let name = if named {
                    j.display_name().to_string()
                } else {
                    let texts: Vec<String> = combo.iter().map(|(_, v)| v.scalar_text().unwrap_or_default()).collect();
                    format!("{}-{}", j.display_name(), texts.join("-"))
                };
                j.args.retain(|(k, _)| !values.contains_key(k));
                j.args.extend(combo);
                out.push(self.instance(&entry, &jp, j, name, values, Some(alias.clone())));
            }
        }
        out
    }

    /// One workflow job with its arguments: the job expanded into a spec (unless it is an approval). A job that
    /// cannot be expanded (reported) stays in the workflow without a spec, so jobs requiring it are not reported
    /// again.
    fn instance(
        &mut self,
        entry: &Yaml,
        path: &str,
        j: WorkflowJob,
        name: String,
        matrix: BTreeMap<String, Yaml>,
        alias: Option<String>,
    ) -> Instance {
        let filters = filters_spec(&j.filters);
        let mut inst = Instance {
            pos: j.pos,
            name: name.clone(),
            alias,
            kind: JobKind::Build,
            requires: j.requires.clone(),
            context: j.context.clone(),
            filters,
            spec: None,
        };
        if j.approval {
            inst.kind = JobKind::Approval;
            return inst;
        }
        let jp = join(path, &j.job);
        let Some((scope, job)) = self.root.job(&j.job) else {
            let message = format!("unknown job `{}`", j.job);
            self.report.push(j.pos, path, message, suggest(&j.job, self.root.jobs.keys().map(String::as_str)));
            return inst;
        };
        let body = entry.entries().first().map(|(_, _, b)| b);
        let pre = body.and_then(|b| b.get("pre-steps"));
        let post = body.and_then(|b| b.get("post-steps"));
        let call = Call { pos: j.pos, path: &jp, args: &j.args, matrix: &matrix };
        match self.job(scope, &j.job, job, &name, call, pre, post) {
            Expanded::Spec(spec) => inst.spec = Some(*spec),
            Expanded::Kind(kind) => inst.kind = kind,
            Expanded::Failed => {}
        }
        inst
    }

    /// Requires fanned out over matrix aliases and checked, names checked unique, the graph checked for
    /// cycles; job specs moved into `jobs`.
    fn workflow_spec(
        &mut self,
        name: &str,
        path: &str,
        w: &Workflow,
        instances: Vec<Instance>,
        jobs: &mut BTreeMap<String, JobSpec>,
        defined: &mut BTreeMap<String, (String, Pos)>,
    ) -> WorkflowSpec {
        let mut aliases: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut seen: BTreeMap<&str, Pos> = BTreeMap::new();
        for inst in &instances {
            if let Some(a) = &inst.alias {
                aliases.entry(a).or_default().push(&inst.name);
            }
            if let Some(first) = seen.insert(&inst.name, inst.pos) {
                let message = format!(
                    "job name `{}` is used twice in workflow `{name}` (first on line {}): give one a different \
                     `name:`",
                    inst.name, first.line
                );
                self.report.error(inst.pos, &join(path, "jobs"), message);
            }
        }
        let mut out = WorkflowSpec {
            triggers: w
                .triggers
                .iter()
                .map(|t| ScheduleSpec { cron: t.cron.clone(), filters: filters_spec(&t.filters) })
                .collect(),
            jobs: Vec::new(),
        };
        let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for inst in &instances {
            let mut requires: Vec<RequirementSpec> = Vec::new();
            for r in &inst.requires {
                let statuses: Vec<JobStatus> = r.statuses.iter().map(|s| status(*s)).collect();
                let targets: Vec<&str> = match aliases.get(r.name.as_str()) {
                    // A matrix's own alias is not a requirement on itself (its name may equal the job's).
                    Some(all) if inst.alias.as_deref() != Some(r.name.as_str()) => all.clone(),
                    _ if seen.contains_key(r.name.as_str()) => vec![r.name.as_str()],
                    _ => {
                        let candidates = seen.keys().copied().chain(aliases.keys().copied());
                        self.report.push(
                            r.pos,
                            &join(path, "jobs"),
                            format!(
                                "job `{}` requires `{}`, which is not a job of workflow `{name}`",
                                inst.name, r.name
                            ),
                            suggest(&r.name, candidates),
                        );
                        continue;
                    }
                };
                for t in targets {
                    edges.entry(&inst.name).or_default().push(t);
                    match requires.iter_mut().find(|x| x.job == t) {
                        Some(x) => x.statuses = statuses.clone(),
                        None => requires.push(RequirementSpec { job: t.to_string(), statuses: statuses.clone() }),
                    }
                }
            }
            edges.entry(&inst.name).or_default();
            out.jobs.push(WorkflowJobSpec {
                name: inst.name.clone(),
                kind: inst.kind,
                requires,
                context: inst.context.clone(),
                filters: inst.filters.clone(),
            });
        }
        if let Some(cycle) = crate::validate::find_cycle(&edges) {
            let pos = instances.iter().find(|i| i.name == cycle[0]).map_or(w.pos, |i| i.pos);
            self.report.error(pos, &join(path, "jobs"), format!("requires forms a cycle: {}", cycle.join(" -> ")));
        }
        for inst in instances {
            let Some(spec) = inst.spec else { continue };
            match (jobs.get(&inst.name), defined.get(&inst.name)) {
                (Some(existing), Some((other, _))) if *existing != spec => {
                    let message = format!(
                        "job name `{}` means a different job in workflow `{other}`: give one of them a different \
                         `name:`",
                        inst.name
                    );
                    self.report.error(inst.pos, path, message);
                }
                (Some(_), _) => {}
                (None, _) => {
                    defined.insert(inst.name.clone(), (name.to_string(), inst.pos));
                    jobs.insert(inst.name, spec);
                }
            }
        }
        out
    }

    /// Binds arguments to declared parameters: defaults filled in, values type-checked and normalised, unknown
    /// and missing ones reported. Arguments are substituted already (they are written in the caller's scope).
    fn bind(&mut self, params: &BTreeMap<String, Parameter>, call: &Call, what: &str) -> BTreeMap<String, Yaml> {
        let mut out = BTreeMap::new();
        for (name, value) in call.args {
            let p = join(call.path, name);
            match params.get(name) {
                Some(decl) => {
                    if value.as_str().is_some_and(|s| crate::template::whole_template(s).is_some()) {
                        // Left as written: a template whose scope is not bound here (reported by the validator).
                        out.insert(name.clone(), value.clone());
                        continue;
                    }
                    let what = format!("parameter `{name}` of {what}");
                    crate::validate::check_value(decl, value, &p, &what, &mut self.report);
                    out.insert(name.clone(), normalise(decl, value.clone()));
                }
                None if call.matrix.contains_key(name) => {
                    let message = format!("{what} has no parameter `{name}` (given by the matrix)");
                    self.report.push(value.pos, &p, message, suggest(name, params.keys().map(String::as_str)));
                }
                None => {
                    let message = format!("{what} has no parameter `{name}`");
                    self.report.push(value.pos, &p, message, suggest(name, params.keys().map(String::as_str)));
                }
            }
        }
        for (name, decl) in params {
            if out.contains_key(name) || call.args.iter().any(|(a, _)| a == name) {
                continue;
            }
            match &decl.default {
                Some(d) => {
                    // A default may use pipeline values; its own parameters are not in scope.
                    let d = self.bindings.substitute(d, &join(call.path, name), &mut self.report);
                    out.insert(name.clone(), normalise(decl, d));
                }
                None => self.report.error(
                    call.pos,
                    call.path,
                    format!("{what} requires parameter `{name}` ({}), which is not given", decl.kind.name()),
                ),
            }
        }
        out
    }

    /// Runs `f` with problems reported in `file` (a local orb's) instead of the configuration: positions in a
    /// definition's YAML are that file's.
    fn in_file<T>(&mut self, file: Option<&str>, f: impl FnOnce(&mut Self) -> T) -> T {
        let Some(file) = file else { return f(self) };
        let outer = std::mem::replace(&mut self.report.file, file.to_string());
        let out = f(self);
        self.report.file = outer;
        out
    }

    /// `body` (a job's, command's or executor's YAML) with `parameters` bound, its declarations left out.
    fn substitute_body(&mut self, body: &Yaml, parameters: &BTreeMap<String, Yaml>, path: &str) -> Yaml {
        let bindings = Bindings { parameters: Some(parameters), ..self.bindings };
        let entries = body
            .entries()
            .iter()
            .filter(|(_, k, _)| k != "parameters")
            .map(|(pos, k, v)| (*pos, k.clone(), bindings.substitute(v, &join(path, k), &mut self.report)))
            .collect();
        Yaml::at(body.pos, YamlValue::Map(entries))
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the expansion state is passed explicitly rather than hidden in a struct"
    )]
    fn job(
        &mut self,
        scope: Scope<'a>,
        job_name: &str,
        job: &Job,
        name: &str,
        call: Call,
        pre: Option<&Yaml>,
        post: Option<&Yaml>,
    ) -> Expanded {
        let errors_before = self.report.items.len();
        let what = format!("job `{job_name}`");
        let params = self.bind(&job.parameters, &call, &what);
        let path = match job_name.split_once('/') {
            None => join("jobs", job_name),
            Some(_) => format!("jobs.{job_name}"),
        };
        let j = self.in_file(scope.file, |p| {
            let body = p.substitute_body(&job.body, &params, &path);
            read::job(&body, &path, job_name, &mut p.report)
        });
        match j.kind {
            JobType::Build => {}
            JobType::Approval => return Expanded::Kind(JobKind::Approval),
            JobType::NoOp => return Expanded::Kind(JobKind::NoOp),
        }
        let mut env = Environment::default();
        if let Some(e) = &j.executor {
            let ep = join(&path, "executor");
            match scope.executor(&e.name) {
                Some((ex_scope, ex)) => {
                    let what = format!("executor `{}`", e.name);
                    let call = Call { pos: e.pos, path: &ep, args: &e.args, matrix: &BTreeMap::new() };
                    let params = self.in_file(scope.file, |p| p.bind(&ex.parameters, &call, &what));
                    env = self.in_file(ex_scope.file, |p| {
                        let body = p.substitute_body(&ex.body, &params, &ep);
                        read::executor(&body, &ep, &e.name, &mut p.report).env
                    });
                }
                None => {
                    let message = format!("unknown executor `{}`", e.name);
                    let suggestion = suggest(&e.name, scope.executors.keys().map(String::as_str));
                    self.in_file(scope.file, |p| p.report.push(e.pos, &ep, message, suggestion));
                }
            }
        }
        let env = overlay(env, j.env.clone());
        let mut steps = Vec::new();
        let mut stack = Vec::new();
        let scoped = Bindings { parameters: Some(&params), ..self.bindings };
        if let Some(pre) = pre {
            let pp = join(call.path, "pre-steps");
            let pre = scoped.substitute(pre, &pp, &mut self.report);
            let pre = read::steps(&pre, &pp, &mut self.report);
            self.steps(self.root, &pre, &pp, &mut stack, &mut steps);
        }
        self.in_file(scope.file, |p| p.steps(scope, &j.steps, &join(&path, "steps"), &mut stack, &mut steps));
        if let Some(post) = post {
            let pp = join(call.path, "post-steps");
            let post = scoped.substitute(post, &pp, &mut self.report);
            let post = read::steps(&post, &pp, &mut self.report);
            self.steps(self.root, &post, &pp, &mut stack, &mut steps);
        }
        let parallelism = match &j.parallelism {
            None => 1,
            Some(MaybeTemplate::Value(n)) => *n,
            Some(MaybeTemplate::Template(t)) => {
                self.unresolved(j.body.get("parallelism").map_or(j.pos, |v| v.pos), &path, t);
                1
            }
        };
        let spec = self.in_file(scope.file, |p| p.job_spec(name, &env, parallelism, steps, &path));
        if self.report.items.len() > errors_before {
            return Expanded::Failed;
        }
        Expanded::Spec(Box::new(spec))
    }

    fn unresolved(&mut self, pos: Pos, path: &str, template: &str) {
        let message = format!("`{template}` is not resolved here: only this job's parameters and pipeline values are");
        self.report.error(pos, path, message);
    }

    /// Expands `steps` (written in `scope`) onto `out`. `stack` holds the commands being expanded.
    fn steps(
        &mut self,
        scope: Scope<'a>,
        steps: &[Step],
        path: &str,
        stack: &mut Vec<(usize, String)>,
        out: &mut Vec<SpecStep>,
    ) {
        for (i, step) in steps.iter().enumerate() {
            if out.len() > MAX_STEPS {
                let message =
                    format!("the job expands to more than {MAX_STEPS} steps: do commands invoke each other in a loop?");
                self.report.error(step.pos, path, message);
                return;
            }
            let sp = item_path(path, i);
            match &step.kind {
                StepKind::When { condition, steps } | StepKind::Unless { condition, steps } => {
                    let want = matches!(step.kind, StepKind::When { .. });
                    let p = join(&sp, step.kind.name());
                    if self.eval(condition, &p) == want {
                        self.steps(scope, steps, &join(&p, "steps"), stack, out);
                    }
                }
                StepKind::Steps(inner) => self.steps(scope, inner, &join(&sp, "steps"), stack, out),
                StepKind::Parameter { template } => self.unresolved(step.pos, &sp, template),
                StepKind::Invoke { name, args } => self.invoke(scope, step.pos, &sp, name, args, stack, out),
                _ => {
                    if let Some(s) = self.builtin(&step.kind, &join(&sp, step.kind.name())) {
                        out.push(s);
                    }
                }
            }
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the expansion state is passed explicitly rather than hidden in a struct"
    )]
    fn invoke(
        &mut self,
        scope: Scope<'a>,
        pos: Pos,
        path: &str,
        name: &str,
        args: &[(String, Yaml)],
        stack: &mut Vec<(usize, String)>,
        out: &mut Vec<SpecStep>,
    ) {
        let Some((inner_scope, command)) = scope.command(name) else {
            let names = scope.commands.keys().map(String::as_str).chain(BUILTIN_STEPS);
            self.report.push(pos, path, format!("unknown step or command `{name}`"), suggest(name, names));
            return;
        };
        let id = command as *const Command as usize;
        if let Some(start) = stack.iter().position(|(c, _)| *c == id) {
            let mut chain: Vec<&str> = stack[start..].iter().map(|(_, n)| n.as_str()).collect();
            chain.push(name);
            let message = format!("command `{name}` invokes itself: {}", chain.join(" -> "));
            self.report.error(pos, path, message);
            return;
        }
        self.invocations += 1;
        if self.invocations > MAX_INVOCATIONS {
            if self.invocations == MAX_INVOCATIONS + 1 {
                let message = format!(
                    "the configuration expands more than {MAX_INVOCATIONS} command invocations: do commands invoke \
                     each other many times over?"
                );
                self.report.error(pos, path, message);
            }
            return;
        }
        if stack.len() >= MAX_DEPTH {
            let message = format!("commands are nested more than {MAX_DEPTH} deep: is there a loop through steps?");
            self.report.error(pos, path, message);
            return;
        }
        let cp = join(path, name);
        let call = Call { pos, path: &cp, args, matrix: &BTreeMap::new() };
        let params = self.bind(&command.parameters, &call, &format!("command `{name}`"));
        // The expansion depends only on the command, the bound arguments and (for the depth limit) the depth;
        // paths and file names only show in problems, and an expansion with problems is not remembered.
        let key = (
            id,
            stack.len(),
            serde_json::to_string(&params.iter().map(|(k, v)| (k, v.to_json())).collect::<Vec<_>>())
                .unwrap_or_default(),
        );
        if let Some((steps, count)) = self.expanded.get(&key) {
            if self.invocations + count <= MAX_INVOCATIONS {
                self.invocations += count;
                out.extend(steps.iter().cloned());
                return;
            }
        }
        let (problems, invocations, first) = (self.report.items.len(), self.invocations, out.len());
        self.in_file(inner_scope.file, |p| {
            let body = p.substitute_body(&command.body, &params, &cp);
            let c = read::command(&body, &cp, name, &mut p.report);
            stack.push((id, name.to_string()));
            p.steps(inner_scope, &c.steps, &join(&cp, "steps"), stack, out);
            stack.pop();
        });
        if self.report.items.len() == problems {
            self.expanded.insert(key, (out[first..].to_vec(), self.invocations - invocations));
        }
    }

    // --- from located YAML to plain values -------------------------------------------------------------

    /// A scalar's text (templates were substituted before the YAML was read, or reported).
    fn text(&mut self, v: &Yaml, path: &str) -> String {
        match &v.value {
            YamlValue::Null => String::new(),
            _ => match v.scalar_text() {
                Some(t) => t,
                None => {
                    self.report.error(v.pos, path, format!("must be a string, found {}", v.kind()));
                    String::new()
                }
            },
        }
    }

    fn opt_text(&mut self, v: &Option<Yaml>, path: &str) -> Option<String> {
        v.as_ref().map(|v| self.text(v, path))
    }

    fn texts(&mut self, items: &[Yaml], path: &str) -> Vec<String> {
        items.iter().enumerate().map(|(i, v)| self.text(v, &item_path(path, i))).collect()
    }

    /// A string or a list of strings (`entrypoint`, `command` of a docker image).
    fn words(&mut self, v: &Option<Yaml>, path: &str) -> Vec<String> {
        match v {
            None => Vec::new(),
            Some(Yaml { value: YamlValue::Seq(items), .. }) => self.texts(items, path),
            Some(v) => vec![self.text(v, path)],
        }
    }

    fn env(&mut self, vars: &[(String, Yaml)], path: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in vars {
            if k.is_empty() {
                // `environment: << parameters.env >>` that did not become a map.
                let message = format!("environment must be a map of variables, found {}", v.kind());
                self.report.error(v.pos, path, message);
                continue;
            }
            let value = self.text(v, &join(path, k));
            out.insert(k.clone(), value);
        }
        out
    }

    fn flag(&mut self, v: &Option<Yaml>, path: &str) -> bool {
        match v.as_ref().map(|v| (v, &v.value)) {
            None => false,
            Some((_, YamlValue::Bool(b))) => *b,
            Some((v, _)) => {
                self.report.error(v.pos, path, format!("must be true or false, found {}", v.kind()));
                false
            }
        }
    }

    fn step_when(&mut self, v: &Yaml, path: &str) -> StepWhen {
        match v.as_str().and_then(RunWhen::parse) {
            Some(w) => step_when(w),
            None => {
                let found = v.scalar_text().unwrap_or_else(|| v.kind().to_string());
                let message = format!("must be on_success, on_fail or always, found `{found}`");
                let s = suggest(&found, ["on_success", "on_fail", "always"]);
                self.report.push(v.pos, path, message, s);
                StepWhen::OnSuccess
            }
        }
    }

    fn builtin(&mut self, kind: &StepKind, path: &str) -> Option<SpecStep> {
        Some(match kind {
            StepKind::Checkout { path: p, method } => SpecStep::Checkout {
                path: self.opt_text(p, &join(path, "path")),
                method: self.opt_text(method, &join(path, "method")),
            },
            StepKind::Run(r) | StepKind::Deploy(r) => SpecStep::Run(self.run(r, path)),
            StepKind::SaveCache { name, key, paths, when } => SpecStep::SaveCache {
                name: self.opt_text(name, &join(path, "name")),
                key: self.text(key, &join(path, "key")),
                paths: self.texts(paths, &join(path, "paths")),
                when: match when {
                    Some(w) => self.step_when(w, &join(path, "when")),
                    None => StepWhen::OnSuccess,
                },
            },
            StepKind::RestoreCache { name, keys } => SpecStep::RestoreCache {
                name: self.opt_text(name, &join(path, "name")),
                keys: self.texts(keys, &join(path, "keys")),
            },
            StepKind::StoreArtifacts { path: p, destination } => SpecStep::StoreArtifacts {
                path: self.text(p, &join(path, "path")),
                destination: self.opt_text(destination, &join(path, "destination")),
            },
            StepKind::StoreTestResults { path: p } => {
                SpecStep::StoreTestResults { path: self.text(p, &join(path, "path")) }
            }
            StepKind::PersistToWorkspace { root, paths } => SpecStep::PersistToWorkspace {
                root: self.text(root, &join(path, "root")),
                paths: self.texts(paths, &join(path, "paths")),
            },
            StepKind::AttachWorkspace { at } => SpecStep::AttachWorkspace { at: self.text(at, &join(path, "at")) },
            StepKind::SetupRemoteDocker { version, docker_layer_caching } => SpecStep::SetupRemoteDocker {
                version: self.opt_text(version, &join(path, "version")),
                docker_layer_caching: self.flag(docker_layer_caching, &join(path, "docker_layer_caching")),
            },
            StepKind::AddSshKeys { fingerprints } => {
                SpecStep::AddSshKeys { fingerprints: self.texts(fingerprints, &join(path, "fingerprints")) }
            }
            _ => return None,
        })
    }

    fn run(&mut self, r: &Run, path: &str) -> RunSpec {
        let background = match &r.background {
            None => false,
            Some(MaybeTemplate::Value(b)) => *b,
            Some(MaybeTemplate::Template(t)) => {
                self.unresolved(r.command.pos, &join(path, "background"), t);
                false
            }
        };
        let when = match &r.when {
            None => StepWhen::OnSuccess,
            Some(MaybeTemplate::Value(w)) => step_when(*w),
            Some(MaybeTemplate::Template(t)) => {
                self.unresolved(r.command.pos, &join(path, "when"), t);
                StepWhen::OnSuccess
            }
        };
        let no_output_timeout_secs = match &r.no_output_timeout {
            None => None,
            Some(v) => {
                let text = self.text(v, &join(path, "no_output_timeout"));
                let secs = parse_duration(&text);
                if secs.is_none() {
                    let message = format!("`{text}` is not a duration: write it like 90s, 10m or 1h30m");
                    self.report.error(v.pos, &join(path, "no_output_timeout"), message);
                }
                secs
            }
        };
        RunSpec {
            name: self.opt_text(&r.name, &join(path, "name")),
            command: self.text(&r.command, &join(path, "command")),
            shell: self.opt_text(&r.shell, &join(path, "shell")),
            environment: self.env(&r.environment, &join(path, "environment")),
            background,
            working_directory: self.opt_text(&r.working_directory, &join(path, "working_directory")),
            no_output_timeout_secs,
            when,
        }
    }

    fn job_spec(
        &mut self,
        name: &str,
        env: &Environment,
        parallelism: u32,
        steps: Vec<SpecStep>,
        path: &str,
    ) -> JobSpec {
        let mut docker = Vec::new();
        for (i, d) in env.docker.iter().enumerate() {
            let dp = format!("{path}.docker[{i}]");
            let auth = d.auth.as_ref().map(|a| RegistryAuth {
                username: a.get("username").map(|u| self.text(u, &join(&dp, "auth.username"))).unwrap_or_default(),
                password: a.get("password").map(|u| self.text(u, &join(&dp, "auth.password"))).unwrap_or_default(),
            });
            let aws_auth = match &d.aws_auth {
                None => BTreeMap::new(),
                Some(a) => {
                    let vars: Vec<(String, Yaml)> =
                        a.entries().iter().map(|(_, k, v)| (k.clone(), v.clone())).collect();
                    self.env(&vars, &join(&dp, "aws_auth"))
                }
            };
            docker.push(DockerImageSpec {
                image: self.text(&d.image, &join(&dp, "image")),
                name: self.opt_text(&d.name, &join(&dp, "name")),
                entrypoint: self.words(&d.entrypoint, &join(&dp, "entrypoint")),
                command: self.words(&d.command, &join(&dp, "command")),
                user: self.opt_text(&d.user, &join(&dp, "user")),
                environment: self.env(&d.environment, &join(&dp, "environment")),
                auth,
                aws_auth,
            });
        }
        let machine = match &env.machine {
            None | Some(Yaml { value: YamlValue::Bool(false), .. }) => None,
            Some(Yaml { value: YamlValue::Bool(true), .. }) => Some(MachineSpec::default()),
            Some(m) => Some(MachineSpec {
                image: m.get("image").map(|i| self.text(i, &join(path, "machine.image"))),
                docker_layer_caching: self
                    .flag(&m.get("docker_layer_caching").cloned(), &join(path, "machine.docker_layer_caching")),
            }),
        };
        let macos = env.macos.as_ref().map(|m| MacosSpec {
            xcode: m.get("xcode").map(|x| self.text(x, &join(path, "macos.xcode"))).unwrap_or_default(),
        });
        JobSpec {
            name: name.to_string(),
            docker,
            machine,
            macos,
            resource_class: self.opt_text(&env.resource_class, &join(path, "resource_class")),
            working_directory: self
                .opt_text(&env.working_directory, &join(path, "working_directory"))
                .unwrap_or_else(|| DEFAULT_WORKING_DIRECTORY.to_string()),
            shell: self.opt_text(&env.shell, &join(path, "shell")),
            environment: self.env(&env.environment, &join(path, "environment")),
            parallelism,
            steps,
        }
    }
}

/// Where a job, command or executor is used and with what.
struct Call<'c> {
    pos: Pos,
    /// Key path of the use (`workflows.main.jobs[0].build`), for messages.
    path: &'c str,
    args: &'c [(String, Yaml)],
    /// Matrix values among `args` (messages say where an unknown one came from).
    matrix: &'c BTreeMap<String, Yaml>,
}

enum Expanded {
    Spec(Box<JobSpec>),
    /// An approval or no-op job: nothing for a runner.
    Kind(JobKind),
    /// Problems were reported.
    Failed,
}

/// The job's settings laid over its executor's: an image list, machine or macOS replaces the executor's;
/// variables merge (the job's win); other settings override when given.
fn overlay(mut base: Environment, job: Environment) -> Environment {
    if !job.is_empty() {
        base.docker = job.docker;
        base.machine = job.machine;
        base.macos = job.macos;
    }
    for (k, v) in job.environment {
        match base.environment.iter_mut().find(|(bk, _)| *bk == k) {
            Some(slot) => slot.1 = v,
            None => base.environment.push((k, v)),
        }
    }
    base.resource_class = job.resource_class.or(base.resource_class);
    base.shell = job.shell.or(base.shell);
    base.working_directory = job.working_directory.or(base.working_directory);
    base
}

/// Every combination of the matrix's values, the first parameter varying slowest.
fn combinations(params: &[(String, Vec<Yaml>)]) -> Vec<Vec<(String, Yaml)>> {
    let mut out: Vec<Vec<(String, Yaml)>> = vec![Vec::new()];
    for (name, values) in params {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut c = prefix.clone();
                    c.push((name.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    out
}

fn step_when(w: RunWhen) -> StepWhen {
    match w {
        RunWhen::OnSuccess => StepWhen::OnSuccess,
        RunWhen::OnFail => StepWhen::OnFail,
        RunWhen::Always => StepWhen::Always,
    }
}

fn status(s: RequiredStatus) -> JobStatus {
    match s {
        RequiredStatus::Success => JobStatus::Success,
        RequiredStatus::Failed => JobStatus::Failed,
        RequiredStatus::Canceled => JobStatus::Canceled,
        RequiredStatus::NotRun => JobStatus::NotRun,
        RequiredStatus::Terminal => JobStatus::Terminal,
    }
}

fn pattern_text(p: &Pattern) -> String {
    match p {
        Pattern::Literal(l) => l.clone(),
        Pattern::Regex(r) => format!("/{r}/"),
    }
}

fn filter_spec(f: &Filter) -> Option<FilterSpec> {
    f.set.then(|| FilterSpec {
        only: f.only.iter().map(pattern_text).collect(),
        ignore: f.ignore.iter().map(pattern_text).collect(),
    })
}

fn filters_spec(f: &Filters) -> FiltersSpec {
    FiltersSpec { branches: filter_spec(&f.branches), tags: filter_spec(&f.tags) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, pipeline: &Pipeline) -> Result<ProcessedConfig, String> {
        crate::process_text(text, "t.yml", &crate::Options::default(), pipeline).map_err(|e| e.to_string())
    }

    fn names(p: &ProcessedConfig, workflow: &str) -> Vec<String> {
        p.workflows.get(workflow).map(|w| w.jobs.iter().map(|j| j.name.clone()).collect()).unwrap_or_default()
    }

    #[test]
    fn matrix_names_order_values_by_parameter_name() {
        // CircleCI's documented example: `version` is written first, but `platform` sorts first.
        let p = run(
            "version: 2.1\njobs:\n  build:\n    parameters: {version: {type: string}, platform: {type: string}}\n\
             \x20   docker: [{image: x}]\n    steps: [checkout]\nworkflows:\n  w:\n    jobs:\n      - build:\n\
             \x20         matrix:\n            parameters:\n              version: ['0.1', '0.2']\n\
             \x20             platform: [macos, linux]\n            exclude: [{platform: linux, version: '0.1'}]\n\
             \x20     - build: {name: after, version: '1', platform: x, requires: [build]}\n",
            &Pipeline::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names(&p, "w"), ["build-macos-0.1", "build-macos-0.2", "build-linux-0.2", "after"]);
        let after = &p.workflows["w"].jobs[3];
        let upstream: Vec<&str> = after.requires.iter().map(|r| r.job.as_str()).collect();
        assert_eq!(upstream, ["build-macos-0.1", "build-macos-0.2", "build-linux-0.2"]);
    }

    #[test]
    fn job_settings_lie_over_the_executor() {
        let p = run(
            "version: 2.1\nexecutors:\n  e:\n    docker: [{image: base}]\n    shell: /bin/sh\n    resource_class: large\n\
             \x20   environment: {A: executor, B: executor}\njobs:\n  j:\n    executor: e\n    resource_class: small\n\
             \x20   environment: {B: job, C: job}\n    steps: [checkout]\nworkflows:\n  w:\n    jobs: [j]\n",
            &Pipeline::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let j = &p.jobs["j"];
        assert_eq!(j.docker[0].image, "base");
        assert_eq!((j.shell.as_deref(), j.resource_class.as_deref()), (Some("/bin/sh"), Some("small")));
        let env: Vec<(&str, &str)> = j.environment.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(env, [("A", "executor"), ("B", "job"), ("C", "job")]);
    }

    #[test]
    fn logic_statements_follow_circleci_truthiness() {
        let text = "version: 2.1\nparameters:\n  n: {type: integer, default: 0}\n  s: {type: string, default: ''}\n\
            jobs:\n  j: {docker: [{image: x}], steps: [checkout]}\nworkflows:\n\
            \x20 zero: {when: << pipeline.parameters.n >>, jobs: [j]}\n\
            \x20 empty: {when: << pipeline.parameters.s >>, jobs: [j]}\n\
            \x20 empty-and: {when: {and: []}, jobs: [j]}\n\
            \x20 release: {when: {matches: {pattern: '^release/', value: << pipeline.git.branch >>}}, jobs: [j]}\n\
            \x20 not-main: {unless: {equal: [main, << pipeline.git.branch >>]}, jobs: [j]}\n";
        let on = |branch: &str, n: i64| {
            let pipeline = Pipeline {
                parameters: [("n".to_string(), serde_json::Value::from(n))].into_iter().collect(),
                values: [("git.branch".to_string(), branch.to_string())].into_iter().collect(),
            };
            let p = run(text, &pipeline).unwrap_or_else(|e| panic!("{e}"));
            p.workflows.keys().cloned().collect::<Vec<_>>()
        };
        assert_eq!(on("main", 0), Vec::<String>::new());
        assert_eq!(on("release/2", 3), ["not-main", "release", "zero"]);
    }

    #[test]
    fn pipeline_parameter_errors_say_what_to_do() {
        let err = run(
            "version: 2.1\nparameters:\n  go: {type: string}\njobs:\n  j: {docker: [{image: x}], steps: [checkout]}\n\
             workflows:\n  w: {jobs: [j]}\n",
            &Pipeline::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "t.yml:3:3: parameters.go: pipeline parameter `go` (string) has no default and no value was given: pass \
             it (runner: `--pipeline-parameters '{\"go\": …}'`) or give it a default"
        );
    }
}
