//! Node-side image handling: the content store, media types, snapshots and
//! safe layer unpacking. Synchronous (no async runtime); the registry client
//! and server live in `kontti-registry` on top of this crate.
//!
//! # Content store ([`ContentStore`])
//! An OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/<alg>/<hex>`) plus `ingest/`, `leases/` and `locks/`. Every blob
//! enters through a [`BlobWriter`]: streamed (`io::Write`), hashed on the way,
//! its digest and size verified on [`BlobWriter::commit`], fsynced and renamed
//! into place. A writer keyed by an expected digest resumes a partial ingest
//! left by an earlier (maybe killed) writer ([`BlobWriter::offset`]).
//! Every write happens under a [`Lease`]: a flock-held file listing the
//! digests an in-progress pull, build or import protects, so that
//! [`ContentStore::gc`] in another process never removes them.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::io::Write;
//! use kontti_image::{ContentStore, Descriptor, media};
//! let store = ContentStore::open("/var/lib/kontti/content")?;
//! let lease = store.lease("pull")?;
//! let expected: kontti_core::Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
//! if !store.protect_if_present(&lease, &expected)? {
//!     let mut w = store.ingest(&lease, Some(&expected), Some(0))?;
//!     // a download resumes at w.offset()
//!     w.write_all(b"")?;
//!     w.commit()?; // verifies digest and size, fsyncs, renames
//! }
//! let r = kontti_core::ImageRef::parse("busybox")?;
//! # let manifest = Descriptor::new(media::OCI_MANIFEST, expected, 0);
//! store.set_ref(&r, &manifest)?; // tag -> manifest, in index.json
//! drop(lease); // from here on only the name keeps the content
//! # Ok(()) }
//! ```
//!
//! # Images
//! [`media`] parses OCI manifests and indexes and Docker schema2 manifests
//! and manifest lists, classifies media types and selects a platform;
//! [`ImageConfigFile`] is the typed config; [`Image::open`] resolves a name to
//! manifest, config, layer descriptors, diffIDs and chain ids.
//!
//! # Snapshots and unpacking
//! [`snapshot`] defines the [`Snapshotter`](snapshot::Snapshotter) trait
//! (vocabulary and lifecycle in its docs) with an overlayfs and a plain-copy
//! implementation; [`unpack`] applies layers confined to their directory
//! ([`fsroot`]), verifying diffIDs; [`rootfs`] ties them together: each layer
//! unpacked once, keyed by chain id, and a container rootfs on top.
//!
//! This crate does not talk to registries and does not run containers.

pub mod archive;
pub mod change;
pub mod config;
pub mod fsroot;
mod gc;
pub mod hash;
mod image;
pub mod import;
mod layer_size;
mod lease;
pub mod local;
pub mod media;
mod refs;
pub mod rootfs;
pub mod snapshot;
mod store;
pub mod time;
pub mod unpack;

pub use config::{Healthcheck, ImageConfig, ImageConfigFile};
pub use gc::GcReport;
pub use image::{Image, ImageError};
pub use lease::Lease;
pub use media::{Descriptor, Index, Manifest, MediaError, Platform, PlatformSpec};
pub use refs::NamedRef;
pub use store::{BlobWriter, ContentStore, StoreError};

/// Where the content store lives under a kontti state root (`--root`).
pub fn content_dir(state_root: &std::path::Path) -> std::path::PathBuf {
    state_root.join("content")
}
