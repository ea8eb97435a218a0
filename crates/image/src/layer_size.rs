//! Uncompressed layer sizes, what `kontti images` shows as SIZE (as podman
//! does: the length of each layer's uncompressed tar stream, summed).
//!
//! A compressed layer's uncompressed length is known only once it has been
//! decompressed, so the unpacker records it under the layer's diffID in
//! `sizes/<algorithm>/<hex>` beside the blobs. A record is a cache: one that
//! is missing or unreadable falls back to the blob's own size. A record
//! states a fact about content (a diffID has one size), so one left behind
//! by a removed image is never wrong; `image prune` leaves them (a few bytes
//! each).

use std::fs;
use std::io;
use std::path::PathBuf;

use kontti_core::Digest;

use crate::image::Image;
use crate::media::{Compression, MediaKind, media_kind};
use crate::store::{ContentStore, Result, StoreError, write_atomic};

impl ContentStore {
    fn size_record(&self, diff_id: &Digest) -> PathBuf {
        self.root()
            .join("sizes")
            .join(diff_id.algorithm().as_str())
            .join(diff_id.hex())
    }

    /// Records that the layer with `diff_id` is `size` bytes uncompressed.
    pub fn record_layer_size(&self, diff_id: &Digest, size: u64) -> Result<()> {
        let path = self.size_record(diff_id);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| StoreError::io("create directory", dir, e))?;
        }
        write_atomic(self.root(), &path, size.to_string().as_bytes())
    }

    /// The recorded uncompressed size of the layer with `diff_id`.
    pub fn layer_size(&self, diff_id: &Digest) -> Option<u64> {
        match fs::read_to_string(self.size_record(diff_id)) {
            Ok(s) => s.trim().parse().ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(%diff_id, error = %e, "cannot read layer size record");
                None
            }
        }
    }
}

impl Image {
    /// The image's unpacked size: its layers' uncompressed sizes summed.
    /// An uncompressed layer is its blob's size; a compressed one uses the
    /// size recorded when it was unpacked, or (not unpacked yet) its blob's
    /// size.
    pub fn unpacked_size(&self, store: &ContentStore) -> u64 {
        self.layers()
            .iter()
            .zip(self.diff_ids())
            .map(|(layer, diff_id)| match media_kind(&layer.media_type) {
                MediaKind::Layer(Compression::None) => layer.size,
                _ => store.layer_size(diff_id).unwrap_or(layer.size),
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let d = crate::hash::sha256(b"layer");
        assert_eq!(store.layer_size(&d), None);
        store.record_layer_size(&d, 12345).unwrap();
        assert_eq!(store.layer_size(&d), Some(12345));
        fs::write(store.size_record(&d), "garbage").unwrap();
        assert_eq!(store.layer_size(&d), None);
    }
}
