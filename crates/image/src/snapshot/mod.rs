//! Snapshots: the filesystems that layers are unpacked into and containers
//! run on.
//!
//! # Vocabulary
//! * A **snapshot** is a filesystem tree, named by a **key** that is unique
//!   within a snapshotter.
//! * A **committed** snapshot is immutable. It may be the **parent** of other
//!   snapshots. Image layers are committed snapshots named by their **chain
//!   id** (the layer and everything below it), so every image that shares a
//!   layer stack shares the snapshots: each layer is unpacked once.
//! * An **active** snapshot is writable. [`Snapshotter::prepare`] creates
//!   one on top of a committed parent (or empty); it holds a container's
//!   changes, or a layer while it is being unpacked.
//! * A **view** is a read-only snapshot of a parent ([`Snapshotter::view`]).
//! * **Mounts** ([`Mount`]) are how a caller gets at an active snapshot or a
//!   view: mounting them all at a target directory yields the tree.
//!
//! # Lifecycle
//! ```text
//! prepare(key, parent) ──► mounts(key) ──► write ──► commit(name, key) ──► (committed `name`)
//!                                             └────► remove(key)
//! view(key, parent)    ──► mounts(key) ──► read ──► remove(key)
//! ```
//! `commit` retires the active key: afterwards only `name` exists.
//! `remove` refuses a snapshot that has children. A layer is unpacked by
//! `prepare`, applying the diff to [`Snapshotter::apply_target`] (no mount
//! needed), then `commit` under its chain id, after the data is synced: a
//! committed chain id is the marker that the layer needs no unpacking again.
//!
//! Implementations: [`OverlaySnapshotter`] (each layer in its own directory,
//! containers get an overlay mount of the stack plus their own upper
//! directory) and [`CopySnapshotter`] (plain directories, each a full copy:
//! for filesystems without overlay support). Both pass one test suite
//! (`tests/snapshots.rs`).

mod copy;
mod meta;
pub mod mount;
mod overlay;

use std::io;
use std::path::PathBuf;

use kontti_core::ErrorKind;

pub use copy::CopySnapshotter;
pub use mount::Mount;
pub use overlay::OverlaySnapshotter;

use crate::unpack::WhiteoutMode;

/// Errors of the snapshotters.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No snapshot with that key.
    #[error("snapshot {0:?} not found")]
    NotFound(String),
    /// The key is taken.
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    /// The operation does not fit the snapshot's kind.
    #[error("snapshot {key:?} is {actual}, expected {expected}")]
    WrongKind {
        /// The key.
        key: String,
        /// Its kind.
        actual: Kind,
        /// The kind the operation needs.
        expected: Kind,
    },
    /// Other snapshots depend on it.
    #[error("snapshot {key:?} has {children} child snapshot(s); remove them first")]
    HasChildren {
        /// The key.
        key: String,
        /// How many children.
        children: usize,
    },
    /// A key that cannot be used.
    #[error("invalid snapshot key {0:?}")]
    BadKey(String),
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A commit on a parent the snapshot cannot be stacked on.
    #[error("snapshot {key:?} cannot be committed on parent {parent:?}")]
    ParentMismatch {
        /// The key.
        key: String,
        /// The parent asked for (empty for none).
        parent: String,
    },
    /// The metadata file is corrupt.
    #[error("snapshot metadata {path}: {reason}")]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl SnapshotError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SnapshotError::NotFound(_) => ErrorKind::NotFound,
            SnapshotError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            SnapshotError::WrongKind { .. }
            | SnapshotError::HasChildren { .. }
            | SnapshotError::ParentMismatch { .. } => ErrorKind::Conflict,
            SnapshotError::BadKey(_) => ErrorKind::Invalid,
            SnapshotError::Io { source, .. }
                if source.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) =>
            {
                ErrorKind::Unavailable
            }
            SnapshotError::Io { .. } | SnapshotError::BadMetadata { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SnapshotError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, SnapshotError>;

/// The kind of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Writable, from `prepare`.
    Active,
    /// Read-only, from `view`.
    View,
    /// Immutable, from `commit`.
    Committed,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Active => "active",
            Kind::View => "a view",
            Kind::Committed => "committed",
        })
    }
}

/// What a snapshotter knows about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its key.
    pub key: String,
    /// Its parent's key.
    pub parent: Option<String>,
    /// Its kind.
    pub kind: Kind,
}

/// Stores snapshots; see the module documentation for the vocabulary and
/// the lifecycle. Implementations are safe to use from several processes
/// on one root at the same time.
pub trait Snapshotter: Send + Sync {
    /// A short name (`overlay`, `copy`).
    fn name(&self) -> &'static str;
    /// Information about `key`.
    fn stat(&self, key: &str) -> Result<Info>;
    /// Every snapshot.
    fn list(&self) -> Result<Vec<Info>>;
    /// Creates active snapshot `key` on top of committed `parent`.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// Creates read-only view `key` of committed `parent`.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// The mounts of an active snapshot or view.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// Commits active `key` as `name`; `key` ceases to exist.
    fn commit(&self, name: &str, key: &str) -> Result<()>;
    /// Removes a snapshot without children.
    fn remove(&self, key: &str) -> Result<()>;
    /// Where a layer diff for active `key` is applied without mounting, and
    /// how whiteouts are to be written there.
    fn apply_target(&self, key: &str) -> Result<(PathBuf, WhiteoutMode)>;
    /// Flushes the data of `key` to disk (before it is committed). Every
    /// snapshot of a snapshotter lives on one filesystem, which this syncs
    /// as a whole: one call covers all the snapshots written before it.
    fn sync(&self, key: &str) -> Result<()>;
    /// Whether a layer may be applied to an active snapshot prepared without
    /// a parent and committed later on top of any parent
    /// ([`Snapshotter::commit_on`]): true when a snapshot's own directory
    /// holds only its diff (overlay), false when it holds the whole merged
    /// tree (copy). The layers of such a snapshotter unpack at the same time.
    fn independent_layers(&self) -> bool {
        false
    }
    /// Commits active `key` as `name` on top of committed `parent`, which
    /// `key` was prepared without when [`Snapshotter::independent_layers`]
    /// holds; otherwise `parent` must be the one `key` was prepared on.
    fn commit_on(&self, name: &str, key: &str, parent: Option<&str>) -> Result<()> {
        let info = self.stat(key)?;
        if info.parent.as_deref() != parent {
            return Err(SnapshotError::ParentMismatch {
                key: key.to_owned(),
                parent: parent.unwrap_or("").to_owned(),
            });
        }
        self.commit(name, key)
    }
}

/// Where snapshotters live under a kontti state root.
pub fn snapshots_dir(state_root: &std::path::Path, name: &str) -> PathBuf {
    state_root.join("snapshots").join(name)
}

/// Whether the kernel offers overlayfs.
pub fn overlay_supported() -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| {
            s.lines()
                .any(|l| l.trim_end().ends_with("\toverlay") || l.trim() == "nodev\toverlay")
        })
        .unwrap_or(false)
}

/// Opens the default snapshotter under a state root: overlay where the kernel
/// has it, copy otherwise. `KONTTI_SNAPSHOTTER=copy|overlay` overrides.
pub fn open_default(state_root: &std::path::Path) -> Result<Box<dyn Snapshotter>> {
    let choice = std::env::var("KONTTI_SNAPSHOTTER").ok();
    let use_overlay = match choice.as_deref() {
        Some("copy") => false,
        Some("overlay") => true,
        _ => overlay_supported(),
    };
    Ok(if use_overlay {
        Box::new(OverlaySnapshotter::open(snapshots_dir(
            state_root, "overlay",
        ))?)
    } else {
        Box::new(CopySnapshotter::open(snapshots_dir(state_root, "copy"))?)
    })
}
