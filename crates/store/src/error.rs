//! The store's one error type and its mapping to [`ErrorKind`] and HTTP statuses.

use kontti_core::ErrorKind;

use crate::Revision;

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The key does not exist.
    #[error("key {key:?} not found")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// A create found the key already there.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key asked for.
        key: String,
    },
    /// A compare-and-swap found a newer revision than the caller expected.
    #[error(
        "key {key:?} was modified: expected revision {expected}, current revision is {current}"
    )]
    Conflict {
        /// The key asked for.
        key: String,
        /// The `mod_revision` the caller expected.
        expected: Revision,
        /// The key's current `mod_revision`.
        current: Revision,
    },
    /// The revision asked for is older than the history the store keeps.
    #[error("revision {requested} is compacted: the oldest revision kept is {compacted}")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The store's compaction point: revisions after it are kept (0 when etcd does not report it,
        /// as for a read at a compacted revision).
        compacted: Revision,
    },
    /// A watch consumer did not keep up and its bounded buffer filled: re-list and watch again.
    #[error(
        "watch cut off: the consumer fell behind by more than {buffered} events or {bytes} bytes"
    )]
    TooSlow {
        /// How many events the watch buffers.
        buffered: usize,
        /// How many bytes of events the watch buffers.
        bytes: usize,
    },
    /// The request is malformed (empty key, future revision, bad datastore URL).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// The datastore cannot be reached or is closed; retrying later may succeed.
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
    /// The datastore holds data this version cannot read.
    #[error("datastore is corrupt: {0}")]
    Corrupt(String),
    /// An unexpected failure of the datastore.
    #[error("datastore error: {0}")]
    Internal(String),
}

impl StoreError {
    /// The kind of failure, for exit codes and generic HTTP mapping. [`StoreError::Compacted`] and
    /// [`StoreError::TooSlow`] are [`ErrorKind::Conflict`]; see [`StoreError::http_status`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            StoreError::Conflict { .. }
            | StoreError::Compacted { .. }
            | StoreError::TooSlow { .. } => ErrorKind::Conflict,
            StoreError::Invalid(_) => ErrorKind::Invalid,
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::Corrupt(_) | StoreError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The HTTP status an API server answers with: 410 Gone for a compacted revision or a watch that
    /// was cut off (the client re-lists, as Kubernetes clients do), otherwise that of [`Self::kind`].
    pub fn http_status(&self) -> u16 {
        match self {
            StoreError::Compacted { .. } | StoreError::TooSlow { .. } => 410,
            other => other.kind().http_status(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_errors_map_to_410_and_others_follow_their_kind() {
        let compacted = StoreError::Compacted {
            requested: 1,
            compacted: 5,
        };
        assert_eq!(compacted.http_status(), 410);
        assert_eq!(
            StoreError::TooSlow {
                buffered: 8,
                bytes: 1 << 20
            }
            .http_status(),
            410
        );
        let conflict = StoreError::Conflict {
            key: "/a".into(),
            expected: 1,
            current: 2,
        };
        assert_eq!(conflict.http_status(), 409);
        assert_eq!(StoreError::Unavailable("down".into()).http_status(), 503);
        assert_eq!(StoreError::NotFound { key: "/a".into() }.http_status(), 404);
        assert_eq!(
            conflict.to_string(),
            "key \"/a\" was modified: expected revision 1, current revision is 2"
        );
    }
}
