//! Streaming digest computation for verifying what crosses the wire.

use kontti_core::{Algorithm, Digest};
use sha2::{Digest as _, Sha256, Sha512};

/// Hashes a stream incrementally with the algorithm of an expected digest.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(Sha256),
    /// SHA-512 state.
    Sha512(Sha512),
}

impl Hasher {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (alg, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        // A hex encoding of the algorithm's own output always validates.
        match Digest::new(alg, hex) {
            Ok(d) => d,
            Err(e) => unreachable!("hash output is valid hex: {e}"),
        }
    }
}

/// The sha256 digest of `data`.
pub fn sha256_of(data: &[u8]) -> Digest {
    let mut h = Hasher::new(Algorithm::Sha256);
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hasher_matches_known_value() {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(b"");
        assert_eq!(
            h.finish().to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), sha256_of(b"hello world"));
    }
}
