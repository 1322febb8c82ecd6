//! BuildKit's shell lexer (`frontend/dockerfile/shell/lex.go`): the variable expansion and word splitting the
//! builder applies to Dockerfile arguments before it uses them.
//!
//! The builder expands `ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL ONBUILD USER VOLUME WORKDIR` (and `ARG`
//! values, `COPY --chown/--chmod`, `RUN --mount` values); it never expands `RUN`, `CMD` or `ENTRYPOINT`: their
//! text goes to the shell as written. See [`crate::build::instruction::Instruction::expands_variables`].
//!
//! Supported: `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`, `${VAR:?msg}`,
//! `${VAR?msg}`, `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`, `${VAR%%pat}`, `${VAR/pat/repl}`, `${VAR//pat/repl}`
//! (patterns: `*`, `?`, `\` escapes), single quotes (literal), double quotes (`$` expands, `\` escapes only
//! `"`, `$` and itself), the escape character outside quotes (escapes anything; a trailing one is dropped).
//! Positional (`$1`) and special (`$@ $* $# $? $- $$ $! $0`) parameters are never set.
//!
//! ```text
//! let lexer = Lexer::new(dockerfile.escape);           // `\` unless `# escape=` said otherwise
//! let dest = lexer.expand("${HOME:-/root}/app", &env)?;           // one word, quotes removed
//! let ports = lexer.expand_words("$PORTS 443/tcp", &env)?;       // split on unquoted whitespace
//! ```

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// An expansion failure: BuildKit's message, e.g. `failed to process "${A": syntax error: missing '}'`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {source_text:?}: {message}")]
pub struct Error {
    /// The text being expanded.
    pub source_text: String,
    /// What went wrong (`syntax error: bad substitution`, `NAME: is not allowed to be unset`, …).
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

/// Variables visible to an expansion (build args and the stage's `ENV`, in the executor).
pub trait Env {
    /// The value of `name`, `None` when unset (set-but-empty is `Some("")`: `${A-x}` and `${A:-x}` differ).
    fn get(&self, name: &str) -> Option<&str>;
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// `KEY=VALUE` pairs in order; the last definition of a key wins (like an OCI `Env` list).
impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// No variables at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Expands `word` as one word with the default escape character `\`. See [`Lexer::expand`].
pub fn expand(word: &str, env: &dyn Env) -> Result<String> {
    Lexer::new('\\').expand(word, env)
}

/// Expands and splits `word` with the default escape character `\`. See [`Lexer::expand_words`].
pub fn expand_words(word: &str, env: &dyn Env) -> Result<Vec<String>> {
    Lexer::new('\\').expand_words(word, env)
}

/// The lexer, configured with the Dockerfile's escape character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    /// Keep quote characters in the output (used to detect quoted heredoc delimiters).
    raw_quotes: bool,
    /// Keep escape characters in the output.
    raw_escapes: bool,
    /// Leave unset variables as written (`$A`, `${A:-x}`) instead of expanding them to "".
    skip_unset: bool,
    /// Treat quotes as ordinary characters (heredoc bodies).
    skip_quotes: bool,
}

impl Lexer {
    /// A lexer with `escape` (`\` or `` ` ``) as escape character.
    pub fn new(escape: char) -> Self {
        Lexer { escape, raw_quotes: false, raw_escapes: false, skip_unset: false, skip_quotes: false }
    }

    /// The lexer BuildKit uses for the body of a heredoc whose delimiter was not quoted (`COPY <<EOF`): `$`
    /// expands, quotes are ordinary characters, `\` escapes.
    pub fn for_heredoc_body() -> Self {
        Lexer { skip_quotes: true, ..Lexer::new('\\') }
    }

    pub(crate) fn with_raw_quotes(self, on: bool) -> Self {
        Lexer { raw_quotes: on, ..self }
    }

    pub(crate) fn with_raw_escapes(self, on: bool) -> Self {
        Lexer { raw_escapes: on, ..self }
    }

    pub(crate) fn with_skip_unset(self, on: bool) -> Self {
        Lexer { skip_unset: on, ..self }
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands variables and removes quotes and escapes in `word`, keeping whitespace as it is (BuildKit's
    /// `ProcessWord`): `a "b  c"` → `a b  c`.
    pub fn expand(&self, word: &str, env: &dyn Env) -> Result<String> {
        self.process(word, env).map(|(result, _)| result)
    }

    /// Expands `word`, then splits it on whitespace that was not quoted or escaped (BuildKit's `ProcessWords`):
    /// `a "b  c" $X` with `X="d e"` → `["a", "b  c", "d", "e"]`. An empty quoted word (`""`) yields no word.
    pub fn expand_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>> {
        self.process(word, env).map(|(_, words)| words)
    }

    fn process(&self, word: &str, env: &dyn Env) -> Result<(String, Vec<String>)> {
        let mut scanner =
            Scanner { chars: word.chars().collect(), pos: 0, lex: self, env, raw_escapes: self.raw_escapes };
        let raw = scanner.raw_escapes;
        scanner.process_stop_on(None, raw).map_err(|message| Error { source_text: word.to_string(), message })
    }
}

/// Words being collected while expanding (BuildKit's `wordsStruct`).
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

type Step<T> = std::result::Result<T, String>;

struct Scanner<'a> {
    chars: Vec<char>,
    pos: usize,
    lex: &'a Lexer,
    env: &'a dyn Env,
    raw_escapes: bool,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env.get(name).map(str::to_string)
    }

    /// Processes up to `stop` (consumed) or the end of input; returns the text and its words.
    fn process_stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Step<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let out = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Step<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let tmp = self.process_dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '<' => {
                    let tmp = self.process_possible_heredoc();
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '\'' | '"' if !self.lex.skip_quotes => {
                    let tmp = if ch == '\'' { self.process_single_quote()? } else { self.process_double_quote()? };
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.pos += 1;
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape character escapes anything; at the end of input it is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!("unexpected end of statement while looking for matching {stop}"));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Step<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err("unexpected end of statement while looking for matching single-quote".into()),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Step<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err("unexpected end of statement while looking for matching double-quote".into()),
                Some('"') => {
                    self.pos += 1;
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => result.push_str(&self.process_dollar()?),
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // An escape right before the end: the missing quote is reported next round.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.lex.escape => {
                                self.pos += 1;
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Step<String> {
        self.pos += 1; // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(first) = self.next() else { return Err("syntax error: missing '}'".into()) };
        let mut modifier = first.to_string();
        match first {
            '}' => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lex.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = first == ':';
                let op = if null_is_unset {
                    let op = self.next();
                    modifier.extend(op);
                    op
                } else {
                    Some(first)
                };
                let raw = matches!(op, Some('#' | '%'));
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({modifier}) in substitution"));
                }
                let word = self.stop_on_or_missing('}', raw, "syntax error: missing '}'")?;
                let value = self.lookup(&name);
                if self.lex.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let empty_or_unset = value.as_deref().is_none_or(|v| null_is_unset && v.is_empty());
                match op {
                    Some('-') => Ok(if empty_or_unset { word } else { value.unwrap_or_default() }),
                    Some('+') => Ok(if empty_or_unset { String::new() } else { word }),
                    Some('?') => match value {
                        None => Err(format!("{name}: {}", non_empty_or(word, "is not allowed to be unset"))),
                        Some(v) if null_is_unset && v.is_empty() => {
                            Err(format!("{name}: {}", non_empty_or(word, "is not allowed to be empty")))
                        }
                        Some(v) => Ok(v),
                    },
                    Some(op @ ('#' | '%')) => {
                        let (pattern, greedy) = match word.strip_prefix(op) {
                            Some(rest) => (rest, true),
                            None => (word.as_str(), false),
                        };
                        let value = value.unwrap_or_default();
                        let tokens = shell_pattern(pattern)?;
                        Ok(if op == '#' {
                            trim_prefix(&tokens, &value, greedy)
                        } else {
                            trim_suffix(tokens, &value, greedy)
                        })
                    }
                    _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
                }
            }
            '/' => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.pos += 1;
                }
                let pattern = self.stop_on_or_missing('/', true, "syntax error: missing '/' in ${}")?;
                let replacement = self.stop_on_or_missing('}', true, "syntax error: missing '}'")?;
                let value = self.lookup(&name);
                let Some(value) = value else {
                    if self.lex.skip_unset {
                        return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                    }
                    return Ok(String::new());
                };
                let tokens = shell_pattern(&pattern)?;
                Ok(replace(&tokens, &value, &replacement, replace_all))
            }
            _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
        }
    }

    fn stop_on_or_missing(&mut self, stop: char, raw: bool, missing: &str) -> Step<String> {
        match self.process_stop_on(Some(stop), raw) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err(missing.to_string()),
            Err(e) => Err(e),
        }
    }

    /// A variable name: letters, digits and `_`; or all the digits of a positional parameter; or one special
    /// parameter character.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }

    /// `<<` followed by blanks stays together so a heredoc delimiter like `<< EOF` is one word.
    fn process_possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.pos += 1;
        let mut out = String::from("<<");
        while let Some(ch) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            out.push(ch);
            self.pos += 1;
        }
        out
    }
}

fn non_empty_or(word: String, default: &str) -> String {
    if word.is_empty() {
        default.to_string()
    } else {
        word
    }
}

/// One element of a `${VAR#pattern}` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatternToken {
    /// `*`: any run of characters.
    Star,
    /// `?`: one character.
    Any,
    Literal(char),
}

/// Parses a substitution pattern: `*`, `?`, and `\` escaping `*`, `?` or `\` (`\}` and `\/` are the escaped
/// delimiters of `${}` and stand for `}` and `/`).
fn shell_pattern(pattern: &str) -> Step<Vec<PatternToken>> {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        tokens.push(match ch {
            '*' => PatternToken::Star,
            '?' => PatternToken::Any,
            '\\' => match chars.next() {
                Some(c @ ('}' | '/' | '*' | '?' | '\\')) => PatternToken::Literal(c),
                Some(c) => return Err(format!("invalid pattern ({pattern}) in substitution: invalid escape '\\{c}'")),
                None => return Err(format!("invalid pattern ({pattern}) in substitution: trailing '\\'")),
            },
            c => PatternToken::Literal(c),
        });
    }
    Ok(tokens)
}

/// The end of the match of `tokens` against `text[start..]` that a backtracking matcher finds first: stars
/// try the fewest characters first (`greedy == false`) or the most.
fn match_at(tokens: &[PatternToken], text: &[char], start: usize, greedy: bool) -> Option<usize> {
    let Some((first, rest)) = tokens.split_first() else { return Some(start) };
    match first {
        PatternToken::Literal(c) => {
            (text.get(start) == Some(c)).then_some(()).and_then(|_| match_at(rest, text, start + 1, greedy))
        }
        PatternToken::Any => (start < text.len()).then_some(()).and_then(|_| match_at(rest, text, start + 1, greedy)),
        PatternToken::Star => {
            let ends = start..=text.len();
            if greedy {
                ends.rev().find_map(|end| match_at(rest, text, end, greedy))
            } else {
                ends.clone().find_map(|end| match_at(rest, text, end, greedy))
            }
        }
    }
}

fn trim_prefix(tokens: &[PatternToken], value: &str, greedy: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    match match_at(tokens, &chars, 0, greedy) {
        Some(end) => chars[end..].iter().collect(),
        None => value.to_string(),
    }
}

/// `%`: the shortest (or longest) matching suffix, found as a prefix of the reversed value.
fn trim_suffix(mut tokens: Vec<PatternToken>, value: &str, greedy: bool) -> String {
    tokens.reverse();
    let reversed: String = value.chars().rev().collect();
    trim_prefix(&tokens, &reversed, greedy).chars().rev().collect()
}

/// `${VAR/pattern/replacement}`: the leftmost (greedy) match, or every non-overlapping one (`//`); an empty
/// match right after a previous match is skipped, like Go's `ReplaceAllString`.
fn replace(tokens: &[PatternToken], value: &str, replacement: &str, all: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut pos = 0;
    let mut last_match_end: Option<usize> = None;
    while pos <= chars.len() {
        match match_at(tokens, &chars, pos, true) {
            Some(end) if !(end == pos && last_match_end == Some(pos)) => {
                out.push_str(replacement);
                if !all {
                    out.extend(&chars[end..]);
                    return out;
                }
                last_match_end = Some(end);
                if end == pos {
                    out.extend(chars.get(pos));
                    pos += 1;
                } else {
                    pos = end;
                }
            }
            _ => {
                out.extend(chars.get(pos));
                pos += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// BuildKit's `shell/envVarTest` cases (the Unix ones): `input | expected`, `error` when it must fail.
    const ENV_VAR_CASES: &str = r#"
hello                    |     hello
he'll'o                  |     hello
he'llo                   |     error
he\'llo                  |     he'llo
he\\'llo                 |     error
abc\tdef                 |     abctdef
"abc\tdef"               |     abc\tdef
"abc\\tdef"              |     abc\tdef
'abc\tdef'               |     abc\tdef
hello\                   |     hello
hello\\                  |     hello\
"hello                   |     error
"hello\"                 |     error
"hel'lo"                 |     hel'lo
'hello                   |     error
'hello\'                 |     hello\
'hello\there'            |     hello\there
'hello\\there'           |     hello\\there
"''"                     |     ''
$.                       |     $.
he$1x                    |     hex
he$.x                    |     he$.x
he$pwd.                  |     he.
he$PWD                   |     he/home
he\$PWD                  |     he$PWD
he\\$PWD                 |     he\/home
"he\$PWD"                |     he$PWD
"he\\$PWD"               |     he\/home
\${}                     |     ${}
\${}aaa                  |     ${}aaa
he\${}                   |     he${}
he\${}xx                 |     he${}xx
${}                      |     error
${}aaa                   |     error
he${}                    |     error
he${}xx                  |     error
he${hi}                  |     he
he${hi}xx                |     hexx
he${PWD}                 |     he/home
he${.}                   |     error
he${XXX:-000}xx          |     he000xx
he${PWD:-000}xx          |     he/homexx
he${XXX:-$PWD}xx         |     he/homexx
he${XXX:-${PWD:-yyy}}xx  |     he/homexx
he${XXX:-${YYY:-yyy}}xx  |     heyyyxx
he${XXX:YYY}             |     error
he${XXX?}                |     error
he${XXX:?}               |     error
he${PWD?}                |     he/home
he${PWD:?}               |     he/home
he${NULL?}               |     he
he${NULL:?}              |     error
he${XXX:+${PWD}}xx       |     hexx
he${PWD:+${XXX}}xx       |     hexx
he${PWD:+${SHELL}}xx     |     hebashxx
he${XXX:+000}xx          |     hexx
he${PWD:+000}xx          |     he000xx
'he${XX}'                |     he${XX}
"he${PWD}"               |     he/home
"he'$PWD'"               |     he'/home'
"$PWD"                   |     /home
'$PWD'                   |     $PWD
'\$PWD'                  |     \$PWD
'"hello"'                |     "hello"
he\$PWD                  |     he$PWD
"he\$PWD"                |     he$PWD
'he\$PWD'                |     he\$PWD
he${PWD                  |     error
he${PWD:=000}xx          |     error
he${PWD:+${PWD}:}xx      |     he/home:xx
he${XXX:-\$PWD:}xx       |     he$PWD:xx
he${XXX:-\${PWD}z}xx     |     he${PWDz}xx
안녕하세요                 |     안녕하세요
안'녕'하세요               |     안녕하세요
안'녕하세요                |     error
안녕\'하세요               |     안녕'하세요
안\\'녕하세요              |     error
안녕\t하세요               |     안녕t하세요
"안녕\t하세요"             |     안녕\t하세요
'안녕\t하세요              |     error
안녕하세요\                |     안녕하세요
안녕하세요\\               |     안녕하세요\
"안녕하세요                |     error
"안녕하세요\"              |     error
"안녕'하세요"              |     안녕'하세요
'안녕하세요                |     error
'안녕하세요\'              |     안녕하세요\
안녕$1x                    |     안녕x
안녕$.x                    |     안녕$.x
안녕$pwd.                  |     안녕.
안녕$PWD                   |     안녕/home
안녕\$PWD                  |     안녕$PWD
안녕\\$PWD                 |     안녕\/home
안녕\${}                   |     안녕${}
안녕\${}xx                 |     안녕${}xx
안녕${}                    |     error
안녕${}xx                  |     error
안녕${hi}                  |     안녕
안녕${hi}xx                |     안녕xx
안녕${PWD}                 |     안녕/home
안녕${.}                   |     error
안녕${XXX:-000}xx          |     안녕000xx
안녕${PWD:-000}xx          |     안녕/homexx
안녕${XXX:-$PWD}xx         |     안녕/homexx
안녕${XXX:-${PWD:-yyy}}xx  |     안녕/homexx
안녕${XXX:-${YYY:-yyy}}xx  |     안녕yyyxx
안녕${XXX:YYY}             |     error
안녕${XXX:+${PWD}}xx       |     안녕xx
안녕${PWD:+${XXX}}xx       |     안녕xx
안녕${PWD:+${SHELL}}xx     |     안녕bashxx
안녕${XXX:+000}xx          |     안녕xx
안녕${PWD:+000}xx          |     안녕000xx
'안녕${XX}'                |     안녕${XX}
"안녕${PWD}"               |     안녕/home
"안녕'$PWD'"               |     안녕'/home'
'"안녕"'                   |     "안녕"
안녕\$PWD                  |     안녕$PWD
"안녕\$PWD"                |     안녕$PWD
'안녕\$PWD'                |     안녕\$PWD
안녕${PWD                  |     error
안녕${PWD:=000}xx          |     error
안녕${PWD:+${PWD}:}xx      |     안녕/home:xx
안녕${XXX:-\$PWD:}xx       |     안녕$PWD:xx
안녕${XXX:-\${PWD}z}xx     |     안녕${PWDz}xx
$KOREAN                    |     한국어
안녕$KOREAN                |     안녕한국어
${{aaa}                   |     error
${aaa}}                   |     }
${aaa                     |     error
${{aaa:-bbb}              |     error
${aaa:-bbb}}              |     bbb}
${aaa:-bbb                |     error
${aaa:-bbb}               |     bbb
${aaa:-${bbb:-ccc}}       |     ccc
${aaa:-bbb ${foo}         |     error
${aaa:-bbb {foo}          |     bbb {foo
${:}                      |     error
${:-bbb}                  |     error
${:+bbb}                  |     error
$1                        |
${1}                      |
${1:+bbb}                 |
${1:-bbb}                 |     bbb
$2                        |
${2}                      |
${2:+bbb}                 |
${2:-bbb}                 |     bbb
$3                        |
${3}                      |
${3:+bbb}                 |
${3:-bbb}                 |     bbb
$4                        |
${4}                      |
${4:+bbb}                 |
${4:-bbb}                 |     bbb
$5                        |
${5}                      |
${5:+bbb}                 |
${5:-bbb}                 |     bbb
$6                        |
${6}                      |
${6:+bbb}                 |
${6:-bbb}                 |     bbb
$7                        |
${7}                      |
${7:+bbb}                 |
${7:-bbb}                 |     bbb
$8                        |
${8}                      |
${8:+bbb}                 |
${8:-bbb}                 |     bbb
$9                        |
${9}                      |
${9:+bbb}                 |
${9:-bbb}                 |     bbb
$999                      |
${999}                    |
${999:+bbb}               |
${999:-bbb}               |     bbb
$999aaa                   |     aaa
${999}aaa                 |     aaa
${999:+bbb}aaa            |     aaa
${999:-bbb}aaa            |     bbbaaa
$001                      |
${001}                    |
${001:+bbb}               |
${001:-bbb}               |     bbb
$001aaa                   |     aaa
${001}aaa                 |     aaa
${001:+bbb}aaa            |     aaa
${001:-bbb}aaa            |     bbbaaa
$@                        |
${@}                      |
${@:+bbb}                 |
${@:-bbb}                 |     bbb
$@@@                      |     @@
$@aaa                     |     aaa
${@}aaa                   |     aaa
${@:+bbb}aaa              |     aaa
${@:-bbb}aaa              |     bbbaaa
$*                        |
${*}                      |
${*:+bbb}                 |
${*:-bbb}                 |     bbb
$#                        |
${#}                      |
${#:+bbb}                 |
${#:-bbb}                 |     bbb
$?                        |
${?}                      |
${?:+bbb}                 |
${?:-bbb}                 |     bbb
$-                        |
${-}                      |
${-:+bbb}                 |
${-:-bbb}                 |     bbb
$$                        |
${$}                      |
${$:+bbb}                 |
${$:-bbb}                 |     bbb
$!                        |
${!}                      |
${!:+bbb}                 |
${!:-bbb}                 |     bbb
$0                        |
${0}                      |
${0:+bbb}                 |
${0:-bbb}                 |     bbb
"#;

    #[test]
    fn buildkit_env_var_cases() {
        let env = env(&[("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]);
        let mut checked = 0;
        for line in ENV_VAR_CASES.lines().filter(|l| !l.trim().is_empty()) {
            let (input, expected) = line.split_once('|').expect("case line has a |");
            let (input, expected) = (input.trim(), expected.trim());
            let got = expand(input, &env);
            if expected == "error" {
                assert!(got.is_err(), "{input:?} should fail, got {got:?}");
            } else {
                assert_eq!(got.as_deref(), Ok(expected), "input {input:?}");
            }
            checked += 1;
        }
        assert!(checked > 200, "only {checked} cases");
    }

    /// BuildKit's `shell/wordsTest`: `input | word,word`, with `ENV` lines adding variables.
    const WORDS_CASES: &str = "hello | hello
hello${hi}bye | hellobye
ENV hi=hi
hello${hi}bye | hellohibye
ENV space=abc  def
hello${space}bye | helloabc,defbye
hello\"${space}\"bye | helloabc  defbye
hello \"${space}\"bye | hello,abc  defbye
ENV leading=  ab c
hello${leading}def | hello,ab,cdef
hello\"${leading}\" def | hello  ab c,def
hello\"${leading}\" | hello  ab c
hello${leading} | hello,ab,c
ENV trailing=ab c   
hello${trailing} | helloab,c
hello${trailing}d | helloab,c,d
hello\"${trailing}\"d | helloab c   d
hel\"lo${trailing}\" | helloab c   
hello\" there  \" | hello there  
hello there     | hello,there
hello\\ there | hello there
hello\" there | error
hello\\\" there | hello\",there
hello\"\\\\there\" | hello\\there
hello\"\\there\" | hello\\there
hello'\\\\there' | hello\\\\there
hello'\\there' | hello\\there
hello'$there' | hello$there";

    #[test]
    fn buildkit_words_cases() {
        let mut vars: Vec<(String, String)> = Vec::new();
        for line in WORDS_CASES.lines() {
            if let Some(def) = line.strip_prefix("ENV ") {
                let (k, v) = def.trim_start().split_once('=').expect("ENV line has =");
                vars.push((k.to_string(), v.to_string()));
                continue;
            }
            let (input, expected) = line.split_once('|').expect("case line has a |");
            let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
            let got = match expand_words(input.trim(), &vars) {
                Ok(words) => words,
                Err(_) => vec!["error".to_string()],
            };
            assert_eq!(got, expected, "input {input:?}");
        }
    }

    #[test]
    fn mandatory_variables_report_the_message() {
        let set = env(&[("VAR", "plain"), ("ARG", "x")]);
        let empty = env(&[("VAR", ""), ("ARG", "x")]);
        let unset = env(&[("ARG", "x")]);
        assert_eq!(expand("${VAR:?message here$ARG}", &set).unwrap(), "plain");
        let err = expand("${VAR:?message here$ARG}", &empty).unwrap_err();
        assert_eq!(err.to_string(), "failed to process \"${VAR:?message here$ARG}\": VAR: message herex");
        assert!(expand("${VAR:?message here$ARG}", &unset).unwrap_err().message.contains("message herex"));
        assert_eq!(expand("${VAR?message here$ARG}", &empty).unwrap(), "");
        assert_eq!(expand("${VAR?}", &unset).unwrap_err().message, "VAR: is not allowed to be unset");
        assert_eq!(expand("${VAR:?}", &empty).unwrap_err().message, "VAR: is not allowed to be empty");
    }

    #[test]
    fn dash_plus_with_and_without_colon() {
        let e = env(&[("FOO", "xxx"), ("BAR", "")]);
        assert_eq!(expand("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", &e).unwrap(), "xxx  ccc");
        assert_eq!(expand("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", &e).unwrap(), "xxx bbb ccc");
        assert_eq!(expand("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", &e).unwrap(), "aaa bbb ");
        assert_eq!(expand("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", &e).unwrap(), "aaa  ");
        assert!(expand("${FOO=aaa}", &e).is_err());
        assert!(expand("${FOO=}", &NoEnv).is_err());
    }

    /// BuildKit's `TestProcessWithMatches` prefix/suffix/replace cases.
    #[test]
    fn pattern_substitutions() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", &[("FOO", "()[]{}^$.*?|\\x")], "x"),
            ("${FOO%%\\**}", &[("FOO", "xx**")], "xx"),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], "y"),
            ("${FOO#*}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], "xyy"),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy"),
            ("${FOO#}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO##*x}", &[("FOO", "xxyy")], "yy"),
            ("${FOO##}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO#?\\?}", &[("FOO", "???y")], "?y"),
            ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], ".xxyy."),
            ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], "a"),
            ("${FOO%}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO%%$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy"),
            ("${FOO%y*}", &[("FOO", "xxyy")], "xxy"),
            ("${FOO%%y*}", &[("FOO", "xxyy")], "xx"),
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
                "/foo.*/*.txt - /foo..*.txt",
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                "/tmp/bar.txt - /bar.txt",
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &[("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("REPLACEMENT", "/")],
                "/foo/b/c.txt - /foo/c.txt",
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[("FOO", "http://google.de"), ("NEEDLE", "http://"), ("REPLACEMENT", "https://")],
                "https://google.de",
            ),
            ("${FOO//\\//\\/}", &[("FOO", "/tmp/foo.txt")], "\\/tmp\\/foo.txt"),
            ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy"),
            ("${FOO///}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO///}", &[], ""),
        ];
        for (input, vars, expected) in cases {
            assert_eq!(expand(input, &env(vars)).as_deref(), Ok(*expected), "input {input:?}");
        }
        for bad in ["${FOO:#}", "${FOO:##}", "${FOO:%}", "${FOO:%%}", "${FOO//ww}", "${FOO//}"] {
            assert!(expand(bad, &env(&[("FOO", "xxyy")])).is_err(), "{bad} should fail");
        }
        assert_eq!(
            expand("${FOO#\\x}", &env(&[("FOO", "x")])).unwrap_err().message,
            "invalid pattern (\\x) in substitution: invalid escape '\\x'"
        );
    }

    #[test]
    fn release_file_name_with_optional_variant() {
        let word = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
        let mut e =
            env(&[("VERSION", "v1.2.3"), ("TARGETOS", "linux"), ("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]);
        assert_eq!(expand(word, &e).unwrap(), "something-v1.2.3.linux-arm-v7.tar.gz");
        e.insert("TARGETARCH".into(), "arm64".into());
        e.insert("TARGETVARIANT".into(), String::new());
        assert_eq!(expand(word, &e).unwrap(), "something-v1.2.3.linux-arm64.tar.gz");
        e.remove("TARGETVARIANT");
        assert_eq!(expand(word, &e).unwrap(), "something-v1.2.3.linux-arm64.tar.gz");
    }

    #[test]
    fn backtick_escape() {
        let lexer = Lexer::new('`');
        let e = env(&[("A", "x")]);
        assert_eq!(lexer.expand("C:\\path`$A", &e).unwrap(), "C:\\path$A");
        assert_eq!(lexer.expand("\"a`\"b\"", &e).unwrap(), "a\"b");
        assert_eq!(lexer.expand_words("a` b c", &e).unwrap(), ["a b", "c"]);
    }

    #[test]
    fn skip_unset_and_raw_quotes_keep_the_text() {
        let lexer = Lexer::new('\\').with_skip_unset(true).with_raw_quotes(true);
        let e = env(&[("SET", "v")]);
        assert_eq!(lexer.expand("$A ${B} ${C:-x} ${D/a/b} $SET 'q'", &e).unwrap(), "$A ${B} ${C:-x} ${D/a/b} v 'q'");
    }

    #[test]
    fn heredoc_body_lexer_ignores_quotes() {
        let e = env(&[("NAME", "me")]);
        assert_eq!(Lexer::for_heredoc_body().expand("say 'hi' \"$NAME\"\n", &e).unwrap(), "say 'hi' \"me\"\n");
    }

    #[test]
    fn empty_quoted_word_yields_no_word() {
        assert_eq!(expand_words("\"\"", &NoEnv).unwrap(), Vec::<String>::new());
        assert_eq!(expand_words("a \"\" b", &NoEnv).unwrap(), ["a", "b"]);
    }

    #[test]
    fn env_list_last_definition_wins() {
        let list = vec![("A".to_string(), "1".to_string()), ("A".to_string(), "2".to_string())];
        assert_eq!(expand("$A", &list).unwrap(), "2");
    }
}
