//! The one classification of errors that edges (CLI exit codes, HTTP status
//! codes) translate from.

use std::fmt;

/// What class of failure an error is. Every crate's error enum maps each of its
/// variants onto one kind; binaries and servers map kinds onto exit codes or
/// wire codes in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The named object does not exist.
    NotFound,
    /// An object with that name or id exists already.
    AlreadyExists,
    /// The object is not in a state that allows the operation.
    Conflict,
    /// The input is malformed or violates a constraint.
    Invalid,
    /// A dependency (kernel feature, service, disk) is not available now.
    Unavailable,
    /// The caller is not allowed to do this.
    Forbidden,
    /// Anything else: an internal failure or an unexpected system error.
    Internal,
}

impl ErrorKind {
    /// The process exit code a command-line tool uses for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::NotFound => 2,
            ErrorKind::AlreadyExists => 3,
            ErrorKind::Conflict => 4,
            ErrorKind::Invalid => 5,
            ErrorKind::Unavailable => 6,
            ErrorKind::Forbidden => 7,
            ErrorKind::Internal => 1,
        }
    }

    /// The HTTP status code an API server uses for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::AlreadyExists => 409,
            ErrorKind::Conflict => 409,
            ErrorKind::Invalid => 422,
            ErrorKind::Unavailable => 503,
            ErrorKind::Forbidden => 403,
            ErrorKind::Internal => 500,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Internal => "internal",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_distinct_exit_codes() {
        let kinds = [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::Conflict,
            ErrorKind::Invalid,
            ErrorKind::Unavailable,
            ErrorKind::Forbidden,
            ErrorKind::Internal,
        ];
        let mut codes: Vec<i32> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(codes.iter().all(|c| *c != 0));
    }
}
