//! `runner exec` as a user runs it: a job of a project's `.circleci/config.yml` run in real containers on the
//! busybox fixture — steps and their output, a failing step and `when: on_fail`, a service container on
//! `localhost`, `checkout` of a git repository at a revision, secret masking and the order of environment
//! layers. The engine root is the test engine's, passed as `DRYDOCK_ROOT`.

use std::path::Path;
use std::process::Command;

use crate::util::{bin_dir, can_run_containers, Run, TestEngine};

/// A git repository holding `.circleci/config.yml` (and `files`), committed; returns its directory.
fn project(config: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("drydock-project-").tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join(".circleci")).expect("mkdir");
    std::fs::write(dir.path().join(".circleci/config.yml"), config).expect("write config");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write file");
    }
    let repo = git2::Repository::init(dir.path()).expect("git init");
    commit_all(&repo, "first");
    dir
}

fn commit_all(repo: &git2::Repository, message: &str) -> git2::Oid {
    let mut index = repo.index().expect("index");
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).expect("add");
    index.write().expect("write index");
    let tree = repo.find_tree(index.write_tree().expect("tree")).expect("find tree");
    let sig = git2::Signature::now("Test", "test@drydock.invalid").expect("signature");
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents).expect("commit")
}

fn runner_exec(e: &TestEngine, dir: &Path, args: &[&str]) -> Run {
    let mut c = Command::new(bin_dir().join("runner"));
    c.arg("exec").args(args).current_dir(dir).env("DRYDOCK_ROOT", e.root());
    Run::of(&mut c)
}

/// No container of the job is left behind.
fn assert_no_containers(e: &TestEngine) {
    let ps = e.run(["ps", "-aq"]).success();
    assert_eq!(ps.stdout(), "", "containers left behind");
}

#[test]
fn runner_exec_runs_steps_and_prints_headers_output_and_summary() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let p = project(
        "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}]\n    steps:\n\
         \x20     - run: {name: Greet, command: 'echo hello from $CIRCLE_JOB in $(pwd)'}\n\
         \x20     - run: echo second step\nworkflows:\n  main:\n    jobs: [build]\n",
        &[],
    );
    let r = runner_exec(&e, p.path(), &["build"]).success();
    r.stdout_has("==> [1] Greet\nhello from build in /root/project\n")
        .stdout_has("<== [1] Greet: success in ")
        .stdout_has("second step\n")
        .stdout_has("Job build: success — 3 steps, 0 failed, 0 skipped, in ");
    assert_no_containers(&e);
}

#[test]
fn runner_exec_failing_step_exits_1_and_runs_on_fail_steps() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let p = project(
        "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}]\n    steps:\n\
         \x20     - run: {name: breaks, command: 'echo breaking; exit 3'}\n\
         \x20     - run: {name: next, command: echo must not run}\n\
         \x20     - run: {name: report, command: echo reporting the failure, when: on_fail}\n\
         \x20     - run: {name: always, command: echo always runs, when: always}\n\
         workflows:\n  main:\n    jobs: [build]\n",
        &[],
    );
    let r = runner_exec(&e, p.path(), &[]).code_is(1);
    let r = r
        .stdout_has("<== [1] breaks: failed (exit 3) in ")
        .stdout_has("--- [2] next: skipped\n")
        .stdout_has("reporting the failure\n")
        .stdout_has("always runs\n")
        .stdout_has("Job build: failed — 5 steps, 1 failed, 1 skipped");
    assert!(!r.stdout().contains("must not run"), "{}", r.stdout());
    assert_no_containers(&e);
}

#[test]
fn runner_exec_service_container_is_reachable_on_localhost_and_by_name() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let p = project(
        "version: 2.1\njobs:\n  build:\n    docker:\n      - image: busybox:latest\n\
         \x20     - image: busybox:latest\n        name: web\n        entrypoint: [httpd, -f, -p, '8000', -h, /etc]\n\
         \x20   steps:\n      - run: |\n          for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O /tmp/h http://localhost:8000/passwd && break; sleep 0.2; done\n\
         \x20         head -1 /tmp/h\n          wget -q -O - http://web:8000/group | head -1\n\
         workflows:\n  main:\n    jobs: [build]\n",
        &[],
    );
    runner_exec(&e, p.path(), &["build"])
        .success()
        .stdout_has("root:x:0:0:root:/root:/bin/sh\n")
        .stdout_has("root:x:0:");
    assert_no_containers(&e);
}

#[test]
fn runner_exec_checkout_copies_the_repository_at_the_revision() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let config = "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}]\n    steps:\n\
                  \x20     - checkout\n      - run: cat version.txt; ls -d .git\n\
                  \x20     - checkout: {path: ~/other}\n      - run: cat ~/other/version.txt\n\
                  workflows:\n  main:\n    jobs: [build]\n";
    let p = project(config, &[("version.txt", "one\n")]);
    let repo = git2::Repository::open(p.path()).expect("open");
    let first = repo.head().expect("head").peel_to_commit().expect("commit").id().to_string();
    std::fs::write(p.path().join("version.txt"), "two\n").expect("write");
    commit_all(&repo, "second");
    // Uncommitted changes are not part of a checkout.
    std::fs::write(p.path().join("version.txt"), "dirty\n").expect("write");

    runner_exec(&e, p.path(), &[]).success().stdout_has("two\n.git\n").stdout_has("two\n<== [4]");
    let r = runner_exec(&e, p.path(), &["--revision", &first, "--branch", "feature"]).success();
    r.stdout_has(&format!("Checked out {first} on branch feature into /root/project\n")).stdout_has("one\n.git\n");
    assert_no_containers(&e);
}

#[test]
fn runner_exec_masks_secrets_in_every_form() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    // The value is printed raw, split across two writes (two chunks), base64'd and URL-encoded, and the
    // env-file's multi-line value line by line.
    let p = project(
        "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}]\n    steps:\n\
         \x20     - run: |\n          echo \"raw: $TOKEN\"\n          printf 'split: s3cr'; sleep 0.2; printf 'et-tok/en\\n'\n\
         \x20         printf %s \"$TOKEN\" | base64\n          echo 'url: s3cret-tok%2Fen'\n\
         \x20         echo \"$KEY\" | tail -1\n          echo \"short: $PIN\"\n\
         workflows:\n  main:\n    jobs: [build]\n",
        &[],
    );
    let env_file = p.path().join("vars.env");
    std::fs::write(&env_file, "KEY=first-line\nPIN=12\n").expect("write env file");
    let r = runner_exec(
        &e,
        p.path(),
        &["-e", "TOKEN=s3cret-tok/en", "-e", "KEY=line-one\nline-two-secret", "-e", "PIN=12", "--env-file", "vars.env"],
    )
    .success();
    let out = r.stdout();
    for leak in ["s3cret-tok/en", "s3cret-tok%2Fen", "czNjcmV0LXRvay9lbg==", "line-two-secret"] {
        assert!(!out.contains(leak), "`{leak}` leaked:\n{out}");
    }
    r.stdout_has("raw: ********\n")
        .stdout_has("split: ********\n")
        .stdout_has("url: ********\n")
        .stdout_has("\n********\n")
        .stdout_has("short: 12\n");
}

#[test]
fn runner_exec_environment_layers_override_in_order() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    // Project variables (-e) override built-ins, the job's override the project's, the step's the job's. Values
    // are shorter than 4 characters so they are shown, not masked.
    let p = project(
        "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}]\n\
         \x20   environment: {B: job, C: job}\n    steps:\n\
         \x20     - run:\n          command: echo \"CI=$CI JOB=$CIRCLE_JOB A=$A B=$B C=$C N=$CIRCLE_NODE_TOTAL\"\n\
         \x20         environment: {C: stp}\nworkflows:\n  main:\n    jobs: [build]\n",
        &[],
    );
    runner_exec(&e, p.path(), &["-e", "CIRCLE_JOB=prj", "-e", "A=prj", "-e", "B=prj", "-e", "C=prj"])
        .success()
        .stdout_has("CI=true JOB=prj A=prj B=job C=stp N=1\n");
}

#[test]
fn runner_exec_config_errors_exit_2() {
    let dir = project("version: 2.1\njobs:\n  build:\n    docker: [{image: busybox}]\n    step: [checkout]\n", &[]);
    let e = TestEngine::new();
    runner_exec(&e, dir.path(), &[]).code_is(2);
    let ok = project(
        "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox}]\n    steps: [checkout]\n\
         workflows:\n  main:\n    jobs: [build]\n",
        &[],
    );
    runner_exec(&e, ok.path(), &["nope"]).code_is(2).stderr_has("has no job `nope`; jobs: build");
    runner_exec(&e, ok.path(), &["-e", "1BAD=x"]).code_is(2).stderr_has("is not a variable name");
}

#[test]
fn runner_exec_ctrl_c_stops_the_step_and_removes_the_containers() {
    use std::io::BufRead;
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let p = project(
        "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}, {image: busybox:latest, command: sleep 1000}]\n\
         \x20   steps:\n      - run: {command: sleep 1000, background: true}\n\
         \x20     - run: echo started; sleep 1000\nworkflows:\n  main:\n    jobs: [build]\n",
        &[],
    );
    let mut child = Command::new(bin_dir().join("runner"))
        .args(["exec", "--json"])
        .current_dir(p.path())
        .env("DRYDOCK_ROOT", e.root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn runner");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("read");
        let started = line.contains("started\\n");
        seen.push(line);
        if started {
            break;
        }
    }
    assert!(seen.last().is_some_and(|l| l.contains("started")), "the step never started: {seen:?}");
    let running = e.run(["ps", "-q"]).success();
    assert_eq!(running.stdout().lines().count(), 2, "primary and service run");
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    seen.extend(lines.map_while(Result::ok));
    let code = child.wait().expect("wait");
    assert_eq!(code.code(), Some(1), "{seen:?}");
    let last: serde_json::Value = serde_json::from_str(seen.last().expect("events")).expect("JSON event");
    assert_eq!(last["event"], "job_finished", "{seen:?}");
    assert_eq!(last["status"], "canceled", "{seen:?}");
    assert_no_containers(&e);
}

#[test]
fn runner_exec_cache_saved_by_one_run_is_restored_by_the_next() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let data = tempfile::tempdir().expect("data dir");
    let config = "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}]\n    steps:\n\
                  \x20     - checkout\n\
                  \x20     - restore_cache: {keys: ['deps-{{ .Branch }}-{{ checksum \"lock.txt\" }}', 'deps-{{ .Branch }}-']}\n\
                  \x20     - run: cat deps/stamp || (mkdir deps && echo built by $CIRCLE_BUILD_NUM > deps/stamp)\n\
                  \x20     - save_cache: {key: 'deps-{{ .Branch }}-{{ checksum \"lock.txt\" }}', paths: [deps]}\n\
                  workflows:\n  main:\n    jobs: [build]\n";
    let p = project(config, &[("lock.txt", "v1\n")]);
    let data_dir = data.path().to_string_lossy().into_owned();
    let run = |n: &str| runner_exec(&e, p.path(), &["--data-dir", &data_dir, "--build-num", n, "--branch", "main"]);
    run("1").success().stdout_has("No cache is found for keys: deps-main-").stdout_has("Saving /root/project/deps (");
    // Same lock file: the exact key; the key exists, so nothing is saved again.
    run("2")
        .success()
        .stdout_has("Restored /root/project/deps\n")
        .stdout_has("built by 1\n")
        .stdout_has("Skipping cache generation, cache already exists for key: deps-main-");
    // A new lock file: the exact key misses, the prefix finds the newest cache of the branch.
    let repo = git2::Repository::open(p.path()).expect("open");
    std::fs::write(p.path().join("lock.txt"), "v2\n").expect("write");
    commit_all(&repo, "bump");
    run("3").success().stdout_has("Found a cache from key deps-main-").stdout_has("built by 1\n");
    assert_no_containers(&e);
}

#[test]
fn runner_exec_workflow_passes_the_workspace_and_stops_after_a_failure() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let data = tempfile::tempdir().expect("data dir");
    let config = "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}]\n    steps:\n\
                  \x20     - run: mkdir -p out/sub && echo made by $CIRCLE_JOB > out/sub/result.txt && echo hi > report.html\n\
                  \x20     - persist_to_workspace: {root: ., paths: [out]}\n\
                  \x20     - store_artifacts: {path: report.html, destination: reports/index.html}\n\
                  \x20 test:\n    docker: [{image: busybox:latest}]\n    steps:\n\
                  \x20     - attach_workspace: {at: /tmp/ws}\n      - run: cat /tmp/ws/out/sub/result.txt; exit $FAIL\n\
                  \x20 deploy:\n    docker: [{image: busybox:latest}]\n    steps: [{run: echo deploying}]\n\
                  workflows:\n  main:\n    jobs:\n      - build\n      - test: {requires: [build]}\n\
                  \x20     - hold: {type: approval, requires: [test]}\n      - deploy: {requires: [hold]}\n";
    let p = project(config, &[]);
    let data_dir = data.path().to_string_lossy().into_owned();
    let args = ["--workflow", "main", "--data-dir", &data_dir, "--branch", "main", "--approve", "hold"];
    let ok: Vec<&str> = args.iter().copied().chain(["-e", "FAIL=0"]).collect();
    runner_exec(&e, p.path(), &ok)
        .success()
        .stdout_has("Stored 1 file(s) from /root/project/report.html in ")
        .stdout_has("  reports/index.html (3B)\n")
        .stdout_has("Attached the workspace at /tmp/ws\n")
        .stdout_has("made by build\n")
        .stdout_has("Job hold: approval job, approved by this local run\n")
        .stdout_has("deploying\n")
        .stdout_has("Workflow main: success\n");
    assert_eq!(
        std::fs::read_to_string(data.path().join("artifacts/1/build/reports/index.html")).expect("artifact"),
        "hi\n"
    );
    let failing: Vec<&str> = args.iter().copied().chain(["-e", "FAIL=1"]).collect();
    let r = runner_exec(&e, p.path(), &failing).code_is(1);
    let r = r
        .stdout_has("Job test: failed")
        .stdout_has("Job hold: not run (requires test to end success, it ended failed)\n")
        .stdout_has("Job deploy: not run (requires hold to end success, it ended not_run)\n")
        .stdout_has("Workflow main: failed\n");
    assert!(!r.stdout().contains("deploying"), "{}", r.stdout());
    assert_no_containers(&e);
}

#[test]
fn runner_exec_store_test_results_summarises_junit_and_warns_about_a_broken_file() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let junit = "<?xml version=\"1.0\"?>\n<testsuites><testsuite name=\"pytest\" tests=\"3\">\n\
                 <testcase classname=\"tests.test_app\" name=\"test_ok\" file=\"tests/test_app.py\" time=\"0.5\"/>\n\
                 <testcase classname=\"tests.test_app\" name=\"test_bad\" time=\"0.25\"><failure message=\"assert 1 == 2\">E   assert 1 == 2</failure></testcase>\n\
                 <testcase classname=\"tests.test_app\" name=\"test_skip\"><skipped message=\"later\"/></testcase>\n\
                 </testsuite></testsuites>\n";
    let broken = "<testsuite name=\"x\">\n<testcase name=\"y\">\n</testsuite>\n";
    let p = project(
        "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}]\n    steps:\n\
         \x20     - checkout\n      - run: mkdir -p test-results/py && cp junit.xml test-results/py/ && cp broken.txt test-results/broken.xml\n\
         \x20     - store_test_results: {path: test-results}\nworkflows:\n  main:\n    jobs: [build]\n",
        &[("junit.xml", junit), ("broken.txt", broken)],
    );
    let r = runner_exec(&e, p.path(), &["build"]).success();
    let r = r
        .stdout_has("warning: /root/project/test-results/broken.xml:3: not well-formed XML")
        .stdout_has("Read 2 test results file(s) from /root/project/test-results\n")
        .stdout_has("FAILED tests.test_app.test_bad\n    assert 1 == 2\n    E   assert 1 == 2\n3 tests, 1 failed, 1 skipped, in 0.750s\n")
        .stdout_has("<== [3] Uploading test results (test-results): success");
    assert!(!r.stdout().contains("not supported"), "{}", r.stdout());
    let json = runner_exec(&e, p.path(), &["build", "--json"]).success();
    let event = json
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "test_results")
        .unwrap_or_else(|| panic!("no test_results event:\n{}", json.stdout()));
    assert_eq!(event["path"], "test-results");
    assert_eq!(event["cases"].as_array().map(Vec::len), Some(3));

    // The tests' step fails (as a test runner does on a failing test): the results are still uploaded, and
    // so are artifacts, as CircleCI does; the job fails.
    let failing = project(
        "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}]\n    steps:\n\
         \x20     - checkout\n      - run: mkdir -p test-results/py && cp junit.xml test-results/py/ && exit 1\n\
         \x20     - run: echo must not run\n\
         \x20     - store_test_results: {path: test-results}\n      - store_artifacts: {path: test-results}\n\
         workflows:\n  main:\n    jobs: [build]\n",
        &[("junit.xml", junit)],
    );
    runner_exec(&e, failing.path(), &["build"])
        .code_is(1)
        .stdout_has("3 tests, 1 failed, 1 skipped")
        .stdout_has("<== [4] Uploading test results (test-results): success")
        .stdout_has("<== [5] Uploading artifacts (test-results): success")
        .stdout_has("Job build: failed — 6 steps, 1 failed, 1 skipped");
    assert_eq!(event["cases"][1]["result"], "failure");
    assert_eq!(event["cases"][1]["run_time_ms"], 250);
    assert_eq!(event["cases"][0]["file"], "tests/test_app.py");
    assert_no_containers(&e);
}

#[test]
fn runner_exec_step_halt_ends_the_job_successfully_and_skips_the_rest() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let p = project(
        "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}]\n    steps:\n\
         \x20     - run: echo before\n      - run: {name: stop here, command: 'runner step halt && echo halted'}\n\
         \x20     - run: echo must not run\n      - run: {command: echo nor this, when: always}\n\
         workflows:\n  main:\n    jobs: [build]\n",
        &[],
    );
    let data = tempfile::tempdir().expect("data dir");
    let r = runner_exec(&e, p.path(), &["build", "--data-dir", &data.path().to_string_lossy()]).success();
    let r = r
        .stdout_has("Halting: the job ends successfully after this step\nhalted\n")
        .stdout_has("--- [3] echo must not run: skipped\n")
        .stdout_has("Job build: success — 5 steps, 0 failed, 2 skipped");
    assert!(!r.stdout().contains("nor this\n"), "{}", r.stdout());
    assert_no_containers(&e);
}

#[test]
fn runner_exec_parallelism_runs_each_node_and_tests_split_by_name_size_and_timings() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let junit = "<testsuite name=\"py\">\n\
                 <testcase classname=\"a\" name=\"t\" file=\"tests/a_test.py\" time=\"0.1\"/>\n\
                 <testcase classname=\"b\" name=\"t\" file=\"tests/b_test.py\" time=\"5\"/>\n\
                 <testcase classname=\"c\" name=\"t\" file=\"tests/sub/c_test.py\" time=\"4\"/>\n</testsuite>\n";
    let big = "x".repeat(1000);
    let config = "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}]\n    parallelism: 1\n    steps:\n\
         \x20     - checkout\n      - run: mkdir -p r && cp junit.xml r/\n      - store_test_results: {path: r}\n\
         \x20     - run: |\n          n=\"node $CIRCLE_NODE_INDEX/$CIRCLE_NODE_TOTAL\"\n\
         \x20         echo \"$n glob: $(runner tests glob 'tests/**/*_test.py' | tr '\\n' ' ')\"\n\
         \x20         echo \"$n name: $(runner tests glob 'tests/**/*_test.py' | runner tests split | tr '\\n' ' ')\"\n\
         \x20         echo \"$n size: $(runner tests glob 'tests/**/*_test.py' | runner tests split --split-by=filesize | tr '\\n' ' ')\"\n\
         \x20         echo \"$n timings: $(runner tests glob 'tests/**/*_test.py' | runner tests split --split-by timings | tr '\\n' ' ')\"\n\
         workflows:\n  main:\n    jobs: [build]\n";
    let dir = project(config, &[("junit.xml", junit), ("other.txt", "x")]);
    std::fs::create_dir_all(dir.path().join("tests/sub")).expect("mkdir");
    std::fs::write(dir.path().join("tests/a_test.py"), &big).expect("write");
    std::fs::write(dir.path().join("tests/b_test.py"), "0123456789").expect("write");
    std::fs::write(dir.path().join("tests/sub/c_test.py"), "01234567890123456789").expect("write");
    std::fs::write(dir.path().join("tests/helper.py"), "").expect("write");
    let repo = git2::Repository::open(dir.path()).expect("open");
    commit_all(&repo, "tests");
    let data = tempfile::tempdir().expect("data dir");
    let r = runner_exec(&e, dir.path(), &["build", "--parallelism", "2", "--data-dir", &data.path().to_string_lossy()])
        .success();
    r.stdout_has("Node 0 of 2 (CIRCLE_NODE_INDEX=0)")
        .stdout_has("Node 1 of 2 (CIRCLE_NODE_INDEX=1)")
        .stdout_has("node 0/2 glob: tests/a_test.py tests/b_test.py tests/sub/c_test.py \n")
        // By name: sorted, dealt in turn.
        .stdout_has("node 0/2 name: tests/a_test.py tests/sub/c_test.py \n")
        .stdout_has("node 1/2 name: tests/b_test.py \n")
        // By size: the 1000-byte file alone, the two small ones together.
        .stdout_has("node 0/2 size: tests/a_test.py \n")
        .stdout_has("node 1/2 size: tests/b_test.py tests/sub/c_test.py \n")
        // Node 0 ran before any results were stored: file sizes. Node 1 has node 0's timings: b (5 s) alone.
        .stdout_has("node 0/2 timings: tests/a_test.py \n")
        .stdout_has("node 1/2 timings: tests/a_test.py tests/sub/c_test.py \n");
    assert_no_containers(&e);
}

/// `ssh-keygen -l [-E md5] -f FILE`'s fingerprint.
fn fingerprint(file: &Path, md5: bool) -> String {
    let mut c = Command::new("ssh-keygen");
    c.arg("-l");
    if md5 {
        c.args(["-E", "md5"]);
    }
    let out = Run::of(c.arg("-f").arg(file)).success().stdout();
    let fp = out.split_whitespace().nth(1).expect("fingerprint").to_owned();
    fp.strip_prefix("MD5:").map(str::to_owned).unwrap_or(fp)
}

#[test]
fn runner_exec_add_ssh_keys_writes_the_selected_key_and_github_host_keys() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let keys = tempfile::tempdir().expect("key dir");
    for name in ["one", "two"] {
        let mut c = Command::new("ssh-keygen");
        c.args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"]).arg(keys.path().join(name));
        Run::of(&mut c).success();
    }
    let (one, two) = (keys.path().join("one"), keys.path().join("two"));
    let sha_two = fingerprint(&two.with_extension("pub"), false);
    let md5_two = fingerprint(&two.with_extension("pub"), true);
    let config = format!(
        "version: 2.1\njobs:\n  build:\n    docker: [{{image: busybox:latest}}]\n    steps:\n\
         \x20     - add_ssh_keys: {{fingerprints: ['{sha_two}']}}\n\
         \x20     - run: |\n          ls ~/.ssh\n          stat -c '%a %n' ~/.ssh ~/.ssh/id_rsa_*\n\
         \x20         grep -c '^github.com ' ~/.ssh/known_hosts\n          cat ~/.ssh/config\n          cat ~/.ssh/id_rsa_*\n\
         workflows:\n  main:\n    jobs: [build]\n"
    );
    let p = project(&config, &[]);
    let (one_s, two_s) = (one.to_string_lossy().into_owned(), two.to_string_lossy().into_owned());
    let r = runner_exec(&e, p.path(), &["build", "--ssh-key", &one_s, "--ssh-key", &two_s]).success();
    let file = format!("id_rsa_{}", md5_two.replace(':', ""));
    let r = r
        .stdout_has(&format!("Added /root/.ssh/{file} ({md5_two})\n"))
        .stdout_has(&format!("config\n{file}\nknown_hosts\n"))
        // The key file is a secret: masked as a whole.
        .stdout_has(&format!("700 /root/.ssh\n600 /root/.ssh/{file}\n3\nIdentityFile /root/.ssh/{file}\n********"));
    let key_line = std::fs::read_to_string(&two).expect("key").lines().nth(1).expect("key body").to_owned();
    assert!(!r.stdout().contains(&key_line), "the private key was shown:\n{}", r.stdout());

    // A fingerprint no key has fails the step, naming it.
    let bad = config.replace(&sha_two, "SHA256:unknown");
    let p = project(&bad, &[]);
    runner_exec(&e, p.path(), &["build", "--ssh-key", &one_s]).code_is(1).stdout_has("SHA256:unknown");
    assert_no_containers(&e);
}

/// The processes whose command line holds `needle` (a stray `engine serve` of a finished job).
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

#[test]
fn runner_exec_setup_remote_docker_gives_later_steps_a_job_scoped_docker_engine() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let data = tempfile::tempdir().expect("data dir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let config = "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}]\n    steps:\n\
                  \x20     - checkout\n\
                  \x20     - run: {name: before, command: 'echo \"before: DOCKER_HOST=[${DOCKER_HOST:-}]\"'}\n\
                  \x20     - setup_remote_docker\n\
                  \x20     - run: {name: host, command: 'echo \"after: DOCKER_HOST=[$DOCKER_HOST]\"'}\n\
                  \x20     - run: docker version\n\
                  \x20     - run: env -u DOCKER_HOST docker ps -a --format '{{.Names}}' && echo default socket answers\n\
                  \x20     - run: docker run --rm busybox echo hi from the remote engine\n\
                  \x20     - run: DOCKER_BUILDKIT=0 docker build -t t:1 .\n\
                  \x20     - run: docker images\n\
                  \x20     - run: docker run -d --name left-running busybox sleep 1000 && docker network create jobnet && docker volume create jobvol\n\
                  \x20 plain:\n    docker: [{image: busybox:latest}]\n    steps:\n\
                  \x20     - run: 'echo \"plain: DOCKER_HOST=[${DOCKER_HOST:-}]\"; ls /run/drydock || echo no socket directory'\n\
                  \x20 missing-client:\n    docker: [{image: busybox:latest}]\n    steps: [setup_remote_docker]\n\
                  workflows:\n  main:\n    jobs: [build, plain, missing-client]\n";
    let dockerfile = "FROM busybox:latest\nRUN echo built in the remote engine > /built\nCMD [\"cat\", \"/built\"]\n";
    let p = project(config, &[("Dockerfile", dockerfile)]);
    let run = |job: &str, client: &str| {
        let mut c = Command::new(bin_dir().join("runner"));
        c.args(["exec", job, "--data-dir", &data_dir]).current_dir(p.path()).env("DRYDOCK_ROOT", e.root());
        c.env("DRYDOCK_DOCKER_CLIENT", client);
        Run::of(&mut c)
    };
    let r = run("build", "/usr/local/bin/docker").success();
    let r = r
        .stdout_has("before: DOCKER_HOST=[]\n")
        .stdout_has("Remote Docker engine: Drydock engine ")
        .stdout_has("after: DOCKER_HOST=[unix:///run/drydock/docker.sock]\n")
        .stdout_has("Server:")
        .stdout_has("hi from the remote engine\n")
        .stdout_has("Successfully tagged t:1\n")
        .stdout_has("default socket answers\n")
        .stdout_has("Job build: success — 11 steps, 0 failed, 0 skipped");
    let images = r.stdout();
    assert!(images.lines().any(|l| l.split_whitespace().take(2).eq(["t", "1"])), "docker images lists t:1: {images}");
    // The job's scope is gone: containers, networks, volumes; its server; its socket directory. Images stay.
    assert_no_containers(&e);
    let networks = e.run(["network", "ls"]).success();
    assert!(!networks.stdout().contains("jobnet"), "{}", networks.stdout());
    e.run(["volume", "ls", "-q"]).success().stdout_is("");
    e.run(["run", "--rm", "t:1"]).success().stdout_is("built in the remote engine\n");
    let strays = processes_with(&format!("{data_dir}/remote-docker"));
    assert!(strays.is_empty(), "engine serve left running: {strays:?}");
    let left: Vec<_> = std::fs::read_dir(data.path().join("remote-docker")).expect("remote-docker dir").collect();
    assert!(left.is_empty(), "socket directories left: {left:?}");

    run("plain", "/usr/local/bin/docker")
        .success()
        .stdout_has("plain: DOCKER_HOST=[]\n")
        .stdout_has("no socket directory\n");

    let sibling = bin_dir().join("drydock-docker");
    run("missing-client", "/nonexistent/docker")
        .code_is(1)
        .stdout_has("DRYDOCK_DOCKER_CLIENT is /nonexistent/docker, which is not a file")
        .stdout_has(&sibling.display().to_string());
    assert_no_containers(&e);
}

#[test]
fn runner_exec_workflow_runs_independent_jobs_and_nodes_concurrently_and_asks_for_approval() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let data = tempfile::tempdir().expect("data dir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let config = "version: 2.1\njobs:\n\
                  \x20 a:\n    docker: [{image: busybox:latest}]\n    steps: [{run: sleep 1; echo a done}]\n\
                  \x20 b:\n    docker: [{image: busybox:latest}]\n    steps: [{run: sleep 1; echo b done}]\n\
                  \x20 split:\n    docker: [{image: busybox:latest}]\n    parallelism: 2\n\
                  \x20   steps: [{run: 'echo node $CIRCLE_NODE_INDEX of $CIRCLE_NODE_TOTAL'}]\n\
                  \x20 deploy:\n    docker: [{image: busybox:latest}]\n    steps: [{run: echo deploying}]\n\
                  workflows:\n  main:\n    jobs:\n      - a\n      - b\n      - split: {requires: [a, b]}\n\
                  \x20     - hold: {type: approval, requires: [split]}\n      - deploy: {requires: [hold]}\n";
    let p = project(config, &[]);
    let base = ["--workflow", "main", "--data-dir", &data_dir, "--branch", "main", "--jobs", "2"];
    let with = |more: &[&'static str]| base.iter().copied().chain(more.iter().copied()).collect::<Vec<&str>>();

    // Approved on the command line; JSON events say whose they are.
    let r = runner_exec(&e, p.path(), &with(&["--approve", "hold", "--json"])).success();
    let events: Vec<serde_json::Value> =
        r.stdout().lines().map(|l| serde_json::from_str(l).expect("a JSON event per line")).collect();
    let kinds: Vec<(String, String)> = events
        .iter()
        .map(|v| (v["event"].as_str().unwrap_or("").to_owned(), v["job"].as_str().unwrap_or("").to_owned()))
        .collect();
    let first_finished = kinds.iter().position(|(k, _)| k == "job_finished").expect("a job finished");
    let mut started_before: Vec<&str> =
        kinds[..first_finished].iter().filter(|(k, _)| k == "job_started").map(|(_, j)| j.as_str()).collect();
    started_before.sort_unstable();
    assert_eq!(started_before, ["a", "b"], "a and b run at the same time: {kinds:?}");
    let split_runs: Vec<&serde_json::Value> =
        events.iter().filter(|v| v["event"] == "job_finished" && v["job"] == "split").collect();
    let mut nodes: Vec<u64> = split_runs.iter().filter_map(|v| v["node"].as_u64()).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, [0, 1], "two nodes of split: {kinds:?}");
    assert!(split_runs.iter().all(|v| v["status"] == "success"), "{split_runs:?}");
    let output: String = events
        .iter()
        .filter(|v| v["event"] == "output" && v["job"] == "split")
        .filter_map(|v| v["text"].as_str())
        .collect();
    assert!(output.contains("node 0 of 2\n") && output.contains("node 1 of 2\n"), "{output}");
    assert!(events.iter().any(|v| v["event"] == "approved" && v["job"] == "hold"), "{kinds:?}");
    assert!(events.iter().any(|v| v["event"] == "output" && v["job"] == "deploy" && v["text"] == "deploying\n"));

    // No terminal to ask on and no --approve: hold is not approved, deploy does not run.
    let r = runner_exec(&e, p.path(), &base).code_is(1);
    let r = r
        .stdout_has("[a] a done\n")
        .stdout_has("[b] b done\n")
        .stdout_has("[split#1] node 1 of 2\n")
        .stdout_has("[split#0] Job split: success")
        .stdout_has("Job hold: not run (approval job, not approved: pass --approve hold or --approve-all")
        .stdout_has("Job deploy: not run (requires hold to end success, it ended not_run)\n")
        .stdout_has("Workflow main: failed\n");
    assert!(!r.stdout().contains("deploying"), "{}", r.stdout());

    runner_exec(&e, p.path(), &with(&["--approve", "nosuch"]))
        .code_is(2)
        .stderr_has("--approve nosuch: workflow `main` has no approval job of that name; its approval jobs: hold");
    assert_no_containers(&e);
}

#[test]
fn runner_exec_ctrl_c_stops_the_remote_docker_engine_and_removes_its_scope() {
    use std::io::BufRead;
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let data = tempfile::tempdir().expect("data dir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let p = project(
        "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox:latest}]\n    steps:\n\
         \x20     - setup_remote_docker\n\
         \x20     - run: docker network create n1 && docker run -d --network n1 busybox sleep 1000 && echo started; sleep 1000\n\
         workflows:\n  main:\n    jobs: [build]\n",
        &[],
    );
    let mut child = Command::new(bin_dir().join("runner"))
        .args(["exec", "--json", "--data-dir", &data_dir])
        .current_dir(p.path())
        .env("DRYDOCK_ROOT", e.root())
        .env("DRYDOCK_DOCKER_CLIENT", "/usr/local/bin/docker")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn runner");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("read");
        let started = line.contains("started\\n");
        seen.push(line);
        if started {
            break;
        }
    }
    assert!(seen.last().is_some_and(|l| l.contains("started")), "the step never started: {seen:?}");
    let running = e.run(["ps", "-q"]).success();
    assert_eq!(running.stdout().lines().count(), 2, "the primary and the remote engine's container run");
    assert_eq!(processes_with(&format!("{data_dir}/remote-docker")).len(), 1, "one engine serve");
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    seen.extend(lines.map_while(Result::ok));
    let code = child.wait().expect("wait");
    assert_eq!(code.code(), Some(1), "{seen:?}");
    let last: serde_json::Value = serde_json::from_str(seen.last().expect("events")).expect("JSON event");
    assert_eq!(last["status"], "canceled", "{seen:?}");
    assert_no_containers(&e);
    let networks = e.run(["network", "ls"]).success();
    assert!(!networks.stdout().contains("n1"), "{}", networks.stdout());
    let strays = processes_with(&format!("{data_dir}/remote-docker"));
    assert!(strays.is_empty(), "engine serve left running: {strays:?}");
}

#[test]
fn runner_exec_workflow_asks_on_the_terminal_for_an_approval_job() {
    use std::io::Write;
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let data = tempfile::tempdir().expect("data dir");
    let p = project(
        "version: 2.1\njobs:\n  after:\n    docker: [{image: busybox:latest}]\n    steps: [{run: echo after the approval}]\n\
         workflows:\n  main:\n    jobs:\n      - hold: {type: approval}\n      - after: {requires: [hold]}\n",
        &[],
    );
    // script(1) gives the runner a terminal; what is written to script's stdin is typed on it.
    let answer = |typed: &str| {
        let runner = format!(
            "cd {} && DRYDOCK_ROOT={} {} exec --workflow main --branch main --data-dir {}",
            p.path().display(),
            e.root().display(),
            bin_dir().join("runner").display(),
            data.path().display()
        );
        let mut child = Command::new("script")
            .args(["-qec", &runner, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("script(1) from bsdutils");
        child.stdin.take().expect("stdin").write_all(typed.as_bytes()).expect("type the answer");
        let out = child.wait_with_output().expect("wait");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).replace('\r', ""))
    };
    let (code, text) = answer("y\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Approve job `hold`? [y/N]"), "{text}");
    assert!(text.contains("Job hold: approval job, approved by this local run\n"), "{text}");
    assert!(text.contains("after the approval\n"), "{text}");
    let (code, text) = answer("n\n");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("Job hold: not run (approval job, declined on the terminal)\n"), "{text}");
    assert!(!text.contains("after the approval"), "{text}");
    assert_no_containers(&e);
}

/// The example project's whole pipeline, as a user runs it locally: build the image, test it with compose (through
/// `setup_remote_docker`: the job-scoped engine and the static `docker`/`docker compose` client), save it to the
/// workspace, then — on main — log in, load, tag with the commit SHA and `latest`, and push to a registry.
#[test]
fn runner_exec_runs_the_example_pipeline_end_to_end_to_a_registry() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let registry = crate::registry::Registry::start();
    let dir = tempfile::Builder::new().prefix("drydock-example-").tempdir().expect("temp dir");
    let src = crate::util::workspace_dir().join("examples/app");
    let copied = Command::new("cp").arg("-a").arg(format!("{}/.", src.display())).arg(dir.path()).output();
    assert!(copied.is_ok_and(|o| o.status.success()), "copy examples/app");
    let repo = git2::Repository::init(dir.path()).expect("git init");
    let sha = commit_all(&repo, "example").to_string();
    let host = registry.host();
    let mut c = Command::new(bin_dir().join("runner"));
    c.args(["exec", "--workflow", "build-test-push", "--branch", "main", "-e"])
        .arg(format!("REGISTRY={host}"))
        .args(["-e", "REGISTRY_PASSWORD=not-checked"])
        .current_dir(dir.path())
        .env("DRYDOCK_ROOT", e.root())
        .env("DRYDOCK_DOCKER_CLIENT", bin_dir().join("drydock-docker"));
    Run::of(&mut c)
        .success()
        .stdout_has("3 passed, 0 failed")
        .stdout_has("Read 1 test results file(s) from /root/project/test-results")
        .stdout_has("Job push: success")
        .stdout_has("Workflow build-test-push: success");
    let tags = Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false", &format!("docker://{host}/app")])
        .output()
        .expect("run skopeo");
    let tags = String::from_utf8_lossy(&tags.stdout).into_owned();
    assert!(tags.contains("\"latest\"") && tags.contains(&sha), "pushed tags: {tags}");
    assert_no_containers(&e);
}
