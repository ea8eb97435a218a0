//! Request bodies in YAML and protobuf over real HTTPS: create, update and patch, and clear errors.
#![allow(clippy::disallowed_macros)]

mod common;

use common::TestServer;
use serde_json::json;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn yaml_bodies_for_create_update_and_patch() {
    let server = TestServer::start(None).expect("server");
    let c = server.client();
    rt().block_on(async {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n  labels: {tier: front}\ndata:\n  a: \"1\"\n  b: two\n";
        let r = c.request("POST", CMS, "application/yaml", yaml.into()).await.unwrap();
        assert_eq!(r.status, 201, "{:?}", r.json());
        assert_eq!(r.json()["data"], json!({"a": "1", "b": "two"}));
        let rv = r.json()["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        // Update (PUT) in YAML, with the resourceVersion it read.
        let put = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n  resourceVersion: \"{rv}\"\ndata:\n  a: \"2\"\n");
        let r = c.request("PUT", &format!("{CMS}/y"), "application/yaml; charset=utf-8", put.clone().into()).await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.json());
        assert_eq!(r.json()["data"], json!({"a": "2"}));
        // The same PUT again is stale.
        let r = c.request("PUT", &format!("{CMS}/y"), "application/yaml", put.into()).await.unwrap();
        assert_eq!(r.status, 409);
        // Server-side apply in YAML creates and then patches.
        let apply = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  k: v\n";
        let r = c.request("PATCH", &format!("{CMS}/ssa?fieldManager=yaml-test"), "application/apply-patch+yaml", apply.into()).await.unwrap();
        assert_eq!(r.status, 201, "{:?}", r.json());
        let r = c.request("PATCH", &format!("{CMS}/ssa?fieldManager=yaml-test"), "application/apply-patch+yaml", apply.replace("k: v", "k: w").into()).await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.json());
        assert_eq!(r.json()["data"]["k"], "w");
        // Malformed YAML: a 400 Status naming the line.
        for (ct, body) in [
            ("application/yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [name: x\n"),
            ("application/yaml", "a: 1\n---\nb: 2\n"),
            ("application/yaml", "# only a comment\n"),
            ("application/apply-patch+yaml", "data:\n  k: v\n    bad: indent\n"),
        ] {
            let r = c.request("POST", CMS, ct, body.into()).await.unwrap();
            assert_eq!(r.status, 400, "{body}: {:?}", r.json());
            assert_eq!(r.json()["kind"], "Status");
            assert_eq!(r.json()["reason"], "BadRequest");
        }
        let r = c.request("POST", CMS, "application/yaml", b"a: [1\n".to_vec()).await.unwrap();
        assert!(r.json()["message"].as_str().unwrap().contains("line 2"), "{:?}", r.json());
        // Deep and alias-expanded YAML is bounded like JSON.
        let deep = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: d}}\nx: {}{}\n", "[".repeat(5000), "]".repeat(5000));
        let r = c.request("POST", CMS, "application/yaml", deep.into()).await.unwrap();
        assert_eq!(r.status, 400);
        assert!(r.json()["message"].as_str().unwrap().contains("nests deeper"), "{:?}", r.json());
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let r = c.request("POST", CMS, "application/yaml", bomb.into()).await.unwrap();
        assert_eq!(r.status, 400, "{:?}", r.json());
        // Over the body limit is a 413 in YAML too.
        let big = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  x: {}\n", "a".repeat(4 << 20));
        assert_eq!(c.request("POST", CMS, "application/yaml", big.into()).await.unwrap().status, 413);
    });
}

#[test]
fn protobuf_bodies_of_other_kinds_get_a_clear_415() {
    let server = TestServer::start(None).expect("server");
    let c = server.client();
    rt().block_on(async {
        // A bare envelope naming nothing.
        let r = c
            .request(
                "POST",
                CMS,
                "application/vnd.kubernetes.protobuf",
                b"k8s\0".to_vec(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 415);
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("as JSON or YAML"),
            "{:?}",
            r.json()
        );
        let r = c
            .request(
                "POST",
                CMS,
                "application/vnd.kubernetes.protobuf",
                b"not protobuf".to_vec(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 400);
    });
}
