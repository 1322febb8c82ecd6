//! Git access to private GitHub repositories over https: the coordinator's mirrors fetch with it
//! ([`crate::repo::Mirror::with_access_token`]) and each job's assignment carries it as `checkout.credential`, which
//! the runner uses as the basic-auth password with user `x-access-token` — GitHub's convention for both a personal
//! access token and a GitHub App installation token.
//!
//! Which token: the one commit statuses use (`serve --github-token`, a personal access token), or a GitHub App
//! installation's token, fetched and renewed by the status client ([`StatusClient::installation_token`]), when
//! the coordinator is given an App ([`GitAccess::App`]).
//!
//! Which repositories get it ([`GitAccess::applies_to`]): GitHub projects (not `--local` ones) whose clone URL is
//! `https://…` — or `http://` on a loopback host, which tests use (libgit2 treats http and https alike); never
//! plain http over a network, where the token would travel in clear. A forked pull request's job gets no
//! credential unless the project gives forks its secrets (`--fork-secrets`): its code is not the project's.

use std::sync::Arc;

use super::status::{StatusClient, StatusError};
use crate::store::projects::Project;

/// The credential git over https uses for GitHub projects.
#[derive(Clone)]
pub enum GitAccess {
    /// A personal access token.
    Token(Arc<str>),
    /// A GitHub App installation: its token is short-lived, so it is asked for each time (the client caches it).
    App(Arc<StatusClient>),
}

impl std::fmt::Debug for GitAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitAccess::Token(_) => f.write_str("GitAccess::Token(…)"),
            GitAccess::App(_) => f.write_str("GitAccess::App(…)"),
        }
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
#[error("cannot get a GitHub App installation token for git: {0}")]
pub struct AccessError(#[from] StatusError);

impl GitAccess {
    /// The token to present now.
    pub async fn token(&self) -> Result<String, AccessError> {
        match self {
            GitAccess::Token(token) => Ok(token.to_string()),
            GitAccess::App(client) => Ok(client.installation_token().await?),
        }
    }

    /// Whether git access to `project`'s repository uses the token (see the module doc).
    pub fn applies_to(project: &Project) -> bool {
        project.local_path.is_none() && sends_token_to(&project.clone_url)
    }

    /// The token for `project`, when it applies (see [`GitAccess::applies_to`]).
    pub async fn token_for(access: Option<&GitAccess>, project: &Project) -> Result<Option<String>, AccessError> {
        match access {
            Some(access) if GitAccess::applies_to(project) => Ok(Some(access.token().await?)),
            _ => Ok(None),
        }
    }
}

/// `https://…`, or `http://` to a loopback host.
fn sends_token_to(url: &str) -> bool {
    let url = url.trim();
    if url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")) {
        return true;
    }
    let Some(rest) = url.get(..7).filter(|s| s.eq_ignore_ascii_case("http://")).map(|_| &url[7..]) else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_to_https_and_loopback_http_only() {
        for url in [
            "https://github.com/acme/app.git",
            "HTTPS://ghe.example.com/a/b",
            "http://127.0.0.1:4000/a.git",
            "http://localhost/a",
            "http://[::1]:80/a",
            "http://user@127.0.0.1/a",
        ] {
            assert!(sends_token_to(url), "{url}");
        }
        for url in [
            "http://github.com/acme/app.git",
            "http://127.0.0.1.evil.example/a",
            "git@github.com:a/b.git",
            "/srv/git/app",
            "file:///srv/git/app",
            "http://localhost.example/a",
            "",
        ] {
            assert!(!sends_token_to(url), "{url}");
        }
    }

    use crate::api::AppState;
    use crate::git_http_server::GitHttpServer;
    use crate::pipeline::{self, TriggerRequest};
    use crate::store::testing;

    const CONFIG: &str = "version: 2.1\njobs:\n  build: {docker: [{image: busybox}], steps: [{run: 'true'}]}\n\
                          workflows:\n  main:\n    jobs: [build]\n";

    /// A private repository behind a git smart-HTTP server that wants Basic auth (`x-access-token` and the
    /// token): without a token, or with a wrong one, creating a pipeline fails at once with an error naming the
    /// project and the URL (a webhook's delivery records it); with the right one the mirror fetches and the
    /// pipeline runs, and its job's assignment carries the token as `checkout.credential` — but not a forked pull
    /// request's job, nor a local project's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_private_repository_is_fetched_with_the_token_and_refused_without_it() {
        for db in testing::databases().await {
            let name = db.name;
            let work = db.dir.path().join("work");
            let sha = crate::api::webhooks::tests::repository(&work, CONFIG);
            let root = db.dir.path().join("served");
            std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
            let cloned = std::process::Command::new("git")
                .args(["clone", "--quiet", "--bare"])
                .arg(&work)
                .arg(root.join("app.git"))
                .status()
                .unwrap_or_else(|e| panic!("git clone: {e}"));
            assert!(cloned.success(), "git clone --bare");
            let server = GitHttpServer::start(root, "ghs_right").await;
            let url = server.url("app.git");
            let secret = "webhook secret";
            let (key, project) = db.github_project(url.clone(), None, secret).await;
            let mut state = AppState::new(db.store.clone(), db.dir.path().join("data"), key);
            let right = GitAccess::Token("ghs_right".into());
            let wrong = GitAccess::Token("ghs_wrong".into());
            let req = TriggerRequest { source: "api".into(), branch: Some("main".into()), ..Default::default() };
            let attempt = |access: Option<GitAccess>| {
                let (store, data, project, req) =
                    (db.store.clone(), state.data_dir.clone(), project.clone(), req.clone());
                async move {
                    let create = pipeline::create_with_access(&store, &data, access.as_ref(), &project, &req);
                    // A hang is a failure too: the deadline is far beyond a refused fetch on loopback.
                    tokio::time::timeout(std::time::Duration::from_secs(120), create)
                        .await
                        .unwrap_or_else(|_| panic!("creating the pipeline hung"))
                }
            };

            // No token: refused, and the error says what to give.
            let error = attempt(None).await.err().map(|e| pipeline::error_chain(&e)).unwrap_or_default();
            assert!(
                error.contains("octocat/Hello-World") && error.contains(&url) && error.contains("asks for credentials"),
                "{name}: {error}"
            );
            // A wrong token: offered once, refused, no loop.
            let refused_before = server.refused.load(std::sync::atomic::Ordering::SeqCst);
            let error = attempt(Some(wrong.clone())).await.err().map(|e| pipeline::error_chain(&e)).unwrap_or_default();
            assert!(
                error.contains("octocat/Hello-World")
                    && error.contains(&url)
                    && error.contains("refused the access token"),
                "{name}: {error}"
            );
            let refused = server.refused.load(std::sync::atomic::Ordering::SeqCst) - refused_before;
            assert!((1..=2).contains(&refused), "{name}: the wrong token was refused {refused} times");

            // A webhook's delivery with the wrong token: recorded with that error, no pipeline.
            state.git_access = Some(wrong);
            let fixture = include_str!("../../tests/fixtures/github/push-branch.json");
            let mut payload: serde_json::Value = serde_json::from_str(fixture).unwrap_or_else(|e| panic!("{e}"));
            payload["ref"] = "refs/heads/main".into();
            payload["after"] = sha.clone().into();
            let body = payload.to_string().into_bytes();
            assert!(db.store.record_delivery("private-1", "push", &body).await.unwrap_or_else(|e| panic!("{e}")));
            assert_eq!(crate::api::webhooks::process_pending(&state).await.ok(), Some(1), "{name}");
            let outcome: String =
                sqlx::query_scalar("SELECT outcome FROM webhook_deliveries WHERE delivery_id = 'private-1'")
                    .fetch_one(db.store.pool())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                outcome.starts_with("error: ") && outcome.contains("refused the access token"),
                "{name}: {outcome}"
            );
            assert!(db.store.pipelines(project.id, 10).await.unwrap_or_default().is_empty(), "{name}");

            // The right token: fetched, pipeline created, and the runner is handed the token to clone with.
            state.git_access = Some(right.clone());
            let created =
                attempt(Some(right)).await.unwrap_or_else(|e| panic!("{name}: {}", pipeline::error_chain(&e)));
            assert_eq!((created.config_error.as_deref(), created.queued_jobs), (None, 1), "{name}");
            let job = db.store.pipeline_jobs(created.pipeline_id).await.unwrap_or_default().remove(0);
            let a = crate::api::runners::assignment(&state, &job).await.unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(
                (a.checkout.repository_url.as_str(), a.checkout.revision.as_str(), a.checkout.credential.as_deref()),
                (url.as_str(), sha.as_str(), Some("ghs_right")),
                "{name}"
            );

            // A fork's pull request gets no credential (the project does not give forks its secrets).
            let fork = crate::store::pipelines::PipelineTrigger {
                source: "webhook".into(),
                branch: Some("pull/7".into()),
                sha: sha.clone(),
                pr_number: Some(7),
                is_fork: true,
                ..Default::default()
            };
            let planned = crate::store::jobs::tests::planned(CONFIG, "main");
            let forked = db.store.create_pipeline(project.id, &fork, &planned).await.unwrap_or_else(|e| panic!("{e}"));
            let job = db.store.pipeline_jobs(forked.pipeline_id).await.unwrap_or_default().remove(0);
            let a = crate::api::runners::assignment(&state, &job).await.unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(a.checkout.credential, None, "{name}");
        }
    }
}
