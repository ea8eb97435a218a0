//! From an image in the content store to a container root filesystem:
//! each layer unpacked once into a committed snapshot named by its chain id,
//! then an active snapshot on top for the container.
//!
//! Layers unpack on worker threads as soon as their blob is in the store
//! ([`LayerUnpacker::blob_ready`]), so that a pull unpacks while it still
//! downloads. With a snapshotter whose layers are independent
//! ([`Snapshotter::independent_layers`]: overlay), each layer goes into a
//! snapshot of its own prepared without a parent, several at once; then the
//! snapshotter's filesystem is synced once, and only then are the layers
//! committed, base first, each on its parent's chain id
//! ([`Snapshotter::commit_on`]). So a committed chain id, the marker that a
//! layer needs no unpacking again, always names data that is on disk. With
//! other snapshotters (copy, where a layer is applied onto a copy of its
//! parent) the layers unpack one after the other, each synced and committed
//! before the next is prepared on it.
//!
//! A layer that fails is discarded, and so is every layer above it; the
//! layers below it are committed.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use kontti_core::{Digest, ErrorKind};

use crate::hash::chain_ids;
use crate::image::Image;
use crate::snapshot::{Mount, SnapshotError, Snapshotter};
use crate::store::{ContentStore, StoreError, unique_name};
use crate::unpack::{UnpackError, apply_layer};

/// The most layers unpacked at once.
const MAX_WORKERS: usize = 4;

/// Errors preparing a root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// Reading a layer failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A snapshot operation failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Unpacking a layer failed (the partial unpack was discarded). The
    /// message includes the cause, which is therefore not a `source` (a
    /// chain printed whole would say it twice).
    #[error("layer {layer}: {cause}")]
    Unpack {
        /// The layer blob.
        layer: Digest,
        /// What went wrong.
        cause: UnpackError,
    },
    /// No thread could be started to unpack layers.
    #[error("cannot start a thread to unpack layers: {0}")]
    Worker(io::Error),
}

impl RootfsError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RootfsError::Store(e) => e.kind(),
            RootfsError::Snapshot(e) => e.kind(),
            RootfsError::Unpack { cause, .. } => cause.kind(),
            RootfsError::Worker(_) => ErrorKind::Unavailable,
        }
    }
}

/// What [`unpack_image`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// The top snapshot (chain id of the last layer), `None` for an image
    /// without layers.
    pub top: Option<String>,
    /// Layers unpacked now.
    pub unpacked: usize,
    /// Layers that were unpacked already.
    pub reused: usize,
}

/// Unpacks the image's layers that are not unpacked yet, verifying each
/// diffID, several at once where the snapshotter allows it. A layer that
/// fails is discarded with the layers above it; layers below it are
/// committed.
pub fn unpack_image(
    store: &ContentStore,
    image: &Image,
    snapshotter: &dyn Snapshotter,
) -> Result<UnpackReport, RootfsError> {
    let layers: Vec<(Digest, Digest)> = image
        .layers()
        .iter()
        .map(|l| l.digest.clone())
        .zip(image.diff_ids().iter().cloned())
        .collect();
    let shared = Shared::new(&layers, snapshotter);
    shared.all_ready();
    let workers = shared.workers_wanted();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| work(&shared, store, snapshotter));
        }
    });
    commit_all(&shared, snapshotter)
}

/// Unpacks the layers of one image on worker threads as their blobs arrive
/// in the content store; see the module documentation. Dropping it without
/// [`LayerUnpacker::finish`] cancels the work and discards every snapshot
/// it has not committed.
pub struct LayerUnpacker {
    shared: Arc<Shared>,
    snapshotter: Arc<dyn Snapshotter>,
    workers: Vec<std::thread::JoinHandle<()>>,
    finished: bool,
}

impl LayerUnpacker {
    /// Plans the unpacking of `layers` (blob digest and diffID, base first):
    /// layers whose chain id is committed already are reused, the others wait
    /// for [`LayerUnpacker::blob_ready`].
    pub fn start(
        store: ContentStore,
        snapshotter: Arc<dyn Snapshotter>,
        layers: &[(Digest, Digest)],
    ) -> Result<LayerUnpacker, RootfsError> {
        let shared = Arc::new(Shared::new(layers, snapshotter.as_ref()));
        let mut workers = Vec::new();
        for i in 0..shared.workers_wanted() {
            let (shared, store, sn) = (shared.clone(), store.clone(), snapshotter.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("unpack-{i}"))
                .spawn(move || work(&shared, &store, sn.as_ref()));
            match spawned {
                Ok(h) => workers.push(h),
                // Fewer workers only make it slower.
                Err(e) if !workers.is_empty() => {
                    tracing::warn!(error = %e, "cannot start another unpacking thread");
                    break;
                }
                Err(e) => return Err(RootfsError::Worker(e)),
            }
        }
        Ok(LayerUnpacker {
            shared,
            snapshotter,
            workers,
            finished: false,
        })
    }

    /// Blob `digest` is in the content store (verified): the layers made of
    /// it may unpack.
    pub fn blob_ready(&self, digest: &Digest) {
        let mut plan = self.shared.lock();
        for l in plan.layers.iter_mut() {
            if l.blob == *digest && matches!(l.state, JobState::Waiting) {
                l.state = JobState::Ready;
            }
        }
        drop(plan);
        self.shared.changed.notify_all();
    }

    /// Whether a layer has failed already (the pull can stop early).
    pub fn failed(&self) -> bool {
        self.shared.lock().error.is_some()
    }

    /// Every blob is in the store: unpacks what is left, waits for it, syncs
    /// once and commits the layers in order.
    pub fn finish(mut self) -> Result<UnpackReport, RootfsError> {
        self.finished = true;
        self.shared.all_ready();
        self.join();
        commit_all(&self.shared, self.snapshotter.as_ref())
    }

    fn join(&mut self) {
        for h in self.workers.drain(..) {
            if h.join().is_err() {
                tracing::warn!("an unpacking thread panicked");
                self.shared.lock().error.get_or_insert((
                    0,
                    RootfsError::Worker(io::Error::other("an unpacking thread panicked")),
                ));
            }
        }
    }
}

impl Drop for LayerUnpacker {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.shared.cancel.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        self.join();
        let plan = self.shared.lock();
        for l in &plan.layers {
            if let JobState::Unpacked(key) = &l.state {
                discard(self.snapshotter.as_ref(), key);
            }
        }
    }
}

/// The state of one layer.
#[derive(Debug)]
enum JobState {
    /// Its chain id was committed already.
    Reused,
    /// Its blob is not in the store yet.
    Waiting,
    /// It may unpack.
    Ready,
    /// A worker unpacks it.
    Running,
    /// Unpacked into this active snapshot, not committed.
    Unpacked(String),
    /// Unpacked and committed (copy snapshotters commit as they go).
    Committed,
    /// Failed, or given up because a layer below it failed.
    Failed,
}

struct LayerJob {
    blob: Digest,
    diff_id: Digest,
    chain: String,
    state: JobState,
}

struct Plan {
    layers: Vec<LayerJob>,
    /// The first failure and the index of its layer.
    error: Option<(usize, RootfsError)>,
}

struct Shared {
    plan: Mutex<Plan>,
    changed: Condvar,
    cancel: AtomicBool,
    independent: bool,
}

impl Shared {
    fn new(layers: &[(Digest, Digest)], sn: &dyn Snapshotter) -> Shared {
        let diff_ids: Vec<Digest> = layers.iter().map(|(_, d)| d.clone()).collect();
        let layers = layers
            .iter()
            .zip(chain_ids(&diff_ids))
            .map(|((blob, diff_id), chain)| {
                let chain = chain.to_string();
                let state = if sn.stat(&chain).is_ok() {
                    JobState::Reused
                } else {
                    JobState::Waiting
                };
                LayerJob {
                    blob: blob.clone(),
                    diff_id: diff_id.clone(),
                    chain,
                    state,
                }
            })
            .collect();
        Shared {
            plan: Mutex::new(Plan {
                layers,
                error: None,
            }),
            changed: Condvar::new(),
            cancel: AtomicBool::new(false),
            independent: sn.independent_layers(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Plan> {
        // A worker that panicked left the plan consistent: states change
        // in single assignments.
        self.plan.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn all_ready(&self) {
        let mut plan = self.lock();
        for l in plan.layers.iter_mut() {
            if matches!(l.state, JobState::Waiting) {
                l.state = JobState::Ready;
            }
        }
        drop(plan);
        self.changed.notify_all();
    }

    fn workers_wanted(&self) -> usize {
        let pending = self
            .lock()
            .layers
            .iter()
            .filter(|l| !matches!(l.state, JobState::Reused))
            .count();
        if !self.independent {
            return pending.min(1);
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        pending.min(cores.clamp(1, MAX_WORKERS))
    }
}

impl Plan {
    /// The next layer to unpack: the lowest ready one, or for a snapshotter
    /// whose layers depend on each other the lowest not yet done, once ready.
    fn next(&self, independent: bool) -> Option<usize> {
        if independent {
            return self
                .layers
                .iter()
                .position(|l| matches!(l.state, JobState::Ready));
        }
        let i = self
            .layers
            .iter()
            .position(|l| !matches!(l.state, JobState::Reused | JobState::Committed))?;
        matches!(self.layers[i].state, JobState::Ready).then_some(i)
    }

    /// Nothing is left to start.
    fn idle(&self) -> bool {
        !self
            .layers
            .iter()
            .any(|l| matches!(l.state, JobState::Waiting | JobState::Ready))
    }

    /// Records that layer `i` failed and gives up the layers above it that
    /// have not started.
    fn fail(&mut self, i: usize, e: RootfsError) {
        self.layers[i].state = JobState::Failed;
        for l in self.layers.iter_mut().skip(i + 1) {
            if matches!(l.state, JobState::Waiting | JobState::Ready) {
                l.state = JobState::Failed;
            }
        }
        match &self.error {
            Some((j, _)) if *j <= i => {}
            _ => self.error = Some((i, e)),
        }
    }
}

/// A worker: unpacks ready layers until none is left (or the work is cancelled).
fn work(shared: &Shared, store: &ContentStore, sn: &dyn Snapshotter) {
    loop {
        let (i, blob, diff_id, chain, parent) = {
            let mut plan = shared.lock();
            let i = loop {
                if shared.cancel.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(i) = plan.next(shared.independent) {
                    break i;
                }
                if plan.idle() {
                    return;
                }
                plan = shared.changed.wait(plan).unwrap_or_else(|p| p.into_inner());
            };
            let parent = i.checked_sub(1).map(|p| plan.layers[p].chain.clone());
            let l = &mut plan.layers[i];
            l.state = JobState::Running;
            (
                i,
                l.blob.clone(),
                l.diff_id.clone(),
                l.chain.clone(),
                parent,
            )
        };
        let _span = tracing::info_span!("unpack", layer = %blob).entered();
        let result = if shared.independent {
            unpack_alone(store, sn, &blob, &diff_id, &shared.cancel).map(JobState::Unpacked)
        } else {
            unpack_on(store, sn, &blob, &diff_id, &chain, parent.as_deref()).map(|fresh| {
                if fresh {
                    JobState::Committed
                } else {
                    JobState::Reused
                }
            })
        };
        let mut plan = shared.lock();
        match result {
            Ok(state) => plan.layers[i].state = state,
            Err(e) => plan.fail(i, e),
        }
        drop(plan);
        shared.changed.notify_all();
    }
}

/// Unpacks a layer into a new active snapshot without a parent; returns its key.
fn unpack_alone(
    store: &ContentStore,
    sn: &dyn Snapshotter,
    blob: &Digest,
    diff_id: &Digest,
    cancel: &AtomicBool,
) -> Result<String, RootfsError> {
    let key = unique_name(&format!("extract-{}", diff_id.short()));
    sn.prepare(&key, None)?;
    match apply_blob(store, sn, &key, blob, diff_id, cancel) {
        Ok(()) => Ok(key),
        Err(e) => {
            discard(sn, &key);
            Err(e)
        }
    }
}

/// Unpacks a layer onto its committed parent, syncs and commits it; false
/// when another process committed the same layer meanwhile.
fn unpack_on(
    store: &ContentStore,
    sn: &dyn Snapshotter,
    blob: &Digest,
    diff_id: &Digest,
    chain: &str,
    parent: Option<&str>,
) -> Result<bool, RootfsError> {
    let key = unique_name(&format!("extract-{}", diff_id.short()));
    sn.prepare(&key, parent)?;
    let never = AtomicBool::new(false);
    let applied = apply_blob(store, sn, &key, blob, diff_id, &never)
        .and_then(|()| sn.sync(&key).map_err(RootfsError::from));
    if let Err(e) = applied {
        discard(sn, &key);
        return Err(e);
    }
    match sn.commit(chain, &key) {
        Ok(()) => Ok(true),
        Err(SnapshotError::AlreadyExists(_)) => {
            sn.remove(&key)?;
            Ok(false)
        }
        Err(e) => {
            discard(sn, &key);
            Err(e.into())
        }
    }
}

fn apply_blob(
    store: &ContentStore,
    sn: &dyn Snapshotter,
    key: &str,
    blob: &Digest,
    diff_id: &Digest,
    cancel: &AtomicBool,
) -> Result<(), RootfsError> {
    let (dir, mode) = sn.apply_target(key)?;
    let file = store.open_blob(blob)?;
    let reader = Cancellable {
        inner: file,
        cancel,
    };
    let stats =
        apply_layer(reader, &dir, mode, Some(diff_id)).map_err(|cause| RootfsError::Unpack {
            layer: blob.clone(),
            cause,
        })?;
    if let Err(e) = store.record_layer_size(diff_id, stats.size) {
        tracing::warn!(%diff_id, error = %e, "cannot record the layer's size");
    }
    Ok(())
}

fn discard(sn: &dyn Snapshotter, key: &str) {
    if let Err(e) = sn.remove(key) {
        tracing::warn!(key, error = %e, "cannot discard an uncommitted layer");
    }
}

/// Syncs what the workers unpacked (once) and commits it base first; the
/// layers above a failure are discarded.
fn commit_all(shared: &Shared, sn: &dyn Snapshotter) -> Result<UnpackReport, RootfsError> {
    let mut plan = shared.lock();
    let mut error = plan.error.take().map(|(_, e)| e);
    let first = plan.layers.iter().find_map(|l| match &l.state {
        JobState::Unpacked(key) => Some(key.clone()),
        _ => None,
    });
    // A layer is committed only once its data is on disk.
    let mut broken = false;
    if let Some(key) = first
        && let Err(e) = sn.sync(&key)
    {
        error.get_or_insert(e.into());
        broken = true;
    }
    let mut report = UnpackReport::default();
    let mut parent: Option<String> = None;
    for l in plan.layers.iter_mut() {
        match std::mem::replace(&mut l.state, JobState::Failed) {
            JobState::Reused if !broken => {
                report.reused += 1;
                parent = Some(l.chain.clone());
            }
            JobState::Committed if !broken => {
                report.unpacked += 1;
                parent = Some(l.chain.clone());
            }
            JobState::Unpacked(key) if !broken => {
                match sn.commit_on(&l.chain, &key, parent.as_deref()) {
                    Ok(()) => report.unpacked += 1,
                    // Another process unpacked the same layer meanwhile: use theirs.
                    Err(SnapshotError::AlreadyExists(_)) => {
                        discard(sn, &key);
                        report.reused += 1;
                    }
                    Err(e) => {
                        discard(sn, &key);
                        error.get_or_insert(e.into());
                        broken = true;
                        continue;
                    }
                }
                parent = Some(l.chain.clone());
            }
            JobState::Unpacked(key) => discard(sn, &key),
            _ => broken = true,
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    report.top = parent;
    Ok(report)
}

/// A reader that fails once the work is cancelled, so that an abandoned
/// pull does not unpack a layer to its end.
struct Cancellable<'a, R> {
    inner: R,
    cancel: &'a AtomicBool,
}

impl<R: Read> Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("unpacking cancelled"));
        }
        self.inner.read(buf)
    }
}

/// Unpacks the image as needed and prepares active snapshot `key` on top of
/// it: the container's root filesystem, returned as mounts. A lease holds
/// the image's layers until `key` sits on them, so a concurrent prune or
/// `rmi` cannot take them in between.
pub fn prepare_rootfs(
    store: &ContentStore,
    image: &Image,
    snapshotter: &dyn Snapshotter,
    key: &str,
) -> Result<Vec<Mount>, RootfsError> {
    let lease = store.lease("rootfs")?;
    store.protect_image(&lease, image)?;
    let report = unpack_image(store, image, snapshotter)?;
    Ok(snapshotter.prepare(key, report.top.as_deref())?)
}

#[cfg(test)]
#[path = "rootfs_tests.rs"]
mod tests;
