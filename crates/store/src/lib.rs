//! The control plane's revisioned key-value store: one trait, [`Store`], and two backends that pass one
//! conformance suite ([`testsuite`]).
//!
//! * [`EmbeddedStore`] (the default) keeps everything in one redb file on local disk, in the server
//!   process: no extra daemon, every acknowledged write fsynced before the reply.
//! * [`EtcdStore`] talks to an etcd v3 cluster, so that several API servers share one state.
//!
//! The crate stores opaque bytes under string keys; it knows nothing about Kubernetes objects, encodings
//! or resource versions beyond the revision numbers it hands out. It does not depend on node-side crates.

mod datastore;
mod embedded;
mod error;
mod etcd;
pub mod load;
mod watch;

#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use datastore::Datastore;
pub use embedded::{EmbeddedOptions, EmbeddedStore, HistoryWindow};
pub use error::StoreError;
pub use etcd::{EtcdOptions, EtcdStore};
pub use watch::WatchStream;

/// A point in the store's history. Every successful mutation (create, update, delete) advances the
/// store's one global revision by one; the revision is what Kubernetes calls `resourceVersion`.
pub type Revision = i64;

/// A key and its value as of some revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `/pods/default/web-0`.
    pub key: String,
    /// The stored bytes (empty for the `kv` of a delete [`Event`]).
    pub value: Vec<u8>,
    /// The revision of the create that started this key's current life.
    pub create_revision: Revision,
    /// The revision of the last mutation of this key (for a delete event: the delete's revision).
    pub mod_revision: Revision,
}

/// What a watch [`Event`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A create or an update.
    Put,
    /// A delete.
    Delete,
}

/// One committed mutation, as delivered by [`Store::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put: the new key-value. For a delete: the key, an empty value, the deleted value's
    /// `create_revision`, and `mod_revision` = the delete's revision.
    pub kv: KeyValue,
    /// The value before this mutation (`None` for a create).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this event was committed.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// The answer to [`Store::range`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    /// Matching key-values in key order.
    pub kvs: Vec<KeyValue>,
    /// True when `limit` cut the answer short: more keys follow the last one returned.
    pub more: bool,
    /// The store revision the read was served at (pass it as `at` to read the next page consistently).
    pub revision: Revision,
}

/// A revisioned key-value store with compare-and-swap and watch.
///
/// # Vocabulary
/// * **Key**: a non-empty string; keys are ordered byte-wise. A **prefix** selects every key that starts
///   with it, with no notion of path segments: prefix `/a` matches `/ab`, so callers that mean a
///   directory end their prefix with `/`.
/// * **Revision**: the store's one global counter. Each successful create, update or delete advances it
///   by exactly one and stamps the key's `mod_revision`; reads report the revision they were served at.
///   Revisions only grow, also across restarts. Backends choose the starting point (etcd's own revision
///   for [`EtcdStore`]).
/// * **Compare-and-swap**: [`update`](Store::update) and [`delete`](Store::delete) take the
///   `mod_revision` the caller last saw; if the key changed since, they fail with
///   [`StoreError::Conflict`] carrying the current revision, and nothing is written.
/// * **History window**: the store keeps the events of recent revisions. [`range`](Store::range) `at` a
///   past revision and [`watch`](Store::watch) from a past revision work inside the window; older
///   requests fail with [`StoreError::Compacted`] (HTTP 410 Gone in the API: the client re-lists).
///   [`compact`](Store::compact) moves the window's start; backends may also compact by themselves
///   ([`HistoryWindow`]).
///
/// # Lifecycle
/// A backend is opened or connected ([`EmbeddedStore::open`], [`EtcdStore::connect`], or
/// [`Datastore::open`]) and shared as `Arc<dyn Store>`. Every acknowledged mutation is durable when the
/// call returns (fsynced for the embedded backend, committed by the etcd quorum for etcd). A watch is a
/// bounded stream: a consumer that does not keep up is cut off with [`StoreError::TooSlow`] instead of
/// being buffered without bound, and re-lists. Dropping the last handle closes the store; open watches
/// then end with [`StoreError::Unavailable`].
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys that start with `prefix`, in key order, strictly after `start_after` (the last key of the
    /// previous page), at most `limit` of them (0 = all), as of revision `at` (`None` = now).
    /// Fails with [`StoreError::Compacted`] if `at` is older than the history window.
    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<RangeResult, StoreError>;

    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it exists.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError>;

    /// Replaces the value of `key` if its `mod_revision` is still `expected_mod_revision`; fails with
    /// [`StoreError::NotFound`] or [`StoreError::Conflict`].
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue, StoreError>;

    /// Deletes `key` (if `expected_mod_revision` is given, only if it still matches) and returns the
    /// deleted key-value. Fails with [`StoreError::NotFound`] or [`StoreError::Conflict`].
    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, StoreError>;

    /// Events for keys that start with `prefix` with a revision greater than `after`, in revision order:
    /// first the history, then live. Pass the revision of a [`range`](Store::range) to see every change
    /// after that read. Fails with [`StoreError::Compacted`] if `after` is older than the history window
    /// (if a compaction races the call, the stream ends with that error instead).
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// The store's current revision.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// Drops the history up to and including `keep_after`: revisions after it stay readable and
    /// watchable, older ones fail with [`StoreError::Compacted`]. Compacting at or below the current
    /// window start is a no-op; compacting beyond the current revision is [`StoreError::Invalid`].
    async fn compact(&self, keep_after: Revision) -> Result<(), StoreError>;

    /// The number of keys that start with `prefix`, now.
    async fn count(&self, prefix: &str) -> Result<u64, StoreError>;
}

/// Rejects keys that no backend can store.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::Invalid("key must not be empty".into()));
    }
    Ok(())
}
