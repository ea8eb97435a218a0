//! Volumes on a real state root: create, reuse, labels, in-use tracking,
//! removal refused while used, prune, and safety across processes.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use kontti_core::ErrorKind;
use kontti_engine::volume::{VolumeError, Volumes};

/// A container directory, as the engine has one while a container exists.
fn container(root: &Path, id: &str) {
    fs::create_dir_all(root.join("containers").join(id)).unwrap();
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn named_volume_is_created_once_and_listed() {
    let root = tempfile::tempdir().unwrap();
    let vols = Volumes::open(root.path());
    assert!(vols.list().unwrap().is_empty());
    let v = vols
        .create(Some("data"), labels(&[("app", "web")]))
        .unwrap();
    assert_eq!(v.name, "data");
    assert!(!v.anonymous);
    assert_eq!(v.mountpoint, root.path().join("volumes/data/_data"));
    assert!(v.mountpoint.is_dir());
    assert_eq!(v.labels, labels(&[("app", "web")]));
    assert!(
        v.created.ends_with('Z') && v.created.len() == 20,
        "{}",
        v.created
    );
    fs::write(v.mountpoint.join("f"), "kept").unwrap();
    // Creating it again returns the existing volume, data included.
    let again = vols.create(Some("data"), BTreeMap::new()).unwrap();
    assert_eq!(again.created, v.created);
    assert_eq!(again.labels, v.labels);
    assert_eq!(
        fs::read_to_string(again.mountpoint.join("f")).unwrap(),
        "kept"
    );
    let anon = vols.create(None, BTreeMap::new()).unwrap();
    assert!(anon.anonymous);
    assert_eq!(anon.name.len(), 64);
    assert!(anon.name.chars().all(|c| c.is_ascii_hexdigit()));
    let names: Vec<_> = vols.list().unwrap().into_iter().map(|v| v.name).collect();
    let mut want = vec![anon.name.clone(), "data".to_owned()];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(vols.get("data").unwrap(), again);
    // Nothing half-made is left in the directory.
    let hidden: Vec<_> = fs::read_dir(root.path().join("volumes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n != ".lock")
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn invalid_names_are_refused_and_create_nothing() {
    let root = tempfile::tempdir().unwrap();
    let vols = Volumes::open(root.path());
    for bad in ["a", "../etc", "-x", "a/b", ".hidden", "sp ace"] {
        let e = vols.create(Some(bad), BTreeMap::new()).unwrap_err();
        assert!(matches!(e, VolumeError::InvalidName(_)), "{bad}: {e}");
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(!e.to_string().contains('\n'));
    }
    assert!(vols.list().unwrap().is_empty());
    assert!(matches!(vols.get("../x"), Err(VolumeError::InvalidName(_))));
    assert!(matches!(
        vols.acquire("data", "../../etc"),
        Err(VolumeError::InvalidContainer(_))
    ));
}

#[test]
fn volume_in_use_cannot_be_removed_until_released() {
    let root = tempfile::tempdir().unwrap();
    let vols = Volumes::open(root.path());
    let id = "c0ffee".repeat(10) + "abcd";
    container(root.path(), &id);
    vols.create(Some("data"), BTreeMap::new()).unwrap();
    let v = vols.acquire("data", &id).unwrap();
    assert_eq!(v.users, vec![id.clone()]);
    for force in [false, true] {
        let e = vols.remove("data", force).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        assert_eq!(
            e.to_string(),
            "volume data is in use by container c0ffeec0ffee"
        );
    }
    // Prune leaves it alone too.
    assert!(vols.prune(true).unwrap().removed.is_empty());
    vols.release("data", &id).unwrap();
    vols.release("data", &id).unwrap(); // idempotent
    vols.remove("data", false).unwrap();
    assert!(!root.path().join("volumes/data").exists());
}

#[test]
fn removing_a_missing_volume_is_not_found_unless_forced() {
    let root = tempfile::tempdir().unwrap();
    let vols = Volumes::open(root.path());
    let e = vols.remove("nothere", false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.to_string(), "no such volume: nothere");
    vols.remove("nothere", true).unwrap();
    assert!(matches!(
        vols.acquire("nothere", "abc"),
        Err(VolumeError::NotFound(_))
    ));
    vols.release("nothere", "abc").unwrap();
}

#[test]
fn a_user_whose_container_is_gone_does_not_hold_the_volume() {
    let root = tempfile::tempdir().unwrap();
    let vols = Volumes::open(root.path());
    container(root.path(), "alive");
    container(root.path(), "crashed");
    vols.create_for(Some("data"), BTreeMap::new(), "alive")
        .unwrap();
    let v = vols.acquire("data", "crashed").unwrap();
    assert_eq!(v.users, vec!["alive".to_owned(), "crashed".to_owned()]);
    fs::remove_dir(root.path().join("containers/alive")).unwrap();
    fs::remove_dir(root.path().join("containers/crashed")).unwrap();
    assert!(vols.get("data").unwrap().users.is_empty());
    vols.remove("data", false).unwrap();
}

#[test]
fn prune_removes_unused_anonymous_volumes_or_all_unused() {
    let root = tempfile::tempdir().unwrap();
    let vols = Volumes::open(root.path());
    container(root.path(), "user1");
    let named = vols.create(Some("keep"), BTreeMap::new()).unwrap();
    let anon = vols.create(None, BTreeMap::new()).unwrap();
    fs::write(anon.mountpoint.join("blob"), vec![0u8; 1000]).unwrap();
    let used = vols.create_for(None, BTreeMap::new(), "user1").unwrap();
    // What a killed create and a killed remove leave behind goes too.
    fs::create_dir_all(root.path().join("volumes/.new-half/_data")).unwrap();
    fs::create_dir_all(root.path().join("volumes/.rm-gone/_data")).unwrap();
    let p = vols.prune(false).unwrap();
    assert_eq!(p.removed, vec![anon.name.clone()]);
    assert!(!root.path().join("volumes/.new-half").exists());
    assert!(!root.path().join("volumes/.rm-gone").exists());
    assert_eq!(p.reclaimed_bytes, 1000);
    let p = vols.prune(true).unwrap();
    assert_eq!(p.removed, vec![named.name.clone()]);
    let left: Vec<_> = vols.list().unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(left, vec![used.name]);
}

#[test]
fn corrupt_record_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let vols = Volumes::open(root.path());
    vols.create(Some("data"), BTreeMap::new()).unwrap();
    fs::write(root.path().join("volumes/data/volume.json"), "{not json").unwrap();
    let e = vols.get("data").unwrap_err();
    assert!(e.to_string().starts_with("corrupt volume record "), "{e}");
    assert!(vols.list().is_err());
}

/// Several processes acquiring one volume at once lose no user: the lock
/// serialises the read-modify-write of volume.json.
#[test]
fn concurrent_acquires_from_processes_lose_no_user() {
    let root = tempfile::tempdir().unwrap();
    let vols = Volumes::open(root.path());
    vols.create(Some("shared"), BTreeMap::new()).unwrap();
    let n = 8;
    for i in 0..n {
        container(root.path(), &format!("c{i}"));
    }
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..n)
        .map(|i| {
            Command::new(&exe)
                .args(["--exact", "acquire_helper", "--nocapture"])
                .env("VOLUME_HELPER_ROOT", root.path())
                .env("VOLUME_HELPER_ID", format!("c{i}"))
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let users = vols.get("shared").unwrap().users;
    assert_eq!(users.len(), n, "{users:?}");
}

/// Run by `concurrent_acquires_from_processes_lose_no_user` in child
/// processes; does nothing on its own.
#[test]
fn acquire_helper() {
    let (Some(root), Some(id)) = (
        std::env::var_os("VOLUME_HELPER_ROOT"),
        std::env::var("VOLUME_HELPER_ID").ok(),
    ) else {
        return;
    };
    let vols = Volumes::open(Path::new(&root));
    for _ in 0..20 {
        vols.acquire("shared", &id).unwrap();
        vols.release("shared", &id).unwrap();
    }
    vols.acquire("shared", &id).unwrap();
}

#[test]
fn populate_copies_the_image_content_into_an_empty_volume_only() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    kontti_testutil::require_root(); // chown to other owners
    let root = tempfile::tempdir().unwrap();
    let image = tempfile::tempdir().unwrap();
    let src = image.path().join("etc/app");
    fs::create_dir_all(src.join("conf.d")).unwrap();
    fs::write(src.join("app.conf"), "seeded\n").unwrap();
    fs::set_permissions(src.join("app.conf"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(src.join("conf.d"), Some(1234), Some(5678)).unwrap();
    symlink("/etc/passwd", src.join("link")).unwrap();
    let vols = Volumes::open(root.path());
    let v = vols.create(Some("cfg"), BTreeMap::new()).unwrap();
    assert!(vols.populate(&v, &src).unwrap());
    let m = &v.mountpoint;
    assert_eq!(fs::read_to_string(m.join("app.conf")).unwrap(), "seeded\n");
    let mode = fs::metadata(m.join("app.conf")).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let d = fs::metadata(m.join("conf.d")).unwrap();
    assert_eq!((d.uid(), d.gid()), (1234, 5678));
    // The link is recreated, not followed.
    assert_eq!(
        fs::read_link(m.join("link")).unwrap(),
        Path::new("/etc/passwd")
    );
    // A volume with content is left alone; a missing source copies nothing.
    fs::write(src.join("later"), "x").unwrap();
    assert!(!vols.populate(&v, &src).unwrap());
    assert!(!m.join("later").exists());
    let empty = vols.create(Some("other"), BTreeMap::new()).unwrap();
    assert!(
        !vols
            .populate(&empty, &image.path().join("nothing"))
            .unwrap()
    );
}
