//! sluice-codec: the Aerospike XDR wire protocol and sluice's outbound formats.
//!
//! Pure: no I/O, no async. Read this crate in the order a record flows:
//!
//! - [`wire`] cuts frames out of a byte buffer ([`wire::frame`]), inflates
//!   compressed ones, and parses a message into a borrowed [`Record`] view
//!   (header, fields, ops, particles, Aerospike's msgpack). Every malformed
//!   input is an [`Error`] naming what is wrong and at which offset.
//! - [`ack`] writes the 30-byte answer XDR reads as the ack.
//! - [`build`] is the parser's inverse: it writes every frame the parser
//!   accepts. The generator and the tests use it.
//! - [`encode`] writes a record in one of the outbound formats (json,
//!   flat-json, message-pack, avro, xdr) into a reusable buffer.

pub mod ack;
pub mod build;
pub mod encode;
pub mod error;
pub mod record;
pub mod wire;

pub use error::{Error, ErrorKind};
pub use record::{Action, Bin, Bins, Collection, Geo, ListOrder, MapOrder, Record, UserKey, Value};
