//! Fixture configs: every `valid/*.yml` must parse and validate cleanly; every `invalid/NAME.yml` must fail with
//! exactly the messages in `invalid/NAME.expected` (one per line). Set `DRYDOCK_BLESS=1` to rewrite the expected
//! files after a deliberate change — then read the diff.

mod common;

use std::path::{Path, PathBuf};

use common::diff;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    files
}

fn options() -> config_schema::Options {
    // Relative (cargo runs tests in the crate directory) so the expected messages are the same everywhere.
    config_schema::Options { orb_dir: Some(PathBuf::from("tests/fixtures/orbs")) }
}

#[test]
fn diffs_mark_lines() {
    assert_eq!(diff("a\nb\nc", "a\nx\nc"), "    a\n  - b\n  + x\n    c\n");
}

#[test]
fn valid_configs_validate_cleanly() {
    let files = fixtures("valid");
    assert!(files.len() >= 40, "expected at least 40 valid fixtures, found {}", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read fixture");
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Err(problems) = config_schema::check(&text, &name, &options()) {
            failures.push(format!("{name}:\n{problems}"));
        }
    }
    assert!(failures.is_empty(), "valid fixtures reported problems:\n\n{}", failures.join("\n\n"));
}

#[test]
fn invalid_configs_report_exact_messages() {
    let files = fixtures("invalid");
    assert!(files.len() >= 20, "expected at least 20 invalid fixtures, found {}", files.len());
    let bless = std::env::var_os("DRYDOCK_BLESS").is_some();
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read fixture");
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let got = match config_schema::check(&text, &name, &options()) {
            Ok(_) => "(valid)".to_string(),
            Err(problems) => problems.to_string(),
        };
        let expected_path = file.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, format!("{got}\n")).expect("write expected");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected.trim_end() != got {
            failures.push(format!("{name} (- expected, + got):\n{}", diff(expected.trim_end(), &got)));
        }
    }
    assert!(failures.is_empty(), "{} fixture(s) differ:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn arbitrary_input_never_panics() {
    // A deterministic sweep of mangled real configs: every prefix and some byte flips of each fixture.
    for file in fixtures("valid").iter().chain(fixtures("invalid").iter()) {
        let text = std::fs::read_to_string(file).expect("read fixture");
        let bytes = text.as_bytes();
        for cut in (0..bytes.len()).step_by(29) {
            let prefix = String::from_utf8_lossy(&bytes[..cut]);
            let _ = config_schema::check(&prefix, "fuzz.yml", &options());
        }
        for (i, flip) in [b':', b'-', b'[', b'{', b'&', b'*', b'<', b'\t', b'"'].iter().enumerate() {
            let mut mangled = bytes.to_vec();
            let at = (i * 31 + 5) % mangled.len().max(1);
            if at < mangled.len() {
                mangled[at] = *flip;
            }
            let _ = config_schema::check(&String::from_utf8_lossy(&mangled), "fuzz.yml", &options());
        }
    }
}
