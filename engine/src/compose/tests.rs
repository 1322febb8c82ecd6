//! Loader tests on real files in temporary directories: discovery, `.env`, interpolation, merging several
//! files, `extends`, `include`, profiles and the located errors of bad files.

use std::collections::BTreeMap;
use std::path::Path;

use super::load::{load, LoadError, LoadOptions};
use super::model::{Condition, VolumeKind};

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn options(dir: &Path) -> LoadOptions {
    LoadOptions { working_dir: dir.to_path_buf(), environment: BTreeMap::new(), ..LoadOptions::default() }
}

fn errors(err: LoadError) -> String {
    err.to_string()
}

#[test]
fn finds_the_file_and_its_override_and_names_the_project_after_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("My_App");
    write(&dir, "compose.yaml", "services:\n  web:\n    image: busybox\n    environment: [A=1, B=2]\n");
    write(&dir, "compose.override.yaml", "services:\n  web:\n    environment:\n      B: over\n      C: new\n");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let p = load(&options(&dir.join("sub"))).unwrap();
    assert_eq!(p.name, "my_app");
    let env = &p.services["web"].environment;
    assert_eq!(env["A"].as_deref(), Some("1"));
    assert_eq!(env["B"].as_deref(), Some("over"));
    assert_eq!(env["C"].as_deref(), Some("new"));
    assert_eq!(p.networks["default"].name, "my_app_default");
}

#[test]
fn interpolates_from_dotenv_with_the_process_environment_winning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, ".env", "TAG=1.0\nPORT=8080\nCOMPOSE_PROJECT_NAME=fromenv\n");
    write(dir, "docker-compose.yml", "services:\n  app:\n    image: \"app:${TAG}\"\n    ports: [\"127.0.0.1:${PORT}:80\"]\n    command: echo ${MISSING:-fallback} $$HOME\n");
    let mut o = options(dir);
    o.environment.insert("TAG".into(), "2.0".into());
    let p = load(&o).unwrap();
    assert_eq!(p.name, "fromenv");
    let app = &p.services["app"];
    assert_eq!(app.image.as_deref(), Some("app:2.0"));
    assert_eq!(app.ports[0].to_publish_flag(), "127.0.0.1:8080:80");
    assert_eq!(app.command.as_deref().unwrap(), ["echo", "fallback", "$HOME"]);
}

#[test]
fn unset_variables_warn_and_required_ones_fail_with_their_location() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "compose.yaml", "services:\n  app:\n    image: busybox:${NOPE}\n");
    let p = load(&options(dir)).unwrap();
    assert!(p.warnings.iter().any(|w| w.contains("\"NOPE\" variable is not set")), "{:?}", p.warnings);
    write(
        dir,
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    environment:\n      DB: ${DB_URL:?set DB_URL in .env}\n",
    );
    let msg = errors(load(&options(dir)).unwrap_err());
    assert!(msg.ends_with("compose.yaml:5:11: services.app.environment.DB: required variable DB_URL is missing a value: set DB_URL in .env"), "{msg}");
}

#[test]
fn merges_several_files_by_the_specification_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yml", "services:\n  web:\n    image: one\n    command: [a, b]\n    ports: [\"80\"]\n    volumes: [\"data:/data\", \"./x:/x\"]\n    labels: {l1: a}\nvolumes:\n  data: {}\n");
    write(dir, "b.yml", "services:\n  web:\n    image: two\n    command: [c]\n    ports: [\"443\"]\n    volumes: [\"./y:/x:ro\"]\n    labels: [l2=b]\n");
    let mut o = options(dir);
    o.files = vec!["a.yml".into(), "b.yml".into()];
    let p = load(&o).unwrap();
    let web = &p.services["web"];
    assert_eq!(web.image.as_deref(), Some("two"));
    assert_eq!(web.command.as_deref().unwrap(), ["c"]);
    assert_eq!(web.ports.iter().map(|p| p.target).collect::<Vec<_>>(), [80, 443]);
    assert_eq!(web.volumes.len(), 2);
    assert_eq!(web.volumes[1].kind, VolumeKind::Bind(dir.join("y")));
    assert!(web.volumes[1].read_only);
    assert_eq!(web.labels.len(), 2);
}

#[test]
fn extends_in_the_same_and_another_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(
        dir,
        "common/base.yml",
        "services:\n  base:\n    image: busybox\n    environment: {LEVEL: base}\n    volumes: [\"./data:/data\"]\n",
    );
    write(
        dir,
        "compose.yaml",
        "services:\n  mid:\n    extends: {file: common/base.yml, service: base}\n    environment: {MID: \"1\"}\n  top:\n    extends: mid\n    environment: {LEVEL: top}\n    depends_on: [mid]\n",
    );
    let p = load(&options(dir)).unwrap();
    let top = &p.services["top"];
    assert_eq!(top.image.as_deref(), Some("busybox"));
    assert_eq!(top.environment["LEVEL"].as_deref(), Some("top"));
    assert_eq!(top.environment["MID"].as_deref(), Some("1"));
    // A relative path in the extended file is relative to that file.
    assert_eq!(top.volumes[0].kind, VolumeKind::Bind(dir.join("common/data")));
}

#[test]
fn extends_cycles_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "compose.yaml", "services:\n  a:\n    extends: b\n  b:\n    extends: a\n");
    let msg = errors(load(&options(tmp.path())).unwrap_err());
    assert!(msg.contains("circular extends: a -> b -> a"), "{msg}");
}

#[test]
fn include_brings_in_services_and_refuses_conflicts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(
        dir,
        "db/compose.yaml",
        "services:\n  db:\n    image: postgres\n    volumes: [\"./init:/docker-entrypoint-initdb.d\"]\n",
    );
    write(
        dir,
        "compose.yaml",
        "include:\n  - db/compose.yaml\nservices:\n  web:\n    image: busybox\n    depends_on: [db]\n",
    );
    let p = load(&options(dir)).unwrap();
    assert_eq!(p.services["db"].volumes[0].kind, VolumeKind::Bind(dir.join("db/init")));
    write(dir, "compose.yaml", "include:\n  - db/compose.yaml\nservices:\n  db:\n    image: busybox\n");
    let msg = errors(load(&options(dir)).unwrap_err());
    assert!(msg.contains("services.db: service `db` is also defined by the included db/compose.yaml"), "{msg}");
}

#[test]
fn profiles_disable_services_unless_active() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "compose.yaml", "services:\n  web:\n    image: a\n  debug:\n    image: b\n    profiles: [debug]\n");
    let p = load(&options(dir)).unwrap();
    assert_eq!(p.services.keys().collect::<Vec<_>>(), ["web"]);
    assert_eq!(p.disabled_services, ["debug"]);
    let mut o = options(dir);
    o.environment.insert("COMPOSE_PROFILES".into(), "debug".into());
    assert_eq!(load(&o).unwrap().services.len(), 2);
}

#[test]
fn long_syntaxes_are_normalised() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(
        dir,
        "compose.yaml",
        r#"
x-common: &common
  restart: unless-stopped
services:
  db:
    <<: *common
    image: postgres:16
    healthcheck:
      test: pg_isready -U postgres
      interval: 1s
      retries: 30
    volumes:
      - type: volume
        source: pgdata
        target: /var/lib/postgresql/data
      - type: tmpfs
        target: /tmp
        tmpfs: {size: 64m}
  web:
    <<: *common
    build:
      context: ./app
      args: [VERSION=1]
    ports:
      - target: 80
        published: "8080"
        host_ip: 127.0.0.1
    networks:
      front:
        aliases: [www]
    depends_on:
      db:
        condition: service_healthy
    deploy:
      replicas: 2
      resources: {limits: {cpus: "0.5", memory: 256m}}
volumes:
  pgdata:
networks:
  front:
"#,
    );
    let p = load(&options(dir)).unwrap();
    let db = &p.services["db"];
    assert_eq!(db.restart.as_deref(), Some("unless-stopped"));
    let hc = db.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD-SHELL", "pg_isready -U postgres"]);
    assert_eq!(hc.interval, Some(std::time::Duration::from_secs(1)));
    assert_eq!(db.volumes[0].kind, VolumeKind::Volume(Some("pgdata".into())));
    assert_eq!(db.volumes[1].kind, VolumeKind::Tmpfs { size: Some(64 << 20) });
    let web = &p.services["web"];
    assert_eq!(web.build.as_ref().unwrap().context, dir.join("app"));
    assert_eq!(web.build.as_ref().unwrap().args["VERSION"].as_deref(), Some("1"));
    assert_eq!(web.ports[0].to_publish_flag(), "127.0.0.1:8080:80");
    assert_eq!(web.networks["front"].aliases, ["www"]);
    assert_eq!(web.depends_on["db"].condition, Condition::Healthy);
    assert_eq!((web.replicas, web.cpus, web.memory.as_deref()), (2, Some(0.5), Some("256m")));
    assert_eq!(p.volumes["pgdata"].name, format!("{}_pgdata", p.name));
    assert_eq!(p.networks["front"].name, format!("{}_front", p.name));
    // `db` lists no networks, so it joins the project's default one; `web` only joins `front`.
    assert_eq!(p.networks["default"].name, format!("{}_default", p.name));
    assert!(!web.networks.contains_key("default"));
}

#[test]
fn bad_files_report_file_line_column_and_key_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cases: &[(&str, &str)] = &[
        (
            "services:\n  web:\n    imgae: busybox\n",
            "compose.yaml:3:5: services.web.imgae: unknown key `imgae`; did you mean `image`?",
        ),
        (
            "services:\n  web:\n    image: busybox\n    ports: [\"http\"]\n",
            "compose.yaml:4:13: services.web.ports[0]: invalid port \"http\": \"http\" is not a port number",
        ),
        (
            "services:\n  web:\n    image: busybox\n    depends_on: [dbb]\n  db:\n    image: x\n",
            "services.web.depends_on: depends on undefined service `dbb`; did you mean `db`?",
        ),
        (
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
            "services: dependency cycle detected: a -> b -> a",
        ),
        (
            "services:\n  web:\n    image: busybox\n    volumes: [\"data:/data\"]\n",
            "services.web.volumes: service refers to undefined volume `data`",
        ),
        (
            "services:\n  web:\n    build: .\n    restart: sometimes\n",
            "compose.yaml:4:14: services.web.restart: invalid restart policy \"sometimes\"",
        ),
        (
            "services:\n  web:\n    command: echo\n",
            "compose.yaml:2:3: services.web: service has neither an image nor a build context",
        ),
        ("services:\n  web:\n    image: [unclosed\n", "compose.yaml:"),
        (
            "services:\n  web:\n    image: a\n    healthcheck:\n      interval: 5 minutes\n",
            "services.web.healthcheck.interval: invalid duration \"5 minutes\"",
        ),
        ("- just\n- a list\n", "compose.yaml:1:1: top-level must be a mapping, found a sequence"),
    ];
    for (text, want) in cases {
        write(dir, "compose.yaml", text);
        let msg = errors(load(&options(dir)).unwrap_err());
        assert!(msg.contains(want), "for\n{text}\nwant {want:?}\ngot  {msg:?}");
        assert!(msg.starts_with(&dir.display().to_string()) || msg.contains("compose.yaml"), "{msg}");
    }
}

#[test]
fn unsupported_keys_are_warnings_not_silence() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "compose.yaml",
        "services:\n  web:\n    image: a\n    logging: {driver: json-file}\n    x-custom: 1\n",
    );
    let p = load(&options(tmp.path())).unwrap();
    assert_eq!(p.warnings, ["services.web.logging: not supported by drydock; ignored"]);
}

#[test]
fn no_file_found_says_where_it_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let msg = errors(load(&options(tmp.path())).unwrap_err());
    assert!(msg.starts_with("no configuration file provided: not found"), "{msg}");
}
