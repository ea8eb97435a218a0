//! `kontti save` and `kontti load`: image archives that docker, podman and
//! skopeo exchange.
//!
//! * **docker-archive** (what `docker save` wrote before v25 and what
//!   `podman save` writes by default): `manifest.json` listing each image's
//!   config file, tags and uncompressed layer tars, plus `repositories`.
//! * **oci-archive**: a tar of an OCI image layout (`oci-layout`,
//!   `index.json`, `blobs/`), names in `org.opencontainers.image.ref.name`.
//!
//! `load` accepts both (and docker v25's combined form) and verifies every
//! blob: layer tars against the config's diffIDs, OCI blobs against their
//! descriptors. Archives are read by seeking, so stdin is spooled to a
//! temporary file first; layers are streamed, never held in memory.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path};

use kontti_core::{Digest, ErrorKind, ImageRef};
use serde::{Deserialize, Serialize};

use crate::Lease;
use crate::config::ImageConfigFile;
use crate::hash::HashingReader;
use crate::image::{Image, ImageError};
use crate::import::put_manifest;
use crate::media::{
    self, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Compression, Descriptor, Document, Index,
    MAX_MANIFEST_SIZE, MediaKind, media_kind, parse_document,
};
use crate::store::{ContentStore, StoreError};
use crate::unpack::{decompressed, detect_compression};

/// Errors saving or loading archives.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive is not in a format kontti reads.
    #[error("{0}")]
    Format(String),
    /// A file the archive's manifest names is missing.
    #[error("archive is missing {0:?}")]
    Missing(String),
    /// A layer's content does not match the config's diffID.
    #[error("layer {path:?} in the archive hashes to {actual}, but the config says {expected}")]
    DiffIdMismatch {
        /// The layer file.
        path: String,
        /// From the config.
        expected: Digest,
        /// Computed.
        actual: Digest,
    },
    /// Reading or writing the archive failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Resolving an image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A document in the archive is invalid.
    #[error(transparent)]
    Media(#[from] media::MediaError),
}

impl ArchiveError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ArchiveError::Format(_)
            | ArchiveError::Missing(_)
            | ArchiveError::DiffIdMismatch { .. } => ErrorKind::Invalid,
            ArchiveError::Io { source, .. }
                if source.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) =>
            {
                ErrorKind::Unavailable
            }
            ArchiveError::Io { .. } => ErrorKind::Internal,
            ArchiveError::Store(e) => e.kind(),
            ArchiveError::Image(e) => e.kind(),
            ArchiveError::Media(e) => e.kind(),
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let what = what.into();
    move |source| ArchiveError::Io { what, source }
}

/// Archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `manifest.json` + `repositories` + config + layer tars.
    DockerArchive,
    /// A tar of an OCI image layout.
    OciArchive,
}

/// One image of a docker archive's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An image to save: how the user named it and what it is.
#[derive(Debug, Clone)]
pub struct SaveItem {
    /// The image.
    pub image: Image,
    /// Names to record (none for an image given by id).
    pub names: Vec<ImageRef>,
}

/// Writes `items` to `out` as an archive of `format`.
pub fn save(
    store: &ContentStore,
    items: &[SaveItem],
    format: ArchiveFormat,
    out: impl Write,
) -> Result<(), ArchiveError> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    match format {
        ArchiveFormat::DockerArchive => save_docker(store, items, &mut tar)?,
        ArchiveFormat::OciArchive => save_oci(store, items, &mut tar)?,
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err("finishing the archive"))?;
    Ok(())
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> Result<(), ArchiveError> {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(0);
    tar.append_data(&mut h, path, data)
        .map_err(io_err(format!("writing {path} to the archive")))
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> Result<(), ArchiveError> {
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mtime(0);
    tar.append_data(&mut h, path, io::empty())
        .map_err(io_err(format!("writing {path} to the archive")))
}

fn save_docker<W: Write>(
    store: &ContentStore,
    items: &[SaveItem],
    tar: &mut tar::Builder<W>,
) -> Result<(), ArchiveError> {
    let mut entries = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut written: std::collections::BTreeSet<String> = Default::default();
    for item in items {
        let img = &item.image;
        let config_name = format!("{}.json", img.id().hex());
        if written.insert(config_name.clone()) {
            let size = store.size(img.id())?;
            append(tar, &config_name, size, store.open_blob(img.id())?)?;
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in img.layers().iter().zip(img.diff_ids()) {
            let dir = diff_id.hex().to_owned();
            let name = format!("{dir}/layer.tar");
            layers.push(name.clone());
            if !written.insert(name.clone()) {
                continue;
            }
            append_dir(tar, &format!("{dir}/"))?;
            match media_kind(&layer.media_type) {
                MediaKind::Layer(Compression::None) => {
                    append(tar, &name, layer.size, store.open_blob(&layer.digest)?)?;
                }
                _ => {
                    // Docker archives hold uncompressed layers: decompress
                    // to a temporary file first, as tar needs the size.
                    let mut tmp = tempfile::tempfile_in(store.root().join("ingest"))
                        .map_err(io_err("creating a temporary file"))?;
                    let mut r = HashingReader::new(
                        decompressed(store.open_blob(&layer.digest)?)
                            .map_err(io_err(format!("decompressing {}", layer.digest)))?,
                        kontti_core::Algorithm::Sha256,
                    );
                    let size = io::copy(&mut r, &mut tmp)
                        .map_err(io_err(format!("decompressing {}", layer.digest)))?;
                    let (actual, _) = r.finish().map_err(io_err("hashing"))?;
                    if actual != *diff_id {
                        return Err(ArchiveError::DiffIdMismatch {
                            path: layer.digest.to_string(),
                            expected: diff_id.clone(),
                            actual,
                        });
                    }
                    tmp.seek(SeekFrom::Start(0)).map_err(io_err("rewinding"))?;
                    append(tar, &name, size, tmp)?;
                }
            }
        }
        let tags: Vec<String> = item
            .names
            .iter()
            .filter(|n| n.tag().is_some())
            .map(|n| n.familiar())
            .collect();
        for n in item.names.iter().filter(|n| n.tag().is_some()) {
            if let (Some(tag), Some(top)) = (n.tag(), img.diff_ids().last()) {
                repositories
                    .entry(n.familiar_name())
                    .or_default()
                    .insert(tag.to_owned(), top.hex().to_owned());
            }
        }
        entries.push(DockerManifestEntry {
            config: config_name,
            repo_tags: Some(tags),
            layers,
        });
    }
    let manifest = serde_json::to_vec(&entries).map_err(|e| ArchiveError::Format(e.to_string()))?;
    append(tar, "manifest.json", manifest.len() as u64, &manifest[..])?;
    let repos =
        serde_json::to_vec(&repositories).map_err(|e| ArchiveError::Format(e.to_string()))?;
    append(tar, "repositories", repos.len() as u64, &repos[..])?;
    Ok(())
}

fn save_oci<W: Write>(
    store: &ContentStore,
    items: &[SaveItem],
    tar: &mut tar::Builder<W>,
) -> Result<(), ArchiveError> {
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append(tar, "oci-layout", layout.len() as u64, &layout[..])?;
    append_dir(tar, "blobs/")?;
    append_dir(tar, "blobs/sha256/")?;
    let mut written: std::collections::BTreeSet<Digest> = Default::default();
    let mut index = crate::refs::empty_index();
    for item in items {
        let img = &item.image;
        let mut blobs = vec![img.manifest_descriptor.digest.clone(), img.id().clone()];
        blobs.extend(img.layers().iter().map(|l| l.digest.clone()));
        for d in blobs {
            if written.insert(d.clone()) {
                let path = format!("blobs/{}/{}", d.algorithm(), d.hex());
                append(tar, &path, store.size(&d)?, store.open_blob(&d)?)?;
            }
        }
        let names: Vec<Option<&ImageRef>> = if item.names.is_empty() {
            vec![None]
        } else {
            item.names.iter().map(Some).collect()
        };
        for n in names {
            let mut d = img.manifest_descriptor.clone();
            d.annotations.clear();
            d.platform = None;
            if let Some(n) = n {
                d.annotations
                    .insert(ANNOTATION_IMAGE_NAME.into(), n.to_string());
                d.annotations
                    .insert(ANNOTATION_REF_NAME.into(), n.to_string());
            }
            index.manifests.push(d);
        }
    }
    let data = serde_json::to_vec(&index).map_err(|e| ArchiveError::Format(e.to_string()))?;
    append(tar, "index.json", data.len() as u64, &data[..])?;
    Ok(())
}

/// A random-access view of an archive file: entry name → data range.
struct ArchiveFile {
    file: File,
    entries: HashMap<String, (u64, u64)>,
}

fn clean(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

impl ArchiveFile {
    fn open(mut file: File) -> Result<ArchiveFile, ArchiveError> {
        let mut entries = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        {
            file.seek(SeekFrom::Start(0))
                .map_err(io_err("rewinding the archive"))?;
            let plain = BufReader::new(&mut file);
            let mut archive = tar::Archive::new(plain);
            let bad = |e: io::Error| {
                ArchiveError::Format(format!(
                    "not a tar archive: {}",
                    crate::unpack::one_line(&e)
                ))
            };
            for entry in archive.entries_with_seek().map_err(bad)? {
                let entry = entry.map_err(bad)?;
                let name = clean(&entry.path().map_err(bad)?);
                match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        entries.insert(name, (entry.raw_file_position(), entry.size()));
                    }
                    tar::EntryType::Symlink | tar::EntryType::Link => {
                        if let Some(target) = entry.link_name().map_err(bad)? {
                            let target = if entry.header().entry_type() == tar::EntryType::Symlink {
                                let parent = Path::new(&name).parent().unwrap_or(Path::new(""));
                                clean(&parent.join(target))
                            } else {
                                clean(&target)
                            };
                            links.push((name, target));
                        }
                    }
                    _ => {}
                }
            }
        }
        for (name, target) in links {
            if let Some(r) = entries.get(&target).copied() {
                entries.insert(name, r);
            }
        }
        Ok(ArchiveFile { file, entries })
    }

    fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn reader(&self, name: &str) -> Result<(impl io::BufRead + '_, u64), ArchiveError> {
        let (pos, size) = *self
            .entries
            .get(&clean(Path::new(name)))
            .ok_or_else(|| ArchiveError::Missing(name.to_owned()))?;
        let mut f = &self.file;
        f.seek(SeekFrom::Start(pos))
            .map_err(io_err("seeking in the archive"))?;
        Ok((BufReader::with_capacity(1 << 16, f.take(size)), size))
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        let (r, size) = self.reader(name)?;
        if size > MAX_MANIFEST_SIZE {
            return Err(ArchiveError::Format(format!(
                "{name} is too large ({size} bytes)"
            )));
        }
        let mut buf = Vec::new();
        r.take(MAX_MANIFEST_SIZE)
            .read_to_end(&mut buf)
            .map_err(io_err(format!("reading {name}")))?;
        Ok(buf)
    }
}

/// What `load` stored.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Names that now point at loaded images.
    pub names: Vec<ImageRef>,
    /// Ids of loaded images that have no name.
    pub untagged: Vec<Digest>,
}

/// Loads a docker-archive or oci-archive from a seekable file.
pub fn load(store: &ContentStore, file: File) -> Result<LoadReport, ArchiveError> {
    let archive = ArchiveFile::open(file)?;
    let lease = store.lease("load")?;
    let result = if archive.has("manifest.json") {
        load_docker(store, &lease, &archive)
    } else if archive.has("index.json") {
        load_oci(store, &lease, &archive)
    } else {
        Err(ArchiveError::Format(
            "not an image archive: it has neither manifest.json (docker-archive) nor index.json (oci-archive)".into(),
        ))
    };
    if result.is_err() {
        // Blobs stored before the failure are referenced by nothing: remove
        // them now rather than at the next prune.
        drop(lease);
        if let Err(e) = store.gc() {
            tracing::warn!(error = %e, "cannot clean up after a failed load");
        }
    }
    result
}

fn load_docker(
    store: &ContentStore,
    lease: &Lease,
    archive: &ArchiveFile,
) -> Result<LoadReport, ArchiveError> {
    let data = archive.read_small("manifest.json")?;
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&data)
        .map_err(|e| ArchiveError::Format(format!("manifest.json: {e}")))?;
    // Validate names before storing anything.
    let mut names_per_entry = Vec::new();
    for e in &entries {
        let names = e
            .repo_tags
            .iter()
            .flatten()
            .map(|t| ImageRef::parse(t).map_err(ImageError::from))
            .collect::<Result<Vec<_>, _>>()?;
        names_per_entry.push(names);
    }
    let mut targets = Vec::new();
    for e in &entries {
        let config_raw = archive.read_small(&e.config)?;
        let config: ImageConfigFile = serde_json::from_slice(&config_raw)
            .map_err(|err| ArchiveError::Format(format!("config {}: {err}", e.config)))?;
        if config.rootfs.diff_ids.len() != e.layers.len() {
            return Err(ArchiveError::Format(format!(
                "{} lists {} layers but its config has {} diffIDs",
                e.config,
                e.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let config_digest = store.put(lease, &config_raw, None)?;
        let mut layers = Vec::new();
        for (path, diff_id) in e.layers.iter().zip(&config.rootfs.diff_ids) {
            layers.push(store_layer(store, lease, archive, path, diff_id)?);
        }
        let manifest = media::Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(media::OCI_CONFIG, config_digest, config_raw.len() as u64),
            layers,
            subject: None,
            annotations: Default::default(),
        };
        targets.push(put_manifest(store, lease, &manifest)?);
    }
    let mut report = LoadReport::default();
    for (target, names) in targets.iter().zip(names_per_entry) {
        if names.is_empty() {
            store.add_untagged(target)?;
            report.untagged.push(
                Image::from_descriptor(store, target.clone(), &media::PlatformSpec::host())?
                    .id()
                    .clone(),
            );
        }
        for n in names {
            store.set_ref(&n, target)?;
            report.names.push(n);
        }
    }
    Ok(report)
}

/// Stores one layer file of a docker archive, verifying its diffID. An
/// uncompressed layer is stored as is (its digest is its diffID); a
/// compressed one is stored compressed and its content hashed.
fn store_layer(
    store: &ContentStore,
    lease: &Lease,
    archive: &ArchiveFile,
    path: &str,
    diff_id: &Digest,
) -> Result<Descriptor, ArchiveError> {
    let (mut r, size) = archive.reader(path)?;
    let compression = detect_compression(&mut r).map_err(io_err(format!("reading {path}")))?;
    if compression == Compression::None {
        if !store.protect_if_present(lease, diff_id)? {
            let mut w = store.ingest(lease, Some(diff_id), Some(size))?;
            w.truncate()?;
            io::copy(&mut r, &mut w).map_err(io_err(format!("storing {path}")))?;
            w.commit().map_err(|e| match e {
                StoreError::DigestMismatch { actual, .. } => ArchiveError::DiffIdMismatch {
                    path: path.to_owned(),
                    expected: diff_id.clone(),
                    actual,
                },
                other => other.into(),
            })?;
        }
        return Ok(Descriptor::new(media::OCI_LAYER_TAR, diff_id.clone(), size));
    }
    let mut w = store.ingest(lease, None, Some(size))?;
    io::copy(&mut r, &mut w).map_err(io_err(format!("storing {path}")))?;
    let digest = w.commit()?;
    let (actual, _) = HashingReader::new(
        decompressed(store.open_blob(&digest)?).map_err(io_err(format!("decompressing {path}")))?,
        kontti_core::Algorithm::Sha256,
    )
    .finish()
    .map_err(io_err(format!("decompressing {path}")))?;
    if actual != *diff_id {
        return Err(ArchiveError::DiffIdMismatch {
            path: path.to_owned(),
            expected: diff_id.clone(),
            actual,
        });
    }
    let mt = match compression {
        Compression::Zstd => media::OCI_LAYER_ZSTD,
        _ => media::OCI_LAYER_GZIP,
    };
    Ok(Descriptor::new(mt, digest, size))
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm(), d.hex())
}

/// Copies a blob from the archive into the store, verifying digest and size.
fn copy_blob(
    store: &ContentStore,
    lease: &Lease,
    archive: &ArchiveFile,
    d: &Descriptor,
) -> Result<(), ArchiveError> {
    if store.protect_if_present(lease, &d.digest)? {
        return Ok(());
    }
    let (mut r, _) = archive.reader(&blob_path(&d.digest))?;
    let mut w = store.ingest(lease, Some(&d.digest), Some(d.size))?;
    w.truncate()?;
    io::copy(&mut r, &mut w).map_err(io_err(format!("storing {}", d.digest)))?;
    w.commit()?;
    Ok(())
}

/// Copies a manifest or index and everything it references that the
/// archive holds (an index may list platforms the archive left out).
fn copy_tree(
    store: &ContentStore,
    lease: &Lease,
    archive: &ArchiveFile,
    d: &Descriptor,
    depth: usize,
) -> Result<(), ArchiveError> {
    if depth > 4 {
        return Err(ArchiveError::Format("indexes nest too deeply".into()));
    }
    let data = archive.read_small(&blob_path(&d.digest))?;
    match parse_document(&d.media_type, &d.digest, &data)? {
        Document::Manifest(m) => {
            copy_blob(store, lease, archive, &m.config)?;
            for l in &m.layers {
                if !matches!(media_kind(&l.media_type), MediaKind::Layer(_)) {
                    return Err(media::MediaError::UnknownMediaType {
                        media_type: l.media_type.clone(),
                        what: "a layer",
                    }
                    .into());
                }
                copy_blob(store, lease, archive, l)?;
            }
        }
        Document::Index(i) => {
            for m in &i.manifests {
                if archive.has(&blob_path(&m.digest)) {
                    copy_tree(store, lease, archive, m, depth + 1)?;
                }
            }
        }
    }
    copy_blob(store, lease, archive, d)
}

fn load_oci(
    store: &ContentStore,
    lease: &Lease,
    archive: &ArchiveFile,
) -> Result<LoadReport, ArchiveError> {
    let data = archive.read_small("index.json")?;
    let index: Index = serde_json::from_slice(&data)
        .map_err(|e| ArchiveError::Format(format!("index.json: {e}")))?;
    let mut plan = Vec::new();
    for d in &index.manifests {
        let name = d
            .annotations
            .get(ANNOTATION_IMAGE_NAME)
            .or_else(|| d.annotations.get(ANNOTATION_REF_NAME))
            .map(|n| oci_name(n))
            .transpose()?;
        plan.push((d.clone(), name));
    }
    let mut report = LoadReport::default();
    for (d, _) in &plan {
        copy_tree(store, lease, archive, d, 0)?;
    }
    for (d, name) in plan {
        let mut target = d.clone();
        target.annotations.clear();
        match name {
            Some(n) => {
                store.set_ref(&n, &target)?;
                report.names.push(n);
            }
            None => {
                store.add_untagged(&target)?;
                let id = Image::from_descriptor(store, target, &media::PlatformSpec::host())
                    .map(|i| i.id().clone())
                    .unwrap_or(d.digest);
                report.untagged.push(id);
            }
        }
    }
    Ok(report)
}

/// The name recorded in a layout's annotations, parsed as a reference.
fn oci_name(n: &str) -> Result<ImageRef, ArchiveError> {
    Ok(ImageRef::parse(n).map_err(ImageError::from)?)
}
