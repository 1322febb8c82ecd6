//! `.dockerignore` with moby/patternmatcher semantics, and the walk of the build context that uses it.
//!
//! Patterns are read like `ignorefile.ReadAll` (lines starting with `#` and blank lines skipped, surrounding
//! blanks trimmed, `!` marks an exception, paths cleaned like Go's `filepath.Clean`, a leading `/` dropped) and
//! matched like `PatternMatcher.MatchesOrParentMatches`: anchored at the context root, `*` and `?` never cross
//! `/`, `[…]` classes, `**` any number of directories, the last matching pattern wins, and a pattern that
//! matches a parent directory matches everything under it. `Dockerfile` and `.dockerignore` are always kept
//! (the docker CLI appends exceptions for them); [`IgnoreMatcher::keep`] adds another (a `-f` Dockerfile).
//!
//! ```text
//! let matcher = IgnoreMatcher::from_file(&context.join(".dockerignore"))?.keep("build/Dockerfile.ci");
//! for entry in walk_context(&context, &matcher)? { … }   // sorted, relative, excluded dirs not entered
//! ```

use std::path::{Path, PathBuf};

use crate::build::error::{Error, Result};

/// The patterns of a `.dockerignore`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// The cleaned pattern, without `!`.
    text: String,
    exclusion: bool,
    kind: MatchKind,
    /// Compiled components (split on `/`), for deciding whether a directory can be skipped.
    dirs: Vec<Vec<Token>>,
}

/// patternmatcher's match types: plain patterns compare strings, others use the glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MatchKind {
    Exact,
    /// `foo/**`: starts with this text.
    Prefix(String),
    /// `**/foo` (no other wildcard): ends with this text (`/foo`), or equals it without the slash.
    Suffix(String),
    Glob(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    Any,
    /// `**/` inside a pattern: any number of whole directories, including none.
    AnyDirs,
    /// `**` at the end: anything.
    AnyPath,
    /// `[…]`: (negated, ranges).
    Class(bool, Vec<(char, char)>),
}

impl IgnoreMatcher {
    /// Parses `.dockerignore` text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exclusion = pattern.starts_with('!');
            if exclusion {
                pattern = pattern[1..].trim();
            }
            let mut cleaned = if pattern.is_empty() { String::new() } else { clean(pattern) };
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            if exclusion && cleaned.is_empty() {
                return Err(Error::at(
                    file,
                    i + 1,
                    "illegal exclusion pattern: \"!\" (write the path to keep after it)",
                ));
            }
            let compiled = Pattern::compile(&cleaned, exclusion).map_err(|m| Error::at(file, i + 1, m))?;
            patterns.push(compiled);
        }
        Ok(IgnoreMatcher { patterns }.keep("Dockerfile").keep(".dockerignore"))
    }

    /// Reads the `.dockerignore` at `path`; a missing file means nothing is ignored.
    pub fn from_file(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => IgnoreMatcher::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(IgnoreMatcher::default().keep("Dockerfile").keep(".dockerignore"))
            }
            Err(source) => Err(Error::Io { path: path.to_path_buf(), source }),
        }
    }

    /// Never excludes `rel_path` (an exception appended after the user's patterns).
    pub fn keep(mut self, rel_path: &str) -> Self {
        let cleaned = clean(rel_path);
        if let Ok(p) = Pattern::compile(&literal_pattern(&cleaned), true) {
            self.patterns.push(p);
        }
        self
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is excluded from the context: by a
    /// pattern matching it or one of its parent directories, the last matching pattern deciding.
    pub fn matches(&self, rel_path: &str) -> bool {
        let path = clean(rel_path);
        if path == "." {
            return false;
        }
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            let hit = pattern.matches(&path) || (1..=parents.len()).any(|n| pattern.matches(&parents[..n].join("/")));
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Whether the walk may skip the excluded directory `rel_dir` without looking inside: true when it is
    /// excluded and no exception pattern could match anything under it.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        if !self.matches(rel_dir) {
            return false;
        }
        let dir = clean(rel_dir);
        let parts: Vec<&str> = dir.split('/').collect();
        !self.patterns.iter().filter(|p| p.exclusion).any(|p| p.could_match_under(&parts))
    }
}

/// Escapes glob characters so `rel_path` matches only itself.
fn literal_pattern(path: &str) -> String {
    let mut out = String::new();
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Pattern {
    fn compile(text: &str, exclusion: bool) -> std::result::Result<Pattern, String> {
        let kind = compile_kind(text)?;
        let dirs = text.split('/').map(Pattern::component_tokens).collect();
        Ok(Pattern { text: text.to_string(), exclusion, kind, dirs })
    }

    /// A pattern component compiled on its own (for [`Pattern::could_match_under`]); `**` anywhere makes it
    /// match any number of components, which that check treats as "could match".
    fn component_tokens(part: &str) -> Vec<Token> {
        match Pattern::compile_glob_only(part) {
            Some(tokens) => tokens,
            None => vec![Token::AnyPath],
        }
    }

    fn compile_glob_only(part: &str) -> Option<Vec<Token>> {
        if part.contains("**") {
            return None;
        }
        match compile_kind(part).ok()? {
            MatchKind::Glob(tokens) => Some(tokens),
            _ => Some(part.chars().map(Token::Literal).collect()),
        }
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.text,
            MatchKind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            MatchKind::Suffix(suffix) => {
                path.ends_with(suffix.as_str()) || suffix.strip_prefix('/').is_some_and(|s| s == path)
            }
            MatchKind::Glob(tokens) => {
                let chars: Vec<char> = path.chars().collect();
                glob(tokens, &chars)
            }
        }
    }

    /// Whether this pattern could match some path strictly under the directory `dir` (its components).
    fn could_match_under(&self, dir: &[&str]) -> bool {
        for (i, tokens) in self.dirs.iter().enumerate() {
            if tokens.iter().any(|t| matches!(t, Token::AnyPath | Token::AnyDirs)) {
                return true;
            }
            let Some(part) = dir.get(i) else { return true };
            let chars: Vec<char> = part.chars().collect();
            if !glob(tokens, &chars) {
                return false;
            }
        }
        // The pattern has no more components than the directory: it matches the directory or a parent,
        // which re-includes everything below.
        true
    }
}

/// Compiles one pattern the way patternmatcher does (plain, prefix, suffix or glob).
fn compile_kind(text: &str) -> std::result::Result<MatchKind, String> {
    let bad = |why: &str| format!("invalid pattern {text:?}: {why}");
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    // patternmatcher's detected type: the last assignment wins.
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Glob,
    }
    let mut detected = Detected::Exact;
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        let at_start = i == 0;
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    tokens.push(Token::AnyPath);
                    detected = if detected == Detected::Exact { Detected::Prefix } else { Detected::Glob };
                } else {
                    tokens.push(Token::AnyDirs);
                    detected = Detected::Glob;
                }
                if at_start {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                tokens.push(Token::Star);
                detected = Detected::Glob;
            }
            '?' => {
                tokens.push(Token::Any);
                detected = Detected::Glob;
            }
            '\\' => match chars.get(i) {
                Some(&c) => {
                    i += 1;
                    tokens.push(Token::Literal(c));
                    detected = Detected::Glob;
                }
                None => tokens.push(Token::Literal('\\')),
            },
            '[' => {
                let negated = matches!(chars.get(i), Some('^'));
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let Some(&c) = chars.get(i) else { return Err(bad("unterminated [ class")) };
                    i += 1;
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        let Some(&e) = chars.get(i) else { return Err(bad("unterminated [ class")) };
                        i += 1;
                        e
                    } else {
                        c
                    };
                    let hi = if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
                        let hi = chars[i + 1];
                        i += 2;
                        hi
                    } else {
                        lo
                    };
                    if hi < lo {
                        return Err(bad("bad range in [ class"));
                    }
                    ranges.push((lo, hi));
                }
                tokens.push(Token::Class(negated, ranges));
                detected = Detected::Glob;
            }
            ']' => {
                tokens.push(Token::Literal(']'));
                detected = Detected::Glob;
            }
            c => tokens.push(Token::Literal(c)),
        }
    }
    let kind = match detected {
        Detected::Exact => MatchKind::Exact,
        Detected::Prefix => MatchKind::Prefix(text[..text.len() - 2].to_string()),
        Detected::Suffix => MatchKind::Suffix(text.get(2..).unwrap_or("").to_string()),
        Detected::Glob => MatchKind::Glob(tokens),
    };
    Ok(kind)
}

fn glob(tokens: &[Token], text: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else { return text.is_empty() };
    match first {
        Token::Literal(c) => text.first() == Some(c) && glob(rest, &text[1..]),
        Token::Any => text.first().is_some_and(|c| *c != '/') && glob(rest, &text[1..]),
        Token::Class(negated, ranges) => {
            text.first().is_some_and(|c| ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated)
                && glob(rest, &text[1..])
        }
        Token::Star => {
            let run = text.iter().take_while(|c| **c != '/').count();
            (0..=run).any(|n| glob(rest, &text[n..]))
        }
        Token::AnyPath => true,
        Token::AnyDirs => {
            // `(.*/)?`: nothing, or anything ending in `/`.
            glob(rest, text) || (0..text.len()).any(|i| text[i] == '/' && glob(rest, &text[i + 1..]))
        }
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// The kind of a context entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// Not followed: the link itself is part of the context.
    Symlink,
    /// Sockets, FIFOs, devices.
    Other,
}

/// One path of the build context that is not excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Relative to the context root, `/`-separated.
    pub path: String,
    pub kind: EntryKind,
}

/// Lists the build context under `dir`: every path not excluded by `matcher`, depth-first with siblings in
/// byte order (so a directory comes before its contents). A directory that is excluded is listed only when
/// something under it is re-included by an exception (it is needed to hold it), and is not entered at all
/// when no exception could reach inside it.
pub fn walk_context(dir: &Path, matcher: &IgnoreMatcher) -> Result<Vec<ContextEntry>> {
    let mut out = Vec::new();
    walk_dir(dir, "", matcher, &mut out)?;
    Ok(out)
}

fn walk_dir(dir: &Path, rel: &str, matcher: &IgnoreMatcher, out: &mut Vec<ContextEntry>) -> Result<()> {
    let io = |path: &Path| {
        let path: PathBuf = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().into_string().map_err(|_| Error::NonUtf8Path { path: entry.path() })?;
        names.push((name, entry));
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, entry) in names {
        let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let file_type = entry.file_type().map_err(io(&entry.path()))?;
        let kind = if file_type.is_symlink() {
            EntryKind::Symlink
        } else if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        let excluded = matcher.matches(&path);
        if kind != EntryKind::Dir {
            if !excluded {
                out.push(ContextEntry { path, kind });
            }
            continue;
        }
        if excluded && matcher.can_skip_dir(&path) {
            continue;
        }
        let mark = out.len();
        out.push(ContextEntry { path: path.clone(), kind });
        walk_dir(&entry.path(), &path, matcher, out)?;
        if excluded && out.len() == mark + 1 {
            out.pop();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(patterns: &[&str]) -> IgnoreMatcher {
        IgnoreMatcher::parse(&patterns.join("\n"), ".dockerignore").unwrap()
    }

    /// moby/patternmatcher's `TestMatches` table: (pattern, path, excluded).
    #[test]
    fn patternmatcher_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "/", true),
            ("**/", "/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true),
            ("a\\*b", "a*b", true),
        ];
        for (pattern, path, excluded) in cases {
            assert_eq!(matcher(&[pattern]).matches(path), *excluded, "pattern {pattern:?} path {path:?}");
        }
    }

    #[test]
    fn multi_pattern_cases_last_match_wins() {
        assert!(!matcher(&["**", "!util/docker/web"]).matches("util/docker/web/foo"));
        assert!(matcher(&["**", "!util/docker/web", "util/docker/web/foo"]).matches("util/docker/web/foo"));
        let whl = "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl";
        assert!(!matcher(&["**", &format!("!{whl}")]).matches(whl));
        assert!(!matcher(&["**", "!dist/*.whl"]).matches(whl));
        assert!(matcher(&["*.md", "!README.md"]).matches("CHANGES.md"));
        assert!(!matcher(&["*.md", "!README.md"]).matches("README.md"));
        assert!(matcher(&["!README.md", "*.md"]).matches("README.md"));
    }

    #[test]
    fn parent_match_excludes_children() {
        let m = matcher(&["docs", "build/"]);
        assert!(m.matches("docs/a/b.txt"));
        assert!(m.matches("build/out.o"));
        assert!(!m.matches("src/docs/x"), "patterns are anchored at the root");
        let m = matcher(&["docs", "!docs/keep.txt"]);
        assert!(m.matches("docs/other.txt"));
        assert!(!m.matches("docs/keep.txt"));
    }

    #[test]
    fn patterns_are_cleaned_and_comments_skipped() {
        let m = matcher(&["# comment", "", "  /tmp/../cache//  ", "./a/./b", " ! keep "]);
        assert!(m.matches("cache/x"));
        assert!(m.matches("a/b"));
        assert!(!m.matches("# comment"));
        assert!(matcher(&[" #not-a-comment"]).matches("#not-a-comment"), "only a # in column 1 comments");
    }

    #[test]
    fn dockerfile_and_dockerignore_are_always_kept() {
        let m = matcher(&["*", "Dockerfile", ".dockerignore"]);
        assert!(!m.matches("Dockerfile"));
        assert!(!m.matches(".dockerignore"));
        assert!(m.matches("other"));
        let m = matcher(&["ci"]).keep("ci/Dockerfile.ci");
        assert!(!m.matches("ci/Dockerfile.ci"));
        assert!(m.matches("ci/other"));
        assert!(!m.can_skip_dir("ci"));
    }

    #[test]
    fn bad_patterns_name_the_line() {
        let err = IgnoreMatcher::parse("ok\n!\n", ".dockerignore").unwrap_err();
        assert_eq!(
            err.to_string(),
            ".dockerignore:2: illegal exclusion pattern: \"!\" (write the path to keep after it)"
        );
        let err = IgnoreMatcher::parse("a[b", ".dockerignore").unwrap_err();
        assert_eq!(err.to_string(), ".dockerignore:1: invalid pattern \"a[b\": unterminated [ class");
    }

    #[test]
    fn skipping_directories_only_when_no_exception_reaches_inside() {
        let m = matcher(&["node_modules", "vendor", "!vendor/keep/*.go"]);
        assert!(m.can_skip_dir("node_modules"));
        assert!(!m.can_skip_dir("vendor"));
        assert!(!m.can_skip_dir("vendor/keep"));
        assert!(m.can_skip_dir("vendor/other"));
        assert!(!m.can_skip_dir("src"), "not excluded at all");
        let m = matcher(&["node_modules", "logs", "!**/important.log"]);
        assert!(!m.can_skip_dir("logs"), "** exceptions can match anywhere");
        assert!(!m.can_skip_dir("node_modules"));
    }

    #[test]
    fn clean_follows_go() {
        for (input, want) in
            [("a/b/../c", "a/c"), ("./x//y/", "x/y"), ("", "."), ("/../a", "/a"), ("../a", "../a"), ("a/..", ".")]
        {
            assert_eq!(clean(input), want, "{input}");
        }
    }

    #[test]
    fn walk_lists_sorted_and_skips_excluded_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for file in [
            "Dockerfile",
            "b.txt",
            "c.log",
            "a/x.txt",
            "a/y.log",
            "node_modules/m/index.js",
            "vendor/keep/k.go",
            "vendor/drop/d.go",
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "x").unwrap();
        }
        std::fs::write(root.join(".dockerignore"), "*.log\nnode_modules\nvendor\n!vendor/keep\nDockerfile\n").unwrap();
        let m = IgnoreMatcher::from_file(&root.join(".dockerignore")).unwrap();
        let entries = walk_context(root, &m).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            // `*.log` is anchored: it drops `c.log`, not `a/y.log`.
            [
                ".dockerignore",
                "Dockerfile",
                "a",
                "a/x.txt",
                "a/y.log",
                "b.txt",
                "vendor",
                "vendor/keep",
                "vendor/keep/k.go"
            ]
        );
        assert_eq!(entries[2].kind, EntryKind::Dir);
        assert_eq!(entries[3].kind, EntryKind::File);
    }

    #[test]
    fn missing_dockerignore_excludes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let m = IgnoreMatcher::from_file(&dir.path().join(".dockerignore")).unwrap();
        assert!(!m.matches("anything/at/all"));
    }
}
