//! The typed CircleCI configuration (2.0 and 2.1), as written — before processing. Names keep the position of
//! their definition so validation can point at them; values that may hold `<< parameters.x >>` templates or
//! that processing substitutes (parameter values, invocation arguments, matrix values) stay as located YAML.
//! Typed slots that a template may fill (`parallelism: << parameters.n >>`) are [`MaybeTemplate`].
//!
//! Jobs, commands and executors also keep their `body` (the located YAML they were read from): processing
//! substitutes parameters into the body and reads the result again with [`crate::read`], which is how CircleCI
//! itself expands (textual substitution, then interpretation).

use std::collections::BTreeMap;

use crate::yaml::{Pos, Yaml};

/// A whole `.circleci/config.yml`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// `2`, `2.0` or `2.1`, as written.
    pub version: String,
    pub version_pos: Pos,
    /// `setup: true`: a setup workflow that continues into another config.
    pub setup: bool,
    pub orbs: BTreeMap<String, Orb>,
    pub executors: BTreeMap<String, Executor>,
    pub commands: BTreeMap<String, Command>,
    /// Pipeline parameters.
    pub parameters: BTreeMap<String, Parameter>,
    pub jobs: BTreeMap<String, Job>,
    pub workflows: BTreeMap<String, Workflow>,
    /// Where each top-level section starts (for messages about a whole section).
    pub sections: BTreeMap<String, Pos>,
}

impl Config {
    pub fn is_v21(&self) -> bool {
        self.version == "2.1"
    }

    /// A job by the name a workflow uses: `build`, or `orb/job` (`orb/inner/job` for orbs inside orbs).
    pub fn job(&self, name: &str) -> Option<&Job> {
        match name.split_once('/') {
            None => self.jobs.get(name),
            Some((orb, rest)) => self.orbs.get(orb)?.contents()?.job(rest),
        }
    }

    /// A command by the name a step uses: `greet` or `orb/command`.
    pub fn command(&self, name: &str) -> Option<&Command> {
        match name.split_once('/') {
            None => self.commands.get(name),
            Some((orb, rest)) => self.orbs.get(orb)?.contents()?.command(rest),
        }
    }

    /// An executor by the name a job uses: `node` or `orb/executor`.
    pub fn executor(&self, name: &str) -> Option<&Executor> {
        match name.split_once('/') {
            None => self.executors.get(name),
            Some((orb, rest)) => self.orbs.get(orb)?.contents()?.executor(rest),
        }
    }
}

/// An orb: a registry reference (`circleci/node@5.1`) or an inline definition.
#[derive(Debug, Clone, PartialEq)]
pub enum Orb {
    /// `resolved` is the orb read from the local orb directory (`<dir>/<namespace>/<name>.yml`), if it was there;
    /// the registry itself is never contacted.
    Registry {
        reference: String,
        pos: Pos,
        resolved: Option<Box<InlineOrb>>,
    },
    Inline(Box<InlineOrb>),
}

impl Orb {
    /// The orb's definition, when it is known (inline, or found in the local orb directory).
    pub fn contents(&self) -> Option<&InlineOrb> {
        match self {
            Orb::Registry { resolved, .. } => resolved.as_deref(),
            Orb::Inline(o) => Some(o),
        }
    }

    /// Where the orb is declared.
    pub fn pos(&self) -> Pos {
        match self {
            Orb::Registry { pos, .. } => *pos,
            Orb::Inline(o) => o.pos,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct InlineOrb {
    pub pos: Pos,
    /// The file an orb of the local orb directory was read from (positions inside it are that file's); `None`
    /// for an orb written inline in the configuration.
    pub file: Option<String>,
    pub description: Option<String>,
    pub orbs: BTreeMap<String, Orb>,
    pub executors: BTreeMap<String, Executor>,
    pub commands: BTreeMap<String, Command>,
    pub jobs: BTreeMap<String, Job>,
}

impl InlineOrb {
    pub fn job(&self, name: &str) -> Option<&Job> {
        match name.split_once('/') {
            None => self.jobs.get(name),
            Some((orb, rest)) => self.orbs.get(orb)?.contents()?.job(rest),
        }
    }

    pub fn command(&self, name: &str) -> Option<&Command> {
        match name.split_once('/') {
            None => self.commands.get(name),
            Some((orb, rest)) => self.orbs.get(orb)?.contents()?.command(rest),
        }
    }

    pub fn executor(&self, name: &str) -> Option<&Executor> {
        match name.split_once('/') {
            None => self.executors.get(name),
            Some((orb, rest)) => self.orbs.get(orb)?.contents()?.executor(rest),
        }
    }
}

/// A typed value, or a `<< … >>` template that processing substitutes before the value is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaybeTemplate<T> {
    Value(T),
    Template(String),
}

impl<T> MaybeTemplate<T> {
    /// The value, if it is not a template.
    pub fn value(&self) -> Option<&T> {
        match self {
            MaybeTemplate::Value(v) => Some(v),
            MaybeTemplate::Template(_) => None,
        }
    }
}

/// A parameter declaration (pipeline, job, command or executor).
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub pos: Pos,
    pub kind: ParameterKind,
    pub description: Option<String>,
    pub default: Option<Yaml>,
    /// Allowed values of an `enum` parameter.
    pub enum_values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterKind {
    String,
    Boolean,
    Integer,
    Enum,
    Executor,
    Steps,
    EnvVarName,
}

impl ParameterKind {
    pub fn parse(s: &str) -> Option<ParameterKind> {
        Some(match s {
            "string" => ParameterKind::String,
            "boolean" => ParameterKind::Boolean,
            "integer" => ParameterKind::Integer,
            "enum" => ParameterKind::Enum,
            "executor" => ParameterKind::Executor,
            "steps" => ParameterKind::Steps,
            "env_var_name" => ParameterKind::EnvVarName,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ParameterKind::String => "string",
            ParameterKind::Boolean => "boolean",
            ParameterKind::Integer => "integer",
            ParameterKind::Enum => "enum",
            ParameterKind::Executor => "executor",
            ParameterKind::Steps => "steps",
            ParameterKind::EnvVarName => "env_var_name",
        }
    }

    pub const ALL: [&'static str; 7] = ["string", "boolean", "integer", "enum", "executor", "steps", "env_var_name"];
}

/// Where and how a job runs: the executor part shared by `executors:` entries and jobs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Environment {
    pub docker: Vec<DockerImage>,
    pub machine: Option<Yaml>,
    pub macos: Option<Yaml>,
    pub resource_class: Option<Yaml>,
    pub shell: Option<Yaml>,
    pub working_directory: Option<Yaml>,
    /// `KEY: value` (a list of `KEY=value` is turned into a map).
    pub environment: Vec<(String, Yaml)>,
}

impl Environment {
    pub fn is_empty(&self) -> bool {
        self.docker.is_empty() && self.machine.is_none() && self.macos.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DockerImage {
    pub pos: Pos,
    pub image: Yaml,
    pub name: Option<Yaml>,
    pub entrypoint: Option<Yaml>,
    pub command: Option<Yaml>,
    pub user: Option<Yaml>,
    pub environment: Vec<(String, Yaml)>,
    /// `auth: {username, password}`, kept as written (values are usually `$ENV` references).
    pub auth: Option<Yaml>,
    pub aws_auth: Option<Yaml>,
}

/// An `executors:` entry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Executor {
    pub pos: Pos,
    pub description: Option<String>,
    pub parameters: BTreeMap<String, Parameter>,
    pub env: Environment,
    /// The YAML this executor was read from.
    pub body: Yaml,
}

/// A job's `executor:` — by name, or with arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorRef {
    pub pos: Pos,
    pub name: String,
    pub args: Vec<(String, Yaml)>,
}

/// A `commands:` entry (2.1).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Command {
    pub pos: Pos,
    pub description: Option<String>,
    pub parameters: BTreeMap<String, Parameter>,
    pub steps: Vec<Step>,
    /// The YAML this command was read from.
    pub body: Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobType {
    #[default]
    Build,
    Approval,
    NoOp,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Job {
    pub pos: Pos,
    pub description: Option<String>,
    pub kind: JobType,
    pub executor: Option<ExecutorRef>,
    pub env: Environment,
    pub parallelism: Option<MaybeTemplate<u32>>,
    pub parameters: BTreeMap<String, Parameter>,
    pub steps: Vec<Step>,
    pub circleci_ip_ranges: bool,
    /// The YAML this job was read from.
    pub body: Yaml,
}

/// One step of a job or command.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub pos: Pos,
    pub kind: StepKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    Checkout {
        path: Option<Yaml>,
        method: Option<Yaml>,
    },
    Run(Run),
    /// The deprecated `deploy` step: a `run`.
    Deploy(Run),
    SaveCache {
        name: Option<Yaml>,
        key: Yaml,
        paths: Vec<Yaml>,
        when: Option<Yaml>,
    },
    RestoreCache {
        name: Option<Yaml>,
        keys: Vec<Yaml>,
    },
    StoreArtifacts {
        path: Yaml,
        destination: Option<Yaml>,
    },
    StoreTestResults {
        path: Yaml,
    },
    PersistToWorkspace {
        root: Yaml,
        paths: Vec<Yaml>,
    },
    AttachWorkspace {
        at: Yaml,
    },
    SetupRemoteDocker {
        version: Option<Yaml>,
        docker_layer_caching: Option<Yaml>,
    },
    AddSshKeys {
        fingerprints: Vec<Yaml>,
    },
    When {
        condition: Logic,
        steps: Vec<Step>,
    },
    Unless {
        condition: Logic,
        steps: Vec<Step>,
    },
    /// A command: the user's (`greet`) or an orb's (`orb/command`), with its arguments.
    Invoke {
        name: String,
        args: Vec<(String, Yaml)>,
    },
    /// A `steps` parameter spliced in place: `- << parameters.x >>`, `- steps: << parameters.x >>`, or a whole
    /// `steps: << parameters.x >>`. `template` is the text as written; processing replaces it with the steps.
    Parameter {
        template: String,
    },
    /// `- steps: [...]`: a literal list spliced in place (kept as one step so indices match the file).
    Steps(Vec<Step>),
}

impl StepKind {
    /// The key this step is written with.
    pub fn name(&self) -> &str {
        match self {
            StepKind::Checkout { .. } => "checkout",
            StepKind::Run(_) => "run",
            StepKind::Deploy(_) => "deploy",
            StepKind::SaveCache { .. } => "save_cache",
            StepKind::RestoreCache { .. } => "restore_cache",
            StepKind::StoreArtifacts { .. } => "store_artifacts",
            StepKind::StoreTestResults { .. } => "store_test_results",
            StepKind::PersistToWorkspace { .. } => "persist_to_workspace",
            StepKind::AttachWorkspace { .. } => "attach_workspace",
            StepKind::SetupRemoteDocker { .. } => "setup_remote_docker",
            StepKind::AddSshKeys { .. } => "add_ssh_keys",
            StepKind::When { .. } => "when",
            StepKind::Unless { .. } => "unless",
            StepKind::Invoke { name, .. } => name,
            StepKind::Parameter { template } => template,
            StepKind::Steps(_) => "steps",
        }
    }
}

/// Built-in step names (everything else is a command invocation).
pub const BUILTIN_STEPS: [&str; 13] = [
    "checkout",
    "run",
    "deploy",
    "save_cache",
    "restore_cache",
    "store_artifacts",
    "store_test_results",
    "persist_to_workspace",
    "attach_workspace",
    "setup_remote_docker",
    "add_ssh_keys",
    "when",
    "unless",
];

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Run {
    pub command: Yaml,
    pub name: Option<Yaml>,
    pub shell: Option<Yaml>,
    pub environment: Vec<(String, Yaml)>,
    pub background: Option<MaybeTemplate<bool>>,
    pub working_directory: Option<Yaml>,
    /// A duration such as `10m`, `1h30m`, `90s`.
    pub no_output_timeout: Option<Yaml>,
    pub when: Option<MaybeTemplate<RunWhen>>,
}

/// `when:` of a `run` step: whether it runs after the job's earlier steps succeeded or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunWhen {
    #[default]
    OnSuccess,
    OnFail,
    Always,
}

impl RunWhen {
    pub fn parse(s: &str) -> Option<RunWhen> {
        Some(match s {
            "on_success" => RunWhen::OnSuccess,
            "on_fail" => RunWhen::OnFail,
            "always" => RunWhen::Always,
            _ => return None,
        })
    }
}

/// A logic statement (`when:` of workflows and steps).
#[derive(Debug, Clone, PartialEq)]
pub enum Logic {
    /// A literal or template: truthy unless false, null, 0, "" (or a template that expands to one).
    Value(Yaml),
    And(Vec<Logic>),
    Or(Vec<Logic>),
    Not(Box<Logic>),
    Equal(Vec<Yaml>),
    Matches {
        pattern: Yaml,
        value: Yaml,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Workflow {
    pub pos: Pos,
    pub jobs: Vec<WorkflowJob>,
    pub triggers: Vec<Schedule>,
    pub when: Option<Logic>,
    pub unless: Option<Logic>,
    /// The YAML this workflow was read from.
    pub body: Yaml,
}

/// One entry of a workflow's `jobs:`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkflowJob {
    pub pos: Pos,
    /// The job (or orb job) to run.
    pub job: String,
    /// `name:` — the name other jobs require it by (defaults to `job`).
    pub name: Option<String>,
    pub requires: Vec<Requirement>,
    pub filters: Filters,
    pub context: Vec<String>,
    pub approval: bool,
    pub matrix: Option<Matrix>,
    pub pre_steps: Vec<Step>,
    pub post_steps: Vec<Step>,
    /// Arguments for the job's parameters.
    pub args: Vec<(String, Yaml)>,
}

impl WorkflowJob {
    /// The name this entry is known by in the workflow.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.job)
    }
}

/// `requires:` entry: a job name and the statuses that satisfy it (default `success`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub pos: Pos,
    pub name: String,
    pub statuses: Vec<RequiredStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequiredStatus {
    Success,
    Failed,
    Canceled,
    NotRun,
    /// Any of success, failed, canceled, not_run.
    Terminal,
}

impl RequiredStatus {
    pub fn parse(s: &str) -> Option<RequiredStatus> {
        Some(match s {
            "success" => RequiredStatus::Success,
            "failed" => RequiredStatus::Failed,
            "canceled" => RequiredStatus::Canceled,
            "not_run" => RequiredStatus::NotRun,
            "terminal" => RequiredStatus::Terminal,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filters {
    pub branches: Filter,
    pub tags: Filter,
}

/// `only` / `ignore` patterns; `set` says whether the filter was written at all.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub pos: Pos,
    pub set: bool,
    pub only: Vec<Pattern>,
    pub ignore: Vec<Pattern>,
}

/// A branch or tag pattern: a literal name, or `/regex/` matched against the whole name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Literal(String),
    Regex(String),
}

impl Pattern {
    pub fn parse(s: &str) -> Pattern {
        match s.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
            Some(re) if s.len() >= 2 => Pattern::Regex(re.to_string()),
            _ => Pattern::Literal(s.to_string()),
        }
    }

    /// Whole-name match, as CircleCI does (`/main|dev/` does not match `maintenance`).
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Literal(l) => l == name,
            Pattern::Regex(re) => regex::Regex::new(&format!("^(?:{re})$")).map(|r| r.is_match(name)).unwrap_or(false),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Matrix {
    pub pos: Pos,
    /// Parameter → the values to combine, in file order.
    pub parameters: Vec<(String, Vec<Yaml>)>,
    pub exclude: Vec<Vec<(String, Yaml)>>,
    pub alias: Option<String>,
}

/// `triggers: - schedule: {cron, filters}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schedule {
    pub pos: Pos,
    pub cron: String,
    pub cron_pos: Pos,
    pub filters: Filters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names() {
        assert!(Pattern::parse("main").matches("main"));
        assert!(!Pattern::parse("main").matches("main2"));
        assert!(Pattern::parse("/release-.*/").matches("release-1.2"));
        assert!(!Pattern::parse("/main|dev/").matches("maintenance"));
        assert!(Pattern::parse("/main|dev/").matches("dev"));
        assert!(Pattern::parse("/v[0-9]+(\\.[0-9]+)*/").matches("v1.2.3"));
        assert_eq!(Pattern::parse("/"), Pattern::Literal("/".into()));
    }
}
