//! Criterion benchmark of the dashboard's server time per page, through the router over the test fixture (so it
//! measures the web crate: reading through the trait, building views, rendering; not the coordinator's
//! database). The budgets: job page with a 100,000-line log — first byte ≤ 100 ms, page weight ≤ 200 KB;
//! pipeline list and job pages p99 ≤ 20 ms. Prints each page's weight first. Run:
//! `cargo bench -p web --bench pages`. The database side (100,000 jobs) is the coordinator's to measure: these
//! pages ask the trait for one page of rows.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use tower::ServiceExt;

#[path = "../tests/dashboard/fixture.rs"]
#[expect(dead_code, reason = "the tests use the fixture's inspection helpers, the benchmark does not")]
mod fixture;

async fn get(router: &Router, path: &str) -> usize {
    let request = Request::get(path)
        .header(header::COOKIE, format!("{}={}", web::auth::SESSION_COOKIE, fixture::TOKEN))
        .body(Body::empty())
        .expect("a request");
    let response = router.clone().oneshot(request).await.expect("the router answers");
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    axum::body::to_bytes(response.into_body(), 64 << 20).await.expect("a body").len()
}

fn pages(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a tokio runtime");
    let router = web::router(fixture::Fixture::new());
    let paths = [
        ("job page, 100,000-line log (tail)", "/jobs/job-big"),
        ("log page before the tail", "/jobs/job-big/steps/1/log?end=1400000"),
        ("pipeline list (25 per page)", "/projects/acme-app"),
        ("pipeline with its job graph", "/projects/acme-app/pipelines/42"),
        ("projects", "/"),
    ];
    for (name, path) in paths {
        let bytes = runtime.block_on(get(&router, path));
        println!("{name}: {path} weighs {bytes} bytes ({:.1} KB)", bytes as f64 / 1024.0);
    }
    let mut group = c.benchmark_group("dashboard");
    group.sample_size(50);
    for (name, path) in paths {
        group.bench_function(name, |b| b.iter(|| runtime.block_on(get(&router, path))));
    }
    group.finish();
}

criterion_group!(benches, pages);
criterion_main!(benches);
