//! Where blobs live: the seam between the registry code and kontti's content
//! store ([`kontti_image::ContentStore`]).
//!
//! The registry server and client need only this of a store: whether a blob
//! is there (and its size), a path to read it from, and a resumable writer
//! that verifies digest and size before the blob becomes visible.
//! [`ContentBlobs`] provides it over the content store, holding a lease so
//! that garbage collection in another process leaves what it writes alone.

use std::io::{self, Write};
use std::path::PathBuf;

use kontti_core::Digest;
use kontti_image::{BlobWriter, ContentStore, Lease};

/// A content-addressed blob store.
///
/// Vocabulary: a *blob* is immutable content named by its digest. A *sink*
/// receives a blob's bytes; if an earlier sink for the same digest was
/// interrupted (even by a killed process) the new one *resumes* at
/// [`BlobSink::offset`]. *Committing* verifies digest and size, syncs and
/// makes the blob visible atomically; on failure nothing becomes visible.
pub trait BlobStore: Send + Sync + 'static {
    /// The size of a stored blob, or `None` when the store does not have it.
    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>>;
    /// The path of a stored blob's file (read-only use).
    fn blob_path(&self, digest: &Digest) -> PathBuf;
    /// A sink for the blob `digest` of `size` bytes.
    fn sink(&self, digest: &Digest, size: u64) -> io::Result<Box<dyn BlobSink>>;
}

/// Receives one blob's bytes. See [`BlobStore`].
pub trait BlobSink: Write + Send {
    /// Bytes already held (a resumed ingest starts above zero).
    fn offset(&self) -> u64;
    /// Discards what is held and starts again at zero.
    fn truncate(&mut self) -> io::Result<()>;
    /// Verifies, syncs and publishes the blob.
    fn commit(self: Box<Self>) -> io::Result<()>;
}

/// [`BlobStore`] over kontti's content store.
pub struct ContentBlobs {
    store: ContentStore,
    lease: Lease,
    protect_reads: bool,
}

impl ContentBlobs {
    /// Opens the content store at `root`, with a lease named `purpose`.
    /// With `protect_reads`, every blob found present is added to the lease
    /// (a pull that relies on blobs it did not write); a long-running server
    /// passes false.
    pub fn open(
        root: &std::path::Path,
        purpose: &str,
        protect_reads: bool,
    ) -> io::Result<ContentBlobs> {
        let store = ContentStore::open(root).map_err(io::Error::other)?;
        let lease = store.lease(purpose).map_err(io::Error::other)?;
        Ok(ContentBlobs {
            store,
            lease,
            protect_reads,
        })
    }

    /// The content store.
    pub fn store(&self) -> &ContentStore {
        &self.store
    }

    /// The lease protecting what this handle writes.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }
}

impl BlobStore for ContentBlobs {
    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        let present = if self.protect_reads {
            self.store
                .protect_if_present(&self.lease, digest)
                .map_err(io::Error::other)?
        } else {
            self.store.has(digest)
        };
        if !present {
            return Ok(None);
        }
        self.store.size(digest).map(Some).map_err(io::Error::other)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.store.blob_path(digest)
    }

    fn sink(&self, digest: &Digest, size: u64) -> io::Result<Box<dyn BlobSink>> {
        let w = self
            .store
            .ingest(&self.lease, Some(digest), Some(size))
            .map_err(io::Error::other)?;
        Ok(Box::new(Sink(w)))
    }
}

struct Sink(BlobWriter);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl BlobSink for Sink {
    fn offset(&self) -> u64 {
        self.0.offset()
    }
    fn truncate(&mut self) -> io::Result<()> {
        self.0.truncate().map_err(io::Error::other)
    }
    fn commit(self: Box<Self>) -> io::Result<()> {
        self.0.commit().map(|_| ()).map_err(io::Error::other)
    }
}
