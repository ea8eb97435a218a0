//! A step's workspace: an active overlay snapshot on the stage's current
//! layer stack, mounted at `builder/runs/<key>/rootfs`, in a directory whose
//! `lock` file the building process holds. A step mutates the mounted tree
//! (a RUN container, COPY, WORKDIR), then [`Workspace::finish`] unmounts it,
//! turns the snapshot's upper directory into a layer blob and commits the
//! snapshot under the new chain id, so the layer is never unpacked again.
//!
//! A build killed mid-step leaves its run directory with no lock holder:
//! [`recover`] (called when a builder opens) kills its container, unmounts
//! what is mounted under it and removes its snapshots.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use kontti_core::Digest;
use kontti_image::snapshot::{OverlaySnapshotter, SnapshotError, Snapshotter, mount};
use kontti_image::unpack::{WhiteoutMode, apply_layer};
use kontti_image::{ContentStore, Lease};
use rustix::fs::{FlockOperation, flock};

use crate::error::BuildError;
use crate::layer::{LayerBlob, is_empty_dir, store_layer};
use crate::options::LayerCompression;

/// What every step of a build shares: the store, snapshots and directories.
pub(crate) struct Machine {
    pub store: ContentStore,
    pub snapshots: OverlaySnapshotter,
    pub lease: Lease,
    /// `builder/runs`.
    pub runs: PathBuf,
    /// `builder/runc`: the runtime's state root.
    pub runc_root: PathBuf,
    /// `builder/cache-mounts`.
    pub cache_mounts: PathBuf,
    pub runtime: PathBuf,
    pub compression: LayerCompression,
    pub epoch: Option<i64>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A key unique across processes and threads.
pub(crate) fn unique_key(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{:x}{:x}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The chain id after adding `diff_id` on top of `parent`.
pub(crate) fn next_chain(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => kontti_image::hash::sha256(format!("{p} {diff_id}").as_bytes()),
    }
}

/// An active snapshot mounted for one step.
pub(crate) struct Workspace<'m> {
    m: &'m Machine,
    key: String,
    dir: PathBuf,
    rootfs: PathBuf,
    mounted: usize,
    views: Vec<(String, PathBuf)>,
    _lock: File,
    live: bool,
}

impl<'m> Workspace<'m> {
    /// Prepares and mounts an active snapshot on `parent` (a chain id).
    pub fn open(m: &'m Machine, parent: Option<&Digest>) -> Result<Workspace<'m>, BuildError> {
        let key = unique_key("build");
        let dir = m.runs.join(&key);
        // The directory appears under its name only once its lock is held,
        // so that recovery in another process never takes a live one.
        let tmp = m.runs.join(format!(".{key}"));
        fs::create_dir_all(tmp.join("rootfs"))
            .map_err(|e| BuildError::io("create directory", &tmp, e))?;
        let lock_path = tmp.join("lock");
        let lock = File::create(&lock_path).map_err(|e| BuildError::io("create", &lock_path, e))?;
        flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| BuildError::io("lock", &lock_path, e.into()))?;
        fs::rename(&tmp, &dir).map_err(|e| BuildError::io("rename", &tmp, e))?;
        let rootfs = dir.join("rootfs");
        let mut ws = Workspace {
            m,
            key,
            dir,
            rootfs,
            mounted: 0,
            views: Vec::new(),
            _lock: lock,
            live: false,
        };
        let parent = parent.map(Digest::to_string);
        let mounts = m.snapshots.prepare(&ws.key, parent.as_deref())?;
        ws.live = true;
        mount::mount_all(&mounts, &ws.rootfs)
            .map_err(|e| BuildError::io("mount snapshot at", &ws.rootfs, e))?;
        ws.mounted = mounts.len();
        Ok(ws)
    }

    /// The mounted root filesystem.
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// The step's own directory (bundle, secrets, scratch).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of the active snapshot (also the container id).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Mounts a read-only view of `top` (another stage's or an image's
    /// layers) for a `--mount from=` or `COPY --from`; returns where.
    pub fn view(&mut self, top: Option<&Digest>) -> Result<PathBuf, BuildError> {
        let n = self.views.len();
        let key = format!("{}-view{n}", self.key);
        let at = self.dir.join(format!("view{n}"));
        fs::create_dir_all(&at).map_err(|e| BuildError::io("create directory", &at, e))?;
        let parent = top.map(Digest::to_string);
        let mounts = match parent {
            Some(p) => self.m.snapshots.view(&key, Some(&p))?,
            None => self.m.snapshots.view(&key, None)?,
        };
        self.views.push((key, at.clone()));
        mount::mount_all(&mounts, &at).map_err(|e| BuildError::io("mount view at", &at, e))?;
        Ok(at)
    }

    fn unmount(&mut self) {
        for (key, at) in self.views.drain(..) {
            if let Err(e) = mount::unmount_all(&at, 2) {
                tracing::warn!(path = %at.display(), error = %e, "cannot unmount view");
            }
            if let Err(e) = self.m.snapshots.remove(&key) {
                tracing::warn!(key, error = %e, "cannot remove view");
            }
        }
        if self.mounted > 0 {
            if let Err(e) = mount::unmount_all(&self.rootfs, self.mounted) {
                tracing::warn!(path = %self.rootfs.display(), error = %e, "cannot unmount");
            }
            self.mounted = 0;
        }
    }

    /// The upper directory: exactly what the step changed.
    pub fn upper(&self) -> Result<PathBuf, BuildError> {
        Ok(self.m.snapshots.apply_target(&self.key)?.0)
    }

    /// Unmounts, then writes the changes as a layer and commits the snapshot
    /// under the chain id on top of `parent`. A step that changed nothing
    /// (`keep_empty` false) adds no layer: `None`.
    pub fn finish(
        mut self,
        parent: Option<&Digest>,
        keep_empty: bool,
    ) -> Result<Option<(LayerBlob, Digest)>, BuildError> {
        self.unmount();
        let upper = self.upper()?;
        let empty = is_empty_dir(&upper).map_err(|e| BuildError::io("read", &upper, e))?;
        if empty && !keep_empty {
            return Ok(None);
        }
        let blob = store_layer(
            &self.m.store,
            &self.m.lease,
            &upper,
            self.m.compression,
            self.m.epoch,
        )?;
        let chain = next_chain(parent, &blob.diff_id);
        // Held until the build ends: the next step, a `COPY --from` of this
        // stage or the final image builds on it.
        self.m
            .store
            .protect_snapshot(&self.m.lease, &chain.to_string())?;
        self.m.snapshots.sync(&self.key)?;
        match self.m.snapshots.commit(&chain.to_string(), &self.key) {
            Ok(()) => self.live = false,
            // The same layer exists already (another build made it).
            Err(SnapshotError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Some((blob, chain)))
    }
}

impl Drop for Workspace<'_> {
    fn drop(&mut self) {
        self.unmount();
        if self.live
            && let Err(e) = self.m.snapshots.remove(&self.key)
        {
            tracing::warn!(key = self.key, error = %e, "cannot remove step snapshot");
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(path = %self.dir.display(), error = %e, "cannot remove step directory");
        }
    }
}

/// Makes sure the snapshot of `layer` on top of `parent` exists (applying
/// the blob when a cached layer's snapshot is gone); returns its chain id.
pub(crate) fn ensure_snapshot(
    m: &Machine,
    parent: Option<&Digest>,
    layer: &LayerBlob,
) -> Result<Digest, BuildError> {
    let chain = next_chain(parent, &layer.diff_id);
    let name = chain.to_string();
    m.store.protect_snapshot(&m.lease, &name)?;
    if m.snapshots.stat(&name).is_ok() {
        return Ok(chain);
    }
    let key = unique_key("apply");
    let parent_name = parent.map(Digest::to_string);
    m.snapshots.prepare(&key, parent_name.as_deref())?;
    let applied = (|| {
        let (dir, _) = m.snapshots.apply_target(&key)?;
        let blob = m.store.open_blob(&layer.descriptor.digest)?;
        apply_layer(blob, &dir, WhiteoutMode::Overlay, Some(&layer.diff_id)).map_err(|source| {
            BuildError::Unpack {
                what: format!("layer {}", layer.descriptor.digest),
                cause: source,
            }
        })?;
        m.snapshots.sync(&key)?;
        Ok::<_, BuildError>(())
    })();
    if let Err(e) = applied {
        let _ = m.snapshots.remove(&key);
        return Err(e);
    }
    match m.snapshots.commit(&name, &key) {
        Ok(()) => {}
        Err(SnapshotError::AlreadyExists(_)) => {
            m.snapshots.remove(&key)?;
        }
        Err(e) => {
            let _ = m.snapshots.remove(&key);
            return Err(e.into());
        }
    }
    Ok(chain)
}

/// Mount points under `dir`, deepest first, from `/proc/self/mountinfo`.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(n) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(n as char);
            i += 4;
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// Cleans up after builds that died mid-step: for every run directory whose
/// lock nobody holds, kills and deletes its container, unmounts everything
/// under it, removes its snapshots and the directory. Returns how many.
pub(crate) fn recover(m: &Machine) -> Result<usize, BuildError> {
    let rd = match fs::read_dir(&m.runs) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(BuildError::io("read directory", &m.runs, e)),
    };
    let mut n = 0;
    for entry in rd.flatten() {
        let dir = entry.path();
        let key = entry.file_name().to_string_lossy().into_owned();
        if key.starts_with('.') && !is_older_than(&dir, 60) {
            continue; // being created right now
        }
        if let Ok(lock) = File::open(dir.join("lock"))
            && flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err()
        {
            continue; // a live build
        }
        tracing::info!(key, "cleaning up after an interrupted build step");
        if m.runc_root.join(&key).exists() {
            let status = Command::new(&m.runtime)
                .arg("--root")
                .arg(&m.runc_root)
                .args(["delete", "--force", &key])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                tracing::warn!(key, "cannot delete the container of an interrupted step");
            }
        }
        for p in mounts_under(&dir) {
            if let Err(e) = mount::unmount_all(&p, 4) {
                tracing::warn!(path = %p.display(), error = %e, "cannot unmount");
            }
        }
        if let Ok(list) = m.snapshots.list() {
            let mut keys: Vec<String> = list
                .into_iter()
                .map(|i| i.key)
                .filter(|k| *k == key || k.starts_with(&format!("{key}-")))
                .collect();
            keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
            for k in keys {
                if let Err(e) = m.snapshots.remove(&k) {
                    tracing::warn!(key = k, error = %e, "cannot remove snapshot");
                }
            }
        }
        fs::remove_dir_all(&dir).map_err(|e| BuildError::io("remove", &dir, e))?;
        n += 1;
    }
    n += remove_dead_snapshots(m);
    Ok(n)
}

/// Active snapshots of steps and cache applications (`build-PID-…`,
/// `apply-PID-…`) whose process is gone, left by a build killed between
/// preparing and committing them.
fn remove_dead_snapshots(m: &Machine) -> usize {
    let Ok(list) = m.snapshots.list() else {
        return 0;
    };
    let mut keys: Vec<String> = list
        .into_iter()
        .filter(|i| i.kind != kontti_image::snapshot::Kind::Committed)
        .map(|i| i.key)
        .filter(|k| {
            let mut parts = k.splitn(3, '-');
            matches!(parts.next(), Some("build" | "apply"))
                && parts
                    .next()
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect();
    // Views (`KEY-viewN`) before the snapshots they sit on.
    keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
    let mut n = 0;
    for k in keys {
        match m.snapshots.remove(&k) {
            Ok(()) => n += 1,
            Err(e) => tracing::warn!(key = k, error = %e, "cannot remove a dead build's snapshot"),
        }
    }
    n
}

fn is_older_than(path: &Path, secs: u64) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|d| d.as_secs() > secs)
}
