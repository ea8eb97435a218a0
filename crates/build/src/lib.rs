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
//! The executor's loop over one stage, in short:
//!
//! ```
//! use kontti_build::{ArgSources, CacheKey, ParseOptions, StepEnv, parse};
//!
//! let df = parse("FROM busybox\nENV DIR=/app\nWORKDIR $DIR\n", &ParseOptions::default())?;
//! let plan = df.plan(None)?;
//! let stage = &df.stages[plan.target];
//! let sources = ArgSources { build_args: &df.build_args, meta_args: &df.meta_args };
//! let mut env = StepEnv::from_image_env(&["PATH=/bin"]); // the base image's Env
//! let mut key = CacheKey::base("sha256:<base manifest digest>", "linux/amd64");
//! for node in &stage.instructions {
//!     env.apply(&node.instruction, sources, df.directives.escape)?;
//!     let step = node.expanded_in(&env, df.directives.escape, &df.file_name)?;
//!     key = key.step(&step, &env, &[]); // plus the digests of what the step reads
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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
