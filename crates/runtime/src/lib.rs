//! OCI runtime library: namespaces, mounts, cgroups, capabilities, seccomp; synchronous.
