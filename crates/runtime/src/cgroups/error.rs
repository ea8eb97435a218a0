//! The errors of cgroup operations.

use std::io;
use std::path::PathBuf;

use kontti_core::ErrorKind;

use super::WAIT;

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// the cgroupsPath is not usable
    #[error("invalid cgroupsPath {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// no cgroup filesystem is mounted
    #[error("no cgroup hierarchy is mounted (checked /proc/self/mountinfo)")]
    NoHierarchy,
    /// reading a cgroup file failed
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// writing a cgroup file failed
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The error.
        source: io::Error,
    },
    /// creating a cgroup directory failed
    #[error("creating cgroup {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// removing a cgroup directory failed
    #[error("removing cgroup {path}: {source}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// a controller that a setting needs is not mounted or not enabled
    #[error(
        "linux.resources.{field} needs the {controller} cgroup controller, which is not available here"
    )]
    ControllerMissing {
        /// The controller.
        controller: String,
        /// The resources field.
        field: String,
    },
    /// a resources value is invalid
    #[error("invalid linux.resources.{field}: {reason}")]
    InvalidResource {
        /// The resources field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// a resources field cannot be honoured on this cgroup version
    #[error("linux.resources.{field} is not supported on cgroup {version}: {reason}")]
    Unsupported {
        /// The resources field.
        field: String,
        /// `v1` or `v2`.
        version: &'static str,
        /// Why.
        reason: String,
    },
    /// the kernel did not reach a state in time
    #[error("timed out after {}ms waiting for {what} in {path}", WAIT.as_millis())]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The cgroup directory.
        path: PathBuf,
    },
    /// sending a signal failed
    #[error("signalling pid {pid} with {signal}: {source}")]
    Signal {
        /// The process.
        pid: i32,
        /// The signal number.
        signal: i32,
        /// The error.
        source: io::Error,
    },
}

impl CgroupError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CgroupError::InvalidPath { .. } | CgroupError::InvalidResource { .. } => {
                ErrorKind::Invalid
            }
            CgroupError::NoHierarchy
            | CgroupError::ControllerMissing { .. }
            | CgroupError::Unsupported { .. }
            | CgroupError::Timeout { .. } => ErrorKind::Unavailable,
            CgroupError::Read { source, .. }
            | CgroupError::Write { source, .. }
            | CgroupError::Create { source, .. }
            | CgroupError::Remove { source, .. }
            | CgroupError::Signal { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::PermissionDenied => ErrorKind::Forbidden,
                io::ErrorKind::InvalidInput => ErrorKind::Invalid,
                _ => ErrorKind::Internal,
            },
        }
    }
}
