//! The XDR wire protocol (XDR-PROTOCOL.md §1–§5): frames, the message header,
//! fields, ops, particles and Aerospike's msgpack.
//!
//! [`frame::cut`] finds whole frames in a stream buffer; [`parse`] turns one
//! into a borrowed [`Record`], inflating a compressed frame into a scratch
//! buffer first. Parsing validates the whole message — every field, every
//! op, every element of every list and map — so that encoders reading the
//! record afterwards cannot meet malformed data.
//!
//! [`parse_lazy`] checks the same up to the ops and leaves them to the
//! consumer: its [`LazyRecord`] hands out a `Record` only through
//! [`LazyRecord::validate`], and the `json` writer validates the ops as it
//! writes them (`Encoder::encode_lazy`), with the same errors.

pub mod field;
pub mod frame;
pub mod header;
pub mod msgpack;
pub mod op;
pub mod particle;

use std::io::Read;

use crate::error::{Error, ErrorKind};
use crate::record::{Action, Bins, Record, UserKey};
use frame::{FrameType, PROTO_HEADER};
use header::{MsgHeader, MSG_HEADER};

/// A body cap for callers without a configured one: a record is at most
/// 8 MiB in current servers, plus room for its fields and op headers.
pub const DEFAULT_MAX_BODY: usize = 9 << 20;

/// Bytes before the zlib stream in a type-4 body: the inflated size.
const INFLATED_SIZE: usize = 8;

/// Parses a whole type-3 or type-4 frame (8-byte proto header included).
///
/// A type-4 frame is inflated into `scratch` (its declared size checked
/// against `max_body` before anything is allocated) and the record borrows
/// `scratch`; a type-3 record borrows `frame`. Any other frame type is an
/// error ([`ErrorKind::WrongFrameType`]).
pub fn parse<'a>(
    frame: &'a [u8],
    scratch: &'a mut Vec<u8>,
    max_body: usize,
) -> Result<Record<'a>, Error> {
    parse_with(frame, scratch, max_body, parse_message)
}

/// `message` of `frame`, or of the frame inflated into `scratch` from a
/// type-4 `frame`.
#[inline(always)]
fn parse_with<'a, R>(
    frame: &'a [u8],
    scratch: &'a mut Vec<u8>,
    max_body: usize,
    message: impl FnOnce(&'a [u8]) -> Result<R, Error>,
) -> Result<R, Error> {
    match frame.get(1).copied() {
        Some(4) => {
            inflate(frame, max_body, &mut *scratch)?;
            let inner: &'a Vec<u8> = scratch;
            message(inner)
        }
        _ => message(frame),
    }
}

fn truncated(what: &'static str, need: usize, have: usize, at: usize) -> Error {
    Error::at(ErrorKind::Truncated { what, need, have }, at)
}

/// Checks a proto header for a frame of type `expected`; returns the body.
fn body_of(frame: &[u8], expected: FrameType) -> Result<&[u8], Error> {
    let Some(h) = frame.first_chunk::<PROTO_HEADER>() else {
        return Err(truncated("proto header", PROTO_HEADER, frame.len(), 0));
    };
    let (ty, len) = frame::check_header(h, usize::MAX)?;
    if ty != expected {
        return Err(Error::at(
            ErrorKind::WrongFrameType {
                expected: expected as u8,
                found: ty as u8,
            },
            1,
        ));
    }
    let body = &frame[PROTO_HEADER..];
    match body.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(truncated("frame body", len, body.len(), PROTO_HEADER)),
        std::cmp::Ordering::Greater => Err(Error::at(
            ErrorKind::TrailingBytes {
                extra: body.len() - len,
            },
            PROTO_HEADER + len,
        )),
        std::cmp::Ordering::Equal => Ok(body),
    }
}

/// What the fields of a message said.
#[derive(Default)]
struct Fields<'a> {
    namespace: Option<&'a str>,
    set: Option<&'a str>,
    user_key: Option<UserKey<'a>>,
    digest: Option<&'a [u8; 20]>,
    lut: Option<u64>,
}

/// Reads `n` fields starting at `start` of `frame`; returns them and the
/// position after the last. Inlined into both parsers, as it was into the
/// one before the lazy parser came (out of line it cost 50 instructions per
/// record).
#[inline(always)]
fn read_fields(frame: &[u8], start: usize, n: u16) -> Result<(Fields<'_>, usize), Error> {
    let mut f = Fields::default();
    // One cursor over the fields; positions only for offsets.
    let mut rest = frame.get(start..).unwrap_or_default();
    for _ in 0..n {
        let pos = frame.len() - rest.len();
        let Some((size, after)) = rest.split_first_chunk::<4>() else {
            return Err(truncated("field size", 4, rest.len(), pos));
        };
        let size = u32::from_be_bytes(*size) as usize;
        let Some((field, next)) = after.split_at_checked(size) else {
            return Err(truncated("field", size, after.len(), pos + 4));
        };
        let Some((&ty, data)) = field.split_first() else {
            return Err(Error::at(ErrorKind::EmptyField, pos));
        };
        let data_at = pos + 5;
        let utf8 = |what| {
            particle::utf8(data).map_err(|_| Error::at(ErrorKind::BadUtf8 { what }, data_at))
        };
        let fixed = |want: usize| {
            if data.len() == want {
                Ok(())
            } else {
                Err(Error::at(
                    ErrorKind::BadFieldSize {
                        ty,
                        len: data.len(),
                    },
                    pos,
                ))
            }
        };
        match ty {
            field::NAMESPACE => f.namespace = Some(utf8("namespace")?),
            field::SET => f.set = Some(utf8("set name")?).filter(|s| !s.is_empty()),
            field::USER_KEY => f.user_key = Some(field::user_key(data, data_at)?),
            field::DIGEST => {
                fixed(20)?;
                f.digest = <&[u8; 20]>::try_from(data).ok();
            }
            field::LUT => {
                fixed(8)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(data);
                f.lut = Some(field::lut_to_unix_ms(u64::from_be_bytes(b)));
            }
            // Unknown types, and the transaction id, carry nothing sluice uses.
            _ => {}
        }
        rest = next;
    }
    Ok((f, frame.len() - rest.len()))
}

/// Parses a whole type-3 frame (8-byte proto header included), validating
/// every part of it.
pub fn parse_message(frame: &[u8]) -> Result<Record<'_>, Error> {
    parse_head(frame, |record, ops_at| {
        op::validate_all(record.bins.ops, record.bins.count, ops_at)?;
        Ok(record)
    })
}

/// [`parse`] but for the ops: the frame, the headers and the fields are
/// checked (the same errors, in the same order), and the ops region is
/// left to the consumer, which must validate it before reading a bin
/// ([`LazyRecord::validate`]).
pub fn parse_lazy<'a>(
    frame: &'a [u8],
    scratch: &'a mut Vec<u8>,
    max_body: usize,
) -> Result<LazyRecord<'a>, Error> {
    parse_with(frame, scratch, max_body, parse_message_lazy)
}

/// A record whose header and fields are parsed and checked but whose ops
/// are not validated yet: its metadata can be read (to route it), its bins
/// only through the `Record` [`LazyRecord::validate`] returns, or through
/// `Encoder::encode_lazy`, which validates them (the `json` writer as it
/// writes them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LazyRecord<'a> {
    /// The record, its bins over ops nobody has validated: private, so that
    /// no reader outside this crate can walk them.
    record: Record<'a>,
    /// Where the ops region starts in the frame (error offsets).
    ops_at: usize,
}

impl<'a> LazyRecord<'a> {
    pub fn namespace(&self) -> &'a str {
        self.record.namespace
    }
    pub fn set(&self) -> Option<&'a str> {
        self.record.set
    }
    pub fn digest(&self) -> [u8; 20] {
        self.record.digest
    }
    /// The record's last-update time (Unix ms), when the message carried one.
    pub fn lut(&self) -> Option<u64> {
        self.record.lut
    }

    /// The record, once every op is validated: the error [`parse`] returns
    /// for the same frame otherwise.
    pub fn validate(&self) -> Result<Record<'a>, Error> {
        let bins = self.record.bins;
        op::validate_all(bins.ops, bins.count, self.ops_at)?;
        Ok(self.record)
    }

    /// The record with its ops not validated: for writers that validate
    /// each op before they read it ([`LazyRecord::ops`]).
    pub(crate) fn unvalidated(&self) -> &Record<'a> {
        &self.record
    }

    /// The ops region, how many ops it must hold, and where it starts in
    /// the frame.
    pub(crate) fn ops(&self) -> (&'a [u8], u16, usize) {
        (self.record.bins.ops, self.record.bins.count, self.ops_at)
    }
}

/// [`parse_message`] but for the ops (see [`parse_lazy`]).
pub fn parse_message_lazy(frame: &[u8]) -> Result<LazyRecord<'_>, Error> {
    parse_head(frame, |record, ops_at| Ok(LazyRecord { record, ops_at }))
}

/// The record of a type-3 frame, its ops not validated, given to `then`
/// with where they start in the frame (a closure rather than a returned
/// pair, so that the record is built where the caller returns it).
#[inline(always)]
fn parse_head<'a, R>(
    frame: &'a [u8],
    then: impl FnOnce(Record<'a>, usize) -> Result<R, Error>,
) -> Result<R, Error> {
    let h = match well_formed_header(frame) {
        Some(h) => h,
        None => {
            // The same checks one by one, naming what is wrong.
            body_of(frame, FrameType::Message)?;
            MsgHeader::read(&frame[PROTO_HEADER..], PROTO_HEADER)?
        }
    };
    let action = action_of(h.info2)?;
    let (f, ops_at) = read_fields(frame, PROTO_HEADER + MSG_HEADER, h.n_fields)?;
    let namespace = f
        .namespace
        .ok_or(Error::at(ErrorKind::MissingNamespace, ops_at))?;
    let digest = match (f.digest, f.user_key) {
        (Some(d), _) => *d,
        (None, Some(k)) => field::digest(f.set, &k),
        (None, None) => return Err(Error::at(ErrorKind::MissingDigest, ops_at)),
    };
    let ops = frame.get(ops_at..).unwrap_or_default();
    then(
        Record {
            message: frame,
            info1: h.info1,
            info2: h.info2,
            info3: h.info3,
            action,
            generation: h.generation,
            record_ttl: h.record_ttl,
            namespace,
            set: f.set,
            user_key: f.user_key,
            digest,
            lut: f.lut,
            bins: Bins {
                ops,
                count: h.n_ops,
            },
        },
        ops_at,
    )
}

/// The message header of a type-3 frame whose proto header (version 2,
/// type 3, a body length equal to what follows it) and message header size
/// are right: what [`body_of`] and [`MsgHeader::read`] accept, checked in a
/// few word compares. `None` for anything else, without saying why.
#[inline]
fn well_formed_header(frame: &[u8]) -> Option<MsgHeader> {
    let h = frame.first_chunk::<{ PROTO_HEADER + MSG_HEADER }>()?;
    let (proto, msg) = h.split_first_chunk::<PROTO_HEADER>()?;
    let proto = u64::from_be_bytes(*proto);
    let kind = (u64::from(frame::VERSION) << 8) | FrameType::Message as u64;
    let body_len = proto & ((1 << 48) - 1);
    if proto >> 48 != kind
        || body_len != (frame.len() - PROTO_HEADER) as u64
        || usize::from(msg[0]) != MSG_HEADER
    {
        return None;
    }
    MsgHeader::read(msg, PROTO_HEADER).ok()
}

/// Write or delete, from info2 (XDR-PROTOCOL.md §2).
fn action_of(info2: u8) -> Result<Action, Error> {
    use header::{INFO2_DELETE, INFO2_DURABLE_DELETE, INFO2_WRITE};
    if info2 & INFO2_WRITE == 0 {
        return Err(Error::at(ErrorKind::NotAWrite(info2), PROTO_HEADER + 2));
    }
    Ok(if info2 & INFO2_DELETE != 0 {
        Action::Delete {
            durable: info2 & INFO2_DURABLE_DELETE != 0,
        }
    } else {
        Action::Write
    })
}

/// Inflates a type-4 frame into `out` (cleared first): the inner type-3
/// frame, its own 8-byte header included.
///
/// The declared inflated size is checked against `max_body` (plus the inner
/// proto header) before `out` grows, and inflating stops one byte past the
/// declared size, so a zlib bomb costs at most the cap.
pub fn inflate(frame: &[u8], max_body: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    out.clear();
    let body = body_of(frame, FrameType::Compressed)?;
    let Some((size, zlib)) = body.split_first_chunk::<INFLATED_SIZE>() else {
        return Err(truncated(
            "inflated size",
            INFLATED_SIZE,
            body.len(),
            PROTO_HEADER,
        ));
    };
    let declared = u64::from_be_bytes(*size);
    let cap = max_body.saturating_add(PROTO_HEADER);
    let want = match usize::try_from(declared) {
        Ok(n) if n <= cap => n,
        _ => {
            return Err(Error::at(
                ErrorKind::TooLong {
                    len: declared,
                    max: cap,
                },
                PROTO_HEADER,
            ))
        }
    };
    out.reserve(want);
    let zlib_at = PROTO_HEADER + INFLATED_SIZE;
    let mut z = flate2::bufread::ZlibDecoder::new(zlib).take(declared + 1);
    z.read_to_end(out)
        .map_err(|_| Error::at(ErrorKind::BadZlib, zlib_at))?;
    if out.len() != want {
        return Err(Error::at(
            ErrorKind::InflatedSize {
                declared,
                actual: out.len() as u64,
            },
            zlib_at,
        ));
    }
    // The inner frame must be a complete type-3 frame of exactly that size.
    body_of(out, FrameType::Message).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quick header check takes exactly the frames whose proto and
    /// message headers the one-by-one checks accept, with the same header:
    /// every byte of both headers replaced by several values, every
    /// truncation and a trailing byte.
    #[test]
    fn the_quick_header_check_agrees_with_the_full_one() {
        let frame = crate::build::Message::standard().to_vec().unwrap();
        let full = |f: &[u8]| {
            body_of(f, FrameType::Message)
                .and_then(|_| MsgHeader::read(&f[PROTO_HEADER..], PROTO_HEADER))
                .ok()
        };
        assert!(well_formed_header(&frame).is_some());
        let mut taken = 0;
        let mut check = |f: &[u8]| {
            let quick = well_formed_header(f);
            assert_eq!(quick, full(f), "{:02x?}", &f[..f.len().min(30)]);
            taken += usize::from(quick.is_some());
        };
        for i in 0..PROTO_HEADER + MSG_HEADER {
            for b in [0x00, 0x01, 0x02, 0x03, 0x04, 0x16, 0x80, 0xff] {
                let mut f = frame.clone();
                f[i] = b;
                check(&f);
                f[i] = frame[i].wrapping_add(1);
                check(&f);
            }
        }
        for cut in 0..frame.len() {
            check(&frame[..cut]);
        }
        let mut longer = frame.clone();
        longer.push(0);
        check(&longer);
        // Bytes 9..30 (info bits, generation, ttl, counts) do not make a
        // header wrong: most of those replacements were taken.
        assert!(taken > 300, "{taken}");
    }
}
