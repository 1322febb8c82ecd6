//! `store_test_results`: JUnit XML files read into [`TestCase`]s (the wire type the coordinator stores). One
//! streaming pass with `quick-xml` over each file: `<testsuites>` and nested `<testsuite>`s (their `name` is the
//! class name of cases without `classname`, their `file` the default for their cases), `<testcase>` with
//! `classname`, `name`, `file`, `time` (seconds → milliseconds), and a `<failure>`, `<error>` or `<skipped>`
//! child whose `message` attribute and text make the case's message. The shapes written by pytest
//! (`--junitxml`), jest-junit and go-junit-report are tested. A file that is not well-formed is an error naming
//! the file and line; the step reports it and goes on with the other files (CircleCI warns and continues).

use std::borrow::Cow;

use config_schema::wire::{TestCase, TestStatus};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// A JUnit file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct JunitError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Default)]
struct Suite {
    name: Option<String>,
    file: Option<String>,
}

fn attr(e: &BytesStart, name: &[u8]) -> Option<String> {
    e.attributes().flatten().find(|a| a.key.as_ref() == name).and_then(|a| a.unescape_value().ok().map(Cow::into_owned))
}

/// `time="1.5"` (seconds, possibly with a thousands separator) in milliseconds; 0 when absent or unreadable.
fn millis(time: Option<String>) -> u64 {
    let Some(t) = time else { return 0 };
    match t.trim().replace(',', "").parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => (secs * 1000.0).round() as u64,
        _ => 0,
    }
}

/// The cases of one JUnit document; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<TestCase>, JunitError> {
    let mut reader = Reader::from_str(text);
    let line_of =
        |pos: u64| text.as_bytes()[..(pos as usize).min(text.len())].iter().filter(|b| **b == b'\n').count() + 1;
    let mut suites: Vec<Suite> = Vec::new();
    let mut cases = Vec::new();
    let mut case: Option<TestCase> = None;
    // Inside <failure>/<error>/<skipped>: their text is collected.
    let mut detail: Option<String> = None;
    let mut depth = 0usize;
    let new_case = |e: &BytesStart, suites: &[Suite]| TestCase {
        classname: attr(e, b"classname")
            .or_else(|| suites.iter().rev().find_map(|s| s.name.clone()))
            .unwrap_or_default(),
        name: attr(e, b"name").unwrap_or_default(),
        file: attr(e, b"file").or_else(|| suites.iter().rev().find_map(|s| s.file.clone())),
        result: TestStatus::Success,
        message: None,
        run_time_ms: millis(attr(e, b"time")),
    };
    let outcome = |e: &BytesStart, case: &mut TestCase| {
        let status = match e.local_name().as_ref() {
            b"failure" => TestStatus::Failure,
            b"error" => TestStatus::Error,
            b"skipped" => TestStatus::Skipped,
            _ => return false,
        };
        // A failure wins over a skip written before it.
        if case.result == TestStatus::Success || case.result == TestStatus::Skipped {
            case.result = status;
        }
        if case.message.is_none() {
            case.message = attr(e, b"message").filter(|m| !m.is_empty());
        }
        true
    };
    loop {
        let event = reader.read_event().map_err(|e| JunitError {
            file: file.to_owned(),
            line: line_of(reader.error_position()),
            message: format!("not well-formed XML: {e}"),
        })?;
        match event {
            Event::Start(e) => {
                depth += 1;
                match e.local_name().as_ref() {
                    b"testsuite" | b"testsuites" => {
                        suites.push(Suite { name: attr(&e, b"name"), file: attr(&e, b"file") })
                    }
                    b"testcase" => case = Some(new_case(&e, &suites)),
                    _ => {
                        if let Some(c) = case.as_mut() {
                            if outcome(&e, c) {
                                detail = Some(String::new());
                            }
                        }
                    }
                }
            }
            Event::Empty(e) => match e.local_name().as_ref() {
                b"testcase" => cases.push(new_case(&e, &suites)),
                _ => {
                    if let Some(c) = case.as_mut() {
                        outcome(&e, c);
                    }
                }
            },
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                match e.local_name().as_ref() {
                    b"testsuite" | b"testsuites" => {
                        suites.pop();
                    }
                    b"testcase" => cases.extend(case.take()),
                    b"failure" | b"error" | b"skipped" => {
                        if let (Some(text), Some(c)) = (detail.take(), case.as_mut()) {
                            let text = text.trim();
                            if !text.is_empty() {
                                c.message = Some(match c.message.take() {
                                    Some(m) if !text.starts_with(m.as_str()) => format!("{m}\n{text}"),
                                    _ => text.to_owned(),
                                });
                            }
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) => {
                if let Some(d) = detail.as_mut() {
                    d.push_str(&t.decode().unwrap_or_default());
                }
            }
            Event::CData(t) => {
                if let Some(d) = detail.as_mut() {
                    d.push_str(&t.decode().unwrap_or_default());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(d) = detail.as_mut() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => d.push(c),
                        _ => {
                            let name = r.decode().unwrap_or_default();
                            d.push_str(quick_xml::escape::resolve_predefined_entity(&name).unwrap_or(""));
                        }
                    }
                }
            }
            Event::Eof => {
                if depth > 0 {
                    return Err(JunitError {
                        file: file.to_owned(),
                        line: line_of(text.len() as u64),
                        message: "the document ends before its elements are closed (a truncated file?)".into(),
                    });
                }
                return Ok(cases);
            }
            _ => {}
        }
    }
}

/// Counts of a set of cases.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub tests: usize,
    pub failed: usize,
    pub skipped: usize,
    pub time_ms: u64,
}

pub fn counts(cases: &[TestCase]) -> Counts {
    let mut c = Counts { tests: cases.len(), ..Counts::default() };
    for t in cases {
        match t.result {
            TestStatus::Failure | TestStatus::Error => c.failed += 1,
            TestStatus::Skipped => c.skipped += 1,
            TestStatus::Success => {}
        }
        c.time_ms += t.run_time_ms;
    }
    c
}

/// The summary a person reads: the failures first (name, file, message indented), then the counts.
pub fn summary(cases: &[TestCase]) -> String {
    let mut out = String::new();
    for t in cases.iter().filter(|t| matches!(t.result, TestStatus::Failure | TestStatus::Error)) {
        let word = if t.result == TestStatus::Error { "ERROR" } else { "FAILED" };
        let file = t.file.as_deref().map(|f| format!(" ({f})")).unwrap_or_default();
        let sep = if t.classname.is_empty() { "" } else { "." };
        out.push_str(&format!("{word} {}{sep}{}{file}\n", t.classname, t.name));
        for line in t.message.as_deref().unwrap_or_default().lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    let c = counts(cases);
    out.push_str(&format!(
        "{} tests, {} failed, {} skipped, in {}.{:03}s\n",
        c.tests,
        c.failed,
        c.skipped,
        c.time_ms / 1000,
        c.time_ms % 1000
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTEST: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="4" time="0.052">
<testcase classname="tests.test_app" name="test_ok" file="tests/test_app.py" line="3" time="0.001" />
<testcase classname="tests.test_app" name="test_fails" file="tests/test_app.py" line="6" time="0.0125"><failure message="assert 1 == 2">def test_fails():
&gt;       assert 1 == 2
E       assert 1 == 2</failure></testcase>
<testcase classname="tests.test_app" name="test_skip" time="0.000"><skipped type="pytest.skip" message="not on linux">tests/test_app.py:10: not on linux</skipped></testcase>
<testcase classname="tests.test_app" name="test_err" time="0.002"><error message="failed on setup with &quot;boom&quot;"><![CDATA[fixture 'db' not found]]></error></testcase>
</testsuite></testsuites>"#;

    const JEST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="jest tests" tests="2" failures="1" errors="0" time="1.234">
  <testsuite name="math" errors="0" failures="1" skipped="0" timestamp="2024-01-01T00:00:00" time="1.2" tests="2">
    <testcase classname="math adds" name="math adds" time="0.003" file="src/math.test.js">
    </testcase>
    <testcase classname="math subtracts" name="math subtracts" time="1,001.5">
      <failure>Error: expect(received).toBe(expected) // Object.is equality

Expected: 1
Received: 2</failure>
    </testcase>
  </testsuite>
</testsuites>"#;

    const GO: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="2" failures="1">
	<testsuite tests="2" failures="1" time="0.010" name="example.com/app/pkg" timestamp="2024-01-01T00:00:00Z">
		<properties><property name="go.version" value="go1.22"></property></properties>
		<testcase classname="" name="TestGood" time="0.000"></testcase>
		<testcase name="TestBad" time="0.010"><failure message="Failed" type="">    bad_test.go:9: want 1, got 2</failure></testcase>
	</testsuite>
</testsuites>"#;

    #[test]
    fn pytest_shape() {
        let cases = parse(PYTEST, "pytest.xml").expect("valid");
        assert_eq!(cases.len(), 4);
        assert_eq!(cases[0].result, TestStatus::Success);
        assert_eq!(cases[0].file.as_deref(), Some("tests/test_app.py"));
        assert_eq!(cases[1].result, TestStatus::Failure);
        assert_eq!(cases[1].run_time_ms, 13);
        assert_eq!(
            cases[1].message.as_deref(),
            Some("assert 1 == 2\ndef test_fails():\n>       assert 1 == 2\nE       assert 1 == 2")
        );
        assert_eq!(cases[2].result, TestStatus::Skipped);
        assert_eq!(cases[2].message.as_deref(), Some("not on linux\ntests/test_app.py:10: not on linux"));
        assert_eq!(cases[3].result, TestStatus::Error);
        assert_eq!(cases[3].message.as_deref(), Some("failed on setup with \"boom\"\nfixture 'db' not found"));
        assert_eq!(counts(&cases), Counts { tests: 4, failed: 2, skipped: 1, time_ms: 16 });
    }

    #[test]
    fn jest_junit_shape() {
        let cases = parse(JEST, "junit.xml").expect("valid");
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].classname, "math adds");
        assert_eq!(cases[0].file.as_deref(), Some("src/math.test.js"));
        assert_eq!(cases[1].result, TestStatus::Failure);
        assert_eq!(cases[1].run_time_ms, 1_001_500);
        assert!(cases[1]
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("Error: expect") && m.ends_with("Received: 2")));
    }

    #[test]
    fn go_junit_report_shape_takes_the_suite_name_as_class() {
        let cases = parse(GO, "report.xml").expect("valid");
        assert_eq!(cases.len(), 2);
        // An empty classname attribute is kept as written; a missing one is the suite's name.
        assert_eq!(cases[0].classname, "");
        assert_eq!(cases[1].classname, "example.com/app/pkg");
        assert_eq!(cases[1].message.as_deref(), Some("Failed\nbad_test.go:9: want 1, got 2"));
        let s = summary(&cases);
        assert!(s.starts_with("FAILED example.com/app/pkg.TestBad\n    Failed\n"), "{s}");
        assert!(s.ends_with("2 tests, 1 failed, 0 skipped, in 0.010s\n"), "{s}");
    }

    #[test]
    fn malformed_xml_names_the_file_and_line() {
        let bad = "<testsuite name=\"a\">\n<testcase name=\"x\">\n</testsuite>\n";
        let e = parse(bad, "out/junit.xml").expect_err("mismatched end tag");
        assert_eq!((e.file.as_str(), e.line), ("out/junit.xml", 3), "{e}");
        let truncated = "<testsuite name=\"a\">\n<testcase name=\"x\"/>\n";
        let e = parse(truncated, "t.xml").expect_err("not closed");
        assert!(e.to_string().starts_with("t.xml:3: the document ends"), "{e}");
    }
}
