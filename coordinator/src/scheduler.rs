//! Background work of a serving coordinator: expiring leases (a job whose runner stopped heartbeating is
//! re-queued once, then failed `runner lost`) and firing project schedules (`coordinator schedule add`; see
//! [`crate::store::schedules`] for why a tick makes exactly one pipeline). Every coordinator runs both; the
//! store's transactions make two coordinators doing it at once harmless.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::AppState;
use crate::store::now_ms;

/// How often due schedules are looked for (a tick fires at most this late).
pub const SCHEDULE_INTERVAL: Duration = Duration::from_secs(5);

/// The first time after `after_ms` (Unix milliseconds) that CircleCI cron `cron` (5 fields, UTC) fires, or
/// `None` when it never does again or is not valid (checked when the schedule is added).
pub fn next_tick_after(cron: &str, after_ms: i64) -> Option<i64> {
    let schedule = config_schema::validate::cron_schedule(cron).ok()?;
    let after = DateTime::<Utc>::from_timestamp_millis(after_ms)?;
    schedule.after(&after).next().map(|t| t.timestamp_millis())
}

/// Why a new project schedule is refused, with the field it names.
#[derive(Debug, thiserror::Error)]
pub enum NewScheduleError {
    #[error("`cron` `{cron}`: {message}")]
    Cron { cron: String, message: String },
    #[error("`cron` `{0}` never fires after now: pick a time that comes again")]
    Never(String),
    #[error("`{0}` must be a non-empty name without control characters")]
    Name(&'static str),
}

impl NewScheduleError {
    /// The input field at fault (`cron`, `branch`, `workflow`, `name`).
    pub fn field(&self) -> &'static str {
        match self {
            NewScheduleError::Cron { .. } | NewScheduleError::Never(_) => "cron",
            NewScheduleError::Name(field) => field,
        }
    }
}

/// A branch, workflow or schedule name: not empty, no control characters.
pub fn check_name(field: &'static str, value: &str) -> Result<(), NewScheduleError> {
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        return Err(NewScheduleError::Name(field));
    }
    Ok(())
}

/// A new project schedule as every entry point (`coordinator schedule add`, the REST API, the dashboard) checks
/// it: valid names, a cron that fires again; returns its name (the one given, else `"<cron> <branch>[
/// <workflow>]"`) and its first tick after `now_ms`.
pub fn new_schedule(
    cron: &str,
    branch: &str,
    workflow: Option<&str>,
    name: Option<&str>,
    now_ms: i64,
) -> Result<(String, i64), NewScheduleError> {
    check_name("branch", branch)?;
    if let Some(w) = workflow {
        check_name("workflow", w)?;
    }
    config_schema::validate::cron_schedule(cron)
        .map_err(|e| NewScheduleError::Cron { cron: cron.to_owned(), message: e.to_string() })?;
    let next = next_tick_after(cron, now_ms).ok_or_else(|| NewScheduleError::Never(cron.to_owned()))?;
    let name = match name {
        Some(n) => n.to_owned(),
        None => format!("{cron} {branch}{}", workflow.map(|w| format!(" {w}")).unwrap_or_default()),
    };
    check_name("name", &name)?;
    Ok((name, next))
}

/// Runs forever: claims due schedule ticks and creates their pipelines every [`SCHEDULE_INTERVAL`].
pub async fn fire_schedules_forever(state: AppState) {
    let mut tick = tokio::time::interval(SCHEDULE_INTERVAL);
    loop {
        tick.tick().await;
        if let Err(e) = fire_due_schedules(&state, now_ms()).await {
            tracing::error!(error = %e, "cannot fire schedules");
        }
    }
}

/// Claims the ticks due at `now` and creates the pipelines of every unprocessed tick (also ones a crashed
/// coordinator claimed); returns how many pipelines were created.
pub async fn fire_due_schedules(state: &AppState, now: i64) -> Result<usize, crate::store::StoreError> {
    state.store.claim_due_ticks(now, &next_tick_after).await?;
    let mut created = 0;
    for tick in state.store.unprocessed_ticks(100).await? {
        let project = state.store.project(tick.schedule.project_id).await?;
        match crate::pipeline::create_for_tick(state, &project, &tick).await {
            Ok(Some(c)) => {
                created += 1;
                tracing::info!(
                    project = %project.slug,
                    schedule = %tick.schedule.name,
                    pipeline.number = c.number,
                    tick_at_ms = tick.tick_at,
                    "schedule fired"
                );
                crate::statuses::spawn_report(state, c.pipeline_id);
                if c.queued_jobs > 0 {
                    state.wake_runners();
                }
            }
            Ok(None) => {}
            // The database failed: the tick stays unprocessed and the next look tries again.
            Err(crate::pipeline::PipelineError::Store(e)) => return Err(e),
            Err(e) => {
                // The repository could not be read: the tick is recorded as failed, not retried forever.
                let error = crate::pipeline::error_chain(&e);
                tracing::warn!(project = %project.slug, schedule = %tick.schedule.name, %error, "schedule tick failed");
                state.store.finish_tick(&tick, &format!("error: {error}")).await?;
                if tick.schedule.source == "config" && branch_deleted(&e, &tick.schedule.branch) {
                    // The branch's configuration declared the schedule; with the branch gone nothing declares it.
                    match state.store.remove_schedule(project.id, &tick.schedule.name).await {
                        Ok(()) | Err(crate::store::StoreError::NotFound(_)) => tracing::info!(
                            project = %project.slug, schedule = %tick.schedule.name,
                            "branch deleted: its configuration schedule removed"
                        ),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(created)
}

/// Whether `e` says that `branch` is not in the freshly fetched mirror (deleted upstream: the fetch prunes).
fn branch_deleted(e: &crate::pipeline::PipelineError, branch: &str) -> bool {
    matches!(e, crate::pipeline::PipelineError::Repo { source: crate::repo::RepoError::RefNotFound { git_ref, .. }, .. }
        if *git_ref == format!("refs/heads/{branch}"))
}

/// How often leases are checked.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(1);

/// Runs forever: expires leases every [`EXPIRY_INTERVAL`] and wakes runners when jobs were re-queued.
pub async fn expire_leases_forever(state: AppState) {
    let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        tick.tick().await;
        match state.store.expire_leases(now_ms()).await {
            Ok(expired) => {
                for id in &expired.requeued {
                    tracing::warn!(job.id = id, "lease expired: job re-queued");
                }
                for id in &expired.failed {
                    tracing::warn!(job.id = id, "lease expired again: job failed (runner lost)");
                    if let Ok(job) = state.store.job(*id).await {
                        crate::statuses::spawn_report(&state, job.pipeline_id);
                    }
                }
                if !expired.requeued.is_empty() {
                    state.wake_runners();
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot expire leases"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[test]
    fn cron_ticks_are_utc_and_strictly_after() {
        // 2026-12-01T02:59:00Z → 03:00 the same day; at 03:00 exactly → 03:00 the next day.
        let before = 1_796_093_940_000;
        assert_eq!(next_tick_after("0 3 * * *", before), Some(before + 60_000));
        assert_eq!(next_tick_after("0 3 * * *", before + 60_000), Some(before + 60_000 + 86_400_000));
        assert_eq!(next_tick_after("not a cron", before), None);
    }

    #[tokio::test]
    async fn a_due_schedule_fires_one_pipeline_of_its_branch_and_workflow() {
        for db in testing::databases().await {
            let name = db.name;
            let config =
                "version: 2.1\njobs:\n  j: {docker: [{image: busybox}], steps: [{run: 'true'}]}\nworkflows:\n  \
                          build:\n    jobs: [j]\n  nightly:\n    jobs: [j]\n";
            let project = crate::pipeline::tests::local_project(&db, config).await;
            let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
                .unwrap_or_else(|e| panic!("{e}"));
            let state = AppState::new(db.store.clone(), db.dir.path().join("data"), key);
            let now = now_ms();
            let s = &db.store;
            s.add_schedule(project.id, "n", "0 3 * * *", "feature", Some("nightly"), now - 1)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            s.add_schedule(project.id, "typo", "0 3 * * *", "main", Some("nightlyy"), now - 1)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(fire_due_schedules(&state, now).await.ok(), Some(2), "{name}");
            assert_eq!(fire_due_schedules(&state, now).await.ok(), Some(0), "{name}");
            let pipelines = s.pipelines(project.id, 10).await.unwrap_or_default();
            let by_branch = |b: &str| pipelines.iter().find(|p| p.trigger.branch.as_deref() == Some(b)).cloned();
            let fired = by_branch("feature").unwrap_or_else(|| panic!("{name}: no pipeline on feature"));
            assert_eq!((fired.trigger.source.as_str(), fired.state.as_str()), ("schedule", "running"), "{name}");
            let workflows = s.workflows(fired.id).await.unwrap_or_default();
            assert_eq!(workflows.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["nightly"], "{name}");
            let typo = by_branch("main").unwrap_or_else(|| panic!("{name}: no pipeline on main"));
            assert_eq!(typo.state, "config_error", "{name}");
            assert!(typo.error.unwrap_or_default().contains("`nightlyy`"), "{name}");
        }
    }

    /// Commits `config` on `main` of the repository at `dir` (after its current tip).
    fn commit_config(dir: &std::path::Path, config: &str) {
        let repo = git2::Repository::open(dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join(".circleci/config.yml"), config).unwrap_or_else(|e| panic!("{e}"));
        let mut index = repo.index().unwrap_or_else(|e| panic!("{e}"));
        index.add_path(std::path::Path::new(".circleci/config.yml")).unwrap_or_else(|e| panic!("{e}"));
        index.write().unwrap_or_else(|e| panic!("{e}"));
        let tree =
            repo.find_tree(index.write_tree().unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"));
        let parent =
            repo.find_reference("refs/heads/main").and_then(|r| r.peel_to_commit()).unwrap_or_else(|e| panic!("{e}"));
        let sig = git2::Signature::now("Ada", "ada@example.invalid").unwrap_or_else(|e| panic!("{e}"));
        repo.commit(Some("refs/heads/main"), &sig, &sig, "change config", &tree, &[&parent])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// CircleCI 2.0 scheduled workflows: a push's configuration adds its `triggers: - schedule:` for the pushed
    /// branch (when the trigger's filters allow it) as `config` schedules; a tick runs only that workflow; a
    /// later configuration without the trigger removes it.
    #[tokio::test]
    async fn config_schedule_triggers_become_schedules_of_their_branches_and_fire_their_workflow() {
        for db in testing::databases().await {
            let name = db.name;
            let config = "version: 2.1\njobs:\n  j: {docker: [{image: busybox}], steps: [{run: 'true'}]}\nworkflows:\n  \
                          build:\n    jobs: [j]\n  nightly:\n    triggers:\n      - schedule:\n          cron: '0 3 * * *'\n          \
                          filters: {branches: {only: [main]}}\n    jobs: [j]\n";
            let project = crate::pipeline::tests::local_project(&db, config).await;
            let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
                .unwrap_or_else(|e| panic!("{e}"));
            let state = AppState::new(db.store.clone(), db.dir.path().join("data"), key);
            let s = &db.store;
            let push = |branch: &str| crate::pipeline::TriggerRequest {
                source: "api".into(),
                branch: Some(branch.into()),
                ..Default::default()
            };
            // A push to `feature`: its filters skip the branch, no schedule.
            crate::pipeline::create(s, &state.data_dir, &project, &push("feature"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.schedules(Some(project.id)).await.unwrap_or_default(), [], "{name}");
            // A push to `main`: the push runs `build` only, and `nightly` becomes a schedule of main.
            let pushed = crate::pipeline::create(s, &state.data_dir, &project, &push("main"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let workflows = s.workflows(pushed.pipeline_id).await.unwrap_or_default();
            assert_eq!(workflows.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["build"], "{name}");
            let schedules = s.schedules(Some(project.id)).await.unwrap_or_default();
            assert_eq!(schedules.len(), 1, "{name}: {schedules:?}");
            let nightly = schedules[0].clone();
            assert_eq!(
                (nightly.name.as_str(), nightly.cron.as_str(), nightly.branch.as_str(), nightly.source.as_str()),
                ("config: nightly 0 3 * * * on main", "0 3 * * *", "main", "config"),
                "{name}"
            );
            assert_eq!(nightly.workflow.as_deref(), Some("nightly"), "{name}");
            // Pushing again keeps it (and its next tick).
            crate::pipeline::create(s, &state.data_dir, &project, &push("main"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                s.schedules(Some(project.id)).await.unwrap_or_default(),
                std::slice::from_ref(&nightly),
                "{name}"
            );

            // The tick: a pipeline of `nightly` alone, planned as a scheduled workflow.
            assert_eq!(fire_due_schedules(&state, nightly.next_tick_at).await.ok(), Some(1), "{name}");
            let pipelines = s.pipelines(project.id, 10).await.unwrap_or_default();
            let fired = pipelines.iter().find(|p| p.trigger.source == "schedule").unwrap_or_else(|| panic!("{name}"));
            assert_eq!(fired.state, "running", "{name}: {:?}", fired.error);
            let workflows = s.workflows(fired.id).await.unwrap_or_default();
            assert_eq!(workflows.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["nightly"], "{name}");

            // The trigger leaves the configuration: the next push of main removes the schedule.
            let without =
                "version: 2.1\njobs:\n  j: {docker: [{image: busybox}], steps: [{run: 'true'}]}\nworkflows:\n  \
                           build:\n    jobs: [j]\n";
            commit_config(&db.dir.path().join("repo"), without);
            crate::pipeline::create(s, &state.data_dir, &project, &push("main"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.schedules(Some(project.id)).await.unwrap_or_default(), [], "{name}");
        }
    }

    /// A branch deleted upstream takes its configuration schedules with it: its next tick finds the branch gone
    /// (the fetch prunes it), is recorded as failed, and removes the schedule — other branches' stay.
    #[tokio::test]
    async fn a_deleted_branchs_configuration_schedule_goes_at_its_next_tick() {
        for db in testing::databases().await {
            let name = db.name;
            let config = "version: 2.1\njobs:\n  j: {docker: [{image: busybox}], steps: [{run: 'true'}]}\nworkflows:\n  \
                          nightly:\n    triggers:\n      - schedule: {cron: '0 3 * * *', filters: {branches: {only: [main, \
                          feature]}}}\n    jobs: [j]\n";
            let project = crate::pipeline::tests::local_project(&db, config).await;
            let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
                .unwrap_or_else(|e| panic!("{e}"));
            let state = AppState::new(db.store.clone(), db.dir.path().join("data"), key);
            let s = &db.store;
            for branch in ["main", "feature"] {
                let push = crate::pipeline::TriggerRequest {
                    source: "api".into(),
                    branch: Some(branch.into()),
                    ..Default::default()
                };
                crate::pipeline::create(s, &state.data_dir, &project, &push).await.unwrap_or_else(|e| panic!("{e}"));
            }
            let schedules = s.schedules(Some(project.id)).await.unwrap_or_default();
            assert_eq!(schedules.len(), 2, "{name}: {schedules:?}");
            let repo = git2::Repository::open(db.dir.path().join("repo")).unwrap_or_else(|e| panic!("{e}"));
            repo.find_reference("refs/heads/feature").and_then(|mut r| r.delete()).unwrap_or_else(|e| panic!("{e}"));

            let due = schedules.iter().map(|s| s.next_tick_at).max().unwrap_or_default();
            assert_eq!(fire_due_schedules(&state, due).await.ok(), Some(1), "{name}: main's tick fired");
            let left = s.schedules(Some(project.id)).await.unwrap_or_default();
            assert_eq!(left.iter().map(|s| s.branch.as_str()).collect::<Vec<_>>(), ["main"], "{name}");
        }
    }
}
