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

use crate::error::{Error, ErrorKind};
use crate::record::{Collection, Geo, ListOrder, MapOrder, Value};
use crate::wire::msgpack::{Elem, Reader, MAX_DEPTH};

/// Decodes and fully validates one bin value of particle type `ptype`;
/// `base` is where `bytes` start in the frame (for error offsets).
pub fn decode(ptype: u8, bytes: &[u8], base: usize) -> Result<Value<'_>, Error> {
    let value = decode_head(ptype, bytes, base, Utf8::Check)?;
    match value {
        Value::List { items, .. } => {
            validate_body(items, 1, base + (bytes.len() - items.body.len()))?
        }
        Value::Map { items, .. } => {
            validate_body(items, 2, base + (bytes.len() - items.body.len()))?
        }
        _ => {}
    }
    Ok(value)
}

/// Walks the elements of a collection: exactly `len × per` values, nothing after.
fn validate_body(items: Collection<'_>, per: u64, base: usize) -> Result<(), Error> {
    let mut r = Reader::with_base(items.body, base);
    // The collection itself is level 1: its elements may nest one less.
    r.skip_nested(u64::from(items.len) * per, MAX_DEPTH - 1)?;
    let extra = items.body.len() - r.position();
    if extra != 0 {
        return Err(Error::at(
            ErrorKind::BadMsgpack {
                why: "bytes follow the last element of a list or map",
            },
            base + r.position(),
        ));
    }
    Ok(())
}

/// The high bit of every byte of a word.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// `TAIL_HIGH[n]`: the high bits of the last `n` bytes of a little-endian
/// word (its top `n` bytes); none for 0.
static TAIL_HIGH: [u64; 9] = {
    let mut t = [0; 9];
    let mut n = 1;
    while n <= 8 {
        t[n] = HIGH << (8 * (8 - n));
        n += 1;
    }
    t
};

fn word(b: &[u8; 8]) -> u64 {
    u64::from_le_bytes(*b)
}

/// True when every byte is below 0x80. Short text (bin names, keys, most
/// values) is tested as one or two overlapping words, longer text two words
/// at a time: cheaper than `<[u8]>::is_ascii` on the lengths records hold.
#[inline]
pub(crate) fn is_ascii(bytes: &[u8]) -> bool {
    if let Some(last) = bytes.last_chunk::<8>() {
        let mut acc = word(last);
        let mut rest = bytes;
        while let Some((pair, r)) = rest.split_first_chunk::<16>() {
            if let Some((a, b)) = pair.split_first_chunk::<8>() {
                if let Ok(b) = <&[u8; 8]>::try_from(b) {
                    acc |= word(a) | word(b);
                }
            }
            rest = r;
        }
        if let Some(c) = rest.first_chunk::<8>() {
            acc |= word(c);
        }
        return acc & HIGH == 0;
    }
    if let (Some(first), Some(last)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        return (u32::from_le_bytes(*first) | u32::from_le_bytes(*last)) & 0x8080_8080 == 0;
    }
    bytes.iter().fold(0, |acc, &b| acc | b) < 0x80
}

/// True when the last `len` bytes of `head` are ASCII (false if `head` is
/// shorter). Text of up to 8 bytes with 8 bytes of `head` before its end
/// (the op or field header before a name or a value guarantees them) costs
/// one load and a mask instead of a byte loop.
#[inline]
pub(crate) fn is_ascii_ending(head: &[u8], len: usize) -> bool {
    if let (Some(mask), Some(w)) = (TAIL_HIGH.get(len), head.last_chunk::<8>()) {
        return word(w) & mask == 0;
    }
    head.len()
        .checked_sub(len)
        .and_then(|from| head.get(from..))
        .is_some_and(is_ascii)
}

/// Whether text still has to be checked for UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Utf8 {
    Check,
    /// The parser checked these very bytes already (`parse_message`
    /// validates every op before a `Bins` exists).
    Validated,
}

/// `bytes` as text: checked, or taken as the parser's validation left it.
#[allow(unsafe_code)]
#[inline]
pub(crate) fn text(bytes: &[u8], utf8: Utf8) -> Result<&str, std::str::Utf8Error> {
    match utf8 {
        Utf8::Check => checked_text(bytes),
        // SAFETY: `Validated` is passed only for bytes of an ops region or a
        // collection body that `parse_message` checked (the bin iterator
        // over `Bins`, whose fields only the parser fills, and readers from
        // `Collection::elements`). Measured: skipping the second check
        // saves about 1,000 instructions per standard record
        // (perf/RESULTS.md).
        Utf8::Validated => Ok(unsafe { std::str::from_utf8_unchecked(bytes) }),
    }
}

/// `bytes` as text, checked (kept out of line: [`text`] is inlined where
/// the parser's validation is taken as is).
#[allow(unsafe_code)]
#[inline(never)]
fn checked_text(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if is_ascii(bytes) {
        // ASCII (names, keys, most values) is UTF-8: a word-at-a-time test
        // is cheaper than the full decoder's set-up on short text.
        // SAFETY: every byte is below 0x80, so `bytes` is valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes)
    }
}

/// `bytes` as text, checked.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    text(bytes, Utf8::Check)
}

/// Decodes a value without walking a collection's elements: with
/// `Utf8::Validated` for values the parser has validated already (the bin
/// iterator).
pub(crate) fn decode_head(
    ptype: u8,
    bytes: &[u8],
    base: usize,
    utf8: Utf8,
) -> Result<Value<'_>, Error> {
    let bad_size = || {
        Error::at(
            ErrorKind::BadValueSize {
                ptype,
                len: bytes.len(),
            },
            base,
        )
    };
    let bad_utf8 = |what| Error::at(ErrorKind::BadUtf8 { what }, base);
    Ok(match ptype {
        NULL if bytes.is_empty() => Value::Null,
        NULL => return Err(bad_size()),
        INTEGER => Value::Int(match *bytes {
            [a, b, c, d, e, f, g, h] => i64::from_be_bytes([a, b, c, d, e, f, g, h]),
            // Narrow integers are unsigned on the wire, as the server reads them.
            [a, b, c, d] => i64::from(u32::from_be_bytes([a, b, c, d])),
            [a, b] => i64::from(u16::from_be_bytes([a, b])),
            [a] => i64::from(a),
            _ => return Err(bad_size()),
        }),
        FLOAT => match *bytes {
            [a, b, c, d, e, f, g, h] => Value::Float(f64::from_be_bytes([a, b, c, d, e, f, g, h])),
            _ => return Err(bad_size()),
        },
        STRING => Value::Str(text(bytes, utf8).map_err(|_| bad_utf8("string bin"))?),
        BLOB | JAVA_BLOB..=ERLANG_BLOB => Value::Blob { ptype, bytes },
        BOOL => match *bytes {
            [b] => Value::Bool(b != 0),
            _ => return Err(bad_size()),
        },
        HLL => Value::Hll(bytes),
        LIST => match plain_collection(bytes, 0x90) {
            Some(items) => Value::List {
                order: ListOrder::Unordered,
                items,
            },
            None => {
                let (items, order) = collection(bytes, base, |e| match e {
                    Elem::List { len, order } => Some((len, order)),
                    _ => None,
                })?;
                Value::List { order, items }
            }
        },
        MAP => match plain_collection(bytes, 0x80) {
            Some(items) => Value::Map {
                order: MapOrder::Unordered,
                items,
            },
            None => {
                let (items, order) = collection(bytes, base, |e| match e {
                    Elem::Map { len, order } => Some((len, order)),
                    _ => None,
                })?;
                Value::Map { order, items }
            }
        },
        GEOJSON => Value::Geo(geo(bytes, base, utf8)?),
        _ => return Err(Error::at(ErrorKind::UnknownParticle(ptype), base)),
    })
}

/// A list (`fix` 0x90) or map (`fix` 0x80) of up to 15 elements whose first
/// element is not an ext header (so no order flags): the common shape, read
/// as [`collection`] reads it without the msgpack reader.
#[inline]
pub(crate) fn plain_collection(bytes: &[u8], fix: u8) -> Option<Collection<'_>> {
    let (&m, body) = bytes.split_first()?;
    if m & 0xf0 != fix || matches!(body.first(), Some(0xd4..=0xd8 | 0xc7..=0xc9)) {
        return None;
    }
    Some(Collection {
        raw: bytes,
        body,
        len: u32::from(m & 0x0f),
    })
}

/// Reads a collection's header (and ext header) with `want` accepting only
/// the expected kind.
fn collection<O>(
    bytes: &[u8],
    base: usize,
    want: impl Fn(Elem<'_>) -> Option<(u32, O)>,
) -> Result<(Collection<'_>, O), Error> {
    let mut r = Reader::with_base(bytes, base);
    let head = r.next()?;
    let Some((len, order)) = want(head) else {
        return Err(Error::at(
            ErrorKind::BadMsgpack {
                why: "list/map bin does not start with an array/map header",
            },
            base,
        ));
    };
    let body = r.rest();
    Ok((
        Collection {
            raw: bytes,
            body,
            len,
        },
        order,
    ))
}

/// GeoJSON: u8 flags, u16 cell count, the cells, then the JSON text.
fn geo(bytes: &[u8], base: usize, utf8: Utf8) -> Result<Geo<'_>, Error> {
    let truncated = |need: usize| {
        Error::at(
            ErrorKind::Truncated {
                what: "GeoJSON value",
                need,
                have: bytes.len(),
            },
            base,
        )
    };
    let (&flags, rest) = bytes.split_first().ok_or_else(|| truncated(3))?;
    let Some((n, rest)) = rest.split_first_chunk::<2>() else {
        return Err(truncated(3));
    };
    let cells_len = usize::from(u16::from_be_bytes(*n)) * 8;
    if rest.len() < cells_len {
        return Err(truncated(3 + cells_len));
    }
    let (cells, json) = rest.split_at(cells_len);
    let json = text(json, utf8).map_err(|_| {
        Error::at(
            ErrorKind::BadUtf8 {
                what: "GeoJSON text",
            },
            base + 3 + cells_len,
        )
    })?;
    Ok(Geo { flags, cells, json })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time test agrees with the standard one for every
    /// length up to 40 and a high byte at every position.
    /// The masked test of a text's last bytes finds a high byte anywhere in
    /// them and nowhere else, for every length.
    #[test]
    fn is_ascii_ending_looks_at_exactly_the_last_len_bytes() {
        for total in 0..30 {
            for len in 0..=total {
                let clean = vec![b'a'; total];
                assert!(is_ascii_ending(&clean, len), "{total} {len}");
                for pos in 0..total {
                    let mut b = clean.clone();
                    b[pos] = 0xc3;
                    let inside = pos >= total - len;
                    assert_eq!(is_ascii_ending(&b, len), !inside, "{total} {len} {pos}");
                    b[pos] = 0x7f;
                    assert!(is_ascii_ending(&b, len));
                }
            }
            assert!(!is_ascii_ending(&vec![b'a'; total], total + 1));
        }
    }

    #[test]
    fn is_ascii_finds_a_high_byte_anywhere() {
        for len in 0..40 {
            let clean = vec![b'a'; len];
            assert!(is_ascii(&clean), "{len}");
            for pos in 0..len {
                for high in [0x80, 0xc3, 0xff] {
                    let mut b = clean.clone();
                    b[pos] = high;
                    assert!(!is_ascii(&b), "{len} {pos}");
                    assert_eq!(is_ascii(&b), b.is_ascii());
                }
                let mut b = clean.clone();
                b[pos] = 0x7f;
                assert!(is_ascii(&b));
            }
        }
    }
}
