//! Server-side apply with two field managers: conflicts, forced takeover, removal of dropped
//! fields only when no other manager owns them, and Update operations owning what they change.
#![allow(clippy::disallowed_macros)]

mod common;

use common::TestServer;
use serde_json::{Value, json};

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn managers(o: &Value) -> Vec<(String, String, Value)> {
    o["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or("").to_string(),
                e["operation"].as_str().unwrap_or("").to_string(),
                e["fieldsV1"].clone(),
            )
        })
        .collect()
}

fn fields_of(o: &Value, manager: &str) -> Value {
    managers(o)
        .into_iter()
        .find(|(m, op, _)| m == manager && op == "Apply")
        .map(|(_, _, f)| f)
        .unwrap_or(Value::Null)
}

#[test]
fn forced_apply_takes_fields_over_and_dropped_fields_go_when_unowned() {
    let server = TestServer::start(None).expect("server");
    let c = server.client();
    let apply = |manager: &str, force: bool, data: Value| {
        let c = c.clone();
        let url = format!(
            "{CMS}/shared?fieldManager={manager}{}",
            if force { "&force=true" } else { "" }
        );
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": data});
        async move {
            c.request(
                "PATCH",
                &url,
                "application/apply-patch+yaml",
                serde_json::to_vec(&body).unwrap(),
            )
            .await
            .unwrap()
        }
    };
    rt().block_on(async {
        let r = apply("alice", false, json!({"x": "1", "y": "2"})).await;
        assert_eq!(r.status, 201, "{:?}", r.json());
        // bob applies x with another value: a conflict naming alice and the field.
        let r = apply("bob", false, json!({"x": "9", "z": "3"})).await;
        assert_eq!(r.status, 409, "{:?}", r.json());
        let msg = r.json()["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains("\"alice\"") && msg.contains(".data.x"),
            "{msg}"
        );
        // Forced: bob takes x over; alice no longer lists it.
        let r = apply("bob", true, json!({"x": "9", "z": "3"})).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        let o = r.json();
        assert_eq!(o["data"], json!({"x": "9", "y": "2", "z": "3"}));
        assert!(fields_of(&o, "alice")["f:data"].get("f:x").is_none(), "{o}");
        assert!(fields_of(&o, "alice")["f:data"].get("f:y").is_some(), "{o}");
        assert!(fields_of(&o, "bob")["f:data"].get("f:x").is_some(), "{o}");
        // alice re-applies without x: x stays, bob owns it.
        let r = apply("alice", false, json!({"y": "2"})).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        assert_eq!(r.json()["data"]["x"], "9");
        // alice drops y, which nobody else owns: it goes.
        let r = apply("alice", false, json!({"w": "4"})).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        assert_eq!(r.json()["data"], json!({"x": "9", "z": "3", "w": "4"}));
        // Both apply the same value of a field: shared ownership, no conflict; when one drops
        // it, it stays; when the other drops it too, it goes.
        let r = apply("alice", false, json!({"w": "4", "s": "same"})).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        let r = apply("bob", false, json!({"x": "9", "z": "3", "s": "same"})).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        let r = apply("alice", false, json!({"w": "4"})).await;
        assert_eq!(r.json()["data"]["s"], "same");
        let r = apply("bob", false, json!({"x": "9"})).await;
        assert_eq!(
            r.json()["data"],
            json!({"x": "9", "w": "4"}),
            "{:?}",
            r.json()
        );
        // An Update (merge patch) by carol takes the field it changes from the appliers: bob's
        // later apply without x does not remove it.
        let r = c
            .request(
                "PATCH",
                &format!("{CMS}/shared?fieldManager=carol"),
                "application/merge-patch+json",
                serde_json::to_vec(&json!({"data": {"x": "c"}})).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.json());
        let o = r.json();
        assert!(
            fields_of(&o, "bob")
                .get("f:data")
                .is_none_or(|d| d.get("f:x").is_none()),
            "{o}"
        );
        let carol = managers(&o)
            .into_iter()
            .find(|(m, _, _)| m == "carol")
            .expect("carol's entry");
        assert_eq!(carol.1, "Update");
        assert_eq!(
            carol.2,
            json!({"f:data": {"f:x": {}}}),
            "carol owns only what she changed"
        );
        let r = apply("bob", false, json!({"z": "5"})).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        assert_eq!(r.json()["data"], json!({"x": "c", "w": "4", "z": "5"}));
    });
}
