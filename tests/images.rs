//! Image store through the CLI: import, names, tag, rmi, inspect, history, prune, bad and hostile input, and
//! skopeo reading our store as an OCI layout.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::{busybox_tar, store_state, TestEngine};

fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip").arg("-dc").arg(path).output().expect("gzip");
    assert!(out.status.success());
    out.stdout
}

fn hostile_tar(name: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut ok = tar::Header::new_gnu();
    ok.set_path("fine").expect("path");
    ok.set_size(2);
    ok.set_mode(0o644);
    ok.set_cksum();
    b.append(&ok, &b"ok"[..]).expect("append");
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(if kind == tar::EntryType::Regular { 4 } else { 0 });
    let gnu = h.as_gnu_mut().expect("gnu");
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_cksum();
    b.append(&h, &b"evil"[..(if kind == tar::EntryType::Regular { 4 } else { 0 })]).expect("append");
    b.into_inner().expect("tar")
}

#[test]
fn import_from_file_and_stdin_then_list_and_inspect() {
    let e = TestEngine::new();
    let id = e.run(["import", &busybox_tar().to_string_lossy(), "busybox"]).success().stdout();
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "import prints the image ID: {id}");
    // The same rootfs, uncompressed, from stdin: same layer, new image (its history differs).
    let id2 = e.run_stdin(["import", "-", "mine/box:1.0"], &gunzip(busybox_tar())).success().stdout();
    let listing = e.run(["images"]).success().stdout();
    let lines: Vec<&str> = listing.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY   TAG"), "{listing}");
    assert!(lines.iter().any(|l| l.starts_with("busybox ") && l.contains(&id[7..19])), "{listing}");
    assert!(lines.iter().any(|l| l.starts_with("mine/box ") && l.contains(" 1.0 ")), "{listing}");
    let quiet = e.run(["images", "-q"]).success().stdout();
    assert_eq!(quiet.lines().count(), 2, "{quiet}");

    let inspect = e.run(["inspect", "busybox"]).success().json();
    let img = &inspect[0];
    assert_eq!(img["Id"], id);
    assert_eq!(img["RepoTags"], serde_json::json!(["busybox:latest"]));
    assert_eq!(img["Architecture"], "amd64");
    assert_eq!(img["Os"], "linux");
    assert_eq!(img["RootFS"]["Layers"].as_array().map(Vec::len), Some(1));
    let inspect2 = e.run(["image", "inspect", "docker.io/mine/box:1.0"]).success().json();
    assert_eq!(inspect2[0]["Id"], id2.trim());
    assert_eq!(inspect2[0]["RootFS"], img["RootFS"], "the same content gives the same diff ID");
    e.run(["history", "mine/box:1.0"]).success().stdout_has("Imported from -");
}

#[test]
fn names_resolve_like_docker() {
    let e = TestEngine::with_busybox();
    let id = e.run(["inspect", "-f", "{{.Id}}", "busybox"]).success().stdout().trim().to_owned();
    e.run(["tag", "busybox", "localhost:5000/team/app:v1"]).success();
    e.run(["tag", "docker.io/library/busybox:latest", "bb"]).success();
    for name in [
        "busybox:latest",
        "docker.io/library/busybox",
        "index.docker.io/library/busybox:latest",
        &id,
        &id[7..],
        &id[7..12],
        "bb",
        "localhost:5000/team/app:v1",
    ] {
        e.run(["inspect", "-f", "{{.Id}}", name]).success().stdout_is(&format!("{id}\n"));
    }
    let listing = e.run(["images"]).success().stdout();
    assert!(listing.contains("localhost:5000/team/app   v1"), "{listing}");
    e.run(["inspect", "nothere"]).code_is(125).stderr_has("No such object: nothere");
    e.run(["tag", "busybox", "Bad/Name"]).code_is(125).stderr_has("invalid reference format");
}

#[test]
fn rmi_untags_then_deletes_and_refuses_ambiguity() {
    let e = TestEngine::with_busybox();
    e.run(["tag", "busybox", "other"]).success();
    let id = e.run(["inspect", "-f", "{{.Id}}", "busybox"]).success().stdout().trim().to_owned();
    e.run(["rmi", &id[7..19]]).code_is(125).stderr_has("referenced in multiple repositories");
    e.run(["rmi", "other"]).success().stdout_is("Untagged: other:latest\n");
    e.run(["rmi", "busybox"]).success().stdout_is(&format!("Untagged: busybox:latest\nDeleted: {id}\n"));
    e.run(["images", "-q"]).success().stdout_is("");
    assert_eq!(fs::read_dir(e.root().join("layers")).map(|r| r.count()).unwrap_or(0), 0, "layers collected");
    assert_eq!(fs::read_dir(e.root().join("blobs/sha256")).map(|r| r.count()).unwrap_or(0), 0, "blobs collected");
    e.run(["rmi", "busybox"]).code_is(125).stderr_has("No such image: busybox");
}

#[test]
fn prune_removes_only_nameless_images() {
    let e = TestEngine::with_busybox();
    e.run_stdin(["import", "-"], &gunzip(busybox_tar())).success();
    assert_eq!(e.run(["images", "-q"]).success().stdout().lines().count(), 2);
    e.run(["image", "prune", "-f"]).success().stdout_has("deleted: sha256:");
    e.run(["images"]).success().stdout_has("busybox");
    assert_eq!(e.run(["images", "-q"]).success().stdout().lines().count(), 1);
    e.run(["image", "prune", "-a", "-f"]).success();
    e.run(["images", "-q"]).success().stdout_is("");
}

#[test]
fn corrupt_and_truncated_archives_leave_the_store_unchanged() {
    let e = TestEngine::with_busybox();
    let before = store_state(e.root());
    let tar = gunzip(busybox_tar());
    let gz = fs::read(busybox_tar()).expect("fixture");
    for (what, input) in [
        ("truncated tar", &tar[..tar.len() / 2]),
        ("truncated gzip", &gz[..gz.len() / 2]),
        ("not a tar", &b"this is not an archive at all, just text"[..]),
        ("empty", &b""[..]),
    ] {
        let run = e.run_stdin(["import", "-", "broken"], input);
        assert_eq!(run.code(), 125, "{what} must fail:\n{}", run.stderr());
        assert!(run.stderr().contains("cannot import standard input"), "{what}: {}", run.stderr());
        assert_eq!(store_state(e.root()), before, "{what} changed the store");
    }
    e.run(["inspect", "broken"]).code_is(125);
}

#[test]
fn hostile_layers_never_write_outside() {
    let e = TestEngine::new();
    let outside = tempfile::tempdir().expect("tmp");
    let target = outside.path().join("pwned");
    let rel_escape = format!("../../../../../../../..{}", target.display());
    let run = e.run_stdin(["import", "-", "evil"], &hostile_tar(&rel_escape, tar::EntryType::Regular, None));
    assert_eq!(run.code(), 125, "{}", run.stderr());
    assert!(run.stderr().contains("outside the layer"), "{}", run.stderr());
    let run =
        e.run_stdin(["import", "-", "evil"], &hostile_tar("hl", tar::EntryType::Link, Some("../../../../etc/passwd")));
    assert_eq!(run.code(), 125, "{}", run.stderr());
    // A symlink to the outside followed by a write through it lands inside the layer, as in the container.
    let outside_dir = outside.path().to_string_lossy().into_owned();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_path("escape").expect("path");
    h.set_link_name(&outside_dir).expect("link");
    h.set_size(0);
    h.set_cksum();
    b.append(&h, &b""[..]).expect("append");
    let mut h = tar::Header::new_gnu();
    h.set_path("escape/pwned").expect("path");
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"evil"[..]).expect("append");
    e.run_stdin(["import", "-", "symlinked"], &b.into_inner().expect("tar")).success();
    assert!(!target.exists(), "wrote through a symlink to the host");
    let layers: Vec<_> =
        fs::read_dir(e.root().join("layers")).expect("layers").flatten().filter(|d| d.path().is_dir()).collect();
    assert_eq!(layers.len(), 1);
    assert!(layers[0].path().join(outside_dir.trim_start_matches('/')).join("pwned").exists());
}

#[test]
fn concurrent_imports_on_one_root() {
    let e = TestEngine::new();
    let tar = busybox_tar().to_string_lossy().into_owned();
    let children: Vec<_> = (0..4)
        .map(|i| {
            e.cmd(["import", &tar, &format!("box{i}")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let listing = e.run(["images"]).success().stdout();
    for i in 0..4 {
        assert!(listing.contains(&format!("box{i} ")), "box{i} missing:\n{listing}");
    }
}

#[test]
fn killed_import_leaves_no_partial_image() {
    let e = TestEngine::with_busybox();
    let before = store_state(e.root());
    let mut child = e
        .cmd(["import", "-", "half"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let tar = gunzip(busybox_tar());
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&tar[..tar.len() / 2]).expect("write half");
        stdin.flush().expect("flush");
        // Kill while the engine waits for the rest of its input.
        child.kill().expect("kill");
    }
    let _ = child.wait();
    e.run(["inspect", "half"]).code_is(125);
    assert_eq!(store_state(e.root()), before);
    // The next locked operation clears the dead import's staging files.
    e.run(["tag", "busybox", "again"]).success();
    let leftovers: Vec<_> = fs::read_dir(e.root().join("tmp")).expect("tmp").flatten().collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}

#[test]
fn skopeo_reads_the_store_as_an_oci_layout() {
    let e = TestEngine::with_busybox();
    let layers = e.run(["inspect", "-f", "{{json .RootFS.Layers}}", "busybox"]).success().stdout();
    let out = Command::new("skopeo")
        .args(["inspect", &format!("oci:{}:docker.io/library/busybox:latest", e.root().display())])
        .output()
        .expect("skopeo is installed by script/bootstrap");
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let ours: serde_json::Value = serde_json::from_str(layers.trim()).expect("json");
    assert_eq!(v["Layers"], ours, "skopeo sees the same (uncompressed) layer digests");
    // A full copy makes skopeo verify every blob digest.
    let dest = tempfile::tempdir().expect("tmp");
    let out = Command::new("skopeo")
        .args([
            "copy",
            &format!("oci:{}:docker.io/library/busybox:latest", e.root().display()),
            &format!("dir:{}", dest.path().display()),
        ])
        .output()
        .expect("skopeo");
    assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn rmi_refuses_an_image_a_container_uses_unless_forced() {
    if !crate::util::can_run_containers() {
        return;
    }
    let e = TestEngine::with_busybox();
    e.run(["create", "--name", "user", "busybox", "true"]).success();
    let id = e.run(["inspect", "-f", "{{.Id}}", "busybox"]).success().stdout().trim().to_owned();
    e.run(["rmi", "busybox"]).code_is(125).stderr_has("container").stderr_has("is using its referenced image");
    e.run(["images"]).success().stdout_has("busybox");
    // Forced: the name goes, the image stays (nameless) for the container, as docker does.
    e.run(["rmi", "-f", "busybox"]).success().stdout_is("Untagged: busybox:latest\n");
    e.run(["inspect", "-f", "{{.Id}}", &id]).success();
    e.run(["image", "prune", "-a", "-f"]).success();
    e.run(["inspect", "-f", "{{.Id}}", &id]).success();
    e.run(["rm", "user"]).success();
    e.run(["image", "prune", "-f"]).success();
    e.run(["inspect", &id]).code_is(125);
}
