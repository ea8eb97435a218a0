//! Garbage collection of the content store: mark from the index and live
//! leases, sweep the rest.
//!
//! Roots are every entry of `index.json` and every digest a live lease
//! protects. Marking follows references: an index marks its manifests, a
//! manifest its config and layers (and subject). A blob is removed when
//! nothing marks it — its reference count is zero. Ingests that no process
//! holds are removed too. The whole pass holds `locks/gc.lock` exclusively,
//! while commits and index updates hold it shared, so a blob committed under
//! a lease is never swept between its rename and its protection.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File};
use std::io;

use kontti_core::{Algorithm, Digest};
use rustix::fs::{FlockOperation, flock};

use crate::media::{Document, MAX_MANIFEST_SIZE, MediaKind, media_kind, parse_document};
use crate::store::{ContentStore, Result, StoreError};

/// What a garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub removed: Vec<Digest>,
    /// Bytes freed by removing blobs.
    pub freed_bytes: u64,
    /// Abandoned ingests removed.
    pub removed_ingests: usize,
    /// Blobs kept.
    pub kept: usize,
}

impl ContentStore {
    /// Every digest reachable from the index and from live leases.
    pub fn reachable(&self) -> Result<BTreeSet<Digest>> {
        let mut queue: VecDeque<(Digest, Option<String>)> = VecDeque::new();
        for d in self.read_index()?.manifests {
            queue.push_back((d.digest, Some(d.media_type)));
        }
        for d in self.live_lease_digests()? {
            queue.push_back((d, None));
        }
        let mut marked = BTreeSet::new();
        while let Some((digest, media_type)) = queue.pop_front() {
            if !marked.insert(digest.clone()) {
                continue;
            }
            // Only manifests and indexes have children. A lease root's media
            // type is unknown: sniff small JSON blobs.
            let sniff = match &media_type {
                Some(mt) => matches!(media_kind(mt), MediaKind::Manifest | MediaKind::Index),
                None => self.size(&digest).is_ok_and(|s| s <= MAX_MANIFEST_SIZE),
            };
            if !sniff {
                continue;
            }
            let Ok(data) = self.read_blob(&digest, MAX_MANIFEST_SIZE) else {
                continue;
            };
            if media_type.is_none() && data.first() != Some(&b'{') {
                continue;
            }
            let doc = parse_document(media_type.as_deref().unwrap_or(""), &digest, &data);
            match doc {
                Ok(Document::Index(i)) => {
                    for m in i.manifests {
                        queue.push_back((m.digest, Some(m.media_type)));
                    }
                    if let Some(s) = i.subject {
                        queue.push_back((s.digest, Some(s.media_type)));
                    }
                }
                Ok(Document::Manifest(m)) => {
                    queue.push_back((m.config.digest, Some(m.config.media_type)));
                    for l in m.layers {
                        queue.push_back((l.digest, Some(l.media_type)));
                    }
                    if let Some(s) = m.subject {
                        queue.push_back((s.digest, Some(s.media_type)));
                    }
                }
                Err(_) => {}
            }
        }
        Ok(marked)
    }

    /// Removes unreferenced blobs and abandoned ingests.
    pub fn gc(&self) -> Result<GcReport> {
        let _g = self.lock_gc_exclusive()?;
        let marked = self.reachable()?;
        let mut report = GcReport::default();
        for algo in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root().join("blobs").join(algo.as_str());
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("read directory", &dir, e)),
            };
            for entry in rd {
                let entry = entry.map_err(|e| StoreError::io("read directory", &dir, e))?;
                let name = entry.file_name();
                let Ok(digest) = Digest::new(algo, name.to_string_lossy().into_owned()) else {
                    continue;
                };
                if marked.contains(&digest) {
                    report.kept += 1;
                    continue;
                }
                let size = entry.metadata().map_or(0, |m| m.len());
                self.delete(&digest)?;
                tracing::debug!(%digest, size, "removed unreferenced blob");
                report.freed_bytes += size;
                report.removed.push(digest);
            }
        }
        report.removed_ingests = self.remove_abandoned_ingests()?;
        Ok(report)
    }

    /// Removes ingests that no process is writing (left by killed writers);
    /// returns how many.
    pub fn remove_abandoned_ingests(&self) -> Result<usize> {
        let dir = self.root().join("ingest");
        let rd = fs::read_dir(&dir).map_err(|e| StoreError::io("read directory", &dir, e))?;
        let mut n = 0;
        for entry in rd {
            let entry = entry.map_err(|e| StoreError::io("read directory", &dir, e))?;
            let path = entry.path();
            let lock_path = path.join("lock");
            let lock = match File::open(&lock_path) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(StoreError::io("open", &lock_path, e)),
            };
            if let Some(l) = &lock {
                match flock(l, FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::WOULDBLOCK) => continue,
                    Err(e) => return Err(StoreError::io("lock", &lock_path, e.into())),
                }
            }
            match fs::remove_dir_all(&path) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &path, e)),
            }
        }
        Ok(n)
    }
}
