//! Test fixture data: an in-memory [`Dashboard`] with two projects, pipelines of every state, a job with a
//! 100,000-line log, secrets (whose values must never be rendered), hostile commit messages and branch names.
//! Not a product path: the coordinator implements the trait over its database.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use web::model::*;
use web::UserCredentials;
use web::{ArtifactDownload, Dashboard, DataError, DataResult, LogChunk, LogSlice, NewSession, RerunScope, Session};

/// The fixture's clock: 2026-11-18 11:06:40 UTC.
pub const NOW: u64 = 1_795_000_000_000;
/// A signed-in session seeded into the fixture (the cookie value) and its CSRF token.
pub const TOKEN: &str = "5e55105e55105e55105e55105e55105e55105e55105e55105e55105e55105e55";
pub const CSRF: &str = "c5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rf";
/// A signed-in viewer's session (user `victor`, role viewer) and its CSRF token.
pub const VIEWER_TOKEN: &str = "7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e";
pub const VIEWER_CSRF: &str = "v1ewv1ewv1ewv1ewv1ewv1ewv1ewv1ewv1ewv1ewv1ewv1ewv1ewv1ewv1ewv1ew";
/// A session that expired at [`NOW`].
pub const EXPIRED_TOKEN: &str = "e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0";
pub const PASSWORD: &str = "correct horse battery staple";
/// Secret values the fixture holds: no page may contain any of them.
pub const SECRETS: &[&str] = &["ghp_SuperSecretToken9876", "hunter2-database-password-0042", "whsec_hook_secret_5555"];
pub const HOSTILE_MESSAGE: &str = "fix: <script>alert(\"pwned\")</script> & \"quotes\"\n\nbody line";
pub const HOSTILE_BRANCH: &str = "feat/\"><img src=x onerror=alert(1)>";
pub const HOSTILE_LOG_LINE: &str = "<script>document.location='//evil'</script>";
/// Lines in the big log (job `job-big`, step 1).
/// The `tools` project's latest fetch error (with markup, which must come out escaped).
pub const TOOLS_FETCH_ERROR: &str =
    "repository mirror of `acme/tools`: fetching https://github.com/acme/tools.git into \
     mirror /data/mirrors/2 timed out (connect timeout 10000 ms, read timeout 60000 ms): <b>stalled</b>";
pub const BIG_LOG_LINES: usize = 100_000;

#[derive(Clone, Default)]
pub struct Fixture {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    users: Vec<UserCredentials>,
    sessions: HashMap<String, Session>,
    projects: Vec<ProjectSummary>,
    project_pages: HashMap<String, Project>,
    pipelines: HashMap<String, Vec<Pipeline>>,
    jobs: HashMap<String, Job>,
    logs: HashMap<(String, u32), Vec<u8>>,
    env: BTreeMap<String, String>,
    options: Option<ProjectOptions>,
    schedules: Vec<ScheduleSummary>,
    runners: Vec<Runner>,
    /// What the changing calls did, in order ("approve job-hold by alice").
    actions: Vec<String>,
}

fn repo() -> Repository {
    Repository {
        url: "https://github.com/acme/app.git".into(),
        github: Some(GitHubRepo { owner: "acme".into(), name: "app".into() }),
    }
}

fn app() -> ProjectRef {
    ProjectRef { slug: "acme-app".into(), name: "acme/app".into(), repository: repo() }
}

fn tools() -> ProjectRef {
    ProjectRef {
        slug: "tools".into(),
        name: "tools".into(),
        repository: Repository { url: "/srv/git/tools.git".into(), github: None },
    }
}

fn trigger(branch: &str, sha: &str, message: &str) -> Trigger {
    Trigger {
        kind: TriggerKind::Push,
        branch: Some(branch.into()),
        tag: None,
        sha: sha.into(),
        commit_message: message.into(),
        author: "Alice Example <alice@example.com>".into(),
        pull_request: None,
    }
}

fn wjob(
    id: &str,
    name: &str,
    status: Status,
    requires: &[&str],
    started: Option<u64>,
    secs: Option<u64>,
) -> WorkflowJob {
    WorkflowJob {
        id: id.into(),
        name: name.into(),
        kind: if name.starts_with("hold") { JobKind::Approval } else { JobKind::Build },
        status,
        requires: requires.iter().map(|s| s.to_string()).collect(),
        started_at: started,
        finished_at: started.zip(secs).map(|(s, d)| s + d * 1000),
    }
}

fn summary(p: &Pipeline) -> PipelineSummary {
    PipelineSummary {
        number: p.number,
        status: p.status,
        trigger: p.trigger.clone(),
        created_at: p.created_at,
        workflows: p.workflows.iter().map(|w| WorkflowBrief { name: w.name.clone(), status: w.status }).collect(),
    }
}

fn step(index: u32, name: &str, status: Status, started: u64, secs: Option<u64>, log_bytes: u64) -> Step {
    Step {
        index,
        name: name.into(),
        status,
        started_at: Some(started),
        finished_at: secs.map(|s| started + s * 1000),
        exit_code: match status {
            Status::Failed => Some(1),
            Status::Success => Some(0),
            _ => None,
        },
        log_bytes,
    }
}

fn alice() -> User {
    User { id: "u1".into(), name: "alice".into(), role: Role::Admin }
}

impl Fixture {
    pub fn new() -> Fixture {
        let t0 = NOW - 3_600_000;
        let mut state = State::default();
        state.users.push(UserCredentials {
            user: alice(),
            password_hash: web::hash_password(PASSWORD).expect("hashing the fixture password"),
        });
        state.sessions.insert(
            web::auth::token_hash(TOKEN),
            Session { user: alice(), csrf_token: CSRF.into(), expires_at: NOW + 1 },
        );

        state.sessions.insert(
            web::auth::token_hash(VIEWER_TOKEN),
            Session {
                user: User { id: "u2".into(), name: "victor".into(), role: Role::Viewer },
                csrf_token: VIEWER_CSRF.into(),
                expires_at: NOW + 1,
            },
        );
        state.schedules.push(ScheduleSummary {
            name: "nightly".into(),
            cron: "0 3 * * *".into(),
            branch: "main".into(),
            workflow: None,
            next_run_at: Some(NOW + 3_600_000),
        });
        state.sessions.insert(
            web::auth::token_hash(EXPIRED_TOKEN),
            Session { user: alice(), csrf_token: CSRF.into(), expires_at: NOW },
        );

        // Pipeline 3: running, with a hold and a failed job; 2: failed; 1: config error; 4..=30: history.
        let running = Pipeline {
            project: app(),
            number: 42,
            status: Status::Running,
            trigger: trigger("main", "0123456789abcdef0123456789abcdef01234567", HOSTILE_MESSAGE),
            created_at: t0,
            config_error: None,
            workflows: vec![Workflow {
                id: "wf-main".into(),
                name: "build-test-deploy".into(),
                status: Status::Running,
                created_at: t0,
                finished_at: None,
                jobs: vec![
                    wjob("job-build", "build", Status::Success, &[], Some(t0 + 5_000), Some(65)),
                    wjob("job-lint", "lint", Status::Failed, &[], Some(t0 + 5_000), Some(12)),
                    wjob("job-big", "test", Status::Running, &["build"], Some(t0 + 80_000), None),
                    wjob("job-hold", "hold-deploy", Status::OnHold, &["test", "lint"], None, None),
                    wjob("job-deploy", "deploy", Status::Blocked, &["hold-deploy"], None, None),
                ],
            }],
        };
        let failed = Pipeline {
            project: app(),
            number: 41,
            status: Status::Failed,
            trigger: Trigger {
                kind: TriggerKind::PullRequest,
                pull_request: Some(7),
                ..trigger(HOSTILE_BRANCH, "fedcba9876543210fedcba9876543210fedcba98", "try a thing")
            },
            created_at: t0 - 600_000,
            config_error: None,
            workflows: vec![Workflow {
                id: "wf-failed".into(),
                name: "build".into(),
                status: Status::Failed,
                created_at: t0 - 600_000,
                finished_at: Some(t0 - 500_000),
                jobs: vec![wjob("job-old", "build", Status::Failed, &[], Some(t0 - 590_000), Some(30))],
            }],
        };
        let broken = Pipeline {
            project: app(),
            number: 40,
            status: Status::ConfigError,
            trigger: trigger("main", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "break the config"),
            created_at: t0 - 1_200_000,
            config_error: Some(ConfigError {
                file: ".circleci/config.yml".into(),
                line: Some(12),
                column: Some(7),
                message: "jobs.build.steps[0]: unknown step `rnu`: did you mean `run`?".into(),
            }),
            workflows: vec![],
        };
        let mut app_pipelines = vec![running.clone(), failed.clone(), broken.clone()];
        for n in (1..40).rev() {
            app_pipelines.push(Pipeline {
                project: app(),
                number: n,
                status: Status::Success,
                trigger: trigger("main", &format!("{n:040x}"), &format!("change {n}")),
                created_at: t0 - 1_200_000 - n * 60_000,
                config_error: None,
                workflows: vec![],
            });
        }
        state.pipelines.insert("acme-app".into(), app_pipelines);
        state.pipelines.insert("tools".into(), vec![]);
        state.projects = vec![
            ProjectSummary {
                project: app(),
                branches: vec![
                    BranchSummary {
                        name: "main".into(),
                        latest: Some(PipelineBrief {
                            number: 42,
                            status: Status::Running,
                            sha: running.trigger.sha.clone(),
                            created_at: t0,
                        }),
                    },
                    BranchSummary {
                        name: HOSTILE_BRANCH.into(),
                        latest: Some(PipelineBrief {
                            number: 41,
                            status: Status::Failed,
                            sha: failed.trigger.sha.clone(),
                            created_at: t0 - 600_000,
                        }),
                    },
                ],
            },
            ProjectSummary { project: tools(), branches: vec![] },
        ];
        state.project_pages.insert(
            "acme-app".into(),
            Project {
                project: app(),
                default_branch: "main".into(),
                branches: vec!["main".into(), HOSTILE_BRANCH.into()],
                webhook_secret: Some(SecretHint::of(SECRETS[2])),
                fetch_error: None,
            },
        );
        state.project_pages.insert(
            "tools".into(),
            Project {
                project: tools(),
                default_branch: "main".into(),
                branches: vec![],
                webhook_secret: None,
                fetch_error: Some(FetchError { message: TOOLS_FETCH_ERROR.into(), at: 1_764_000_000_000 }),
            },
        );

        // The running job: a finished step, a step with a 100,000-line log still running, a pending step.
        let mut big = Vec::new();
        for i in 1..=BIG_LOG_LINES {
            if i % 1000 == 0 {
                big.extend_from_slice(format!("\u{1b}[1;31mline {i}: failure marker\u{1b}[0m\n").as_bytes());
            } else {
                big.extend_from_slice(format!("line {i}: ok\n").as_bytes());
            }
        }
        big.extend_from_slice(format!("{HOSTILE_LOG_LINE}\n").as_bytes());
        let small = b"Cloning into '.'...\n\x1b[32mdone\x1b[0m\n".to_vec();
        state.logs.insert(("job-big".into(), 0), small.clone());
        state.logs.insert(("job-big".into(), 1), big.clone());
        state.jobs.insert(
            "job-big".into(),
            Job {
                id: "job-big".into(),
                name: "test".into(),
                number: 17,
                attempt: 1,
                status: Status::Running,
                project: app(),
                pipeline_number: 42,
                workflow_id: "wf-main".into(),
                workflow_name: "build-test-deploy".into(),
                runner: Some("builder-1".into()),
                queued_at: t0 + 70_000,
                started_at: Some(t0 + 80_000),
                finished_at: None,
                exit_code: None,
                message: None,
                steps: vec![
                    step(0, "Checkout code", Status::Success, t0 + 80_000, Some(2), small.len() as u64),
                    step(1, "Run tests", Status::Running, t0 + 82_000, None, big.len() as u64),
                    step(2, "Store test results", Status::Queued, t0 + 82_000, None, 0),
                ],
                tests: vec![
                    TestCase {
                        classname: "app.tests".into(),
                        name: "adds".into(),
                        file: Some("tests/test_add.py".into()),
                        result: TestResult::Success,
                        message: None,
                        run_time_ms: 3,
                    },
                    TestCase {
                        classname: "app.tests".into(),
                        name: "divides <by> zero".into(),
                        file: None,
                        result: TestResult::Failure,
                        message: Some("ZeroDivisionError: <b>division</b> by zero".into()),
                        run_time_ms: 12,
                    },
                    TestCase {
                        classname: "app.tests".into(),
                        name: "skipped one".into(),
                        file: None,
                        result: TestResult::Skipped,
                        message: None,
                        run_time_ms: 0,
                    },
                ],
                artifacts: vec![
                    Artifact { path: "coverage/index.html".into(), size_bytes: 2048 },
                    Artifact { path: "reports/a b.txt".into(), size_bytes: 11 },
                ],
                env_names: vec!["CIRCLE_SHA1".into(), "DATABASE_PASSWORD".into(), "GITHUB_TOKEN".into()],
            },
        );
        let mut lint = state.jobs["job-big"].clone();
        lint.id = "job-lint".into();
        lint.name = "lint".into();
        lint.status = Status::Failed;
        lint.queued_at = t0 + 1_000;
        lint.started_at = Some(t0 + 5_000);
        lint.finished_at = Some(t0 + 17_000);
        lint.exit_code = Some(1);
        let lint_log = b"\x1b[1merror\x1b[0m: unused variable `x`\nexit status 1\n".to_vec();
        lint.steps = vec![step(0, "Run linter", Status::Failed, t0 + 5_000, Some(12), lint_log.len() as u64)];
        state.logs.insert(("job-lint".into(), 0), lint_log);
        state.jobs.insert("job-lint".into(), lint);

        state.env.insert("GITHUB_TOKEN".into(), SECRETS[0].into());
        state.env.insert("DATABASE_PASSWORD".into(), SECRETS[1].into());
        state.env.insert("SHORT".into(), "abc".into());
        state.options = Some(ProjectOptions { max_concurrent_jobs: Some(4), auto_cancel_redundant: true });
        state.runners = vec![
            Runner {
                name: "builder-1".into(),
                online: true,
                labels: BTreeMap::from([("os".into(), "linux".into()), ("arch".into(), "amd64".into())]),
                resource_classes: vec!["medium".into()],
                current_job: Some(RunnerJob {
                    id: "job-big".into(),
                    name: "test".into(),
                    project_slug: "acme-app".into(),
                    pipeline_number: 42,
                }),
                last_contact_at: Some(NOW - 2_000),
            },
            Runner {
                name: "old-box".into(),
                online: false,
                labels: BTreeMap::new(),
                resource_classes: vec![],
                current_job: None,
                last_contact_at: Some(NOW - 86_400_000),
            },
        ];
        Fixture { inner: Arc::new(Mutex::new(state)) }
    }

    pub fn actions(&self) -> Vec<String> {
        self.inner.lock().unwrap().actions.clone()
    }

    pub fn env_value(&self, name: &str) -> Option<String> {
        self.inner.lock().unwrap().env.get(name).cloned()
    }

    pub fn session_count(&self) -> usize {
        self.inner.lock().unwrap().sessions.len()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.inner.lock().unwrap())
    }
}

fn not_found(what: impl Into<String>) -> DataError {
    DataError::NotFound { what: what.into() }
}

impl Dashboard for Fixture {
    fn now(&self) -> u64 {
        NOW
    }

    async fn user_credentials(&self, name: &str) -> DataResult<Option<UserCredentials>> {
        Ok(self.with(|s| s.users.iter().find(|u| u.user.name == name).cloned()))
    }

    async fn create_session(&self, session: NewSession) -> DataResult<()> {
        self.with(|s| {
            let user = s.users.iter().find(|u| u.user.id == session.user_id).map(|u| u.user.clone());
            let user = user.ok_or_else(|| not_found("user"))?;
            s.sessions.insert(
                session.token_hash,
                Session { user, csrf_token: session.csrf_token, expires_at: session.expires_at },
            );
            Ok(())
        })
    }

    async fn session(&self, token_hash: &str) -> DataResult<Option<Session>> {
        Ok(self.with(|s| s.sessions.get(token_hash).cloned()))
    }

    async fn delete_session(&self, token_hash: &str) -> DataResult<()> {
        self.with(|s| s.sessions.remove(token_hash));
        Ok(())
    }

    async fn projects(&self) -> DataResult<Vec<ProjectSummary>> {
        Ok(self.with(|s| s.projects.clone()))
    }

    async fn project(&self, slug: &str) -> DataResult<Project> {
        self.with(|s| s.project_pages.get(slug).cloned()).ok_or_else(|| not_found(format!("project {slug}")))
    }

    async fn pipelines(&self, slug: &str, query: &PipelineQuery) -> DataResult<PipelinePage> {
        self.with(|s| {
            let all = s.pipelines.get(slug).ok_or_else(|| not_found(format!("project {slug}")))?;
            let matching: Vec<&Pipeline> =
                all.iter().filter(|p| query.branch.is_none() || p.trigger.branch == query.branch).collect();
            Ok(PipelinePage {
                total: matching.len() as u64,
                pipelines: matching
                    .iter()
                    .skip(query.offset as usize)
                    .take(query.limit as usize)
                    .map(|p| summary(p))
                    .collect(),
            })
        })
    }

    async fn pipeline(&self, slug: &str, number: u64) -> DataResult<Pipeline> {
        self.with(|s| s.pipelines.get(slug).and_then(|ps| ps.iter().find(|p| p.number == number).cloned()))
            .ok_or_else(|| not_found(format!("pipeline {slug} #{number}")))
    }

    async fn job(&self, job_id: &str) -> DataResult<Job> {
        self.with(|s| s.jobs.get(job_id).cloned()).ok_or_else(|| not_found(format!("job {job_id}")))
    }

    async fn read_log(&self, job_id: &str, step: u32, range: Range<u64>) -> DataResult<LogSlice> {
        self.with(|s| {
            let log = s.logs.get(&(job_id.to_string(), step)).map(Vec::as_slice).unwrap_or_default();
            let end = (range.end as usize).min(log.len());
            let start = (range.start as usize).min(end);
            Ok(LogSlice { start: start as u64, bytes: log[start..end].to_vec(), total_bytes: log.len() as u64 })
        })
    }

    async fn log_stream(&self, job_id: &str, step: u32, from: u64) -> DataResult<BoxStream<'static, LogChunk>> {
        // As if the runner sent three more chunks (one ending mid-line), then the step finished.
        let known = self.with(|s| s.logs.get(&(job_id.to_string(), step)).map(|l| l.len() as u64));
        let known = known.ok_or_else(|| not_found(format!("step {step} of job {job_id}")))?;
        let from = from.max(known);
        let texts = ["live \u{1b}[33mline".to_string(), " one\u{1b}[0m\n".to_string(), format!("{HOSTILE_LOG_LINE}\n")];
        let mut offset = from;
        let chunks: Vec<LogChunk> = texts
            .into_iter()
            .map(|data| {
                let chunk = LogChunk { offset, data };
                offset += chunk.data.len() as u64;
                chunk
            })
            .collect();
        Ok(stream::iter(chunks).boxed())
    }

    async fn pipeline_changes(&self, slug: &str, number: u64) -> DataResult<BoxStream<'static, ()>> {
        // The fixture never changes: one look, then the stream ends as for a finished pipeline.
        self.pipeline(slug, number).await?;
        Ok(stream::iter([()]).boxed())
    }

    async fn artifact(&self, job_id: &str, path: &str) -> DataResult<ArtifactDownload> {
        let found =
            self.with(|s| s.jobs.get(job_id).and_then(|j| j.artifacts.iter().find(|a| a.path == path).cloned()));
        let found = found.ok_or_else(|| not_found(format!("artifact {path}")))?;
        let body = format!("<html>{}</html>", found.path);
        Ok(ArtifactDownload {
            size_bytes: body.len() as u64,
            body: stream::once(async move { Ok(Bytes::from(body)) }).boxed(),
        })
    }

    async fn project_settings(&self, slug: &str) -> DataResult<ProjectSettings> {
        let project = self.project(slug).await?.project;
        Ok(self.with(|s| ProjectSettings {
            project,
            env_vars: s
                .env
                .iter()
                .map(|(name, value)| EnvVarSummary { name: name.clone(), value: SecretHint::of(value) })
                .collect(),
            contexts: vec![ContextSummary {
                name: "aws-prod".into(),
                env_var_names: vec!["AWS_ACCESS_KEY_ID".into(), "AWS_SECRET_ACCESS_KEY".into()],
            }],
            schedules: s.schedules.clone(),
            options: s
                .options
                .clone()
                .unwrap_or(ProjectOptions { max_concurrent_jobs: None, auto_cancel_redundant: false }),
        }))
    }

    async fn runners(&self) -> DataResult<Vec<Runner>> {
        Ok(self.with(|s| s.runners.clone()))
    }

    async fn approve_job(&self, actor: &User, job_id: &str) -> DataResult<()> {
        if job_id != "job-hold" {
            return Err(DataError::Conflict { message: format!("job {job_id} is not waiting for approval") });
        }
        self.with(|s| s.actions.push(format!("approve {job_id} by {}", actor.name)));
        Ok(())
    }

    async fn cancel_workflow(&self, actor: &User, workflow_id: &str) -> DataResult<()> {
        self.with(|s| s.actions.push(format!("cancel {workflow_id} by {}", actor.name)));
        Ok(())
    }

    async fn rerun_workflow(&self, actor: &User, workflow_id: &str, scope: RerunScope) -> DataResult<()> {
        self.with(|s| s.actions.push(format!("rerun {scope:?} {workflow_id} by {}", actor.name)));
        Ok(())
    }

    async fn set_env_var(&self, actor: &User, _slug: &str, name: &EnvVarName, value: &str) -> DataResult<()> {
        self.with(|s| {
            s.env.insert(name.to_string(), value.to_string());
            s.actions.push(format!("set {name} by {}", actor.name));
        });
        Ok(())
    }

    async fn delete_env_var(&self, actor: &User, _slug: &str, name: &EnvVarName) -> DataResult<()> {
        self.with(|s| {
            s.env.remove(name.as_str());
            s.actions.push(format!("delete {name} by {}", actor.name));
        });
        Ok(())
    }

    async fn set_project_options(&self, actor: &User, _slug: &str, options: &ProjectOptions) -> DataResult<()> {
        self.with(|s| {
            s.options = Some(options.clone());
            s.actions.push(format!("options {options:?} by {}", actor.name));
        });
        Ok(())
    }

    async fn add_schedule(&self, actor: &User, _slug: &str, schedule: &NewSchedule) -> DataResult<()> {
        if schedule.cron.split_whitespace().count() != 5 {
            return Err(DataError::Invalid { message: format!("field cron: `{}` is not 5 fields", schedule.cron) });
        }
        let name = schedule.name.clone().unwrap_or_else(|| format!("{} {}", schedule.cron, schedule.branch));
        self.with(|s| {
            if s.schedules.iter().any(|x| x.name == name) {
                return Err(DataError::Conflict { message: format!("schedule {name} exists") });
            }
            s.schedules.push(ScheduleSummary {
                name: name.clone(),
                cron: schedule.cron.clone(),
                branch: schedule.branch.clone(),
                workflow: schedule.workflow.clone(),
                next_run_at: Some(NOW + 60_000),
            });
            s.actions.push(format!("schedule {name} by {}", actor.name));
            Ok(())
        })
    }

    async fn delete_schedule(&self, actor: &User, _slug: &str, name: &str) -> DataResult<()> {
        self.with(|s| {
            let before = s.schedules.len();
            s.schedules.retain(|x| x.name != name);
            if s.schedules.len() == before {
                return Err(not_found(format!("schedule {name}")));
            }
            s.actions.push(format!("unschedule {name} by {}", actor.name));
            Ok(())
        })
    }
}
