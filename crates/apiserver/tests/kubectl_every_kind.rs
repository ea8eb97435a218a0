//! Every verb on every served kind through the real kubectl (1.27 and 1.33, by path): create, get
//! (object, table, wide, status and scale subresources), list with a label selector, watch, replace,
//! merge, strategic and JSON patches, label, annotate, status patch, scale, server-side apply,
//! server dry run, delete and deletecollection.
#![allow(clippy::disallowed_macros)]

mod common;

use std::io::Read;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Etcd, Kubectl, TestServer, minimal};
use kontti_apiserver::resources::{RESOURCES, ResourceDef, Subresource};
use serde_json::{Value, json};

/// A status the kind's schema accepts.
fn status_sample(def: &ResourceDef) -> Value {
    match def.kind {
        "Namespace" => json!({"phase": "Active"}),
        "ReplicaSet" | "StatefulSet" => json!({"replicas": 0}),
        "DaemonSet" => json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
            "numberMisscheduled": 0, "numberReady": 0}),
        "HorizontalPodAutoscaler" => json!({"desiredReplicas": 1}),
        "Pod" => json!({"phase": "Pending"}),
        _ => json!({}),
    }
}

/// The kind's collection path, for `kubectl delete --raw` (kubectl has no deletecollection verb
/// of its own: `delete --all` deletes one object at a time).
fn collection_path(def: &ResourceDef, ns: &str) -> String {
    let base = if def.group.is_empty() {
        format!("/api/{}", def.version)
    } else {
        format!("/apis/{}/{}", def.group, def.version)
    };
    if def.namespaced {
        format!("{base}/namespaces/{ns}/{}", def.plural)
    } else {
        format!("{base}/{}", def.plural)
    }
}

struct Ctx<'a> {
    k: &'a Kubectl,
    res: String,
    ns: Vec<String>,
}

impl Ctx<'_> {
    fn args<'b>(&'b self, verb: &[&'b str]) -> Vec<&'b str> {
        let mut a: Vec<&str> = verb.to_vec();
        a.extend(self.ns.iter().map(String::as_str));
        a
    }
    fn ok(&self, verb: &[&str]) -> String {
        self.k.ok(&self.args(verb))
    }
    fn ok_stdin(&self, verb: &[&str], stdin: &str) -> String {
        self.k.ok_stdin(&self.args(verb), stdin)
    }
    fn get_json(&self, name: &str) -> Value {
        let out = self.ok(&["get", &self.res, name, "-o", "json"]);
        serde_json::from_str(&out).expect("kubectl prints JSON")
    }
    fn absent(&self, name: &str) {
        let out = self.k.run(&self.args(&["get", &self.res, name]));
        assert!(!out.status.success(), "{} {name} should be gone", self.res);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "{err}"
        );
    }
}

/// Watches `res/name`, runs `change`, and asserts that the watch printed the change.
fn watch_sees(c: &Ctx<'_>, name: &str, change: impl FnOnce()) {
    let mut child =
        c.k.cmd(&c.args(&[
            "get",
            &c.res,
            name,
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ]))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w runs");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let mut seen = String::new();
    let wait_for = |seen: &mut String, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !seen.contains(what) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(s) => seen.push_str(&s),
                Err(_) => panic!("watch of {} {name} never printed {what}: {seen}", c.res),
            }
        }
    };
    wait_for(&mut seen, "ADDED");
    change();
    wait_for(&mut seen, "MODIFIED");
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
}

fn every_verb(c: &Ctx<'_>, def: &ResourceDef) {
    let res = c.res.as_str();
    let name = format!("k-{}", def.singular);
    let mut obj = minimal(def, &name);
    obj["metadata"]["labels"] = json!({"app": name});
    let obj = obj.to_string();

    // create, get, table, wide, list with a selector
    c.ok_stdin(&["create", "-f", "-"], &obj);
    let got = c.get_json(&name);
    assert_eq!(got["kind"], def.kind, "{res}");
    assert!(c.ok(&["get", res]).contains(&name), "table of {res}");
    assert!(
        c.ok(&["get", res, "-o", "wide"]).contains(&name),
        "wide {res}"
    );
    let selected = c.ok(&["get", res, "-l", &format!("app={name}"), "-o", "name"]);
    assert!(selected.contains(&name), "list -l of {res}: {selected}");
    let none = c.ok(&["get", res, "-l", "app=nobody", "-o", "name"]);
    assert!(
        !none.contains(&name),
        "list -l of {res} matched another label"
    );

    // watch sees a label change; replace; patches of each type; annotate
    watch_sees(c, &name, || {
        c.ok(&["label", res, &name, "step=watched"]);
    });
    let mut cur = c.get_json(&name);
    cur["metadata"]["labels"]["replaced"] = json!("yes");
    c.ok_stdin(&["replace", "-f", "-"], &cur.to_string());
    for (ty, patch) in [
        ("merge", r#"{"metadata":{"annotations":{"m":"1"}}}"#),
        ("strategic", r#"{"metadata":{"annotations":{"s":"1"}}}"#),
        (
            "json",
            r#"[{"op":"add","path":"/metadata/annotations/j","value":"1"}]"#,
        ),
    ] {
        c.ok(&["patch", res, &name, "--type", ty, "-p", patch]);
    }
    c.ok(&["annotate", res, &name, "note=kept"]);
    let now = c.get_json(&name);
    assert_eq!(
        now["metadata"]["annotations"],
        json!({"m": "1", "s": "1", "j": "1", "note": "kept"}),
        "{res}"
    );
    assert_eq!(now["metadata"]["labels"]["replaced"], "yes", "{res}");
    assert_eq!(now["metadata"]["labels"]["step"], "watched", "{res}");

    // status and scale subresources
    if def.has(Subresource::Status) {
        let patch = json!({"status": status_sample(def)}).to_string();
        c.ok(&[
            "patch",
            res,
            &name,
            "--subresource=status",
            "--type",
            "merge",
            "-p",
            &patch,
        ]);
        let st = c.ok(&["get", res, &name, "--subresource=status", "-o", "json"]);
        assert!(
            st.contains(&name),
            "get --subresource=status of {res}: {st}"
        );
    }
    if def.has(Subresource::Scale) {
        c.ok(&["scale", res, &name, "--replicas=3"]);
        let replicas = c.ok(&["get", res, &name, "-o", "jsonpath={.spec.replicas}"]);
        assert_eq!(replicas.trim(), "3", "scale of {res}");
        let scale = c.ok(&["get", res, &name, "--subresource=scale", "-o", "json"]);
        assert!(scale.contains("\"kind\": \"Scale\""), "{scale}");
    }

    // server-side apply adds a label owned by its own manager
    let mut applied = minimal(def, &name);
    applied["metadata"]["labels"] = json!({"applied": "yes"});
    c.ok_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=every-kind",
            "-f",
            "-",
        ],
        &applied.to_string(),
    );
    let after: Value =
        serde_json::from_str(&c.ok(&["get", res, &name, "--show-managed-fields", "-o", "json"]))
            .expect("kubectl prints JSON");
    assert_eq!(
        after["metadata"]["labels"]["applied"], "yes",
        "SSA of {res}"
    );
    assert!(
        after["metadata"]["managedFields"]
            .as_array()
            .is_some_and(|m| m.iter().any(|f| f["manager"] == "every-kind")),
        "managedFields of {res}: {}",
        after["metadata"]
    );

    // server dry run stores nothing
    let dry = minimal(def, &format!("{name}-dry")).to_string();
    c.ok_stdin(&["create", "--dry-run=server", "-f", "-"], &dry);
    c.absent(&format!("{name}-dry"));

    // delete, then deletecollection through the collection path
    c.ok(&["delete", res, &name]);
    c.absent(&name);
    if def.kind == "Namespace" {
        return; // a namespace collection would hold the test's own namespace
    }
    for i in 0..2 {
        c.ok_stdin(
            &["create", "-f", "-"],
            &minimal(def, &format!("{name}-{i}")).to_string(),
        );
    }
    let ns = c.ns.get(1).map(String::as_str).unwrap_or("");
    c.k.ok(&["delete", "--raw", &collection_path(def, ns)]);
    for i in 0..2 {
        c.absent(&format!("{name}-{i}"));
    }
}

fn every_kind(k: &Kubectl) {
    let ns = "every";
    k.ok(&["create", "namespace", ns]);
    for def in RESOURCES {
        let c = Ctx {
            k,
            res: def.qualified(),
            ns: if def.namespaced {
                vec!["-n".to_string(), ns.to_string()]
            } else {
                Vec::new()
            },
        };
        every_verb(&c, def);
    }
    k.ok(&["delete", "namespace", ns]);
}

#[test]
fn kubectl_1_33_every_verb_on_every_kind_embedded() {
    let server = TestServer::start(None).expect("server");
    every_kind(&server.kubectl(33));
}

#[test]
fn kubectl_1_27_every_verb_on_every_kind_embedded() {
    let server = TestServer::start(None).expect("server");
    every_kind(&server.kubectl(27));
}

#[test]
fn kubectl_1_33_every_verb_on_every_kind_etcd() {
    let etcd = Etcd::start().expect("etcd");
    let server = TestServer::start(Some(etcd.url.clone())).expect("server");
    every_kind(&server.kubectl(33));
}
