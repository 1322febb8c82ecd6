//! Pipeline creation: a trigger (webhook, `coordinator trigger`, a local repository's hook) → the project's
//! mirror fetched → `.circleci/config.yml` read at the SHA → processed and planned by `config_schema` for the
//! branch or tag → one transaction storing pipeline, workflows and jobs ([`crate::store::pipelines`]). Anything
//! wrong with the configuration (missing, invalid, unplannable) makes a `config_error` pipeline with the located
//! message rather than an error: the user sees why nothing ran.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use config_schema::plan::Trigger;
use config_schema::{Options, Pipeline};

use crate::repo::{Mirror, RepoError};
use crate::store::pipelines::{Created, PipelineTrigger, Planned};
use crate::store::projects::Project;
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
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("repository mirror of `{project}`")]
    Repo {
        project: String,
        #[source]
        source: RepoError,
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
}

/// Creates the pipeline `req` asks for in `project`; returns what was stored.
pub async fn create(
    store: &Store,
    data_dir: &Path,
    project: &Project,
    req: &TriggerRequest,
) -> Result<Created, PipelineError> {
    create_inner(store, data_dir, project, req, None)
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
    create_inner(&state.store, &state.data_dir, project, req, Some(delivery_id)).await
}

async fn create_inner(
    store: &Store,
    data_dir: &Path,
    project: &Project,
    req: &TriggerRequest,
    delivery_id: Option<&str>,
) -> Result<Option<Created>, PipelineError> {
    let mut req = req.clone();
    if req.branch.is_none() && req.tag.is_none() {
        req.branch = Some(project.default_branch.clone());
    }
    let fetched = fetch(data_dir.to_path_buf(), project, &req).await?;
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
    let planned = plan(&fetched, &req);
    let created = match delivery_id {
        None => store.create_pipeline(project.id, &trigger, &planned).await?,
        Some(d) => match store.create_pipeline_for_delivery(d, project.id, &trigger, &planned).await? {
            Some(c) => c,
            None => return Ok(None),
        },
    };
    match &planned {
        Planned::ConfigError(message) => {
            tracing::warn!(project = %project.slug, pipeline.number = created.number, %message, "config error")
        }
        Planned::Ready { .. } => tracing::info!(
            project = %project.slug,
            pipeline.number = created.number,
            queued_jobs = created.queued_jobs,
            "pipeline created"
        ),
    }
    Ok(Some(created))
}

async fn fetch(data_dir: PathBuf, project: &Project, req: &TriggerRequest) -> Result<Fetched, PipelineError> {
    let slug = project.slug.clone();
    let id = project.id.to_string();
    let url = project.local_path.clone().unwrap_or_else(|| project.clone_url.clone());
    let req = req.clone();
    let repo_err = move |source| PipelineError::Repo { project: slug.clone(), source };
    let result = tokio::task::spawn_blocking(move || -> Result<Fetched, RepoError> {
        let mirror = Mirror::open(&data_dir, &id, &url)?;
        // A webhook names a full SHA; when the mirror holds that commit already (a redelivery, a branch or tag
        // created at a known commit, several pushes of one commit) a fetch brings nothing for this pipeline — the
        // configuration at a commit cannot change — and the fetch is most of a delivery's processing cost.
        let have_commit = req.sha.as_deref().is_some_and(|sha| {
            sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()) && mirror.resolve(sha).is_ok()
        });
        if !have_commit {
            mirror.fetch()?;
        }
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
        Ok(Fetched { sha, config, message: info.message, author: info.author_name })
    })
    .await
    .map_err(|e| PipelineError::Task(e.to_string()))?;
    result.map_err(repo_err)
}

/// The configuration processed and planned for the trigger, or the located message saying why not.
fn plan(fetched: &Fetched, req: &TriggerRequest) -> Planned {
    let Some(bytes) = &fetched.config else {
        return Planned::ConfigError(format!("{CONFIG_PATH}: not found at {}: add a configuration", fetched.sha));
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Planned::ConfigError(format!("{CONFIG_PATH}: not UTF-8 text"));
    };
    let mut values = BTreeMap::new();
    values.insert("git.revision".to_string(), fetched.sha.clone());
    if let Some(b) = &req.branch {
        values.insert("git.branch".to_string(), b.clone());
    }
    if let Some(t) = &req.tag {
        values.insert("git.tag".to_string(), t.clone());
    }
    values.insert("trigger_source".to_string(), req.source.clone());
    let pipeline = Pipeline { parameters: BTreeMap::new(), values };
    let config = match config_schema::process_text(text, CONFIG_PATH, &Options::default(), &pipeline) {
        Ok(c) => c,
        Err(diagnostics) => return Planned::ConfigError(diagnostics.to_string()),
    };
    let trigger = match (&req.tag, &req.branch) {
        (Some(tag), _) => Trigger::Tag(tag.clone()),
        (None, Some(branch)) => Trigger::Branch(branch.clone()),
        (None, None) => Trigger::Branch(String::new()),
    };
    match config_schema::plan(&config, &trigger) {
        Ok(plan) => Planned::Ready { config, plan },
        Err(e) => Planned::ConfigError(format!("{CONFIG_PATH}: {e}")),
    }
}
