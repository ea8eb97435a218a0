//! The conformance suite against the embedded (redb) backend, each test on its own temp file.

use std::sync::Arc;

use kontti_store::testsuite::{Harness, WATCH_BUFFER};
use kontti_store::{EmbeddedOptions, EmbeddedStore, HistoryWindow, Store};

struct Embedded {
    dir: tempfile::TempDir,
}

impl Embedded {
    fn new() -> Embedded {
        Embedded {
            dir: tempfile::tempdir().expect("creating a temp dir"),
        }
    }

    fn open_store(&self) -> Arc<dyn Store> {
        let options = EmbeddedOptions {
            history: HistoryWindow {
                revisions: 0,
                max_age: None,
            },
            watch_buffer: WATCH_BUFFER,
            ..EmbeddedOptions::default()
        };
        Arc::new(
            EmbeddedStore::open(&self.dir.path().join("store.redb"), options)
                .expect("opening the store"),
        )
    }
}

#[async_trait::async_trait]
impl Harness for Embedded {
    async fn open(&self) -> Arc<dyn Store> {
        self.open_store()
    }

    async fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        drop(store);
        self.open_store()
    }
}

mod embedded {
    use super::*;
    kontti_store::store_conformance!(Embedded::new());
}

/// Behaviour of the embedded backend beyond the shared suite: automatic compaction.
mod embedded_window {
    use std::time::Duration;

    use kontti_store::{EmbeddedOptions, EmbeddedStore, HistoryWindow, Store, StoreError};

    fn open(dir: &tempfile::TempDir, history: HistoryWindow) -> EmbeddedStore {
        let options = EmbeddedOptions {
            history,
            ..EmbeddedOptions::default()
        };
        EmbeddedStore::open(&dir.path().join("store.redb"), options).expect("opening the store")
    }

    #[tokio::test]
    async fn history_is_compacted_to_a_revision_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(
            &dir,
            HistoryWindow {
                revisions: 10,
                max_age: None,
            },
        );
        let mut kv = store.create("/w", b"0".to_vec()).await.unwrap();
        for i in 0..40u8 {
            kv = store.update("/w", vec![i], kv.mod_revision).await.unwrap();
        }
        let err = store.watch("/", 1).await.unwrap_err();
        assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
        let mut recent = store
            .watch("/", kv.mod_revision - 10)
            .await
            .expect("the newest 10 revisions are kept");
        let first = recent.next().await.unwrap().unwrap();
        assert_eq!(first.revision(), kv.mod_revision - 9);
    }

    #[tokio::test]
    async fn history_older_than_max_age_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(
            &dir,
            HistoryWindow {
                revisions: 0,
                max_age: Some(Duration::from_secs(1)),
            },
        );
        let old = store.create("/old", b"x".to_vec()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let new = store.create("/new", b"y".to_vec()).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match store.watch("/", 0).await {
                Err(StoreError::Compacted { compacted, .. }) => {
                    assert!(
                        compacted >= old.mod_revision && compacted < new.mod_revision,
                        "{compacted}"
                    );
                    break;
                }
                Ok(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => panic!("history older than a second is not compacted: {other:?}"),
            }
        }
        assert_eq!(
            store.get("/old").await.unwrap(),
            Some(old),
            "compaction drops history, not data"
        );
    }
}

/// A second open of a store file that is in use fails clearly instead of sharing it.
#[test]
fn a_store_file_in_use_cannot_be_opened_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let first = EmbeddedStore::open(&path, EmbeddedOptions::default()).expect("first open");
    let err = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap_err();
    assert!(
        matches!(err, kontti_store::StoreError::Unavailable(_)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "the error names the file: {err}"
    );
    drop(first);
    EmbeddedStore::open(&path, EmbeddedOptions::default())
        .expect("open after the first handle closed");
}
