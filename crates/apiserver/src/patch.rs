//! Patches: JSON patch (RFC 6902), JSON merge patch (RFC 7386), and Kubernetes' strategic merge
//! patch with the built-in types' merge keys and its `$patch`, `$setElementOrder`, `$retainKeys` and
//! `$deleteFromPrimitiveList` directives.

use serde_json::{Map, Value};

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    /// The patch document is not of the expected shape.
    #[error("invalid patch: {0}")]
    Malformed(String),
    /// A JSON patch `test` operation failed.
    #[error("json patch test operation failed at {0}")]
    TestFailed(String),
    /// A JSON patch path does not exist.
    #[error("json patch path {0} does not exist")]
    NoPath(String),
}

/// RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| PatchError::Malformed(format!("path {path:?} must start with /")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    toks: &[String],
    path: &str,
) -> Result<&'a mut Value, PatchError> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| PatchError::NoPath(path.to_string()))?;
    }
    Ok(cur)
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let toks = split_pointer(path)?;
    let (last, parents) = toks
        .split_last()
        .ok_or_else(|| PatchError::Malformed("cannot remove the root".into()))?;
    match parent_mut(doc, parents, path)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| PatchError::NoPath(path.to_string())),
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .map_err(|_| PatchError::NoPath(path.to_string()))?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(PatchError::NoPath(path.to_string()))
            }
        }
        _ => Err(PatchError::NoPath(path.to_string())),
    }
}

fn add_at(doc: &mut Value, path: &str, value: Value, replace: bool) -> Result<(), PatchError> {
    let toks = split_pointer(path)?;
    let Some((last, parents)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents, path)? {
        Value::Object(m) => {
            if replace && !m.contains_key(last) {
                return Err(PatchError::NoPath(path.to_string()));
            }
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            if last == "-" && !replace {
                a.push(value);
            } else {
                let i = last
                    .parse::<usize>()
                    .map_err(|_| PatchError::NoPath(path.to_string()))?;
                if replace {
                    *a.get_mut(i)
                        .ok_or_else(|| PatchError::NoPath(path.to_string()))? = value;
                } else if i <= a.len() {
                    a.insert(i, value);
                } else {
                    return Err(PatchError::NoPath(path.to_string()));
                }
            }
        }
        _ => return Err(PatchError::NoPath(path.to_string())),
    }
    Ok(())
}

/// RFC 6902 JSON patch.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        PatchError::Malformed("a JSON patch must be an array of operations".into())
    })?;
    for op in ops {
        let name = op["op"]
            .as_str()
            .ok_or_else(|| PatchError::Malformed("operation without \"op\"".into()))?;
        let path = op["path"]
            .as_str()
            .ok_or_else(|| PatchError::Malformed(format!("{name} operation without \"path\"")))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| PatchError::Malformed(format!("{name} operation without \"value\"")))
        };
        let from = || {
            op["from"]
                .as_str()
                .ok_or_else(|| PatchError::Malformed(format!("{name} operation without \"from\"")))
        };
        match name {
            "add" => add_at(doc, path, value()?, false)?,
            "replace" => add_at(doc, path, value()?, true)?,
            "remove" => {
                remove_at(doc, path)?;
            }
            "move" => {
                let v = remove_at(doc, from()?)?;
                add_at(doc, path, v, false)?;
            }
            "copy" => {
                let v = doc
                    .pointer(from()?)
                    .cloned()
                    .ok_or_else(|| PatchError::NoPath(path.to_string()))?;
                add_at(doc, path, v, false)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(PatchError::TestFailed(path.to_string()));
                }
            }
            other => {
                return Err(PatchError::Malformed(format!(
                    "unknown operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

/// How a list field merges in a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Replaced as a whole.
    Replace,
    /// Merged element by element, identified by the key field.
    MergeKey(&'static str),
    /// A list of primitives merged as a set.
    MergePrimitives,
}

/// The merge strategy of the list at `field`, given the path of field names above it. This is the
/// built-in types' `patchMergeKey`/`patchStrategy` table.
pub fn list_strategy(parents: &[String], field: &str) -> ListStrategy {
    let parent = parents.last().map(String::as_str).unwrap_or("");
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "env"
        | "resourceClaims"
        | "schedulingGates" => ListStrategy::MergeKey("name"),
        "volumeMounts" => ListStrategy::MergeKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeKey("devicePath"),
        "hostAliases" => ListStrategy::MergeKey("ip"),
        "conditions" => ListStrategy::MergeKey("type"),
        "ownerReferences" => ListStrategy::MergeKey("uid"),
        "topologySpreadConstraints" => ListStrategy::MergeKey("topologyKey"),
        "finalizers" if parent == "metadata" => ListStrategy::MergePrimitives,
        "ports" => {
            if parents
                .iter()
                .any(|p| p == "containers" || p == "initContainers" || p == "ephemeralContainers")
            {
                ListStrategy::MergeKey("containerPort")
            } else if parent == "spec" {
                ListStrategy::MergeKey("port")
            } else {
                ListStrategy::Replace
            }
        }
        _ => ListStrategy::Replace,
    }
}

/// Applies a strategic merge patch to `target`.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    smp_object(target, patch, &mut Vec::new())
}

fn smp_object(target: &mut Value, patch: &Value, path: &mut Vec<String>) -> Result<(), PatchError> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut v = patch.clone();
            if let Value::Object(m) = &mut v {
                m.remove("$patch");
            }
            *target = v;
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) if other != "merge" => {
            return Err(PatchError::Malformed(format!(
                "unknown $patch directive {other:?}"
            )));
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()) || p.contains_key(k));
    }
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            let _ = field; // handled after the merge of that field below
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match v {
            Value::Object(_) => {
                path.push(k.clone());
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                smp_object(slot, v, path)?;
                path.pop();
                if slot.is_null() {
                    t.remove(k);
                }
            }
            Value::Array(items) => {
                let strategy = list_strategy(path, k);
                let slot = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                path.push(k.clone());
                smp_list(slot, items, strategy, path)?;
                path.pop();
                if let Some(Value::Array(order)) = p.get(&format!("$setElementOrder/{k}")) {
                    reorder(slot, order, strategy);
                }
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/")
            && let (Some(Value::Array(list)), Value::Array(del)) = (t.get_mut(field), v)
        {
            list.retain(|x| !del.contains(x));
        }
    }
    Ok(())
}

fn smp_list(
    target: &mut Value,
    items: &[Value],
    strategy: ListStrategy,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    if !target.is_array() {
        *target = Value::Array(Vec::new());
    }
    let Value::Array(list) = target else {
        return Ok(());
    };
    match strategy {
        ListStrategy::Replace => {
            *list = items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .cloned()
                .collect();
        }
        ListStrategy::MergePrimitives => {
            for i in items {
                if !list.contains(i) {
                    list.push(i.clone());
                }
            }
        }
        ListStrategy::MergeKey(key) => {
            for item in items {
                if item.get("$patch").and_then(Value::as_str) == Some("replace") {
                    *list = Vec::new();
                    continue;
                }
                let Some(kv) = item.get(key) else {
                    return Err(PatchError::Malformed(format!(
                        "list item at {} has no merge key {key:?}",
                        path.join(".")
                    )));
                };
                let pos = list.iter().position(|e| e.get(key) == Some(kv));
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(i) = pos {
                        list.remove(i);
                    }
                    continue;
                }
                match pos {
                    Some(i) => smp_object(&mut list[i], item, path)?,
                    None => {
                        let mut fresh = Value::Object(Map::new());
                        smp_object(&mut fresh, item, path)?;
                        list.push(fresh);
                    }
                }
            }
        }
    }
    Ok(())
}

fn reorder(list: &mut Value, order: &[Value], strategy: ListStrategy) {
    let Value::Array(items) = list else { return };
    let id = |v: &Value| -> Value {
        match strategy {
            ListStrategy::MergeKey(k) => v.get(k).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let wanted: Vec<Value> = order.iter().map(&id).collect();
    items.sort_by_key(|v| {
        wanted
            .iter()
            .position(|w| *w == id(v))
            .unwrap_or(usize::MAX)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_removes_nulls() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 5}}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}}));
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"spec": {"replicas": 1, "list": [1, 2]}});
        json_patch(
            &mut t,
            &json!([
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "add", "path": "/spec/list/-", "value": 9},
                {"op": "remove", "path": "/spec/list/0"},
                {"op": "test", "path": "/spec/replicas", "value": 3}
            ]),
        )
        .unwrap();
        assert_eq!(t, json!({"spec": {"replicas": 3, "list": [2, 9]}}));
        assert_eq!(
            json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])),
            Err(PatchError::NoPath("/nope".into()))
        );
        assert!(json_patch(&mut t, &json!({"op": "add"})).is_err());
    }

    #[test]
    fn strategic_merge_by_key() {
        let mut t = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "x:1", "env": [{"name": "E", "value": "1"}]},
            {"name": "b", "image": "y:1"}
        ]}}}});
        strategic_merge(
            &mut t,
            &json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                "containers": [{"name": "a", "image": "x:2"}, {"name": "b", "$patch": "delete"}]
            }}}}),
        )
        .unwrap();
        let cs = &t["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs.as_array().unwrap().len(), 1);
        assert_eq!(cs[0]["image"], "x:2");
        assert_eq!(cs[0]["env"][0]["value"], "1");
    }

    #[test]
    fn strategic_merge_primitives_and_replace() {
        let mut t = json!({"metadata": {"finalizers": ["a"]}, "spec": {"args": ["x"]}});
        strategic_merge(&mut t, &json!({"metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]}, "spec": {"args": ["y"]}})).unwrap();
        assert_eq!(
            t,
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"args": ["y"]}})
        );
    }

    #[test]
    fn strategic_merge_needs_merge_key() {
        let mut t = json!({"spec": {"containers": []}});
        assert!(
            strategic_merge(&mut t, &json!({"spec": {"containers": [{"image": "x"}]}})).is_err()
        );
    }
}
