//! Garbage collection of a registry's storage (`kontti registry
//! garbage-collect`), as distribution's `registry garbage-collect` does it:
//! mark every blob that a manifest of a repository reaches, sweep the rest,
//! and remove stale upload sessions.
//!
//! **Mark.** In every repository the roots are its manifests (with
//! `delete_untagged`, only its tagged manifests). From a root, marking
//! follows an index to its manifests, a manifest to its config and layers,
//! and keeps every manifest whose `subject` is kept (referrers: signatures,
//! SBOMs). Marked are the kept manifests' own blobs and everything they
//! reference, across all repositories. With `delete_untagged`, the manifests
//! that are not kept lose their link in the repository (and their entry in
//! the referrers lists).
//!
//! **Sweep.** Every blob of the content store that is not marked is removed,
//! with the repository links (`_layers`) that point at it; upload sessions
//! (`uploads/<id>`) older than `max_upload_age` go too, and so do abandoned
//! ingests of the content store.
//!
//! **Running server.** A server holds `registry.lock` in the storage
//! directory (shared) for as long as it runs; collection takes it
//! exclusively or refuses with [`GcError::InUse`], so that an upload in
//! progress, or a blob pushed just before its manifest, is never swept. A
//! server does not start while a collection runs. A manifest that cannot be
//! read stops the collection before anything is removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kontti_core::{Algorithm, Digest, ErrorKind};
use kontti_image::ContentStore;

use crate::media;

/// The file a running server holds (shared) and a collection exclusively.
pub const LOCK_FILE: &str = "registry.lock";

/// Why a collection failed. Nothing is removed when it fails before the
/// sweep (every case but `Io` during the sweep).
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The storage directory does not exist.
    #[error("registry storage {0} does not exist")]
    Missing(PathBuf),
    /// The directory is not a registry's storage.
    #[error("{path} is not a registry storage directory: {reason}")]
    NotStorage {
        /// The directory.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A registry server is running on the storage.
    #[error(
        "registry storage {0} is in use by a running registry; stop it before collecting garbage"
    )]
    InUse(PathBuf),
    /// A manifest cannot be read, so what it references is unknown.
    #[error("repository {repository}: manifest {digest}: {reason}; nothing was removed")]
    BadManifest {
        /// The repository.
        repository: String,
        /// The manifest.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl GcError {
    /// The kind of failure, for the exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GcError::Missing(_) => ErrorKind::NotFound,
            GcError::NotStorage { .. } | GcError::BadManifest { .. } => ErrorKind::Invalid,
            GcError::InUse(_) => ErrorKind::Conflict,
            GcError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                ErrorKind::Forbidden
            }
            GcError::Io { .. } => ErrorKind::Internal,
        }
    }

    fn io(op: &'static str, path: &Path, source: io::Error) -> GcError {
        GcError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// What to collect.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would be removed; remove nothing.
    pub dry_run: bool,
    /// Also delete manifests that no tag reaches (directly, through an
    /// index, or as a referrer of one).
    pub delete_untagged: bool,
    /// Upload sessions untouched for longer are removed.
    pub max_upload_age: Duration,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            dry_run: false,
            delete_untagged: false,
            max_upload_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a collection removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs that stay.
    pub marked: usize,
    /// Blobs removed.
    pub removed_blobs: Vec<Digest>,
    /// Their bytes.
    pub freed_bytes: u64,
    /// Untagged manifests deleted (repository, digest).
    pub removed_manifests: Vec<(String, Digest)>,
    /// Stale upload sessions and abandoned ingests removed.
    pub removed_uploads: usize,
}

/// A manifest of a repository and what it references.
struct ManifestRefs {
    /// Manifests (of an index).
    children: Vec<Digest>,
    /// Config and layers.
    blobs: Vec<Digest>,
    subject: Option<Digest>,
}

/// Collects garbage in the registry storage at `root`.
pub fn collect(root: &Path, opts: &GcOptions) -> Result<GcReport, GcError> {
    check_storage(root)?;
    let lock = lock_exclusive(root)?;
    let _span = tracing::info_span!("registry_gc", storage = %root.display()).entered();
    let store = ContentStore::open(root).map_err(|e| GcError::NotStorage {
        path: root.to_owned(),
        reason: e.to_string(),
    })?;
    let repos = repositories(root);
    let mut marked: BTreeSet<Digest> = BTreeSet::new();
    let mut deletions: Vec<(String, Digest)> = Vec::new();
    for repo in &repos {
        let manifests = read_manifests(root, &store, repo)?;
        let kept = kept_manifests(root, repo, &manifests, opts.delete_untagged);
        for (d, refs) in &manifests {
            if kept.contains(d) {
                marked.insert(d.clone());
                marked.extend(refs.blobs.iter().cloned());
                marked.extend(refs.children.iter().cloned());
            } else {
                deletions.push((repo.clone(), d.clone()));
            }
        }
    }
    let mut report = GcReport {
        marked: 0,
        ..GcReport::default()
    };
    let mut sweep: Vec<(Digest, u64)> = Vec::new();
    for (digest, size) in stored_blobs(root)? {
        if marked.contains(&digest) {
            report.marked += 1;
        } else {
            sweep.push((digest, size));
        }
    }
    for (repo, d) in &deletions {
        tracing::info!(repository = repo, digest = %d, "untagged manifest eligible for deletion");
        if !opts.dry_run {
            delete_manifest_link(root, repo, d)?;
        }
    }
    report.removed_manifests = deletions;
    for (digest, size) in sweep {
        tracing::info!(%digest, size, "blob eligible for deletion");
        if !opts.dry_run {
            for repo in &repos {
                remove_file(&link_path(root, repo, "_layers", &digest))?;
            }
            store.delete(&digest).map_err(|e| {
                GcError::io(
                    "remove blob",
                    &store.blob_path(&digest),
                    io::Error::other(e),
                )
            })?;
        }
        report.freed_bytes += size;
        report.removed_blobs.push(digest);
    }
    report.removed_uploads = stale_uploads(root, opts)?;
    if !opts.dry_run {
        report.removed_uploads += store
            .remove_abandoned_ingests()
            .map_err(|e| GcError::io("clean ingests in", root, io::Error::other(e)))?;
    }
    drop(lock);
    Ok(report)
}

fn check_storage(root: &Path) -> Result<(), GcError> {
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(GcError::NotStorage {
                path: root.to_owned(),
                reason: "not a directory".into(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(GcError::Missing(root.to_owned()));
        }
        Err(e) => return Err(GcError::io("read", root, e)),
    }
    for want in ["repositories", "blobs"] {
        if !root.join(want).is_dir() {
            return Err(GcError::NotStorage {
                path: root.to_owned(),
                reason: format!("it has no {want}/ directory"),
            });
        }
    }
    Ok(())
}

/// Takes the storage lock exclusively; a running server holds it shared.
fn lock_exclusive(root: &Path) -> Result<File, GcError> {
    let path = root.join(LOCK_FILE);
    let f = open_lock(&path).map_err(|e| GcError::io("open", &path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => Err(GcError::InUse(root.to_owned())),
        Err(TryLockError::Error(e)) => Err(GcError::io("lock", &path, e)),
    }
}

/// Opens (creating) the storage lock file.
pub(crate) fn open_lock(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Takes the storage lock shared for a server; fails while a collection runs.
pub(crate) fn lock_shared(root: &Path) -> io::Result<File> {
    let f = open_lock(&root.join(LOCK_FILE))?;
    match f.try_lock_shared() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            "a garbage collection is running on it",
        )),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Every repository (a directory holding `_manifests` or `_layers`).
fn repositories(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(root.join("repositories"), String::new(), 0usize)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        if depth > 16 {
            continue;
        }
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with('_') || n.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir())
            {
                continue;
            }
            let name = if prefix.is_empty() {
                n
            } else {
                format!("{prefix}/{n}")
            };
            let p = e.path();
            if p.join("_manifests").is_dir() || p.join("_layers").is_dir() {
                out.push(name.clone());
            }
            stack.push((p, name, depth + 1));
        }
    }
    out.sort();
    out
}

fn link_path(root: &Path, repo: &str, kind: &str, d: &Digest) -> PathBuf {
    root.join("repositories")
        .join(repo)
        .join(kind)
        .join(d.algorithm().as_str())
        .join(d.hex())
}

/// The digests of the link files in `repositories/<repo>/<kind>/<alg>/`.
fn links(root: &Path, repo: &str, kind: &str) -> Vec<(Digest, PathBuf)> {
    let mut out = Vec::new();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let dir = root
            .join("repositories")
            .join(repo)
            .join(kind)
            .join(alg.as_str());
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Ok(d) = Digest::new(alg, n) {
                out.push((d, e.path()));
            }
        }
    }
    out
}

/// Reads every manifest linked into `repo`; a manifest whose blob is gone
/// is skipped (it references nothing that can be kept).
fn read_manifests(
    root: &Path,
    store: &ContentStore,
    repo: &str,
) -> Result<BTreeMap<Digest, ManifestRefs>, GcError> {
    let mut out = BTreeMap::new();
    for (digest, link) in links(root, repo, "_manifests") {
        let bad = |reason: String| GcError::BadManifest {
            repository: repo.to_owned(),
            digest: digest.clone(),
            reason,
        };
        let media_type = fs::read_to_string(&link).map_err(|e| GcError::io("read", &link, e))?;
        let bytes = match fs::read(store.blob_path(&digest)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(repository = repo, %digest, "manifest blob missing");
                continue;
            }
            Err(e) => return Err(GcError::io("read", &store.blob_path(&digest), e)),
        };
        let doc: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let digest_of = |v: &serde_json::Value| -> Result<Digest, GcError> {
            let s = v["digest"]
                .as_str()
                .ok_or_else(|| bad("a descriptor has no digest".into()))?;
            Digest::parse(s).map_err(|e| bad(e.to_string()))
        };
        let mut refs = ManifestRefs {
            children: Vec::new(),
            blobs: Vec::new(),
            subject: None,
        };
        if media::is_index(media_type.trim()) || doc.get("manifests").is_some() {
            for m in doc["manifests"].as_array().into_iter().flatten() {
                refs.children.push(digest_of(m)?);
            }
        } else {
            if doc.get("config").is_some() {
                refs.blobs.push(digest_of(&doc["config"])?);
            }
            for l in doc["layers"].as_array().into_iter().flatten() {
                refs.blobs.push(digest_of(l)?);
            }
        }
        if doc.get("subject").is_some_and(|s| !s.is_null()) {
            refs.subject = Some(digest_of(&doc["subject"])?);
        }
        out.insert(digest, refs);
    }
    Ok(out)
}

/// The manifests of `repo` that stay: all of them, or (with
/// `delete_untagged`) what its tags reach through indexes and referrers.
fn kept_manifests(
    root: &Path,
    repo: &str,
    manifests: &BTreeMap<Digest, ManifestRefs>,
    delete_untagged: bool,
) -> BTreeSet<Digest> {
    if !delete_untagged {
        return manifests.keys().cloned().collect();
    }
    let mut kept = BTreeSet::new();
    let mut queue: Vec<Digest> = tagged(root, repo);
    loop {
        while let Some(d) = queue.pop() {
            if !kept.insert(d.clone()) {
                continue;
            }
            if let Some(refs) = manifests.get(&d) {
                queue.extend(refs.children.iter().cloned());
            }
        }
        // Referrers of what is kept stay with it.
        queue.extend(
            manifests
                .iter()
                .filter(|(d, r)| {
                    !kept.contains(*d) && r.subject.as_ref().is_some_and(|s| kept.contains(s))
                })
                .map(|(d, _)| d.clone()),
        );
        if queue.is_empty() {
            break;
        }
    }
    kept.retain(|d| manifests.contains_key(d));
    kept
}

/// The manifests the repository's tags point at.
fn tagged(root: &Path, repo: &str) -> Vec<Digest> {
    let dir = root.join("repositories").join(repo).join("_tags");
    let Ok(rd) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".tmp-"))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|t| Digest::parse(t.trim()).ok())
        .collect()
}

/// Removes an untagged manifest's link and its referrers entries.
fn delete_manifest_link(root: &Path, repo: &str, d: &Digest) -> Result<(), GcError> {
    let referrers = root.join("repositories").join(repo).join("_referrers");
    let entry = format!("{}-{}", d.algorithm(), d.hex());
    if let Ok(rd) = fs::read_dir(&referrers) {
        for e in rd.flatten() {
            remove_file(&e.path().join(&entry))?;
        }
    }
    remove_file(&link_path(root, repo, "_manifests", d))
}

fn remove_file(p: &Path) -> Result<(), GcError> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(GcError::io("remove", p, e)),
    }
}

/// Every blob in the content store, with its size.
fn stored_blobs(root: &Path) -> Result<Vec<(Digest, u64)>, GcError> {
    let mut out = Vec::new();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let dir = root.join("blobs").join(alg.as_str());
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(GcError::io("read directory", &dir, e)),
        };
        for e in rd {
            let e = e.map_err(|e| GcError::io("read directory", &dir, e))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if let Ok(d) = Digest::new(alg, n) {
                out.push((d, e.metadata().map_or(0, |m| m.len())));
            }
        }
    }
    Ok(out)
}

/// Removes upload sessions older than the limit (or counts them, in a dry
/// run); the age is that of the upload's data, which every chunk touches.
fn stale_uploads(root: &Path, opts: &GcOptions) -> Result<usize, GcError> {
    let dir = root.join("uploads");
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(GcError::io("read directory", &dir, e)),
    };
    let now = SystemTime::now();
    let mut n = 0;
    for e in rd.flatten() {
        let p = e.path();
        let touched = fs::metadata(p.join("data"))
            .or_else(|_| fs::metadata(&p))
            .and_then(|m| m.modified())
            .unwrap_or(now);
        let age = now.duration_since(touched).unwrap_or_default();
        if age <= opts.max_upload_age {
            continue;
        }
        tracing::info!(upload = %p.display(), age_secs = age.as_secs(), "stale upload");
        if !opts.dry_run {
            match fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(GcError::io("remove", &p, e)),
            }
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kontti_image::hash::sha256;
    use serde_json::json;

    /// A storage directory with one repository, written by hand.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            ContentStore::open(dir.path()).unwrap();
            fs::create_dir_all(dir.path().join("repositories/r")).unwrap();
            fs::create_dir_all(dir.path().join("uploads")).unwrap();
            Fixture { dir }
        }

        fn root(&self) -> &Path {
            self.dir.path()
        }

        fn blob(&self, data: &[u8]) -> Digest {
            let d = sha256(data);
            fs::write(self.root().join("blobs/sha256").join(d.hex()), data).unwrap();
            d
        }

        fn manifest(&self, media_type: &str, doc: serde_json::Value) -> Digest {
            let d = self.blob(doc.to_string().as_bytes());
            let link = link_path(self.root(), "r", "_manifests", &d);
            fs::create_dir_all(link.parent().unwrap()).unwrap();
            fs::write(link, media_type).unwrap();
            d
        }

        fn image(&self, tag: &str) -> (Digest, Vec<Digest>) {
            let config = self.blob(format!("config {tag}").as_bytes());
            let layer = self.blob(format!("layer {tag}").as_bytes());
            let m = self.manifest(
                media::OCI_MANIFEST,
                json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 1},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 1}]}),
            );
            (m, vec![config, layer])
        }

        fn tag(&self, tag: &str, d: &Digest) {
            let p = self.root().join("repositories/r/_tags").join(tag);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, d.to_string()).unwrap();
        }
    }

    #[test]
    fn delete_untagged_keeps_index_children_and_referrers_of_what_is_tagged() {
        let f = Fixture::new();
        let (child, child_blobs) = f.image("child");
        let index = f.manifest(
            media::OCI_INDEX,
            json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX,
                "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": child, "size": 1}]}),
        );
        f.tag("v1", &index);
        // A signature of the child: untagged, but its subject stays.
        let sig_config = f.blob(b"sig config");
        let sig = f.manifest(
            media::OCI_MANIFEST,
            json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.example.sig", "digest": sig_config, "size": 1},
                "layers": [],
                "subject": {"mediaType": media::OCI_MANIFEST, "digest": child, "size": 1}}),
        );
        let (orphan, orphan_blobs) = f.image("orphan");
        let stray = f.blob(b"pushed, never referenced");

        let opts = GcOptions {
            delete_untagged: true,
            dry_run: true,
            ..GcOptions::default()
        };
        let report = collect(f.root(), &opts).unwrap();
        assert_eq!(
            report.removed_manifests,
            vec![("r".to_owned(), orphan.clone())]
        );
        let mut expected: Vec<Digest> = orphan_blobs.clone();
        expected.extend([orphan.clone(), stray.clone()]);
        expected.sort();
        let mut removed = report.removed_blobs.clone();
        removed.sort();
        assert_eq!(removed, expected);
        assert!(f.root().join("blobs/sha256").join(orphan.hex()).exists());

        let report = collect(
            f.root(),
            &GcOptions {
                dry_run: false,
                ..opts
            },
        )
        .unwrap();
        assert_eq!(report.marked, 6);
        for d in [&index, &child, &sig, &sig_config]
            .into_iter()
            .chain(&child_blobs)
        {
            assert!(f.root().join("blobs/sha256").join(d.hex()).exists(), "{d}");
        }
        for d in orphan_blobs.iter().chain([&orphan, &stray]) {
            assert!(!f.root().join("blobs/sha256").join(d.hex()).exists(), "{d}");
        }
        assert!(!link_path(f.root(), "r", "_manifests", &orphan).exists());
    }

    #[test]
    fn without_delete_untagged_every_manifest_is_a_root() {
        let f = Fixture::new();
        let (m, blobs) = f.image("untagged");
        let report = collect(f.root(), &GcOptions::default()).unwrap();
        assert!(report.removed_blobs.is_empty(), "{report:?}");
        assert_eq!(report.marked, 1 + blobs.len());
        assert!(link_path(f.root(), "r", "_manifests", &m).exists());
    }

    #[test]
    fn an_unreadable_manifest_stops_before_anything_is_removed() {
        let f = Fixture::new();
        let stray = f.blob(b"stray");
        let bad = f.blob(b"not json");
        let link = link_path(f.root(), "r", "_manifests", &bad);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        fs::write(link, media::OCI_MANIFEST).unwrap();
        let err = collect(f.root(), &GcOptions::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.to_string().contains("nothing was removed"), "{err}");
        assert!(f.root().join("blobs/sha256").join(stray.hex()).exists());
    }
}
