//! Every way a frame or record can be malformed, with the offset where it was
//! found. Parsing never panics: each rejection is one of these.

/// A malformed input: what is wrong and where.
///
/// `offset` counts bytes from the start of the frame being parsed, 8-byte
/// proto header included. For a compressed (type 4) frame, errors found after
/// inflating count from the start of the inflated type-3 frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at offset {offset}")]
pub struct Error {
    pub kind: ErrorKind,
    pub offset: usize,
}

impl Error {
    pub(crate) fn at(kind: ErrorKind, offset: usize) -> Self {
        Error { kind, offset }
    }
}

/// What is wrong with an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("input ends early: {what} needs {need} bytes, {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("proto version {0} is not 2: the peer does not speak the Aerospike protocol")]
    BadVersion(u8),
    #[error("unknown proto frame type {0} (expected 1 info, 2 security, 3 message, 4 compressed)")]
    UnknownFrameType(u8),
    #[error("frame type {found} where a type {expected} frame was expected")]
    WrongFrameType { expected: u8, found: u8 },
    #[error("message header size {0} is not 22")]
    BadHeaderSize(u8),
    #[error("frame body of {len} bytes is over the configured cap of {max} bytes")]
    TooLong { len: u64, max: usize },
    #[error("{extra} bytes follow the last op of the message")]
    TrailingBytes { extra: usize },
    #[error("unknown particle type {0}")]
    UnknownParticle(u8),
    #[error("{what} is not valid UTF-8")]
    BadUtf8 { what: &'static str },
    #[error("malformed msgpack in a list or map: {why}")]
    BadMsgpack { why: &'static str },
    #[error("lists and maps nested more than {max} levels deep")]
    TooDeep { max: usize },
    #[error("compressed frame holds a malformed zlib stream")]
    BadZlib,
    #[error("compressed frame declares {declared} inflated bytes but holds {actual}")]
    InflatedSize { declared: u64, actual: u64 },
    #[error("a value of particle type {ptype} cannot be {len} bytes long")]
    BadValueSize { ptype: u8, len: usize },
    #[error("field type {ty} cannot be {len} bytes long")]
    BadFieldSize { ty: u8, len: usize },
    #[error("field size 0 (the size counts the type byte, so it is at least 1)")]
    EmptyField,
    #[error("op size {size} cannot hold its {need}-byte name and bin LUT")]
    BadOpSize { size: u32, need: usize },
    #[error("op code {0} in a change notification (only 2, WRITE, is expected)")]
    UnexpectedOp(u8),
    #[error("user key of particle type {0} (expected 1 integer, 2 float, 3 string or 4 blob)")]
    BadUserKey(u8),
    #[error("info2 {0:#04x} has no WRITE bit: neither a write nor a delete")]
    NotAWrite(u8),
    #[error("message has no namespace field")]
    MissingNamespace,
    #[error("message has neither a digest field nor a user key to compute one")]
    MissingDigest,
    #[error("not a 30-byte ack: {why}")]
    BadAck { why: &'static str },
}
