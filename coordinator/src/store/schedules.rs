//! Project schedules (`coordinator schedule add PROJECT --cron '0 3 * * *' --branch main`) and their ticks.
//!
//! Exactly once, with any number of coordinators: [`Store::claim_due_ticks`] inserts one `schedule_ticks` row per
//! schedule and tick time (the primary key refuses a second) and moves the schedule's `next_tick_at` with a
//! compare-and-set in the same transaction; [`Store::create_pipeline_for_tick`] stores the tick's pipeline in
//! the transaction that marks the tick processed, so a crash between claim and pipeline leaves an unprocessed
//! tick that the next look (of any coordinator) finishes, and never a second pipeline. Ticks missed while no
//! coordinator ran collapse into one: the earliest missed tick runs, and the next is the first one after now.

use serde::Serialize;
use sqlx::any::AnyRow;

use super::pipelines::{insert_pipeline, Created, PipelineIds, PipelineTrigger, Planned};
use super::{col, now_ms, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleRow {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    /// CircleCI's 5 fields, UTC.
    pub cron: String,
    pub branch: String,
    /// Only this workflow runs; `None`: every workflow the branch runs.
    pub workflow: Option<String>,
    pub next_tick_at: i64,
    /// `project` (the API, `coordinator schedule add`) or `config` (a workflow's `triggers: - schedule:`, kept in
    /// step with the branch's configuration by [`Store::sync_config_schedules`]).
    pub source: String,
}

/// A workflow's scheduled trigger as a branch's configuration declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSchedule {
    pub workflow: String,
    pub cron: String,
}

impl ConfigSchedule {
    /// The schedule's name in the project (unique per workflow, cron and branch).
    pub fn name(&self, branch: &str) -> String {
        format!("config: {} {} on {branch}", self.workflow, self.cron)
    }
}

/// A claimed tick waiting for its pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    pub schedule: ScheduleRow,
    pub tick_at: i64,
}

const COLUMNS: &str = "id, project_id, name, cron, branch, workflow, next_tick_at, source";

fn read(row: &AnyRow) -> Result<ScheduleRow> {
    Ok(ScheduleRow {
        id: col(row, "id")?,
        project_id: col(row, "project_id")?,
        name: col(row, "name")?,
        cron: col(row, "cron")?,
        branch: col(row, "branch")?,
        workflow: col(row, "workflow")?,
        next_tick_at: col(row, "next_tick_at")?,
        source: col(row, "source")?,
    })
}

impl Store {
    /// Adds a schedule whose first tick is at `next_tick_at`; a name the project uses already is a conflict.
    pub async fn add_schedule(
        &self,
        project_id: i64,
        name: &str,
        cron: &str,
        branch: &str,
        workflow: Option<&str>,
        next_tick_at: i64,
    ) -> Result<ScheduleRow> {
        let mut w = self.write().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO schedules (project_id, name, cron, branch, workflow, next_tick_at, created_at) VALUES ($1, \
             $2, $3, $4, $5, $6, $7) ON CONFLICT (project_id, name) DO NOTHING RETURNING {COLUMNS}"
        ))
        .bind(project_id)
        .bind(name)
        .bind(cron)
        .bind(branch)
        .bind(workflow)
        .bind(next_tick_at)
        .bind(now_ms())
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::Conflict(format!(
                "the project has a schedule named `{name}` already: remove it first or pick another name"
            )));
        };
        let schedule = read(&row)?;
        w.commit().await?;
        Ok(schedule)
    }

    /// A project's schedules, or every project's.
    pub async fn schedules(&self, project_id: Option<i64>) -> Result<Vec<ScheduleRow>> {
        let rows = match project_id {
            Some(p) => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM schedules WHERE project_id = $1 ORDER BY name"))
                    .bind(p)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM schedules ORDER BY project_id, name"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(read).collect()
    }

    /// Makes the project's `config` schedules of `branch` exactly `wanted` (the branch's configuration as just
    /// read): new ones are added with their first tick after now, ones no longer declared are removed, the others
    /// keep their next tick. Returns `(added, removed)`.
    pub async fn sync_config_schedules(
        &self,
        project_id: i64,
        branch: &str,
        wanted: &[ConfigSchedule],
        next_after: &(dyn Fn(&str, i64) -> Option<i64> + Sync),
    ) -> Result<(usize, usize)> {
        // Read first: most pushes change nothing here.
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM schedules WHERE project_id = $1 AND branch = $2 AND source = 'config'"
        ))
        .bind(project_id)
        .bind(branch)
        .fetch_all(&self.pool)
        .await?;
        let existing = rows.iter().map(read).collect::<Result<Vec<_>>>()?;
        let names: Vec<String> = wanted.iter().map(|c| c.name(branch)).collect();
        let stale: Vec<&ScheduleRow> = existing.iter().filter(|s| !names.contains(&s.name)).collect();
        let fresh: Vec<(&ConfigSchedule, &String)> =
            wanted.iter().zip(&names).filter(|(_, n)| !existing.iter().any(|s| &&s.name == n)).collect();
        if stale.is_empty() && fresh.is_empty() {
            return Ok((0, 0));
        }
        let mut w = self.write().await?;
        for s in &stale {
            sqlx::query("DELETE FROM schedules WHERE id = $1").bind(s.id).execute(&mut *w.tx).await?;
        }
        let now = now_ms();
        let mut added = 0;
        for (c, name) in &fresh {
            let Some(next) = next_after(&c.cron, now) else { continue };
            let done = sqlx::query(
                "INSERT INTO schedules (project_id, name, cron, branch, workflow, next_tick_at, created_at, source) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'config') ON CONFLICT (project_id, name) DO NOTHING",
            )
            .bind(project_id)
            .bind(name.as_str())
            .bind(&c.cron)
            .bind(branch)
            .bind(&c.workflow)
            .bind(next)
            .bind(now)
            .execute(&mut *w.tx)
            .await?;
            added += done.rows_affected() as usize;
        }
        w.commit().await?;
        Ok((added, stale.len()))
    }

    /// One schedule of a project, by name.
    pub async fn schedule(&self, project_id: i64, name: &str) -> Result<ScheduleRow> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM schedules WHERE project_id = $1 AND name = $2"))
            .bind(project_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => read(&row),
            None => Err(StoreError::NotFound(format!("schedule `{name}`"))),
        }
    }

    /// Changes a schedule's cron, branch and workflow; `next_tick_at` is its next tick under the new cron. Ticks
    /// claimed already keep their pipelines; the next one follows the new values.
    pub async fn update_schedule(
        &self,
        id: i64,
        cron: &str,
        branch: &str,
        workflow: Option<&str>,
        next_tick_at: i64,
    ) -> Result<ScheduleRow> {
        let mut w = self.write().await?;
        let row = sqlx::query(&format!(
            "UPDATE schedules SET cron = $2, branch = $3, workflow = $4, next_tick_at = $5 WHERE id = $1 RETURNING \
             {COLUMNS}"
        ))
        .bind(id)
        .bind(cron)
        .bind(branch)
        .bind(workflow)
        .bind(next_tick_at)
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("schedule {id}")));
        };
        let schedule = read(&row)?;
        w.commit().await?;
        Ok(schedule)
    }

    pub async fn remove_schedule(&self, project_id: i64, name: &str) -> Result<()> {
        let mut w = self.write().await?;
        let done = sqlx::query("DELETE FROM schedules WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name)
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("schedule `{name}` (see `coordinator schedule list`)")));
        }
        Ok(())
    }

    /// Claims the tick of every schedule due at `now` (see the module doc); `next_after(cron, now)` is the
    /// schedule's next tick time after `now` (`None`: it never fires again). Returns how many were claimed.
    pub async fn claim_due_ticks(
        &self,
        now: i64,
        next_after: &(dyn Fn(&str, i64) -> Option<i64> + Sync),
    ) -> Result<usize> {
        // Read first: every coordinator looks every few seconds and almost always finds nothing due.
        let due = sqlx::query("SELECT id FROM schedules WHERE next_tick_at <= $1 LIMIT 1")
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        if due.is_none() {
            return Ok(0);
        }
        let mut w = self.write().await?;
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM schedules WHERE next_tick_at <= $1 ORDER BY id"))
            .bind(now)
            .fetch_all(&mut *w.tx)
            .await?;
        let mut claimed = 0;
        for row in &rows {
            let s = read(row)?;
            let next = next_after(&s.cron, now).unwrap_or(i64::MAX);
            // Compare-and-set: a coordinator that claimed this tick first moved `next_tick_at` already.
            let moved = sqlx::query("UPDATE schedules SET next_tick_at = $1 WHERE id = $2 AND next_tick_at = $3")
                .bind(next)
                .bind(s.id)
                .bind(s.next_tick_at)
                .execute(&mut *w.tx)
                .await?;
            if moved.rows_affected() == 0 {
                continue;
            }
            let inserted = sqlx::query(
                "INSERT INTO schedule_ticks (schedule_id, tick_at, claimed_at) VALUES ($1, $2, $3) ON CONFLICT \
                 (schedule_id, tick_at) DO NOTHING",
            )
            .bind(s.id)
            .bind(s.next_tick_at)
            .bind(now)
            .execute(&mut *w.tx)
            .await?;
            claimed += inserted.rows_affected() as usize;
        }
        w.commit().await?;
        Ok(claimed)
    }

    /// Claimed ticks without a pipeline yet, oldest first.
    pub async fn unprocessed_ticks(&self, limit: i64) -> Result<Vec<Tick>> {
        let rows = sqlx::query(
            "SELECT s.id, s.project_id, s.name, s.cron, s.branch, s.workflow, s.next_tick_at, s.source, t.tick_at FROM \
             schedule_ticks t JOIN schedules s ON s.id = t.schedule_id WHERE t.processed_at IS NULL ORDER BY \
             t.tick_at, s.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(Tick { schedule: read(r)?, tick_at: col(r, "tick_at")? })).collect()
    }

    /// Stores the tick's pipeline and marks the tick processed in one transaction; `None` (nothing stored) when
    /// another coordinator processed it first.
    pub async fn create_pipeline_for_tick(
        &self,
        tick: &Tick,
        trigger: &PipelineTrigger,
        plan: impl FnOnce(PipelineIds) -> Planned + Send,
    ) -> Result<Option<Created>> {
        let mut w = self.write().await?;
        let created = insert_pipeline(&mut w, tick.schedule.project_id, trigger, plan).await?;
        let marked = sqlx::query(
            "UPDATE schedule_ticks SET processed_at = $1, pipeline_id = $2, outcome = 'pipeline' WHERE schedule_id = \
             $3 AND tick_at = $4 AND processed_at IS NULL",
        )
        .bind(now_ms())
        .bind(created.pipeline_id)
        .bind(tick.schedule.id)
        .bind(tick.tick_at)
        .execute(&mut *w.tx)
        .await?;
        if marked.rows_affected() == 0 {
            w.tx.rollback().await?;
            return Ok(None);
        }
        w.commit().await?;
        Ok(Some(created))
    }

    /// Marks a tick processed without a pipeline (`outcome` says why).
    pub async fn finish_tick(&self, tick: &Tick, outcome: &str) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query(
            "UPDATE schedule_ticks SET processed_at = $1, outcome = $2 WHERE schedule_id = $3 AND tick_at = $4 AND \
             processed_at IS NULL",
        )
        .bind(now_ms())
        .bind(outcome)
        .bind(tick.schedule.id)
        .bind(tick.tick_at)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    /// How many pipelines the schedule's ticks made (for tests and `schedule list`).
    pub async fn tick_pipelines(&self, schedule_id: i64) -> Result<i64> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM schedule_ticks WHERE schedule_id = $1 AND pipeline_id IS NOT NULL")
                .bind(schedule_id)
                .fetch_one(&self.pool)
                .await?;
        col(&row, "n")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::jobs::tests::{planned, project};
    use crate::store::testing;

    const HOUR: i64 = 3_600_000;

    /// Hourly on the hour, as `next_after` would say, without the cron crate.
    fn hourly(_cron: &str, now: i64) -> Option<i64> {
        Some((now / HOUR + 1) * HOUR)
    }

    /// Eight coordinators look at once, twice over: one tick is claimed and one pipeline made; ticks missed
    /// while down collapse into one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_due_tick_is_claimed_and_built_exactly_once_by_concurrent_coordinators() {
        for db in testing::databases().await {
            let (s, name) = (Arc::new(db.store.clone()), db.name);
            let project = project(&s).await;
            let t0 = 100 * HOUR;
            let schedule = s
                .add_schedule(project, "nightly", "0 * * * *", "main", None, t0)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let again = s.add_schedule(project, "nightly", "0 * * * *", "main", None, t0).await;
            assert!(matches!(again, Err(StoreError::Conflict(_))), "{name}");
            // Not due yet: nothing claimed, nothing written.
            let writes = s.write_transactions();
            assert_eq!(s.claim_due_ticks(t0 - 1, &hourly).await.ok(), Some(0), "{name}");
            assert_eq!(s.write_transactions(), writes, "{name}");

            // Three hours late (the coordinators were down): one claim among eight, for the first missed tick.
            let now = t0 + 3 * HOUR + 5;
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move { s.claim_due_ticks(now, &hourly).await }));
            }
            let mut claimed = 0;
            for t in tasks {
                claimed += t.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            assert_eq!(claimed, 1, "{name}");
            let ticks = s.unprocessed_ticks(10).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ticks.iter().map(|t| t.tick_at).collect::<Vec<_>>(), [t0], "{name}");
            let listed = s.schedules(Some(project)).await.unwrap_or_default();
            assert_eq!(listed[0].next_tick_at, t0 + 4 * HOUR, "{name}: the next tick is the first after now");

            // Eight coordinators build the tick's pipeline at once: one pipeline.
            let yaml = "version: 2.1\njobs:\n  j: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  w:\n    jobs: [j]\n";
            let trigger = PipelineTrigger { source: "schedule".into(), sha: "abc".into(), ..Default::default() };
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let (s, tick, trigger) = (s.clone(), ticks[0].clone(), trigger.clone());
                let plan = planned(yaml, "main");
                tasks.push(tokio::spawn(async move { s.create_pipeline_for_tick(&tick, &trigger, |_| plan).await }));
            }
            let mut made = 0;
            for t in tasks {
                let created = t.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{name}: {e}"));
                made += usize::from(created.is_some());
            }
            assert_eq!(made, 1, "{name}");
            assert_eq!(s.tick_pipelines(schedule.id).await.ok(), Some(1), "{name}");
            assert_eq!(s.pipelines(project, 10).await.unwrap_or_default().len(), 1, "{name}");
            assert!(s.unprocessed_ticks(10).await.unwrap_or_default().is_empty(), "{name}");
            s.remove_schedule(project, "nightly").await.unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(s.remove_schedule(project, "nightly").await, Err(StoreError::NotFound(_))));
        }
    }
}
