//! Leases protect snapshots: what a pull, build or container creation in
//! progress holds survives `prune_snapshots` (and `rmi`), and goes at the
//! first prune after the lease is dropped. Run for both snapshotters.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::{Tar, store_image};
use kontti_core::{ErrorKind, ImageRef};
use kontti_image::local::{prune, prune_snapshots};
use kontti_image::rootfs::unpack_image;
use kontti_image::snapshot::{CopySnapshotter, Kind, OverlaySnapshotter, Snapshotter};
use kontti_image::{ContentStore, Image};

struct Env {
    dir: tempfile::TempDir,
    store: ContentStore,
    sn: Box<dyn Snapshotter>,
}

fn env(kind: &str) -> Env {
    kontti_testutil::require_root();
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path().join("content")).unwrap();
    let sn: Box<dyn Snapshotter> = match kind {
        "overlay" => Box::new(OverlaySnapshotter::open(dir.path().join("sn")).unwrap()),
        _ => Box::new(CopySnapshotter::open(dir.path().join("sn")).unwrap()),
    };
    Env { dir, store, sn }
}

fn two_layers(e: &Env, name: &str) -> Image {
    store_image(
        &e.store,
        name,
        &[
            Tar::new().file("base", name.as_bytes(), 0o644).finish(),
            Tar::new().file("top", name.as_bytes(), 0o644).finish(),
        ],
        true,
    )
}

fn chain(image: &Image) -> BTreeSet<String> {
    image.chain_ids().iter().map(|d| d.to_string()).collect()
}

fn keys(e: &Env) -> BTreeSet<String> {
    e.sn.list().unwrap().into_iter().map(|i| i.key).collect()
}

fn untag(e: &Env, name: &str) {
    e.store.remove_ref(&ImageRef::parse(name).unwrap()).unwrap();
}

fn leased_image_survives_untag_and_prune(kind: &str) {
    let e = env(kind);
    let image = two_layers(&e, "x:1");
    let lease = e.store.lease("pull").unwrap();
    e.store.protect_image(&lease, &image).unwrap();
    unpack_image(&e.store, &image, e.sn.as_ref()).unwrap();
    untag(&e, "x:1");
    let report = prune(&e.store, Some(e.sn.as_ref()), false).unwrap();
    assert!(report.snapshots.is_empty(), "{report:?}");
    assert!(report.content.removed.is_empty(), "{report:?}");
    assert_eq!(keys(&e), chain(&image));
    // Dropped: the next prune takes the layers, top first, and the blobs.
    drop(lease);
    let report = prune(&e.store, Some(e.sn.as_ref()), false).unwrap();
    let top = image.chain_ids()[1].to_string();
    let base = image.chain_ids()[0].to_string();
    assert_eq!(report.snapshots, vec![top, base]);
    assert!(keys(&e).is_empty());
    assert!(!e.store.has(&image.layers()[0].digest));
    assert_eq!(
        fs::read_dir(e.store.root().join("leases")).unwrap().count(),
        0
    );
}

/// A pull protects the chain before it unpacks: the layers committed
/// afterwards are covered too.
fn protection_taken_before_unpacking_covers_later_commits(kind: &str) {
    let e = env(kind);
    let image = two_layers(&e, "y:1");
    let lease = e.store.lease("pull").unwrap();
    e.store
        .protect_layer_snapshots(&lease, image.diff_ids())
        .unwrap();
    assert!(keys(&e).is_empty());
    unpack_image(&e.store, &image, e.sn.as_ref()).unwrap();
    untag(&e, "y:1");
    let removed = prune_snapshots(&e.store, e.sn.as_ref()).unwrap();
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(keys(&e), chain(&image));
    drop(lease);
    let removed = prune_snapshots(&e.store, e.sn.as_ref()).unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
}

/// A lease file nobody holds (its process died) protects nothing and is
/// removed by the prune.
fn a_dead_processs_lease_protects_nothing(kind: &str) {
    let e = env(kind);
    let image = two_layers(&e, "d:1");
    unpack_image(&e.store, &image, e.sn.as_ref()).unwrap();
    let stale = e.store.root().join("leases").join("pull-1-1-0");
    let lines: String = chain(&image)
        .iter()
        .map(|k| format!("snapshot {k}\n"))
        .collect();
    fs::write(&stale, lines).unwrap();
    untag(&e, "d:1");
    let removed = prune_snapshots(&e.store, e.sn.as_ref()).unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(!stale.exists());
}

/// Checking a snapshot after protecting it is enough to build on it, however
/// prunes interleave: the protection and a prune's removal never cross.
fn protect_then_build_on_races_prunes(kind: &str) {
    let e = env(kind);
    let image = two_layers(&e, "r:1");
    for round in 0..20 {
        unpack_image(&e.store, &image, e.sn.as_ref()).unwrap();
        let top = image.chain_ids()[1].to_string();
        std::thread::scope(|s| {
            let pruner = s.spawn(|| prune_snapshots(&e.store, e.sn.as_ref()).unwrap());
            let lease = e.store.lease("create").unwrap();
            e.store.protect_image(&lease, &image).unwrap();
            if e.sn.stat(&top).is_ok() {
                let key = format!("container-{round}");
                e.sn.prepare(&key, Some(&top))
                    .unwrap_or_else(|err| panic!("round {round}: {err}"));
                drop(lease);
                pruner.join().unwrap();
                e.sn.remove(&key).unwrap();
            } else {
                drop(lease);
                pruner.join().unwrap();
            }
        });
        if round == 0 {
            untag(&e, "r:1");
        }
        prune_snapshots(&e.store, e.sn.as_ref()).unwrap();
        assert!(
            keys(&e)
                .iter()
                .all(|k| e.sn.stat(k).unwrap().kind == Kind::Committed)
        );
    }
    assert!(keys(&e).is_empty(), "{:?}", keys(&e));
}

fn a_key_that_cannot_be_a_lease_line_is_refused(kind: &str) {
    let e = env(kind);
    let lease = e.store.lease("build").unwrap();
    for bad in ["", "a\nsnapshot b", "a\rb"] {
        let err = e.store.protect_snapshot(&lease, bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        assert!(err.to_string().contains("cannot be leased"), "{err}");
    }
    let text = fs::read_to_string(lease.path()).unwrap();
    assert!(text.is_empty(), "{text:?}");
    let _ = &e.dir;
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod overlay {
            $(#[test] fn $name() { super::$name("overlay") })*
        }
        mod copy {
            $(#[test] fn $name() { super::$name("copy") })*
        }
    };
}

suite!(
    leased_image_survives_untag_and_prune,
    protection_taken_before_unpacking_covers_later_commits,
    a_dead_processs_lease_protects_nothing,
    protect_then_build_on_races_prunes,
    a_key_that_cannot_be_a_lease_line_is_refused,
);
