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
