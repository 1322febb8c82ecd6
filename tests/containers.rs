//! Containers through the CLI, for real (root, namespaces, overlayfs, cgroups): output and docker's exit codes,
//! env/workdir/user, detached runs with logs and stop signals, restart policies, exec, commit, cp, export,
//! limits, seccomp, a killed monitor, concurrent runs. Each test skips without root, and fails under `CI=true`.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::util::{busybox_tar, can_run_containers, eventually, TestEngine};

fn engine() -> Option<TestEngine> {
    can_run_containers().then(TestEngine::with_busybox)
}

fn inspect(e: &TestEngine, name: &str, template: &str) -> String {
    e.run(["inspect", "--format", template, name]).success().stdout().trim().to_owned()
}

#[test]
fn run_prints_output_and_passes_docker_exit_codes() {
    let Some(e) = engine() else { return };
    e.run(["run", "--rm", "busybox", "echo", "hello", "-n"]).success().stdout_is("hello -n\n");
    e.run(["run", "--rm", "busybox", "sh", "-c", "exit 3"]).code_is(3);
    // A missing image is pulled first, as docker does; a registry that refuses the connection is an engine error.
    e.run(["run", "--rm", "127.0.0.1:1/nosuchimage", "true"])
        .code_is(125)
        .stderr_has("Unable to find image '127.0.0.1:1/nosuchimage:latest' locally")
        .stderr_has("cannot pull 127.0.0.1:1/nosuchimage:latest");
    e.run(["run", "--rm", "--bogus-flag", "busybox", "true"]).code_is(125);
    e.run(["run", "--rm", "--memory", "lots", "busybox", "true"]).code_is(125).stderr_has("memory");
    e.run(["run", "--rm", "busybox", "/etc/passwd"]).code_is(126).stderr_has("permission denied");
    e.run(["run", "--rm", "busybox", "nonexistent"]).code_is(127).stderr_has("executable file not found in $PATH");
    e.run(["logs", "nope"]).code_is(125).stderr_has("No such container: nope");
    // --rm left nothing behind: no record, and (once the monitor is done, after the CLI returned) neither
    // libcontainer's state directory under /run/drydock/runtime nor the container's cgroups.
    e.run(["ps", "-aq"]).success().stdout_is("");
    let short = e.run(["run", "--rm", "busybox", "hostname"]).success().stdout().trim().to_owned();
    assert_eq!(short.len(), 12, "the hostname is the short container ID: {short:?}");
    let left = |dir: &str| {
        fs::read_dir(dir).into_iter().flatten().flatten().any(|d| d.file_name().to_string_lossy().starts_with(&short))
    };
    assert!(
        eventually(5, || !left("/run/drydock/runtime") && !left("/sys/fs/cgroup/pids/drydock")),
        "--rm left {short}'s runtime state or cgroup behind"
    );
}

#[test]
fn env_workdir_and_user_follow_image_and_flags() {
    let Some(e) = engine() else { return };
    let out = e
        .run([
            "run",
            "--rm",
            "-e",
            "FOO=bar",
            "-w",
            "/tmp",
            "-u",
            "nobody",
            "--hostname",
            "box",
            "busybox",
            "sh",
            "-c",
            "echo $FOO $(pwd) $(id -u):$(id -g) $HOME $HOSTNAME $(hostname) $PATH",
        ])
        .success()
        .stdout();
    assert_eq!(
        out,
        "bar /tmp 65534:65534 /nonexistent box box /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    e.run(["run", "--rm", "-u", "1234:5678", "busybox", "sh", "-c", "echo $(id -u):$(id -g) $HOME"])
        .success()
        .stdout_is("1234:5678 /\n");
    e.run(["run", "--rm", "busybox", "sh", "-c", "echo $HOME $(id -u)"]).success().stdout_is("/root 0\n");
    e.run(["run", "--rm", "-u", "nosuchuser", "busybox", "true"])
        .code_is(125)
        .stderr_has("unable to find user nosuchuser");
    // --entrypoint replaces the image's command too.
    e.run(["run", "--rm", "--entrypoint", "echo", "busybox", "a", "b"]).success().stdout_is("a b\n");
    // Docker's default capabilities, not all of them; no new privileges.
    let status = e.run(["run", "--rm", "busybox", "cat", "/proc/self/status"]).success().stdout();
    assert!(status.contains("CapEff:\t00000000a80425fb"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
}

#[test]
fn detached_container_logs_and_stops_with_its_stop_signal() {
    let Some(e) = engine() else { return };
    let id = e
        .run([
            "run",
            "-d",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo started; echo oops >&2; while true; do sleep 0.1; done",
        ])
        .success()
        .stdout();
    let id = id.trim();
    assert_eq!(id.len(), 64, "run -d prints the full ID");
    assert!(eventually(5, || e.run(["logs", "web"]).stdout() == "started\n"));
    e.run(["logs", "web"]).success().stderr_has("oops");
    e.run(["ps"]).success().stdout_has("web").stdout_has("Up ");
    e.run(["rm", "web"]).code_is(125).stderr_has("container is running");
    e.run(["stop", "web"]).success().stdout_is("web\n");
    assert_eq!(inspect(&e, "web", "{{.State.Status}} {{.State.ExitCode}}"), "exited 7");
    e.run(["logs", "web"]).success().stdout_is("started\ngot TERM\n");
    let log =
        fs::read_to_string(e.root().join("containers").join(id).join(format!("{id}-json.log"))).unwrap_or_default();
    assert!(log.starts_with("{\"log\":\"started\\n\",\"stream\":\"stdout\",\"time\":\""), "{log}");
    e.run(["ps", "-a", "--filter", "exited=7", "-q"]).success().stdout_is(&format!("{}\n", &id[..12]));
    e.run(["ps", "-q"]).success().stdout_is("");

    // STOPSIGNAL from the image config.
    e.run(["import", "-c", "STOPSIGNAL SIGUSR1", &busybox_tar().to_string_lossy(), "stopsig"]).success();
    e.run([
        "run",
        "-d",
        "--name",
        "usr1",
        "stopsig",
        "sh",
        "-c",
        "trap 'exit 9' USR1; echo ready; while true; do sleep 0.1; done",
    ])
    .success();
    // `run -d` returns once the command runs, not once the shell has set its trap.
    assert!(eventually(5, || e.run(["logs", "usr1"]).stdout() == "ready\n"));
    e.run(["stop", "-t", "5", "usr1"]).success();
    assert_eq!(inspect(&e, "usr1", "{{.State.ExitCode}}"), "9");
    e.run(["rm", "web", "usr1"]).success();
    e.run(["ps", "-aq"]).success().stdout_is("");
}

#[test]
fn restart_policy_on_failure_restarts_twice() {
    let Some(e) = engine() else { return };
    e.run(["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 1"])
        .success();
    assert!(eventually(10, || inspect(&e, "flaky", "{{.State.Status}} {{.RestartCount}}") == "exited 2"));
    e.run(["logs", "flaky"]).success().stdout_is("run\nrun\nrun\n");
    assert_eq!(inspect(&e, "flaky", "{{.State.ExitCode}}"), "1");
}

#[test]
fn exec_runs_in_the_running_container() {
    let Some(e) = engine() else { return };
    e.run(["run", "-d", "--name", "box", "busybox", "sleep", "100"]).success();
    e.run(["exec", "box", "sh", "-c", "echo $(hostname) $(cat /proc/1/cmdline | tr '\\0' ' ')"])
        .success()
        .stdout_has("sleep 100");
    e.run(["exec", "-e", "X=1", "-w", "/etc", "-u", "nobody", "box", "sh", "-c", "echo $X $(pwd) $(id -u)"])
        .success()
        .stdout_is("1 /etc 65534\n");
    e.run(["exec", "box", "sh", "-c", "exit 4"]).code_is(4);
    e.run(["exec", "box", "nope"]).code_is(127);
    e.run_stdin(["exec", "-i", "box", "cat"], b"piped\n").success().stdout_is("piped\n");
    e.run(["top", "box"]).success().stdout_has("sleep 100");
    e.run(["rm", "-f", "box"]).success();
    e.run(["exec", "box", "true"]).code_is(125);
}

#[test]
fn commit_diff_and_run_the_new_image() {
    let Some(e) = engine() else { return };
    e.run(["run", "--name", "src", "busybox", "sh", "-c", "echo hi > /hello && rm /bin/vi && mkdir /newdir"]).success();
    let diff = e.run(["diff", "src"]).success().stdout();
    for line in ["A /hello", "C /bin", "D /bin/vi", "A /newdir"] {
        assert!(diff.lines().any(|l| l == line), "diff lacks {line}: {diff}");
    }
    let id = e.run(["commit", "-m", "msg", "-c", "CMD [\"cat\", \"/hello\"]", "src", "mine:1"]).success().stdout();
    assert!(id.trim().starts_with("sha256:"));
    e.run(["run", "--rm", "mine:1"]).success().stdout_is("hi\n");
    e.run(["run", "--rm", "mine:1", "sh", "-c", "test -e /bin/vi || echo vi-gone; test -d /newdir && echo dir"])
        .success()
        .stdout_is("vi-gone\ndir\n");
    e.run(["images"]).success().stdout_has("mine");
}

#[test]
fn cp_copies_both_ways_with_docker_semantics() {
    let Some(e) = engine() else { return };
    e.run(["create", "--name", "c", "busybox", "cat", "/in/file.txt"]).success();
    let tmp = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let host_file = tmp.path().join("file.txt");
    fs::write(&host_file, "from host\n").unwrap_or_else(|err| panic!("{err}"));
    e.run(["cp", &host_file.to_string_lossy(), "c:/in/"]).code_is(125).stderr_has("could not find the file");
    e.run(["cp", &host_file.to_string_lossy(), "c:/tmp/"]).success();
    e.run(["cp", &host_file.to_string_lossy(), "c:/renamed.txt"]).success();
    e.run(["start", "-a", "c"]).code_is(1);
    // Out of the container: a file to a new name, a directory into an existing one, and a tar on stdout.
    let out = tmp.path().join("back.txt");
    e.run(["cp", "c:/renamed.txt", &out.to_string_lossy()]).success();
    assert_eq!(fs::read_to_string(&out).unwrap_or_default(), "from host\n");
    e.run(["cp", "c:/tmp", &tmp.path().to_string_lossy()]).success();
    assert_eq!(fs::read_to_string(tmp.path().join("tmp/file.txt")).unwrap_or_default(), "from host\n");
    let tar = e.run(["cp", "c:/etc/hostname", "-"]).success().out.stdout;
    let mut archive = tar::Archive::new(&tar[..]);
    let names: Vec<String> = archive
        .entries()
        .map(|es| {
            es.filter_map(|x| x.ok()).map(|x| x.path().map(|p| p.display().to_string()).unwrap_or_default()).collect()
        })
        .unwrap_or_default();
    assert_eq!(names, ["hostname"]);
    // Regression: /etc/hostname, /etc/hosts and /etc/resolv.conf are bind-mounted from the container directory;
    // the rootfs only has empty mount targets, which cp copied.
    let id = e.run(["inspect", "-f", "{{.Id}}", "c"]).success().stdout();
    e.run(["cp", "c:/etc/hostname", &tmp.path().to_string_lossy()]).success();
    assert_eq!(fs::read_to_string(tmp.path().join("hostname")).unwrap_or_default(), format!("{}\n", &id[..12]));
    e.run(["cp", "c:/etc/hosts", &tmp.path().to_string_lossy()]).success();
    assert!(fs::read_to_string(tmp.path().join("hosts")).unwrap_or_default().contains("localhost"));
    e.run(["cp", "c:/etc/resolv.conf", &tmp.path().to_string_lossy()]).success();
    assert!(fs::read_to_string(tmp.path().join("resolv.conf")).unwrap_or_default().contains("nameserver"));
    e.run(["cp", "c:/nope", "-"]).code_is(125).stderr_has("could not find the file");
}

#[test]
fn running_containers_keep_their_mounts_out_of_the_host_namespace_and_cp_still_reaches_them() {
    let Some(e) = engine() else { return };
    let id = e
        .run(["run", "-d", "--name", "live", "busybox", "sh", "-c", "echo inside > /made-inside; exec sleep 600"])
        .success()
        .stdout()
        .trim()
        .to_owned();
    assert!(eventually(10, || e.run(["exec", "live", "cat", "/made-inside"]).out.status.success()));
    // The rootfs overlay and the cgroup view live in the monitor's own mount namespace (each running container
    // used to add ~14 lines to the host's mountinfo, which every later start parses a dozen times).
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_else(|err| panic!("{err}"));
    assert!(!mountinfo.contains(&id), "the host namespace holds the container's mounts:\n{mountinfo}");
    // cp, export and exec's user lookup still see the running container's files (through the monitor).
    let tmp = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    e.run(["cp", "live:/made-inside", &tmp.path().to_string_lossy()]).success();
    assert_eq!(fs::read_to_string(tmp.path().join("made-inside")).unwrap_or_default(), "inside\n");
    let host_file = tmp.path().join("file.txt");
    fs::write(&host_file, "from host\n").unwrap_or_else(|err| panic!("{err}"));
    e.run(["cp", &host_file.to_string_lossy(), "live:/tmp/"]).success();
    e.run(["exec", "live", "cat", "/tmp/file.txt"]).success().stdout_is("from host\n");
    let tar = e.run(["export", "live"]).success().out.stdout;
    let mut archive = tar::Archive::new(&tar[..]);
    let names: Vec<String> = archive
        .entries()
        .map(|es| {
            es.filter_map(|x| x.ok()).map(|x| x.path().map(|p| p.display().to_string()).unwrap_or_default()).collect()
        })
        .unwrap_or_default();
    assert!(names.iter().any(|n| n.trim_start_matches("./") == "made-inside"), "export: {names:?}");
    e.run(["exec", "-u", "nobody", "live", "id", "-un"]).success().stdout_is("nobody\n");
    e.run(["rm", "-f", "live"]).success();
}

#[test]
fn export_then_import_round_trips_the_filesystem() {
    let Some(e) = engine() else { return };
    e.run(["run", "--name", "x", "busybox", "sh", "-c", "echo data > /marker"]).success();
    let tmp = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let tar = tmp.path().join("x.tar");
    e.run(["export", "-o", &tar.to_string_lossy(), "x"]).success();
    e.run(["import", &tar.to_string_lossy(), "exported:latest"]).success();
    e.run(["run", "--rm", "exported", "cat", "/marker"]).success().stdout_is("data\n");
}

#[test]
fn memory_limit_oom_kills_with_137() {
    let Some(e) = engine() else { return };
    e.run([
        "run",
        "--name",
        "hog",
        "--memory",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ])
    .code_is(137);
    assert_eq!(
        inspect(&e, "hog", "{{.State.OOMKilled}} {{.State.ExitCode}} {{.HostConfig.Memory}}"),
        "true 137 33554432"
    );
}

/// Regression: libcontainer's own v1 `/sys/fs/cgroup` emulation was mounted read-write whatever the spec said, so
/// root in a container could raise its own limits. Docker shows the container's cgroups there, read-only.
#[test]
fn sys_fs_cgroup_shows_the_container_cgroups_read_only() {
    let Some(e) = engine() else { return };
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; \
                  echo 1 > /sys/fs/cgroup/pids/pids.max && echo wrote-pids; \
                  mkdir /sys/fs/cgroup/memory/escape && echo made-dir; \
                  touch /sys/fs/cgroup/new && echo made-file; \
                  grep -c . /sys/fs/cgroup/memory/cgroup.procs; ls /sys/fs/cgroup";
    let out = e
        .run([
            "run",
            "--rm",
            "--network",
            "none",
            "--memory",
            "48m",
            "--pids-limit",
            "30",
            "busybox",
            "sh",
            "-c",
            script,
        ])
        .success();
    let stdout = out.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.get(..3), Some(&["50331648", "30", "2"][..]), "{stdout}");
    assert!(
        !stdout.contains("wrote-pids") && !stdout.contains("made-dir") && !stdout.contains("made-file"),
        "{stdout}"
    );
    assert!(out.stderr().contains("Read-only file system"), "{}", out.stderr());
    for hierarchy in ["cpu", "memory", "pids", "devices"] {
        let on_host = std::path::Path::new("/sys/fs/cgroup").join(hierarchy);
        if on_host.is_dir() && !stdout.lines().any(|l| l == hierarchy) {
            panic!("/sys/fs/cgroup/{hierarchy} missing in the container: {stdout}");
        }
    }
    // The container's cgroup view is unmounted from the host before `run --rm` returns.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let root = e.root().display().to_string();
    assert!(!mountinfo.lines().any(|l| l.contains(&root) && l.contains("cgroupfs")), "{mountinfo}");
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let Some(e) = engine() else { return };
    // Count from the host (`top` reads the pids cgroup): inside, counting would need forks the limit refuses.
    // The loop runs in a subshell: busybox sh gives up when a fork fails, PID 1 must survive that.
    let bomb = "(for i in $(seq 1 50); do sleep 30 & done) 2>/dev/null; exec sleep 30";
    e.run(["run", "-d", "--name", "limited", "--pids-limit", "20", "busybox", "sh", "-c", bomb]).success();
    e.run(["run", "-d", "--name", "free", "busybox", "sh", "-c", bomb]).success();
    let count = |name: &str| e.run(["top", name]).success().stdout().lines().count().saturating_sub(1);
    assert!(eventually(10, || count("free") > 50), "the unlimited container makes all its processes");
    let limited = count("limited");
    assert!((2..=20).contains(&limited), "{limited} processes despite --pids-limit 20");
    assert_eq!(inspect(&e, "limited", "{{.HostConfig.PidsLimit}}"), "20");
    e.run(["rm", "-f", "limited", "free"]).success();
}

#[test]
fn seccomp_profile_denies_unshare() {
    let Some(e) = engine() else { return };
    // A new user namespace needs no capability: only the seccomp profile stands in the way.
    e.run(["run", "--rm", "busybox", "unshare", "-U", "true"]).code_is(1).stderr_has("Operation not permitted");
    e.run(["run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "unshare", "-U", "true"]).success();
    let status = e.run(["run", "--rm", "busybox", "cat", "/proc/self/status"]).success().stdout();
    assert!(status.contains("Seccomp:\t2"), "{status}");
}

#[test]
fn killed_monitor_shows_the_container_exited() {
    let Some(e) = engine() else { return };
    let id = e.run(["run", "-d", "busybox", "sleep", "100"]).success().stdout().trim().to_owned();
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(e.root().join("containers").join(&id).join("state.json")).unwrap_or_default())
            .unwrap_or_default();
    let monitor = state["MonitorPid"].as_i64().unwrap_or(0);
    let pid = state["Pid"].as_i64().unwrap_or(0);
    assert!(monitor > 0 && pid > 0, "{state}");
    let rss: u64 = fs::read_to_string(format!("/proc/{monitor}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()))
        .unwrap_or(0);
    eprintln!("monitor VmRSS: {rss} kB");
    Command::new("kill").args(["-9", &monitor.to_string()]).status().ok();
    assert!(eventually(5, || !std::path::Path::new(&format!("/proc/{monitor}")).exists()
        || fs::read_to_string(format!("/proc/{monitor}/stat")).is_ok_and(|s| s.contains(") Z"))));
    e.run(["ps", "-a"]).success().stdout_has("Exited (137)");
    assert_eq!(inspect(&e, &id, "{{.State.Running}}"), "false");
    assert!(
        eventually(5, || !std::path::Path::new(&format!("/proc/{pid}")).exists()),
        "the orphaned container was killed"
    );
}

#[test]
fn concurrent_runs_on_one_root_are_safe() {
    let Some(e) = engine() else { return };
    let children: Vec<std::process::Child> = (0..4)
        .map(|i| {
            e.cmd(["run", "--name", &format!("c{i}"), "busybox", "echo", &format!("n{i}")])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|err| panic!("spawn: {err}"))
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap_or_else(|err| panic!("wait: {err}"));
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("n{i}\n"));
    }
    let names = e.run(["ps", "-a", "--format", "{{.Names}}"]).success().stdout();
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["c0", "c1", "c2", "c3"]);
    e.run(["run", "--name", "c0", "busybox", "true"]).code_is(125).stderr_has("already in use");
    e.run(["rename", "c0", "zero"]).success();
    e.run(["container", "prune", "-f"]).success().stdout_has("Total reclaimed space");
    e.run(["ps", "-aq"]).success().stdout_is("");
}

#[test]
fn init_reaps_and_forwards_signals() {
    let Some(e) = engine() else { return };
    e.run(["run", "--rm", "--init", "busybox", "sh", "-c", "echo $$"]).success().stdout_is("2\n");
    // PID 1 reads as docker's `docker-init -- CMD` does, without the engine's host-side command line (the
    // argument area keeps its size: NUL padding, shown as trailing blanks by `ps`).
    let show = "tr '\\0' ' ' < /proc/1/cmdline | sed 's/ *$//'; echo; cat /proc/1/comm";
    e.run(["run", "--rm", "--init", "busybox", "sh", "-c", show])
        .success()
        .stdout_is(&format!("drydock-init -- sh -c {show}\ndrydock-init\n"));
    e.run([
        "run",
        "-d",
        "--init",
        "--name",
        "i",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 5' TERM; while true; do sleep 0.1; done",
    ])
    .success();
    e.run(["stop", "i"]).success();
    assert_eq!(inspect(&e, "i", "{{.State.ExitCode}}"), "5");
}

#[test]
fn network_none_has_only_loopback_up() {
    let Some(e) = engine() else { return };
    let out = e
        .run([
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "ls /sys/class/net; cat /sys/class/net/lo/operstate; cat /etc/hosts",
        ])
        .success()
        .stdout();
    assert!(out.starts_with("lo\n"), "{out}");
    assert!(out.contains("localhost"), "{out}");
    let resolv = e.run(["run", "--rm", "busybox", "cat", "/etc/resolv.conf"]).success().stdout();
    assert!(!resolv.contains("nameserver 127."), "{resolv}");
}

#[test]
fn pause_freezes_every_process_and_commit_pauses_while_reading() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    // A counter that would keep ticking if the container were not frozen.
    let id = e
        .run([
            "run",
            "-d",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done",
        ])
        .success()
        .stdout()
        .trim()
        .to_string();
    assert!(eventually(5, || e.run(["exec", &id, "cat", "/tmp/n"]).stdout().trim().parse::<u32>().unwrap_or(0) > 1));
    e.run(["pause", &id]).success();
    e.run(["inspect", "-f", "{{.State.Status}}", &id]).success().stdout_is("paused\n");
    e.run(["ps", "--format", "{{.Status}}"]).success().stdout_has("(Paused)");
    let freezer = format!("/sys/fs/cgroup/freezer/drydock/{id}/freezer.state");
    assert_eq!(std::fs::read_to_string(&freezer).unwrap_or_default().trim(), "FROZEN");
    e.run(["pause", &id]).code_is(125).stderr_has("already paused");
    e.run(["unpause", &id]).success();
    e.run(["inspect", "-f", "{{.State.Status}}", &id]).success().stdout_is("running\n");
    // commit pauses and thaws again: the container keeps running afterwards.
    e.run(["commit", &id, "snap:1"]).success();
    e.run(["inspect", "-f", "{{.State.Status}}", &id]).success().stdout_is("running\n");
    assert_eq!(std::fs::read_to_string(&freezer).unwrap_or_default().trim(), "THAWED");
    // A paused container can still be stopped.
    e.run(["pause", &id]).success();
    e.run(["stop", "-t", "1", &id]).success();
    e.run(["inspect", "-f", "{{.State.Status}}", &id]).success().stdout_is("exited\n");
    e.run(["unpause", &id]).code_is(125).stderr_has("not paused");
}

/// `State.Health` as JSON (`null` without a healthcheck).
fn health(e: &TestEngine, name: &str) -> serde_json::Value {
    serde_json::from_str(&inspect(e, name, "{{json .State.Health}}")).unwrap_or(serde_json::Value::Null)
}

fn ps_status(e: &TestEngine, name: &str) -> String {
    e.run(["ps", "--filter", &format!("name={name}"), "--format", "{{.Status}}"]).success().stdout().trim().to_owned()
}

#[test]
fn health_cmd_goes_starting_then_unhealthy_then_healthy() {
    let Some(e) = engine() else { return };
    let mut run: Vec<&str> = "run -d --name hc --health-interval 200ms --health-retries 2".split(' ').collect();
    run.extend(["--health-cmd", "test -f /tmp/ok", "busybox", "sleep", "100"]);
    e.run(run).success();
    // Recorded before `run -d` returns; the first probe only runs one interval later.
    assert_eq!(inspect(&e, "hc", "{{.State.Health.Status}}"), "starting");
    assert!(ps_status(&e, "hc").ends_with("(health: starting)"), "{}", ps_status(&e, "hc"));
    assert!(eventually(5, || inspect(&e, "hc", "{{.State.Health.Status}}") == "unhealthy"), "{}", health(&e, "hc"));
    let h = health(&e, "hc");
    assert!(h["FailingStreak"].as_u64().is_some_and(|n| n >= 2), "{h}");
    let log = h["Log"].as_array().cloned().unwrap_or_default();
    assert!(!log.is_empty() && log.len() <= 5, "{h}");
    assert!(log.iter().all(|r| r["ExitCode"] == 1 && r["Start"].is_string() && r["End"].is_string()), "{h}");
    assert!(ps_status(&e, "hc").ends_with("(unhealthy)"), "{}", ps_status(&e, "hc"));
    e.run(["exec", "hc", "touch", "/tmp/ok"]).success();
    assert!(eventually(5, || inspect(&e, "hc", "{{.State.Health.Status}}") == "healthy"), "{}", health(&e, "hc"));
    assert_eq!(inspect(&e, "hc", "{{.State.Health.FailingStreak}}"), "0");
    assert!(ps_status(&e, "hc").ends_with("(healthy)"), "{}", ps_status(&e, "hc"));
    assert_eq!(
        inspect(&e, "hc", "{{json .Config.Healthcheck}}"),
        r#"{"Interval":200000000,"Retries":2,"Test":["CMD-SHELL","test -f /tmp/ok"]}"#
    );
    // A stopped container is unhealthy, as docker reports it.
    e.run(["kill", "hc"]).success();
    assert!(eventually(5, || inspect(&e, "hc", "{{.State.Status}}") == "exited"));
    assert_eq!(inspect(&e, "hc", "{{.State.Health.Status}}"), "unhealthy");
    e.run(["rm", "-f", "hc"]).success();
}

#[test]
fn health_probe_over_its_timeout_is_killed_and_fails() {
    let Some(e) = engine() else { return };
    let mut run: Vec<&str> =
        "run -d --name slow --health-timeout 300ms --health-interval 100ms --health-retries 1".split(' ').collect();
    run.extend(["--health-cmd", "sleep 5", "busybox", "sleep", "100"]);
    e.run(run).success();
    assert!(eventually(5, || inspect(&e, "slow", "{{.State.Health.Status}}") == "unhealthy"), "{}", health(&e, "slow"));
    // ExitCode -1 and the timeout message are the proof that the probe was cut rather than left to finish.
    let h = health(&e, "slow");
    assert_eq!(h["Log"][0]["ExitCode"], -1, "{h}");
    assert_eq!(h["Log"][0]["Output"], "Health check exceeded timeout (300ms)", "{h}");
    e.run(["rm", "-f", "slow"]).success();
}

#[test]
fn health_image_healthcheck_is_honoured_and_flags_override_it() {
    let Some(e) = engine() else { return };
    e.run(["create", "--name", "base", "busybox", "true"]).success();
    e.run(["commit", "-c", r#"HEALTHCHECK --interval=100ms --retries=1 CMD ["false"]"#, "base", "hc:1"]).success();
    e.run(["run", "-d", "--name", "img", "hc:1", "sleep", "100"]).success();
    assert_eq!(
        inspect(&e, "img", "{{json .Config.Healthcheck}}"),
        r#"{"Interval":100000000,"Retries":1,"Test":["CMD","false"]}"#
    );
    assert!(eventually(5, || inspect(&e, "img", "{{.State.Health.Status}}") == "unhealthy"), "{}", health(&e, "img"));
    // Flags replace the image's fields one by one: the command here, the interval still the image's.
    e.run(["run", "-d", "--name", "flag", "--health-cmd", "true", "hc:1", "sleep", "100"]).success();
    assert!(eventually(5, || inspect(&e, "flag", "{{.State.Health.Status}}") == "healthy"), "{}", health(&e, "flag"));
    assert_eq!(inspect(&e, "flag", "{{.Config.Healthcheck.Interval}}"), "100000000");
    e.run(["rm", "-f", "img", "flag", "base"]).success();
}

#[test]
fn health_disabled_by_no_healthcheck_shows_no_health() {
    let Some(e) = engine() else { return };
    e.run(["create", "--name", "base", "busybox", "true"]).success();
    e.run(["commit", "-c", "HEALTHCHECK --interval=100ms CMD false", "base", "hc:1"]).success();
    e.run(["run", "-d", "--name", "off", "--no-healthcheck", "hc:1", "sleep", "100"]).success();
    // Absence can only be shown by waiting: three of the image's 100 ms intervals pass without a probe.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(health(&e, "off"), serde_json::Value::Null);
    assert_eq!(inspect(&e, "off", "{{json .Config.Healthcheck.Test}}"), r#"["NONE"]"#);
    assert!(!ps_status(&e, "off").contains('('), "{}", ps_status(&e, "off"));
    e.run(["run", "--rm", "--no-healthcheck", "--health-cmd", "true", "busybox", "true"])
        .code_is(125)
        .stderr_has("--no-healthcheck conflicts with --health-* options");
    e.run(["run", "--rm", "--health-interval", "soon", "busybox", "true"]).code_is(125).stderr_has("soon");
    e.run(["rm", "-f", "off", "base"]).success();
}

#[test]
fn seccomp_default_profile_is_active_in_containers_and_exec() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    e.run(["run", "--rm", "--network", "none", "busybox", "grep", "Seccomp:", "/proc/self/status"])
        .success()
        .stdout_is("Seccomp:\t2\n");
    // user namespaces are refused by the profile (EPERM), allowed when unconfined.
    e.run(["run", "--rm", "--network", "none", "busybox", "unshare", "-U", "true"])
        .code_is(1)
        .stderr_has("Operation not permitted");
    e.run([
        "run",
        "--rm",
        "--network",
        "none",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "unshare",
        "-U",
        "true",
    ])
    .success();
    e.run([
        "run",
        "--rm",
        "--network",
        "none",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "grep",
        "Seccomp:",
        "/proc/self/status",
    ])
    .success()
    .stdout_is("Seccomp:\t0\n");
    // exec processes get the container's profile too.
    let id = e.run(["run", "-d", "--network", "none", "busybox", "sleep", "30"]).success().stdout().trim().to_string();
    e.run(["exec", &id, "grep", "Seccomp:", "/proc/self/status"]).success().stdout_is("Seccomp:\t2\n");
    e.run(["rm", "-f", &id]).success();
    // The compiled program is cached once in the root.
    let cached = std::fs::read_dir(e.root().join("seccomp")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(cached, 1);
}
