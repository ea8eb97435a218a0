//! Bodies captured from kubectl 1.33's generator commands (`kubectl -v=9 create ...`), decoded to
//! the JSON that kubectl 1.27 sends for the same commands; and the decoder against broken input.

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/protobuf/kubectl-1.33-",
            $name,
            ".bin"
        ))
        .as_slice()
    };
}

const FIXTURES: &[&[u8]] = &[
    fixture!("deploy"),
    fixture!("deploy0"),
    fixture!("cm"),
    fixture!("cmbin"),
    fixture!("secret"),
    fixture!("ns"),
    fixture!("svc"),
    fixture!("quota"),
    fixture!("sa"),
];

#[test]
fn create_deployment() {
    // kubectl create deployment web --image=busybox:1.36 --replicas=2 --port=80 -- httpd -f
    let v = decode(fixture!("deploy")).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "busybox", "image": "busybox:1.36", "command": ["httpd", "-f"],
                        "ports": [{"containerPort": 80}],
                    }]},
                },
            },
        })
    );
    // --replicas=0 is kept: the field is a pointer.
    let v = decode(fixture!("deploy0")).unwrap();
    assert_eq!(v["spec"]["replicas"], 0);
}

#[test]
fn create_configmap_secret_namespace() {
    // kubectl create configmap c --from-literal=a=b --from-literal=empty=
    let v = decode(fixture!("cm")).unwrap();
    assert_eq!(v["kind"], "ConfigMap");
    assert_eq!(v["data"], json!({"a": "b", "empty": ""}));
    // kubectl create configmap cb --from-file=bin.dat (bytes 00 ff 01)
    let v = decode(fixture!("cmbin")).unwrap();
    assert_eq!(v["binaryData"], json!({"bin.dat": "AP8B"}));
    // kubectl create secret generic s --from-literal=password=hunter2 --type=example.com/x
    let v = decode(fixture!("secret")).unwrap();
    assert_eq!(v["data"], json!({"password": "aHVudGVyMg=="}));
    assert_eq!(v["type"], "example.com/x");
    // kubectl create namespace demo2
    let v = decode(fixture!("ns")).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo2"}})
    );
    // kubectl create serviceaccount robot
    let v = decode(fixture!("sa")).unwrap();
    assert_eq!(v["metadata"]["name"], "robot");
}

#[test]
fn create_service_and_quota() {
    // kubectl create service clusterip web --tcp=80:8080 --tcp=443:https
    let v = decode(fixture!("svc")).unwrap();
    assert_eq!(
        v["spec"],
        json!({
            "ports": [
                {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"name": "443-https", "protocol": "TCP", "port": 443, "targetPort": "https"},
            ],
            "selector": {"app": "web"},
            "type": "ClusterIP",
        })
    );
    assert!(v.get("status").is_none(), "{v}");
    // kubectl create quota q --hard=cpu=1,pods=2
    let v = decode(fixture!("quota")).unwrap();
    assert_eq!(v["spec"]["hard"], json!({"cpu": "1", "pods": "2"}));
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    fn len_field(out: &mut Vec<u8>, num: u8, bytes: &[u8]) {
        out.push(num << 3 | 2);
        let mut n = bytes.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(bytes);
    }
    let mut tm = Vec::new();
    len_field(&mut tm, 1, api_version.as_bytes());
    len_field(&mut tm, 2, kind.as_bytes());
    let mut out = MAGIC.to_vec();
    len_field(&mut out, 1, &tm);
    len_field(&mut out, 2, raw);
    out
}

#[test]
fn unknown_kinds_and_fields_are_refused_clearly() {
    let e = decode(&envelope("batch/v1", "Job", &[])).unwrap_err();
    assert_eq!(e.status(), 415);
    assert!(
        e.to_string().contains("batch/v1 Job as JSON or YAML"),
        "{e}"
    );
    // ConfigMap field 9 with a value: refused, not dropped.
    let e = decode(&envelope("v1", "ConfigMap", &[0x48, 0x01])).unwrap_err();
    assert_eq!(e.status(), 415);
    assert!(
        e.to_string()
            .contains("field 9 of protobuf message ConfigMap"),
        "{e}"
    );
    // The same field holding its zero value carries nothing and is skipped.
    let v = decode(&envelope("v1", "ConfigMap", &[0x48, 0x00])).unwrap();
    assert_eq!(v, json!({"apiVersion": "v1", "kind": "ConfigMap"}));
}

#[test]
fn broken_bodies_are_400s() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "prefix"),
        (b"k8s", "prefix"),
        (b"{\"kind\": \"ConfigMap\"}", "prefix"),
        (b"k8s\0\x0a\x10", "runs past the end"),
        (
            b"k8s\0\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
            "longer than ten bytes",
        ),
        (b"k8s\0\x0b", "wire type 3"),
        (b"k8s\0\x00", "field number 0"),
    ];
    for (body, want) in cases {
        let e = decode(body).unwrap_err();
        assert_eq!(e.status(), 400, "{body:?}: {e}");
        assert!(e.to_string().contains(want), "{body:?}: {e}");
    }
    // A string field sent as a varint.
    let e = decode(&envelope("v1", "ConfigMap", &[0x0a, 0x02, 0x08, 0x01])).unwrap_err();
    assert!(e.to_string().contains("wire type"), "{e}");
    // Invalid UTF-8 in a name.
    let e = decode(&envelope(
        "v1",
        "ConfigMap",
        &[0x0a, 0x03, 0x0a, 0x01, 0xff],
    ))
    .unwrap_err();
    assert!(e.to_string().contains("UTF-8"), "{e}");
}

#[test]
fn every_truncation_and_byte_flip_is_an_answer_not_a_panic() {
    for body in FIXTURES {
        for cut in 0..body.len() {
            let _ = decode(&body[..cut]);
        }
        let mut b = body.to_vec();
        for i in 0..b.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                b[i] ^= flip;
                let _ = decode(&b);
                b[i] ^= flip;
            }
        }
    }
}
