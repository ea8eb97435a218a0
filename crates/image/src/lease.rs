//! Leases: what an in-progress pull, build or import holds so that garbage
//! collection in any process leaves its content alone.
//!
//! A lease is a file `leases/<name>` on which its process holds an exclusive
//! `flock` for the lease's lifetime, listing (one per line) the digests it
//! protects. Garbage collection treats every locked lease file as a root and
//! removes unlocked ones: the lock dies with the process, so a killed pull
//! leaves no lease behind that protects content forever.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use kontti_core::Digest;
use rustix::fs::{FlockOperation, flock};

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

    /// The digests protected by leases that live processes hold. Removes the
    /// lease files of dead processes. Call with the gc lock held.
    pub(crate) fn live_lease_digests(&self) -> Result<Vec<Digest>> {
        let dir = self.root().join("leases");
        let rd = fs::read_dir(&dir).map_err(|e| StoreError::io("read directory", &dir, e))?;
        let mut out = Vec::new();
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
            out.extend(text.lines().filter_map(|l| Digest::parse(l.trim()).ok()));
        }
        Ok(out)
    }
}
