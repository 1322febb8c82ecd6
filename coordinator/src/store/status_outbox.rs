//! The commit status outbox (migration `0006_status_outbox`): one row per GitHub project pipeline whose current
//! states GitHub has not been told yet. [`enqueue_status`] writes or bumps the row inside the transaction that
//! changed the pipeline (created, a workflow's state moved, a rerun), so the change and the duty to report it
//! commit together; `crate::statuses` drains the rows. A drainer claims a due row by moving its
//! `next_attempt_at` forward (compare-and-set: two coordinators never post one row at once), posts the
//! pipeline's states as they are then, and deletes the row only if its `version` is still the one it claimed —
//! a change committed meanwhile bumped it and is posted by the next round. A failed post leaves the row with a
//! later `next_attempt_at` (the drainer's backoff), so neither a restart nor GitHub being down loses a status.

use serde::Serialize;

use super::{col, Result, Store, WriteTx};

/// A claimed outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutboxClaim {
    pub pipeline_id: i64,
    pub version: i64,
    /// Failed attempts so far.
    pub attempts: i64,
    pub first_queued_at: i64,
}

/// Writes (or bumps) the outbox row of `pipeline_id`, when its project is a GitHub project (local projects get
/// no statuses). The row's `next_attempt_at` stays as it was when it exists: a pipeline that changes while
/// GitHub is down waits out its backoff, and its next post carries the newest states.
pub(crate) async fn enqueue_status(w: &mut WriteTx, pipeline_id: i64) -> Result<()> {
    let now = super::now_ms();
    sqlx::query(
        "INSERT INTO status_outbox (pipeline_id, version, first_queued_at, next_attempt_at, attempts) SELECT p.id, \
         1, $2, $2, 0 FROM pipelines p JOIN projects pr ON pr.id = p.project_id WHERE p.id = $1 AND pr.local_path \
         IS NULL ON CONFLICT (pipeline_id) DO UPDATE SET version = status_outbox.version + 1",
    )
    .bind(pipeline_id)
    .bind(now)
    .execute(&mut *w.tx)
    .await?;
    Ok(())
}

impl Store {
    /// Pipelines whose statuses are due at `now` (a plain read: an idle coordinator does not write).
    pub async fn due_statuses(&self, now: i64, limit: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT pipeline_id FROM status_outbox WHERE next_attempt_at <= $1 ORDER BY next_attempt_at, pipeline_id \
             LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| col(r, "pipeline_id")).collect()
    }

    /// Claims the row of `pipeline_id` if it is due at `now`, moving its next attempt to `until` (so a drainer
    /// that dies mid-post leaves it to be retried then); `None`: not due, or claimed by another drainer.
    pub async fn claim_status(&self, pipeline_id: i64, now: i64, until: i64) -> Result<Option<OutboxClaim>> {
        let mut w = self.write().await?;
        let row = sqlx::query(
            "UPDATE status_outbox SET next_attempt_at = $3 WHERE pipeline_id = $1 AND next_attempt_at <= $2 \
             RETURNING version, attempts, first_queued_at",
        )
        .bind(pipeline_id)
        .bind(now)
        .bind(until)
        .fetch_optional(&mut *w.tx)
        .await?;
        let claim = match row {
            Some(r) => Some(OutboxClaim {
                pipeline_id,
                version: col(&r, "version")?,
                attempts: col(&r, "attempts")?,
                first_queued_at: col(&r, "first_queued_at")?,
            }),
            None => None,
        };
        w.commit().await?;
        Ok(claim)
    }

    /// The claimed states were posted: deletes the row unless a change bumped its version meanwhile (then it is
    /// due again at once). Returns whether it was deleted.
    pub async fn status_sent(&self, claim: &OutboxClaim) -> Result<bool> {
        let mut w = self.write().await?;
        let done = sqlx::query("DELETE FROM status_outbox WHERE pipeline_id = $1 AND version = $2")
            .bind(claim.pipeline_id)
            .bind(claim.version)
            .execute(&mut *w.tx)
            .await?;
        if done.rows_affected() == 0 {
            sqlx::query("UPDATE status_outbox SET next_attempt_at = $2, attempts = 0 WHERE pipeline_id = $1")
                .bind(claim.pipeline_id)
                .bind(super::now_ms())
                .execute(&mut *w.tx)
                .await?;
        }
        w.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// The post failed: another attempt at `next_attempt_at`, the error kept for people to see.
    pub async fn status_failed(&self, claim: &OutboxClaim, next_attempt_at: i64, error: &str) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query(
            "UPDATE status_outbox SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 WHERE \
             pipeline_id = $1",
        )
        .bind(claim.pipeline_id)
        .bind(next_attempt_at)
        .bind(error)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(())
    }

    /// Gives the row up (GitHub refused it for good, or it is too old to matter).
    pub async fn status_dropped(&self, pipeline_id: i64) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query("DELETE FROM status_outbox WHERE pipeline_id = $1").bind(pipeline_id).execute(&mut *w.tx).await?;
        w.commit().await?;
        Ok(())
    }

    /// Deletes every row due at `now` in one statement (statuses are off); returns how many.
    pub async fn drop_due_statuses(&self, now: i64) -> Result<usize> {
        let mut w = self.write().await?;
        let done =
            sqlx::query("DELETE FROM status_outbox WHERE next_attempt_at <= $1").bind(now).execute(&mut *w.tx).await?;
        w.commit().await?;
        Ok(done.rows_affected() as usize)
    }

    /// `(pipeline ID, failed attempts, last error)` of every row, for people and tests.
    pub async fn status_outbox(&self) -> Result<Vec<(i64, i64, Option<String>)>> {
        let rows = sqlx::query("SELECT pipeline_id, attempts, last_error FROM status_outbox ORDER BY pipeline_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((col(r, "pipeline_id")?, col(r, "attempts")?, col(r, "last_error")?))).collect()
    }
}
