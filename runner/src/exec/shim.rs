//! The in-job `runner` command: `runner step halt`, `runner tests glob` and `runner tests split`, run by a
//! job's steps inside the primary container. The runner binary cannot run there (it is linked against the
//! host's glibc; job images are busybox, alpine, anything), so the runner writes a POSIX shell script
//! (`shim/runner.sh`: sh, find, sed, sort, awk) as `/usr/local/bin/runner` and `/usr/local/bin/circleci-agent`
//! (CircleCI's name for the same commands) when the image has no such file, plus its state directory
//! `/tmp/.drydock/`: `halt` (the marker `runner step halt` writes; the step loop checks it after each `run` step)
//! and `timings` (`name<TAB>milliseconds` lines from this job's earlier test results, for `--split-by timings`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use config_schema::wire::TestCase;
use engine::container::ContainerStore;

use super::error::ExecError;

/// The script (see the module documentation).
pub const SCRIPT: &str = include_str!("shim/runner.sh");

/// Where `runner step halt` leaves its marker.
pub const HALT_MARKER: &str = "/tmp/.drydock/halt";

/// Where the installed script finds the timings of earlier test results.
pub const TIMINGS: &str = "/tmp/.drydock/timings";

/// The commands the script is installed as (each only where the image has nothing at that path).
const COMMANDS: [&str; 2] = ["/usr/local/bin/runner", "/usr/local/bin/circleci-agent"];

fn io(context: String) -> impl FnOnce(std::io::Error) -> ExecError {
    move |source| ExecError::Io { context, source }
}

/// The tar written into the container at `/`.
fn archive(commands: &[&str], timings: Option<&str>) -> Result<Vec<u8>, ExecError> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: &[u8], kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append_data(&mut h, path, data).map_err(io(format!("cannot archive {path}")))
    };
    // World-writable (sticky, like /tmp): steps running as another user write the halt marker.
    add("tmp/.drydock", 0o1777, b"", tar::EntryType::Directory)?;
    if let Some(t) = timings {
        add("tmp/.drydock/timings", 0o644, t.as_bytes(), tar::EntryType::Regular)?;
    }
    for c in commands {
        add(c.trim_start_matches('/'), 0o755, SCRIPT.as_bytes(), tar::EntryType::Regular)?;
    }
    b.into_inner().map_err(io("cannot finish the in-job command archive".into()))
}

/// Installs the script and its state into container `id`; returns the commands installed.
pub fn install(store: &ContainerStore, id: &str, timings: Option<&str>) -> Result<Vec<&'static str>, ExecError> {
    let mut commands = Vec::new();
    for c in COMMANDS {
        if engine::container::cp::stat(store, id, c)?.is_none() {
            commands.push(c);
        }
    }
    let tar = archive(&commands, timings)?;
    engine::container::cp::extract(store, id, "/", std::io::Cursor::new(tar))?;
    Ok(commands)
}

/// Whether a step ran `runner step halt`.
pub fn halted(store: &ContainerStore, id: &str) -> bool {
    matches!(engine::container::cp::stat(store, id, HALT_MARKER), Ok(Some(_)))
}

/// Where a job's timings are kept on the host (by job name).
fn timings_file(data_dir: &Path, job: &str) -> PathBuf {
    let name: String =
        job.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    data_dir.join("timings").join(format!("{name}.tsv"))
}

/// The timings lines of `cases`: each case's time added to its `file` (when given) and to its `classname`.
pub fn timings_of(cases: &[TestCase]) -> String {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for c in cases {
        for key in [c.file.as_deref(), Some(c.classname.as_str())].into_iter().flatten() {
            let key = key.trim_start_matches("./");
            if !key.is_empty() && !key.contains(['\t', '\n']) {
                *totals.entry(key).or_default() += c.run_time_ms;
            }
        }
    }
    totals.iter().map(|(k, ms)| format!("{k}\t{ms}\n")).collect()
}

/// Keeps the timings of a `store_test_results` step for the job's next runs (replacing older ones).
pub fn save_timings(data_dir: &Path, job: &str, cases: &[TestCase]) -> Result<(), ExecError> {
    let path = timings_file(data_dir, job);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    }
    std::fs::write(&path, timings_of(cases)).map_err(io(format!("cannot write {}", path.display())))
}

/// The timings saved by an earlier run of `job`, if any.
pub fn load_timings(data_dir: &Path, job: &str) -> Option<String> {
    std::fs::read_to_string(timings_file(data_dir, job)).ok().filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use config_schema::wire::TestStatus;

    fn case(classname: &str, file: Option<&str>, ms: u64) -> TestCase {
        TestCase {
            classname: classname.into(),
            name: "t".into(),
            file: file.map(str::to_owned),
            result: TestStatus::Success,
            message: None,
            run_time_ms: ms,
        }
    }

    #[test]
    fn timings_add_up_per_file_and_class() {
        let t =
            timings_of(&[case("a.A", Some("./tests/a.py"), 5), case("a.A", Some("tests/a.py"), 7), case("b", None, 1)]);
        assert_eq!(t, "a.A\t12\nb\t1\ntests/a.py\t12\n");
        let dir = tempfile::tempdir().expect("temp dir");
        save_timings(dir.path(), "test/py 3", &[case("x", None, 2)]).expect("save");
        assert_eq!(load_timings(dir.path(), "test/py 3").as_deref(), Some("x\t2\n"));
        assert_eq!(load_timings(dir.path(), "other"), None);
    }

    #[test]
    fn the_archive_holds_the_state_directory_and_the_commands() {
        let tar = archive(&COMMANDS, Some("a\t1\n")).expect("archive");
        let mut a = tar::Archive::new(std::io::Cursor::new(tar));
        let names: Vec<String> =
            a.entries().expect("entries").flatten().map(|e| e.path().expect("path").display().to_string()).collect();
        assert_eq!(
            names,
            ["tmp/.drydock", "tmp/.drydock/timings", "usr/local/bin/runner", "usr/local/bin/circleci-agent"]
        );
    }
}
