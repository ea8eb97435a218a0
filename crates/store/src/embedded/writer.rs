//! The embedded backend's single writer: a thread that applies mutations in durable transactions.
//!
//! Callers queue requests; the writer takes every request waiting (up to [`MAX_BATCH`]), applies them
//! in order in one redb write transaction, commits it with [`Durability::Immediate`] (fsync), and only
//! then publishes the events to the watch hub and answers the callers (group commit: one fsync serves
//! every write of the batch, and no reply precedes the fsync of its write). A failed compare-and-swap
//! writes nothing and fails only its own request; a failed commit fails the whole batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::oneshot;

use super::codec::{decode_current, encode_current, encode_event};
use super::hub::Hub;
use super::{HistoryWindow, KV, LOG, META, Shared, db_error, read};
use crate::{Event, EventKind, KeyValue, Revision, StoreError};

/// The most requests committed in one transaction.
const MAX_BATCH: usize = 512;

/// A mutation to apply.
#[derive(Debug)]
pub(super) enum Op {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        keep_after: Revision,
    },
}

/// What the writer thread receives.
#[derive(Debug)]
pub(super) enum Message {
    Write {
        op: Op,
        reply: oneshot::Sender<Result<KeyValue, StoreError>>,
    },
    Shutdown,
}

pub(super) struct Writer {
    pub(super) db: Arc<Database>,
    pub(super) rx: Receiver<Message>,
    pub(super) hub: Arc<Hub>,
    pub(super) shared: Arc<Shared>,
    pub(super) window: HistoryWindow,
    pub(super) revision: Revision,
    pub(super) compacted: Revision,
}

type Pending = (Op, oneshot::Sender<Result<KeyValue, StoreError>>);

impl Writer {
    /// Runs until the store shuts down, then closes every watch.
    pub(super) fn run(mut self) {
        let mut last_age_check = Instant::now();
        loop {
            let first = match self.rx.recv_timeout(Duration::from_secs(1)) {
                Ok(Message::Write { op, reply }) => (op, reply),
                Ok(Message::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.compact_by_age(&mut last_age_check);
                    continue;
                }
            };
            let mut batch = vec![first];
            let mut shutdown = false;
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(Message::Write { op, reply }) => batch.push((op, reply)),
                    Ok(Message::Shutdown) => {
                        shutdown = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
            if shutdown {
                break;
            }
            self.compact_by_count();
            self.compact_by_age(&mut last_age_check);
        }
        self.hub.close();
    }

    fn commit_batch(&mut self, batch: Vec<Pending>) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut revision = self.revision;
        let mut compacted = self.compacted;
        let applied = (|| -> Result<Vec<Applied>, StoreError> {
            let mut txn = self.db.begin_write().map_err(db_error)?;
            txn.set_durability(Durability::Immediate)
                .map_err(db_error)?;
            let mut outcomes = Vec::with_capacity(batch.len());
            {
                let mut tables = Tables::open(&txn)?;
                for (op, _) in &batch {
                    outcomes.push(tables.apply(op, &mut revision, &mut compacted, now_ms)?);
                }
                let mut meta = txn.open_table(META).map_err(db_error)?;
                meta.insert("revision", revision).map_err(db_error)?;
                meta.insert("compacted", compacted).map_err(db_error)?;
            }
            txn.commit().map_err(db_error)?;
            Ok(outcomes)
        })();
        match applied {
            Ok(outcomes) => {
                self.revision = revision;
                self.compacted = compacted;
                self.shared.compacted.store(compacted, Ordering::SeqCst);
                self.shared.revision.store(revision, Ordering::SeqCst);
                let events: Vec<Event> = outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().ok().and_then(|(_, e)| e.clone()))
                    .collect();
                self.hub.publish(&events, revision);
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome.map(|(kv, _)| kv));
                }
            }
            Err(error) => {
                tracing::error!(%error, "embedded store commit failed");
                for (_, reply) in batch {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Keeps at most `window.revisions` revisions of history (with 10% slack, to compact in steps).
    fn compact_by_count(&mut self) {
        let keep = self.window.revisions as i64;
        if keep == 0 {
            return;
        }
        let slack = (keep / 10).max(1);
        if self.revision - self.compacted > keep + slack {
            self.compact_to(self.revision - keep);
        }
    }

    /// Drops history older than `window.max_age`, checked at most once a second.
    fn compact_by_age(&mut self, last_check: &mut Instant) {
        let Some(max_age) = self.window.max_age else {
            return;
        };
        if last_check.elapsed() < Duration::from_secs(1) {
            return;
        }
        *last_check = Instant::now();
        let Some(cutoff) = SystemTime::now().checked_sub(max_age) else {
            return;
        };
        let cutoff_ms = cutoff
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        match read::last_revision_before(&self.db, cutoff_ms) {
            Ok(Some(rev)) if rev > self.compacted => self.compact_to(rev),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "reading the history for compaction"),
        }
    }

    fn compact_to(&mut self, keep_after: Revision) {
        let (reply, _) = oneshot::channel();
        self.commit_batch(vec![(Op::Compact { keep_after }, reply)]);
    }
}

/// The tables of one write transaction.
struct Tables<'txn> {
    kv: Table<'txn, &'static str, &'static [u8]>,
    log: Table<'txn, i64, &'static [u8]>,
}

type Applied = Result<(KeyValue, Option<Event>), StoreError>;

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            kv: txn.open_table(KV).map_err(db_error)?,
            log: txn.open_table(LOG).map_err(db_error)?,
        })
    }

    fn current(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        match self.kv.get(key).map_err(db_error)? {
            Some(bytes) => Ok(Some(decode_current(key, bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Applies one operation. The outer error aborts the batch (storage failure); the inner one is the
    /// answer to this request alone.
    fn apply(
        &mut self,
        op: &Op,
        revision: &mut Revision,
        compacted: &mut Revision,
        now_ms: u64,
    ) -> Result<Applied, StoreError> {
        let outcome = match op {
            Op::Create { key, value } => {
                if self.current(key)?.is_some() {
                    return Ok(Err(StoreError::AlreadyExists { key: key.clone() }));
                }
                let rev = *revision + 1;
                let kv = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: rev,
                    mod_revision: rev,
                };
                self.record(
                    Event {
                        kind: EventKind::Put,
                        kv,
                        prev: None,
                    },
                    now_ms,
                )?
            }
            Op::Update {
                key,
                value,
                expected,
            } => {
                let Some(prev) = self.current(key)? else {
                    return Ok(Err(StoreError::NotFound { key: key.clone() }));
                };
                if prev.mod_revision != *expected {
                    let current = prev.mod_revision;
                    return Ok(Err(StoreError::Conflict {
                        key: key.clone(),
                        expected: *expected,
                        current,
                    }));
                }
                let kv = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: prev.create_revision,
                    mod_revision: *revision + 1,
                };
                self.record(
                    Event {
                        kind: EventKind::Put,
                        kv,
                        prev: Some(prev),
                    },
                    now_ms,
                )?
            }
            Op::Delete { key, expected } => {
                let Some(prev) = self.current(key)? else {
                    return Ok(Err(StoreError::NotFound { key: key.clone() }));
                };
                if let Some(expected) = expected.filter(|e| *e != prev.mod_revision) {
                    let current = prev.mod_revision;
                    return Ok(Err(StoreError::Conflict {
                        key: key.clone(),
                        expected,
                        current,
                    }));
                }
                let kv = KeyValue {
                    key: key.clone(),
                    value: Vec::new(),
                    create_revision: prev.create_revision,
                    mod_revision: *revision + 1,
                };
                self.record(
                    Event {
                        kind: EventKind::Delete,
                        kv,
                        prev: Some(prev),
                    },
                    now_ms,
                )?
            }
            Op::Compact { keep_after } => {
                if *keep_after > *revision {
                    return Ok(Err(StoreError::Invalid(format!(
                        "cannot compact at revision {keep_after}: the current revision is {revision}"
                    ))));
                }
                if *keep_after > *compacted {
                    self.log
                        .retain_in(..=*keep_after, |_, _| false)
                        .map_err(db_error)?;
                    *compacted = *keep_after;
                }
                let kv = KeyValue {
                    key: String::new(),
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: *compacted,
                };
                return Ok(Ok((kv, None)));
            }
        };
        *revision += 1;
        Ok(Ok(outcome))
    }

    /// Writes the new current state and the history record of `event`.
    fn record(
        &mut self,
        event: Event,
        now_ms: u64,
    ) -> Result<(KeyValue, Option<Event>), StoreError> {
        let kv = &event.kv;
        match event.kind {
            EventKind::Put => {
                let bytes = encode_current(kv.create_revision, kv.mod_revision, &kv.value);
                self.kv
                    .insert(kv.key.as_str(), bytes.as_slice())
                    .map_err(db_error)?;
            }
            EventKind::Delete => {
                self.kv.remove(kv.key.as_str()).map_err(db_error)?;
            }
        }
        self.log
            .insert(kv.mod_revision, encode_event(&event, now_ms).as_slice())
            .map_err(db_error)?;
        let reply = match (&event.kind, &event.prev) {
            (EventKind::Delete, Some(prev)) => prev.clone(),
            _ => event.kv.clone(),
        };
        Ok((reply, Some(event)))
    }
}
