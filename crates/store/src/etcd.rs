//! The etcd v3 backend: every call is one etcd request, revisions are etcd's own.
//!
//! Creates are transactions comparing `create_revision == 0`; updates and conditional deletes compare
//! `mod_revision` (and that the key exists); the else-branch reads the key so that a failure says
//! whether it was missing or changed. Keys live under a configurable prefix (`/registry/` by default),
//! which the backend adds and strips. A watch is one etcd watch with `prev_kv`, relayed through a
//! bounded buffer. Connection failures and timeouts are [`StoreError::Unavailable`]; the client
//! reconnects by itself once etcd is back.

use std::time::Duration;

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponse,
};

use crate::watch::{self, TrySendError, WatchSender};
use crate::{
    Event, EventKind, KeyValue, RangeResult, Revision, Store, StoreError, WatchStream, check_key,
};

/// Settings of an [`EtcdStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Prepended to every key in etcd (so that several clusters or tools can share one etcd).
    pub prefix: String,
    /// How long one request may take before it fails with [`StoreError::Unavailable`].
    pub request_timeout: Duration,
    /// How long establishing a connection may take.
    pub connect_timeout: Duration,
    /// How many undelivered live events a watch may buffer before it is cut off.
    pub watch_buffer: usize,
    /// How many bytes of undelivered events a watch may buffer before it is cut off.
    pub watch_buffer_bytes: usize,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            prefix: "/registry/".into(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            watch_buffer: 1024,
            watch_buffer_bytes: crate::watch::DEFAULT_WATCH_BYTES,
        }
    }
}

/// A [`Store`] in an etcd v3 cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoints: Vec<String>,
    options: EtcdOptions,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("options", &self.options)
            .finish()
    }
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`host:port` or `http://host:port`). Fails with
    /// [`StoreError::Unavailable`] if no endpoint answers within the connect timeout.
    pub async fn connect(
        endpoints: &[String],
        options: EtcdOptions,
    ) -> Result<EtcdStore, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Invalid(
                "etcd datastore needs at least one endpoint".into(),
            ));
        }
        let connect = ConnectOptions::new()
            .with_timeout(options.request_timeout)
            .with_connect_timeout(options.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), options.request_timeout);
        let client = Client::connect(endpoints, Some(connect))
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "connecting to etcd at {}: {e}",
                    endpoints.join(",")
                ))
            })?;
        let store = EtcdStore {
            client,
            endpoints: endpoints.to_vec(),
            options,
        };
        store.current_revision().await?;
        Ok(store)
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.options.prefix)
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        let key = std::str::from_utf8(kv.key())
            .ok()
            .and_then(|k| k.strip_prefix(&self.options.prefix))
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "etcd returned a key outside {}",
                    self.options.prefix
                ))
            })?;
        Ok(KeyValue {
            key: key.to_owned(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    /// Reads `key` after a failed compare: missing, or changed since `expected`.
    fn compare_failure(
        &self,
        key: &str,
        expected: Revision,
        responses: Vec<TxnOpResponse>,
    ) -> StoreError {
        let current = responses.into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.mod_revision()),
            _ => None,
        });
        match current {
            None => StoreError::NotFound {
                key: key.to_owned(),
            },
            Some(current) => StoreError::Conflict {
                key: key.to_owned(),
                expected,
                current,
            },
        }
    }
}

/// The first key after every key that starts with `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Maps a client failure. Transport failures and timeouts mean etcd is unreachable.
fn etcd_error(error: etcd_client::Error, requested: Revision) -> StoreError {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            if message.contains("required revision has been compacted") {
                StoreError::Compacted {
                    requested,
                    compacted: 0,
                }
            } else if message.contains("future revision") {
                StoreError::Invalid(format!("revision {requested} is in the future"))
            } else {
                match status.code() as i32 {
                    tonic_code::INVALID_ARGUMENT
                    | tonic_code::FAILED_PRECONDITION
                    | tonic_code::OUT_OF_RANGE => StoreError::Invalid(format!("etcd: {message}")),
                    _ => StoreError::Unavailable(format!("etcd: {message}")),
                }
            }
        }
        other => StoreError::Unavailable(format!("etcd: {other}")),
    }
}

/// gRPC status codes by number, so that this crate does not depend on tonic directly.
mod tonic_code {
    pub(super) const INVALID_ARGUMENT: i32 = 3;
    pub(super) const FAILED_PRECONDITION: i32 = 9;
    pub(super) const OUT_OF_RANGE: i32 = 11;
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        check_key(key)?;
        let mut kv = self.client.kv_client();
        let response = kv
            .get(self.full_key(key), None)
            .await
            .map_err(|e| etcd_error(e, 0))?;
        response
            .kvs()
            .first()
            .map(|kv| self.convert(kv))
            .transpose()
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<RangeResult, StoreError> {
        let full_prefix = self.full_key(prefix);
        let start = match start_after {
            // The smallest key strictly greater than `after`.
            Some(after) if after >= prefix => {
                let mut k = self.full_key(after).into_bytes();
                k.push(0);
                k
            }
            _ => full_prefix.clone().into_bytes(),
        };
        let mut options = GetOptions::new().with_range(prefix_end(full_prefix.as_bytes()));
        if limit > 0 {
            options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        if let Some(at) = at {
            if at <= 0 {
                return Err(StoreError::Invalid(format!(
                    "revision {at} is not a valid revision"
                )));
            }
            options = options.with_revision(at);
        }
        let mut kv = self.client.kv_client();
        let response = kv
            .get(start, Some(options))
            .await
            .map_err(|e| etcd_error(e, at.unwrap_or(0)))?;
        let revision = at.unwrap_or_else(|| response.header().map_or(0, |h| h.revision()));
        let kvs = response
            .kvs()
            .iter()
            .map(|kv| self.convert(kv))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RangeResult {
            kvs,
            more: response.more(),
            revision,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        check_key(key)?;
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value.clone(), None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| etcd_error(e, 0))?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let revision = response.header().map_or(0, |h| h.revision());
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue, StoreError> {
        check_key(key)?;
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([
                Compare::create_revision(full.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected_mod_revision),
            ])
            .and_then([TxnOp::put(
                full.clone(),
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| etcd_error(e, 0))?;
        if !response.succeeded() {
            return Err(self.compare_failure(key, expected_mod_revision, response.op_responses()));
        }
        let revision = response.header().map_or(0, |h| h.revision());
        let create_revision = response
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .unwrap_or(revision);
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        check_key(key)?;
        let full = self.full_key(key);
        let mut compares = vec![Compare::create_revision(
            full.clone(),
            CompareOp::Greater,
            0,
        )];
        if let Some(expected) = expected_mod_revision {
            compares.push(Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected,
            ));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                full.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| etcd_error(e, 0))?;
        if !response.succeeded() {
            let expected = expected_mod_revision.unwrap_or(0);
            return Err(self.compare_failure(key, expected, response.op_responses()));
        }
        let prev = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Delete(delete) => delete.prev_kvs().first().cloned(),
            _ => None,
        });
        match prev {
            Some(prev) => self.convert(&prev),
            None => Err(StoreError::NotFound {
                key: key.to_owned(),
            }),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let full_prefix = self.full_key(prefix);
        if after > 0 {
            // etcd confirms a watch from a compacted revision before canceling it; a read at `after`
            // reports the compaction as an error of this call instead.
            let check = GetOptions::new().with_revision(after).with_count_only();
            self.client
                .kv_client()
                .get(full_prefix.clone(), Some(check))
                .await
                .map_err(|e| etcd_error(e, after))?;
        }
        let options = WatchOptions::new()
            .with_range(prefix_end(full_prefix.as_bytes()))
            .with_prev_key()
            .with_start_revision(after + 1);
        let mut client = self.client.watch_client();
        let mut stream = client
            .watch(full_prefix, Some(options))
            .await
            .map_err(|e| etcd_error(e, after))?;
        // etcd answers a new watch with a `created` response, or cancels it at once if `after` is
        // compacted; wait for that so that the caller sees Compacted as an error of this call.
        let created = tokio::time::timeout(self.options.request_timeout, stream.message())
            .await
            .map_err(|_| StoreError::Unavailable("etcd did not confirm the watch in time".into()))?
            .map_err(|e| etcd_error(e, after))?
            .ok_or_else(|| StoreError::Unavailable("etcd closed the watch stream".into()))?;
        if let Some(error) = cancel_error(&created, after) {
            return Err(error);
        }
        let watch_created_at = created.header().map_or(0, |h| h.revision());
        let (out, events) =
            watch::channel(self.options.watch_buffer, self.options.watch_buffer_bytes);
        let relay = Relay {
            store: self.clone(),
            after,
            replay_until: watch_created_at,
            out,
        };
        tokio::spawn(relay.run(stream));
        Ok(events)
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let mut kv = self.client.kv_client();
        let options = GetOptions::new().with_count_only();
        let response = kv
            .get(self.options.prefix.clone(), Some(options))
            .await
            .map_err(|e| etcd_error(e, 0))?;
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    async fn compact(&self, keep_after: Revision) -> Result<(), StoreError> {
        let mut kv = self.client.kv_client();
        match kv
            .compact(keep_after, Some(CompactionOptions::new().with_physical()))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match etcd_error(e, keep_after) {
                // Compacting at or below the current compaction point has nothing to do.
                StoreError::Compacted { .. } => Ok(()),
                StoreError::Invalid(_) => Err(StoreError::Invalid(format!(
                    "cannot compact at revision {keep_after}: it is beyond the current revision"
                ))),
                other => Err(other),
            },
        }
    }

    async fn count(&self, prefix: &str) -> Result<u64, StoreError> {
        let full_prefix = self.full_key(prefix);
        let options = GetOptions::new()
            .with_range(prefix_end(full_prefix.as_bytes()))
            .with_count_only();
        let response = self
            .client
            .kv_client()
            .get(full_prefix, Some(options))
            .await
            .map_err(|e| etcd_error(e, 0))?;
        Ok(u64::try_from(response.count()).unwrap_or(0))
    }
}

/// The error a canceled etcd watch response stands for, if it is canceled.
fn cancel_error(response: &WatchResponse, after: Revision) -> Option<StoreError> {
    if !response.canceled() {
        return None;
    }
    if response.compact_revision() > 0 {
        return Some(StoreError::Compacted {
            requested: after,
            compacted: response.compact_revision(),
        });
    }
    Some(StoreError::Unavailable(format!(
        "etcd canceled the watch: {}",
        response.cancel_reason()
    )))
}

/// Relays one etcd watch into a bounded [`WatchStream`].
struct Relay {
    store: EtcdStore,
    after: Revision,
    /// Events up to this revision are history: they wait for room in the buffer (etcd's stream is
    /// flow-controlled). Later events are live: a full buffer cuts the watch off.
    replay_until: Revision,
    out: WatchSender,
}

impl Relay {
    async fn run(self, mut stream: etcd_client::WatchStream) {
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                _ = self.out.closed() => return,
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => {
                    return self
                        .out
                        .fail(StoreError::Unavailable("etcd closed the watch".into()));
                }
                Err(e) => return self.out.fail(etcd_error(e, self.after)),
            };
            if let Some(error) = cancel_error(&response, self.after) {
                return self.out.fail(error);
            }
            for event in response.events() {
                let event = match self.convert_event(event) {
                    Ok(event) => event,
                    Err(error) => return self.out.fail(error),
                };
                if event.revision() <= self.replay_until {
                    if !self.out.send(event).await {
                        return;
                    }
                    continue;
                }
                match self.out.try_send(event) {
                    Ok(()) => {}
                    Err(TrySendError::Full) => {
                        tracing::debug!(
                            buffered = self.out.capacity(),
                            "cutting off a slow etcd watcher"
                        );
                        return self.out.fail_too_slow();
                    }
                    Err(TrySendError::Closed) => return,
                }
            }
        }
    }

    fn convert_event(&self, event: &etcd_client::Event) -> Result<Event, StoreError> {
        let kv = event
            .kv()
            .ok_or_else(|| StoreError::Corrupt("etcd watch event without a key".into()))?;
        let prev = event.prev_kv().map(|p| self.store.convert(p)).transpose()?;
        let mut kv = self.store.convert(kv)?;
        let kind = match event.event_type() {
            EventType::Put => EventKind::Put,
            EventType::Delete => {
                kv.create_revision = prev.as_ref().map_or(0, |p| p.create_revision);
                EventKind::Delete
            }
        };
        Ok(Event { kind, kv, prev })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/registry/a/"), b"/registry/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }
}
