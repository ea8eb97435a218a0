//! Revisioned key-value store with watch: embedded and etcd backends, one test suite.
