//! Framing (XDR-PROTOCOL.md §1): the 8-byte proto header, and cutting whole
//! frames out of a stream buffer without copying them.

use crate::error::{Error, ErrorKind};

/// Bytes in the proto header that starts every frame.
pub const PROTO_HEADER: usize = 8;
/// The only proto version Aerospike speaks.
pub const VERSION: u8 = 2;

/// What a frame carries (byte 1 of the proto header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Info = 1,
    Security = 2,
    Message = 3,
    Compressed = 4,
}

impl FrameType {
    /// The frame type for a proto header type byte, if it is one.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(FrameType::Info),
            2 => Some(FrameType::Security),
            3 => Some(FrameType::Message),
            4 => Some(FrameType::Compressed),
            _ => None,
        }
    }
}

/// One whole frame, borrowed from the stream buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub ty: FrameType,
    /// The whole frame, 8-byte proto header included.
    pub bytes: &'a [u8],
}

/// The body length a proto header declares (48-bit big-endian).
pub(crate) fn body_len(header: &[u8; PROTO_HEADER]) -> u64 {
    header[2..]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Checks a proto header: version, type, and body length against `max_body`.
pub(crate) fn check_header(
    header: &[u8; PROTO_HEADER],
    max_body: usize,
) -> Result<(FrameType, usize), Error> {
    if header[0] != VERSION {
        return Err(Error::at(ErrorKind::BadVersion(header[0]), 0));
    }
    let ty = FrameType::from_byte(header[1])
        .ok_or(Error::at(ErrorKind::UnknownFrameType(header[1]), 1))?;
    let len = body_len(header);
    match usize::try_from(len) {
        Ok(n) if n <= max_body => Ok((ty, n)),
        _ => Err(Error::at(ErrorKind::TooLong { len, max: max_body }, 2)),
    }
}

/// The first complete frame of `buf`; `Ok(None)` while it is partial (read
/// more bytes and call again).
///
/// Err when `buf` cannot be framed — version not 2, unknown type, body over
/// `max_body` — and the session must close the connection. The checks run on
/// as many header bytes as have arrived, so a bad peer is refused early, and
/// the length is checked before the caller could size anything by it.
pub fn cut(buf: &[u8], max_body: usize) -> Result<Option<Frame<'_>>, Error> {
    if let Some(&v) = buf.first() {
        if v != VERSION {
            return Err(Error::at(ErrorKind::BadVersion(v), 0));
        }
    }
    if let Some(&t) = buf.get(1) {
        if FrameType::from_byte(t).is_none() {
            return Err(Error::at(ErrorKind::UnknownFrameType(t), 1));
        }
    }
    let Some(header) = buf.first_chunk::<PROTO_HEADER>() else {
        return Ok(None);
    };
    let (ty, len) = check_header(header, max_body)?;
    // len <= max_body, so this cannot overflow on any sane cap; checked anyway.
    let Some(total) = len.checked_add(PROTO_HEADER) else {
        return Err(Error::at(
            ErrorKind::TooLong {
                len: len as u64,
                max: max_body,
            },
            2,
        ));
    };
    Ok(buf.get(..total).map(|bytes| Frame { ty, bytes }))
}
