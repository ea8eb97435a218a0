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
//!
//! It does not run RUN steps, write layers or talk to registries: the build
//! executor does that on top of this crate.

mod ast;
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
pub use error::{ParseError, Position, SyntaxError};
pub use expand::{ExpandError, Variables, expand_word, needs_expansion};
pub use lines::Directives;
pub use parser::{ParseOptions, parse};
pub use scope::{ArgSources, PREDEFINED_ARGS, StepEnv, automatic_args, host_platform};
pub use stages::{BuildPlan, StageRef};
