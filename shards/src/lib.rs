//! sluice-shards: the thread-per-core data plane.
