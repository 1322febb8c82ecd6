//! The dashboard driven through its router (`tower::ServiceExt::oneshot`) over the in-memory fixture: page
//! snapshots, sign-in, CSRF on every POST, no secret in any page, escaping of hostile data, the log tail.

mod fixture;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use fixture::*;
use tower::ServiceExt;

fn app() -> (Fixture, Router) {
    let fixture = Fixture::new();
    (fixture.clone(), web::router(fixture))
}

async fn send(router: &Router, request: Request<Body>) -> Response<Body> {
    router.clone().oneshot(request).await.expect("the router answers")
}

fn session_cookie() -> String {
    format!("{}={TOKEN}", web::auth::SESSION_COOKIE)
}

async fn get(router: &Router, path: &str) -> Response<Body> {
    let request = Request::get(path).header(header::COOKIE, session_cookie()).body(Body::empty()).unwrap();
    send(router, request).await
}

async fn post(router: &Router, path: &str, form: &str) -> Response<Body> {
    let request = Request::post(path)
        .header(header::COOKIE, session_cookie())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .unwrap();
    send(router, request).await
}

async fn text(response: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20).await.expect("a body");
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

async fn page(router: &Router, path: &str) -> String {
    let response = get(router, path).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    text(response).await
}

fn location(response: &Response<Body>) -> &str {
    response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Every page a signed-in person can open in the fixture.
const PAGES: &[&str] = &[
    "/",
    "/projects/acme-app",
    "/projects/acme-app?page=2",
    "/projects/tools",
    "/projects/acme-app/pipelines/42",
    "/projects/acme-app/pipelines/41",
    "/projects/acme-app/pipelines/40",
    "/jobs/job-big",
    "/jobs/job-lint",
    "/jobs/job-big/steps/0/log",
    "/jobs/job-big/steps/1/log",
    "/jobs/job-big/steps/1/log?end=500000&fragment=1",
    "/jobs/job-lint/steps/0/log",
    "/projects/acme-app/settings",
    "/runners",
];

/// Every POST route, with a valid form but for the CSRF token.
const POSTS: &[(&str, &str)] = &[
    ("/sign-out", ""),
    ("/projects/acme-app/pipelines/42/workflows/wf-main/cancel", ""),
    ("/projects/acme-app/pipelines/41/workflows/wf-failed/rerun", ""),
    ("/projects/acme-app/pipelines/41/workflows/wf-failed/rerun-failed", ""),
    ("/projects/acme-app/pipelines/42/jobs/job-hold/approve", ""),
    ("/projects/acme-app/settings/env", "name=NEW_VAR&value=new-secret-value-1234"),
    ("/projects/acme-app/settings/env/delete", "name=GITHUB_TOKEN"),
    ("/projects/acme-app/settings/options", "max_concurrent_jobs=2"),
    ("/projects/acme-app/settings/schedules", "cron=0+4+*+*+1&branch=release&workflow=deploy&name=weekly"),
    ("/projects/acme-app/settings/schedules/delete", "name=nightly"),
];

#[tokio::test]
async fn page_snapshots() {
    let (_, router) = app();
    for (name, path) in [
        ("projects", "/"),
        ("project", "/projects/acme-app"),
        ("project_page_2", "/projects/acme-app?page=2"),
        (
            "project_filtered_by_hostile_branch",
            "/projects/acme-app?branch=feat%2F%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
        ),
        ("project_without_pipelines", "/projects/tools"),
        ("pipeline_running", "/projects/acme-app/pipelines/42"),
        ("pipeline_failed_pull_request", "/projects/acme-app/pipelines/41"),
        ("pipeline_config_error", "/projects/acme-app/pipelines/40"),
        ("job_failed", "/jobs/job-lint"),
        ("job_log_page", "/jobs/job-lint/steps/0/log"),
        ("settings", "/projects/acme-app/settings"),
        ("runners", "/runners"),
    ] {
        insta::assert_snapshot!(name, page(&router, path).await);
    }
    let missing = get(&router, "/projects/nope").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    insta::assert_snapshot!("not_found", text(missing).await);
    // What a viewer sees: the same pages without the forms.
    for (name, path) in [
        ("settings_as_viewer", "/projects/acme-app/settings"),
        ("pipeline_running_as_viewer", "/projects/acme-app/pipelines/42"),
    ] {
        let response = viewer_request(&router, Request::get(path), String::new()).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        insta::assert_snapshot!(name, text(response).await);
    }
}

/// Issue 8: a failed fetch of the repository shows on the project's page, with its time, escaped; a project
/// without one shows no notice.
#[tokio::test]
async fn a_project_page_shows_the_latest_fetch_error() {
    let (_, router) = app();
    let tools = page(&router, "/projects/tools").await;
    assert!(tools.contains("Cannot fetch the repository"), "{tools}");
    assert!(tools.contains("2025-11-24 16:00:00 UTC"), "the error's time: {tools}");
    assert!(
        tools.contains("timed out (connect timeout 10000 ms, read timeout 60000 ms): &lt;b&gt;stalled&lt;&#x2F;b&gt;"),
        "{tools}"
    );
    assert!(!tools.contains("<b>stalled"), "markup in the message is escaped");
    let app_page = page(&router, "/projects/acme-app").await;
    assert!(!app_page.contains("fetch-error") && !app_page.contains("Cannot fetch"), "no notice without an error");
}

#[tokio::test]
async fn sign_in_page_snapshot() {
    let (_, router) = app();
    let response = send(&router, Request::get("/sign-in?next=/runners").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = sign_in_token(&response);
    insta::assert_snapshot!("sign_in", text(response).await.replace(&token, "[token]"));
}

fn sign_in_token(response: &Response<Body>) -> String {
    let cookie = response.headers().get(header::SET_COOKIE).expect("a sign-in cookie").to_str().unwrap();
    let value = cookie.strip_prefix("drydock_signin=").expect("the sign-in cookie");
    value.split(';').next().unwrap().to_string()
}

async fn sign_in(router: &Router, password: &str, forwarded_proto: Option<&str>) -> Response<Body> {
    sign_in_to(router, password, forwarded_proto, "/runners").await
}

async fn sign_in_to(router: &Router, password: &str, forwarded_proto: Option<&str>, next: &str) -> Response<Body> {
    let form_page = send(router, Request::get("/sign-in").body(Body::empty()).unwrap()).await;
    let token = sign_in_token(&form_page);
    let body = serde_urlencoded::to_string([
        ("username", "alice"),
        ("password", password),
        ("_csrf", token.as_str()),
        ("next", next),
    ])
    .unwrap();
    let mut request = Request::post("/sign-in")
        .header(header::COOKIE, format!("drydock_signin={token}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(proto) = forwarded_proto {
        request = request.header("x-forwarded-proto", proto);
    }
    send(router, request.body(Body::from(body)).unwrap()).await
}

#[tokio::test]
async fn signing_in_starts_a_session_with_strict_cookies_and_signing_out_ends_it() {
    let (fixture, router) = app();
    let sessions_before = fixture.session_count();
    let response = sign_in(&router, PASSWORD, Some("https")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/runners");
    let cookies: Vec<&str> =
        response.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
    let session = cookies.iter().find(|c| c.starts_with("drydock_session=")).expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(session.contains(flag), "{session} lacks {flag}");
    }
    assert_eq!(fixture.session_count(), sessions_before + 1);
    let token = session.strip_prefix("drydock_session=").unwrap().split(';').next().unwrap();
    assert_eq!(token.len(), 64);

    let runners = Request::get("/runners").header(header::COOKIE, format!("drydock_session={token}"));
    let page = send(&router, runners.body(Body::empty()).unwrap()).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = text(page).await;
    let csrf_at = html.find("name=\"_csrf\" value=\"").expect("the sign-out form's token") + 20;
    let csrf = &html[csrf_at..csrf_at + 64];

    let sign_out = Request::post("/sign-out")
        .header(header::COOKIE, format!("drydock_session={token}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("_csrf={csrf}")))
        .unwrap();
    let response = send(&router, sign_out).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(fixture.session_count(), sessions_before);
    let again = Request::get("/runners").header(header::COOKIE, format!("drydock_session={token}"));
    let response = send(&router, again.body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "the session ended");
}

#[tokio::test]
async fn cookies_are_not_secure_over_plain_http_and_a_wrong_password_is_refused() {
    let (fixture, router) = app();
    let response = sign_in(&router, PASSWORD, None).await;
    let session = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("drydock_session="));
    assert!(!session.expect("a session cookie").contains("Secure"));

    let before = fixture.session_count();
    let response = sign_in(&router, "wrong password!", None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(text(response).await.contains("wrong user name or password"));
    assert_eq!(fixture.session_count(), before);
}

#[tokio::test]
async fn too_many_wrong_passwords_lock_the_name_out_for_a_while() {
    let (fixture, router) = app();
    for _ in 0..web::throttle::MAX_FAILURES {
        assert_eq!(sign_in(&router, "not the password", None).await.status(), StatusCode::UNAUTHORIZED);
    }
    let before = fixture.session_count();
    let response = sign_in(&router, PASSWORD, None).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(text(response)
        .await
        .contains("too many wrong passwords for this user: try again after 2026-11-18 11:16:40 UTC"));
    assert_eq!(fixture.session_count(), before, "not even the right password signs in");
}

#[tokio::test]
async fn sign_in_never_redirects_off_the_site() {
    let (_, router) = app();
    for next in ["//evil.example/x", "https://evil.example", "/\\evil.example", "javascript:alert(1)"] {
        let response = sign_in_to(&router, PASSWORD, None, next).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), "/", "next={next}");
    }
}

#[tokio::test]
async fn unauthenticated_requests_go_to_sign_in() {
    let (_, router) = app();
    for path in
        PAGES.iter().copied().chain(["/jobs/job-big/steps/1/log/stream", "/jobs/job-big/artifacts/coverage/index.html"])
    {
        for cookie in [
            None,
            Some("drydock_session=00".to_string()),
            Some(format!("drydock_session={}", "ab".repeat(32))),
            Some(format!("drydock_session={EXPIRED_TOKEN}")),
        ] {
            let mut request = Request::get(path);
            if let Some(cookie) = &cookie {
                request = request.header(header::COOKIE, cookie);
            }
            let response = send(&router, request.body(Body::empty()).unwrap()).await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "GET {path} with {cookie:?}");
            let to = location(&response);
            assert!(to.starts_with("/sign-in?next=%2F"), "GET {path} went to {to}");
        }
    }
    for (path, form) in POSTS {
        let request = Request::post(*path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("{form}&_csrf={CSRF}")))
            .unwrap();
        assert_eq!(send(&router, request).await.status(), StatusCode::FORBIDDEN, "POST {path} without a session");
    }
}

#[tokio::test]
async fn every_post_needs_the_session_csrf_token() {
    let (fixture, router) = app();
    let wrong = "c5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rfc5rX";
    for (path, form) in POSTS {
        for body in [
            form.to_string(),
            format!("{form}&_csrf="),
            format!("{form}&_csrf={wrong}"),
            format!("{form}&_csrf={CSRF}&_csrf={CSRF}"),
        ] {
            let response = post(&router, path, &body).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "POST {path} with {body:?}");
        }
    }
    assert!(fixture.actions().is_empty(), "nothing happened: {:?}", fixture.actions());
    // The sign-in form: its double-submit token.
    let request = Request::post("/sign-in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, "drydock_signin=abc")
        .body(Body::from(format!("username=alice&password={PASSWORD}&_csrf=abd")))
        .unwrap();
    assert_eq!(send(&router, request).await.status(), StatusCode::FORBIDDEN);

    for (path, form) in POSTS.iter().rev() {
        let response = post(&router, path, &format!("{form}&_csrf={CSRF}")).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "POST {path} with the token");
    }
    assert_eq!(
        fixture.actions(),
        [
            "unschedule nightly by alice",
            "schedule weekly by alice",
            "options ProjectOptions { max_concurrent_jobs: Some(2), auto_cancel_redundant: false } by alice",
            "delete GITHUB_TOKEN by alice",
            "set NEW_VAR by alice",
            "approve job-hold by alice",
            "rerun FailedJobs wf-failed by alice",
            "rerun Workflow wf-failed by alice",
            "cancel wf-main by alice",
        ]
    );
    assert_eq!(fixture.env_value("NEW_VAR").as_deref(), Some("new-secret-value-1234"));
}

#[tokio::test]
async fn bad_form_fields_are_named() {
    let (_, router) = app();
    let response = post(&router, "/projects/acme-app/settings/env", &format!("name=1BAD&value=x&_csrf={CSRF}")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(text(response).await.contains("field name"));
    let response =
        post(&router, "/projects/acme-app/settings/options", &format!("max_concurrent_jobs=zero&_csrf={CSRF}")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(text(response).await.contains("max_concurrent_jobs"));
    let response =
        post(&router, "/projects/acme-app/pipelines/42/jobs/job-big/approve", &format!("_csrf={CSRF}")).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(text(response).await.contains("not waiting for approval"));
    for (form, field) in [("cron=&branch=main", "field cron"), ("cron=0+3+*+*+*&branch=+", "field branch")] {
        let response = post(&router, "/projects/acme-app/settings/schedules", &format!("{form}&_csrf={CSRF}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{form}");
        assert!(text(response).await.contains(field), "{form}");
    }
    // The data side's refusal of a cron is a 400 with its message.
    let response =
        post(&router, "/projects/acme-app/settings/schedules", &format!("cron=0+3&branch=main&_csrf={CSRF}")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(text(response).await.contains("field cron: `0 3` is not 5 fields"));
    let response =
        post(&router, "/projects/acme-app/settings/schedules/delete", &format!("name=nope&_csrf={CSRF}")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

async fn viewer_request(router: &Router, request: axum::http::request::Builder, body: String) -> Response<Body> {
    let request = request
        .header(header::COOKIE, format!("{}={VIEWER_TOKEN}", web::auth::SESSION_COOKIE))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    send(router, request).await
}

#[tokio::test]
async fn a_viewer_sees_every_page_without_forms_and_every_change_is_refused() {
    let (fixture, router) = app();
    for path in PAGES {
        let response = viewer_request(&router, Request::get(*path), String::new()).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path} as a viewer");
        let body = text(response).await;
        for form in body.match_indices("<form").map(|(at, _)| &body[at..]) {
            let tag = form.split('>').next().unwrap_or_default();
            let posts = tag.contains("method=\"post\"");
            assert!(!posts || tag.contains("action=\"/sign-out\""), "{path} shows a viewer a form that posts: {tag}");
        }
    }
    let settings =
        text(viewer_request(&router, Request::get("/projects/acme-app/settings"), String::new()).await).await;
    assert!(settings.contains("Jobs at once: 4.") && settings.contains("nightly"), "{settings}");
    for (path, form) in POSTS.iter().filter(|(path, _)| *path != "/sign-out") {
        let response = viewer_request(&router, Request::post(*path), format!("{form}&_csrf={VIEWER_CSRF}")).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "POST {path} as a viewer");
        assert!(text(response).await.contains("is a viewer and cannot change anything"), "{path}");
    }
    assert!(fixture.actions().is_empty(), "a viewer changed something: {:?}", fixture.actions());
    // Signing out is the one POST a viewer may make.
    let response = viewer_request(&router, Request::post("/sign-out"), format!("_csrf={VIEWER_CSRF}")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn no_page_or_stream_ever_contains_a_secret_value() {
    let (_, router) = app();
    // Set one more through the form, as a person would; it must not come back either.
    let response = post(
        &router,
        "/projects/acme-app/settings/env",
        &format!("name=NEW_TOKEN&value=typed-in-secret-7777&_csrf={CSRF}"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let mut bodies = Vec::new();
    for path in PAGES.iter().copied().chain(["/jobs/job-big/steps/1/log/stream?from=0", "/sign-in", "/projects/nope"]) {
        bodies.push((path, text(get(&router, path).await).await));
    }
    for (path, body) in &bodies {
        for secret in SECRETS.iter().chain(&["typed-in-secret-7777"]) {
            assert!(!body.contains(secret), "{path} shows the secret {secret}");
        }
    }
    let settings = &bodies.iter().find(|(p, _)| *p == "/projects/acme-app/settings").unwrap().1;
    assert!(settings.contains("xxxx9876") && settings.contains("xxxx0042") && settings.contains("xxxx7777"));
    let project = &bodies.iter().find(|(p, _)| *p == "/projects/acme-app").unwrap().1;
    assert!(project.contains("xxxx5555"), "the webhook secret's hint");
}

#[tokio::test]
async fn hostile_commit_messages_branch_names_and_log_lines_are_escaped() {
    let (_, router) = app();
    let mut bodies = Vec::new();
    for path in PAGES.iter().copied().chain(["/jobs/job-big/steps/1/log/stream"]) {
        bodies.push((path, text(get(&router, path).await).await));
    }
    for (path, body) in &bodies {
        for raw in ["<script>alert", "<img src=x", "<script>document", "<b>division"] {
            assert!(!body.contains(raw), "{path} has unescaped {raw:?}");
        }
    }
    let pipeline = &bodies[4].1;
    assert!(
        pipeline.contains("fix: &lt;script&gt;alert(&quot;pwned&quot;)&lt;&#x2F;script&gt; &amp; &quot;quotes&quot;")
    );
    let projects = &bodies[0].1;
    assert!(projects.contains("feat&#x2F;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(projects.contains("?branch=feat%2F%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"));
    let job = &bodies[7].1;
    assert!(job.contains("&lt;script&gt;document.location=&#x27;&#x2F;&#x2F;evil&#x27;&lt;&#x2F;script&gt;"));
    assert!(job.contains("divides &lt;by&gt; zero"));
}

#[tokio::test]
async fn a_100000_line_log_opens_on_its_tail_and_pages_backwards() {
    let (_, router) = app();
    let html = page(&router, "/jobs/job-big").await;
    let lines = html.matches("<span class=\"line\">").count();
    assert_eq!(lines, web::log_view::PAGE_LINES, "only the tail page is rendered");
    assert!(html.contains("line 100000: failure marker"));
    assert!(html.contains("line 99002: ok"));
    assert!(!html.contains("line 99001: ok"), "the page holds the last 1000 lines, no more");
    assert!(!html.contains("line 1: ok"));
    assert!(html.len() < 200 * 1024, "page weight {} bytes", html.len());
    // The failure markers keep their colour.
    assert!(html.contains("<span class=\"fg-1 bold\">line 100000: failure marker</span>"));
    // The live tail continues where the page ends.
    let stream_at = html.find("data-log-stream=\"").expect("a live stream for the running step");
    assert!(html[stream_at..].starts_with("data-log-stream=\"/jobs/job-big/steps/1/log/stream?from="));

    // Paging backwards: the earlier page ends where this one starts, with no line lost or repeated.
    let link_at = html.find("data-log-earlier href=\"").expect("an earlier-output link") + 23;
    let href = html[link_at..].split('"').next().unwrap().to_string();
    let earlier = page(&router, &format!("{href}&fragment=1")).await;
    assert_eq!(earlier.matches("<span class=\"line\">").count(), web::log_view::PAGE_LINES);
    assert!(earlier.contains("line 99001: ok"));
    assert!(earlier.contains("line 98002: ok"));
    assert!(!earlier.contains("line 99002: ok"));
    assert!(!earlier.contains("<html"), "a fragment has no layout");
}

#[tokio::test]
async fn the_live_log_streams_rendered_lines_then_ends() {
    let (_, router) = app();
    // The stream the job page opens, from the end of the tail it rendered.
    let html = page(&router, "/jobs/job-big").await;
    let at = html.find("data-log-stream=\"").expect("a live stream") + 17;
    let url = html[at..].split('"').next().unwrap().to_string();
    let response = get(&router, &url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    let body = text(response).await;
    assert!(body.contains("event: log\n"), "{body}");
    assert!(body.contains("data: <span class=\"line\">live <span class=\"fg-3\">line</span></span>\n"), "{body}");
    // The next chunk goes on with the open line, still yellow.
    assert!(body.contains("data: <span class=\"line cont\"><span class=\"fg-3\"> one</span></span>\n"), "{body}");
    assert!(body.contains("&lt;script&gt;"));
    assert!(body.ends_with("event: end\ndata: done\n\n"), "{body}");
    assert!(!body.contains("data: \n"), "no empty data lines: {body}");
}

#[tokio::test]
async fn the_running_pipeline_page_follows_its_events() {
    let (_, router) = app();
    let html = page(&router, "/projects/acme-app/pipelines/42").await;
    let at = html.find("data-events=\"").expect("a running pipeline listens") + 13;
    let url = html[at..].split('"').next().unwrap().replace("&#x2F;", "/");
    assert_eq!(url, "/projects/acme-app/pipelines/42/events");
    assert!(!page(&router, "/projects/acme-app/pipelines/41").await.contains("data-events"), "a finished one does not");
    let response = get(&router, &url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    let body = text(response).await;
    let data = body.strip_prefix("event: update\ndata: ").expect("an update first").split('\n').next().unwrap();
    let update: serde_json::Value = serde_json::from_str(data).expect("JSON");
    assert_eq!(update["favicon"], "running");
    assert!(update["title"].as_str().unwrap().starts_with("● running — acme/app #42"), "{update}");
    let content = update["html"].as_str().unwrap();
    // The page's content, as rendered on the page (escaped), with its buttons and graph.
    assert!(content.contains("<svg") && content.contains("Approve hold-deploy"), "{content}");
    assert!(content.contains("&lt;script&gt;") && !content.contains("<script>"), "{content}");
    assert!(html.contains(content.trim()), "the update is the page's own content");
    assert!(body.ends_with("event: end\ndata: done\n\n"), "{body}");
    for secret in SECRETS {
        assert!(!body.contains(secret));
    }
    let missing = get(&router, "/projects/acme-app/pipelines/999/events").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pages_carry_the_security_headers_and_status_titles() {
    let (_, router) = app();
    for path in ["/", "/sign-in", "/projects/acme-app/pipelines/42", "/projects/nope"] {
        let response = get(&router, path).await;
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], web::security::CONTENT_SECURITY_POLICY, "{path}");
        assert!(web::security::CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        assert!(!web::security::CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{path}");
        let html = text(response).await;
        assert!(!html.contains("<script>") && !html.contains(" style="), "{path} has inline script or style");
    }
    let running = page(&router, "/projects/acme-app/pipelines/42").await;
    assert!(running.contains("<title>● running — acme&#x2F;app #42 — Drydock</title>"));
    assert!(running.contains("href=\"/static/favicon-running.svg\""));
    let failed = page(&router, "/jobs/job-lint").await;
    assert!(failed.contains("<title>● failed — lint — acme&#x2F;app #42 — Drydock</title>"));
    assert!(failed.contains("favicon-failed.svg"));

    let css = send(&router, Request::get("/static/dashboard.css").body(Body::empty()).unwrap()).await;
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(css.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
    let js = send(&router, Request::get("/static/dashboard.js").body(Body::empty()).unwrap()).await;
    assert!(text(js).await.contains("EventSource"));
}

#[tokio::test]
async fn artifacts_download_as_attachments_never_as_pages() {
    let (_, router) = app();
    let response = get(&router, "/jobs/job-big/artifacts/coverage/index.html").await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    assert_eq!(headers[header::CONTENT_DISPOSITION], "attachment; filename=\"index.html\"");
    assert_eq!(headers[header::CONTENT_SECURITY_POLICY], "sandbox");
    assert_eq!(text(response).await, "<html>coverage/index.html</html>");
    let spaced = get(&router, "/jobs/job-big/artifacts/reports/a%20b.txt").await;
    assert_eq!(spaced.status(), StatusCode::OK);
    assert_eq!(get(&router, "/jobs/job-big/artifacts/../x").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(get(&router, "/jobs/job-big/artifacts/nope").await.status(), StatusCode::NOT_FOUND);
}
