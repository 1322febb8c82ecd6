//! `runner agent` against a stand-in coordinator: a small in-memory HTTP server written here that implements
//! the endpoints of `docs/runner-protocol.md` faithfully (idempotent `(step, offset)` logs, `409 conflict` on a
//! gap, `cancel` and `lease_lost` on heartbeats, workspaces, artifacts) and records what it received. Jobs run in
//! real containers on the busybox fixture. Faults are injected on the events endpoint (a `503` after the batch
//! was stored, a connection dropped after and before it) to show that nothing is lost or duplicated. The
//! checkout of `http://` repositories runs against a real git server ([`crate::git_http`]); one test runs the
//! agent against the real `coordinator serve` instead, with `setup_remote_docker` and the static client.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{bin_dir, can_run_containers, TestEngine};

/// What the events endpoint does to the next request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Store the batch, then answer 503 (the agent cannot know it was stored).
    UnavailableAfter,
    /// Store the batch, then close the connection without an answer.
    DropAfter,
    /// Close the connection without reading the batch.
    DropBefore,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Value>,
    registrations: usize,
    leases: usize,
    /// Every event of every events request, as received (retries included).
    received: Vec<Value>,
    /// Logs as stored: (job, step) → text.
    logs: HashMap<(String, u64), String>,
    /// step_started / step_finished as stored (first of each kind per step), in arrival order.
    steps: HashMap<String, Vec<Value>>,
    conflicts: usize,
    oversized_chunks: usize,
    faults: VecDeque<Fault>,
    faults_applied: usize,
    heartbeats: HashMap<String, usize>,
    cancel: HashSet<String>,
    lost: HashSet<String>,
    results: HashMap<String, Value>,
    artifacts: HashMap<(String, String), Vec<u8>>,
    test_results: Vec<Value>,
    /// Workspace layers (tar bytes) per job, and which jobs a job's workspace comes from.
    layers: Vec<(String, Vec<u8>)>,
    upstream: HashMap<String, Vec<String>>,
}

/// The stand-in coordinator.
struct FakeCoordinator {
    url: String,
    shared: Arc<(Mutex<State>, Condvar)>,
}

const REGISTRATION_TOKEN: &str = "drr_test";
const RUNNER_TOKEN: &str = "drt_test";

impl FakeCoordinator {
    fn start() -> FakeCoordinator {
        FakeCoordinator::serve_on(TcpListener::bind("127.0.0.1:0").expect("bind"))
    }

    fn serve_on(listener: TcpListener) -> FakeCoordinator {
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let shared: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = Arc::clone(&s);
                std::thread::spawn(move || serve(stream, &s));
            }
        });
        FakeCoordinator { url, shared }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.shared.0.lock().expect("state");
        let out = f(&mut s);
        self.shared.1.notify_all();
        out
    }

    fn enqueue(&self, assignment: Value) {
        self.with(|s| s.queue.push_back(assignment));
    }

    /// Waits (up to 120 s) until `f` says yes; panics with `what` otherwise.
    fn wait_for(&self, what: &str, f: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut s = self.shared.0.lock().expect("state");
        while !f(&s) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}");
            s = self.shared.1.wait_timeout(s, left.min(Duration::from_millis(200))).expect("wait").0;
        }
    }

    fn result(&self, job: &str) -> Value {
        self.wait_for(&format!("the result of {job}"), |s| s.results.contains_key(job));
        self.with(|s| s.results[job].clone())
    }

    fn log(&self, job: &str, step: u64) -> String {
        self.with(|s| s.logs.get(&(job.to_owned(), step)).cloned().unwrap_or_default())
    }
}

fn step_event(s: &State, job: &str, step: u64, kind: &str) -> Option<Value> {
    s.steps.get(job)?.iter().find(|e| e["type"] == kind && e["step"] == step).cloned()
}

struct Request {
    method: String,
    path: String,
    auth: Option<String>,
    length: usize,
    chunked: bool,
    body: Vec<u8>,
}

/// The request line and headers (the body is read by [`read_body`]).
fn read_head(stream: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    stream.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut req = Request { method, path, auth: None, length: 0, chunked: false, body: Vec::new() };
    loop {
        let mut h = String::new();
        stream.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            return Some(req);
        }
        let (k, v) = h.split_once(':')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => req.length = v.trim().parse().ok()?,
            "transfer-encoding" => req.chunked = v.trim().eq_ignore_ascii_case("chunked"),
            "authorization" => req.auth = Some(v.trim().to_owned()),
            _ => {}
        }
    }
}

fn read_body(stream: &mut BufReader<TcpStream>, req: &mut Request) -> Option<()> {
    if req.chunked {
        loop {
            let mut size = String::new();
            stream.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            stream.read_exact(&mut chunk).ok()?;
            if n == 0 {
                return Some(());
            }
            req.body.extend_from_slice(&chunk[..n]);
        }
    }
    req.body.resize(req.length, 0);
    stream.read_exact(&mut req.body).ok()
}

fn respond(stream: &mut TcpStream, status: u16, body: &[u8]) {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Other",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn problem(code: &str, extra: Value) -> Vec<u8> {
    let mut v = json!({"error": code, "message": format!("{code} (fake coordinator)")});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v.to_string().into_bytes()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}

/// A lease TTL of 4 s: heartbeats every second.
const LEASE_TTL_MS: u64 = 4_000;

fn serve(stream: TcpStream, shared: &(Mutex<State>, Condvar)) {
    let Ok(mut out) = stream.try_clone() else { return };
    let mut input = BufReader::new(stream);
    let Some(mut req) = read_head(&mut input) else { return };
    let (lock, cv) = shared;
    // The events endpoint may drop the connection before reading the body.
    if req.path.ends_with("/events") {
        let mut s = lock.lock().expect("state");
        if s.faults.front() == Some(&Fault::DropBefore) {
            s.faults.pop_front();
            s.faults_applied += 1;
            return; // closes without reading or answering
        }
    }
    if read_body(&mut input, &mut req).is_none() {
        return;
    }
    let segments: Vec<&str> = req.path.trim_start_matches("/api/v1/").split('/').collect();
    if segments.as_slice() != ["runners", "register"] && req.auth.as_deref() != Some(&format!("Bearer {RUNNER_TOKEN}"))
    {
        return respond(&mut out, 401, &problem("unauthorized", json!({})));
    }
    let parse = || serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null);
    match (req.method.as_str(), segments.as_slice()) {
        ("POST", ["runners", "register"]) => {
            let body = parse();
            if body["registration_token"] != REGISTRATION_TOKEN {
                return respond(&mut out, 401, &problem("unauthorized", json!({})));
            }
            lock.lock().expect("state").registrations += 1;
            respond(&mut out, 201, json!({"runner_id": "r-1", "token": RUNNER_TOKEN}).to_string().as_bytes());
        }
        ("POST", ["runners", "lease"]) => {
            let deadline = Instant::now() + Duration::from_millis(500);
            let mut s = lock.lock().expect("state");
            loop {
                if let Some(mut job) = s.queue.pop_front() {
                    s.leases += 1;
                    job["lease_expires_at"] = json!(now_ms() + LEASE_TTL_MS);
                    drop(s);
                    cv.notify_all();
                    return respond(&mut out, 200, job.to_string().as_bytes());
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    drop(s);
                    return respond(&mut out, 204, b"");
                }
                s = cv.wait_timeout(s, left).expect("wait").0;
            }
        }
        ("POST", ["jobs", job, "heartbeat"]) => {
            let mut s = lock.lock().expect("state");
            *s.heartbeats.entry(job.to_string()).or_default() += 1;
            if s.lost.contains(*job) {
                return respond(&mut out, 409, &problem("lease_lost", json!({})));
            }
            let cancel = s.cancel.contains(*job);
            respond(
                &mut out,
                200,
                json!({"lease_expires_at": now_ms() + LEASE_TTL_MS, "cancel": cancel}).to_string().as_bytes(),
            );
        }
        ("POST", ["jobs", job, "events"]) => {
            let events: Vec<Value> = serde_json::from_slice(&req.body).unwrap_or_default();
            let mut s = lock.lock().expect("state");
            if s.lost.contains(*job) {
                return respond(&mut out, 409, &problem("lease_lost", json!({})));
            }
            s.received.extend(events.iter().cloned());
            let mut conflict = None;
            for e in &events {
                let step = e["step"].as_u64().unwrap_or(u64::MAX);
                if e["type"] == "log" {
                    let data = e["data"].as_str().unwrap_or_default();
                    if data.len() > 64 * 1024 {
                        s.oversized_chunks += 1;
                    }
                    let offset = e["offset"].as_u64().unwrap_or(0) as usize;
                    let have = s.logs.entry((job.to_string(), step)).or_default();
                    if offset > have.len() {
                        conflict = Some(have.len());
                        break;
                    }
                    let skip = have.len() - offset;
                    if skip < data.len() {
                        have.push_str(&data[skip..]);
                    }
                } else if step_event(&s, job, step, e["type"].as_str().unwrap_or_default()).is_none() {
                    s.steps.entry(job.to_string()).or_default().push(e.clone());
                }
            }
            if let Some(expected) = conflict {
                s.conflicts += 1;
                drop(s);
                cv.notify_all();
                return respond(&mut out, 409, &problem("conflict", json!({"expected_offset": expected})));
            }
            let fault = s.faults.pop_front();
            if fault.is_some() {
                s.faults_applied += 1;
            }
            drop(s);
            cv.notify_all();
            match fault {
                Some(Fault::UnavailableAfter) => respond(&mut out, 503, &problem("unavailable", json!({}))),
                Some(_) => {} // dropped after storing
                None => respond(&mut out, 200, json!({"accepted": events.len()}).to_string().as_bytes()),
            }
        }
        ("POST", ["jobs", job, "complete"]) => {
            let mut s = lock.lock().expect("state");
            if s.lost.contains(*job) {
                return respond(&mut out, 409, &problem("lease_lost", json!({})));
            }
            s.results.insert(job.to_string(), parse());
            drop(s);
            cv.notify_all();
            respond(&mut out, 200, b"{}");
        }
        ("POST", ["jobs", _, "test-results"]) => {
            lock.lock().expect("state").test_results.push(parse());
            respond(&mut out, 200, b"{}");
        }
        ("PUT", ["jobs", job, "artifacts", rest @ ..]) => {
            lock.lock().expect("state").artifacts.insert((job.to_string(), rest.join("/")), req.body.clone());
            respond(&mut out, 201, b"{}");
        }
        ("PUT", ["jobs", job, "workspace"]) => {
            lock.lock().expect("state").layers.push((job.to_string(), req.body.clone()));
            respond(&mut out, 201, b"{}");
        }
        ("GET", ["jobs", job, "workspace"]) => {
            let s = lock.lock().expect("state");
            let up = s.upstream.get(*job).cloned().unwrap_or_default();
            let layers: Vec<Value> = s
                .layers
                .iter()
                .enumerate()
                .filter(|(_, (j, _))| up.contains(j))
                .map(|(i, (_, b))| json!({"url": format!("/api/v1/workspace-layers/{i}"), "size_bytes": b.len()}))
                .collect();
            respond(&mut out, 200, json!({ "layers": layers }).to_string().as_bytes());
        }
        ("GET", ["workspace-layers", id]) => {
            let s = lock.lock().expect("state");
            match id.parse::<usize>().ok().and_then(|i| s.layers.get(i)) {
                Some((_, tar)) => respond(&mut out, 200, tar),
                None => respond(&mut out, 404, &problem("not_found", json!({}))),
            }
        }
        _ => respond(&mut out, 404, &problem("not_found", json!({}))),
    }
}

/// A git repository with a README, committed; returns its directory and HEAD.
fn repository() -> (tempfile::TempDir, String) {
    let dir = tempfile::Builder::new().prefix("drydock-agent-repo-").tempdir().expect("temp dir");
    std::fs::write(dir.path().join("README"), "hello from the repository\n").expect("write");
    let repo = git2::Repository::init(dir.path()).expect("git init");
    let mut index = repo.index().expect("index");
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).expect("add");
    index.write().expect("write index");
    let tree = repo.find_tree(index.write_tree().expect("tree")).expect("find tree");
    let sig = git2::Signature::now("Test", "test@drydock.invalid").expect("signature");
    let oid = repo.commit(Some("HEAD"), &sig, &sig, "first", &tree, &[]).expect("commit");
    (dir, oid.to_string())
}

fn assignment(job: &str, steps: Value, repo: &Path, revision: &str) -> Value {
    json!({
        "wire_version": 1,
        "pipeline": {"id": "p-1", "number": 1, "project": "acme/app"},
        "workflow": {"id": "w-1", "name": "main"},
        "job": {"id": job, "name": job, "number": 7, "attempt": 1},
        "spec": {
            "name": job,
            "docker": [{"image": "busybox:latest"}],
            "working_directory": "~/project",
            "parallelism": 1,
            "steps": steps
        },
        "checkout": {"repository_url": format!("file://{}", repo.display()), "revision": revision, "branch": "main"},
        "env": {"CIRCLE_BUILD_NUM": "7"},
        "secrets": {"DEPLOY_TOKEN": "s3cr3t-deploy-value"},
        "lease_expires_at": 0
    })
}

/// `runner agent` against `c`, with `data` as its data directory.
fn agent(e: &TestEngine, c: &FakeCoordinator, data: &Path, token: bool) -> Child {
    let mut cmd = Command::new(bin_dir().join("runner"));
    cmd.args(["agent", "--url", &c.url, "--name", "test-runner", "--labels", "os=linux"])
        .arg("--data-dir")
        .arg(data)
        .env("DRYDOCK_ROOT", e.root())
        .env("DRYDOCK_LOG", "info")
        .stdin(Stdio::null());
    if token {
        cmd.args(["--token", REGISTRATION_TOKEN]);
    }
    cmd.spawn().expect("start runner agent")
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
}

/// Waits for the agent to exit (up to 120 s) and returns its exit code.
fn exit_code(mut child: Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent did not exit");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_no_containers(e: &TestEngine) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ps = e.run(["ps", "-aq"]).success();
        if ps.stdout().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "containers left behind: {}", ps.stdout());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn agent_runs_leased_jobs_and_reports_events_in_order_through_faults() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let c = FakeCoordinator::start();
    let (repo, head) = repository();
    let data = tempfile::tempdir().expect("data dir");
    let build = assignment(
        "j-build",
        json!([
            "checkout",
            {"run": {"name": "Greet", "command": "cat README; echo token=$DEPLOY_TOKEN build=$CIRCLE_BUILD_NUM"}},
            {"run": {"name": "Lots", "command": "seq 1 30000"}},
            {"run": {"command": "mkdir -p out && echo artifact > out/a.txt"}},
            {"store_artifacts": {"path": "out", "destination": "reports"}},
            {"persist_to_workspace": {"root": ".", "paths": ["out"]}}
        ]),
        repo.path(),
        &head,
    );
    let test = assignment(
        "j-test",
        json!([
            {"attach_workspace": {"at": "/ws"}},
            {"run": {"name": "Use it", "command": "cat /ws/out/a.txt; exit 3"}},
            {"run": {"name": "never", "command": "echo must not run"}},
            {"run": {"name": "after", "command": "echo reporting the failure", "when": "on_fail"}}
        ]),
        repo.path(),
        &head,
    );
    c.with(|s| {
        s.faults.extend([Fault::UnavailableAfter, Fault::DropAfter, Fault::DropBefore]);
        s.upstream.insert("j-test".into(), vec!["j-build".into()]);
    });
    c.enqueue(build);
    let child = agent(&e, &c, data.path(), true);

    let result = c.result("j-build");
    assert_eq!(result["status"], "success", "{result:#}");
    assert_eq!(result["steps"].as_array().map(Vec::len), Some(6), "{result:#}");
    // The faults were all hit (the events were sent again) and yet every log is stored exactly once.
    c.with(|s| {
        assert_eq!(s.faults_applied, 3);
        assert_eq!(s.conflicts, 0, "the agent left a gap in a log");
        assert_eq!(s.oversized_chunks, 0, "a log chunk over 64 KiB");
    });
    let expected: String = (1..=30000).map(|n| format!("{n}\n")).collect();
    assert_eq!(c.log("j-build", 2), expected, "the `seq` output, each byte once, in order");
    let greet = c.log("j-build", 1);
    assert!(greet.contains("hello from the repository\n"), "{greet}");
    assert!(greet.contains("token=******** build=7"), "{greet}");
    assert!(!c.with(|s| serde_json::to_string(&s.received).unwrap_or_default()).contains("s3cr3t-deploy-value"));
    // Offsets of each step's first sending are contiguous (a retry resends the same offsets).
    c.with(|s| {
        let mut next: BTreeMap<(String, u64), u64> = BTreeMap::new();
        for ev in s.received.iter().filter(|e| e["type"] == "log") {
            let key = (ev["job_id"].as_str().unwrap_or_default().to_owned(), ev["step"].as_u64().unwrap_or(0));
            let (offset, len) = (ev["offset"].as_u64().unwrap_or(0), ev["data"].as_str().map_or(0, str::len) as u64);
            let have = next.entry(key).or_insert(0);
            assert!(offset <= *have, "a log chunk beyond what was sent before: {ev}");
            *have = (*have).max(offset + len);
        }
    });
    // Steps start and finish in order.
    let order: Vec<(String, u64)> = c.with(|s| {
        s.steps["j-build"]
            .iter()
            .map(|e| (e["type"].as_str().unwrap_or_default().to_owned(), e["step"].as_u64().unwrap_or(99)))
            .collect()
    });
    let expected_order: Vec<(String, u64)> =
        (0..6).flat_map(|i| [("step_started".to_owned(), i), ("step_finished".to_owned(), i)]).collect();
    assert_eq!(order, expected_order);
    assert_eq!(
        c.with(|s| s.artifacts.get(&("j-build".into(), "reports/a.txt".into())).cloned()),
        Some(b"artifact\n".to_vec())
    );

    // The second job attaches the first one's workspace, fails with exit 3, runs its on_fail step.
    c.enqueue(test);
    let result = c.result("j-test");
    assert_eq!(result["status"], "failed", "{result:#}");
    assert_eq!(result["exit_code"], 3, "{result:#}");
    assert_eq!(c.log("j-test", 1), "artifact\n\nExited with code exit status 3\n");
    assert_eq!(c.log("j-test", 3), "reporting the failure\n");
    assert!(c.with(|s| step_event(s, "j-test", 2, "step_finished")).is_some_and(|e| e["status"] == "skipped"));

    // Idle: SIGTERM ends it at once with 0; the registration is kept 0600 and reused without --token.
    sigterm(&child);
    assert_eq!(exit_code(child), 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.path().join("agent.json")).expect("agent.json").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let leases = c.with(|s| s.leases);
    let again = agent(&e, &c, data.path(), false);
    let junit = "<testsuite name=\"go/pkg\"><testcase name=\"TestA\" time=\"0.002\"/></testsuite>";
    let write = format!("mkdir -p r && echo '{junit}' > r/report.xml");
    let steps = json!([{"run": {"command": write}}, {"store_test_results": {"path": "r"}}]);
    c.enqueue(assignment("j-again", steps, repo.path(), &head));
    assert_eq!(c.result("j-again")["status"], "success");
    let results = c.with(|s| s.test_results.clone());
    assert_eq!(
        results,
        vec![
            json!({"job_id": "j-again", "path": "r", "cases": [{"classname": "go/pkg", "name": "TestA", "result": "success", "run_time_ms": 2}]})
        ]
    );
    sigterm(&again);
    assert_eq!(exit_code(again), 0);
    c.with(|s| {
        assert_eq!(s.registrations, 1, "registered again instead of reusing agent.json");
        assert_eq!(s.leases, leases + 1);
    });
    assert_no_containers(&e);
}

#[test]
fn agent_cancel_from_heartbeat_stops_the_step_and_lease_lost_silences_the_job() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let c = FakeCoordinator::start();
    let (repo, head) = repository();
    let data = tempfile::tempdir().expect("data dir");
    let steps = json!([
        {"run": {"name": "forever", "command": "echo sleeping; sleep 1000"}},
        {"run": {"name": "next", "command": "echo must not run"}}
    ]);
    c.enqueue(assignment("j-cancel", steps.clone(), repo.path(), &head));
    let child = agent(&e, &c, data.path(), true);
    c.wait_for("the step to start", |s| step_event(s, "j-cancel", 0, "step_started").is_some());
    c.with(|s| s.cancel.insert("j-cancel".into()));
    let result = c.result("j-cancel");
    assert_eq!(result["status"], "canceled", "{result:#}");
    c.with(|s| {
        assert_eq!(step_event(s, "j-cancel", 0, "step_finished").map(|e| e["status"].clone()), Some(json!("canceled")));
        assert_eq!(step_event(s, "j-cancel", 1, "step_finished").map(|e| e["status"].clone()), Some(json!("skipped")));
    });
    assert_no_containers(&e);

    // Lease lost: the job is stopped (its containers go) and nothing more is reported, not even a result.
    c.enqueue(assignment("j-lost", steps, repo.path(), &head));
    c.wait_for("the second job to start", |s| step_event(s, "j-lost", 0, "step_started").is_some());
    c.with(|s| s.lost.insert("j-lost".into()));
    let hb = c.with(|s| s.heartbeats.get("j-lost").copied().unwrap_or(0));
    c.wait_for("a heartbeat answered lease_lost", |s| s.heartbeats.get("j-lost").copied().unwrap_or(0) > hb);
    assert_no_containers(&e);
    // The agent is free again: a next job runs.
    c.enqueue(assignment("j-after", json!([{"run": {"command": "true"}}]), repo.path(), &head));
    assert_eq!(c.result("j-after")["status"], "success");
    assert!(c.with(|s| !s.results.contains_key("j-lost")), "a result was sent for a lost lease");
    // An assignment this runner cannot read is reported (so its lease does not just run out), and the agent
    // goes on.
    c.enqueue(json!({"wire_version": 1, "job": {"id": "j-unreadable"}, "spec": "not a job"}));
    let result = c.result("j-unreadable");
    assert_eq!(result["status"], "infrastructure_fail", "{result:#}");
    assert!(result["message"].as_str().is_some_and(|m| m.contains("cannot read this job's assignment")), "{result:#}");
    c.enqueue(assignment("j-last", json!([{"run": {"command": "true"}}]), repo.path(), &head));
    assert_eq!(c.result("j-last")["status"], "success");
    sigterm(&child);
    assert_eq!(exit_code(child), 0);
}

#[test]
fn agent_sigterm_finishes_the_running_job_and_a_second_one_cancels_it() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let c = FakeCoordinator::start();
    let (repo, head) = repository();
    let data = tempfile::tempdir().expect("data dir");
    c.enqueue(assignment("j-drain", json!([{"run": {"command": "sleep 2; echo drained"}}]), repo.path(), &head));
    let child = agent(&e, &c, data.path(), true);
    c.wait_for("the step to start", |s| step_event(s, "j-drain", 0, "step_started").is_some());
    sigterm(&child);
    // Queued after the SIGTERM: must not be leased.
    c.enqueue(assignment("j-not-leased", json!([{"run": {"command": "true"}}]), repo.path(), &head));
    assert_eq!(exit_code(child), 0);
    assert_eq!(c.with(|s| s.results.get("j-drain").map(|r| r["status"].clone())), Some(json!("success")));
    assert_eq!(c.log("j-drain", 0), "drained\n");
    assert_eq!(c.with(|s| s.queue.len()), 1, "a job was leased after SIGTERM");

    // Second SIGTERM: the running job is canceled and reported so.
    c.with(|s| s.queue.clear());
    c.enqueue(assignment("j-second", json!([{"run": {"command": "sleep 1000"}}]), repo.path(), &head));
    let child = agent(&e, &c, data.path(), false);
    c.wait_for("the step to start", |s| step_event(s, "j-second", 0, "step_started").is_some());
    sigterm(&child);
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&child);
    assert_eq!(exit_code(child), 0);
    assert_eq!(c.with(|s| s.results.get("j-second").map(|r| r["status"].clone())), Some(json!("canceled")));
    assert_no_containers(&e);
}

#[test]
fn agent_waits_for_a_coordinator_that_is_not_up_yet() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let (repo, head) = repository();
    let data = tempfile::tempdir().expect("data dir");
    // A free port with nobody listening: registration is refused until the coordinator binds it.
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let log = data.path().join("agent.log");
    let mut cmd = Command::new(bin_dir().join("runner"));
    cmd.args(["agent", "--url", &format!("http://127.0.0.1:{port}"), "--token", REGISTRATION_TOKEN])
        .arg("--data-dir")
        .arg(data.path())
        .env("DRYDOCK_ROOT", e.root())
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    let child = cmd.spawn().expect("start runner agent");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("coordinator away") {
        assert!(
            Instant::now() < deadline,
            "the agent never retried: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = FakeCoordinator::serve_on(TcpListener::bind(("127.0.0.1", port)).expect("bind the same port"));
    c.enqueue(assignment("j-late", json!([{"run": {"command": "echo late but here"}}]), repo.path(), &head));
    assert_eq!(c.result("j-late")["status"], "success");
    assert_eq!(c.log("j-late", 0), "late but here\n");
    assert_eq!(c.with(|s| s.registrations), 1);
    sigterm(&child);
    assert_eq!(exit_code(child), 0);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("what=\"register\""), "{text}");
}

#[test]
fn agent_concurrency_runs_a_second_job_while_the_first_still_runs() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let c = FakeCoordinator::start();
    let (repo, head) = repository();
    let data = tempfile::tempdir().expect("data dir");
    let mut cmd = Command::new(bin_dir().join("runner"));
    cmd.args(["agent", "--url", &c.url, "--token", REGISTRATION_TOKEN, "--concurrency", "2"])
        .arg("--data-dir")
        .arg(data.path())
        .env("DRYDOCK_ROOT", e.root())
        .stdin(Stdio::null());
    let child = cmd.spawn().expect("start runner agent");
    c.enqueue(assignment("j-long", json!([{"run": {"command": "sleep 1000"}}]), repo.path(), &head));
    c.wait_for("the long job to start", |s| step_event(s, "j-long", 0, "step_started").is_some());
    // With one lease loop this job would wait for `sleep 1000`; with two it runs now.
    c.enqueue(assignment("j-short", json!([{"run": {"command": "echo side by side"}}]), repo.path(), &head));
    assert_eq!(c.result("j-short")["status"], "success");
    assert_eq!(c.log("j-short", 0), "side by side\n");
    assert!(c.with(|s| !s.results.contains_key("j-long")));
    c.with(|s| s.cancel.insert("j-long".into()));
    assert_eq!(c.result("j-long")["status"], "canceled");
    sigterm(&child);
    assert_eq!(exit_code(child), 0);
    assert_no_containers(&e);
}

/// `busybox-git:latest` in `e`: busybox with the host's `git` and the shared libraries `ldd` says it needs, so
/// a step can run `git` in its checkout (busybox has none; builtins such as `rev-parse` and `log` need nothing
/// else).
fn git_image(e: &TestEngine) -> &'static str {
    let ctx = tempfile::Builder::new().prefix("drydock-git-image-").tempdir().expect("context dir");
    let git = Path::new("/usr/bin/git");
    let ldd = Command::new("ldd").arg(git).output().expect("run ldd");
    assert!(ldd.status.success(), "ldd {}: {}", git.display(), String::from_utf8_lossy(&ldd.stderr));
    let mut files = vec![git.to_path_buf()];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`
        let path = line.split("=>").last().and_then(|r| r.split_whitespace().next()).unwrap_or_default();
        if path.starts_with('/') {
            files.push(std::path::PathBuf::from(path));
        }
    }
    for f in &files {
        let dest = ctx.path().join("rootfs").join(f.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(f, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", f.display()));
    }
    std::fs::write(ctx.path().join("Dockerfile"), "FROM busybox:latest\nCOPY rootfs/ /\n").expect("Dockerfile");
    e.run(["build", "-t", "busybox-git:latest", &ctx.path().to_string_lossy()]).success();
    "busybox-git:latest"
}

/// A repository with `first` and `second` on `main` and `third` on `feature`; its directory and the three commits.
fn branchy_repository() -> (tempfile::TempDir, [String; 3]) {
    use crate::git_http::{git, OsArg::S};
    let dir = tempfile::Builder::new().prefix("drydock-agent-repo-").tempdir().expect("temp dir");
    let d = Some(dir.path());
    git(&[S("init"), S("--quiet"), S("--initial-branch=main")], d);
    let commit = |text: &str| {
        std::fs::write(dir.path().join("README"), format!("{text}\n")).expect("write");
        git(&[S("add"), S("README")], d);
        git(&[S("commit"), S("--quiet"), S("-m"), S(text)], d);
        git(&[S("rev-parse"), S("HEAD")], d).trim().to_owned()
    };
    let first = commit("first");
    let second = commit("second");
    git(&[S("checkout"), S("--quiet"), S("-b"), S("feature")], d);
    let third = commit("third");
    git(&[S("checkout"), S("--quiet"), S("main")], d);
    (dir, [first, second, third])
}

#[test]
fn agent_checks_out_over_http_with_the_token_and_fails_clearly_without_it() {
    if !can_run_containers() {
        return;
    }
    const TOKEN: &str = "ghs_checkoutToken0123456789";
    const WRONG: &str = "ghs_wrongToken9876543210";
    let e = TestEngine::with_busybox();
    let image = git_image(&e);
    let server = crate::git_http::GitHttpServer::start(TOKEN);
    let (work, [first, second, third]) = branchy_repository();
    let url = server.publish("acme/app.git", work.path());
    let forbidden = server.publish("forbidden.git", work.path());
    let c = FakeCoordinator::start();
    let data = tempfile::tempdir().expect("data dir");
    let job = |id: &str, steps: Value, url: &str, revision: &str, branch: Option<&str>, credential: &str| {
        let mut a = assignment(id, steps, work.path(), revision);
        a["spec"]["docker"] = json!([{"image": image}]);
        a["checkout"] = json!({"repository_url": url, "revision": revision, "credential": credential});
        if let Some(b) = branch {
            a["checkout"]["branch"] = json!(b);
        }
        a
    };
    let show = format!(
        "cd src && git rev-parse HEAD && git log --format=%s && git rev-parse --abbrev-ref HEAD \
         && git config --get remote.origin.url && cat README \
         && if grep -rq '{TOKEN}' .git; then echo token-in-.git; else echo no-token-in-.git; fi"
    );
    let checkout_then_show = json!([{"checkout": {"path": "src"}}, {"run": {"name": "show", "command": show}}]);
    let checkout_then_never = json!(["checkout", {"run": {"command": "echo must not run"}}]);
    // An ancestor of main's tip, on main; the tip of a branch the job does not name; then the failures.
    c.enqueue(job("j-http", checkout_then_show.clone(), &url, &first, Some("main"), TOKEN));
    c.enqueue(job("j-tip", checkout_then_show, &url, &third, None, TOKEN));
    c.enqueue(job("j-wrong", checkout_then_never.clone(), &url, &second, Some("main"), WRONG));
    c.enqueue(job("j-403", checkout_then_never.clone(), &forbidden, &second, Some("main"), TOKEN));
    let missing = "0123456789abcdef0123456789abcdef01234567";
    c.enqueue(job("j-missing", checkout_then_never.clone(), &url, missing, Some("main"), TOKEN));
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let unreachable = format!("http://{closed}/acme/app.git"); // the listener is gone: connection refused
    c.enqueue(job("j-away", checkout_then_never, &unreachable, &second, Some("main"), TOKEN));
    let child = agent(&e, &c, data.path(), true);

    let result = c.result("j-http");
    let (checkout_log, show_log) = (c.log("j-http", 0), c.log("j-http", 1));
    assert_eq!(result["status"], "success", "{result:#}\ncheckout: {checkout_log}\nshow: {show_log}");
    assert_eq!(show_log, format!("{first}\nfirst\nmain\n{url}\nfirst\nno-token-in-.git\n"));
    assert!(
        checkout_log.contains(&format!("Checked out {first} on branch main into /root/project/src")),
        "{checkout_log}"
    );
    let result = c.result("j-tip");
    let show_log = c.log("j-tip", 1);
    assert_eq!(result["status"], "success", "{result:#}\n{}\n{show_log}", c.log("j-tip", 0));
    assert_eq!(show_log, format!("{third}\nthird\nsecond\nfirst\nHEAD\n{url}\nthird\nno-token-in-.git\n"));

    let failed = |job: &str, needles: &[&str]| {
        let result = c.result(job);
        let log = c.log(job, 0);
        assert_eq!(result["status"], "failed", "{job}: {result:#}\n{log}");
        for needle in needles {
            assert!(log.contains(needle), "{job}: the checkout's log lacks {needle:?}:\n{log}");
        }
        assert!(c.with(|s| step_event(s, job, 1, "step_finished")).is_some_and(|e| e["status"] == "skipped"));
    };
    failed("j-wrong", &["error: checkout:", &url, "refused the credential", "x-access-token"]);
    failed("j-403", &["error: checkout:", &forbidden, "403"]);
    failed("j-missing", &["error: checkout:", &url, &format!("revision {missing} is not on {url}")]);
    failed("j-away", &["error: checkout:", &unreachable]);

    // The token went in the Authorization header only: never in a URL, never in what the coordinator got.
    let received = c.with(|s| serde_json::to_string(&s.received).unwrap_or_default());
    for secret in [TOKEN, WRONG] {
        assert!(!received.contains(secret), "{secret} reached the coordinator: {received}");
    }
    let requests = server.requests();
    assert!(requests.iter().all(|r| !r.path.contains(TOKEN) && !r.path.contains(WRONG)), "{requests:#?}");
    assert!(requests.iter().any(|r| r.method == "POST" && r.status == 200), "no fetch was served: {requests:#?}");
    // The credential is sent only after the server asked for it (a 401 without an Authorization header first).
    assert!(requests.iter().any(|r| r.status == 401 && r.authorization.is_none()), "{requests:#?}");
    sigterm(&child);
    assert_eq!(exit_code(child), 0);
    assert_no_containers(&e);
}

/// The config of [`agent_against_the_real_coordinator_runs_docker_build_and_run_through_setup_remote_docker`].
const REMOTE_DOCKER_CONFIG: &str = "\
version: 2.1
jobs:
  images:
    docker: [{image: busybox:latest}]
    steps:
      - checkout
      - setup_remote_docker
      - run:
          name: a sibling container
          command: docker run --rm busybox:latest echo hello from a sibling container
      - run:
          name: build the checkout's Dockerfile
          command: DOCKER_BUILDKIT=0 docker build -t remote-built:1 .
      - run:
          name: run what was built
          command: docker run --rm remote-built:1
workflows:
  main:
    jobs: [images]
";

#[test]
fn agent_against_the_real_coordinator_runs_docker_build_and_run_through_setup_remote_docker() {
    use crate::embedded::{coordinator, run, Server};
    use crate::git_http::{git, OsArg::S};
    if !can_run_containers() {
        return;
    }
    let client = bin_dir().join("drydock-docker");
    assert!(client.is_file(), "{} is missing: run script/build-client (script/test does)", client.display());
    let e = TestEngine::with_busybox();
    let tmp = tempfile::tempdir().expect("temp dir");
    let (data, runner_data, repo) = (tmp.path().join("data"), tmp.path().join("runner"), tmp.path().join("repo"));
    std::fs::create_dir_all(repo.join(".circleci")).expect("mkdir");
    std::fs::write(repo.join(".circleci/config.yml"), REMOTE_DOCKER_CONFIG).expect("config");
    std::fs::write(
        repo.join("Dockerfile"),
        "FROM busybox:latest\nRUN echo built by the job > /built\nCMD [\"cat\", \"/built\"]\n",
    )
    .expect("Dockerfile");
    let d = Some(repo.as_path());
    git(&[S("init"), S("--quiet"), S("--initial-branch=main")], d);
    git(&[S("add"), S(".")], d);
    git(&[S("commit"), S("--quiet"), S("-m"), S("images")], d);

    run(&data, &["project", "add", "demo", "--local", repo.to_str().expect("utf-8 path")], "");
    let registration = run(&data, &["token", "create", "--runner"], "").trim().to_string();
    let admin = run(&data, &["token", "create", "--admin"], "").trim().to_string();
    run(&data, &["trigger", "demo", "--branch", "main"], "");
    let mut server = Server(
        coordinator(&data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start coordinator serve"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("stdout")).read_line(&mut line).expect("the listening line");
    let url = line.trim().strip_prefix("listening on ").expect("listening on …").to_string();

    let agent = Command::new(bin_dir().join("runner"))
        .args(["agent", "--url", &url, "--token", &registration, "--name", "remote-docker-runner"])
        .arg("--data-dir")
        .arg(&runner_data)
        .env("DRYDOCK_ROOT", e.root())
        .env("DRYDOCK_DOCKER_CLIENT", &client)
        .env("DRYDOCK_LOG", "info")
        .stdin(Stdio::null())
        .spawn()
        .expect("start runner agent");

    let api = |path: &str| -> (u16, String) {
        let http = ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
        let mut resp = http
            .get(&format!("{url}/api/v1/{path}"))
            .header("authorization", &format!("Bearer {admin}"))
            .call()
            .expect("an API request");
        (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap_or_default())
    };
    // Waits for the job to end (a bound against hanging, not a timing assertion).
    let deadline = Instant::now() + Duration::from_secs(600);
    let job = loop {
        let (status, text) = api("jobs/1");
        let job: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let state = job["job"]["state"].as_str().unwrap_or_default().to_owned();
        if status == 200 && !["queued", "blocked", "running", ""].contains(&state.as_str()) {
            break job;
        }
        assert!(Instant::now() < deadline, "the job did not finish: {status} {text}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let logs: Vec<String> = (0..job["steps"].as_array().map_or(0, Vec::len))
        .map(|step| api(&format!("jobs/1/steps/{step}/log")).1)
        .collect();
    assert_eq!(job["job"]["state"], "success", "{job:#}\n{logs:#?}");
    assert_eq!(logs.len(), 5, "{logs:#?}");
    assert!(logs[1].contains("Remote Docker engine: Drydock engine "), "setup_remote_docker: {}", logs[1]);
    assert!(logs[2].contains("hello from a sibling container"), "{}", logs[2]);
    assert!(logs[3].contains("Successfully tagged remote-built:1"), "{}", logs[3]);
    assert_eq!(logs[4].trim_end(), "built by the job", "{}", logs[4]);
    // The image was built by the runner host's engine, scoped to the job (and left in the engine's store).
    e.run(["run", "--rm", "remote-built:1"]).success().stdout_is("built by the job\n");

    sigterm(&agent);
    assert_eq!(exit_code(agent), 0);
    assert_no_containers(&e);
}
