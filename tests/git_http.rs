//! A real git smart-HTTP server for tests: Git's own `git http-backend`, run as CGI (RFC 3875) behind a small
//! hyper server on 127.0.0.1:0 that demands HTTP Basic auth with the user `x-access-token` and a token as the
//! password — what GitHub asks of a clone with an app installation token. Every bare repository under its root
//! is served (`GIT_HTTP_EXPORT_ALL`); a repository named `forbidden.git` answers `403` whatever the credential,
//! as GitHub does for a token without access. Each request is recorded (method, path and query, status, and the
//! `Authorization` header as received) so tests can check what a client sent.

use std::convert::Infallible;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

/// One request as the server answered it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub authorization: Option<String>,
}

/// A running git HTTP server; it serves until the test process ends (its repositories go with the value).
pub struct GitHttpServer {
    /// `http://127.0.0.1:PORT`; a repository `R.git` under the root is `{url}/R.git`.
    pub url: String,
    pub root: tempfile::TempDir,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

struct Config {
    root: PathBuf,
    /// The whole `Authorization` header value a request must carry.
    expected: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl GitHttpServer {
    /// Starts a server that accepts `x-access-token:<token>`.
    pub fn start(token: &str) -> GitHttpServer {
        let root = tempfile::Builder::new().prefix("drydock-git-http-").tempdir().expect("git server root");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the git server");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        let config = Arc::new(Config {
            root: root.path().to_path_buf(),
            expected: format!("Basic {basic}"),
            requests: Arc::clone(&requests),
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                while let Ok((stream, _)) = listener.accept().await {
                    let config = Arc::clone(&config);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&config)));
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    });
                }
            });
        });
        GitHttpServer { url, root, requests }
    }

    /// The bare repository `name` (e.g. `acme/app.git`) made from the repository at `work` (all its branches
    /// and tags, via `git clone --bare`); returns its URL.
    pub fn publish(&self, name: &str, work: &Path) -> String {
        let dest = self.root.path().join(name);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        git(&[OsArg::S("clone"), OsArg::S("--bare"), OsArg::S("--quiet"), OsArg::P(work), OsArg::P(&dest)], None);
        format!("{}/{name}", self.url)
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// An argument of [`git`]: a string or a path.
pub enum OsArg<'a> {
    S(&'a str),
    P(&'a Path),
}

/// Runs the host's `git` with `args` (in `dir` when given), asserting success; returns stdout.
pub fn git(args: &[OsArg], dir: Option<&Path>) -> String {
    let mut c = Command::new("git");
    for a in args {
        match a {
            OsArg::S(s) => c.arg(s),
            OsArg::P(p) => c.arg(p),
        };
    }
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@drydock.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@drydock.invalid");
    let out = c.output().expect("run git (script/bootstrap installs it)");
    assert!(out.status.success(), "{c:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn record(config: &Config, method: &str, path: &str, status: u16, authorization: Option<String>) {
    if let Ok(mut r) = config.requests.lock() {
        r.push(Recorded { method: method.to_owned(), path: path.to_owned(), status, authorization });
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(text.to_owned())));
    *res.status_mut() = status;
    res
}

async fn handle(req: Request<Incoming>, config: Arc<Config>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let path_and_query = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let authorization = header("authorization");
    if authorization.as_deref() != Some(config.expected.as_str()) {
        record(&config, &method, &path_and_query, 401, authorization);
        let mut res = plain(StatusCode::UNAUTHORIZED, "authentication required\n");
        res.headers_mut().insert("www-authenticate", hyper::header::HeaderValue::from_static("Basic realm=\"git\""));
        return Ok(res);
    }
    if parts.uri.path().starts_with("/forbidden.git/") {
        record(&config, &method, &path_and_query, 403, authorization);
        return Ok(plain(StatusCode::FORBIDDEN, "this token has no access to the repository\n"));
    }
    let input = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "cannot read the body\n")),
    };
    let cgi = Cgi {
        root: config.root.clone(),
        method: method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        content_type: header("content-type"),
        content_encoding: header("content-encoding"),
        git_protocol: header("git-protocol"),
    };
    let res = tokio::task::spawn_blocking(move || cgi.run(&input))
        .await
        .unwrap_or_else(|e| Err(format!("the CGI task failed: {e}")));
    let res = res.unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")));
    record(&config, &method, &path_and_query, res.status().as_u16(), authorization);
    Ok(res)
}

/// One CGI invocation of `git http-backend`.
struct Cgi {
    root: PathBuf,
    method: String,
    path: String,
    query: String,
    content_type: Option<String>,
    content_encoding: Option<String>,
    git_protocol: Option<String>,
}

impl Cgi {
    fn run(self, input: &[u8]) -> Result<Response<Full<Bytes>>, String> {
        let mut c = Command::new("git");
        c.arg("http-backend")
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("PATH_INFO", &self.path)
            .env("QUERY_STRING", &self.query)
            .env("REQUEST_METHOD", &self.method)
            .env("CONTENT_LENGTH", input.len().to_string())
            .env("REMOTE_USER", "x-access-token")
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = &self.content_type {
            c.env("CONTENT_TYPE", t);
        }
        if let Some(e) = &self.content_encoding {
            c.env("HTTP_CONTENT_ENCODING", e);
        }
        if let Some(p) = &self.git_protocol {
            c.env("GIT_PROTOCOL", p);
        }
        let mut child = c.spawn().map_err(|e| format!("cannot run git http-backend: {e}"))?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let body = input.to_vec();
        // Written from a thread: http-backend may answer before it has read everything.
        let writer = std::thread::spawn(move || stdin.write_all(&body));
        let out = child.wait_with_output().map_err(|e| format!("git http-backend: {e}"))?;
        let _ = writer.join();
        if !out.status.success() && out.stdout.is_empty() {
            return Err(format!("git http-backend failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        parse_cgi(&out.stdout)
    }
}

/// A CGI script's output: header lines (`Status: 404 Not Found` sets the status), a blank line, the body.
fn parse_cgi(out: &[u8]) -> Result<Response<Full<Bytes>>, String> {
    let (head_end, body_start) = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (i, i + 4),
        None => match out.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (i, i + 2),
            None => return Err("the CGI output has no header end".into()),
        },
    };
    let head = std::str::from_utf8(&out[..head_end]).map_err(|_| "CGI headers are not UTF-8")?;
    let mut res = Response::new(Full::new(Bytes::copy_from_slice(&out[body_start..])));
    for line in head.lines() {
        let (name, value) = line.split_once(':').ok_or_else(|| format!("a bad CGI header line: {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse::<u16>().ok());
            *res.status_mut() = code.and_then(|c| StatusCode::from_u16(c).ok()).ok_or("a bad CGI status")?;
        } else {
            let name = hyper::header::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| e.to_string())?;
            let value = hyper::header::HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            res.headers_mut().append(name, value);
        }
    }
    Ok(res)
}
