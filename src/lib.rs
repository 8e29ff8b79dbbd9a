//! The `sluice` binary's library half: the YAML config compiled into the
//! shards' plan (`config`) and the control thread (`control`). Kept as a
//! library so both are unit-tested without building the whole command.

pub mod config;
pub mod control;
