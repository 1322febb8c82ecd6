//! Registries and archives with real peers: Debian's `docker-registry` (distribution 2.8) started per test on
//! 127.0.0.1 with a free port (and htpasswd basic auth where needed), `skopeo` as the independent oracle, and a
//! tiny in-test HTTP server for what a real registry never does (serve tampered blobs, demand Bearer tokens).
//! Nothing here talks to anything but loopback.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::util::{can_run_containers, store_state, Run, TestEngine};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A `GET path` on loopback, returning the status code (None if the server is not answering yet).
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A real distribution registry on 127.0.0.1, killed when dropped.
pub(crate) struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub(crate) fn start() -> Registry {
        Registry::start_with_auth(None)
    }

    /// With `Some((user, password))`, the registry requires htpasswd basic auth.
    pub(crate) fn start_with_auth(auth: Option<(&str, &str)>) -> Registry {
        assert!(Path::new(REGISTRY_BIN).exists(), "{REGISTRY_BIN} is missing: run script/bootstrap");
        let dir = tempfile::tempdir().expect("registry dir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = auth {
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("htpasswd");
            config
                .push_str(&format!("auth:\n  htpasswd:\n    realm: drydock-test\n    path: {}\n", htpasswd.display()));
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).expect("config");
        let log = fs::File::create(dir.path().join("log")).expect("log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Registry { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match http_status(port, "/v2/") {
                Some(200 | 401) => break,
                _ if Instant::now() > deadline => panic!("docker-registry did not answer on port {port}"),
                _ => {}
            }
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited: {status}");
            }
            thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An engine plus its own docker config directory (credentials never touch the real `~/.docker`).
struct Client {
    engine: TestEngine,
    docker_config: tempfile::TempDir,
}

impl Client {
    fn new(engine: TestEngine) -> Client {
        Client { engine, docker_config: tempfile::tempdir().expect("docker config dir") }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.engine.cmd(args);
        c.env("DOCKER_CONFIG", self.docker_config.path()).env_remove("DRYDOCK_INSECURE_REGISTRIES");
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::of(&mut self.cmd(args))
    }

    fn run_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        Run::with_stdin(&mut self.cmd(args), input)
    }

    fn id(&self, image: &str) -> String {
        self.run(&["inspect", "-f", "{{.Id}}", image]).success().stdout().trim().to_owned()
    }

    fn root(&self) -> &Path {
        self.engine.root()
    }
}

fn skopeo(args: &[&str]) -> Run {
    Run::of(Command::new("skopeo").args(args))
}

fn digest_line(run: &Run) -> String {
    let out = run.stdout();
    out.lines()
        .find_map(|l| l.split(" digest: ").nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_owned))
        .unwrap_or_else(|| panic!("no digest line in:\n{out}"))
}

#[test]
fn push_is_seen_by_skopeo_and_a_second_push_skips_layers() {
    let reg = Registry::start();
    let c = Client::new(TestEngine::with_busybox());
    let name = format!("{}/app:v1", reg.host());
    c.run(&["tag", "busybox", &name]).success();
    let first = c.run(&["push", &name]).success();
    let out = first.stdout();
    assert!(out.starts_with(&format!("The push refers to repository [{}/app]\n", reg.host())), "{out}");
    assert!(out.contains(": Pushed\n"), "{out}");
    let digest = digest_line(&first);
    assert!(
        out.ends_with(&format!("v1: digest: {digest} size: {}\n", out.trim_end().rsplit(' ').next().unwrap_or(""))),
        "{out}"
    );

    let inspect = skopeo(&["inspect", "--tls-verify=false", &format!("docker://{name}")]).success().json();
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    let dest = tempfile::tempdir().expect("dir");
    let dest = dest.path().join("copy");
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{name}"), &format!("dir:{}", dest.display())])
        .success();
    assert!(dest.join("manifest.json").is_file());

    let second = c.run(&["push", &name]).success();
    assert!(!second.stdout().contains("Pushed"), "{}", second.stdout());
    second.stdout_has(": Layer already exists\n").stdout_has(&format!("v1: digest: {digest} "));
    c.run(&["inspect", "-f", "{{json .RepoDigests}}", &name])
        .success()
        .stdout_has(&format!("{}/app@{digest}", reg.host()));
    c.run(&["push", "-q", &name]).success().stdout_is(&format!("{name}\n"));
}

#[test]
fn push_rmi_pull_gives_back_a_runnable_image() {
    let reg = Registry::start();
    let c = Client::new(TestEngine::with_busybox());
    let name = format!("{}/team/app:1.0", reg.host());
    let id = c.id("busybox");
    c.run(&["tag", "busybox", &name]).success();
    let digest = digest_line(&c.run(&["push", &name]).success());
    c.run(&["rmi", "busybox", &name]).success();
    c.run(&["images", "-q"]).success().stdout_is("");

    let pull = c.run(&["pull", &name]).success();
    let out = pull.stdout();
    let expected_tail = format!("Digest: {digest}\nStatus: Downloaded newer image for {name}\n{name}\n");
    assert!(out.starts_with("1.0: Pulling from team/app\n"), "{out}");
    assert!(
        out.contains(": Pulling fs layer\n") && out.contains(": Downloading\n") && out.contains(": Pull complete\n"),
        "{out}"
    );
    assert!(out.ends_with(&expected_tail), "{out}");
    assert_eq!(c.id(&name), id, "the same image comes back");
    let inspect = c.run(&["inspect", &name]).success().json();
    assert_eq!(inspect[0]["RepoDigests"], serde_json::json!([format!("{}/team/app@{digest}", reg.host())]));
    assert_eq!(inspect[0]["RepoTags"], serde_json::json!([name]));
    for layer in inspect[0]["RootFS"]["Layers"].as_array().expect("layers") {
        let hex = layer.as_str().and_then(|l| l.strip_prefix("sha256:")).expect("diff id");
        assert!(c.root().join("layers").join(hex).join("bin").is_dir(), "layer {hex} is unpacked");
    }
    c.run(&["pull", &name]).success().stdout_has(&format!("Status: Image is up to date for {name}\n"));
    c.run(&["pull", "-q", &format!("{}/team/app@{digest}", reg.host())])
        .success()
        .stdout_is(&format!("{}/team/app@{digest}\n", reg.host()));
    if can_run_containers() {
        c.run(&["run", "--rm", &name, "echo", "pulled and running"]).success().stdout_is("pulled and running\n");
    }
    // The digest names go with the last tag, as in docker.
    c.run(&["rmi", &name]).success().stdout_has("Untagged: ").stdout_has("Deleted: ");
    c.run(&["images", "-q"]).success().stdout_is("");
    c.run(&["pull", &format!("{}/team/app:nope", reg.host())]).code_is(125).stderr_has(&format!(
        "manifest unknown: {}/team/app:nope not found in {}",
        reg.host(),
        reg.host()
    ));
}

#[test]
fn pushing_to_another_repository_mounts_the_layers() {
    let reg = Registry::start();
    let c = Client::new(TestEngine::with_busybox());
    let first = format!("{}/app:1", reg.host());
    let second = format!("{}/other/app:1", reg.host());
    c.run(&["tag", "busybox", &first]).success();
    c.run(&["tag", "busybox", &second]).success();
    c.run(&["push", &first]).success();
    let out = c.run(&["push", &second]).success().stdout();
    assert!(out.contains(": Mounted from app\n"), "{out}");
    assert!(!out.contains("Pushed"), "{out}");
    skopeo(&["inspect", "--tls-verify=false", &format!("docker://{second}")]).success();
}

#[test]
fn pulls_what_skopeo_pushed() {
    let reg = Registry::start();
    let source = Client::new(TestEngine::with_busybox());
    let id = source.id("busybox");
    let target = format!("docker://{}/other:1", reg.host());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:docker.io/library/busybox:latest", source.root().display()),
        &target,
    ])
    .success();
    let c = Client::new(TestEngine::new());
    let name = format!("{}/other:1", reg.host());
    c.run(&["pull", &name]).success().stdout_has("Pull complete");
    assert_eq!(c.id(&name), id);
}

/// An OCI layout holding an index with busybox as linux/amd64 and an arm64 twin (same layer, other config).
fn multi_platform_layout(source: &Client) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("layout");
    let layout = dir.path().join("oci");
    skopeo(&[
        "copy",
        &format!("oci:{}:docker.io/library/busybox:latest", source.root().display()),
        &format!("oci:{}:x", layout.display()),
    ])
    .success();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("json");
    let amd64 = index["manifests"][0].clone();
    let blob = |d: &str| layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(amd64["digest"].as_str().expect("digest"))).expect("manifest"))
            .expect("json");
    let mut config: serde_json::Value = serde_json::from_slice(
        &fs::read(blob(manifest["config"]["digest"].as_str().expect("config"))).expect("config"),
    )
    .expect("json");
    config["architecture"] = "arm64".into();
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_digest = sha256(&config_bytes);
    fs::write(blob(&config_digest), &config_bytes).expect("write");
    let mut arm = manifest.clone();
    arm["config"]["digest"] = config_digest.clone().into();
    arm["config"]["size"] = config_bytes.len().into();
    let arm_bytes = serde_json::to_vec(&arm).expect("json");
    fs::write(blob(&sha256(&arm_bytes)), &arm_bytes).expect("write");
    let nested = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(&arm_bytes), "size": arm_bytes.len(),
              "platform": { "os": "linux", "architecture": "arm64", "variant": "v8" } },
            { "mediaType": amd64["mediaType"], "digest": amd64["digest"], "size": amd64["size"],
              "platform": { "os": "linux", "architecture": "amd64" } },
        ]
    });
    let nested_bytes = serde_json::to_vec(&nested).expect("json");
    fs::write(blob(&sha256(&nested_bytes)), &nested_bytes).expect("write");
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(&nested_bytes),
                        "size": nested_bytes.len(), "annotations": { "org.opencontainers.image.ref.name": "multi" } }]
    });
    fs::write(layout.join("index.json"), serde_json::to_vec(&top).expect("json")).expect("write");
    (dir, config_digest)
}

#[test]
fn a_manifest_list_resolves_to_linux_amd64() {
    let reg = Registry::start();
    let source = Client::new(TestEngine::with_busybox());
    let amd64_id = source.id("busybox");
    let (dir, arm_id) = multi_platform_layout(&source);
    let name = format!("{}/multi:1", reg.host());
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", dir.path().join("oci").display()),
        &format!("docker://{name}"),
    ])
    .success();
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{name}")]).success().json();
    assert_eq!(raw["manifests"].as_array().map(Vec::len), Some(2), "the registry serves an index");

    let c = Client::new(TestEngine::new());
    let out = c.run(&["pull", &name]).success().stdout();
    assert_eq!(c.id(&name), amd64_id, "{out}");
    let list_digest = out.lines().find_map(|l| l.strip_prefix("Digest: ")).expect("digest line").to_owned();
    assert_eq!(
        c.run(&["inspect", "-f", "{{json .RepoDigests}}", &name]).success().stdout().trim(),
        format!("[\"{}/multi@{list_digest}\"]", reg.host())
    );
    c.run(&["inspect", "-f", "{{.Id}}", &format!("{}/multi@{list_digest}", reg.host())])
        .success()
        .stdout_is(&format!("{amd64_id}\n"));

    let arm = format!("{}/multi:1", reg.host());
    let c2 = Client::new(TestEngine::new());
    c2.run(&["pull", "--platform", "linux/arm64", &arm]).success();
    assert_eq!(c2.id(&arm), arm_id);
    c2.run(&["pull", "--platform", "linux/s390x", &arm])
        .code_is(125)
        .stderr_has("no manifest for linux/s390x")
        .stderr_has("linux/arm64/v8, linux/amd64");
}

#[test]
fn basic_auth_needs_login_and_logout_forgets() {
    let reg = Registry::start_with_auth(Some(("ci", "s3cret")));
    let c = Client::new(TestEngine::with_busybox());
    let name = format!("{}/private:1", reg.host());
    c.run(&["tag", "busybox", &name]).success();
    c.run(&["push", &name])
        .code_is(125)
        .stderr_has("unauthorized")
        .stderr_has("HTTP 401")
        .stderr_has(&format!("run `engine login {}`", reg.host()));

    c.run_stdin(&["login", "-u", "ci", "--password-stdin", &reg.host()], b"wrong\n").code_is(125).stderr_has("refused");
    assert!(!c.docker_config.path().join("config.json").exists(), "nothing saved after a refused login");
    c.run_stdin(&["login", "-u", "ci", "--password-stdin", &reg.host()], b"s3cret\n")
        .success()
        .stdout_is("Login Succeeded\n");
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(c.docker_config.path().join("config.json")).expect("config.json"))
            .expect("json");
    assert!(config["auths"][reg.host()]["auth"].is_string(), "{config}");

    c.run(&["push", &name]).success().stdout_has("Pushed");
    skopeo(&["inspect", "--tls-verify=false", "--creds", "ci:s3cret", &format!("docker://{name}")]).success();
    c.run(&["rmi", &name]).success();
    c.run(&["pull", &name]).success().stdout_has("Status: Downloaded newer image");

    c.run(&["logout", &reg.host()]).success().stdout_is(&format!("Removing login credentials for {}\n", reg.host()));
    c.run(&["logout", &reg.host()]).success().stdout_is(&format!("Not logged in to {}\n", reg.host()));
    c.run(&["pull", &name]).code_is(125).stderr_has("unauthorized");
}

/// A registry written for the test: answers from a table of (method, path) → (status, headers, body), and
/// with `token` set, demands `Authorization: Bearer <token>` obtained from `/token`.
struct FakeRegistry {
    port: u16,
    stop: Arc<AtomicBool>,
}

type Routes = HashMap<(String, String), (u16, Vec<(String, String)>, Vec<u8>)>;

impl FakeRegistry {
    fn start(routes: Routes, token: Option<&'static str>) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let routes = Arc::new(routes);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let routes = routes.clone();
                thread::spawn(move || serve_connection(conn, &routes, port, token));
            }
        });
        FakeRegistry { port, stop }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_connection(conn: TcpStream, routes: &Routes, port: u16, token: Option<&str>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut writer) = conn.try_clone() else { return };
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = target.split('?').next().unwrap_or("").to_owned();
        let authorized =
            token.is_none_or(|t| headers.get("authorization").map(String::as_str) == Some(&format!("Bearer {t}")));
        let (status, extra, payload): (u16, Vec<(String, String)>, Vec<u8>) = if path == "/token" {
            (200, vec![], format!("{{\"token\":\"{}\"}}", token.unwrap_or("")).into_bytes())
        } else if !authorized {
            let challenge = format!(
                "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"repository:evil:pull\""
            );
            (401, vec![("WWW-Authenticate".into(), challenge)], b"{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}".to_vec())
        } else if path == "/v2/" {
            (200, vec![], b"{}".to_vec())
        } else {
            routes.get(&(method.clone(), path)).cloned().unwrap_or((
                404,
                vec![],
                b"{\"errors\":[{\"code\":\"NOT_FOUND\"}]}".to_vec(),
            ))
        };
        let mut response = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", payload.len());
        // A route with `X-Test-Drop` announces its whole body, sends half of it and hangs up.
        let drop_midway = extra.iter().any(|(k, _)| k == "X-Test-Drop");
        for (k, v) in extra {
            response.push_str(&format!("{k}: {v}\r\n"));
        }
        response.push_str("\r\n");
        let body = if drop_midway { &payload[..payload.len() / 2] } else { &payload[..] };
        if writer.write_all(response.as_bytes()).is_err() || (method != "HEAD" && writer.write_all(body).is_err()) {
            return;
        }
        if drop_midway {
            let _ = writer.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// Routes serving a one-layer image whose layer blob is `served` while the manifest claims `layer`.
fn image_routes(repo: &str, layer: &[u8], served: &[u8]) -> (Routes, String) {
    let diff_id = sha256(layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "rootfs": { "type": "layers", "diff_ids": [diff_id] }
    }))
    .expect("json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer), "size": layer.len() }]
    }))
    .expect("json");
    let ct = |t: &str| vec![("Content-Type".to_owned(), t.to_owned())];
    let mut routes = Routes::new();
    let manifest_digest = sha256(&manifest);
    for reference in ["latest", manifest_digest.as_str()] {
        routes.insert(
            ("GET".into(), format!("/v2/{repo}/manifests/{reference}")),
            (200, ct("application/vnd.oci.image.manifest.v1+json"), manifest.clone()),
        );
    }
    routes.insert(("GET".into(), format!("/v2/{repo}/blobs/{}", sha256(&config))), (200, vec![], config.clone()));
    routes.insert(("GET".into(), format!("/v2/{repo}/blobs/{}", sha256(layer))), (200, vec![], served.to_vec()));
    (routes, manifest_digest)
}

fn small_layer(content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "hello.txt", content).expect("append");
    b.into_inner().expect("tar")
}

#[test]
fn a_tampered_blob_fails_verification_and_changes_nothing() {
    let layer = small_layer(b"the real content");
    let tampered = small_layer(b"the evil content");
    assert_eq!(layer.len(), tampered.len());
    let (routes, _) = image_routes("evil", &layer, &tampered);
    let fake = FakeRegistry::start(routes, None);
    let c = Client::new(TestEngine::with_busybox());
    let before = store_state(c.root());
    c.run(&["pull", &format!("{}/evil:latest", fake.host())])
        .code_is(125)
        .stderr_has("failed verification")
        .stderr_has(&sha256(&layer))
        .stderr_has(&format!("{}/evil", fake.host()));
    assert_eq!(store_state(c.root()), before, "a failed pull left something behind");

    // A manifest asked for by digest must hash to it.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let (mut routes, manifest_digest) = image_routes("evil", &layer, &layer);
    let good =
        routes.get(&("GET".to_owned(), format!("/v2/evil/manifests/{manifest_digest}"))).cloned().expect("route");
    routes.insert(("GET".into(), format!("/v2/evil/manifests/{wrong}")), good);
    let fake = FakeRegistry::start(routes, None);
    c.run(&["pull", &format!("{}/evil@{wrong}", fake.host())]).code_is(125).stderr_has("failed verification");
    assert_eq!(store_state(c.root()), before);
    // The honest image from the same server pulls fine.
    c.run(&["pull", &format!("{}/evil:latest", fake.host())]).success().stdout_has("Pull complete");
}

#[test]
fn registry_errors_and_a_dropped_connection_are_clear_and_store_nothing() {
    let layer = small_layer(b"a layer that will not arrive");
    let blob_route = ("GET".to_owned(), format!("/v2/flaky/blobs/{}", sha256(&layer)));
    let c = Client::new(TestEngine::with_busybox());
    let before = store_state(c.root());

    // A server error on the layer (after the engine's retries).
    let (mut routes, _) = image_routes("flaky", &layer, &layer);
    routes.insert(blob_route.clone(), (500, vec![], b"{\"errors\":[{\"code\":\"UNKNOWN\"}]}".to_vec()));
    let fake = FakeRegistry::start(routes, None);
    c.run(&["pull", &format!("{}/flaky:latest", fake.host())]).code_is(125).stderr_has("500");
    assert_eq!(store_state(c.root()), before, "a failed pull left something behind");

    // The connection dropped halfway through the layer.
    let (mut routes, _) = image_routes("flaky", &layer, &layer);
    routes.insert(blob_route, (200, vec![("X-Test-Drop".into(), "1".into())], layer.clone()));
    let fake = FakeRegistry::start(routes, None);
    c.run(&["pull", &format!("{}/flaky:latest", fake.host())])
        .code_is(125)
        .stderr_has("broke while downloading layer")
        .stderr_has("from flaky")
        .stderr_has("nothing was stored");
    assert_eq!(store_state(c.root()), before, "a dropped pull left something behind");

    // An unknown image is a 404 named as such.
    c.run(&["pull", &format!("{}/nosuch:latest", fake.host())]).code_is(125).stderr_has("nosuch");
    assert_eq!(store_state(c.root()), before);
}

#[test]
fn bearer_token_auth_is_followed() {
    let layer = small_layer(b"token protected");
    let (routes, _) = image_routes("evil", &layer, &layer);
    let fake = FakeRegistry::start(routes, Some("t0k3n"));
    let c = Client::new(TestEngine::new());
    let name = format!("{}/evil:latest", fake.host());
    c.run(&["pull", &name]).success().stdout_has("Pull complete");
    c.run(&["inspect", "-f", "{{json .RepoTags}}", &name]).success().stdout_is(&format!("[\"{name}\"]\n"));
}

#[test]
fn save_then_load_round_trips_and_skopeo_reads_the_archive() {
    let src = Client::new(TestEngine::with_busybox());
    let id = src.id("busybox");
    let dir = tempfile::tempdir().expect("dir");
    let archive = dir.path().join("busybox.tar");
    let archive_s = archive.to_string_lossy().into_owned();
    src.run(&["save", "-o", &archive_s, "busybox"]).success().stdout_is("");
    let inspect = skopeo(&["inspect", &format!("docker-archive:{archive_s}")]).success().json();
    assert_eq!(inspect["Architecture"], "amd64");
    skopeo(&["inspect", &format!("oci-archive:{archive_s}")]).success();

    let dst = Client::new(TestEngine::new());
    dst.run(&["load", "-i", &archive_s]).success().stdout_is("Loaded image: busybox:latest\n");
    assert_eq!(dst.id("busybox"), id);
    // From a pipe, gzip'd: the same image again.
    let gz = Command::new("gzip").arg("-c").arg(&archive).output().expect("gzip").stdout;
    dst.run(&["rmi", "busybox"]).success();
    dst.run_stdin(&["load"], &gz).success().stdout_is("Loaded image: busybox:latest\n");
    assert_eq!(dst.id("busybox"), id);
    // Saved by ID, an image has no name.
    let by_id = dir.path().join("by-id.tar");
    src.run(&["save", "-o", &by_id.to_string_lossy(), &id[7..19]]).success();
    Client::new(TestEngine::new())
        .run(&["load", "-i", &by_id.to_string_lossy()])
        .success()
        .stdout_is(&format!("Loaded image ID: {id}\n"));
    // Saving twice gives the same bytes.
    let again = dir.path().join("again.tar");
    src.run(&["save", "-o", &again.to_string_lossy(), "busybox"]).success();
    assert!(fs::read(&again).ok() == fs::read(&archive).ok(), "save is reproducible");
}

#[test]
fn loads_archives_written_by_skopeo() {
    let src = Client::new(TestEngine::with_busybox());
    let id = src.id("busybox");
    let dir = tempfile::tempdir().expect("dir");
    let oci_src = format!("oci:{}:docker.io/library/busybox:latest", src.root().display());
    let docker_archive = dir.path().join("x.tar");
    skopeo(&["copy", &oci_src, &format!("docker-archive:{}:sk/box:1", docker_archive.display())]).success();
    let c = Client::new(TestEngine::new());
    c.run(&["load", "-i", &docker_archive.to_string_lossy()]).success().stdout_is("Loaded image: sk/box:1\n");
    assert_eq!(c.id("sk/box:1"), id);
    let oci_archive = dir.path().join("o.tar");
    skopeo(&["copy", &oci_src, &format!("oci-archive:{}:oci/box:2", oci_archive.display())]).success();
    c.run(&["load", "-q", "-i", &oci_archive.to_string_lossy()]).success().stdout_is("Loaded image: oci/box:2\n");
    assert_eq!(c.id("oci/box:2"), id);
}

/// A member's new (name, bytes), or `None` to drop it.
type MemberEdit<'a> = &'a dyn Fn(&str, Vec<u8>) -> Option<(String, Vec<u8>)>;

/// Rewrites an archive member by member through `edit`.
fn rewrite_tar(input: &Path, edit: MemberEdit<'_>) -> Vec<u8> {
    let mut archive = tar::Archive::new(fs::File::open(input).expect("open"));
    let mut out = tar::Builder::new(Vec::new());
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read");
        let Some((name, data)) = edit(&name, data) else { continue };
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(entry.header().entry_type());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        let gnu = h.as_gnu_mut().expect("gnu");
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        out.append(&h, &data[..]).expect("append");
    }
    out.into_inner().expect("tar")
}

#[test]
fn corrupt_and_hostile_archives_change_nothing() {
    let src = Client::new(TestEngine::with_busybox());
    let dir = tempfile::tempdir().expect("dir");
    let archive = dir.path().join("busybox.tar");
    src.run(&["save", "-o", &archive.to_string_lossy(), "busybox"]).success();
    let big_blob = |name: &str, data: &[u8]| name.starts_with("blobs/sha256/") && data.len() > 100_000;

    let c = Client::new(TestEngine::new());
    let before = store_state(c.root());
    let flipped = rewrite_tar(&archive, &|name, mut data| {
        if big_blob(name, &data) {
            let mid = data.len() / 2;
            data[mid] ^= 0xff;
        }
        Some((name.to_owned(), data))
    });
    c.run_stdin(&["load"], &flipped).code_is(125).stderr_has("hashes to").stderr_has("nothing was loaded");
    let missing = rewrite_tar(&archive, &|name, data| (!big_blob(name, &data)).then(|| (name.to_owned(), data)));
    c.run_stdin(&["load"], &missing).code_is(125).stderr_has("is missing");
    let truncated = fs::read(&archive).expect("read");
    c.run_stdin(&["load"], &truncated[..truncated.len() / 2]).code_is(125);
    let hostile = rewrite_tar(&archive, &|name, data| {
        let name = if name == "oci-layout" { "../../escaped".to_owned() } else { name.to_owned() };
        Some((name, data))
    });
    c.run_stdin(&["load"], &hostile).code_is(125).stderr_has("points outside the archive");
    assert!(!dir.path().join("escaped").exists());
    c.run_stdin(&["load"], b"not a tar at all").code_is(125);
    assert_eq!(store_state(c.root()), before, "a failed load left something behind");
}

#[test]
fn unreachable_registry_is_a_clear_error() {
    let port = free_port();
    let c = Client::new(TestEngine::new());
    c.run(&["pull", &format!("127.0.0.1:{port}/nothing:1")])
        .code_is(125)
        .stderr_has(&format!("cannot reach registry 127.0.0.1:{port}"));
}

/// podman as an independent oracle, with its own storage in a temp dir. It runs in a private mount namespace
/// without the hybrid host's cgroup2 mount (crun refuses hybrid mode, as in bench/run-latency), and its
/// containers get rlimits within this host's hard limits (the root shell lacks CAP_SYS_RESOURCE).
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        assert!(Path::new("/usr/bin/podman").exists(), "podman is missing: run script/bootstrap");
        Podman { dir: tempfile::tempdir().expect("podman storage") }
    }

    fn run(&self, args: &[&str]) -> Run {
        let storage = self.dir.path().join("storage").display().to_string();
        let runroot = self.dir.path().join("run").display().to_string();
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("umount /sys/fs/cgroup/unified 2>/dev/null; exec podman \"$@\"")
            .arg("podman")
            .args(["--root", &storage, "--runroot", &runroot, "--storage-driver", "overlay"])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(args);
        Run::of(&mut c)
    }

    fn run_container(&self, image: &str) -> Run {
        self.run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            image,
        ])
    }
}

#[test]
fn an_image_built_and_pushed_by_podman_is_pulled_and_run_by_the_engine() {
    if !can_run_containers() {
        return;
    }
    let registry = Registry::start();
    let podman = Podman::new();
    let ctx = tempfile::tempdir().expect("context");
    fs::copy(crate::util::busybox_tar(), ctx.path().join("busybox.tar.gz")).expect("copy busybox");
    fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nADD busybox.tar.gz /\nRUN echo built-by-podman > /greeting\nCMD [\"cat\", \"/greeting\"]\n",
    )
    .expect("Dockerfile");
    let image = format!("{}/oracle/podman:1", registry.host());
    podman.run(&["build", "--network", "none", "-t", &image, &ctx.path().display().to_string()]).success();
    podman.run(&["push", "--tls-verify=false", &image]).success();

    let client = Client::new(TestEngine::new());
    client.run(&["pull", &image]).success();
    client.run(&["run", "--rm", "--network", "none", &image]).success().stdout_is("built-by-podman\n");
}

#[test]
fn an_archive_saved_by_the_engine_is_loaded_and_run_by_podman() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    e.run(["run", "--name", "mk", "--network", "none", "busybox", "sh", "-c", "echo from-drydock > /msg"]).success();
    e.run(["commit", "-c", "CMD [\"cat\", \"/msg\"]", "mk", "ours:1"]).success();
    let dir = tempfile::tempdir().expect("archive dir");
    let archive = dir.path().join("ours.tar").display().to_string();
    e.run(["save", "-o", &archive, "ours:1"]).success();

    let podman = Podman::new();
    podman.run(&["load", "-i", &archive]).success().stdout_has("Loaded image: docker.io/library/ours:1");
    podman.run_container("docker.io/library/ours:1").success().stdout_is("from-drydock\n");
}

/// `runner exec` pulls a private primary image with the image entry's `auth:`, its `$VAR` taken from a project
/// variable; without the variable the pull is refused and the job exits 1 naming the image.
#[test]
fn runner_exec_pulls_a_private_image_with_the_jobs_auth() {
    if !can_run_containers() {
        return;
    }
    let reg = Registry::start_with_auth(Some(("ci", "s3cret")));
    let c = Client::new(TestEngine::with_busybox());
    let name = format!("{}/private:1", reg.host());
    c.run(&["tag", "busybox", &name]).success();
    c.run_stdin(&["login", "-u", "ci", "--password-stdin", &reg.host()], b"s3cret\n").success();
    c.run(&["push", &name]).success();

    let e = TestEngine::new();
    let project = tempfile::tempdir().expect("project");
    fs::create_dir_all(project.path().join(".circleci")).expect("mkdir");
    fs::write(
        project.path().join(".circleci/config.yml"),
        format!(
            "version: 2.1\njobs:\n  build:\n    docker:\n      - image: {name}\n        auth: {{username: ci, password: $REG_PASSWORD}}\n\
             \x20   steps: [{{run: echo pulled and running}}]\nworkflows:\n  main:\n    jobs: [build]\n"
        ),
    )
    .expect("config");
    let no_login = tempfile::tempdir().expect("docker config");
    let runner = |args: &[&str]| {
        let mut cmd = Command::new(crate::util::bin_dir().join("runner"));
        cmd.arg("exec").args(args).current_dir(project.path()).env("DRYDOCK_ROOT", e.root());
        cmd.env("DOCKER_CONFIG", no_login.path()).env_remove("DRYDOCK_INSECURE_REGISTRIES");
        Run::of(&mut cmd)
    };
    runner(&[]).code_is(1).stdout_has(&format!("cannot pull image {name}")).stdout_has("unauthorized");
    runner(&["-e", "REG_PASSWORD=s3cret"])
        .success()
        .stdout_has(&format!("Pulling {name}\n"))
        .stdout_has("pulled and running\n");
    assert!(!no_login.path().join("config.json").exists(), "the user's docker config is not written");
}

/// The flow end to end: `engine build` → `push` → skopeo sees our manifest and config (with the built
/// image's history and CMD) → a pull into a fresh engine root runs.
#[test]
fn a_built_image_is_pushed_read_by_skopeo_and_runs_after_a_pull_elsewhere() {
    if !can_run_containers() {
        return;
    }
    let reg = Registry::start();
    let c = Client::new(TestEngine::with_busybox());
    let ctx = tempfile::tempdir().expect("context");
    fs::write(ctx.path().join("msg.txt"), "shipped\n").expect("file");
    fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nCOPY msg.txt /msg.txt\nRUN echo built >> /msg.txt\nCMD [\"cat\", \"/msg.txt\"]\n",
    )
    .expect("Dockerfile");
    let name = format!("{}/built/app:1", reg.host());
    c.run(&["build", "--network", "none", "-t", &name, &ctx.path().display().to_string()]).success();
    let pushed = c.run(&["push", &name]).success();
    let digest = digest_line(&pushed);

    let inspect = skopeo(&["inspect", "--tls-verify=false", &format!("docker://{name}")]).success().json();
    assert_eq!(inspect["Digest"], digest.as_str());
    let config = skopeo(&["inspect", "--config", "--tls-verify=false", &format!("docker://{name}")]).success().json();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["cat", "/msg.txt"]), "{config}");
    let history = config["history"].as_array().map(Vec::len).unwrap_or(0);
    assert!(history >= 3, "the build's steps are in the history: {config}");

    let fresh = Client::new(TestEngine::new());
    fresh.run(&["pull", &name]).success();
    fresh.run(&["run", "--rm", "--network", "none", &name]).success().stdout_is("shipped\nbuilt\n");
}
