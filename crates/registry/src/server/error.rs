//! The registry's answers when a request fails: spec-shaped JSON error bodies
//! (`{"errors":[{"code":...,"message":...}]}`) with the status the distribution
//! spec gives each code. This is the one place that maps failures to the wire.

use serde_json::json;

/// A failed request, as the distribution spec's error codes name it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// blob unknown to registry
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(String),
    /// blob upload unknown to registry
    #[error("blob upload unknown to registry: {0}")]
    BlobUploadUnknown(String),
    /// blob upload invalid
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// provided digest did not match uploaded content
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    /// manifest references a blob the repository does not have
    #[error("manifest references unknown blob {0}")]
    ManifestBlobUnknown(String),
    /// manifest invalid
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// manifest unknown
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// invalid repository name
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    /// repository name not known to registry
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    /// provided length did not match content length
    #[error("provided length did not match content length: {0}")]
    SizeInvalid(String),
    /// authentication required
    #[error("authentication required")]
    Unauthorized,
    /// the operation is unsupported
    #[error("the operation is unsupported: {0}")]
    Unsupported(String),
    /// requested range not satisfiable
    #[error("requested range not satisfiable: {0}")]
    RangeInvalid(String),
    /// the endpoint does not exist
    #[error("not found")]
    NotFound,
    /// the method is not allowed on this endpoint
    #[error("method not allowed")]
    MethodNotAllowed,
    /// an internal failure (disk I/O)
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The spec's error code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BlobUnknown(_) => "BLOB_UNKNOWN",
            ApiError::BlobUploadUnknown(_) => "BLOB_UPLOAD_UNKNOWN",
            ApiError::BlobUploadInvalid(_) | ApiError::RangeInvalid(_) => "BLOB_UPLOAD_INVALID",
            ApiError::DigestInvalid(_) => "DIGEST_INVALID",
            ApiError::ManifestBlobUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
            ApiError::ManifestInvalid(_) => "MANIFEST_INVALID",
            ApiError::ManifestUnknown(_) => "MANIFEST_UNKNOWN",
            ApiError::NameInvalid(_) => "NAME_INVALID",
            ApiError::NameUnknown(_) | ApiError::NotFound => "NAME_UNKNOWN",
            ApiError::SizeInvalid(_) => "SIZE_INVALID",
            ApiError::Unauthorized => "UNAUTHORIZED",
            ApiError::Unsupported(_) | ApiError::MethodNotAllowed => "UNSUPPORTED",
            ApiError::Internal(_) => "UNKNOWN",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BlobUnknown(_)
            | ApiError::BlobUploadUnknown(_)
            | ApiError::ManifestUnknown(_)
            | ApiError::NameUnknown(_)
            | ApiError::NotFound => 404,
            ApiError::BlobUploadInvalid(_)
            | ApiError::DigestInvalid(_)
            | ApiError::ManifestBlobUnknown(_)
            | ApiError::ManifestInvalid(_)
            | ApiError::NameInvalid(_)
            | ApiError::SizeInvalid(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::MethodNotAllowed => 405,
            ApiError::Unsupported(_) => 405,
            ApiError::RangeInvalid(_) => 416,
            ApiError::Internal(_) => 500,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let v = json!({"errors": [{"code": self.code(), "message": self.to_string()}]});
        v.to_string().into_bytes()
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_spec_shaped() {
        let e = ApiError::BlobUnknown("sha256:00".into());
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(e.status(), 404);
        assert_eq!(ApiError::Unauthorized.status(), 401);
        assert_eq!(
            ApiError::DigestInvalid(String::new()).code(),
            "DIGEST_INVALID"
        );
    }
}
