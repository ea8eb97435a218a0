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

    /// Writes `name`'s state file as `create` would (without touching the
    /// host), with `id` ("" for state written before ids existed).
    fn store(dir: &std::path::Path, name: &str, id: &str) {
        let net = dir.join("networks").join(name);
        std::fs::create_dir_all(&net).unwrap();
        let mut v = serde_json::json!({
            "info": {"name": name, "bridge": "kt0", "subnet": "10.9.0.0/24",
                     "gateway": "10.9.0.1", "mtu": 1500},
            "dns_pid": null, "endpoints": {},
        });
        if !id.is_empty() {
            v["id"] = id.into();
        }
        std::fs::write(net.join("network.json"), v.to_string()).unwrap();
    }

    #[test]
    fn networks_are_found_by_name_id_and_unique_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let nets = Networks::new(crate::NetConfig::new(dir.path()));
        let (a, b) = (
            format!("ab1{}", "0".repeat(61)),
            format!("ab2{}", "1".repeat(61)),
        );
        store(dir.path(), "front", &a);
        store(dir.path(), "back", &b);
        // a name that is also hex wins over an id prefix
        store(dir.path(), "ab", &format!("cd{}", "2".repeat(62)));
        let name = |k: &str| nets.inspect(k).map(|s| s.info.name);
        assert_eq!(name("front").unwrap(), "front");
        assert_eq!(name(&a).unwrap(), "front");
        assert_eq!(name("AB1").unwrap(), "front");
        assert_eq!(name("ab2").unwrap(), "back");
        assert_eq!(name("ab").unwrap(), "ab");
        assert_eq!(name("cd").unwrap(), "ab");
        let e = nets.inspect("a").unwrap_err();
        assert_eq!(e.to_string(), "multiple networks found with prefix: a");
        assert_eq!(e.kind(), kontti_core::ErrorKind::Invalid);
        let e = nets.inspect("ef").unwrap_err();
        assert_eq!(e.to_string(), "network ef not found");
        assert!(matches!(
            nets.inspect("no/such"),
            Err(NetworkError::InvalidName(_))
        ));
    }

    #[test]
    fn networks_without_an_id_get_one_once() {
        let dir = tempfile::tempdir().unwrap();
        let nets = Networks::new(crate::NetConfig::new(dir.path()));
        store(dir.path(), "old", "");
        store(dir.path(), "new", &format!("ee{}", "3".repeat(62)));
        let first = nets.list().unwrap();
        let old = first.iter().find(|n| n.info.name == "old").unwrap();
        assert_eq!(old.id.len(), 64);
        // persisted: the same id from every later read
        assert_eq!(nets.inspect("old").unwrap().id, old.id);
        assert_eq!(nets.inspect(&old.id[..10]).unwrap().info.name, "old");
        let again = nets.list().unwrap();
        assert_eq!(first, again);
        // a network of the old kind read by inspect first
        store(dir.path(), "older", "");
        let id = nets.inspect("older").unwrap().id;
        let listed = nets.list().unwrap();
        assert_eq!(
            listed.iter().find(|n| n.info.name == "older").unwrap().id,
            id
        );
    }

    #[test]
    fn only_hex_can_be_an_id_prefix() {
        assert!(id_like("abc123"));
        assert!(!id_like(""));
        assert!(!id_like("net-1"));
        assert!(!id_like(&"a".repeat(65)));
    }
}
