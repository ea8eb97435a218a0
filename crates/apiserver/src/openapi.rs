//! OpenAPI documents: v3 (`/openapi/v3` and one document per group version) and v2 (JSON).
//! Schemas come from [`crate::schema`]; PATCH operations carry the `fieldValidation` and `dryRun`
//! parameters with the kind's group-version-kind, which is how kubectl learns that the server
//! validates fields itself.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::resources::{RESOURCES, ResourceDef, group_versions};
use crate::schema::{schema_name, schemas};

/// The Kubernetes version whose types are served.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// The path key of a group version in the v3 index (`api/v1`, `apis/apps/v1`).
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`.
pub fn v3_index() -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        let p = gv_path(g, v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", doc_hash())}),
        );
    }
    json!({"paths": paths})
}

fn doc_hash() -> String {
    format!(
        "kontti-{}-{}",
        env!("CARGO_PKG_VERSION"),
        KUBERNETES_VERSION
    )
}

fn reachable(roots: &[String]) -> BTreeSet<String> {
    let defs = &schemas().defs;
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.to_vec();
    while let Some(n) = todo.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(d) = defs.get(&n) {
            collect_refs(d, &mut todo);
        }
    }
    seen
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str)
                && let Some(n) = r.rsplit('/').next()
            {
                out.push(n.to_string());
            }
            m.values().for_each(|c| collect_refs(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| collect_refs(c, out)),
        _ => {}
    }
}

fn operations(def: &ResourceDef, schema_ref: &Value) -> (String, String, Value, Value) {
    let gvk = json!({"group": def.group, "version": def.version, "kind": def.kind});
    let base = if def.group.is_empty() {
        format!("/api/{}", def.version)
    } else {
        format!("/apis/{}/{}", def.group, def.version)
    };
    let ns = if def.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let collection = format!("{base}{ns}/{}", def.plural);
    let item = format!("{collection}/{{name}}");
    let q = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let path_params = |with_name: bool| {
        let mut ps = Vec::new();
        if with_name {
            ps.push(json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}));
        }
        if def.namespaced {
            ps.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}}));
        }
        Value::Array(ps)
    };
    let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}});
    let write_params = json!([q("dryRun"), q("fieldManager"), q("fieldValidation")]);
    let item_ops = json!({
        "get": {"operationId": format!("read{}", def.kind), "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk, "responses": ok},
        "put": {"operationId": format!("replace{}", def.kind), "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk,
            "parameters": write_params, "requestBody": {"content": {"*/*": {"schema": schema_ref}}, "required": true}, "responses": ok},
        "patch": {"operationId": format!("patch{}", def.kind), "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk,
            "parameters": [q("dryRun"), q("fieldManager"), q("fieldValidation"), q("force")],
            "requestBody": {"content": {"application/json-patch+json": {"schema": {"type": "object"}}, "application/merge-patch+json": {"schema": {"type": "object"}},
                "application/strategic-merge-patch+json": {"schema": {"type": "object"}}, "application/apply-patch+yaml": {"schema": {"type": "object"}}}, "required": true},
            "responses": ok},
        "delete": {"operationId": format!("delete{}", def.kind), "x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": gvk,
            "parameters": [q("dryRun"), q("gracePeriodSeconds"), q("propagationPolicy")], "responses": ok},
        "parameters": path_params(true),
    });
    let coll_ops = json!({
        "get": {"operationId": format!("list{}", def.kind), "x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk,
            "parameters": [q("labelSelector"), q("fieldSelector"), q("limit"), q("continue"), q("resourceVersion"), q("watch")], "responses": ok},
        "post": {"operationId": format!("create{}", def.kind), "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk,
            "parameters": write_params, "requestBody": {"content": {"*/*": {"schema": schema_ref}}, "required": true}, "responses": ok},
        "parameters": path_params(false),
    });
    (collection, item, coll_ops, item_ops)
}

/// The v3 document of one group version (`api/v1`, `apis/apps/v1`), if served.
pub fn v3_document(path: &str) -> Option<Value> {
    let (g, v) = group_versions()
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == path)?;
    let defs: Vec<&ResourceDef> = RESOURCES
        .iter()
        .filter(|r| r.group == g && r.version == v)
        .collect();
    let roots: Vec<String> = defs.iter().map(|d| schema_name(d)).collect();
    let mut paths = Map::new();
    for d in &defs {
        let r = json!({"$ref": format!("#/components/schemas/{}", schema_name(d))});
        let (coll, item, coll_ops, item_ops) = operations(d, &r);
        paths.insert(coll, coll_ops);
        paths.insert(item, item_ops);
    }
    let all = &schemas().defs;
    let components: Map<String, Value> = reachable(&roots)
        .into_iter()
        .filter_map(|n| all.get(&n).map(|d| (n, d.clone())))
        .collect();
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": components},
    }))
}

fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            // v2 style: `{"$ref": …, "description": …}` rather than a one-element allOf.
            let single = matches!(m.get("allOf"), Some(Value::Array(a)) if a.len() == 1 && a[0].get("$ref").is_some());
            if single
                && let Some(Value::Array(mut a)) = m.remove("allOf")
                && let Some(Value::Object(inner)) = a.pop()
            {
                m.extend(inner);
            }
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                *r = r.replace("#/components/schemas/", "#/definitions/");
            }
            m.values_mut().for_each(rewrite_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// The v2 document (JSON).
pub fn v2_document() -> Value {
    let mut defs = Value::Object(schemas().defs.clone());
    rewrite_refs(&mut defs);
    let mut paths = Map::new();
    for d in RESOURCES {
        let r = json!({"$ref": format!("#/definitions/{}", schema_name(d))});
        let (coll, item, _, _) = operations(d, &r);
        let gvk = json!({"group": d.group, "version": d.version, "kind": d.kind});
        let q = |name: &str| json!({"name": name, "in": "query", "type": "string", "uniqueItems": true});
        let ok = json!({"200": {"description": "OK", "schema": r}});
        paths.insert(item, json!({
            "get": {"operationId": format!("read{}", d.kind), "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk, "responses": ok},
            "patch": {"operationId": format!("patch{}", d.kind), "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk,
                "parameters": [q("dryRun"), q("fieldManager"), q("fieldValidation"), q("force")], "responses": ok},
        }));
        paths.insert(coll, json!({
            "get": {"operationId": format!("list{}", d.kind), "x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk, "responses": ok},
        }));
    }
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION}, "paths": paths, "definitions": defs})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_documents_are_self_contained() {
        let doc = v3_document("apis/apps/v1").unwrap();
        let comps = doc["components"]["schemas"].as_object().unwrap();
        assert!(comps.contains_key("io.k8s.api.apps.v1.Deployment"));
        assert!(comps.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        let mut refs = Vec::new();
        collect_refs(&doc["components"], &mut refs);
        assert!(refs.iter().all(|r| comps.contains_key(r)), "dangling refs");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(v3_document("apis/nope/v1").is_none());
    }

    #[test]
    fn index_lists_every_group_version() {
        let idx = v3_index();
        assert!(
            idx["paths"]["api/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/api/v1?hash=")
        );
        assert!(idx["paths"].get("apis/autoscaling/v2").is_some());
    }
}
