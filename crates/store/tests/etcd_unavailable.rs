//! etcd going away and coming back: calls fail fast with Unavailable, and the same store object works
//! again once etcd is back, without being recreated.

mod common;

use std::time::{Duration, Instant};

use common::EtcdServer;
use kontti_store::{EtcdOptions, EtcdStore, Store, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_unavailable_then_recovers_without_restart() {
    let mut server = EtcdServer::start();
    let options = EtcdOptions {
        request_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_millis(500),
        ..EtcdOptions::default()
    };
    let store = EtcdStore::connect(&[server.endpoint()], options)
        .await
        .expect("connecting to etcd");
    let before = store
        .create("/u/a", b"1".to_vec())
        .await
        .expect("create while etcd is up");
    let mut watch = store
        .watch("/u/", before.mod_revision)
        .await
        .expect("watch while etcd is up");

    server.stop();
    for attempt in 0..3 {
        let started = Instant::now();
        let err = store.get("/u/a").await.expect_err("get while etcd is down");
        let took = started.elapsed();
        assert!(
            matches!(err, StoreError::Unavailable(_)),
            "attempt {attempt}: {err:?}"
        );
        assert_eq!(err.http_status(), 503);
        assert!(
            took < Duration::from_secs(3),
            "attempt {attempt}: Unavailable took {took:?}"
        );
    }
    let err = store
        .create("/u/b", b"2".to_vec())
        .await
        .expect_err("create while etcd is down");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let ended = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
    assert!(
        matches!(ended, Ok(Some(Err(StoreError::Unavailable(_))))),
        "an open watch ends with Unavailable: {ended:?}"
    );

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let recovered = loop {
        match store.get("/u/a").await {
            Ok(kv) => break kv,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not recover after etcd came back: {e}"),
        }
    };
    assert_eq!(recovered, Some(before));
    store
        .create("/u/b", b"2".to_vec())
        .await
        .expect("create after etcd is back");
    assert_eq!(store.count("/u/").await.unwrap(), 2);
}

#[tokio::test]
async fn etcd_connect_to_nothing_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let options = EtcdOptions {
        request_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_millis(300),
        ..EtcdOptions::default()
    };
    let started = Instant::now();
    let err = EtcdStore::connect(&[format!("http://127.0.0.1:{port}")], options)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("datastore unavailable"), "{err}");
}
