//! The OpenAPI schemas of the served kinds (from k8s-openapi's `JsonSchema` impls), and the walk that
//! finds fields a schema does not know (`fieldValidation`).

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

use crate::resources::{RESOURCES, ResourceDef};

/// Every definition reachable from the served kinds, keyed by schema name
/// (`io.k8s.api.apps.v1.Deployment`), with `$ref`s of the form `#/components/schemas/NAME`.
pub struct Schemas {
    /// Definitions by name.
    pub defs: Map<String, Value>,
}

const REF_PREFIX: &str = "#/components/schemas/";

/// The schemas, generated once.
pub fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut settings = SchemaSettings::openapi3();
        settings.meta_schema = None;
        let mut generator = settings.into_generator();
        for r in RESOURCES {
            (r.schema)(&mut generator);
        }
        let mut defs = generator.take_definitions(true);
        for r in RESOURCES {
            let name = schema_name(r);
            if let Some(Value::Object(d)) = defs.get_mut(&name) {
                let gvk =
                    serde_json::json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
                d.insert("x-kubernetes-group-version-kind".into(), gvk);
            }
        }
        add_patch_extensions(&mut defs);
        Schemas { defs }
    })
}

/// Marks merge-keyed lists with `x-kubernetes-patch-merge-key` and `x-kubernetes-patch-strategy`,
/// so that clients compute strategic merge patches with the keys the server merges by.
fn add_patch_extensions(defs: &mut Map<String, Value>) {
    use crate::patch::{ListStrategy, list_strategy};
    for (name, def) in defs.iter_mut() {
        let hint = if name.ends_with("Container") {
            "containers"
        } else if name.ends_with("ServiceSpec") {
            "spec"
        } else if name.ends_with("ObjectMeta") {
            "metadata"
        } else {
            ""
        };
        let Some(Value::Object(props)) = def.get_mut("properties") else {
            continue;
        };
        for (pname, p) in props.iter_mut() {
            if p.get("type").and_then(Value::as_str) != Some("array") {
                continue;
            }
            let Value::Object(pm) = p else { continue };
            match list_strategy(&[hint.to_string()], pname) {
                ListStrategy::MergeKey(k) => {
                    pm.insert(
                        "x-kubernetes-patch-merge-key".into(),
                        Value::String(k.into()),
                    );
                    pm.insert(
                        "x-kubernetes-patch-strategy".into(),
                        Value::String("merge".into()),
                    );
                }
                ListStrategy::MergePrimitives => {
                    pm.insert(
                        "x-kubernetes-patch-strategy".into(),
                        Value::String("merge".into()),
                    );
                }
                ListStrategy::Replace => {}
            }
        }
    }
}

/// The schema name of a resource's kind.
pub fn schema_name(r: &ResourceDef) -> String {
    let mut g = schemars::SchemaGenerator::default();
    let s = (r.schema)(&mut g);
    s.get("$ref")
        .and_then(Value::as_str)
        .and_then(|s| s.rsplit('/').next())
        .unwrap_or(r.kind)
        .to_string()
}

impl Schemas {
    fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..8 {
            if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
                match r.strip_prefix(REF_PREFIX).and_then(|n| self.defs.get(n)) {
                    Some(s) => schema = s,
                    None => return schema,
                }
            } else if let Some(Value::Array(all)) = schema.get("allOf") {
                match all.first() {
                    Some(first) if all.len() == 1 => schema = first,
                    _ => return schema,
                }
            } else {
                return schema;
            }
        }
        schema
    }

    /// Removes fields of `obj` that the schema named `name` does not declare; returns their paths
    /// (`.spec.foo`).
    pub fn prune_unknown(&self, name: &str, obj: &mut Value) -> Vec<String> {
        let mut found = Vec::new();
        if let Some(s) = self.defs.get(name) {
            self.prune(s, obj, &mut String::new(), &mut found);
        }
        found
    }

    fn prune(&self, schema: &Value, obj: &mut Value, path: &mut String, found: &mut Vec<String>) {
        let schema = self.resolve(schema);
        match obj {
            Value::Object(map) => {
                if let Some(Value::Object(props)) = schema.get("properties") {
                    map.retain(|k, _| {
                        let known = props.contains_key(k);
                        if !known {
                            found.push(format!("{path}.{k}"));
                        }
                        known
                    });
                    for (k, v) in map.iter_mut() {
                        if let Some(ps) = props.get(k) {
                            let len = path.len();
                            path.push('.');
                            path.push_str(k);
                            self.prune(ps, v, path, found);
                            path.truncate(len);
                        }
                    }
                } else if let Some(ap @ Value::Object(_)) = schema.get("additionalProperties") {
                    for (k, v) in map.iter_mut() {
                        let len = path.len();
                        path.push('.');
                        path.push_str(k);
                        self.prune(ap, v, path, found);
                        path.truncate(len);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(is) = schema.get("items") {
                    for (i, v) in items.iter_mut().enumerate() {
                        let len = path.len();
                        path.push_str(&format!("[{i}]"));
                        self.prune(is, v, path, found);
                        path.truncate(len);
                    }
                }
            }
            _ => {}
        }
    }

    /// The required fields missing from `obj` at the top two levels of the kind's schema
    /// (`spec.selector`), as field paths.
    pub fn missing_required(&self, name: &str, obj: &Value) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(s) = self.defs.get(name) {
            self.required(s, obj, "", 0, &mut out);
        }
        out
    }

    fn required(
        &self,
        schema: &Value,
        obj: &Value,
        path: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) {
        let schema = self.resolve(schema);
        let Value::Object(map) = obj else { return };
        if let Some(Value::Array(req)) = schema.get("required") {
            for r in req.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    out.push(if path.is_empty() {
                        r.to_string()
                    } else {
                        format!("{path}.{r}")
                    });
                }
            }
        }
        if depth >= 6 {
            return;
        }
        if let Some(Value::Object(props)) = schema.get("properties") {
            for (k, v) in map {
                if let Some(ps) = props.get(k) {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match v {
                        Value::Array(items) => {
                            if let Some(is) = self.resolve(ps).get("items") {
                                for (i, item) in items.iter().enumerate() {
                                    self.required(is, item, &format!("{p}[{i}]"), depth + 1, out);
                                }
                            }
                        }
                        _ => self.required(ps, v, &p, depth + 1, out),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use serde_json::json;

    #[test]
    fn prunes_unknown_fields_with_paths() {
        let d = find("apps", "v1", "deployments").unwrap();
        let mut o = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "bogus": 1},
            "spec": {"replicas": 1, "selector": {}, "template": {"spec": {"containers": [{"name": "a", "imagee": "x"}]}}}});
        let found = schemas().prune_unknown(&schema_name(d), &mut o);
        assert_eq!(
            found,
            vec![
                ".metadata.bogus",
                ".spec.template.spec.containers[0].imagee"
            ]
        );
        assert!(o["metadata"].get("bogus").is_none());
    }

    #[test]
    fn reports_missing_required() {
        let d = find("apps", "v1", "deployments").unwrap();
        let o = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let missing = schemas().missing_required(&schema_name(d), &o);
        assert!(
            missing.contains(&"spec.selector".to_string()),
            "{missing:?}"
        );
        assert!(
            missing.contains(&"spec.template.spec.containers[0].name".to_string()),
            "{missing:?}"
        );
    }

    #[test]
    fn kinds_carry_gvk() {
        let d = find("", "v1", "pods").unwrap();
        assert_eq!(
            schemas().defs[&schema_name(d)]["x-kubernetes-group-version-kind"][0]["kind"],
            "Pod"
        );
    }
}
