//! Server-side apply: field sets in the `FieldsV1` format of `metadata.managedFields`, the merge of an
//! applied configuration, removal of fields the applier stopped applying, and conflicts with fields
//! other managers own.

use serde_json::{Map, Value, json};

use crate::admission::now_rfc3339;
use crate::error::ApiError;
use crate::patch::{ListStrategy, list_strategy, strategic_merge};
use crate::query::Query;
use crate::resources::ResourceDef;

const METADATA_FIELDS: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// The field set of an object, in `FieldsV1` form (`{"f:spec": {"f:replicas": {}}}`).
pub fn field_set(obj: &Value) -> Value {
    let Value::Object(m) = obj else {
        return json!({});
    };
    let mut out = Map::new();
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                let mut meta = Map::new();
                for f in METADATA_FIELDS {
                    if let Some(child) = v.get(*f) {
                        meta.insert(
                            format!("f:{f}"),
                            fields_of(child, &mut vec!["metadata".into()], f),
                        );
                    }
                }
                if !meta.is_empty() {
                    out.insert("f:metadata".into(), Value::Object(meta));
                }
            }
            _ => {
                out.insert(format!("f:{k}"), fields_of(v, &mut Vec::new(), k));
            }
        }
    }
    Value::Object(out)
}

fn item_key(item: &Value, key: &str) -> String {
    format!(
        "k:{}",
        json!({ key: item.get(key).cloned().unwrap_or(Value::Null) })
    )
}

fn fields_of(v: &Value, parents: &mut Vec<String>, name: &str) -> Value {
    match v {
        Value::Object(m) => {
            parents.push(name.to_string());
            let mut out = Map::new();
            for (k, child) in m {
                out.insert(format!("f:{k}"), fields_of(child, parents, k));
            }
            parents.pop();
            Value::Object(out)
        }
        Value::Array(items) => match list_strategy(parents, name) {
            ListStrategy::MergeKey(key) => {
                parents.push(name.to_string());
                let mut out = Map::new();
                for item in items {
                    let mut f = fields_of(item, parents, "");
                    if let Value::Object(fm) = &mut f {
                        fm.insert(".".into(), json!({}));
                    }
                    out.insert(item_key(item, key), f);
                }
                parents.pop();
                Value::Object(out)
            }
            ListStrategy::MergePrimitives => Value::Object(
                items
                    .iter()
                    .map(|i| (format!("v:{i}"), json!({})))
                    .collect(),
            ),
            ListStrategy::Replace => json!({}),
        },
        _ => json!({}),
    }
}

/// Removes from `obj` what `prev` has and `next` does not (fields the applier stopped applying).
fn remove_dropped(obj: &mut Value, prev: &Value, next: &Value) {
    let (Value::Object(p), n) = (prev, next) else {
        return;
    };
    for (k, child) in p {
        if k == "." {
            continue;
        }
        let in_next = n.get(k);
        if let Some(field) = k.strip_prefix("f:") {
            match in_next {
                None if field == "metadata" => {
                    if let Some(slot) = obj.get_mut(field) {
                        remove_dropped(slot, child, &json!({}));
                    }
                }
                None => {
                    if let Value::Object(m) = obj {
                        m.remove(field);
                    }
                }
                Some(nc) => {
                    if let Some(slot) = obj.get_mut(field) {
                        remove_dropped(slot, child, nc);
                    }
                }
            }
        } else if let Some(key) = k.strip_prefix("k:") {
            let Ok(Value::Object(kv)) = serde_json::from_str::<Value>(key) else {
                continue;
            };
            let Value::Array(items) = obj else { continue };
            let pos = items
                .iter()
                .position(|it| kv.iter().all(|(kk, vv)| it.get(kk) == Some(vv)));
            match (in_next, pos) {
                (None, Some(i)) => {
                    items.remove(i);
                }
                (Some(nc), Some(i)) => remove_dropped(&mut items[i], child, nc),
                _ => {}
            }
        } else if let Some(val) = k.strip_prefix("v:")
            && in_next.is_none()
            && let (Value::Array(items), Ok(v)) = (&mut *obj, serde_json::from_str::<Value>(val))
        {
            items.retain(|x| *x != v);
        }
    }
}

/// Leaf paths of a field set (each a list of `f:`/`k:`/`v:` steps).
fn leaves(set: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Value::Object(m) = set else { return };
    let children: Vec<_> = m.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if children.is_empty() {
        out.push(path.clone());
        return;
    }
    for (k, v) in children {
        path.push(k.clone());
        leaves(v, path, out);
        path.pop();
    }
}

fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for step in path {
        if let Some(f) = step.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(key) = step.strip_prefix("k:") {
            let Ok(Value::Object(kv)) = serde_json::from_str::<Value>(key) else {
                return None;
            };
            cur = cur
                .as_array()?
                .iter()
                .find(|it| kv.iter().all(|(kk, vv)| it.get(kk) == Some(vv)))?;
        } else {
            return Some(cur);
        }
    }
    Some(cur)
}

fn set_has(set: &Value, path: &[String]) -> bool {
    let mut cur = set;
    for step in path {
        match cur.get(step) {
            Some(c) => cur = c,
            None => return false,
        }
    }
    true
}

/// Applies `applied` (a full or partial object) as `q.field_manager` to `live`.
pub fn server_side_apply(
    def: &ResourceDef,
    live: &mut Value,
    applied: &Value,
    q: &Query,
) -> Result<(), ApiError> {
    if q.field_manager.is_empty() {
        return Err(ApiError::BadRequest(
            "PATCH with apply requires a fieldManager".into(),
        ));
    }
    if !applied.is_object() {
        return Err(ApiError::BadRequest(
            "an apply patch must be an object".into(),
        ));
    }
    let name = live["metadata"]["name"].as_str().unwrap_or("").to_string();
    let new_set = field_set(applied);
    let managed: Vec<Value> = live["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let prev_set = managed
        .iter()
        .find(|e| e["manager"] == q.field_manager && e["operation"] == "Apply")
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or_else(|| json!({}));
    if !q.force {
        let mut paths = Vec::new();
        leaves(&new_set, &mut Vec::new(), &mut paths);
        let mut conflicts = Vec::new();
        for e in managed.iter().filter(|e| e["manager"] != q.field_manager) {
            for p in &paths {
                if set_has(&e["fieldsV1"], p) && value_at(live, p) != value_at(applied, p) {
                    let field = p
                        .iter()
                        .map(|s| s.trim_start_matches("f:"))
                        .collect::<Vec<_>>()
                        .join(".");
                    conflicts.push(format!(
                        "conflict with {:?}: .{field}",
                        e["manager"].as_str().unwrap_or("")
                    ));
                }
            }
        }
        if !conflicts.is_empty() {
            return Err(ApiError::Conflict {
                resource: def.qualified(),
                name,
                reason: format!(
                    "Apply failed with {} conflict(s): {}",
                    conflicts.len(),
                    conflicts.join("; ")
                ),
            });
        }
    }
    let mut body = applied.clone();
    if let Some(m) = body["metadata"].as_object_mut() {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    strategic_merge(live, &body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    remove_dropped(live, &prev_set, &new_set);
    set_apply_manager(live, applied, q);
    Ok(())
}

/// Records `q.field_manager` as owning `applied`'s fields through an Apply operation.
pub fn set_apply_manager(obj: &mut Value, applied: &Value, q: &Query) {
    let mut managed: Vec<Value> = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    managed.retain(|e| !(e["manager"] == q.field_manager && e["operation"] == "Apply"));
    managed.push(json!({
        "manager": q.field_manager, "operation": "Apply", "apiVersion": obj["apiVersion"].clone(),
        "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": field_set(applied),
    }));
    obj["metadata"]["managedFields"] = Value::Array(managed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    fn q(manager: &str) -> Query {
        let mut q = Query::parse(Some(&format!("fieldManager={manager}"))).unwrap();
        q.force = false;
        q
    }

    #[test]
    fn field_sets_use_merge_keys() {
        let s = field_set(
            &json!({"spec": {"containers": [{"name": "a", "image": "x"}]}, "metadata": {"labels": {"l": "1"}, "uid": "u"}}),
        );
        assert!(
            s["f:spec"]["f:containers"]
                .get("k:{\"name\":\"a\"}")
                .is_some(),
            "{s}"
        );
        assert!(s["f:metadata"].get("f:uid").is_none());
    }

    #[test]
    fn reapply_removes_dropped_fields_and_detects_conflicts() {
        let d = find("", "v1", "configmaps").unwrap();
        let mut live = json!({"metadata": {"name": "c"}, "data": {}});
        server_side_apply(
            d,
            &mut live,
            &json!({"metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "1", "y": "2"}}),
            &q("m1"),
        )
        .unwrap();
        server_side_apply(
            d,
            &mut live,
            &json!({"metadata": {"name": "c"}, "data": {"x": "1"}}),
            &q("m1"),
        )
        .unwrap();
        assert_eq!(live["data"], json!({"x": "1"}));
        assert!(
            live["metadata"]
                .get("labels")
                .is_none_or(|l| l.get("a").is_none()),
            "{live}"
        );
        let err = server_side_apply(
            d,
            &mut live,
            &json!({"metadata": {"name": "c"}, "data": {"x": "2"}}),
            &q("m2"),
        )
        .unwrap_err();
        assert_eq!(err.status(), 409);
        let mut forced = q("m2");
        forced.force = true;
        server_side_apply(
            d,
            &mut live,
            &json!({"metadata": {"name": "c"}, "data": {"x": "2"}}),
            &forced,
        )
        .unwrap();
        assert_eq!(live["data"]["x"], "2");
    }
}
