//! Containers on one host, used by the `kontti` command line and the node agent.
