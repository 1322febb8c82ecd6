//! The seeds' CI flow end to end, as a user lives it (issue 10): a coordinator with its local runner
//! (`serve --with-runner`), Debian's `docker-registry` with basic auth on 127.0.0.1 and a stand-in for GitHub's
//! API that records commit statuses; the example project (`examples/app`) registered as the GitHub project
//! `acme/app` whose clone URL is a local git repository; the registry's host and password as secret env vars set
//! over the REST API; then signed `push` webhooks shaped like GitHub's:
//!
//! 1. a push to `main` builds, tests (compose) and pushes `app:<sha>` and `app:latest` (`skopeo inspect`), posts
//!    `pending` then `success`, and the dashboard's pipeline and job pages show the steps, the test results and
//!    the secret only as a name or masked;
//! 2. a push to `main` whose test fails: the pipeline fails, nothing is pushed, the status is `failure` and the
//!    job page lists the failing test first;
//! 3. a push to a feature branch runs the tests but not the push job.
//!
//! Throughout, the registry password appears in no log, page, API answer, status, nor in the coordinator's data
//! directory in plain text. It runs once on SQLite and once on PostgreSQL (`DRYDOCK_TEST_POSTGRES_URL`, which
//! `script/test` sets; without it the PostgreSQL run is skipped, except under `CI=true`, where it fails).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::embedded::{page, run, sign_in, Server, PASSWORD as USER_PASSWORD};
use crate::registry::Registry;
use crate::util::{bin_dir, can_run_containers, workspace_dir, TestEngine};

const REPO: &str = "acme/app";
const REPO_PATH: &str = "acme%2Fapp";
const WEBHOOK_SECRET: &str = "webhook-secret-of-the-flow-test";
const GITHUB_TOKEN: &str = "ghp_flow_test_token";
/// The registry password: a secret env var of the project, checked by the registry (htpasswd).
const REGISTRY_PASSWORD: &str = "s3cret-registry-pass-0417";
const WORKFLOW: &str = "build-test-push";

/// A commit status as GitHub's API received it.
#[derive(Debug, Clone)]
struct Status {
    repo: String,
    sha: String,
    context: String,
    state: String,
    target_url: String,
    body: String,
}

/// A stand-in for GitHub's REST API: `POST /repos/{owner}/{repo}/statuses/{sha}` is recorded and answered `201`;
/// anything else is `404`. One thread per connection, each answered once and closed.
struct FakeGitHub {
    url: String,
    statuses: Arc<Mutex<Vec<Status>>>,
}

impl FakeGitHub {
    fn start() -> FakeGitHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the GitHub stand-in");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let statuses: Arc<Mutex<Vec<Status>>> = Arc::default();
        let seen = Arc::clone(&statuses);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || answer(stream, &seen));
            }
        });
        FakeGitHub { url, statuses }
    }

    fn statuses(&self) -> Vec<Status> {
        self.statuses.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The states posted for `sha` in context `drydock/<WORKFLOW>`, in the order received.
    fn states_of(&self, sha: &str) -> Vec<String> {
        let context = format!("drydock/{WORKFLOW}");
        self.statuses().into_iter().filter(|s| s.sha == sha && s.context == context).map(|s| s.state).collect()
    }
}

fn answer(stream: TcpStream, seen: &Mutex<Vec<Status>>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let (mut length, mut authorization) = (0usize, String::new());
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "authorization" => authorization = v.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (status, reply) = match segments.as_slice() {
        ["repos", owner, repo, "statuses", sha] if method == "POST" => {
            if authorization != format!("Bearer {GITHUB_TOKEN}") && authorization != format!("token {GITHUB_TOKEN}") {
                (401, json!({"message": "Bad credentials"}))
            } else {
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                seen.lock().unwrap_or_else(|e| e.into_inner()).push(Status {
                    repo: format!("{owner}/{repo}"),
                    sha: sha.to_string(),
                    context: text("context"),
                    state: text("state"),
                    target_url: text("target_url"),
                    body: body.clone(),
                });
                (201, json!({"id": 1, "state": v["state"], "context": v["context"]}))
            }
        }
        _ => (404, json!({"message": "Not Found"})),
    };
    let reply = reply.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.len()
    );
    let mut stream = reader.into_inner();
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(reply.as_bytes());
}

/// HMAC-SHA256 (RFC 2104), as GitHub signs webhook bodies.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The origin repository: a working tree made from `examples/app`, committed on `main`.
struct Origin {
    dir: PathBuf,
    repo: git2::Repository,
}

impl Origin {
    fn create(dir: &Path) -> Origin {
        let copied = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", workspace_dir().join("examples/app").display()))
            .arg(dir)
            .output()
            .expect("run cp");
        assert!(copied.status.success(), "copy examples/app: {}", String::from_utf8_lossy(&copied.stderr));
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = git2::Repository::init_opts(dir, &opts).expect("git init");
        Origin { dir: dir.to_path_buf(), repo }
    }

    /// Commits the working tree on `branch`, whose tip (or `parent` for a new branch) is the parent; the SHA.
    fn commit(&self, branch: &str, parent: Option<&str>, message: &str) -> String {
        let mut index = self.repo.index().expect("index");
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).expect("add");
        index.write().expect("write index");
        let tree = self.repo.find_tree(index.write_tree().expect("tree")).expect("find tree");
        let sig = git2::Signature::now("Ada Lovelace", "ada@example.invalid").expect("signature");
        let parent = parent.map(|p| self.repo.find_commit(git2::Oid::from_str(p).expect("sha")).expect("parent"));
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let oid = self.repo.commit(Some(&format!("refs/heads/{branch}")), &sig, &sig, message, &tree, &parents);
        oid.expect("commit").to_string()
    }

    fn write(&self, path: &str, text: &str) {
        std::fs::write(self.dir.join(path), text).expect("write a file of the example");
    }
}

/// A `push` payload with the fields GitHub sends that Drydock reads (and a few it does not).
fn push_payload(origin: &Origin, branch: &str, before: &str, after: &str, message: &str) -> Value {
    let clone_url = origin.dir.display().to_string();
    json!({
        "ref": format!("refs/heads/{branch}"),
        "before": before,
        "after": after,
        "created": before.bytes().all(|b| b == b'0'),
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": format!("https://github.com/{REPO}/compare/{}...{}", &before[..12], &after[..12]),
        "commits": [{"id": after, "message": message, "author": {"name": "Ada Lovelace", "email": "ada@example.invalid", "username": "ada"}}],
        "head_commit": {
            "id": after,
            "tree_id": "0000000000000000000000000000000000000000",
            "message": message,
            "timestamp": "2026-12-02T01:00:00Z",
            "url": format!("https://github.com/{REPO}/commit/{after}"),
            "author": {"name": "Ada Lovelace", "email": "ada@example.invalid", "username": "ada"},
            "committer": {"name": "Ada Lovelace", "email": "ada@example.invalid", "username": "ada"}
        },
        "repository": {
            "id": 1296269,
            "name": "app",
            "full_name": REPO,
            "private": false,
            "owner": {"login": "acme", "id": 1},
            "html_url": format!("https://github.com/{REPO}"),
            "clone_url": clone_url,
            "default_branch": "main"
        },
        "pusher": {"name": "ada", "email": "ada@example.invalid"},
        "sender": {"login": "ada", "id": 2}
    })
}

fn http() -> ureq::Agent {
    ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build())
}

/// Everything the test read back from Drydock (pages, logs, API answers), searched for the secret at the end.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    fn keep(&mut self, what: &str, text: &str) -> String {
        self.0.push((what.to_string(), text.to_string()));
        text.to_string()
    }
}

/// The running system of one flow.
struct Flow {
    url: String,
    admin_token: String,
    github: FakeGitHub,
    origin: Origin,
    seen: Seen,
    cookie: String,
}

impl Flow {
    /// `GET /api/v1/…` with the admin token; the JSON answer (kept for the secret scan).
    fn api(&mut self, path: &str) -> Value {
        let mut resp = http()
            .get(&format!("{}/api/v1/{path}", self.url))
            .header("authorization", &format!("Bearer {}", self.admin_token))
            .call()
            .expect("an API request");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().expect("API body");
        assert_eq!(status, 200, "GET /api/v1/{path}: {text}");
        let text = self.seen.keep(&format!("GET /api/v1/{path}"), &text);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET /api/v1/{path} is not JSON ({e}): {text}"))
    }

    fn put_env_var(&mut self, name: &str, value: &str) {
        let mut resp = http()
            .put(&format!("{}/api/v1/projects/{REPO_PATH}/env-vars/{name}", self.url))
            .header("authorization", &format!("Bearer {}", self.admin_token))
            .header("content-type", "application/json")
            .send(json!({ "value": value }).to_string())
            .expect("PUT env var");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        self.seen.keep(&format!("PUT env var {name}"), &text);
        assert_eq!(status, 204, "PUT env var {name}: {text}");
    }

    /// A dashboard page, signed in (kept for the secret scan).
    fn page(&mut self, path: &str) -> String {
        let text = page(&format!("{}{path}", self.url), &self.cookie);
        self.seen.keep(path, &text)
    }

    /// Delivers a signed `push` of `after` to `branch`; GitHub's headers, `202` expected.
    fn push(&mut self, branch: &str, before: &str, after: &str, message: &str) {
        let body = push_payload(&self.origin, branch, before, after, message).to_string();
        let signature = format!("sha256={}", hex::encode(hmac_sha256(WEBHOOK_SECRET.as_bytes(), body.as_bytes())));
        let mut resp = http()
            .post(&format!("{}/webhooks/github", self.url))
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/f1a2b3c")
            .header("x-github-event", "push")
            .header("x-github-delivery", &format!("delivery-{after}"))
            .header("x-github-hook-id", "424242")
            .header("x-hub-signature-256", &signature)
            .send(body)
            .expect("POST /webhooks/github");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 202, "the webhook of {after}: {text}");
    }

    /// Waits until the pipeline of `sha` ended (a bound against hanging, not a timing assertion); its API view.
    fn finished_pipeline(&mut self, sha: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let list = self.api(&format!("projects/{REPO_PATH}/pipelines"));
            let found = list["pipelines"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["trigger"]["sha"] == sha))
                .and_then(|p| p["id"].as_i64());
            if let Some(id) = found {
                let view = self.api(&format!("pipelines/{id}"));
                let state = view["pipeline"]["state"].as_str().unwrap_or_default().to_string();
                if !["created", "running", "on_hold"].contains(&state.as_str()) {
                    return view;
                }
            }
            assert!(Instant::now() < deadline, "the pipeline of {sha} did not finish: {list}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits for the last status of `sha` to be `state` (statuses are posted in the background).
    fn wait_for_status(&self, sha: &str, state: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let states = self.github.states_of(sha);
            if states.last().map(String::as_str) == Some(state) {
                return states;
            }
            assert!(Instant::now() < deadline, "statuses of {sha}: {states:?}, expected to end with {state}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every step log of a job, through the API and the dashboard (both kept for the secret scan).
    fn logs(&mut self, job_id: i64) -> Vec<(String, String)> {
        let job = self.api(&format!("jobs/{job_id}"));
        let steps: Vec<(i64, String)> = job["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| (s["step"].as_i64().expect("step index"), s["name"].as_str().unwrap_or_default().to_string()))
            .collect();
        let mut out = Vec::new();
        for (step, name) in steps {
            let mut resp = http()
                .get(&format!("{}/api/v1/jobs/{job_id}/steps/{step}/log", self.url))
                .header("authorization", &format!("Bearer {}", self.admin_token))
                .call()
                .expect("GET log");
            let text = resp.body_mut().read_to_string().expect("log body");
            self.seen.keep(&format!("API log of job {job_id} step {step}"), &text);
            self.page(&format!("/jobs/{job_id}/steps/{step}/log"));
            out.push((name, text));
        }
        out
    }
}

/// The job named `name` in a pipeline's API view.
fn job<'v>(pipeline: &'v Value, name: &str) -> Option<&'v Value> {
    pipeline["workflows"]
        .as_array()?
        .iter()
        .flat_map(|w| w["jobs"].as_array().into_iter().flatten())
        .find(|j| j["name"] == name)
}

fn job_names(pipeline: &Value) -> Vec<String> {
    pipeline["workflows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["jobs"].as_array().into_iter().flatten())
        .filter_map(|j| j["name"].as_str().map(str::to_string))
        .collect()
}

/// `skopeo inspect` of `app:<tag>` in the registry: `Some(JSON)`, or `None` when the tag does not exist.
fn skopeo_inspect(registry: &Registry, tag: &str, config: bool) -> Option<Value> {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--tls-verify=false", "--creds", &format!("ci:{REGISTRY_PASSWORD}")]);
    if config {
        c.arg("--config");
    }
    let out = c.arg(format!("docker://{}/app:{tag}", registry.host())).output().expect("run skopeo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        assert!(
            stderr.contains("manifest unknown") || stderr.contains("not found"),
            "skopeo inspect app:{tag}: {stderr}"
        );
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("skopeo's JSON ({e})")))
}

/// The rows of the job page's test table, in order: (result, text of the row).
fn test_rows(job_page: &str) -> Vec<(String, String)> {
    let Some(table) = job_page.split("<section class=\"tests\">").nth(1) else { return Vec::new() };
    table
        .split("<tr class=\"test-")
        .skip(1)
        .map(|row| {
            let (result, rest) = row.split_once('"').unwrap_or((row, ""));
            (result.to_string(), rest.split("</tr>").next().unwrap_or("").to_string())
        })
        .collect()
}

/// Files under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}

/// Which database the coordinator uses.
enum Database {
    Sqlite,
    Postgres(String),
}

/// A fresh database on the PostgreSQL server of `DRYDOCK_TEST_POSTGRES_URL`; `None` (with a note) when unset,
/// except under `CI=true`, where a missing PostgreSQL fails the test.
fn postgres_database() -> Option<String> {
    let Some(server) = std::env::var("DRYDOCK_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and DRYDOCK_TEST_POSTGRES_URL is unset: run the tests with script/test, which starts PostgreSQL"
        );
        eprintln!("skipping the PostgreSQL flow: DRYDOCK_TEST_POSTGRES_URL is unset (script/test sets it)");
        return None;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
    let name = format!("drydock_flow_{}_{nanos}", std::process::id());
    let out = Command::new("psql")
        .args([server.as_str(), "-v", "ON_ERROR_STOP=1", "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("run psql (postgresql-client)");
    assert!(out.status.success(), "create database {name}: {}", String::from_utf8_lossy(&out.stderr));
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    Some(format!("{base}/{name}"))
}

fn flow(database: Database) {
    let client = bin_dir().join("drydock-docker");
    assert!(client.is_file(), "{} is missing: run script/build-client (script/test does)", client.display());
    let engine = TestEngine::with_busybox();
    let registry = Registry::start_with_auth(Some(("ci", REGISTRY_PASSWORD)));
    let github = FakeGitHub::start();
    let tmp = tempfile::Builder::new().prefix("drydock-flow-").tempdir().expect("temp dir");
    let data = tmp.path().join("coordinator");
    let runner_data = tmp.path().join("runner-of-the-flow-test");
    std::fs::create_dir_all(tmp.path().join("origin")).expect("mkdir origin");
    let origin = Origin::create(&tmp.path().join("origin"));
    let sha1 = origin.commit("main", None, "the example app");

    // The CLI steps of a GitHub project, as docs/coordinator.md gives them.
    let database_url = match &database {
        Database::Sqlite => None,
        Database::Postgres(url) => Some(url.clone()),
    };
    let cli = |args: &[&str], stdin: &str| {
        let mut full: Vec<&str> = Vec::new();
        if let Some(url) = &database_url {
            full.extend(["--database-url", url.as_str()]);
        }
        full.extend(args);
        run(&data, &full, stdin)
    };
    let origin_path = origin.dir.display().to_string();
    let added = cli(&["project", "add", REPO, "--clone-url", &origin_path, "--webhook-secret", WEBHOOK_SECRET], "");
    assert!(added.starts_with(&format!("added project {REPO}")), "{added}");
    cli(&["user", "add", "alice", "--admin", "--password-stdin"], &format!("{USER_PASSWORD}\n"));
    let admin_token = cli(&["token", "create", "--admin"], "").trim().to_string();

    // serve --with-runner, statuses to the stand-in; everything the coordinator and its runner log goes to a file.
    let log_path = tmp.path().join("coordinator.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut command = Command::new(bin_dir().join("coordinator"));
    command.arg("--data-dir").arg(&data).env_remove("DATABASE_URL").env("RUST_LOG", "info");
    if let Some(url) = &database_url {
        command.args(["--database-url", url]);
    }
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--with-runner", "--github-api-url", &github.url])
        .env("GITHUB_TOKEN", GITHUB_TOKEN)
        .arg("--runner-data-dir")
        .arg(&runner_data)
        .arg("--engine-root")
        .arg(engine.root())
        .env("DRYDOCK_DOCKER_CLIENT", &client)
        .stdout(Stdio::piped())
        .stderr(log);
    let mut server = Server(command.spawn().expect("start coordinator serve"));
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("stdout")).read_line(&mut line).expect("the listening line");
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {line:?}")).to_string();
    let cookie = sign_in(&url);
    let mut f = Flow { url, admin_token, github, origin, seen: Seen::default(), cookie };

    // The registry's host and password as the project's secret env vars; the API shows them masked.
    let host = registry.host();
    f.put_env_var("REGISTRY", &host);
    f.put_env_var("REGISTRY_PASSWORD", REGISTRY_PASSWORD);
    let vars = f.api(&format!("projects/{REPO_PATH}/env-vars"));
    let last4 = &REGISTRY_PASSWORD[REGISTRY_PASSWORD.len() - 4..];
    let masked: Vec<&Value> = vars["env_vars"].as_array().expect("env_vars").iter().collect();
    assert!(masked.iter().any(|v| v["name"] == "REGISTRY_PASSWORD" && v["masked"] == format!("xxxx{last4}")), "{vars}");

    // 1. A push to main: build, compose test, push app:<sha1> and app:latest.
    f.push("main", "0000000000000000000000000000000000000000", &sha1, "the example app");
    let p1 = f.finished_pipeline(&sha1);
    let build1 = job(&p1, "build-and-test").expect("build-and-test").clone();
    let push1 = job(&p1, "push").expect("push").clone();
    let logs = f.logs(build1["id"].as_i64().expect("id"));
    let push_logs = f.logs(push1["id"].as_i64().expect("id"));
    assert_eq!(p1["pipeline"]["state"], "success", "{p1}\nbuild-and-test: {logs:#?}\npush: {push_logs:#?}");
    let pushed = skopeo_inspect(&registry, &sha1, false).expect("app:<sha1> in the registry");
    let latest = skopeo_inspect(&registry, "latest", false).expect("app:latest in the registry");
    assert_eq!(pushed["Digest"], latest["Digest"], "latest is the commit's image");
    let config = skopeo_inspect(&registry, "latest", true).expect("the config of app:latest");
    assert!(config["config"]["Env"].to_string().contains(&format!("APP_VERSION={sha1}")), "{config}");
    let states = f.wait_for_status(&sha1, "success");
    assert_eq!(states.first().map(String::as_str), Some("pending"), "statuses of {sha1}: {states:?}");

    let pipeline_page = f.page(&format!("/projects/{REPO_PATH}/pipelines/{}", p1["pipeline"]["number"]));
    for needle in ["build-and-test", "push", "st-success", &sha1[..7]] {
        assert!(pipeline_page.contains(needle), "the pipeline page lacks {needle:?}:\n{pipeline_page}");
    }
    let build_page = f.page(&format!("/jobs/{}", build1["id"]));
    for step in ["Build the image", "Test with compose", "Save the image for the push job"] {
        assert!(build_page.contains(step), "the job page lacks the step {step:?}:\n{build_page}");
    }
    assert!(build_page.contains("3 run, 0 failed"), "test results on the job page:\n{build_page}");
    let rows = test_rows(&build_page);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|(r, _)| r == "success"), "{rows:?}");
    assert!(rows.iter().any(|(_, t)| t.contains("greet says hello")), "{rows:?}");
    let push_page = f.page(&format!("/jobs/{}", push1["id"]));
    for needle in ["Log in to the registry", "Tag and push", "<code>REGISTRY_PASSWORD</code>", "<code>REGISTRY</code>"]
    {
        assert!(push_page.contains(needle), "the push job's page lacks {needle:?}:\n{push_page}");
    }
    // The registry host is a secret too: where the push names it, the log shows the mask.
    let pushed_log: String = push_logs.iter().map(|(_, l)| l.as_str()).collect();
    assert!(!pushed_log.contains(&host), "the registry host is masked in the log:\n{pushed_log}");
    assert!(pushed_log.contains("********"), "the push's log shows the mask:\n{pushed_log}");
    let settings = f.page(&format!("/projects/{REPO_PATH}/settings"));
    assert!(settings.contains(&format!("xxxx{last4}")), "the settings page shows the masked password:\n{settings}");

    // 2. A push to main whose test fails: nothing is pushed, the status is failure, the failing test comes first.
    f.origin.write(
        "www/cgi-bin/greet",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nGoodbye, %s\\n' \"${QUERY_STRING#name=}\"\n",
    );
    let sha2 = f.origin.commit("main", Some(&sha1), "greet says goodbye");
    f.push("main", &sha1, &sha2, "greet says goodbye");
    let p2 = f.finished_pipeline(&sha2);
    assert_eq!(p2["pipeline"]["state"], "failed", "{p2}");
    let build2 = job(&p2, "build-and-test").expect("build-and-test").clone();
    assert_eq!(build2["state"], "failed", "{p2}");
    let push2 = job(&p2, "push").expect("push");
    assert_eq!(push2["state"], "not_run", "{p2}");
    assert!(push2["started_at"].is_null(), "{p2}");
    f.logs(build2["id"].as_i64().expect("id"));
    assert!(skopeo_inspect(&registry, &sha2, false).is_none(), "app:<sha2> was pushed");
    let latest2 = skopeo_inspect(&registry, "latest", false).expect("app:latest");
    assert_eq!(latest2["Digest"], latest["Digest"], "app:latest moved after a failed pipeline");
    let states = f.wait_for_status(&sha2, "failure");
    assert_eq!(states.first().map(String::as_str), Some("pending"), "statuses of {sha2}: {states:?}");
    let failed_page = f.page(&format!("/jobs/{}", build2["id"]));
    assert!(failed_page.contains("3 run, 1 failed"), "{failed_page}");
    let rows = test_rows(&failed_page);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0].0, "failure", "the failing test comes first: {rows:?}");
    assert!(rows[0].1.contains("greet says hello"), "{rows:?}");

    // 3. A push to a feature branch (from the good commit): the tests run, the push job is not planned.
    f.origin.write(
        "www/cgi-bin/greet",
        &std::fs::read_to_string(workspace_dir().join("examples/app/www/cgi-bin/greet")).expect("greet"),
    );
    f.origin.write("www/about.html", "<!doctype html><title>About</title><p>A feature branch page.\n");
    let sha3 = f.origin.commit("feature/about-page", Some(&sha1), "an about page");
    f.push("feature/about-page", "0000000000000000000000000000000000000000", &sha3, "an about page");
    let p3 = f.finished_pipeline(&sha3);
    assert_eq!(p3["pipeline"]["state"], "success", "{p3}");
    assert_eq!(job_names(&p3), ["build-and-test"], "only the tests run on a feature branch: {p3}");
    let build3 = job(&p3, "build-and-test").expect("build-and-test").clone();
    f.logs(build3["id"].as_i64().expect("id"));
    assert!(skopeo_inspect(&registry, &sha3, false).is_none(), "app:<sha3> was pushed from a feature branch");
    f.wait_for_status(&sha3, "success");
    let feature_page = f.page(&format!("/jobs/{}", build3["id"]));
    assert!(feature_page.contains("3 run, 0 failed"), "{feature_page}");

    // The password appears nowhere: pages, logs and API answers read above, the statuses, what the coordinator and
    // its runner logged, and the files of both data directories (the database holds it encrypted).
    f.page("/");
    f.page(&format!("/projects/{REPO_PATH}"));
    f.page("/runners");
    f.api("projects");
    f.api(&format!("projects/{REPO_PATH}"));
    for (what, text) in &f.seen.0 {
        assert!(!text.contains(REGISTRY_PASSWORD), "the registry password is in {what}:\n{text}");
    }
    for s in f.github.statuses() {
        assert_eq!(s.repo, REPO, "a status for another repository: {s:?}");
        assert!(!s.body.contains(REGISTRY_PASSWORD), "a status carries the password: {s:?}");
    }
    let log_text = std::fs::read_to_string(&log_path).expect("the coordinator's log");
    for both in ["coordinator::api::runners", "runner::agent"] {
        assert!(log_text.contains(both), "the log file holds what the coordinator and its runner logged:\n{log_text}");
    }
    assert!(!log_text.contains(REGISTRY_PASSWORD), "the coordinator's or runner's log has the password:\n{log_text}");
    for dir in [&data, &runner_data] {
        let leaks = files_containing(dir, REGISTRY_PASSWORD.as_bytes());
        assert!(leaks.is_empty(), "the password in plain text in {leaks:?}");
    }

    // Each status links to the pipeline on the dashboard.
    let target = f.github.statuses().last().map(|s| s.target_url.clone()).unwrap_or_default();
    let path = target.strip_prefix(&f.url).unwrap_or_else(|| panic!("a status links to {target:?}, not to {}", f.url));
    let resp = http().get(&target).header("cookie", &f.cookie).call().expect("GET the status's target_url");
    assert_eq!(resp.status().as_u16(), 200, "the commit status links to {path}, which the dashboard does not serve");
    drop(server);
}

#[test]
fn flow_on_sqlite_push_to_published_image_failing_test_and_feature_branch() {
    if !can_run_containers() {
        return;
    }
    flow(Database::Sqlite);
}

#[test]
fn flow_on_postgres_push_to_published_image_failing_test_and_feature_branch() {
    if !can_run_containers() {
        return;
    }
    if let Some(url) = postgres_database() {
        flow(Database::Postgres(url));
    }
}
