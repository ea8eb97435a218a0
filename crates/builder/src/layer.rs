//! A layer from an overlay upper directory: the changes a step made,
//! as a reproducible tar (entries sorted by path, numeric owners, no user
//! or group names, mtimes clamped to `SOURCE_DATE_EPOCH`), compressed into
//! the content store.
//!
//! Overlay's whiteouts (0/0 character devices) become `.wh.NAME` entries and
//! opaque directories (`trusted.overlay.opaque=y`) get a `.wh..wh..opq`
//! entry, as the OCI image spec defines them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use kontti_core::Digest;
use kontti_image::hash::HashingWriter;
use kontti_image::{ContentStore, Descriptor, Lease, media};

use crate::error::BuildError;
use crate::options::LayerCompression;

/// A layer written to the content store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerBlob {
    /// The compressed blob.
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
}

const OPAQUE: &str = ".wh..wh..opq";

/// One entry of the diff, in tar order.
enum Item {
    /// A file, directory, link or device of the upper directory.
    Real(PathBuf, Metadata),
    /// `.wh.NAME` for a deleted name.
    Whiteout(PathBuf, Metadata),
    /// `DIR/.wh..wh..opq` for an opaque directory.
    Opaque(PathBuf, Metadata),
}

/// Lists the upper directory's entries, sorted by path (a directory before
/// what it holds).
fn walk(upper: &Path) -> io::Result<Vec<Item>> {
    let mut out = Vec::new();
    walk_dir(upper, Path::new(""), &mut out)?;
    Ok(out)
}

fn walk_dir(upper: &Path, rel: &Path, out: &mut Vec<Item>) -> io::Result<()> {
    let dir = upper.join(rel);
    let mut children: Vec<(OsString, Option<Metadata>)> = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        children.push((entry.file_name(), None));
    }
    if !rel.as_os_str().is_empty() && is_opaque(&dir) {
        children.push((OsString::from(OPAQUE), None));
    }
    // A whiteout's tar name differs from its file name: sort by tar name.
    let mut named: Vec<(Vec<u8>, OsString, Option<Metadata>)> = Vec::new();
    for (name, _) in children.drain(..) {
        if name == OPAQUE {
            named.push((OPAQUE.as_bytes().to_vec(), name, None));
            continue;
        }
        let md = fs::symlink_metadata(dir.join(&name))?;
        let tar_name = if is_whiteout(&md) {
            [b".wh.".as_slice(), name.as_bytes()].concat()
        } else {
            name.as_bytes().to_vec()
        };
        named.push((tar_name, name, Some(md)));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    for (tar_name, name, md) in named {
        let path = rel.join(&name);
        match md {
            None => {
                let md = fs::symlink_metadata(&dir)?;
                out.push(Item::Opaque(rel.join(OPAQUE), md));
            }
            Some(md) if is_whiteout(&md) => {
                let tar_path = rel.join(std::ffi::OsStr::from_bytes(&tar_name));
                out.push(Item::Whiteout(tar_path, md));
            }
            Some(md) => {
                let is_dir = md.is_dir();
                out.push(Item::Real(path.clone(), md));
                if is_dir {
                    walk_dir(upper, &path, out)?;
                }
            }
        }
    }
    Ok(())
}

fn is_whiteout(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

pub(crate) fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(
        rustix::fs::lgetxattr(dir, "trusted.overlay.opaque", &mut buf),
        Ok(1) if buf[0] == b'y'
    )
}

/// The extended attributes a layer keeps (file capabilities, user and
/// trusted attributes), sorted; overlay's own and SELinux labels are left
/// out.
fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if name.starts_with("trusted.overlay.") || name == "security.selinux" {
            continue;
        }
        let mut value = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(path, name, &mut value) {
            value.truncate(len);
            out.push((name.to_string(), value));
        }
    }
    out.sort();
    out
}

/// One PAX extended header record: `LEN KEY=VALUE\n`, where LEN counts
/// the whole record including its own digits.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    loop {
        let total = rest + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// Writes the diff in `upper` as a tar to `out`, with mtimes clamped to
/// `epoch`.
pub(crate) fn write_tar<W: Write>(upper: &Path, epoch: Option<i64>, out: W) -> io::Result<W> {
    let items = walk(upper)?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let clamp = |t: i64| -> u64 {
        let t = t.max(0);
        match epoch {
            Some(e) if t > e => e.max(0) as u64,
            _ => t as u64,
        }
    };
    for item in items {
        let mut h = tar::Header::new_gnu();
        match item {
            Item::Whiteout(path, md) | Item::Opaque(path, md) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(clamp(md.mtime()));
                h.set_size(0);
                tar.append_data(&mut h, &path, io::empty())?;
            }
            Item::Real(path, md) => {
                let xattrs = xattrs(&upper.join(&path));
                if !xattrs.is_empty() {
                    let data: Vec<u8> = xattrs
                        .iter()
                        .flat_map(|(k, v)| pax_record(&format!("SCHILY.xattr.{k}"), v))
                        .collect();
                    let mut x = tar::Header::new_ustar();
                    x.set_entry_type(tar::EntryType::XHeader);
                    x.set_path("PaxHeader")?;
                    x.set_mode(0o644);
                    x.set_mtime(clamp(md.mtime()));
                    x.set_size(data.len() as u64);
                    x.set_cksum();
                    tar.append(&x, data.as_slice())?;
                }
                h.set_mode(md.mode() & 0o7777);
                h.set_uid(u64::from(md.uid()));
                h.set_gid(u64::from(md.gid()));
                h.set_mtime(clamp(md.mtime()));
                h.set_size(0);
                let ft = md.file_type();
                if ft.is_dir() {
                    h.set_entry_type(tar::EntryType::Directory);
                    tar.append_data(&mut h, &path, io::empty())?;
                } else if ft.is_symlink() {
                    h.set_entry_type(tar::EntryType::Symlink);
                    let target = fs::read_link(upper.join(&path))?;
                    tar.append_link(&mut h, &path, &target)?;
                } else if ft.is_file() {
                    if md.nlink() > 1 {
                        let key = (md.dev(), md.ino());
                        if let Some(first) = links.get(&key) {
                            h.set_entry_type(tar::EntryType::Link);
                            tar.append_link(&mut h, &path, first)?;
                            continue;
                        }
                        links.insert(key, path.clone());
                    }
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(md.len());
                    let f = File::open(upper.join(&path))?;
                    tar.append_data(&mut h, &path, f.take(md.len()))?;
                } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
                    h.set_entry_type(if ft.is_fifo() {
                        tar::EntryType::Fifo
                    } else if ft.is_char_device() {
                        tar::EntryType::Char
                    } else {
                        tar::EntryType::Block
                    });
                    let dev = md.rdev();
                    h.set_device_major(rustix::fs::major(dev))?;
                    h.set_device_minor(rustix::fs::minor(dev))?;
                    tar.append_data(&mut h, &path, io::empty())?;
                } else {
                    tracing::debug!(path = %path.display(), "socket left out of the layer");
                }
            }
        }
    }
    tar.into_inner()
}

/// Writes the diff in `upper` as a layer blob into `store` under `lease`.
pub(crate) fn store_layer(
    store: &ContentStore,
    lease: &Lease,
    upper: &Path,
    compression: LayerCompression,
    epoch: Option<i64>,
) -> Result<LayerBlob, BuildError> {
    let fail = |e: io::Error| BuildError::io("write layer from", upper, e);
    let mut writer = store.ingest(lease, None, None)?;
    let (media_type, diff_id) = match compression {
        LayerCompression::Gzip => {
            let gz = flate2::write::GzEncoder::new(&mut writer, flate2::Compression::fast());
            let hashing = write_tar(upper, epoch, HashingWriter::new(gz)).map_err(fail)?;
            let (gz, diff_id, _) = hashing.finish();
            gz.finish().map_err(fail)?;
            (media::OCI_LAYER_GZIP, diff_id)
        }
        LayerCompression::None => {
            let hashing = write_tar(upper, epoch, HashingWriter::new(&mut writer)).map_err(fail)?;
            let (_, diff_id, _) = hashing.finish();
            (media::OCI_LAYER_TAR, diff_id)
        }
        LayerCompression::Zstd => {
            // The zstd encoder cannot report I/O errors: give it memory.
            let hashing = write_tar(upper, epoch, HashingWriter::new(Vec::new())).map_err(fail)?;
            let (tar, diff_id, _) = hashing.finish();
            let compressed = ruzstd::encoding::compress_to_vec(
                tar.as_slice(),
                ruzstd::encoding::CompressionLevel::Fastest,
            );
            writer.write_all(&compressed).map_err(fail)?;
            (media::OCI_LAYER_ZSTD, diff_id)
        }
    };
    let size = writer.offset();
    let digest = writer.commit()?;
    Ok(LayerBlob {
        descriptor: Descriptor::new(media_type, digest, size),
        diff_id,
    })
}

/// Whether `upper` holds no change at all.
pub(crate) fn is_empty_dir(dir: &Path) -> io::Result<bool> {
    Ok(fs::read_dir(dir)?.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_is_sorted_and_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path();
        fs::create_dir_all(up.join("b/c")).unwrap();
        fs::write(up.join("b/c/z"), b"z").unwrap();
        fs::write(up.join("a"), b"hello").unwrap();
        fs::hard_link(up.join("a"), up.join("b/hard")).unwrap();
        std::os::unix::fs::symlink("/a", up.join("b/link")).unwrap();
        let data = write_tar(up, Some(10), Vec::new()).unwrap();
        let mut archive = tar::Archive::new(data.as_slice());
        let mut names = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            assert!(e.header().mtime().unwrap() <= 10);
            names.push((
                e.path().unwrap().to_string_lossy().into_owned(),
                e.header().entry_type(),
            ));
        }
        let just: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(just, ["a", "b", "b/c", "b/c/z", "b/hard", "b/link"]);
        assert_eq!(names[4].1, tar::EntryType::Link);
        assert_eq!(names[5].1, tar::EntryType::Symlink);
        let again = write_tar(up, Some(10), Vec::new()).unwrap();
        assert_eq!(data, again, "the same tree gives the same tar");
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("a", b"b"), b"6 a=b\n");
        let r = pax_record("SCHILY.xattr.user.x", &[0u8; 90]);
        let len: usize = std::str::from_utf8(&r[..3]).unwrap().parse().unwrap();
        assert_eq!(len, r.len());
    }

    #[test]
    fn file_capabilities_survive_in_the_layer() {
        kontti_testutil::require_root();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ping");
        fs::write(&f, b"binary").unwrap();
        let value =
            b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        rustix::fs::setxattr(
            &f,
            "security.capability",
            value,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let data = write_tar(dir.path(), None, Vec::new()).unwrap();
        let mut archive = tar::Archive::new(data.as_slice());
        let mut found = None;
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if let Some(exts) = e.pax_extensions().unwrap() {
                for ext in exts {
                    let ext = ext.unwrap();
                    if ext.key().unwrap() == "SCHILY.xattr.security.capability" {
                        found = Some(ext.value_bytes().to_vec());
                    }
                }
            }
        }
        assert_eq!(found.as_deref(), Some(value.as_slice()));
    }
}
