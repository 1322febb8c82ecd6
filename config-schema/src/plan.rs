//! Planning: which workflows and jobs of a [`ProcessedConfig`] run for one trigger (a push to a branch, a tag, or
//! a schedule firing), in an order that respects `requires`, and which of them can start at once. The
//! coordinator turns a [`Plan`] into its pipeline, workflow and job rows.
//!
//! Filter semantics are CircleCI's: a branch runs a job unless `branches.only` is set and does not match, or
//! `branches.ignore` matches (`only` is considered before `ignore`); a tag runs a job only if the job has a
//! `tags` filter that lets the tag through (so a tag never runs a job without one). Patterns are names or
//! `/regex/` matched against the whole name. A workflow with a schedule trigger runs only when that schedule
//! fires (on a branch its filters allow); the others run only on pushes. A job filtered out is not in the plan,
//! and neither is a job that requires it — unless the requirement accepts `not_run` or `terminal`, in which case
//! that requirement is dropped. A workflow left without jobs is not in the plan.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::Pattern;
use crate::spec::{FilterSpec, FiltersSpec, JobKind, JobStatus, ProcessedConfig, RequirementSpec};

/// What started the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A push (or an API call) on a branch.
    Branch(String),
    /// A pushed tag.
    Tag(String),
    /// The schedule of `workflow` fired (`triggers: - schedule:`), on `branch`.
    Schedule { workflow: String, branch: String },
}

/// The workflows that run, each with its jobs in an order where every job comes after those it requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Plan {
    pub workflows: Vec<PlannedWorkflow>,
}

impl Plan {
    /// The plan as YAML, as `runner config plan` prints it.
    pub fn to_yaml(&self) -> Result<String, serde_saphyr::SerializeError> {
        serde_saphyr::to_string(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedWorkflow {
    pub name: String,
    pub jobs: Vec<PlannedJob>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedJob {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: JobKind,
    pub state: JobState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<RequirementSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
}

/// Where a job starts: runnable now, waiting for upstream jobs, or waiting for a person's approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Blocked,
    OnHold,
}

/// A processed configuration that cannot be planned. [`crate::process()`] never produces one; a
/// [`ProcessedConfig`] read from elsewhere (the coordinator's database, a file) may.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "workflow `{workflow}`: job `{job}` requires `{required}`, which is not a job of the workflow: fix the \
         name or add the job"
    )]
    UnknownRequirement { workflow: String, job: String, required: String },
    #[error("workflow `{workflow}`: requires forms a cycle: {}: remove one of these requirements", cycle.join(" -> "))]
    Cycle { workflow: String, cycle: Vec<String> },
    #[error("workflow `{workflow}`: job `{job}` is listed twice: give one a different name")]
    DuplicateJob { workflow: String, job: String },
    #[error("workflow `{workflow}`: filter pattern `{pattern}` is not a valid regular expression: {reason}")]
    InvalidPattern { workflow: String, pattern: String, reason: String },
}

/// Plans `config` for `trigger`.
pub fn plan(config: &ProcessedConfig, trigger: &Trigger) -> Result<Plan, PlanError> {
    let mut out = Plan::default();
    for (name, w) in &config.workflows {
        check_patterns(name, w.triggers.iter().map(|t| &t.filters).chain(w.jobs.iter().map(|j| &j.filters)))?;
        let runs = match trigger {
            Trigger::Schedule { workflow, branch } => {
                workflow == name && w.triggers.iter().any(|t| branch_passes(&t.filters, branch))
            }
            _ => w.triggers.is_empty(),
        };
        // The graph is checked even when the workflow does not run: a broken config is broken on every trigger.
        let order = topological_order(name, &w.jobs)?;
        if !runs {
            continue;
        }
        let mut kept: BTreeSet<&str> = BTreeSet::new();
        let mut jobs = Vec::new();
        for i in order {
            let j = &w.jobs[i];
            let passes = match trigger {
                Trigger::Branch(b) | Trigger::Schedule { branch: b, .. } => branch_passes(&j.filters, b),
                Trigger::Tag(t) => tag_passes(&j.filters, t),
            };
            if !passes {
                continue;
            }
            let mut requires = Vec::new();
            let mut dropped = false;
            for r in &j.requires {
                if kept.contains(r.job.as_str()) {
                    requires.push(r.clone());
                } else if !r.statuses.iter().any(|s| matches!(s, JobStatus::NotRun | JobStatus::Terminal)) {
                    dropped = true;
                }
            }
            if dropped {
                continue;
            }
            kept.insert(&j.name);
            let state = match (j.kind, requires.is_empty()) {
                (_, false) => JobState::Blocked,
                (JobKind::Approval, true) => JobState::OnHold,
                _ => JobState::Queued,
            };
            jobs.push(PlannedJob { name: j.name.clone(), kind: j.kind, state, requires, context: j.context.clone() });
        }
        if !jobs.is_empty() {
            out.workflows.push(PlannedWorkflow { name: name.clone(), jobs });
        }
    }
    Ok(out)
}

fn check_patterns<'f>(workflow: &str, filters: impl Iterator<Item = &'f FiltersSpec>) -> Result<(), PlanError> {
    for f in filters {
        for filter in [&f.branches, &f.tags].into_iter().flatten() {
            for text in filter.only.iter().chain(&filter.ignore) {
                if let Pattern::Regex(re) = Pattern::parse(text) {
                    if let Err(e) = regex::Regex::new(&re) {
                        return Err(PlanError::InvalidPattern {
                            workflow: workflow.to_string(),
                            pattern: text.clone(),
                            reason: crate::read::first_line(&e.to_string()),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// `only` (when given) must match and `ignore` must not.
fn passes(filter: &FilterSpec, name: &str) -> bool {
    let matches = |patterns: &[String]| patterns.iter().any(|p| Pattern::parse(p).matches(name));
    (filter.only.is_empty() || matches(&filter.only)) && !matches(&filter.ignore)
}

fn branch_passes(filters: &FiltersSpec, branch: &str) -> bool {
    filters.branches.as_ref().is_none_or(|f| passes(f, branch))
}

fn tag_passes(filters: &FiltersSpec, tag: &str) -> bool {
    filters.tags.as_ref().is_some_and(|f| passes(f, tag))
}

/// Indices of `jobs` in an order where each comes after its requirements (file order among equals: Kahn's
/// algorithm taking the earliest ready job first), or the first problem.
fn topological_order(workflow: &str, jobs: &[crate::spec::WorkflowJobSpec]) -> Result<Vec<usize>, PlanError> {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, j) in jobs.iter().enumerate() {
        if index.insert(&j.name, i).is_some() {
            return Err(PlanError::DuplicateJob { workflow: workflow.to_string(), job: j.name.clone() });
        }
    }
    let mut waiting: Vec<usize> = vec![0; jobs.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); jobs.len()];
    for (i, j) in jobs.iter().enumerate() {
        for r in &j.requires {
            let Some(&up) = index.get(r.job.as_str()) else {
                return Err(PlanError::UnknownRequirement {
                    workflow: workflow.to_string(),
                    job: j.name.clone(),
                    required: r.job.clone(),
                });
            };
            waiting[i] += 1;
            dependents[up].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..jobs.len()).filter(|i| waiting[*i] == 0).collect();
    let mut order = Vec::with_capacity(jobs.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() < jobs.len() {
        let edges: BTreeMap<&str, Vec<&str>> =
            jobs.iter().map(|j| (j.name.as_str(), j.requires.iter().map(|r| r.job.as_str()).collect())).collect();
        let cycle = crate::validate::find_cycle(&edges).unwrap_or_default();
        return Err(PlanError::Cycle { workflow: workflow.to_string(), cycle });
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processed(text: &str) -> ProcessedConfig {
        crate::process_text(text, "t.yml", &crate::Options::default(), &crate::Pipeline::default())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `workflow: job(state) …` per planned workflow, for compact assertions.
    fn summary(p: &Plan) -> Vec<String> {
        p.workflows
            .iter()
            .map(|w| {
                let jobs: Vec<String> = w
                    .jobs
                    .iter()
                    .map(|j| {
                        format!("{}({})", j.name, serde_json::to_string(&j.state).unwrap_or_default().trim_matches('"'))
                    })
                    .collect();
                format!("{}: {}", w.name, jobs.join(" "))
            })
            .collect()
    }

    const RELEASE: &str = "version: 2.1\njobs:\n  build: {docker: [{image: x}], steps: [checkout]}\n\
        \x20 test: {docker: [{image: x}], steps: [checkout]}\n  deploy: {docker: [{image: x}], steps: [checkout]}\n\
        \x20 docs: {docker: [{image: x}], steps: [checkout]}\nworkflows:\n  release:\n    jobs:\n\
        \x20     - deploy: {requires: [hold], filters: {branches: {ignore: /.*/}, tags: {only: /^v.*/}}}\n\
        \x20     - hold: {type: approval, requires: [test], filters: {branches: {ignore: /.*/}, tags: {only: /^v.*/}}}\n\
        \x20     - test: {requires: [build], filters: {tags: {only: /.*/}}}\n\
        \x20     - build: {filters: {tags: {only: /.*/}}}\n\
        \x20     - docs: {filters: {branches: {only: [main, /docs-.*/], ignore: docs-old}}}\n";

    #[test]
    fn branches_run_what_their_filters_allow_in_dependency_order() {
        let p = processed(RELEASE);
        let main = plan(&p, &Trigger::Branch("main".into())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(summary(&main), ["release: build(queued) test(blocked) docs(queued)"]);
        let docs = plan(&p, &Trigger::Branch("docs-new".into())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(summary(&docs), ["release: build(queued) test(blocked) docs(queued)"]);
        // `only` matches, but `ignore` is considered after it and wins.
        let old = plan(&p, &Trigger::Branch("docs-old".into())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(summary(&old), ["release: build(queued) test(blocked)"]);
    }

    #[test]
    fn tags_run_only_jobs_with_a_tag_filter() {
        let p = processed(RELEASE);
        let v1 = plan(&p, &Trigger::Tag("v1.0.0".into())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(summary(&v1), ["release: build(queued) test(blocked) hold(blocked) deploy(blocked)"]);
        let other = plan(&p, &Trigger::Tag("nightly-3".into())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(summary(&other), ["release: build(queued) test(blocked)"]);
    }

    #[test]
    fn schedules_run_only_their_workflow_on_allowed_branches() {
        let p = processed(
            "version: 2.1\njobs:\n  a: {docker: [{image: x}], steps: [checkout]}\nworkflows:\n  push:\n    jobs: [a]\n\
             \x20 nightly:\n    triggers: [{schedule: {cron: '0 3 * * *', filters: {branches: {only: main}}}}]\n\
             \x20   jobs: [a]\n",
        );
        let push = plan(&p, &Trigger::Branch("main".into())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(summary(&push), ["push: a(queued)"]);
        let fired = Trigger::Schedule { workflow: "nightly".into(), branch: "main".into() };
        assert_eq!(summary(&plan(&p, &fired).unwrap_or_else(|e| panic!("{e}"))), ["nightly: a(queued)"]);
        let elsewhere = Trigger::Schedule { workflow: "nightly".into(), branch: "dev".into() };
        assert_eq!(summary(&plan(&p, &elsewhere).unwrap_or_else(|e| panic!("{e}"))), Vec::<String>::new());
    }

    #[test]
    fn filtered_upstreams_drop_dependents_unless_not_run_is_accepted() {
        let p = processed(
            "version: 2.1\njobs:\n  a: {docker: [{image: x}], steps: [checkout]}\nworkflows:\n  w:\n    jobs:\n\
             \x20     - a: {name: only-main, filters: {branches: {only: main}}}\n\
             \x20     - a: {name: after, requires: [only-main]}\n\
             \x20     - a: {name: cleanup, requires: [{only-main: terminal}]}\n      - hold: {type: approval}\n",
        );
        let dev = plan(&p, &Trigger::Branch("dev".into())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(summary(&dev), ["w: cleanup(queued) hold(on_hold)"]);
        let main = plan(&p, &Trigger::Branch("main".into())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(summary(&main), ["w: only-main(queued) after(blocked) cleanup(blocked) hold(on_hold)"]);
    }

    #[test]
    fn broken_graphs_are_typed_errors() {
        let mut p = processed(RELEASE);
        let jobs = &mut p.workflows.get_mut("release").map(|w| &mut w.jobs).unwrap_or_else(|| panic!("no release"));
        jobs[3].requires.push(RequirementSpec { job: "deploy".into(), statuses: vec![JobStatus::Success] });
        let err = plan(&p, &Trigger::Branch("main".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "workflow `release`: requires forms a cycle: build -> deploy -> hold -> test -> build: remove one of \
             these requirements"
        );
        let jobs = &mut p.workflows.get_mut("release").map(|w| &mut w.jobs).unwrap_or_else(|| panic!("no release"));
        jobs[3].requires[0].job = "nope".into();
        let err = plan(&p, &Trigger::Branch("main".into())).unwrap_err();
        assert!(matches!(err, PlanError::UnknownRequirement { ref required, .. } if required == "nope"), "{err}");
    }
}
