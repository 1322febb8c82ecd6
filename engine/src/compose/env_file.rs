//! `.env` and `env_file:` parsing with docker compose's dotenv rules: `KEY=VALUE` lines, an optional `export `
//! prefix, `#` comments (whole lines, or after whitespace in an unquoted value), single quotes taken literally,
//! double quotes with `\n`, `\t`, `\\`, `\"` escapes and multi-line values, `${VAR}` interpolation from earlier
//! lines and the environment in unquoted and double-quoted values, and a bare `KEY` meaning "take it from the
//! environment if set".

use std::collections::{BTreeMap, BTreeSet};

use super::interpolate::{interpolate, Lookup};

/// A line of an env file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub line: usize,
    pub message: String,
}

struct Chain<'a> {
    earlier: &'a BTreeMap<String, String>,
    env: &'a dyn Lookup,
}

impl Lookup for Chain<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.earlier.get(name).cloned().or_else(|| self.env.get(name))
    }
}

/// Parses env-file text. `env` resolves interpolations and bare keys.
pub fn parse(text: &str, env: &dyn Lookup) -> Result<BTreeMap<String, String>, EnvFileError> {
    let mut vars = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let number = i + 1;
        let line = lines[i].trim_start();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, raw)) = line.split_once('=') else {
            let key = line.trim();
            check_key(key, number)?;
            if let Some(v) = env.get(key) {
                vars.insert(key.to_string(), v);
            }
            continue;
        };
        let key = key.trim();
        check_key(key, number)?;
        let raw = raw.trim_start();
        let value = if let Some(rest) = raw.strip_prefix('\'') {
            let (body, consumed) = quoted(rest, '\'', &lines, &mut i)
                .ok_or_else(|| EnvFileError { line: number, message: format!("{key}: missing closing '") })?;
            let _ = consumed;
            body
        } else if let Some(rest) = raw.strip_prefix('"') {
            let (body, _) = quoted(rest, '"', &lines, &mut i)
                .ok_or_else(|| EnvFileError { line: number, message: format!("{key}: missing closing \"") })?;
            let unescaped = unescape_double(&body);
            expand(&unescaped, &vars, env, number)?
        } else {
            let value = match raw.find(" #").or_else(|| raw.find("\t#")) {
                Some(at) => &raw[..at],
                None => raw,
            };
            expand(value.trim_end(), &vars, env, number)?
        };
        vars.insert(key.to_string(), value);
    }
    Ok(vars)
}

fn check_key(key: &str, line: usize) -> Result<(), EnvFileError> {
    let valid = !key.is_empty()
        && !key.contains(char::is_whitespace)
        && key.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(EnvFileError { line, message: format!("invalid variable name {key:?}") })
    }
}

fn expand(
    value: &str,
    earlier: &BTreeMap<String, String>,
    env: &dyn Lookup,
    line: usize,
) -> Result<String, EnvFileError> {
    interpolate(value, &Chain { earlier, env }, &mut BTreeSet::new())
        .map_err(|e| EnvFileError { line, message: e.to_string() })
}

/// Reads a quoted value that may continue on later lines; returns the body and advances `next_line`.
fn quoted(first: &str, quote: char, lines: &[&str], next_line: &mut usize) -> Option<(String, usize)> {
    let mut body = String::new();
    let mut current = first.to_string();
    let mut consumed = 0;
    loop {
        if let Some(end) = closing_quote(&current, quote) {
            body.push_str(&current[..end]);
            return Some((body, consumed));
        }
        body.push_str(&current);
        body.push('\n');
        current = (*lines.get(*next_line)?).to_string();
        *next_line += 1;
        consumed += 1;
    }
}

fn closing_quote(s: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && quote == '"' {
            escaped = true;
        } else if c == quote {
            return Some(i);
        }
    }
    None
}

fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        [("HOME", "/root"), ("FROM_SHELL", "shell")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_docker_compose_dotenv_syntax() {
        let text = "# comment\n\nA=1\nexport B = two\nC='${A} literal'\nD=\"line\\nnext ${A}\"\nE=x # trailing\nF=\nG=${HOME}/x\nFROM_SHELL\nNOT_SET\nH=\"multi\nline\"\nI=a#b\n";
        let vars = parse(text, &env()).unwrap();
        let get = |k: &str| vars.get(k).map(String::as_str);
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("B"), Some("two"));
        assert_eq!(get("C"), Some("${A} literal"));
        assert_eq!(get("D"), Some("line\nnext 1"));
        assert_eq!(get("E"), Some("x"));
        assert_eq!(get("F"), Some(""));
        assert_eq!(get("G"), Some("/root/x"));
        assert_eq!(get("FROM_SHELL"), Some("shell"));
        assert_eq!(get("NOT_SET"), None);
        assert_eq!(get("H"), Some("multi\nline"));
        assert_eq!(get("I"), Some("a#b"));
    }

    #[test]
    fn reports_the_line_of_a_bad_entry() {
        let err = parse("A=1\nBAD KEY=2\n", &env()).unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse("A=1\nB='open\n", &env()).unwrap_err();
        assert_eq!(err.line, 2);
    }
}
