//! The content store: blobs by digest in an OCI image layout, verified atomic
//! ingests that can be resumed, and leases that keep garbage collection away
//! from work in progress.
//!
//! On disk (`root` is the directory given to [`ContentStore::open`]):
//!
//! ```text
//! oci-layout                 {"imageLayoutVersion": "1.0.0"}
//! index.json                 named references (see the refs module)
//! blobs/<algorithm>/<hex>    committed content, read-only, never rewritten
//! ingest/<key>/data          a blob being written (resumable)
//! ingest/<key>/lock          flock held by the writing process
//! leases/<name>              flock held by a pull or build; lists digests it protects
//! locks/gc.lock              exclusive during garbage collection, shared while committing
//! locks/index.lock           exclusive while rewriting index.json
//! ```
//!
//! Cross-process safety comes from file locks and atomic renames only, so a
//! CLI pull, a build and the node agent can share one root.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use kontti_core::{Algorithm, Digest, ErrorKind};
use rustix::fs::{FlockOperation, flock};

use crate::hash::Hasher;
use crate::lease::Lease;

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// The disk (or quota) is full.
    #[error("no space left on device while writing {path}")]
    NoSpace {
        /// The file being written.
        path: PathBuf,
    },
    /// No blob with that digest.
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
    /// Content hashed to something other than expected.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The digest the caller expected.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// Content has the wrong length.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The digest or ingest.
        what: String,
        /// Expected size.
        expected: u64,
        /// Bytes received (so far, when too many).
        actual: u64,
    },
    /// Another process writes the same ingest.
    #[error("blob {0} is being written by another process")]
    IngestBusy(String),
    /// The directory is not a usable store.
    #[error("{path} is not a usable content store: {reason}")]
    BadLayout {
        /// The store root or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl StoreError {
    /// The kind of failure, for exit codes and HTTP statuses.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                ErrorKind::Forbidden
            }
            StoreError::Io { .. } => ErrorKind::Internal,
            StoreError::NoSpace { .. } => ErrorKind::Unavailable,
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::DigestMismatch { .. } | StoreError::SizeMismatch { .. } => {
                ErrorKind::Invalid
            }
            StoreError::IngestBusy(_) => ErrorKind::Conflict,
            StoreError::BadLayout { .. } => ErrorKind::Invalid,
        }
    }

    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> StoreError {
        if source.raw_os_error() == Some(libc_enospc()) {
            return StoreError::NoSpace {
                path: path.to_owned(),
            };
        }
        StoreError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, StoreError>;

/// A content-addressed blob store in an OCI image layout directory.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

impl ContentStore {
    /// Opens the store at `root`, creating the layout if the directory is new.
    pub fn open(root: impl AsRef<Path>) -> Result<ContentStore> {
        let root = root.as_ref().to_owned();
        for d in ["blobs/sha256", "blobs/sha512", "ingest", "leases", "locks"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(|e| StoreError::io("create directory", &p, e))?;
        }
        let layout = root.join("oci-layout");
        match fs::read_to_string(&layout) {
            Ok(s) => {
                if !s.contains("imageLayoutVersion") {
                    return Err(StoreError::BadLayout {
                        path: layout,
                        reason: "oci-layout has no imageLayoutVersion".into(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomic(&root, &layout, OCI_LAYOUT.as_bytes())?;
            }
            Err(e) => return Err(StoreError::io("read", &layout, e)),
        }
        let store = ContentStore { root };
        if !store.index_path().exists() {
            let _g = store.lock_index()?;
            if !store.index_path().exists() {
                store.write_index(&crate::refs::empty_index())?;
            }
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Whether the blob exists. A caller that then relies on the blob must
    /// hold a lease protecting it (see [`ContentStore::protect_if_present`]).
    pub fn has(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The size of a blob.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let p = self.blob_path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(digest.clone()))
            }
            Err(e) => Err(StoreError::io("stat", &p, e)),
        }
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound(digest.clone()),
            _ => StoreError::io("open", &p, e),
        })
    }

    /// Reads a whole blob, checking that it is at most `limit` bytes (for
    /// manifests and configs, never layers).
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let f = self.open_blob(digest)?;
        let mut buf = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| StoreError::io("read", &self.blob_path(digest), e))?;
        if buf.len() as u64 > limit {
            return Err(StoreError::SizeMismatch {
                what: format!("{digest} (a manifest or config is limited to {limit} bytes)"),
                expected: limit,
                actual: buf.len() as u64,
            });
        }
        Ok(buf)
    }

    /// Deletes a blob (no error if it is already gone). Prefer garbage
    /// collection, which honours references and leases.
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let p = self.blob_path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", &p, e)),
        }
    }

    /// Adds `digest` to `lease` and reports whether the blob exists, in one
    /// step that garbage collection cannot interleave with. Use it to decide
    /// whether a download can be skipped.
    pub fn protect_if_present(&self, lease: &Lease, digest: &Digest) -> Result<bool> {
        let _g = self.lock_gc_shared()?;
        lease.protect(digest)?;
        Ok(self.has(digest))
    }

    /// Stores `data` as a blob, verifying it against `expected` if given.
    pub fn put(&self, lease: &Lease, data: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        let mut w = self.ingest(lease, expected, Some(data.len() as u64))?;
        w.truncate()?;
        w.write_all(data)
            .map_err(|e| StoreError::io("write", &w.data_path, e))?;
        w.commit()
    }

    /// Starts (or resumes) writing a blob.
    ///
    /// With an `expected` digest the ingest is keyed by it: if a previous
    /// writer (maybe a killed process) left a partial ingest, this writer
    /// resumes it and [`BlobWriter::offset`] says how many bytes are already
    /// there (call [`BlobWriter::truncate`] to start over instead). Without
    /// one the ingest is fresh and the digest is computed. `expected_size`,
    /// when known, is enforced on every write and on commit. Only one process
    /// writes an ingest at a time; a second gets [`StoreError::IngestBusy`].
    pub fn ingest(
        &self,
        lease: &Lease,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<BlobWriter> {
        let key = match expected {
            Some(d) => {
                lease.protect(d)?;
                format!("{}-{}", d.algorithm(), d.hex())
            }
            None => unique_name("tmp"),
        };
        let dir = self.root.join("ingest").join(&key);
        let lock_path = dir.join("lock");
        let mut attempts = 0;
        let lock = loop {
            fs::create_dir_all(&dir).map_err(|e| StoreError::io("create directory", &dir, e))?;
            let lock = match OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&lock_path)
            {
                Ok(f) => f,
                // Removed by garbage collection right after our mkdir.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => {
                    attempts += 1;
                    continue;
                }
                Err(e) => return Err(StoreError::io("open", &lock_path, e)),
            };
            match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => return Err(StoreError::IngestBusy(key)),
                Err(e) => return Err(StoreError::io("lock", &lock_path, e.into())),
            }
            // Garbage collection may have removed an abandoned ingest between
            // our open and our lock: then start again.
            if lock_path.exists() || attempts == 3 {
                break lock;
            }
            attempts += 1;
        };
        let data_path = dir.join("data");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o644)
            .open(&data_path)
            .map_err(|e| StoreError::io("open", &data_path, e))?;
        let algorithm = expected.map_or(Algorithm::Sha256, Digest::algorithm);
        let mut hasher = Hasher::new(algorithm);
        // Resume: rehash what a previous writer left.
        let mut offset = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| StoreError::io("read", &data_path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        let mut w = BlobWriter {
            store: self.clone(),
            lease_path: lease.path().to_owned(),
            lease_file: lease.file_clone()?,
            dir,
            data_path,
            file,
            _lock: lock,
            algorithm,
            hasher,
            offset,
            expected: expected.cloned(),
            expected_size,
            failed: false,
        };
        if expected_size.is_some_and(|s| offset > s) {
            w.truncate()?;
        }
        Ok(w)
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    pub(crate) fn lock_index(&self) -> Result<File> {
        self.lock_file("index.lock", FlockOperation::LockExclusive)
    }

    pub(crate) fn lock_gc_shared(&self) -> Result<File> {
        self.lock_file("gc.lock", FlockOperation::LockShared)
    }

    pub(crate) fn lock_gc_exclusive(&self) -> Result<File> {
        self.lock_file("gc.lock", FlockOperation::LockExclusive)
    }

    fn lock_file(&self, name: &str, op: FlockOperation) -> Result<File> {
        let p = self.root.join("locks").join(name);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| StoreError::io("open", &p, e))?;
        flock(&f, op).map_err(|e| StoreError::io("lock", &p, e.into()))?;
        Ok(f)
    }

    pub(crate) fn write_index(&self, index: &crate::media::Index) -> Result<()> {
        let data = serde_json::to_vec_pretty(index).map_err(|e| StoreError::BadLayout {
            path: self.index_path(),
            reason: e.to_string(),
        })?;
        write_atomic(&self.root, &self.index_path(), &data)
    }
}

/// A blob being written: hashes on the way, verifies digest and size on
/// [`BlobWriter::commit`], fsyncs and renames into place atomically.
///
/// Dropping a writer without committing keeps the partial ingest so that a
/// later writer with the same expected digest can resume it (garbage
/// collection removes it once no process holds it). A failed write (disk full)
/// or a failed verification removes the partial ingest.
pub struct BlobWriter {
    store: ContentStore,
    lease_path: PathBuf,
    lease_file: File,
    dir: PathBuf,
    data_path: PathBuf,
    file: File,
    _lock: File,
    algorithm: Algorithm,
    hasher: Hasher,
    offset: u64,
    expected: Option<Digest>,
    expected_size: Option<u64>,
    failed: bool,
}

impl BlobWriter {
    /// Bytes written so far, including those a resumed ingest started with.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Discards what was written and starts from byte 0.
    pub fn truncate(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| StoreError::io("truncate", &self.data_path, e))?;
        self.hasher = Hasher::new(self.algorithm);
        self.offset = 0;
        Ok(())
    }

    /// The file being written.
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// Discards the ingest, partial data included.
    pub fn abort(mut self) {
        self.failed = true;
    }

    /// Verifies, syncs and moves the blob into place; returns its digest.
    /// If the blob exists already the ingest is discarded. On a mismatch the
    /// ingest is removed and nothing enters the store.
    pub fn commit(mut self) -> Result<Digest> {
        let result = self.commit_inner();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn commit_inner(&mut self) -> Result<Digest> {
        let what = || {
            self.expected
                .as_ref()
                .map_or_else(|| "new blob".to_owned(), Digest::to_string)
        };
        if let Some(s) = self.expected_size
            && s != self.offset
        {
            return Err(StoreError::SizeMismatch {
                what: what(),
                expected: s,
                actual: self.offset,
            });
        }
        let actual = std::mem::replace(&mut self.hasher, Hasher::new(self.algorithm)).finish();
        if let Some(e) = &self.expected
            && *e != actual
        {
            return Err(StoreError::DigestMismatch {
                expected: e.clone(),
                actual,
            });
        }
        self.file
            .sync_all()
            .map_err(|e| StoreError::io("sync", &self.data_path, e))?;
        let _g = self.store.lock_gc_shared()?;
        Lease::protect_in(&self.lease_file, &self.lease_path, &actual)?;
        let dest = self.store.blob_path(&actual);
        if !dest.exists() {
            fs::rename(&self.data_path, &dest)
                .map_err(|e| StoreError::io("rename into place", &dest, e))?;
            if let Some(parent) = dest.parent() {
                sync_dir(parent)?;
            }
        }
        // The ingest directory goes away on drop.
        self.failed = true;
        Ok(actual)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(s) = self.expected_size
            && self.offset + buf.len() as u64 > s
        {
            self.failed = true;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "more data than the expected {s} bytes for {}",
                    self.expected
                        .as_ref()
                        .map_or_else(|| "blob".to_owned(), Digest::to_string)
                ),
            ));
        }
        match self.file.write(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.offset += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.failed
            && let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.dir.display(), error = %e, "cannot remove ingest");
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique across processes and threads: `<prefix>-<pid>-<nanos>-<n>`.
pub(crate) fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `data` to `path` through a temporary file in `root`'s ingest
/// directory (or next to `path`), fsync and rename.
pub(crate) fn write_atomic(root: &Path, path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(root);
    let tmp = dir.join(format!(".{}", unique_name("tmp")));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::io("write", path, e));
    }
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("sync directory", dir, e))
}
