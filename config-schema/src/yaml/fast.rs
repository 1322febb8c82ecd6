//! The fast path of [`super::parse`]: builds the located tree straight from granit-parser's events (the parser
//! serde-saphyr itself drives), without serde's per-node `Spanned` and location round trips. It handles what CI
//! configurations are made of — block and flow collections, plain and quoted scalars, anchors, aliases and
//! `<<` merge keys — and returns `None` for everything else (a syntax error, a duplicate key, a tag, a budget
//! breach, a merge inside merged defaults, several documents), so the serde-saphyr path then produces exactly
//! the tree or the error it always did. `tests::same_tree_as_serde_saphyr` holds the two paths equal.

use std::borrow::Cow;

use granit_parser::{Event, Parser, ScalarStyle, Span};

use super::{Pos, Yaml, YamlValue};

/// The slow path's budget, kept here so anything near it is left to serde-saphyr to refuse with its message
/// (replays at half serde-saphyr's limit: the two count slightly differently).
const MAX_EVENTS: usize = 200_000;
const MAX_ALIASES: usize = 5_000;
const MAX_ANCHORS: usize = 10_000;
const MAX_DEPTH: usize = 100;
const MAX_REPLAYED: usize = 10_000;

struct Anchor {
    node: Yaml,
    /// Events the node expands to (aliases inside it expanded): what replaying it costs against the budget.
    size: usize,
    /// The node (or something inside it) is a map with a merge key.
    has_merge: bool,
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        size: usize,
        has_merge: bool,
        items: Vec<Yaml>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        size: usize,
        has_merge: bool,
        entries: Vec<(Pos, String, Yaml)>,
        /// The key read, waiting for its value; `None` in the key is a merge key.
        key: Option<(Pos, Option<String>)>,
        /// `<<` values in order: each a list of entries to add after the explicit ones.
        merges: Vec<Vec<(Pos, String, Yaml)>>,
    },
}

fn pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line().try_into().unwrap_or(u32::MAX),
        column: (span.start.col() + 1).try_into().unwrap_or(u32::MAX),
    }
}

/// The tree of `text`, or `None` when the serde-saphyr path must decide.
pub(super) fn parse(text: &str) -> Option<Yaml> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: Vec<Option<Anchor>> = Vec::new();
    let mut root: Option<Yaml> = None;
    let (mut events, mut aliases, mut anchor_count, mut replayed) = (0usize, 0usize, 0usize, 0usize);
    let mut documents = 0;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.ok()?;
        events += 1;
        if events > MAX_EVENTS {
            return None;
        }
        // A finished node, with its anchor id and whether it carries a merge.
        let mut merge_key = false;
        let done: (Yaml, usize, usize, bool) = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return None;
                }
                continue;
            }
            Event::Scalar(value, style, anchor, tag) => {
                if tag.is_some() {
                    return None;
                }
                merge_key = matches!(style, ScalarStyle::Plain) && value == "<<";
                let node = Yaml::at(pos(&span), scalar(value, style)?);
                (node, anchor, 1, false)
            }
            Event::SequenceStart(_, anchor, ref tag) | Event::MappingStart(_, anchor, ref tag) => {
                if tag.is_some() || stack.len() >= MAX_DEPTH {
                    return None;
                }
                let (p, size) = (pos(&span), 1);
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq { pos: p, anchor, size, has_merge: false, items: Vec::new() }
                } else {
                    Frame::Map {
                        pos: p,
                        anchor,
                        size,
                        has_merge: false,
                        entries: Vec::new(),
                        key: None,
                        merges: Vec::new(),
                    }
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop()? {
                Frame::Seq { pos, anchor, size, has_merge, items } => {
                    (Yaml::at(pos, YamlValue::Seq(items)), anchor, size + 1, has_merge)
                }
                Frame::Map { .. } => return None,
            },
            Event::MappingEnd => match stack.pop()? {
                Frame::Map { pos, anchor, size, has_merge, mut entries, key: None, merges } => {
                    for batch in merges {
                        for entry in batch {
                            if !entries.iter().any(|(_, k, _)| *k == entry.1) {
                                entries.push(entry);
                            }
                        }
                    }
                    (Yaml::at(pos, YamlValue::Map(entries)), anchor, size + 1, has_merge)
                }
                _ => return None,
            },
            Event::Alias(id) => {
                aliases += 1;
                let anchor = anchors.get(id).and_then(Option::as_ref)?;
                replayed += anchor.size;
                if aliases > MAX_ALIASES || replayed > MAX_REPLAYED {
                    return None;
                }
                let mut node = anchor.node.clone();
                relocate(&mut node, pos(&span));
                (node, 0, anchor.size, anchor.has_merge)
            }
            _ => return None,
        };
        let (node, anchor, size, has_merge) = done;
        if anchor != 0 {
            anchor_count += 1;
            if anchor_count > MAX_ANCHORS {
                return None;
            }
            if anchors.len() <= anchor {
                anchors.resize_with(anchor + 1, || None);
            }
            let stored = Anchor { node: node.clone(), size, has_merge };
            anchors[anchor] = Some(stored);
        }
        match stack.last_mut() {
            None => {
                if root.is_some() {
                    return None;
                }
                root = Some(node);
            }
            Some(Frame::Seq { items, has_merge: parent_merge, size: parent_size, .. }) => {
                *parent_merge |= has_merge;
                *parent_size += size;
                items.push(node);
            }
            Some(Frame::Map { entries, key, merges, has_merge: parent_merge, size: parent_size, .. }) => {
                *parent_merge |= has_merge;
                *parent_size += size;
                match key.take() {
                    None => {
                        // A key: a scalar, named as serde-saphyr names it; `<<` in plain style is a merge.
                        let name = match &node.value {
                            YamlValue::Null => "null".to_string(),
                            YamlValue::Seq(_) | YamlValue::Map(_) => return None,
                            _ if merge_key => {
                                *key = Some((node.pos, None));
                                continue;
                            }
                            _ => node.scalar_text()?,
                        };
                        if entries.iter().any(|(_, k, _)| *k == name) {
                            return None;
                        }
                        *key = Some((node.pos, Some(name)));
                    }
                    Some((key_pos, Some(name))) => entries.push((key_pos, name, node)),
                    Some((_, None)) => {
                        // Merged maps that merge again, and merge keys used more than once, are left to
                        // serde-saphyr (rare in real configurations, subtle in where positions point).
                        if has_merge || !merges.is_empty() {
                            return None;
                        }
                        *parent_merge = true;
                        merges.push(merge_entries(node)?);
                    }
                }
            }
        }
    }
    if !stack.is_empty() {
        return None;
    }
    root
}

/// A replayed node (an alias, a merged value) is placed where it is used, all the way down, as serde-saphyr
/// places it; keys keep the place they are written, so a misspelt key in shared defaults points at the anchor.
fn relocate(node: &mut Yaml, to: Pos) {
    node.pos = to;
    match &mut node.value {
        YamlValue::Seq(items) => items.iter_mut().for_each(|item| relocate(item, to)),
        YamlValue::Map(entries) => entries.iter_mut().for_each(|(_, _, v)| relocate(v, to)),
        _ => {}
    }
}

/// The entries a `<<` value adds: a map's, or those of a list of maps, first ones first.
fn merge_entries(value: Yaml) -> Option<Vec<(Pos, String, Yaml)>> {
    let value_pos = value.pos;
    match value.value {
        YamlValue::Map(entries) => Some(
            entries
                .into_iter()
                .map(|(k, name, mut v)| {
                    relocate(&mut v, value_pos);
                    (k, name, v)
                })
                .collect(),
        ),
        YamlValue::Seq(items) => {
            let mut all: Vec<(Pos, String, Yaml)> = Vec::new();
            for item in items {
                for entry in merge_entries(item)? {
                    if !all.iter().any(|(_, k, _)| *k == entry.1) {
                        all.push(entry);
                    }
                }
            }
            Some(all)
        }
        YamlValue::Null => Some(Vec::new()),
        _ => None,
    }
}

/// A scalar resolved as the serde-saphyr path resolves it (YAML 1.2 core, strict booleans); `None` for
/// numbers whose spelling only serde-saphyr's own parsers should decide.
fn scalar(value: Cow<'_, str>, style: ScalarStyle) -> Option<YamlValue> {
    if !matches!(style, ScalarStyle::Plain) {
        return Some(YamlValue::Str(value.into_owned()));
    }
    let t = value.trim_matches([' ', '\t', '\r', '\n']);
    match t {
        "" | "~" | "null" | "Null" | "NULL" if value.len() == t.len() => return Some(YamlValue::Null),
        "true" | "True" | "TRUE" => return Some(YamlValue::Bool(true)),
        "false" | "False" | "FALSE" => return Some(YamlValue::Bool(false)),
        _ => {}
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    let numeric_start = unsigned.as_bytes().first().is_some_and(|b| b.is_ascii_digit() || *b == b'.');
    let lower = t.to_ascii_lowercase();
    if !numeric_start && (t.len() > 9 || !(lower.contains("inf") || lower.contains("nan"))) {
        return Some(YamlValue::Str(value.into_owned()));
    }
    // Plain decimal integers without a leading zero are the common case.
    let digits = unsigned.as_bytes();
    if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) && (digits.len() == 1 || digits[0] != b'0') {
        if let Ok(n) = t.parse::<i64>() {
            if !t.starts_with('+') {
                return Some(YamlValue::Int(n));
            }
        }
    }
    // Anything else number-like (floats such as `version: 2.1`, radixes, `.inf`, leading zeros, `1_000`):
    // as a one-scalar document, serde-saphyr resolves it exactly as it would in place.
    // A character no number spelling has (`./run.sh`, `1.2.3-rc 4`, `3:00`) makes it a string.
    if t.len() != value.len() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b'_'))
    {
        return Some(YamlValue::Str(value.into_owned()));
    }
    // Alone in a document, `...` and `---` are markers, not the scalar they are in place (`a: ...`).
    if t.starts_with("...") || t.starts_with("---") {
        return None;
    }
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options::<Yaml>(t, options).ok().map(|y| y.value)
}
