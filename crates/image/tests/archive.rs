//! import, save and load, including interoperability with podman (its own
//! --root/--runroot and the vfs driver per test).

mod common;

use std::fs::{self, File};
use std::path::Path;
use std::process::Command;

use common::Tar;
use kontti_core::{ErrorKind, ImageRef};
use kontti_image::archive::{self, ArchiveError, ArchiveFormat, SaveItem};
use kontti_image::import::import_rootfs;
use kontti_image::{ContentStore, Image, ImageConfig, local};

fn store_in(dir: &Path) -> ContentStore {
    ContentStore::open(dir.join("content")).unwrap()
}

fn import_busybox(store: &ContentStore, dir: &Path, name: &str) -> Image {
    let tarball = dir.join("rootfs.tar");
    kontti_testutil::write_rootfs_tar(&tarball).unwrap();
    let r = ImageRef::parse(name).unwrap();
    import_rootfs(
        store,
        File::open(&tarball).unwrap(),
        "rootfs.tar",
        Some(&r),
        ImageConfig::default(),
    )
    .unwrap()
}

fn blob_count(store: &ContentStore) -> usize {
    fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .count()
}

#[test]
fn import_makes_a_one_layer_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let img = import_busybox(&store, dir.path(), "bb:1");
    assert_eq!(img.layers().len(), 1);
    // Uncompressed: the layer digest is its diffID.
    assert_eq!(img.layers()[0].digest, img.diff_ids()[0]);
    assert_eq!(img.config.os, "linux");
    let listed = local::list(&store).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].names[0].to_string(), "docker.io/library/bb:1");
    assert!(local::find(&store, img.id().short()).is_ok());
}

#[test]
fn import_of_garbage_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let e = import_rootfs(
        &store,
        &[0x42u8; 3000][..],
        "junk.tar",
        None,
        ImageConfig::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("junk.tar is not a valid tar archive"),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(blob_count(&store), 0);
    assert_eq!(
        fs::read_dir(store.root().join("ingest")).unwrap().count(),
        0
    );
    assert!(store.refs().unwrap().is_empty());
    // Truncated in the middle of an entry.
    let tar = Tar::new().file("a", &[1u8; 5000], 0o644).finish();
    assert!(
        import_rootfs(
            &store,
            &tar[..2000],
            "cut.tar",
            None,
            ImageConfig::default()
        )
        .is_err()
    );
    assert_eq!(blob_count(&store), 0);
}

fn round_trip(format: ArchiveFormat) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let img = import_busybox(&store, dir.path(), "localhost:5000/bb:rt");
    let out = dir.path().join("out.tar");
    let item = SaveItem {
        image: img.clone(),
        names: vec![ImageRef::parse("localhost:5000/bb:rt").unwrap()],
    };
    archive::save(&store, &[item], format, File::create(&out).unwrap()).unwrap();

    let dir2 = tempfile::tempdir().unwrap();
    let store2 = store_in(dir2.path());
    let report = archive::load(&store2, File::open(&out).unwrap()).unwrap();
    assert_eq!(
        report.names,
        vec![ImageRef::parse("localhost:5000/bb:rt").unwrap()]
    );
    let loaded = Image::open(&store2, &report.names[0]).unwrap();
    assert_eq!(loaded.id(), img.id());
    assert_eq!(loaded.diff_ids(), img.diff_ids());
    if format == ArchiveFormat::OciArchive {
        assert_eq!(
            loaded.manifest_descriptor.digest,
            img.manifest_descriptor.digest
        );
    }
}

#[test]
fn docker_archive_round_trips() {
    round_trip(ArchiveFormat::DockerArchive);
}

#[test]
fn oci_archive_round_trips() {
    round_trip(ArchiveFormat::OciArchive);
}

#[test]
fn corrupt_archives_are_refused_and_leave_nothing_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    // A docker archive whose layer does not match the config's diffID.
    let layer = Tar::new().file("a", b"a", 0o644).finish();
    let other = kontti_image::hash::sha256(b"other");
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{other}"]}}}}"#
    );
    let manifest = r#"[{"Config":"c.json","RepoTags":["bad:1"],"Layers":["l/layer.tar"]}]"#;
    let archive_bytes = Tar::new()
        .file("c.json", config.as_bytes(), 0o644)
        .file("l/layer.tar", &layer, 0o644)
        .file("manifest.json", manifest.as_bytes(), 0o644)
        .finish();
    let p = dir.path().join("bad.tar");
    fs::write(&p, &archive_bytes).unwrap();
    let e = archive::load(&store, File::open(&p).unwrap()).unwrap_err();
    assert!(matches!(e, ArchiveError::DiffIdMismatch { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(store.refs().unwrap().is_empty());
    store.gc().unwrap();
    assert_eq!(blob_count(&store), 0, "nothing partial stays in the store");

    // Neither format.
    fs::write(&p, Tar::new().file("x", b"x", 0o644).finish()).unwrap();
    let e = archive::load(&store, File::open(&p).unwrap()).unwrap_err();
    assert!(e.to_string().contains("neither manifest.json"), "{e}");
    // Not a tar at all.
    fs::write(&p, [0x55u8; 2048]).unwrap();
    assert!(archive::load(&store, File::open(&p).unwrap()).is_err());
    // An OCI layout whose index points at a blob it lacks.
    let idx = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{other}","size":2}}]}}"#
    );
    fs::write(
        &p,
        Tar::new()
            .file("index.json", idx.as_bytes(), 0o644)
            .finish(),
    )
    .unwrap();
    let e = archive::load(&store, File::open(&p).unwrap()).unwrap_err();
    assert!(matches!(e, ArchiveError::Missing(_)), "{e}");
}

/// podman with state of its own, removed afterwards.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        kontti_testutil::require_root();
        Podman {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("podman")
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .args([
                "--storage-driver",
                "vfs",
                "--events-backend",
                "none",
                "--cgroup-manager",
                "cgroupfs",
            ])
            .args(args)
            .output()
            .expect("podman is installed");
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // not `system reset`: it also empties podman's run directory, which
        // every podman root on the host shares; vfs layers are plain
        // directories that go with the tempdir
        for args in [&["rm", "-a", "-f"][..], &["rmi", "-a", "-f"]] {
            let _ = Command::new("podman")
                .arg("--root")
                .arg(self.dir.path().join("root"))
                .arg("--runroot")
                .arg(self.dir.path().join("runroot"))
                .args(["--storage-driver", "vfs"])
                .args(args)
                .output();
        }
    }
}

fn podman_loads_kontti_save(format: ArchiveFormat, flag: &str) {
    let podman = Podman::new();
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let img = import_busybox(&store, dir.path(), "localhost/kontti-save:1");
    let out = dir.path().join("save.tar");
    let item = SaveItem {
        image: img.clone(),
        names: vec![ImageRef::parse("localhost/kontti-save:1").unwrap()],
    };
    archive::save(&store, &[item], format, File::create(&out).unwrap()).unwrap();
    let loaded = podman.run(&["load", "-i", out.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image"), "{flag}: {loaded}");
    let id = podman.run(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "localhost/kontti-save:1",
    ]);
    assert_eq!(id.trim(), img.id().hex(), "podman sees the same image id");
}

#[test]
fn podman_loads_kontti_docker_archive() {
    podman_loads_kontti_save(ArchiveFormat::DockerArchive, "docker-archive");
}

#[test]
fn podman_loads_kontti_oci_archive() {
    podman_loads_kontti_save(ArchiveFormat::OciArchive, "oci-archive");
}

fn kontti_loads_podman_save(format: &str) {
    let podman = Podman::new();
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("rootfs.tar");
    kontti_testutil::write_rootfs_tar(&tarball).unwrap();
    podman.run(&[
        "import",
        tarball.to_str().unwrap(),
        "localhost/from-podman:2",
    ]);
    let id = podman.run(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "localhost/from-podman:2",
    ]);
    let out = dir.path().join("podman.tar");
    podman.run(&[
        "save",
        "--format",
        format,
        "-o",
        out.to_str().unwrap(),
        "localhost/from-podman:2",
    ]);

    let store = store_in(dir.path());
    let report = archive::load(&store, File::open(&out).unwrap()).unwrap();
    let r = ImageRef::parse("localhost/from-podman:2").unwrap();
    assert_eq!(report.names, vec![r.clone()], "{format}");
    let img = Image::open(&store, &r).unwrap();
    assert_eq!(img.id().hex(), id.trim());
    // And it unpacks into a working rootfs.
    let sn = kontti_image::snapshot::CopySnapshotter::open(dir.path().join("sn")).unwrap();
    kontti_image::rootfs::prepare_rootfs(&store, &img, &sn, "c").unwrap();
    let (root, _) = kontti_image::snapshot::Snapshotter::apply_target(&sn, "c").unwrap();
    assert!(root.join("bin/busybox").is_file());
}

#[test]
fn kontti_loads_podman_docker_archive() {
    kontti_loads_podman_save("docker-archive");
}

#[test]
fn kontti_loads_podman_oci_archive() {
    kontti_loads_podman_save("oci-archive");
}
