//! The engine's errors and their kinds.

use std::io;
use std::path::PathBuf;

use kontti_core::ErrorKind;

/// Everything that can go wrong managing containers.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No container by that name or id.
    #[error("no such container: {0}")]
    NotFound(String),
    /// An id prefix that matches several containers.
    #[error("container id prefix {0:?} is ambiguous: it matches several containers")]
    Ambiguous(String),
    /// The name is taken by another container.
    #[error("the container name {name:?} is already in use by container {id}")]
    NameInUse {
        /// The name asked for.
        name: String,
        /// The container that has it (short id).
        id: String,
    },
    /// A name outside `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
    #[error(
        "invalid container name {0:?}: use letters, digits, '_', '.', '-' and start with a letter or digit"
    )]
    BadName(String),
    /// A flag or option value that does not parse or is out of range.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// Which option (`--memory`, `--ulimit`, ...).
        what: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An operation the container's state does not allow.
    #[error("container {id} is {status}: {reason}")]
    WrongState {
        /// Short id or name.
        id: String,
        /// Its status.
        status: String,
        /// What the user can do instead.
        reason: &'static str,
    },
    /// The user named in `--user` or the image's USER is not in the rootfs.
    #[error("unable to find user {user}: {reason}")]
    UnknownUser {
        /// The user specification.
        user: String,
        /// Why it does not resolve.
        reason: String,
    },
    /// A feature the engine refuses rather than fakes.
    #[error("{0}")]
    Unsupported(String),
    /// The image has no command and none was given.
    #[error("no command specified: the image has neither ENTRYPOINT nor CMD")]
    NoCommand,
    /// The supervisor failed to create or start the container.
    #[error("{0}")]
    Supervisor(String),
    /// The command in the container cannot be found.
    #[error("{0}")]
    CommandNotFound(String),
    /// The command in the container is not executable.
    #[error("{0}")]
    CommandNotExecutable(String),
    /// An image operation failed.
    #[error(transparent)]
    Image(#[from] kontti_image::ImageError),
    /// Preparing the root filesystem failed.
    #[error(transparent)]
    Rootfs(#[from] kontti_image::rootfs::RootfsError),
    /// A snapshot operation failed.
    #[error(transparent)]
    Snapshot(#[from] kontti_image::snapshot::SnapshotError),
    /// A runtime operation failed.
    #[error(transparent)]
    Runtime(#[from] kontti_runtime::RuntimeError),
    /// A network operation failed.
    #[error(transparent)]
    Network(#[from] crate::network::NetError),
    /// A volume operation failed.
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    /// Pinning or unpinning a network namespace failed.
    #[error(transparent)]
    Netns(#[from] kontti_supervisor::netns::NetnsError),
    /// Reading a log failed.
    #[error(transparent)]
    Log(#[from] kontti_supervisor::crilog::LogError),
    /// The attach protocol failed.
    #[error(transparent)]
    Protocol(#[from] kontti_supervisor::protocol::ProtocolError),
    /// A record file that does not parse.
    #[error("corrupt container record {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// A filesystem or system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl EngineError {
    /// The kind of failure, for exit codes and HTTP statuses.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::NameInUse { .. } => ErrorKind::AlreadyExists,
            EngineError::Ambiguous(_)
            | EngineError::BadName(_)
            | EngineError::Invalid { .. }
            | EngineError::UnknownUser { .. }
            | EngineError::NoCommand => ErrorKind::Invalid,
            EngineError::WrongState { .. } => ErrorKind::Conflict,
            EngineError::Unsupported(_) => ErrorKind::Unavailable,
            EngineError::CommandNotFound(_) => ErrorKind::NotFound,
            EngineError::CommandNotExecutable(_) => ErrorKind::Forbidden,
            EngineError::Supervisor(_) | EngineError::Corrupt { .. } => ErrorKind::Internal,
            EngineError::Image(e) => e.kind(),
            EngineError::Rootfs(e) => e.kind(),
            EngineError::Snapshot(e) => e.kind(),
            EngineError::Runtime(e) => e.kind(),
            EngineError::Network(e) => e.kind(),
            EngineError::Volume(e) => e.kind(),
            EngineError::Netns(e) => e.kind(),
            EngineError::Log(e) => e.kind(),
            EngineError::Protocol(e) => e.kind(),
            EngineError::Io { .. } => ErrorKind::Internal,
        }
    }

    /// docker's exit code for a failure to run a container: 127 when the
    /// command does not exist, 126 when it cannot be invoked, else 125.
    pub fn run_exit_code(&self) -> i32 {
        match self {
            EngineError::CommandNotFound(_) => 127,
            EngineError::CommandNotExecutable(_) => 126,
            _ => 125,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        EngineError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// An invalid option value (`--memory 12q`, ...).
    pub fn invalid_value(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self::invalid(what, value, reason)
    }

    pub(crate) fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        EngineError::Invalid {
            what,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Result alias of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
