//! One integration-test binary for all of Drydock, a module per area (ripgrep's layout): each test drives the
//! real binaries through the small DSL in `util.rs`.

mod agent;
mod api;
mod build;
mod client;
mod compose;
mod config;
mod containers;
mod coordinator;
mod dashboard_e2e;
mod embedded;
mod flow;
mod git_http;
mod images;
mod networks;
mod registry;
mod runner_exec;
mod terminal;
mod util;
mod volumes;
