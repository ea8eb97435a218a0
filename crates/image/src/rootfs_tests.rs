//! The layer unpacker on real snapshotters (root: overlay upper directories
//! and ownership are real).

use std::sync::Arc;

use kontti_core::Digest;

use super::{LayerUnpacker, RootfsError};
use crate::hash::{chain_ids, sha256};
use crate::snapshot::{CopySnapshotter, Kind, OverlaySnapshotter, SnapshotError, Snapshotter};
use crate::store::ContentStore;

struct Env {
    dir: tempfile::TempDir,
    store: ContentStore,
    sn: Arc<dyn Snapshotter>,
}

fn env(kind: &str) -> Env {
    kontti_testutil::require_root();
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path().join("content")).unwrap();
    let sn: Arc<dyn Snapshotter> = match kind {
        "overlay" => Arc::new(OverlaySnapshotter::open(dir.path().join("sn")).unwrap()),
        _ => Arc::new(CopySnapshotter::open(dir.path().join("sn")).unwrap()),
    };
    Env { dir, store, sn }
}

fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

/// Stores each layer (uncompressed) and returns (blob digest, diffID) pairs;
/// a layer listed in `wrong` gets a diffID its content does not hash to.
fn layers(e: &Env, n: usize, wrong: &[usize]) -> Vec<(Digest, Digest)> {
    let lease = e.store.lease("test").unwrap();
    let out = (0..n)
        .map(|i| {
            let tar = tar_of(&format!("f{i}"), format!("layer {i}").as_bytes());
            let blob = e.store.put(&lease, &tar, None).unwrap();
            let diff_id = if wrong.contains(&i) {
                sha256(b"something else")
            } else {
                sha256(&tar)
            };
            (blob, diff_id)
        })
        .collect();
    drop(lease);
    out
}

fn chains(layers: &[(Digest, Digest)]) -> Vec<String> {
    let diff_ids: Vec<Digest> = layers.iter().map(|(_, d)| d.clone()).collect();
    chain_ids(&diff_ids).iter().map(Digest::to_string).collect()
}

fn no_snapshot_directories_but(e: &Env, committed: usize) {
    let list = e.sn.list().unwrap();
    assert_eq!(list.len(), committed, "{list:?}");
    assert!(list.iter().all(|i| i.kind == Kind::Committed), "{list:?}");
    let dirs = std::fs::read_dir(e.dir.path().join("sn/s"))
        .unwrap()
        .count();
    assert_eq!(dirs, committed, "a snapshot directory per committed layer");
}

#[test]
fn layers_arriving_out_of_order_are_committed_base_first_on_their_parents() {
    for kind in ["overlay", "copy"] {
        let e = env(kind);
        let layers = layers(&e, 4, &[]);
        let chains = chains(&layers);
        let u = LayerUnpacker::start(e.store.clone(), e.sn.clone(), &layers).unwrap();
        for i in [3, 1, 0, 2] {
            u.blob_ready(&layers[i].0);
        }
        let report = u.finish().unwrap();
        assert_eq!((report.unpacked, report.reused), (4, 0), "{kind}");
        assert_eq!(report.top.as_deref(), Some(chains[3].as_str()));
        for i in 0..4 {
            let info = e.sn.stat(&chains[i]).unwrap();
            assert_eq!(info.kind, Kind::Committed);
            let parent = i.checked_sub(1).map(|p| chains[p].clone());
            assert_eq!(info.parent, parent, "{kind}: parent of layer {i}");
        }
        no_snapshot_directories_but(&e, 4);
        // The stack reads as one tree, top layer first.
        if kind == "overlay" {
            let mounts = e.sn.view("v", Some(&chains[3])).unwrap();
            let lower = mounts[0].option("lowerdir").unwrap().to_owned();
            let dirs: Vec<&str> = lower.split(':').collect();
            assert_eq!(dirs.len(), 4, "{lower}");
            for (j, d) in dirs.iter().enumerate() {
                let f = std::path::Path::new(d).join(format!("f{}", 3 - j));
                assert!(f.exists(), "{} in {d}", 3 - j);
            }
            e.sn.remove("v").unwrap();
        }

        // A second image sharing the first three layers unpacks only its own.
        let mut more = layers.clone();
        more[3] = self::layers(&e, 5, &[])[4].clone();
        let u = LayerUnpacker::start(e.store.clone(), e.sn.clone(), &more).unwrap();
        u.blob_ready(&more[3].0);
        let report = u.finish().unwrap();
        assert_eq!((report.unpacked, report.reused), (1, 3), "{kind}");
    }
}

#[test]
fn a_failed_layer_is_discarded_with_those_above_and_those_below_are_committed() {
    for kind in ["overlay", "copy"] {
        let e = env(kind);
        let layers = layers(&e, 4, &[2]);
        let chains = chains(&layers);
        let u = LayerUnpacker::start(e.store.clone(), e.sn.clone(), &layers).unwrap();
        let err = u.finish().unwrap_err();
        assert!(matches!(err, RootfsError::Unpack { .. }), "{kind}: {err}");
        assert!(err.to_string().contains("diffID mismatch"), "{err}");
        assert!(err.to_string().contains(&layers[2].0.to_string()), "{err}");
        for c in &chains[..2] {
            assert_eq!(e.sn.stat(c).unwrap().kind, Kind::Committed, "{kind}");
        }
        no_snapshot_directories_but(&e, 2);
    }
}

#[test]
fn an_unpacker_dropped_before_finishing_leaves_nothing_uncommitted() {
    for kind in ["overlay", "copy"] {
        let e = env(kind);
        let layers = layers(&e, 3, &[]);
        let u = LayerUnpacker::start(e.store.clone(), e.sn.clone(), &layers).unwrap();
        u.blob_ready(&layers[1].0);
        u.blob_ready(&layers[2].0);
        // Layers 1 and 2 may unpack; layer 0 never arrives (a failed download).
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!u.failed());
        drop(u);
        no_snapshot_directories_but(&e, 0);
    }
}

#[test]
fn commit_on_checks_the_parent() {
    let e = env("overlay");
    e.sn.prepare("base-active", None).unwrap();
    e.sn.prepare("layer", None).unwrap();
    let err =
        e.sn.commit_on("top", "layer", Some("base-active"))
            .unwrap_err();
    assert!(matches!(err, SnapshotError::WrongKind { .. }), "{err}");
    e.sn.commit_on("base", "base-active", None).unwrap();
    e.sn.commit_on("top", "layer", Some("base")).unwrap();
    assert_eq!(e.sn.stat("top").unwrap().parent.as_deref(), Some("base"));
    let err = e.sn.commit_on("base", "x", None).unwrap_err();
    assert!(matches!(err, SnapshotError::NotFound(_)), "{err}");

    // A copy snapshot holds its parent's tree: it stays on that parent.
    let e = env("copy");
    assert!(!e.sn.independent_layers());
    e.sn.prepare("a", None).unwrap();
    e.sn.commit("base", "a").unwrap();
    e.sn.prepare("b", None).unwrap();
    let err = e.sn.commit_on("top", "b", Some("base")).unwrap_err();
    assert!(matches!(err, SnapshotError::ParentMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        r#"snapshot "b" cannot be committed on parent "base""#
    );
    e.sn.commit_on("top", "b", None).unwrap();
}
