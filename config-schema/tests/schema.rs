//! The JSON Schema `runner config schema` prints: every valid fixture (and every configuration the processing
//! tests start from) validates against it; configurations with a key the reader rejects do not.

use std::path::{Path, PathBuf};

fn yml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())).flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(yml_files(&p));
        } else if p.extension().is_some_and(|x| x == "yml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn validator() -> jsonschema::Validator {
    let schema = config_schema::schema::schema();
    jsonschema::draft7::new(&schema).unwrap_or_else(|e| panic!("the schema is not a valid draft 7 schema: {e}"))
}

fn as_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("read fixture");
    config_schema::yaml::parse(&text).unwrap_or_else(|e| panic!("{}: {}", path.display(), e.message)).to_json()
}

#[test]
fn valid_configurations_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files = yml_files(&root.join("valid"));
    files.extend(yml_files(&root.join("process")).into_iter().filter(|p| p.ends_with("config.yml")));
    assert!(files.len() >= 45, "found only {} configurations", files.len());
    let validator = validator();
    let mut failures = Vec::new();
    for file in &files {
        let doc = as_json(file);
        for error in validator.iter_errors(&doc) {
            failures.push(format!("{}: {error}", file.display()));
        }
    }
    assert!(failures.is_empty(), "valid configurations the schema rejects:\n{}", failures.join("\n"));
}

#[test]
fn unknown_keys_do_not_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let validator = validator();
    // Not `top-level-typo`: other top-level keys hold anchors, so the schema allows them (the validator
    // reports the misspelt ones).
    for name in ["unknown-job-key", "step-two-keys"] {
        let doc = as_json(&root.join(format!("{name}.yml")));
        assert!(!validator.is_valid(&doc), "{name}.yml validates against the schema");
    }
    for (what, text) in [
        (
            "a misspelt step argument",
            "version: 2.1\njobs:\n  b:\n    steps:\n      - save_cache: {key: k, path: [x]}\n",
        ),
        ("a misspelt run key", "version: 2.1\njobs:\n  b:\n    steps:\n      - run: {command: x, shel: sh}\n"),
        (
            "a misspelt filter",
            "version: 2.1\nworkflows:\n  w:\n    jobs:\n      - b: {filters: {branch: {only: main}}}\n",
        ),
        ("a misspelt docker key", "version: 2.1\njobs:\n  b:\n    docker: [{imag: busybox}]\n"),
    ] {
        let doc = config_schema::yaml::parse(text).expect("YAML").to_json();
        assert!(!validator.is_valid(&doc), "{what} validates against the schema");
    }
}
