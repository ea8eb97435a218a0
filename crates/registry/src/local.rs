//! Pull into and push from kontti's local image store: the registry client
//! plus naming (a pulled image gets its reference in the store's index; a
//! pushed one is read by its reference).

use std::sync::{Arc, Mutex};

use kontti_core::{Digest, ImageRef};
use kontti_image::Descriptor as StoreDescriptor;

use crate::blobs::ContentBlobs;
use crate::client::{Client, ClientError, Descriptor, Platform, Progress, Pulled, PushImage};
use crate::media;

/// Why a pull into or push from the local store failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The registry side failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The content store failed.
    #[error("content store: {0}")]
    Store(#[from] kontti_image::StoreError),
    /// The store could not be opened.
    #[error("content store {path}: {source}")]
    Open {
        /// The store root.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No local image has that name.
    #[error("no such image: {0}")]
    NoSuchImage(String),
    /// The pulled image cannot be resolved.
    #[error(transparent)]
    Image(#[from] kontti_image::ImageError),
    /// Unpacking its layers failed.
    #[error(transparent)]
    Unpack(#[from] kontti_image::rootfs::RootfsError),
    /// The snapshotter cannot be opened.
    #[error(transparent)]
    Snapshot(#[from] kontti_image::snapshot::SnapshotError),
    /// A local manifest cannot be read.
    #[error("local manifest {digest}: {reason}")]
    BadManifest {
        /// The manifest.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
}

impl LocalError {
    /// The error class.
    pub fn kind(&self) -> kontti_core::ErrorKind {
        match self {
            LocalError::Client(e) => e.kind(),
            LocalError::Store(e) => e.kind(),
            LocalError::Open { .. } => kontti_core::ErrorKind::Unavailable,
            LocalError::NoSuchImage(_) => kontti_core::ErrorKind::NotFound,
            LocalError::Image(e) => e.kind(),
            LocalError::Unpack(e) => e.kind(),
            LocalError::Snapshot(e) => e.kind(),
            LocalError::BadManifest { .. } => kontti_core::ErrorKind::Invalid,
        }
    }
}

/// Where the content store lives under a state root.
pub fn content_dir(state_root: &std::path::Path) -> std::path::PathBuf {
    kontti_image::content_dir(state_root)
}

fn open(content_root: &std::path::Path, purpose: &str) -> Result<ContentBlobs, LocalError> {
    ContentBlobs::open(content_root, purpose, true).map_err(|source| LocalError::Open {
        path: content_root.to_owned(),
        source,
    })
}

/// A pulled image not yet named: its blobs are verified and stored, held
/// by the pull's lease until [`unpack`] has unpacked its layers and named it.
pub struct PulledImage {
    /// What the registry client fetched.
    pub pulled: Pulled,
    reference: ImageRef,
    top: StoreDescriptor,
    blobs: Arc<ContentBlobs>,
}

/// Pulls `reference` into the content store at `content_root`. The image is
/// named only by [`unpack`], so that a pull that fails later (a full disk
/// while unpacking) leaves no name for an image that cannot run.
pub async fn pull(
    client: &Client,
    content_root: &std::path::Path,
    reference: &ImageRef,
    platform: &Platform,
    progress: Arc<dyn Progress>,
) -> Result<PulledImage, LocalError> {
    let blobs = Arc::new(open(content_root, "pull")?);
    let pulled = client
        .pull(reference, platform, blobs.clone(), progress)
        .await?;
    Ok(PulledImage::new(pulled, reference, blobs))
}

/// Unpacks a pulled image's layers that are not unpacked yet (each layer
/// once, shared by every image that has it; diffIDs verified), so that the
/// next run of the image unpacks nothing; then gives the image its name.
pub fn unpack(
    state_root: &std::path::Path,
    image: &PulledImage,
) -> Result<kontti_image::rootfs::UnpackReport, LocalError> {
    let store = image.blobs.store();
    let resolved = image.resolve()?;
    let snapshotter = kontti_image::snapshot::open_default(state_root)?;
    // The pull's lease holds the layer snapshots too, until the name does.
    store.protect_image(image.blobs.lease(), &resolved)?;
    let report = kontti_image::rootfs::unpack_image(store, &resolved, snapshotter.as_ref())?;
    image.name()?;
    Ok(report)
}

/// Pulls `reference` into the state root's content store and unpacks its
/// layers while it downloads: each layer starts unpacking as soon as its
/// blob is in the store (several at once where the snapshotter allows it),
/// and is committed, after one sync, once every diffID is verified. Then
/// the image gets its name, and the next run of it unpacks nothing. On
/// failure nothing is named and no uncommitted snapshot is left.
pub async fn pull_and_unpack(
    client: &Client,
    state_root: &std::path::Path,
    reference: &ImageRef,
    platform: &Platform,
    progress: Arc<dyn Progress>,
) -> Result<(PulledImage, kontti_image::rootfs::UnpackReport), LocalError> {
    let blobs = Arc::new(open(&content_dir(state_root), "pull")?);
    let snapshotter: Arc<dyn kontti_image::snapshot::Snapshotter> =
        Arc::from(kontti_image::snapshot::open_default(state_root)?);
    let unpacking = Arc::new(Unpacking {
        store: blobs.store().clone(),
        blobs: blobs.clone(),
        snapshotter,
        state: Mutex::new(None),
    });
    let pulled = client
        .pull_observed(
            reference,
            platform,
            blobs.clone(),
            progress,
            Some(unpacking.clone()),
        )
        .await;
    let planned = unpacking.take();
    let pulled = match pulled {
        Ok(p) => p,
        Err(e) => {
            // The unpacking's failure is the cause of a download it stopped.
            return Err(match planned {
                Some(Err(cause)) => cause,
                Some(Ok(u)) if u.failed() => u
                    .finish()
                    .err()
                    .map_or(LocalError::Client(e), LocalError::from),
                _ => e.into(),
            });
        }
    };
    let unpacker = match planned {
        Some(Ok(u)) => u,
        Some(Err(e)) => return Err(e),
        None => {
            return Err(LocalError::BadManifest {
                digest: pulled.manifest_digest.clone(),
                reason: "the pull did not report its config".into(),
            });
        }
    };
    let image = PulledImage::new(pulled, reference, blobs);
    // The same checks `unpack` makes (platform, config) before naming.
    image.resolve()?;
    let report = unpacker.finish()?;
    image.name()?;
    Ok((image, report))
}

/// Starts a [`LayerUnpacker`](kontti_image::rootfs::LayerUnpacker) when the
/// pull has the config, and hands it each layer as it arrives.
struct Unpacking {
    store: kontti_image::ContentStore,
    /// Whose lease holds the layer snapshots until the image is named.
    blobs: Arc<ContentBlobs>,
    snapshotter: Arc<dyn kontti_image::snapshot::Snapshotter>,
    state: Mutex<Option<Result<kontti_image::rootfs::LayerUnpacker, LocalError>>>,
}

impl Unpacking {
    fn take(&self) -> Option<Result<kontti_image::rootfs::LayerUnpacker, LocalError>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn plan(&self, pulled: &Pulled) -> Result<kontti_image::rootfs::LayerUnpacker, LocalError> {
        let data = self.store.read_blob(
            &pulled.config.digest,
            kontti_image::media::MAX_MANIFEST_SIZE,
        )?;
        let config: kontti_image::ImageConfigFile = serde_json::from_slice(&data).map_err(|e| {
            LocalError::Image(kontti_image::ImageError::BadConfig {
                digest: pulled.config.digest.clone(),
                reason: e.to_string(),
            })
        })?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != pulled.layers.len() {
            return Err(LocalError::Image(
                kontti_image::ImageError::LayerCountMismatch {
                    manifest: pulled.manifest_digest.clone(),
                    layers: pulled.layers.len(),
                    diff_ids: diff_ids.len(),
                },
            ));
        }
        // Before the unpacker looks for unpacked layers, so that a prune
        // cannot take one it decides to reuse.
        self.store
            .protect_layer_snapshots(self.blobs.lease(), diff_ids)?;
        let layers: Vec<(Digest, Digest)> = pulled
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .zip(diff_ids.iter().cloned())
            .collect();
        Ok(kontti_image::rootfs::LayerUnpacker::start(
            self.store.clone(),
            self.snapshotter.clone(),
            &layers,
        )?)
    }
}

impl crate::client::PullObserver for Unpacking {
    fn config(&self, pulled: &Pulled) {
        let planned = self.plan(pulled);
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(planned);
    }

    fn layer(&self, digest: &Digest) {
        if let Some(Ok(u)) = &*self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            u.blob_ready(digest);
        }
    }

    fn failed(&self) -> bool {
        match &*self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(u)) => u.failed(),
            Some(Err(_)) => true,
            None => false,
        }
    }
}

impl PulledImage {
    fn new(pulled: Pulled, reference: &ImageRef, blobs: Arc<ContentBlobs>) -> PulledImage {
        let top = match &pulled.index {
            Some((d, m, b)) => StoreDescriptor::new(m, d.clone(), b.len() as u64),
            None => StoreDescriptor::new(
                &pulled.manifest_media_type,
                pulled.manifest_digest.clone(),
                pulled.manifest.len() as u64,
            ),
        };
        PulledImage {
            pulled,
            reference: reference.clone(),
            top,
            blobs,
        }
    }

    /// The image as the store resolves it for the host platform.
    fn resolve(&self) -> Result<kontti_image::Image, LocalError> {
        let pulled = &self.pulled;
        let desc = StoreDescriptor::new(
            &pulled.manifest_media_type,
            pulled.manifest_digest.clone(),
            pulled.manifest.len() as u64,
        );
        Ok(kontti_image::Image::from_descriptor(
            self.blobs.store(),
            desc,
            &kontti_image::PlatformSpec::host(),
        )?)
    }

    /// Records the image under the reference it was pulled by, without
    /// unpacking it ([`unpack`] does both).
    pub fn name(&self) -> Result<(), LocalError> {
        self.blobs.store().set_ref(&self.reference, &self.top)?;
        Ok(())
    }
}

/// Fails unless the local store names an image `reference`.
pub fn ensure_local(
    content_root: &std::path::Path,
    reference: &ImageRef,
) -> Result<(), LocalError> {
    let store = kontti_image::ContentStore::open(content_root)?;
    match store.resolve_ref(reference)? {
        Some(_) => Ok(()),
        None => Err(LocalError::NoSuchImage(reference.to_string())),
    }
}

/// Pushes the local image `reference` to its registry; returns the digest of
/// the manifest pushed.
pub async fn push(
    client: &Client,
    content_root: &std::path::Path,
    reference: &ImageRef,
    progress: Arc<dyn Progress>,
) -> Result<Digest, LocalError> {
    let blobs = Arc::new(open(content_root, "push")?);
    let store = blobs.store();
    let top = store
        .resolve_ref(reference)?
        .ok_or_else(|| LocalError::NoSuchImage(reference.to_string()))?;
    let read = |d: &Digest| store.read_blob(d, kontti_image::media::MAX_MANIFEST_SIZE);
    let mut image = PushImage {
        top: (
            top.digest.clone(),
            top.media_type.clone(),
            read(&top.digest)?,
        ),
        children: Vec::new(),
        blobs: Vec::new(),
        mount_from: mount_source(store, reference),
    };
    let mut manifests = Vec::new();
    if media::is_index(&top.media_type) {
        let doc = parse(&top.digest, &image.top.2)?;
        let entries = doc["manifests"].as_array().cloned().unwrap_or_default();
        let mut present = Vec::new();
        for e in entries {
            let d: Digest = serde_json::from_value(e["digest"].clone()).map_err(|e| {
                LocalError::BadManifest {
                    digest: top.digest.clone(),
                    reason: e.to_string(),
                }
            })?;
            let m = e["mediaType"]
                .as_str()
                .unwrap_or(media::OCI_MANIFEST)
                .to_owned();
            if store.has(&d) {
                present.push((d, m));
            }
        }
        // Only the platforms pulled are local: push the whole index when all
        // are, else the one manifest that is.
        let total = doc["manifests"].as_array().map_or(0, Vec::len);
        if present.len() == total {
            for (d, m) in present {
                let bytes = read(&d)?;
                manifests.push((d.clone(), bytes.clone()));
                image.children.push((d, m, bytes));
            }
        } else if let Some((d, m)) = present.into_iter().next() {
            let bytes = read(&d)?;
            manifests.push((d.clone(), bytes.clone()));
            image.top = (d, m, bytes);
        } else {
            return Err(LocalError::NoSuchImage(format!(
                "{reference} (no manifest of its index is local)"
            )));
        }
    } else {
        manifests.push((top.digest.clone(), image.top.2.clone()));
    }
    for (d, bytes) in manifests {
        let doc = parse(&d, &bytes)?;
        let mut descs = vec![doc["config"].clone()];
        descs.extend(doc["layers"].as_array().cloned().unwrap_or_default());
        for v in descs {
            let desc: Descriptor =
                serde_json::from_value(v).map_err(|e| LocalError::BadManifest {
                    digest: d.clone(),
                    reason: e.to_string(),
                })?;
            if !image.blobs.contains(&desc) {
                image.blobs.push(desc);
            }
        }
    }
    Ok(client
        .push(reference, &image, blobs.clone(), progress)
        .await?)
}

fn parse(d: &Digest, bytes: &[u8]) -> Result<serde_json::Value, LocalError> {
    serde_json::from_slice(bytes).map_err(|e| LocalError::BadManifest {
        digest: d.clone(),
        reason: e.to_string(),
    })
}

/// Another repository of the same registry this store has an image from:
/// blobs shared with it can be mounted instead of uploaded.
fn mount_source(store: &kontti_image::ContentStore, reference: &ImageRef) -> Option<String> {
    let refs = store.refs().ok()?;
    refs.into_iter()
        .filter_map(|r| r.name)
        .find(|n| n.registry() == reference.registry() && n.repository() != reference.repository())
        .map(|n| n.repository().to_owned())
}
