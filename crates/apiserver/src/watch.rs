//! Watch: a stream of JSON watch events (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`) from
//! the store's bounded watch. A client that does not read stalls its own stream only: the events
//! encoded for the connection are bounded in number and in bytes, the store cuts a stalled watch
//! off (its own buffer is bounded in events and bytes too), and the client re-lists.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use kontti_store::{EventKind, Revision};
use serde_json::{Value, json};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::ApiError;
use crate::http::Body;
use crate::query::Query;
use crate::registry::{Registry, decode_stored, parse_rv, selectors};
use crate::resources::ResourceDef;
use crate::table;

/// Events buffered between the watch task and the connection.
const CONNECTION_BUFFER: usize = 16;
/// Bytes of encoded events buffered between the watch task and the connection (one event of any
/// size always fits).
const CONNECTION_BYTES: u32 = 4 << 20;

/// The connection side of a watch: encoded events, each holding its share of the byte budget until
/// the body hands it to the connection.
struct Outbox {
    tx: mpsc::Sender<(Bytes, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
}

impl Outbox {
    /// Queues an encoded event, waiting for room; false once the client is gone.
    async fn send(&self, event: Bytes) -> bool {
        let want = u32::try_from(event.len())
            .unwrap_or(u32::MAX)
            .clamp(1, CONNECTION_BYTES);
        let permit = tokio::select! {
            p = self.budget.clone().acquire_many_owned(want) => match p {
                Ok(p) => p,
                Err(_) => return false,
            },
            _ = self.tx.closed() => return false,
        };
        self.tx.send((event, permit)).await.is_ok()
    }

    async fn closed(&self) {
        self.tx.closed().await
    }
}
/// How often a bookmark is sent when the client allows them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

struct Encoder {
    def: &'static ResourceDef,
    table: bool,
    include_object: String,
    sent_columns: bool,
}

impl Encoder {
    fn event(&mut self, ty: &str, obj: &Value) -> Bytes {
        let object = if self.table && ty != "ERROR" && ty != "BOOKMARK" {
            let mut t = table::table(
                self.def,
                std::slice::from_ref(obj),
                obj["metadata"]["resourceVersion"].as_str().unwrap_or(""),
                None,
                &self.include_object,
            );
            if self.sent_columns {
                t["columnDefinitions"] = json!([]);
            }
            self.sent_columns = true;
            t
        } else {
            obj.clone()
        };
        let mut line =
            serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// Starts a watch; errors that happen before the first byte are returned as errors.
pub async fn watch(
    registry: &Registry,
    def: &'static ResourceDef,
    ns: Option<String>,
    q: Query,
    as_table: bool,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(&q)?;
    let matches = move |o: &Value| labels.matches_labels(o) && fields.matches_fields(o);
    let prefix = def.key_prefix(ns.as_deref());
    let store = registry.store().clone();
    let mut enc = Encoder {
        def,
        table: as_table,
        include_object: q.include_object.clone(),
        sent_columns: false,
    };
    let mut initial = Vec::new();
    let start: Revision = match parse_rv(&q.resource_version)? {
        Some(rev) if rev > 0 => rev,
        _ => {
            // No resourceVersion (or "0"): the current state as ADDED events, then changes after it.
            let (mut start_after, mut at) = (None::<String>, None);
            loop {
                let page = store
                    .range(
                        &prefix,
                        start_after.as_deref(),
                        crate::registry::RANGE_CHUNK,
                        at,
                    )
                    .await?;
                at = Some(page.revision);
                for kv in &page.kvs {
                    let obj = decode_stored(def, &kv.value, kv.mod_revision)?;
                    if matches(&obj) {
                        initial.push(enc.event("ADDED", &obj));
                    }
                }
                if !page.more {
                    break page.revision;
                }
                start_after = page.kvs.last().map(|kv| kv.key.clone());
            }
        }
    };
    let mut stream = store.watch(&prefix, start).await?;
    let (tx, rx) = mpsc::channel(CONNECTION_BUFFER);
    let tx = Outbox {
        tx,
        budget: Arc::new(Semaphore::new(CONNECTION_BYTES as usize)),
    };
    let bookmarks = q.allow_watch_bookmarks;
    let timeout = q.timeout_seconds.map(Duration::from_secs);
    let bookmark_obj = move |rev: Revision| json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": {"resourceVersion": rev.to_string()}});
    tokio::spawn(async move {
        for b in initial {
            if !tx.send(b).await {
                return;
            }
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut last_rev = start;
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            let sleep_until = deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400));
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep_until(sleep_until) => return,
                _ = ticker.tick(), if bookmarks => {
                    if !tx.send(enc.event("BOOKMARK", &bookmark_obj(last_rev))).await {
                        return;
                    }
                }
                ev = stream.next() => {
                    let Some(ev) = ev else { return };
                    let ev = match ev {
                        Ok(ev) => ev,
                        Err(e) => {
                            let status = ApiError::from(e).to_status();
                            tx.send(enc.event("ERROR", &status)).await;
                            return;
                        }
                    };
                    last_rev = ev.revision();
                    let prev = ev.prev.as_ref().and_then(|p| decode_stored(def, &p.value, ev.revision()).ok());
                    let prev_match = prev.as_ref().is_some_and(&matches);
                    let out = match ev.kind {
                        EventKind::Delete => prev.filter(|_| prev_match).map(|p| ("DELETED", p)),
                        EventKind::Put => match decode_stored(def, &ev.kv.value, ev.kv.mod_revision) {
                            Ok(cur) => match (matches(&cur), prev_match) {
                                (true, true) => Some(("MODIFIED", cur)),
                                (true, false) => Some(("ADDED", cur)),
                                (false, true) => Some(("DELETED", cur)),
                                (false, false) => None,
                            },
                            Err(_) => None,
                        },
                    };
                    if let Some((ty, obj)) = out
                        && !tx.send(enc.event(ty, &obj)).await {
                            return;
                        }
                }
            }
        }
    });
    // The permit is released as the frame goes to the connection.
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|(b, _permit)| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(body)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
