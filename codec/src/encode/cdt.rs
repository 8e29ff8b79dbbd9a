//! A pull reader over Aerospike's msgpack for list and map bin values, with
//! the element shape of `wire::msgpack::Elem` (INTERNALS.md).
//!
//! Why it is here: the encoders walk collections element by element, and
//! this reader was needed before the wire parser's own reader existed. It
//! has the same API, so switching the encoders to `crate::wire::msgpack` is
//! a change of `use` lines. Values reaching the encoders were validated by
//! the parser; errors here are a second line of defence, never a panic.

use super::{EncodeError, MAX_DEPTH};
use crate::record::{ListOrder, MapOrder};

/// The next element of a bin's collection, errors naming the bin.
pub(crate) fn next_elem<'a>(r: &mut Reader<'a>, bin: &str) -> Result<Elem<'a>, EncodeError> {
    r.next().map_err(|e| EncodeError::BadCollection {
        bin: bin.to_string(),
        why: e.why,
        offset: e.offset,
    })
}

/// Refuses nesting deeper than [`MAX_DEPTH`].
pub(crate) fn check_depth(depth: usize, bin: &str) -> Result<(), EncodeError> {
    if depth > MAX_DEPTH {
        return Err(EncodeError::TooDeep {
            bin: bin.to_string(),
        });
    }
    Ok(())
}

/// One msgpack element as the encoders see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Elem<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    /// Particle prefix 0x03 stripped.
    Str(&'a str),
    /// Prefix 4 or 7..=12 stripped.
    Blob {
        ptype: u8,
        bytes: &'a [u8],
    },
    /// Prefix 23 stripped.
    Geo(&'a str),
    /// The next `len` values are its elements; the ext header is consumed.
    List {
        len: u32,
        order: ListOrder,
    },
    /// The next `len` key/value pairs follow; ext key and nil value consumed.
    Map {
        len: u32,
        order: MapOrder,
    },
    /// Any other ext value.
    Ext {
        ty: i8,
        data: &'a [u8],
    },
}

/// What is wrong with a collection value, and where in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CdtError {
    pub why: &'static str,
    pub offset: usize,
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn err<T>(&self, why: &'static str) -> Result<T, CdtError> {
        Err(CdtError {
            why,
            offset: self.pos,
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CdtError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => self.err("value runs past the end"),
        }
    }

    fn be(&mut self, n: usize) -> Result<u64, CdtError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn len32(&mut self, n: usize) -> Result<u32, CdtError> {
        // n is 1, 2 or 4 bytes: always fits in u32.
        Ok(u32::try_from(self.be(n)?).unwrap_or(u32::MAX))
    }

    /// The next element. Err at the end of input too.
    pub fn next(&mut self) -> Result<Elem<'a>, CdtError> {
        let marker = self.take(1)?[0];
        Ok(match marker {
            0x00..=0x7f => Elem::Int(i64::from(marker)),
            0xe0..=0xff => Elem::Int(i64::from(marker as i8)),
            0xc0 => Elem::Nil,
            0xc2 => Elem::Bool(false),
            0xc3 => Elem::Bool(true),
            0xcc => Elem::Int(self.be(1)? as i64),
            0xcd => Elem::Int(self.be(2)? as i64),
            0xce => Elem::Int(self.be(4)? as i64),
            0xcf => {
                let v = self.be(8)?;
                i64::try_from(v).map_or(Elem::Uint(v), Elem::Int)
            }
            0xd0 => Elem::Int(i64::from(self.be(1)? as u8 as i8)),
            0xd1 => Elem::Int(i64::from(self.be(2)? as u16 as i16)),
            0xd2 => Elem::Int(i64::from(self.be(4)? as u32 as i32)),
            0xd3 => Elem::Int(self.be(8)? as i64),
            0xca => Elem::Float(f64::from(f32::from_bits(self.be(4)? as u32))),
            0xcb => Elem::Float(f64::from_bits(self.be(8)?)),
            0xa0..=0xbf => self.particle(usize::from(marker & 0x1f))?,
            0xd9 | 0xc4 => {
                let n = self.len32(1)?;
                self.particle(n as usize)?
            }
            0xda | 0xc5 => {
                let n = self.len32(2)?;
                self.particle(n as usize)?
            }
            0xdb | 0xc6 => {
                let n = self.len32(4)?;
                self.particle(n as usize)?
            }
            0x90..=0x9f => self.list(u32::from(marker & 0x0f))?,
            0xdc => {
                let n = self.len32(2)?;
                self.list(n)?
            }
            0xdd => {
                let n = self.len32(4)?;
                self.list(n)?
            }
            0x80..=0x8f => self.map(u32::from(marker & 0x0f))?,
            0xde => {
                let n = self.len32(2)?;
                self.map(n)?
            }
            0xdf => {
                let n = self.len32(4)?;
                self.map(n)?
            }
            0xd4..=0xd8 | 0xc7..=0xc9 => {
                let (ty, data) = self.ext_body(marker)?;
                Elem::Ext { ty, data }
            }
            _ => return self.err("unknown msgpack marker"),
        })
    }

    fn particle(&mut self, n: usize) -> Result<Elem<'a>, CdtError> {
        let bytes = self.take(n)?;
        let Some((&ptype, rest)) = bytes.split_first() else {
            return Ok(Elem::Str(""));
        };
        let text = |r: &'a [u8]| std::str::from_utf8(r).map_err(|_| "string is not UTF-8");
        match ptype {
            3 => text(rest).map(Elem::Str),
            23 => text(rest).map(Elem::Geo),
            4 | 7..=12 => Ok(Elem::Blob { ptype, bytes: rest }),
            _ => Err("unknown particle type in a collection element"),
        }
        .or_else(|why| self.err(why))
    }

    fn ext_body(&mut self, marker: u8) -> Result<(i8, &'a [u8]), CdtError> {
        let n = match marker {
            0xd4 => 1,
            0xd5 => 2,
            0xd6 => 4,
            0xd7 => 8,
            0xd8 => 16,
            0xc7 => self.len32(1)? as usize,
            0xc8 => self.len32(2)? as usize,
            _ => self.len32(4)? as usize,
        };
        let ty = self.take(1)?[0] as i8;
        Ok((ty, self.take(n)?))
    }

    /// The ext header of an ordered collection, when the next element is one.
    fn ext_header(&mut self) -> Result<Option<u8>, CdtError> {
        match self.buf.get(self.pos) {
            Some(&m @ (0xd4..=0xd8 | 0xc7..=0xc9)) => {
                self.pos += 1;
                let (ty, _) = self.ext_body(m)?;
                Ok(Some(ty as u8))
            }
            _ => Ok(None),
        }
    }

    fn list(&mut self, n: u32) -> Result<Elem<'a>, CdtError> {
        if n > 0 {
            if let Some(flags) = self.ext_header()? {
                let order = if flags & 0x01 != 0 {
                    ListOrder::Ordered
                } else {
                    ListOrder::Unordered
                };
                return Ok(Elem::List { len: n - 1, order });
            }
        }
        Ok(Elem::List {
            len: n,
            order: ListOrder::Unordered,
        })
    }

    fn map(&mut self, n: u32) -> Result<Elem<'a>, CdtError> {
        if n > 0 {
            if let Some(flags) = self.ext_header()? {
                if self.take(1)? != [0xc0] {
                    return self.err("map ext header is not followed by nil");
                }
                let order = match flags & 0x0b {
                    0x03 => MapOrder::KeyValue,
                    f if f & 0x01 != 0 => MapOrder::Key,
                    f if f & 0x08 != 0 => MapOrder::Insertion,
                    _ => MapOrder::Unordered,
                };
                return Ok(Elem::Map { len: n - 1, order });
            }
        }
        Ok(Elem::Map {
            len: n,
            order: MapOrder::Unordered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_aerospike_elements() {
        // [ext(ordered), 1, -2, "ab" (0x03 prefix), blob(04 ff), nil, 1.5]
        let buf = [
            0x97, 0xc7, 0x00, 0x01, 0x01, 0xfe, 0xa3, 0x03, b'a', b'b', 0xc4, 0x02, 0x04, 0xff,
            0xc0, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0,
        ];
        let mut r = Reader::new(&buf);
        assert_eq!(
            r.next(),
            Ok(Elem::List {
                len: 6,
                order: ListOrder::Ordered
            })
        );
        assert_eq!(r.next(), Ok(Elem::Int(1)));
        assert_eq!(r.next(), Ok(Elem::Int(-2)));
        assert_eq!(r.next(), Ok(Elem::Str("ab")));
        assert_eq!(
            r.next(),
            Ok(Elem::Blob {
                ptype: 4,
                bytes: &[0xff]
            })
        );
        assert_eq!(r.next(), Ok(Elem::Nil));
        assert_eq!(r.next(), Ok(Elem::Float(1.5)));
        assert!(r.next().is_err());
    }

    #[test]
    fn reads_flagged_map() {
        // {ext(kv-ordered): nil, 1: [2]} then 7
        let buf = [0x82, 0xd4, 0x03, 0x00, 0xc0, 0x01, 0x91, 0x02, 0x07];
        let mut r = Reader::new(&buf);
        assert_eq!(
            r.next(),
            Ok(Elem::Map {
                len: 1,
                order: MapOrder::KeyValue
            })
        );
        assert_eq!(r.next(), Ok(Elem::Int(1)));
        assert_eq!(
            r.next(),
            Ok(Elem::List {
                len: 1,
                order: ListOrder::Unordered
            })
        );
        assert_eq!(r.next(), Ok(Elem::Int(2)));
        assert_eq!(r.next(), Ok(Elem::Int(7)));
    }

    #[test]
    fn truncated_value_is_an_error() {
        let mut r = Reader::new(&[0xcd, 0x01]);
        assert_eq!(
            r.next(),
            Err(CdtError {
                why: "value runs past the end",
                offset: 1
            })
        );
    }
}
