//! Runners and API tokens. Tokens are random strings shown once; only their SHA-256 is stored. Prefixes say what
//! a token is: `dra_` admin (the REST API), `drr_` runner registration, `drt_` a registered runner's own token.

use std::collections::BTreeMap;

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{col, now_ms, Result, Store, StoreError};

/// What an API token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Admin,
    RunnerRegistration,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Admin => "admin",
            TokenKind::RunnerRegistration => "runner_registration",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Admin => "dra_",
            TokenKind::RunnerRegistration => "drr_",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runner {
    pub id: i64,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Resource classes the runner takes; empty: any.
    pub resource_classes: Vec<String>,
    pub last_seen_at: Option<i64>,
}

/// A job a runner holds now ([`Store::running_jobs_by_runner`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunningJob {
    pub id: i64,
    pub name: String,
    pub attempt: i64,
    /// The project's slug.
    pub project: String,
    pub pipeline_number: i64,
}

/// A new random token with `prefix` (32 random bytes, hex).
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn read_runner(row: &sqlx::any::AnyRow) -> Result<Runner> {
    let labels: String = col(row, "labels_json")?;
    let classes: String = col(row, "resource_classes_json")?;
    Ok(Runner {
        id: col(row, "id")?,
        name: col(row, "name")?,
        labels: serde_json::from_str(&labels)
            .map_err(|source| StoreError::Corrupt { what: "runner labels", source })?,
        resource_classes: serde_json::from_str(&classes)
            .map_err(|source| StoreError::Corrupt { what: "runner resource classes", source })?,
        last_seen_at: col(row, "last_seen_at")?,
    })
}

impl Store {
    /// Creates a token of `kind` and returns it (the only time it is seen in clear).
    pub async fn create_token(&self, kind: TokenKind) -> Result<String> {
        let token = new_token(kind.prefix());
        let mut w = self.write().await?;
        sqlx::query("INSERT INTO api_tokens (kind, token_sha256, created_at) VALUES ($1, $2, $3)")
            .bind(kind.as_str())
            .bind(token_hash(&token))
            .bind(now_ms())
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(token)
    }

    /// Whether `token` is a stored token of `kind`.
    pub async fn check_token(&self, kind: TokenKind, token: &str) -> Result<bool> {
        let row = sqlx::query("SELECT id FROM api_tokens WHERE token_sha256 = $1 AND kind = $2")
            .bind(token_hash(token))
            .bind(kind.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Registers (or re-registers, replacing its token) the runner `name`; returns it and its new token.
    pub async fn register_runner(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        resource_classes: &[String],
    ) -> Result<(Runner, String)> {
        let token = new_token("drt_");
        let labels_json =
            serde_json::to_string(labels).map_err(|source| StoreError::Corrupt { what: "runner labels", source })?;
        let classes_json = serde_json::to_string(resource_classes)
            .map_err(|source| StoreError::Corrupt { what: "runner resource classes", source })?;
        let now = now_ms();
        let mut w = self.write().await?;
        let existing =
            sqlx::query("SELECT id FROM runners WHERE name = $1").bind(name).fetch_optional(&mut *w.tx).await?;
        let row = match existing {
            Some(row) => {
                sqlx::query(
                    "UPDATE runners SET token_sha256 = $1, labels_json = $2, resource_classes_json = $3, \
                     last_seen_at = $4 WHERE id = $5 RETURNING id, name, labels_json, resource_classes_json, \
                     last_seen_at",
                )
                .bind(token_hash(&token))
                .bind(&labels_json)
                .bind(&classes_json)
                .bind(now)
                .bind(col::<i64>(&row, "id")?)
                .fetch_one(&mut *w.tx)
                .await?
            }
            None => {
                sqlx::query(
                    "INSERT INTO runners (name, token_sha256, labels_json, resource_classes_json, created_at, \
                     last_seen_at) VALUES ($1, $2, $3, $4, $5, $5) RETURNING id, name, labels_json, \
                     resource_classes_json, last_seen_at",
                )
                .bind(name)
                .bind(token_hash(&token))
                .bind(&labels_json)
                .bind(&classes_json)
                .bind(now)
                .fetch_one(&mut *w.tx)
                .await?
            }
        };
        let runner = read_runner(&row)?;
        w.commit().await?;
        Ok((runner, token))
    }

    /// The runner whose token this is.
    pub async fn runner_by_token(&self, token: &str) -> Result<Option<Runner>> {
        let row = sqlx::query(
            "SELECT id, name, labels_json, resource_classes_json, last_seen_at FROM runners WHERE token_sha256 = $1",
        )
        .bind(token_hash(token))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(read_runner).transpose()
    }

    /// The jobs running now, by the runner that holds them: `(runner ID, job)`, oldest job first.
    pub async fn running_jobs_by_runner(&self) -> Result<Vec<(i64, RunningJob)>> {
        let rows = sqlx::query(
            "SELECT j.runner_id, j.id, j.name, j.attempt, p.slug, pl.number FROM jobs j JOIN projects p ON p.id = \
             j.project_id JOIN pipelines pl ON pl.id = j.pipeline_id WHERE j.state = 'running' AND j.runner_id IS \
             NOT NULL ORDER BY j.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let job = RunningJob {
                    id: col(r, "id")?,
                    name: col(r, "name")?,
                    attempt: col(r, "attempt")?,
                    project: col(r, "slug")?,
                    pipeline_number: col(r, "number")?,
                };
                Ok((col(r, "runner_id")?, job))
            })
            .collect()
    }

    pub async fn runners(&self) -> Result<Vec<Runner>> {
        let rows =
            sqlx::query("SELECT id, name, labels_json, resource_classes_json, last_seen_at FROM runners ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(read_runner).collect()
    }
}
