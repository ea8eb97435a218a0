//! An image in the store, resolved to one platform: manifest, config, layers.

use kontti_core::{Digest, ErrorKind, ImageRef};

use crate::config::ImageConfigFile;
use crate::hash::chain_ids;
use crate::media::{
    Descriptor, Document, MAX_MANIFEST_SIZE, Manifest, MediaError, MediaKind, PlatformSpec,
    media_kind, parse_document, select_platform,
};
use crate::store::{ContentStore, StoreError};

/// Errors resolving an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image by that name.
    #[error("image {0} not found in the local store")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A document is invalid or of an unknown type.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The config does not parse.
    #[error("invalid image config {digest}: {reason}")]
    BadConfig {
        /// The config blob.
        digest: Digest,
        /// The parse error.
        reason: String,
    },
    /// Layers and diffIDs disagree.
    #[error("image {manifest} has {layers} layers but its config lists {diff_ids} diff ids")]
    LayerCountMismatch {
        /// The manifest.
        manifest: Digest,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// A short id matches several images.
    #[error("image id prefix {0:?} is ambiguous: it matches several images")]
    Ambiguous(String),
    /// A name that is not a valid reference.
    #[error(transparent)]
    Reference(#[from] kontti_core::ReferenceError),
    /// Removing by id an image that has several names.
    #[error(
        "image {id} is referenced by several names ({names}); remove them by name or use --force"
    )]
    MultipleNames {
        /// The image id (short).
        id: String,
        /// Its names.
        names: String,
    },
    /// A snapshot operation failed.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
}

impl ImageError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::Store(e) => e.kind(),
            ImageError::Media(e) => e.kind(),
            ImageError::BadConfig { .. } | ImageError::LayerCountMismatch { .. } => {
                ErrorKind::Invalid
            }
            ImageError::Ambiguous(_) | ImageError::Reference(_) => ErrorKind::Invalid,
            ImageError::MultipleNames { .. } => ErrorKind::Conflict,
            ImageError::Snapshot(e) => e.kind(),
        }
    }
}

/// An image resolved to one platform.
#[derive(Debug, Clone)]
pub struct Image {
    /// What the name (or digest) points at: a manifest or an index.
    pub target: Descriptor,
    /// The platform manifest's descriptor (equal to `target` for a plain manifest).
    pub manifest_descriptor: Descriptor,
    /// The platform manifest.
    pub manifest: Manifest,
    /// The parsed config.
    pub config: ImageConfigFile,
}

impl Image {
    /// Resolves a reference in the store for the host platform.
    pub fn open(store: &ContentStore, r: &ImageRef) -> Result<Image, ImageError> {
        Image::open_for(store, r, &PlatformSpec::host())
    }

    /// Resolves a reference in the store for `platform`.
    pub fn open_for(
        store: &ContentStore,
        r: &ImageRef,
        platform: &PlatformSpec,
    ) -> Result<Image, ImageError> {
        let target = match store.resolve_ref(r)? {
            Some(t) => t,
            None => match r.digest() {
                // A digest reference to content that is present but unnamed.
                Some(d) if store.has(d) => {
                    let data = store.read_blob(d, MAX_MANIFEST_SIZE)?;
                    let mt = match parse_document("", d, &data)? {
                        Document::Manifest(m) => m
                            .media_type
                            .unwrap_or_else(|| crate::media::OCI_MANIFEST.into()),
                        Document::Index(i) => i
                            .media_type
                            .unwrap_or_else(|| crate::media::OCI_INDEX.into()),
                    };
                    Descriptor::new(&mt, d.clone(), data.len() as u64)
                }
                _ => return Err(ImageError::NotFound(r.familiar())),
            },
        };
        Image::from_descriptor(store, target, platform)
    }

    /// Resolves a manifest or index descriptor for `platform`.
    pub fn from_descriptor(
        store: &ContentStore,
        target: Descriptor,
        platform: &PlatformSpec,
    ) -> Result<Image, ImageError> {
        let data = store.read_blob(&target.digest, MAX_MANIFEST_SIZE)?;
        let (manifest_descriptor, manifest) =
            match parse_document(&target.media_type, &target.digest, &data)? {
                Document::Manifest(m) => (target.clone(), m),
                Document::Index(i) => {
                    let d = select_platform(&i, &target.digest, platform)?.clone();
                    let data = store.read_blob(&d.digest, MAX_MANIFEST_SIZE)?;
                    match parse_document(&d.media_type, &d.digest, &data)? {
                        Document::Manifest(m) => (d, m),
                        Document::Index(_) => {
                            return Err(MediaError::UnknownMediaType {
                                media_type: d.media_type,
                                what: "a platform manifest (nested indexes are not supported)",
                            }
                            .into());
                        }
                    }
                }
            };
        if media_kind(&manifest.config.media_type) != MediaKind::Config {
            return Err(MediaError::UnknownMediaType {
                media_type: manifest.config.media_type.clone(),
                what: "an image config",
            }
            .into());
        }
        for l in &manifest.layers {
            if !matches!(media_kind(&l.media_type), MediaKind::Layer(_)) {
                return Err(MediaError::UnknownMediaType {
                    media_type: l.media_type.clone(),
                    what: "a layer",
                }
                .into());
            }
        }
        let cd = &manifest.config.digest;
        let raw = store.read_blob(cd, MAX_MANIFEST_SIZE)?;
        let config: ImageConfigFile =
            serde_json::from_slice(&raw).map_err(|e| ImageError::BadConfig {
                digest: cd.clone(),
                reason: e.to_string(),
            })?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::LayerCountMismatch {
                manifest: manifest_descriptor.digest.clone(),
                layers: manifest.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        Ok(Image {
            target,
            manifest_descriptor,
            manifest,
            config,
        })
    }

    /// The image id: the config digest, as docker shows it.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }

    /// Layer descriptors, base first.
    pub fn layers(&self) -> &[Descriptor] {
        &self.manifest.layers
    }

    /// Uncompressed layer digests, base first.
    pub fn diff_ids(&self) -> &[Digest] {
        &self.config.rootfs.diff_ids
    }

    /// Chain ids, base first: the names of the image's snapshots.
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(self.diff_ids())
    }

    /// Bytes the image occupies in the content store (config and layers).
    pub fn size(&self) -> u64 {
        self.manifest.config.size + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }
}
