//! Errors of registry operations.

use kontti_core::{Digest, ErrorKind};

/// Why a pull, push or login failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry could not be reached or the connection broke.
    #[error("{url}: {reason}")]
    Http {
        /// The request URL.
        url: String,
        /// The transport error, with its causes.
        reason: String,
    },
    /// The registry answered with an error status.
    #[error("{url}: registry answered {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        /// The request URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error message, if any.
        message: Option<String>,
    },
    /// Authentication failed.
    #[error("unauthorized: {registry}: {reason}")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// What failed.
        reason: String,
    },
    /// Content does not have the digest it was asked for.
    #[error("digest mismatch: expected {expected}, got {actual} from {url}")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
        /// Where it came from.
        url: String,
    },
    /// The store refused a downloaded blob (wrong digest or size).
    #[error("blob {digest} failed verification: {reason}")]
    Verify {
        /// The blob.
        digest: Digest,
        /// What the store found.
        reason: String,
    },
    /// A blob did not have its announced size.
    #[error(
        "blob {digest}: expected {expected} bytes, got {actual} (truncated or oversized download)"
    )]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size in the manifest.
        expected: u64,
        /// The bytes received.
        actual: u64,
    },
    /// A manifest of a kind kontti does not handle.
    #[error("unsupported manifest media type {media_type:?} for {reference}")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
        /// The reference being pulled.
        reference: String,
    },
    /// An index without the requested platform.
    #[error("no image for platform {platform} in {reference} (available: {available})")]
    PlatformNotFound {
        /// The platform asked for.
        platform: String,
        /// The reference being pulled.
        reference: String,
        /// The platforms the index lists.
        available: String,
    },
    /// A manifest that cannot be parsed or is too large.
    #[error("invalid manifest {reference}: {reason}")]
    ManifestInvalid {
        /// The manifest's reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// Local I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The disk (or quota) filled up.
    #[error("no space left on device while {context}")]
    NoSpace {
        /// What was being done.
        context: String,
    },
    /// Credentials could not be read.
    #[error(transparent)]
    Auth(#[from] super::auth::AuthError),
    /// The registries config is unusable.
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
}

impl ClientError {
    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Http { .. } => ErrorKind::Unavailable,
            ClientError::Status { status, .. } => match status {
                401 | 403 => ErrorKind::Forbidden,
                404 => ErrorKind::NotFound,
                429 | 500..=599 => ErrorKind::Unavailable,
                _ => ErrorKind::Invalid,
            },
            ClientError::Unauthorized { .. } => ErrorKind::Forbidden,
            ClientError::DigestMismatch { .. }
            | ClientError::Verify { .. }
            | ClientError::SizeMismatch { .. }
            | ClientError::UnsupportedMediaType { .. }
            | ClientError::ManifestInvalid { .. } => ErrorKind::Invalid,
            ClientError::PlatformNotFound { .. } => ErrorKind::NotFound,
            ClientError::Io { .. } => ErrorKind::Internal,
            ClientError::NoSpace { .. } => ErrorKind::Unavailable,
            ClientError::Auth(e) => e.kind(),
            ClientError::Config(e) => e.kind(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> ClientError {
        if is_no_space(&source) {
            return ClientError::NoSpace {
                context: context.into(),
            };
        }
        ClientError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A transport error's message with its sources (reqwest hides the cause).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Whether an I/O error is a full disk (or quota), also when the store
/// wrapped its own error in the I/O error.
fn is_no_space(e: &std::io::Error) -> bool {
    if e.kind() == std::io::ErrorKind::StorageFull {
        return true;
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<kontti_image::StoreError>())
        .is_some_and(|s| matches!(s, kontti_image::StoreError::NoSpace { .. }))
}
