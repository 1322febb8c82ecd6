//! `coordinator` end to end: the real binary's CLI (migrate, project add, token create, trigger) and `serve`,
//! driven over HTTP as a runner agent would — including a SIGKILL of the coordinator mid-job, after which the
//! restarted coordinator still knows the running job and its runner completes it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::util::bin_dir;

fn coordinator(data: &Path) -> Command {
    let mut c = Command::new(bin_dir().join("coordinator"));
    c.arg("--data-dir").arg(data).env_remove("DATABASE_URL").env("RUST_LOG", "warn");
    c
}

/// Runs a coordinator verb, asserting success; returns stdout.
fn run(data: &Path, args: &[&str]) -> String {
    let out = coordinator(data).args(args).output().expect("run coordinator");
    assert!(
        out.status.success(),
        "coordinator {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A serving coordinator and its base URL; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path) -> Server {
    let mut child = coordinator(data)
        .args(["serve", "--listen", "127.0.0.1:0", "--lease-ttl-secs", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start coordinator serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Server { url: url.to_string(), child }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build())
}

/// POSTs JSON; returns status and body.
fn post(url: &str, token: Option<&str>, body: serde_json::Value) -> (u16, serde_json::Value) {
    let mut req = agent().post(url).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.send(body.to_string()).expect("http request");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, if text.is_empty() { serde_json::Value::Null } else { serde_json::from_str(&text).unwrap_or_default() })
}

/// A local repository with `.circleci/config.yml` committed on `main`.
fn repository(dir: &Path, config: &str) {
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

const CONFIG: &str = "version: 2.1\njobs:\n  build: {docker: [{image: busybox}], steps: [{run: 'echo hi'}]}\n  \
    test: {docker: [{image: busybox}], steps: [{run: 'true'}]}\nworkflows:\n  main:\n    jobs: [build, {test: \
    {requires: [build]}}]\n";

#[test]
fn coordinator_survives_sigkill_mid_job_and_the_runner_completes_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let repo = tmp.path().join("repo");
    repository(&repo, CONFIG);

    assert!(run(&data, &["migrate"]).contains("up to date"));
    run(&data, &["project", "add", "demo", "--local", repo.to_str().expect("utf-8 path")]);
    assert!(run(&data, &["project", "list"]).starts_with("demo\t"));
    let registration = run(&data, &["token", "create", "--runner"]).trim().to_string();
    let out = run(&data, &["trigger", "demo", "--branch", "main"]);
    assert!(out.starts_with("pipeline demo #1: running (1 jobs queued)"), "{out}");

    let mut server = serve(&data);
    let (status, reg) = post(
        &format!("{}/api/v1/runners/register", server.url),
        None,
        serde_json::json!({"registration_token": registration, "name": "r1"}),
    );
    assert_eq!(status, 201, "{reg}");
    let token = reg["token"].as_str().expect("runner token").to_string();
    let (status, a) =
        post(&format!("{}/api/v1/runners/lease", server.url), Some(&token), serde_json::json!({"wait_ms": 5000}));
    assert_eq!((status, a["job"]["name"].as_str()), (200, Some("build")), "{a}");
    assert_eq!(a["checkout"]["repository_url"].as_str(), repo.canonicalize().ok().as_deref().and_then(Path::to_str));
    let job = a["job"]["id"].as_str().expect("job id").to_string();

    // SIGKILL mid-job, restart on the same data directory: the lease and the job survive.
    server.child.kill().expect("kill");
    let _ = server.child.wait();
    drop(server);
    let server = serve(&data);
    let (status, hb) =
        post(&format!("{}/api/v1/jobs/{job}/heartbeat", server.url), Some(&token), serde_json::json!({}));
    assert_eq!((status, hb["cancel"].as_bool()), (200, Some(false)), "{hb}");
    let result = serde_json::json!({"job_id": job, "status": "success", "started_at": 1, "finished_at": 2});
    let (status, body) = post(&format!("{}/api/v1/jobs/{job}/complete", server.url), Some(&token), result);
    assert_eq!(status, 200, "{body}");

    // The dependent job is queued now.
    let (status, a) =
        post(&format!("{}/api/v1/runners/lease", server.url), Some(&token), serde_json::json!({"wait_ms": 5000}));
    assert_eq!((status, a["job"]["name"].as_str()), (200, Some("test")), "{a}");
}

/// Runs `git ARGS` in `dir`, asserting success; returns stdout and stderr (a push's `remote:` lines).
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Ada", "-c", "user.email=ada@example.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "git {args:?} failed:\n{text}");
    text
}

/// GETs JSON with a bearer token.
fn get(url: &str, token: &str) -> serde_json::Value {
    let mut resp = agent().get(url).header("authorization", &format!("Bearer {token}")).call().expect("http request");
    serde_json::from_str(&resp.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default()
}

/// `project add --local` installs a post-receive hook: a real `git push` into the repository creates a pipeline
/// per pushed branch or tag at the pushed commit, a deleted branch creates none.
#[test]
fn a_git_push_into_a_local_project_triggers_a_pipeline() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let bare = tmp.path().join("app.git");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&bare).expect("mkdir");
    git(&bare, &["init", "--bare", "--quiet"]);
    let out = run(&data, &["project", "add", "app", "--local", bare.to_str().expect("utf-8 path")]);
    assert!(out.contains("installed") && out.contains("hooks/post-receive"), "{out}");

    std::fs::create_dir_all(work.join(".circleci")).expect("mkdir");
    std::fs::write(work.join(".circleci/config.yml"), CONFIG).expect("write config");
    git(&work, &["init", "--quiet"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "add config"]);
    git(&work, &["remote", "add", "origin", bare.to_str().expect("utf-8 path")]);
    let pushed = git(&work, &["push", "origin", "main"]);
    assert!(pushed.contains("remote: pipeline app #1: running (1 jobs queued)"), "{pushed}");
    let main_sha = git(&work, &["rev-parse", "HEAD"]).trim().to_string();

    git(&work, &["checkout", "--quiet", "-b", "feature"]);
    git(&work, &["commit", "--quiet", "--allow-empty", "-m", "more"]);
    let feature_sha = git(&work, &["rev-parse", "HEAD"]).trim().to_string();
    let pushed = git(&work, &["push", "origin", "feature"]);
    assert!(pushed.contains("remote: pipeline app #2"), "{pushed}");
    let pushed = git(&work, &["push", "origin", "--delete", "feature"]);
    assert!(!pushed.contains("pipeline app #3"), "a deleted branch triggers nothing: {pushed}");

    // The pipelines as the API shows them: branch and commit of each push.
    let admin = run(&data, &["token", "create", "--admin"]).trim().to_string();
    let server = serve(&data);
    let page = get(&format!("{}/api/v1/projects/app/pipelines", server.url), &admin);
    let seen: Vec<(String, String)> = page["pipelines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let trigger = &p["trigger"];
            (
                trigger["branch"].as_str().unwrap_or_default().to_string(),
                trigger["sha"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(seen, [("feature".to_string(), feature_sha), ("main".to_string(), main_sha)], "{page}");
    assert_eq!(page["pipelines"][0]["trigger"]["source"], "local", "{page}");
}

#[test]
fn serve_takes_github_app_credentials_and_names_a_bad_key_file() {
    let data = tempfile::tempdir().expect("tempdir");
    // All three flags, or clap refuses before anything starts.
    let out = coordinator(data.path()).args(["serve", "--github-app-id", "1"]).output().expect("run coordinator");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--github-app-key"), "{out:?}");
    // A key file that is not there: a clear error naming it, no server.
    let missing = data.path().join("no-such-key.pem");
    let out = coordinator(data.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--github-app-id", "1", "--github-app-installation-id", "2"])
        .arg("--github-app-key")
        .arg(&missing)
        .output()
        .expect("run coordinator");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GitHub App's private key") && stderr.contains("no-such-key.pem"), "{stderr}");
    // A real key (the fixture the App token exchange is tested with in coordinator/src/github/status.rs): it
    // serves, answering as usual.
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("../coordinator/tests/fixtures/github/app-private-key.pem");
    let mut child = coordinator(data.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--github-app-id", "1", "--github-app-installation-id", "2"])
        .arg("--github-app-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start coordinator serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the listening line");
    let server = Server { url: line.trim().trim_start_matches("listening on ").to_string(), child };
    let status = agent().get(&format!("{}/api/v1/openapi.json", server.url)).call().expect("http").status().as_u16();
    assert_eq!(status, 200);
}
