//! In-process controllers, clients of the [`Registry`] like any other: garbage collection through
//! `ownerReferences` (background, foreground and orphan propagation) and namespace deletion (a
//! terminating namespace's contents are deleted, then its `kubernetes` finalizer is removed).
//!
//! They watch the whole store and re-examine the cluster after changes that can matter to them
//! (deletes, owner references, deletion timestamps), debounced, rather than on every write.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::Api;
use crate::error::ApiError;
use crate::query::Query;
use crate::registry::Registry;
use crate::resources::{RESOURCES, ResourceDef, find, is_converted_view};

/// How long to wait after a relevant change before a sweep, to batch bursts.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A sweep also runs this often, to retry what failed.
const RESYNC: Duration = Duration::from_secs(10);

/// Runs the controllers until the task is dropped.
pub async fn run(api: Arc<Api>) {
    let reg = api.registry();
    loop {
        let start = match reg.store().current_revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "controllers: store unavailable");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = sweep(reg).await {
            tracing::warn!(error = %e, "controllers: sweep failed");
        }
        let mut stream = match reg.store().watch("/", start).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "controllers: watch failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let relevant = tokio::select! {
                ev = stream.next() => match ev {
                    Some(Ok(ev)) => matters(&ev),
                    _ => break,
                },
                _ = tokio::time::sleep(RESYNC) => true,
            };
            if !relevant {
                continue;
            }
            tokio::time::sleep(DEBOUNCE).await;
            if let Err(e) = sweep(reg).await {
                tracing::warn!(error = %e, "controllers: sweep failed");
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn matters(ev: &kontti_store::Event) -> bool {
    ev.kind == kontti_store::EventKind::Delete
        || contains(&ev.kv.value, b"\"ownerReferences\"")
        || contains(&ev.kv.value, b"\"deletionTimestamp\"")
}

/// The resources whose objects are stored (not conversion views).
fn stored_defs() -> impl Iterator<Item = &'static ResourceDef> {
    RESOURCES.iter().filter(|d| !is_converted_view(d))
}

struct Obj {
    def: &'static ResourceDef,
    value: Value,
}

impl Obj {
    fn ns(&self) -> Option<&str> {
        self.value["metadata"]["namespace"].as_str()
    }
    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }
    fn uid(&self) -> &str {
        self.value["metadata"]["uid"].as_str().unwrap_or("")
    }
    fn deleting(&self) -> bool {
        self.value["metadata"]["deletionTimestamp"].is_string()
    }
    fn has_finalizer(&self, f: &str) -> bool {
        self.value["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x == f))
    }
    fn owners(&self) -> Vec<String> {
        self.value["metadata"]["ownerReferences"]
            .as_array()
            .map(|o| {
                o.iter()
                    .filter_map(|r| r["uid"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn delete_quietly(reg: &Registry, o: &Obj) -> Result<(), ApiError> {
    let mut q = Query::parse(None)?;
    q.propagation_policy = Some("Background".into());
    match reg.delete(o.def, o.ns(), o.name(), &q).await {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes `finalizer` from an object (merge semantics through the normal patch path).
async fn remove_finalizer(reg: &Registry, o: &Obj, finalizer: &str) -> Result<(), ApiError> {
    let rest: Vec<Value> = o.value["metadata"]["finalizers"]
        .as_array()
        .map(|l| l.iter().filter(|x| *x != finalizer).cloned().collect())
        .unwrap_or_default();
    let patch = json!({"metadata": {"finalizers": rest}});
    match reg
        .patch(
            o.def,
            o.ns(),
            o.name(),
            crate::registry::PatchType::Merge,
            &patch,
            None,
            &Query::parse(None)?,
        )
        .await
    {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// One pass of garbage collection and namespace deletion.
pub async fn sweep(reg: &Registry) -> Result<(), ApiError> {
    let q = Query::parse(None)?;
    let mut all = Vec::new();
    for def in stored_defs() {
        for value in reg.list(def, None, &q).await?.items {
            all.push(Obj { def, value });
        }
    }
    let by_uid: HashMap<&str, &Obj> = all.iter().map(|o| (o.uid(), o)).collect();
    let mut dependents: HashMap<&str, Vec<&Obj>> = HashMap::new();
    for o in &all {
        for owner in o.value["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(uid) = owner["uid"].as_str()
                && let Some(owner_obj) = by_uid.get(uid)
            {
                dependents.entry(owner_obj.uid()).or_default().push(o);
            }
        }
    }
    // Dependents whose owners are all gone.
    for o in &all {
        let owners = o.owners();
        if !owners.is_empty()
            && !o.deleting()
            && owners.iter().all(|u| !by_uid.contains_key(u.as_str()))
        {
            tracing::debug!(
                kind = o.def.kind,
                name = o.name(),
                "garbage collecting an orphaned dependent"
            );
            delete_quietly(reg, o).await?;
        }
    }
    for owner in all.iter().filter(|o| o.deleting()) {
        let deps = dependents.get(owner.uid()).cloned().unwrap_or_default();
        if owner.has_finalizer("orphan") {
            for d in &deps {
                let refs: Vec<Value> = d.value["metadata"]["ownerReferences"]
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter(|r| r["uid"] != owner.uid())
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                let patch = json!({"metadata": {"ownerReferences": refs}});
                match reg
                    .patch(
                        d.def,
                        d.ns(),
                        d.name(),
                        crate::registry::PatchType::Merge,
                        &patch,
                        None,
                        &q,
                    )
                    .await
                {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            remove_finalizer(reg, owner, "orphan").await?;
        } else if owner.has_finalizer("foregroundDeletion") {
            if deps.is_empty() {
                remove_finalizer(reg, owner, "foregroundDeletion").await?;
            } else {
                for d in &deps {
                    if !d.deleting() {
                        delete_quietly(reg, d).await?;
                    }
                }
            }
        }
    }
    // Terminating namespaces.
    let terminating: HashSet<&str> = all
        .iter()
        .filter(|o| o.def.kind == "Namespace" && o.deleting())
        .map(Obj::name)
        .collect();
    for ns in &terminating {
        let contents: Vec<&Obj> = all
            .iter()
            .filter(|o| o.def.namespaced && o.ns() == Some(ns))
            .collect();
        for o in &contents {
            if !o.deleting() {
                delete_quietly(reg, o).await?;
            }
        }
        if contents.is_empty()
            && let Some(def) = find("", "v1", "namespaces")
        {
            tracing::debug!(namespace = ns, "namespace is empty: finalizing");
            match reg.finalize_namespace(def, ns, json!([]), &q).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
