//! Pipeline creation: a trigger (webhook, `coordinator trigger`, a local repository's hook) → the project's
//! mirror fetched → `.circleci/config.yml` read at the SHA → processed and planned by `config_schema` for the
//! branch or tag → one transaction storing pipeline, workflows and jobs ([`crate::store::pipelines`]). Anything
//! wrong with the configuration (missing, invalid, unplannable) makes a `config_error` pipeline with the located
//! message rather than an error: the user sees why nothing ran.
//!
//! The mirror is fetched with the GitHub token for private https repositories ([`GitAccess`]). Webhook
//! deliveries go in batches ([`create_for_delivery_batch`]): each distinct commit read and its configuration
//! checked once, every pipeline of the batch stored in one transaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use config_schema::plan::Trigger;
use config_schema::{Options, Pipeline};

use crate::github::access::GitAccess;
use crate::repo::{Mirror, RepoError};
use crate::store::pipelines::{BatchItem, BatchStored, Created, PipelineIds, PipelineTrigger, Planned};
use crate::store::projects::Project;
use crate::store::schedules::ConfigSchedule;
use crate::store::{Store, StoreError};

/// Where the configuration lives in a repository.
pub const CONFIG_PATH: &str = ".circleci/config.yml";
/// Largest configuration file read.
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct TriggerRequest {
    /// `webhook`, `api`, `schedule` or `local`.
    pub source: String,
    pub branch: Option<String>,
    pub tag: Option<String>,
    /// The commit; when absent, the tip of the branch or tag (the default branch when neither is given).
    pub sha: Option<String>,
    pub pr_number: Option<u64>,
    pub is_fork: bool,
    /// From the webhook; read from the commit when empty.
    pub commit_message: String,
    pub author: String,
    /// Only this workflow runs (a schedule's `--workflow`); a configuration without it is a config error.
    pub workflow: Option<String>,
    /// The schedule that fired: `(id, name)` for `<< pipeline.schedule.* >>`.
    pub schedule: Option<(i64, String)>,
    /// The schedule is a workflow's own `triggers: - schedule:` (planned as CircleCI plans a scheduled workflow:
    /// only that workflow, with its trigger's branch filters), not a project schedule (planned as a push).
    pub config_schedule: bool,
}

/// What a pipeline's creation also settles in its transaction.
#[derive(Debug, Clone, Copy)]
enum Claim<'a> {
    None,
    /// A webhook delivery, marked processed.
    Delivery(&'a str),
    /// A schedule's tick, marked processed.
    Tick(&'a crate::store::schedules::Tick),
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("repository mirror of `{project}`")]
    Repo {
        project: String,
        #[source]
        source: RepoError,
    },
    #[error("git access to the repository of `{project}`")]
    Access {
        project: String,
        #[source]
        source: crate::github::access::AccessError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the repository task failed: {0}")]
    Task(String),
}

/// What the mirror says about the trigger.
struct Fetched {
    sha: String,
    config: Option<Vec<u8>>,
    message: String,
    author: String,
    /// The mirror was fetched from the remote (not skipped because it held the commit already).
    from_remote: bool,
}

/// Creates the pipeline `req` asks for in `project`; returns what was stored.
pub async fn create(
    store: &Store,
    data_dir: &Path,
    project: &Project,
    req: &TriggerRequest,
) -> Result<Created, PipelineError> {
    create_with_access(store, data_dir, None, project, req).await
}

/// [`create`], fetching a GitHub project's https repository with `access` (private repositories).
pub async fn create_with_access(
    store: &Store,
    data_dir: &Path,
    access: Option<&GitAccess>,
    project: &Project,
    req: &TriggerRequest,
) -> Result<Created, PipelineError> {
    create_inner(store, data_dir, access, project, req, Claim::None)
        .await?
        .ok_or_else(|| PipelineError::Task("the pipeline was not stored".into()))
}

/// Creates the pipeline of webhook delivery `delivery_id` and marks the delivery processed in the same
/// transaction; `None` when it had been processed already.
pub async fn create_for_delivery(
    state: &crate::api::AppState,
    project: &Project,
    req: &TriggerRequest,
    delivery_id: &str,
) -> Result<Option<Created>, PipelineError> {
    create_inner(&state.store, &state.data_dir, state.git_access.as_ref(), project, req, Claim::Delivery(delivery_id))
        .await
}

/// Creates the pipeline of a schedule's tick and marks the tick processed in the same transaction; `None` when
/// another coordinator processed it first.
pub async fn create_for_tick(
    state: &crate::api::AppState,
    project: &Project,
    tick: &crate::store::schedules::Tick,
) -> Result<Option<Created>, PipelineError> {
    let req = TriggerRequest {
        source: "schedule".into(),
        branch: Some(tick.schedule.branch.clone()),
        workflow: tick.schedule.workflow.clone(),
        schedule: Some((tick.schedule.id, tick.schedule.name.clone())),
        config_schedule: tick.schedule.source == "config",
        ..Default::default()
    };
    create_inner(&state.store, &state.data_dir, state.git_access.as_ref(), project, &req, Claim::Tick(tick)).await
}

async fn create_inner(
    store: &Store,
    data_dir: &Path,
    access: Option<&GitAccess>,
    project: &Project,
    req: &TriggerRequest,
    claim: Claim<'_>,
) -> Result<Option<Created>, PipelineError> {
    let req = with_default_ref(req, project);
    let commit = load_commit(store, data_dir.to_path_buf(), access, project, &req).await?;
    let prepared = Prepared::new(req, commit);
    let (planned, declared) = prepared.planner(project);
    let created = match claim {
        Claim::None => Some(store.create_pipeline_with(project.id, &prepared.trigger, planned).await?),
        Claim::Delivery(d) => store.create_pipeline_for_delivery(d, project.id, &prepared.trigger, planned).await?,
        Claim::Tick(tick) => store.create_pipeline_for_tick(tick, &prepared.trigger, planned).await?,
    };
    let Some(created) = created else {
        return Ok(None);
    };
    log_created(project, &created);
    let declared = declared.lock().unwrap_or_else(|e| e.into_inner()).take();
    after_created(store, project, &prepared, created.pipeline_id, declared).await?;
    Ok(Some(created))
}

/// A webhook delivery's share of a batch ([`create_for_delivery_batch`]).
#[expect(clippy::large_enum_variant, reason = "a batch holds at most a few hundred, built once: boxing buys nothing")]
pub enum DeliveryWork {
    /// The delivery asks for this pipeline.
    Pipeline { delivery_id: String, project: Project, req: TriggerRequest },
    /// No pipeline: the delivery is marked processed with this outcome (`ping`, why not).
    Outcome { delivery_id: String, outcome: String },
}

/// What became of one delivery of a batch.
#[derive(Debug)]
pub enum DeliveryDone {
    Created(Created),
    /// Processed without a pipeline; the outcome recorded (an unreadable repository's error among them).
    Recorded(String),
    /// Another coordinator processed it first.
    AlreadyProcessed,
    /// Still unprocessed: the batch's time budget was spent first.
    NotReached,
}

/// Creates the pipelines of a batch of webhook deliveries, all in one transaction with their "processed" marks
/// (`Store::store_delivery_batch`: a crash loses nothing and doubles nothing). The commits they name are read
/// from the mirrors once per distinct commit (a burst of pushes, redeliveries, one commit on several branches),
/// and their configurations parsed and validated once, before the transaction; each pipeline's configuration is
/// processed in the transaction (it sees `<< pipeline.number >>`). A repository that cannot be read records an
/// error for its deliveries only. Auto-cancel and configuration schedules follow the commit, per branch, as if
/// the deliveries had been processed one by one. An `Err` means the transaction failed and nothing was stored:
/// process the deliveries one at a time instead.
pub async fn create_for_delivery_batch(
    store: &Store,
    data_dir: &Path,
    access: Option<&GitAccess>,
    work: Vec<DeliveryWork>,
    budget: std::time::Duration,
) -> Result<Vec<DeliveryDone>, PipelineError> {
    use std::collections::HashMap;
    type CommitKey = (i64, Option<String>, Option<String>, Option<String>, Option<u64>);
    let mut commits: HashMap<CommitKey, Result<Arc<Commit>, String>> = HashMap::new();
    // Per item: the prepared pipeline, or the outcome to record.
    let mut prepared: Vec<Result<(Prepared, &Project), String>> = Vec::with_capacity(work.len());
    for item in &work {
        match item {
            DeliveryWork::Outcome { outcome, .. } => prepared.push(Err(outcome.clone())),
            DeliveryWork::Pipeline { project, req, .. } => {
                let req = with_default_ref(req, project);
                let key = (project.id, req.sha.clone(), req.branch.clone(), req.tag.clone(), req.pr_number);
                if let std::collections::hash_map::Entry::Vacant(slot) = commits.entry(key.clone()) {
                    let loaded = load_commit(store, data_dir.to_path_buf(), access, project, &req).await.map_err(|e| {
                        tracing::error!(project = %project.slug, error = %error_chain(&e), "cannot read the commit");
                        format!("error: {}", error_chain(&e))
                    });
                    slot.insert(loaded);
                }
                prepared.push(match &commits[&key] {
                    Ok(commit) => Ok((Prepared::new(req, commit.clone()), project)),
                    Err(outcome) => Err(outcome.clone()),
                });
            }
        }
    }
    let mut declared: Vec<Option<Declared>> = Vec::with_capacity(work.len());
    let mut items = Vec::with_capacity(work.len());
    for (item, prepared) in work.iter().zip(&prepared) {
        let delivery_id = match item {
            DeliveryWork::Pipeline { delivery_id, .. } | DeliveryWork::Outcome { delivery_id, .. } => delivery_id,
        };
        match prepared {
            Ok((p, project)) => {
                let (planner, learnt) = p.planner(project);
                declared.push(Some(learnt));
                items.push(BatchItem::Pipeline {
                    delivery_id,
                    project_id: project.id,
                    trigger: &p.trigger,
                    plan: Box::new(planner),
                });
            }
            Err(outcome) => {
                declared.push(None);
                items.push(BatchItem::Outcome { delivery_id, outcome });
            }
        }
    }
    let stored = store.store_delivery_batch(items, budget).await?;

    // After the commit, per (project, branch) in delivery order: the newest pipeline cancels the older ones, and
    // the last configuration that could be planned sets the configuration schedules.
    let mut newest: HashMap<(i64, String), (usize, i64)> = HashMap::new();
    let mut schedules: HashMap<(i64, String), (usize, Vec<ConfigSchedule>)> = HashMap::new();
    let mut done = Vec::with_capacity(stored.len());
    for (i, s) in stored.into_iter().enumerate() {
        done.push(match s {
            BatchStored::Created(created) => {
                if let Ok((p, project)) = &prepared[i] {
                    log_created(project, &created);
                    if let Some(branch) = &p.trigger.branch {
                        newest.insert((project.id, branch.clone()), (i, created.pipeline_id));
                        let learnt =
                            declared[i].as_ref().and_then(|d| d.lock().unwrap_or_else(|e| e.into_inner()).take());
                        if let Some(learnt) = learnt.filter(|_| changes_schedules(&p.req)) {
                            schedules.insert((project.id, branch.clone()), (i, learnt));
                        }
                    }
                }
                DeliveryDone::Created(created)
            }
            BatchStored::Recorded => DeliveryDone::Recorded(match &prepared[i] {
                Err(outcome) => outcome.clone(),
                Ok(_) => "pipeline".into(),
            }),
            BatchStored::AlreadyProcessed => DeliveryDone::AlreadyProcessed,
            BatchStored::NotReached => DeliveryDone::NotReached,
        });
    }
    // The pipelines are stored: a failure here is logged, never a reason to process the deliveries again.
    for (i, pipeline_id) in newest.into_values() {
        if let Ok((p, project)) = &prepared[i] {
            if let Err(e) = auto_cancel(store, project, &p.trigger, pipeline_id).await {
                tracing::error!(project = %project.slug, pipeline.id = pipeline_id, error = %error_chain(&e),
                    "cannot cancel the branch's redundant pipelines");
            }
        }
    }
    for (i, learnt) in schedules.into_values() {
        if let Ok((p, project)) = &prepared[i] {
            if let Err(e) = sync_schedules(store, project, &p.req, &learnt).await {
                tracing::error!(project = %project.slug, error = %error_chain(&e),
                    "cannot update the configuration schedules");
            }
        }
    }
    Ok(done)
}

/// An error and its sources, `: `-separated (the outcome recorded for a delivery names the cause).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The request with the project's default branch when it names neither a branch nor a tag.
fn with_default_ref(req: &TriggerRequest, project: &Project) -> TriggerRequest {
    let mut req = req.clone();
    if req.branch.is_none() && req.tag.is_none() {
        req.branch = Some(project.default_branch.clone());
    }
    req
}

fn log_created(project: &Project, created: &Created) {
    match &created.config_error {
        Some(message) => {
            tracing::warn!(project = %project.slug, pipeline.number = created.number, %message, "config error")
        }
        None => tracing::info!(
            project = %project.slug,
            pipeline.number = created.number,
            queued_jobs = created.queued_jobs,
            "pipeline created"
        ),
    }
}

/// What happens after a pipeline's transaction: auto-cancel of the branch's older pipelines, and the branch's
/// configuration schedules made those `declared` (learnt while planning) when the pipeline is a push's.
async fn after_created(
    store: &Store,
    project: &Project,
    prepared: &Prepared,
    pipeline_id: i64,
    declared: Option<Vec<ConfigSchedule>>,
) -> Result<(), PipelineError> {
    auto_cancel(store, project, &prepared.trigger, pipeline_id).await?;
    if let Some(declared) = declared {
        sync_schedules(store, project, &prepared.req, &declared).await?;
    }
    Ok(())
}

/// A push's configuration says which workflows run on a schedule on its branch (`declared`); a schedule's own
/// pipeline, a tag and a fork's pull request (its branch is not the project's) change nothing.
fn changes_schedules(req: &TriggerRequest) -> bool {
    req.branch.is_some() && req.source != "schedule" && req.tag.is_none() && !req.is_fork
}

async fn sync_schedules(
    store: &Store,
    project: &Project,
    req: &TriggerRequest,
    declared: &[ConfigSchedule],
) -> Result<(), PipelineError> {
    let Some(branch) = req.branch.as_deref().filter(|_| changes_schedules(req)) else {
        return Ok(());
    };
    let (added, removed) =
        store.sync_config_schedules(project.id, branch, declared, &crate::scheduler::next_tick_after).await?;
    if added + removed > 0 {
        tracing::info!(project = %project.slug, %branch, added, removed, "configuration schedules updated");
    }
    Ok(())
}

/// A commit as the mirror holds it, with its configuration already parsed and validated (`config_schema::check`):
/// both depend on the commit only, so deliveries naming one commit share them. What depends on the pipeline
/// (`<< pipeline.number >>`, the trigger) is processed per pipeline, inside its transaction.
pub(crate) struct Commit {
    fetched: Fetched,
    /// `None` when the file is missing or not UTF-8 (`Planned::ConfigError` says which).
    checked: Option<Result<config_schema::Config, config_schema::Diagnostics>>,
}

/// Fetches (when needed) and reads the commit `req` names, and checks its configuration. Blocking work runs on
/// the blocking pool. A failed fetch is recorded on the project (its dashboard page shows it), and a successful
/// one clears that record ([`note_fetch`]).
pub(crate) async fn load_commit(
    store: &Store,
    data_dir: PathBuf,
    access: Option<&GitAccess>,
    project: &Project,
    req: &TriggerRequest,
) -> Result<Arc<Commit>, PipelineError> {
    let fetched = match GitAccess::token_for(access, project).await {
        Ok(token) => fetch(data_dir, token, project, req).await,
        Err(source) => Err(PipelineError::Access { project: project.slug.clone(), source }),
    };
    note_fetch(store, project, &fetched).await;
    let fetched = fetched?;
    let commit = tokio::task::spawn_blocking(move || {
        let checked = fetched
            .config
            .as_deref()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .map(|text| config_schema::check(text, CONFIG_PATH, &Options::default()));
        Commit { fetched, checked }
    })
    .await
    .map_err(|e| PipelineError::Task(e.to_string()))?;
    Ok(Arc::new(commit))
}

/// Records on the project why its mirror could not be fetched (no token, unreachable, stalled, refused), or
/// clears an earlier record once a fetch from the remote succeeded. Other errors (a commit or file not in the
/// fetched mirror) are the trigger's, not the repository's, and change nothing. A failure to write this is
/// logged: it must not stand in the way of the pipeline.
async fn note_fetch(store: &Store, project: &Project, fetched: &Result<Fetched, PipelineError>) {
    let change = match fetched {
        Err(e @ PipelineError::Access { .. }) => Some(Some(error_chain(e))),
        Err(e @ PipelineError::Repo { source, .. }) if source.is_fetch_failure() => Some(Some(error_chain(e))),
        Ok(f) if f.from_remote && project.fetch_error.is_some() => Some(None),
        _ => None,
    };
    if let Some(message) = change {
        if let Err(e) = store.set_fetch_error(project.id, message.as_deref()).await {
            tracing::error!(project = %project.slug, error = %e, "cannot record the outcome of the mirror fetch");
        }
    }
}

/// One pipeline about to be stored: the request (branch or tag settled), its commit, and the trigger row.
pub(crate) struct Prepared {
    pub(crate) req: TriggerRequest,
    commit: Arc<Commit>,
    pub(crate) trigger: PipelineTrigger,
}

/// The configuration schedules a planner learnt (see [`Prepared::planner`]).
pub(crate) type Declared = Arc<std::sync::Mutex<Option<Vec<ConfigSchedule>>>>;

impl Prepared {
    /// `req` must name a branch or a tag ([`with_default_ref`]).
    pub(crate) fn new(req: TriggerRequest, commit: Arc<Commit>) -> Prepared {
        let fetched = &commit.fetched;
        let trigger = PipelineTrigger {
            source: req.source.clone(),
            branch: req.branch.clone(),
            tag: req.tag.clone(),
            sha: fetched.sha.clone(),
            pr_number: req.pr_number.map(|n| n as i64),
            is_fork: req.is_fork,
            commit_message: if req.commit_message.is_empty() {
                fetched.message.clone()
            } else {
                req.commit_message.clone()
            },
            author: if req.author.is_empty() { fetched.author.clone() } else { req.author.clone() },
        };
        Prepared { req, commit, trigger }
    }

    /// The planner the store calls inside the pipeline's transaction (once its ID and number exist), and where
    /// it leaves the configuration's scheduled workflows for this branch (see [`after_created`]).
    pub(crate) fn planner<'a>(
        &'a self,
        project: &'a Project,
    ) -> (impl FnOnce(PipelineIds) -> Planned + Send + 'a, Declared) {
        let declared: Declared = Arc::default();
        let out = declared.clone();
        let planner = move |ids: PipelineIds| {
            let planned = plan(&self.commit, &self.req, project, ids);
            if let (Planned::Ready { config, .. }, Some(branch)) = (&planned, &self.req.branch) {
                *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(config_schedules(config, branch));
            }
            planned
        };
        (planner, declared)
    }
}

/// The `triggers: - schedule:` of `config` whose filters let `branch` through (and whose workflow then has jobs
/// to run), one per workflow and cron.
fn config_schedules(config: &config_schema::ProcessedConfig, branch: &str) -> Vec<ConfigSchedule> {
    let mut out: Vec<ConfigSchedule> = Vec::new();
    for (name, workflow) in &config.workflows {
        for t in &workflow.triggers {
            // Planning the workflow with this one trigger applies CircleCI's filter rules exactly.
            let mut only = config.clone();
            only.workflows = BTreeMap::from([(
                name.clone(),
                config_schema::spec::WorkflowSpec { triggers: vec![t.clone()], jobs: workflow.jobs.clone() },
            )]);
            let trigger = Trigger::Schedule { workflow: name.clone(), branch: branch.to_string() };
            let runs = config_schema::plan(&only, &trigger).is_ok_and(|p| !p.workflows.is_empty());
            let c = ConfigSchedule { workflow: name.clone(), cron: t.cron.clone() };
            if runs && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

async fn fetch(
    data_dir: PathBuf,
    token: Option<String>,
    project: &Project,
    req: &TriggerRequest,
) -> Result<Fetched, PipelineError> {
    let slug = project.slug.clone();
    let id = project.id.to_string();
    let url = project.local_path.clone().unwrap_or_else(|| project.clone_url.clone());
    let req = req.clone();
    let repo_err = move |source| PipelineError::Repo { project: slug.clone(), source };
    let result = tokio::task::spawn_blocking(move || -> Result<Fetched, RepoError> {
        let mut mirror = Mirror::open(&data_dir, &id, &url)?;
        if let Some(token) = &token {
            mirror = mirror.with_access_token(token);
        }
        // A webhook names a full SHA; when the mirror holds that commit already (a redelivery, a branch or tag
        // created at a known commit, several pushes of one commit) a fetch brings nothing for this pipeline — the
        // configuration at a commit cannot change — and the fetch is most of a delivery's processing cost.
        let have_commit = req.sha.as_deref().is_some_and(|sha| {
            sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()) && mirror.resolve(sha).is_ok()
        });
        if !have_commit {
            mirror.fetch()?;
        }
        let from_remote = !have_commit;
        if let Some(n) = req.pr_number {
            // A fork's head is only reachable under refs/pull/N/head (GitHub); a local remote has none.
            let _ = mirror.fetch_pull_request(n);
        }
        let sha = match (&req.sha, &req.tag, &req.branch) {
            (Some(sha), _, _) => mirror.resolve(sha)?,
            (None, Some(tag), _) => mirror.resolve(&format!("refs/tags/{tag}"))?,
            (None, None, Some(branch)) => mirror.resolve(&format!("refs/heads/{branch}"))?,
            (None, None, None) => mirror.resolve("HEAD")?,
        };
        let config = mirror.read_file_limited(&sha, CONFIG_PATH, MAX_CONFIG_BYTES)?;
        let info = mirror.commit_info(&sha)?;
        Ok(Fetched { sha, config, message: info.message, author: info.author_name, from_remote })
    })
    .await
    .map_err(|e| PipelineError::Task(e.to_string()))?;
    result.map_err(repo_err)
}

/// The configuration processed and planned for the trigger, or the located message saying why not.
fn plan(commit: &Commit, req: &TriggerRequest, project: &Project, ids: PipelineIds) -> Planned {
    let fetched = &commit.fetched;
    let checked = match &commit.checked {
        Some(checked) => checked,
        None if fetched.config.is_none() => {
            return Planned::ConfigError(format!("{CONFIG_PATH}: not found at {}: add a configuration", fetched.sha))
        }
        None => return Planned::ConfigError(format!("{CONFIG_PATH}: not UTF-8 text")),
    };
    let model = match checked {
        Ok(model) => model,
        Err(diagnostics) => return Planned::ConfigError(diagnostics.to_string()),
    };
    let values = pipeline_values(&fetched.sha, req, project, ids);
    let pipeline = Pipeline { parameters: BTreeMap::new(), values };
    let config = match config_schema::process(model, CONFIG_PATH, &pipeline) {
        Ok(c) => c,
        Err(diagnostics) => return Planned::ConfigError(diagnostics.to_string()),
    };
    let trigger = match (&req.tag, &req.branch, &req.workflow) {
        (None, Some(branch), Some(workflow)) if req.config_schedule => {
            Trigger::Schedule { workflow: workflow.clone(), branch: branch.clone() }
        }
        (Some(tag), _, _) => Trigger::Tag(tag.clone()),
        (None, Some(branch), _) => Trigger::Branch(branch.clone()),
        (None, None, _) => Trigger::Branch(String::new()),
    };
    match config_schema::plan(&config, &trigger) {
        Ok(mut plan) => {
            if let Some(only) = &req.workflow {
                plan.workflows.retain(|w| &w.name == only);
                if plan.workflows.is_empty() {
                    return Planned::ConfigError(format!(
                        "{CONFIG_PATH}: workflow `{only}` does not run on this branch (it is missing, or its \
                         filters or triggers skip the branch): fix the schedule's --workflow or the configuration"
                    ));
                }
            }
            Planned::Ready { config, plan }
        }
        Err(e) => Planned::ConfigError(format!("{CONFIG_PATH}: {e}")),
    }
}

/// With the project's auto-cancel on, a new pipeline on a branch other than the default cancels the branch's
/// older unfinished pipelines (their jobs not yet running end `canceled`, running ones are told to stop).
async fn auto_cancel(
    store: &Store,
    project: &Project,
    trigger: &PipelineTrigger,
    pipeline_id: i64,
) -> Result<(), PipelineError> {
    let Some(branch) = trigger.branch.as_deref() else {
        return Ok(());
    };
    if !project.auto_cancel_redundant || trigger.tag.is_some() || branch == project.default_branch {
        return Ok(());
    }
    let canceled = store.cancel_redundant(project.id, branch, pipeline_id).await?;
    if !canceled.is_empty() {
        tracing::info!(project = %project.slug, %branch, pipelines = ?canceled, "redundant pipelines canceled");
    }
    Ok(())
}

/// The `<< pipeline.* >>` values of a pipeline (config_schema's `PIPELINE_VALUES`; the ones not known here stay
/// empty): its ID and number, the project's URL and type, the git reference and what triggered it.
fn pipeline_values(sha: &str, req: &TriggerRequest, project: &Project, ids: PipelineIds) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    values.insert("id".to_string(), ids.id.to_string());
    values.insert("number".to_string(), ids.number.to_string());
    values.insert("git.revision".to_string(), sha.to_string());
    if let Some(b) = &req.branch {
        values.insert("git.branch".to_string(), b.clone());
    }
    if let Some(t) = &req.tag {
        values.insert("git.tag".to_string(), t.clone());
    }
    values.insert("trigger_source".to_string(), req.source.clone());
    if let Some((id, name)) = &req.schedule {
        values.insert("schedule.id".to_string(), id.to_string());
        values.insert("schedule.name".to_string(), name.clone());
    }
    let (url, kind) = match &project.local_path {
        Some(path) => (path.clone(), "local"),
        None => (project.clone_url.clone(), "github"),
    };
    values.insert("project.git_url".to_string(), url);
    values.insert("project.type".to_string(), kind.to_string());
    values
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::projects::NewProject;
    use crate::store::testing;

    /// A local project over a repository whose `main` and `feature` branches hold `config`.
    pub(crate) async fn local_project(db: &testing::TestDb, config: &str) -> Project {
        let repo_dir = db.dir.path().join("repo");
        let sha = crate::api::webhooks::tests::repository(&repo_dir, config);
        let repo = git2::Repository::open(&repo_dir).unwrap_or_else(|e| panic!("{e}"));
        let oid = git2::Oid::from_str(&sha).unwrap_or_else(|e| panic!("{e}"));
        repo.reference("refs/heads/feature", oid, false, "test").unwrap_or_else(|e| panic!("{e}"));
        let local = repo_dir.display().to_string();
        db.store
            .add_project(&NewProject {
                slug: "app".into(),
                clone_url: local.clone(),
                local_path: Some(local),
                webhook_secret_enc: None,
                default_branch: "main".into(),
                fork_secrets: false,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const ONE_JOB: &str =
        "version: 2.1\njobs:\n  build: {docker: [{image: busybox}], steps: [{run: 'true'}]}\nworkflows:\n  main:\n    \
         jobs: [build]\n";

    /// Issue 8: a repository that cannot be fetched is recorded on the project with the error and its time (the
    /// dashboard's project page shows it), and the next successful fetch clears the record.
    #[tokio::test]
    async fn a_failed_fetch_is_recorded_on_the_project_until_a_fetch_succeeds() {
        use web::Dashboard;
        for db in testing::databases().await {
            let name = db.name;
            let data_dir = db.dir.path().join("data");
            let repo_dir = db.dir.path().join("repo-not-yet");
            let url = repo_dir.display().to_string();
            let added = db
                .store
                .add_project(&NewProject {
                    slug: "acme/app".into(),
                    clone_url: url.clone(),
                    local_path: None,
                    webhook_secret_enc: None,
                    default_branch: "main".into(),
                    fork_secrets: false,
                })
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(added.fetch_error, None, "{name}");
            let req = TriggerRequest { source: "api".into(), branch: Some("main".into()), ..Default::default() };
            let before = crate::store::now_ms();
            let err = create(&db.store, &data_dir, &added, &req).await.expect_err("nothing to fetch yet");
            let project = db.store.project(added.id).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let recorded = project.fetch_error.clone().unwrap_or_else(|| panic!("{name}: no fetch error recorded"));
            assert_eq!(recorded.message, error_chain(&err), "{name}");
            assert!(recorded.message.contains("acme/app") && recorded.message.contains(&url), "{name}: {recorded:?}");
            assert!(recorded.at_ms >= before, "{name}: {recorded:?}");

            // The dashboard's project page gets it.
            let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
                .unwrap_or_else(|e| panic!("{e}"));
            let state = crate::api::AppState::new(db.store.clone(), data_dir.clone(), key);
            let dashboard = crate::dashboard::CoordinatorDashboard::new(state);
            let page = dashboard.project("acme/app").await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                page.fetch_error,
                Some(web::model::FetchError { message: recorded.message.clone(), at: recorded.at_ms as u64 }),
                "{name}"
            );

            // The repository appears: the fetch succeeds, the pipeline is made and the record is gone.
            crate::api::webhooks::tests::repository(&repo_dir, ONE_JOB);
            create(&db.store, &data_dir, &project, &req).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let project = db.store.project(added.id).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(project.fetch_error, None, "{name}");
            let page = dashboard.project("acme/app").await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(page.fetch_error, None, "{name}");
        }
    }

    #[tokio::test]
    async fn a_branch_pipeline_cancels_the_branchs_older_ones_but_never_the_default_branchs() {
        for db in testing::databases().await {
            let name = db.name;
            local_project(&db, ONE_JOB).await;
            let project = db.store.set_project_options("app", Some(true), None).await.unwrap_or_else(|e| panic!("{e}"));
            let data = db.dir.path().join("data");
            let on = |branch: &str| TriggerRequest {
                source: "api".into(),
                branch: Some(branch.into()),
                ..Default::default()
            };
            let mut made = Vec::new();
            for branch in ["feature", "feature", "main", "main"] {
                made.push(create(&db.store, &data, &project, &on(branch)).await.unwrap_or_else(|e| panic!("{e}")));
            }
            let mut states = Vec::new();
            for c in &made {
                states.push(db.store.pipeline(c.pipeline_id).await.map(|p| p.state).unwrap_or_default());
            }
            assert_eq!(states, ["canceled", "running", "running", "running"], "{name}");
            let jobs = db.store.pipeline_jobs(made[0].pipeline_id).await.unwrap_or_default();
            assert_eq!(jobs.iter().map(|j| j.state.as_str()).collect::<Vec<_>>(), ["canceled"], "{name}");
        }
    }

    /// `<< pipeline.number >>` and `<< pipeline.id >>` are the pipeline's own (they were empty: config_schema
    /// was never given them).
    #[tokio::test]
    async fn the_config_sees_the_pipelines_number_and_id() {
        for db in testing::databases().await {
            let repo_dir = db.dir.path().join("repo");
            crate::api::webhooks::tests::repository(
                &repo_dir,
                "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox}]\n    steps:\n      - run: echo \
                 'n=<< pipeline.number >> id=<< pipeline.id >> type=<< pipeline.project.type >>'\nworkflows:\n  \
                 main:\n    jobs: [build]\n",
            );
            let local = repo_dir.display().to_string();
            let project = db
                .store
                .add_project(&NewProject {
                    slug: "app".into(),
                    clone_url: local.clone(),
                    local_path: Some(local),
                    webhook_secret_enc: None,
                    default_branch: "main".into(),
                    fork_secrets: false,
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let data = db.dir.path().join("data");
            let req = TriggerRequest { source: "api".into(), ..Default::default() };
            for number in 1..=2 {
                let created = create(&db.store, &data, &project, &req).await.unwrap_or_else(|e| panic!("{e}"));
                assert_eq!((created.number, created.config_error.as_deref()), (number, None), "{}", db.name);
                let jobs = db.store.pipeline_jobs(created.pipeline_id).await.unwrap_or_default();
                let spec = jobs.first().and_then(|j| j.spec_json.clone()).unwrap_or_default();
                let want = format!("n={number} id={} type=local", created.pipeline_id);
                assert!(spec.contains(&want), "{}: {want} not in {spec}", db.name);
            }
        }
    }
}
