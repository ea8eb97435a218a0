//! Where blobs live: the seam between the registry code and kontti's content
//! store.
//!
//! The registry server and client only need four things of a content store:
//! whether a blob is there (and its size), a path to read it from, and to adopt
//! a fully written, verified file atomically. [`BlobStore`] names those.

use std::io;
use std::path::{Path, PathBuf};

use kontti_core::Digest;

/// A content-addressed blob store.
///
/// Vocabulary: a *blob* is immutable content named by its digest; *adopting*
/// a file moves it (by rename) into the store under a digest the caller has
/// verified, so that readers see the whole blob or nothing.
pub trait BlobStore: Send + Sync + 'static {
    /// The size of a stored blob, or `None` when the store does not have it.
    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>>;
    /// The path of a stored blob's file (read-only use).
    fn blob_path(&self, digest: &Digest) -> PathBuf;
    /// Moves `staged` (fully written and synced, content verified to have
    /// `digest`) into the store. Adopting a blob the store has is a no-op
    /// that removes `staged`.
    fn adopt(&self, staged: &Path, digest: &Digest) -> io::Result<()>;
    /// A directory on the store's file system for partial downloads that
    /// [`BlobStore::adopt`] can rename from. Partial files survive a crash so
    /// that the next download resumes them.
    fn ingest_dir(&self) -> PathBuf;
}
