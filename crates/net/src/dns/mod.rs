//! The per-network DNS responder: answers A and PTR queries (and AAAA with no
//! data) for the containers of one network from a records file that the
//! network code rewrites atomically on every connect and disconnect; the
//! responder notices a new file on the next query. Other names are forwarded
//! to upstream resolvers only when some are configured; otherwise they get
//! NXDOMAIN.
//!
//! It runs as the small `kontti-dns` helper process (std only, one thread for
//! UDP, one per TCP connection), listening on the network's gateway address.

pub mod message;
mod records;
mod server;

pub use records::{Record, RecordsFile};
pub use server::{Responder, ServeError};
