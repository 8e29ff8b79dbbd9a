//! sluice-shards: the thread-per-core data plane.
//!
//! One glommio executor per core ("shard"), pinned; each owns its XDR
//! sessions and its destination pools. It takes a compiled [`plan::Plan`],
//! never YAML.

pub mod plan;
pub mod tls;
