//! `engine build` end to end on the busybox fixture: multi-stage with `--target` and `COPY --from`, the layer
//! cache across builds, `.dockerignore`, `ARG`/`--build-arg`, failures that leave nothing behind, syntax errors
//! with their line, a context tar on stdin, and skopeo reading a built image as an independent oracle.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::util::{can_run_containers, store_state, TestEngine};

fn engine() -> Option<TestEngine> {
    can_run_containers().then(TestEngine::with_busybox)
}

/// A context directory with these files (path, content).
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("context dir");
    for (path, content) in files {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, content).expect("write");
    }
    dir
}

fn path(dir: &Path) -> String {
    dir.to_string_lossy().into_owned()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn multi_stage_builds_only_the_needed_stages_and_copies_from_a_stage() {
    let Some(e) = engine() else { return };
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS builder\n\
         RUN mkdir /out && echo compiled > /out/app.txt\n\
         FROM busybox AS unused\n\
         RUN echo this stage must not run && false\n\
         FROM busybox\n\
         COPY --from=builder /out/app.txt /srv/\n\
         CMD [\"cat\", \"/srv/app.txt\"]\n",
    )]);
    let out = e.run(["build", "-t", "multi:1", &path(ctx.path())]).success();
    assert!(!out.stdout().contains("must not run"), "the unused stage ran:\n{}", out.stdout());
    // 2 steps of builder + 3 of the final stage.
    out.stdout_has("Step 1/5 : FROM busybox AS builder").stdout_has("Successfully tagged multi:1");
    e.run(["run", "--rm", "multi:1"]).success().stdout_is("compiled\n");

    let out = e.run(["build", "--target", "builder", "-t", "multi:builder", &path(ctx.path())]).success();
    out.stdout_has("Step 2/2 : RUN mkdir /out");
    e.run(["run", "--rm", "multi:builder", "cat", "/out/app.txt"]).success().stdout_is("compiled\n");
    e.run(["build", "--target", "nosuch", &path(ctx.path())])
        .code_is(1)
        .stderr_has("target stage \"nosuch\" could not be found");
}

#[test]
fn second_build_is_all_cache_hits_and_a_changed_file_invalidates_from_its_copy() {
    let Some(e) = engine() else { return };
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nENV A=1\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy.txt\nCOPY b.txt /b.txt\nCMD [\"cat\", \"/copy.txt\"]\n",
        ),
        ("a.txt", "one\n"),
        ("b.txt", "bee\n"),
    ]);
    let first = e.run(["build", "-t", "cached", &path(ctx.path())]).success();
    assert_eq!(count(&first.stdout(), "Using cache"), 0, "{}", first.stdout());
    let second = e.run(["build", "-t", "cached", &path(ctx.path())]).success();
    assert_eq!(count(&second.stdout(), "Using cache"), 5, "{}", second.stdout());
    assert!(!second.stdout().contains("Running in"), "{}", second.stdout());
    let id = |r: &crate::util::Run| {
        r.stdout().lines().find_map(|l| l.strip_prefix("Successfully built ").map(str::to_owned))
    };
    assert_eq!(id(&first), id(&second), "an all-hit rebuild gives the same image");

    fs::write(ctx.path().join("a.txt"), "two\n").expect("change a.txt");
    let third = e.run(["build", "-t", "cached", &path(ctx.path())]).success();
    // ENV hits; the COPY of the changed file and everything after it run again.
    assert_eq!(count(&third.stdout(), "Using cache"), 1, "{}", third.stdout());
    third.stdout_has("Running in");
    e.run(["run", "--rm", "cached"]).success().stdout_is("two\n");

    let fresh = e.run(["build", "--no-cache", "-t", "cached", &path(ctx.path())]).success();
    assert_eq!(count(&fresh.stdout(), "Using cache"), 0, "{}", fresh.stdout());

    // `image prune` keeps what the tagged image needs: the cache still hits afterwards.
    e.run(["image", "prune"]).success();
    let after_prune = e.run(["build", "-t", "cached", &path(ctx.path())]).success();
    assert_eq!(count(&after_prune.stdout(), "Using cache"), 5, "{}", after_prune.stdout());
}

#[test]
fn dockerignore_hides_files_from_copy() {
    let Some(e) = engine() else { return };
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nCOPY . /ctx/\nCMD [\"ls\", \"-a\", \"/ctx\", \"/ctx/src\"]\n"),
        (".dockerignore", "secret*\n**/*.log\n!keep.log\n"),
        ("secret.key", "k"),
        ("keep.log", "kept"),
        ("src/main.c", "int main;"),
        ("src/debug.log", "noise"),
    ]);
    e.run(["build", "-t", "ign", &path(ctx.path())]).success();
    let out = e.run(["run", "--rm", "ign"]).success().stdout();
    assert!(out.contains("keep.log") && out.contains("main.c") && out.contains("Dockerfile"), "{out}");
    assert!(!out.contains("secret.key") && !out.contains("debug.log"), "{out}");

    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nCOPY secret.key /\n"),
        (".dockerignore", "secret.key\n"),
        ("secret.key", "k"),
    ]);
    e.run(["build", &path(ctx.path())]).code_is(1).stderr_has("Dockerfile:2").stderr_has("secret.key");
}

#[test]
fn args_before_from_and_build_args_reach_run_and_invalidate_where_used() {
    let Some(e) = engine() else { return };
    let ctx = context(&[(
        "Dockerfile",
        "ARG BASE=busybox\nFROM $BASE\nRUN echo early > /early\nARG WHO=world\nRUN echo \"hello $WHO\" > /greeting\nCMD [\"cat\", \"/greeting\"]\n",
    )]);
    e.run(["build", "-t", "args", &path(ctx.path())]).success();
    e.run(["run", "--rm", "args"]).success().stdout_is("hello world\n");
    let out = e.run(["build", "--build-arg", "WHO=drydock", "-t", "args", &path(ctx.path())]).success();
    // The RUN before the ARG and the ARG itself hit; the RUN after it misses (docker: every RUN after an ARG
    // uses it implicitly, as an environment variable).
    assert_eq!(count(&out.stdout(), "Using cache"), 2, "{}", out.stdout());
    e.run(["run", "--rm", "args"]).success().stdout_is("hello drydock\n");
    e.run(["build", "--build-arg", "NOPE=1", &path(ctx.path())])
        .success()
        .stderr_has("[Warning] One or more build-args [NOPE] were not consumed");
}

#[test]
fn failing_run_reports_the_command_tags_nothing_and_leaves_nothing_behind() {
    let Some(e) = engine() else { return };
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo partial > /p\nRUN exit 3\n")]);
    let before = store_state(e.root());
    e.run(["build", "-t", "broken", &path(ctx.path())])
        .code_is(1)
        .stderr_has("The command '/bin/sh -c exit 3' returned a non-zero code: 3");
    e.run(["images", "-q", "broken"]).success().stdout_is("");
    e.run(["ps", "-aq"]).success().stdout_is("");
    let after = store_state(e.root());
    // The index is unchanged (nothing tagged, no dangling image); only the first RUN's layer may stay cached.
    assert_eq!(before.last(), after.last(), "index.json changed");
}

#[test]
fn syntax_errors_name_the_dockerfile_line() {
    let e = TestEngine::with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox\n\nRUNN echo hi\n")]);
    let before = store_state(e.root());
    e.run(["build", "-t", "x", &path(ctx.path())]).code_is(1).stderr_has("Dockerfile:3: unknown instruction: RUNN");
    assert_eq!(before, store_state(e.root()));
    let ctx = context(&[("Dockerfile", "FROM busybox\nCOPY missing.txt /\n")]);
    e.run(["build", &path(ctx.path())]).code_is(1).stderr_has("Dockerfile:2").stderr_has("missing.txt");
    // BuildKit-only flags are refused by name rather than silently ignored.
    for (line, flag) in [("COPY --parents a/ /x/", "COPY --parents"), ("COPY --exclude=*.md . /x/", "COPY --exclude")] {
        let ctx = context(&[("Dockerfile", &format!("FROM busybox\n{line}\n")), ("a/f", "f")]);
        e.run(["build", &path(ctx.path())]).code_is(1).stderr_has("Dockerfile:2").stderr_has(flag);
    }
}

#[test]
fn context_tar_on_stdin_quiet_and_iidfile() {
    let Some(e) = engine() else { return };
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Dockerfile", &b"FROM busybox\nWORKDIR /w\nCOPY msg .\nCMD [\"cat\", \"msg\"]\n"[..]),
        ("msg", &b"from a tar\n"[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).expect("append");
    }
    let tar = b.into_inner().expect("tar");
    let iid = tempfile::NamedTempFile::new().expect("iidfile");
    let iid_path = iid.path().to_string_lossy().into_owned();
    let out = e.run_stdin(["build", "-q", "--iidfile", &iid_path, "-t", "fromtar", "-"], &tar).success();
    let id = out.stdout().trim().to_owned();
    assert!(id.starts_with("sha256:") && id.len() == 71, "-q prints only the ID: {id:?}");
    assert_eq!(fs::read_to_string(iid.path()).expect("iidfile"), id);
    e.run(["run", "--rm", "fromtar"]).success().stdout_is("from a tar\n");

    // A lone Dockerfile on stdin builds with an empty context.
    e.run_stdin(["build", "-t", "lone", "-"], b"FROM busybox\nLABEL a=b\n")
        .success()
        .stdout_has("Successfully tagged lone:latest");
}

#[test]
fn built_image_config_is_read_by_skopeo() {
    let Some(e) = engine() else { return };
    if Command::new("skopeo").arg("--version").output().is_err() {
        panic!("skopeo is missing: run script/bootstrap");
    }
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nLABEL org.example.team=ci\nENV MODE=test\nEXPOSE 8080\nUSER 1000:1000\nWORKDIR /srv\nADD files.tar /srv/\nENTRYPOINT [\"cat\"]\nCMD [\"/srv/inner.txt\"]\n",
        ),
    ]);
    // ADD extracts a local tar into the destination.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "inner.txt", &b"inner\n"[..]).expect("append");
    fs::write(ctx.path().join("files.tar"), b.into_inner().expect("tar")).expect("write tar");
    e.run(["build", "--label", "built.by=drydock", "-t", "oracle:1", &path(ctx.path())]).success();
    e.run(["run", "--rm", "oracle:1"]).success().stdout_is("inner\n");

    let archive = e.root().join("oracle.tar");
    e.run(["save", "-o", &archive.to_string_lossy(), "oracle:1"]).success();
    let out = Command::new("skopeo")
        .args(["inspect", "--config", &format!("docker-archive:{}", archive.display())])
        .output()
        .expect("skopeo");
    assert!(out.status.success(), "skopeo failed: {}", String::from_utf8_lossy(&out.stderr));
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo prints JSON");
    let c = &config["config"];
    assert_eq!(c["Labels"]["org.example.team"], "ci");
    assert_eq!(c["Labels"]["built.by"], "drydock");
    assert!(c["Env"].as_array().expect("env").iter().any(|v| v == "MODE=test"));
    assert!(c["ExposedPorts"].get("8080/tcp").is_some());
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["Entrypoint"], serde_json::json!(["cat"]));
    assert_eq!(c["Cmd"], serde_json::json!(["/srv/inner.txt"]));
    // One layer for busybox, one for WORKDIR, one for ADD; history has an entry per step.
    assert_eq!(config["rootfs"]["diff_ids"].as_array().expect("diff_ids").len(), 3);
    assert_eq!(config["history"].as_array().expect("history").len(), 9);
}

/// Serves `body` for every request on a loopback port until the test ends; returns the port.
fn serve(body: &'static [u8]) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    port
}

#[test]
fn onbuild_heredocs_chown_chmod_workdir_volume_and_add_from_a_url() {
    let Some(e) = engine() else { return };
    let port = serve(b"downloaded\n");
    let dockerfile = format!(
        "FROM busybox AS parent\n\
         ONBUILD RUN echo triggered > /trigger\n\
         FROM parent\n\
         WORKDIR /work/deep\n\
         RUN <<EOT\n\
         #!/bin/sh\n\
         echo \"script in $(pwd)\" > /script.txt\n\
         EOT\n\
         COPY <<EOT /etc/app.conf\n\
         mode=test\n\
         EOT\n\
         COPY --chown=daemon:daemon --chmod=640 owned.txt ./\n\
         VOLUME /data\n\
         RUN echo lost > /data/lost && mkdir -p /kept && echo kept > /kept/file\n\
         ADD http://127.0.0.1:{port}/file.txt /dl/\n\
         CMD cat /trigger /script.txt /etc/app.conf /dl/file.txt /kept/file && ls -A /data && stat -c '%u:%g %a' owned.txt /dl/file.txt\n"
    );
    let ctx = context(&[("Dockerfile", &dockerfile), ("owned.txt", "mine")]);
    let out = e.run(["build", "-t", "misc", &path(ctx.path())]).success();
    out.stdout_has("# Executing 1 build trigger");
    e.run(["run", "--rm", "misc"])
        .success()
        .stdout_is("triggered\nscript in /work/deep\nmode=test\ndownloaded\nkept\n1:1 640\n0:0 600\n");
    // The trigger ran in the child and is not passed on to grandchildren.
    e.run(["inspect", "--format", "{{json .Config.OnBuild}}", "misc"]).success().stdout_is("null\n");
}

#[test]
fn interrupting_a_build_during_run_removes_its_container_and_tags_nothing() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let Some(e) = engine() else { return };
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN sleep 600\n")]);
    let mut child = e
        .cmd(["build", "-t", "interrupted", &path(ctx.path())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn build");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("Running in") {
        line.clear();
        assert!(stdout.read_line(&mut line).expect("read") > 0, "the build ended before RUN started");
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the build was interrupted"));
    e.run(["ps", "-aq"]).success().stdout_is("");
    e.run(["images", "-q", "interrupted"]).success().stdout_is("");
}

#[test]
fn a_build_that_changes_nothing_names_the_base_image() {
    let e = TestEngine::with_busybox();
    let base = e.run(["inspect", "--format", "{{.Id}}", "busybox"]).success().stdout();
    let out = e.run_stdin(["build", "-q", "-t", "same", "-"], b"FROM busybox\n").success();
    assert_eq!(out.stdout(), base);
    e.run(["inspect", "--format", "{{.Id}}", "same"]).success().stdout_is(&base);
}
