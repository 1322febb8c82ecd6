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
