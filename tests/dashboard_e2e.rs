//! The dashboard end to end in headless Chromium: the real `coordinator serve --with-runner` runs a busybox
//! pipeline in real containers while a browser, driven over WebDriver (chromedriver, `fantoccini`), signs in,
//! approves a hold, watches the job turn green without a reload, reads the step's log, adds a secret and checks
//! no page ever shows it again, and is refused a form posted without its CSRF token.
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

/// A hold, then a job whose one step prints two marker lines a little apart.
const CONFIG: &str = "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox}]\n    steps:\n      - run: {name: \
                      greet, command: 'echo e2e-first-line; sleep 2; echo e2e-last-line'}\nworkflows:\n  main:\n    \
                      jobs:\n      - hold: {type: approval}\n      - build: {requires: [hold]}\n";
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
async fn a_browser_signs_in_watches_a_pipeline_go_green_reads_its_log_and_never_sees_a_secret_again() {
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
    let (mut server, url) = serve_with_runner(&data, &runner_data, engine.root());

    let driver = ChromeDriver::start(&chromedriver);
    let c = browser(&driver, &chromium, &profile).await;
    let outcome = tokio::spawn(drive(c.clone(), url.clone(), shots.clone())).await;
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
async fn drive(c: Client, url: String, shots: PathBuf) {
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

    // The pipeline waits on the hold; approving it (a real form with its CSRF token) starts the build.
    c.goto(&format!("{url}/projects/{SLUG_IN_PATH}/pipelines/1")).await.expect("open the pipeline");
    let approve =
        c.wait().at_most(BOUND).for_element(Locator::Css("button.approve")).await.expect("the approve button");
    screenshot(c, &shots, "pipeline-on-hold").await;
    approve.click().await.expect("approve the hold");
    eventually(
        "the approval to land",
        move || async move { dag_status(c, "hold").await.filter(|s| s == "st-success") },
    )
    .await;
    let before = dag_status(c, "build").await;
    assert_ne!(before.as_deref(), Some("st-success"), "the build has not run yet when the page opens");

    // From here the page must not reload: a mark left in its window survives only an in-place update.
    c.execute("window.drydockE2eMark = 'kept'; return true;", vec![]).await.expect("mark the window");
    eventually("the build to turn green on the open page", move || async move {
        dag_status(c, "build").await.filter(|s| s == "st-success")
    })
    .await;
    let mark = c.execute("return window.drydockE2eMark || null;", vec![]).await.expect("read the mark");
    assert_eq!(mark, serde_json::json!("kept"), "the pipeline page updated without reloading");
    let title = c.title().await.expect("the title");
    assert!(!title.starts_with('●'), "a finished pipeline's title carries no status dot: {title}");
    screenshot(c, &shots, "pipeline-green").await;

    // The job page: unfold the step and read its log.
    let job_href = c
        .execute(
            "const a = [...document.querySelectorAll('svg.dag a')].find(a => a.querySelector('text.name').\
             textContent === 'build'); return a.getAttribute('href');",
            vec![],
        )
        .await
        .expect("the build job's link");
    let job_href = job_href.as_str().expect("a link").to_string();
    c.goto(&format!("{url}{job_href}")).await.expect("open the job");
    let summary = eventually("the greet step", move || async move {
        let steps = c.find_all(Locator::Css("details.step")).await.ok()?;
        for step in steps {
            let summary = step.find(Locator::Css("summary")).await.ok()?;
            if summary.text().await.ok()?.contains("greet") {
                return Some(summary);
            }
        }
        None
    })
    .await;
    let step_count = c.find_all(Locator::Css("details.step")).await.expect("the steps").len();
    summary.click().await.expect("unfold the step");
    eventually("the step's log", move || async move {
        let page = html(c).await;
        (page.contains("e2e-first-line") && page.contains("e2e-last-line")).then_some(())
    })
    .await;
    screenshot(c, &shots, "job-log").await;

    // A secret added on the settings page shows only as its hint, on every page.
    let settings_url = format!("{url}/projects/{SLUG_IN_PATH}/settings");
    c.goto(&settings_url).await.expect("open the settings");
    c.find(Locator::Css("form.env-add input[name=name]"))
        .await
        .expect("name")
        .send_keys("DEPLOY_TOKEN")
        .await
        .expect("type");
    c.find(Locator::Css("form.env-add input[name=value]")).await.expect("value").send_keys(SECRET).await.expect("type");
    c.find(Locator::Css("form.env-add button[type=submit]"))
        .await
        .expect("add")
        .click()
        .await
        .expect("add the variable");
    let settings = eventually("the variable in the list", move || async move {
        let page = html(c).await;
        page.contains("DEPLOY_TOKEN").then_some(page)
    })
    .await;
    assert!(settings.contains("xxxx7777"), "the hint shows the last four characters:\n{settings}");
    screenshot(c, &shots, "settings").await;
    let mut pages = vec![
        "/".to_string(),
        format!("/projects/{SLUG_IN_PATH}"),
        format!("/projects/{SLUG_IN_PATH}/pipelines/1"),
        format!("/projects/{SLUG_IN_PATH}/settings"),
        job_href.clone(),
        "/runners".to_string(),
    ];
    for step in 0..step_count {
        pages.push(format!("{job_href}/steps/{step}/log"));
    }
    for path in &pages {
        c.goto(&format!("{url}{path}")).await.expect("open a page");
        let page = html(c).await;
        assert!(!page.contains(SECRET), "{path} shows the secret value:\n{page}");
        assert!(!page.contains("Not Found") && page.contains("Drydock"), "{path} is a dashboard page:\n{page}");
    }

    // A form posted without its CSRF token is refused and changes nothing.
    c.goto(&settings_url).await.expect("open the settings");
    c.execute("document.querySelector('form.env-add input[name=_csrf]').remove(); return true;", vec![])
        .await
        .expect("drop the token from the form");
    c.find(Locator::Css("form.env-add input[name=name]")).await.expect("name").send_keys("FORGED").await.expect("type");
    c.find(Locator::Css("form.env-add input[name=value]"))
        .await
        .expect("value")
        .send_keys("forged-value-123")
        .await
        .expect("type");
    c.find(Locator::Css("form.env-add button[type=submit]")).await.expect("add").click().await.expect("post the form");
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
