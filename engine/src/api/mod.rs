//! `engine serve`: a subset of the Docker Engine API over a unix socket (and optionally loopback TCP), so the
//! real `docker` CLI and API clients drive this engine. The handlers call the same library functions as the
//! `engine` CLI verbs; the library is blocking, so every call runs on tokio's blocking pool
//! ([`blocking`]). Layout: [`server`] accepts connections and strips the `/v1.xx` prefix, then the router in
//! [`routes`] dispatches to one file per resource ([`system`], [`containers`], [`images`], [`networks`], [`volumes`]); [`attach`] owns
//! the hijacked streams and docker's 8-byte stream framing; [`errors`] maps engine errors to docker's statuses.
//! See docs/engine-api.md for what is implemented and the decisions behind it.

pub mod attach;
pub mod build;
pub mod containers;
pub mod errors;
pub mod events;
pub mod exec;
pub mod images;
pub mod networks;
pub mod server;
pub mod system;
pub mod volumes;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;

pub use errors::{ApiError, ApiResult};
pub use server::{serve, ServeError};

use crate::root::Root;

/// The API version this server speaks (Docker 25's).
pub const API_VERSION: &str = "1.44";
/// The oldest API version a client may ask for.
pub const MIN_API_VERSION: &str = "1.24";
/// Request bodies larger than this are refused with 413 (create and tag bodies are a few kilobytes).
pub const MAX_BODY: usize = 1 << 20;

/// What every handler shares: the engine root and the streams waiting for a container to start.
#[derive(Clone)]
pub struct ApiState {
    pub root: Root,
    pub attach: Arc<attach::Attachments>,
    pub execs: Arc<exec::Execs>,
    /// With `--scope`, the one label this server's containers, networks and volumes carry.
    pub scope: Option<Scope>,
}

impl ApiState {
    pub fn new(root: Root, scope: Option<Scope>) -> ApiState {
        ApiState {
            root,
            attach: Arc::new(attach::Attachments::default()),
            execs: Arc::new(exec::Execs::default()),
            scope,
        }
    }
}

/// `--scope KEY=VALUE`: a server started for one CI job creates every container, network and volume with this
/// label and sees, touches and prunes only objects that carry it; objects of other scopes answer 404 as if they
/// did not exist. Images are shared, as are the built-in networks (`bridge`, `host`, `none`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub key: String,
    pub value: String,
}

impl Scope {
    /// Parses `KEY=VALUE` (both non-empty).
    pub fn parse(s: &str) -> Result<Scope, String> {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok(Scope { key: k.to_owned(), value: v.to_owned() }),
            _ => Err(format!("invalid scope `{s}`: expected LABEL=VALUE, e.g. drydock.job=1234")),
        }
    }

    /// Whether labels carry this scope.
    pub fn holds(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        labels.get(&self.key).is_some_and(|v| *v == self.value)
    }
}

/// True when `labels` are visible to a server with `scope` (every object is, without one).
pub fn in_scope(scope: Option<&Scope>, labels: &std::collections::BTreeMap<String, String>) -> bool {
    scope.is_none_or(|s| s.holds(labels))
}

/// Resolves a container by name or ID prefix, as `404 No such container` when it is out of this server's scope.
pub fn scoped_container(
    scope: Option<&Scope>,
    store: &crate::container::ContainerStore,
    name: &str,
) -> ApiResult<crate::container::Container> {
    let c = store.resolve(name)?;
    if !in_scope(scope, &c.config.labels) {
        return Err(crate::container::Error::NotFound(name.to_owned()).into());
    }
    Ok(c)
}

/// A JSON response body (axum's own `Json` needs its `json` feature, which pulls in more than this needs).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
            Err(e) => {
                errors::json_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot encode the response: {e}"))
            }
        }
    }
}

/// Runs blocking engine code on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("engine task failed: {e}")))?
}

/// The query string as key → value (the last of repeated keys wins), and every pair in order for repeated
/// keys ([`Query::all`]).
#[derive(Debug, Default)]
pub struct Query(pub HashMap<String, String>, Vec<(String, String)>);

impl Query {
    /// A parameter's value (its last one when it is repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Every value of a repeated parameter, in order (`changes=…&changes=…`), empty ones left out.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.1.iter().filter(move |(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    /// Docker's boolean parameters: `1`, `true`, `True` are true; absent, `0`, `false`, empty are false.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key).map(str::to_ascii_lowercase).as_deref(), Some("1" | "true" | "yes"))
    }

    /// An integer parameter; a malformed value is a 400 naming the parameter.
    pub fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for query parameter {key}: `{v}` is not an integer"))
            }),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> ApiResult<Query> {
        let axum::extract::Query(pairs) = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
        Ok(Query(pairs.iter().cloned().collect(), pairs))
    }
}

/// Reads a request body of at most [`MAX_BODY`] bytes (413 beyond).
pub async fn read_body(body: Body) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        let too_large = std::iter::successors(Some(&e as &dyn std::error::Error), |c| c.source())
            .any(|c| c.to_string().contains("length limit"));
        if too_large {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is larger than {MAX_BODY} bytes"))
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

/// Streams a request body (an archive or a build context: unbounded, unlike [`read_body`]) into a temporary
/// file under the engine root's `tmp/`, and returns it with its size. `what` names the body in errors ("the
/// archive"). The file is removed when the returned handle drops.
pub async fn stage_body(root: &Root, body: Body, what: &str) -> ApiResult<(tempfile::NamedTempFile, u64)> {
    use futures_util::StreamExt as _;
    use std::io::Write as _;
    let dir = root.tmp_dir();
    let cannot = |e: std::io::Error| ApiError::internal(format!("cannot stage {what} in {}: {e}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(cannot)?;
    let staged = tempfile::NamedTempFile::new_in(&dir).map_err(cannot)?;
    let mut file = std::io::BufWriter::new(staged.reopen().map_err(cannot)?);
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read {what} from the request: {e}")))?;
        size += chunk.len() as u64;
        file.write_all(&chunk).map_err(cannot)?;
    }
    file.flush().map_err(cannot)?;
    Ok((staged, size))
}

/// Parses a JSON request body into `T`; malformed JSON is a 400 that says where.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))
}

/// The routes, unversioned (the server strips `/v1.xx` before routing).
pub fn routes(state: ApiState) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(events::events))
        .route("/auth", post(system::auth))
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/attach", post(attach::attach))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}", delete(containers::remove))
        .route("/containers/{id}/top", get(containers::top))
        .route("/containers/prune", post(containers::prune))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/{verb}", post(containers::pause_or_unpause))
        .route("/containers/{id}/changes", get(containers::changes))
        .route("/containers/{id}/export", get(containers::export))
        .route(
            "/containers/{id}/archive",
            get(containers::archive_get).head(containers::archive_head).put(containers::archive_put),
        )
        .route("/commit", post(containers::commit))
        .route("/build", post(build::build))
        .route("/images/get", get(images::get_many))
        .route("/images/load", post(images::load))
        .route("/images/prune", post(images::prune))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/images/create", post(images::create))
        .route("/images/json", get(images::list))
        .route("/images/{*rest}", get(images::get_dispatch).post(images::post_dispatch).delete(images::remove))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route("/networks/{id}", get(networks::inspect).delete(networks::remove))
        .route("/networks/{id}/{verb}", post(networks::connect_or_disconnect))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route("/volumes/{name}", get(volumes::inspect).delete(volumes::remove))
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(unknown_endpoint)
        .layer(middleware::from_fn(api_headers))
        .with_state(state)
}

/// Anything not routed: a 404 that says so, as JSON (never a hang or an empty body).
async fn unknown_endpoint(req: Request) -> Response {
    let message = format!(
        "page not found: {} {} is not part of the Docker Engine API subset `engine serve` implements (see docs/engine-api.md)",
        req.method(),
        req.uri().path()
    );
    errors::json_error(StatusCode::NOT_FOUND, &message)
}

/// Headers dockerd puts on every response.
async fn api_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("Drydock-Engine/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_match_one_label() {
        let s = Scope::parse("drydock.job=42").expect("valid scope");
        assert!(s.holds(&[("drydock.job".to_owned(), "42".to_owned())].into()));
        assert!(!s.holds(&[("drydock.job".to_owned(), "43".to_owned())].into()));
        assert!(in_scope(None, &Default::default()) && !in_scope(Some(&s), &Default::default()));
        for bad in ["", "job", "=1", "job="] {
            assert!(Scope::parse(bad).is_err_and(|m| m.contains("LABEL=VALUE")), "{bad}");
        }
    }

    #[test]
    fn docker_booleans_parse() {
        let pairs: Vec<(String, String)> =
            [("a", "1"), ("b", "true"), ("c", "0"), ("d", "")].map(|(k, v)| (k.into(), v.into())).into();
        let q = Query(pairs.iter().cloned().collect(), pairs);
        assert!(q.flag("a") && q.flag("b"));
        assert!(!q.flag("c") && !q.flag("d") && !q.flag("missing"));
        let pairs: Vec<(String, String)> = [("changes", "CMD x"), ("t", "1"), ("changes", ""), ("changes", "ENV A=1")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        let q = Query(pairs.iter().cloned().collect(), pairs);
        assert_eq!(q.all("changes").collect::<Vec<_>>(), ["CMD x", "ENV A=1"]);
        assert_eq!(q.get("changes"), Some("ENV A=1"));
    }
}
