//! Discovery: `/api`, `/apis`, group and group-version resource lists, and aggregated discovery
//! (`apidiscovery.k8s.io` v2 and v2beta1).

use serde_json::{Value, json};

use crate::resources::{RESOURCES, ResourceDef, Subresource, group_versions};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const SUB_VERBS: &[&str] = &["get", "patch", "update"];

fn in_all(def: &ResourceDef) -> bool {
    matches!(
        def.kind,
        "Pod"
            | "Service"
            | "Deployment"
            | "ReplicaSet"
            | "StatefulSet"
            | "DaemonSet"
            | "HorizontalPodAutoscaler"
    ) && def.group != "events.k8s.io"
}

/// `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

fn group_entry(group: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

/// The named groups, in order.
fn groups() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for (g, _) in group_versions() {
        if !g.is_empty() && !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

/// `/apis`.
pub fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups().into_iter().map(group_entry).collect::<Vec<_>>()})
}

/// `/apis/{group}`, if served.
pub fn api_group(group: &str) -> Option<Value> {
    if !groups().contains(&group) {
        return None;
    }
    let mut g = group_entry(group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// `/api/v1` or `/apis/{group}/{version}`, if served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for d in defs {
        let mut r = json!({"name": d.plural, "singularName": d.singular, "namespaced": d.namespaced, "kind": d.kind,
            "verbs": VERBS, "shortNames": d.short_names});
        if in_all(d) {
            r["categories"] = json!(["all"]);
        }
        resources.push(r);
        for s in d.subresources {
            let mut sr = json!({"name": format!("{}/{}", d.plural, s.name()), "singularName": "", "namespaced": d.namespaced,
                "kind": d.kind, "verbs": SUB_VERBS});
            if *s == Subresource::Scale {
                sr["group"] = json!("autoscaling");
                sr["version"] = json!("v1");
                sr["kind"] = json!("Scale");
            }
            resources.push(sr);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// The aggregated discovery version an `Accept` header asks for (`v2`, `v2beta1`).
pub fn aggregated_version(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        if part.contains("as=APIGroupDiscoveryList") && part.contains("g=apidiscovery.k8s.io") {
            if part.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if part.contains("v=v2") {
                return Some("v2");
            }
        }
    }
    None
}

/// The aggregated discovery document of the core group (`legacy`) or of the named groups.
pub fn aggregated(legacy: bool, version: &str) -> Value {
    let names: Vec<&str> = if legacy { vec![""] } else { groups() };
    let items: Vec<Value> = names.into_iter().map(|g| {
        let versions: Vec<Value> = group_versions().into_iter().filter(|(gg, _)| *gg == g).map(|(_, v)| {
            let resources: Vec<Value> = RESOURCES.iter().filter(|r| r.group == g && r.version == v).map(|d| {
                let mut r = json!({
                    "resource": d.plural,
                    "responseKind": {"group": d.group, "version": d.version, "kind": d.kind},
                    "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
                    "singularResource": d.singular,
                    "verbs": VERBS,
                    "shortNames": d.short_names,
                });
                if in_all(d) {
                    r["categories"] = json!(["all"]);
                }
                let subs: Vec<Value> = d.subresources.iter().map(|s| {
                    let kind = if *s == Subresource::Scale {
                        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
                    } else {
                        json!({"group": d.group, "version": d.version, "kind": d.kind})
                    };
                    json!({"subresource": s.name(), "responseKind": kind, "verbs": SUB_VERBS})
                }).collect();
                if !subs.is_empty() {
                    r["subresources"] = Value::Array(subs);
                }
                r
            }).collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        }).collect();
        json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
    }).collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"), "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_cover_the_table() {
        let core = resource_list("", "v1").unwrap();
        assert!(
            core["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "pods/status")
        );
        let apps = resource_list("apps", "v1").unwrap();
        assert!(
            apps["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "deployments/scale" && r["kind"] == "Scale")
        );
        assert!(resource_list("apps", "v9").is_none());
        assert_eq!(
            api_group("apps").unwrap()["preferredVersion"]["version"],
            "v1"
        );
    }

    #[test]
    fn aggregated_accept_negotiation() {
        let a = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(a), Some("v2"));
        assert_eq!(aggregated_version("application/json"), None);
        let doc = aggregated(false, "v2");
        assert!(
            doc["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["metadata"]["name"] == "apps")
        );
    }
}
