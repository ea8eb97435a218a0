//! Pure types shared by every kontti crate.
//!
//! This crate does no I/O. It holds identifiers ([`ContainerId`]), the error
//! classification every crate maps its errors onto ([`ErrorKind`]) and, as the
//! image work lands, digests and image references.

mod error_kind;
mod id;

pub use error_kind::ErrorKind;
pub use id::{ContainerId, IdError};
