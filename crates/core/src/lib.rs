//! Pure types shared by every kontti crate.
//!
//! This crate does no I/O. It holds identifiers ([`ContainerId`]), the error
//! classification every crate maps its errors onto ([`ErrorKind`]) and, as the
//! image work lands, digests and image references.

mod digest;
mod error_kind;
mod id;
mod reference;

pub use digest::{Algorithm, Digest, DigestError};
pub use error_kind::ErrorKind;
pub use id::{ContainerId, IdError};
pub use reference::{DEFAULT_REGISTRY, DEFAULT_TAG, ImageRef, ReferenceError};
