//! The ack (XDR-PROTOCOL.md §6): the 30-byte type-3 message with a bare
//! 22-byte header that XDR reads as the answer to one request, and the result
//! codes XDR acts on.

use crate::error::{Error, ErrorKind};
use crate::wire::frame::{PROTO_HEADER, VERSION};
use crate::wire::header::{MsgHeader, MSG_HEADER};

/// Bytes of one ack on the wire.
pub const ACK_LEN: usize = PROTO_HEADER + MSG_HEADER;

/// Delivered (or deliberately skipped): XDR completes the record.
pub const OK: u8 = 0;
/// "Key not found": XDR also treats it as complete.
pub const NOT_FOUND: u8 = 2;
/// Parameter error: the record can never be delivered; XDR abandons it.
pub const PARAMETER: u8 = 4;
/// Unavailable: delivery failed or timed out; XDR retries.
pub const UNAVAILABLE: u8 = 11;

/// Every ack's bytes but its result code and generation: the proto
/// header, then a bare message header (header size 22, no fields, no ops).
const TEMPLATE: [u8; ACK_LEN] = {
    let mut t = [0u8; ACK_LEN];
    t[0] = VERSION;
    t[1] = 3;
    t[7] = MSG_HEADER as u8;
    t[PROTO_HEADER] = MSG_HEADER as u8;
    t
};
/// Where the result code and the generation sit in an ack.
const RESULT_AT: usize = PROTO_HEADER + 5;
const GENERATION_AT: usize = PROTO_HEADER + 6;

/// One ack answering a request of generation `generation`: the template
/// with two fields patched (acks are written one per record, so they are
/// not built field by field through [`MsgHeader::write`]).
#[inline]
pub fn frame(result: u8, generation: u32) -> [u8; ACK_LEN] {
    let mut a = TEMPLATE;
    a[RESULT_AT] = result;
    a[GENERATION_AT..GENERATION_AT + 4].copy_from_slice(&generation.to_be_bytes());
    a
}

/// Appends one ack answering a request of generation `generation`.
pub fn write(out: &mut Vec<u8>, result: u8, generation: u32) {
    out.extend_from_slice(&frame(result, generation));
}

/// True for result codes that make XDR retry the record.
pub fn is_retry(result: u8) -> bool {
    matches!(result, 8 | 9 | 11 | 14 | 18 | 80)
}

/// True for result codes that make XDR consider the record done.
pub fn is_done(result: u8) -> bool {
    matches!(result, OK | NOT_FOUND)
}

/// An ack, decoded (for the generator, which plays XDR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckView {
    pub result: u8,
    pub generation: u32,
}

/// Reads one whole 30-byte ack frame.
pub fn read(frame: &[u8]) -> Result<AckView, Error> {
    let Some(b) = frame.first_chunk::<ACK_LEN>() else {
        return Err(Error::at(
            ErrorKind::Truncated {
                what: "ack",
                need: ACK_LEN,
                have: frame.len(),
            },
            0,
        ));
    };
    if frame.len() != ACK_LEN {
        return Err(Error::at(
            ErrorKind::BadAck {
                why: "longer than 30 bytes",
            },
            ACK_LEN,
        ));
    }
    if b[0] != VERSION {
        return Err(Error::at(ErrorKind::BadVersion(b[0]), 0));
    }
    if b[1] != 3 {
        return Err(Error::at(
            ErrorKind::WrongFrameType {
                expected: 3,
                found: b[1],
            },
            1,
        ));
    }
    if b[2..PROTO_HEADER] != [0, 0, 0, 0, 0, MSG_HEADER as u8] {
        return Err(Error::at(
            ErrorKind::BadAck {
                why: "body length is not 22",
            },
            2,
        ));
    }
    let h = MsgHeader::read(&b[PROTO_HEADER..], PROTO_HEADER)?;
    if h.n_fields != 0 || h.n_ops != 0 {
        return Err(Error::at(
            ErrorKind::BadAck {
                why: "carries fields or ops",
            },
            26,
        ));
    }
    Ok(AckView {
        result: h.result,
        generation: h.generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template is the message header written field by field.
    #[test]
    fn an_ack_is_its_header_written_field_by_field() {
        for (result, generation) in [
            (OK, 0),
            (UNAVAILABLE, 1),
            (PARAMETER, 0xdead_beef),
            (2, u32::MAX),
        ] {
            let mut want = vec![VERSION, 3, 0, 0, 0, 0, 0, MSG_HEADER as u8];
            MsgHeader {
                info1: 0,
                info2: 0,
                info3: 0,
                info4: 0,
                result,
                generation,
                record_ttl: 0,
                transaction_ttl: 0,
                n_fields: 0,
                n_ops: 0,
            }
            .write(&mut want);
            let mut out = vec![7];
            write(&mut out, result, generation);
            assert_eq!(&out[1..], &want[..]);
            assert_eq!(read(&out[1..]).unwrap(), AckView { result, generation });
        }
    }
}
