//! Runner↔coordinator messages: each example round-trips through JSON unchanged and serialises exactly as its
//! golden file in `fixtures/wire/` (the stable form both sides rely on). `DRYDOCK_BLESS=1` rewrites the golden
//! files after a deliberate change — then read the diff.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use config_schema::wire::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn spec() -> config_schema::JobSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/03-rust.yml");
    let processed = config_schema::process_file(&path, &config_schema::Options::default(), &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    processed.jobs["test"].clone()
}

fn assignment() -> JobAssignment {
    JobAssignment {
        wire_version: WIRE_VERSION,
        pipeline: PipelineRef { id: "p-7f3a".into(), number: 42, project: "acme/widgets".into() },
        workflow: WorkflowRef { id: "w-19c2".into(), name: "ci".into() },
        job: JobRef { id: "j-88e0".into(), name: "test".into(), number: 117, attempt: 1 },
        spec: spec(),
        node_index: 0,
        checkout: CheckoutInfo {
            repository_url: "https://github.com/acme/widgets.git".into(),
            revision: "3f786850e387550fdab836ed7e6dc881de23001b".into(),
            branch: Some("main".into()),
            tag: None,
            pull_request: None,
            credential: None,
        },
        env: BTreeMap::from([("CIRCLE_BRANCH".into(), "main".into()), ("CIRCLE_BUILD_NUM".into(), "117".into())]),
        secrets: BTreeMap::from([("CARGO_REGISTRY_TOKEN".into(), "cio-secret".into())]),
        contexts: vec!["crates-io".into()],
        lease_expires_at: 1_764_547_260_000,
    }
}

fn events() -> Vec<JobEvent> {
    vec![
        JobEvent::StepStarted { job_id: "j-88e0".into(), step: 2, name: "Format".into(), at: 1_764_547_201_000 },
        JobEvent::Log {
            job_id: "j-88e0".into(),
            step: 2,
            stream: Stream::Stdout,
            offset: 0,
            data: "Diff in src/lib.rs at line 3:\n".into(),
        },
        JobEvent::StepFinished {
            job_id: "j-88e0".into(),
            step: 2,
            status: StepStatus::Failed,
            exit_code: Some(1),
            at: 1_764_547_203_500,
        },
    ]
}

fn result() -> JobResult {
    let step = |name: &str, status, exit_code, started_at, finished_at| StepResult {
        name: name.into(),
        status,
        exit_code,
        started_at,
        finished_at,
    };
    JobResult {
        job_id: "j-88e0".into(),
        status: JobOutcome::Failed,
        exit_code: Some(1),
        message: None,
        started_at: 1_764_547_200_000,
        finished_at: 1_764_547_203_600,
        steps: vec![
            step("Checkout code", StepStatus::Success, None, 1_764_547_200_100, 1_764_547_200_900),
            step("Restoring cache", StepStatus::Success, None, 1_764_547_200_900, 1_764_547_201_000),
            step("Format", StepStatus::Failed, Some(1), 1_764_547_201_000, 1_764_547_203_500),
            step("Clippy", StepStatus::Skipped, None, 1_764_547_203_500, 1_764_547_203_500),
        ],
    }
}

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, value: &T) {
    let json = serde_json::to_string_pretty(value).expect("serialise") + "\n";
    let back: T = serde_json::from_str(&json).expect("read back");
    assert_eq!(&back, value, "{name}: JSON does not read back to the same value");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire").join(format!("{name}.json"));
    if std::env::var_os("DRYDOCK_BLESS").is_some() {
        std::fs::write(&golden, &json).expect("write golden file");
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(expected == json, "{name}: JSON differs from {}:\n{}", golden.display(), common::diff(&expected, &json));
    let from_golden: T = serde_json::from_str(&expected).expect("read golden file");
    assert_eq!(&from_golden, value);
}

#[test]
fn job_assignment_is_stable() {
    check("assignment", &assignment());
}

#[test]
fn job_events_are_stable() {
    check("events", &events());
}

#[test]
fn job_result_is_stable() {
    check("result", &result());
}

fn test_results() -> TestResults {
    let case = |name: &str, result, message: Option<&str>, run_time_ms| TestCase {
        classname: "app.tests.test_api".into(),
        name: name.into(),
        file: Some("app/tests/test_api.py".into()),
        result,
        message: message.map(Into::into),
        run_time_ms,
    };
    TestResults {
        job_id: "j-88e0".into(),
        path: "test-results".into(),
        cases: vec![
            case("test_health", TestStatus::Success, None, 12),
            case("test_create", TestStatus::Failure, Some("AssertionError: 500 != 201"), 48),
            case("test_slow", TestStatus::Skipped, Some("needs network"), 0),
        ],
    }
}

#[test]
fn test_results_are_stable() {
    check("test-results", &test_results());
}

#[test]
fn unknown_fields_are_ignored_and_defaults_filled() {
    // A newer coordinator may add fields; an older one leaves out the optional ones.
    let mut json = serde_json::to_value(assignment()).expect("serialise");
    let object = json.as_object_mut().expect("an object");
    object.insert("added_later".into(), serde_json::json!({"x": 1}));
    for optional in ["node_index", "env", "secrets", "contexts"] {
        object.remove(optional);
    }
    let read: JobAssignment = serde_json::from_value(json).expect("read");
    assert_eq!(read.node_index, 0);
    assert!(read.env.is_empty() && read.secrets.is_empty() && read.contexts.is_empty());
    assert_eq!(read.spec, assignment().spec);
}

#[test]
fn events_are_tagged_by_type() {
    let json = serde_json::to_value(&events()[1]).expect("serialise");
    assert_eq!(json["type"], "log");
    assert_eq!(json["stream"], "stdout");
}

#[test]
fn a_newer_wire_version_is_refused_with_what_to_do() {
    assert_eq!(assignment().check_version(), Ok(()));
    let newer = JobAssignment { wire_version: WIRE_VERSION + 1, ..assignment() };
    let message = newer.check_version().expect_err("refused").to_string();
    assert!(message.contains("upgrade the runner"), "{message}");
}
