//! A blocking client of the Docker Engine API (`engine serve`, or dockerd): what the `engine` CLI uses in remote
//! mode (`DRYDOCK_HOST`/`DOCKER_HOST`, or the binary called as `docker`), and what compose uses over the API.
//!
//! [`ApiClient`] owns a small current-thread tokio runtime and opens one HTTP/1.1 connection per request
//! (hyper's `client::conn::http1` over a unix or TCP socket; no pool: requests are few and a unix connect costs
//! microseconds). Every call blocks the calling thread. Paths are given unversioned (`/containers/json`); the
//! client prefixes them with [`API_VERSION`]. A status ≥ 400 becomes [`Error::Api`] with the server's `message`.
//! Bodies are either JSON ([`ApiClient::get_json`], [`ApiClient::post_json`]) or streams ([`ApiClient::request`]
//! returns an [`ApiResponse`] that is an `io::Read`; a request body may be a `Read`, streamed from a blocking
//! thread). Attach and exec hijack the connection ([`ApiClient::upgrade`]): the socket is handed back as a plain
//! blocking std socket, read with [`frames`] (docker's 8-byte multiplexed framing) when there is no TTY.
//! See docs/engine-api.md "Client".

pub mod frames;
pub mod host;

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use frames::{demux, read_frame, StreamFrame};
pub use host::Host;

/// The API version the client speaks (the server's [`crate::api::API_VERSION`]).
pub const API_VERSION: &str = "1.44";

/// Bytes of an error body the client reads to find the server's message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What can go wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `DOCKER_HOST`/`DRYDOCK_HOST` is not an address the client understands.
    #[error("invalid engine host `{host}`: {reason}")]
    InvalidHost { host: String, reason: String },
    /// The socket could not be reached: no server is listening there.
    #[error("cannot connect to the engine at {host}: {source}; is `engine serve` (or dockerd) running there?")]
    Connect {
        host: String,
        #[source]
        source: io::Error,
    },
    /// The HTTP exchange failed (connection closed, malformed response).
    #[error("{method} {path} failed: {source}")]
    Http {
        method: Method,
        path: String,
        #[source]
        source: hyper::Error,
    },
    /// The server answered with an error status; `message` is its `{"message": …}`.
    #[error("{message}")]
    Api { status: StatusCode, message: String },
    /// A response body was not the JSON expected.
    #[error("unexpected response to {what}: {source}")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The server did not switch protocols for an attach or exec start.
    #[error("{path}: the server answered {status} instead of switching protocols (101) for the attached stream")]
    NotUpgraded { path: String, status: StatusCode },
    /// Reading or writing a body or a hijacked stream failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The client's runtime could not be started.
    #[error("cannot start the API client's runtime: {0}")]
    Runtime(#[source] io::Error),
}

impl Error {
    /// The HTTP status of an API error (`None` for transport errors).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for a 404 from the server (no such container, image, network, volume).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The body of a request: nothing, bytes (JSON), or a reader streamed from a blocking thread (a build context,
/// an archive for `docker cp`, an image tar for `load`).
pub enum RequestBody {
    Empty,
    Bytes(Vec<u8>),
    Reader(Box<dyn Read + Send + 'static>),
}

impl RequestBody {
    /// A JSON body. Serialising request types (strings, string-keyed maps, numbers, `serde_json::Value`) cannot
    /// fail; a type whose `Serialize` does fail sends an empty body, which the server refuses with a 400.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> RequestBody {
        RequestBody::Bytes(serde_json::to_vec(value).unwrap_or_default())
    }
}

type Body = UnsyncBoxBody<Bytes, io::Error>;

/// A blocking Engine API client. Cheap to keep for the whole command; calls block the calling thread on the
/// client's own current-thread runtime, so do not call it from inside another tokio runtime.
pub struct ApiClient {
    host: Host,
    runtime: tokio::runtime::Runtime,
    /// `/v1.44`, put before every path.
    version_prefix: String,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").field("host", &self.host).finish()
    }
}

impl ApiClient {
    /// A client of the server at `host`. Nothing is connected yet: each request opens its own connection.
    pub fn new(host: Host) -> Result<ApiClient> {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build().map_err(Error::Runtime)?;
        Ok(ApiClient { host, runtime, version_prefix: format!("/v{API_VERSION}") })
    }

    /// The server's address.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// `GET /_ping`: `Ok` when a server answers.
    pub fn ping(&self) -> Result<()> {
        let mut res = self.request(Method::GET, "/_ping", &[], RequestBody::Empty)?;
        res.discard()
    }

    /// `GET path` and decode the JSON answer.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.request(Method::GET, path, &[], RequestBody::Empty)?.json()
    }

    /// `POST path` with an optional JSON body and decode the JSON answer.
    pub fn post_json<T: DeserializeOwned, B: Serialize + ?Sized>(&self, path: &str, body: Option<&B>) -> Result<T> {
        let body = body.map_or(RequestBody::Empty, RequestBody::json);
        self.request(Method::POST, path, &[], body)?.json()
    }

    /// `POST path` with an optional JSON body, ignoring the answer's body (start, stop, kill, tag …).
    pub fn post<B: Serialize + ?Sized>(&self, path: &str, body: Option<&B>) -> Result<StatusCode> {
        let body = body.map_or(RequestBody::Empty, RequestBody::json);
        let mut res = self.request(Method::POST, path, &[], body)?;
        let status = res.status();
        res.discard()?;
        Ok(status)
    }

    /// `DELETE path`; returns the decoded JSON answer, `Null` when the body is empty (204).
    pub fn delete(&self, path: &str) -> Result<serde_json::Value> {
        let mut res = self.request(Method::DELETE, path, &[], RequestBody::Empty)?;
        let bytes = res.body_bytes()?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode { what: format!("DELETE {path}"), source })
    }

    /// Sends one request and returns the response with its body unread. A status ≥ 400 is [`Error::Api`]
    /// (304, docker's "nothing to do" for start and stop, is not an error).
    pub fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: RequestBody,
    ) -> Result<ApiResponse<'_>> {
        let started = Instant::now();
        let req = self.build_request(method.clone(), path, headers, body, false)?;
        let res = self.runtime.block_on(async {
            let mut sender = self.handshake(false).await?;
            sender.send_request(req).await.map_err(|source| Error::Http {
                method: method.clone(),
                path: path.to_owned(),
                source,
            })
        })?;
        tracing::debug!(http.method = %method, http.path = path, http.status = res.status().as_u16(),
            duration_ms = started.elapsed().as_millis() as u64, "engine API request");
        let (parts, body) = res.into_parts();
        let response =
            ApiResponse { client: self, status: parts.status, headers: parts.headers, body, buf: Bytes::new() };
        if response.status.as_u16() >= 400 {
            return Err(response.into_error());
        }
        Ok(response)
    }

    /// Sends a request that hijacks the connection (`POST /containers/{id}/attach`, `POST /exec/{id}/start`):
    /// after the server's `101 Switching Protocols` the socket is returned as a blocking std socket.
    pub fn upgrade(&self, path: &str, body: RequestBody) -> Result<Hijacked> {
        let req = self.build_request(Method::POST, path, &[], body, true)?;
        self.runtime.block_on(async {
            let mut sender = self.handshake(true).await?;
            let res = sender.send_request(req).await.map_err(|source| Error::Http {
                method: Method::POST,
                path: path.to_owned(),
                source,
            })?;
            if res.status() != StatusCode::SWITCHING_PROTOCOLS {
                let status = res.status();
                let (parts, body) = res.into_parts();
                if status.as_u16() >= 400 {
                    let response =
                        ApiResponse { client: self, status, headers: parts.headers, body, buf: Bytes::new() };
                    return Err(response.into_error_async().await);
                }
                return Err(Error::NotUpgraded { path: path.to_owned(), status });
            }
            let upgraded = hyper::upgrade::on(res).await.map_err(|source| Error::Http {
                method: Method::POST,
                path: path.to_owned(),
                source,
            })?;
            let parts = upgraded.downcast::<TokioIo<Socket>>().map_err(|_| Error::Io {
                what: format!("{path}: hijacking the connection"),
                source: io::Error::other("the upgraded connection is not the socket the client opened"),
            })?;
            let socket = parts
                .io
                .into_inner()
                .into_std()
                .map_err(|source| Error::Io { what: format!("{path}: hijacking the connection"), source })?;
            Ok(Hijacked { socket, leftover: parts.read_buf })
        })
    }

    fn build_request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: RequestBody,
        upgrade: bool,
    ) -> Result<Request<Body>> {
        let uri = format!("{}{}", self.version_prefix, path);
        let mut builder =
            Request::builder().method(method).uri(&uri).header(hyper::header::HOST, self.host.authority());
        if upgrade {
            builder = builder.header(hyper::header::CONNECTION, "Upgrade").header(hyper::header::UPGRADE, "tcp");
        }
        let is_json = matches!(body, RequestBody::Bytes(_));
        let body: Body = match body {
            RequestBody::Empty => Full::new(Bytes::new()).map_err(|never| match never {}).boxed_unsync(),
            RequestBody::Bytes(b) => Full::new(Bytes::from(b)).map_err(|never| match never {}).boxed_unsync(),
            RequestBody::Reader(reader) => self.streamed_body(reader),
        };
        if is_json {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let mut req = builder.body(body).map_err(|e| Error::InvalidHost {
            host: self.host.to_string(),
            reason: format!("cannot build a request for {uri}: {e}"),
        })?;
        let map = req.headers_mut();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes());
            let value = HeaderValue::from_str(value);
            if let (Ok(name), Ok(value)) = (name, value) {
                map.insert(name, value);
            }
        }
        Ok(req)
    }

    /// A body read from `reader` on a blocking thread in 64 KiB chunks.
    fn streamed_body(&self, mut reader: Box<dyn Read + Send + 'static>) -> Body {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Frame<Bytes>>>(4);
        self.runtime.spawn_blocking(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.blocking_send(Ok(Frame::data(Bytes::copy_from_slice(&chunk[..n])))).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        break;
                    }
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        StreamBody::new(stream).boxed_unsync()
    }

    async fn handshake(&self, upgrades: bool) -> Result<hyper::client::conn::http1::SendRequest<Body>> {
        let socket = self.host.connect().await?;
        let (sender, conn) = hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(socket))
            .await
            .map_err(|source| Error::Http { method: Method::GET, path: "(handshake)".into(), source })?;
        if upgrades {
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "engine API connection ended");
                }
            });
        } else {
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "engine API connection ended");
                }
            });
        }
        Ok(sender)
    }
}

/// A response whose body has not been read yet. Reading it (`io::Read`) blocks on the client's runtime.
pub struct ApiResponse<'a> {
    client: &'a ApiClient,
    status: StatusCode,
    headers: HeaderMap,
    body: Incoming,
    buf: Bytes,
}

impl ApiResponse<'_> {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The whole body.
    pub fn body_bytes(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_to_end(&mut out).map_err(|source| Error::Io { what: "reading the response".into(), source })?;
        Ok(out)
    }

    /// The body decoded as JSON.
    pub fn json<T: DeserializeOwned>(mut self) -> Result<T> {
        let bytes = self.body_bytes()?;
        serde_json::from_slice(&bytes)
            .map_err(|source| Error::Decode { what: "the server's JSON answer".into(), source })
    }

    /// Reads and drops the body (keeps the exchange complete).
    pub fn discard(&mut self) -> Result<()> {
        io::copy(self, &mut io::sink()).map_err(|source| Error::Io { what: "reading the response".into(), source })?;
        Ok(())
    }

    /// The body as a stream of JSON values, one per line (pull, push and build progress; `/events`).
    pub fn json_lines(self) -> JsonLines<Self> {
        JsonLines { reader: io::BufReader::new(self) }
    }

    fn into_error(mut self) -> Error {
        let status = self.status;
        let mut bytes = Vec::new();
        let _ = (&mut self).take(MAX_ERROR_BODY as u64).read_to_end(&mut bytes);
        api_error(status, &bytes)
    }

    async fn into_error_async(mut self) -> Error {
        let mut bytes = Vec::new();
        while let Some(Ok(frame)) = self.body.frame().await {
            if let Ok(data) = frame.into_data() {
                bytes.extend_from_slice(&data);
            }
            if bytes.len() > MAX_ERROR_BODY {
                break;
            }
        }
        api_error(self.status, &bytes)
    }
}

/// The server's `{"message": …}`, else the body as text, else the status's reason.
fn api_error(status: StatusCode, body: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct Message {
        message: String,
    }
    let message = match serde_json::from_slice::<Message>(body) {
        Ok(m) => m.message,
        Err(_) if !body.is_empty() => String::from_utf8_lossy(body).trim().to_owned(),
        Err(_) => format!("the server answered {status}"),
    };
    Error::Api { status, message }
}

impl Read for ApiResponse<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.client.runtime.block_on(self.body.frame()) {
                None => return Ok(0),
                Some(Err(e)) => return Err(io::Error::other(e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf = data;
                    }
                }
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        bytes::Buf::advance(&mut self.buf, n);
        Ok(n)
    }
}

/// JSON values, one per line, from a streamed body. Blank lines are skipped; a line that is not JSON is an error
/// naming it.
pub struct JsonLines<R> {
    reader: io::BufReader<R>,
}

impl<R: Read> Iterator for JsonLines<R> {
    type Item = Result<serde_json::Value>;

    fn next(&mut self) -> Option<Self::Item> {
        use io::BufRead as _;
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) if line.trim().is_empty() => continue,
                Ok(_) => {
                    return Some(serde_json::from_str(line.trim()).map_err(|source| Error::Decode {
                        what: format!("the progress line `{}`", line.trim()),
                        source,
                    }))
                }
                Err(source) => return Some(Err(Error::Io { what: "reading the progress stream".into(), source })),
            }
        }
    }
}

/// A hijacked connection: a blocking std socket plus what hyper had already read past the 101 response.
pub struct Hijacked {
    pub socket: StdSocket,
    pub leftover: Bytes,
}

impl Hijacked {
    /// A reader of the stream: the leftover bytes, then the socket.
    pub fn reader(&self) -> io::Result<impl Read + Send + 'static> {
        Ok(io::Cursor::new(self.leftover.clone()).chain(self.socket.try_clone()?))
    }

    /// A writer to the stream (stdin), usable from another thread.
    pub fn writer(&self) -> io::Result<StdSocket> {
        self.socket.try_clone()
    }

    /// Half-closes the stream: the server sees the end of stdin.
    pub fn close_write(&self) -> io::Result<()> {
        self.socket.shutdown(std::net::Shutdown::Write)
    }
}

/// The std socket of a hijacked connection.
#[derive(Debug)]
pub enum StdSocket {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl StdSocket {
    pub fn try_clone(&self) -> io::Result<StdSocket> {
        Ok(match self {
            StdSocket::Unix(s) => StdSocket::Unix(s.try_clone()?),
            StdSocket::Tcp(s) => StdSocket::Tcp(s.try_clone()?),
        })
    }

    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        match self {
            StdSocket::Unix(s) => s.shutdown(how),
            StdSocket::Tcp(s) => s.shutdown(how),
        }
    }
}

impl Read for StdSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            StdSocket::Unix(s) => s.read(buf),
            StdSocket::Tcp(s) => s.read(buf),
        }
    }
}

impl io::Write for StdSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StdSocket::Unix(s) => s.write(buf),
            StdSocket::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The tokio socket a request runs over (unix or TCP), one type so an upgrade can be downcast back to it.
#[derive(Debug)]
pub(crate) enum Socket {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

impl Socket {
    fn into_std(self) -> io::Result<StdSocket> {
        Ok(match self {
            Socket::Unix(s) => {
                let s = s.into_std()?;
                s.set_nonblocking(false)?;
                StdSocket::Unix(s)
            }
            Socket::Tcp(s) => {
                let s = s.into_std()?;
                s.set_nonblocking(false)?;
                StdSocket::Tcp(s)
            }
        })
    }
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Builds a query string: `query(&[("all", "1"), ("name", "a b")])` is `?all=1&name=a%20b` (empty without pairs).
pub fn query(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let encoded: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    format!("?{}", encoded.join("&"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters (a path segment or a query value).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// docker's `X-Registry-Auth` value for credentials: base64url of `{"username", "password", "serveraddress"}`.
pub fn registry_auth(username: &str, password: &str, server: &str) -> String {
    use base64::Engine as _;
    let json = serde_json::json!({ "username": username, "password": password, "serveraddress": server });
    base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
}

#[cfg(test)]
mod tests;
