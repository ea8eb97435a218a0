//! redb's file backend, with blocks allocated when the file grows.
//!
//! redb grows its file with `set_len`, which leaves a hole; the first commit that writes into the hole
//! makes `fdatasync` also commit the filesystem's block allocation (an ext4 journal commit), which on
//! this project's reference disk costs several milliseconds more than a sync of overwritten blocks.
//! Filling the new range with zeros when the file grows moves that cost to the growth, which redb does
//! in large steps, instead of paying it on most commits of a growing store.

use std::fs::File;
use std::io;
use std::ops::Bound;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

const FILL_CHUNK: usize = 1 << 20;

/// A [`FileBackend`] that writes zeros over every range by which the file grows.
#[derive(Debug)]
pub(super) struct AllocatingFile {
    inner: FileBackend,
}

impl AllocatingFile {
    pub(super) fn new(file: File) -> Result<AllocatingFile, redb::DatabaseError> {
        Ok(AllocatingFile {
            inner: FileBackend::new(file)?,
        })
    }
}

impl StorageBackend for AllocatingFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut at = self.inner.len()?;
        if len > at {
            let zeros = vec![0u8; FILL_CHUNK];
            while at < len {
                let n = usize::try_from(len - at).map_or(FILL_CHUNK, |left| left.min(FILL_CHUNK));
                self.inner.write(at, &zeros[..n])?;
                at += n as u64;
            }
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
