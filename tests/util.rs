//! The test DSL: a throwaway engine root, the real `engine` binary run against it, a shared busybox image made
//! from the host's busybox-static, and output checks that print everything when they fail.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The directory holding the workspace's built binaries (`engine`, `runner`, `coordinator`).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("DRYDOCK_TEST_BINARIES").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        // target/debug/deps/integration-… → target/debug; build the binaries so they match this source tree.
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--bins", "--workspace"])
            .current_dir(workspace_dir())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bins failed");
        dir
    })
}

pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

/// True when the test may use namespaces, mounts and cgroups. Outside CI a non-root run skips such tests;
/// under `CI=true` it fails them, so CI can never pass by skipping.
pub fn can_run_containers() -> bool {
    let root = nix_is_root();
    if !root && std::env::var("CI").as_deref() == Ok("true") {
        panic!("this test needs root (namespaces, overlayfs, cgroups) and CI=true: run the suite as root");
    }
    if !root {
        eprintln!("skipping: needs root");
    }
    root
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// A gzip'd busybox root filesystem tar, made once per test run by `script/busybox-rootfs`.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("drydock-fixtures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let path = dir.join("busybox.tar.gz");
        let out =
            Command::new(workspace_dir().join("script/busybox-rootfs")).output().expect("run script/busybox-rootfs");
        assert!(out.status.success(), "script/busybox-rootfs failed: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&path, &out.stdout).expect("write fixture");
        path
    })
}

/// Everything an image operation may change (blob and layer names, the index), to prove a failed one changed
/// nothing.
pub fn store_state(root: &Path) -> Vec<String> {
    let mut state = Vec::new();
    for dir in ["blobs/sha256", "layers"] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            let mut names: Vec<String> =
                rd.flatten().map(|e| format!("{dir}/{}", e.file_name().to_string_lossy())).collect();
            names.sort();
            state.extend(names);
        }
    }
    state.push(std::fs::read_to_string(root.join("index.json")).unwrap_or_default());
    state
}

/// An engine with its own state directory, removed (with its containers) when dropped.
pub struct TestEngine {
    pub root: tempfile::TempDir,
}

impl TestEngine {
    pub fn new() -> TestEngine {
        let root = tempfile::Builder::new().prefix("drydock-test-").tempdir().expect("temp root");
        TestEngine { root }
    }

    /// A new engine that already has `busybox:latest`.
    pub fn with_busybox() -> TestEngine {
        let e = TestEngine::new();
        e.run(["import", &busybox_tar().to_string_lossy(), "busybox:latest"]).success();
        e
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A `Command` for `engine --root <root> ARGS`.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(bin_dir().join("engine"));
        c.arg("--root").arg(self.root()).args(args).stdin(Stdio::null());
        c
    }

    /// Runs `engine ARGS` to completion.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd(args);
        Run::of(&mut c)
    }

    /// Runs `engine ARGS` with `input` on stdin.
    pub fn run_stdin<I, S>(&self, args: I, input: &[u8]) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run::with_stdin(&mut self.cmd(args), input)
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        // Stop and remove whatever the test left running so the temp dir can go (overlay mounts, monitors).
        if self.root().join("containers").is_dir() {
            if let Ok(out) = self.cmd(["ps", "-aq", "--no-trunc"]).output() {
                let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
                if !ids.is_empty() {
                    let _ = self.cmd(["rm", "-f"]).args(&ids).stdout(Stdio::null()).stderr(Stdio::null()).status();
                }
            }
        }
        // The built-in bridge network keeps its bridge and subnet once used (docker0's behaviour): give them back.
        if self.root().join("networks").is_dir() {
            let _ = self.cmd(["network", "prune", "-f"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

/// A finished command with checks that show its whole output on failure.
pub struct Run {
    pub desc: String,
    pub out: Output,
}

impl Run {
    pub fn of(c: &mut Command) -> Run {
        let out = c.output().expect("run command");
        Run { desc: format!("{c:?}"), out }
    }

    /// Runs `c` with `input` on its stdin.
    pub fn with_stdin(c: &mut Command, input: &[u8]) -> Run {
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        if let Some(mut stdin) = child.stdin.take() {
            // The command may stop reading early (on bad input): a broken pipe here is part of the test.
            let _ = stdin.write_all(input);
        }
        let out = child.wait_with_output().expect("wait");
        Run { desc: format!("{c:?}"), out }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }

    fn report(&self) -> String {
        format!(
            "{}\nexit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.desc,
            self.out.status,
            self.stdout(),
            self.stderr()
        )
    }

    /// Asserts exit 0 and returns self.
    #[track_caller]
    pub fn success(self) -> Run {
        assert!(self.out.status.success(), "expected success:\n{}", self.report());
        self
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn code_is(self, code: i32) -> Run {
        assert_eq!(self.code(), code, "unexpected exit code:\n{}", self.report());
        self
    }

    #[track_caller]
    pub fn stdout_is(self, expected: &str) -> Run {
        assert_eq!(self.stdout(), expected, "unexpected stdout:\n{}", self.report());
        self
    }

    #[track_caller]
    pub fn stdout_has(self, needle: &str) -> Run {
        assert!(self.stdout().contains(needle), "stdout lacks {needle:?}:\n{}", self.report());
        self
    }

    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Run {
        assert!(self.stderr().contains(needle), "stderr lacks {needle:?}:\n{}", self.report());
        self
    }

    /// Parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.report()))
    }
}

/// `engine --root ROOT serve --socket SOCK` on a socket in a temp dir, ready when it accepts connections; killed
/// when dropped. Clients reach it with `DRYDOCK_HOST=unix://SOCK` ([`EngineServer::host`]).
pub struct EngineServer {
    child: std::process::Child,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl EngineServer {
    pub fn start(e: &TestEngine) -> EngineServer {
        let dir = tempfile::Builder::new().prefix("drydock-serve-").tempdir().expect("temp dir");
        let socket = dir.path().join("engine.sock");
        let mut child = Command::new(bin_dir().join("engine"))
            .arg("--root")
            .arg(e.root())
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn engine serve");
        // A server that exits instead of listening fails the test at once.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Some(status) = child.try_wait().expect("poll engine serve") {
                panic!("engine serve exited before listening: {status}");
            }
            assert!(std::time::Instant::now() < end, "engine serve did not listen on {}", socket.display());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        EngineServer { child, socket, _dir: dir }
    }

    /// `unix:///…/engine.sock`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for EngineServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 20 ms for up to `secs` seconds; whether it became true.
pub fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}
