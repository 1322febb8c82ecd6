//! A parsed Dockerfile split into stages (`FROM … AS name` starts one), the global `ARG`s before the first
//! `FROM`, the choice of the target stage, and which stages a target needs — through `FROM <stage>`,
//! `COPY --from=<name|index>`, `RUN --mount=from=<name>` and the `ONBUILD` triggers of a base stage — so the
//! executor builds only those (BuildKit skips unreachable stages too).
//!
//! ```text
//! let df = Dockerfile::from_file(&context.join("Dockerfile"), "Dockerfile")?;
//! let globals = df.global_args(&build_args)?;             // ARG defaults overridden by --build-arg
//! let target = df.stage_for_target(opts.target.as_deref())?;   // None: the last stage
//! for index in df.needed_stages(target.index, &globals)? {    // dependencies first
//!     let stage = &df.stages[index];
//!     match df.base_of(index, &globals)? { Base::Stage(i) => …, Base::Image(r) => …, Base::Scratch => … }
//!     for step in &stage.instructions { … }                // `Step n/m : {step.original}`
//! }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use crate::build::error::{suggest, Error, Result};
use crate::build::instruction::{Command, From, Instruction};
use crate::build::parser::{self, Directives};
use crate::build::shell_lex::{Env, Lexer};

/// A Dockerfile ready to build.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// The name used in messages (`Dockerfile`).
    pub file: String,
    pub directives: Directives,
    /// `ARG` instructions before the first `FROM`: usable in `FROM` lines, and in a stage after it re-declares
    /// them with a bare `ARG name`.
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

/// One stage: its `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Position among the stages (what `COPY --from=0` refers to).
    pub index: usize,
    /// The `FROM` instruction (line and original text for the step output).
    pub from_instruction: Instruction,
    pub from: From,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The stage name (lower case), if it has one.
    pub fn name(&self) -> Option<&str> {
        self.from.stage_name.as_deref()
    }

    /// The name, or `stage-<index>` like BuildKit's progress output.
    pub fn display_name(&self) -> String {
        self.name().map_or_else(|| format!("stage-{}", self.index), str::to_string)
    }
}

/// What a stage starts from, once global `ARG`s are expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference to pull or find locally.
    Image(String),
    /// `FROM scratch`.
    Scratch,
}

impl Dockerfile {
    /// Parses Dockerfile text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let parsed = parser::parse(text, file)?;
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for instruction in parsed.instructions {
            if let Command::From(from) = &instruction.command {
                if let Some(name) = &from.stage_name {
                    if let Some(previous) = stages.iter().find(|s| s.name() == Some(name)) {
                        return Err(Error::at(
                            file,
                            instruction.line,
                            format!(
                                "duplicate stage name {name:?} (first defined on line {}): rename one of the stages",
                                previous.from_instruction.line
                            ),
                        ));
                    }
                }
                stages.push(Stage {
                    index: stages.len(),
                    from: from.clone(),
                    from_instruction: instruction,
                    instructions: Vec::new(),
                });
                continue;
            }
            match stages.last_mut() {
                Some(stage) => stage.instructions.push(instruction),
                None if matches!(instruction.command, Command::Arg(_)) => global_args.push(instruction),
                None => {
                    return Err(Error::at(
                        file,
                        instruction.line,
                        format!(
                            "no build stage in current context: {} must come after a FROM (only ARG may come before the first FROM)",
                            instruction.name()
                        ),
                    ))
                }
            }
        }
        if stages.is_empty() {
            let line = global_args.last().map_or(1, |i: &Instruction| i.end_line);
            return Err(Error::at(file, line, "the Dockerfile has no FROM instruction: add one (e.g. FROM scratch)"));
        }
        Ok(Dockerfile { file: file.to_string(), directives: parsed.directives, global_args, stages })
    }

    /// Reads and parses the Dockerfile at `path`; `file` names it in errors.
    pub fn from_file(path: &Path, file: &str) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
            Error::at(file, line, "the Dockerfile is not valid UTF-8: save it as UTF-8")
        })?;
        Dockerfile::parse(&text, file)
    }

    /// The lexer for this Dockerfile's escape character.
    pub fn lexer(&self) -> Lexer {
        Lexer::new(self.directives.escape)
    }

    /// The global `ARG` values: each `--build-arg` given for a declared global `ARG`, else its default expanded
    /// with the globals before it; an `ARG` without default or value stays unset. Build args for names not
    /// declared globally are not included (stages see them only after their own `ARG`).
    pub fn global_args(&self, build_args: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
        let lexer = self.lexer();
        let mut values = BTreeMap::new();
        for instruction in &self.global_args {
            let Command::Arg(defs) = &instruction.command else { continue };
            for def in defs {
                let name = lexer.expand(&def.name, &values).map_err(|source| self.expand_error(instruction, source))?;
                if let Some(value) = build_args.get(&name) {
                    values.insert(name, value.clone());
                } else if let Some(default) = &def.default {
                    let value =
                        lexer.expand(default, &values).map_err(|source| self.expand_error(instruction, source))?;
                    values.insert(name, value);
                }
            }
        }
        Ok(values)
    }

    fn expand_error(&self, instruction: &Instruction, source: crate::build::shell_lex::Error) -> Error {
        Error::Expand {
            location: crate::build::error::Location { file: self.file.clone(), line: instruction.line, column: None },
            source,
        }
    }

    /// The stage to build: the one named `target` (case-insensitive), or the last stage when `None`.
    pub fn stage_for_target(&self, target: Option<&str>) -> Result<&Stage> {
        let Some(target) = target else {
            // `parse` guarantees at least one stage.
            return self.stages.last().ok_or_else(|| Error::at(&self.file, 1, "the Dockerfile has no stages"));
        };
        self.stage_by_name(target).ok_or_else(|| Error::UnknownTarget {
            target: target.to_string(),
            suggestion: suggest(target, self.stages.iter().filter_map(Stage::name), false),
        })
    }

    fn stage_by_name(&self, name: &str) -> Option<&Stage> {
        let name = name.to_lowercase();
        self.stages.iter().find(|s| s.name() == Some(name.as_str()))
    }

    /// What stage `index` starts from: its `FROM` expanded with the global args, then matched against the names
    /// of earlier stages.
    pub fn base_of(&self, index: usize, globals: &dyn Env) -> Result<Base> {
        let stage = self.stage(index)?;
        let image = self
            .lexer()
            .expand(&stage.from.image, globals)
            .map_err(|source| self.expand_error(&stage.from_instruction, source))?;
        if image.is_empty() {
            return Err(Error::at(
                &self.file,
                stage.from_instruction.line,
                format!("base name ({}) should not be blank: set the build arg it uses", stage.from.image),
            ));
        }
        if let Some(base) = self.stages[..index].iter().rev().find(|s| s.name() == Some(image.to_lowercase().as_str()))
        {
            return Ok(Base::Stage(base.index));
        }
        if image.eq_ignore_ascii_case("scratch") {
            return Ok(Base::Scratch);
        }
        Ok(Base::Image(image))
    }

    fn stage(&self, index: usize) -> Result<&Stage> {
        self.stages.get(index).ok_or(Error::StageIndex { index, count: self.stages.len() })
    }

    /// The stages `index` uses directly: its base stage, `COPY --from` and `RUN --mount=from` stages, and those
    /// of the `ONBUILD` triggers of its base stage. A `--from` that names no stage is an image.
    pub fn dependencies(&self, index: usize, globals: &dyn Env) -> Result<Vec<usize>> {
        let stage = self.stage(index)?;
        let mut deps = Vec::new();
        let base = self.base_of(index, globals)?;
        let mut commands: Vec<(&Command, &Instruction)> = stage.instructions.iter().map(|i| (&i.command, i)).collect();
        if let Base::Stage(base_index) = base {
            deps.push(base_index);
            for instruction in &self.stages[base_index].instructions {
                if let Command::Onbuild(onbuild) = &instruction.command {
                    commands.push((&onbuild.trigger, instruction));
                }
            }
        }
        for (command, instruction) in commands {
            match command {
                Command::Copy(copy) => {
                    let Some(from) = &copy.from else { continue };
                    if let Ok(i) = from.parse::<usize>() {
                        if i >= self.stages.len() {
                            return Err(Error::at(
                                &self.file,
                                instruction.line,
                                format!("invalid stage index {i}: stages are numbered 0 to {}", self.stages.len() - 1),
                            ));
                        }
                        deps.push(i);
                    } else if let Some(s) = self.stage_by_name(from) {
                        deps.push(s.index);
                    }
                }
                Command::Run(run) => {
                    deps.extend(
                        run.mounts
                            .iter()
                            .filter_map(|m| m.from.as_deref())
                            .filter_map(|f| self.stage_by_name(f))
                            .map(|s| s.index),
                    );
                }
                _ => {}
            }
        }
        deps.sort_unstable();
        deps.dedup();
        Ok(deps)
    }

    /// Every stage `target` needs, itself included, dependencies before the stages that use them (ties by
    /// position). Fails on a dependency cycle.
    pub fn needed_stages(&self, target: usize, globals: &dyn Env) -> Result<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Visiting,
            Done,
        }
        let mut marks = vec![Mark::New; self.stages.len()];
        let mut order = Vec::new();
        // Iterative depth-first search: (stage, its dependencies, next dependency to visit).
        self.stage(target)?;
        let mut stack = vec![(target, self.dependencies(target, globals)?, 0)];
        marks[target] = Mark::Visiting;
        while let Some((stage, deps, next)) = stack.last_mut() {
            if let Some(&dep) = deps.get(*next) {
                *next += 1;
                match marks[dep] {
                    Mark::Done => {}
                    Mark::Visiting => return Err(Error::CircularDependency { stage: self.stages[dep].display_name() }),
                    Mark::New => {
                        marks[dep] = Mark::Visiting;
                        let dep_deps = self.dependencies(dep, globals)?;
                        stack.push((dep, dep_deps, 0));
                    }
                }
            } else {
                marks[*stage] = Mark::Done;
                order.push(*stage);
                stack.pop();
            }
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn df(text: &str) -> Dockerfile {
        Dockerfile::parse(text, "Dockerfile").unwrap_or_else(|e| panic!("{e}"))
    }

    fn none() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    const MULTI: &str = "ARG GO=1.22\nARG BASE\n\
FROM golang:${GO} AS build\nRUN go build\n\
FROM build AS test\nRUN go test\n\
FROM alpine AS assets\nRUN make assets\n\
FROM scratch AS unused\nCOPY --from=test /x /x\n\
FROM alpine\nCOPY --from=build /app /app\nCOPY --from=2 /assets /assets\nCOPY --from=nginx:latest /etc/nginx /etc/nginx\n";

    #[test]
    fn stages_and_global_args() {
        let d = df(MULTI);
        assert_eq!(d.global_args.len(), 2);
        assert_eq!(d.stages.len(), 5);
        assert_eq!(d.stages[0].name(), Some("build"));
        assert_eq!(d.stages[4].display_name(), "stage-4");
        assert_eq!(d.stages[1].instructions[0].original, "RUN go test");
        let globals = d.global_args(&none()).unwrap();
        assert_eq!(globals.get("GO").map(String::as_str), Some("1.22"));
        assert!(!globals.contains_key("BASE"), "ARG without default or value stays unset");
        let globals = d.global_args(&BTreeMap::from([("GO".to_string(), "1.23".to_string())])).unwrap();
        assert_eq!(d.base_of(0, &globals).unwrap(), Base::Image("golang:1.23".into()));
    }

    #[test]
    fn bases() {
        let d = df(MULTI);
        let g = d.global_args(&none()).unwrap();
        assert_eq!(d.base_of(1, &g).unwrap(), Base::Stage(0));
        assert_eq!(d.base_of(3, &g).unwrap(), Base::Scratch);
        assert_eq!(d.base_of(4, &g).unwrap(), Base::Image("alpine".into()));
        let blank = df("ARG IMG\nFROM $IMG\n");
        assert_eq!(
            blank.base_of(0, &none()).unwrap_err().to_string(),
            "Dockerfile:2: base name ($IMG) should not be blank: set the build arg it uses"
        );
    }

    #[test]
    fn needed_stages_follow_from_and_copy_from() {
        let d = df(MULTI);
        let g = d.global_args(&none()).unwrap();
        let last = d.stage_for_target(None).unwrap().index;
        assert_eq!(d.needed_stages(last, &g).unwrap(), [0, 2, 4], "unused and test are skipped");
        let unused = d.stage_for_target(Some("UNUSED")).unwrap().index;
        assert_eq!(d.needed_stages(unused, &g).unwrap(), [0, 1, 3]);
        assert_eq!(d.needed_stages(0, &g).unwrap(), [0]);
    }

    #[test]
    fn run_mount_from_and_onbuild_triggers_are_dependencies() {
        let d = df("FROM alpine AS tools\n\
FROM alpine AS base\nONBUILD COPY --from=tools /t /t\n\
FROM base AS app\nRUN --mount=type=bind,from=cache,target=/c true\n\
FROM alpine AS cache\n");
        assert_eq!(d.dependencies(2, &none()).unwrap(), [0, 1, 3]);
        assert_eq!(d.needed_stages(2, &none()).unwrap(), [0, 1, 3, 2]);
    }

    #[test]
    fn target_errors() {
        let d = df(MULTI);
        let err = d.stage_for_target(Some("tset")).unwrap_err();
        assert_eq!(err.to_string(), "target stage \"tset\" could not be found (did you mean test?)");
        assert_eq!(
            d.stage_for_target(Some("nothing-like-it")).unwrap_err().to_string(),
            "target stage \"nothing-like-it\" could not be found"
        );
    }

    #[test]
    fn cycles_and_bad_indexes() {
        let d = df("FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\nCOPY --from=a /y /y\n");
        assert_eq!(
            d.needed_stages(1, &none()).unwrap_err().to_string(),
            "circular dependency detected on stage: b (a stage cannot copy from a stage that depends on it)"
        );
        let d = df("FROM alpine\nCOPY --from=0 /x /x\n");
        assert!(matches!(d.needed_stages(0, &none()), Err(Error::CircularDependency { .. })));
        let d = df("FROM alpine\nCOPY --from=7 /x /x\n");
        assert_eq!(
            d.needed_stages(0, &none()).unwrap_err().to_string(),
            "Dockerfile:2: invalid stage index 7: stages are numbered 0 to 0"
        );
    }

    #[test]
    fn structure_errors() {
        let err = |t: &str| Dockerfile::parse(t, "Dockerfile").unwrap_err().to_string();
        assert_eq!(
            err("ARG A\nRUN x\nFROM a\n"),
            "Dockerfile:2: no build stage in current context: RUN must come after a FROM (only ARG may come before the first FROM)"
        );
        assert_eq!(err("ARG A\n"), "Dockerfile:1: the Dockerfile has no FROM instruction: add one (e.g. FROM scratch)");
        assert_eq!(
            err("FROM a AS x\nFROM b AS X\n"),
            "Dockerfile:2: duplicate stage name \"x\" (first defined on line 1): rename one of the stages"
        );
    }

    #[test]
    fn from_file_reports_io_and_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Dockerfile");
        assert!(matches!(Dockerfile::from_file(&path, "Dockerfile"), Err(Error::Io { .. })));
        std::fs::write(&path, b"FROM a\nRUN echo \xff\n").unwrap();
        assert_eq!(
            Dockerfile::from_file(&path, "Dockerfile").unwrap_err().to_string(),
            "Dockerfile:2: the Dockerfile is not valid UTF-8: save it as UTF-8"
        );
        std::fs::write(&path, "# escape=`\nFROM a\n").unwrap();
        assert_eq!(Dockerfile::from_file(&path, "Dockerfile").unwrap().lexer().escape(), '`');
    }
}
