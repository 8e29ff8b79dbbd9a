//! The 22-byte message header that follows the proto header of a type-3
//! frame (XDR-PROTOCOL.md §2): its layout, the info bits that matter, and the
//! generation an ack echoes.

use super::frame::PROTO_HEADER;
use crate::error::{Error, ErrorKind};

/// The message header's own size, its first byte.
pub const MSG_HEADER: usize = 22;

/// info1: the write comes from XDR.
pub const INFO1_XDR: u8 = 0x10;
/// info2: write.
pub const INFO2_WRITE: u8 = 0x01;
/// info2: delete (with WRITE).
pub const INFO2_DELETE: u8 = 0x02;
/// info2: generation must equal.
pub const INFO2_GENERATION: u8 = 0x04;
/// info2: generation must be greater.
pub const INFO2_GENERATION_GT: u8 = 0x08;
/// info2: durable delete (with WRITE and DELETE).
pub const INFO2_DURABLE_DELETE: u8 = 0x10;
/// info2: create only.
pub const INFO2_CREATE_ONLY: u8 = 0x20;
/// info3: last message of a response.
pub const INFO3_LAST: u8 = 0x01;
/// info3: update only.
pub const INFO3_UPDATE_ONLY: u8 = 0x08;
/// info3: create or replace.
pub const INFO3_CREATE_OR_REPLACE: u8 = 0x10;
/// info3: replace only.
pub const INFO3_REPLACE_ONLY: u8 = 0x20;

/// The message header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgHeader {
    pub info1: u8,
    pub info2: u8,
    pub info3: u8,
    pub info4: u8,
    pub result: u8,
    pub generation: u32,
    pub record_ttl: u32,
    pub transaction_ttl: u32,
    pub n_fields: u16,
    pub n_ops: u16,
}

fn be32(b: &[u8; MSG_HEADER], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl MsgHeader {
    /// Reads the header at the start of `msg` (the bytes after the proto
    /// header); `base` is where `msg` starts in the frame, for error offsets.
    pub fn read(msg: &[u8], base: usize) -> Result<Self, Error> {
        let Some(h) = msg.first_chunk::<MSG_HEADER>() else {
            return Err(Error::at(
                ErrorKind::Truncated {
                    what: "message header",
                    need: MSG_HEADER,
                    have: msg.len(),
                },
                base,
            ));
        };
        if usize::from(h[0]) != MSG_HEADER {
            return Err(Error::at(ErrorKind::BadHeaderSize(h[0]), base));
        }
        Ok(MsgHeader {
            info1: h[1],
            info2: h[2],
            info3: h[3],
            info4: h[4],
            result: h[5],
            generation: be32(h, 6),
            record_ttl: be32(h, 10),
            transaction_ttl: be32(h, 14),
            n_fields: u16::from_be_bytes([h[18], h[19]]),
            n_ops: u16::from_be_bytes([h[20], h[21]]),
        })
    }

    /// Appends the 22 header bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[
            MSG_HEADER as u8,
            self.info1,
            self.info2,
            self.info3,
            self.info4,
            self.result,
        ]);
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.extend_from_slice(&self.record_ttl.to_be_bytes());
        out.extend_from_slice(&self.transaction_ttl.to_be_bytes());
        out.extend_from_slice(&self.n_fields.to_be_bytes());
        out.extend_from_slice(&self.n_ops.to_be_bytes());
    }
}

/// The request's generation (echoed in its ack), read from where a type-3
/// frame keeps it. 0 when the frame is too short to hold one, and 0 for a
/// compressed (type 4) frame: its generation is inside the zlib stream, and
/// inflating here would cost what the parse costs anyway (XDR only echoes
/// the value, it does not check it; a caller that wants the real one uses
/// the parsed record's).
pub fn generation_of(frame: &[u8]) -> u32 {
    if frame.get(1) == Some(&(super::frame::FrameType::Compressed as u8)) {
        return 0;
    }
    let at = PROTO_HEADER + 6;
    match frame.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}
