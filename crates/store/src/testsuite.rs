//! The conformance suite every [`Store`] backend passes (the model is containerd's snapshotter
//! testsuite): one async function per behaviour, and [`store_conformance!`](crate::store_conformance)
//! to turn them into one test per behaviour for a backend.
//!
//! A backend provides a [`Harness`]: it opens a store on fresh state, and can reopen a store on the
//! same state (as a restarted server would). Stores opened by a harness must buffer at most
//! [`WATCH_BUFFER`] undelivered events per watch and must not compact by themselves.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::{EventKind, Store, StoreError};

/// The watch buffer a harness configures, so that the slow-watcher test knows how far to push.
pub const WATCH_BUFFER: usize = 64;

/// How long a test waits for an event that should come.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// Opens the backend under test.
#[async_trait::async_trait]
pub trait Harness: Send + Sync {
    /// A store on the harness's state (fresh on the first call).
    async fn open(&self) -> Arc<dyn Store>;
    /// Drops `store` and opens the same state again.
    async fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store>;
}

/// Generates one `#[tokio::test]` per conformance case, each calling `$harness` (an async expression
/// yielding a [`Harness`]) for its own fresh state.
#[macro_export]
macro_rules! store_conformance {
    ($harness:expr) => {
        $crate::store_conformance!(@cases $harness;
            create_then_get, create_twice_is_already_exists, update_compares_mod_revision,
            update_and_delete_of_missing_key_are_not_found, delete_compares_when_asked,
            prefixes_do_not_leak, range_pages_with_limit_and_start_after, range_at_an_old_revision,
            watch_replays_history_with_prev_values, watch_follows_live_writes, watch_reports_deletes,
            compaction_makes_old_revisions_gone, slow_watcher_is_cut_off,
            concurrent_increments_lose_no_update, revision_is_monotonic_across_reopen,
            empty_key_is_invalid);
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $harness;
                $crate::testsuite::$case(&harness).await;
            }
        )*
    };
}

async fn next_event(w: &mut crate::WatchStream) -> crate::Event {
    match tokio::time::timeout(EVENT_WAIT, w.next()).await {
        Ok(Some(Ok(event))) => event,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

pub async fn create_then_get(h: &dyn Harness) {
    let s = h.open().await;
    let before = s.current_revision().await.unwrap();
    let kv = s.create("/t/a", b"one".to_vec()).await.unwrap();
    assert_eq!(kv.key, "/t/a");
    assert_eq!(kv.value, b"one");
    assert!(kv.mod_revision > before);
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(s.current_revision().await.unwrap(), kv.mod_revision);
    assert_eq!(s.get("/t/a").await.unwrap(), Some(kv));
    assert_eq!(s.get("/t/b").await.unwrap(), None);
}

pub async fn create_twice_is_already_exists(h: &dyn Harness) {
    let s = h.open().await;
    s.create("/t/a", b"one".to_vec()).await.unwrap();
    let rev = s.current_revision().await.unwrap();
    let err = s.create("/t/a", b"two".to_vec()).await.unwrap_err();
    assert_eq!(err, StoreError::AlreadyExists { key: "/t/a".into() });
    assert_eq!(
        s.current_revision().await.unwrap(),
        rev,
        "a failed create writes nothing"
    );
    assert_eq!(s.get("/t/a").await.unwrap().unwrap().value, b"one");
}

pub async fn update_compares_mod_revision(h: &dyn Harness) {
    let s = h.open().await;
    let v1 = s.create("/t/a", b"1".to_vec()).await.unwrap();
    let v2 = s
        .update("/t/a", b"2".to_vec(), v1.mod_revision)
        .await
        .unwrap();
    assert!(v2.mod_revision > v1.mod_revision);
    assert_eq!(v2.create_revision, v1.create_revision);
    let err = s
        .update("/t/a", b"stale".to_vec(), v1.mod_revision)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            key: "/t/a".into(),
            expected: v1.mod_revision,
            current: v2.mod_revision
        }
    );
    assert_eq!(s.get("/t/a").await.unwrap().unwrap(), v2);
}

pub async fn update_and_delete_of_missing_key_are_not_found(h: &dyn Harness) {
    let s = h.open().await;
    let missing = StoreError::NotFound {
        key: "/t/none".into(),
    };
    assert_eq!(
        s.update("/t/none", b"x".to_vec(), 1).await.unwrap_err(),
        missing
    );
    assert_eq!(s.delete("/t/none", None).await.unwrap_err(), missing);
    assert_eq!(s.delete("/t/none", Some(1)).await.unwrap_err(), missing);
}

pub async fn delete_compares_when_asked(h: &dyn Harness) {
    let s = h.open().await;
    let v1 = s.create("/t/a", b"1".to_vec()).await.unwrap();
    let v2 = s
        .update("/t/a", b"2".to_vec(), v1.mod_revision)
        .await
        .unwrap();
    let err = s.delete("/t/a", Some(v1.mod_revision)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { current, .. } if current == v2.mod_revision));
    let prev = s.delete("/t/a", Some(v2.mod_revision)).await.unwrap();
    assert_eq!(prev, v2, "delete returns the deleted value");
    assert_eq!(s.get("/t/a").await.unwrap(), None);
    // Unconditional delete, and re-create starts a new life.
    let v3 = s.create("/t/a", b"3".to_vec()).await.unwrap();
    assert!(v3.create_revision > v2.mod_revision);
    assert_eq!(s.delete("/t/a", None).await.unwrap().value, b"3");
}

pub async fn prefixes_do_not_leak(h: &dyn Harness) {
    let s = h.open().await;
    for key in ["/a", "/a/x", "/a/y", "/ab", "/ab/z", "/b"] {
        s.create(key, key.as_bytes().to_vec()).await.unwrap();
    }
    let keys = |r: crate::RangeResult| r.kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>();
    assert_eq!(
        keys(s.range("/a/", None, 0, None).await.unwrap()),
        ["/a/x", "/a/y"]
    );
    assert_eq!(
        keys(s.range("/ab/", None, 0, None).await.unwrap()),
        ["/ab/z"]
    );
    assert_eq!(
        keys(s.range("/a", None, 0, None).await.unwrap()),
        ["/a", "/a/x", "/a/y", "/ab", "/ab/z"]
    );
    assert_eq!(s.count("/a/").await.unwrap(), 2);
    assert_eq!(s.count("/ab").await.unwrap(), 2);
    assert_eq!(s.count("/c/").await.unwrap(), 0);
    let rev = s.current_revision().await.unwrap();
    let mut w = s.watch("/a/", rev).await.unwrap();
    s.create("/ab/late", b"x".to_vec()).await.unwrap();
    s.create("/a/late", b"x".to_vec()).await.unwrap();
    assert_eq!(
        next_event(&mut w).await.kv.key,
        "/a/late",
        "the watch of /a/ skips /ab/late"
    );
}

pub async fn range_pages_with_limit_and_start_after(h: &dyn Harness) {
    let s = h.open().await;
    let mut expected = Vec::new();
    for i in 0..25 {
        let key = format!("/p/{i:03}");
        s.create(&key, vec![i as u8]).await.unwrap();
        expected.push(key);
    }
    s.create("/q/outside", b"x".to_vec()).await.unwrap();
    let first = s.range("/p/", None, 10, None).await.unwrap();
    let at = first.revision;
    // Writes after the first page must not show in later pages read at the first page's revision.
    s.create("/p/010a", b"new".to_vec()).await.unwrap();
    s.delete("/p/020", None).await.unwrap();
    let mut seen = Vec::new();
    let mut page = first;
    loop {
        assert!(page.kvs.len() <= 10);
        assert_eq!(page.revision, at);
        seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        let last = seen.last().cloned();
        page = s.range("/p/", last.as_deref(), 10, Some(at)).await.unwrap();
    }
    assert_eq!(seen, expected);
    let all = s.range("/p/", None, 0, None).await.unwrap();
    assert_eq!(all.kvs.len(), 25, "one added, one deleted");
    assert!(!all.more);
    let exact = s.range("/p/", Some("/p/019"), 5, None).await.unwrap();
    let exact_keys: Vec<_> = exact.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(exact_keys, ["/p/021", "/p/022", "/p/023", "/p/024"]);
    assert!(!exact.more, "the page holds every key left");
    let cut = s.range("/p/", Some("/p/019"), 3, None).await.unwrap();
    assert_eq!(cut.kvs.len(), 3);
    assert!(cut.more);
}

pub async fn range_at_an_old_revision(h: &dyn Harness) {
    let s = h.open().await;
    let a1 = s.create("/r/a", b"a1".to_vec()).await.unwrap();
    let b1 = s.create("/r/b", b"b1".to_vec()).await.unwrap();
    let old = s.current_revision().await.unwrap();
    s.update("/r/a", b"a2".to_vec(), a1.mod_revision)
        .await
        .unwrap();
    s.delete("/r/b", None).await.unwrap();
    s.create("/r/c", b"c1".to_vec()).await.unwrap();
    let then = s.range("/r/", None, 0, Some(old)).await.unwrap();
    assert_eq!(then.revision, old);
    assert_eq!(then.kvs, vec![a1.clone(), b1]);
    let now = s.range("/r/", None, 0, None).await.unwrap();
    let values: Vec<_> = now.kvs.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(values, [b"a2".to_vec(), b"c1".to_vec()]);
    let before_all = s
        .range("/r/", None, 0, Some(a1.mod_revision - 1))
        .await
        .unwrap();
    assert!(before_all.kvs.is_empty());
    let future = s
        .range("/r/", None, 0, Some(now.revision + 100))
        .await
        .unwrap_err();
    assert!(matches!(future, StoreError::Invalid(_)), "{future:?}");
}

pub async fn watch_replays_history_with_prev_values(h: &dyn Harness) {
    let s = h.open().await;
    let start = s.current_revision().await.unwrap();
    let v1 = s.create("/w/a", b"1".to_vec()).await.unwrap();
    s.create("/x/other", b"o".to_vec()).await.unwrap();
    let v2 = s
        .update("/w/a", b"2".to_vec(), v1.mod_revision)
        .await
        .unwrap();
    let mut w = s.watch("/w/", start).await.unwrap();
    let e1 = next_event(&mut w).await;
    assert_eq!(
        (e1.kind, e1.kv.clone(), e1.prev.clone()),
        (EventKind::Put, v1.clone(), None)
    );
    let e2 = next_event(&mut w).await;
    assert_eq!(
        (e2.kind, e2.kv.clone(), e2.prev.clone()),
        (EventKind::Put, v2.clone(), Some(v1.clone()))
    );
    // Watching from the middle starts after the given revision.
    let mut w = s.watch("/w/", v1.mod_revision).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv, v2);
    // And the replay turns into the live stream without a gap.
    let v3 = s
        .update("/w/a", b"3".to_vec(), v2.mod_revision)
        .await
        .unwrap();
    let e3 = next_event(&mut w).await;
    assert_eq!((e3.kv, e3.prev), (v3, Some(v2)));
}

pub async fn watch_follows_live_writes(h: &dyn Harness) {
    let s = h.open().await;
    let rev = s.current_revision().await.unwrap();
    let mut w = s.watch("/live/", rev).await.unwrap();
    let mut written = Vec::new();
    for i in 0..20 {
        written.push(s.create(&format!("/live/{i}"), vec![i]).await.unwrap());
    }
    for kv in written {
        let e = next_event(&mut w).await;
        assert_eq!(e.kind, EventKind::Put);
        assert_eq!(e.kv, kv);
    }
    let quiet = tokio::time::timeout(Duration::from_millis(200), w.next()).await;
    assert!(quiet.is_err(), "no event beyond the writes: {quiet:?}");
}

pub async fn watch_reports_deletes(h: &dyn Harness) {
    let s = h.open().await;
    let v1 = s.create("/d/a", b"1".to_vec()).await.unwrap();
    let mut w = s.watch("/d/", v1.mod_revision).await.unwrap();
    s.delete("/d/a", None).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(e.kind, EventKind::Delete);
    assert_eq!(e.kv.key, "/d/a");
    assert!(
        e.kv.mod_revision > v1.mod_revision,
        "the delete's own revision"
    );
    assert_eq!(e.prev, Some(v1));
    assert_eq!(e.revision(), s.current_revision().await.unwrap());
}

pub async fn compaction_makes_old_revisions_gone(h: &dyn Harness) {
    let s = h.open().await;
    let start = s.current_revision().await.unwrap();
    let mut kv = s.create("/c/a", b"0".to_vec()).await.unwrap();
    for i in 1..10u8 {
        kv = s.update("/c/a", vec![i], kv.mod_revision).await.unwrap();
    }
    let keep_after = kv.mod_revision - 3;
    s.compact(keep_after).await.unwrap();
    s.compact(keep_after - 1).await.unwrap(); // older than the window start: nothing to do
    let err = s.watch("/c/", start).await.unwrap_err();
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
    assert_eq!(err.http_status(), 410);
    let err = s
        .range("/c/", None, 0, Some(keep_after - 2))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
    // Inside the window everything still works.
    let mut w = s.watch("/c/", keep_after).await.unwrap();
    let mut last = 0;
    for _ in 0..3 {
        last = next_event(&mut w).await.revision();
    }
    assert_eq!(last, kv.mod_revision);
    let at = s.range("/c/", None, 0, Some(keep_after)).await.unwrap();
    assert_eq!(at.kvs[0].mod_revision, keep_after);
    assert_eq!(s.get("/c/a").await.unwrap(), Some(kv));
    let future = s
        .compact(s.current_revision().await.unwrap() + 10)
        .await
        .unwrap_err();
    assert!(matches!(future, StoreError::Invalid(_)), "{future:?}");
}

pub async fn slow_watcher_is_cut_off(h: &dyn Harness) {
    let s = h.open().await;
    let rev = s.current_revision().await.unwrap();
    let mut w = s.watch("/slow/", rev).await.unwrap();
    let total = WATCH_BUFFER * 8;
    let value = vec![7u8; 1024];
    for i in 0..total {
        s.create(&format!("/slow/{i:05}"), value.clone())
            .await
            .unwrap();
    }
    let mut delivered = 0;
    let end = loop {
        match tokio::time::timeout(EVENT_WAIT, w.next()).await {
            Ok(Some(Ok(_))) => delivered += 1,
            Ok(Some(Err(e))) => break e,
            other => panic!(
                "the slow watch must end with an error, got {other:?} after {delivered} events"
            ),
        }
    };
    assert!(matches!(end, StoreError::TooSlow { .. }), "{end:?}");
    assert_eq!(end.http_status(), 410);
    assert!(
        delivered < total,
        "the watch buffered only part of the {total} events ({delivered})"
    );
    assert!(w.next().await.is_none());
}

pub async fn concurrent_increments_lose_no_update(h: &dyn Harness) {
    let s = h.open().await;
    s.create("/counter", b"0".to_vec()).await.unwrap();
    let tasks = 8;
    let per_task = 25;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            for _ in 0..per_task {
                loop {
                    let kv = s.get("/counter").await.unwrap().unwrap();
                    let n: u64 = String::from_utf8(kv.value).unwrap().parse().unwrap();
                    match s
                        .update(
                            "/counter",
                            (n + 1).to_string().into_bytes(),
                            kv.mod_revision,
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("increment failed: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let kv = s.get("/counter").await.unwrap().unwrap();
    assert_eq!(
        String::from_utf8(kv.value).unwrap(),
        (tasks * per_task).to_string()
    );
}

pub async fn revision_is_monotonic_across_reopen(h: &dyn Harness) {
    let s = h.open().await;
    s.create("/m/a", b"1".to_vec()).await.unwrap();
    let kv = s.create("/m/b", b"2".to_vec()).await.unwrap();
    s.delete("/m/b", None).await.unwrap();
    let before = s.current_revision().await.unwrap();
    let s = h.reopen(s).await;
    assert_eq!(s.current_revision().await.unwrap(), before);
    let again = s.create("/m/b", b"3".to_vec()).await.unwrap();
    assert!(again.mod_revision > before);
    assert!(again.create_revision > kv.create_revision);
    assert_eq!(s.get("/m/a").await.unwrap().unwrap().value, b"1");
    let keys: BTreeSet<_> = s
        .range("/m/", None, 0, None)
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["/m/a".to_string(), "/m/b".to_string()])
    );
}

pub async fn empty_key_is_invalid(h: &dyn Harness) {
    let s = h.open().await;
    assert!(matches!(
        s.create("", b"x".to_vec()).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(s.get("").await, Err(StoreError::Invalid(_))));
}
