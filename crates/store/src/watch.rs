//! The bounded stream a watch delivers, shared by every backend.
//!
//! A backend produces events through a [`WatchSender`]; the consumer holds the [`WatchStream`]. The
//! channel between them is bounded: a backend that finds it full ends the watch with
//! [`StoreError::TooSlow`] rather than queueing without bound. After the last buffered event the stream
//! yields the error that ended the watch (if any), then `None`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::{Event, StoreError};

type EndSlot = Arc<Mutex<Option<StoreError>>>;

/// A live stream of [`Event`]s, ended by an error or by the store closing. Read it with
/// [`WatchStream::next`] or as a [`futures_util::Stream`]; dropping it cancels the watch.
#[derive(Debug)]
pub struct WatchStream {
    rx: mpsc::Receiver<Event>,
    end: EndSlot,
    finished: bool,
}

/// The producer's side of a [`WatchStream`].
#[derive(Debug)]
pub(crate) struct WatchSender {
    tx: mpsc::Sender<Event>,
    end: EndSlot,
    capacity: usize,
}

/// Why [`WatchSender::try_send`] did not deliver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError {
    /// The consumer's buffer is full.
    Full,
    /// The consumer dropped the stream.
    Closed,
}

/// A bounded watch channel holding at most `capacity` undelivered events.
pub(crate) fn channel(capacity: usize) -> (WatchSender, WatchStream) {
    let capacity = capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let end: EndSlot = Arc::new(Mutex::new(None));
    (
        WatchSender {
            tx,
            end: end.clone(),
            capacity,
        },
        WatchStream {
            rx,
            end,
            finished: false,
        },
    )
}

impl WatchSender {
    /// Delivers `event`, waiting for room. Returns false when the consumer is gone.
    pub(crate) async fn send(&self, event: Event) -> bool {
        self.tx.send(event).await.is_ok()
    }

    /// Delivers `event` if there is room now.
    pub(crate) fn try_send(&self, event: Event) -> Result<(), TrySendError> {
        self.tx.try_send(event).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => TrySendError::Full,
            mpsc::error::TrySendError::Closed(_) => TrySendError::Closed,
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
        let buffered = self.capacity;
        self.fail(StoreError::TooSlow { buffered });
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
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(event))),
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
        let kv = KeyValue {
            key: "/k".into(),
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
    async fn buffered_events_come_before_the_ending_error() {
        let (tx, mut rx) = channel(2);
        tx.try_send(event(1)).unwrap();
        tx.try_send(event(2)).unwrap();
        assert_eq!(tx.try_send(event(3)), Err(TrySendError::Full));
        tx.fail_too_slow();
        assert_eq!(rx.next().await.unwrap().unwrap().revision(), 1);
        assert_eq!(rx.next().await.unwrap().unwrap().revision(), 2);
        assert_eq!(
            rx.next().await.unwrap().unwrap_err(),
            StoreError::TooSlow { buffered: 2 }
        );
        assert!(rx.next().await.is_none());
    }

    #[tokio::test]
    async fn dropped_stream_is_seen_by_the_sender() {
        let (tx, rx) = channel(1);
        drop(rx);
        assert_eq!(tx.try_send(event(1)), Err(TrySendError::Closed));
        tx.closed().await;
    }
}
