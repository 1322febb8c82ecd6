//! `runner config validate` as a user runs it: the example project's config is valid (exit 0, CircleCI's
//! wording); a broken one lists every problem as FILE:LINE:COL and exits 1.

use std::process::Command;

use crate::util::{bin_dir, workspace_dir, Run};

#[test]
fn config_validate_accepts_the_example_and_locates_mistakes() {
    let example = workspace_dir().join("examples/app/.circleci/config.yml");
    let mut c = Command::new(bin_dir().join("runner"));
    c.args(["config", "validate"]).arg(&example);
    Run::of(&mut c).success().stdout_is(&format!("Config file at {} is valid.\n", example.display()));

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("config.yml");
    std::fs::write(
        &file,
        "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox}]\n    step: [checkout]\nworkflows:\n  main:\n    jobs: [build, test]\n",
    )
    .expect("write config");
    let mut c = Command::new(bin_dir().join("runner"));
    c.args(["config", "validate"]).arg(&file);
    let r = Run::of(&mut c).code_is(1);
    let f = file.display();
    assert!(
        r.stderr()
            .contains(&format!("{f}:5:5: jobs.build.step: unknown key `step` in job `build` (did you mean `steps`?)")),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr().contains(&format!(
            "{f}:8:19: workflows.main.jobs[1]: workflow `main` runs job `test`, which is not defined"
        )),
        "{}",
        r.stderr()
    );
}

#[test]
fn config_process_prints_the_expanded_config_and_locates_mistakes() {
    let example = workspace_dir().join("examples/app/.circleci/config.yml");
    let mut c = Command::new(bin_dir().join("runner"));
    c.args(["config", "process"]).arg(&example);
    // The executor and the command are expanded into the job; the workflow keeps its graph and filters.
    Run::of(&mut c)
        .success()
        .stdout_has("version: 2\n")
        .stdout_has("  push:\n    name: push\n    docker:\n    - image: busybox:latest\n")
        .stdout_has("        name: Log in to the registry\n")
        .stdout_has("      requires:\n      - build-and-test\n");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("config.yml");
    std::fs::write(
        &file,
        "version: 2.1\nparameters:\n  deploy: {type: boolean, default: false}\njobs:\n  build:\n    parameters:\n\
         \x20     v: {type: string}\n    docker: [{image: 'cimg/go:<< parameters.v >>'}]\n\
         \x20   steps: [{run: 'echo << pipeline.git.branch >>'}]\nworkflows:\n  main:\n\
         \x20   when: << pipeline.parameters.deploy >>\n    jobs:\n      - build: {matrix: {parameters: {v: ['1.21', '1.22']}}}\n",
    )
    .expect("write config");
    let mut c = Command::new(bin_dir().join("runner"));
    c.args(["config", "process", "--pipeline-parameters", r#"{"deploy": true}"#, "--branch", "dev", "--json"])
        .arg(&file);
    Run::of(&mut c)
        .success()
        .stdout_has(r#""build-1.22": {"#)
        .stdout_has(r#""image": "cimg/go:1.21""#)
        .stdout_has(r#""command": "echo dev""#);
    // Without the parameter the workflow does not run: nothing is left to do, and that is not an error.
    let mut c = Command::new(bin_dir().join("runner"));
    c.args(["config", "process"]).arg(&file);
    Run::of(&mut c).success().stdout_is("version: 2\njobs: {}\nworkflows: {}\n");

    let mut c = Command::new(bin_dir().join("runner"));
    c.args(["config", "process", "--pipeline-param", "deploy=yes"]).arg(&file);
    let r = Run::of(&mut c).code_is(1);
    let f = file.display();
    let want = format!(
        "{f}:3:3: parameters.deploy: pipeline parameter `deploy` must be of type boolean, found the string `yes` \
         (YAML 1.2) (did you mean `true`?)"
    );
    assert!(r.stderr().contains(&want), "{}", r.stderr());
}

#[test]
fn config_plan_runs_what_the_filters_allow() {
    let example = workspace_dir().join("examples/app/.circleci/config.yml");
    let plan = |args: &[&str]| {
        let mut c = Command::new(bin_dir().join("runner"));
        c.args(["config", "plan"]).args(args).arg(&example);
        Run::of(&mut c)
    };
    // `push` only runs on main, after `build-and-test`.
    plan(&["--branch", "main"])
        .success()
        .stdout_has("  - name: build-and-test\n    type: build\n    state: queued\n")
        .stdout_has("  - name: push\n    type: build\n    state: blocked\n    requires:\n    - build-and-test\n");
    let dev = plan(&["--branch", "dev"]).success();
    assert!(!dev.stdout().contains("name: push"), "{}", dev.stdout());
    // No job has a tag filter: a tag runs nothing.
    plan(&["--tag", "v1.0.0"]).success().stdout_is("workflows: []\n");
    plan(&[]).code_is(2).stderr_has("give --branch, --tag, or --schedule WORKFLOW with --branch");
}

#[test]
fn config_schema_prints_a_json_schema_of_the_accepted_keys() {
    let mut c = Command::new(bin_dir().join("runner"));
    c.args(["config", "schema"]);
    let r = Run::of(&mut c).success();
    let schema: serde_json::Value = serde_json::from_str(&r.stdout()).expect("the schema is JSON");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    // Built from the reader's tables: a job knows `steps`, a run step knows `no_output_timeout`.
    assert!(schema["definitions"]["job"]["properties"].get("steps").is_some(), "{schema}");
    let step = &schema["definitions"]["step"]["oneOf"][1]["properties"]["run"]["oneOf"][1]["properties"];
    assert!(step.get("no_output_timeout").is_some(), "{schema}");
}
