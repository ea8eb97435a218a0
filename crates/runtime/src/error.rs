//! The runtime's error type.

use std::io;
use std::path::PathBuf;

use kontti_core::ErrorKind;

/// Everything the runtime can fail with. Messages are one line, lowercase,
/// and name the container, file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bundle directory does not exist.
    #[error("bundle {0}: no such directory")]
    BundleNotFound(PathBuf),
    /// config.json cannot be read or parsed; `field` is the JSON path.
    #[error("{file}: {detail}")]
    Config {
        /// The file (`config.json` or a `--process` file).
        file: String,
        /// The field path and what is wrong with it.
        detail: String,
    },
    /// A configuration value is invalid (names the field).
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The root file system does not exist.
    #[error("root file system {0}: no such directory")]
    RootfsMissing(PathBuf),
    /// A container with this id exists already.
    #[error("container {0} already exists")]
    AlreadyExists(String),
    /// No container with this id.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// The operation is not allowed in the container's current status.
    #[error("container {id} is {status}: cannot {op}")]
    WrongState {
        /// Container id.
        id: String,
        /// Current status.
        status: String,
        /// What was attempted.
        op: &'static str,
    },
    /// The process's executable is not in the container.
    #[error("exec: executable file not found: {0}")]
    ExecNotFound(String),
    /// A feature this runtime does not provide.
    #[error("{0} is not supported")]
    Unsupported(String),
    /// The host does not allow a setting (e.g. no CAP_SYS_RESOURCE).
    #[error("{0}")]
    Forbidden(String),
    /// A hook failed.
    #[error("{phase} hook {path}: {detail}")]
    Hook {
        /// The hook phase (`createRuntime`, `poststart`, ...).
        phase: &'static str,
        /// The hook's path.
        path: PathBuf,
        /// Exit status, signal or spawn error.
        detail: String,
    },
    /// The container's init process reported a failure while setting up.
    #[error("container init: {message}")]
    Init {
        /// The init's message (one line).
        message: String,
        /// The kind the init classified it as.
        kind: ErrorKind,
    },
    /// A cgroup operation failed.
    #[error("cgroup: {0}")]
    Cgroup(#[from] crate::cgroups::CgroupError),
    /// A seccomp profile could not be compiled or installed.
    #[error("linux.seccomp: {0}")]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// A system call failed; `context` says what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the object (path, pid).
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl RuntimeError {
    /// The kind this error maps onto (exit codes are derived from it).
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::BundleNotFound(_) | RuntimeError::NotFound(_) => ErrorKind::NotFound,
            RuntimeError::ExecNotFound(_) => ErrorKind::NotFound,
            RuntimeError::RootfsMissing(_) => ErrorKind::NotFound,
            RuntimeError::Config { .. } | RuntimeError::Invalid(_) => ErrorKind::Invalid,
            RuntimeError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            RuntimeError::WrongState { .. } => ErrorKind::Conflict,
            RuntimeError::Unsupported(_) => ErrorKind::Unavailable,
            RuntimeError::Forbidden(_) => ErrorKind::Forbidden,
            RuntimeError::Init { kind, .. } => *kind,
            RuntimeError::Cgroup(e) => e.kind(),
            RuntimeError::Seccomp(e) => e.kind(),
            RuntimeError::Hook { .. } | RuntimeError::Io { .. } => ErrorKind::Internal,
        }
    }

    /// An I/O error with context.
    pub fn io(context: impl Into<String>, source: io::Error) -> RuntimeError {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds context to `io::Result`s.
pub(crate) trait IoContext<T> {
    /// Maps the error to [`RuntimeError::Io`] with a lazily built context.
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T, RuntimeError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T, RuntimeError> {
        self.map_err(|e| RuntimeError::io(f(), e))
    }
}

/// Encodes a kind as one byte for the init → runtime channel.
pub(crate) fn kind_to_byte(k: ErrorKind) -> u8 {
    match k {
        ErrorKind::NotFound => 1,
        ErrorKind::AlreadyExists => 2,
        ErrorKind::Conflict => 3,
        ErrorKind::Invalid => 4,
        ErrorKind::Unavailable => 5,
        ErrorKind::Forbidden => 6,
        ErrorKind::Internal => 0,
    }
}

/// Decodes [`kind_to_byte`].
pub(crate) fn kind_from_byte(b: u8) -> ErrorKind {
    match b {
        1 => ErrorKind::NotFound,
        2 => ErrorKind::AlreadyExists,
        3 => ErrorKind::Conflict,
        4 => ErrorKind::Invalid,
        5 => ErrorKind::Unavailable,
        6 => ErrorKind::Forbidden,
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_the_channel_byte() {
        for k in [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::Conflict,
            ErrorKind::Invalid,
            ErrorKind::Unavailable,
            ErrorKind::Forbidden,
            ErrorKind::Internal,
        ] {
            assert_eq!(kind_from_byte(kind_to_byte(k)), k);
        }
    }
}
