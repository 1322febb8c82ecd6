//! A located YAML tree for compose files: every scalar, sequence and mapping keeps the line and column it came
//! from, so interpolation, merging, `extends` and the typed conversion can all report `file:line:col` and a key
//! path. Compose has to work on an untyped tree first (interpolation and merging happen before types are known),
//! which is why this is not a `#[derive(Deserialize)]` model.
//!
//! Parsing goes through serde-saphyr with a budget (alias bombs and oversize documents are rejected before they
//! cost memory) and its native merge-key support (`<<: *defaults`).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Where a node came from: 1-based line and column (0 when unknown, e.g. values made by the engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
    /// Which file, as an index into the loader's list of files read.
    pub file: u32,
}

impl Pos {
    fn of<T>(s: &Spanned<T>) -> Pos {
        Pos { line: s.referenced.line(), column: s.referenced.column(), file: 0 }
    }
}

/// One YAML value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// The YAML data model, keys kept in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key: compose keys are strings; a non-string scalar key (`80: 80`) is kept as its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub pos: Pos,
    pub name: String,
}

impl Node {
    pub fn new(value: Value) -> Node {
        Node { pos: Pos::default(), value }
    }

    pub fn str(s: impl Into<String>) -> Node {
        Node::new(Value::Str(s.into()))
    }

    /// The entries of a mapping, or `None` for any other kind.
    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Vec<(Key, Node)>> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// A mapping's value for `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.as_map_mut()?.iter_mut().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    /// Sets `key` in a mapping, replacing an existing entry in place or appending a new one.
    pub fn insert(&mut self, key: &str, value: Node) {
        if let Some(map) = self.as_map_mut() {
            if let Some(slot) = map.iter_mut().find(|(k, _)| k.name == key) {
                slot.1 = value;
            } else {
                map.push((Key { pos: value.pos, name: key.to_string() }, value));
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let map = self.as_map_mut()?;
        let index = map.iter().position(|(k, _)| k.name == key)?;
        Some(map.remove(index).1)
    }

    /// The text of a scalar (strings as they are, numbers and booleans as YAML writes them), `None` for
    /// collections and null.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// What kind of node this is, for messages ("expected a mapping, found a string").
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a sequence",
            Value::Map(_) => "a mapping",
        }
    }

    /// Converts to JSON (for `compose config --format json` and for hashing a service's configuration).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
            Value::Str(s) => s.clone().into(),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => {
                entries.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect::<serde_json::Map<_, _>>().into()
            }
        }
    }
}

/// Why a document could not be read as YAML.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Largest compose file accepted, in bytes; real ones are a few kilobytes.
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;

/// Parses one YAML document into a located tree. An empty document is an empty mapping.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(SyntaxError {
            pos: Pos::default(),
            message: format!("file is {} bytes; the limit is {MAX_DOCUMENT_BYTES}", text.len()),
        });
    }
    if text.trim().is_empty() {
        return Ok(Node::new(Value::Map(Vec::new())));
    }
    // Both types are non-exhaustive: start from the defaults and tighten what matters for compose files.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 200_000;
    budget.max_aliases = 2_000;
    budget.max_anchors = 2_000;
    budget.max_depth = 64;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    // Replayed alias events are what an alias bomb multiplies; real files replay a few thousand at most.
    options.alias_limits.max_total_replayed_events = 100_000;
    match serde_saphyr::from_str_with_options::<Spanned<Node>>(text, options) {
        Ok(node) => {
            let pos = Pos::of(&node);
            Ok(Node { pos, ..node.value })
        }
        Err(e) => {
            let pos = e.location().map(|l| Pos { line: l.line(), column: l.column(), file: 0 }).unwrap_or_default();
            // The rendered error repeats a snippet of the file; the first line holds the message.
            let message = e.to_string().lines().next().unwrap_or("invalid YAML").trim().to_string();
            Err(SyntaxError { pos, message })
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::new(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::new(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::new(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::new(Value::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::new(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::new(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int)))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::new(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::new(Value::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::new(Value::Str(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::new(Value::Str(v)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::new(Value::Str(String::from_utf8_lossy(v).into_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            let pos = Pos::of(&item);
            items.push(Node { pos, ..item.value });
        }
        Ok(Node::new(Value::Seq(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Node>>()? {
            let key_pos = Pos::of(&key);
            let name = match key.value.scalar_text() {
                Some(name) => name,
                None if key.value.value == Value::Null => "null".to_string(),
                None => return Err(de::Error::custom("mapping keys must be scalars")),
            };
            let value = map.next_value::<Spanned<Node>>()?;
            let pos = Pos::of(&value);
            let node = Node { pos, ..value.value };
            // A later key overrides one merged in with `<<` (YAML merge semantics keep the explicit key).
            if let Some(slot) = entries.iter_mut().find(|(k, _)| k.name == name) {
                slot.1 = node;
            } else {
                entries.push((Key { pos: key_pos, name }, node));
            }
        }
        Ok(Node::new(Value::Map(entries)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_nested_values() {
        let doc = parse("services:\n  web:\n    image: nginx\n    ports:\n      - \"80:80\"\n").unwrap();
        let web = doc.get("services").and_then(|s| s.get("web")).unwrap();
        let image = web.get("image").unwrap();
        assert_eq!(image.value, Value::Str("nginx".into()));
        assert_eq!((image.pos.line, image.pos.column), (3, 12));
        let port = &web.get("ports").unwrap().as_seq().unwrap()[0];
        assert_eq!(port.pos.line, 5);
    }

    #[test]
    fn applies_merge_keys_with_explicit_keys_winning() {
        let doc = parse(
            "x-base: &base\n  image: busybox\n  restart: always\nservices:\n  a:\n    <<: *base\n    restart: \"no\"\n",
        )
        .unwrap();
        let a = doc.get("services").and_then(|s| s.get("a")).unwrap();
        assert_eq!(a.get("image").and_then(Node::scalar_text).as_deref(), Some("busybox"));
        assert_eq!(a.get("restart").and_then(Node::scalar_text).as_deref(), Some("no"));
    }

    #[test]
    fn rejects_alias_bombs_quickly() {
        let mut doc = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        let mut prev = 'a';
        for name in 'b'..='j' {
            doc.push_str(&format!(
                "{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
            prev = name;
        }
        // Rejected by the replay budget (an event count, not a clock): 9^10 expansions never happen.
        let err = parse(&doc).unwrap_err();
        assert!(err.message.contains("alias replay limit"), "{err:?}");
    }

    #[test]
    fn reports_syntax_errors_with_a_position() {
        let err = parse("services:\n  web:\n    image: [unclosed\n").unwrap_err();
        assert!(err.pos.line >= 3, "{err:?}");
    }

    #[test]
    fn rejects_duplicate_keys() {
        assert!(parse("a: 1\na: 2\n").is_err());
    }
}
