//! Project settings from the command line or the API, checked before they are stored.

use std::path::Path;

use crate::store::projects::NewProject;

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("a GitHub project is named `owner/repo`, got `{0}`")]
    BadSlug(String),
    #[error("give either --clone-url URL (GitHub) or --local PATH (a local repository)")]
    NoSource,
    #[error("{path} is not a git repository: {reason}")]
    NotARepository { path: String, reason: String },
}

/// A project named `name`: a GitHub repository cloned from `clone_url`, or the local repository at `local`.
pub fn new_project(
    name: &str,
    clone_url: Option<&str>,
    local: Option<&Path>,
    default_branch: &str,
    fork_secrets: bool,
) -> Result<NewProject, ProjectError> {
    match (clone_url, local) {
        (Some(url), None) => {
            let ok = name.split_once('/').is_some_and(|(o, r)| {
                let part = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                part(o) && part(r)
            });
            if !ok {
                return Err(ProjectError::BadSlug(name.to_string()));
            }
            Ok(NewProject {
                slug: name.to_string(),
                clone_url: url.to_string(),
                local_path: None,
                webhook_secret_enc: None,
                default_branch: default_branch.to_string(),
                fork_secrets,
            })
        }
        (None, Some(path)) => {
            let abs = std::fs::canonicalize(path).map_err(|e| ProjectError::NotARepository {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            if !abs.join(".git").exists() && !abs.join("HEAD").exists() {
                return Err(ProjectError::NotARepository {
                    path: abs.display().to_string(),
                    reason: "no .git or HEAD inside".into(),
                });
            }
            let abs = abs.display().to_string();
            Ok(NewProject {
                slug: name.to_string(),
                clone_url: abs.clone(),
                local_path: Some(abs),
                webhook_secret_enc: None,
                default_branch: default_branch.to_string(),
                fork_secrets,
            })
        }
        _ => Err(ProjectError::NoSource),
    }
}
