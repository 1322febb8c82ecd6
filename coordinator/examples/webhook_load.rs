//! Webhook intake load (`bench/webhooks`): posts N signed GitHub `push` deliveries to a running
//! `coordinator serve` from T threads (one keep-alive connection each, like GitHub's delivery workers), counts the
//! answers, then reads the coordinator's database until every delivery is processed and prints:
//! deliveries/s accepted (`202`), the answer latency p50/p99, deliveries/s processed into pipelines (first
//! delivery received → last one processed, from the rows' own timestamps), and how many were lost (accepted but
//! with no pipeline). It measures; it asserts nothing (exit status 1 only if deliveries were lost or refused).
//!
//! ```text
//! cargo run --release -p coordinator --example webhook_load -- --url http://127.0.0.1:8080 \
//!     --database-url sqlite:///var/lib/drydock/coordinator/coordinator.db --secret S --repo octo/app --sha SHA
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use coordinator::github::webhook::sign;
use coordinator::store::Store;

#[derive(Parser)]
struct Args {
    /// The coordinator's base URL.
    #[arg(long)]
    url: String,
    /// The coordinator's database (read after the posts to count pipelines).
    #[arg(long)]
    database_url: String,
    /// The project's webhook secret.
    #[arg(long)]
    secret: String,
    /// The project's `owner/repo`.
    #[arg(long)]
    repo: String,
    /// The commit every push names (it must exist in the project's repository).
    #[arg(long)]
    sha: String,
    #[arg(long, default_value = "main")]
    branch: String,
    /// How many deliveries.
    #[arg(short, long, default_value_t = 5000)]
    n: usize,
    /// How many posting threads (connections).
    #[arg(short, long, default_value_t = 8)]
    threads: usize,
    /// Give up waiting for processing after this many seconds.
    #[arg(long, default_value_t = 600)]
    wait_secs: u64,
}

/// What one thread saw.
#[derive(Default)]
struct Tally {
    accepted: usize,
    other: Vec<String>,
    latencies_us: Vec<u64>,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("webhook_load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    let body = serde_json::json!({
        "ref": format!("refs/heads/{}", args.branch),
        "before": "0000000000000000000000000000000000000001",
        "after": args.sha,
        "repository": {
            "full_name": args.repo,
            "name": args.repo.rsplit('/').next().unwrap_or(&args.repo),
            "clone_url": format!("https://github.com/{}.git", args.repo),
            "html_url": format!("https://github.com/{}", args.repo),
            "default_branch": args.branch,
            "private": false,
            "owner": {"login": args.repo.split('/').next().unwrap_or(&args.repo)},
        },
        "head_commit": {"id": args.sha, "message": "load", "author": {"name": "Load", "email": "load@example.invalid"}},
        "pusher": {"name": "load", "email": "load@example.invalid"},
        "sender": {"login": "load"},
    })
    .to_string()
    .into_bytes();
    let signature = sign(args.secret.as_bytes(), &body);
    let endpoint = format!("{}/webhooks/github", args.url.trim_end_matches('/'));
    let run_id = format!("{:08x}", rand_u32());
    let threads = args.threads.max(1);

    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (endpoint, body, signature, run_id) =
                (endpoint.clone(), body.clone(), signature.clone(), run_id.clone());
            let mine: Vec<usize> = (t..args.n).step_by(threads).collect();
            std::thread::spawn(move || {
                let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
                let mut tally = Tally::default();
                for i in mine {
                    let id = format!("load-{run_id}-{i:07}");
                    let sent = Instant::now();
                    let result = agent
                        .post(&endpoint)
                        .header("x-github-event", "push")
                        .header("x-github-delivery", &id)
                        .header("x-hub-signature-256", &signature)
                        .header("content-type", "application/json")
                        .send(&body[..]);
                    tally.latencies_us.push(sent.elapsed().as_micros() as u64);
                    match result {
                        Ok(mut r) if r.status().as_u16() == 202 => {
                            let _ = r.body_mut().read_to_vec();
                            tally.accepted += 1;
                        }
                        Ok(mut r) => {
                            let text = r.body_mut().read_to_string().unwrap_or_default();
                            tally.other.push(format!("{id}: {} {text}", r.status()));
                        }
                        Err(e) => tally.other.push(format!("{id}: {e}")),
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for h in handles {
        let t = h.join().map_err(|_| anyhow::anyhow!("a posting thread panicked"))?;
        total.accepted += t.accepted;
        total.other.extend(t.other);
        total.latencies_us.extend(t.latencies_us);
    }
    let posting = started.elapsed();
    total.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let v = &total.latencies_us;
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
        }
    };
    println!("deliveries posted:   {} by {threads} threads in {:.2} s", args.n, posting.as_secs_f64());
    println!(
        "accepted (202):      {} = {:.0}/s; answer p50 {:.2} ms, p99 {:.2} ms",
        total.accepted,
        total.accepted as f64 / posting.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
    for line in total.other.iter().take(5) {
        println!("refused:             {line}");
    }

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (processed, lost, window_ms) = runtime.block_on(count_processed(&args, &run_id))?;
    println!(
        "processed:           {processed} pipelines in {:.2} s (first received → last processed) = {:.0}/s",
        window_ms as f64 / 1000.0,
        processed as f64 / (window_ms.max(1) as f64 / 1000.0)
    );
    println!("lost:                {lost} (accepted without a pipeline)");
    Ok(lost == 0 && total.other.is_empty())
}

/// Waits until this run's deliveries are all processed; returns (pipelines made, deliveries without one, the
/// milliseconds from the first delivery received to the last processed).
async fn count_processed(args: &Args, run_id: &str) -> anyhow::Result<(i64, i64, i64)> {
    let store = Store::connect(&args.database_url).await.context("opening the coordinator's database")?;
    let pattern = format!("load-{run_id}-%");
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    loop {
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE delivery_id LIKE $1 AND processed_at IS NULL",
        )
        .bind(&pattern)
        .fetch_one(store.pool())
        .await?;
        if pending == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{pending} deliveries still unprocessed after {} s", args.wait_secs);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let row: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(pipeline_id), MIN(received_at), MAX(processed_at) FROM webhook_deliveries WHERE \
         delivery_id LIKE $1",
    )
    .bind(&pattern)
    .fetch_one(store.pool())
    .await?;
    let (stored, with_pipeline, first, last) = row;
    let pipelines: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pipelines WHERE id IN (SELECT pipeline_id FROM webhook_deliveries WHERE delivery_id \
         LIKE $1)",
    )
    .bind(&pattern)
    .fetch_one(store.pool())
    .await?;
    store.close().await;
    Ok((pipelines, (args.n as i64 - with_pipeline).max(stored - with_pipeline), last - first))
}

/// A run ID, so that repeated runs against one database count only their own deliveries.
fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos());
    nanos.unwrap_or(0) ^ std::process::id()
}
