//! Ops (XDR-PROTOCOL.md §4): one bin each — size, op code, particle type,
//! flags, name, an optional bin LUT, then the value.

use crate::error::{Error, ErrorKind};
use crate::record::{Bin, Value};
use crate::wire::field::lut_to_unix_ms;
use crate::wire::msgpack;
use crate::wire::particle::{self, Utf8};

/// The op code XDR ships bins with.
pub const WRITE: u8 = 2;
/// Op flag: a u64 bin LUT follows the name.
pub const FLAG_HAS_LUT: u8 = 0x01;
/// Bytes before the name: size (4), op, particle type, flags, name length.
pub const OP_HEADER: usize = 8;

/// One op, cut but not yet decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawOp<'a> {
    pub op: u8,
    pub ptype: u8,
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// Where the op starts in the frame.
    pub at: usize,
    /// Where the value starts in the frame.
    pub value_at: usize,
}

/// Cuts the op starting at `ops[pos..]`; `base` is where `ops` starts in the
/// frame. Returns the op and the position after it.
pub(crate) fn cut(ops: &[u8], pos: usize, base: usize) -> Result<(RawOp<'_>, usize), Error> {
    let at = base + pos;
    let rest = ops.get(pos..).unwrap_or_default();
    let Some(h) = rest.first_chunk::<OP_HEADER>() else {
        return Err(Error::at(
            ErrorKind::Truncated {
                what: "op header",
                need: OP_HEADER,
                have: rest.len(),
            },
            at,
        ));
    };
    let size = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let (op, ptype, flags, name_len) = (h[4], h[5], h[6], usize::from(h[7]));
    let lut_len = if flags & FLAG_HAS_LUT != 0 { 8 } else { 0 };
    let need = 4 + name_len + lut_len;
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size < need {
        return Err(Error::at(
            ErrorKind::BadOpSize {
                size: size as u32,
                need,
            },
            at,
        ));
    }
    let Some(body) = size.checked_add(4).and_then(|end| rest.get(OP_HEADER..end)) else {
        return Err(Error::at(
            ErrorKind::Truncated {
                what: "op",
                need: size.saturating_add(4),
                have: rest.len(),
            },
            at,
        ));
    };
    let (name, after) = body.split_at(name_len);
    // `size` covers the LUT (checked above), so `after` holds it.
    let value = after.get(lut_len..).unwrap_or_default();
    let value_at = at + OP_HEADER + name_len + lut_len;
    Ok((
        RawOp {
            op,
            ptype,
            name,
            value,
            at,
            value_at,
        },
        pos + 4 + size,
    ))
}

/// [`VALUE_RULE`] bit: a value of more than 8 bytes fits (bits 0..=8: a
/// value of that many bytes fits).
const ANY_LONGER: usize = 9;
/// [`VALUE_RULE`]: ASCII text fits.
const TEXT: u16 = 1 << 10;
/// [`VALUE_RULE`]: a flat list fits.
const LIST: u16 = 1 << 11;
/// [`VALUE_RULE`]: a flat map fits.
const MAP: u16 = 1 << 12;

/// What values of each particle type [`check_common`] takes: a set of
/// lengths (scalars, blobs of any length), or a kind of content to check.
static VALUE_RULE: [u16; 256] = {
    let mut t = [0; 256];
    t[particle::NULL as usize] = 1 << 0;
    t[particle::INTEGER as usize] = 1 << 1 | 1 << 2 | 1 << 4 | 1 << 8;
    t[particle::FLOAT as usize] = 1 << 8;
    t[particle::BOOL as usize] = 1 << 1;
    let any = (1 << (ANY_LONGER + 1)) - 1;
    t[particle::BLOB as usize] = any;
    let mut p = particle::JAVA_BLOB;
    while p <= particle::ERLANG_BLOB {
        t[p as usize] = any;
        p += 1;
    }
    t[particle::HLL as usize] = any;
    t[particle::STRING as usize] = TEXT;
    t[particle::LIST as usize] = LIST;
    t[particle::MAP as usize] = MAP;
    t
};

/// The op at the start of `ops` when it has one of the common shapes (an
/// ASCII name; a scalar, ASCII text, a blob, or a flat list/map of scalars
/// and ASCII text), checked without building a value or an error: returns
/// the bytes after it. `None` says nothing about validity: [`validate`] then
/// decides, and names the error if there is one. Accepts nothing that
/// `validate` refuses.
#[inline]
pub(crate) fn check_common(ops: &[u8]) -> Option<&[u8]> {
    let WriteOp {
        whole,
        ptype,
        name,
        value,
        next,
    } = cut_write(ops)?;
    let (name_len, value_len) = (name.len(), value.len());
    // The name ends `OP_HEADER + name_len` into the op: 8 bytes before its
    // end are always there.
    let name_ok = particle::is_ascii_ending(whole.get(..OP_HEADER + name_len)?, name_len);
    let rule = VALUE_RULE[usize::from(ptype)];
    let fits = name_ok
        // Fixed sizes and blobs first: one test of the value's length.
        && (rule & (1 << value_len.min(ANY_LONGER)) != 0
            || match rule {
                // The value ends the op, after its 8-byte header.
                TEXT => particle::is_ascii_ending(whole, value_len),
                LIST => msgpack::is_flat_collection(whole, whole.len() - value_len, false),
                MAP => msgpack::is_flat_collection(whole, whole.len() - value_len, true),
                _ => false,
            });
    fits.then_some(next)
}

/// One op cut from an ops region nobody has validated, with the checks
/// [`cut`] and [`validate`] make before the name (its size and bounds, the
/// op code); its name and value are not checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteOp<'a> {
    /// The whole op, its 8-byte header included.
    pub whole: &'a [u8],
    pub ptype: u8,
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// The ops after it.
    pub next: &'a [u8],
}

/// The WRITE op at the front of `ops`, cut as [`check_common`] cuts it;
/// `None` says nothing about validity ([`validate`] decides).
#[inline(always)]
pub(crate) fn cut_write(ops: &[u8]) -> Option<WriteOp<'_>> {
    let h = ops.first_chunk::<OP_HEADER>()?;
    let [s0, s1, s2, s3, op, ptype, flags, name_len] = *h;
    let size = u32::from_be_bytes([s0, s1, s2, s3]) as usize;
    let name_len = usize::from(name_len);
    let lut_len = usize::from(flags & FLAG_HAS_LUT) * 8;
    // What `size` leaves for the value after the op code, type, flags,
    // name length, name and LUT (one test for all of them).
    let value_len = size.checked_sub(4 + name_len + lut_len)?;
    // The whole op (header included) and what follows it.
    let (whole, next) = ops.split_at_checked(size.checked_add(4)?)?;
    if op != WRITE {
        return None;
    }
    let name = whole.get(OP_HEADER..OP_HEADER + name_len)?;
    let value = whole.get(whole.len() - value_len..)?;
    Some(WriteOp {
        whole,
        ptype,
        name,
        value,
        next,
    })
}

/// Validates the `count` ops of an ops region that starts `base` bytes into
/// its frame: they must fill it exactly. One cursor walks them: the common
/// shapes are checked in place ([`check_common`]); any other op is validated
/// in full from its position ([`validate`], which names the error).
#[inline(never)]
pub(crate) fn validate_all(ops: &[u8], count: u16, base: usize) -> Result<(), Error> {
    let mut rest = ops;
    for _ in 0..count {
        rest = match check_common(rest) {
            Some(next) => next,
            None => validate_rest(ops, rest, base)?,
        };
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err(Error::at(
            ErrorKind::TrailingBytes { extra: rest.len() },
            base + ops.len() - rest.len(),
        ))
    }
}

/// [`validate`] for the op at the start of `rest`, the tail of `ops`;
/// returns the bytes after it. Out of line: the loop over common ops keeps
/// its registers.
#[cold]
#[inline(never)]
fn validate_rest<'a>(ops: &'a [u8], rest: &[u8], base: usize) -> Result<&'a [u8], Error> {
    let next = validate(ops, ops.len() - rest.len(), base)?;
    Ok(ops.get(next..).unwrap_or_default())
}

/// Validates one op completely; returns the position after it.
pub(crate) fn validate(ops: &[u8], pos: usize, base: usize) -> Result<usize, Error> {
    let (raw, next) = cut(ops, pos, base)?;
    if raw.op != WRITE {
        return Err(Error::at(ErrorKind::UnexpectedOp(raw.op), raw.at + 4));
    }
    if particle::utf8(raw.name).is_err() {
        return Err(Error::at(
            ErrorKind::BadUtf8 { what: "bin name" },
            raw.at + OP_HEADER,
        ));
    }
    particle::decode(raw.ptype, raw.value, raw.value_at)?;
    Ok(next)
}

/// Iterates over an ops region the parser has already validated.
#[derive(Debug, Clone)]
pub struct BinIter<'a> {
    /// The whole ops region (for value offsets).
    ops: &'a [u8],
    /// The ops not yet cut: one slice cursor, as in the parser's walk.
    rest: &'a [u8],
    left: u16,
}

impl<'a> BinIter<'a> {
    pub(crate) fn new(ops: &'a [u8], count: u16) -> Self {
        BinIter {
            ops,
            rest: ops,
            left: count,
        }
    }

    /// A walk over the one op `this` (validated) of the ops region `ops`:
    /// value offsets (in decode errors) count from the region's start, as
    /// for a walk over the whole region.
    pub(crate) fn one(ops: &'a [u8], this: &'a [u8]) -> Self {
        BinIter {
            ops,
            rest: this,
            left: 1,
        }
    }

    /// The next op, cut without the parser's checks and error reports (it
    /// made them already) and without decoding its value: encoders that
    /// write common particle types straight from the bytes walk these
    /// rather than [`Bin`]s. `None` at the end, or if a `Bins` was somehow
    /// built over other bytes (then the walk stops).
    #[inline]
    pub(crate) fn next_span(&mut self) -> Option<OpSpan<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let span = self.span();
        if span.is_none() {
            self.left = 0;
        }
        span
    }

    /// [`BinIter::next_span`] for a walk that needs no count of what is
    /// left: it ends where the ops region ends (the parser checked that the
    /// ops fill it exactly), so one test per op instead of a count kept
    /// beside the cursor.
    #[inline]
    pub(crate) fn next_to_end(&mut self) -> Option<OpSpan<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        self.span()
    }

    /// The 16 bytes from the name of the next op on (its name, then what
    /// follows it), when the region holds them: a writer copies a short
    /// name with one 16-byte store.
    #[inline]
    pub(crate) fn next_name_head(&self) -> Option<&'a [u8; 16]> {
        self.rest.get(OP_HEADER..)?.first_chunk()
    }

    /// Cuts the op at the front of `rest`: only the slicing checks safe
    /// code needs (each one compare), none of the parser's.
    #[inline]
    fn span(&mut self) -> Option<OpSpan<'a>> {
        let (h, body) = self.rest.split_first_chunk::<OP_HEADER>()?;
        let [s0, s1, s2, s3, _, ptype, flags, name_len] = *h;
        let size = u32::from_be_bytes([s0, s1, s2, s3]) as usize;
        let (op, next) = body.split_at_checked(size.checked_sub(4)?)?;
        let (name, after) = op.split_at_checked(usize::from(name_len))?;
        let (wire_lut, value) = if flags & FLAG_HAS_LUT != 0 {
            let (l, v) = after.split_first_chunk::<8>()?;
            (Some(u64::from_be_bytes(*l)), v)
        } else {
            (None, after)
        };
        self.rest = next;
        Some(OpSpan {
            ptype,
            // The parser checked every name of these ops.
            name: particle::text(name, Utf8::Validated).ok()?,
            wire_lut,
            value,
            // Only read when a value is decoded (its error offsets).
            value_at: value.as_ptr() as usize - self.ops.as_ptr() as usize,
        })
    }
}

/// One op of a validated ops region: its name and value bytes, not decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpSpan<'a> {
    pub ptype: u8,
    pub name: &'a str,
    /// The bin LUT as on the wire (either epoch), when the op carried one.
    pub wire_lut: Option<u64>,
    pub value: &'a [u8],
    /// Where the value starts in the ops region.
    pub value_at: usize,
}

impl<'a> OpSpan<'a> {
    /// The value decoded (the parser validated it: `None` only if a `Bins`
    /// was somehow built over other bytes).
    #[inline]
    pub(crate) fn value(&self) -> Option<Value<'a>> {
        particle::decode_head(self.ptype, self.value, self.value_at, Utf8::Validated).ok()
    }

    /// The whole bin, decoded.
    #[inline]
    pub(crate) fn bin(&self) -> Option<Bin<'a>> {
        Some(Bin {
            name: self.name,
            lut: self.wire_lut.map(lut_to_unix_ms),
            value: self.value()?,
        })
    }
}

impl<'a> Iterator for BinIter<'a> {
    type Item = Bin<'a>;
    #[inline]
    fn next(&mut self) -> Option<Bin<'a>> {
        // The parser validated every op, so this cannot fail; if a `Bins`
        // was somehow built over other bytes, stop rather than panic.
        let bin = self.next_span()?.bin();
        if bin.is_none() {
            self.left = 0;
        }
        bin
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{BinSpec, Elem, Message, ValueSpec};
    use crate::record::{ListOrder, MapOrder};

    /// The ops region of a write holding `bins`.
    fn ops_of(bins: Vec<BinSpec>) -> Vec<u8> {
        let mut m = Message::write_record("test", None, None, bins);
        m.digest = Some([1; 20]);
        let frame = m.to_vec().unwrap();
        let rec = crate::wire::parse_message(&frame).unwrap();
        rec.bins.ops.to_vec()
    }

    fn s(x: &str) -> Elem {
        Elem::Str(x.to_string())
    }

    /// One bin per case: (value, whether the common-shape check takes it).
    fn cases() -> Vec<(ValueSpec, bool)> {
        let flat = vec![
            Elem::Nil,
            Elem::Bool(true),
            Elem::Int(5),
            Elem::Int(-3),
            Elem::Int(200),
            Elem::Int(-200),
            Elem::Int(70_000),
            Elem::Int(i64::MIN),
            Elem::Uint(u64::MAX),
            Elem::Float(0.5),
            s(""),
            s("ascii"),
            s(&"x".repeat(40)),
            Elem::Blob {
                ptype: 4,
                bytes: vec![0xff, 0],
            },
            Elem::Geo("{}".into()),
        ];
        let list = |order, items| ValueSpec::List {
            order,
            persist_index: false,
            items,
        };
        let map = |order, persist_index, entries| ValueSpec::Map {
            order,
            persist_index,
            entries,
        };
        let pairs: Vec<(Elem, Elem)> = flat.iter().cloned().zip(flat.iter().cloned()).collect();
        vec![
            (ValueSpec::Null, true),
            (ValueSpec::Int(-1), true),
            (ValueSpec::Float(1.5), true),
            (ValueSpec::Str("plain".into()), true),
            (ValueSpec::Str("é".into()), false),
            (ValueSpec::Bool(false), true),
            (ValueSpec::Hll(vec![1, 2]), true),
            (list(ListOrder::Unordered, flat.clone()), true),
            (list(ListOrder::Ordered, flat.clone()), true),
            (list(ListOrder::Unordered, vec![]), true),
            (list(ListOrder::Unordered, vec![Elem::Int(1); 40]), true),
            (map(MapOrder::Unordered, false, pairs.clone()), true),
            (map(MapOrder::KeyValue, false, pairs.clone()), true),
            (map(MapOrder::Key, true, pairs), true),
            (list(ListOrder::Unordered, vec![s("é")]), false),
            (
                list(
                    ListOrder::Unordered,
                    vec![Elem::List {
                        order: ListOrder::Unordered,
                        items: vec![],
                    }],
                ),
                false,
            ),
            (
                list(
                    ListOrder::Unordered,
                    vec![
                        Elem::Int(1),
                        Elem::Ext {
                            ty: 1,
                            data: vec![2],
                        },
                    ],
                ),
                false,
            ),
            (
                ValueSpec::Geo {
                    flags: 0,
                    cells: vec![],
                    json: "{}".into(),
                },
                false,
            ),
        ]
    }

    #[test]
    fn common_shapes_are_taken_and_others_left_to_validate() {
        for (value, common) in cases() {
            let ops = ops_of(vec![BinSpec::new("bin", value.clone())]);
            let slow = validate(&ops, 0, 0);
            assert_eq!(slow, Ok(ops.len()), "{value:?}");
            let fast = check_common(&ops).map(|rest| ops.len() - rest.len());
            assert_eq!(fast, common.then_some(ops.len()), "{value:?}");
        }
    }

    /// Names and string values of every length around the one-word test
    /// (0 to 20 bytes, with and without a bin LUT, the high byte anywhere in
    /// them) are taken exactly when they are ASCII, ending where `validate`
    /// ends; the non-ASCII ones are still valid UTF-8 for `validate`.
    #[test]
    fn names_and_strings_of_every_length_are_checked_to_the_last_byte() {
        let mut taken = 0;
        for len in 0..=20 {
            let ascii = "n".repeat(len);
            let mut texts = vec![(ascii.clone(), true)];
            for at in 0..len.saturating_sub(1) {
                // "é" is two bytes: the text stays `len` bytes long.
                let t = format!("{}é{}", &ascii[..at], &ascii[at + 2..]);
                texts.push((t, false));
            }
            for (text, is_ascii) in texts {
                for lut in [None, Some(0x0102_0304_0506_0708)] {
                    let bins = [
                        BinSpec::new(&text, ValueSpec::Int(7)),
                        BinSpec::new("v", ValueSpec::Str(text.clone())),
                    ];
                    for mut bin in bins {
                        bin.lut = lut;
                        let ops = ops_of(vec![bin]);
                        assert_eq!(validate(&ops, 0, 0), Ok(ops.len()), "{text:?}");
                        let fast = check_common(&ops).map(|rest| ops.len() - rest.len());
                        assert_eq!(fast, is_ascii.then_some(ops.len()), "{text:?} {lut:?}");
                        taken += usize::from(fast.is_some());
                    }
                }
            }
        }
        assert_eq!(taken, 21 * 2 * 2);
        // One stray high byte (not UTF-8): at every position of a name and
        // of a string value, the quick check leaves the op to `validate`,
        // which refuses it.
        for len in 1..=20 {
            let name_ops = ops_of(vec![BinSpec::new(&"n".repeat(len), ValueSpec::Int(7))]);
            let str_ops = ops_of(vec![BinSpec::new("v", ValueSpec::Str("s".repeat(len)))]);
            for at in 0..len {
                let mut n = name_ops.clone();
                n[OP_HEADER + at] = 0xff;
                let mut v = str_ops.clone();
                let end = v.len();
                v[end - len + at] = 0xff;
                for ops in [n, v] {
                    assert_eq!(check_common(&ops), None, "{len} {at}");
                    assert!(validate(&ops, 0, 0).is_err(), "{len} {at}");
                }
            }
        }
        // The same for a string element of a list, last or followed by an
        // int; its clean version is taken.
        for len in 1..=20 {
            for (items, after) in [
                (vec![s(&"s".repeat(len))], 0),
                (vec![Elem::Int(1), s(&"s".repeat(len)), Elem::Int(2)], 1),
            ] {
                let list = ValueSpec::List {
                    order: ListOrder::Unordered,
                    persist_index: false,
                    items,
                };
                let ops = ops_of(vec![BinSpec::new("l", list)]);
                assert_eq!(check_common(&ops).map(<[u8]>::len), Some(0), "{len}");
                let text_at = ops.len() - after - len;
                for at in 0..len {
                    let mut m = ops.clone();
                    m[text_at + at] = 0xff;
                    assert_eq!(check_common(&m), None, "{len} {at}");
                    assert!(validate(&m, 0, 0).is_err(), "{len} {at}");
                }
            }
        }
    }

    /// Whatever the quick check accepts, `validate` accepts too, ending at
    /// the same place: every byte of every case replaced by several values,
    /// and every truncation.
    #[test]
    fn the_common_check_never_accepts_what_validate_refuses() {
        let mut taken = 0;
        let mut refused = 0;
        for (value, _) in cases() {
            let ops = ops_of(vec![BinSpec::new("bin", value)]);
            let mut check = |ops: &[u8]| {
                if let Some(rest) = check_common(ops) {
                    let next = ops.len() - rest.len();
                    taken += 1;
                    assert_eq!(validate(ops, 0, 0).map_err(|_| ()), Ok(next), "{ops:02x?}");
                } else if validate(ops, 0, 0).is_err() {
                    refused += 1;
                }
            };
            for cut in 0..ops.len() {
                check(&ops[..cut]);
            }
            for i in 0..ops.len() {
                for b in [
                    0x00, 0x01, 0x03, 0x04, 0x05, 0x0f, 0x7f, 0x80, 0xa1, 0xc0, 0xc1, 0xc7,
                ]
                .into_iter()
                .chain([0xcd, 0xd4, 0xd9, 0xdc, 0xdd, 0xde, 0xe0, 0xff])
                {
                    let mut m = ops.clone();
                    m[i] = b;
                    check(&m);
                    m[i] = ops[i].wrapping_add(1);
                    check(&m);
                }
            }
        }
        // Both sides were exercised: many mutations still have a common
        // shape, and many are errors.
        assert!(taken > 1000, "{taken}");
        assert!(refused > 1000, "{refused}");
    }
}
