//! Serves the dashboard over the test fixture on 127.0.0.1, to look at the pages without a coordinator:
//! `cargo run -p web --example demo -- 127.0.0.1:8088`, then sign in as `alice` with the fixture's password
//! (`correct horse battery staple`). Fixture data only: nothing is stored.

use anyhow::Context;

#[path = "../tests/dashboard/fixture.rs"]
#[expect(dead_code, reason = "the tests use the fixture's inspection helpers, the demo does not")]
mod fixture;

fn main() -> anyhow::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8088".to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&address).await.with_context(|| format!("binding {address}"))?;
        eprintln!("dashboard demo on http://{address}/ — sign in as alice / {}", fixture::PASSWORD);
        axum::serve(listener, web::router(fixture::Fixture::new())).await.context("serving the dashboard")
    })
}
