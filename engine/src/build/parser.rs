//! The Dockerfile parser (BuildKit's `frontend/dockerfile/parser`): parser directives, comments, line
//! continuations, heredoc bodies; each logical line then becomes a typed [`Instruction`]
//! ([`crate::build::instruction`]). Splitting into stages is [`crate::build::stages`].
//!
//! Rules carried over from BuildKit:
//! - Directives (`# syntax=`, `# escape=`, `# check=`) count only before anything else (a blank line, a
//!   comment or an instruction ends them); each at most once; `escape` is `\` or `` ` ``.
//! - A line ending in the escape character (trailing blanks allowed) continues on the next line; inside a
//!   continuation, comment lines and blank lines are skipped.
//! - `RUN`, `COPY` and `ADD` in shell form (also behind `ONBUILD`) may start heredocs; their bodies follow
//!   the instruction's last line, in order, each up to a line equal to its delimiter.
//! - An instruction word BuildKit does not know is an error, with a suggestion.

use crate::build::error::{Error, Result};
use crate::build::heredoc::{heredocs_from_line, Heredoc};
use crate::build::instruction::{can_contain_heredoc, parse_line, Instruction};

/// The parser directives at the top of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=docker/dockerfile:1`: recorded, not acted on (we always use our own frontend).
    pub syntax: Option<String>,
    /// `# escape=`: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# check=skip=…`: recorded and otherwise ignored (we run no build checks).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives { syntax: None, escape: '\\', check: None }
    }
}

/// A parsed file: its directives and instructions, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFile {
    pub directives: Directives,
    pub instructions: Vec<Instruction>,
}

/// Reads directives while they last (BuildKit's `DirectiveParser`).
struct DirectiveReader {
    done: bool,
    seen: Vec<String>,
}

impl DirectiveReader {
    /// Looks at one line (leading whitespace already trimmed); `Ok(Some((name, value)))` for a directive.
    fn read(&mut self, line: &str) -> std::result::Result<Option<(String, String)>, String> {
        if self.done {
            return Ok(None);
        }
        let Some(body) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(None);
        };
        let Some((key, value)) = body.trim_start().split_once('=') else {
            self.done = true;
            return Ok(None);
        };
        let key = key.trim_end();
        let value = value.trim();
        let mut key_chars = key.chars();
        let valid_key = key_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && key_chars.all(|c| c.is_ascii_alphanumeric())
            && !value.is_empty();
        let key = key.to_ascii_lowercase();
        if !valid_key || !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(None);
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        self.seen.push(key.clone());
        Ok(Some((key, value.to_string())))
    }
}

/// Removes a trailing line continuation: `(text, true)` when the line ends the instruction, `(text without
/// the escape character and trailing blanks, false)` when it continues. An escaped escape character (`\\`) at
/// the end does not continue.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return (before, false);
        }
    }
    (line, true)
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Parses Dockerfile `text`; `file` names it in errors (`Dockerfile`, `docker/Dockerfile.ci`).
pub fn parse(text: &str, file: &str) -> Result<ParsedFile> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut directives = Directives::default();
    let mut reader = DirectiveReader { done: false, seen: Vec::new() };
    let mut instructions = Vec::new();
    let mut next = 0; // index of the next line to read; its 1-based number is next + 1

    // Strips the newline (and leading whitespace on first lines), applies directives, blanks comments.
    let mut process = |line: &str, strip_left: bool, number: usize, directives: &mut Directives| -> Result<String> {
        let mut token = trim_newline(line);
        if strip_left {
            token = token.trim_start();
        }
        match reader.read(token) {
            Err(message) => return Err(Error::at(file, number, message)),
            Ok(Some((key, value))) => match key.as_str() {
                "escape" => match value.as_str() {
                    "\\" => directives.escape = '\\',
                    "`" => directives.escape = '`',
                    _ => {
                        return Err(Error::at(
                            file,
                            number,
                            format!("invalid escape token '{value}' does not match ` or \\"),
                        ))
                    }
                },
                "syntax" => directives.syntax = Some(value),
                _ => directives.check = Some(value),
            },
            Ok(None) => {}
        }
        Ok(if is_comment(token) { String::new() } else { token.to_string() })
    };

    while next < lines.len() {
        let start_line = next + 1;
        let first = process(lines[next], true, start_line, &mut directives)?;
        next += 1;
        let escape = directives.escape;
        let (text, mut ends) = trim_continuation(&first, escape);
        if ends && text.is_empty() {
            continue;
        }
        let mut logical = text.to_string();
        while !ends && next < lines.len() {
            let raw = lines[next];
            let token = process(raw, false, next + 1, &mut directives)?;
            next += 1;
            if is_comment(raw) || token.trim_start().is_empty() {
                continue;
            }
            let (text, line_ends) = trim_continuation(&token, escape);
            logical.push_str(text);
            ends = line_ends;
        }
        let mut heredocs: Vec<Heredoc> = Vec::new();
        if can_contain_heredoc(&logical, escape) && logical.contains("<<") {
            let docs = heredocs_from_line(&logical).map_err(|m| Error::at(file, start_line, m))?;
            for mut doc in docs {
                let mut terminated = false;
                while next < lines.len() {
                    let raw = lines[next];
                    next += 1;
                    let mut candidate = trim_newline(raw);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err(Error::at(
                        file,
                        start_line,
                        format!("unterminated heredoc: add a line containing only {:?} after its body", doc.name),
                    ));
                }
                heredocs.push(doc);
            }
        }
        let command = parse_line(&logical, &heredocs, escape).map_err(|m| Error::at(file, start_line, m))?;
        instructions.push(Instruction {
            line: start_line,
            end_line: next,
            original: logical.trim().to_string(),
            command,
        });
    }
    if instructions.is_empty() {
        return Err(Error::at(file, lines.len().max(1), "file with no instructions (a Dockerfile starts with FROM)"));
    }
    Ok(ParsedFile { directives, instructions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::instruction::{Command, CommandLine};

    fn parse_ok(text: &str) -> ParsedFile {
        parse(text, "Dockerfile").unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> String {
        parse(text, "Dockerfile").unwrap_err().to_string()
    }

    fn originals(text: &str) -> Vec<String> {
        parse_ok(text).instructions.into_iter().map(|i| i.original).collect()
    }

    #[test]
    fn directives_at_the_top() {
        let p = parse_ok("# syntax=docker/dockerfile:1\n# escape=`\n# check=skip=all\nFROM x\nRUN a `\n  b\n");
        assert_eq!(p.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(p.directives.escape, '`');
        assert_eq!(p.directives.check.as_deref(), Some("skip=all"));
        assert_eq!(p.instructions[1].original, "RUN a   b");
    }

    #[test]
    fn directives_after_a_comment_or_blank_are_comments() {
        // BuildKit's testfiles/escape-after-comment.
        let text = "# Comment here.\n# escape = `\n\nFROM image\nLABEL maintainer foo@bar.com\nENV GOPATH \\\n\\go";
        let p = parse_ok(text);
        assert_eq!(p.directives.escape, '\\');
        assert_eq!(p.instructions[2].original, "ENV GOPATH \\go");
        assert_eq!(parse_ok("\n# escape=`\nFROM x\n").directives.escape, '\\');
    }

    #[test]
    fn escape_directive_backtick_from_buildkit_testfile() {
        let p = parse_ok("#escape = `\n\nFROM image\nLABEL maintainer foo@bar.com\nENV GOPATH `\n\\go");
        let Command::Env(pairs) = &p.instructions[2].command else { panic!("ENV") };
        assert_eq!((pairs[0].key.as_str(), pairs[0].value.as_str()), ("GOPATH", "\\go"));
    }

    #[test]
    fn directive_errors() {
        assert_eq!(err("# escape=x\nFROM a\n"), "Dockerfile:1: invalid escape token 'x' does not match ` or \\");
        assert_eq!(
            err("# syntax=a\n# syntax=b\nFROM a\n"),
            "Dockerfile:2: only one syntax parser directive can be used"
        );
    }

    #[test]
    fn continuations_from_buildkit_continue_indent() {
        let text = "FROM ubuntu:14.04\n\nRUN echo hello\\\n  world\\\n  goodnight  \\\n  moon\\\n  light\\\nning\n\
RUN echo hello  \\\n  world\nRUN echo hello  \\\nworld\nRUN echo hello \\\ngoodbye\\\nfrog\nRUN echo hello  \\  \nworld\n\
RUN echo hi \\\n \\\n world \\\n\\\n good\\\n\\\nnight\nRUN echo goodbye\\\nfrog\nRUN echo good\\\nbye\\\nfrog\n\n\
RUN echo hello \\\n# this is a comment\n\n# this is a comment with a blank line surrounding it\n\nthis is some more useful stuff\n";
        assert_eq!(
            originals(text),
            [
                "FROM ubuntu:14.04",
                "RUN echo hello  world  goodnight    moon  lightning",
                "RUN echo hello    world",
                "RUN echo hello  world",
                "RUN echo hello goodbyefrog",
                "RUN echo hello  world",
                "RUN echo hi   world  goodnight",
                "RUN echo goodbyefrog",
                "RUN echo goodbyefrog",
                "RUN echo hello this is some more useful stuff",
            ]
        );
    }

    #[test]
    fn escaped_escape_does_not_continue_and_eof_continuation_ends() {
        assert_eq!(originals("FROM a\nRUN echo \\\\\nRUN b\n"), ["FROM a", "RUN echo \\\\", "RUN b"]);
        assert_eq!(originals("FROM alpine:3.5\n\nRUN something \\"), ["FROM alpine:3.5", "RUN something"]);
    }

    #[test]
    fn line_numbers_cover_continuations_and_heredocs() {
        let p = parse_ok("# c\nFROM a\n\nRUN a \\\n  b \\\n  c\nCOPY <<EOF /x\nhi\nEOF\nUSER u\n");
        let spans: Vec<(usize, usize)> = p.instructions.iter().map(|i| (i.line, i.end_line)).collect();
        assert_eq!(spans, [(2, 2), (4, 6), (7, 9), (10, 10)]);
    }

    #[test]
    fn crlf_and_bom_are_handled() {
        let p = parse_ok("\u{feff}FROM a\r\nRUN x \\\r\n  y\r\n");
        assert_eq!(p.instructions[1].original, "RUN x   y");
    }

    #[test]
    fn heredocs_from_buildkit_cases() {
        let text = "FROM alpine:3.6\nRUN <<EMPTY\nEMPTY\nRUN 3<<EMPTY2\nEMPTY2\nRUN \"<<NOHEREDOC\"\nRUN <<INDENT\n\tfoo\n\tbar\nINDENT\n\
RUN <<-UNINDENT2\n\tbaz\n\tquux\n\tUNINDENT2\nRUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND\n\
RUN <<COMMENT\n# internal comment\necho hello world\nCOMMENT\nRUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT\n\
COPY <<X <<Y /dest\nY\nX\nX\nY\nRUN <<COMPLEX python3\nprint('hello world')\nCOMPLEX\n";
        let p = parse_ok(text);
        type Doc = (String, String, bool, bool, u32);
        let docs: Vec<Vec<Doc>> = p.instructions[1..]
            .iter()
            .map(|i| {
                let docs = match &i.command {
                    Command::Run(r) => r.heredocs.clone(),
                    Command::Copy(_) => crate::build::heredoc::heredocs_from_line(&i.original).unwrap(),
                    _ => panic!("unexpected {}", i.name()),
                };
                docs.into_iter().map(|d| (d.name, d.content, d.expand, d.chomp, d.fd)).collect()
            })
            .collect();
        let d = |n: &str, c: &str, e: bool, ch: bool, fd: u32| (n.to_string(), c.to_string(), e, ch, fd);
        assert_eq!(docs[0], [d("EMPTY", "", true, false, 0)]);
        assert_eq!(docs[1], [d("EMPTY2", "", true, false, 3)]);
        assert!(docs[2].is_empty());
        assert_eq!(docs[3], [d("INDENT", "\tfoo\n\tbar\n", true, false, 0)]);
        assert_eq!(docs[4], [d("UNINDENT2", "\tbaz\n\tquux\n", true, true, 0)]);
        assert_eq!(docs[5], [d("NOEXPAND", "\tdon't expand $NAME\n", false, true, 0)]);
        assert_eq!(docs[6], [d("COMMENT", "# internal comment\necho hello world\n", true, false, 0)]);
        assert_eq!(docs[7], [d("MOUNT", "echo hello\n", true, false, 0)]);
        assert_eq!(docs[9], [d("COMPLEX", "print('hello world')\n", true, false, 0)]);
        let Command::Copy(copy) = &p.instructions[9].command else { panic!("COPY") };
        let inline: Vec<(&str, &str)> =
            copy.transfer.inline.iter().map(|f| (f.name.as_str(), f.data.as_str())).collect();
        assert_eq!(inline, [("X", "Y\n"), ("Y", "X\n")]);
        assert_eq!(copy.transfer.dest, "/dest");
    }

    #[test]
    fn json_forms_have_no_heredocs() {
        let p = parse_ok("FROM a\nRUN [\"<<EOF\"]\nRUN [\"whoami\"]\n");
        let Command::Run(run) = &p.instructions[1].command else { panic!("RUN") };
        assert_eq!(run.command, CommandLine::Exec(vec!["<<EOF".into()]));
        assert!(run.heredocs.is_empty());
    }

    #[test]
    fn heredoc_not_in_run_copy_add_is_plain_text() {
        // USER takes no heredocs, so the would-be body is the next instruction.
        assert_eq!(err("FROM a\nUSER <<INVALID\nINVALID\n"), "Dockerfile:3: unknown instruction: INVALID");
        let p = parse_ok("FROM a\nUSER <<INVALID\n");
        assert_eq!(p.instructions[1].command, Command::User("<<INVALID".into()));
    }

    #[test]
    fn unterminated_heredoc_is_an_error() {
        assert_eq!(
            err("FROM a\nRUN <<EOF\necho hi\n"),
            "Dockerfile:2: unterminated heredoc: add a line containing only \"EOF\" after its body"
        );
    }

    #[test]
    fn onbuild_heredoc_is_read() {
        let p = parse_ok("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n");
        let Command::Onbuild(ob) = &p.instructions[1].command else { panic!("ONBUILD") };
        assert_eq!(ob.expression, "RUN <<EOF\necho hi\nEOF");
        let Command::Run(run) = ob.trigger.as_ref() else { panic!("RUN trigger") };
        assert_eq!(run.heredocs[0].content, "echo hi\n");
    }

    #[test]
    fn unknown_instruction_with_suggestion_and_line() {
        assert_eq!(err("FROM a\n\nRUNN echo\n"), "Dockerfile:3: unknown instruction: RUNN (did you mean RUN?)");
        assert_eq!(err("FROM a\nfrobnicate x\n"), "Dockerfile:2: unknown instruction: frobnicate");
        assert_eq!(err("FROM a\ncopyy a b\n"), "Dockerfile:2: unknown instruction: copyy (did you mean copy?)");
    }

    #[test]
    fn empty_file_is_an_error() {
        assert_eq!(
            err("# just a comment\n\n"),
            "Dockerfile:2: file with no instructions (a Dockerfile starts with FROM)"
        );
        assert!(err("").contains("file with no instructions"));
    }

    #[test]
    fn instruction_words_are_case_insensitive() {
        let p = parse_ok("from a as Build\nrun echo\n");
        assert_eq!(p.instructions[1].name(), "RUN");
        assert_eq!(p.instructions[1].original, "run echo");
    }
}
