//! The listening side of `engine serve`: a unix socket (and optionally a loopback TCP port), HTTP/1.1 per
//! connection through hyper with upgrades enabled (attach and exec hijack the connection), and the API version
//! prefix handled before routing: `/v1.44/containers/json` and `/containers/json` reach the same handler; a
//! version outside [`MIN_API_VERSION`]..=[`API_VERSION`] is refused with docker's 400.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt;

use super::{errors, routes, ApiState, Scope, API_VERSION, MIN_API_VERSION};
use crate::root::Root;

/// Why `engine serve` could not start (or had to stop).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to serve the API on {0}: without TLS and authentication only a loopback address is safe (use 127.0.0.1:PORT)")]
    NotLoopback(SocketAddr),
    #[error("{0} exists and is not a socket: choose another --socket path")]
    NotASocket(PathBuf),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let context = context.into();
    move |source| ServeError::Io { context, source }
}

/// Serves the API until SIGINT or SIGTERM; the socket file is removed on the way out.
pub fn serve(root: Root, socket: &Path, tcp: Option<SocketAddr>, scope: Option<Scope>) -> Result<(), ServeError> {
    if let Some(addr) = tcp {
        // The API is root on this host to whoever reaches it, and it has no authentication: loopback only.
        if !addr.ip().is_loopback() {
            return Err(ServeError::NotLoopback(addr));
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("engine-api")
        .build()
        .map_err(io_err("cannot start the async runtime"))?;
    runtime.block_on(run(ApiState::new(root, scope), socket, tcp))
}

async fn run(state: ApiState, socket: &Path, tcp: Option<SocketAddr>) -> Result<(), ServeError> {
    match std::fs::symlink_metadata(socket) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(socket)
            .map_err(io_err(format!("cannot remove the stale socket {}", socket.display())))?,
        Ok(_) => return Err(ServeError::NotASocket(socket.to_owned())),
        Err(_) => {}
    }
    let unix =
        tokio::net::UnixListener::bind(socket).map_err(io_err(format!("cannot listen on {}", socket.display())))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .map_err(io_err(format!("cannot restrict the permissions of {}", socket.display())))?;
    let router = routes(state);
    tracing::info!(socket = %socket.display(), "serving the Docker Engine API");
    let unix_router = router.clone();
    tokio::spawn(async move {
        loop {
            match unix.accept().await {
                Ok((stream, _)) => connection(stream, unix_router.clone()),
                Err(e) => tracing::warn!("cannot accept a connection: {e}"),
            }
        }
    });
    if let Some(addr) = tcp {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(io_err(format!("cannot listen on {addr}")))?;
        tracing::info!(%addr, "serving the Docker Engine API over TCP");
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => connection(stream, router.clone()),
                    Err(e) => tracing::warn!("cannot accept a connection: {e}"),
                }
            }
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io_err("cannot listen for SIGTERM"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// Serves one connection: HTTP/1.1 with upgrades, each request routed after its version prefix is handled.
pub(crate) fn connection<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: IO, router: Router) {
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let router = router.clone();
            async move { Ok::<Response, Infallible>(dispatch(router, req.map(Body::new)).await) }
        });
        if let Err(e) =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service).with_upgrades().await
        {
            tracing::debug!("connection ended: {e}");
        }
    });
}

async fn dispatch(router: Router, mut req: Request) -> Response {
    match strip_version(req.uri()) {
        Ok(Some(uri)) => *req.uri_mut() = uri,
        Ok(None) => {}
        Err(message) => return errors::json_error(StatusCode::BAD_REQUEST, &message),
    }
    match router.oneshot(req).await {
        Ok(res) => res,
        Err(never) => match never {},
    }
}

/// `/v1.44/x` → `/x`. `Ok(None)` when the path has no version prefix; `Err` for a version this server does not
/// speak (docker's messages).
fn strip_version(uri: &Uri) -> Result<Option<Uri>, String> {
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/v") else { return Ok(None) };
    let (version, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some(asked) = parse_version(version) else { return Ok(None) };
    if asked < parse_version(MIN_API_VERSION).unwrap_or((1, 24)) {
        return Err(format!(
            "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        ));
    }
    if asked > parse_version(API_VERSION).unwrap_or((1, 44)) {
        return Err(format!("client version {version} is too new. Maximum supported API version is {API_VERSION}"));
    }
    let tail = if tail.is_empty() { "/" } else { tail };
    let path_and_query = match uri.query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_owned(),
    };
    path_and_query.parse().map(Some).map_err(|e| format!("invalid request path: {e}"))
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(s: &str) -> Result<Option<String>, String> {
        let uri: Uri = s.parse().map_err(|_| "bad test uri".to_owned())?;
        strip_version(&uri).map(|u| u.map(|u| u.to_string()))
    }

    #[test]
    fn version_prefixes_are_stripped_and_checked() {
        assert_eq!(strip("/v1.44/containers/json?all=1"), Ok(Some("/containers/json?all=1".into())));
        assert_eq!(strip("/v1.41/_ping"), Ok(Some("/_ping".into())));
        assert_eq!(strip("/containers/json"), Ok(None));
        assert_eq!(strip("/volumes"), Ok(None));
        assert!(strip("/v1.12/version").is_err_and(|m| m.contains("too old")));
        assert!(strip("/v1.99/version").is_err_and(|m| m.contains("too new")));
    }
}
