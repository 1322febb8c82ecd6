//! Projects: a GitHub repository (`owner/repo`, clone URL, webhook secret) or a local repository path.

use serde::Serialize;
use sqlx::any::AnyRow;

use super::{col, now_ms, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Project {
    pub id: i64,
    /// `owner/repo` for GitHub projects; the name given for local ones.
    pub slug: String,
    pub clone_url: String,
    pub local_path: Option<String>,
    /// The webhook secret, encrypted with the coordinator's key (never serialised).
    #[serde(skip)]
    pub webhook_secret_enc: Option<String>,
    pub default_branch: String,
    /// Whether forked pull requests get the project's secrets.
    pub fork_secrets: bool,
    /// Whether a new pipeline on a branch other than the default cancels the branch's older unfinished ones.
    pub auto_cancel_redundant: bool,
    /// At most this many of the project's jobs run at once (the others stay queued); `None`: no limit.
    pub max_concurrent_jobs: Option<i64>,
    /// The latest failure to fetch the repository mirror and when (Unix ms); `None` once a fetch succeeded.
    pub fetch_error: Option<FetchError>,
}

/// Why the latest fetch of a project's mirror failed ([`Store::set_fetch_error`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FetchError {
    pub message: String,
    pub at_ms: i64,
}

/// What `project add` stores.
#[derive(Debug, Clone)]
pub struct NewProject {
    pub slug: String,
    pub clone_url: String,
    pub local_path: Option<String>,
    pub webhook_secret_enc: Option<String>,
    pub default_branch: String,
    pub fork_secrets: bool,
}

const COLUMNS: &str = "id, slug, clone_url, local_path, webhook_secret_enc, default_branch, fork_secrets, \
                       auto_cancel_redundant, max_concurrent_jobs, fetch_error, fetch_error_at";

fn read(row: &AnyRow) -> Result<Project> {
    Ok(Project {
        id: col(row, "id")?,
        slug: col(row, "slug")?,
        clone_url: col(row, "clone_url")?,
        local_path: col(row, "local_path")?,
        webhook_secret_enc: col(row, "webhook_secret_enc")?,
        default_branch: col(row, "default_branch")?,
        fork_secrets: col::<i64>(row, "fork_secrets")? != 0,
        auto_cancel_redundant: col::<i64>(row, "auto_cancel_redundant")? != 0,
        max_concurrent_jobs: col(row, "max_concurrent_jobs")?,
        fetch_error: match (col::<Option<String>>(row, "fetch_error")?, col::<Option<i64>>(row, "fetch_error_at")?) {
            (Some(message), Some(at_ms)) => Some(FetchError { message, at_ms }),
            _ => None,
        },
    })
}

impl Store {
    pub async fn add_project(&self, p: &NewProject) -> Result<Project> {
        let mut w = self.write().await?;
        let exists =
            sqlx::query("SELECT id FROM projects WHERE slug = $1").bind(&p.slug).fetch_optional(&mut *w.tx).await?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!(
                "project `{}` exists already: remove it first or pick another name",
                p.slug
            )));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO projects (slug, clone_url, local_path, webhook_secret_enc, default_branch, fork_secrets, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
        ))
        .bind(&p.slug)
        .bind(&p.clone_url)
        .bind(&p.local_path)
        .bind(&p.webhook_secret_enc)
        .bind(&p.default_branch)
        .bind(p.fork_secrets as i64)
        .bind(now_ms())
        .fetch_one(&mut *w.tx)
        .await?;
        let project = read(&row)?;
        w.commit().await?;
        Ok(project)
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM projects ORDER BY slug")).fetch_all(&self.pool).await?;
        rows.iter().map(read).collect()
    }

    /// Records why fetching project `id`'s mirror failed just now, or clears the record (`None`: a fetch
    /// succeeded). Clearing a project with no record writes nothing.
    pub async fn set_fetch_error(&self, id: i64, message: Option<&str>) -> Result<()> {
        let mut w = self.write().await?;
        match message {
            Some(message) => {
                sqlx::query("UPDATE projects SET fetch_error = $1, fetch_error_at = $2 WHERE id = $3")
                    .bind(message)
                    .bind(now_ms())
                    .bind(id)
                    .execute(&mut *w.tx)
                    .await?
            }
            None => {
                sqlx::query(
                    "UPDATE projects SET fetch_error = NULL, fetch_error_at = NULL WHERE id = $1 AND fetch_error IS \
                     NOT NULL",
                )
                .bind(id)
                .execute(&mut *w.tx)
                .await?
            }
        };
        w.commit().await
    }

    pub async fn project_by_slug(&self, slug: &str) -> Result<Project> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM projects WHERE slug = $1"))
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => read(&row),
            None => Err(StoreError::NotFound(format!("project `{slug}` (see `coordinator project list`)"))),
        }
    }

    pub async fn project(&self, id: i64) -> Result<Project> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM projects WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => read(&row),
            None => Err(StoreError::NotFound(format!("project {id}"))),
        }
    }

    /// Sets the project's options: auto-cancel of redundant pipelines, and its concurrency limit (`Some(None)`
    /// removes the limit); `None` leaves an option as it is.
    pub async fn set_project_options(
        &self,
        slug: &str,
        auto_cancel_redundant: Option<bool>,
        max_concurrent_jobs: Option<Option<i64>>,
    ) -> Result<Project> {
        let mut w = self.write().await?;
        let row = sqlx::query(&format!(
            "UPDATE projects SET auto_cancel_redundant = COALESCE($2, auto_cancel_redundant), max_concurrent_jobs = \
             CASE WHEN $3 = 1 THEN $4 ELSE max_concurrent_jobs END WHERE slug = $1 RETURNING {COLUMNS}"
        ))
        .bind(slug)
        .bind(auto_cancel_redundant.map(i64::from))
        .bind(i64::from(max_concurrent_jobs.is_some()))
        .bind(max_concurrent_jobs.flatten())
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("project `{slug}` (see `coordinator project list`)")));
        };
        let project = read(&row)?;
        w.commit().await?;
        Ok(project)
    }

    /// Removes a project with its pipelines, jobs, logs and settings.
    pub async fn remove_project(&self, slug: &str) -> Result<()> {
        let mut w = self.write().await?;
        let done = sqlx::query("DELETE FROM projects WHERE slug = $1").bind(slug).execute(&mut *w.tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("project `{slug}` (see `coordinator project list`)")));
        }
        w.commit().await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::testing;

    pub fn new_project(slug: &str) -> NewProject {
        NewProject {
            slug: slug.into(),
            clone_url: format!("https://github.com/{slug}.git"),
            local_path: None,
            webhook_secret_enc: Some("enc".into()),
            default_branch: "main".into(),
            fork_secrets: false,
        }
    }

    #[tokio::test]
    async fn projects_are_added_listed_and_removed_once() {
        for db in testing::databases().await {
            let s = &db.store;
            let p = s.add_project(&new_project("acme/app")).await.unwrap_or_else(|e| panic!("{}: {e}", db.name));
            assert_eq!(p.slug, "acme/app");
            let again = s.add_project(&new_project("acme/app")).await;
            assert!(matches!(again, Err(StoreError::Conflict(_))), "{}", db.name);
            assert_eq!(s.list_projects().await.unwrap_or_default(), vec![p.clone()]);
            assert_eq!(s.project_by_slug("acme/app").await.ok(), Some(p));
            s.remove_project("acme/app").await.unwrap_or_else(|e| panic!("{}: {e}", db.name));
            assert!(matches!(s.remove_project("acme/app").await, Err(StoreError::NotFound(_))));
        }
    }
}
