//! The bounded stream a watch delivers, shared by every backend.
//!
//! A backend produces events through a [`WatchSender`]; the consumer holds the [`WatchStream`]. The
//! channel between them is bounded both in events and in bytes (keys and values, new and previous):
//! a backend that finds it full ends the watch with [`StoreError::TooSlow`] rather than queueing
//! without bound. One event is always accepted into an empty buffer, however large. After the last
//! buffered event the stream yields the error that ended the watch (if any), then `None`.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::{Notify, mpsc};

use crate::{Event, StoreError};

type EndSlot = Arc<Mutex<Option<StoreError>>>;

/// The bytes a watch buffers by default: room for several of the largest objects the API accepts.
pub(crate) const DEFAULT_WATCH_BYTES: usize = 8 << 20;

/// The bytes an event holds in a buffer.
pub(crate) fn event_bytes(event: &Event) -> usize {
    let prev = event
        .prev
        .as_ref()
        .map_or(0, |p| p.key.len() + p.value.len());
    64 + event.kv.key.len() + event.kv.value.len() + prev
}

/// The bytes a channel holds, shared by both ends.
#[derive(Debug, Default)]
struct Queued {
    bytes: AtomicUsize,
    /// Signalled when the consumer takes an event out.
    drained: Notify,
}

/// A live stream of [`Event`]s, ended by an error or by the store closing. Read it with
/// [`WatchStream::next`] or as a [`futures_util::Stream`]; dropping it cancels the watch.
#[derive(Debug)]
pub struct WatchStream {
    rx: mpsc::Receiver<Event>,
    end: EndSlot,
    queued: Arc<Queued>,
    finished: bool,
}

/// The producer's side of a [`WatchStream`].
#[derive(Debug)]
pub(crate) struct WatchSender {
    tx: mpsc::Sender<Event>,
    end: EndSlot,
    queued: Arc<Queued>,
    capacity: usize,
    max_bytes: usize,
}

/// Why [`WatchSender::try_send`] did not deliver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError {
    /// The consumer's buffer is full.
    Full,
    /// The consumer dropped the stream.
    Closed,
}

/// A bounded watch channel holding at most `capacity` undelivered events and, unless it holds a
/// single event, at most `max_bytes` of them.
pub(crate) fn channel(capacity: usize, max_bytes: usize) -> (WatchSender, WatchStream) {
    let capacity = capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let end: EndSlot = Arc::new(Mutex::new(None));
    let queued = Arc::new(Queued::default());
    (
        WatchSender {
            tx,
            end: end.clone(),
            queued: queued.clone(),
            capacity,
            max_bytes,
        },
        WatchStream {
            rx,
            end,
            queued,
            finished: false,
        },
    )
}

impl WatchSender {
    /// True if `size` more bytes fit (an empty buffer takes any one event).
    fn fits(&self, size: usize) -> bool {
        let queued = self.queued.bytes.load(Ordering::Acquire);
        queued == 0 || queued.saturating_add(size) <= self.max_bytes
    }

    /// Delivers `event`, waiting for room. Returns false when the consumer is gone.
    pub(crate) async fn send(&self, event: Event) -> bool {
        let size = event_bytes(&event);
        while !self.fits(size) {
            let drained = self.queued.drained.notified();
            tokio::pin!(drained);
            // Register before the second look, so that a drain in between is not missed.
            drained.as_mut().enable();
            if self.fits(size) {
                break;
            }
            tokio::select! {
                _ = drained => {}
                _ = self.tx.closed() => return false,
            }
        }
        self.queued.bytes.fetch_add(size, Ordering::AcqRel);
        if self.tx.send(event).await.is_err() {
            self.queued.bytes.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Delivers `event` if there is room now.
    pub(crate) fn try_send(&self, event: Event) -> Result<(), TrySendError> {
        let size = event_bytes(&event);
        if self.tx.is_closed() {
            return Err(TrySendError::Closed);
        }
        if !self.fits(size) {
            return Err(TrySendError::Full);
        }
        self.queued.bytes.fetch_add(size, Ordering::AcqRel);
        self.tx.try_send(event).map_err(|e| {
            self.queued.bytes.fetch_sub(size, Ordering::AcqRel);
            match e {
                mpsc::error::TrySendError::Full(_) => TrySendError::Full,
                mpsc::error::TrySendError::Closed(_) => TrySendError::Closed,
            }
        })
    }

    /// How many events the consumer's buffer holds.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Resolves when the consumer drops the stream.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await
    }

    /// Ends the watch: the consumer gets the events already buffered, then `error`.
    pub(crate) fn fail(self, error: StoreError) {
        if let Ok(mut slot) = self.end.lock() {
            slot.get_or_insert(error);
        }
    }

    /// Ends the watch because the consumer fell behind.
    pub(crate) fn fail_too_slow(self) {
        let (buffered, bytes) = (self.capacity, self.max_bytes);
        self.fail(StoreError::TooSlow { buffered, bytes });
    }
}

impl WatchStream {
    /// The next event, the error that ended the watch, or `None` once it has ended.
    pub async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        std::future::poll_fn(|cx| self.poll_next_item(cx)).await
    }

    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event, StoreError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                self.queued
                    .bytes
                    .fetch_sub(event_bytes(&event), Ordering::AcqRel);
                self.queued.drained.notify_one();
                Poll::Ready(Some(Ok(event)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                let end = self.end.lock().ok().and_then(|mut slot| slot.take());
                Poll::Ready(Some(Err(end.unwrap_or_else(|| {
                    StoreError::Unavailable("the store closed the watch".into())
                }))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures_util::Stream for WatchStream {
    type Item = Result<Event, StoreError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_item(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, KeyValue};

    fn event(rev: i64) -> Event {
        sized(rev, 0)
    }

    fn sized(rev: i64, len: usize) -> Event {
        let kv = KeyValue {
            key: "/k".into(),
            value: vec![0; len],
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
    async fn buffered_events_come_before_the_ending_error() {
        let (tx, mut rx) = channel(2, 1 << 20);
        tx.try_send(event(1)).unwrap();
        tx.try_send(event(2)).unwrap();
        assert_eq!(tx.try_send(event(3)), Err(TrySendError::Full));
        tx.fail_too_slow();
        assert_eq!(rx.next().await.unwrap().unwrap().revision(), 1);
        assert_eq!(rx.next().await.unwrap().unwrap().revision(), 2);
        assert_eq!(
            rx.next().await.unwrap().unwrap_err(),
            StoreError::TooSlow {
                buffered: 2,
                bytes: 1 << 20
            }
        );
        assert!(rx.next().await.is_none());
    }

    #[tokio::test]
    async fn dropped_stream_is_seen_by_the_sender() {
        let (tx, rx) = channel(1, 1 << 20);
        drop(rx);
        assert_eq!(tx.try_send(event(1)), Err(TrySendError::Closed));
        tx.closed().await;
    }

    #[tokio::test]
    async fn the_buffer_is_bounded_by_bytes() {
        let (tx, mut rx) = channel(1000, 3000);
        // One event always fits into an empty buffer, however large.
        tx.try_send(sized(1, 10_000)).unwrap();
        assert_eq!(tx.try_send(sized(2, 10)), Err(TrySendError::Full));
        assert_eq!(rx.next().await.unwrap().unwrap().revision(), 1);
        tx.try_send(sized(2, 1000)).unwrap();
        tx.try_send(sized(3, 1000)).unwrap();
        assert_eq!(tx.try_send(sized(4, 1000)), Err(TrySendError::Full));
        // A waiting send goes through once the consumer takes an event out.
        let sender = tokio::spawn(async move {
            let sent = tx.send(sized(4, 1000)).await;
            (tx, sent)
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!sender.is_finished(), "the send waits for room");
        assert_eq!(rx.next().await.unwrap().unwrap().revision(), 2);
        let (tx, sent) = sender.await.unwrap();
        assert!(sent);
        assert_eq!(rx.next().await.unwrap().unwrap().revision(), 3);
        assert_eq!(rx.next().await.unwrap().unwrap().revision(), 4);
        // A send waiting for room ends when the consumer goes away.
        tx.try_send(sized(5, 2000)).unwrap();
        let sender = tokio::spawn(async move { tx.send(sized(6, 2000)).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(rx);
        assert!(!sender.await.unwrap());
    }
}
