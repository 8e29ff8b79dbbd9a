//! The frame builder: the parser's inverse, for the generator and the tests.
//! It writes every frame the parser accepts — the XDR bit, the LUT field,
//! bin LUTs, every particle type, ordered lists and flagged maps with their
//! ext headers (optionally a persisted-index payload), Aerospike's in-element
//! particle prefixes, HLL, GeoJSON with cells, compression — and, through
//! [`ValueSpec::Raw`] and `extra_fields`, shapes it rejects.
//!
//! Values are owned (this is not the hot path of the connector), but writing
//! appends straight into the caller's buffer with no other allocation, so a
//! generator can reuse one `Vec` for millions of frames.

use std::io::Write;

use crate::error::{Error, ErrorKind};
use crate::record::{ListOrder, MapOrder, Record, UserKey, Value};
use crate::wire::field;
use crate::wire::frame::{PROTO_HEADER, VERSION};
use crate::wire::header::{self, MsgHeader};
use crate::wire::msgpack::{
    header_ext_flags, Elem as WireElem, Reader, LIST_ORDERED, MAP_KEY_ORDERED,
    MAP_KEY_VALUE_ORDERED, MAP_PRESERVE_ORDER, MAX_DEPTH, PERSIST_INDEX,
};
use crate::wire::op::{FLAG_HAS_LUT, WRITE};
use crate::wire::particle as p;

/// Why a message cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("bin name {0:?} is longer than 255 bytes")]
    NameTooLong(String),
    #[error("{what}: {count} is more than the wire format's u16 allows")]
    TooMany { what: &'static str, count: usize },
    #[error("{what} of {len} bytes does not fit its length field")]
    TooLong { what: &'static str, len: usize },
    #[error("frame of {len} bytes is over the 48-bit proto length")]
    FrameTooLong { len: usize },
    #[error("zlib compression failed: {0}")]
    Zlib(String),
}

/// A user key, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Int(i64),
    Str(String),
    Blob(Vec<u8>),
    /// Not a key type Aerospike allows; the parser accepts it (particle 2).
    Float(f64),
}

impl Key {
    /// The borrowed form the parser returns.
    pub fn as_user_key(&self) -> UserKey<'_> {
        match self {
            Key::Int(i) => UserKey::Int(*i),
            Key::Str(s) => UserKey::Str(s),
            Key::Blob(b) => UserKey::Blob(b),
            Key::Float(f) => UserKey::Float(*f),
        }
    }
}

/// One msgpack element inside a list or map value, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Elem {
    Nil,
    Bool(bool),
    Int(i64),
    /// Written as uint64 (0xcf); the parser reads values above `i64::MAX` back
    /// as `Uint` and others as `Int`.
    Uint(u64),
    Float(f64),
    Str(String),
    Blob {
        ptype: u8,
        bytes: Vec<u8>,
    },
    Geo(String),
    List {
        order: ListOrder,
        items: Vec<Elem>,
    },
    Map {
        order: MapOrder,
        entries: Vec<(Elem, Elem)>,
    },
    /// A plain ext value (not a collection header).
    Ext {
        ty: i8,
        data: Vec<u8>,
    },
}

/// One bin value, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueSpec {
    Null,
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    /// Blob (4) or a language blob (7..=12).
    Blob {
        ptype: u8,
        bytes: Vec<u8>,
    },
    Hll(Vec<u8>),
    /// `persist_index`: set flag 0x10 and give the ext header a payload, as a
    /// server with a persisted index does.
    List {
        order: ListOrder,
        persist_index: bool,
        items: Vec<Elem>,
    },
    Map {
        order: MapOrder,
        persist_index: bool,
        entries: Vec<(Elem, Elem)>,
    },
    Geo {
        flags: u8,
        cells: Vec<u64>,
        json: String,
    },
    /// Any particle type and bytes, written as given (for malformed input).
    Raw {
        ptype: u8,
        bytes: Vec<u8>,
    },
}

/// One op.
#[derive(Debug, Clone, PartialEq)]
pub struct BinSpec {
    pub name: String,
    /// The raw wire value of the bin LUT (sets the has-LUT flag).
    pub lut: Option<u64>,
    pub value: ValueSpec,
}

impl BinSpec {
    pub fn new(name: &str, value: ValueSpec) -> Self {
        BinSpec {
            name: name.to_owned(),
            lut: None,
            value,
        }
    }
}

/// One change notification, owned: what [`Message::write_to`] puts on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub info1: u8,
    pub info2: u8,
    pub info3: u8,
    pub generation: u32,
    pub record_ttl: u32,
    pub transaction_ttl: u32,
    pub namespace: String,
    /// `Some("")` writes an empty set field (as the C client does).
    pub set: Option<String>,
    pub user_key: Option<Key>,
    /// `None`: computed from set and key (no key: no digest field at all).
    pub digest: Option<[u8; 20]>,
    /// The raw wire value of field 14.
    pub lut: Option<u64>,
    /// Written after the standard fields, as given (type, payload).
    pub extra_fields: Vec<(u8, Vec<u8>)>,
    pub bins: Vec<BinSpec>,
}

impl Message {
    /// A write as an official client sends it (info2 WRITE, transaction TTL
    /// 1000 ms, no XDR bit, no LUT).
    pub fn write_record(
        namespace: &str,
        set: Option<&str>,
        key: Option<Key>,
        bins: Vec<BinSpec>,
    ) -> Self {
        Message {
            info1: 0,
            info2: header::INFO2_WRITE,
            info3: 0,
            generation: 0,
            record_ttl: 0,
            transaction_ttl: 1000,
            namespace: namespace.to_owned(),
            set: set.map(str::to_owned),
            user_key: key,
            digest: None,
            lut: None,
            extra_fields: Vec::new(),
            bins,
        }
    }

    /// A delete (durable when `durable`).
    pub fn delete_record(
        namespace: &str,
        set: Option<&str>,
        key: Option<Key>,
        durable: bool,
    ) -> Self {
        let mut m = Message::write_record(namespace, set, key, Vec::new());
        m.info2 = header::INFO2_WRITE
            | header::INFO2_DELETE
            | if durable {
                header::INFO2_DURABLE_DELETE
            } else {
                0
            };
        m
    }

    /// The standard record of BENCHMARKS.md, as XDR sends it: namespace
    /// `test`, set `demo`, a 12-byte string key, XDR bit, LUT, generation
    /// 517, TTL 30 days, 10 bins (4 integers, a float, a bool, 16- and
    /// 64-byte strings, a list of 5 integers, a map of 3 string → integer).
    /// The benchmarks and the allocation test encode this one.
    pub fn standard() -> Self {
        let bins = vec![
            BinSpec::new("id", ValueSpec::Int(42)),
            BinSpec::new("count", ValueSpec::Int(-17)),
            BinSpec::new("ts", ValueSpec::Int(1_698_586_936)),
            BinSpec::new("big", ValueSpec::Int(i64::MAX / 3)),
            BinSpec::new("score", ValueSpec::Float(3.25)),
            BinSpec::new("active", ValueSpec::Bool(true)),
            BinSpec::new("name", ValueSpec::Str("sixteen-bytes-xx".to_owned())),
            BinSpec::new("desc", ValueSpec::Str("d".repeat(64))),
            BinSpec::new(
                "nums",
                ValueSpec::List {
                    order: ListOrder::Unordered,
                    persist_index: false,
                    items: (1..=5).map(|i| Elem::Int(i * 1000)).collect(),
                },
            ),
            BinSpec::new(
                "attrs",
                ValueSpec::Map {
                    order: MapOrder::Unordered,
                    persist_index: false,
                    entries: ["a", "bb", "ccc"]
                        .iter()
                        .zip(1..)
                        .map(|(k, v)| (Elem::Str((*k).to_owned()), Elem::Int(v)))
                        .collect(),
                },
            ),
        ];
        let mut m = Message::write_record(
            "test",
            Some("demo"),
            Some(Key::Str("user-0000042".to_owned())),
            bins,
        )
        .from_xdr(1_698_586_936_461);
        m.generation = 517;
        m.record_ttl = 30 * 24 * 3600;
        m
    }

    /// Sets the XDR bit and the LUT field, as XDR sends a record.
    pub fn from_xdr(mut self, lut: u64) -> Self {
        self.info1 |= header::INFO1_XDR;
        self.lut = Some(lut);
        self
    }

    /// The digest the frame carries: given, or computed from set and key.
    pub fn effective_digest(&self) -> Option<[u8; 20]> {
        self.digest.or_else(|| {
            self.user_key
                .as_ref()
                .map(|k| digest(self.set.as_deref().filter(|s| !s.is_empty()), k))
        })
    }

    /// The frame in a new buffer.
    pub fn to_vec(&self) -> Result<Vec<u8>, BuildError> {
        let mut out = Vec::with_capacity(256);
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Appends this message as a type-3 frame. On error `out` is left as it
    /// was.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), BuildError> {
        let start = out.len();
        let r = self.write_inner(out, start);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    fn write_inner(&self, out: &mut Vec<u8>, start: usize) -> Result<(), BuildError> {
        out.extend_from_slice(&[VERSION, 3, 0, 0, 0, 0, 0, 0]);
        let digest = self.effective_digest();
        let n_fields = 1
            + usize::from(self.set.is_some())
            + usize::from(self.user_key.is_some())
            + usize::from(digest.is_some())
            + usize::from(self.lut.is_some())
            + self.extra_fields.len();
        MsgHeader {
            info1: self.info1,
            info2: self.info2,
            info3: self.info3,
            info4: 0,
            result: 0,
            generation: self.generation,
            record_ttl: self.record_ttl,
            transaction_ttl: self.transaction_ttl,
            n_fields: u16_of("fields", n_fields)?,
            n_ops: u16_of("ops", self.bins.len())?,
        }
        .write(out);
        write_field(out, field::NAMESPACE, &[self.namespace.as_bytes()])?;
        if let Some(set) = &self.set {
            write_field(out, field::SET, &[set.as_bytes()])?;
        }
        // Field order as the official clients write it.
        if let Some(d) = &digest {
            write_field(out, field::DIGEST, &[d])?;
        }
        if let Some(key) = &self.user_key {
            let k = key.as_user_key();
            let int;
            let bytes: &[u8] = match key {
                Key::Int(i) => {
                    int = i.to_be_bytes();
                    &int
                }
                Key::Float(f) => {
                    int = f.to_be_bytes();
                    &int
                }
                Key::Str(s) => s.as_bytes(),
                Key::Blob(b) => b,
            };
            write_field(out, field::USER_KEY, &[&[k.particle_type()], bytes])?;
        }
        if let Some(lut) = self.lut {
            write_field(out, field::LUT, &[&lut.to_be_bytes()])?;
        }
        for (ty, data) in &self.extra_fields {
            write_field(out, *ty, &[data])?;
        }
        for bin in &self.bins {
            write_op(out, bin)?;
        }
        let body = out.len() - start - PROTO_HEADER;
        set_proto_len(&mut out[start..], body)
    }
}

fn u16_of(what: &'static str, count: usize) -> Result<u16, BuildError> {
    u16::try_from(count).map_err(|_| BuildError::TooMany { what, count })
}

fn u32_of(what: &'static str, len: usize) -> Result<u32, BuildError> {
    u32::try_from(len).map_err(|_| BuildError::TooLong { what, len })
}

/// Writes the 48-bit body length into the proto header at `frame[..8]`.
fn set_proto_len(frame: &mut [u8], body: usize) -> Result<(), BuildError> {
    if body >= 1 << 48 {
        return Err(BuildError::FrameTooLong { len: body });
    }
    let be = (body as u64).to_be_bytes();
    if let Some(h) = frame.get_mut(2..PROTO_HEADER) {
        h.copy_from_slice(&be[2..]);
    }
    Ok(())
}

fn write_field(out: &mut Vec<u8>, ty: u8, parts: &[&[u8]]) -> Result<(), BuildError> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.extend_from_slice(&u32_of("field", len + 1)?.to_be_bytes());
    out.push(ty);
    for part in parts {
        out.extend_from_slice(part);
    }
    Ok(())
}

fn write_op(out: &mut Vec<u8>, bin: &BinSpec) -> Result<(), BuildError> {
    let name_len =
        u8::try_from(bin.name.len()).map_err(|_| BuildError::NameTooLong(bin.name.clone()))?;
    let at = out.len();
    let flags = if bin.lut.is_some() { FLAG_HAS_LUT } else { 0 };
    out.extend_from_slice(&[
        0,
        0,
        0,
        0,
        WRITE,
        particle_type(&bin.value),
        flags,
        name_len,
    ]);
    out.extend_from_slice(bin.name.as_bytes());
    if let Some(lut) = bin.lut {
        out.extend_from_slice(&lut.to_be_bytes());
    }
    write_value(out, &bin.value)?;
    let size = u32_of("op", out.len() - at - 4)?;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// The particle type a value travels as.
pub fn particle_type(v: &ValueSpec) -> u8 {
    match v {
        ValueSpec::Null => p::NULL,
        ValueSpec::Int(_) => p::INTEGER,
        ValueSpec::Float(_) => p::FLOAT,
        ValueSpec::Str(_) => p::STRING,
        ValueSpec::Bool(_) => p::BOOL,
        ValueSpec::Blob { ptype, .. } | ValueSpec::Raw { ptype, .. } => *ptype,
        ValueSpec::Hll(_) => p::HLL,
        ValueSpec::List { .. } => p::LIST,
        ValueSpec::Map { .. } => p::MAP,
        ValueSpec::Geo { .. } => p::GEOJSON,
    }
}

fn write_value(out: &mut Vec<u8>, v: &ValueSpec) -> Result<(), BuildError> {
    match v {
        ValueSpec::Null => {}
        ValueSpec::Int(i) => out.extend_from_slice(&i.to_be_bytes()),
        ValueSpec::Float(f) => out.extend_from_slice(&f.to_be_bytes()),
        ValueSpec::Str(s) => out.extend_from_slice(s.as_bytes()),
        ValueSpec::Bool(b) => out.push(u8::from(*b)),
        ValueSpec::Blob { bytes, .. } | ValueSpec::Hll(bytes) | ValueSpec::Raw { bytes, .. } => {
            out.extend_from_slice(bytes)
        }
        ValueSpec::List {
            order,
            persist_index,
            items,
        } => {
            let flags = list_flags(*order) | if *persist_index { PERSIST_INDEX } else { 0 };
            write_list(out, flags, *persist_index, items)?;
        }
        ValueSpec::Map {
            order,
            persist_index,
            entries,
        } => {
            let flags = map_flags(*order) | if *persist_index { PERSIST_INDEX } else { 0 };
            write_map(out, flags, *persist_index, entries)?;
        }
        ValueSpec::Geo { flags, cells, json } => {
            out.push(*flags);
            out.extend_from_slice(&u16_of("GeoJSON cells", cells.len())?.to_be_bytes());
            for c in cells {
                out.extend_from_slice(&c.to_be_bytes());
            }
            out.extend_from_slice(json.as_bytes());
        }
    }
    Ok(())
}

fn list_flags(order: ListOrder) -> u8 {
    match order {
        ListOrder::Unordered => 0,
        ListOrder::Ordered => LIST_ORDERED,
    }
}

fn map_flags(order: MapOrder) -> u8 {
    match order {
        MapOrder::Unordered => 0,
        MapOrder::Key => MAP_KEY_ORDERED,
        MapOrder::KeyValue => MAP_KEY_VALUE_ORDERED,
        MapOrder::Insertion => MAP_PRESERVE_ORDER,
    }
}

/// Writes an array/map header of `n` entries (+1 when an ext header leads).
fn write_len_header(
    out: &mut Vec<u8>,
    n: usize,
    fix: u8,
    m16: u8,
    m32: u8,
) -> Result<(), BuildError> {
    let n = u32_of("list/map", n)?;
    if n < 16 {
        out.push(fix | n as u8);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(m16);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(m32);
        out.extend_from_slice(&n.to_be_bytes());
    }
    Ok(())
}

/// The ext header of an ordered/flagged collection: `C7 00 flags`, or with a
/// persisted-index payload (one made-up byte per element; sluice only skips it).
fn write_ext_header(
    out: &mut Vec<u8>,
    flags: u8,
    payload_len: Option<usize>,
) -> Result<(), BuildError> {
    match payload_len {
        None => out.extend_from_slice(&[0xc7, 0, flags]),
        Some(n) => {
            let n = n.max(1);
            write_ext_len(out, n)?;
            out.push(flags);
            out.extend(std::iter::repeat_n(0u8, n));
        }
    }
    Ok(())
}

fn write_ext_len(out: &mut Vec<u8>, n: usize) -> Result<(), BuildError> {
    match n {
        1 => out.push(0xd4),
        2 => out.push(0xd5),
        4 => out.push(0xd6),
        8 => out.push(0xd7),
        16 => out.push(0xd8),
        _ => {
            let n = u32_of("ext", n)?;
            if let Ok(n) = u8::try_from(n) {
                out.extend_from_slice(&[0xc7, n]);
            } else if let Ok(n) = u16::try_from(n) {
                out.push(0xc8);
                out.extend_from_slice(&n.to_be_bytes());
            } else {
                out.push(0xc9);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
    }
    Ok(())
}

fn write_list(
    out: &mut Vec<u8>,
    flags: u8,
    persist: bool,
    items: &[Elem],
) -> Result<(), BuildError> {
    let ext = flags != 0;
    write_len_header(out, items.len() + usize::from(ext), 0x90, 0xdc, 0xdd)?;
    if ext {
        write_ext_header(out, flags, persist.then_some(items.len()))?;
    }
    for e in items {
        write_elem(out, e)?;
    }
    Ok(())
}

fn write_map(
    out: &mut Vec<u8>,
    flags: u8,
    persist: bool,
    entries: &[(Elem, Elem)],
) -> Result<(), BuildError> {
    let ext = flags != 0;
    write_len_header(out, entries.len() + usize::from(ext), 0x80, 0xde, 0xdf)?;
    if ext {
        write_ext_header(out, flags, persist.then_some(entries.len()))?;
        out.push(0xc0);
    }
    for (k, v) in entries {
        write_elem(out, k)?;
        write_elem(out, v)?;
    }
    Ok(())
}

/// A str whose payload starts with a particle type byte (Aerospike's rule
/// for strings, blobs and GeoJSON inside collections).
fn write_prefixed(out: &mut Vec<u8>, ptype: u8, bytes: &[u8]) -> Result<(), BuildError> {
    let n = u32_of("string element", bytes.len() + 1)?;
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[0xd9, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xda);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.push(ptype);
    out.extend_from_slice(bytes);
    Ok(())
}

/// Writes one msgpack element (integers in their shortest form).
pub fn write_elem(out: &mut Vec<u8>, e: &Elem) -> Result<(), BuildError> {
    match e {
        Elem::Nil => out.push(0xc0),
        Elem::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Elem::Int(i) => write_int(out, *i),
        Elem::Uint(u) => {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
        Elem::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Elem::Str(s) => write_prefixed(out, p::STRING, s.as_bytes())?,
        Elem::Blob { ptype, bytes } => write_prefixed(out, *ptype, bytes)?,
        Elem::Geo(s) => write_prefixed(out, p::GEOJSON, s.as_bytes())?,
        Elem::List { order, items } => write_list(out, list_flags(*order), false, items)?,
        Elem::Map { order, entries } => write_map(out, map_flags(*order), false, entries)?,
        Elem::Ext { ty, data } => {
            write_ext_len(out, data.len())?;
            out.push(*ty as u8);
            out.extend_from_slice(data);
        }
    }
    Ok(())
}

fn write_int(out: &mut Vec<u8>, i: i64) {
    if (0..=0x7f).contains(&i) {
        out.push(i as u8);
    } else if (-32..0).contains(&i) {
        out.push(i as i8 as u8);
    } else if let Ok(v) = u8::try_from(i) {
        out.extend_from_slice(&[0xcc, v]);
    } else if let Ok(v) = u16::try_from(i) {
        out.push(0xcd);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(i) {
        out.push(0xce);
        out.extend_from_slice(&v.to_be_bytes());
    } else if i > 0 {
        out.push(0xcf);
        out.extend_from_slice(&(i as u64).to_be_bytes());
    } else if let Ok(v) = i8::try_from(i) {
        out.extend_from_slice(&[0xd0, v as u8]);
    } else if let Ok(v) = i16::try_from(i) {
        out.push(0xd1);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = i32::try_from(i) {
        out.push(0xd2);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

/// Appends a type-4 frame holding `frame` (a type-3 frame) zlib-compressed.
pub fn compress(frame: &[u8], out: &mut Vec<u8>) -> Result<(), BuildError> {
    let start = out.len();
    out.extend_from_slice(&[VERSION, 4, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&(frame.len() as u64).to_be_bytes());
    let mut z = flate2::write::ZlibEncoder::new(&mut *out, flate2::Compression::default());
    let r = z.write_all(frame).and_then(|()| z.finish().map(|_| ()));
    if let Err(e) = r {
        out.truncate(start);
        return Err(BuildError::Zlib(e.to_string()));
    }
    let body = out.len() - start - PROTO_HEADER;
    set_proto_len(&mut out[start..], body)
}

/// RIPEMD-160 over set bytes, the key's particle type byte and key bytes:
/// the record digest the server computes.
pub fn digest(set: Option<&str>, key: &Key) -> [u8; 20] {
    field::digest(set, &key.as_user_key())
}

impl Elem {
    /// The owned form of the next whole value of `r` (nested values
    /// included, at most [`MAX_DEPTH`] levels).
    pub fn read(r: &mut Reader<'_>) -> Result<Elem, Error> {
        Elem::read_at(r, 0)
    }

    fn read_at(r: &mut Reader<'_>, depth: usize) -> Result<Elem, Error> {
        let at = r.position();
        let e = r.next()?;
        if matches!(e, WireElem::List { .. } | WireElem::Map { .. }) && depth >= MAX_DEPTH {
            return Err(Error {
                kind: ErrorKind::TooDeep { max: MAX_DEPTH },
                offset: at,
            });
        }
        Ok(match e {
            WireElem::Nil => Elem::Nil,
            WireElem::Bool(b) => Elem::Bool(b),
            WireElem::Int(i) => Elem::Int(i),
            WireElem::Uint(u) => Elem::Uint(u),
            WireElem::Float(f) => Elem::Float(f),
            WireElem::Str(s) => Elem::Str(s.to_owned()),
            WireElem::Blob { ptype, bytes } => Elem::Blob {
                ptype,
                bytes: bytes.to_vec(),
            },
            WireElem::Geo(s) => Elem::Geo(s.to_owned()),
            WireElem::Ext { ty, data } => Elem::Ext {
                ty,
                data: data.to_vec(),
            },
            WireElem::List { len, order } => Elem::List {
                order,
                items: read_items(r, len, depth + 1)?,
            },
            WireElem::Map { len, order } => Elem::Map {
                order,
                entries: read_entries(r, len, depth + 1)?,
            },
        })
    }
}

// Lengths come from validated input but are still untrusted: grow as
// elements are actually read, never reserve by a declared count.
fn read_items(r: &mut Reader<'_>, len: u32, depth: usize) -> Result<Vec<Elem>, Error> {
    let mut items = Vec::new();
    for _ in 0..len {
        items.push(Elem::read_at(r, depth)?);
    }
    Ok(items)
}

fn read_entries(r: &mut Reader<'_>, len: u32, depth: usize) -> Result<Vec<(Elem, Elem)>, Error> {
    let mut entries = Vec::new();
    for _ in 0..len {
        let k = Elem::read_at(r, depth)?;
        entries.push((k, Elem::read_at(r, depth)?));
    }
    Ok(entries)
}

impl ValueSpec {
    /// The owned form of a parsed bin value (tests and tools compare
    /// what they built with what the parser read). A narrow integer on the
    /// wire comes back as `Int`; a collection's persisted-index payload is
    /// not kept, only its flag.
    pub fn from_value(v: &Value<'_>) -> Result<ValueSpec, Error> {
        let persist = |raw: &[u8]| header_ext_flags(raw).is_some_and(|f| f & PERSIST_INDEX != 0);
        Ok(match *v {
            Value::Null => ValueSpec::Null,
            Value::Int(i) => ValueSpec::Int(i),
            Value::Float(f) => ValueSpec::Float(f),
            Value::Str(s) => ValueSpec::Str(s.to_owned()),
            Value::Bool(b) => ValueSpec::Bool(b),
            Value::Blob { ptype, bytes } => ValueSpec::Blob {
                ptype,
                bytes: bytes.to_vec(),
            },
            Value::Hll(b) => ValueSpec::Hll(b.to_vec()),
            Value::List { order, items } => ValueSpec::List {
                order,
                persist_index: persist(items.raw),
                items: read_items(&mut Reader::new(items.body), items.len, 1)?,
            },
            Value::Map { order, items } => ValueSpec::Map {
                order,
                persist_index: persist(items.raw),
                entries: read_entries(&mut Reader::new(items.body), items.len, 1)?,
            },
            Value::Geo(g) => ValueSpec::Geo {
                flags: g.flags,
                cells: g.cell_ids().collect(),
                json: g.json.to_owned(),
            },
        })
    }
}

impl Message {
    /// The owned form of a parsed record. The digest is always `Some` (the
    /// parser computes a missing one), the LUTs are the parser's Unix ms
    /// (written back as such), an empty set field comes back as `None`, and
    /// fields sluice ignores are not kept.
    pub fn from_record(rec: &Record<'_>) -> Result<Message, Error> {
        let h = MsgHeader::read(
            rec.message.get(PROTO_HEADER..).unwrap_or_default(),
            PROTO_HEADER,
        )?;
        let mut bins = Vec::with_capacity(rec.bins.len());
        for b in rec.bins.iter() {
            bins.push(BinSpec {
                name: b.name.to_owned(),
                lut: b.lut,
                value: ValueSpec::from_value(&b.value)?,
            });
        }
        Ok(Message {
            info1: rec.info1,
            info2: rec.info2,
            info3: rec.info3,
            generation: rec.generation,
            record_ttl: rec.record_ttl,
            transaction_ttl: h.transaction_ttl,
            namespace: rec.namespace.to_owned(),
            set: rec.set.map(str::to_owned),
            user_key: match rec.user_key {
                None => None,
                Some(UserKey::Int(i)) => Some(Key::Int(i)),
                Some(UserKey::Str(s)) => Some(Key::Str(s.to_owned())),
                Some(UserKey::Blob(b)) => Some(Key::Blob(b.to_vec())),
                Some(UserKey::Float(f)) => Some(Key::Float(f)),
            },
            digest: Some(rec.digest),
            lut: rec.lut,
            extra_fields: Vec::new(),
            bins,
        })
    }
}
