//! Which secrets a job sees: the project's environment variables and those of the job's contexts, decrypted —
//! none for a forked pull request unless the project allows it.

use std::collections::BTreeMap;

use crate::api::{AppState, Problem};
use crate::store::pipelines::PipelineRow;
use crate::store::projects::Project;

/// The secrets of a job of `pipeline` in `project` that names `contexts`.
pub async fn for_job(
    state: &AppState,
    project: &Project,
    pipeline: &PipelineRow,
    contexts: &[String],
) -> Result<BTreeMap<String, String>, Problem> {
    if pipeline.trigger.is_fork && !project.fork_secrets {
        return Ok(BTreeMap::new());
    }
    let mut out = BTreeMap::new();
    for (name, ciphertext) in state.store.secret_ciphertexts(project.id, contexts).await? {
        let value = state.secret_key.decrypt(&ciphertext).map_err(|e| {
            Problem::internal(format!("cannot decrypt secret `{name}` of `{}`: {e}: check the key file", project.slug))
        })?;
        out.insert(name, value);
    }
    Ok(out)
}
