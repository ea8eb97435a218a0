//! The OpenAPI v2 document in protobuf (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`),
//! which kubectl up to 1.2x fetches for `apply`. Encoded by hand from the JSON document: the wire
//! format is small (varints and length-delimited fields), and the message numbers are those of
//! gnostic's `openapi.v2` package.

use serde_json::Value;

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn bytes_field(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    varint(buf, (u64::from(field) << 3) | 2);
    varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

fn string(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes_field(buf, field, s.as_bytes());
    }
}

fn boolean(buf: &mut Vec<u8>, field: u32, b: bool) {
    if b {
        varint(buf, u64::from(field) << 3);
        varint(buf, 1);
    }
}

fn message(buf: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    bytes_field(buf, field, &inner);
}

/// `Any { yaml = 2 }`: JSON text is YAML.
fn any(buf: &mut Vec<u8>, field: u32, v: &Value) {
    message(buf, field, |b| string(b, 2, &v.to_string()));
}

/// `NamedAny { name = 1; value = 2 }` for each `x-` key.
fn vendor_extensions(buf: &mut Vec<u8>, field: u32, obj: &serde_json::Map<String, Value>) {
    for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        message(buf, field, |b| {
            string(b, 1, k);
            any(b, 2, v);
        });
    }
}

fn schema(buf: &mut Vec<u8>, s: &Value) {
    let Value::Object(m) = s else { return };
    let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
    string(buf, 1, text("$ref"));
    string(buf, 2, text("format"));
    string(buf, 3, text("title"));
    string(buf, 4, text("description"));
    if let Some(d) = m.get("default") {
        any(buf, 5, d);
    }
    boolean(buf, 16, m.get("uniqueItems") == Some(&Value::Bool(true)));
    for r in m
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        string(buf, 19, r);
    }
    for e in m
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        any(buf, 20, e);
    }
    match m.get("additionalProperties") {
        Some(Value::Bool(b)) => message(buf, 21, |x| boolean(x, 2, *b)),
        Some(ap @ Value::Object(_)) => message(buf, 21, |x| message(x, 1, |y| schema(y, ap))),
        _ => {}
    }
    match m.get("type") {
        Some(Value::String(t)) => message(buf, 22, |x| string(x, 1, t)),
        Some(Value::Array(ts)) => message(buf, 22, |x| {
            ts.iter()
                .filter_map(Value::as_str)
                .for_each(|t| string(x, 1, t))
        }),
        _ => {}
    }
    if let Some(items) = m.get("items") {
        message(buf, 23, |x| message(x, 1, |y| schema(y, items)));
    }
    for a in m
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        message(buf, 24, |x| schema(x, a));
    }
    if let Some(Value::Object(props)) = m.get("properties") {
        message(buf, 25, |x| {
            for (name, p) in props {
                message(x, 1, |y| {
                    string(y, 1, name);
                    message(y, 2, |z| schema(z, p));
                });
            }
        });
    }
    vendor_extensions(buf, 31, m);
}

fn operation(buf: &mut Vec<u8>, op: &Value) {
    let Value::Object(m) = op else { return };
    string(
        buf,
        5,
        m.get("operationId").and_then(Value::as_str).unwrap_or(""),
    );
    for p in m
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        // ParametersItem.parameter(1) → Parameter.non_body_parameter(2) → query_parameter_sub_schema(3)
        message(buf, 8, |a| {
            message(a, 1, |b| {
                message(b, 2, |c| {
                    message(c, 3, |d| {
                        string(d, 2, p["in"].as_str().unwrap_or("query"));
                        string(d, 4, p["name"].as_str().unwrap_or(""));
                        boolean(d, 20, p["uniqueItems"] == Value::Bool(true));
                        string(d, 6, p["type"].as_str().unwrap_or("string"));
                    })
                })
            })
        });
    }
    if let Some(Value::Object(responses)) = m.get("responses") {
        message(buf, 9, |a| {
            for (code, r) in responses {
                message(a, 1, |b| {
                    string(b, 1, code);
                    message(b, 2, |c| {
                        message(c, 1, |d| {
                            string(d, 1, r["description"].as_str().unwrap_or(""));
                            if let Some(s) = r.get("schema") {
                                message(d, 2, |e| message(e, 1, |f| schema(f, s)));
                            }
                        })
                    });
                });
            }
        });
    }
    vendor_extensions(buf, 13, m);
}

/// Encodes a v2 JSON document as an `openapi.v2.Document`.
pub fn encode_document(doc: &Value) -> Vec<u8> {
    let mut buf = Vec::new();
    string(&mut buf, 1, doc["swagger"].as_str().unwrap_or("2.0"));
    message(&mut buf, 2, |b| {
        string(b, 1, doc["info"]["title"].as_str().unwrap_or(""));
        string(b, 2, doc["info"]["version"].as_str().unwrap_or(""));
    });
    if let Some(Value::Object(paths)) = doc.get("paths") {
        message(&mut buf, 8, |b| {
            for (path, item) in paths {
                message(b, 2, |c| {
                    string(c, 1, path);
                    message(c, 2, |d| {
                        for (verb, field) in [
                            ("get", 2),
                            ("put", 3),
                            ("post", 4),
                            ("delete", 5),
                            ("patch", 8),
                        ] {
                            if let Some(op) = item.get(verb) {
                                message(d, field, |e| operation(e, op));
                            }
                        }
                    });
                });
            }
        });
    }
    if let Some(Value::Object(defs)) = doc.get("definitions") {
        message(&mut buf, 9, |b| {
            for (name, s) in defs {
                message(b, 1, |c| {
                    string(c, 1, name);
                    message(c, 2, |d| schema(d, s));
                });
            }
        });
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn varints_and_fields() {
        let mut b = Vec::new();
        varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
        let mut b = Vec::new();
        string(&mut b, 1, "2.0");
        assert_eq!(b, [0x0a, 3, b'2', b'.', b'0']);
    }

    #[test]
    fn encodes_a_document() {
        let doc = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": {"/api/v1/pods": {"get": {"operationId": "listPod", "x-kubernetes-action": "list"}}},
            "definitions": {"A": {"type": "object", "properties": {"b": {"type": "string"}}, "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "A"}]}}});
        let bytes = encode_document(&doc);
        assert!(bytes.starts_with(&[0x0a, 3, b'2', b'.', b'0']));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("x-kubernetes-group-version-kind"));
        assert!(text.contains("listPod"));
    }
}
