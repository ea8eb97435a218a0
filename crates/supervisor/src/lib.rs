//! The per-container supervisor and the protocol spoken with it.
