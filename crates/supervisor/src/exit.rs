//! `exit.json`: how a container (or an exec'd process) ended, written once
//! by its supervisor, atomically (temporary file + rename).

use std::io;
use std::path::{Path, PathBuf};

use kontti_core::ErrorKind;
use serde::{Deserialize, Serialize};

/// The record of an exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// The exit code, or 128 + the signal that killed the process.
    pub exit_code: i32,
    /// The signal that killed the process, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// Whether the kernel's OOM killer killed a process of the container.
    #[serde(default)]
    pub oom_killed: bool,
    /// When the process was started (RFC 3339, nanoseconds, UTC).
    #[serde(default)]
    pub started_at: String,
    /// When the supervisor saw it exit.
    #[serde(default)]
    pub finished_at: String,
    /// Why the process could not be started or supervised, if it could not.
    #[serde(default)]
    pub error: Option<String>,
}

/// Reading or writing `exit.json` failed.
#[derive(Debug, thiserror::Error)]
pub enum ExitError {
    /// The file cannot be read or written.
    #[error("exit record {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not an exit record.
    #[error("exit record {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

impl ExitError {
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ExitError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            ExitError::Io { .. } => ErrorKind::Internal,
            ExitError::Parse { .. } => ErrorKind::Invalid,
        }
    }
}

impl ExitRecord {
    /// Reads an exit record; `ErrorKind::NotFound` when the process has not
    /// exited (no file yet).
    pub fn read(path: &Path) -> Result<ExitRecord, ExitError> {
        let data = std::fs::read(path).map_err(|source| ExitError::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&data).map_err(|source| ExitError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the record atomically: a reader sees no file or a whole one.
    pub fn write(&self, path: &Path) -> Result<(), ExitError> {
        let io = |source| ExitError::Io {
            path: path.to_owned(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let data = serde_json::to_vec(self).map_err(|e| io(io::Error::other(e)))?;
        std::fs::write(&tmp, data).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_the_contract_field_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("exit.json");
        let rec = ExitRecord {
            exit_code: 137,
            signal: Some(9),
            oom_killed: true,
            started_at: "2026-11-29T17:00:00.000000001Z".into(),
            finished_at: "2026-11-29T17:00:01.000000001Z".into(),
            error: None,
        };
        rec.write(&p).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["exitCode"], 137);
        assert_eq!(v["signal"], 9);
        assert_eq!(v["oomKilled"], true);
        assert!(v["error"].is_null());
        assert_eq!(ExitRecord::read(&p).unwrap(), rec);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_and_malformed_records_are_errors_of_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("exit.json");
        assert_eq!(
            ExitRecord::read(&p).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        std::fs::write(&p, "{\"exitCode\": \"x\"}").unwrap();
        let e = ExitRecord::read(&p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.to_string().contains("exit.json"), "{e}");
        // the short form an exec supervisor writes
        std::fs::write(&p, "{\"exitCode\": 3}").unwrap();
        assert_eq!(ExitRecord::read(&p).unwrap().exit_code, 3);
    }
}
