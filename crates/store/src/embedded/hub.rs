//! In-process fan-out of committed events to live watchers.
//!
//! The writer publishes each committed batch here after its fsync, under the hub's lock; a watcher
//! registers under the same lock and learns the last published revision, so that it can replay the
//! history up to that revision from disk and take everything after it from the hub, with no gap and no
//! duplicate. Delivery never blocks the writer: a watcher whose bounded buffer is full is cut off with
//! [`StoreError::TooSlow`].

use std::sync::Mutex;

use crate::watch::{self, TrySendError, WatchSender};
use crate::{Event, Revision, StoreError, WatchStream};

/// Live watchers of one embedded store.
#[derive(Debug)]
pub(super) struct Hub {
    state: Mutex<HubState>,
}

#[derive(Debug)]
struct HubState {
    published: Revision,
    closed: bool,
    watchers: Vec<LiveWatcher>,
}

#[derive(Debug)]
struct LiveWatcher {
    prefix: String,
    tx: WatchSender,
}

impl Hub {
    /// A hub whose history is complete up to `revision`.
    pub(super) fn new(revision: Revision) -> Hub {
        Hub {
            state: Mutex::new(HubState {
                published: revision,
                closed: false,
                watchers: Vec::new(),
            }),
        }
    }

    /// Registers a watcher of `prefix`: it gets every event published from now on. Returns the last
    /// revision published before it, which the caller replays from history.
    pub(super) fn register(
        &self,
        prefix: &str,
        capacity: usize,
        max_bytes: usize,
    ) -> Result<(Revision, WatchStream), StoreError> {
        let mut state = self.lock()?;
        if state.closed {
            return Err(StoreError::Unavailable(
                "the embedded store is closed".into(),
            ));
        }
        let (tx, rx) = watch::channel(capacity, max_bytes);
        state.watchers.push(LiveWatcher {
            prefix: prefix.to_owned(),
            tx,
        });
        Ok((state.published, rx))
    }

    /// Delivers a committed batch whose last revision is `revision`.
    pub(super) fn publish(&self, events: &[Event], revision: Revision) {
        let Ok(mut state) = self.lock() else { return };
        state.published = revision;
        if events.is_empty() {
            return;
        }
        let watchers = std::mem::take(&mut state.watchers);
        for watcher in watchers {
            if let Some(watcher) = deliver(watcher, events) {
                state.watchers.push(watcher);
            }
        }
    }

    /// Ends every watch: the store is closing.
    pub(super) fn close(&self) {
        let Ok(mut state) = self.lock() else { return };
        state.closed = true;
        for watcher in state.watchers.drain(..) {
            watcher
                .tx
                .fail(StoreError::Unavailable("the embedded store closed".into()));
        }
    }

    /// How many watchers are registered (for tests and metrics).
    #[cfg(test)]
    pub(super) fn watcher_count(&self) -> usize {
        self.lock().map(|s| s.watchers.len()).unwrap_or(0)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HubState>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Internal("watch hub lock poisoned".into()))
    }
}

/// Sends the matching events of a batch to one watcher; `None` when the watcher is gone or cut off.
fn deliver(watcher: LiveWatcher, events: &[Event]) -> Option<LiveWatcher> {
    for event in events
        .iter()
        .filter(|e| e.kv.key.starts_with(&watcher.prefix))
    {
        match watcher.tx.try_send(event.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full) => {
                tracing::debug!(prefix = %watcher.prefix, buffered = watcher.tx.capacity(), "cutting off a slow watcher");
                watcher.tx.fail_too_slow();
                return None;
            }
            Err(TrySendError::Closed) => return None,
        }
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, KeyValue};

    fn put(key: &str, rev: i64) -> Event {
        let kv = KeyValue {
            key: key.into(),
            value: vec![],
            create_revision: rev,
            mod_revision: rev,
        };
        Event {
            kind: EventKind::Put,
            kv,
            prev: None,
        }
    }

    #[tokio::test]
    async fn watchers_get_their_prefix_and_slow_ones_are_dropped() {
        let hub = Hub::new(4);
        let (at, mut a) = hub.register("/a/", 8, 1 << 20).unwrap();
        assert_eq!(at, 4);
        let (_, slow) = hub.register("/", 1, 1 << 20).unwrap();
        hub.publish(&[put("/a/x", 5), put("/b/y", 6)], 6);
        assert_eq!(a.next().await.unwrap().unwrap().kv.key, "/a/x");
        assert_eq!(
            hub.watcher_count(),
            1,
            "the watcher with a buffer of 1 is cut off"
        );
        drop(slow);
        let (at, _) = hub.register("/", 1, 1 << 20).unwrap();
        assert_eq!(at, 6);
        hub.close();
        assert!(matches!(
            a.next().await,
            Some(Err(StoreError::Unavailable(_)))
        ));
        assert!(hub.register("/", 1, 1 << 20).is_err());
    }
}
