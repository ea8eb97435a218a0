//! Content store, snapshotters, safe layer unpacking, registry client and server.
