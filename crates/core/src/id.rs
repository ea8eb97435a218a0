//! Container identifiers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// empty container id
    #[error("empty container id")]
    Empty,
    /// container id too long
    #[error("container id {0:?} is longer than 1024 bytes")]
    TooLong(String),
    /// container id has a character outside [A-Za-z0-9_.+-] or starts with '.' or '-'
    #[error(
        "invalid container id {0:?}: use letters, digits, '_', '.', '+', '-' and do not start with '.' or '-'"
    )]
    BadCharacter(String),
}

/// The id of a container: a path-safe name (`[A-Za-z0-9][A-Za-z0-9_.+-]*`),
/// as runc accepts. Being path-safe, it can name a state directory directly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

impl ContainerId {
    /// Checks `s` and wraps it.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > 1024 {
            return Err(IdError::TooLong(s));
        }
        let first_ok = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let rest_ok = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'));
        if !first_ok || !rest_ok {
            return Err(IdError::BadCharacter(s));
        }
        Ok(ContainerId(s))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ContainerId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ContainerId::new(s)
    }
}

impl TryFrom<String> for ContainerId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ContainerId::new(s)
    }
}

impl From<ContainerId> for String {
    fn from(id: ContainerId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_style_ids() {
        for ok in ["a", "abc-123", "my_container.1", "x+y", "_x", "0abc"] {
            assert!(ContainerId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_path_tricks_and_empty() {
        assert_eq!(ContainerId::new(""), Err(IdError::Empty));
        for bad in ["..", ".hidden", "-flag", "a/b", "a b", "../../etc", "a\0b"] {
            assert!(ContainerId::new(bad).is_err(), "{bad:?}");
        }
        assert!(ContainerId::new("a".repeat(1025)).is_err());
    }

    #[test]
    fn serde_validates() {
        let r: Result<ContainerId, _> = serde_json::from_str("\"../x\"");
        assert!(r.is_err());
        let id: ContainerId = serde_json::from_str("\"ok\"").unwrap();
        assert_eq!(id.as_str(), "ok");
    }
}
