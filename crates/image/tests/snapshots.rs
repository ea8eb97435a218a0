//! The snapshotter test suite: every implementation runs every test below
//! (the model is containerd's snapshots testsuite). Root: chown, mknod,
//! trusted xattrs and mounts are real.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::{Tar, store_image};
use kontti_core::ErrorKind;
use kontti_image::ContentStore;
use kontti_image::rootfs::{RootfsError, prepare_rootfs, unpack_image};
use kontti_image::snapshot::mount::{mount_all, unmount_all};
use kontti_image::snapshot::{
    CopySnapshotter, Kind, Mount, OverlaySnapshotter, SnapshotError, Snapshotter,
};
use kontti_image::unpack::apply_layer;

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

/// Mounts `mounts` on a fresh directory, runs `f`, unmounts.
fn with_mounted<T>(env: &Env, mounts: &[Mount], f: impl FnOnce(&Path) -> T) -> T {
    let target = tempfile::tempdir_in(env.dir.path()).unwrap();
    mount_all(mounts, target.path()).unwrap();
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(target.path())));
    unmount_all(target.path(), mounts.len()).unwrap();
    match out {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn apply(env: &Env, key: &str, tar: &[u8]) {
    let (dir, mode) = env.sn.apply_target(key).unwrap();
    apply_layer(tar, &dir, mode, None).unwrap();
}

fn lifecycle(kind: &str) {
    let e = env(kind);
    let sn = &e.sn;
    sn.prepare("a", None).unwrap();
    assert_eq!(sn.stat("a").unwrap().kind, Kind::Active);
    apply(&e, "a", &Tar::new().file("f", b"1", 0o644).finish());
    sn.commit("base", "a").unwrap();
    assert!(matches!(sn.stat("a"), Err(SnapshotError::NotFound(_))));
    assert_eq!(sn.stat("base").unwrap().kind, Kind::Committed);

    sn.prepare("b", Some("base")).unwrap();
    assert_eq!(sn.stat("b").unwrap().parent.as_deref(), Some("base"));
    let err = sn.remove("base").unwrap_err();
    assert!(
        matches!(err, SnapshotError::HasChildren { children: 1, .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);

    // Wrong kinds and duplicate keys.
    assert!(matches!(
        sn.prepare("b", None),
        Err(SnapshotError::AlreadyExists(_))
    ));
    assert!(matches!(
        sn.prepare("c", Some("b")),
        Err(SnapshotError::WrongKind { .. })
    ));
    assert!(matches!(
        sn.commit("x", "base"),
        Err(SnapshotError::WrongKind { .. })
    ));
    assert!(matches!(
        sn.prepare("c", Some("missing")),
        Err(SnapshotError::NotFound(_))
    ));
    assert!(matches!(
        sn.prepare("", None),
        Err(SnapshotError::BadKey(_))
    ));

    sn.view("v", Some("base")).unwrap();
    assert_eq!(sn.stat("v").unwrap().kind, Kind::View);
    assert!(sn.apply_target("v").is_err());
    let mut keys: Vec<String> = sn.list().unwrap().into_iter().map(|i| i.key).collect();
    keys.sort();
    assert_eq!(keys, vec!["b", "base", "v"]);
    sn.remove("v").unwrap();
    sn.remove("b").unwrap();
    sn.remove("base").unwrap();
    assert!(sn.list().unwrap().is_empty());
}

fn layers_merge_with_whiteouts_links_devices_xattrs(kind: &str) {
    let e = env(kind);
    let l1 = Tar::new()
        .dir("etc/", 0o755)
        .file("etc/keep", b"keep", 0o644)
        .file("etc/gone", b"gone", 0o644)
        .dir("opq/", 0o755)
        .file("opq/old", b"old", 0o644)
        .file_owned("bin/tool", b"#!tool", 0o4755, 1000, 1001)
        .hardlink("bin/tool2", "bin/tool")
        .symlink("bin/sh", "/bin/tool")
        .device("dev/null", tar::EntryType::Char, 1, 3)
        .device("dev/fifo", tar::EntryType::Fifo, 0, 0)
        .file_with_xattr("xa", b"x", "user.kontti", "yes")
        .finish();
    let l2 = Tar::new()
        .file("etc/.wh.gone", b"", 0o644)
        .dir("opq/", 0o755)
        .file("opq/new", b"new", 0o644)
        .file("opq/.wh..wh..opq", b"", 0o644)
        .file("etc/added", b"added", 0o600)
        .finish();
    let image = store_image(&e.store, "merge:1", &[l1, l2], true);
    let mounts = prepare_rootfs(&e.store, &image, e.sn.as_ref(), "ctr").unwrap();
    with_mounted(&e, &mounts, |root| {
        assert_eq!(fs::read_to_string(root.join("etc/keep")).unwrap(), "keep");
        assert!(!root.join("etc/gone").exists(), "whiteout hides etc/gone");
        assert_eq!(fs::read_to_string(root.join("etc/added")).unwrap(), "added");
        let mut opq: Vec<String> = fs::read_dir(root.join("opq"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        opq.sort();
        assert_eq!(opq, vec!["new"], "opaque directory hides the lower content");
        let tool = fs::metadata(root.join("bin/tool")).unwrap();
        assert_eq!((tool.uid(), tool.gid()), (1000, 1001));
        assert_eq!(tool.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(tool.mtime(), 1_700_000_000);
        assert_eq!(tool.nlink(), 2);
        assert_eq!(
            fs::metadata(root.join("bin/tool2")).unwrap().ino(),
            tool.ino()
        );
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("/bin/tool")
        );
        let null = fs::symlink_metadata(root.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
        assert!(
            fs::symlink_metadata(root.join("dev/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        let mut v = [0u8; 16];
        let n = rustix::fs::getxattr(root.join("xa"), "user.kontti", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"yes");
        // The container's writes land in its own snapshot only.
        fs::write(root.join("etc/keep"), "changed").unwrap();
    });
    let again =
        e.sn.view(
            "check",
            image.chain_ids().last().map(|c| c.to_string()).as_deref(),
        )
        .unwrap();
    with_mounted(&e, &again, |root| {
        assert_eq!(fs::read_to_string(root.join("etc/keep")).unwrap(), "keep");
    });
}

fn unpack_once_and_share(kind: &str) {
    let e = env(kind);
    let base = Tar::new().file("base", b"b", 0o644).finish();
    let a = store_image(
        &e.store,
        "a:1",
        &[base.clone(), Tar::new().file("a", b"a", 0o644).finish()],
        true,
    );
    let b = store_image(
        &e.store,
        "b:1",
        &[base, Tar::new().file("b", b"b", 0o644).finish()],
        false,
    );
    let r1 = unpack_image(&e.store, &a, e.sn.as_ref()).unwrap();
    assert_eq!((r1.unpacked, r1.reused), (2, 0));
    let r2 = unpack_image(&e.store, &a, e.sn.as_ref()).unwrap();
    assert_eq!(
        (r2.unpacked, r2.reused),
        (0, 2),
        "an unpacked image unpacks nothing"
    );
    let r3 = unpack_image(&e.store, &b, e.sn.as_ref()).unwrap();
    assert_eq!(
        (r3.unpacked, r3.reused),
        (1, 1),
        "the shared base layer is reused"
    );
    assert_eq!(e.sn.list().unwrap().len(), 3);
}

fn failed_unpack_leaves_nothing(kind: &str) {
    let e = env(kind);
    let good = Tar::new().file("ok", b"ok", 0o644).finish();
    let hostile = Tar::new()
        .symlink("l", "../..")
        .file("l/pwned", b"x", 0o644)
        .finish();
    let image = store_image(&e.store, "bad:1", &[good, hostile], true);
    let err = unpack_image(&e.store, &image, e.sn.as_ref()).unwrap_err();
    assert!(matches!(err, RootfsError::Unpack { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    // The good base layer stays committed; nothing of the failed one remains.
    let list = e.sn.list().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].kind, Kind::Committed);
    assert!(!e.dir.path().join("pwned").exists());

    // A layer whose content does not match its diffID is discarded too.
    let e = env(kind);
    let layer = Tar::new().file("x", b"x", 0o644).finish();
    let mut image = store_image(&e.store, "mismatch:1", &[layer], false);
    image.config.rootfs.diff_ids[0] = kontti_image::hash::sha256(b"not it");
    let err = unpack_image(&e.store, &image, e.sn.as_ref()).unwrap_err();
    assert!(err.to_string().contains("diffID mismatch"), "{err}");
    assert!(e.sn.list().unwrap().is_empty());
}

fn deep_layer_stacks_mount(kind: &str) {
    // 170 layers: more lower directories than fit in one page of legacy
    // mount options with these paths.
    let e = env(kind);
    // The copy snapshotter copies the whole tree per layer; its depth is
    // not limited by mount options, so fewer layers prove the point.
    let n = if kind == "overlay" { 170 } else { 20 };
    let layers: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            Tar::new()
                .file(&format!("f{i}"), format!("{i}").as_bytes(), 0o644)
                .finish()
        })
        .collect();
    let image = store_image(&e.store, "deep:1", &layers, false);
    let mounts = prepare_rootfs(&e.store, &image, e.sn.as_ref(), "ctr").unwrap();
    if kind == "overlay" {
        let lower = mounts[0].option("lowerdir").unwrap();
        assert!(lower.len() > 4096, "lowerdir is {} bytes", lower.len());
    }
    with_mounted(&e, &mounts, |root| {
        assert_eq!(fs::read_to_string(root.join("f0")).unwrap(), "0");
        assert_eq!(
            fs::read_to_string(root.join(format!("f{}", n - 1))).unwrap(),
            format!("{}", n - 1)
        );
    });
}

fn concurrent_unpacks_of_one_image_agree(kind: &str) {
    // Several unpackers (threads here; each opens its own snapshotter, as
    // separate processes would) race on the same layers: all succeed, each
    // layer ends up committed once, no half-done snapshot remains.
    let e = env(kind);
    let layers: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            Tar::new()
                .file(&format!("f{i}"), &vec![i as u8; 100_000], 0o644)
                .finish()
        })
        .collect();
    let image = store_image(&e.store, "race:1", &layers, true);
    let root = e.dir.path().join("sn");
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (store, image, root) = (&e.store, &image, root.clone());
            s.spawn(move || {
                let sn: Box<dyn Snapshotter> = match kind {
                    "overlay" => Box::new(OverlaySnapshotter::open(root).unwrap()),
                    _ => Box::new(CopySnapshotter::open(root).unwrap()),
                };
                unpack_image(store, image, sn.as_ref()).unwrap();
            });
        }
    });
    let list = e.sn.list().unwrap();
    assert_eq!(list.len(), 4, "{list:?}");
    assert!(list.iter().all(|i| i.kind == Kind::Committed));
}

fn prune_keeps_what_images_and_containers_use(kind: &str) {
    let e = env(kind);
    let a = store_image(
        &e.store,
        "a:1",
        &[Tar::new().file("a", b"a", 0o644).finish()],
        false,
    );
    let b = store_image(
        &e.store,
        "b:1",
        &[Tar::new().file("b", b"b", 0o644).finish()],
        false,
    );
    let c = store_image(
        &e.store,
        "c:1",
        &[Tar::new().file("c", b"c", 0o644).finish()],
        false,
    );
    prepare_rootfs(&e.store, &a, e.sn.as_ref(), "container-a").unwrap();
    unpack_image(&e.store, &b, e.sn.as_ref()).unwrap();
    unpack_image(&e.store, &c, e.sn.as_ref()).unwrap();
    // a and b lose their names; c keeps it; a has a container.
    for n in ["a:1", "b:1"] {
        e.store
            .remove_ref(&kontti_core::ImageRef::parse(n).unwrap())
            .unwrap();
    }
    let report = kontti_image::local::prune(&e.store, Some(e.sn.as_ref()), false).unwrap();
    let b_top = b.chain_ids()[0].to_string();
    assert_eq!(report.snapshots, vec![b_top.clone()]);
    assert!(
        e.sn.stat(&a.chain_ids()[0].to_string()).is_ok(),
        "a container sits on a"
    );
    assert!(
        e.sn.stat(&c.chain_ids()[0].to_string()).is_ok(),
        "c is still named"
    );
    assert!(e.sn.stat(&b_top).is_err());
    assert!(!e.store.has(&b.layers()[0].digest) && e.store.has(&c.layers()[0].digest));
}

fn disk_full_while_unpacking_leaves_nothing(kind: &str) {
    let e = env(kind);
    let small = e.dir.path().join("small");
    fs::create_dir(&small).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(st.success());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let sn: Box<dyn Snapshotter> = match kind {
            "overlay" => Box::new(OverlaySnapshotter::open(small.join("sn")).unwrap()),
            _ => Box::new(CopySnapshotter::open(small.join("sn")).unwrap()),
        };
        let big = Tar::new().file("big", &vec![7u8; 2 << 20], 0o644).finish();
        let image = store_image(&e.store, "big:1", &[big], true);
        let err = unpack_image(&e.store, &image, sn.as_ref()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.to_string().contains("no space left on device"), "{err}");
        assert!(sn.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(small.join("sn/s")).unwrap().count(), 0);
    }));
    let _ = std::process::Command::new("umount").arg(&small).status();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
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
    lifecycle,
    layers_merge_with_whiteouts_links_devices_xattrs,
    unpack_once_and_share,
    failed_unpack_leaves_nothing,
    deep_layer_stacks_mount,
    concurrent_unpacks_of_one_image_agree,
    prune_keeps_what_images_and_containers_use,
    disk_full_while_unpacking_leaves_nothing,
);
