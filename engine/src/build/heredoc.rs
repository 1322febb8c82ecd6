//! Heredocs (`RUN <<EOF`, `COPY <<-"EOF" /dest`): recognising a heredoc word on an instruction line and the
//! rules BuildKit applies to its delimiter (`<<-` strips leading tabs, a quoted delimiter disables expansion,
//! `3<<EOF` names a file descriptor). The parser ([`crate::build::parser`]) reads the bodies.

use crate::build::shell_lex::{Lexer, NoEnv};

/// One heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter without quotes (`EOF` for `<<"EOF"`); also the file name for `COPY <<file.txt /dest`.
    pub name: String,
    /// The body exactly as written (every line with its newline), leading tabs not yet stripped.
    pub content: String,
    /// `<<-`: strip leading tabs from every line of the body (see [`Heredoc::body`]).
    pub chomp: bool,
    /// The delimiter was not quoted: variables in the body are expanded (for `COPY`/`ADD`; `RUN` bodies go
    /// to the shell, which expands them itself).
    pub expand: bool,
    /// The file descriptor before `<<` (`3<<EOF`), 0 when none was written.
    pub fd: u32,
}

impl Heredoc {
    /// The body as it is used: `content` with leading tabs removed from each line when `chomp` is set.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content.split_inclusive('\n').map(|line| line.trim_start_matches('\t')).collect()
    }
}

/// Recognises `word` as a heredoc start (`[fd]<<[-][blanks]delimiter`, the delimiter without `<`).
/// `Ok(None)`: not a heredoc; `Err`: a heredoc with an unterminated quote.
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(after) = word[digits..].strip_prefix("<<") else { return Ok(None) };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, after),
    };
    let rest = after.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let lexer = Lexer::new('\\').with_skip_unset(true);
    let words = lexer.expand_words(rest, &NoEnv).map_err(|e| e.message)?;
    let [name] = words.as_slice() else { return Ok(None) };
    let raw = lexer.with_raw_quotes(true).expand_words(rest, &NoEnv).map_err(|e| e.message)?;
    let [raw_name] = raw.as_slice() else {
        return Err(format!("internal lexing of heredoc produced inconsistent results: {rest}"));
    };
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        chomp,
        expand: quotes(name) == quotes(raw_name),
        // BuildKit ignores an unparsable descriptor (too many digits) and uses 0.
        fd: word[..digits].parse().unwrap_or(0),
    }))
}

/// The heredocs started on an instruction line, in order. Words are split as the shell would (quotes kept),
/// so `"<<EOF"` in quotes is not a heredoc; a line the lexer cannot split has none (as in BuildKit).
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let lexer = Lexer::new('\\').with_raw_quotes(true).with_raw_escapes(true).with_skip_unset(true);
    let words = lexer.expand_words(line, &NoEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        docs.extend(parse_heredoc(&word)?);
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(word: &str) -> Option<(String, bool, bool)> {
        parse_heredoc(word).unwrap().map(|h| (h.name, h.expand, h.chomp))
    }

    #[test]
    fn valid_heredoc_words() {
        for word in
            ["<<EOF", "<<'EOF'", "<<\"EOF\"", "<<-EOF", "<<-'EOF'", "<<-\"EOF\"", "<<EO\"F\"", "<< EOF", "<<- EOF"]
        {
            let doc = parse_heredoc(word).unwrap().unwrap_or_else(|| panic!("{word} is a heredoc"));
            assert_eq!(doc.name, "EOF", "{word}");
        }
        assert_eq!(name_of("<<EOF"), Some(("EOF".into(), true, false)));
        assert_eq!(name_of("<<-'EOF'"), Some(("EOF".into(), false, true)));
        assert_eq!(parse_heredoc("3<<EMPTY2").unwrap().map(|h| h.fd), Some(3));
    }

    #[test]
    fn invalid_and_non_heredoc_words() {
        for word in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc(word).is_err(), "{word} has an unterminated quote");
        }
        for word in ["", "EOF", "<EOF", "<<", "<< ", "a<<EOF", "<<EOF<<", "<<'one' 'two'"] {
            assert_eq!(parse_heredoc(word).unwrap(), None, "{word:?} is not a heredoc");
        }
    }

    #[test]
    fn quoting_part_of_the_delimiter_disables_expansion() {
        assert_eq!(name_of("<<eo'f'"), Some(("eof".into(), false, false)));
        assert_eq!(name_of("<<eo\\'f"), Some(("eo'f".into(), true, false)));
        assert_eq!(name_of("<<'e'o\\'f"), Some(("eo'f".into(), false, false)));
        assert_eq!(name_of("<<$EOF"), Some(("$EOF".into(), true, false)));
    }

    #[test]
    fn heredocs_on_a_line() {
        let names = |line: &str| heredocs_from_line(line).unwrap().into_iter().map(|h| h.name).collect::<Vec<_>>();
        assert_eq!(names("COPY <<FILE1 <<FILE2 /dest"), ["FILE1", "FILE2"]);
        assert_eq!(names("RUN \"<<NOHEREDOC\""), Vec::<String>::new());
        assert_eq!(names("RUN <<  EOF  > foo"), ["EOF"]);
        assert_eq!(names("RUN <<'one two'"), ["one two"]);
        assert_eq!(names("RUN echo 'unterminated <<EOF"), Vec::<String>::new());
        // `<<-` followed by a blank splits into two words: not a heredoc on a line (as in BuildKit).
        assert_eq!(names("RUN <<- EOF"), Vec::<String>::new());
    }

    #[test]
    fn body_strips_tabs_only_when_chomping() {
        let mut doc = Heredoc {
            name: "X".into(),
            content: "\thello\n\t\tworld\n  x\n".into(),
            chomp: false,
            expand: true,
            fd: 0,
        };
        assert_eq!(doc.body(), "\thello\n\t\tworld\n  x\n");
        doc.chomp = true;
        assert_eq!(doc.body(), "hello\nworld\n  x\n");
    }
}
