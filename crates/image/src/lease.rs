//! Leases: what an in-progress pull, build or import holds so that garbage
//! collection in any process leaves its content alone.
//!
//! A lease is a file `leases/<name>` on which its process holds an exclusive
//! `flock` for the lease's lifetime, listing (one per line) the digests it
//! protects and, as `snapshot <key>` lines, the snapshots it protects.
//! Garbage collection treats every locked lease file as a root and removes
//! unlocked ones: the lock dies with the process, so a killed pull leaves no
//! lease behind that protects content forever.
//!
//! Snapshot pruning ([`crate::local::prune_snapshots`]) keeps every snapshot
//! a live lease names, and with it the snapshot's parent chain (a parent is
//! never removed while a child exists). It runs with `locks/gc.lock` held
//! exclusively, and [`ContentStore::protect_snapshot`] writes its line with
//! the lock held shared: once `protect_snapshot` returns, either the
//! snapshot exists and no prune will remove it, or it is gone and the caller
//! recreates it (unpacking again) under the protection it already holds.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use kontti_core::Digest;
use rustix::fs::{FlockOperation, flock};

use crate::hash::chain_ids;
use crate::image::Image;
use crate::store::{ContentStore, Result, StoreError, unique_name};

/// A held lease. Dropping it releases the protection.
#[derive(Debug)]
pub struct Lease {
    file: File,
    path: PathBuf,
}

impl Lease {
    /// The lease file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Protects `digest` (and, for a manifest or index, what it references)
    /// until the lease is dropped. Protect a digest before writing it or
    /// relying on its presence.
    pub fn protect(&self, digest: &Digest) -> Result<()> {
        Lease::protect_in(&self.file, &self.path, digest)
    }

    pub(crate) fn protect_in(file: &File, path: &Path, digest: &Digest) -> Result<()> {
        let mut f = file;
        f.write_all(format!("{digest}\n").as_bytes())
            .map_err(|e| StoreError::io("write lease", path, e))
    }

    pub(crate) fn file_clone(&self) -> Result<File> {
        self.file
            .try_clone()
            .map_err(|e| StoreError::io("duplicate lease", &self.path, e))
    }
}

/// What the live leases protect.
#[derive(Debug, Default)]
pub(crate) struct LeaseRoots {
    /// Blobs (and, for manifests and indexes, what they reference).
    pub digests: Vec<Digest>,
    /// Snapshot keys (and their parent chains).
    pub snapshots: BTreeSet<String>,
}

/// The prefix of a lease line naming a snapshot.
const SNAPSHOT_LINE: &str = "snapshot ";

impl Drop for Lease {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove lease");
        }
    }
}

impl ContentStore {
    /// Takes a new lease; `purpose` (e.g. `pull`, `import`) is part of its
    /// file name for humans.
    pub fn lease(&self, purpose: &str) -> Result<Lease> {
        let purpose: String = purpose
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(32)
            .collect();
        let dir = self.root().join("leases");
        for _ in 0..3 {
            let name = unique_name(&purpose);
            let tmp = dir.join(format!(".{name}"));
            let path = dir.join(&name);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| StoreError::io("create lease", &tmp, e))?;
            flock(&file, FlockOperation::LockExclusive)
                .map_err(|e| StoreError::io("lock lease", &tmp, e.into()))?;
            // Garbage collection removes unlocked lease files; if it took ours
            // before we locked it, the rename fails and we try again.
            match fs::rename(&tmp, &path) {
                Ok(()) => return Ok(Lease { file, path }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("create lease", &path, e)),
            }
        }
        Err(StoreError::BadLayout {
            path: dir,
            reason: "cannot create a lease: lease files keep disappearing".into(),
        })
    }

    /// Adds snapshot `key` (and so its parent chain) to `lease`, in one
    /// step that snapshot pruning cannot interleave with: afterwards a prune
    /// leaves the snapshot alone if it exists now. Protect a snapshot before
    /// checking that it exists, building on it or committing it.
    pub fn protect_snapshot(&self, lease: &Lease, key: &str) -> Result<()> {
        if key.is_empty() || key.contains(['\n', '\r', '\0']) {
            return Err(StoreError::BadLayout {
                path: lease.path.clone(),
                reason: format!("snapshot key {key:?} cannot be leased"),
            });
        }
        let _g = self.lock_gc_shared()?;
        let mut f = &lease.file;
        f.write_all(format!("{SNAPSHOT_LINE}{key}\n").as_bytes())
            .map_err(|e| StoreError::io("write lease", &lease.path, e))
    }

    /// Adds an image to `lease`: its manifest (and so its config and layer
    /// blobs) and the snapshot of every layer (chain id). Call it before
    /// unpacking the image or building on its layers, and keep the lease
    /// until what is built on them exists (a container's snapshot, a name).
    pub fn protect_image(&self, lease: &Lease, image: &Image) -> Result<()> {
        self.protect_if_present(lease, &image.target.digest)?;
        self.protect_if_present(lease, &image.manifest_descriptor.digest)?;
        self.protect_layer_snapshots(lease, image.diff_ids())
    }

    /// Adds the snapshots of a layer stack (given by its diffIDs, base
    /// first) to `lease`, whether they are unpacked yet or not.
    pub fn protect_layer_snapshots(&self, lease: &Lease, diff_ids: &[Digest]) -> Result<()> {
        for chain_id in chain_ids(diff_ids) {
            self.protect_snapshot(lease, &chain_id.to_string())?;
        }
        Ok(())
    }

    /// The snapshot keys that live leases protect. Call with the gc lock
    /// held (exclusively, for a prune that acts on the answer).
    pub(crate) fn leased_snapshots(&self) -> Result<BTreeSet<String>> {
        Ok(self.live_leases()?.snapshots)
    }

    /// The digests protected by leases that live processes hold. Removes the
    /// lease files of dead processes. Call with the gc lock held.
    pub(crate) fn live_lease_digests(&self) -> Result<Vec<Digest>> {
        Ok(self.live_leases()?.digests)
    }

    /// What leases that live processes hold protect. Removes the lease files
    /// of dead processes.
    pub(crate) fn live_leases(&self) -> Result<LeaseRoots> {
        let dir = self.root().join("leases");
        let rd = fs::read_dir(&dir).map_err(|e| StoreError::io("read directory", &dir, e))?;
        let mut out = LeaseRoots::default();
        for entry in rd {
            let entry = entry.map_err(|e| StoreError::io("read directory", &dir, e))?;
            let path = entry.path();
            let mut f = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("open lease", &path, e)),
            };
            match flock(&f, FlockOperation::NonBlockingLockShared) {
                Ok(()) => {
                    // Nobody holds it: the process is gone.
                    tracing::debug!(path = %path.display(), "removing stale lease");
                    let _ = fs::remove_file(&path);
                    continue;
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {}
                Err(e) => return Err(StoreError::io("lock lease", &path, e.into())),
            }
            let mut text = String::new();
            f.read_to_string(&mut text)
                .map_err(|e| StoreError::io("read lease", &path, e))?;
            for line in text.lines() {
                match line.strip_prefix(SNAPSHOT_LINE) {
                    Some(key) => {
                        out.snapshots.insert(key.to_owned());
                    }
                    None => out.digests.extend(Digest::parse(line.trim()).ok()),
                }
            }
        }
        Ok(out)
    }
}
