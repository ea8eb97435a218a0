//! Basic authentication against an htpasswd file of bcrypt entries, as
//! `htpasswd -B` writes them (`user:$2y$05$...`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Why an htpasswd file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    /// The file cannot be read.
    #[error("cannot read htpasswd file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not `user:bcrypt-hash`.
    #[error(
        "htpasswd file {path} line {line}: expected USER:HASH with a bcrypt hash ($2y$, $2b$ or $2a$; make it with htpasswd -B)"
    )]
    BadLine {
        /// The file.
        path: String,
        /// The 1-based line number.
        line: usize,
    },
}

impl HtpasswdError {
    /// The error class.
    pub fn kind(&self) -> kontti_core::ErrorKind {
        match self {
            HtpasswdError::Read { .. } => kontti_core::ErrorKind::NotFound,
            HtpasswdError::BadLine { .. } => kontti_core::ErrorKind::Invalid,
        }
    }
}

/// The users of an htpasswd file. Successful checks are remembered (as a
/// hash of user and password) so that bcrypt's deliberate slowness is paid
/// once per client, not once per request.
#[derive(Debug)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text, &p)
    }

    fn parse(text: &str, path: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || HtpasswdError::BadLine {
                path: path.to_owned(),
                line: i + 1,
            };
            let (user, hash) = line.split_once(':').ok_or_else(bad)?;
            let bcrypt = ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p));
            if user.is_empty() || !bcrypt {
                return Err(bad());
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Checks an `Authorization` header value; true when it carries Basic
    /// credentials of a user in the file.
    pub fn check_header(&self, header: Option<&str>) -> bool {
        let Some(encoded) = header.and_then(|h| h.strip_prefix("Basic ")) else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(raw) else {
            return false;
        };
        let Some((user, password)) = text.split_once(':') else {
            return false;
        };
        self.check(user, password)
    }

    /// Checks a user and password.
    pub fn check(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0u8])
            .chain_update(password.as_bytes())
            .chain_update([0u8])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        if let Ok(cache) = self.verified.lock()
            && cache.contains(&key)
        {
            return true;
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok && let Ok(mut cache) = self.verified.lock() {
            cache.insert(key);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_bcrypt_entries() {
        let hash = bcrypt::hash("secret", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        let h = Htpasswd::parse(&format!("# users\nalice:{hash}\n"), "f").unwrap();
        assert!(h.check("alice", "secret"));
        assert!(h.check("alice", "secret"), "cached answer");
        assert!(!h.check("alice", "wrong"));
        assert!(!h.check("bob", "secret"));
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:secret")
        );
        assert!(h.check_header(Some(&header)));
        assert!(!h.check_header(Some("Bearer x")));
        assert!(!h.check_header(None));
    }

    #[test]
    fn refuses_non_bcrypt_lines() {
        let e = Htpasswd::parse("alice:{SHA}abc\n", "f").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(Htpasswd::parse("nocolon\n", "f").is_err());
    }
}
