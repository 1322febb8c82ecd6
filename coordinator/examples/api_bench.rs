//! API benchmarks (`bench/api-list`) against a running `coordinator serve`; measures and prints, asserts nothing.
//!
//! - `seed`: fills the database with N finished jobs (pipelines of K jobs in one workflow, ten branches) for an
//!   existing project, in bulk SQL through the store's pool, gives the first job of the newest pipeline a step
//!   with a 100,000-line log (appended as a runner's chunks are, `--log-chunk-lines` lines each), and adds a
//!   dashboard session; prints its token.
//! - `explain`: the query plans of the dashboard's list queries on this database (SQLite or PostgreSQL).
//! - `lists`: p50/p99 of the dashboard's list pages (projects, a project's pipelines, a branch, a deep page, a
//!   pipeline, a job, runners) over HTTP with that session; for the job page (the one with the big log) also
//!   the time to its first byte and its weight.
//! - `lease`: webhook received → job leased by an idle long-polling runner, p50/p99: a runner waits in
//!   `POST /api/v1/runners/lease`, a signed push is posted, the time until the lease answers is taken; the job is
//!   completed before the next round.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use coordinator::github::webhook::sign;
use coordinator::store::{Backend, Store};
use sha2::Digest;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Seed {
        #[arg(long)]
        database_url: String,
        /// The project (added before with `coordinator project add`).
        #[arg(long)]
        project: String,
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        #[arg(long, default_value_t = 5)]
        jobs_per_pipeline: usize,
        /// Lines of the big log.
        #[arg(long, default_value_t = 100_000)]
        log_lines: usize,
        /// Lines per stored log chunk (a runner sends what arrived in each interval, at most 64 KiB).
        #[arg(long, default_value_t = 100)]
        log_chunk_lines: usize,
    },
    Explain {
        #[arg(long)]
        database_url: String,
    },
    Lists {
        #[arg(long)]
        url: String,
        /// The session token `seed` printed.
        #[arg(long)]
        session: String,
        #[arg(long)]
        project: String,
        #[arg(long, default_value_t = 200)]
        requests: usize,
    },
    Lease {
        #[arg(long)]
        url: String,
        #[arg(long)]
        registration_token: String,
        #[arg(long)]
        secret: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        sha: String,
        #[arg(long, default_value_t = 30)]
        rounds: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Seed { database_url, project, jobs, jobs_per_pipeline, log_lines, log_chunk_lines } => runtime()?
            .block_on(async {
                seed(&database_url, &project, jobs, jobs_per_pipeline.max(1)).await?;
                seed_log(&database_url, &project, log_lines, log_chunk_lines.max(1)).await
            }),
        Command::Explain { database_url } => runtime()?.block_on(explain(&database_url)),
        Command::Lists { url, session, project, requests } => lists(&url, &session, &project, requests),
        Command::Lease { url, registration_token, secret, project, sha, rounds } => {
            lease(&url, &registration_token, &secret, &project, &sha, rounds)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

async fn seed(url: &str, slug: &str, jobs: usize, per_pipeline: usize) -> anyhow::Result<()> {
    let store = Store::connect(url).await.context("opening the database")?;
    let project = store.project_by_slug(slug).await.with_context(|| format!("project {slug}"))?;
    let pool = store.pool();
    let pipelines = jobs.div_ceil(per_pipeline);
    let now = coordinator::store::now_ms();
    let started = Instant::now();
    let batch = 200;
    let mut job_number = 0usize;
    for first in (0..pipelines).step_by(batch) {
        let last = (first + batch).min(pipelines);
        let mut tx = pool.begin().await?;
        // Every value below is made here (numbers and fixed words): nothing outside is spliced into SQL.
        let values: Vec<String> = (first..last)
            .map(|i| {
                let (number, at) = (i + 1, now - (pipelines - i) as i64 * 1000);
                let state = if i % 7 == 0 { "failed" } else { "success" };
                format!(
                    "({}, {number}, 'webhook', 'branch-{}', '{:040x}', 'seeded pipeline {number}', 'Seed', '{state}', \
                     {at}, {at})",
                    project.id,
                    i % 10,
                    i
                )
            })
            .collect();
        let rows: Vec<(i64,)> = sqlx::query_as(&format!(
            "INSERT INTO pipelines (project_id, number, source, branch, sha, commit_message, author, state, \
             created_at, updated_at) VALUES {} RETURNING id",
            values.join(", ")
        ))
        .fetch_all(&mut *tx)
        .await?;
        let values: Vec<String> = rows.iter().map(|(id,)| format!("({id}, 'main', 'success', {now}, {now})")).collect();
        let workflows: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "INSERT INTO workflows (pipeline_id, name, state, created_at, updated_at) VALUES {} RETURNING id, \
             pipeline_id",
            values.join(", ")
        ))
        .fetch_all(&mut *tx)
        .await?;
        let mut values = Vec::new();
        for (workflow, pipeline) in &workflows {
            for k in 0..per_pipeline {
                if job_number == jobs {
                    break;
                }
                job_number += 1;
                values.push(format!(
                    "({workflow}, {pipeline}, {}, {job_number}, 'job-{k}', 'build', 'success', {now}, {now}, {now}, \
                     {now}, 0)",
                    project.id
                ));
            }
        }
        sqlx::query(&format!(
            "INSERT INTO jobs (workflow_id, pipeline_id, project_id, number, name, kind, state, queued_at, \
             started_at, finished_at, created_at, exit_code) VALUES {}",
            values.join(", ")
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    sqlx::query("UPDATE projects SET pipeline_counter = $1, job_counter = $2 WHERE id = $3")
        .bind(pipelines as i64)
        .bind(job_number as i64)
        .bind(project.id)
        .execute(pool)
        .await?;
    // Fresh statistics, as a database that grew to this size over time would have.
    sqlx::query("ANALYZE").execute(pool).await?;
    // A dashboard session: the token's SHA-256 is what the store keeps (web::auth).
    let user = store.add_user(&format!("bench-{now}"), "not-a-password-hash", true).await?;
    let token = format!("{:016x}{:016x}{:016x}{:016x}", now, now ^ 0x5eed, user, now.rotate_left(17));
    let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    store.create_session(&hash, user, &"c".repeat(64), now + 3_600_000).await?;
    eprintln!("seeded {job_number} jobs in {pipelines} pipelines in {:.1} s", started.elapsed().as_secs_f64());
    println!("{token}");
    store.close().await;
    Ok(())
}

/// A step with a `lines`-line log for the first job of the project's newest pipeline (the job `lists` opens),
/// appended through the store in chunks of `chunk_lines` lines, as the runner API stores them.
async fn seed_log(url: &str, slug: &str, lines: usize, chunk_lines: usize) -> anyhow::Result<()> {
    let store = Store::connect(url).await.context("opening the database")?;
    let project = store.project_by_slug(slug).await.with_context(|| format!("project {slug}"))?;
    let started = Instant::now();
    let (job,): (i64,) = sqlx::query_as(
        "SELECT j.id FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id WHERE p.project_id = $1 ORDER BY p.number \
         DESC, j.id LIMIT 1",
    )
    .bind(project.id)
    .fetch_one(store.pool())
    .await
    .context("no job to give the log to")?;
    let now = coordinator::store::now_ms();
    store.step_started(job, 1, 0, "run the test suite", now - 60_000).await?;
    let mut offset = 0u64;
    let mut chunk = String::new();
    for i in 0..lines {
        chunk.push_str(&format!("\u{1b}[32mok\u{1b}[0m test suite::case_{i:06} ... passed in {} ms\n", i % 97));
        if (i + 1) % chunk_lines == 0 || i + 1 == lines {
            store.append_log(job, 1, 0, "stdout", offset, &chunk, &|t: &str| t.to_string()).await?;
            offset += chunk.len() as u64;
            chunk.clear();
        }
    }
    // Failed: the job page opens a failed step on its log's tail (a passed one loads when unfolded).
    store.step_finished(job, 1, 0, config_schema::wire::StepStatus::Failed, Some(1), now).await?;
    sqlx::query("UPDATE jobs SET state = 'failed', exit_code = 1 WHERE id = $1")
        .bind(job)
        .execute(store.pool())
        .await?;
    eprintln!(
        "seeded a {lines}-line log ({:.1} MB in chunks of {chunk_lines} lines) for job {job} in {:.1} s",
        offset as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    store.close().await;
    Ok(())
}

/// The dashboard's list queries, with the arguments of a typical page.
const LIST_QUERIES: &[(&str, &str)] = &[
    ("project page", "SELECT * FROM pipelines WHERE project_id = 1 ORDER BY number DESC LIMIT 25 OFFSET 0"),
    (
        "project page, branch",
        "SELECT * FROM pipelines WHERE project_id = 1 AND branch = 'branch-3' ORDER BY number DESC LIMIT 25 OFFSET 0",
    ),
    (
        "project page's workflows",
        "SELECT pipeline_id, name, state FROM workflows WHERE pipeline_id IN (100, 101, 102) \
      ORDER BY pipeline_id, id",
    ),
    ("pipeline count", "SELECT COUNT(*) AS n FROM pipelines WHERE project_id = 1"),
    (
        "branches with their latest pipeline (projects page: every project's)",
        "SELECT p.* FROM pipelines p JOIN (SELECT project_id, branch, MAX(number) AS latest FROM pipelines WHERE \
         branch IS NOT NULL GROUP BY project_id, branch) b ON p.project_id = b.project_id AND p.number = b.latest \
         ORDER BY p.project_id, p.number DESC",
    ),
    (
        "job page: each step's log size",
        "SELECT step, SUM(COALESCE(stored_len, LENGTH(data))) AS n FROM log_chunks WHERE job_id = 1 AND attempt = 1 \
         GROUP BY step",
    ),
    ("pipeline's workflows", "SELECT id, name, state FROM workflows WHERE pipeline_id = 100 ORDER BY id"),
    ("pipeline's jobs", "SELECT id FROM jobs WHERE pipeline_id = 100 ORDER BY id"),
    ("workflow's jobs", "SELECT id, name, kind, state FROM jobs WHERE workflow_id = 100 ORDER BY id"),
    (
        "runner's jobs",
        "SELECT j.id FROM jobs j JOIN projects p ON p.id = j.project_id JOIN pipelines pl ON pl.id = j.pipeline_id \
         WHERE j.runner_id = 1 AND j.state = 'running' ORDER BY j.id",
    ),
    ("lease", "SELECT id FROM jobs WHERE state = 'queued' AND kind = 'build' ORDER BY queued_at, id LIMIT 1"),
];

async fn explain(url: &str) -> anyhow::Result<()> {
    let store = Store::connect(url).await.context("opening the database")?;
    for (what, sql) in LIST_QUERIES {
        println!("{what}: {sql}");
        match store.backend() {
            Backend::Sqlite => {
                let rows: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(store.pool()).await?;
                for (_, _, _, detail) in rows {
                    println!("    {detail}");
                }
            }
            Backend::Postgres => {
                let rows: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {sql}")).fetch_all(store.pool()).await?;
                for (line,) in rows {
                    println!("    {line}");
                }
            }
        }
    }
    store.close().await;
    Ok(())
}

fn new_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return f64::NAN;
    }
    sorted_ms[((sorted_ms.len() - 1) as f64 * p).round() as usize]
}

fn lists(url: &str, session: &str, project: &str, requests: usize) -> anyhow::Result<()> {
    let agent = new_agent();
    let base = url.trim_end_matches('/');
    let slug = project.replace('/', "%2F");
    let cookie = format!("drydock_session={session}");
    let get = |path: &str| -> anyhow::Result<(u16, String)> {
        let mut r = agent.get(&format!("{base}{path}")).header("cookie", &cookie).call()?;
        Ok((r.status().as_u16(), r.body_mut().read_to_string()?))
    };
    // A pipeline and one of its jobs, found on the project page.
    let (status, page) = get(&format!("/projects/{slug}"))?;
    if status != 200 {
        bail!("GET /projects/{slug}: {status}: is the session valid?");
    }
    let number = page
        .split(&format!("/projects/{slug}/pipelines/"))
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .map(str::to_owned)
        .context("no pipeline link on the project page")?;
    let (_, pipeline) = get(&format!("/projects/{slug}/pipelines/{number}"))?;
    let job = pipeline
        .split("/jobs/")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .context("no job link on the pipeline page")?;
    let pages = [
        ("projects", "/".to_string()),
        ("project pipelines", format!("/projects/{slug}")),
        ("project, one branch", format!("/projects/{slug}?branch=branch-3")),
        ("project, page 500", format!("/projects/{slug}?page=500")),
        ("pipeline", format!("/projects/{slug}/pipelines/{number}")),
        ("job (big log)", format!("/jobs/{job}")),
        ("runners", "/runners".to_string()),
    ];
    println!("{:<22} {:>8} {:>8} {:>8}  (ms, {requests} sequential requests each)", "page", "p50", "p99", "max");
    for (name, path) in &pages {
        for _ in 0..10 {
            get(path)?;
        }
        let mut ms = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            let (status, _) = get(path)?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                bail!("GET {path}: {status}");
            }
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "{name:<22} {:>8.2} {:>8.2} {:>8.2}  GET {path}",
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            ms.last().copied().unwrap_or(f64::NAN)
        );
    }
    // The job page with the big log (it opens the failed step on the log's tail) and the log's own page: time to
    // the first byte (the response's head; a page is rendered before it is sent) and the page's weight.
    for path in [format!("/jobs/{job}"), format!("/jobs/{job}/steps/0/log")] {
        let (mut first_byte, mut weight) = (Vec::with_capacity(requests), 0);
        for _ in 0..requests {
            let t = Instant::now();
            let mut r = agent.get(&format!("{base}{path}")).header("cookie", &cookie).call()?;
            first_byte.push(t.elapsed().as_secs_f64() * 1000.0);
            weight = r.body_mut().read_to_vec()?.len();
        }
        first_byte.sort_by(f64::total_cmp);
        println!(
            "big log: first byte p50 {:.2} ms, p99 {:.2} ms; weight {:.1} KB (GET {path})",
            percentile(&first_byte, 0.5),
            percentile(&first_byte, 0.99),
            weight as f64 / 1000.0
        );
    }
    Ok(())
}

fn post_json(
    agent: &ureq::Agent,
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut req = agent.post(url).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut r = req.send(body.to_string().as_bytes())?;
    let text = r.body_mut().read_to_string()?;
    Ok((r.status().as_u16(), serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)))
}

fn lease(url: &str, registration: &str, secret: &str, project: &str, sha: &str, rounds: usize) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/').to_string();
    let agent = new_agent();
    let (status, reg) = post_json(
        &agent,
        &format!("{base}/api/v1/runners/register"),
        None,
        &serde_json::json!({"registration_token": registration, "name": format!("bench-{}", std::process::id())}),
    )?;
    if status != 201 {
        bail!("register: {status} {reg}");
    }
    let token = reg["token"].as_str().context("no runner token")?.to_string();
    let mut ms = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (lease_base, lease_token) = (base.clone(), token.clone());
        let poll = std::thread::spawn(move || -> anyhow::Result<(Instant, u16, serde_json::Value)> {
            let (status, body) = post_json(
                &new_agent(),
                &format!("{lease_base}/api/v1/runners/lease"),
                Some(&lease_token),
                &serde_json::json!({"wait_ms": 30000}),
            )?;
            Ok((Instant::now(), status, body))
        });
        // Let the long-poll reach the coordinator and wait there.
        std::thread::sleep(Duration::from_millis(300));
        let body = serde_json::json!({
            "ref": "refs/heads/main", "before": "0000000000000000000000000000000000000001", "after": sha,
            "repository": {"full_name": project, "name": "app", "clone_url": "https://example.invalid/x.git",
                           "owner": {"login": "bench"}},
            "head_commit": {"id": sha, "message": "lease", "author": {"name": "Bench", "email": "b@example.invalid"}},
        })
        .to_string()
        .into_bytes();
        let sent = Instant::now();
        let r = agent
            .post(&format!("{base}/webhooks/github"))
            .header("x-github-event", "push")
            .header("x-github-delivery", format!("lease-{}-{round}", std::process::id()))
            .header("x-hub-signature-256", sign(secret.as_bytes(), &body))
            .header("content-type", "application/json")
            .send(&body[..])?;
        if r.status().as_u16() != 202 {
            bail!("webhook: {}", r.status());
        }
        let (leased_at, status, assignment) = poll.join().map_err(|_| anyhow::anyhow!("poll thread panicked"))??;
        if status != 200 {
            bail!("lease: {status} {assignment}");
        }
        ms.push(leased_at.duration_since(sent).as_secs_f64() * 1000.0);
        let job = assignment["job"]["id"].as_str().context("no job id")?.to_string();
        let result = serde_json::json!({"job_id": job, "status": "success", "started_at": 1, "finished_at": 2});
        let (status, body) = post_json(&agent, &format!("{base}/api/v1/jobs/{job}/complete"), Some(&token), &result)?;
        if status != 200 {
            bail!("complete: {status} {body}");
        }
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "webhook → lease:      p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({rounds} rounds, one idle long-polling runner)",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
