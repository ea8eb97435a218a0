//! OCI runtime library: namespaces, mounts, cgroups, capabilities, seccomp; synchronous.

pub mod cgroups;
