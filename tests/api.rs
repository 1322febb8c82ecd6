//! `engine serve` driven by the real `docker` CLI (a static client on the PATH) and by raw HTTP over the unix
//! socket: version negotiation, `run` with attached output and exit codes, detached runs with logs, stop and
//! rm, `ps`, `inspect`, images, and bad input (malformed bodies, unknown objects) answered with docker's
//! statuses while the server keeps serving. Each test starts its own server on a TestEngine root.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{bin_dir, busybox_tar, can_run_containers, eventually, Run, TestEngine};

/// `engine serve` on a socket in a temp dir, killed when dropped.
struct Server {
    child: Child,
    socket: PathBuf,
    /// Holds the socket and the docker CLI's config directory.
    dir: tempfile::TempDir,
}

impl Server {
    fn start(e: &TestEngine) -> Server {
        Server::start_with(e, &[])
    }

    /// `engine serve` with extra arguments (`--scope …`).
    fn start_with(e: &TestEngine, extra: &[&str]) -> Server {
        let dir = tempfile::Builder::new().prefix("drydock-api-").tempdir().expect("temp dir");
        let socket = dir.path().join("engine.sock");
        let mut child = Command::new(bin_dir().join("engine"))
            .arg("--root")
            .arg(e.root())
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn engine serve");
        // Ready when the socket accepts a connection; a server that exits instead fails the test at once.
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if UnixStream::connect(&socket).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().expect("poll engine serve") {
                panic!("engine serve exited before listening: {status}");
            }
            assert!(Instant::now() < end, "engine serve did not listen on {} within 30 s", socket.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        Server { child, socket, dir }
    }

    /// `docker ARGS` against this server (with an empty docker config, so the host's cannot interfere).
    fn docker<const N: usize>(&self, args: [&str; N]) -> Run {
        let mut c = Command::new(docker_bin());
        // The classic builder's API (`POST /build`); BuildKit sessions are not served.
        c.env("DOCKER_BUILDKIT", "0");
        c.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null());
        Run::of(&mut c)
    }

    /// One HTTP/1.1 request on a fresh connection: (status, body).
    fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        raw_http(&self.socket, method, path, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn raw_http(socket: &Path, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(socket).expect("connect to engine serve");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("send request");
    // The server may answer (413) and close before it has read an oversize body: a failed write is part of that.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The docker CLI this suite drives (`DOCKER_BIN`, else `docker` on the PATH); its absence fails the test.
fn docker_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("DOCKER_BIN") {
        return bin.into();
    }
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("docker")).find(|f| f.is_file()))
        .expect(
            "the docker CLI is needed by the API tests: install a static docker client on the PATH or set DOCKER_BIN",
        )
}

fn server() -> Option<(TestEngine, Server)> {
    if !can_run_containers() {
        return None;
    }
    let e = TestEngine::with_busybox();
    let s = Server::start(&e);
    Some((e, s))
}

#[test]
fn api_docker_version_and_ping_negotiate_the_api() {
    let Some((_e, s)) = server() else { return };
    s.docker(["version"])
        .success()
        .stdout_has("Server: Drydock Engine")
        .stdout_has("API version:      1.44 (minimum version 1.24)");
    let (status, body) = s.http("GET", "/_ping", b"");
    assert_eq!((status, body.as_str()), (200, "OK"));
    let (status, body) = s.http("GET", "/v1.44/version", b"");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("version JSON");
    assert_eq!((v["ApiVersion"].as_str(), v["MinAPIVersion"].as_str()), (Some("1.44"), Some("1.24")));
    let (status, body) = s.http("GET", "/v1.12/version", b"");
    assert_eq!(status, 400);
    assert!(body.contains("client version 1.12 is too old"), "{body}");
    let (status, body) = s.http("GET", "/v1.44/swarm", b"");
    assert_eq!(status, 404);
    assert!(body.contains("GET /swarm is not part of the Docker Engine API subset"), "{body}");
}

#[test]
fn api_ping_headers_name_the_api_version_and_os() {
    let Some((_e, s)) = server() else { return };
    let mut c = UnixStream::connect(&s.socket).expect("connect");
    c.write_all(b"HEAD /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n").expect("send");
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read");
    let lower = out.to_ascii_lowercase();
    for header in ["api-version: 1.44", "ostype: linux", "builder-version: 1"] {
        assert!(lower.contains(header), "missing {header} in {out}");
    }
}

#[test]
fn api_docker_run_rm_prints_output_and_passes_the_exit_code() {
    let Some((e, s)) = server() else { return };
    s.docker(["run", "--rm", "busybox", "echo", "hi"]).success().stdout_is("hi\n");
    s.docker(["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"])
        .code_is(3)
        .stdout_is("out\n")
        .stderr_has("err");
    let mut c = Command::new(docker_bin());
    c.args(["run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z; echo done"])
        .env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
        .env("DOCKER_CONFIG", s.dir.path().join("docker-config"));
    Run::with_stdin(&mut c, b"through attach\n").success().stdout_is("THROUGH ATTACH\ndone\n");
    // The stream ends on the monitor's exit report, before its --rm cleanup: nothing may be cut off.
    let many = s.docker(["run", "--rm", "busybox", "sh", "-c", "seq 1 50000; seq 1 3000 >&2"]).success();
    let lines: Vec<&str> = many
        .out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| std::str::from_utf8(l).expect("utf-8"))
        .collect();
    assert_eq!((lines.len(), lines.last().copied()), (50000, Some("50000")));
    assert!(
        many.stderr().ends_with("\n3000\n"),
        "stderr cut off: {:?}",
        &many.stderr()[many.stderr().len().saturating_sub(20)..]
    );
    // --rm removed them: nothing left in the store either.
    s.docker(["ps", "-a", "-q"]).success().stdout_is("");
    e.run(["ps", "-a", "-q"]).success().stdout_is("");
}

#[test]
fn api_docker_run_detached_logs_stop_and_rm() {
    let Some((_e, s)) = server() else { return };
    let id = s
        .docker([
            "run",
            "-d",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "echo ready; trap 'exit 0' TERM; while true; do sleep 0.1; done",
        ])
        .success()
        .stdout()
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64, "docker run -d prints the full ID: {id}");
    // `logs -f` would follow forever; poll the log until the container has written its line.
    let end = Instant::now() + Duration::from_secs(20);
    while !s.docker(["logs", "web"]).success().stdout().contains("ready") {
        assert!(Instant::now() < end, "the container never logged `ready`");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.docker(["ps"]).success().stdout_has(&id[..12]).stdout_has("web").stdout_has("Up ");
    let inspect = s.docker(["inspect", "web"]).success().json();
    assert_eq!(inspect[0]["Id"].as_str(), Some(id.as_str()));
    assert_eq!(inspect[0]["State"]["Running"].as_bool(), Some(true));
    s.docker(["inspect", "--format", "{{.Config.Image}}", "web"]).success().stdout_is("busybox\n");
    s.docker(["stop", "web"]).success().stdout_is("web\n");
    s.docker(["ps", "-a"]).success().stdout_has("Exited (0)");
    s.docker(["rm", "web"]).success().stdout_is("web\n");
    s.docker(["ps", "-a", "-q"]).success().stdout_is("");
}

#[test]
fn api_images_list_inspect_tag_and_remove() {
    let Some((_e, s)) = server() else { return };
    s.docker(["images"]).success().stdout_has("busybox").stdout_has("latest");
    s.docker(["tag", "busybox", "localhost:5000/team/box:v1"]).success();
    s.docker(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .success()
        .stdout_has("localhost:5000/team/box:v1\n")
        .stdout_has("busybox:latest\n");
    let inspect = s.docker(["image", "inspect", "localhost:5000/team/box:v1"]).success().json();
    let tags = inspect[0]["RepoTags"].as_array().expect("RepoTags").clone();
    assert!(tags.contains(&"busybox:latest".into()) && tags.contains(&"localhost:5000/team/box:v1".into()), "{tags:?}");
    s.docker(["rmi", "localhost:5000/team/box:v1"]).success().stdout_is("Untagged: localhost:5000/team/box:v1\n");
    s.docker(["rmi", "nosuch:image"]).code_is(1).stderr_has("No such image: nosuch:image");
    s.docker(["image", "inspect", "busybox"]).success();
}

#[test]
fn api_docker_import_makes_an_image_from_a_tar_and_refuses_a_corrupt_one() {
    let Some((_e, s)) = server() else { return };
    let tar = busybox_tar().to_string_lossy().into_owned();
    let out = s
        .docker([
            "import",
            "-c",
            "CMD [\"echo\", \"from the imported image\"]",
            "-m",
            "over the API",
            &tar,
            "imported:v1",
        ])
        .success();
    let id = out.stdout().trim().to_owned();
    assert!(id.starts_with("sha256:") && id.len() == 71, "docker import prints the image ID: {id:?}");
    s.docker(["run", "--rm", "imported:v1"]).success().stdout_is("from the imported image\n");
    let history = s.docker(["history", "--format", "{{.Comment}}", "imported:v1"]).success();
    history.stdout_has("over the API");
    // The tar from stdin, as `cat x.tar | docker import - name` sends it.
    let mut c = Command::new(docker_bin());
    c.args(["import", "-", "from-stdin:latest"])
        .env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
        .env("DOCKER_CONFIG", s.dir.path().join("docker-config"))
        .stdin(std::fs::File::open(busybox_tar()).expect("open the busybox tar"));
    Run::of(&mut c).success();
    s.docker(["image", "inspect", "from-stdin"]).success();

    // A truncated tar: an error naming the problem, no image, and the server keeps serving.
    let bytes = std::fs::read(busybox_tar()).expect("read the busybox tar");
    let dir = tempfile::tempdir().expect("temp dir");
    let cut = dir.path().join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write a truncated tar");
    s.docker(["import", &cut.to_string_lossy(), "broken:v1"]).code_is(1).stderr_has("corrupt or truncated");
    s.docker(["image", "inspect", "broken:v1"]).code_is(1);
    let (status, body) = s.http("POST", "/images/create?fromSrc=http://example.invalid/x.tar", b"");
    assert_eq!(status, 501, "{body}");
    s.docker(["images"]).success().stdout_has("imported");
}

#[test]
fn api_tty_containers_and_execs_take_the_clients_terminal_size_and_resizes() {
    let Some((_e, s)) = server() else { return };
    // The docker CLI on a 13x77 terminal (script(1) gives it one) sends ConsoleSize with create and exec start.
    let docker = docker_bin();
    let script = format!(
        "stty cols 77 rows 13; {d} run --rm -it busybox stty size; {d} run -d -t --name sized busybox sleep 300 >/dev/null; \
         {d} exec -it sized stty size",
        d = docker.display()
    );
    let out = Command::new("script")
        .args(["-qec", &script, "/dev/null"])
        .env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
        .env("DOCKER_CONFIG", s.dir.path().join("docker-config"))
        .output()
        .expect("script(1) from bsdutils");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("13 77").count(), 2, "run -it and exec -it see the caller's size: {text:?}");

    // A resize of the running container reaches its pty (the stdin of its process 1).
    let (status, body) = s.http("POST", "/containers/sized/resize?h=40&w=100", b"");
    assert_eq!(status, 200, "{body}");
    let size = || s.docker(["exec", "sized", "stty", "-F", "/proc/1/fd/0", "size"]).success().stdout();
    assert!(eventually(10, || size() == "40 100\n"), "container resize applied: {:?}", size());
    // A resize of a running exec reaches the pty of that exec.
    let (status, body) = s.http(
        "POST",
        "/containers/sized/exec",
        br#"{"Cmd": ["sh", "-c", "sleep 1; stty size > /tmp/exec-size"], "Tty": true}"#,
    );
    assert_eq!(status, 201, "{body}");
    let exec: serde_json::Value = serde_json::from_str(&body).expect("exec create answer");
    let id = exec["Id"].as_str().expect("exec Id").to_owned();
    let (status, body) = s.http("POST", &format!("/exec/{id}/start"), br#"{"Detach": true, "Tty": true}"#);
    assert_eq!(status, 200, "{body}");
    let (status, body) = s.http("POST", &format!("/exec/{id}/resize?h=33&w=99"), b"");
    assert_eq!(status, 200, "{body}");
    let written = || s.docker(["exec", "sized", "cat", "/tmp/exec-size"]).stdout();
    assert!(eventually(10, || written() == "33 99\n"), "exec resize applied: {:?}", written());
    // Bad sizes are a 400; a stopped container cannot be resized.
    assert_eq!(s.http("POST", "/containers/sized/resize?h=0&w=80", b"").0, 400);
    assert_eq!(s.http("POST", "/containers/sized/resize?w=80", b"").0, 400);
    s.docker(["rm", "-f", "sized"]).success();
    s.docker(["create", "-t", "--name", "idle", "busybox", "sh"]).success();
    assert_eq!(s.http("POST", "/containers/idle/resize?h=10&w=10", b"").0, 409);
}

#[test]
fn api_bad_input_gets_docker_statuses_and_the_server_keeps_serving() {
    let Some((_e, s)) = server() else { return };
    let (status, body) = s.http("POST", "/v1.44/containers/create", br#"{"Image": "busybox", "Cmd": ["#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(r#"{"message":"invalid JSON in the request body: "#), "{body}");
    assert!(body.contains("line 1 column"), "the message says where: {body}");
    let (status, body) = s.http("POST", "/v1.44/containers/create", br#"{"Image": "busybox", "Tty": "yes"}"#);
    assert_eq!(status, 400, "{body}");
    let (status, body) = s.http("POST", "/v1.44/containers/create", br#"{"Cmd": ["true"]}"#);
    assert_eq!((status, body.as_str()), (400, r#"{"message":"config: Image is required"}"#));
    let (status, body) = s.http("GET", "/v1.44/containers/nosuch/json", b"");
    assert_eq!((status, body.as_str()), (404, r#"{"message":"No such container: nosuch"}"#));
    let (status, _) = s.http("POST", "/v1.44/containers/nosuch/start", b"");
    assert_eq!(status, 404);
    let oversize = vec![b' '; 2 << 20];
    let (status, body) = s.http("POST", "/v1.44/containers/create", &oversize);
    assert_eq!(status, 413, "{body}");
    s.docker(["rm", "nosuch"]).code_is(1).stderr_has("No such container: nosuch");
    s.docker(["start", "nosuch"]).code_is(1).stderr_has("No such container: nosuch");
    // Still serving, and nothing half-made was left behind.
    s.docker(["run", "--rm", "busybox", "echo", "still here"]).success().stdout_is("still here\n");
    s.docker(["ps", "-a", "-q"]).success().stdout_is("");
}

#[test]
fn api_networks_and_volumes_create_list_use_and_remove() {
    let Some((e, s)) = server() else { return };
    let net_id = s.docker(["network", "create", "apitestnet"]).success().stdout().trim().to_owned();
    assert_eq!(net_id.len(), 64, "{net_id}");
    s.docker(["network", "ls", "--format", "{{.Name}}"]).success().stdout_has("apitestnet\n").stdout_has("bridge\n");
    s.docker(["network", "create", "apitestnet"]).code_is(1).stderr_has("network with name apitestnet already exists");
    s.docker(["volume", "create", "apitestvol"]).success().stdout_is("apitestvol\n");
    s.docker(["volume", "ls", "-q"]).success().stdout_is("apitestvol\n");
    s.docker([
        "run",
        "--rm",
        "--network",
        "apitestnet",
        "-v",
        "apitestvol:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ])
    .success();
    s.docker(["run", "--rm", "-v", "apitestvol:/data", "busybox", "cat", "/data/f"]).success().stdout_is("kept\n");
    s.docker(["run", "-d", "--name", "user", "-v", "apitestvol:/data", "busybox", "sleep", "60"]).success();
    s.docker(["volume", "rm", "apitestvol"]).code_is(1).stderr_has("volume is in use");
    s.docker(["rm", "-f", "user"]).success();
    s.docker(["volume", "rm", "apitestvol"]).success();
    s.docker(["volume", "inspect", "apitestvol"]).code_is(1).stderr_has("no such volume");
    s.docker(["network", "rm", "apitestnet"]).success().stdout_is("apitestnet\n");
    s.docker(["network", "rm", "bridge"]).code_is(1).stderr_has("pre-defined network");
    // The CLI sees the same state.
    assert!(!e.run(["network", "ls"]).success().stdout().contains("apitestnet"));
    e.run(["volume", "ls", "-q"]).success().stdout_is("");
}

#[test]
fn api_docker_exec_passes_output_stdin_and_exit_codes() {
    let Some((_e, s)) = server() else { return };
    s.docker(["run", "-d", "--name", "box", "busybox", "sleep", "120"]).success();
    s.docker(["exec", "box", "echo", "hi"]).success().stdout_is("hi\n");
    s.docker(["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 4"])
        .code_is(4)
        .stdout_is("out\n")
        .stderr_has("err");
    s.docker([
        "exec",
        "-u",
        "nobody",
        "-w",
        "/tmp",
        "-e",
        "GREETING=hey",
        "box",
        "sh",
        "-c",
        "id -u; pwd; echo $GREETING",
    ])
    .success()
    .stdout_is("65534\n/tmp\nhey\n");
    let mut c = Command::new(docker_bin());
    c.args(["exec", "-i", "box", "cat"])
        .env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
        .env("DOCKER_CONFIG", s.dir.path().join("docker-config"));
    Run::with_stdin(&mut c, b"through stdin\n").success().stdout_is("through stdin\n");
    s.docker(["exec", "box", "nosuchcommand"]).code_is(127).stderr_has("executable file not found");
    s.docker(["top", "box"]).success().stdout_has("sleep 120");
    s.docker(["pause", "box"]).success();
    s.docker(["ps", "--format", "{{.Status}}"]).success().stdout_has("(Paused)");
    s.docker(["unpause", "box"]).success();
    s.docker(["unpause", "box"]).code_is(1).stderr_has("is not paused");
    s.docker(["rm", "-f", "box"]).success();
    s.docker(["exec", "box", "true"]).code_is(1).stderr_has("No such container: box");
    s.docker(["run", "--name", "done", "busybox", "true"]).success();
    s.docker(["container", "prune", "-f"]).success().stdout_has("Deleted Containers:");
    s.docker(["ps", "-a", "-q"]).success().stdout_is("");
}

#[test]
fn api_docker_pull_and_run_pull_from_a_local_registry() {
    let Some((e, s)) = server() else { return };
    let registry = crate::registry::Registry::start();
    let image = format!("{}/team/box:1", registry.host());
    e.run(["tag", "busybox", &image]).success();
    e.run(["push", &image]).success();
    s.docker(["rmi", &image]).success().stdout_has(&format!("Untagged: {image}"));
    s.docker(["pull", &image]).success().stdout_has(&format!("Status: Downloaded newer image for {image}"));
    s.docker(["pull", &image]).success().stdout_has(&format!("Status: Image is up to date for {image}"));
    s.docker(["rmi", &image]).success();
    // `run` of a missing image: a 404 on create, the CLI pulls through the API and tries again.
    s.docker(["run", "--rm", &image, "echo", "pulled"])
        .success()
        .stdout_is("pulled\n")
        .stderr_has(&format!("Unable to find image '{image}' locally"));
    s.docker(["pull", &format!("{}/team/nosuch:1", registry.host())]).code_is(1).stderr_has("team/nosuch");
}

#[test]
fn api_a_client_killed_mid_attach_leaves_the_container_running_and_the_server_serving() {
    let Some((_e, s)) = server() else { return };
    let script = "i=0; while true; do i=$((i+1)); echo line$i; sleep 0.05; done";
    let mut client = Command::new(docker_bin())
        .args(["run", "--rm", "--name", "talker", "busybox", "sh", "-c", script])
        .env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
        .env("DOCKER_CONFIG", s.dir.path().join("docker-config"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn docker run");
    let mut first = String::new();
    let stdout = client.stdout.take().expect("piped stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first).expect("read attached output");
    assert_eq!(first, "line1\n");
    client.kill().expect("kill docker run");
    let _ = client.wait();
    // The container goes on (its monitor keeps logging without the attached client), as with dockerd.
    let last = || s.docker(["logs", "--tail", "1", "talker"]).success().stdout();
    let before = last();
    let end = Instant::now() + Duration::from_secs(20);
    while last() == before {
        assert!(Instant::now() < end, "the container stopped writing after its client went away");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.docker(["ps", "--format", "{{.Names}}"]).success().stdout_is("talker\n");
    s.docker(["stop", "-t", "1", "talker"]).success();
    // --rm still applies once it stops.
    let end = Instant::now() + Duration::from_secs(20);
    while !s.docker(["ps", "-a", "-q"]).success().stdout().is_empty() {
        assert!(Instant::now() < end, "the --rm container was not removed after stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.docker(["run", "--rm", "-t", "busybox", "echo", "tty"]).success().stdout_is("tty\r\n");
}

#[test]
fn api_scoped_servers_do_not_see_each_others_containers_networks_and_volumes() {
    let Some((e, _unscoped)) = server() else { return };
    let a = Server::start_with(&e, &["--scope", "drydock.job=a"]);
    let b = Server::start_with(&e, &["--scope", "drydock.job=b"]);
    a.docker(["run", "-d", "--name", "a-box", "-v", "a-vol:/data", "busybox", "sleep", "60"]).success();
    a.docker(["network", "create", "a-net"]).success();
    b.docker(["create", "--name", "b-box", "busybox", "true"]).success();
    // Each sees its own, and only its own; images and the built-in networks are shared.
    a.docker(["ps", "-a", "--format", "{{.Names}}"]).success().stdout_is("a-box\n");
    b.docker(["ps", "-a", "--format", "{{.Names}}"]).success().stdout_is("b-box\n");
    a.docker(["volume", "ls", "-q"]).success().stdout_is("a-vol\n");
    b.docker(["volume", "ls", "-q"]).success().stdout_is("");
    b.docker(["network", "ls", "--format", "{{.Name}}"]).success().stdout_has("bridge\n").stdout_has("none\n");
    assert!(!b.docker(["network", "ls"]).success().stdout().contains("a-net"));
    b.docker(["images", "--format", "{{.Repository}}"]).success().stdout_has("busybox");
    a.docker(["inspect", "--format", "{{index .Config.Labels \"drydock.job\"}}", "a-box"]).success().stdout_is("a\n");
    a.docker(["info", "--format", "{{.Containers}} {{.ContainersRunning}}"]).success().stdout_is("1 1\n");
    b.docker(["info", "--format", "{{.Containers}} {{.ContainersRunning}}"]).success().stdout_is("1 0\n");
    // Nothing of another scope can be named: it does not exist for this server.
    b.docker(["inspect", "a-box"]).code_is(1).stderr_has("No such object: a-box");
    b.docker(["stop", "a-box"]).code_is(1).stderr_has("No such container: a-box");
    // (docker's `rm -f` exits 0 on a missing container, but says so.)
    b.docker(["rm", "-f", "a-box"]).stderr_has("No such container: a-box");
    b.docker(["exec", "a-box", "true"]).code_is(1).stderr_has("No such container: a-box");
    b.docker(["network", "rm", "a-net"]).code_is(1).stderr_has("network a-net not found");
    b.docker(["volume", "rm", "a-vol"]).code_is(1).stderr_has("no such volume");
    b.docker(["run", "--rm", "--network", "a-net", "busybox", "true"])
        .code_is(125)
        .stderr_has("network a-net not found");
    b.docker(["run", "--rm", "-v", "a-vol:/data", "busybox", "true"]).code_is(125).stderr_has("no such volume");
    // Pruning in one scope leaves the other's alone.
    b.docker(["container", "prune", "-f"]).success();
    b.docker(["network", "prune", "-f"]).success();
    b.docker(["volume", "prune", "-af"]).success();
    a.docker(["ps", "-a", "--format", "{{.Names}}"]).success().stdout_is("a-box\n");
    a.docker(["volume", "ls", "-q"]).success().stdout_is("a-vol\n");
    a.docker(["rm", "-f", "a-box"]).success();
    a.docker(["network", "rm", "a-net"]).success();
    a.docker(["volume", "rm", "a-vol"]).success();
    // The unscoped server (and the CLI) see everything.
    e.run(["ps", "-a", "--format", "{{.Names}}"]).success().stdout_is("");
}

#[test]
fn api_a_scoped_server_refuses_what_would_reach_the_host() {
    let Some((e, _unscoped)) = server() else { return };
    let job = Server::start_with(&e, &["--scope", "drydock.job=host-access"]);
    job.docker(["run", "--rm", "-v", "/:/host", "busybox", "true"])
        .code_is(125)
        .stderr_has("bind mount `/:/host` refused")
        .stderr_has("docker cp");
    job.docker(["run", "--rm", "--mount", "type=bind,source=/etc,target=/x", "busybox", "true"])
        .code_is(125)
        .stderr_has("refused");
    job.docker(["run", "--rm", "--network", "host", "busybox", "true"])
        .code_is(125)
        .stderr_has("network `host` refused");
    job.docker(["run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "true"])
        .code_is(125)
        .stderr_has("security option `seccomp=unconfined` refused");
    // What a job does need still works: named volumes and tmpfs.
    job.docker(["run", "--rm", "-v", "job-data:/data", "--tmpfs", "/scratch", "busybox", "true"]).success();
    job.docker(["volume", "rm", "job-data"]).success();
    // Nothing was created by the refused requests.
    job.docker(["ps", "-a", "-q"]).success().stdout_is("");
}

#[test]
fn api_save_load_commit_diff_rename_and_export() {
    let Some((_e, s)) = server() else { return };
    let archive = s.dir.path().join("box.tar");
    let archive = archive.to_str().expect("utf-8 path");
    s.docker(["tag", "busybox", "saved:1"]).success();
    s.docker(["save", "-o", archive, "saved:1"]).success();
    s.docker(["rmi", "saved:1"]).success();
    s.docker(["load", "-i", archive]).success().stdout_has("Loaded image: saved:1");
    s.docker(["save", "nosuch:image"]).code_is(1).stderr_has("No such image: nosuch:image");
    let not_a_tar = s.dir.path().join("not.tar");
    std::fs::write(&not_a_tar, b"not a tar").expect("write");
    s.docker(["load", "-i", not_a_tar.to_str().expect("utf-8 path")])
        .code_is(1)
        .stderr_has("invalid image archive")
        .stderr_has("nothing was loaded");
    s.docker(["run", "--name", "c1", "busybox", "sh", "-c", "echo made > /new; rm /etc/group"]).success();
    s.docker(["diff", "c1"]).success().stdout_has("A /new\n").stdout_has("D /etc/group\n");
    s.docker(["rename", "c1", "c2"]).success();
    s.docker(["ps", "-a", "--format", "{{.Names}}"]).success().stdout_is("c2\n");
    let export = s.docker(["export", "c2"]).success();
    let mut names = Vec::new();
    let mut tar = tar::Archive::new(&export.out.stdout[..]);
    for entry in tar.entries().expect("export is a tar") {
        names.push(entry.expect("tar entry").path().expect("path").display().to_string());
    }
    assert!(names.iter().any(|n| n.trim_start_matches("./") == "new"), "{names:?}");
    s.docker(["commit", "-c", "ENV FOO=bar", "c2", "committed:1"]).success().stdout_has("sha256:");
    s.docker(["run", "--rm", "committed:1", "sh", "-c", "cat /new; echo $FOO"]).success().stdout_is("made\nbar\n");
    s.docker(["rm", "c2"]).success();
    s.docker(["rmi", "committed:1"]).success();
    s.docker(["image", "prune", "-f"]).success().stdout_has("Total reclaimed space");
}

#[test]
fn api_docker_cp_copies_both_ways() {
    let Some((_e, s)) = server() else { return };
    let host = s.dir.path().join("host");
    std::fs::create_dir_all(host.join("tree/sub")).expect("mkdir");
    std::fs::write(host.join("file"), "from the host\n").expect("write");
    std::fs::write(host.join("tree/sub/deep"), "deep\n").expect("write");
    let h = |p: &str| host.join(p).display().to_string();
    s.docker(["run", "-d", "--name", "cpbox", "busybox", "sleep", "120"]).success();
    s.docker(["cp", &h("file"), "cpbox:/tmp/"]).success();
    s.docker(["cp", &h("file"), "cpbox:/tmp/renamed"]).success();
    s.docker(["cp", &h("tree"), "cpbox:/root/"]).success();
    s.docker(["exec", "cpbox", "cat", "/tmp/file", "/tmp/renamed", "/root/tree/sub/deep"])
        .success()
        .stdout_is("from the host\nfrom the host\ndeep\n");
    s.docker(["cp", "cpbox:/etc/passwd", &h("")]).success();
    assert!(std::fs::read_to_string(host.join("passwd")).expect("copied out").starts_with("root:x:0:0"));
    // Regression: the bind-mounted /etc files of a running container were copied as the rootfs's empty targets.
    s.docker(["cp", "cpbox:/etc/hostname", &h("")]).success();
    let hostname = s.docker(["exec", "cpbox", "cat", "/etc/hostname"]).success().stdout();
    assert_eq!(std::fs::read_to_string(host.join("hostname")).expect("copied hostname"), hostname);
    assert!(hostname.len() > 1, "{hostname:?}");
    s.docker(["cp", "cpbox:/etc/hosts", &h("")]).success();
    assert!(std::fs::read_to_string(host.join("hosts")).expect("copied hosts").contains("localhost"));
    s.docker(["cp", "cpbox:/root/tree", &h("back")]).success();
    assert_eq!(std::fs::read_to_string(host.join("back/sub/deep")).expect("copied tree"), "deep\n");
    s.docker(["cp", "cpbox:/nosuch", &h("")]).code_is(1).stderr_has("Could not find the file /nosuch");
    s.docker(["rm", "-f", "cpbox"]).success();
}

#[test]
fn api_docker_events_reports_a_containers_life() {
    let Some((_e, s)) = server() else { return };
    // The stream ends by itself 30 s from now at the latest, so a missing event fails instead of hanging.
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 30;
    let mut events = Command::new(docker_bin())
        .args(["events", "--filter", "container=lived", "--until", &until.to_string()])
        .args(["--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}"])
        .env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
        .env("DOCKER_CONFIG", s.dir.path().join("docker-config"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn docker events");
    // The request is in once the server has a second connection open; a container made before could be missed.
    s.docker(["run", "--name", "other", "busybox", "true"]).success();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(events.stdout.take().expect("stdout")));
    s.docker(["run", "--name", "lived", "busybox", "sh", "-c", "exit 2"]).code_is(2);
    let mut seen = Vec::new();
    let mut read_until = |action: &str, seen: &mut Vec<String>| {
        while !seen.iter().any(|l| l.contains(action)) {
            match lines.next() {
                Some(line) => seen.push(line.expect("event line")),
                None => break,
            }
        }
    };
    // The server notices changes by looking at the store: wait for the exit to be seen before removing.
    read_until("die", &mut seen);
    s.docker(["rm", "lived"]).success();
    read_until("destroy", &mut seen);
    let _ = events.kill();
    let _ = events.wait();
    assert_eq!(
        seen,
        [
            "container create lived <no value>",
            "container start lived <no value>",
            "container die lived 2",
            "container destroy lived <no value>"
        ],
        "events seen"
    );
}

#[test]
fn api_docker_push_and_login_with_a_local_registry() {
    let Some((_e, s)) = server() else { return };
    let open = crate::registry::Registry::start();
    let image = format!("{}/team/pushed:v1", open.host());
    s.docker(["tag", "busybox", &image]).success();
    s.docker(["push", &image])
        .success()
        .stdout_has(&format!("The push refers to repository [{}/team/pushed]", open.host()))
        .stdout_has("v1: digest: sha256:");
    s.docker(["push", &image]).success().stdout_has("Layer already exists");
    s.docker(["push", &format!("{}/team/nosuch:v1", open.host())]).code_is(1).stderr_has("does not exist locally");

    // With authentication: login checks the credentials, the CLI keeps them and sends them with push and pull.
    let locked = crate::registry::Registry::start_with_auth(Some(("ci", "s3cret")));
    let private = format!("{}/team/private:v1", locked.host());
    s.docker(["tag", "busybox", &private]).success();
    s.docker(["push", &private]).code_is(1);
    let mut c = Command::new(docker_bin());
    c.args(["login", "-u", "ci", "--password-stdin", &locked.host()])
        .env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
        .env("DOCKER_CONFIG", s.dir.path().join("docker-config"));
    Run::with_stdin(&mut c, b"wrong\n").code_is(1);
    let mut c = Command::new(docker_bin());
    c.args(["login", "-u", "ci", "--password-stdin", &locked.host()])
        .env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
        .env("DOCKER_CONFIG", s.dir.path().join("docker-config"));
    Run::with_stdin(&mut c, b"s3cret\n").success().stdout_has("Login Succeeded");
    s.docker(["push", &private]).success().stdout_has("v1: digest: sha256:");
    s.docker(["rmi", &private]).success();
    s.docker(["pull", &private]).success().stdout_has("Downloaded newer image");
}

#[test]
fn api_serve_refuses_a_non_socket_path_a_public_address_and_a_bad_scope() {
    let e = TestEngine::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("precious");
    std::fs::write(&file, "keep me").expect("write");
    e.run(["serve", "--socket", file.to_str().expect("utf-8")])
        .code_is(125)
        .stderr_has("exists and is not a socket: choose another --socket path");
    assert_eq!(std::fs::read_to_string(&file).expect("still there"), "keep me");
    let socket = dir.path().join("api.sock");
    let socket = socket.to_str().expect("utf-8");
    e.run(["serve", "--socket", socket, "--tcp", "0.0.0.0:2399"])
        .code_is(125)
        .stderr_has("only a loopback address is safe (use 127.0.0.1:PORT)");
    e.run(["serve", "--socket", socket, "--scope", "nolabel"]).code_is(125).stderr_has("expected LABEL=VALUE");
}

#[test]
fn api_docker_build_with_the_classic_builder_tags_and_runs_the_image() {
    let Some((_e, s)) = server() else { return };
    let ctx = tempfile::tempdir().expect("context");
    std::fs::write(ctx.path().join("greeting.txt"), "built through the API\n").expect("file");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nARG WHO=nobody\nCOPY greeting.txt /greeting.txt\nRUN echo \"for $WHO\" >> /greeting.txt\nCMD [\"cat\", \"/greeting.txt\"]\n",
    )
    .expect("Dockerfile");
    let dir = ctx.path().display().to_string();
    s.docker([
        "build",
        "-t",
        "api-built:1",
        "-t",
        "api-built:latest",
        "--build-arg",
        "WHO=ci",
        "--network",
        "none",
        &dir,
    ])
    .success()
    .stdout_has("Step 1/5 : FROM busybox")
    .stdout_has("Successfully tagged api-built:1");
    s.docker(["run", "--rm", "--network", "none", "api-built:latest"])
        .success()
        .stdout_is("built through the API\nfor ci\n");
    // A failing step: docker prints the builder's error and exits 1.
    std::fs::write(ctx.path().join("Dockerfile"), "FROM busybox\nRUN exit 3\n").expect("Dockerfile");
    s.docker(["build", "--network", "none", &dir]).code_is(1).stderr_has("returned a non-zero code: 3");
}

/// The Docker SDK for Rust (bollard) against `engine serve`: its typed models must deserialize what we send.
#[test]
fn api_bollard_sdk_creates_starts_waits_reads_logs_inspects_lists_and_removes() {
    use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum};
    use bollard::query_parameters::{
        CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
        WaitContainerOptionsBuilder,
    };
    use bollard::Docker;
    use futures_util::TryStreamExt;

    let Some((_e, s)) = server() else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async {
        let socket = s.socket.to_str().expect("utf-8 socket path");
        let sdk = Docker::connect_with_unix(socket, 60, bollard::API_DEFAULT_VERSION).expect("bollard client");
        // bollard speaks a newer API (1.53) than we serve: it negotiates down to ours, as SDK users do.
        let sdk = sdk.negotiate_version().await.expect("negotiate the API version");
        assert_eq!(sdk.client_version().to_string(), "1.44");
        let v = sdk.version().await.expect("version");
        assert_eq!(v.api_version.as_deref(), Some("1.44"));

        let body = ContainerCreateBody {
            image: Some("busybox".into()),
            cmd: Some(vec!["sh".into(), "-c".into(), "echo out; echo err >&2".into()]),
            ..Default::default()
        };
        let name_opts = CreateContainerOptionsBuilder::new().name("sdk").build();
        let created = sdk.create_container(Some(name_opts), body).await.expect("create");
        assert!(!created.id.is_empty());
        let state = sdk.inspect_container("sdk", None).await.expect("inspect").state.expect("State");
        assert_eq!(state.status, Some(ContainerStateStatusEnum::CREATED));
        sdk.start_container("sdk", None).await.expect("start");
        let waited: Vec<_> = sdk
            .wait_container("sdk", Some(WaitContainerOptionsBuilder::new().condition("not-running").build()))
            .try_collect()
            .await
            .expect("wait");
        assert_eq!(waited.iter().map(|w| w.status_code).collect::<Vec<_>>(), [0]);

        let logs: Vec<_> = sdk
            .logs("sdk", Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()))
            .try_collect()
            .await
            .expect("logs");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        for frame in logs {
            match frame {
                bollard::container::LogOutput::StdOut { message } => out.extend_from_slice(&message),
                bollard::container::LogOutput::StdErr { message } => err.extend_from_slice(&message),
                other => panic!("unexpected log frame {other:?}"),
            }
        }
        assert_eq!((out.as_slice(), err.as_slice()), (&b"out\n"[..], &b"err\n"[..]));

        let inspected = sdk.inspect_container("sdk", None).await.expect("inspect");
        assert_eq!(inspected.id.as_deref(), Some(created.id.as_str()));
        assert_eq!(inspected.name.as_deref(), Some("/sdk"));
        let state = inspected.state.expect("State");
        assert_eq!((state.status, state.exit_code), (Some(ContainerStateStatusEnum::EXITED), Some(0)));

        let listed =
            sdk.list_containers(Some(ListContainersOptionsBuilder::new().all(true).build())).await.expect("list");
        let names: Vec<_> = listed.iter().flat_map(|c| c.names.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["/sdk"]);
        assert!(sdk.list_containers(None).await.expect("list running").is_empty());

        // A failing command: bollard reports the exit code as its wait error.
        let body = ContainerCreateBody {
            image: Some("busybox".into()),
            cmd: Some(vec!["sh".into(), "-c".into(), "exit 3".into()]),
            ..Default::default()
        };
        let failing = sdk.create_container(None, body).await.expect("create").id;
        sdk.start_container(&failing, None).await.expect("start");
        let err = sdk.wait_container(&failing, None).try_collect::<Vec<_>>().await.expect_err("exit 3");
        assert!(matches!(err, bollard::errors::Error::DockerContainerWaitError { code: 3, .. }), "{err:?}");

        sdk.remove_container("sdk", None).await.expect("remove");
        sdk.remove_container(&failing, Some(RemoveContainerOptionsBuilder::new().force(true).build()))
            .await
            .expect("remove the failed one");
        let err = sdk.inspect_container("sdk", None).await.expect_err("removed");
        assert!(
            matches!(&err, bollard::errors::Error::DockerResponseServerError { status_code: 404, message }
                if message == "No such container: sdk"),
            "{err:?}"
        );
        assert!(sdk
            .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
            .await
            .expect("list")
            .is_empty());
    });
}

/// A client that goes away between the attach of a created container and its start (a `docker run` killed at
/// the wrong moment): the pipes parked for it must not wedge the container or the server.
#[test]
fn api_a_client_gone_before_start_leaves_the_container_startable_and_removable() {
    let Some((_e, s)) = server() else { return };
    let (status, body) = s.http(
        "POST",
        "/v1.44/containers/create?name=orphan",
        br#"{"Image": "busybox", "Cmd": ["sh", "-c", "seq 1 20000; echo done"]}"#,
    );
    assert_eq!(status, 201, "{body}");
    let mut c = UnixStream::connect(&s.socket).expect("connect");
    c.write_all(
        b"POST /v1.44/containers/orphan/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n",
    )
    .expect("send attach");
    let mut head = [0u8; 12];
    c.read_exact(&mut head).expect("read the attach answer");
    assert_eq!(&head, b"HTTP/1.1 101");
    drop(c);
    // Its output goes nowhere now; the container still runs to its end and logs everything.
    s.docker(["start", "orphan"]).success();
    s.docker(["wait", "orphan"]).success().stdout_is("0\n");
    let logs = s.docker(["logs", "--tail", "1", "orphan"]).success().stdout();
    assert_eq!(logs, "done\n");
    s.docker(["rm", "orphan"]).success();
    // Malformed and oversize bodies on other endpoints: docker's statuses, and the server still serves.
    let (status, body) = s.http("POST", "/v1.44/networks/create", b"{\"Name\": ");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid JSON in the request body"), "{body}");
    let (status, _) = s.http("POST", "/v1.44/volumes/create", &vec![b' '; 2 << 20]);
    assert_eq!(status, 413);
    let (status, body) = s.http("POST", "/v1.44/containers/nosuch/exec", br#"{"Cmd": ["true"]}"#);
    assert_eq!((status, body.as_str()), (404, r#"{"message":"No such container: nosuch"}"#));
    s.docker(["run", "--rm", "busybox", "echo", "still here"]).success().stdout_is("still here\n");
    s.docker(["ps", "-a", "-q"]).success().stdout_is("");
}
