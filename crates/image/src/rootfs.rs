//! From an image in the content store to a container root filesystem:
//! each layer unpacked once into a committed snapshot named by its chain id,
//! then an active snapshot on top for the container.

use kontti_core::{Digest, ErrorKind};

use crate::image::Image;
use crate::snapshot::{Mount, SnapshotError, Snapshotter};
use crate::store::{ContentStore, StoreError, unique_name};
use crate::unpack::{UnpackError, apply_layer};

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
}

impl RootfsError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RootfsError::Store(e) => e.kind(),
            RootfsError::Snapshot(e) => e.kind(),
            RootfsError::Unpack { cause, .. } => cause.kind(),
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
/// diffID. A layer that fails is discarded; layers below it stay committed.
pub fn unpack_image(
    store: &ContentStore,
    image: &Image,
    snapshotter: &dyn Snapshotter,
) -> Result<UnpackReport, RootfsError> {
    let mut report = UnpackReport::default();
    let chain = image.chain_ids();
    let mut parent: Option<String> = None;
    for ((layer, diff_id), chain_id) in image.layers().iter().zip(image.diff_ids()).zip(&chain) {
        let name = chain_id.to_string();
        if snapshotter.stat(&name).is_ok() {
            report.reused += 1;
            parent = Some(name);
            continue;
        }
        let _span = tracing::info_span!("unpack", layer = %layer.digest).entered();
        let key = unique_name(&format!("extract-{}", chain_id.short()));
        snapshotter.prepare(&key, parent.as_deref())?;
        let result = (|| {
            let (dir, mode) = snapshotter.apply_target(&key)?;
            let blob = store.open_blob(&layer.digest)?;
            let stats = apply_layer(blob, &dir, mode, Some(diff_id)).map_err(|cause| {
                RootfsError::Unpack {
                    layer: layer.digest.clone(),
                    cause,
                }
            })?;
            if let Err(e) = store.record_layer_size(diff_id, stats.size) {
                tracing::warn!(%diff_id, error = %e, "cannot record the layer's size");
            }
            snapshotter.sync(&key)?;
            Ok::<_, RootfsError>(())
        })();
        if let Err(e) = result {
            if let Err(re) = snapshotter.remove(&key) {
                tracing::warn!(key, error = %re, "cannot discard failed unpack");
            }
            return Err(e);
        }
        match snapshotter.commit(&name, &key) {
            Ok(()) => report.unpacked += 1,
            // Another process unpacked the same layer meanwhile: use theirs.
            Err(SnapshotError::AlreadyExists(_)) => {
                snapshotter.remove(&key)?;
                report.reused += 1;
            }
            Err(e) => {
                let _ = snapshotter.remove(&key);
                return Err(e.into());
            }
        }
        parent = Some(name);
    }
    report.top = parent;
    Ok(report)
}

/// Unpacks the image as needed and prepares active snapshot `key` on top of
/// it: the container's root filesystem, returned as mounts.
pub fn prepare_rootfs(
    store: &ContentStore,
    image: &Image,
    snapshotter: &dyn Snapshotter,
    key: &str,
) -> Result<Vec<Mount>, RootfsError> {
    let report = unpack_image(store, image, snapshotter)?;
    Ok(snapshotter.prepare(key, report.top.as_deref())?)
}
