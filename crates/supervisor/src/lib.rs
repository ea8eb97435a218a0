//! The per-container supervisor and the protocol spoken with it.
//!
//! `kontti-supervisor` (the binary of this crate) is a small, single-threaded
//! process per container: it creates the container through
//! [`kontti_runtime`] with stdio it owns, serves the [`protocol`] on an
//! attach socket, writes the container's output to a CRI log ([`crilog`]),
//! reaps it, records its exit and OOM kills ([`exit`]) and deletes it. The
//! engine starts one with [`spawn::SupervisorCommand`] and talks to it only
//! through files and the socket, so containers outlive the command that
//! started them. [`netns`] pins network namespaces on paths. With a health
//! check, its loop also times the engine's one-shot check command
//! ([`health`]).
//!
//! It does not decide restarts (the engine or the node agent does), does
//! not send signals on the engine's behalf (the engine calls
//! `kontti_runtime::ops::kill`), and has no async runtime: it uses std, the
//! runtime library and `poll(2)`.

pub mod args;
pub mod crilog;
pub mod daemon;
pub mod exec;
pub mod exit;
pub mod health;
pub mod netns;
pub mod protocol;
mod pump;
pub mod run;
pub mod sockpath;
pub mod spawn;
mod stdio;
mod sys;
pub mod timestamp;

pub use timestamp::Timestamp;
