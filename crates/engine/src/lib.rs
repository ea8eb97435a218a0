//! Containers on one host, used by the `kontti` command line and the node agent.
//!
//! The engine keeps a record per container under `R/containers/<id>/`
//! ([`container`]), turns an image's config and the user's options into an
//! OCI spec with docker's default security profile ([`spec`]), and runs each
//! container under its own `kontti-supervisor` process ([`lifecycle`]):
//! containers outlive the command that started them, and the supervisor's
//! exit command brings the engine back to record the exit and apply the
//! restart policy. Volumes ([`volume`]) and networks ([`network`]) are set
//! up per container. The engine is synchronous (no async runtime) and never
//! forks a container itself.
//!
//! It does not pull images (the CLI does, before `create`) and does not
//! decide restarts of pods (the node agent does).

pub mod attach;
pub mod container;
mod container_fs;
mod control;
pub mod cp;
mod error;
pub mod events;
pub mod exec;
pub mod health;
pub mod lifecycle;
pub mod logs;
pub mod network;
pub mod options;
pub mod ps;
pub mod restore;
pub mod spec;
pub mod user;
pub mod volume;

pub use container::{ContainerRecord, ContainerState, Containers, Status};
pub use error::{EngineError, Result};
pub use kontti_runtime::cgroups::CgroupStats;
pub use lifecycle::{CreateRequest, Engine};
pub use options::{RestartPolicy, RunOptions};
