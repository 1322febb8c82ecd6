//! The dashboard end to end in headless Chromium: the real `coordinator serve --with-runner` runs a busybox
//! pipeline in real containers while a browser, driven over WebDriver (chromedriver, `fantoccini`), signs in,
//! adds a secret and changes the project's settings (concurrency, auto-cancel, a schedule), approves a hold,
//! watches the pipeline page follow the run without a reload (job statuses, title, favicon), watches a running
//! step's log grow, reruns the failed job, and is refused a form posted without its CSRF token. At the end every
//! dashboard page reachable from `/` and every REST API response about the run is fetched and searched for the
//! secret's value (the failing job printed it; the log shows it masked).
//!
//! chromedriver runs on a free loopback port in its own process group with a Chromium profile in the test's
//! temp dir; both are stopped when the test ends, pass or fail, and the test checks nothing of them is left.
//! Screenshots of each page go to `$CARGO_TARGET_TMPDIR/dashboard_e2e/`. Without Debian's `chromium` and
//! `chromium-driver` (`script/bootstrap` installs them) the test is skipped — and fails under `CI=true`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::embedded::{repository_with, run, runner_agents_mentioning, serve_with_runner};
use crate::util::{can_run_containers, TestEngine};

/// A hold; `build`, whose step prints a numbered line a second for 15 seconds; `deploy`, which prints the secret
/// and fails.
const CONFIG: &str = "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox}]\n    steps:\n      - run: {name: \
                      greet, command: 'i=0; while [ $i -lt 15 ]; do i=$((i+1)); echo e2e-line-$i; sleep 1; done'}\n  \
                      deploy:\n    docker: [{image: busybox}]\n    steps:\n      - run: {name: push, command: 'echo \
                      \"deploying with $DEPLOY_TOKEN\"; exit 3'}\nworkflows:\n  main:\n    jobs:\n      - hold: {type: \
                      approval}\n      - build: {requires: [hold]}\n      - deploy: {requires: [build]}\n";
const PASSWORD: &str = "a-long-enough-password";
/// A GitHub-style slug: every `/projects/{slug}` route must take the `/` (percent-encoded in links).
const SLUG: &str = "acme/demo";
const SLUG_IN_PATH: &str = "acme%2Fdemo";
const SECRET: &str = "e2e-secret-value-7777";
/// How long any one thing may take before the test gives up (a bound against hanging, not a timing assertion).
const BOUND: Duration = Duration::from_secs(240);

/// `chromium` and `chromedriver` on this machine, if installed.
fn chromium_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    };
    Some((find("chromium")?, find("chromedriver")?))
}

/// chromedriver in its own process group; dropping it stops the group (chromedriver and the browsers it
/// started) and waits for chromedriver.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    fn start(chromedriver: &Path) -> ChromeDriver {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("its address").port()
        };
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let driver = ChromeDriver { child, port };
        let agent = ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
        let deadline = Instant::now() + BOUND;
        loop {
            let ready = agent
                .get(&format!("{}/status", driver.url()))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .is_some_and(|body| body.contains("\"ready\":true"));
            if ready {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group's ID is chromedriver's own PID (process_group(0)); Chromium's processes stay in it.
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

/// Processes whose command line mentions `needle` (the browser profile directory).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                out.push(text);
            }
        }
    }
    out
}

async fn browser(driver: &ChromeDriver, chromium: &Path, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                // Tests run as root, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,1024",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url())
        .await
        .expect("a WebDriver session in headless Chromium")
}

/// Polls `check` until it answers `Some`, within [`BOUND`]; `what` names what the test waits for.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Everything the browser shows of the page now (the live DOM, serialised).
async fn html(c: &Client) -> String {
    c.source().await.expect("the page's HTML")
}

async fn screenshot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
}

async fn sign_in(c: &Client, url: &str, password: &str) {
    c.goto(&format!("{url}/")).await.expect("open the dashboard");
    c.find(Locator::Css("input[name=username]"))
        .await
        .expect("the user name field")
        .send_keys("alice")
        .await
        .expect("type");
    c.find(Locator::Css("input[name=password]"))
        .await
        .expect("the password field")
        .send_keys(password)
        .await
        .expect("type");
    c.find(Locator::Css("form[action='/sign-in'] button[type=submit]"))
        .await
        .expect("the sign-in button")
        .click()
        .await
        .expect("click sign in");
}

/// The status class (`st-…`) of the DAG box of job `name` on the pipeline page shown now.
async fn dag_status(c: &Client, name: &str) -> Option<String> {
    let script = "const a = [...document.querySelectorAll('svg.dag a')].find(a => a.querySelector('text.name') && \
                  a.querySelector('text.name').textContent === arguments[0]); if (!a) return null; return [...a.\
                  querySelector('rect').classList].find(c => c.startsWith('st-')) || null;";
    let value = c.execute(script, vec![serde_json::json!(name)]).await.ok()?;
    value.as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_follows_a_run_live_reruns_a_failed_job_changes_settings_and_never_sees_a_secret() {
    let Some((chromium, chromedriver)) = chromium_tools() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs Debian's chromium and chromium-driver and CI=true: run script/bootstrap"
        );
        eprintln!("skipping: chromium or chromedriver is not installed (script/bootstrap installs them)");
        return;
    };
    if !can_run_containers() {
        return;
    }
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard_e2e");
    std::fs::create_dir_all(&shots).expect("the screenshot directory");
    let engine = TestEngine::with_busybox();
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let runner_data = tmp.path().join("runner-of-dashboard-e2e");
    let profile = tmp.path().join("chromium-profile-of-dashboard-e2e");
    let repo = tmp.path().join("repo");
    repository_with(&repo, CONFIG);
    run(&data, &["project", "add", SLUG, "--local", repo.to_str().expect("utf-8 path")], "");
    run(&data, &["user", "add", "alice", "--admin", "--password-stdin"], &format!("{PASSWORD}\n"));
    run(&data, &["trigger", SLUG, "--branch", "main"], "");
    let api_token = run(&data, &["token", "create", "--admin"], "").trim().to_string();
    let (mut server, url) = serve_with_runner(&data, &runner_data, engine.root());

    let driver = ChromeDriver::start(&chromedriver);
    let c = browser(&driver, &chromium, &profile).await;
    let outcome = tokio::spawn(drive(c.clone(), url.clone(), shots.clone(), api_token)).await;
    let _ = c.close().await;
    drop(driver);
    // SIGTERM, as a person stops it: the coordinator stops its runner too (SIGKILL, Server's drop, would not).
    let signaled = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().expect("kill");
    let exit = server.0.wait().expect("wait for the coordinator");
    match outcome {
        Ok(()) => {}
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the browser's part did not finish: {e}"),
    }
    assert!(signaled.success() && exit.success(), "the coordinator stops cleanly: {exit}");
    // Chromium's processes got SIGTERM with chromedriver's group; give them the bound to exit.
    let profile_needle = profile.to_str().expect("utf-8 path");
    let deadline = Instant::now() + BOUND;
    while !processes_mentioning(profile_needle).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(processes_mentioning(profile_needle), Vec::<String>::new(), "Chromium stopped with the test");
    assert_eq!(
        runner_agents_mentioning(runner_data.to_str().expect("utf-8 path")),
        Vec::<String>::new(),
        "the runner stopped with the coordinator"
    );
}

/// The browser's part; a panic here still lets the test stop the browser and the server.
async fn drive(c: Client, url: String, shots: PathBuf, api_token: String) {
    // A reference the polling closures copy.
    let c = &c;
    // A wrong password shows the error and signs nobody in.
    sign_in(c, &url, "not-the-password-at-all").await;
    let error = c.wait().at_most(BOUND).for_element(Locator::Css(".error-message")).await.expect("the error message");
    assert_eq!(error.text().await.expect("its text"), "wrong user name or password");
    screenshot(c, &shots, "sign-in-refused").await;

    // The right one opens the projects page, which lists the project.
    sign_in(c, &url, PASSWORD).await;
    let projects = eventually("the projects page", move || async move {
        let page = html(c).await;
        page.contains("Sign out").then_some(page)
    })
    .await;
    assert!(projects.contains(SLUG), "the projects page lists {SLUG}:\n{projects}");
    assert!(projects.contains(&format!("/projects/{SLUG_IN_PATH}")), "links percent-encode the slug:\n{projects}");
    screenshot(c, &shots, "projects").await;

    // The project page, through its link.
    c.find(Locator::Css(&format!("a[href='/projects/{SLUG_IN_PATH}']")))
        .await
        .expect("the project's link")
        .click()
        .await
        .expect("open the project");
    let project = eventually("the project page", move || async move {
        let page = html(c).await;
        page.contains("/pipelines/1").then_some(page)
    })
    .await;
    assert!(project.contains("main"), "{project}");

    // While the pipeline waits on its hold: a secret the deploy job will print, and the project's options.
    let settings_url = format!("{url}/projects/{SLUG_IN_PATH}/settings");
    c.goto(&settings_url).await.expect("open the settings");
    fill(c, "form.env-add", &[("name", "DEPLOY_TOKEN"), ("value", SECRET)]).await;
    let settings = eventually("the variable in the list", move || async move {
        let page = html(c).await;
        page.contains("DEPLOY_TOKEN").then_some(page)
    })
    .await;
    assert!(settings.contains("xxxx7777"), "the hint shows the last four characters:\n{settings}");
    assert!(!settings.contains(SECRET), "the settings page shows the secret:\n{settings}");
    let options = "form[action$='/settings/options']";
    c.find(Locator::Css(&format!("{options} input[name=max_concurrent_jobs]")))
        .await
        .expect("the limit field")
        .clear()
        .await
        .expect("clear it");
    c.find(Locator::Css(&format!("{options} input[name=auto_cancel_redundant]")))
        .await
        .expect("the auto-cancel box")
        .click()
        .await
        .expect("tick it");
    fill(c, options, &[("max_concurrent_jobs", "2")]).await;
    eventually("the saved options", move || async move {
        let limit = c.find(Locator::Css("input[name=max_concurrent_jobs]")).await.ok()?.prop("value").await.ok()??;
        let ticked =
            c.find(Locator::Css("input[name=auto_cancel_redundant]")).await.ok()?.prop("checked").await.ok()??;
        (limit == "2" && ticked == "true").then_some(())
    })
    .await;
    fill(c, "form.schedule-add", &[("cron", "0 3 * * *"), ("branch", "main"), ("name", "nightly-e2e")]).await;
    let settings = eventually("the schedule in the list", move || async move {
        let page = html(c).await;
        page.contains("nightly-e2e").then_some(page)
    })
    .await;
    assert!(settings.contains("0 3 * * *"), "{settings}");
    screenshot(c, &shots, "settings").await;

    // The pipeline waits on the hold; approving it (a real form with its CSRF token) starts the build.
    c.goto(&format!("{url}/projects/{SLUG_IN_PATH}/pipelines/1")).await.expect("open the pipeline");
    c.wait().at_most(BOUND).for_element(Locator::Css("button.approve")).await.expect("the approve button");
    screenshot(c, &shots, "pipeline-on-hold").await;
    // The page's live updates replace its content (the first comes as it opens): a button found just before may
    // be gone when clicked, so click again until the approval lands (after it, there is no button to click).
    eventually("the approval to land", move || async move {
        if let Ok(button) = c.find(Locator::Css("button.approve")).await {
            let _ = button.click().await;
        }
        dag_status(c, "hold").await.filter(|s| s == "st-success")
    })
    .await;

    // From here the page must not reload: a mark left in its window survives only the live updates (SSE).
    c.execute("window.drydockE2eMark = 'kept'; return true;", vec![]).await.expect("mark the window");
    eventually("the build to start on the open page", move || async move {
        dag_status(c, "build").await.filter(|s| s == "st-running")
    })
    .await;
    assert_eq!(window_mark(c).await, Some("kept".into()), "the pipeline page updated without reloading");
    let title = c.title().await.expect("the title");
    assert!(title.starts_with("● running"), "a running pipeline's title says so: {title}");
    assert!(favicon(c).await.contains("favicon-running"), "the running favicon");
    screenshot(c, &shots, "pipeline-running").await;

    // The running job's page: its step's log grows while the page is open, without a reload.
    let build_href = job_link(c, "build").await;
    c.goto(&format!("{url}{build_href}")).await.expect("open the job");
    let first = eventually("the first lines of the running step", move || async move {
        let page = html(c).await;
        let lines = log_lines_shown(&page);
        (lines > 0 && !page.contains("e2e-line-15")).then_some(lines)
    })
    .await;
    c.execute("window.drydockE2eMark = 'kept'; return true;", vec![]).await.expect("mark the window");
    screenshot(c, &shots, "job-log-growing").await;
    eventually("the log to grow on the open page", move || async move {
        let page = html(c).await;
        let still_open = window_mark(c).await == Some("kept".into());
        (still_open && log_lines_shown(&page) > first).then_some(())
    })
    .await;
    eventually("the whole log", move || async move { html(c).await.contains("e2e-line-15").then_some(()) }).await;
    screenshot(c, &shots, "job-log").await;

    // Back on the pipeline page: deploy fails, and the title and favicon say so.
    let pipeline_url = format!("{url}/projects/{SLUG_IN_PATH}/pipelines/1");
    c.goto(&pipeline_url).await.expect("open the pipeline");
    c.execute("window.drydockE2eMark = 'kept'; return true;", vec![]).await.expect("mark the window");
    eventually("deploy to fail on the open page", move || async move {
        dag_status(c, "deploy").await.filter(|s| s == "st-failed")
    })
    .await;
    eventually("the failed title", move || async move {
        c.title().await.ok().filter(|t| t.starts_with("● failed")).map(|_| ())
    })
    .await;
    assert!(favicon(c).await.contains("favicon-failed"), "the failed favicon");
    let build = dag_status(c, "build").await;
    assert_eq!(build.as_deref(), Some("st-success"), "build passed");
    screenshot(c, &shots, "pipeline-failed").await;

    // Rerun the failed job: a new workflow runs deploy again (and it fails again), build keeps its result.
    c.find(Locator::Css("form[action$='/rerun-failed'] button"))
        .await
        .expect("the rerun-failed button")
        .click()
        .await
        .expect("rerun the failed job");
    let rerun_status =
        "const w = [...document.querySelectorAll('section.workflow')]; if (w.length !== 2) return null; \
                        const s = w[1].querySelector('h2 .status'); return s ? s.className : null;";
    eventually("the rerun to show and fail", move || async move {
        let class = c.execute(rerun_status, vec![]).await.ok()?;
        class.as_str().filter(|c| c.contains("st-failed")).map(|_| ())
    })
    .await;
    screenshot(c, &shots, "pipeline-rerun").await;

    // The deploy job printed the secret: its log shows it masked.
    let deploy_href = job_link(c, "deploy").await;
    c.goto(&format!("{url}{deploy_href}")).await.expect("open the deploy job");
    let deploy = eventually("the deploy log", move || async move {
        let page = html(c).await;
        page.contains("deploying with").then_some(page)
    })
    .await;
    assert!(!deploy.contains(SECRET), "the deploy log shows the secret:\n{deploy}");
    screenshot(c, &shots, "job-masked").await;

    // Every page and API response of the run, searched for the secret.
    let cookie = c
        .get_all_cookies()
        .await
        .expect("the browser's cookies")
        .into_iter()
        .find(|k| k.name() == "drydock_session")
        .map(|k| format!("drydock_session={}", k.value()))
        .expect("a session cookie");
    let url_owned = url.clone();
    tokio::task::spawn_blocking(move || no_response_shows_the_secret(&url_owned, &cookie, &api_token))
        .await
        .expect("the search finished");

    // A form posted without its CSRF token is refused and changes nothing.
    c.goto(&settings_url).await.expect("open the settings");
    c.execute("document.querySelector('form.env-add input[name=_csrf]').remove(); return true;", vec![])
        .await
        .expect("drop the token from the form");
    fill(c, "form.env-add", &[("name", "FORGED"), ("value", "forged-value-123")]).await;
    let refused = eventually("the refusal", move || async move {
        let page = html(c).await;
        (!page.contains("env-add")).then_some(page)
    })
    .await;
    assert!(refused.contains("403") && refused.contains("the form is stale"), "refused:\n{refused}");
    screenshot(c, &shots, "csrf-refused").await;
    c.goto(&settings_url).await.expect("open the settings");
    assert!(!html(c).await.contains("FORGED"), "the forged post changed nothing");
}

/// Types `fields` into the form `form` (a CSS selector) and submits it.
async fn fill(c: &Client, form: &str, fields: &[(&str, &str)]) {
    for (name, value) in fields {
        c.find(Locator::Css(&format!("{form} input[name={name}]")))
            .await
            .unwrap_or_else(|e| panic!("field {name} of {form}: {e}"))
            .send_keys(value)
            .await
            .expect("type");
    }
    c.find(Locator::Css(&format!("{form} button[type=submit]")))
        .await
        .unwrap_or_else(|e| panic!("the button of {form}: {e}"))
        .click()
        .await
        .expect("submit");
}

async fn window_mark(c: &Client) -> Option<String> {
    let mark = c.execute("return window.drydockE2eMark || null;", vec![]).await.ok()?;
    mark.as_str().map(str::to_string)
}

async fn favicon(c: &Client) -> String {
    let href = c.execute("return document.querySelector('link[rel=icon]').href;", vec![]).await.expect("the icon");
    href.as_str().unwrap_or_default().to_string()
}

/// The link of job `name`'s box in the job graph shown now.
async fn job_link(c: &Client, name: &str) -> String {
    let script =
        "const a = [...document.querySelectorAll('svg.dag a')].reverse().find(a => a.querySelector('text.name')\
                  .textContent === arguments[0]); return a ? a.getAttribute('href') : null;";
    let href = eventually("a job's link", move || async move {
        c.execute(script, vec![serde_json::json!(name)]).await.ok()?.as_str().map(str::to_string)
    })
    .await;
    href
}

/// How many `e2e-line-N` lines the page shows.
fn log_lines_shown(page: &str) -> usize {
    (1..=15).filter(|i| page.contains(&format!("e2e-line-{i}<")) || page.contains(&format!("e2e-line-{i}\n"))).count()
}

/// The `href`s and `data-log-*` URLs of a page that stay on this site, unescaped.
fn links(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "data-log-src=\"", "data-log-stream=\"", "data-events=\""] {
        for piece in page.split(attr).skip(1) {
            let raw = piece.split('"').next().unwrap_or_default();
            let link = raw.replace("&#x2F;", "/").replace("&amp;", "&").replace("&#x3D;", "=");
            if link.starts_with('/') && !link.starts_with("//") && !link.starts_with("/static/") {
                out.push(link.split('#').next().unwrap_or_default().to_string());
            }
        }
    }
    out
}

/// Fetches every dashboard page reachable from `/` (and each live stream) with the session, and the REST API's
/// responses about the project, its pipelines and every job found, with an admin token; none may contain the
/// secret's value.
fn no_response_shows_the_secret(url: &str, cookie: &str, api_token: &str) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build(),
    );
    let get = |path: &str, auth: (&str, String)| -> (u16, String) {
        let mut r = agent.get(&format!("{url}{path}")).header(auth.0, &auth.1).call().expect("a response");
        (r.status().as_u16(), r.body_mut().with_config().limit(64 << 20).read_to_string().unwrap_or_default())
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut queue = vec!["/".to_string(), format!("/projects/{SLUG_IN_PATH}/pipelines/1/events")];
    let mut jobs = std::collections::BTreeSet::new();
    while let Some(path) = queue.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        assert!(seen.len() < 400, "the crawl found more pages than one run makes: {seen:?}");
        let (status, body) = get(&path, ("cookie", cookie.to_string()));
        assert!(status < 500, "GET {path}: {status}");
        assert!(!body.contains(SECRET), "GET {path} shows the secret:\n{body}");
        if let Some(id) = path.strip_prefix("/jobs/").filter(|rest| rest.chars().all(|c| c.is_ascii_digit())) {
            jobs.insert(id.to_string());
        }
        queue.extend(links(&body).into_iter().filter(|l| !seen.contains(l)));
    }
    assert!(jobs.len() >= 3, "the crawl found the run's jobs: {seen:?}");
    let bearer = ("authorization", format!("Bearer {api_token}"));
    let mut api = vec![
        "/api/v1/projects".to_string(),
        format!("/api/v1/projects/{SLUG_IN_PATH}"),
        format!("/api/v1/projects/{SLUG_IN_PATH}/pipelines"),
        format!("/api/v1/projects/{SLUG_IN_PATH}/env-vars"),
    ];
    let (_, pipelines) = get(&api[2], bearer.clone());
    let listed: serde_json::Value = serde_json::from_str(&pipelines).unwrap_or_default();
    let ids = listed["pipelines"].as_array().cloned().unwrap_or_default();
    api.extend(ids.iter().filter_map(|p| p["id"].as_i64()).map(|id| format!("/api/v1/pipelines/{id}")));
    for job in &jobs {
        api.push(format!("/api/v1/jobs/{job}"));
        api.push(format!("/api/v1/jobs/{job}/artifacts"));
        for step in 0..4 {
            api.push(format!("/api/v1/jobs/{job}/steps/{step}/log"));
        }
    }
    let mut printed = false;
    for path in &api {
        let (status, body) = get(path, bearer.clone());
        assert!(status < 500, "GET {path}: {status}");
        assert!(!body.contains(SECRET), "GET {path} shows the secret:\n{body}");
        printed |= body.contains("deploying with");
    }
    assert!(printed, "the API served the deploy log (which printed the secret, masked): {api:?}");
    eprintln!("searched {} dashboard responses and {} API responses for the secret", seen.len(), api.len());
}
