//! The embedded default end to end: `coordinator serve --with-runner` starts the real `runner agent`, which runs
//! a pipeline of a local repository in real containers; the dashboard (signed in over HTTP) shows the job and its
//! log; SIGTERM to the coordinator stops the runner too.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{bin_dir, can_run_containers, TestEngine};

const CONFIG: &str = "version: 2.1\njobs:\n  build: {docker: [{image: busybox}], steps: [{run: 'echo hello from the \
                      local runner'}]}\nworkflows:\n  main:\n    jobs: [build]\n";
pub(crate) const PASSWORD: &str = "a-long-enough-password";

/// `coordinator --data-dir DATA` (SQLite in DATA, quiet logs).
pub(crate) fn coordinator(data: &Path) -> Command {
    let mut c = Command::new(bin_dir().join("coordinator"));
    c.arg("--data-dir").arg(data).env_remove("DATABASE_URL").env("RUST_LOG", "warn");
    c
}

/// Runs `coordinator --data-dir DATA ARGS` with `stdin` to success; its stdout.
pub(crate) fn run(data: &Path, args: &[&str], stdin: &str) -> String {
    let mut child = coordinator(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run coordinator");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait for coordinator");
    assert!(
        out.status.success(),
        "coordinator {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn repository(dir: &Path) {
    repository_with(dir, CONFIG);
}

/// A git repository at `dir` whose one commit on `main` holds `.circleci/config.yml` = `config`.
pub(crate) fn repository_with(dir: &Path, config: &str) {
    std::fs::create_dir_all(dir.join(".circleci")).expect("mkdir");
    std::fs::write(dir.join(".circleci/config.yml"), config).expect("write config");
    let repo = git2::Repository::init(dir).expect("git init");
    let mut index = repo.index().expect("index");
    index.add_path(Path::new(".circleci/config.yml")).expect("add");
    index.write().expect("write index");
    let tree = repo.find_tree(index.write_tree().expect("tree")).expect("find tree");
    let sig = git2::Signature::now("Ada", "ada@example.invalid").expect("signature");
    repo.commit(Some("refs/heads/main"), &sig, &sig, "add config", &tree, &[]).expect("commit");
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build())
}

/// The value of cookie `name` among a response's `Set-Cookie` headers.
fn set_cookie(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

pub(crate) fn sign_in(url: &str) -> String {
    let form = agent().get(&format!("{url}/sign-in")).call().expect("GET /sign-in");
    let signin = set_cookie(&form, "drydock_signin").expect("a sign-in cookie");
    let token = signin.trim_start_matches("drydock_signin=");
    let body = format!("username=alice&password={PASSWORD}&_csrf={token}&next=%2F");
    let resp = agent()
        .post(&format!("{url}/sign-in"))
        .header("cookie", &signin)
        .header("content-type", "application/x-www-form-urlencoded")
        .send(body)
        .expect("POST /sign-in");
    assert_eq!(resp.status().as_u16(), 303);
    set_cookie(&resp, "drydock_session").expect("a session cookie")
}

pub(crate) fn page(url: &str, cookie: &str) -> String {
    let mut resp = agent().get(url).header("cookie", cookie).call().expect("GET page");
    assert_eq!(resp.status().as_u16(), 200, "{url}");
    resp.body_mut().read_to_string().expect("page body")
}

/// `runner agent` processes whose command line mentions `needle`.
pub(crate) fn runner_agents_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) && text.contains(" agent ") {
                out.push(text);
            }
        }
    }
    out
}

/// The serving coordinator, killed if the test fails before it stopped it.
pub(crate) struct Server(pub(crate) std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `coordinator serve --with-runner` on a free loopback port; the server and its `http://…` URL.
pub(crate) fn serve_with_runner(data: &Path, runner_data: &Path, engine_root: &Path) -> (Server, String) {
    let mut server = Server(
        coordinator(data)
            .args(["serve", "--listen", "127.0.0.1:0", "--with-runner"])
            .arg("--runner-data-dir")
            .arg(runner_data)
            .arg("--engine-root")
            .arg(engine_root)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start coordinator serve"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("stdout")).read_line(&mut line).expect("the listening line");
    let url = line.trim().strip_prefix("listening on ").expect("listening on …").to_string();
    (server, url)
}

#[test]
fn serve_with_runner_runs_a_pipeline_shown_on_the_dashboard_and_stops_its_runner_with_it() {
    if !can_run_containers() {
        return;
    }
    let engine = TestEngine::with_busybox();
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let runner_data = tmp.path().join("runner-of-embedded-test");
    let repo = tmp.path().join("repo");
    repository(&repo);
    run(&data, &["project", "add", "demo", "--local", repo.to_str().expect("utf-8 path")], "");
    assert!(run(&data, &["user", "add", "alice", "--admin", "--password-stdin"], &format!("{PASSWORD}\n"))
        .contains("added admin alice"));
    run(&data, &["trigger", "demo", "--branch", "main"], "");

    let (mut server, url) = serve_with_runner(&data, &runner_data, engine.root());
    let child = &mut server.0;

    let cookie = sign_in(&url);
    // Waits for the job to end (a bound against hanging, not a timing assertion).
    let deadline = Instant::now() + Duration::from_secs(300);
    let job = loop {
        let job = page(&format!("{url}/jobs/1"), &cookie);
        let header = job.split("<h1>").nth(1).and_then(|h| h.split("</h1>").next()).unwrap_or("").to_string();
        if ["st-success", "st-failed", "st-canceled", "st-infrastructure_fail", "st-timed_out"]
            .iter()
            .any(|s| header.contains(s))
        {
            assert!(header.contains("st-success"), "the job failed:\n{job}");
            break job;
        }
        assert!(Instant::now() < deadline, "the job did not finish:\n{job}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(job.contains("local"), "the runner's name:\n{job}");
    let logs: Vec<String> = (0..job.matches("data-log-src=").count())
        .map(|step| page(&format!("{url}/jobs/1/steps/{step}/log"), &cookie))
        .collect();
    assert!(logs.iter().any(|l| l.contains("hello from the local runner")), "{logs:?}");
    let pipeline = page(&format!("{url}/projects/demo/pipelines/1"), &cookie);
    assert!(pipeline.contains("build") && pipeline.contains("success"), "{pipeline}");

    let runner_needle = runner_data.to_str().expect("utf-8 path");
    assert_eq!(runner_agents_mentioning(runner_needle).len(), 1, "one local runner runs");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait for the coordinator");
    assert!(exit.success(), "the coordinator stops cleanly: {exit}");
    assert_eq!(
        runner_agents_mentioning(runner_needle),
        Vec::<String>::new(),
        "the runner stopped with the coordinator"
    );
}
