//! Ops (XDR-PROTOCOL.md §4): one bin each — size, op code, particle type,
//! flags, name, an optional bin LUT, then the value.

use crate::error::{Error, ErrorKind};
use crate::record::Bin;
use crate::wire::field::lut_to_unix_ms;
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
    ops: &'a [u8],
    pos: usize,
    left: u16,
}

impl<'a> BinIter<'a> {
    pub(crate) fn new(ops: &'a [u8], count: u16) -> Self {
        BinIter {
            ops,
            pos: 0,
            left: count,
        }
    }

    /// The bin at `pos`, cut without the parser's checks and error
    /// reports (it made them already: `None` only if a `Bins` was somehow
    /// built over other bytes).
    fn bin(&mut self) -> Option<Bin<'a>> {
        let pos = self.pos;
        let (h, after) = self.ops.get(pos..)?.split_first_chunk::<OP_HEADER>()?;
        let size = usize::try_from(u32::from_be_bytes([h[0], h[1], h[2], h[3]])).ok()?;
        let (ptype, flags, name_len) = (h[5], h[6], usize::from(h[7]));
        let body = after.get(..size.checked_sub(4)?)?;
        let (name, after) = body.split_at_checked(name_len)?;
        let (lut, value, lut_len) = if flags & FLAG_HAS_LUT != 0 {
            let (l, v) = after.split_first_chunk::<8>()?;
            (Some(lut_to_unix_ms(u64::from_be_bytes(*l))), v, 8)
        } else {
            (None, after, 0)
        };
        // The parser checked every name and value of these ops.
        let name = particle::text(name, Utf8::Validated).ok()?;
        let value_at = pos + OP_HEADER + name_len + lut_len;
        let value = particle::decode_head(ptype, value, value_at, Utf8::Validated).ok()?;
        self.pos = pos + 4 + size;
        Some(Bin { name, lut, value })
    }
}

impl<'a> Iterator for BinIter<'a> {
    type Item = Bin<'a>;
    fn next(&mut self) -> Option<Bin<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The parser validated every op, so this cannot fail; if a `Bins`
        // was somehow built over other bytes, stop rather than panic.
        let bin = self.bin();
        if bin.is_none() {
            self.left = 0;
        }
        bin
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}
