//! Every verb on every served kind, over HTTPS: create, get, list, watch, update, patch (merge,
//! strategic, JSON), status/scale where served, delete and deletecollection.
#![allow(clippy::disallowed_macros)]

mod common;

use common::{TestServer, minimal};
use kontti_apiserver::resources::{RESOURCES, ResourceDef, Subresource};
use serde_json::json;

fn collection(def: &ResourceDef) -> String {
    let base = if def.group.is_empty() {
        format!("/api/{}", def.version)
    } else {
        format!("/apis/{}/{}", def.group, def.version)
    };
    if def.namespaced {
        format!("{base}/namespaces/default/{}", def.plural)
    } else {
        format!("{base}/{}", def.plural)
    }
}

#[test]
fn every_verb_on_every_kind() {
    let server = TestServer::start(None).expect("server");
    let c = server.client();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for def in RESOURCES {
            let coll = collection(def);
            let name = format!("x-{}", def.singular);
            let ctx = def.qualified();
            let r = c.post_json(&coll, &minimal(def, &name)).await.unwrap();
            assert_eq!(r.status, 201, "create {ctx}: {:?}", r.json());
            let item = format!("{coll}/{name}");
            let got = c.get(&item).await.unwrap();
            assert_eq!(got.status, 200, "get {ctx}");
            let mut obj = got.json();
            assert_eq!(obj["kind"], def.kind);
            let list = c.get(&coll).await.unwrap().json();
            assert!(list["items"].as_array().unwrap().iter().any(|i| i["metadata"]["name"] == name.as_str()), "list {ctx}");
            assert_eq!(list["kind"], format!("{}List", def.kind));
            let w = c.get(&format!("{coll}?watch=true&timeoutSeconds=1")).await.unwrap();
            assert!(String::from_utf8_lossy(&w.body).contains("\"ADDED\""), "watch {ctx}");
            obj["metadata"]["labels"] = json!({"updated": "yes", "app": name});
            let r = c.put_json(&item, &obj).await.unwrap();
            assert_eq!(r.status, 200, "update {ctx}: {:?}", r.json());
            for (ct, body) in [
                ("application/merge-patch+json", json!({"metadata": {"annotations": {"m": "1"}}})),
                ("application/strategic-merge-patch+json", json!({"metadata": {"annotations": {"s": "1"}}})),
                ("application/json-patch+json", json!([{"op": "add", "path": "/metadata/annotations/j", "value": "1"}])),
            ] {
                let r = c.request("PATCH", &item, ct, serde_json::to_vec(&body).unwrap()).await.unwrap();
                assert_eq!(r.status, 200, "patch {ct} {ctx}: {:?}", r.json());
            }
            let anns = c.get(&item).await.unwrap().json()["metadata"]["annotations"].clone();
            assert_eq!(anns, json!({"m": "1", "s": "1", "j": "1"}), "{ctx}");
            if def.has(Subresource::Status) {
                let mut o = c.get(&item).await.unwrap().json();
                o["status"] = match def.kind {
                    "Namespace" => json!({"phase": "Active"}),
                    "ReplicaSet" | "StatefulSet" => json!({"replicas": 0}),
                    "DaemonSet" => json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0}),
                    "HorizontalPodAutoscaler" => json!({"desiredReplicas": 1}),
                    _ => json!({}),
                };
                let r = c.put_json(&format!("{item}/status"), &o).await.unwrap();
                assert_eq!(r.status, 200, "status {ctx}: {:?}", r.json());
            }
            if def.has(Subresource::Scale) {
                let r = c.request("PATCH", &format!("{item}/scale"), "application/merge-patch+json", serde_json::to_vec(&json!({"spec": {"replicas": 4}})).unwrap()).await.unwrap();
                assert_eq!(r.status, 200, "scale {ctx}: {:?}", r.json());
                assert_eq!(r.json()["kind"], "Scale");
                assert_eq!(c.get(&item).await.unwrap().json()["spec"]["replicas"], 4);
            }
            if def.kind == "Namespace" {
                continue; // deleting a namespace is covered by the kubectl tests
            }
            let r = c.request("DELETE", &item, "", Vec::new()).await.unwrap();
            assert_eq!(r.status, 200, "delete {ctx}: {:?}", r.json());
            assert_eq!(c.get(&item).await.unwrap().status, 404, "{ctx}");
            for i in 0..2 {
                let r = c.post_json(&coll, &minimal(def, &format!("{name}-{i}"))).await.unwrap();
                assert_eq!(r.status, 201, "{ctx}");
            }
            let r = c.request("DELETE", &coll, "", Vec::new()).await.unwrap();
            assert_eq!(r.status, 200, "deletecollection {ctx}");
            let left = c.get(&coll).await.unwrap().json();
            assert!(left["items"].as_array().unwrap().is_empty(), "deletecollection {ctx}: {left}");
        }
    });
}
