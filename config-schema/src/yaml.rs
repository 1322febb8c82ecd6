//! The configuration as a located YAML tree: every value keeps its line and column, so the typed model, the
//! validator and the processor can all say *where* a mistake is. serde-saphyr does the parsing (anchors,
//! aliases, merge keys `<<: *defaults`) under a budget that rejects alias bombs and oversize documents before
//! they cost memory or time.
//!
//! Decision: parse into this tree (each node deserialised through serde-saphyr's `Spanned<T>`), then build the
//! typed model by hand in [`crate::read`], rather than deriving `Deserialize` with `deny_unknown_fields`. serde
//! stops at the first error and reports it without the key path, cannot say "did you mean", and cannot keep a
//! `<< parameters.n >>` template in an integer slot without a custom type per field; the tree lets the reader
//! collect every problem with `FILE:LINE:COL: PATH`, and lets processing substitute templates and read again.

mod fast;

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// 1-based line and column of a value (0 when the value was made by the processor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

/// A YAML value and where it is (the default is a null without a position).
#[derive(Debug, Clone, PartialEq)]
pub struct Yaml {
    pub pos: Pos,
    pub value: YamlValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum YamlValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Yaml>),
    /// Keys in file order, each with its own position.
    Map(Vec<(Pos, String, Yaml)>),
}

impl Default for Yaml {
    fn default() -> Yaml {
        Yaml::new(YamlValue::Null)
    }
}

impl Yaml {
    pub fn new(value: YamlValue) -> Yaml {
        Yaml { pos: Pos::default(), value }
    }

    pub fn at(pos: Pos, value: YamlValue) -> Yaml {
        Yaml { pos, value }
    }

    pub fn entries(&self) -> &[(Pos, String, Yaml)] {
        match &self.value {
            YamlValue::Map(m) => m,
            _ => &[],
        }
    }

    pub fn items(&self) -> &[Yaml] {
        match &self.value {
            YamlValue::Seq(s) => s,
            _ => &[],
        }
    }

    pub fn get(&self, key: &str) -> Option<&Yaml> {
        self.entries().iter().find(|(_, k, _)| k == key).map(|(_, _, v)| v)
    }

    pub fn is_map(&self) -> bool {
        matches!(self.value, YamlValue::Map(_))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            YamlValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Text of a scalar as YAML wrote it (numbers and booleans included); `None` for null and collections.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            YamlValue::Str(s) => Some(s.clone()),
            YamlValue::Bool(b) => Some(b.to_string()),
            YamlValue::Int(i) => Some(i.to_string()),
            YamlValue::Float(f) => Some(f.to_string()),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.value {
            YamlValue::Null => "null",
            YamlValue::Bool(_) => "a boolean",
            YamlValue::Int(_) => "an integer",
            YamlValue::Float(_) => "a number",
            YamlValue::Str(_) => "a string",
            YamlValue::Seq(_) => "a list",
            YamlValue::Map(_) => "a map",
        }
    }

    /// Plain JSON (positions dropped): for golden output, hashing and the wire types.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            YamlValue::Null => serde_json::Value::Null,
            YamlValue::Bool(b) => (*b).into(),
            YamlValue::Int(i) => (*i).into(),
            YamlValue::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
            YamlValue::Str(s) => s.clone().into(),
            YamlValue::Seq(items) => items.iter().map(Yaml::to_json).collect(),
            YamlValue::Map(entries) => {
                entries.iter().map(|(_, k, v)| (k.clone(), v.to_json())).collect::<serde_json::Map<_, _>>().into()
            }
        }
    }
}

/// A document that is not YAML, or is too big or too expensive to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Largest configuration accepted; CircleCI's own limit for a processed config is 3 MB.
pub const MAX_BYTES: usize = 3 << 20;

/// Parses one YAML document. An empty document is an empty map.
pub fn parse(text: &str) -> Result<Yaml, SyntaxError> {
    if text.len() > MAX_BYTES {
        return Err(SyntaxError {
            pos: Pos::default(),
            message: format!("the file is {} bytes; the limit is {MAX_BYTES} bytes", text.len()),
        });
    }
    if text.trim().is_empty() {
        return Ok(Yaml::new(YamlValue::Map(Vec::new())));
    }
    if let Some(doc) = fast::parse(text) {
        return Ok(doc);
    }
    slow(text)
}

/// The serde-saphyr path: every document the fast path declines, and every error message.
fn slow(text: &str) -> Result<Yaml, SyntaxError> {
    // Both types are non-exhaustive: start from the defaults and tighten what a CI config never needs.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 200_000;
    budget.max_aliases = 5_000;
    budget.max_anchors = 10_000;
    budget.max_depth = 100;
    // Not the alias/anchor ratio rule: 100 jobs that each merge `<<: *defaults` are 100 aliases of one anchor,
    // which that rule calls a bomb. Bombs are what the replay limit below measures.
    budget.enforce_alias_anchor_ratio = false;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    // YAML 1.2 core booleans only: `y`, `yes`, `on`, `no` stay strings (`context: [x, y]`, `FLAG: on` in an
    // environment); a boolean parameter given one of them is told to write `true`/`false`.
    options.strict_booleans = true;
    // Replayed alias events are what an alias bomb multiplies; real files replay a few thousand at most (50 jobs
    // merging a 10-key `<<: *defaults` replay about 1,000). serde-saphyr's replay is slow enough (~5 µs an event
    // in a debug build) that this limit, not the budget, decides how quickly a bomb is refused.
    options.alias_limits.max_total_replayed_events = 20_000;
    match serde_saphyr::from_str_with_options::<Spanned<Yaml>>(text, options) {
        Ok(doc) => Ok(Yaml { pos: pos_of(&doc), ..doc.value }),
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line().try_into().unwrap_or(u32::MAX),
                    column: l.column().try_into().unwrap_or(u32::MAX),
                })
                .unwrap_or_default();
            Err(SyntaxError { pos, message: clean_message(&e.to_string()) })
        }
    }
}

/// serde-saphyr's first line, without its own `error: line L column C:` prefix (we print the position
/// ourselves), and alias-budget breaches said plainly.
fn clean_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or("invalid YAML").trim();
    let mut msg = first.strip_prefix("error:").unwrap_or(first).trim();
    if let Some(rest) = msg.strip_prefix("line ") {
        if let Some((_, tail)) = rest.split_once(": ") {
            msg = tail;
        }
    }
    if let Some(key) = msg.strip_prefix("duplicate mapping key: ") {
        let key = key.split(", set DuplicateKeyPolicy").next().unwrap_or(key);
        return format!("duplicate key `{key}`: YAML would silently keep only one of them");
    }
    if msg.contains("alias replay limit") || msg.contains("budget") {
        return format!("the document expands aliases too much ({msg}): is it an alias bomb?");
    }
    msg.to_string()
}

fn pos_of<T>(s: &Spanned<T>) -> Pos {
    Pos {
        line: s.referenced.line().try_into().unwrap_or(u32::MAX),
        column: s.referenced.column().try_into().unwrap_or(u32::MAX),
    }
}

impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(YamlVisitor)
    }
}

struct YamlVisitor;

impl<'de> Visitor<'de> for YamlVisitor {
    type Value = Yaml;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Yaml, E> {
        Ok(Yaml::new(YamlValue::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Yaml, E> {
        Ok(Yaml::new(YamlValue::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
        Yaml::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Yaml, E> {
        Ok(Yaml::new(YamlValue::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Yaml, E> {
        Ok(Yaml::new(YamlValue::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Yaml, E> {
        Ok(Yaml::new(i64::try_from(v).map_or(YamlValue::Float(v as f64), YamlValue::Int)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Yaml, E> {
        Ok(Yaml::new(i64::try_from(v).map_or(YamlValue::Float(v as f64), YamlValue::Int)))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Yaml, E> {
        Ok(Yaml::new(i64::try_from(v).map_or(YamlValue::Float(v as f64), YamlValue::Int)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Yaml, E> {
        Ok(Yaml::new(YamlValue::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Yaml, E> {
        Ok(Yaml::new(YamlValue::Str(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Yaml, E> {
        Ok(Yaml::new(YamlValue::Str(v)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Yaml, E> {
        Ok(Yaml::new(YamlValue::Str(String::from_utf8_lossy(v).into_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Yaml>>()? {
            items.push(Yaml { pos: pos_of(&item), ..item.value });
        }
        Ok(Yaml::new(YamlValue::Seq(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
        let mut entries: Vec<(Pos, String, Yaml)> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Yaml>>()? {
            // A key merged in with `<<: *anchor` is placed where it is written (in the anchor), so a misspelt key
            // in shared defaults points at the line to fix; values keep the place they are used.
            let key_pos = Pos {
                line: key.defined.line().try_into().unwrap_or(u32::MAX),
                column: key.defined.column().try_into().unwrap_or(u32::MAX),
            };
            let name = match &key.value.value {
                YamlValue::Null => "null".to_string(),
                YamlValue::Seq(_) | YamlValue::Map(_) => return Err(de::Error::custom("map keys must be scalars")),
                _ => key.value.scalar_text().unwrap_or_default(),
            };
            let value = map.next_value::<Spanned<Yaml>>()?;
            let node = Yaml { pos: pos_of(&value), ..value.value };
            // An explicit key overrides the same key merged in with `<<` (YAML merge semantics).
            match entries.iter_mut().find(|(_, k, _)| *k == name) {
                Some(slot) => slot.2 = node,
                None => entries.push((key_pos, name, node)),
            }
        }
        Ok(Yaml::new(YamlValue::Map(entries)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_merge_keys() {
        let doc =
            parse("defaults: &d\n  image: a\n  shell: sh\njobs:\n  build:\n    <<: *d\n    shell: bash\n").unwrap();
        let build = doc.get("jobs").and_then(|j| j.get("build")).unwrap();
        assert_eq!(build.get("image").and_then(Yaml::as_str), Some("a"));
        assert_eq!(build.get("shell").and_then(Yaml::as_str), Some("bash"));
        assert_eq!(build.get("shell").unwrap().pos, Pos { line: 7, column: 12 });
    }

    /// Found by the random-document test: the fast path read `a: ...` as `a: null` (it asked serde-saphyr about
    /// the scalar alone, where `...` ends the document).
    #[test]
    fn document_markers_inside_a_line_are_scalars() {
        for text in ["a: ...\n", "a: ---\n", "a: ...x\n", "- ---\n"] {
            let value = parse(text).unwrap();
            let inner = value.get("a").or_else(|| value.items().first()).unwrap();
            assert!(
                matches!(&inner.value, YamlValue::Str(s) if s.starts_with("...") || s.starts_with("---")),
                "{text}"
            );
        }
    }

    #[test]
    fn many_jobs_merging_one_anchor_are_not_an_alias_bomb() {
        let mut doc = String::from("defaults: &defaults\n  docker: [{image: busybox}]\n  shell: sh\njobs:\n");
        for i in 0..300 {
            doc.push_str(&format!("  job-{i}:\n    <<: *defaults\n    steps: [checkout]\n"));
        }
        let parsed = parse(&doc).map_err(|e| e.message);
        let jobs = parsed.as_ref().map(|d| d.get("jobs").map_or(0, |j| j.entries().len()));
        assert_eq!(jobs, Ok(300));
    }

    /// Every fixture, and the benchmark's shapes, read the same through the fast path as through serde-saphyr
    /// (positions included); the fast path must take the common shapes, not decline them.
    #[test]
    fn same_tree_as_serde_saphyr() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "yml") {
                    files.push(p);
                }
            }
        }
        let mut texts: Vec<(String, String)> =
            files.iter().map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap())).collect();
        texts.push(("merge".into(), "d: &d\n  a: 1\n  b: [x]\nj:\n  <<: *d\n  b: 2\n  c: *d\n".into()));
        texts.push(("merge-list".into(), "a: &a {x: 1}\nb: &b {x: 2, y: 3}\nc:\n  <<: [*a, *b]\n".into()));
        texts.push(("inline-merge".into(), "c:\n  k: v\n  <<: {x: 1, k: 2}\n".into()));
        texts.push((
            "scalars".into(),
            "a: [1, -2, +3, 0, 00, 012, 0x1f, 0o17, 1.5, 2.1, -.5, .inf, -.Inf, .nan, 1e3, 1_000, 99999999999999999999]\n\
             b: [true, True, yes, no, on, null, ~, Null, '', \"1\", inf, nan, info, banana, 2024-01-01, 1.2.3, v1]\n\
             1: one\n2.0: two\nnull: three\ntrue: four\n"
                .into(),
        ));
        let mut fast_count = 0;
        for (name, text) in &texts {
            let Some(quick) = fast::parse(text) else { continue };
            fast_count += 1;
            match slow(text) {
                Ok(expected) => assert_eq!(quick, expected, "{name}: the fast path reads a different tree"),
                Err(e) => panic!("{name}: the fast path accepted what serde-saphyr refuses: {e:?}"),
            }
        }
        assert!(fast_count * 10 >= texts.len() * 8, "only {fast_count} of {} files took the fast path", texts.len());
    }

    proptest::proptest! {
        /// Random documents of anchors, aliases, merge keys, flow collections and number-like scalars: whenever
        /// the fast path takes one, it reads what serde-saphyr reads.
        #[test]
        fn fast_path_agrees_on_random_documents(
            lines in proptest::collection::vec(
                "( {0,4})(- )?([ab]|<<|1|\"x\"): ?(&a |&b )?(\\*a|\\*b|[0-9.+-]{1,4}|x|null|true|~|\\[x, \\*a\\]|\\{k: 1, <<: \\*b\\}|'q')?",
                1..12,
            )
        ) {
            let text = lines.join("\n") + "\n";
            if let Some(quick) = fast::parse(&text) {
                proptest::prop_assert_eq!(Ok(quick), slow(&text), "{}", text);
            }
        }
    }

    #[test]
    fn alias_bombs_fail_fast() {
        let mut doc = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        let mut prev = 'a';
        for name in 'b'..='k' {
            doc.push_str(&format!(
                "{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
            prev = name;
        }
        // Rejected by the replay budget (an event count, not a clock): 10^10 expansions never happen.
        let err = parse(&doc).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{err:?}");
    }
}
