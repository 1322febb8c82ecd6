//! Errors of the build front half: each names the file and line (column where it is known) and says what to
//! change. The executor reuses [`Error::at`] for failures it finds later (e.g. a variable that does not expand).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A problem at a place in a Dockerfile or `.dockerignore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file as the user named it (`Dockerfile`, `build/Dockerfile.dev`, `.dockerignore`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters), when the problem is at a known place in the line.
    pub column: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(column) => write!(f, "{}:{}:{}", self.file, self.line, column),
            None => write!(f, "{}:{}", self.file, self.line),
        }
    }
}

/// Any failure of the build front half.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Dockerfile or `.dockerignore` that cannot be used as written, e.g.
    /// `Dockerfile:7: unknown instruction: RUNN (did you mean RUN?)`.
    #[error("{location}: {message}")]
    Syntax { location: Location, message: String },
    /// A variable expansion failed (e.g. `${NAME:?}` with `NAME` unset).
    #[error("{location}: {source}")]
    Expand { location: Location, source: crate::build::shell_lex::Error },
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found{}", did_you_mean(.suggestion))]
    UnknownTarget { target: String, suggestion: Option<String> },
    /// `--target` given as an index (or a `--from` index) outside the stages.
    #[error("invalid stage index {index}: the Dockerfile has {count} stages (0 to {})", .count.saturating_sub(1))]
    StageIndex { index: usize, count: usize },
    /// Stages that need each other through `FROM` / `COPY --from` / `RUN --mount=from=`.
    #[error("circular dependency detected on stage: {stage} (a stage cannot copy from a stage that depends on it)")]
    CircularDependency { stage: String },
    /// A file of the build context could not be read.
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A context path that is not UTF-8 cannot be matched against `.dockerignore` patterns.
    #[error("{}: file name is not valid UTF-8 (rename it, or move it out of the build context)", .path.display())]
    NonUtf8Path { path: PathBuf },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A syntax error at `file:line`.
    pub fn at(file: &str, line: usize, message: impl Into<String>) -> Self {
        Error::Syntax { location: Location { file: file.to_string(), line, column: None }, message: message.into() }
    }

    /// A syntax error at `file:line:column`.
    pub fn at_column(file: &str, line: usize, column: usize, message: impl Into<String>) -> Self {
        Error::Syntax {
            location: Location { file: file.to_string(), line, column: Some(column) },
            message: message.into(),
        }
    }

    /// Where the error is, for errors that have a place in a file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Syntax { location, .. } | Error::Expand { location, .. } => Some(location),
            _ => None,
        }
    }
}

pub(crate) fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

/// BuildKit's suggestion rule: the closest option within edit distance 2, `None` for an exact match.
pub(crate) fn suggest<'a>(
    value: &str,
    options: impl IntoIterator<Item = &'a str>,
    case_sensitive: bool,
) -> Option<String> {
    let fold = |s: &str| if case_sensitive { s.to_string() } else { s.to_lowercase() };
    let wanted = fold(value);
    let mut best: Option<String> = None;
    let mut min = 3;
    for option in options {
        let option = fold(option);
        if option == wanted {
            return None;
        }
        let distance = levenshtein(&wanted, &option);
        if distance < min {
            min = distance;
            best = Some(if case_sensitive {
                option
            } else if value == value.to_lowercase() {
                option.to_lowercase()
            } else if value == value.to_uppercase() {
                option.to_uppercase()
            } else {
                option
            });
        }
    }
    best
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestion_keeps_the_case_of_the_input() {
        let names = ["add", "run", "from"];
        assert_eq!(suggest("RUNN", names, false).as_deref(), Some("RUN"));
        assert_eq!(suggest("runn", names, false).as_deref(), Some("run"));
        assert_eq!(suggest("FRM", names, false).as_deref(), Some("FROM"));
        assert_eq!(suggest("XYZZY", names, false), None);
        assert_eq!(suggest("RUN", names, false), None);
    }

    #[test]
    fn location_display_with_and_without_column() {
        assert_eq!(Error::at("Dockerfile", 3, "boom").to_string(), "Dockerfile:3: boom");
        assert_eq!(Error::at_column("Dockerfile", 3, 9, "boom").to_string(), "Dockerfile:3:9: boom");
    }
}
