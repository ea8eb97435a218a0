//! resourceVersion semantics against a compacted store: a watch or an exact list from before the
//! compaction point is 410 Gone; after it, it works.

use std::sync::Arc;

use kontti_apiserver::query::Query;
use kontti_apiserver::registry::Registry;
use kontti_apiserver::resources::find;
use kontti_store::{EmbeddedOptions, EmbeddedStore, Store};
use serde_json::json;

#[tokio::test]
async fn compacted_revisions_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap(),
    );
    let reg = Registry::new(store.clone());
    let ns = find("", "v1", "namespaces").unwrap();
    let cms = find("", "v1", "configmaps").unwrap();
    let q = Query::parse(None).unwrap();
    reg.create(ns, None, json!({"metadata": {"name": "default"}}), &q)
        .await
        .unwrap();
    let (first, _) = reg
        .create(cms, Some("default"), json!({"metadata": {"name": "a"}}), &q)
        .await
        .unwrap();
    let old_rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..5 {
        let patch = json!({"data": {"n": i.to_string()}});
        reg.patch(
            cms,
            Some("default"),
            "a",
            kontti_apiserver::registry::PatchType::Merge,
            &patch,
            None,
            &q,
        )
        .await
        .unwrap();
    }
    let now = store.current_revision().await.unwrap();
    store.compact(now - 1).await.unwrap();
    let gone = kontti_apiserver::watch::watch(
        &reg,
        cms,
        Some("default".into()),
        Query::parse(Some(&format!("watch=true&resourceVersion={old_rv}"))).unwrap(),
        false,
    )
    .await;
    assert_eq!(gone.err().map(|e| e.status()), Some(410));
    let exact = Query::parse(Some(&format!(
        "resourceVersion={old_rv}&resourceVersionMatch=Exact"
    )))
    .unwrap();
    assert_eq!(
        reg.list(cms, Some("default"), &exact)
            .await
            .unwrap_err()
            .status(),
        410
    );
    let fresh = Query::parse(Some(&format!("watch=true&resourceVersion={now}"))).unwrap();
    assert!(
        kontti_apiserver::watch::watch(&reg, cms, Some("default".into()), fresh, false)
            .await
            .is_ok()
    );
}
