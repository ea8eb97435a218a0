//! Registry client and kontti's built-in registry server (distribution spec v2).
//!
//! * [`client`]: pull (platform selection, concurrent resumable verified
//!   downloads), push (existing blobs skipped, cross-repository mounts,
//!   monolithic and chunked uploads), login; anonymous, basic and bearer-token
//!   auth, docker credential helpers, mirrors, insecure registries.
//! * [`server`]: `kontti registry serve`, the distribution API over on-disk
//!   storage whose blobs live in a [`blobs::BlobStore`].
//!
//! This crate moves blobs and manifests; it does not parse layers, unpack
//! them or name images locally: that is `kontti-image`.

pub mod blobs;
pub mod client;
pub mod local;
pub mod media;
pub mod server;
