//! The pure front half of `engine build`: Dockerfile parsing ([`parser`], [`instruction`]), BuildKit's
//! variable expansion ([`shell_lex`]), stages and target selection ([`stages`]) and the `.dockerignore`-aware
//! context walk ([`dockerignore`]). Nothing here runs containers or writes files; it only reads the
//! Dockerfile, the `.dockerignore` and the context's directory listing. The executor builds on it:
//!
//! ```text
//! let df = Dockerfile::from_file(&dockerfile_path, "Dockerfile")?;
//! let globals = df.global_args(&build_args)?;
//! let target = df.stage_for_target(target_name)?;
//! let order = df.needed_stages(target.index, &globals)?;        // build these, in this order
//! let matcher = IgnoreMatcher::from_file(&context.join(".dockerignore"))?.keep(dockerfile_rel);
//! let files = walk_context(&context, &matcher)?;
//! // per instruction: expand args with df.lexer() when instruction.expands_variables(); print
//! // `Step n/m : {instruction.original}`; RUN uses Run::program().
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
