//! A git smart-HTTP server for tests: axum on `127.0.0.1:0` runs git's own `git http-backend` as a CGI program
//! for every request, after checking HTTP Basic auth as GitHub does for private repositories (user
//! `x-access-token`, password the token; anything else `401` with `WWW-Authenticate`). The repositories are the
//! directories under `root` (`http://ADDR/<name>`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::io::AsyncWriteExt;

/// A running server; it stops with the test's runtime.
pub(crate) struct GitHttpServer {
    pub addr: SocketAddr,
    /// Requests refused for want of the right credentials.
    pub refused: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct Served {
    root: PathBuf,
    token: String,
    refused: Arc<AtomicUsize>,
}

impl GitHttpServer {
    /// Serves the repositories under `root` to clients presenting `token`.
    pub(crate) async fn start(root: PathBuf, token: &str) -> GitHttpServer {
        let refused = Arc::new(AtomicUsize::new(0));
        let served = Served { root, token: token.to_string(), refused: refused.clone() };
        let app = axum::Router::new().fallback(cgi).with_state(served);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("local addr: {e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        GitHttpServer { addr, refused }
    }

    /// The clone URL of repository `name` (a directory under the root).
    pub(crate) fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }
}

fn authorized(req: &Request, token: &str) -> bool {
    let Some(value) = req.headers().get("authorization").and_then(|v| v.to_str().ok()) else { return false };
    let Some(encoded) = value.strip_prefix("Basic ") else { return false };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
    decoded == format!("x-access-token:{token}").as_bytes()
}

async fn cgi(State(served): State<Served>, req: Request) -> Response {
    if !authorized(&req, &served.token) {
        served.refused.fetch_add(1, Ordering::SeqCst);
        let mut response = (StatusCode::UNAUTHORIZED, "credentials needed\n").into_response();
        response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Basic realm=\"git\""));
        return response;
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    // In a block: a closure borrowing the request (whose body is not `Sync`) must not live across an await.
    let (content_type, encoding, protocol) = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        (header("content-type"), header("content-encoding"), header("git-protocol"))
    };
    let body = axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024).await.unwrap_or_default();
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", &served.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("REQUEST_METHOD", &method)
        .env("CONTENT_TYPE", &content_type)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", &encoding)
        .env("GIT_PROTOCOL", &protocol)
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("git http-backend: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).await.unwrap_or_else(|e| panic!("git http-backend stdin: {e}"));
    }
    let output = child.wait_with_output().await.unwrap_or_else(|e| panic!("git http-backend: {e}"));
    cgi_response(&output.stdout).unwrap_or_else(|| {
        panic!("git http-backend answered no CGI headers: {}", String::from_utf8_lossy(&output.stderr))
    })
}

/// A CGI program's output (headers, a blank line, the body) as an HTTP response.
fn cgi_response(out: &[u8]) -> Option<Response> {
    let (head, body) = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&out[..i], &out[i + 4..]),
        None => {
            let i = out.windows(2).position(|w| w == b"\n\n")?;
            (&out[..i], &out[i + 2..])
        }
    };
    let mut response = Response::new(Body::from(body.to_vec()));
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok())?;
            *response.status_mut() = StatusCode::from_u16(code).ok()?;
        } else if let (Ok(name), Ok(value)) =
            (axum::http::HeaderName::try_from(name.trim()), HeaderValue::from_str(value))
        {
            response.headers_mut().append(name, value);
        }
    }
    Some(response)
}
