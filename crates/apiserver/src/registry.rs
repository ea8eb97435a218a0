//! Storage of API objects in the [`Store`]: the verbs' semantics (preconditions, generation,
//! finalizers, graceful deletion, subresources) over revisioned keys.

use std::sync::Arc;

use base64::Engine;
use kontti_store::{Revision, Store, StoreError};
use serde_json::{Value, json};

use crate::admission;
use crate::convert::{to_storage, to_view};
use crate::error::ApiError;
use crate::patch;
use crate::query::Query;
use crate::resources::{ResourceDef, Subresource, find};
use crate::selector::Selector;

/// Keys read from the store per range call; large lists are read in chunks at one revision, so that no
/// single store reply grows with the collection (etcd caps a reply's size).
pub const RANGE_CHUNK: usize = 500;

/// How often a patch or delete is retried when a concurrent writer changed the object meanwhile.
const PATCH_RETRIES: usize = 100;

/// The patch formats, by request content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    /// The matching objects.
    pub items: Vec<Value>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// The `continue` token for the next page.
    pub continue_token: Option<String>,
}

/// The object store of the API.
pub struct Registry {
    store: Arc<dyn Store>,
}

fn not_found(def: &ResourceDef, name: &str) -> ApiError {
    ApiError::NotFound {
        resource: def.qualified(),
        name: name.to_string(),
    }
}

fn conflict(def: &ResourceDef, name: &str) -> ApiError {
    ApiError::Conflict {
        resource: def.qualified(),
        name: name.to_string(),
        reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}

fn store_err(def: &ResourceDef, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound { .. } => not_found(def, name),
        StoreError::AlreadyExists { .. } => ApiError::AlreadyExists {
            resource: def.qualified(),
            name: name.to_string(),
        },
        StoreError::Conflict { .. } => conflict(def, name),
        other => other.into(),
    }
}

/// Decodes a stored value and stamps its resourceVersion.
pub fn decode_stored(def: &ResourceDef, value: &[u8], rev: Revision) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(value)
        .map_err(|e| ApiError::Internal(format!("stored object is corrupt: {e}")))?;
    obj["metadata"]["resourceVersion"] = Value::String(rev.to_string());
    Ok(to_view(def, obj))
}

fn encode(def: &ResourceDef, obj: &Value) -> Vec<u8> {
    let mut o = to_storage(def, obj.clone());
    if let Some(m) = o["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&o).unwrap_or_default()
}

fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// `resourceVersion` as a revision.
pub fn parse_rv(rv: &str) -> Result<Option<Revision>, ApiError> {
    if rv.is_empty() {
        return Ok(None);
    }
    rv.parse::<Revision>().map(Some).map_err(|_| {
        ApiError::BadRequest(format!(
            "invalid resourceVersion {rv:?}: it must be an integer"
        ))
    })
}

fn encode_continue(rev: Revision, key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"rv": rev, "start": key}).to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    let bad = || ApiError::BadRequest("invalid continue token".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok((
        v["rv"].as_i64().ok_or_else(bad)?,
        v["start"].as_str().ok_or_else(bad)?.to_string(),
    ))
}

/// The parsed selectors of a query.
pub fn selectors(q: &Query) -> Result<(Selector, Selector), ApiError> {
    let l = Selector::parse(&q.label_selector, false)
        .map_err(|e| ApiError::BadRequest(format!("invalid labelSelector: {e}")))?;
    let f = Selector::parse(&q.field_selector, true)
        .map_err(|e| ApiError::BadRequest(format!("invalid fieldSelector: {e}")))?;
    Ok((l, f))
}

impl Registry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Registry { store }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Reads one object.
    pub async fn get(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(Value, Revision), ApiError> {
        let kv = self
            .store
            .get(&def.key(ns, name))
            .await
            .map_err(|e| store_err(def, name, e))?;
        let kv = kv.ok_or_else(|| not_found(def, name))?;
        Ok((
            decode_stored(def, &kv.value, kv.mod_revision)?,
            kv.mod_revision,
        ))
    }

    /// Lists objects with selectors and paging.
    pub async fn list(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        q: &Query,
    ) -> Result<ListPage, ApiError> {
        let (labels, fields) = selectors(q)?;
        let prefix = def.key_prefix(ns);
        let (mut at, mut start) = (None, None);
        if !q.continue_token.is_empty() {
            let (rev, key) = decode_continue(&q.continue_token)?;
            at = Some(rev);
            start = Some(key);
        } else if q.resource_version_match == "Exact" {
            at = parse_rv(&q.resource_version)?;
        }
        let mut items = Vec::new();
        let mut revision;
        loop {
            let want = if q.limit > 0 {
                (q.limit - items.len()).min(RANGE_CHUNK)
            } else {
                RANGE_CHUNK
            };
            let page = self.store.range(&prefix, start.as_deref(), want, at).await.map_err(|e| match e {
                StoreError::Compacted { .. } if !q.continue_token.is_empty() => ApiError::Gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                ),
                e => ApiError::from(e),
            })?;
            revision = page.revision;
            at = Some(page.revision);
            let last_key = page.kvs.last().map(|kv| kv.key.clone());
            for kv in &page.kvs {
                let obj = decode_stored(def, &kv.value, kv.mod_revision)?;
                if labels.matches_labels(&obj) && fields.matches_fields(&obj) {
                    items.push(obj);
                }
            }
            if !page.more {
                return Ok(ListPage {
                    items,
                    revision,
                    continue_token: None,
                });
            }
            if q.limit > 0 && items.len() >= q.limit {
                let token = last_key.map(|k| encode_continue(revision, &k));
                return Ok(ListPage {
                    items,
                    revision,
                    continue_token: token,
                });
            }
            start = last_key;
        }
    }

    async fn check_namespace(&self, def: &ResourceDef, ns: Option<&str>) -> Result<(), ApiError> {
        let (Some(ns), true) = (ns, def.namespaced) else {
            return Ok(());
        };
        let Some(nsdef) = find("", "v1", "namespaces") else {
            return Ok(());
        };
        let (obj, _) = self.get(nsdef, None, ns).await?;
        if obj["metadata"]["deletionTimestamp"].is_string() {
            return Err(ApiError::Forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            )));
        }
        Ok(())
    }

    /// Creates an object (admission included); returns it and warnings.
    pub async fn create(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        mut obj: Value,
        q: &Query,
    ) -> Result<(Value, Vec<String>), ApiError> {
        admission::check_type(def, &mut obj)?;
        let warnings = admission::unknown_fields(def, &mut obj, q.field_validation)?;
        let meta = &mut obj["metadata"];
        if def.namespaced {
            let body_ns = meta["namespace"].as_str().unwrap_or("");
            let ns = ns.ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{} is namespaced: create it in a namespace",
                    def.qualified()
                ))
            })?;
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::BadRequest("the namespace of the provided object does not match the namespace sent on the request".into()));
            }
            meta["namespace"] = Value::String(ns.to_string());
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        admission::generate_name(&mut obj);
        let name = name_of(&obj);
        if name.is_empty() {
            return Err(ApiError::invalid(
                def.kind,
                "",
                "metadata.name",
                "Required value: name or generateName is required",
            ));
        }
        admission::validate_name(def, &name)
            .map_err(|m| ApiError::invalid(def.kind, &name, "metadata.name", m))?;
        let meta = &mut obj["metadata"];
        if let Some(m) = meta.as_object_mut() {
            for k in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                m.remove(k);
            }
        }
        meta["uid"] = Value::String(admission::new_uid());
        meta["creationTimestamp"] = Value::String(admission::now_rfc3339());
        if def.has_spec {
            meta["generation"] = json!(1);
        }
        admission::apply_defaults(def, &mut obj);
        crate::apply::record_update(&mut obj, None, q);
        admission::validate(def, &obj)?;
        self.check_namespace(def, ns).await?;
        if q.dry_run {
            if self.store.get(&def.key(ns, &name)).await?.is_some() {
                return Err(ApiError::AlreadyExists {
                    resource: def.qualified(),
                    name,
                });
            }
            return Ok((obj, warnings));
        }
        let kv = self
            .store
            .create(&def.key(ns, &name), encode(def, &obj))
            .await
            .map_err(|e| store_err(def, &name, e))?;
        obj["metadata"]["resourceVersion"] = Value::String(kv.mod_revision.to_string());
        Ok((obj, warnings))
    }

    /// Replaces an object (or its status); returns it and warnings.
    pub async fn update(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        sub: Option<Subresource>,
        q: &Query,
    ) -> Result<(Value, Vec<String>), ApiError> {
        if sub == Some(Subresource::Scale) {
            return self.update_scale(def, ns, name, obj, q).await;
        }
        admission::check_type(def, &mut obj)?;
        let warnings = admission::unknown_fields(def, &mut obj, q.field_validation)?;
        if name_of(&obj) != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&obj)
            )));
        }
        let (old, rev) = self.get(def, ns, name).await?;
        if let Some(want) = parse_rv(obj["metadata"]["resourceVersion"].as_str().unwrap_or(""))?
            && want != rev
        {
            return Err(conflict(def, name));
        }
        let new = self.merge_update(def, &old, obj, sub, q, true)?;
        let out = self.write(def, ns, name, new, rev, q).await?;
        Ok((out, warnings))
    }

    /// Builds the object to store from the old one and the request's, per subresource.
    fn merge_update(
        &self,
        def: &ResourceDef,
        old: &Value,
        mut obj: Value,
        sub: Option<Subresource>,
        q: &Query,
        record: bool,
    ) -> Result<Value, ApiError> {
        let name = name_of(old);
        if let Some(uid) = obj["metadata"]["uid"].as_str()
            && Some(uid) != old["metadata"]["uid"].as_str()
        {
            return Err(ApiError::Conflict {
                resource: def.qualified(),
                name: name.clone(),
                reason: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    old["metadata"]["uid"].as_str().unwrap_or("")
                ),
            });
        }
        if sub == Some(Subresource::Status) {
            let mut new = old.clone();
            new["status"] = obj["status"].take();
            if record {
                crate::apply::record_update(&mut new, Some(old), q);
            }
            admission::validate(def, &new)?;
            return Ok(new);
        }
        for k in [
            "uid",
            "creationTimestamp",
            "namespace",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old["metadata"].get(k) {
                Some(v) => obj["metadata"][k] = v.clone(),
                None => {
                    if let Some(m) = obj["metadata"].as_object_mut() {
                        m.remove(k);
                    }
                }
            }
        }
        if def.has(Subresource::Status) && def.kind != "Namespace" {
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        if def.kind == "Namespace" {
            obj["status"] = old["status"].clone();
            obj["spec"] = old["spec"].clone();
        }
        admission::apply_defaults(def, &mut obj);
        if def.has_spec && obj.get("spec") != old.get("spec") {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            obj["metadata"]["generation"] = json!(g);
        }
        if matches!(
            def.kind,
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet"
        ) && obj["spec"]["selector"] != old["spec"]["selector"]
        {
            return Err(ApiError::invalid(
                def.kind,
                &name,
                "spec.selector",
                "Invalid value: field is immutable",
            ));
        }
        if old["immutable"] == json!(true)
            && (obj.get("data") != old.get("data")
                || obj.get("binaryData") != old.get("binaryData"))
        {
            return Err(ApiError::invalid(
                def.kind,
                &name,
                "data",
                "Forbidden: field is immutable when `immutable` is set",
            ));
        }
        if obj["metadata"]
            .get("managedFields")
            .is_none_or(Value::is_null)
        {
            obj["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
        }
        if record {
            crate::apply::record_update(&mut obj, Some(old), q);
        }
        admission::validate(def, &obj)?;
        Ok(obj)
    }

    /// Stores `new` over revision `rev`; deletes it instead when a pending deletion has no finalizers left.
    async fn write(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        mut new: Value,
        rev: Revision,
        q: &Query,
    ) -> Result<Value, ApiError> {
        let finalizers_left = new["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let deleting = new["metadata"]["deletionTimestamp"].is_string();
        let ns_finalizers_left = def.kind == "Namespace"
            && new["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
        if q.dry_run {
            return Ok(new);
        }
        if deleting && !finalizers_left && !ns_finalizers_left {
            self.store
                .delete(&def.key(ns, name), Some(rev))
                .await
                .map_err(|e| store_err(def, name, e))?;
            return Ok(new);
        }
        let kv = self
            .store
            .update(&def.key(ns, name), encode(def, &new), rev)
            .await
            .map_err(|e| store_err(def, name, e))?;
        new["metadata"]["resourceVersion"] = Value::String(kv.mod_revision.to_string());
        Ok(new)
    }

    /// The `autoscaling/v1` `Scale` view of an object.
    pub fn scale_of(def: &ResourceDef, obj: &Value) -> Value {
        let sel = obj["spec"]["selector"]["matchLabels"].as_object().map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        });
        let mut meta = json!({});
        for k in [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "creationTimestamp",
        ] {
            if let Some(v) = obj["metadata"].get(k) {
                meta[k] = v.clone();
            }
        }
        let _ = def;
        json!({
            "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
            "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
            "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": sel.unwrap_or_default()},
        })
    }

    async fn update_scale(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        scale: Value,
        q: &Query,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let replicas = scale["spec"]["replicas"]
            .as_i64()
            .ok_or_else(|| ApiError::invalid("Scale", name, "spec.replicas", "Required value"))?;
        if replicas < 0 {
            return Err(ApiError::invalid(
                "Scale",
                name,
                "spec.replicas",
                "Invalid value: must be greater than or equal to 0",
            ));
        }
        let (old, rev) = self.get(def, ns, name).await?;
        if let Some(want) = parse_rv(scale["metadata"]["resourceVersion"].as_str().unwrap_or(""))?
            && want != rev
        {
            return Err(conflict(def, name));
        }
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        if new["spec"] != old["spec"] {
            new["metadata"]["generation"] =
                json!(old["metadata"]["generation"].as_i64().unwrap_or(0) + 1);
        }
        let out = self.write(def, ns, name, new, rev, q).await?;
        Ok((Self::scale_of(def, &out), Vec::new()))
    }

    /// Applies a patch, retrying on conflicts with concurrent writers.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        ptype: PatchType,
        body: &Value,
        sub: Option<Subresource>,
        q: &Query,
    ) -> Result<(Value, Vec<String>, bool), ApiError> {
        for _ in 0..PATCH_RETRIES {
            let (old, rev) = match self.get(def, ns, name).await {
                Ok(x) => x,
                Err(ApiError::NotFound { .. }) if ptype == PatchType::Apply && sub.is_none() => {
                    let mut obj = body.clone();
                    obj["metadata"]["name"] = Value::String(name.to_string());
                    let mut q2 = q.clone();
                    if q2.field_manager.is_empty() {
                        return Err(ApiError::BadRequest(
                            "PATCH with apply requires a fieldManager".into(),
                        ));
                    }
                    q2.field_validation = q.field_validation;
                    // The applier owns what it applied (below), not the whole created object.
                    q2.field_manager.clear();
                    let mut created = self.create(def, ns, obj, &q2).await?;
                    crate::apply::set_apply_manager(&mut created.0, body, q);
                    if !q.dry_run {
                        let rev = parse_rv(
                            created.0["metadata"]["resourceVersion"]
                                .as_str()
                                .unwrap_or(""),
                        )?
                        .unwrap_or(0);
                        let out = self.write(def, ns, name, created.0, rev, q).await?;
                        return Ok((out, created.1, true));
                    }
                    return Ok((created.0, created.1, true));
                }
                Err(e) => return Err(e),
            };
            let view = if sub == Some(Subresource::Scale) {
                Self::scale_of(def, &old)
            } else {
                old.clone()
            };
            let mut target = view.clone();
            let apply = |t: &mut Value| -> Result<(), ApiError> {
                match ptype {
                    PatchType::Json => {
                        patch::json_patch(t, body).map_err(|e| ApiError::BadRequest(e.to_string()))
                    }
                    PatchType::Merge => {
                        if !body.is_object() {
                            return Err(ApiError::BadRequest(
                                "a merge patch must be a JSON object".into(),
                            ));
                        }
                        patch::merge_patch(t, body);
                        Ok(())
                    }
                    PatchType::Strategic => {
                        if !body.is_object() {
                            return Err(ApiError::BadRequest(
                                "a strategic merge patch must be a JSON object".into(),
                            ));
                        }
                        patch::strategic_merge(t, body)
                            .map_err(|e| ApiError::BadRequest(e.to_string()))
                    }
                    PatchType::Apply => crate::apply::server_side_apply(def, t, body, q),
                }
            };
            apply(&mut target)?;
            // A patch that names no resourceVersion applies to whatever is current.
            let precondition =
                parse_rv(target["metadata"]["resourceVersion"].as_str().unwrap_or(""))?;
            if precondition.is_some_and(|p| p != rev)
                && body["metadata"]["resourceVersion"].is_string()
            {
                return Err(conflict(def, name));
            }
            target["metadata"]["resourceVersion"] = Value::String(rev.to_string());
            if sub == Some(Subresource::Scale) {
                match self.update_scale(def, ns, name, target, q).await {
                    Err(ApiError::Conflict { .. }) => continue,
                    other => return other.map(|(o, w)| (o, w, false)),
                }
            }
            let mut q2 = q.clone();
            if ptype == PatchType::Apply
                && q2.field_validation == crate::query::FieldValidation::Warn
            {
                q2.field_validation = crate::query::FieldValidation::Strict;
            }
            let mut obj = target;
            admission::check_type(def, &mut obj)?;
            let warnings = admission::unknown_fields(def, &mut obj, q2.field_validation)?;
            let new = self.merge_update(def, &old, obj, sub, q, ptype != PatchType::Apply)?;
            match self.write(def, ns, name, new, rev, q).await {
                Err(ApiError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
                Ok(o) => return Ok((o, warnings, false)),
            }
        }
        Err(conflict(def, name))
    }

    /// Replaces a namespace's `spec.finalizers` (the `finalize` subresource); a terminating namespace
    /// with none left is deleted.
    pub async fn finalize_namespace(
        &self,
        def: &ResourceDef,
        name: &str,
        finalizers: Value,
        q: &Query,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let (mut obj, rev) = self.get(def, None, name).await?;
        if finalizers.as_array().is_some_and(Vec::is_empty) || finalizers.is_null() {
            if let Some(spec) = obj["spec"].as_object_mut() {
                spec.remove("finalizers");
            }
        } else {
            obj["spec"]["finalizers"] = finalizers;
        }
        let out = self.write(def, None, name, obj, rev, q).await?;
        Ok((out, Vec::new()))
    }

    /// Deletes an object, honouring finalizers, graceful deletion and the propagation policy.
    /// Returns the object and whether it is gone now.
    pub async fn delete(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        q: &Query,
    ) -> Result<(Value, bool), ApiError> {
        for _ in 0..PATCH_RETRIES {
            let (mut obj, rev) = self.get(def, ns, name).await?;
            let policy = q.propagation_policy.as_deref().unwrap_or("Background");
            let meta = &mut obj["metadata"];
            let mut finalizers: Vec<Value> =
                meta["finalizers"].as_array().cloned().unwrap_or_default();
            let add = match policy {
                "Foreground" => Some("foregroundDeletion"),
                "Orphan" => Some("orphan"),
                "Background" => None,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "invalid propagationPolicy {other:?}: use Foreground, Background or Orphan"
                    )));
                }
            };
            let already = meta["deletionTimestamp"].is_string();
            if let Some(f) = add
                && !already
                && !finalizers.iter().any(|x| x == f)
            {
                finalizers.push(json!(f));
            }
            let bound_pod = def.kind == "Pod"
                && obj["spec"]["nodeName"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty());
            let grace = q.grace_period_seconds.unwrap_or(if bound_pod {
                obj["spec"]["terminationGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(30)
            } else {
                0
            });
            let ns_pending = def.kind == "Namespace"
                && obj["spec"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
            let graceful = bound_pod && grace > 0;
            if finalizers.is_empty() && !ns_pending && !graceful {
                if q.dry_run {
                    return Ok((obj, true));
                }
                match self.store.delete(&def.key(ns, name), Some(rev)).await {
                    Ok(_) => return Ok((obj, true)),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(store_err(def, name, e)),
                }
            }
            if already && add.is_none() && q.grace_period_seconds.is_none() {
                return Ok((obj, false));
            }
            let meta = &mut obj["metadata"];
            meta["finalizers"] = Value::Array(finalizers);
            if meta["finalizers"].as_array().is_some_and(Vec::is_empty)
                && let Some(m) = meta.as_object_mut()
            {
                m.remove("finalizers");
            }
            if !already {
                meta["deletionTimestamp"] = Value::String(admission::now_rfc3339());
            }
            meta["deletionGracePeriodSeconds"] = json!(grace);
            if def.kind == "Namespace" {
                obj["status"]["phase"] = json!("Terminating");
            }
            if q.dry_run {
                return Ok((obj, false));
            }
            match self
                .store
                .update(&def.key(ns, name), encode(def, &obj), rev)
                .await
            {
                Ok(kv) => {
                    obj["metadata"]["resourceVersion"] = Value::String(kv.mod_revision.to_string());
                    return Ok((obj, false));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_err(def, name, e)),
            }
        }
        Err(conflict(def, name))
    }
}
