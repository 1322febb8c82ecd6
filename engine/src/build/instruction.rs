//! Typed Dockerfile instructions and how one logical line becomes one ([`parse_line`]): BuildKit's line
//! parsers (`parser/line_parsers.go`, `parser/split_command.go`) and instruction rules (`instructions/parse.go`).
//!
//! Arguments are stored as written (quotes, `$VAR` and escapes still in place): the executor expands them with
//! the stage's variables at the point the instruction runs, using [`Instruction::expands_variables`] to know
//! which instructions take expansion. `RUN`, `CMD` and `ENTRYPOINT` are never expanded by the builder.

use std::time::Duration;

use crate::build::flags::{Flags, Kind};
use crate::build::heredoc::{parse_heredoc, Heredoc};
use crate::build::mount::Mount;

/// One instruction of a Dockerfile, where it was and how it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// 1-based line where it ends (continuations and heredoc bodies included).
    pub end_line: usize,
    /// The instruction as one line (continuations joined, heredoc bodies left out, trimmed): what
    /// `Step 3/9 : RUN …` prints.
    pub original: String,
    pub command: Command,
}

impl Instruction {
    /// The instruction keyword in upper case (`RUN`).
    pub fn name(&self) -> &'static str {
        self.command.name()
    }

    /// Whether the builder expands variables in this instruction's arguments (BuildKit: ADD, ARG, COPY, ENV,
    /// EXPOSE, FROM, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR; `RUN` only in its `--mount` values).
    pub fn expands_variables(&self) -> bool {
        self.command.expands_variables()
    }
}

/// What an instruction does, with its arguments unexpanded.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    /// `ENTRYPOINT []` is `Exec(vec![])`: it clears the entrypoint.
    Entrypoint(CommandLine),
    Env(Vec<KeyValue>),
    Arg(Vec<ArgDef>),
    Label(Vec<KeyValue>),
    /// Port words as written (`80/tcp`, `$PORT`); expanded with [`crate::build::shell_lex::Lexer::expand_words`].
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Copy(Copy),
    Add(Add),
    Onbuild(Onbuild),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// Always exec form (`SHELL ["/bin/bash", "-c"]`).
    Shell(Vec<String>),
    Maintainer(String),
}

impl Command {
    /// The instruction keyword in upper case.
    pub fn name(&self) -> &'static str {
        match self {
            Command::From(_) => "FROM",
            Command::Run(_) => "RUN",
            Command::Cmd(_) => "CMD",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Env(_) => "ENV",
            Command::Arg(_) => "ARG",
            Command::Label(_) => "LABEL",
            Command::Expose(_) => "EXPOSE",
            Command::Volume(_) => "VOLUME",
            Command::User(_) => "USER",
            Command::Workdir(_) => "WORKDIR",
            Command::Copy(_) => "COPY",
            Command::Add(_) => "ADD",
            Command::Onbuild(_) => "ONBUILD",
            Command::StopSignal(_) => "STOPSIGNAL",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Shell(_) => "SHELL",
            Command::Maintainer(_) => "MAINTAINER",
        }
    }

    /// See [`Instruction::expands_variables`].
    pub fn expands_variables(&self) -> bool {
        !matches!(
            self,
            Command::Run(_)
                | Command::Cmd(_)
                | Command::Entrypoint(_)
                | Command::Healthcheck(_)
                | Command::Shell(_)
                | Command::Maintainer(_)
        )
    }
}

/// `FROM [--platform=…] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The base: an image reference, `scratch`, or an earlier stage's name; may contain global `ARG`s.
    pub image: String,
    /// The stage name, lower-cased (`AS Builder` → `builder`).
    pub stage_name: Option<String>,
    /// `--platform`, unexpanded (may use global `ARG`s like `$BUILDPLATFORM`).
    pub platform: Option<String>,
}

impl From {
    /// `FROM scratch`: an empty base.
    pub fn is_scratch(&self) -> bool {
        self.image.eq_ignore_ascii_case("scratch")
    }
}

/// Shell or exec form of `RUN`, `CMD`, `ENTRYPOINT` and `HEALTHCHECK CMD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// Run through the stage's `SHELL` (default `/bin/sh -c`), exactly as written.
    Shell(String),
    /// A JSON array: run directly.
    Exec(Vec<String>),
}

/// `RUN [--mount=…] [--network=…] [--security=…] command`.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub command: CommandLine,
    /// Heredocs started on the line, in order (only in shell form).
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<Mount>,
    /// `--network`, `None` when not given (default network).
    pub network: Option<NetworkMode>,
    /// `--security`, `None` when not given (sandbox).
    pub security: Option<Security>,
}

/// What a `RUN` executes, after BuildKit's heredoc rules (see [`Run::program`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunProgram {
    /// Pass to the stage's shell as one argument (`sh -c <script>`).
    Shell(String),
    /// Run these arguments directly.
    Exec(Vec<String>),
    /// A single heredoc starting with `#!`: write `body` to a file (mode 0755) named `name` in a read-only
    /// directory (BuildKit: `/dev/pipes/<name>`) and execute that file through the shell.
    Script { name: String, body: String },
}

impl Run {
    /// The program BuildKit would run: `RUN <<EOF` alone runs the heredoc body (as a script file if it starts
    /// with `#!`); other heredoc lines pass the line plus bodies to the shell (`RUN python3 <<EOF` …).
    pub fn program(&self) -> RunProgram {
        let line = match &self.command {
            CommandLine::Exec(args) => return RunProgram::Exec(args.clone()),
            CommandLine::Shell(line) => line,
        };
        let Some(first) = self.heredocs.first() else { return RunProgram::Shell(line.clone()) };
        if let Ok(Some(_)) = parse_heredoc(line) {
            let body = first.body();
            if body.starts_with("#!") {
                return RunProgram::Script { name: first.name.clone(), body };
            }
            return RunProgram::Shell(body);
        }
        let mut script = line.clone();
        for doc in &self.heredocs {
            script.push('\n');
            script.push_str(&doc.content);
            script.push_str(&doc.name);
        }
        RunProgram::Shell(script)
    }
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Sandbox,
    Insecure,
}

/// A `KEY=value` of `ENV` or `LABEL`, unexpanded (quotes kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One name of `ARG name[=default]`, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDef {
    pub name: String,
    pub default: Option<String>,
}

/// What `COPY` and `ADD` share.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transfer {
    /// Source paths (or URLs for `ADD`), unexpanded, heredocs excluded.
    pub sources: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dest`): files made from inline text.
    pub inline: Vec<InlineFile>,
    /// Destination, unexpanded.
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
}

/// A file given inline with a heredoc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFile {
    /// The heredoc delimiter, used as the file name.
    pub name: String,
    /// The body, tabs already stripped for `<<-`.
    pub data: String,
    /// Expand variables in `data` (delimiter not quoted), with
    /// [`crate::build::shell_lex::Lexer::for_heredoc_body`].
    pub expand: bool,
}

/// `COPY [--from=…] [--parents] … src… dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub transfer: Transfer,
    /// `--from`: a stage name, a stage index, or an image. Never expanded.
    pub from: Option<String>,
    pub parents: bool,
}

/// `ADD [--checksum=…] [--keep-git-dir] [--unpack] … src… dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub transfer: Transfer,
    pub checksum: Option<String>,
    pub keep_git_dir: Option<bool>,
    pub unpack: Option<bool>,
}

/// `ONBUILD <instruction>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Onbuild {
    /// The trigger as stored in the image config (`RUN echo hi`, heredoc bodies appended).
    pub expression: String,
    /// The trigger, parsed now so mistakes are reported when this Dockerfile is built.
    pub trigger: Box<Command>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    Check {
        /// Docker's `Healthcheck.Test`: `["CMD", args…]` (exec form) or `["CMD-SHELL", command]`.
        test: Vec<String>,
        /// Zero means "not set" (docker's defaults apply), as in the image config.
        interval: Duration,
        timeout: Duration,
        start_period: Duration,
        start_interval: Duration,
        retries: u32,
    },
}

/// A logical line split into instruction word, flags and the rest (BuildKit's `splitCommand`).
pub(crate) struct SplitLine {
    pub(crate) command: String,
    pub(crate) flags: Vec<String>,
    pub(crate) rest: String,
}

const WHITESPACE: [char; 5] = ['\t', '\x0b', '\x0c', '\r', ' '];

pub(crate) fn split_command(line: &str, escape: char) -> SplitLine {
    let line = line.trim();
    let (command, rest) = match line.find(WHITESPACE) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(WHITESPACE)),
        None => (line, ""),
    };
    let (rest, flags) = extract_builder_flags(rest, escape);
    SplitLine { command: command.to_string(), flags, rest: rest.trim().to_string() }
}

/// Takes the leading `--flag` words off `line` (quotes and escapes removed in them), returning the rest.
fn extract_builder_flags(line: &str, escape: char) -> (String, Vec<String>) {
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut pos = 0;
    loop {
        // Between words: stop at the first word that does not start with `--`.
        while pos < chars.len() && chars[pos].is_whitespace() {
            pos += 1;
        }
        if pos == chars.len() {
            return (String::new(), words);
        }
        if chars[pos] != '-' || chars.get(pos + 1) != Some(&'-') {
            return (chars[pos..].iter().collect(), words);
        }
        let mut quote: Option<char> = None;
        let mut blank_ok = false;
        word.clear();
        while pos < chars.len() {
            let mut ch = chars[pos];
            match quote {
                None if ch.is_whitespace() => break,
                None if ch == '\'' || ch == '"' => {
                    quote = Some(ch);
                    blank_ok = true;
                    pos += 1;
                    continue;
                }
                Some(q) if ch == q => {
                    quote = None;
                    pos += 1;
                    continue;
                }
                _ => {}
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
        }
        if word == "--" {
            return (chars[pos..].iter().collect(), words);
        }
        if blank_ok || !word.is_empty() {
            words.push(word.clone());
        }
    }
}

/// Splits on whitespace, keeping quotes and escapes in the words (BuildKit's `parseWords`).
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut in_word = false;
    let mut pos = 0;
    while pos < chars.len() {
        let ch = chars[pos];
        pos += 1;
        if !in_word {
            if ch.is_whitespace() {
                continue;
            }
            in_word = true;
        }
        match quote {
            None => {
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    in_word = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if pos == chars.len() {
                        continue;
                    }
                    word.push(ch);
                    word.push(chars[pos]);
                    pos += 1;
                    continue;
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    if pos == chars.len() {
                        quote = None;
                        continue;
                    }
                    word.push(ch);
                    word.push(chars[pos]);
                    pos += 1;
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

fn split_whitespace(rest: &str) -> Vec<String> {
    rest.split(WHITESPACE).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// `Ok(Some(args))` for a JSON array of strings, `Ok(None)` for anything that is not valid JSON (then shell
/// form), `Err` for valid JSON with non-strings in it.
pub(crate) fn parse_json_array(rest: &str) -> Result<Option<Vec<String>>, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else { return Ok(None) };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err("when using JSON array syntax, arrays must be comprised of strings only".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Instruction names, for "did you mean".
pub(crate) const NAMES: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Whether the instruction on `line` may start heredocs: `RUN`, `COPY`, `ADD` (also behind `ONBUILD`) in
/// shell form.
pub(crate) fn can_contain_heredoc(line: &str, escape: char) -> bool {
    let mut split = split_command(line, escape);
    if split.command.eq_ignore_ascii_case("onbuild") {
        split = split_command(&split.rest, escape);
    }
    let name = split.command.to_ascii_lowercase();
    matches!(name.as_str(), "run" | "copy" | "add") && !matches!(parse_json_array(&split.rest), Ok(Some(_)))
}

/// Parses one logical line (continuations joined) with the heredocs read after it into a command.
/// Errors are messages; the caller adds the file and line.
pub(crate) fn parse_line(line: &str, heredocs: &[Heredoc], escape: char) -> Result<Command, String> {
    let split = split_command(line, escape);
    parse_split(&split, line, heredocs, escape)
}

fn at_least_one(name: &str) -> String {
    format!("{name} requires at least one argument")
}

fn exactly_one(name: &str, rest: &str) -> Result<String, String> {
    if rest.is_empty() {
        return Err(format!("{name} requires exactly one argument"));
    }
    Ok(rest.to_string())
}

fn no_flags(split: &SplitLine) -> Result<(), String> {
    Flags::parse(&split.flags, &[]).map(|_| ())
}

fn parse_split(split: &SplitLine, line: &str, heredocs: &[Heredoc], escape: char) -> Result<Command, String> {
    let rest = split.rest.as_str();
    let upper = split.command.to_ascii_uppercase();
    Ok(match upper.as_str() {
        "FROM" => {
            let flags = Flags::parse(&split.flags, &[("platform", Kind::String)])?;
            let args = split_whitespace(rest);
            let stage_name = match args.as_slice() {
                [_] => None,
                [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
                    let name = name.to_lowercase();
                    let mut chars = name.chars();
                    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
                    if !valid {
                        return Err(format!(
                            "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                            args[2]
                        ));
                    }
                    Some(name)
                }
                _ => return Err("FROM requires either one or three arguments".into()),
            };
            Command::From(From { image: args[0].clone(), stage_name, platform: flags.string("platform") })
        }
        "RUN" => {
            let flags = Flags::parse(
                &split.flags,
                &[("mount", Kind::Strings), ("network", Kind::String), ("security", Kind::String)],
            )?;
            let command = shell_or_exec(rest)?.ok_or_else(|| at_least_one("RUN"))?;
            let mounts = flags.strings("mount").iter().map(|m| Mount::parse(m)).collect::<Result<Vec<_>, _>>()?;
            let network = match flags.string("network").as_deref() {
                None => None,
                Some("default") => Some(NetworkMode::Default),
                Some("none") => Some(NetworkMode::None),
                Some("host") => Some(NetworkMode::Host),
                Some(other) => return Err(format!("invalid network mode {other:?} (use default, none or host)")),
            };
            let security = match flags.string("security").as_deref() {
                None => None,
                Some("sandbox") => Some(Security::Sandbox),
                Some("insecure") => Some(Security::Insecure),
                Some(other) => return Err(format!("security {other:?} is not valid (use sandbox or insecure)")),
            };
            Command::Run(Run { command, heredocs: heredocs.to_vec(), mounts, network, security })
        }
        "CMD" => {
            no_flags(split)?;
            Command::Cmd(shell_or_exec(rest)?.unwrap_or(CommandLine::Exec(Vec::new())))
        }
        "ENTRYPOINT" => {
            no_flags(split)?;
            Command::Entrypoint(shell_or_exec(rest)?.unwrap_or(CommandLine::Exec(Vec::new())))
        }
        "ENV" | "LABEL" => {
            no_flags(split)?;
            let pairs = parse_name_values(rest, &upper, escape)?;
            if upper == "ENV" {
                Command::Env(pairs)
            } else {
                Command::Label(pairs)
            }
        }
        "ARG" => {
            no_flags(split)?;
            let words = parse_words(rest, escape);
            if words.is_empty() {
                return Err(at_least_one("ARG"));
            }
            let defs = words
                .into_iter()
                .map(|word| match word.split_once('=') {
                    Some(("", _)) => Err("ARG names can not be blank".to_string()),
                    Some((name, value)) => Ok(ArgDef { name: name.to_string(), default: Some(value.to_string()) }),
                    None => Ok(ArgDef { name: word, default: None }),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Command::Arg(defs)
        }
        "EXPOSE" => {
            no_flags(split)?;
            let mut ports = split_whitespace(rest);
            if ports.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            ports.sort();
            Command::Expose(ports)
        }
        "VOLUME" => {
            no_flags(split)?;
            let volumes = json_or_words(rest)?;
            if volumes.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            let volumes: Vec<String> = volumes.iter().map(|v| v.trim().to_string()).collect();
            if volumes.iter().any(String::is_empty) {
                return Err("VOLUME specified can not be an empty string".into());
            }
            Command::Volume(volumes)
        }
        "USER" => {
            no_flags(split)?;
            Command::User(exactly_one("USER", rest)?)
        }
        "WORKDIR" => {
            no_flags(split)?;
            Command::Workdir(exactly_one("WORKDIR", rest)?)
        }
        "STOPSIGNAL" => {
            no_flags(split)?;
            Command::StopSignal(exactly_one("STOPSIGNAL", rest)?)
        }
        "MAINTAINER" => {
            no_flags(split)?;
            Command::Maintainer(exactly_one("MAINTAINER", rest)?)
        }
        "COPY" => {
            let flags = Flags::parse(
                &split.flags,
                &[
                    ("chown", Kind::String),
                    ("from", Kind::String),
                    ("chmod", Kind::String),
                    ("link", Kind::Bool),
                    ("exclude", Kind::Strings),
                    ("parents", Kind::Bool),
                ],
            )?;
            let transfer = parse_transfer("COPY", rest, &flags, heredocs)?;
            Command::Copy(Copy {
                transfer,
                from: flags.string("from"),
                parents: flags.bool("parents").unwrap_or(false),
            })
        }
        "ADD" => {
            let flags = Flags::parse(
                &split.flags,
                &[
                    ("chown", Kind::String),
                    ("chmod", Kind::String),
                    ("link", Kind::Bool),
                    ("keep-git-dir", Kind::Bool),
                    ("checksum", Kind::String),
                    ("unpack", Kind::Bool),
                    ("exclude", Kind::Strings),
                ],
            )?;
            let transfer = parse_transfer("ADD", rest, &flags, heredocs)?;
            Command::Add(Add {
                transfer,
                checksum: flags.string("checksum"),
                keep_git_dir: flags.bool("keep-git-dir"),
                unpack: flags.bool("unpack"),
            })
        }
        "ONBUILD" => {
            no_flags(split)?;
            if rest.is_empty() {
                return Err(at_least_one("ONBUILD"));
            }
            let inner = split_command(rest, escape);
            let trigger_name = inner.command.to_ascii_uppercase();
            match trigger_name.as_str() {
                "ONBUILD" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
                "MAINTAINER" | "FROM" => return Err(format!("{trigger_name} isn't allowed as an ONBUILD trigger")),
                _ => {}
            }
            let trigger = parse_split(&inner, rest, heredocs, escape)?;
            let mut expression = strip_onbuild(line).to_string();
            for doc in heredocs {
                expression.push('\n');
                expression.push_str(&doc.content);
                expression.push_str(&doc.name);
            }
            Command::Onbuild(Onbuild { expression, trigger: Box::new(trigger) })
        }
        "HEALTHCHECK" => parse_healthcheck(split)?,
        "SHELL" => {
            no_flags(split)?;
            match parse_json_array(rest)? {
                Some(args) if args.is_empty() => return Err(at_least_one("SHELL")),
                Some(args) => Command::Shell(args),
                None if rest.is_empty() => return Err(at_least_one("SHELL")),
                None => {
                    return Err(
                        "SHELL requires the arguments to be in JSON form (e.g. SHELL [\"/bin/bash\", \"-c\"])".into()
                    )
                }
            }
        }
        _ => {
            let mut message = format!("unknown instruction: {}", split.command);
            message.push_str(&crate::build::error::did_you_mean(&crate::build::error::suggest(
                &split.command,
                NAMES.iter().copied(),
                false,
            )));
            return Err(message);
        }
    })
}

/// `ONBUILD` removed from the front of the line (case-insensitive), as BuildKit stores the trigger.
fn strip_onbuild(line: &str) -> &str {
    let trimmed = line.trim_start();
    match trimmed.get(..7) {
        Some(word) if word.eq_ignore_ascii_case("onbuild") => trimmed[7..].trim_start(),
        _ => trimmed,
    }
}

/// BuildKit's `parseMaybeJSON`: exec form for a JSON array of strings, otherwise the text as shell form;
/// `None` for no arguments.
fn shell_or_exec(rest: &str) -> Result<Option<CommandLine>, String> {
    if rest.is_empty() {
        return Ok(None);
    }
    Ok(Some(match parse_json_array(rest)? {
        Some(args) => CommandLine::Exec(args),
        None => CommandLine::Shell(rest.to_string()),
    }))
}

/// BuildKit's `parseMaybeJSONToList`: a JSON array, or whitespace-separated words.
fn json_or_words(rest: &str) -> Result<Vec<String>, String> {
    Ok(parse_json_array(rest)?.unwrap_or_else(|| split_whitespace(rest)))
}

/// `ENV`/`LABEL`: `K=V K2="v 2"`, or the legacy `K the rest of the line`.
fn parse_name_values(rest: &str, name: &str, escape: char) -> Result<Vec<KeyValue>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else { return Err(at_least_one(name)) };
    let pairs = if !first.contains('=') {
        let Some(i) = rest.find(WHITESPACE) else { return Err(format!("{name} must have two arguments")) };
        vec![KeyValue { key: rest[..i].to_string(), value: rest[i..].trim_start_matches(WHITESPACE).to_string() }]
    } else {
        words
            .iter()
            .map(|word| match word.split_once('=') {
                Some((key, value)) => Ok(KeyValue { key: key.to_string(), value: value.to_string() }),
                None => Err(format!("Syntax error - can't find = in {word:?}. Must be of the form: name=value")),
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    if pairs.iter().any(|p| p.key.is_empty()) {
        return Err(format!("{name} names can not be blank"));
    }
    Ok(pairs)
}

fn parse_transfer(name: &str, rest: &str, flags: &Flags, heredocs: &[Heredoc]) -> Result<Transfer, String> {
    let mut args = json_or_words(rest)?;
    let Some(dest) = args.pop().filter(|_| !args.is_empty()) else {
        return Err(format!(
            "{name} requires at least two arguments, but only one was provided. Destination could not be determined"
        ));
    };
    if matches!(parse_heredoc(&dest), Ok(Some(_))) {
        return Err(format!("{name} cannot accept a heredoc as a destination"));
    }
    let mut transfer = Transfer {
        dest,
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        excludes: flags.strings("exclude"),
        ..Transfer::default()
    };
    for src in args {
        match parse_heredoc(&src) {
            Ok(Some(doc)) => {
                // The word decides chomping (`<<-EOF`); the body is the one read for that delimiter.
                let content = heredocs.iter().find(|h| h.name == doc.name).map(|h| h.content.clone());
                let data = Heredoc { content: content.unwrap_or_default(), ..doc.clone() }.body();
                transfer.inline.push(InlineFile { name: doc.name, data, expand: doc.expand });
            }
            _ => transfer.sources.push(src),
        }
    }
    Ok(transfer)
}

fn parse_healthcheck(split: &SplitLine) -> Result<Command, String> {
    let rest = split.rest.as_str();
    let (kind, args) = match rest.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (&rest[..i], rest[i..].trim_start()),
        None => (rest, ""),
    };
    if kind.is_empty() {
        return Err(at_least_one("HEALTHCHECK"));
    }
    let kind = kind.to_ascii_uppercase();
    if kind == "NONE" {
        if !args.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        return Ok(Command::Healthcheck(Healthcheck::None));
    }
    let flags = Flags::parse(
        &split.flags,
        &[
            ("interval", Kind::String),
            ("timeout", Kind::String),
            ("start-period", Kind::String),
            ("start-interval", Kind::String),
            ("retries", Kind::String),
        ],
    )?;
    if kind != "CMD" {
        return Err(format!("Unknown type {kind:?} in HEALTHCHECK (try CMD)"));
    }
    let test = match shell_or_exec(args)? {
        Some(CommandLine::Exec(a)) if !a.is_empty() => std::iter::once("CMD".to_string()).chain(a).collect(),
        Some(CommandLine::Shell(s)) => vec!["CMD-SHELL".to_string(), s],
        _ => return Err("Missing command after HEALTHCHECK CMD".into()),
    };
    let interval = |name: &str| -> Result<Duration, String> {
        let Some(value) = flags.string(name) else { return Ok(Duration::ZERO) };
        let d = parse_go_duration(&value)?;
        if !d.is_zero() && d < Duration::from_millis(1) {
            return Err(format!("Interval {name:?} cannot be less than 1ms"));
        }
        Ok(d)
    };
    let retries = match flags.string("retries") {
        None => 0,
        Some(v) => {
            let n: i64 = v.parse().map_err(|_| format!("invalid value for --retries: {v:?} (give a whole number)"))?;
            if n < 0 {
                return Err(format!("--retries cannot be negative ({n})"));
            }
            u32::try_from(n).map_err(|_| format!("--retries is too large ({n})"))?
        }
    };
    Ok(Command::Healthcheck(Healthcheck::Check {
        test,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    }))
}

/// Go's `time.ParseDuration` for non-negative values: `30s`, `1m30s`, `1.5h`, `250ms`, `10us`, `0`.
pub(crate) fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {s:?} (use a number with a unit: 30s, 5m, 1h30m)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() || rest.starts_with('-') {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total += number * nanos;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::mount::MountType;

    fn cmd(line: &str) -> Command {
        parse_line(line, &[], '\\').unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn err(line: &str) -> String {
        parse_line(line, &[], '\\').unwrap_err()
    }

    #[test]
    fn from_forms() {
        assert_eq!(
            cmd("FROM scratch"),
            Command::From(From { image: "scratch".into(), stage_name: None, platform: None })
        );
        let Command::From(f) = cmd("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build-Env") else { panic!() };
        assert_eq!(
            (f.image.as_str(), f.stage_name.as_deref(), f.platform.as_deref()),
            ("golang:1.22", Some("build-env"), Some("$BUILDPLATFORM"))
        );
        assert!(cmd("FROM Scratch").eq(&Command::From(From {
            image: "Scratch".into(),
            stage_name: None,
            platform: None
        })));
        assert_eq!(err("FROM a b"), "FROM requires either one or three arguments");
        assert_eq!(err("FROM"), "FROM requires either one or three arguments");
        assert_eq!(
            err("FROM a AS 1st"),
            "invalid name for build stage: \"1st\", name can't start with a number or contain symbols"
        );
        assert_eq!(err("FROM --platfrom=x a"), "unknown flag: --platfrom (did you mean platform?)");
        assert_eq!(err("FROM --plat=x a"), "unknown flag: --plat (accepted: --platform)");
    }

    #[test]
    fn run_shell_exec_and_flags() {
        let Command::Run(run) = cmd("RUN --mount=type=cache,target=/root/.cache --network=none echo $HOME") else {
            panic!()
        };
        assert_eq!(run.command, CommandLine::Shell("echo $HOME".into()));
        assert_eq!(run.mounts[0].kind, MountType::Cache);
        assert_eq!(run.network, Some(NetworkMode::None));
        assert_eq!(run.program(), RunProgram::Shell("echo $HOME".into()));
        let Command::Run(run) = cmd("RUN [\"echo\", \"a b\"]") else { panic!() };
        assert_eq!(run.program(), RunProgram::Exec(vec!["echo".into(), "a b".into()]));
        assert_eq!(err("RUN --network=bridge x"), "invalid network mode \"bridge\" (use default, none or host)");
        assert_eq!(err("RUN"), "RUN requires at least one argument");
        assert_eq!(
            err("RUN --mount=type=nfs x"),
            "unsupported mount type \"nfs\" (use bind, cache, tmpfs, secret or ssh)"
        );
    }

    #[test]
    fn bad_json_is_shell_form_but_non_strings_are_errors() {
        // BuildKit's jeztah-invalid-json cases: not JSON, so shell form.
        for line in ["CMD [\"echo\", 'single']", "CMD [\"echo\"", "CMD [ \"foo\" , \"bar\" "] {
            let Command::Cmd(CommandLine::Shell(s)) = cmd(line) else { panic!("{line} should be shell form") };
            assert_eq!(s, line.trim_start_matches("CMD ").trim_end());
        }
        assert_eq!(err("CMD [\"a\", 1]"), "when using JSON array syntax, arrays must be comprised of strings only");
        assert_eq!(cmd("ENTRYPOINT []"), Command::Entrypoint(CommandLine::Exec(vec![])));
        assert_eq!(
            cmd("CMD [ \"/usr\\\\\\\"/bin/znc\", \"-f\" ]"),
            Command::Cmd(CommandLine::Exec(vec!["/usr\\\"/bin/znc".into(), "-f".into()]))
        );
    }

    #[test]
    fn run_heredoc_programs() {
        let doc = |name: &str, content: &str, chomp: bool| Heredoc {
            name: name.into(),
            content: content.into(),
            chomp,
            expand: true,
            fd: 0,
        };
        let Command::Run(run) = parse_line("RUN <<-EOF", &[doc("EOF", "\techo hi\n", true)], '\\').unwrap() else {
            panic!()
        };
        assert_eq!(run.program(), RunProgram::Shell("echo hi\n".into()));
        let Command::Run(run) =
            parse_line("RUN <<EOF", &[doc("EOF", "#!/usr/bin/env python3\nprint(1)\n", false)], '\\').unwrap()
        else {
            panic!()
        };
        assert_eq!(
            run.program(),
            RunProgram::Script { name: "EOF".into(), body: "#!/usr/bin/env python3\nprint(1)\n".into() }
        );
        let Command::Run(run) = parse_line("RUN python3 <<EOF", &[doc("EOF", "print(1)\n", false)], '\\').unwrap()
        else {
            panic!()
        };
        assert_eq!(run.program(), RunProgram::Shell("python3 <<EOF\nprint(1)\nEOF".into()));
    }

    #[test]
    fn env_both_forms() {
        let kv = |k: &str, v: &str| KeyValue { key: k.into(), value: v.into() };
        assert_eq!(
            cmd("ENV A=1 B=\"two words\" C=three\\ words"),
            Command::Env(vec![kv("A", "1"), kv("B", "\"two words\""), kv("C", "three\\ words")])
        );
        assert_eq!(
            cmd("ENV PATH /usr/local/bin:$PATH  extra"),
            Command::Env(vec![kv("PATH", "/usr/local/bin:$PATH  extra")])
        );
        assert_eq!(err("ENV A"), "ENV must have two arguments");
        assert_eq!(err("ENV A=1 B"), "Syntax error - can't find = in \"B\". Must be of the form: name=value");
        assert_eq!(err("ENV =x"), "ENV names can not be blank");
        assert_eq!(err("ENV"), "ENV requires at least one argument");
    }

    #[test]
    fn label_and_maintainer() {
        let kv = |k: &str, v: &str| KeyValue { key: k.into(), value: v.into() };
        assert_eq!(
            cmd("LABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0"),
            Command::Label(vec![kv("\"com.example.vendor\"", "\"ACME Inc\""), kv("version", "1.0")])
        );
        assert_eq!(
            cmd("LABEL maintainer Erik \\\\Hollensbe <erik@hollensbe.org>\\\""),
            Command::Label(vec![kv("maintainer", "Erik \\\\Hollensbe <erik@hollensbe.org>\\\"")])
        );
        assert_eq!(cmd("MAINTAINER Jane <j@x>"), Command::Maintainer("Jane <j@x>".into()));
    }

    #[test]
    fn arg_one_or_more_with_defaults() {
        let def = |n: &str, d: Option<&str>| ArgDef { name: n.into(), default: d.map(str::to_string) };
        assert_eq!(
            cmd("ARG A B=2 C= D=\"x y\""),
            Command::Arg(vec![def("A", None), def("B", Some("2")), def("C", Some("")), def("D", Some("\"x y\""))])
        );
        assert_eq!(err("ARG =1"), "ARG names can not be blank");
        assert_eq!(err("ARG"), "ARG requires at least one argument");
    }

    #[test]
    fn expose_volume_user_workdir_stopsignal() {
        assert_eq!(
            cmd("EXPOSE 8080/udp 80 $PORT"),
            Command::Expose(vec!["$PORT".into(), "80".into(), "8080/udp".into()])
        );
        assert_eq!(cmd("VOLUME [\"/data\", \"/logs\"]"), Command::Volume(vec!["/data".into(), "/logs".into()]));
        assert_eq!(cmd("VOLUME /a /b"), Command::Volume(vec!["/a".into(), "/b".into()]));
        assert_eq!(err("VOLUME [\"\"]"), "VOLUME specified can not be an empty string");
        assert_eq!(cmd("USER app:app"), Command::User("app:app".into()));
        assert_eq!(cmd("WORKDIR /my dir"), Command::Workdir("/my dir".into()));
        assert_eq!(err("WORKDIR"), "WORKDIR requires exactly one argument");
        assert_eq!(cmd("STOPSIGNAL SIGKILL"), Command::StopSignal("SIGKILL".into()));
        assert_eq!(err("USER --x=1 a"), "unknown flag: --x (this instruction takes no flags)");
    }

    #[test]
    fn copy_and_add_flags_sources_dest() {
        let Command::Copy(c) = cmd("COPY --from=build --chown=1000:1000 --chmod=755 --link --parents a b/ /dest/")
        else {
            panic!()
        };
        assert_eq!(c.from.as_deref(), Some("build"));
        assert_eq!(
            (c.transfer.chown.as_deref(), c.transfer.chmod.as_deref(), c.transfer.link, c.parents),
            (Some("1000:1000"), Some("755"), true, true)
        );
        assert_eq!(
            (c.transfer.sources.clone(), c.transfer.dest.as_str()),
            (vec!["a".to_string(), "b/".to_string()], "/dest/")
        );
        let Command::Copy(c) = cmd("COPY [\"a b\", \"/c d/\"]") else { panic!() };
        assert_eq!((c.transfer.sources[0].as_str(), c.transfer.dest.as_str()), ("a b", "/c d/"));
        let Command::Add(a) = cmd("ADD --checksum=sha256:abc --keep-git-dir=true https://x/y.tgz /y") else { panic!() };
        assert_eq!((a.checksum.as_deref(), a.keep_git_dir, a.unpack), (Some("sha256:abc"), Some(true), None));
        assert_eq!(
            err("COPY only"),
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined"
        );
        assert_eq!(err("COPY a <<EOF"), "COPY cannot accept a heredoc as a destination");
        assert_eq!(err("ADD --from=x a b"), "unknown flag: --from (accepted: --chown, --chmod, --link, --keep-git-dir, --checksum, --unpack, --exclude)");
    }

    #[test]
    fn copy_heredoc_sources() {
        let docs =
            [Heredoc { name: "EOF".into(), content: "\thello $NAME\n".into(), chomp: true, expand: true, fd: 0 }];
        let Command::Copy(c) = parse_line("COPY <<-EOF /hello", &docs, '\\').unwrap() else { panic!() };
        assert_eq!(c.transfer.inline, [InlineFile { name: "EOF".into(), data: "hello $NAME\n".into(), expand: true }]);
        assert!(c.transfer.sources.is_empty());
    }

    #[test]
    fn onbuild_rules() {
        let Command::Onbuild(ob) = cmd("ONBUILD ADD . /app/src") else { panic!() };
        assert_eq!(ob.expression, "ADD . /app/src");
        assert!(matches!(*ob.trigger, Command::Add(_)));
        assert_eq!(err("ONBUILD ONBUILD RUN x"), "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
        assert_eq!(err("ONBUILD FROM x"), "FROM isn't allowed as an ONBUILD trigger");
        assert_eq!(err("ONBUILD RUNN x"), "unknown instruction: RUNN (did you mean RUN?)");
    }

    #[test]
    fn healthcheck_forms() {
        assert_eq!(cmd("HEALTHCHECK NONE"), Command::Healthcheck(Healthcheck::None));
        let Command::Healthcheck(Healthcheck::Check { test, interval, timeout, start_period, start_interval, retries }) =
            cmd("HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms --retries=3 CMD curl -f http://localhost/ || exit 1")
        else {
            panic!()
        };
        assert_eq!(test, ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]);
        assert_eq!(
            (interval, timeout, start_period, start_interval, retries),
            (Duration::from_secs(300), Duration::from_secs(3), Duration::from_secs(90), Duration::from_millis(500), 3)
        );
        let Command::Healthcheck(Healthcheck::Check { test, .. }) = cmd("HEALTHCHECK CMD [\"/bin/check\", \"-q\"]")
        else {
            panic!()
        };
        assert_eq!(test, ["CMD", "/bin/check", "-q"]);
        assert_eq!(err("HEALTHCHECK NONE x"), "HEALTHCHECK NONE takes no arguments");
        assert_eq!(err("HEALTHCHECK CMD"), "Missing command after HEALTHCHECK CMD");
        assert_eq!(err("HEALTHCHECK RUN x"), "Unknown type \"RUN\" in HEALTHCHECK (try CMD)");
        assert_eq!(err("HEALTHCHECK --retries=-1 CMD x"), "--retries cannot be negative (-1)");
        assert_eq!(err("HEALTHCHECK --interval=1us CMD x"), "Interval \"interval\" cannot be less than 1ms");
        assert!(err("HEALTHCHECK --interval=5 CMD x").starts_with("time: invalid duration \"5\""));
    }

    #[test]
    fn shell_requires_json() {
        assert_eq!(cmd("SHELL [\"/bin/bash\", \"-c\"]"), Command::Shell(vec!["/bin/bash".into(), "-c".into()]));
        assert_eq!(
            err("SHELL /bin/bash -c"),
            "SHELL requires the arguments to be in JSON form (e.g. SHELL [\"/bin/bash\", \"-c\"])"
        );
        assert_eq!(err("SHELL []"), "SHELL requires at least one argument");
    }

    #[test]
    fn builder_flags_and_words_follow_buildkit() {
        let s = split_command("  COPY --chown=\"a b\" --from=x\\ y  --  --not-a-flag dest ", '\\');
        assert_eq!(
            (s.command.as_str(), s.flags.clone(), s.rest.as_str()),
            ("COPY", vec!["--chown=a b".to_string(), "--from=x y".to_string()], "--not-a-flag dest")
        );
        assert_eq!(parse_words("foo bar 'abc xyz'", '\\'), ["foo", "bar", "'abc xyz'"]);
        assert_eq!(parse_words("foo\\ bar", '\\'), ["foo\\ bar"]);
        assert_eq!(parse_words("föo bàr \"âbc xÿz\"", '\\'), ["föo", "bàr", "\"âbc xÿz\""]);
    }

    #[test]
    fn expansion_table() {
        assert!(cmd("COPY a b").expands_variables());
        assert!(cmd("WORKDIR $X").expands_variables());
        assert!(!cmd("RUN echo $X").expands_variables());
        assert!(!cmd("CMD echo $X").expands_variables());
        assert!(!cmd("ENTRYPOINT echo $X").expands_variables());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1h2m3.5s").unwrap(), Duration::from_millis(3_723_500));
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_go_duration("1d").is_err());
        assert!(parse_go_duration("-1s").is_err());
    }
}
