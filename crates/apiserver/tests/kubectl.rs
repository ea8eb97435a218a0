//! The real kubectl (1.27 and 1.33, by path) against a live server on the embedded store and on etcd.
#![allow(clippy::disallowed_macros)]

mod common;

use std::time::Duration;

use common::{Etcd, Kubectl, TestServer};

const MANIFEST: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        command: ["httpd", "-f"]
        ports:
        - containerPort: 80
        env:
        - name: GREETING
          value: hello
      - name: sidecar
        image: busybox:1.36
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: demo
data:
  key: value
---
apiVersion: v1
kind: Secret
metadata:
  name: sec
  namespace: demo
stringData:
  password: hunter2
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: demo
spec:
  rules:
  - host: web.example
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
"#;

fn cm(name: &str, ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n  x: \"y\"\n"
    )
}

fn workflow(k: &Kubectl) {
    let m = k.file("app.yaml", MANIFEST);
    let m = m.to_str().expect("utf-8 path");
    let out = k.ok(&["apply", "-f", m]);
    for what in [
        "namespace/demo created",
        "deployment.apps/web created",
        "service/web created",
        "configmap/cfg created",
        "secret/sec created",
        "ingress.networking.k8s.io/web created",
    ] {
        assert!(out.contains(what), "{out}");
    }
    // Re-apply after an edit: a three-way strategic merge patch that drops a container, changes
    // a list item by merge key and a scalar.
    let edited = MANIFEST
        .replace("replicas: 2", "replicas: 3")
        .replace("value: hello", "value: bye")
        .replace("      - name: sidecar\n        image: busybox:1.36\n", "");
    let m2 = k.file("app2.yaml", &edited);
    let out = k.ok(&["apply", "-f", m2.to_str().expect("utf-8 path")]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let got = k.ok(&["get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[*].name} {.spec.template.spec.containers[0].env[0].value} {.metadata.generation}"]);
    assert_eq!(got, "3 web bye 2");
    // Output formats.
    let wide = k.ok(&["get", "deploy", "-n", "demo", "-o", "wide"]);
    assert!(
        wide.contains("READY") && wide.contains("busybox:1.36") && wide.contains("app=web"),
        "{wide}"
    );
    let yaml = k.ok(&["get", "svc", "web", "-n", "demo", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Service") && yaml.contains("targetPort: 80"),
        "{yaml}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "cm", "cfg", "-n", "demo", "-o", "json"]))
            .expect("json output");
    assert_eq!(json["data"]["key"], "value");
    let secret = k.ok(&[
        "get",
        "secret",
        "sec",
        "-n",
        "demo",
        "-o",
        "jsonpath={.data.password}",
    ]);
    assert_eq!(secret, "aHVudGVyMg==");
    let all = k.ok(&["get", "all", "-n", "demo"]);
    assert!(
        all.contains("service/web") && all.contains("deployment.apps/web"),
        "{all}"
    );
    // label, annotate, scale.
    k.ok(&["label", "deploy", "web", "-n", "demo", "tier=front"]);
    k.ok(&["annotate", "deploy", "web", "-n", "demo", "note=hi"]);
    k.ok(&["scale", "deploy", "web", "-n", "demo", "--replicas=5"]);
    let got = k.ok(&[
        "get",
        "deploy",
        "-n",
        "demo",
        "-l",
        "tier=front",
        "-o",
        "jsonpath={.items[0].spec.replicas} {.items[0].metadata.annotations.note}",
    ]);
    assert_eq!(got, "5 hi");
    assert!(
        k.ok(&["get", "deploy", "-n", "demo", "-l", "tier=back"])
            .is_empty()
    );
    // edit through KUBE_EDITOR (a sed script).
    let out = k
        .cmd(&["edit", "cm", "cfg", "-n", "demo"])
        .env("KUBE_EDITOR", "sed -i s/value/edited/")
        .output()
        .expect("kubectl edit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        k.ok(&[
            "get",
            "cm",
            "cfg",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.key}"
        ]),
        "edited"
    );
    // api-resources and explain.
    let res = k.ok(&["api-resources"]);
    for r in [
        "deployments",
        "horizontalpodautoscalers",
        "leases",
        "endpointslices",
        "ingresses",
        "persistentvolumeclaims",
    ] {
        assert!(res.contains(r), "{res}");
    }
    let explain = k.ok(&["explain", "deployment.spec"]);
    assert!(
        explain.contains("replicas") && explain.contains("Number of desired pods"),
        "{explain}"
    );
    // server-side apply, diff, dry-run, strict validation.
    let ssa = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: demo\ndata:\n  a: \"1\"\n";
    let f = k.file("ssa.yaml", ssa);
    let out = k.ok(&[
        "apply",
        "--server-side",
        "-f",
        f.to_str().expect("utf-8 path"),
    ]);
    assert!(out.contains("serverside-applied"), "{out}");
    let managed = k.ok(&[
        "get",
        "cm",
        "ssa",
        "-n",
        "demo",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(managed.contains("kubectl"), "{managed}");
    let f2 = k.file("ssa2.yaml", &ssa.replace("a: \"1\"", "a: \"2\""));
    let diff = k.run(&["diff", "-f", f2.to_str().expect("utf-8 path")]);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "diff exits 1 when there are differences: {}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains("+  a: \"2\""),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    let dry = k.file("dry.yaml", &cm("dry", "demo"));
    let out = k.ok(&[
        "create",
        "-f",
        dry.to_str().expect("utf-8 path"),
        "--dry-run=server",
    ]);
    assert!(out.contains("server dry run"), "{out}");
    k.fails(&["get", "cm", "dry", "-n", "demo"]);
    let bad = k.file("bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: demo\ndatta:\n  a: b\n");
    let err = k.fails(&[
        "apply",
        "--validate=strict",
        "-f",
        bad.to_str().expect("utf-8 path"),
    ]);
    assert!(
        err.contains("unknown field") && err.contains("datta"),
        "{err}"
    );
    // get -w sees a later change.
    let mut watch = k
        .cmd(&["get", "cm", "-n", "demo", "-w", "--request-timeout=0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl get -w");
    std::thread::sleep(Duration::from_millis(1500));
    k.ok_stdin(&["create", "-f", "-"], &cm("later", "demo"));
    std::thread::sleep(Duration::from_millis(1500));
    let _ = watch.kill();
    let out = watch.wait_with_output().expect("watch output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cfg") && text.contains("later"), "{text}");
    // delete -f and delete ns.
    let out = k.ok(&[
        "delete",
        "-f",
        m2.to_str().expect("utf-8 path"),
        "--wait=false",
    ]);
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: gone\n",
    );
    k.ok_stdin(&["create", "-f", "-"], &cm("c", "gone"));
    k.ok(&["delete", "ns", "gone", "--timeout=30s"]);
    let out = k.run(&["get", "ns", "gone"]);
    assert!(
        !out.status.success(),
        "namespace still there: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(k.ok(&["get", "cm", "-n", "gone", "-o", "name"]).is_empty());
}

#[test]
fn kubectl_1_27_workflow_embedded() {
    let server = TestServer::start(None).expect("server");
    workflow(&server.kubectl(27));
}

#[test]
fn kubectl_1_33_workflow_embedded() {
    let server = TestServer::start(None).expect("server");
    workflow(&server.kubectl(33));
}

#[test]
fn kubectl_1_33_workflow_etcd() {
    let etcd = Etcd::start().expect("etcd");
    let server = TestServer::start(Some(etcd.url.clone())).expect("server");
    workflow(&server.kubectl(33));
}

#[test]
fn kubectl_1_27_workflow_etcd() {
    let etcd = Etcd::start().expect("etcd");
    let server = TestServer::start(Some(etcd.url.clone())).expect("server");
    workflow(&server.kubectl(27));
}

#[test]
fn kubectl_etcd_two_servers_share_one_identity() {
    let etcd = Etcd::start().expect("etcd");
    let a = TestServer::start(Some(etcd.url.clone())).expect("server a");
    let b = TestServer::start(Some(etcd.url.clone())).expect("server b");
    let ka = a.kubectl(33);
    ka.ok_stdin(&["create", "-f", "-"], &cm("shared", "default"));
    // a's admin credential works against b, and b sees a's object.
    let mut kb = b.kubectl(33);
    let text = std::fs::read_to_string(&a.kubeconfig)
        .expect("kubeconfig")
        .replace(&a.addr.to_string(), &b.addr.to_string());
    kb.kubeconfig = kb.file("a-on-b.kubeconfig", &text);
    assert_eq!(
        kb.ok(&["get", "cm", "shared", "-o", "jsonpath={.data.x}"]),
        "y"
    );
}

#[test]
fn kubectl_unauthenticated_is_refused() {
    let server = TestServer::start(None).expect("server");
    let mut k = server.kubectl(33);
    let text = std::fs::read_to_string(&server.kubeconfig).expect("kubeconfig");
    let anonymous: String = text
        .lines()
        .filter(|l| !l.contains("client-key-data"))
        .map(|l| {
            if l.contains("client-certificate-data") {
                "    token: not-a-credential\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    k.kubeconfig = k.file("anon.kubeconfig", &anonymous);
    let err = k.fails(&["get", "pods"]);
    assert!(
        err.contains("Unauthorized") || err.contains("provide credentials"),
        "{err}"
    );
}

/// kubectl's generator commands: typed clients that send protobuf from 1.33 on (JSON before).
fn generators(k: &Kubectl) {
    k.ok(&["create", "namespace", "gen"]);
    let out = k.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "gen",
        "--image=busybox:1.36",
        "--replicas=2",
        "--port=80",
        "--",
        "httpd",
        "-f",
    ]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    assert_eq!(
        k.ok(&["get", "deploy", "web", "-n", "gen", "-o",
            "jsonpath={.spec.replicas} {.spec.selector.matchLabels.app} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].command} {.spec.template.spec.containers[0].ports[0].containerPort}"]),
        "2 web busybox:1.36 [\"httpd\",\"-f\"] 80"
    );
    k.ok(&[
        "create",
        "deployment",
        "idle",
        "-n",
        "gen",
        "--image=busybox",
        "--replicas=0",
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "idle",
            "-n",
            "gen",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "0"
    );
    let bin = k.file("blob.bin", "");
    std::fs::write(&bin, [0u8, 0xff, 1]).expect("write blob");
    let from_file = format!("--from-file={}", bin.display());
    k.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "gen",
        "--from-literal=a=b",
        &from_file,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "cm",
            "cfg",
            "-n",
            "gen",
            "-o",
            "jsonpath={.data.a} {.binaryData.blob\\.bin}"
        ]),
        "b AP8B"
    );
    k.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "-n",
        "gen",
        "--from-literal=password=hunter2",
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "secret",
            "sec",
            "-n",
            "gen",
            "-o",
            "jsonpath={.type} {.data.password}"
        ]),
        "Opaque aHVudGVyMg=="
    );
    k.ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "-n",
        "gen",
        "--tcp=80:8080",
    ]);
    assert_eq!(
        k.ok(&["get", "svc", "web", "-n", "gen", "-o", "jsonpath={.spec.type} {.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.selector.app}"]),
        "ClusterIP 80 8080 web"
    );
    k.ok(&["create", "quota", "q", "-n", "gen", "--hard=pods=2,cpu=1"]);
    assert_eq!(
        k.ok(&[
            "get",
            "quota",
            "q",
            "-n",
            "gen",
            "-o",
            "jsonpath={.spec.hard.pods}"
        ]),
        "2"
    );
    k.ok(&["create", "serviceaccount", "robot", "-n", "gen"]);
    // A server dry run writes nothing; a second create is a clear AlreadyExists.
    let out = k.ok(&[
        "create",
        "configmap",
        "dry",
        "-n",
        "gen",
        "--from-literal=x=y",
        "--dry-run=server",
        "-o",
        "jsonpath={.data.x}",
    ]);
    assert_eq!(out, "y");
    k.fails(&["get", "cm", "dry", "-n", "gen"]);
    let err = k.fails(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "gen",
        "--from-literal=a=b",
    ]);
    assert!(err.contains("already exists"), "{err}");
    // Invalid input is still validated: a 422 with the field.
    let err = k.fails(&[
        "create",
        "deployment",
        "Bad_Name",
        "-n",
        "gen",
        "--image=busybox",
    ]);
    assert!(err.contains("metadata.name"), "{err}");
}

#[test]
fn kubectl_1_33_generators_embedded() {
    let server = TestServer::start(None).expect("server");
    generators(&server.kubectl(33));
}

#[test]
fn kubectl_1_27_generators_embedded() {
    let server = TestServer::start(None).expect("server");
    generators(&server.kubectl(27));
}

#[test]
fn kubectl_1_33_generators_etcd() {
    let etcd = Etcd::start().expect("etcd");
    let server = TestServer::start(Some(etcd.url.clone())).expect("server");
    generators(&server.kubectl(33));
}

#[test]
fn kubectl_1_33_server_side_apply_force_conflicts() {
    let server = TestServer::start(None).expect("server");
    let k = server.kubectl(33);
    let cm = |data: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  namespace: default\ndata:\n{data}"
        )
    };
    // (Keys like y and n are booleans to kubectl's YAML 1.1 reader: avoided here.)
    let alice = k.file("alice.yaml", &cm("  x: \"1\"\n  w: \"2\"\n"));
    let bob = k.file("bob.yaml", &cm("  x: \"9\"\n"));
    let (alice, bob) = (
        alice.to_str().expect("utf-8 path"),
        bob.to_str().expect("utf-8 path"),
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=alice",
        "-f",
        alice,
    ]);
    let err = k.fails(&["apply", "--server-side", "--field-manager=bob", "-f", bob]);
    assert!(
        err.contains("conflict") && err.contains("alice") && err.contains(".data.x"),
        "{err}"
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=bob",
        "--force-conflicts",
        "-f",
        bob,
    ]);
    let get = |path: &str| {
        k.ok(&[
            "get",
            "cm",
            "owned",
            "--show-managed-fields",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    assert_eq!(get("{.data.x} {.data.w}"), "9 2");
    let alice_fields = get("{.metadata.managedFields[?(@.manager==\"alice\")].fieldsV1}");
    assert!(
        alice_fields.contains("f:w") && !alice_fields.contains("f:x"),
        "{alice_fields}"
    );
    // alice drops w (hers alone: removed) and x (now bob's: kept).
    let alice2 = k.file("alice2.yaml", &cm("  z: \"3\"\n"));
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=alice",
        "-f",
        alice2.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(get("{.data}"), "{\"x\":\"9\",\"z\":\"3\"}");
}
