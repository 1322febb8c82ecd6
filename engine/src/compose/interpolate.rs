//! Variable interpolation in compose files, as the Compose Specification defines it: `$VAR`, `${VAR}`,
//! `${VAR:-default}` (unset or empty), `${VAR-default}` (unset), `${VAR:?message}` / `${VAR?message}` (required),
//! `${VAR:+alt}` / `${VAR+alt}` (set), nested defaults (`${A:-${B}}`) and `$$` for a literal `$`.
//!
//! Interpolation runs on every string value of the tree before anything else looks at it (keys are left alone, as
//! docker compose does). A variable that is unset and has no default becomes the empty string and is reported as a
//! warning, matching docker compose's "variable is not set. Defaulting to a blank string".

use std::collections::BTreeSet;

use super::node::{Node, Value};

/// Looks a variable up: the process environment merged with `.env` / `--env-file`.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<String>;
}

impl Lookup for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

impl Lookup for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::BTreeMap::get(self, name).cloned()
    }
}

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolateError {
    /// `${VAR:?message}` with `VAR` unset (or empty).
    Required { name: String, message: String },
    /// A `${` without its `}`, or a bad name/operator.
    Syntax(String),
}

impl std::fmt::Display for InterpolateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterpolateError::Required { name, message } if message.is_empty() => {
                write!(f, "required variable {name} is missing a value")
            }
            InterpolateError::Required { name, message } => {
                write!(f, "required variable {name} is missing a value: {message}")
            }
            InterpolateError::Syntax(msg) => write!(f, "invalid interpolation format: {msg}"),
        }
    }
}

/// Interpolates one string. Names of unset variables used without a default are added to `unset`.
pub fn interpolate(input: &str, env: &dyn Lookup, unset: &mut BTreeSet<String>) -> Result<String, InterpolateError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let close = matching_brace(&chars, i + 2)
                    .ok_or_else(|| InterpolateError::Syntax(format!("{input:?}: missing closing brace")))?;
                let inner: String = chars[i + 2..close].iter().collect();
                out.push_str(&expand_braced(&inner, input, env, unset)?);
                i = close + 1;
            }
            Some(&n) if is_name_start(n) => {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && is_name_char(chars[end]) {
                    end += 1;
                }
                let name: String = chars[start..end].iter().collect();
                out.push_str(&value_or_blank(&name, env, unset));
                i = end;
            }
            // A lone `$` (end of string, before a space or punctuation) stays as it is, like compose-go.
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn value_or_blank(name: &str, env: &dyn Lookup, unset: &mut BTreeSet<String>) -> String {
    env.get(name).unwrap_or_else(|| {
        unset.insert(name.to_string());
        String::new()
    })
}

/// Index of the `}` closing a `${` whose contents start at `from`, honouring nested `${…}`.
fn matching_brace(chars: &[char], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '$' if chars.get(i + 1) == Some(&'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn expand_braced(
    inner: &str,
    whole: &str,
    env: &dyn Lookup,
    unset: &mut BTreeSet<String>,
) -> Result<String, InterpolateError> {
    let name_len = inner.char_indices().find(|&(_, c)| !is_name_char(c)).map_or(inner.len(), |(i, _)| i);
    let (name, rest) = inner.split_at(name_len);
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(InterpolateError::Syntax(format!("{whole:?}: invalid variable name in ${{{inner}}}")));
    }
    if rest.is_empty() {
        return Ok(value_or_blank(name, env, unset));
    }
    let value = env.get(name);
    let (op, arg) = if let Some(arg) = rest.strip_prefix(":-") {
        (":-", arg)
    } else if let Some(arg) = rest.strip_prefix(":?") {
        (":?", arg)
    } else if let Some(arg) = rest.strip_prefix(":+") {
        (":+", arg)
    } else if let Some(arg) = rest.strip_prefix('-') {
        ("-", arg)
    } else if let Some(arg) = rest.strip_prefix('?') {
        ("?", arg)
    } else if let Some(arg) = rest.strip_prefix('+') {
        ("+", arg)
    } else {
        return Err(InterpolateError::Syntax(format!("{whole:?}: unsupported operator in ${{{inner}}}")));
    };
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    Ok(match op {
        ":-" if set_nonempty => value.unwrap_or_default(),
        "-" if value.is_some() => value.unwrap_or_default(),
        ":-" | "-" => interpolate(arg, env, unset)?,
        ":?" if !set_nonempty => {
            return Err(InterpolateError::Required { name: name.into(), message: interpolate(arg, env, unset)? })
        }
        "?" if value.is_none() => {
            return Err(InterpolateError::Required { name: name.into(), message: interpolate(arg, env, unset)? })
        }
        ":+" if set_nonempty => interpolate(arg, env, unset)?,
        "+" if value.is_some() => interpolate(arg, env, unset)?,
        ":+" | "+" => String::new(),
        _ => value.unwrap_or_default(),
    })
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A failed interpolation with the position of the string it was in.
#[derive(Debug, Clone)]
pub struct LocatedError {
    pub node: Node,
    pub path: String,
    pub error: InterpolateError,
}

/// Interpolates every string value in the tree in place (keys are untouched).
pub fn interpolate_tree(
    node: &mut Node,
    path: &str,
    env: &dyn Lookup,
    unset: &mut BTreeSet<String>,
) -> Result<(), Box<LocatedError>> {
    match &mut node.value {
        Value::Str(s) => match interpolate(s, env, unset) {
            Ok(v) => *s = v,
            Err(error) => return Err(Box::new(LocatedError { node: node.clone(), path: path.to_string(), error })),
        },
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), env, unset)?;
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let child = if path.is_empty() { k.name.clone() } else { format!("{path}.{}", k.name) };
                interpolate_tree(v, &child, env, unset)?;
            }
        }
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(input: &str) -> Result<String, InterpolateError> {
        let env: HashMap<String, String> = [("SET", "value"), ("EMPTY", ""), ("B", "bee")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        interpolate(input, &env, &mut BTreeSet::new())
    }

    #[test]
    fn follows_the_compose_specification_table() {
        let cases = [
            ("$SET", "value"),
            ("${SET}", "value"),
            ("x${SET}y", "xvaluey"),
            ("$SET.txt", "value.txt"),
            ("${UNSET:-d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${UNSET-d}", "d"),
            ("${SET:-d}", "value"),
            ("${SET:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${UNSET+alt}", ""),
            ("${UNSET:-${B}}", "bee"),
            ("${UNSET:-${UNSET2:-deep}}", "deep"),
            ("$$SET", "$SET"),
            ("$${SET}", "${SET}"),
            ("cost: 5$", "cost: 5$"),
            ("a $ b", "a $ b"),
            ("$UNSET", ""),
            ("${UNSET:-a b c}", "a b c"),
        ];
        for (input, want) in cases {
            assert_eq!(run(input).as_deref(), Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn required_variables_fail_with_their_message() {
        assert_eq!(
            run("${UNSET:?set it in .env}"),
            Err(InterpolateError::Required { name: "UNSET".into(), message: "set it in .env".into() })
        );
        assert!(run("${EMPTY:?x}").is_err());
        assert_eq!(run("${EMPTY?x}").as_deref(), Ok(""));
        assert!(run("${UNSET?}").is_err());
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(matches!(run("${SET"), Err(InterpolateError::Syntax(_))));
        assert!(matches!(run("${1A}"), Err(InterpolateError::Syntax(_))));
        assert!(matches!(run("${SET/x/y}"), Err(InterpolateError::Syntax(_))));
    }

    #[test]
    fn collects_unset_names() {
        let env: HashMap<String, String> = HashMap::new();
        let mut unset = BTreeSet::new();
        interpolate("$A ${B} ${C:-x}", &env, &mut unset).unwrap();
        assert_eq!(unset.into_iter().collect::<Vec<_>>(), ["A", "B"]);
    }
}
