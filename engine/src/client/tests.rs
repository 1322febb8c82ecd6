//! Unit tests of the API client: address parsing, framing, query encoding, and requests against the real API
//! router (`api::routes`) served on a temporary unix socket with an empty engine root.

use std::io::Read as _;
use std::path::Path;

use super::*;

#[test]
fn hosts_parse_like_docker_host() {
    assert_eq!(Host::parse("unix:///run/x.sock").ok(), Some(Host::Unix("/run/x.sock".into())));
    assert_eq!(Host::parse("/run/x.sock").ok(), Some(Host::Unix("/run/x.sock".into())));
    assert_eq!(Host::parse("tcp://127.0.0.1:2376").ok(), Some(Host::Tcp { host: "127.0.0.1".into(), port: 2376 }));
    assert_eq!(Host::parse("tcp://localhost").ok(), Some(Host::Tcp { host: "localhost".into(), port: 2375 }));
    assert_eq!(Host::parse("tcp://[::1]:99/").ok(), Some(Host::Tcp { host: "::1".into(), port: 99 }));
    for bad in ["unix://relative.sock", "ssh://me@host", "tcp://", "tcp://h:port", "tcp://:1", "tcp://[::1"] {
        assert!(matches!(Host::parse(bad), Err(Error::InvalidHost { .. })), "{bad}");
    }
    assert_eq!(Host::parse("tcp://[::1]:99").map(|h| h.to_string()).ok().as_deref(), Some("tcp://[::1]:99"));
    assert_eq!(Host::parse("unix:///a.sock").map(|h| h.authority()).ok().as_deref(), Some("docker"));
}

#[test]
fn localhost_and_literals_resolve_without_nss() {
    assert_eq!(Host::resolve("localhost", 1).ok(), Some("127.0.0.1:1".parse().expect("literal")));
    assert_eq!(Host::resolve("10.1.2.3", 5).ok(), Some("10.1.2.3:5".parse().expect("literal")));
    assert_eq!(Host::resolve("::1", 5).ok(), Some("[::1]:5".parse().expect("literal")));
}

#[test]
fn queries_are_percent_encoded() {
    assert_eq!(query(&[]), "");
    assert_eq!(
        query(&[("all", "1"), ("filters", r#"{"name":["a b"]}"#)]),
        "?all=1&filters=%7B%22name%22%3A%5B%22a%20b%22%5D%7D"
    );
    assert_eq!(encode("localhost:5000/team/app"), "localhost%3A5000%2Fteam%2Fapp");
}

#[test]
fn frames_demultiplex_and_a_cut_frame_is_an_error() {
    let mut wire = Vec::new();
    for (stream, data) in [(1u8, &b"out\n"[..]), (2, b"err\n"), (1, b"")] {
        wire.extend_from_slice(&[stream, 0, 0, 0]);
        wire.extend_from_slice(&(data.len() as u32).to_be_bytes());
        wire.extend_from_slice(data);
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    demux(&mut wire.as_slice(), &mut out, &mut err).expect("well-formed frames");
    assert_eq!((out.as_slice(), err.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
    let cut = &wire[..10];
    let mut r = cut;
    assert!(read_frame(&mut r).is_err());
    assert!(read_frame(&mut &wire[..3]).is_err_and(|e| e.kind() == io::ErrorKind::UnexpectedEof));
}

#[test]
fn a_body_that_cannot_be_json_is_an_error_not_an_empty_body() {
    let bad: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
    assert!(matches!(RequestBody::json(&bad), Err(Error::Encode(_))));
    let err = RequestBody::json(&bad).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.starts_with("cannot encode the request body as JSON: "), "{err}");
    assert!(matches!(RequestBody::json(&serde_json::json!({"a": 1})), Ok(RequestBody::Bytes(b)) if b == br#"{"a":1}"#));
}

#[test]
fn registry_auth_is_what_the_server_decodes() {
    use base64::Engine as _;
    let header = registry_auth("me", "s3cret", "localhost:5000");
    let raw = base64::engine::general_purpose::URL_SAFE.decode(header).expect("base64url");
    let v: serde_json::Value = serde_json::from_slice(&raw).expect("json");
    assert_eq!((v["username"].as_str(), v["password"].as_str()), (Some("me"), Some("s3cret")));
}

/// Serves the real API router for an empty root on `socket`, on a thread of its own.
fn serve_api(root: &Path, socket: &Path) {
    let root = crate::root::Root::open(root).expect("temporary engine root");
    let listener = std::os::unix::net::UnixListener::bind(socket).expect("bind the test socket");
    listener.set_nonblocking(true).expect("nonblocking listener");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::UnixListener::from_std(listener).expect("tokio listener");
            let router = crate::api::routes(crate::api::ApiState::new(root, None));
            while let Ok((stream, _)) = listener.accept().await {
                crate::api::server::connection(stream, router.clone());
            }
        });
    });
}

#[test]
fn requests_reach_the_real_router() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("api.sock");
    serve_api(&dir.path().join("root"), &socket);
    let client = ApiClient::new(Host::Unix(socket.clone())).expect("client");
    client.ping().expect("ping");
    let version: serde_json::Value = client.get_json("/version").expect("version");
    assert_eq!(version["ApiVersion"].as_str(), Some(API_VERSION));
    let containers: Vec<serde_json::Value> =
        client.get_json(&format!("/containers/json{}", query(&[("all", "1")]))).expect("list");
    assert!(containers.is_empty());

    // A 404 carries the server's message and status; the client keeps working afterwards.
    let err = client.get_json::<serde_json::Value>("/containers/nope/json").expect_err("unknown container");
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("No such container: nope"), "{err}");
    let err = client.upgrade("/containers/nope/attach?stream=1&stdout=1", RequestBody::Empty).err();
    assert!(err.as_ref().is_some_and(Error::is_not_found), "{err:?}");

    // A malformed body is the server's 400, naming the problem.
    let err = client
        .request(Method::POST, "/networks/create", &[], RequestBody::Bytes(b"{not json".to_vec()))
        .err()
        .expect("malformed JSON");
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{err}");

    // A streamed request body and a streamed response (a volume made, listed, removed).
    let created: serde_json::Value = client
        .request(
            Method::POST,
            "/volumes/create",
            &[],
            RequestBody::Reader(Box::new(io::Cursor::new(br#"{"Name":"v1"}"#.to_vec()))),
        )
        .and_then(ApiResponse::json)
        .expect("volume create");
    assert_eq!(created["Name"].as_str(), Some("v1"));
    let mut res = client.request(Method::GET, "/volumes", &[], RequestBody::Empty).expect("volume list");
    assert_eq!(res.header("Api-Version"), Some(API_VERSION));
    let mut text = String::new();
    res.read_to_string(&mut text).expect("body");
    assert!(text.contains("\"v1\""), "{text}");
    assert_eq!(client.delete("/volumes/v1").expect("volume rm"), serde_json::Value::Null);
}

#[test]
fn an_absent_server_is_a_connect_error_that_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = ApiClient::new(Host::Unix(dir.path().join("none.sock"))).expect("client");
    let err = client.ping().expect_err("no server");
    assert!(matches!(err, Error::Connect { .. }) && err.to_string().contains("engine serve"), "{err}");
}
