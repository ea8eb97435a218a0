//! OCI runtime library: namespaces, mounts, cgroups, capabilities, seccomp; synchronous.
//!
//! This crate creates and manages containers from OCI bundles, following the
//! runtime spec's lifecycle (creating → created → running → stopped) with
//! state under a root directory. It is used by `kontti-runc` and, later, by
//! the per-container supervisor: both are single-threaded processes, and the
//! library's contract is that it is called from one (it forks without
//! re-exec). It does not pull images, set up networks or supervise
//! containers after `run` returns.
//!
//! Entry points: [`container::create`], [`container::run`], [`ops`] (start,
//! state, kill, delete, list, ps, pause, resume, update), [`exec::exec`].

pub mod cgroups;
pub mod seccomp;

mod caps;
mod cgroupfs;
mod channel;
pub mod config;
pub mod container;
mod error;
pub mod exec;
mod hooks;
mod init;
mod mounts;
mod namespaces;
pub mod ops;
mod process;
mod rootfs;
mod seccomp_glue;
pub mod state;
pub mod sys;
pub mod templates;
mod tty_proxy;

pub use error::RuntimeError;
