//! The conformance suite against the etcd backend, each test on its own etcd server.

mod common;

use std::sync::Arc;

use common::EtcdServer;
use kontti_store::testsuite::{Harness, WATCH_BUFFER};
use kontti_store::{EtcdOptions, EtcdStore, Store};

struct Etcd {
    server: EtcdServer,
}

impl Etcd {
    fn start() -> Etcd {
        Etcd {
            server: EtcdServer::start(),
        }
    }

    async fn connect(&self) -> Arc<dyn Store> {
        let options = EtcdOptions {
            watch_buffer: WATCH_BUFFER,
            ..EtcdOptions::default()
        };
        Arc::new(
            EtcdStore::connect(&[self.server.endpoint()], options)
                .await
                .expect("connecting to etcd"),
        )
    }
}

#[async_trait::async_trait]
impl Harness for Etcd {
    async fn open(&self) -> Arc<dyn Store> {
        self.connect().await
    }

    async fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        drop(store);
        self.connect().await
    }
}

mod etcd {
    use super::*;
    kontti_store::store_conformance!(Etcd::start());
}
