//! `engine compose` end to end on real containers: services reaching each other by name on the project network,
//! `run` returning the command's exit code (the seeds' `docker-compose run app test` flow), named volumes
//! across `down`/`up` and `down -v`, a published port reached from 127.0.0.1, `--scale`, idempotent `up`
//! (unchanged services left running, a changed one recreated), and bad input: located file errors, unknown
//! dependencies, and a busy port rolling the whole project back. The same project also runs through `engine
//! serve` (compose over the Engine API, as `docker compose` in a CI job does): `DRYDOCK_HOST` set, no root.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::{bin_dir, can_run_containers, EngineServer, Run, TestEngine};

/// A project directory with a compose file, run against one engine root; `down -v` on drop.
struct Project {
    engine: TestEngine,
    dir: tempfile::TempDir,
    name: String,
}

impl Project {
    fn new(name: &str, compose: &str) -> Project {
        let engine = TestEngine::with_busybox();
        let dir = tempfile::tempdir().expect("project dir");
        std::fs::write(dir.path().join("compose.yaml"), compose).expect("write compose.yaml");
        // Host-wide names (bridges) must not collide between parallel tests or runs.
        let name = format!("{name}{}", std::process::id() % 10000);
        Project { engine, dir, name }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn compose(&self, args: &[&str]) -> Run {
        let mut full: Vec<String> = vec!["compose".into(), "-p".into(), self.name.clone(), "-f".into()];
        full.push(self.path().join("compose.yaml").display().to_string());
        full.extend(args.iter().map(|a| a.to_string()));
        self.engine.run(full)
    }

    fn container(&self, service: &str, n: u32) -> String {
        format!("{}-{service}-{n}", self.name)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "-t", "0"]);
    }
}

#[test]
fn compose_services_reach_each_other_by_name_and_run_returns_the_exit_code() {
    if !can_run_containers() {
        return;
    }
    let p = Project::new(
        "reach",
        r#"
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && httpd -f -p 80 -h /www"]
  app:
    image: busybox
    depends_on: [web]
    command: ["sh", "-c", "sleep 3600"]
"#,
    );
    p.compose(&["up", "-d"]).success().stderr_has("Started");
    p.compose(&["ps"]).success().stdout_has(&p.container("web", 1)).stdout_has(&p.container("app", 1));
    // The client reaches the server by service name over the project network (httpd may need a moment).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = p.compose(&["exec", "-T", "app", "wget", "-qO-", "http://web/"]);
        if r.code() == 0 {
            assert_eq!(r.stdout().trim(), "hello-from-web");
            break;
        }
        assert!(Instant::now() < deadline, "web never answered: {}", r.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    // `run` is a one-off container with the service's configuration; its exit code is ours.
    p.compose(&["run", "--rm", "-T", "app", "sh", "-c", "wget -qO- http://web/ | grep -q hello-from-web && exit 7"])
        .code_is(7);
    p.compose(&["run", "--rm", "-T", "app", "true"]).success();
    // `--rm` left no one-off container behind.
    let all = p.engine.run(["ps", "-a", "--format", "{{.Names}}"]).success().stdout();
    assert!(!all.contains("-run-"), "{all}");

    p.compose(&["down"]).success();
    assert_eq!(p.engine.run(["ps", "-aq"]).success().stdout().trim(), "");
    let nets = p.engine.run(["network", "ls"]).success().stdout();
    assert!(!nets.contains(&format!("{}_default", p.name)), "{nets}");
}

#[test]
fn compose_named_volume_survives_down_and_goes_with_down_v() {
    if !can_run_containers() {
        return;
    }
    let p = Project::new(
        "vol",
        r#"
services:
  db:
    image: busybox
    command: ["sleep", "3600"]
    volumes: ["data:/data"]
volumes:
  data:
"#,
    );
    p.compose(&["up", "-d"]).success();
    p.compose(&["exec", "-T", "db", "sh", "-c", "echo kept > /data/file"]).success();
    p.compose(&["down"]).success();
    let volume = format!("{}_data", p.name);
    p.engine.run(["volume", "inspect", &volume]).success();
    p.compose(&["up", "-d"]).success();
    p.compose(&["exec", "-T", "db", "cat", "/data/file"]).success().stdout_is("kept\n");
    p.compose(&["down", "-v"]).success();
    let gone = p.engine.run(["volume", "inspect", &volume]);
    assert_ne!(gone.code(), 0, "volume {volume} still exists after down -v");
}

#[test]
fn compose_published_port_is_reachable_from_loopback() {
    if !can_run_containers() {
        return;
    }
    let port = free_port();
    let p = Project::new(
        "port",
        &format!(
            r#"
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo published > /www/index.html && httpd -f -p 8080 -h /www"]
    ports: ["127.0.0.1:{port}:8080"]
"#
        ),
    );
    p.compose(&["up", "-d"]).success();
    p.compose(&["port", "web", "8080"]).success().stdout_is(&format!("127.0.0.1:{port}\n"));
    let body = http_get(port);
    assert!(body.contains("published"), "{body}");
}

#[test]
fn compose_busy_port_rolls_the_project_back() {
    if !can_run_containers() {
        return;
    }
    // The whole test runs in a network namespace of its own, so the devices it sees are only its own (other
    // tests create bridges concurrently on the host).
    let ns = format!("drydock-compose-{}", std::process::id());
    let _ = std::process::Command::new("ip").args(["netns", "del", &ns]).output();
    assert!(std::process::Command::new("ip").args(["netns", "add", &ns]).status().expect("ip netns").success());
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }
    let _guard = Ns(ns.clone());
    let in_ns = |p: &Project, args: &[&str]| -> Run {
        // nsenter switches only the network namespace (`ip netns exec` also remounts /sys, hiding cgroups).
        let mut c = std::process::Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{ns}"))
            .arg(crate::util::bin_dir().join("engine"))
            .arg("--root")
            .arg(p.engine.root());
        c.args(args).stdin(std::process::Stdio::null());
        Run::of(&mut c)
    };
    let links = || -> Vec<String> {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "ip", "-o", "link", "show"])
            .output()
            .expect("ip link");
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_string()))
            .collect();
        names.sort();
        names
    };
    let _ = std::process::Command::new("ip").args(["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]).status();
    let port = 18080 + (std::process::id() % 1000) as u16;
    let p = Project::new(
        "busy",
        &format!(
            r#"
services:
  first:
    image: busybox
    command: ["sleep", "3600"]
  web:
    image: busybox
    depends_on: [first]
    command: ["sleep", "3600"]
    ports: ["127.0.0.1:{port}:80"]
"#
        ),
    );
    // Something else holds the port: a container publishing it on the default bridge.
    in_ns(&p, &["run", "-d", "--name", "holder", "-p", &format!("127.0.0.1:{port}:80"), "busybox", "sleep", "3600"])
        .success();
    let before = links();
    let file = p.path().join("compose.yaml").display().to_string();
    let r = in_ns(&p, &["compose", "-p", &p.name, "-f", &file, "up", "-d"]);
    assert_ne!(r.code(), 0, "up succeeded with a busy port");
    assert!(r.stderr().contains(&port.to_string()), "error should name the port: {}", r.stderr());
    // Nothing half-started: only the holder remains, no project network, no new device.
    let names = in_ns(&p, &["ps", "-a", "--format", "{{.Names}}"]).success().stdout();
    assert_eq!(names.trim(), "holder");
    let nets = in_ns(&p, &["network", "ls"]).success().stdout();
    assert!(!nets.contains(&format!("{}_default", p.name)), "{nets}");
    assert_eq!(links(), before, "devices left behind");
    in_ns(&p, &["rm", "-f", "holder"]).success();
}

#[test]
fn compose_up_is_idempotent_and_recreates_only_what_changed() {
    if !can_run_containers() {
        return;
    }
    let file = |greeting: &str| {
        format!(
            r#"
services:
  a:
    image: busybox
    command: ["sleep", "3600"]
  b:
    image: busybox
    command: ["sleep", "3600"]
    environment:
      GREETING: {greeting}
"#
        )
    };
    let p = Project::new("idem", &file("hello"));
    p.compose(&["up", "-d"]).success();
    let id_a = p.engine.run(["inspect", "-f", "{{.Id}}", &p.container("a", 1)]).success().stdout();
    let id_b = p.engine.run(["inspect", "-f", "{{.Id}}", &p.container("b", 1)]).success().stdout();
    let again = p.compose(&["up", "-d"]).success();
    assert!(again.stderr().contains(&format!("{}  Running", p.container("a", 1))), "{}", again.stderr());
    std::fs::write(p.path().join("compose.yaml"), file("changed")).expect("rewrite");
    let r = p.compose(&["up", "-d"]).success();
    assert!(r.stderr().contains(&format!("{}  Recreate", p.container("b", 1))), "{}", r.stderr());
    assert_eq!(p.engine.run(["inspect", "-f", "{{.Id}}", &p.container("a", 1)]).success().stdout(), id_a);
    assert_ne!(p.engine.run(["inspect", "-f", "{{.Id}}", &p.container("b", 1)]).success().stdout(), id_b);
    p.compose(&["exec", "-T", "b", "sh", "-c", "echo $GREETING"]).success().stdout_is("changed\n");
}

#[test]
fn compose_scale_gives_resolvable_replicas_and_shrinks_again() {
    if !can_run_containers() {
        return;
    }
    let p = Project::new(
        "scale",
        r#"
services:
  app:
    image: busybox
    command: ["sleep", "3600"]
  probe:
    image: busybox
    command: ["sleep", "3600"]
"#,
    );
    p.compose(&["up", "-d", "--scale", "app=3"]).success();
    let ps = p.compose(&["ps", "-q", "app"]).success().stdout();
    assert_eq!(ps.lines().count(), 3, "{ps}");
    for n in 1..=3 {
        p.compose(&["exec", "-T", "probe", "ping", "-c", "1", "-W", "2", &p.container("app", n)]).success();
    }
    p.compose(&["exec", "-T", "probe", "ping", "-c", "1", "-W", "2", "app"]).success();
    p.compose(&["up", "-d", "--scale", "app=1"]).success();
    assert_eq!(p.compose(&["ps", "-q", "app"]).success().stdout().lines().count(), 1);
}

#[test]
fn compose_up_attached_streams_prefixed_logs_and_exits_with_the_chosen_code() {
    if !can_run_containers() {
        return;
    }
    let p = Project::new(
        "attach",
        r#"
services:
  app:
    image: busybox
    command: ["sleep", "3600"]
    stop_grace_period: 1s
  tests:
    image: busybox
    depends_on: [app]
    command: ["sh", "-c", "echo testing app; exit 3"]
"#,
    );
    let r = p.compose(&["up", "--exit-code-from", "tests", "--no-color"]).code_is(3);
    let line = format!("{}  | testing app", p.container("tests", 1));
    assert!(r.stdout().contains(&line), "want {line:?} in\n{}", r.stdout());
    assert!(r.stderr().contains("Aborting on container exit"), "{}", r.stderr());
    // Everything was stopped on the way out.
    assert_eq!(p.engine.run(["ps", "-q"]).success().stdout().trim(), "");
}

#[test]
fn compose_depends_on_service_healthy_waits_and_an_unhealthy_dependency_rolls_back() {
    if !can_run_containers() {
        return;
    }
    let file = |ready: &str, retries: u32| {
        format!(
            r#"
services:
  db:
    image: busybox
    command: ["sh", "-c", "sleep 1; {ready}; sleep 3600"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 200ms
      retries: {retries}
  app:
    image: busybox
    command: ["sleep", "3600"]
    depends_on:
      db:
        condition: service_healthy
"#
        )
    };
    let p = Project::new("healthy", &file("touch /tmp/ready", 30));
    let r = p.compose(&["up", "-d"]).success();
    assert!(r.stderr().contains(&format!("{}  Healthy", p.container("db", 1))), "{}", r.stderr());
    p.engine.run(["inspect", "-f", "{{.State.Health.Status}}", &p.container("db", 1)]).success().stdout_is("healthy\n");
    p.compose(&["down", "-t", "0"]).success();

    // A dependency that never gets healthy fails `up`, which removes what it created.
    std::fs::write(p.path().join("compose.yaml"), file("true", 2)).expect("rewrite");
    let r = p.compose(&["up", "-d"]);
    assert_ne!(r.code(), 0);
    assert!(
        r.stderr().contains(&format!("dependency failed to start: container {} is unhealthy", p.container("db", 1))),
        "{}",
        r.stderr()
    );
    assert_eq!(p.engine.run(["ps", "-aq"]).success().stdout().trim(), "");
}

#[test]
fn compose_bad_files_name_file_line_and_key() {
    let engine = TestEngine::new();
    let dir = tempfile::tempdir().expect("dir");
    let file: PathBuf = dir.path().join("compose.yaml");
    let cases = [
        (
            "services:\n  web:\n    image: busybox\n    prots: [\"80\"]\n",
            "compose.yaml:4:5: services.web.prots: unknown key `prots`; did you mean `ports`?",
        ),
        (
            "services:\n  web:\n    image: busybox\n    depends_on: [db]\n",
            "services.web.depends_on: depends on undefined service `db`",
        ),
        (
            "services:\n  web:\n    image: busybox\n    ports: [\"99999:80\"]\n",
            "compose.yaml:4:13: services.web.ports[0]: invalid port",
        ),
        ("services:\n  web:\n   image: busybox\n  bad indent\n", "compose.yaml:"),
    ];
    for (text, want) in cases {
        std::fs::write(&file, text).expect("write");
        let r = engine.run(["compose", "-f", &file.display().to_string(), "config"]);
        assert_ne!(r.code(), 0, "{text}");
        assert!(r.stderr().contains(want), "for\n{text}\nwant {want:?}\ngot {}", r.stderr());
    }
    std::fs::write(&file, "services:\n  web:\n    image: busybox:${TAG:-1.36}\n").expect("write");
    engine.run(["compose", "-f", &file.display().to_string(), "config"]).success().stdout_has("image: busybox:1.36");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn http_get(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            if s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").is_ok() {
                let mut body = String::new();
                if s.read_to_string(&mut body).is_ok() && !body.is_empty() {
                    return body;
                }
            }
        }
        assert!(Instant::now() < deadline, "nothing answered on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_engine_called_docker_compose_runs_compose_verbs() {
    if !can_run_containers() {
        return;
    }
    let p = Project::new("argv", "services:\n  app:\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n");
    // CI scripts call `docker-compose`: a link to the engine under that name is `engine compose`.
    let bin = tempfile::tempdir().expect("bin dir");
    let link = bin.path().join("docker-compose");
    std::os::unix::fs::symlink(crate::util::bin_dir().join("engine"), &link).expect("symlink");
    let file = p.path().join("compose.yaml").display().to_string();
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(&link);
        // Called as docker-compose the binary is a client of a server unless --root is on the command line.
        c.arg("--root").arg(p.engine.root()).args(["-p", &p.name, "-f", &file]).args(args);
        c.stdin(std::process::Stdio::null());
        Run::of(&mut c)
    };
    run(&["run", "--rm", "-T", "app", "sh", "-c", "exit 4"]).code_is(4);
    run(&["config", "--services"]).success().stdout_is("app\n");
}

#[test]
fn compose_network_mode_service_extra_hosts_and_dns() {
    if !can_run_containers() {
        return;
    }
    let p = Project::new(
        "nsmode",
        r#"
services:
  db:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo from-db > /www/index.html && httpd -f -p 127.0.0.1:8080 -h /www"]
  app:
    image: busybox
    network_mode: "service:db"
    command: ["sleep", "3600"]
  other:
    image: busybox
    extra_hosts: ["cache.test:10.9.8.7"]
    dns: 10.0.0.53
    dns_search: [corp.test]
    command: ["sleep", "3600"]
"#,
    );
    p.compose(&["up", "-d"]).success();
    // `app` lives in db's namespace: db's loopback-only server answers it on 127.0.0.1.
    let get = || p.compose(&["exec", "-T", "app", "wget", "-qO-", "http://127.0.0.1:8080/"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get().code() != 0 {
        assert!(Instant::now() < deadline, "db never answered app on localhost: {}", get().stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    get().success().stdout_is("from-db\n");
    let files = p.compose(&["exec", "-T", "other", "cat", "/etc/hosts", "/etc/resolv.conf"]).success().stdout();
    assert!(files.contains("10.9.8.7\tcache.test\n"), "{files}");
    assert!(files.contains("nameserver 10.0.0.53\n") && files.contains("search corp.test\n"), "{files}");
}

/// Copies `examples/app` (the seeds' application) into a fresh directory.
fn example_app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("app dir");
    let src = crate::util::workspace_dir().join("examples/app");
    let out = std::process::Command::new("cp").arg("-a").arg(format!("{}/.", src.display())).arg(dir.path()).output();
    assert!(out.is_ok_and(|o| o.status.success()), "copy examples/app");
    dir
}

#[test]
fn compose_run_builds_the_example_app_and_its_tests_pass() {
    if !can_run_containers() {
        return;
    }
    // The seeds' flow: `docker-compose -f docker-compose.test.yml run tests` builds the app image and the
    // tests' image from their Dockerfiles, starts the app, waits for its healthcheck, and returns the tests' exit
    // code; the JUnit results are copied out of the run container (the example's pipeline does the same).
    let engine = TestEngine::with_busybox();
    let app = example_app();
    let project = format!("exapp{}", std::process::id() % 10000);
    let file = app.path().join("docker-compose.test.yml").display().to_string();
    let image = format!("app-{project}:test");
    let tests = format!("{project}-tests");
    let mut c = engine.cmd(["compose", "-p", &project, "-f", &file, "run", "--name", &tests, "-T", "tests"]);
    c.env("APP_IMAGE", &image).env("APP_VERSION", "1.2.3");
    let run = Run::of(&mut c).success();
    assert!(run.stdout().contains("3 passed, 0 failed"), "{}", run.stdout());
    assert!(run.stderr().contains("Step 1/"), "the image was built: {}", run.stderr());
    let results = app.path().join("test-results");
    engine.run(["cp", &format!("{tests}:/results"), &results.display().to_string()]).success();
    let junit = std::fs::read_to_string(results.join("junit.xml")).unwrap_or_default();
    assert!(junit.contains(r#"tests="3" failures="0""#), "{junit}");
    engine.run(["rm", "-f", &tests]).success();
    engine.run(["inspect", "-f", "{{json .Config.Env}}", &image]).success().stdout_has("APP_VERSION=1.2.3");
    let mut c = engine.cmd(["compose", "-p", &project, "-f", &file, "down", "-t", "0"]);
    c.env("APP_IMAGE", &image);
    Run::of(&mut c).success();
}

/// A compose client of an `engine serve` (`DRYDOCK_HOST`, no `--root`), run as `program` from the project
/// directory: `engine compose …`, `docker compose …` (a `docker` link to the engine) or `docker-compose …`.
fn api_compose(host: &str, program: &Path, dir: &Path, project: &str, args: &[&str]) -> Run {
    let mut c = std::process::Command::new(program);
    if program.file_name().is_some_and(|n| n == "engine" || n == "docker") {
        c.arg("compose");
    }
    c.args(["-p", project])
        .args(args)
        .current_dir(dir)
        // The client's own credentials (`docker login`), never the host user's.
        .env("DOCKER_CONFIG", dir.join(".docker-config"))
        .env("DRYDOCK_HOST", host)
        .env_remove("DOCKER_HOST")
        .stdin(std::process::Stdio::null());
    Run::of(&mut c)
}

#[test]
fn compose_over_the_api_up_healthy_reach_run_exit_code_and_down_v() {
    if !can_run_containers() {
        return;
    }
    let engine = TestEngine::with_busybox();
    let server = EngineServer::start(&engine);
    let dir = tempfile::tempdir().expect("project dir");
    std::fs::write(
        dir.path().join("compose.yaml"),
        r#"
services:
  db:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-db > /www/index.html && touch /tmp/ready && httpd -f -p 80 -h /www"]
    stop_grace_period: 1s
    volumes: ["data:/data"]
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 200ms
      retries: 50
  app:
    image: busybox
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    depends_on:
      db:
        condition: service_healthy
volumes:
  data:
"#,
    )
    .expect("write compose.yaml");
    let name = format!("viaapi{}", std::process::id() % 10000);
    let engine_bin = bin_dir().join("engine");
    let compose = |args: &[&str]| api_compose(&server.host(), &engine_bin, dir.path(), &name, args);

    compose(&["up", "-d"]).success().stderr_has("Healthy").stderr_has("Started");
    // Created by the server in its root, labelled as compose v2 labels them.
    let app = format!("{name}-app-1");
    let labels = engine.run(["inspect", "--format", "{{json .Config.Labels}}", &app]).success().stdout();
    assert!(labels.contains(&format!("\"com.docker.compose.project\":\"{name}\"")), "{labels}");
    assert!(labels.contains("\"com.docker.compose.service\":\"app\""), "{labels}");
    compose(&["ps"]).success().stdout_has(&app).stdout_has(&format!("{name}-db-1"));
    // `up` again leaves the running project as it is.
    compose(&["up", "-d"]).success().stderr_has("Running");

    // The client reaches the server by service name (httpd starts just after the healthcheck's file).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = compose(&["exec", "-T", "app", "wget", "-qO-", "http://db/"]);
        if r.code() == 0 {
            assert_eq!(r.stdout().trim(), "hello-from-db");
            break;
        }
        assert!(Instant::now() < deadline, "db never answered: {}", r.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    // `run` is attached: its output is ours, and so is its exit code; `--rm` leaves nothing behind.
    compose(&["run", "--rm", "-T", "app", "sh", "-c", "exit 3"]).code_is(3);
    compose(&["run", "--rm", "-T", "app", "sh", "-c", "wget -qO- http://db/"]).success().stdout_has("hello-from-db");
    let all = engine.run(["ps", "-a", "--format", "{{.Names}}"]).success().stdout();
    assert!(!all.contains("-run-"), "{all}");
    compose(&["logs", "--no-color", "db"]).success();

    compose(&["down", "-v", "-t", "0"]).success();
    assert_eq!(engine.run(["ps", "-aq"]).success().stdout().trim(), "");
    let nets = engine.run(["network", "ls"]).success().stdout();
    assert!(!nets.contains(&format!("{name}_default")), "{nets}");
    let vols = engine.run(["volume", "ls"]).success().stdout();
    assert!(!vols.contains(&format!("{name}_data")), "{vols}");
}

#[test]
fn compose_over_the_api_reports_a_bad_file_before_any_api_call() {
    // No server listens here: the file's error must come first, located, and nothing may try to connect.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("compose.yaml"), "services:\n  web:\n    image: busybox\n    prots: [\"80\"]\n")
        .expect("write");
    let host = format!("unix://{}", dir.path().join("nobody.sock").display());
    for program in [bin_dir().join("engine"), docker_compose_link(dir.path())] {
        let r = api_compose(&host, &program, dir.path(), "bad", &["up", "-d"]);
        assert_ne!(r.code(), 0);
        assert!(r.stderr().contains("compose.yaml:4:5: services.web.prots: unknown key `prots`"), "{}", r.stderr());
        assert!(!r.stderr().contains("connect"), "{}", r.stderr());
    }
}

#[test]
fn compose_over_the_api_as_docker_compose_and_docker_compose_verb() {
    if !can_run_containers() {
        return;
    }
    let engine = TestEngine::with_busybox();
    let server = EngineServer::start(&engine);
    let dir = tempfile::tempdir().expect("project dir");
    std::fs::write(dir.path().join("compose.yaml"), "services:\n  tests:\n    image: busybox\n").expect("write");
    let docker = dir.path().join("docker");
    std::os::unix::fs::symlink(bin_dir().join("engine"), &docker).expect("link docker");
    let name = format!("dc{}", std::process::id() % 10000);
    for (program, code) in [(docker_compose_link(dir.path()), "4"), (docker, "5")] {
        let script = format!("echo via-$0; exit {code}");
        let args = ["run", "--rm", "-T", "tests", "sh", "-c", &script, "docker"];
        api_compose(&server.host(), &program, dir.path(), &name, &args)
            .code_is(code.parse().expect("code"))
            .stdout_has("via-docker");
    }
    api_compose(&server.host(), &dir.path().join("docker"), dir.path(), &name, &["down", "-v"]).success();
    assert_eq!(engine.run(["ps", "-aq"]).success().stdout().trim(), "");
}

/// A `docker-compose` symlink to the engine binary in `dir` (the binary dispatches on argv[0]).
fn docker_compose_link(dir: &Path) -> PathBuf {
    let link = dir.join("docker-compose");
    if !link.exists() {
        std::os::unix::fs::symlink(bin_dir().join("engine"), &link).expect("link docker-compose");
    }
    link
}

#[test]
fn compose_over_the_api_up_attached_streams_logs_and_exits_with_the_chosen_code() {
    if !can_run_containers() {
        return;
    }
    let engine = TestEngine::with_busybox();
    let server = EngineServer::start(&engine);
    let dir = tempfile::tempdir().expect("project dir");
    std::fs::write(
        dir.path().join("compose.yaml"),
        r#"
services:
  app:
    image: busybox
    command: ["sleep", "3600"]
    stop_grace_period: 1s
  tests:
    image: busybox
    depends_on: [app]
    command: ["sh", "-c", "echo testing app; exit 3"]
"#,
    )
    .expect("write compose.yaml");
    let name = format!("apiatt{}", std::process::id() % 10000);
    let compose = |args: &[&str]| api_compose(&server.host(), &bin_dir().join("engine"), dir.path(), &name, args);
    // Each container's log is followed over the API; the first exit stops the rest.
    let r = compose(&["up", "--exit-code-from", "tests", "--no-color"]).code_is(3);
    let line = format!("{name}-tests-1  | testing app");
    assert!(r.stdout().contains(&line), "want {line:?} in\n{}", r.stdout());
    assert!(r.stderr().contains("Aborting on container exit"), "{}", r.stderr());
    assert_eq!(engine.run(["ps", "-q"]).success().stdout().trim(), "");
    compose(&["down", "-t", "0"]).success();
    assert_eq!(engine.run(["ps", "-aq"]).success().stdout().trim(), "");
}

#[test]
fn compose_over_the_api_push_and_pull_send_the_clients_login() {
    if !can_run_containers() {
        return;
    }
    let engine = TestEngine::with_busybox();
    let server = EngineServer::start(&engine);
    let reg = crate::registry::Registry::start_with_auth(Some(("ci", "s3cret")));
    let image = format!("{}/compose-private:1", reg.host());
    engine.run(["tag", "busybox", &image]).success();
    let dir = tempfile::tempdir().expect("project dir");
    std::fs::write(dir.path().join("compose.yaml"), format!("services:\n  app:\n    image: {image}\n")).expect("write");
    let engine_bin = bin_dir().join("engine");
    let compose = |args: &[&str]| api_compose(&server.host(), &engine_bin, dir.path(), "pushpull", args);
    let refused = compose(&["push"]);
    assert_ne!(refused.code(), 0);
    assert!(
        refused.stderr().contains("service app: cannot push") && refused.stderr().contains("401"),
        "{}",
        refused.stderr()
    );
    // `login` through the same server keeps the credentials on the client side (DOCKER_CONFIG).
    let mut login = std::process::Command::new(&engine_bin);
    login
        .args(["login", "-u", "ci", "--password-stdin", &reg.host()])
        .env("DOCKER_CONFIG", dir.path().join(".docker-config"))
        .env("DRYDOCK_HOST", server.host());
    Run::with_stdin(&mut login, b"s3cret\n").success();
    compose(&["push"]).success();
    engine.run(["rmi", &image]).success();
    compose(&["pull"]).success();
    compose(&["run", "--rm", "-T", "app", "echo", "pulled-and-ran"]).success().stdout_has("pulled-and-ran");
    compose(&["down"]).success();
}
