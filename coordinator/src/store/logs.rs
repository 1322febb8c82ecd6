//! What a running job reports: step rows, log chunks, test results, and the metadata of artifacts and workspace
//! layers (their bytes are files under the data directory, see `crate::files`).
//!
//! Logs are rows of chunks addressed by `(job, attempt, step, byte_offset)` in the runner's byte coordinates
//! (the text the runner sent, before the coordinator masks it again): a chunk whose bytes are already stored is
//! skipped, a chunk overlapping the end keeps only its new tail, and a chunk starting beyond the end is a gap the
//! runner must fill first. Rows rather than files so that every coordinator behind a load balancer sees them.

use config_schema::wire::{StepStatus, TestResults, TestStatus};
use serde::Serialize;

use super::{col, now_ms, Backend, Result, Store};

/// What became of a log chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogAppend {
    Stored,
    /// Every byte of it was stored before.
    Duplicate,
    /// It starts after the stored end: resend from `expected_offset`.
    Gap {
        expected_offset: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogChunk {
    pub step: i64,
    pub stream: String,
    pub offset: i64,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepRow {
    pub step: i64,
    pub name: String,
    pub status: Option<String>,
    pub exit_code: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

fn step_status(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Success => "success",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
        StepStatus::Canceled => "canceled",
        StepStatus::TimedOut => "timed_out",
    }
}

fn test_status(s: TestStatus) -> &'static str {
    match s {
        TestStatus::Success => "success",
        TestStatus::Failure => "failure",
        TestStatus::Error => "error",
        TestStatus::Skipped => "skipped",
    }
}

impl Store {
    /// Appends a chunk of step `step`'s log (see the module doc); `mask` is applied to the bytes stored.
    #[allow(clippy::too_many_arguments)]
    pub async fn append_log(
        &self,
        job_id: i64,
        attempt: i64,
        step: i64,
        stream: &str,
        offset: u64,
        data: &str,
        mask: &(dyn Fn(&str) -> String + Sync),
    ) -> Result<LogAppend> {
        let mut w = self.write().await?;
        if self.backend == Backend::Postgres {
            // Two coordinators (or a retry racing its original) may append the same chunk at once: the job row's
            // lock makes the second wait for the first and then see its chunk (SQLite has one writer anyway).
            sqlx::query("SELECT id FROM jobs WHERE id = $1 FOR UPDATE").bind(job_id).fetch_optional(&mut *w.tx).await?;
        }
        // Chunks are contiguous, so the log ends where its last chunk does: one primary-key lookup (a MAX over an
        // expression read every earlier chunk of the step, for every append).
        let row = sqlx::query(
            "SELECT byte_offset + byte_len AS log_end FROM log_chunks WHERE job_id = $1 AND attempt = $2 AND step = \
             $3 ORDER BY byte_offset DESC LIMIT 1",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(step)
        .fetch_optional(&mut *w.tx)
        .await?;
        let end = match row {
            Some(row) => col::<i64>(&row, "log_end")? as u64,
            None => 0,
        };
        if offset > end {
            return Ok(LogAppend::Gap { expected_offset: end });
        }
        let chunk_end = offset + data.len() as u64;
        if chunk_end <= end || data.is_empty() {
            return Ok(LogAppend::Duplicate);
        }
        // Keep the new tail; a cut inside a character moves to the next character boundary.
        let mut skip = (end - offset) as usize;
        while !data.is_char_boundary(skip) {
            skip += 1;
        }
        let tail = &data[skip..];
        let stored = mask(tail);
        // stored_len (migration 0007): the masked text's length, so readers of sizes and ranges skip the text.
        let inserted = sqlx::query(
            "INSERT INTO log_chunks (job_id, attempt, step, byte_offset, byte_len, stream, data, stored_len) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (job_id, attempt, step, byte_offset) DO NOTHING",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(step)
        .bind((offset + skip as u64) as i64)
        .bind(tail.len() as i64)
        .bind(stream)
        .bind(stored.as_str())
        .bind(stored.len() as i64)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(if inserted.rows_affected() == 0 { LogAppend::Duplicate } else { LogAppend::Stored })
    }

    /// A job attempt's log chunks in step and offset order.
    pub async fn job_log(&self, job_id: i64, attempt: i64) -> Result<Vec<LogChunk>> {
        let rows = sqlx::query(
            "SELECT step, stream, byte_offset, data FROM log_chunks WHERE job_id = $1 AND attempt = $2 ORDER BY step, \
             byte_offset",
        )
        .bind(job_id)
        .bind(attempt)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LogChunk {
                    step: col(r, "step")?,
                    stream: col(r, "stream")?,
                    offset: col(r, "byte_offset")?,
                    data: col(r, "data")?,
                })
            })
            .collect()
    }

    /// Step `step`'s log of a job attempt as stored (masked): the coordinates the API's offsets count in.
    pub async fn step_log(&self, job_id: i64, attempt: i64, step: i64) -> Result<Vec<u8>> {
        let rows = sqlx::query(
            "SELECT data FROM log_chunks WHERE job_id = $1 AND attempt = $2 AND step = $3 ORDER BY byte_offset",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(step)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            out.extend_from_slice(col::<String>(r, "data")?.as_bytes());
        }
        Ok(out)
    }

    /// Whether step `step` of the job's current attempt (or the whole job) has ended: its log grows no more.
    pub async fn step_ended(&self, job_id: i64, step: i64) -> Result<bool> {
        let job = self.job(job_id).await?;
        if job.is_terminal() {
            return Ok(true);
        }
        let steps = self.steps(job_id, job.attempt).await?;
        Ok(steps.iter().any(|s| s.step == step && s.status.is_some()))
    }

    /// Records that a step started; a repeated event changes nothing.
    pub async fn step_started(&self, job_id: i64, attempt: i64, step: i64, name: &str, at: i64) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query(
            "INSERT INTO steps (job_id, attempt, step, name, started_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT \
             (job_id, attempt, step) DO NOTHING",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(step)
        .bind(name)
        .bind(at)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    /// Records how a step ended, once.
    pub async fn step_finished(
        &self,
        job_id: i64,
        attempt: i64,
        step: i64,
        status: StepStatus,
        exit_code: Option<i32>,
        at: i64,
    ) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query(
            "INSERT INTO steps (job_id, attempt, step, name, status, exit_code, finished_at) VALUES ($1, $2, $3, '', \
             $4, $5, $6) ON CONFLICT (job_id, attempt, step) DO UPDATE SET status = excluded.status, exit_code = \
             excluded.exit_code, finished_at = excluded.finished_at WHERE steps.status IS NULL",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(step)
        .bind(step_status(status))
        .bind(exit_code.map(i64::from))
        .bind(at)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    pub async fn steps(&self, job_id: i64, attempt: i64) -> Result<Vec<StepRow>> {
        let rows = sqlx::query(
            "SELECT step, name, status, exit_code, started_at, finished_at FROM steps WHERE job_id = $1 AND attempt = \
             $2 ORDER BY step",
        )
        .bind(job_id)
        .bind(attempt)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StepRow {
                    step: col(r, "step")?,
                    name: col(r, "name")?,
                    status: col(r, "status")?,
                    exit_code: col(r, "exit_code")?,
                    started_at: col(r, "started_at")?,
                    finished_at: col(r, "finished_at")?,
                })
            })
            .collect()
    }

    /// Stores one `store_test_results` step's cases, replacing what the same attempt sent for the same path
    /// (a retried POST must not count every case twice).
    pub async fn add_test_results(&self, job_id: i64, attempt: i64, results: &TestResults) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query("DELETE FROM test_results WHERE job_id = $1 AND attempt = $2 AND path = $3")
            .bind(job_id)
            .bind(attempt)
            .bind(&results.path)
            .execute(&mut *w.tx)
            .await?;
        for case in &results.cases {
            sqlx::query(
                "INSERT INTO test_results (job_id, attempt, path, classname, name, file, result, message, \
                 run_time_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(job_id)
            .bind(attempt)
            .bind(&results.path)
            .bind(&case.classname)
            .bind(&case.name)
            .bind(&case.file)
            .bind(test_status(case.result))
            .bind(&case.message)
            .bind(i64::try_from(case.run_time_ms).unwrap_or(i64::MAX))
            .execute(&mut *w.tx)
            .await?;
        }
        w.commit().await
    }

    /// How many test cases of each result a job has (`result → count`).
    pub async fn test_result_counts(&self, job_id: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT result, COUNT(*) AS n FROM test_results WHERE job_id = $1 GROUP BY result ORDER BY result",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((col(r, "result")?, col(r, "n")?))).collect()
    }

    /// Records an artifact stored in `file` (replacing an upload of the same path).
    pub async fn put_artifact(&self, job_id: i64, attempt: i64, path: &str, size: i64, file: &str) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query(
            "INSERT INTO artifacts (job_id, attempt, path, size_bytes, file, created_at) VALUES ($1, $2, $3, $4, $5, \
             $6) ON CONFLICT (job_id, attempt, path) DO UPDATE SET size_bytes = excluded.size_bytes, file = \
             excluded.file, created_at = excluded.created_at",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(path)
        .bind(size)
        .bind(file)
        .bind(now_ms())
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    /// `(size_bytes, file)` of artifact `path` of a job attempt.
    pub async fn artifact_file(&self, job_id: i64, attempt: i64, path: &str) -> Result<(i64, String)> {
        let row =
            sqlx::query("SELECT size_bytes, file FROM artifacts WHERE job_id = $1 AND attempt = $2 AND path = $3")
                .bind(job_id)
                .bind(attempt)
                .bind(path)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some(row) => Ok((col(&row, "size_bytes")?, col(&row, "file")?)),
            None => Err(super::StoreError::NotFound(format!("artifact `{path}` of job {job_id}"))),
        }
    }

    /// `(path, size_bytes)` of the artifacts one attempt of a job uploaded.
    pub async fn attempt_artifacts(&self, job_id: i64, attempt: i64) -> Result<Vec<(String, i64)>> {
        let rows =
            sqlx::query("SELECT path, size_bytes FROM artifacts WHERE job_id = $1 AND attempt = $2 ORDER BY path")
                .bind(job_id)
                .bind(attempt)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok((col(r, "path")?, col(r, "size_bytes")?))).collect()
    }

    /// `(path, size_bytes)` of a job's artifacts.
    pub async fn artifacts(&self, job_id: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT path, size_bytes FROM artifacts WHERE job_id = $1 ORDER BY path")
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((col(r, "path")?, col(r, "size_bytes")?))).collect()
    }

    /// Records a workspace layer stored in `file`; returns its ID.
    pub async fn add_workspace_layer(&self, job_id: i64, attempt: i64, size: i64, file: &str) -> Result<i64> {
        let mut w = self.write().await?;
        let row = sqlx::query(
            "INSERT INTO workspace_layers (job_id, attempt, size_bytes, file, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(size)
        .bind(file)
        .bind(now_ms())
        .fetch_one(&mut *w.tx)
        .await?;
        let id = col(&row, "id")?;
        w.commit().await?;
        Ok(id)
    }

    /// `(layer id, size_bytes)` of the layers persisted by the jobs `job_id` requires, transitively, in the order
    /// they were persisted.
    pub async fn upstream_workspace_layers(&self, job_id: i64) -> Result<Vec<(i64, i64)>> {
        let job = self.job(job_id).await?;
        // A job a rerun kept (`copied_from`) persisted its layers as the job it was copied from.
        let rows =
            sqlx::query("SELECT COALESCE(copied_from, id) AS id, name, requires_json FROM jobs WHERE workflow_id = $1")
                .bind(job.workflow_id)
                .fetch_all(&self.pool)
                .await?;
        let mut by_name = std::collections::BTreeMap::new();
        for r in &rows {
            let requires: String = col(r, "requires_json")?;
            let requires: Vec<config_schema::spec::RequirementSpec> = serde_json::from_str(&requires)
                .map_err(|source| super::StoreError::Corrupt { what: "job requires", source })?;
            by_name.insert(col::<String>(r, "name")?, (col::<i64>(r, "id")?, requires));
        }
        let mut upstream = std::collections::BTreeSet::new();
        let mut todo: Vec<String> =
            by_name.get(&job.name).map(|(_, r)| r.iter().map(|r| r.job.clone()).collect()).unwrap_or_default();
        while let Some(name) = todo.pop() {
            if let Some((id, requires)) = by_name.get(&name) {
                if upstream.insert(*id) {
                    todo.extend(requires.iter().map(|r| r.job.clone()));
                }
            }
        }
        let rows = sqlx::query(
            "SELECT id, job_id, size_bytes FROM workspace_layers WHERE job_id IN (SELECT COALESCE(copied_from, id) \
             FROM jobs WHERE workflow_id = $1) ORDER BY id",
        )
        .bind(job.workflow_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            if upstream.contains(&col::<i64>(r, "job_id")?) {
                out.push((col(r, "id")?, col(r, "size_bytes")?));
            }
        }
        Ok(out)
    }

    /// The file of a workspace layer.
    pub async fn workspace_layer_file(&self, layer_id: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT file FROM workspace_layers WHERE id = $1")
            .bind(layer_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(|r| col(r, "file")).transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::jobs::tests::{planned, project};
    use crate::store::pipelines::PipelineTrigger;
    use crate::store::testing;

    /// Regression: on PostgreSQL two appends of the same chunk at once both read the same log end and the second
    /// insert hit the primary key (a 503 for the runner). Every copy must succeed and the bytes be stored once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_of_the_same_chunk_store_it_once() {
        for db in testing::databases().await {
            let s = Arc::new(db.store.clone());
            let project = project(&s).await;
            let yaml = "version: 2.1\njobs:\n  j: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  w:\n    jobs: [j]\n";
            let trigger = PipelineTrigger { source: "api".into(), sha: "abc".into(), ..Default::default() };
            s.create_pipeline(project, &trigger, &planned(yaml, "main")).await.unwrap_or_else(|e| panic!("{e}"));
            let job = s.lease_job(1, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("no job"));
            let job_id = job.id;
            for round in 0..5u64 {
                let offset = round * 6;
                let mut tasks = Vec::new();
                for _ in 0..8 {
                    let s = s.clone();
                    tasks.push(tokio::spawn(async move {
                        s.append_log(job_id, 1, 0, "stdout", offset, "chunk\n", &|t: &str| t.to_string()).await
                    }));
                }
                let mut stored = 0;
                for t in tasks {
                    match t.await.unwrap_or_else(|e| panic!("{e}")) {
                        Ok(LogAppend::Stored) => stored += 1,
                        Ok(LogAppend::Duplicate) => {}
                        other => panic!("{}: round {round}: {other:?}", db.name),
                    }
                }
                assert_eq!(stored, 1, "{}: round {round}", db.name);
            }
            let log: String = s.job_log(job.id, 1).await.unwrap_or_default().into_iter().map(|c| c.data).collect();
            assert_eq!(log, "chunk\n".repeat(5), "{}", db.name);
        }
    }
}
