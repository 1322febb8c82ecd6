//! `-it`: a real pseudo-terminal in the container, with the caller's window size, driven through `script(1)`
//! so the engine itself sees a terminal on its side.

use std::process::Command;

use crate::util::{bin_dir, can_run_containers, TestEngine};

#[test]
fn run_it_gives_a_pty_with_the_callers_window_size() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    let engine = format!("{} --root {}", bin_dir().join("engine").display(), e.root().display());
    let script = format!(
        "stty cols 77 rows 13; {engine} run --rm -it busybox stty size; {engine} run --rm -it busybox sh -c 'tty; exit 3'"
    );
    let out = Command::new("script").args(["-qec", &script, "/dev/null"]).output().expect("script(1) from bsdutils");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("13 77"), "window size not passed: {text:?}");
    assert!(text.contains("/dev/pts/"), "no pty in the container: {text:?}");
    assert_eq!(out.status.code(), Some(3), "exit code of the -it container: {text:?}");
}

#[test]
fn exec_t_follows_the_callers_terminal_when_it_is_resized() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    e.run(["run", "-d", "--name", "resize", "busybox", "sleep", "60"]).success();
    let engine = format!("{} --root {}", bin_dir().join("engine").display(), e.root().display());
    // The exec prints its size, then polls its own terminal (up to 10 s) until the size changes; the outer shell
    // resizes once the first size is out. Every wait is a readiness check, not a guess at how long things take.
    let inner = "stty size; touch /tmp/first; i=0; \
                 while [ \"$(stty size)\" = \"24 80\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; stty size";
    let script = format!(
        "stty cols 80 rows 24; {engine} exec -t resize sh -c '{inner}' </dev/tty & \
         until {engine} exec resize test -e /tmp/first; do sleep 0.05; done; stty cols 132 rows 50; wait"
    );
    let out = Command::new("script").args(["-qec", &script, "/dev/null"]).output().expect("script(1) from bsdutils");
    let text = String::from_utf8_lossy(&out.stdout);
    let sizes: Vec<&str> = text.lines().map(str::trim).filter(|l| l.split(' ').count() == 2).collect();
    assert_eq!(sizes, ["24 80", "50 132"], "the pty did not follow the resize: {text:?}");
    e.run(["rm", "-f", "resize"]).success();
}
