//! A watch that is never read, on large objects: the server's buffers are bounded in bytes, so the
//! process's resident memory stays bounded while the writes go on (the watch is cut off with 410).
#![allow(clippy::disallowed_macros)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Client, TestServer};
use serde_json::{Value, json};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
/// The size of the value each write stores.
const OBJECT: usize = 512 << 10;
const WRITES: usize = 240;
/// Concurrent writers, each on its own object.
const WRITERS: usize = 4;

/// This process's resident set size (the server runs in it).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// Stores a new `OBJECT`-sized value in `big-{w}`.
async fn write(c: &Client, w: usize, i: usize) {
    let pad = char::from(b'a' + (i % 26) as u8).to_string().repeat(OBJECT);
    let patch = json!({"data": {"n": i.to_string(), "pad": pad}});
    let r = c
        .request(
            "PATCH",
            &format!("{CMS}/big-{w}"),
            "application/merge-patch+json",
            serde_json::to_vec(&patch).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn watch_never_read_on_large_objects_keeps_rss_bounded() {
    use http_body_util::BodyExt;
    let server = TestServer::start(None).expect("server");
    let c = server.client();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for w in 0..WRITERS {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("big-{w}")}});
            assert_eq!(c.post_json(CMS, &cm).await.unwrap().status, 201);
        }
        // Warm up the store's cache and the allocator before the baseline.
        for i in 0..20 {
            write(&c, i % WRITERS, i).await;
        }
        let mut watch = c.stream(&format!("{CMS}?watch=true")).await.unwrap();
        assert_eq!(watch.status(), 200);
        let before = rss_bytes();
        // Sample the peak while the writes run.
        let peak = Arc::new(AtomicU64::new(before));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                for i in (w..WRITES).step_by(WRITERS) {
                    write(&c, w, i).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        sampler.abort();
        let peak = peak.load(Ordering::Relaxed).max(rss_bytes());
        let growth = peak.saturating_sub(before);
        let written = (WRITES * OBJECT) as u64;
        println!(
            "rss before {} MiB, peak {} MiB, growth {} MiB over {} MiB written (x2 with previous values) to a watch nobody reads",
            before >> 20,
            peak >> 20,
            growth >> 20,
            written >> 20
        );
        assert!(
            growth < 160 << 20,
            "RSS grew by {} MiB while a watch went unread",
            growth >> 20
        );
        // Reading now: the watch ends with a 410 instead of having queued every event.
        let mut text = String::new();
        while let Ok(Some(Ok(f))) =
            tokio::time::timeout(Duration::from_secs(10), watch.body_mut().frame()).await
        {
            if let Some(d) = f.data_ref() {
                text.push_str(&String::from_utf8_lossy(d));
            }
            if text.contains("\"ERROR\"") {
                break;
            }
        }
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let last = events.last().expect("some events");
        assert_eq!(last["type"], "ERROR", "{} events", events.len());
        assert_eq!(last["object"]["code"], 410);
        assert!(
            events.len() < WRITES / 4,
            "{} events were queued for a reader that never read",
            events.len()
        );
    });
}
