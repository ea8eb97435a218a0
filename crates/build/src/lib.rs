//! The front end of `kontti build`: everything about a Dockerfile build that
//! does not run a container.
//!
//! - [`parse`]: a pure Dockerfile parser (no I/O) producing a typed
//!   [`Dockerfile`] with its stages, their dependencies and spans; errors
//!   read `Dockerfile:LINE:COL: message`.
//! - [`expand_word`] and [`StepEnv`]: variable substitution and ARG/ENV
//!   scoping, for the executor to call with the variables in effect at each
//!   step.
//! - [`Dockerfile::plan`]: `--target` pruning and groups of independent
//!   stages.
//! - [`Dockerignore`]: the `.dockerignore` pattern syntax and matcher (pure);
//!   [`BuildContext`]: the context walker and the parallel content hashing
//!   of COPY/ADD sources (the only module doing I/O).
//! - [`CacheKey`]: step keys chaining the parent key, the expanded
//!   instruction, the args and environment in effect and the digests of the
//!   files read.
//!
//! It does not run RUN steps, write layers or talk to registries: the build
//! executor does that on top of this crate.

mod ast;
mod cache;
mod context;
mod dockerignore;
mod error;
mod expand;
mod flags;
mod instruction;
mod lines;
mod parser;
mod scope;
mod stages;
mod substitute;
mod words;

pub use ast::{
    ArgDecl, BaseImage, CacheSharing, CommandForm, CopySource, Dockerfile, FileCopy, Healthcheck,
    HealthcheckCmd, Heredoc, Instruction, InstructionNode, KeyValue, Mount, MountType, NetworkMode,
    Run, SecurityMode, Span, Stage,
};
pub use cache::{CacheKey, StepInput};
pub use context::{BuildContext, ContentDigest, ContextEntry, ContextError, EntryKind};
pub use dockerignore::{Dockerignore, DockerignoreError, Pattern, clean_path};
pub use error::{ParseError, Position, SyntaxError};
pub use expand::{ExpandError, Variables, expand_word, needs_expansion};
pub use lines::Directives;
pub use parser::{ParseOptions, parse};
pub use scope::{ArgSources, PREDEFINED_ARGS, StepEnv, automatic_args, host_platform};
pub use stages::{BuildPlan, StageRef};
