//! Content store: verified atomic ingests, resume, leases, references, GC.

use std::io::Write;

use kontti_core::{Digest, ErrorKind, ImageRef};
use kontti_image::hash::sha256;
use kontti_image::{ContentStore, Descriptor, StoreError, media};

fn store() -> (tempfile::TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = ContentStore::open(dir.path()).unwrap();
    (dir, s)
}

fn ingest_dirs(s: &ContentStore) -> usize {
    std::fs::read_dir(s.root().join("ingest")).unwrap().count()
}

#[test]
fn layout_is_an_oci_image_layout() {
    let (dir, _s) = store();
    let layout = std::fs::read_to_string(dir.path().join("oci-layout")).unwrap();
    assert!(layout.contains("\"imageLayoutVersion\":\"1.0.0\""));
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(idx["schemaVersion"], 2);
    // Opening again keeps what is there.
    ContentStore::open(dir.path()).unwrap();
}

#[test]
fn put_verifies_and_stores_atomically() {
    let (_d, s) = store();
    let lease = s.lease("test").unwrap();
    let data = b"hello world";
    let digest = s.put(&lease, data, None).unwrap();
    assert_eq!(digest, sha256(data));
    assert!(s.has(&digest));
    assert_eq!(s.size(&digest).unwrap(), 11);
    assert_eq!(std::fs::read(s.blob_path(&digest)).unwrap(), data);
    // Idempotent.
    assert_eq!(s.put(&lease, data, Some(&digest)).unwrap(), digest);
    assert_eq!(ingest_dirs(&s), 0);
}

#[test]
fn digest_mismatch_leaves_nothing() {
    let (_d, s) = store();
    let lease = s.lease("test").unwrap();
    let wrong = sha256(b"something else");
    let e = s.put(&lease, b"hello", Some(&wrong)).unwrap_err();
    assert!(matches!(e, StoreError::DigestMismatch { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.to_string().contains(&wrong.to_string()));
    assert!(!s.has(&wrong));
    assert!(!s.has(&sha256(b"hello")));
    assert_eq!(ingest_dirs(&s), 0);
}

#[test]
fn truncated_and_oversized_blobs_are_refused() {
    let (_d, s) = store();
    let lease = s.lease("test").unwrap();
    let data = b"0123456789";
    let digest = sha256(data);
    let mut w = s.ingest(&lease, Some(&digest), Some(10)).unwrap();
    w.write_all(&data[..6]).unwrap();
    let e = w.commit().unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::SizeMismatch {
                expected: 10,
                actual: 6,
                ..
            }
        ),
        "{e}"
    );
    assert!(!s.has(&digest));
    assert_eq!(ingest_dirs(&s), 0);

    let mut w = s.ingest(&lease, Some(&digest), Some(4)).unwrap();
    let e = w.write_all(data).unwrap_err();
    assert!(
        e.to_string()
            .contains("more data than the expected 4 bytes"),
        "{e}"
    );
    drop(w);
    assert_eq!(ingest_dirs(&s), 0);
}

#[test]
fn a_dropped_ingest_resumes_from_its_offset() {
    let (_d, s) = store();
    let lease = s.lease("test").unwrap();
    let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let digest = sha256(&data);
    let mut w = s
        .ingest(&lease, Some(&digest), Some(data.len() as u64))
        .unwrap();
    w.write_all(&data[..150_000]).unwrap();
    drop(w);
    let mut w = s
        .ingest(&lease, Some(&digest), Some(data.len() as u64))
        .unwrap();
    assert_eq!(w.offset(), 150_000);
    w.write_all(&data[150_000..]).unwrap();
    assert_eq!(w.commit().unwrap(), digest);
    assert_eq!(std::fs::read(s.blob_path(&digest)).unwrap(), data);
}

#[test]
fn one_writer_per_ingest() {
    let (_d, s) = store();
    let lease = s.lease("test").unwrap();
    let digest = sha256(b"x");
    let _w = s.ingest(&lease, Some(&digest), None).unwrap();
    let e = s.ingest(&lease, Some(&digest), None).err().unwrap();
    assert!(matches!(e, StoreError::IngestBusy(_)), "{e}");
    assert_eq!(e.kind(), ErrorKind::Conflict);
}

#[test]
fn sha512_blobs_are_accepted() {
    let (_d, s) = store();
    let lease = s.lease("test").unwrap();
    let mut h = kontti_image::hash::Hasher::new(kontti_core::Algorithm::Sha512);
    h.update(b"abc");
    let d = h.finish();
    assert_eq!(s.put(&lease, b"abc", Some(&d)).unwrap(), d);
    assert!(s.blob_path(&d).starts_with(s.root().join("blobs/sha512")));
}

fn manifest_with(s: &ContentStore, lease: &kontti_image::Lease, layer: &[u8]) -> Descriptor {
    let l = s.put(lease, layer, None).unwrap();
    let cfg = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{l}"]}}}}"#
    );
    let c = s.put(lease, cfg.as_bytes(), None).unwrap();
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{c}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{l}","size":{}}}]}}"#,
        media::OCI_MANIFEST,
        media::OCI_CONFIG,
        cfg.len(),
        media::OCI_LAYER_TAR,
        layer.len()
    );
    let md = s.put(lease, m.as_bytes(), None).unwrap();
    Descriptor::new(media::OCI_MANIFEST, md, m.len() as u64)
}

#[test]
fn references_and_gc_with_leases() {
    let (_d, s) = store();
    let lease = s.lease("test").unwrap();
    let a = manifest_with(&s, &lease, b"layer a");
    let b = manifest_with(&s, &lease, b"layer b");
    let ra = ImageRef::parse("busybox").unwrap();
    s.set_ref(&ra, &a).unwrap();
    assert_eq!(s.resolve_ref(&ra).unwrap().unwrap().digest, a.digest);
    let img = kontti_image::Image::open(&s, &ra).unwrap();
    assert_eq!(img.diff_ids(), &[sha256(b"layer a")]);
    assert_eq!(img.chain_ids(), vec![sha256(b"layer a")]);

    // While the lease lives, nothing goes.
    assert!(s.gc().unwrap().removed.is_empty());
    drop(lease);
    // Now b (unnamed) goes, a (named) stays.
    let report = s.gc().unwrap();
    assert_eq!(report.removed.len(), 3, "{report:?}");
    assert!(!s.has(&b.digest) && !s.has(&sha256(b"layer b")));
    assert!(s.has(&a.digest) && s.has(&sha256(b"layer a")));

    // Retagging leaves the old image untagged, not garbage.
    let lease = s.lease("test").unwrap();
    let c = manifest_with(&s, &lease, b"layer c");
    s.set_ref(&ra, &c).unwrap();
    drop(lease);
    s.gc().unwrap();
    assert!(s.has(&a.digest));
    let refs = s.refs().unwrap();
    assert_eq!(refs.len(), 2);
    assert!(
        refs.iter()
            .any(|r| r.name.is_none() && r.target.digest == a.digest)
    );
    // Removing the entries frees it.
    s.remove_target(&a.digest).unwrap();
    s.gc().unwrap();
    assert!(!s.has(&a.digest) && s.has(&c.digest));
    assert_eq!(s.remove_ref(&ra).unwrap().unwrap().digest, c.digest);
    assert!(s.resolve_ref(&ra).unwrap().is_none());
}

#[test]
fn leases_of_dead_processes_protect_nothing() {
    let (_d, s) = store();
    let lease = s.lease("pull").unwrap();
    let d = s.put(&lease, b"orphan", None).unwrap();
    // Simulate a killed process: the lease file stays but nobody holds its lock.
    let path = lease.path().to_owned();
    let text = std::fs::read_to_string(&path).unwrap();
    drop(lease);
    std::fs::write(&path, text).unwrap();
    let report = s.gc().unwrap();
    assert_eq!(report.removed, vec![d]);
    assert!(!path.exists());
}

#[test]
fn abandoned_ingests_are_collected_but_held_ones_are_not() {
    let (_d, s) = store();
    let lease = s.lease("test").unwrap();
    let held = sha256(b"held");
    let mut w = s.ingest(&lease, Some(&held), None).unwrap();
    w.write_all(b"he").unwrap();
    let mut a = s.ingest(&lease, Some(&sha256(b"abandoned")), None).unwrap();
    a.write_all(b"ab").unwrap();
    drop(a);
    assert_eq!(ingest_dirs(&s), 2);
    assert_eq!(s.gc().unwrap().removed_ingests, 1);
    assert_eq!(ingest_dirs(&s), 1);
    w.write_all(b"ld").unwrap();
    assert_eq!(w.commit().unwrap(), held);
}

#[test]
fn set_ref_requires_the_target() {
    let (_d, s) = store();
    let missing = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
    let e = s
        .set_ref(
            &ImageRef::parse("x").unwrap(),
            &Descriptor::new(media::OCI_MANIFEST, missing, 1),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn unknown_media_types_and_missing_platforms_are_clear_errors() {
    let (_d, s) = store();
    let lease = s.lease("test").unwrap();
    let layer = s.put(&lease, b"layer", None).unwrap();
    let cfg = format!(
        r#"{{"architecture":"arm64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer}"]}}}}"#
    );
    let c = s.put(&lease, cfg.as_bytes(), None).unwrap();
    let manifest = |layer_type: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{c}","size":{}}},"layers":[{{"mediaType":"{layer_type}","digest":"{layer}","size":5}}]}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            cfg.len()
        )
    };
    // A layer of a type kontti cannot unpack.
    let m = manifest("application/x-mystery");
    let md = s.put(&lease, m.as_bytes(), None).unwrap();
    let r = ImageRef::parse("mystery").unwrap();
    s.set_ref(
        &r,
        &Descriptor::new(media::OCI_MANIFEST, md, m.len() as u64),
    )
    .unwrap();
    let e = kontti_image::Image::open(&s, &r).unwrap_err();
    assert!(
        e.to_string()
            .contains("unsupported media type \"application/x-mystery\" for a layer"),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::Invalid);

    // An index that only has arm64.
    let m = manifest(media::OCI_LAYER_TAR);
    let md = s.put(&lease, m.as_bytes(), None).unwrap();
    let idx = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{md}","size":{},"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#,
        media::OCI_INDEX,
        media::OCI_MANIFEST,
        m.len()
    );
    let id = s.put(&lease, idx.as_bytes(), None).unwrap();
    let r = ImageRef::parse("armonly").unwrap();
    s.set_ref(&r, &Descriptor::new(media::OCI_INDEX, id, idx.len() as u64))
        .unwrap();
    let amd64: kontti_image::PlatformSpec = "linux/amd64".parse().unwrap();
    let e = kontti_image::Image::open_for(&s, &r, &amd64).unwrap_err();
    assert!(
        e.to_string()
            .contains("no manifest for platform linux/amd64"),
        "{e}"
    );
    assert!(e.to_string().contains("available: linux/arm64"), "{e}");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let arm64: kontti_image::PlatformSpec = "linux/arm64".parse().unwrap();
    let img = kontti_image::Image::open_for(&s, &r, &arm64).unwrap();
    assert_eq!(img.manifest_descriptor.digest, md);
    // GC keeps what the index references.
    drop(lease);
    s.gc().unwrap();
    assert!(s.has(&md) && s.has(&c) && s.has(&layer));
}
