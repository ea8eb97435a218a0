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
///
/// A field another manager owns with a different value is a conflict (409) unless `q.force`, which
/// takes it over: it leaves the other managers' field sets. A field the applier applied before and
/// no longer applies is removed from the object unless another manager owns it too.
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
    let mut managed: Vec<Value> = live["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let is_me = |e: &Value| e["manager"] == q.field_manager && e["operation"] == "Apply";
    let prev_set = managed
        .iter()
        .find(|e| is_me(e))
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or_else(|| json!({}));
    let mut paths = Vec::new();
    leaves(&new_set, &mut Vec::new(), &mut paths);
    let mut conflicts = Vec::new();
    for e in managed.iter_mut().filter(|e| !is_me(e)) {
        for p in &paths {
            if set_has(&e["fieldsV1"], p) && value_at(live, p) != value_at(applied, p) {
                if q.force {
                    remove_path(&mut e["fieldsV1"], p);
                } else {
                    conflicts.push(format!(
                        "conflict with {:?}: .{}",
                        e["manager"].as_str().unwrap_or(""),
                        dotted(p)
                    ));
                }
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
    managed.retain(|e| !is_me(e) && !is_empty_set(&e["fieldsV1"]));
    let mut body = applied.clone();
    if let Some(m) = body["metadata"].as_object_mut() {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    strategic_merge(live, &body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut dropped = Vec::new();
    leaves(&prev_set, &mut Vec::new(), &mut dropped);
    for p in dropped.iter().filter(|p| !set_has(&new_set, p)) {
        remove_unowned(live, p, &new_set, &managed);
    }
    live["metadata"]["managedFields"] = Value::Array(managed);
    set_apply_manager(live, applied, q);
    Ok(())
}

fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|s| s.trim_start_matches("f:"))
        .collect::<Vec<_>>()
        .join(".")
}

fn is_empty_set(set: &Value) -> bool {
    set.as_object().is_none_or(|m| m.keys().all(|k| k == "."))
}

/// True if some manager in `managed` owns `path`, something under it, or something above it.
fn owned_by(managed: &[Value], path: &[String]) -> bool {
    managed.iter().any(|e| {
        let set = &e["fieldsV1"];
        set_has(set, path)
            || (1..path.len()).any(|n| {
                set_has(set, &path[..n]) && value_at_set(set, &path[..n]).is_some_and(is_empty_set)
            })
    })
}

fn value_at_set<'a>(set: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(set, |cur, step| cur.get(step))
}

/// Removes a field the applier dropped: the largest part of it that the new applied configuration
/// does not hold and no other manager owns; nothing if others own the field itself.
fn remove_unowned(obj: &mut Value, path: &[String], new_set: &Value, others: &[Value]) {
    // Never cut metadata itself: only the labels, annotations, ... under it.
    let min = if path.first().is_some_and(|s| s == "f:metadata") {
        2
    } else {
        1
    };
    let cut = (min..=path.len())
        .find(|&n| !set_has(new_set, &path[..n]))
        .unwrap_or(path.len());
    if !owned_by(others, &path[..cut]) {
        remove_at(obj, &path[..cut]);
    } else if !owned_by(others, path) {
        remove_at(obj, path);
    }
}

/// Removes the field, list item or set member at `path` from `obj`.
fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(parent) = value_at_mut(obj, parents) else {
        return;
    };
    if let Some(f) = last.strip_prefix("f:") {
        if let Value::Object(m) = parent {
            m.remove(f);
        }
    } else if let Some(key) = last.strip_prefix("k:") {
        if let (Ok(Value::Object(kv)), Value::Array(items)) =
            (serde_json::from_str::<Value>(key), &mut *parent)
        {
            items.retain(|it| !kv.iter().all(|(kk, vv)| it.get(kk) == Some(vv)));
        }
    } else if let Some(val) = last.strip_prefix("v:")
        && let (Ok(v), Value::Array(items)) = (serde_json::from_str::<Value>(val), &mut *parent)
    {
        items.retain(|x| *x != v);
    }
}

fn value_at_mut<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = obj;
    for step in path {
        if let Some(f) = step.strip_prefix("f:") {
            cur = cur.get_mut(f)?;
        } else if let Some(key) = step.strip_prefix("k:") {
            let Ok(Value::Object(kv)) = serde_json::from_str::<Value>(key) else {
                return None;
            };
            cur = cur
                .as_array_mut()?
                .iter_mut()
                .find(|it| kv.iter().all(|(kk, vv)| it.get(kk) == Some(vv)))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Removes a leaf path from a field set, and the parents it leaves empty.
fn remove_path(set: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(m) = set.as_object_mut() else { return };
    if rest.is_empty() {
        m.remove(first);
        return;
    }
    if let Some(child) = m.get_mut(first) {
        remove_path(child, rest);
        if child.as_object().is_some_and(|c| c.is_empty()) {
            m.remove(first);
        }
    }
}

/// Adds a leaf path to a field set.
fn insert_path(set: &mut Value, path: &[String]) {
    let mut cur = set;
    for step in path {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = &mut cur[step.as_str()];
        if cur.is_null() {
            *cur = json!({});
        }
    }
}

/// Records an Update by `q.field_manager` that turned `old` (None for a create) into `obj`: the
/// manager now owns the fields it changed, which leave every other manager's set; fields it owned
/// that are gone from the object leave its set.
pub fn record_update(obj: &mut Value, old: Option<&Value>, q: &Query) {
    if q.field_manager.is_empty() {
        return;
    }
    let full = field_set(obj);
    let mut all = Vec::new();
    leaves(&full, &mut Vec::new(), &mut all);
    let changed: Vec<Vec<String>> = all
        .into_iter()
        .filter(|p| old.is_none_or(|o| value_at(o, p) != value_at(obj, p)))
        .collect();
    let mut managed: Vec<Value> = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let is_me = |e: &Value| e["manager"] == q.field_manager && e["operation"] == "Update";
    let mut mine = managed
        .iter()
        .find(|e| is_me(e))
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or_else(|| json!({}));
    for e in managed.iter_mut().filter(|e| !is_me(e)) {
        for p in &changed {
            remove_path(&mut e["fieldsV1"], p);
        }
    }
    for p in &changed {
        insert_path(&mut mine, p);
    }
    let mut owned = Vec::new();
    leaves(&mine, &mut Vec::new(), &mut owned);
    for p in owned.iter().filter(|p| !set_has(&full, p)) {
        remove_path(&mut mine, p);
    }
    managed.retain(|e| !is_me(e) && !is_empty_set(&e["fieldsV1"]));
    if !is_empty_set(&mine) {
        managed.push(json!({
            "manager": q.field_manager, "operation": "Update", "apiVersion": obj["apiVersion"].clone(),
            "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": mine,
        }));
    }
    obj["metadata"]["managedFields"] = Value::Array(managed);
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
