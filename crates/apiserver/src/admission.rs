//! Admission: what happens to an object between decoding and storage. Names are checked, defaults
//! filled in, unknown fields handled per `fieldValidation`, the object checked against its type and
//! its schema's required fields, and server-owned metadata set.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::query::FieldValidation;
use crate::resources::ResourceDef;
use crate::schema::{schema_name, schemas};

/// 64 random bits (process-random seed, counter and time mixed by SipHash).
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A random RFC 4122 version 4 UUID.
pub fn new_uid() -> String {
    let (a, b) = (random_u64(), random_u64());
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// Now, as Kubernetes writes times (`2024-01-02T03:04:05Z`).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn dns_label_ok(s: &str, max: usize, first_alpha: bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && (!first_alpha || b[0].is_ascii_lowercase())
}

/// Checks a name against the rule of its kind; returns the message Kubernetes gives.
pub fn validate_name(def: &ResourceDef, name: &str) -> Result<(), String> {
    match def.kind {
        "Namespace" => {
            if !dns_label_ok(name, 63, false) {
                return Err(format!(
                    "Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                ));
            }
        }
        "Service" => {
            if !dns_label_ok(name, 63, true) {
                return Err(format!(
                    "Invalid value: {name:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
                ));
            }
        }
        _ => {
            let ok = name.len() <= 253 && name.split('.').all(|l| dns_label_ok(l, 63, false));
            if !ok {
                return Err(format!(
                    "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                ));
            }
        }
    }
    Ok(())
}

/// Checks `apiVersion` and `kind` of a body against the endpoint; fills them in when absent.
pub fn check_type(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    let Value::Object(map) = obj else {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    };
    let want = def.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != want => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({want})"
            )));
        }
        _ => {}
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if k != def.kind => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                def.kind
            )));
        }
        _ => {}
    }
    map.insert("apiVersion".into(), Value::String(want));
    map.insert("kind".into(), Value::String(def.kind.to_string()));
    if !map.get("metadata").is_some_and(Value::is_object) {
        map.insert("metadata".into(), json!({}));
    }
    Ok(())
}

/// Applies `fieldValidation`; returns warnings (for Warn) or an error (for Strict).
pub fn unknown_fields(
    def: &ResourceDef,
    obj: &mut Value,
    mode: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    let found = schemas().prune_unknown(&schema_name(def), obj);
    if found.is_empty() || mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let msgs: Vec<String> = found
        .iter()
        .map(|f| format!("unknown field {:?}", f.trim_start_matches('.')))
        .collect();
    if mode == FieldValidation::Strict {
        return Err(ApiError::BadRequest(format!(
            "strict decoding error: {}",
            msgs.join(", ")
        )));
    }
    Ok(msgs)
}

/// Structural and required-field validation of a full object.
pub fn validate(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    if let Err(e) = (def.decode)(obj) {
        return Err(ApiError::BadRequest(format!(
            "error decoding {} {name:?}: {e}",
            def.kind
        )));
    }
    let missing = schemas().missing_required(&schema_name(def), obj);
    if !missing.is_empty() {
        return Err(ApiError::Invalid {
            kind: def.kind.to_string(),
            name,
            causes: missing
                .into_iter()
                .map(|f| (f, "Required value".to_string()))
                .collect(),
        });
    }
    if def.kind == "Deployment"
        || def.kind == "ReplicaSet"
        || def.kind == "StatefulSet"
        || def.kind == "DaemonSet"
    {
        let sel = &obj["spec"]["selector"]["matchLabels"];
        let labels = &obj["spec"]["template"]["metadata"]["labels"];
        if let Value::Object(sel) = sel
            && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
        {
            return Err(ApiError::invalid(
                def.kind,
                &name,
                "spec.template.metadata.labels",
                "Invalid value: `selector` does not match template `labels`",
            ));
        }
    }
    if let Some(r) = obj["spec"]["replicas"].as_i64()
        && r < 0
    {
        return Err(ApiError::invalid(
            def.kind,
            &name,
            "spec.replicas",
            "Invalid value: must be greater than or equal to 0",
        ));
    }
    Ok(())
}

fn set_default(obj: &mut Value, path: &[&str], value: Value) {
    // An element that is not an object (a container given as a string, a port as a number) has no
    // fields to default; validation refuses it afterwards.
    if !(obj.is_object() || obj.is_null()) {
        return;
    }
    let mut cur = obj;
    for seg in &path[..path.len() - 1] {
        if !cur.get(*seg).is_some_and(Value::is_object) {
            cur[*seg] = json!({});
        }
        cur = &mut cur[*seg];
    }
    let last = path[path.len() - 1];
    if cur.get(last).is_none_or(Value::is_null) {
        cur[last] = value;
    }
}

fn default_pod_spec(spec: &mut Value) {
    set_default(spec, &["restartPolicy"], json!("Always"));
    set_default(spec, &["dnsPolicy"], json!("ClusterFirst"));
    set_default(spec, &["terminationGracePeriodSeconds"], json!(30));
    set_default(spec, &["schedulerName"], json!("default-scheduler"));
    set_default(spec, &["securityContext"], json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs {
                let image = c["image"].as_str().unwrap_or("").to_string();
                let tag_latest = !image.contains('@')
                    && image
                        .rsplit('/')
                        .next()
                        .is_none_or(|last| !last.contains(':') || last.ends_with(":latest"));
                set_default(
                    c,
                    &["imagePullPolicy"],
                    json!(if tag_latest { "Always" } else { "IfNotPresent" }),
                );
                set_default(
                    c,
                    &["terminationMessagePath"],
                    json!("/dev/termination-log"),
                );
                set_default(c, &["terminationMessagePolicy"], json!("File"));
                set_default(c, &["resources"], json!({}));
                if let Some(Value::Array(ports)) = c.get_mut("ports") {
                    for p in ports {
                        set_default(p, &["protocol"], json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Fills in the defaults of the built-in types that clients rely on.
pub fn apply_defaults(def: &ResourceDef, obj: &mut Value) {
    match def.kind {
        "Namespace" => {
            set_default(obj, &["spec", "finalizers"], json!(["kubernetes"]));
            set_default(obj, &["status", "phase"], json!("Active"));
        }
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
            set_default(obj, &["status", "phase"], json!("Pending"));
        }
        "Service" => {
            set_default(obj, &["spec", "type"], json!("ClusterIP"));
            set_default(obj, &["spec", "sessionAffinity"], json!("None"));
            if let Some(Value::Array(ports)) = obj["spec"].get_mut("ports") {
                for p in ports {
                    set_default(p, &["protocol"], json!("TCP"));
                    let port = p["port"].clone();
                    set_default(p, &["targetPort"], port);
                }
            }
        }
        "Secret" => {
            set_default(obj, &["type"], json!("Opaque"));
            // A `data` that is not a map is left for validation to refuse.
            if obj.get("data").is_none_or(|d| d.is_object() || d.is_null())
                && let Some(Value::Object(string_data)) =
                    obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                use base64::Engine;
                for (k, v) in string_data {
                    let text = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" => {
            set_default(obj, &["spec", "replicas"], json!(1));
            if def.kind == "Deployment" {
                set_default(
                    obj,
                    &["spec", "strategy"],
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                );
                set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
                set_default(obj, &["spec", "progressDeadlineSeconds"], json!(600));
            }
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                default_pod_spec(spec);
            }
        }
        "DaemonSet" => {
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                default_pod_spec(spec);
            }
        }
        _ => {}
    }
}

/// Generates a name from `metadata.generateName` when `metadata.name` is empty.
pub fn generate_name(obj: &mut Value) {
    let meta = &mut obj["metadata"];
    if meta["name"].as_str().is_none_or(str::is_empty)
        && let Some(prefix) = meta["generateName"].as_str()
    {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut r = random_u64();
        let mut suffix = String::new();
        for _ in 0..5 {
            suffix.push(ALPHABET[(r % ALPHABET.len() as u64) as usize] as char);
            r /= ALPHABET.len() as u64;
        }
        meta["name"] = Value::String(format!("{prefix}{suffix}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn uids_are_v4_and_distinct() {
        let (a, b) = (new_uid(), new_uid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn names_follow_their_rules() {
        let pods = find("", "v1", "pods").unwrap();
        let svc = find("", "v1", "services").unwrap();
        assert!(validate_name(pods, "web-1.example").is_ok());
        assert!(validate_name(pods, "Web").is_err());
        assert!(validate_name(pods, "-web").is_err());
        assert!(validate_name(svc, "1web").is_err());
        assert!(validate_name(pods, &"a".repeat(254)).is_err());
    }

    #[test]
    fn type_mismatch_is_rejected() {
        let d = find("apps", "v1", "deployments").unwrap();
        let mut o = json!({"apiVersion": "v1", "kind": "Deployment"});
        assert!(
            check_type(d, &mut o)
                .unwrap_err()
                .to_string()
                .contains("API version")
        );
        let mut o = json!({"apiVersion": "apps/v1", "kind": "Pod"});
        assert!(check_type(d, &mut o).is_err());
    }

    #[test]
    fn deployment_defaults_and_selector_check() {
        let d = find("apps", "v1", "deployments").unwrap();
        let mut o = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"}, "spec": {
            "selector": {"matchLabels": {"app": "w"}},
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        apply_defaults(d, &mut o);
        assert_eq!(o["spec"]["replicas"], 1);
        assert_eq!(
            o["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        assert_eq!(validate(d, &o).unwrap_err().status(), 422);
    }
}
