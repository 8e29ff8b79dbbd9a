//! A pull reader over Aerospike's msgpack, the encoding of list and map bin
//! values (XDR-PROTOCOL.md §5): plain msgpack, except that strings and blobs
//! carry their particle type as the first payload byte, and ordered lists and
//! flagged maps start with an ext element holding their flags.
//!
//! The reader borrows its input and never allocates. Nesting is walked with a
//! counter of values still owed, not recursion, so a hostile frame cannot
//! exhaust the stack, and declared lengths are only compared with the bytes
//! actually present, never used to size anything.

use crate::error::{Error, ErrorKind};
use crate::record::{ListOrder, MapOrder};
use crate::wire::particle::{self, Utf8};

/// One msgpack element, Aerospike's conventions applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Elem<'a> {
    Nil,
    Bool(bool),
    /// Every integer that fits in an i64.
    Int(i64),
    /// A uint64 above `i64::MAX`.
    Uint(u64),
    /// float 32 (widened) or float 64.
    Float(f64),
    /// A string element: particle prefix 0x03 stripped.
    Str(&'a str),
    /// A blob element: prefix 4 or 7..=12 stripped and kept in `ptype`
    /// (msgpack str or bin 0xc4..0xc6).
    Blob {
        ptype: u8,
        bytes: &'a [u8],
    },
    /// A GeoJSON element: prefix 23 stripped.
    Geo(&'a str),
    /// A list: the next `len` values are its elements; an ext header, if
    /// any, has been consumed and its flags are in `order`.
    List {
        len: u32,
        order: ListOrder,
    },
    /// A map: the next `len` key/value pairs follow; an ext key and its nil
    /// value, if any, have been consumed.
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

/// Deepest nesting of lists and maps accepted, the bin's own collection
/// counting as level 1 (the encoders' `encode::MAX_DEPTH` is the same).
pub const MAX_DEPTH: usize = 64;

/// List ext flag: ordered.
pub const LIST_ORDERED: u8 = 0x01;
/// Map ext flag: key-ordered.
pub const MAP_KEY_ORDERED: u8 = 0x01;
/// Map ext flags: key-value-ordered.
pub const MAP_KEY_VALUE_ORDERED: u8 = 0x03;
/// Map ext flag: preserve insertion order.
pub const MAP_PRESERVE_ORDER: u8 = 0x08;
/// List and map ext flag: the server persisted an index (ext payload).
pub const PERSIST_INDEX: u8 = 0x10;

/// The list order an ext header's flags mean.
pub fn list_order(flags: u8) -> ListOrder {
    if flags & LIST_ORDERED != 0 {
        ListOrder::Ordered
    } else {
        ListOrder::Unordered
    }
}

/// The map order an ext header's flags mean (persist-index bit ignored).
pub fn map_order(flags: u8) -> MapOrder {
    match flags & (MAP_KEY_VALUE_ORDERED | MAP_PRESERVE_ORDER) {
        f if f & MAP_KEY_VALUE_ORDERED == MAP_KEY_VALUE_ORDERED => MapOrder::KeyValue,
        f if f & MAP_KEY_ORDERED != 0 => MapOrder::Key,
        f if f & MAP_PRESERVE_ORDER != 0 => MapOrder::Insertion,
        _ => MapOrder::Unordered,
    }
}

/// Reads elements one at a time from a msgpack buffer.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Added to error offsets: where `buf` starts in the frame.
    base: usize,
    /// `Validated` for a collection body the parser walked already.
    utf8: Utf8,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
            utf8: Utf8::Check,
        }
    }

    /// A reader over a collection body that `parse_message` validated (see
    /// `Collection::elements`): strings are not checked for UTF-8 again.
    pub(crate) fn validated(buf: &'a [u8]) -> Self {
        Reader {
            utf8: Utf8::Validated,
            ..Reader::new(buf)
        }
    }

    /// A reader whose error offsets count from `base` (where `buf` sits in
    /// the frame).
    pub fn with_base(buf: &'a [u8], base: usize) -> Self {
        Reader {
            buf,
            pos: 0,
            base,
            utf8: Utf8::Check,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn bad(&self, why: &'static str, at: usize) -> Error {
        Error::at(ErrorKind::BadMsgpack { why }, self.base + at)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let have = self.buf.len().saturating_sub(self.pos);
        match self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
        {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(Error::at(
                ErrorKind::Truncated {
                    what,
                    need: n,
                    have,
                },
                self.base + self.pos,
            )),
        }
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.take(1, what)?[0])
    }

    fn be(&mut self, n: usize, what: &'static str) -> Result<u64, Error> {
        Ok(self
            .take(n, what)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A 1, 2 or 4 byte length.
    fn len(&mut self, n: usize, what: &'static str) -> Result<u32, Error> {
        // At most 4 bytes were folded, so the value fits in u32.
        Ok(self.be(n, what)? as u32)
    }

    /// The next element. Err at the end of input too.
    #[allow(clippy::should_implement_trait)] // fallible, not an Iterator
    pub fn next(&mut self) -> Result<Elem<'a>, Error> {
        let start = self.pos;
        let marker = self.byte("msgpack element")?;
        Ok(match marker {
            0x00..=0x7f => Elem::Int(i64::from(marker)),
            0xe0..=0xff => Elem::Int(i64::from(marker as i8)),
            0xc0 => Elem::Nil,
            0xc2 => Elem::Bool(false),
            0xc3 => Elem::Bool(true),
            0xcc => Elem::Int(self.be(1, "msgpack uint8")? as i64),
            0xcd => Elem::Int(self.be(2, "msgpack uint16")? as i64),
            0xce => Elem::Int(self.be(4, "msgpack uint32")? as i64),
            0xcf => {
                let v = self.be(8, "msgpack uint64")?;
                i64::try_from(v).map_or(Elem::Uint(v), Elem::Int)
            }
            0xd0 => Elem::Int(i64::from(self.byte("msgpack int8")? as i8)),
            0xd1 => Elem::Int(i64::from(self.be(2, "msgpack int16")? as u16 as i16)),
            0xd2 => Elem::Int(i64::from(self.be(4, "msgpack int32")? as u32 as i32)),
            0xd3 => Elem::Int(self.be(8, "msgpack int64")? as i64),
            0xca => Elem::Float(f64::from(f32::from_bits(
                self.be(4, "msgpack float32")? as u32
            ))),
            0xcb => Elem::Float(f64::from_bits(self.be(8, "msgpack float64")?)),
            0xa0..=0xbf => self.particle(usize::from(marker & 0x1f), start)?,
            0xd9 | 0xc4 => {
                let n = self.len(1, "msgpack str/bin length")?;
                self.particle(n as usize, start)?
            }
            0xda | 0xc5 => {
                let n = self.len(2, "msgpack str/bin length")?;
                self.particle(n as usize, start)?
            }
            0xdb | 0xc6 => {
                let n = self.len(4, "msgpack str/bin length")?;
                self.particle(n as usize, start)?
            }
            0x90..=0x9f => self.list(u32::from(marker & 0x0f))?,
            0xdc => {
                let n = self.len(2, "msgpack array length")?;
                self.list(n)?
            }
            0xdd => {
                let n = self.len(4, "msgpack array length")?;
                self.list(n)?
            }
            0x80..=0x8f => self.map(u32::from(marker & 0x0f))?,
            0xde => {
                let n = self.len(2, "msgpack map length")?;
                self.map(n)?
            }
            0xdf => {
                let n = self.len(4, "msgpack map length")?;
                self.map(n)?
            }
            0xd4..=0xd8 | 0xc7..=0xc9 => {
                let (ty, data) = self.ext_body(marker)?;
                Elem::Ext { ty, data }
            }
            // 0xc1 is the one marker msgpack never uses.
            _ => return Err(self.bad("unused marker 0xc1", start)),
        })
    }

    /// A str or bin payload: Aerospike's particle prefix decides what it is.
    fn particle(&mut self, n: usize, start: usize) -> Result<Elem<'a>, Error> {
        let bytes = self.take(n, "msgpack str/bin payload")?;
        let Some((&ptype, rest)) = bytes.split_first() else {
            return Ok(Elem::Str(""));
        };
        let utf8 = self.utf8;
        let text = |r: &'a [u8]| {
            particle::text(r, utf8).map_err(|_| {
                Error::at(
                    ErrorKind::BadUtf8 {
                        what: "string element",
                    },
                    self.base + start,
                )
            })
        };
        match ptype {
            particle::STRING => text(rest).map(Elem::Str),
            particle::GEOJSON => text(rest).map(Elem::Geo),
            particle::BLOB | particle::JAVA_BLOB..=particle::ERLANG_BLOB => {
                Ok(Elem::Blob { ptype, bytes: rest })
            }
            _ => Err(self.bad("str/bin element with an unknown particle prefix", start)),
        }
    }

    fn ext_body(&mut self, marker: u8) -> Result<(i8, &'a [u8]), Error> {
        let n = match marker {
            0xd4 => 1,
            0xd5 => 2,
            0xd6 => 4,
            0xd7 => 8,
            0xd8 => 16,
            0xc7 => self.len(1, "msgpack ext length")? as usize,
            0xc8 => self.len(2, "msgpack ext length")? as usize,
            _ => self.len(4, "msgpack ext length")? as usize,
        };
        let ty = self.byte("msgpack ext type")? as i8;
        Ok((ty, self.take(n, "msgpack ext payload")?))
    }

    /// Consumes an ext header (an ordered collection's flags, its payload a
    /// persisted index or nothing) when the next element is one.
    fn ext_header(&mut self) -> Result<Option<u8>, Error> {
        match self.buf.get(self.pos) {
            Some(&m @ (0xd4..=0xd8 | 0xc7..=0xc9)) => {
                self.pos += 1;
                let (ty, _) = self.ext_body(m)?;
                Ok(Some(ty as u8))
            }
            _ => Ok(None),
        }
    }

    fn list(&mut self, n: u32) -> Result<Elem<'a>, Error> {
        if n > 0 {
            if let Some(flags) = self.ext_header()? {
                return Ok(Elem::List {
                    len: n - 1,
                    order: list_order(flags),
                });
            }
        }
        Ok(Elem::List {
            len: n,
            order: ListOrder::Unordered,
        })
    }

    fn map(&mut self, n: u32) -> Result<Elem<'a>, Error> {
        if n > 0 {
            if let Some(flags) = self.ext_header()? {
                let at = self.pos;
                if self.byte("map ext header value")? != 0xc0 {
                    return Err(self.bad("map ext header key is not followed by nil", at));
                }
                return Ok(Elem::Map {
                    len: n - 1,
                    order: map_order(flags),
                });
            }
        }
        Ok(Elem::Map {
            len: n,
            order: MapOrder::Unordered,
        })
    }

    /// Skips one whole value, nested elements included.
    pub fn skip_value(&mut self) -> Result<(), Error> {
        self.skip_values(1)
    }

    /// Skips `count` whole values, validating every element on the way.
    /// Collections nested more than [`MAX_DEPTH`] levels are refused.
    pub fn skip_values(&mut self, count: u64) -> Result<(), Error> {
        self.skip_nested(count, MAX_DEPTH)
    }

    /// [`Reader::skip_values`] with values owed per level kept in a fixed
    /// stack, so that neither recursion nor allocation grows with the input.
    pub(crate) fn skip_nested(&mut self, count: u64, max_depth: usize) -> Result<(), Error> {
        let max_depth = max_depth.min(MAX_DEPTH);
        // Flat values (the common case) need no stack.
        let mut left = count;
        while left > 0 {
            left -= 1;
            let at = self.pos;
            let n = match self.next()? {
                Elem::List { len, .. } => u64::from(len),
                Elem::Map { len, .. } => 2 * u64::from(len),
                _ => continue,
            };
            if n > 0 {
                if max_depth == 0 {
                    return Err(Error::at(
                        ErrorKind::TooDeep { max: MAX_DEPTH },
                        self.base + at,
                    ));
                }
                return self.skip_deep(left, n, max_depth);
            }
        }
        Ok(())
    }

    /// The rest of [`Reader::skip_nested`] once a non-empty collection was
    /// met: `left` values owed at the top, `n` inside that collection.
    fn skip_deep(&mut self, left: u64, n: u64, max_depth: usize) -> Result<(), Error> {
        let mut owed = [0u64; MAX_DEPTH + 1];
        owed[0] = left;
        owed[1] = n;
        let mut depth = 1;
        loop {
            while owed[depth] == 0 {
                if depth == 0 {
                    return Ok(());
                }
                depth -= 1;
            }
            owed[depth] -= 1;
            let at = self.pos;
            let n = match self.next()? {
                Elem::List { len, .. } => u64::from(len),
                Elem::Map { len, .. } => 2 * u64::from(len),
                _ => continue,
            };
            if n > 0 {
                if depth >= max_depth {
                    return Err(Error::at(
                        ErrorKind::TooDeep { max: MAX_DEPTH },
                        self.base + at,
                    ));
                }
                depth += 1;
                owed[depth] = n;
            }
        }
    }
}

/// [`ELEM_CLASS`] below this: a scalar, the value is how many bytes follow
/// its marker.
const FIXED_MAX: u8 = 0x40;
/// [`ELEM_CLASS`] with this bit: a fixstr, its payload length in the low bits.
const FIXSTR: u8 = 0x40;
/// [`ELEM_CLASS`]: str 8 or bin 8, a one-byte payload length follows.
const STR8: u8 = 0x80;
/// [`ELEM_CLASS`]: not a flat element (collections, ext, long strings, 0xc1).
const OTHER: u8 = 0xff;

/// What [`is_flat_collection`] makes of each msgpack marker: one table load
/// per element instead of a chain of range tests.
static ELEM_CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut m = 0;
    while m < 256 {
        t[m] = match m as u8 {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 => 2,
            0xce | 0xd2 | 0xca => 4,
            0xcf | 0xd3 | 0xcb => 8,
            0xa0..=0xbf => FIXSTR | (m as u8 & 0x1f),
            0xd9 | 0xc4 => STR8,
            _ => OTHER,
        };
        m += 1;
    }
    t
};

/// True when `op[at..]` (a whole list or map particle value, at least 8
/// bytes into its op; `is_map` says which) is one the parser accepts and is
/// flat: its header (and ext header) then only scalars, ASCII strings, ASCII
/// GeoJSON text and blobs, exactly filling it. Checked in one tight pass
/// without building elements or errors; `false` says nothing about validity
/// (nested collections, ext values, non-ASCII text, anything malformed: the
/// full reader decides).
#[inline(always)]
pub(crate) fn is_flat_collection(op: &[u8], at: usize, is_map: bool) -> bool {
    let Some(&m) = op.get(at) else {
        return false;
    };
    let mut i = at + 1;
    let len = match (m, is_map) {
        (0x90..=0x9f, false) | (0x80..=0x8f, true) => u64::from(m & 0x0f),
        (0xdc, false) | (0xde, true) => match op.get(i..).and_then(|b| b.first_chunk::<2>()) {
            Some(n) => {
                i += 2;
                u64::from(u16::from_be_bytes(*n))
            }
            None => return false,
        },
        (0xdd, false) | (0xdf, true) => match op.get(i..).and_then(|b| b.first_chunk::<4>()) {
            Some(n) => {
                i += 4;
                u64::from(u32::from_be_bytes(*n))
            }
            None => return false,
        },
        _ => return false,
    };
    let per = if is_map { 2 } else { 1 };
    let mut left = if len == 0 {
        0
    } else {
        // An ext header (an ordered collection) takes the first element; a
        // map's also its nil value.
        let ext = match op.get(i) {
            Some(0xd4) => 1 + 1,
            Some(0xd5) => 1 + 2,
            Some(0xd6) => 1 + 4,
            Some(0xd7) => 1 + 8,
            Some(0xd8) => 1 + 16,
            Some(0xc7) => match op.get(i + 1) {
                Some(&n) => 2 + usize::from(n),
                None => return false,
            },
            Some(0xc8 | 0xc9) => return false,
            _ => 0,
        };
        if ext == 0 {
            len * per
        } else {
            i += 1 + ext;
            if is_map {
                if op.get(i) != Some(&0xc0) {
                    return false;
                }
                i += 1;
            }
            (len - 1) * per
        }
    };
    let end = op.len();
    // Every element takes at least one byte.
    if left > end.saturating_sub(i) as u64 {
        return false;
    }
    while left > 0 {
        left -= 1;
        let Some(&m) = op.get(i) else {
            return false;
        };
        let class = ELEM_CLASS[usize::from(m)];
        i += 1;
        if class < FIXED_MAX {
            // A scalar: its bytes are only skipped (an element cut short
            // leaves `i` past `end`, caught by the next load or the end).
            i += usize::from(class);
            continue;
        }
        let n = if class < STR8 {
            usize::from(class & !FIXSTR)
        } else if class == STR8 {
            let Some(&n) = op.get(i) else {
                return false;
            };
            i += 1;
            usize::from(n)
        } else {
            return false;
        };
        // A str/bin payload starts with its particle type (empty: "").
        if n == 0 {
            continue;
        }
        let to = i + n;
        let (Some(&ptype), Some(head)) = (op.get(i), op.get(..to)) else {
            return false;
        };
        let ok = match ptype {
            // The text ends at least 8 bytes into the op.
            particle::STRING | particle::GEOJSON => particle::is_ascii_ending(head, n - 1),
            particle::BLOB | particle::JAVA_BLOB..=particle::ERLANG_BLOB => true,
            _ => false,
        };
        if !ok {
            return false;
        }
        i = to;
    }
    i == end
}

/// The flags of the ext header leading a list or map value `raw` (the whole
/// particle value), if it has one. Persisted-index payloads are skipped.
pub fn header_ext_flags(raw: &[u8]) -> Option<u8> {
    let mut r = Reader::new(raw);
    match r.byte("collection header").ok()? {
        0x80..=0x9f => {}
        0xdc | 0xde => r.take(2, "collection length").map(|_| ()).ok()?,
        0xdd | 0xdf => r.take(4, "collection length").map(|_| ()).ok()?,
        _ => return None,
    }
    r.ext_header().ok()?
}
