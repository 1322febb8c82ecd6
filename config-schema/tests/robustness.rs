//! The reader must survive anything a pushed commit can contain: arbitrary bytes, arbitrary text, and random
//! YAML-shaped documents built from real configuration keys never make it panic, and hostile documents (alias
//! bombs, oversize files) are rejected quickly instead of eating memory or time.

use proptest::prelude::*;

/// Checks, and processes what checks cleanly (processing must not panic either).
fn check(text: &str) -> Result<config_schema::Config, config_schema::Diagnostics> {
    let checked = config_schema::check(text, "fuzz.yml", &config_schema::Options::default());
    if let Ok(config) = &checked {
        let _ = config_schema::process(config, "fuzz.yml", &config_schema::Pipeline::default());
    }
    checked
}

/// A YAML-ish tree whose keys and scalars come from the configuration reference, so random documents get deep
/// into the reader and the validator instead of stopping at the first unknown key.
#[derive(Debug, Clone)]
enum Node {
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

const KEYS: &[&str] = &[
    "version",
    "setup",
    "orbs",
    "executors",
    "commands",
    "parameters",
    "jobs",
    "workflows",
    "build",
    "test",
    "docker",
    "image",
    "machine",
    "macos",
    "steps",
    "run",
    "checkout",
    "command",
    "name",
    "when",
    "unless",
    "condition",
    "and",
    "or",
    "not",
    "equal",
    "matches",
    "pattern",
    "value",
    "requires",
    "filters",
    "branches",
    "tags",
    "only",
    "ignore",
    "matrix",
    "alias",
    "exclude",
    "type",
    "default",
    "enum",
    "executor",
    "parallelism",
    "environment",
    "triggers",
    "schedule",
    "cron",
    "context",
    "save_cache",
    "restore_cache",
    "keys",
    "key",
    "paths",
    "persist_to_workspace",
    "attach_workspace",
    "root",
    "at",
    "pre-steps",
    "post-steps",
    "<<",
];

const SCALARS: &[&str] = &[
    "2.1",
    "2",
    "2.0",
    "true",
    "false",
    "0",
    "7",
    "-1",
    "null",
    "~",
    "build",
    "test",
    "checkout",
    "busybox",
    "<< parameters.x >>",
    "<< pipeline.git.branch >>",
    "/re(/",
    "/^v.*/",
    "0 0 * * *",
    "61 * * * 8",
    "string",
    "boolean",
    "integer",
    "enum",
    "steps",
    "executor",
    "env_var_name",
    "approval",
    "no-op",
    "orb/cmd",
    "circleci/node@5.1",
    "a -> b",
    "\"quoted: value\"",
    "'x'",
    "*a",
    "&a x",
    "[]",
    "{}",
    "success",
];

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        4 => proptest::sample::select(SCALARS).prop_map(|s| Node::Scalar(s.to_string())),
        1 => "[a-z<>. ]{0,12}".prop_map(Node::Scalar),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Node::Seq),
            proptest::collection::vec((proptest::sample::select(KEYS).prop_map(String::from), inner), 0..6)
                .prop_map(Node::Map),
        ]
    })
}

/// Block style for maps and lists (with some flow style inside), as people write configurations.
fn render(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Node::Scalar(s) => {
            out.push(' ');
            out.push_str(s);
            out.push('\n');
        }
        Node::Seq(items) if items.is_empty() => out.push_str(" []\n"),
        Node::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Node::Seq(items) => {
            out.push('\n');
            for item in items {
                out.push_str(&pad);
                out.push('-');
                render(item, indent + 2, out);
            }
        }
        Node::Map(entries) => {
            out.push('\n');
            for (k, v) in entries {
                out.push_str(&pad);
                out.push_str(k);
                out.push(':');
                render(v, indent + 2, out);
            }
        }
    }
}

fn document(root: &[(String, Node)]) -> String {
    let mut out = String::new();
    for (k, v) in root {
        out.push_str(k);
        out.push(':');
        render(v, 2, &mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = check(&text);
    }

    #[test]
    fn yaml_shaped_documents_never_panic(
        root in proptest::collection::vec((proptest::sample::select(KEYS).prop_map(String::from), node()), 0..8)
    ) {
        let text = document(&root);
        if let Err(problems) = check(&text) {
            // Every problem is located in the file it came from and says something.
            for p in &problems.0 {
                prop_assert_eq!(&p.file, "fuzz.yml");
                prop_assert!(!p.message.is_empty());
            }
        }
    }
}

fn alias_bomb(levels: usize) -> String {
    let mut doc = String::from("version: 2.1\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..=levels {
        let prev = format!("*l{}", i - 1);
        let items = [prev.as_str(); 10].join(", ");
        doc.push_str(&format!("l{i}: &l{i} [{items}]\n"));
    }
    doc.push_str(&format!("jobs:\n  build:\n    docker: [{{image: busybox}}]\n    steps: [*l{levels}]\n"));
    doc
}

#[test]
fn ten_level_alias_bomb_is_rejected_by_its_budget() {
    let doc = alias_bomb(10);
    // The budget, not the clock, is what is tested: the error proves the expansion stopped at its limit.
    let problems = check(&doc).err().map(|d| d.to_string()).unwrap_or_default();
    assert!(problems.contains("alias bomb"), "expected an alias-bomb error, got: {problems}");
}

#[test]
fn oversize_documents_are_rejected_before_parsing() {
    let doc = format!("version: 2.1\n# {}\n", "x".repeat(4 << 20));
    let problems = check(&doc).err().map(|d| d.to_string()).unwrap_or_default();
    assert!(problems.contains("the limit is"), "got: {problems}");
}

#[test]
fn deep_nesting_is_rejected_not_overflowing_the_stack() {
    let doc = format!("version: 2.1\njobs: {}{}\n", "[".repeat(5000), "]".repeat(5000));
    assert!(check(&doc).is_err());
}

/// Commands that invoke each other ten times over, eight deep: 10^8 invocations whose steps a false `when`
/// drops. Processing stops at its invocation budget with a message instead of running for hours.
#[test]
fn command_fan_out_bomb_is_refused() {
    let mut doc = String::from(
        "version: 2.1\ncommands:\n  c0:\n    steps:\n      - when: {condition: false, steps: [checkout]}\n",
    );
    for i in 1..=8 {
        doc.push_str(&format!("  c{i}:\n    steps: [{}]\n", vec![format!("c{}", i - 1); 10].join(", ")));
    }
    doc.push_str("jobs:\n  build:\n    docker: [{image: busybox}]\n    steps: [c8]\n");
    doc.push_str("workflows:\n  main:\n    jobs: [build]\n");
    let config = check(&doc).unwrap_or_else(|e| panic!("{e}"));
    let problems = config_schema::process(&config, "fuzz.yml", &config_schema::Pipeline::default())
        .err()
        .map(|d| d.to_string())
        .unwrap_or_default();
    assert!(problems.contains("more than 100000 command invocations"), "got: {problems}");
}

/// Ten parameters of ten values: 10^10 combinations are refused before any is made.
#[test]
fn matrix_explosion_is_refused() {
    let values = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]";
    let params: String = (0..10).map(|i| format!("      p{i}: {{type: integer}}\n")).collect();
    let matrix: String = (0..10).map(|i| format!("                p{i}: {values}\n")).collect();
    let doc = format!(
        "version: 2.1\njobs:\n  build:\n    parameters:\n{params}    docker: [{{image: busybox}}]\n    steps: [checkout]\n\
         workflows:\n  main:\n    jobs:\n      - build:\n          matrix:\n            parameters:\n{matrix}"
    );
    let config = check(&doc).unwrap_or_else(|e| panic!("{e}"));
    let problems = config_schema::process(&config, "fuzz.yml", &config_schema::Pipeline::default())
        .err()
        .map(|d| d.to_string())
        .unwrap_or_default();
    assert!(
        problems.contains("the matrix expands to 10 × 10 × 10 × 10 × 10 × 10 × 10 × 10 × 10 × 10 jobs"),
        "got: {problems}"
    );
}
