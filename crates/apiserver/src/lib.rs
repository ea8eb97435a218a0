//! The Kubernetes-compatible API server over the kontti store.
