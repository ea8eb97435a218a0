//! The errors of a build. Each names what the user has to look at: the
//! Dockerfile line, the context path, the image, the failing command.

use std::path::PathBuf;

use kontti_build::{ContextError, ParseError};
use kontti_core::ErrorKind;
use kontti_image::rootfs::RootfsError;
use kontti_image::snapshot::SnapshotError;
use kontti_image::unpack::UnpackError;
use kontti_image::{ImageError, StoreError};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile is malformed (`Dockerfile:LINE:COL: message`).
    #[error("{0}")]
    Parse(ParseError),
    /// The Dockerfile cannot be read.
    #[error("cannot read {path}: {cause}")]
    Dockerfile {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// A step failed because of the build context (missing file, path outside).
    #[error("{step}: {cause}")]
    Context {
        /// The step, as `Dockerfile:LINE: COPY ...`.
        step: String,
        /// The cause.
        cause: ContextError,
    },
    /// The build context as a whole cannot be read.
    #[error(transparent)]
    ContextRoot(ContextError),
    /// A base image (or `--from` image) is not in the store.
    #[error("base image {0:?} not found: pull it first or check the name")]
    UnknownImage(String),
    /// A base image is missing and pulling it failed.
    #[error("base image {name:?} is not in the store and pulling it failed: {reason}")]
    PullFailed {
        /// The reference.
        name: String,
        /// Why the pull failed.
        reason: String,
    },
    /// A base image is unusable.
    #[error("base image {name:?}: {cause}")]
    Image {
        /// The reference.
        name: String,
        /// The cause.
        cause: ImageError,
    },
    /// A RUN step's command exited with a non-zero status.
    #[error("{step}: exited with code {code}{}", output_tail(.output))]
    RunFailed {
        /// The step.
        step: String,
        /// The exit code (128 + signal for a signal).
        code: i32,
        /// The last lines of its output.
        output: String,
    },
    /// The runtime (`kontti-runc`) could not be started.
    #[error("cannot start the runtime {path}: {cause}")]
    Runtime {
        /// The binary.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// A step is invalid in a way the parser cannot see (an unknown user,
    /// a missing secret, an unsupported option).
    #[error("{step}: {reason}")]
    Step {
        /// The step.
        step: String,
        /// What is wrong.
        reason: String,
    },
    /// A step needs something this machine lacks.
    #[error("{step}: {reason}")]
    Unsupported {
        /// The step.
        step: String,
        /// What is missing.
        reason: String,
    },
    /// A filesystem operation of the builder failed.
    #[error("{op} {path}: {cause}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A snapshot operation failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Unpacking a base image failed.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// Applying a layer (ADD of a tar, a cached layer) failed.
    #[error("{what}: {cause}")]
    Unpack {
        /// What was being applied.
        what: String,
        /// The cause.
        cause: UnpackError,
    },
    /// Naming the result failed.
    #[error(transparent)]
    Tag(ImageError),
}

impl From<ParseError> for BuildError {
    fn from(e: ParseError) -> Self {
        // Not a `source`: the message already holds the cause, and error
        // chains would print it twice.
        BuildError::Parse(e)
    }
}

fn output_tail(output: &str) -> String {
    let last = output.lines().rev().find(|l| !l.trim().is_empty());
    match last {
        Some(l) => format!(" (last output: {})", l.trim()),
        None => String::new(),
    }
}

impl BuildError {
    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BuildError::Parse(e) => e.kind(),
            BuildError::Dockerfile { cause, .. } | BuildError::Runtime { cause, .. }
                if cause.kind() == std::io::ErrorKind::NotFound =>
            {
                ErrorKind::NotFound
            }
            BuildError::Dockerfile { .. } => ErrorKind::Unavailable,
            BuildError::Context { cause, .. } => cause.kind(),
            BuildError::ContextRoot(e) => e.kind(),
            BuildError::UnknownImage(_) | BuildError::PullFailed { .. } => ErrorKind::NotFound,
            BuildError::Image { cause, .. } => cause.kind(),
            BuildError::RunFailed { .. } | BuildError::Step { .. } => ErrorKind::Invalid,
            BuildError::Runtime { .. } | BuildError::Unsupported { .. } => ErrorKind::Unavailable,
            BuildError::Io { .. } => ErrorKind::Internal,
            BuildError::Store(e) => e.kind(),
            BuildError::Snapshot(e) => e.kind(),
            BuildError::Rootfs(e) => e.kind(),
            BuildError::Unpack { cause, .. } => cause.kind(),
            BuildError::Tag(e) => e.kind(),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        BuildError::Io {
            op,
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn step(step: &str, reason: impl Into<String>) -> Self {
        BuildError::Step {
            step: step.to_string(),
            reason: reason.into(),
        }
    }
}
