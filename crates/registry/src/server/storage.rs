//! The registry's on-disk state: blobs in a shared content store (by digest),
//! and per-repository metadata of the registry's own: which blobs and
//! manifests a repository holds (link files), its tags, the referrers of each
//! subject, and staged uploads.
//!
//! Layout under the storage root:
//! ```text
//! repositories/<name>/_layers/<alg>/<hex>          empty: blob linked into the repository
//! repositories/<name>/_manifests/<alg>/<hex>       the manifest's media type
//! repositories/<name>/_tags/<tag>                  the tagged manifest's digest
//! repositories/<name>/_referrers/<alg>-<hex>/<alg>-<hex>   a referrer's descriptor (JSON)
//! uploads/<id>/data, uploads/<id>/repository        staged uploads
//! registry.lock                                     held shared by a running server
//! ```
//! Every metadata write is a temporary file renamed into place, so a reader
//! sees the old state or the new one. An upload becomes visible only after
//! its digest is verified and the blob is committed to the content store.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kontti_core::{Algorithm, Digest};

use super::error::ApiError;
use crate::blobs::BlobStore;
use kontti_image::hash::Hasher;

/// State of an upload in progress.
struct UploadState {
    offset: u64,
    hasher: Hasher,
}

/// The registry's storage.
pub struct Storage {
    root: PathBuf,
    blobs: Arc<dyn BlobStore>,
    uploads: Mutex<HashMap<String, UploadState>>,
    /// `registry.lock`, held shared while the storage is open, so that a
    /// garbage collection refuses to run under a live server.
    _lock: fs::File,
}

/// A stored manifest: its bytes and media type.
pub struct StoredManifest {
    /// The digest.
    pub digest: Digest,
    /// The media type it was pushed with.
    pub media_type: String,
    /// The raw bytes, exactly as pushed.
    pub bytes: Vec<u8>,
}

fn digest_dir(d: &Digest) -> String {
    format!("{}-{}", d.algorithm(), d.hex())
}

/// Writes `data` to `path` atomically (temporary file, fsync, rename).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent"))?;
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(data)?;
    tmp.1.sync_all()?;
    fs::rename(&tmp.0, path)?;
    Ok(())
}

fn tempfile_in(dir: &Path) -> io::Result<(PathBuf, fs::File)> {
    for _ in 0..16 {
        let p = dir.join(format!(".tmp-{}", random_id()));
        match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot create a temporary file"))
}

/// A random 128-bit id in hex (upload ids, temporary names).
pub(crate) fn random_id() -> String {
    let mut b = [0u8; 16];
    let filled = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if filled.is_err() {
        // Fall back on time and pid: unique enough for names that are also
        // created with create_new.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (t ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    hex::encode(b)
}

impl Storage {
    /// Opens (creating) storage at `root` with blobs in `blobs`. Fails while
    /// a garbage collection runs on it ([`super::gc`]).
    pub fn open(root: &Path, blobs: Arc<dyn BlobStore>) -> io::Result<Storage> {
        fs::create_dir_all(root.join("repositories"))?;
        fs::create_dir_all(root.join("uploads"))?;
        let lock = super::gc::lock_shared(root)?;
        Ok(Storage {
            root: root.to_owned(),
            blobs,
            uploads: Mutex::new(HashMap::new()),
            _lock: lock,
        })
    }

    fn repo(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }

    fn layer_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo(name)
            .join("_layers")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    fn manifest_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo(name)
            .join("_manifests")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    /// Whether the repository has any manifest or blob.
    pub fn repo_exists(&self, name: &str) -> bool {
        self.repo(name).join("_manifests").is_dir() || self.repo(name).join("_layers").is_dir()
    }

    /// The size and path of a blob linked into `name`.
    pub fn blob(&self, name: &str, d: &Digest) -> Result<(u64, PathBuf), ApiError> {
        let linked = self.layer_link(name, d).exists() || self.manifest_link(name, d).exists();
        if !linked {
            return Err(ApiError::BlobUnknown(d.to_string()));
        }
        match self.blobs.blob_size(d)? {
            Some(size) => Ok((size, self.blobs.blob_path(d))),
            None => Err(ApiError::BlobUnknown(d.to_string())),
        }
    }

    /// Links an existing blob of `from` into `name` (a cross-repository mount).
    /// Returns false when `from` does not have it.
    pub fn mount(&self, name: &str, from: &str, d: &Digest) -> Result<bool, ApiError> {
        if self.blob(from, d).is_err() {
            return Ok(false);
        }
        write_atomic(&self.layer_link(name, d), b"")?;
        Ok(true)
    }

    /// Unlinks a blob from a repository (the content store keeps it until
    /// garbage collection).
    pub fn delete_blob(&self, name: &str, d: &Digest) -> Result<(), ApiError> {
        match fs::remove_file(self.layer_link(name, d)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ApiError::BlobUnknown(d.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Starts an upload into `name`; returns its id.
    pub fn start_upload(&self, name: &str) -> Result<String, ApiError> {
        let id = random_id();
        let dir = self.root.join("uploads").join(&id);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("data"), b"")?;
        fs::write(dir.join("repository"), name)?;
        self.lock_uploads()?.insert(
            id.clone(),
            UploadState {
                offset: 0,
                hasher: Hasher::new(Algorithm::Sha256),
            },
        );
        Ok(id)
    }

    fn lock_uploads(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<String, UploadState>>, ApiError> {
        self.uploads
            .lock()
            .map_err(|_| ApiError::Internal("upload table poisoned".into()))
    }

    fn upload_dir(&self, name: &str, id: &str) -> Result<PathBuf, ApiError> {
        let valid = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let dir = self.root.join("uploads").join(id);
        if !valid {
            return Err(ApiError::BlobUploadUnknown(id.to_owned()));
        }
        match fs::read_to_string(dir.join("repository")) {
            Ok(repo) if repo == name => Ok(dir),
            _ => Err(ApiError::BlobUploadUnknown(id.to_owned())),
        }
    }

    /// The number of bytes an upload holds.
    pub fn upload_offset(&self, name: &str, id: &str) -> Result<u64, ApiError> {
        let dir = self.upload_dir(name, id)?;
        Ok(fs::metadata(dir.join("data"))?.len())
    }

    /// Appends `chunk` to an upload, which must hold exactly `start` bytes
    /// when `start` is given. Returns the new size.
    pub fn append(
        &self,
        name: &str,
        id: &str,
        start: Option<u64>,
        chunk: &[u8],
    ) -> Result<u64, ApiError> {
        let dir = self.upload_dir(name, id)?;
        let mut f = fs::OpenOptions::new().append(true).open(dir.join("data"))?;
        let len = f.metadata()?.len();
        if let Some(start) = start
            && start != len
        {
            return Err(ApiError::RangeInvalid(format!(
                "chunk starts at {start} but the upload holds {len} bytes"
            )));
        }
        f.write_all(chunk)?;
        let mut uploads = self.lock_uploads()?;
        if let Some(st) = uploads.get_mut(id)
            && st.offset == len
        {
            st.hasher.update(chunk);
            st.offset += chunk.len() as u64;
        }
        Ok(len + chunk.len() as u64)
    }

    /// Finishes an upload: verifies that its content has digest `d`, commits
    /// the blob to the content store and links it into `name`.
    pub fn finish_upload(&self, name: &str, id: &str, d: &Digest) -> Result<(), ApiError> {
        let dir = self.upload_dir(name, id)?;
        let data = dir.join("data");
        let f = fs::File::open(&data)?;
        let len = f.metadata()?.len();
        let state = self.lock_uploads()?.remove(id);
        let actual = match state {
            Some(st) if st.offset == len && d.algorithm() == Algorithm::Sha256 => {
                st.hasher.finish()
            }
            _ => hash_file(f, d.algorithm())?,
        };
        if &actual != d {
            let _ = fs::remove_dir_all(&dir);
            return Err(ApiError::DigestInvalid(format!(
                "upload has digest {actual}, not {d}"
            )));
        }
        let mut sink = self.blobs.sink(d, len)?;
        sink.truncate()?;
        io::copy(&mut fs::File::open(&data)?, &mut sink)?;
        sink.commit()?;
        write_atomic(&self.layer_link(name, d), b"")?;
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }

    /// Cancels an upload.
    pub fn cancel_upload(&self, name: &str, id: &str) -> Result<(), ApiError> {
        let dir = self.upload_dir(name, id)?;
        self.lock_uploads()?.remove(id);
        fs::remove_dir_all(dir)?;
        Ok(())
    }

    /// Resolves a tag or digest to a stored manifest.
    pub fn manifest(&self, name: &str, reference: &str) -> Result<StoredManifest, ApiError> {
        let digest = self.resolve(name, reference)?;
        let media_type = fs::read_to_string(self.manifest_link(name, &digest))
            .map_err(|_| ApiError::ManifestUnknown(reference.to_owned()))?;
        let bytes = fs::read(self.blobs.blob_path(&digest))
            .map_err(|_| ApiError::ManifestUnknown(reference.to_owned()))?;
        Ok(StoredManifest {
            digest,
            media_type,
            bytes,
        })
    }

    fn resolve(&self, name: &str, reference: &str) -> Result<Digest, ApiError> {
        if reference.contains(':') {
            return Digest::parse(reference).map_err(|e| ApiError::DigestInvalid(e.to_string()));
        }
        if !super::route::valid_tag(reference) {
            return Err(ApiError::ManifestInvalid(format!(
                "invalid tag {reference:?}"
            )));
        }
        let text = fs::read_to_string(self.repo(name).join("_tags").join(reference))
            .map_err(|_| ApiError::ManifestUnknown(format!("{name}:{reference}")))?;
        Digest::parse(text.trim()).map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Whether a blob or manifest `d` is available to `name`.
    pub fn has_content(&self, name: &str, d: &Digest) -> Result<bool, ApiError> {
        let linked = self.layer_link(name, d).exists() || self.manifest_link(name, d).exists();
        Ok(linked && self.blobs.blob_size(d)?.is_some())
    }

    /// Stores a manifest (already validated) under its digest and, when
    /// `tag` is given, tags it; records it as a referrer of `subject`.
    pub fn put_manifest(
        &self,
        name: &str,
        tag: Option<&str>,
        m: &StoredManifest,
        referrer: Option<(&Digest, serde_json::Value)>,
    ) -> Result<(), ApiError> {
        if self.blobs.blob_size(&m.digest)?.is_none() {
            let mut sink = self.blobs.sink(&m.digest, m.bytes.len() as u64)?;
            sink.truncate()?;
            sink.write_all(&m.bytes)?;
            sink.commit()?;
        }
        write_atomic(
            &self.manifest_link(name, &m.digest),
            m.media_type.as_bytes(),
        )?;
        if let Some((subject, descriptor)) = referrer {
            let path = self
                .repo(name)
                .join("_referrers")
                .join(digest_dir(subject))
                .join(digest_dir(&m.digest));
            write_atomic(&path, descriptor.to_string().as_bytes())?;
        }
        if let Some(tag) = tag {
            write_atomic(
                &self.repo(name).join("_tags").join(tag),
                m.digest.to_string().as_bytes(),
            )?;
        }
        Ok(())
    }

    /// Deletes a manifest by digest (and every tag pointing at it), or a tag.
    pub fn delete_manifest(&self, name: &str, reference: &str) -> Result<(), ApiError> {
        let tags_dir = self.repo(name).join("_tags");
        if !reference.contains(':') {
            self.resolve(name, reference)?;
            fs::remove_file(tags_dir.join(reference))?;
            return Ok(());
        }
        let d = Digest::parse(reference).map_err(|e| ApiError::DigestInvalid(e.to_string()))?;
        let link = self.manifest_link(name, &d);
        if !link.exists() {
            return Err(ApiError::ManifestUnknown(reference.to_owned()));
        }
        for tag in self.tags(name).unwrap_or_default() {
            if let Ok(text) = fs::read_to_string(tags_dir.join(&tag))
                && text.trim() == reference
            {
                fs::remove_file(tags_dir.join(&tag))?;
            }
        }
        // Drop its entry in any subject's referrers list.
        if let Ok(rd) = fs::read_dir(self.repo(name).join("_referrers")) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path().join(digest_dir(&d)));
            }
        }
        fs::remove_file(link)?;
        Ok(())
    }

    /// The repository's tags, sorted.
    pub fn tags(&self, name: &str) -> Result<Vec<String>, ApiError> {
        if !self.repo_exists(name) {
            return Err(ApiError::NameUnknown(name.to_owned()));
        }
        let mut tags = BTreeSet::new();
        if let Ok(rd) = fs::read_dir(self.repo(name).join("_tags")) {
            for e in rd.flatten() {
                let t = e.file_name().to_string_lossy().into_owned();
                if !t.starts_with(".tmp-") {
                    tags.insert(t);
                }
            }
        }
        Ok(tags.into_iter().collect())
    }

    /// Every repository holding at least one manifest, sorted.
    pub fn catalog(&self) -> Result<Vec<String>, ApiError> {
        let mut out = Vec::new();
        walk_repos(&self.root.join("repositories"), "", &mut out, 0);
        out.sort();
        Ok(out)
    }

    /// The descriptors of manifests whose subject is `d`.
    pub fn referrers(&self, name: &str, d: &Digest) -> Result<Vec<serde_json::Value>, ApiError> {
        let mut out = Vec::new();
        let dir = self.repo(name).join("_referrers").join(digest_dir(d));
        if let Ok(rd) = fs::read_dir(dir) {
            let mut paths: Vec<_> = rd.flatten().map(|e| e.path()).collect();
            paths.sort();
            for p in paths {
                if p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
                {
                    continue;
                }
                if let Ok(text) = fs::read(&p)
                    && let Ok(v) = serde_json::from_slice(&text)
                {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }
}

fn walk_repos(dir: &Path, prefix: &str, out: &mut Vec<String>, depth: usize) {
    if depth > 16 {
        return;
    }
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with('_') || n.starts_with('.') || !e.path().is_dir() {
            continue;
        }
        let name = if prefix.is_empty() {
            n.clone()
        } else {
            format!("{prefix}/{n}")
        };
        if e.path().join("_manifests").is_dir() {
            out.push(name.clone());
        }
        walk_repos(&e.path(), &name, out, depth + 1);
    }
}

/// Hashes a whole file.
pub(crate) fn hash_file(mut f: fs::File, alg: Algorithm) -> io::Result<Digest> {
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}
