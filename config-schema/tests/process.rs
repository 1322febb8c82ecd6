//! Golden processing fixtures. Each `fixtures/process/NAME/` holds a `config.yml` and, optionally, the pipeline
//! it is processed for in `pipeline.json` (`{"parameters": {…}, "values": {"git.branch": "main"}}`). Processing
//! must print exactly `expected.yml`, or, for a configuration that must fail, report exactly the messages in
//! `expected.errors` (one per line). `DRYDOCK_BLESS=1` rewrites the expected files from what the processor does
//! now — then read the diff. Every processed output must also read back from its YAML and its JSON unchanged,
//! and every `fixtures/valid/NAME.yml` must process to `fixtures/valid-processed/NAME.yml`.

mod common;

use std::path::{Path, PathBuf};

use common::diff;
use config_schema::{Options, Pipeline, ProcessedConfig};

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn options() -> Options {
    // Relative (cargo runs tests in the crate directory) so the expected messages are the same everywhere.
    Options { orb_dir: Some(PathBuf::from("tests/fixtures/orbs")) }
}

fn cases() -> Vec<PathBuf> {
    let dir = fixture_root().join("process");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.yml").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn pipeline(dir: &Path) -> Pipeline {
    match std::fs::read_to_string(dir.join("pipeline.json")) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}/pipeline.json: {e}", dir.display())),
        Err(_) => Pipeline::default(),
    }
}

/// What processing a fixture gives: the YAML, or the messages; and which expected file holds it.
fn run(dir: &Path) -> (Result<ProcessedConfig, String>, &'static str, String) {
    let text = std::fs::read_to_string(dir.join("config.yml")).expect("read config.yml");
    match config_schema::process_text(&text, "config.yml", &options(), &pipeline(dir)) {
        Ok(p) => {
            let yaml = p.to_yaml().expect("serialise to YAML");
            (Ok(p), "expected.yml", yaml)
        }
        Err(problems) => (Err(problems.to_string()), "expected.errors", format!("{problems}\n")),
    }
}

#[test]
fn processed_configs_match_their_golden_files() {
    let dirs = cases();
    let successes = dirs.iter().filter(|d| d.join("expected.yml").is_file()).count();
    let failures_expected = dirs.iter().filter(|d| d.join("expected.errors").is_file()).count();
    let bless = std::env::var_os("DRYDOCK_BLESS").is_some();
    if !bless {
        assert!(successes >= 15, "expected at least 15 processing fixtures, found {successes}");
        assert!(failures_expected >= 5, "expected at least 5 error fixtures, found {failures_expected}");
    }
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (_, file, got) = run(dir);
        if bless {
            for stale in ["expected.yml", "expected.errors"] {
                let _ = std::fs::remove_file(dir.join(stale));
            }
            std::fs::write(dir.join(file), &got).expect("write expected");
            continue;
        }
        let other = if file == "expected.yml" { "expected.errors" } else { "expected.yml" };
        if dir.join(other).is_file() {
            failures.push(format!("{name}: has {other}, but processing gave {file}:\n{got}"));
            continue;
        }
        let expected = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if expected != got {
            failures.push(format!("{name}/{file} (- expected, + got):\n{}", diff(&expected, &got)));
        }
    }
    assert!(failures.is_empty(), "{} fixture(s) differ:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn processed_configs_read_back_from_yaml_and_json() {
    for dir in cases() {
        let (Ok(processed), _, yaml) = run(&dir) else { continue };
        let back: ProcessedConfig = serde_saphyr::from_str(&yaml)
            .unwrap_or_else(|e| panic!("{}: the YAML does not read back: {e}\n{yaml}", dir.display()));
        assert_eq!(back, processed, "{}: YAML round trip", dir.display());
        let json = processed.to_json().expect("serialise to JSON");
        let back: ProcessedConfig = serde_json::from_str(&json).expect("JSON reads back");
        assert_eq!(back, processed, "{}: JSON round trip", dir.display());
    }
}

/// Every valid fixture processes (on `main`, so branch-filtered workflows run too) to exactly
/// `valid-processed/NAME.yml`, which reads back unchanged; `DRYDOCK_BLESS=1` rewrites them.
#[test]
fn every_valid_fixture_processes_to_its_golden_file() {
    let dir = fixture_root().join("valid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).expect("read valid").flatten().map(|e| e.path()).collect();
    files.retain(|p| p.extension().is_some_and(|x| x == "yml"));
    files.sort();
    assert!(files.len() >= 40, "expected at least 40 valid fixtures, found {}", files.len());
    let bless = std::env::var_os("DRYDOCK_BLESS").is_some();
    let pipeline = Pipeline {
        values: [("git.branch".to_string(), "main".to_string())].into_iter().collect(),
        ..Pipeline::default()
    };
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read fixture");
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let processed = match config_schema::process_text(&text, &name, &options(), &pipeline) {
            Ok(p) => p,
            Err(problems) => {
                failures.push(format!("{name}:\n{problems}"));
                continue;
            }
        };
        let yaml = processed.to_yaml().expect("serialise");
        let back: Result<ProcessedConfig, _> = serde_saphyr::from_str(&yaml);
        if back.as_ref().ok() != Some(&processed) {
            failures.push(format!("{name}: the YAML does not read back unchanged: {back:?}"));
        }
        let golden = fixture_root().join("valid-processed").join(&name);
        if bless {
            std::fs::write(&golden, &yaml).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != yaml {
            failures.push(format!("{name} (- expected, + got):\n{}", diff(&expected, &yaml)));
        }
    }
    assert!(failures.is_empty(), "{} valid fixture(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}
