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
