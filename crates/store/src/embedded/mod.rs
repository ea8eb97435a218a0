//! The embedded backend: one redb file, one writer thread, in-process watch fan-out.
//!
//! Layout: table `kv` holds the current value of every key, table `log` holds one history record per
//! revision (the event and the value it replaced), table `meta` holds the current revision and the
//! compaction point. A read at a past revision starts from `kv` and undoes the newer history records; a
//! watch from a past revision replays `log` and then follows the live [`hub::Hub`].

mod codec;
mod file;
mod hub;
mod read;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadableDatabase, TableDefinition};
use tokio::sync::oneshot;

use crate::watch::{self, WatchSender};
use crate::{KeyValue, RangeResult, Revision, Store, StoreError, WatchStream, check_key};
use hub::Hub;
use writer::{Message, Op, Writer};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const LOG: TableDefinition<i64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

/// Events replayed from disk per read transaction while a watch catches up.
const REPLAY_CHUNK: usize = 256;

/// How much history the embedded store keeps for watches and reads at past revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryWindow {
    /// Keep at least this many of the newest revisions (0 = no limit by count).
    pub revisions: u64,
    /// Also drop revisions committed longer ago than this (`None` = no limit by age).
    pub max_age: Option<Duration>,
}

impl Default for HistoryWindow {
    /// The newest 100,000 revisions, and none older than 10 minutes: history beyond either limit is dropped.
    fn default() -> Self {
        HistoryWindow {
            revisions: 100_000,
            max_age: Some(Duration::from_secs(600)),
        }
    }
}

/// Settings of an [`EmbeddedStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// The history kept for watches and past reads.
    pub history: HistoryWindow,
    /// How many undelivered events a watch may buffer before it is cut off with
    /// [`StoreError::TooSlow`].
    pub watch_buffer: usize,
    /// How many bytes of undelivered events (keys, values and previous values) a watch may buffer
    /// before it is cut off; a single event of any size is always accepted.
    pub watch_buffer_bytes: usize,
    /// The most memory redb's page cache may use, in bytes.
    pub cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            history: HistoryWindow::default(),
            watch_buffer: 1024,
            watch_buffer_bytes: crate::watch::DEFAULT_WATCH_BYTES,
            cache_bytes: 64 << 20,
        }
    }
}

/// State the writer shares with readers.
#[derive(Debug)]
struct Shared {
    revision: AtomicI64,
    compacted: AtomicI64,
}

/// The default [`Store`]: a redb file on local disk, served in-process.
///
/// One file holds everything; a second process opening the same file fails (redb locks it). Cloning
/// the handle is cheap; the store closes when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    db: Arc<Database>,
    tx: mpsc::Sender<Message>,
    hub: Arc<Hub>,
    shared: Arc<Shared>,
    options: EmbeddedOptions,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl EmbeddedStore {
    /// Opens the store in the file at `path`, creating it (and its parent directory) if missing.
    pub fn open(path: &Path, options: EmbeddedOptions) -> Result<EmbeddedStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!(
                    "creating store directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| {
                StoreError::Unavailable(format!("opening store {}: {e}", path.display()))
            })?;
        let backend = file::AllocatingFile::new(file).map_err(|e| {
            StoreError::Unavailable(format!("opening store {}: {e}", path.display()))
        })?;
        let db = redb::Builder::new()
            .set_cache_size(options.cache_bytes)
            .create_with_backend(backend)
            .map_err(|e| {
                StoreError::Unavailable(format!("opening store {}: {e}", path.display()))
            })?;
        let txn = db.begin_write().map_err(db_error)?;
        {
            txn.open_table(KV).map_err(db_error)?;
            txn.open_table(LOG).map_err(db_error)?;
            txn.open_table(META).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        let (revision, compacted) = read::meta(&db.begin_read().map_err(db_error)?)?;
        tracing::debug!(path = %path.display(), revision, compacted, "opened embedded store");

        let db = Arc::new(db);
        let hub = Arc::new(Hub::new(revision));
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            rx,
            hub: hub.clone(),
            shared: shared.clone(),
            window: options.history,
            revision,
            compacted,
        };
        let handle = std::thread::Builder::new()
            .name("kontti-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Internal(format!("starting the store writer thread: {e}")))?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                db,
                tx,
                hub,
                shared,
                options,
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn write(&self, op: Op) -> Result<KeyValue, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .tx
            .send(Message::Write { op, reply })
            .map_err(|_| StoreError::Unavailable("the embedded store is closed".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the embedded store writer stopped".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Internal(format!("store read task failed: {e}")))?
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.tx.send(Message::Shutdown);
        if let Some(handle) = self.writer.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        check_key(key)?;
        let key = key.to_owned();
        self.read(move |db| read::get(db, &key)).await
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<RangeResult, StoreError> {
        let prefix = prefix.to_owned();
        let start_after = start_after.map(str::to_owned);
        self.read(move |db| read::range(db, &prefix, start_after.as_deref(), limit, at))
            .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        check_key(key)?;
        self.write(Op::Create {
            key: key.to_owned(),
            value,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue, StoreError> {
        check_key(key)?;
        self.write(Op::Update {
            key: key.to_owned(),
            value,
            expected: expected_mod_revision,
        })
        .await
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        check_key(key)?;
        self.write(Op::Delete {
            key: key.to_owned(),
            expected: expected_mod_revision,
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let compacted = self.inner.shared.compacted.load(Ordering::SeqCst);
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let capacity = self.inner.options.watch_buffer;
        let bytes = self.inner.options.watch_buffer_bytes;
        let (registered_at, live) = self.inner.hub.register(prefix, capacity, bytes)?;
        let (out, stream) = watch::channel(capacity, bytes);
        let db = self.inner.db.clone();
        tokio::spawn(forward(
            db,
            prefix.to_owned(),
            after,
            registered_at,
            live,
            out,
        ));
        Ok(stream)
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.shared.revision.load(Ordering::SeqCst))
    }

    async fn compact(&self, keep_after: Revision) -> Result<(), StoreError> {
        self.write(Op::Compact { keep_after }).await.map(|_| ())
    }

    async fn count(&self, prefix: &str) -> Result<u64, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |db| read::count(db, &prefix)).await
    }
}

/// Feeds one watch: the history in `(after, registered_at]` from disk, then the live events.
async fn forward(
    db: Arc<Database>,
    prefix: String,
    after: Revision,
    registered_at: Revision,
    mut live: WatchStream,
    out: WatchSender,
) {
    let mut cursor = after;
    while cursor < registered_at {
        let (db, prefix) = (db.clone(), prefix.clone());
        let chunk = tokio::task::spawn_blocking(move || {
            read::history(&db, &prefix, cursor, registered_at, REPLAY_CHUNK)
        })
        .await;
        match chunk {
            Ok(Ok((events, next))) => {
                for event in events {
                    if !out.send(event).await {
                        return;
                    }
                }
                cursor = next;
            }
            Ok(Err(error)) => return out.fail(error),
            Err(error) => {
                return out.fail(StoreError::Internal(format!(
                    "watch replay task failed: {error}"
                )));
            }
        }
    }
    drop(db);
    loop {
        tokio::select! {
            item = live.next() => match item {
                Some(Ok(event)) => {
                    if event.revision() > after && !out.send(event).await {
                        return;
                    }
                }
                Some(Err(error)) => return out.fail(error),
                None => return,
            },
            _ = out.closed() => return,
        }
    }
}

/// Maps a redb failure: the disk or the file is the problem, so the store is unavailable.
pub(crate) fn db_error(error: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {}", error.into()))
}
