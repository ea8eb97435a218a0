//! API semantics and bad input over real HTTPS: limits, validation, conflicts, watch, paging,
//! finalizers, and an etcd outage.
#![allow(clippy::disallowed_macros)]

mod common;

use std::time::Duration;

use common::{Etcd, TestServer};
use serde_json::{Value, json};

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"n": "0"}})
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn bad_bodies_get_clear_errors() {
    let server = TestServer::start(None).expect("server");
    let c = server.client();
    rt().block_on(async {
        // 3 MiB limit.
        let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"x": "a".repeat(4 << 20)}});
        let r = c.post_json(CMS, &big).await.unwrap();
        assert_eq!(r.status, 413, "{:?}", r.json());
        // Just under the limit is fine.
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nearly"}, "data": {"x": "a".repeat((3 << 20) - 200)}});
        assert_eq!(c.post_json(CMS, &ok).await.unwrap().status, 201);
        // Deep nesting.
        let deep = format!("{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"d\"}},\"x\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
        let r = c.request("POST", CMS, "application/json", deep.into_bytes()).await.unwrap();
        assert_eq!(r.status, 400);
        assert!(r.json()["message"].as_str().unwrap().contains("nests deeper"));
        // Malformed JSON, protobuf, unknown media type.
        let r = c.request("POST", CMS, "application/json", b"{\"kind\": ".to_vec()).await.unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["kind"], "Status");
        // Protobuf of a kind the server does not decode (a bare envelope names none).
        assert_eq!(c.request("POST", CMS, "application/vnd.kubernetes.protobuf", vec![0x6b, 0x38, 0x73, 0]).await.unwrap().status, 415);
        assert_eq!(c.request("POST", CMS, "text/plain", b"{}".to_vec()).await.unwrap().status, 415);
        // Invalid names.
        for bad in ["Upper", "-lead", "has_underscore", &"a".repeat(254)] {
            let r = c.post_json(CMS, &cm(bad)).await.unwrap();
            assert_eq!(r.status, 422, "{bad}");
            assert_eq!(r.json()["details"]["causes"][0]["field"], "metadata.name");
        }
        let r = c.post_json(CMS, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})).await.unwrap();
        assert_eq!(r.status, 422);
        // Wrong apiVersion or kind.
        let r = c.post_json(CMS, &json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}})).await.unwrap();
        assert_eq!(r.status, 400);
        assert!(r.json()["message"].as_str().unwrap().contains("apps/v1"));
        let r = c.post_json(CMS, &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})).await.unwrap();
        assert_eq!(r.status, 400);
        // Required fields and type errors.
        let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {}}});
        let r = c.post_json("/apis/apps/v1/namespaces/default/deployments", &dep).await.unwrap();
        assert_eq!(r.status, 422);
        assert!(r.json()["message"].as_str().unwrap().contains("spec.selector"), "{:?}", r.json());
        let r = c.post_json(CMS, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t"}, "data": {"n": 1}})).await.unwrap();
        assert_eq!(r.status, 400);
        // Namespace must exist.
        let r = c.post_json("/api/v1/namespaces/nope/configmaps", &cm("x")).await.unwrap();
        assert_eq!(r.status, 404);
    });
}

#[test]
fn unknown_fields_strict_warn_ignore() {
    let server = TestServer::start(None).expect("server");
    let c = server.client();
    rt().block_on(async {
        let mut o = cm("u1");
        o["bogus"] = json!(1);
        let r = c
            .post_json(&format!("{CMS}?fieldValidation=Strict"), &o)
            .await
            .unwrap();
        assert_eq!(r.status, 400);
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("unknown field \"bogus\"")
        );
        let r = c
            .post_json(&format!("{CMS}?fieldValidation=Warn"), &o)
            .await
            .unwrap();
        assert_eq!(r.status, 201);
        let w = r
            .headers
            .get("warning")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(w.contains("unknown field"), "{w}");
        assert!(r.json().get("bogus").is_none());
        o["metadata"]["name"] = json!("u2");
        let r = c
            .post_json(&format!("{CMS}?fieldValidation=Ignore"), &o)
            .await
            .unwrap();
        assert_eq!(r.status, 201);
        assert!(r.headers.get("warning").is_none());
        assert_eq!(
            c.post_json(&format!("{CMS}?fieldValidation=Loose"), &o)
                .await
                .unwrap()
                .status,
            400
        );
    });
}

#[test]
fn concurrent_increments_lose_no_update() {
    let server = TestServer::start(None).expect("server");
    let c = server.client();
    rt().block_on(async {
        assert_eq!(c.post_json(CMS, &cm("counter")).await.unwrap().status, 201);
        let (clients, each) = (8, 10);
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut conflicts = 0;
                for _ in 0..each {
                    loop {
                        let mut o = c.get(&format!("{CMS}/counter")).await.unwrap().json();
                        let n: i64 = o["data"]["n"].as_str().unwrap().parse().unwrap();
                        o["data"]["n"] = json!((n + 1).to_string());
                        let r = c.put_json(&format!("{CMS}/counter"), &o).await.unwrap();
                        match r.status {
                            200 => break,
                            409 => conflicts += 1,
                            s => panic!("unexpected {s}: {:?}", r.json()),
                        }
                    }
                }
                conflicts
            }));
        }
        let mut conflicts = 0;
        for t in tasks {
            conflicts += t.await.unwrap();
        }
        let o = c.get(&format!("{CMS}/counter")).await.unwrap().json();
        assert_eq!(
            o["data"]["n"],
            json!((clients * each).to_string()),
            "after {conflicts} conflicts"
        );
        // A stale resourceVersion is a 409 with a Status body.
        let mut stale = o.clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        let r = c.put_json(&format!("{CMS}/counter"), &stale).await.unwrap();
        assert_eq!(r.status, 409);
        assert_eq!(r.json()["reason"], "Conflict");
    });
}

#[test]
fn list_paging_selectors_and_tables() {
    let server = TestServer::start(None).expect("server");
    let c = server.client();
    rt().block_on(async {
        for i in 0..5 {
            let mut o = cm(&format!("page-{i}"));
            o["metadata"]["labels"] = json!({"parity": if i % 2 == 0 { "even" } else { "odd" }});
            assert_eq!(c.post_json(CMS, &o).await.unwrap().status, 201);
        }
        let first = c.get(&format!("{CMS}?limit=2")).await.unwrap().json();
        assert_eq!(first["items"].as_array().unwrap().len(), 2);
        let token = first["metadata"]["continue"].as_str().unwrap().to_string();
        let second = c
            .get(&format!("{CMS}?limit=10&continue={token}"))
            .await
            .unwrap()
            .json();
        assert_eq!(second["items"].as_array().unwrap().len(), 3);
        assert!(second["metadata"].get("continue").is_none());
        let odd = c
            .get(&format!("{CMS}?labelSelector=parity%3Dodd"))
            .await
            .unwrap()
            .json();
        assert_eq!(odd["items"].as_array().unwrap().len(), 2);
        let named = c
            .get(&format!("{CMS}?fieldSelector=metadata.name%3Dpage-3"))
            .await
            .unwrap()
            .json();
        assert_eq!(named["items"][0]["metadata"]["name"], "page-3");
        assert_eq!(
            c.get(&format!("{CMS}?continue=garbage"))
                .await
                .unwrap()
                .status,
            400
        );
        assert_eq!(
            c.get(&format!("{CMS}?labelSelector=a%20in%20b"))
                .await
                .unwrap()
                .status,
            400
        );
    });
}

#[test]
fn finalizers_generate_name_and_dry_run() {
    let server = TestServer::start(None).expect("server");
    let c = server.client();
    rt().block_on(async {
        let o = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-", "finalizers": ["example.com/hold"]}});
        let r = c.post_json(CMS, &o).await.unwrap();
        assert_eq!(r.status, 201);
        let created = r.json();
        let name = created["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
        assert_eq!(created["metadata"]["uid"].as_str().unwrap().len(), 36);
        let r = c.request("DELETE", &format!("{CMS}/{name}"), "", Vec::new()).await.unwrap();
        assert_eq!(r.status, 202);
        let held = c.get(&format!("{CMS}/{name}")).await.unwrap().json();
        assert!(held["metadata"]["deletionTimestamp"].is_string());
        let patch = json!({"metadata": {"finalizers": null}});
        let r = c.request("PATCH", &format!("{CMS}/{name}"), "application/merge-patch+json", serde_json::to_vec(&patch).unwrap()).await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.json());
        assert_eq!(c.get(&format!("{CMS}/{name}")).await.unwrap().status, 404);
        // dryRun=All writes nothing.
        let r = c.post_json(&format!("{CMS}?dryRun=All"), &cm("dry")).await.unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(c.get(&format!("{CMS}/dry")).await.unwrap().status, 404);
        // JSON patch test failure is a clear 400... no: a failed test is a conflict of content.
        assert_eq!(c.post_json(CMS, &cm("jp")).await.unwrap().status, 201);
        let jp = json!([{"op": "test", "path": "/data/n", "value": "9"}]);
        let r = c.request("PATCH", &format!("{CMS}/jp"), "application/json-patch+json", serde_json::to_vec(&jp).unwrap()).await.unwrap();
        assert_eq!(r.status, 400);
    });
}

#[test]
fn watch_that_is_never_read_is_cut_off_not_buffered() {
    use http_body_util::BodyExt;
    let server = TestServer::start(None).expect("server");
    let c = server.client();
    rt().block_on(async {
        for w in 0..8 {
            assert_eq!(
                c.post_json(CMS, &cm(&format!("hot-{w}")))
                    .await
                    .unwrap()
                    .status,
                201
            );
        }
        let mut watch = c.stream(&format!("{CMS}?watch=true")).await.unwrap();
        assert_eq!(watch.status(), 200);
        // Far more changes than any buffer on the way holds, while nobody reads the watch.
        let writes = 4000;
        let mut tasks = Vec::new();
        for w in 0..8 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                for i in (w..writes).step_by(8) {
                    let patch = json!({"data": {"n": i.to_string(), "pad": "p".repeat(2048)}});
                    let r = c
                        .request(
                            "PATCH",
                            &format!("{CMS}/hot-{w}"),
                            "application/merge-patch+json",
                            serde_json::to_vec(&patch).unwrap(),
                        )
                        .await
                        .unwrap();
                    assert_eq!(r.status, 200);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Now read: the watch ends with a 410 instead of having queued every event.
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
        assert_eq!(
            last["type"],
            "ERROR",
            "{} events, last {last}",
            events.len()
        );
        assert_eq!(last["object"]["code"], 410);
        assert!(
            events.len() < writes,
            "{} events were queued for a reader that never read",
            events.len()
        );
    });
}

#[test]
fn watch_streams_changes_and_bookmarks() {
    use http_body_util::BodyExt;
    let server = TestServer::start(None).expect("server");
    let c = server.client();
    rt().block_on(async {
        let created = c.post_json(CMS, &cm("w")).await.unwrap().json();
        let rv = created["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let mut watch = c
            .stream(&format!(
                "{CMS}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true"
            ))
            .await
            .unwrap();
        let mut o = created.clone();
        o["data"]["n"] = json!("1");
        assert_eq!(
            c.put_json(&format!("{CMS}/w"), &o).await.unwrap().status,
            200
        );
        assert_eq!(
            c.request("DELETE", &format!("{CMS}/w"), "", Vec::new())
                .await
                .unwrap()
                .status,
            200
        );
        let mut seen = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        while !(seen.contains("DELETED") && seen.contains("BOOKMARK"))
            && tokio::time::Instant::now() < deadline
        {
            match tokio::time::timeout(Duration::from_secs(8), watch.body_mut().frame()).await {
                Ok(Some(Ok(f))) => {
                    if let Some(d) = f.data_ref() {
                        seen.push_str(&String::from_utf8_lossy(d));
                    }
                }
                _ => break,
            }
        }
        let types: Vec<String> = seen
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|e| e["type"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(&types[..2], ["MODIFIED", "DELETED"], "{seen}");
        assert!(types.contains(&"BOOKMARK".to_string()), "{seen}");
        assert_eq!(
            c.get(&format!("{CMS}?watch=true&resourceVersion=abc"))
                .await
                .unwrap()
                .status,
            400
        );
    });
}

#[test]
fn etcd_outage_gives_503_then_recovers_without_restart() {
    let mut etcd = Etcd::start().expect("etcd");
    let server = TestServer::start(Some(etcd.url.clone())).expect("server");
    let c = server.client();
    rt().block_on(async {
        assert_eq!(c.post_json(CMS, &cm("before")).await.unwrap().status, 201);
        etcd.stop();
        let r = tokio::time::timeout(Duration::from_secs(30), c.get(&format!("{CMS}/before")))
            .await
            .expect("answer while etcd is down")
            .unwrap();
        assert_eq!(r.status, 503, "{:?}", r.json());
        assert_eq!(r.json()["reason"], "ServiceUnavailable");
        etcd.restart().expect("etcd restart");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = c.get(&format!("{CMS}/before")).await.unwrap();
            if r.status == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no recovery: {} {:?}",
                r.status,
                r.json()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(c.post_json(CMS, &cm("after")).await.unwrap().status, 201);
    });
}
