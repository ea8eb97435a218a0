//! Network ids: a random 64-hex id per network, given at creation (and once,
//! under the state lock, to networks created before ids existed), and the
//! lookup of a network by name, id or unique id prefix as docker does it.

use std::fs::File;
use std::io::{self, Read};

use crate::networks::{NetworkError, NetworkState, Networks};

/// A new random network id: 64 lowercase hex characters whose first twelve
/// are not all digits (a short id must not read as a number).
pub(crate) fn new_network_id() -> io::Result<String> {
    let mut f = File::open("/dev/urandom")?;
    loop {
        let mut b = [0u8; 32];
        f.read_exact(&mut b)?;
        let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
        if !id[..12].bytes().all(|c| c.is_ascii_digit()) {
            return Ok(id);
        }
    }
}

/// Whether `s` can be an id or an id prefix.
fn id_like(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Networks {
    /// The network whose name is `key`, else whose id is `key`, else whose
    /// id starts with `key` (when only one does). Call with or without the
    /// state lock; takes none itself.
    pub(crate) fn find(&self, key: &str) -> Result<NetworkState, NetworkError> {
        match self.load(key) {
            Ok(s) => return Ok(s),
            Err(NetworkError::NotFound(_) | NetworkError::InvalidName(_)) => {}
            Err(e) => return Err(e),
        }
        if !id_like(key) {
            return Err(if crate::networks::valid_name(key) {
                NetworkError::NotFound(key.to_owned())
            } else {
                NetworkError::InvalidName(key.to_owned())
            });
        }
        let key_lc = key.to_ascii_lowercase();
        let mut found: Vec<NetworkState> = self
            .load_all()?
            .into_iter()
            .filter(|n| n.id.starts_with(&key_lc))
            .collect();
        if let Some(i) = found.iter().position(|n| n.id == key_lc) {
            return Ok(found.swap_remove(i));
        }
        match found.len() {
            0 => Err(NetworkError::NotFound(key.to_owned())),
            1 => Ok(found.remove(0)),
            _ => Err(NetworkError::Ambiguous(key.to_owned())),
        }
    }

    /// Gives `state` an id if it has none and persists it. Call with the
    /// state lock held.
    pub(crate) fn assign_id_locked(&self, state: &mut NetworkState) -> Result<(), NetworkError> {
        if state.id.is_empty() {
            state.id = new_network_id().map_err(|source| NetworkError::State {
                path: "/dev/urandom".into(),
                source,
            })?;
            self.save(state)?;
        }
        Ok(())
    }

    /// Gives each of `states` without an id one, under the state lock
    /// (re-reading each first: another process may have given it one).
    pub(crate) fn ensure_ids(&self, states: &mut [NetworkState]) -> Result<(), NetworkError> {
        if states.iter().all(|s| !s.id.is_empty()) {
            return Ok(());
        }
        let _lock = self.lock()?;
        for s in states.iter_mut().filter(|s| s.id.is_empty()) {
            match self.load(&s.info.name) {
                Ok(mut fresh) => {
                    self.assign_id_locked(&mut fresh)?;
                    *s = fresh;
                }
                // Removed meanwhile: keep what the caller read.
                Err(NetworkError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_differ() {
        let a = new_network_id().unwrap();
        let b = new_network_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
        assert!(!a[..12].bytes().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn only_hex_can_be_an_id_prefix() {
        assert!(id_like("abc123"));
        assert!(!id_like(""));
        assert!(!id_like("net-1"));
        assert!(!id_like(&"a".repeat(65)));
    }
}
