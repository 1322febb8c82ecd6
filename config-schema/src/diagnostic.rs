//! Located problems in a configuration: `FILE:LINE:COL: PATH: message (did you mean `x`?)`. Every stage (parse,
//! model, validate, process) reports through [`Diagnostics`], collecting all problems instead of stopping at the
//! first, so one run of `runner config validate` shows everything to fix.

use std::fmt;

use crate::yaml::Pos;

/// One problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub column: u32,
    /// Key path, e.g. `jobs.build.steps[2].run`.
    pub path: String,
    pub message: String,
    pub suggestion: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}

/// Every problem of a configuration, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one file.
#[derive(Debug, Clone)]
pub struct Report {
    pub file: String,
    pub items: Vec<Diagnostic>,
}

impl Report {
    pub fn new(file: &str) -> Report {
        Report { file: file.to_string(), items: Vec::new() }
    }

    pub fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.push(pos, path, message, None);
    }

    pub fn push(&mut self, pos: Pos, path: &str, message: impl Into<String>, suggestion: Option<String>) {
        self.items.push(Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            message: message.into(),
            suggestion,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The diagnostics sorted by position (then path), duplicates removed.
    pub fn finish(mut self) -> Diagnostics {
        self.items
            .sort_by(|a, b| (a.line, a.column, &a.path, &a.message).cmp(&(b.line, b.column, &b.path, &b.message)));
        self.items.dedup();
        Diagnostics(self.items)
    }
}

/// The closest candidate within a small edit distance, for "did you mean".
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d > 0 && *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// `a.b` or `b` when the parent path is empty.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        return key.to_owned();
    }
    // Built by hand rather than with `format!`: paths are made for every key the reader visits, and the
    // formatting machinery was a fifth of the whole processing time (callgrind, bench/config-process).
    let mut path = String::with_capacity(parent.len() + 1 + key.len());
    path.push_str(parent);
    path.push('.');
    path.push_str(key);
    path
}

/// The key path of item `i` of the list at `parent`: `parent[i]`.
pub fn item_path(parent: &str, i: usize) -> String {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = i;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut path = String::with_capacity(parent.len() + 2 + digits.len() - at);
    path.push_str(parent);
    path.push('[');
    for &d in &digits[at..] {
        path.push(char::from(d));
    }
    path.push(']');
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_keys_and_items() {
        assert_eq!(join("", "jobs"), "jobs");
        assert_eq!(join("jobs", "build"), "jobs.build");
        assert_eq!(item_path("jobs.build.steps", 0), "jobs.build.steps[0]");
        assert_eq!(item_path("s", 1234567), "s[1234567]");
        assert_eq!(item_path("", usize::MAX), format!("[{}]", usize::MAX));
    }

    #[test]
    fn suggestions_pick_the_closest_key() {
        assert_eq!(suggest("step", ["steps", "docker", "shell"]).as_deref(), Some("steps"));
        assert_eq!(suggest("wrokflows", ["workflows", "jobs"]).as_deref(), Some("workflows"));
        assert_eq!(suggest("zzz", ["steps", "docker"]), None);
        assert_eq!(suggest("steps", ["steps"]), None);
    }

    #[test]
    fn display_is_file_line_column_path_message() {
        let mut r = Report::new(".circleci/config.yml");
        r.push(
            Pos { line: 3, column: 5 },
            "jobs.build.step",
            "unknown key `step` in job `build`",
            Some("steps".into()),
        );
        assert_eq!(
            r.finish().to_string(),
            ".circleci/config.yml:3:5: jobs.build.step: unknown key `step` in job `build` (did you mean `steps`?)"
        );
    }
}
