//! Helpers shared by the integration tests: building layers and images.
#![allow(dead_code)]

use std::io::Write;

use kontti_core::{Digest, ImageRef};
use kontti_image::hash::sha256;
use kontti_image::{ContentStore, Descriptor, Image, media};

/// A tar builder with the raw header API, so tests can write anything
/// (including names the `tar` crate's safe setters refuse).
pub struct Tar {
    out: Vec<u8>,
}

impl Tar {
    pub fn new() -> Tar {
        Tar { out: Vec::new() }
    }

    fn header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        assert!(name.len() < 100, "test names stay short");
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }

    fn push(&mut self, mut h: tar::Header, data: &[u8]) {
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    pub fn dir(mut self, name: &str, mode: u32) -> Self {
        let h = Self::header(name, tar::EntryType::Directory, 0, mode);
        self.push(h, &[]);
        self
    }

    pub fn file(mut self, name: &str, data: &[u8], mode: u32) -> Self {
        let h = Self::header(name, tar::EntryType::Regular, data.len() as u64, mode);
        self.push(h, data);
        self
    }

    pub fn file_owned(mut self, name: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = Self::header(name, tar::EntryType::Regular, data.len() as u64, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        self.push(h, data);
        self
    }

    fn link_entry(mut self, name: &str, target: &str, kind: tar::EntryType) -> Self {
        let mut h = Self::header(name, kind, 0, 0o777);
        assert!(target.len() < 100);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        self.push(h, &[]);
        self
    }

    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.link_entry(name, target, tar::EntryType::Symlink)
    }

    pub fn hardlink(self, name: &str, target: &str) -> Self {
        self.link_entry(name, target, tar::EntryType::Link)
    }

    pub fn device(mut self, name: &str, kind: tar::EntryType, major: u32, minor: u32) -> Self {
        let mut h = Self::header(name, kind, 0, 0o666);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.push(h, &[]);
        self
    }

    /// A file with PAX xattr records.
    pub fn file_with_xattr(mut self, name: &str, data: &[u8], key: &str, value: &str) -> Self {
        let record_body = format!(" SCHILY.xattr.{key}={value}\n");
        let mut len = record_body.len() + 2;
        loop {
            let l = format!("{len}{record_body}").len();
            if l == len {
                break;
            }
            len = l;
        }
        let pax = format!("{len}{record_body}");
        let h = Self::header(
            "PaxHeaders/x",
            tar::EntryType::XHeader,
            pax.len() as u64,
            0o644,
        );
        self.push(h, pax.as_bytes());
        self.file(name, data, 0o644)
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Stores an image made of `layers` (uncompressed tars; gzipped when
/// `gzip_layers`) under `name`; returns it.
pub fn store_image(
    store: &ContentStore,
    name: &str,
    layers: &[Vec<u8>],
    gzip_layers: bool,
) -> Image {
    let lease = store.lease("test").unwrap();
    let mut descs = Vec::new();
    let mut diff_ids: Vec<Digest> = Vec::new();
    for l in layers {
        diff_ids.push(sha256(l));
        let (blob, mt) = if gzip_layers {
            (gzip(l), media::OCI_LAYER_GZIP)
        } else {
            (l.clone(), media::OCI_LAYER_TAR)
        };
        let d = store.put(&lease, &blob, None).unwrap();
        descs.push(Descriptor::new(mt, d, blob.len() as u64));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cd = store.put(&lease, &config, None).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": cd, "size": config.len()},
        "layers": descs,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let md = store.put(&lease, &manifest, None).unwrap();
    let r = ImageRef::parse(name).unwrap();
    store
        .set_ref(
            &r,
            &Descriptor::new(media::OCI_MANIFEST, md, manifest.len() as u64),
        )
        .unwrap();
    Image::open(store, &r).unwrap()
}
