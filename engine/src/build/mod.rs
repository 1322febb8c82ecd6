//! `engine build`. The pure front half reads: Dockerfile parsing ([`parser`], [`instruction`]), BuildKit's
//! variable expansion ([`shell_lex`]), stages and target selection ([`stages`]) and the `.dockerignore`-aware
//! context walk ([`dockerignore`]) — nothing there runs containers or writes files. The back half builds:
//! [`executor`] walks the needed stages step by step (classic builder output), [`run`] runs a `RUN` in a
//! throwaway container and keeps its changes as a layer, [`copy`] writes `COPY`/`ADD`/`WORKDIR` layers directly
//! from the [`context`] (or a `--from` image seen through [`image_mount`]), and [`cache`] finds earlier results by
//! parent image + step. The CLI (`engine build`) only reads flags and the context and calls
//! [`executor::build`]:
//!
//! ```text
//! let context = BuildContext::from_dir(dir)?;                  // or from_tar(root, stdin)
//! let built = executor::build(&images, &containers, &context, &opts, &mut resolve_or_pull, &mut stdout)?;
//! ```
//!
//! Conformance reference: moby/buildkit `frontend/dockerfile/{parser,instructions,shell}` and
//! moby/patternmatcher; each module lists the rules it carries over and where it deliberately differs.

pub mod cache;
pub mod context;
pub mod copy;
pub mod dockerignore;
pub mod error;
pub mod executor;
mod flags;
pub mod heredoc;
pub mod image_mount;
pub mod instruction;
pub mod mount;
pub mod parser;
pub mod run;
pub mod shell_lex;
pub mod stages;

pub use dockerignore::{walk_context, ContextEntry, EntryKind, IgnoreMatcher};
pub use error::{Error, Location, Result};
pub use heredoc::Heredoc;
pub use instruction::{Command, CommandLine, Instruction, RunProgram};
pub use mount::Mount;
pub use shell_lex::{expand, expand_words, Env, Lexer};
pub use stages::{Base, Dockerfile, Stage};
