//! `meta.k8s.io/v1` `Table` responses for `kubectl get`.

use serde_json::{Value, json};

use crate::resources::{Cell, ResourceDef};

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// Kubernetes' short human durations: `42s`, `5m3s`, `17m`, `3h4m`, `26h`, `4d2h`, `12d`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s if s < 8 * 86400 => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn at<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut cur = vec![obj];
    for seg in path.split('.') {
        let mut next = Vec::new();
        for v in cur {
            match v.get(seg) {
                Some(Value::Array(items)) => next.extend(items.iter()),
                Some(x) => next.push(x),
                None => {}
            }
        }
        cur = next;
    }
    cur
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn path_text(obj: &Value, path: &str) -> String {
    let vals: Vec<String> = at(obj, path)
        .into_iter()
        .flat_map(|v| match v {
            Value::Array(a) => a.iter().map(text).collect::<Vec<_>>(),
            other => vec![text(other)],
        })
        .filter(|s| !s.is_empty())
        .collect();
    if vals.is_empty() {
        "<none>".into()
    } else {
        vals.join(",")
    }
}

fn cell(obj: &Value, c: Cell) -> Value {
    match c {
        Cell::Path(p) => {
            let v = at(obj, p);
            match v.as_slice() {
                [n @ Value::Number(_)] => (*n).clone(),
                _ => Value::String(path_text(obj, p)),
            }
        }
        Cell::Int(p) => json!(obj_i64(obj, p)),
        Cell::Ratio(a, b) => json!(format!("{}/{}", obj_i64(obj, a), obj_i64(obj, b))),
        Cell::Age => {
            let created = obj["metadata"]["creationTimestamp"]
                .as_str()
                .and_then(|s| s.parse::<jiff::Timestamp>().ok());
            match created {
                Some(t) => json!(human_duration(
                    jiff::Timestamp::now().as_second() - t.as_second()
                )),
                None => json!("<unknown>"),
            }
        }
        Cell::Count(p) => json!(match at(obj, p).first() {
            Some(Value::Object(m)) => m.len(),
            Some(Value::Array(a)) => a.len(),
            _ => 0,
        }),
        Cell::PodReady => {
            let total = obj["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = obj["status"]["containerStatuses"]
                .as_array()
                .map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
            json!(format!("{ready}/{total}"))
        }
        Cell::PodRestarts => json!(
            obj["status"]["containerStatuses"]
                .as_array()
                .map_or(0, |s| s
                    .iter()
                    .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                    .sum::<i64>())
        ),
        Cell::ServicePorts => {
            let ports: Vec<String> = obj["spec"]["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let node = p["nodePort"]
                                .as_i64()
                                .map(|n| format!(":{n}"))
                                .unwrap_or_default();
                            format!(
                                "{}{node}/{}",
                                p["port"],
                                p["protocol"].as_str().unwrap_or("TCP")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!(if ports.is_empty() {
                "<none>".to_string()
            } else {
                ports.join(",")
            })
        }
        Cell::Selector(p) => {
            let pairs: Vec<String> = at(obj, p)
                .first()
                .and_then(|v| v.as_object())
                .map(|m| m.iter().map(|(k, v)| format!("{k}={}", text(v))).collect())
                .unwrap_or_default();
            json!(if pairs.is_empty() {
                "<none>".to_string()
            } else {
                pairs.join(",")
            })
        }
        Cell::Containers(template, field) => {
            let names: Vec<String> = obj
                .pointer(&format!("/{}/spec/containers", template.replace('.', "/")))
                .and_then(Value::as_array)
                .map(|cs| cs.iter().map(|c| text(&c[field])).collect())
                .unwrap_or_default();
            json!(names.join(","))
        }
    }
}

fn obj_i64(obj: &Value, path: &str) -> i64 {
    at(obj, path).first().and_then(|v| v.as_i64()).unwrap_or(0)
}

/// The column definitions of a resource's table.
pub fn column_definitions(def: &ResourceDef) -> Value {
    let mut cols = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for c in def.columns {
        cols.push(json!({"name": c.name, "type": c.ty, "format": "", "description": c.name, "priority": c.priority}));
    }
    Value::Array(cols)
}

/// One table row for an object.
pub fn row(def: &ResourceDef, obj: &Value, include_object: &str) -> Value {
    let mut cells = vec![obj["metadata"]["name"].clone()];
    for c in def.columns {
        cells.push(cell(obj, c.cell));
    }
    let object = match include_object {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"].clone()})
        }
    };
    json!({"cells": cells, "object": object})
}

/// A Table of objects.
pub fn table(
    def: &ResourceDef,
    items: &[Value],
    rv: &str,
    continue_token: Option<&str>,
    include_object: &str,
) -> Value {
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
        "columnDefinitions": column_definitions(def),
        "rows": items.iter().map(|o| row(def, o, include_object)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(185), "3m5s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(3 * 86400), "3d0h");
    }

    #[test]
    fn deployment_rows() {
        let d = find("apps", "v1", "deployments").unwrap();
        let o = json!({"metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
            "status": {"readyReplicas": 1}});
        let r = row(d, &o, "");
        assert_eq!(r["cells"][0], "web");
        assert_eq!(r["cells"][1], "1/3");
        assert_eq!(r["cells"][6], "busybox");
        assert_eq!(r["object"]["kind"], "PartialObjectMetadata");
    }
}
