//! Volumes through the CLI: create (named, anonymous, idempotent), ls, inspect, rm, prune with and without `-a`,
//! and docker's errors; then in real containers: a named volume filled from the image on first use and kept
//! across containers, image `VOLUME`s and `-v /path` as anonymous volumes, `--volumes-from`, `rm -v`, `--rm`,
//! `--tmpfs` and `--mount`, and `volume rm` refusing a volume a container uses. The `-v`/`--mount`/`--tmpfs`
//! parsing tables and copy-up's corner cases are unit tests in `engine/src/volume/`.

use crate::util::{busybox_tar, can_run_containers, eventually, TestEngine};

#[test]
fn volume_lifecycle_follows_docker() {
    let e = TestEngine::new();
    e.run(["volume", "create", "--label", "team=ci", "--label", "tier", "data"]).success().stdout_is("data\n");
    e.run(["volume", "create", "data"]).success().stdout_is("data\n"); // an existing name is returned as is
    let anon = e.run(["volume", "create"]).success().stdout().trim().to_owned();
    assert!(anon.len() == 64 && anon.bytes().all(|b| b.is_ascii_hexdigit()), "{anon}");

    let listing = e.run(["volume", "ls"]).success().stdout();
    let lines: Vec<Vec<&str>> = listing.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["DRIVER", "VOLUME", "NAME"], "{listing}");
    assert!(lines.contains(&vec!["local", "data"]) && lines.contains(&vec!["local", anon.as_str()]), "{listing}");
    let mut quiet: Vec<String> = e.run(["volume", "ls", "-q"]).success().stdout().lines().map(str::to_owned).collect();
    quiet.sort();
    let mut expected = vec![anon.clone(), "data".to_owned()];
    expected.sort();
    assert_eq!(quiet, expected);

    let v = e.run(["volume", "inspect", "data"]).success().json();
    let v = &v[0];
    let mountpoint = e.root().join("volumes/data/_data");
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Mountpoint"].as_str(), mountpoint.to_str());
    assert_eq!(v["Labels"], serde_json::json!({"team": "ci", "tier": ""}));
    assert_eq!(v["Options"], serde_json::json!({}));
    assert!(v["CreatedAt"].as_str().is_some_and(chrono_like), "{v}");
    assert!(mountpoint.is_dir());
    // Unnamed is not anonymous: only volumes a container creates for itself are (docker's rule for prune).
    let anon_labels = e.run(["volume", "inspect", "-f", "{{json .Labels}}", &anon]).success().stdout();
    assert_eq!(anon_labels.trim(), "{}");

    e.run(["volume", "inspect", "nosuch"]).code_is(125).stderr_has("get nosuch: no such volume");
    e.run(["volume", "create", "x"]).code_is(125).stderr_has("includes invalid characters for a local volume name");
    e.run(["volume", "create", "./rel"])
        .code_is(125)
        .stderr_has("If you intended to pass a host directory, use absolute path");
    e.run(["volume", "create", "-d", "nfs", "remote"]).code_is(125).stderr_has("only the local volume driver");

    std::fs::write(mountpoint.join("file"), "content").expect("write into the volume");
    e.run(["volume", "rm", "data"]).success().stdout_is("data\n");
    assert!(!e.root().join("volumes/data").exists(), "rm removes the content too");
    e.run(["volume", "rm", "data"]).code_is(125).stderr_has("get data: no such volume");

    // prune without -a removes only anonymous volumes (none here); -a removes every unused one.
    e.run(["volume", "create", "keep"]).success();
    std::fs::write(e.root().join("volumes").join(&anon).join("_data/blob"), vec![0u8; 3000]).expect("write");
    e.run(["volume", "prune", "-f"]).success().stdout_is("Total reclaimed space: 0B\n");
    assert_eq!(e.run(["volume", "ls", "-q"]).success().stdout().lines().count(), 2);
    let pruned = e.run(["volume", "prune", "-a", "-f"]).success().stdout();
    let mut names = [anon.clone(), "keep".to_owned()];
    names.sort();
    assert_eq!(pruned, format!("Deleted Volumes:\n{}\n\nTotal reclaimed space: 3kB\n", names.join("\n")));
    e.run(["volume", "ls", "-q"]).success().stdout_is("");
}

/// `2026-01-02T03:04:05Z`.
fn chrono_like(t: &str) -> bool {
    t.len() == 20 && t.as_bytes()[4] == b'-' && t.as_bytes()[10] == b'T' && t.ends_with('Z')
}

fn engine() -> Option<TestEngine> {
    can_run_containers().then(TestEngine::with_busybox)
}

fn volume_names(e: &TestEngine) -> Vec<String> {
    e.run(["volume", "ls", "-q"]).success().stdout().lines().map(str::to_owned).collect()
}

#[test]
fn a_named_volume_is_filled_from_the_image_and_outlives_its_containers() {
    let Some(e) = engine() else { return };
    // An image with content at /data: made by a container, committed.
    e.run(["run", "--name", "seed", "busybox", "sh", "-c", "mkdir /data && echo seeded > /data/f && chown 1:1 /data"])
        .success();
    e.run(["commit", "seed", "seeded:1"]).success();

    e.run([
        "run",
        "--rm",
        "-v",
        "data:/data",
        "seeded:1",
        "sh",
        "-c",
        "cat /data/f; stat -c %u /data; echo more >> /data/f",
    ])
    .success()
    .stdout_is("seeded\n1\n");
    assert_eq!(volume_names(&e), ["data"], "created on first use");
    // Another container, another image: the content stays (and is not copied again).
    e.run(["run", "--rm", "-v", "data:/data:ro", "busybox", "sh", "-c", "cat /data/f; touch /data/x"])
        .code_is(1)
        .stdout_is("seeded\nmore\n")
        .stderr_has("Read-only file system");
    let on_host = std::fs::read_to_string(e.root().join("volumes/data/_data/f")).unwrap_or_default();
    assert_eq!(on_host, "seeded\nmore\n");
    // nocopy: a new volume stays empty.
    e.run(["run", "--rm", "-v", "empty:/data:nocopy", "seeded:1", "ls", "-A", "/data"]).success().stdout_is("");

    // In use: volume rm refuses; the container's inspect shows the mount.
    e.run(["create", "--name", "user", "-v", "data:/data", "busybox", "true"]).success();
    let mounts = e.run(["inspect", "-f", "{{json .Mounts}}", "user"]).success().json();
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Name"], "data");
    assert_eq!(mounts[0]["Destination"], "/data");
    assert_eq!(mounts[0]["RW"], true);
    e.run(["volume", "rm", "data"]).code_is(125).stderr_has("volume is in use");
    e.run(["rm", "-v", "user"]).success();
    assert!(volume_names(&e).contains(&"data".to_owned()), "rm -v keeps named volumes");
    e.run(["volume", "rm", "data"]).success();
    e.run(["run", "--rm", "-v", "./rel:/x", "busybox", "true"]).code_is(125).stderr_has("use absolute path");
}

#[test]
fn anonymous_volumes_volumes_from_and_rm_v() {
    let Some(e) = engine() else { return };
    let tar = busybox_tar().to_string_lossy().into_owned();
    e.run(["import", "-c", "VOLUME /cache", &tar, "withvolume"]).success();
    e.run(["run", "--name", "holder", "-v", "/anon", "withvolume", "sh", "-c", "echo a > /anon/a; echo c > /cache/c"])
        .success();
    let anon = volume_names(&e);
    assert_eq!(anon.len(), 2, "one for -v /anon, one for the image's VOLUME: {anon:?}");
    let mounts = e.run(["inspect", "-f", "{{json .Mounts}}", "holder"]).success().json();
    let dests: Vec<&str> = mounts.as_array().into_iter().flatten().filter_map(|m| m["Destination"].as_str()).collect();
    assert_eq!(dests, ["/anon", "/cache"]);

    // --volumes-from: the same volumes, here read-only.
    e.run(["run", "--rm", "--volumes-from", "holder:ro", "busybox", "sh", "-c", "cat /anon/a /cache/c; touch /anon/b"])
        .code_is(1)
        .stdout_is("a\nc\n")
        .stderr_has("Read-only file system");
    // holder's rm -v keeps volumes another container still mounts; that container's own rm -v keeps them too
    // (they are not its anonymous volumes).
    e.run(["create", "--name", "borrower", "--volumes-from", "holder", "busybox", "true"]).success();
    e.run(["rm", "-v", "holder"]).success();
    assert_eq!(volume_names(&e), anon, "still used by borrower");
    e.run(["rm", "-v", "borrower"]).success();
    assert_eq!(volume_names(&e), anon, "borrower's rm -v leaves volumes it did not create");
    e.run(["volume", "prune", "-f"]).success();
    assert!(volume_names(&e).is_empty());

    // --rm removes the anonymous volumes with the container; plain rm keeps them.
    e.run(["run", "--rm", "-v", "/tmpvol", "busybox", "true"]).success();
    assert!(eventually(5, || volume_names(&e).is_empty()), "{:?}", volume_names(&e));
    e.run(["run", "--name", "kept", "-v", "/keep", "busybox", "true"]).success();
    e.run(["rm", "kept"]).success();
    assert_eq!(volume_names(&e).len(), 1);
    e.run(["run", "--rm", "-v", "/a", "-v", "/a", "busybox", "true"]).code_is(125).stderr_has("Duplicate mount point");
}

#[test]
fn tmpfs_and_mount_flags() {
    let Some(e) = engine() else { return };
    let out = e
        .run([
            "run",
            "--rm",
            "--tmpfs",
            "/scratch:size=1m,mode=1777",
            "busybox",
            "sh",
            "-c",
            "grep ' /scratch ' /proc/mounts; stat -c %a /scratch; echo x > /scratch/f && cat /scratch/f",
        ])
        .success()
        .stdout();
    assert!(out.starts_with("tmpfs /scratch tmpfs rw,nosuid,nodev,noexec,"), "{out}");
    assert!(out.contains("size=1024k") && out.ends_with("1777\nx\n"), "{out}");
    assert!(volume_names(&e).is_empty(), "a tmpfs is not a volume");

    let host = tempfile::tempdir().expect("host dir");
    std::fs::write(host.path().join("h"), "from the host\n").expect("write");
    let spec = format!("type=bind,source={},target=/h,readonly", host.path().display());
    e.run(["run", "--rm", "--mount", &spec, "busybox", "cat", "/h/h"]).success().stdout_is("from the host\n");
    let spec = format!("type=bind,source={}/missing,target=/h", host.path().display());
    e.run(["run", "--rm", "--mount", &spec, "busybox", "true"])
        .code_is(125)
        .stderr_has("bind source path does not exist");
    e.run(["run", "--rm", "--mount", "type=volume,source=mv,target=/m", "busybox", "touch", "/m/x"]).success();
    assert!(e.root().join("volumes/mv/_data/x").exists());
    // A volume on a parent of /etc/hosts does not hide it: parents are mounted first.
    let hosts = e.run(["run", "--rm", "-v", "etcvol:/etc", "busybox", "cat", "/etc/hosts"]).success().stdout();
    assert!(hosts.contains("localhost"), "{hosts}");
}
