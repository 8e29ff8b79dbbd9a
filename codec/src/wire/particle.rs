//! Particle types (XDR-PROTOCOL.md §5) and decoding of bin values.

pub const NULL: u8 = 0;
pub const INTEGER: u8 = 1;
pub const FLOAT: u8 = 2;
pub const STRING: u8 = 3;
pub const BLOB: u8 = 4;
pub const JAVA_BLOB: u8 = 7;
pub const CSHARP_BLOB: u8 = 8;
pub const PYTHON_BLOB: u8 = 9;
pub const RUBY_BLOB: u8 = 10;
pub const PHP_BLOB: u8 = 11;
pub const ERLANG_BLOB: u8 = 12;
pub const BOOL: u8 = 17;
pub const HLL: u8 = 18;
pub const MAP: u8 = 19;
pub const LIST: u8 = 20;
pub const GEOJSON: u8 = 23;
