//! The XDR wire protocol (XDR-PROTOCOL.md §1–§5): frames, the message header,
//! fields, ops, particles and Aerospike's msgpack.

pub mod field;
pub mod frame;
pub mod header;
pub mod msgpack;
pub mod op;
pub mod particle;
