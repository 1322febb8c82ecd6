//! Volumes through the CLI: create (named, anonymous, idempotent), ls, inspect, rm, prune with and without `-a`,
//! and docker's errors. The in-use refusal, copy-up and the `-v`/`--mount`/`--tmpfs` parsing tables are unit
//! tests in `engine/src/volume/` (they need the library, and named volumes are not yet wired into `run`).

use crate::util::TestEngine;

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
