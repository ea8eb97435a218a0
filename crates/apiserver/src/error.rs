//! The API's error type and its rendering as a Kubernetes `Status` object.

use kontti_core::ErrorKind;
use kontti_store::StoreError;
use serde_json::{Value, json};

/// Why an API request failed. Each variant maps to one HTTP status and one Kubernetes `reason`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request carries no valid credential.
    #[error("Unauthorized")]
    Unauthorized,
    /// No such object.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// The resource, `deployments.apps`.
        resource: String,
        /// The object name.
        name: String,
    },
    /// No such path or resource type.
    #[error("the server could not find the requested resource")]
    NoRoute,
    /// An object with that name exists.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// The resource, `deployments.apps`.
        resource: String,
        /// The object name.
        name: String,
    },
    /// A precondition (resourceVersion, uid) failed.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {reason}")]
    Conflict {
        /// The resource, `deployments.apps`.
        resource: String,
        /// The object name.
        name: String,
        /// What changed.
        reason: String,
    },
    /// The object fails validation.
    #[error("{kind} \"{name}\" is invalid: {}", causes.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join(", "))]
    Invalid {
        /// The kind, `Deployment`.
        kind: String,
        /// The object name.
        name: String,
        /// (field path, message) pairs.
        causes: Vec<(String, String)>,
    },
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The request is not allowed in the current state (a terminating namespace).
    #[error("{0}")]
    Forbidden(String),
    /// The response format asked for is not served.
    #[error("{0}")]
    NotAcceptable(String),
    /// The verb is not supported on this resource.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// The body's media type is not one this server reads.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {0:?})"
    )]
    UnsupportedMediaType(String),
    /// A protobuf body holds a kind or a field this server does not decode.
    #[error("{0}")]
    UnsupportedProtobuf(String),
    /// The body is larger than the limit.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The requested resourceVersion is no longer available.
    #[error("too old resource version: {0}")]
    Gone(String),
    /// The datastore cannot be reached.
    #[error("the datastore is unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ApiError::Unauthorized | ApiError::Forbidden(_) => ErrorKind::Forbidden,
            ApiError::NotFound { .. } | ApiError::NoRoute => ErrorKind::NotFound,
            ApiError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            ApiError::Conflict { .. } | ApiError::Gone(_) => ErrorKind::Conflict,
            ApiError::Invalid { .. }
            | ApiError::BadRequest(_)
            | ApiError::MethodNotAllowed
            | ApiError::NotAcceptable(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::UnsupportedProtobuf(_)
            | ApiError::TooLarge { .. } => ErrorKind::Invalid,
            ApiError::Unavailable(_) => ErrorKind::Unavailable,
            ApiError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound { .. } | ApiError::NoRoute => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::MethodNotAllowed => 405,
            ApiError::NotAcceptable(_) => 406,
            ApiError::UnsupportedMediaType(_) | ApiError::UnsupportedProtobuf(_) => 415,
            ApiError::TooLarge { .. } => 413,
            ApiError::Gone(_) => 410,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::UnsupportedMediaType(_) | ApiError::UnsupportedProtobuf(_) => {
                "UnsupportedMediaType"
            }
            ApiError::TooLarge { .. } => "RequestEntityTooLarge",
            ApiError::Gone(_) => "Expired",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The Kubernetes `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.status(),
        });
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. } => {
                let (kind, group) = resource.split_once('.').unwrap_or((resource.as_str(), ""));
                Some(json!({"name": name, "group": group, "kind": kind}))
            }
            ApiError::Invalid { kind, name, causes } => Some(json!({
                "name": name,
                "kind": kind,
                "causes": causes.iter().map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": format!("{f}: {m}"), "field": f})).collect::<Vec<_>>(),
            })),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }

    /// An `Invalid` error with one cause.
    pub fn invalid(kind: &str, name: &str, field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            kind: kind.to_string(),
            name: name.to_string(),
            causes: vec![(field.to_string(), message.into())],
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Compacted { .. } | StoreError::TooSlow { .. } => {
                ApiError::Gone(e.to_string())
            }
            StoreError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_body_carries_code_reason_and_details() {
        let e = ApiError::NotFound {
            resource: "deployments.apps".into(),
            name: "web".into(),
        };
        let s = e.to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["details"]["group"], "apps");
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
    }

    #[test]
    fn invalid_lists_causes() {
        let e = ApiError::invalid(
            "Pod",
            "Bad_Name",
            "metadata.name",
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters",
        );
        assert_eq!(e.status(), 422);
        assert_eq!(
            e.to_status()["details"]["causes"][0]["field"],
            "metadata.name"
        );
    }
}
