//! The processed configuration — what `circleci config process` would print, as types: a [`ProcessedConfig`]
//! holds every job a workflow runs as a [`JobSpec`] (everything a runner needs to run one job, as plain data: no
//! templates, commands, executors, parameters or matrices left) and every workflow as a list of
//! [`WorkflowJobSpec`] (requires with statuses, filters, contexts, approvals) that the coordinator plans from.
//! [`crate::process()`] builds it; the runner executes a job spec locally or receives it from the coordinator
//! as JSON. Field order is declaration order and maps are sorted, so JSON and YAML are stable; empty optional
//! fields are left out and read back as their defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The working directory when neither the job nor its executor sets one (CircleCI's default).
pub const DEFAULT_WORKING_DIRECTORY: &str = "~/project";

/// The shell CircleCI uses when `shell:` is not given; a runner falls back to `/bin/sh -eo pipefail` when the
/// primary container has no bash.
pub const DEFAULT_SHELL: &str = "/bin/bash -eo pipefail";

/// A configuration after processing: the 2.0 equivalent of a 2.1 configuration, for one set of pipeline values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessedConfig {
    /// Always 2: the processed form uses no 2.1 feature.
    pub version: u32,
    /// `setup: true`: this pipeline's only job generates the configuration to continue with.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub setup: bool,
    /// Every job a workflow runs, by its name in the workflow (matrix instances and `name:` included).
    pub jobs: BTreeMap<String, JobSpec>,
    /// The workflows whose `when`/`unless` let them run with these pipeline values.
    pub workflows: BTreeMap<String, WorkflowSpec>,
}

impl ProcessedConfig {
    /// The processed configuration as YAML, as `runner config process` prints it.
    pub fn to_yaml(&self) -> Result<String, serde_saphyr::SerializeError> {
        serde_saphyr::to_string(self)
    }

    /// The processed configuration as pretty JSON (the form the coordinator stores).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

/// One workflow: its jobs in file order (matrix instances in combination order), each naming its upstreams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WorkflowSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<ScheduleSpec>,
    pub jobs: Vec<WorkflowJobSpec>,
}

/// A job's place in a workflow. `name` is a key of [`ProcessedConfig::jobs`] unless the job is an approval or
/// a no-op, which no runner executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WorkflowJobSpec {
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "JobKind::is_build")]
    pub kind: JobKind,
    /// Upstream jobs and the statuses of theirs that let this job start (matrix aliases fanned out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<RequirementSpec>,
    /// Contexts whose secrets the job may see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
    #[serde(default, skip_serializing_if = "FiltersSpec::is_empty")]
    pub filters: FiltersSpec,
}

/// What a workflow job is: run by a runner, waiting for a person's approval, or nothing at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    #[default]
    Build,
    Approval,
    NoOp,
}

impl JobKind {
    fn is_build(&self) -> bool {
        *self == JobKind::Build
    }
}

/// `requires:` entry: the upstream job and the statuses of it that satisfy this one. Written as CircleCI writes
/// it: the job's name when only `success` satisfies it, else `{job: [statuses]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RequirementWire", try_from = "RequirementWire")]
pub struct RequirementSpec {
    pub job: String,
    pub statuses: Vec<JobStatus>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RequirementWire {
    Success(String),
    Statuses(BTreeMap<String, Vec<JobStatus>>),
}

impl From<RequirementSpec> for RequirementWire {
    fn from(r: RequirementSpec) -> RequirementWire {
        if r.statuses == [JobStatus::Success] {
            RequirementWire::Success(r.job)
        } else {
            RequirementWire::Statuses([(r.job, r.statuses)].into_iter().collect())
        }
    }
}

impl TryFrom<RequirementWire> for RequirementSpec {
    type Error = String;

    fn try_from(w: RequirementWire) -> Result<RequirementSpec, String> {
        match w {
            RequirementWire::Success(job) => Ok(RequirementSpec { job, statuses: vec![JobStatus::Success] }),
            RequirementWire::Statuses(m) if m.len() == 1 => {
                let (job, statuses) = m.into_iter().next().unwrap_or_default();
                Ok(RequirementSpec { job, statuses })
            }
            RequirementWire::Statuses(m) => {
                Err(format!("a requirement names one job and its statuses, found {} jobs", m.len()))
            }
        }
    }
}

/// A finished job's status, as `requires` names it (`terminal` is any of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Success,
    Failed,
    Canceled,
    NotRun,
    Terminal,
}

/// Branch and tag filters; patterns as written (`main`, `/release-.*/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FiltersSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<FilterSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<FilterSpec>,
}

impl FiltersSpec {
    pub fn is_empty(&self) -> bool {
        self.branches.is_none() && self.tags.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FilterSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
}

/// `triggers: - schedule:` — a cron (UTC, 5 fields) and the branches it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ScheduleSpec {
    pub cron: String,
    #[serde(default, skip_serializing_if = "FiltersSpec::is_empty")]
    pub filters: FiltersSpec,
}

/// One job, ready to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct JobSpec {
    /// The job's name in its workflow (matrix expansions included: `test-linux-20.11`).
    pub name: String,
    /// The first image is the primary container where steps run; the others are service containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker: Vec<DockerImageSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<MachineSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macos: Option<MacosSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_class: Option<String>,
    pub working_directory: String,
    /// `None`: the default shell ([`DEFAULT_SHELL`], else `/bin/sh -eo pipefail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Job-level variables (the executor's, overridden by the job's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    pub parallelism: u32,
    /// A `checkout` without options is written as the bare word, as in CircleCI's configurations.
    #[serde(with = "bare_checkout")]
    pub steps: Vec<SpecStep>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DockerImageSpec {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// As written: a list, or a string as the only element (not split: the runner decides, as for `command`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Registry credentials as written (usually `$ENV` references the runner expands).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RegistryAuth>,
    /// ECR credentials as written (`aws_access_key_id`, `aws_secret_access_key` or `oidc_role_arn`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aws_auth: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MachineSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub docker_layer_caching: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MacosSpec {
    pub xcode: String,
}

/// A concrete step. Serialised as CircleCI writes steps: `{run: {...}}`, `{checkout: {path}}` …
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecStep {
    Checkout {
        /// `None`: the job's working directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        /// `full` or `blobless`; `None`: full.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        method: Option<String>,
    },
    Run(RunSpec),
    SaveCache {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        key: String,
        paths: Vec<String>,
        #[serde(default, skip_serializing_if = "is_on_success")]
        when: StepWhen,
    },
    RestoreCache {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        keys: Vec<String>,
    },
    StoreArtifacts {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination: Option<String>,
    },
    StoreTestResults {
        path: String,
    },
    PersistToWorkspace {
        root: String,
        paths: Vec<String>,
    },
    AttachWorkspace {
        at: String,
    },
    SetupRemoteDocker {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        docker_layer_caching: bool,
    },
    AddSshKeys {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fingerprints: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// `None`: the runner's default (10 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_output_timeout_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "is_on_success")]
    pub when: StepWhen,
}

/// Steps with a plain `checkout` as the word `- checkout` (serde's externally tagged form would be
/// `checkout: {}`); both forms read back.
mod bare_checkout {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::SpecStep;

    #[derive(Serialize)]
    #[serde(untagged)]
    enum Out<'a> {
        Word(&'static str),
        Step(&'a SpecStep),
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum In {
        Word(String),
        Step(SpecStep),
    }

    const PLAIN: SpecStep = SpecStep::Checkout { path: None, method: None };

    pub fn serialize<S: Serializer>(steps: &[SpecStep], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(steps.iter().map(|step| if *step == PLAIN { Out::Word("checkout") } else { Out::Step(step) }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SpecStep>, D::Error> {
        Vec::<In>::deserialize(d)?
            .into_iter()
            .map(|step| match step {
                In::Step(s) => Ok(s),
                In::Word(w) if w == "checkout" => Ok(PLAIN),
                In::Word(w) => Err(serde::de::Error::custom(format!("`{w}` is not a step without options"))),
            })
            .collect()
    }
}

/// Whether a step runs after earlier steps succeeded, failed, or either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StepWhen {
    #[default]
    OnSuccess,
    OnFail,
    Always,
}

fn is_on_success(w: &StepWhen) -> bool {
    *w == StepWhen::OnSuccess
}

/// Seconds in a CircleCI duration: `90s`, `10m`, `1h30m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(n) = text.parse::<u64>() {
        return Some(n);
    }
    let (mut total, mut number) = (0u64, String::new());
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
    }
    number.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("45"), Some(45));
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration("10m5"), None);
    }

    #[test]
    fn requirements_and_plain_checkouts_are_written_as_circleci_writes_them() {
        let job = JobSpec {
            name: "j".into(),
            steps: vec![
                SpecStep::Checkout { path: None, method: None },
                SpecStep::Checkout { path: Some("src".into()), method: None },
            ],
            ..JobSpec::default()
        };
        let json = serde_json::to_value(&job).unwrap_or_default();
        assert_eq!(json["steps"], serde_json::json!(["checkout", {"checkout": {"path": "src"}}]));
        let back: Result<JobSpec, _> = serde_json::from_value(json);
        assert_eq!(back.ok(), Some(job));
        let requires = vec![
            RequirementSpec { job: "a".into(), statuses: vec![JobStatus::Success] },
            RequirementSpec { job: "b".into(), statuses: vec![JobStatus::Failed, JobStatus::Canceled] },
        ];
        let json = serde_json::to_string(&requires).unwrap_or_default();
        assert_eq!(json, r#"["a",{"b":["failed","canceled"]}]"#);
        let back: Vec<RequirementSpec> = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, requires);
        let two: Result<RequirementSpec, _> = serde_json::from_str(r#"{"a": ["success"], "b": ["failed"]}"#);
        assert!(two.is_err());
    }

    #[test]
    fn steps_serialise_as_circleci_writes_them() {
        let step = SpecStep::Run(RunSpec { command: "make".into(), ..RunSpec::default() });
        assert_eq!(serde_json::to_string(&step).unwrap(), r#"{"run":{"command":"make"}}"#);
        let back: SpecStep = serde_json::from_str(r#"{"run":{"command":"make"}}"#).unwrap();
        assert_eq!(back, step);
    }
}
