//! The borrowed view of one change notification: what the parser returns and
//! every encoder reads. Nothing here owns record data; a `Record` lives only as
//! long as the buffer its frame was cut from.

/// What a change notification does to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A write: WRITE set, DELETE clear. Carries bins (possibly none).
    Write,
    /// A delete: WRITE and DELETE both set; `durable` when DURABLE_DELETE too.
    Delete { durable: bool },
}

/// The user key, when the record stored it (`send-key`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UserKey<'a> {
    Int(i64),
    Float(f64),
    Str(&'a str),
    Blob(&'a [u8]),
}

impl UserKey<'_> {
    /// The particle type byte that prefixes the key on the wire and in the digest.
    pub fn particle_type(&self) -> u8 {
        match self {
            UserKey::Int(_) => crate::wire::particle::INTEGER,
            UserKey::Float(_) => crate::wire::particle::FLOAT,
            UserKey::Str(_) => crate::wire::particle::STRING,
            UserKey::Blob(_) => crate::wire::particle::BLOB,
        }
    }
}

/// Order of a list bin (XDR-PROTOCOL.md §5 ext header flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListOrder {
    #[default]
    Unordered,
    Ordered,
}

/// Order of a map bin (XDR-PROTOCOL.md §5 ext header flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MapOrder {
    #[default]
    Unordered,
    /// flag 0x01
    Key,
    /// flag 0x03
    KeyValue,
    /// flag 0x08 (preserve insertion order)
    Insertion,
}

impl MapOrder {
    /// The flag value used by the message-pack format for this order.
    pub fn flags(self) -> u8 {
        match self {
            MapOrder::Unordered => 0,
            MapOrder::Key => 1,
            MapOrder::KeyValue => 3,
            MapOrder::Insertion => 8,
        }
    }
}

/// A collection value still in Aerospike's msgpack, validated by the parser.
/// `body` starts right after the collection's own header and any ext
/// header element, so a reader sees `len` plain elements (maps: `len` pairs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Collection<'a> {
    /// The whole particle value as on the wire (header and ext included).
    pub raw: &'a [u8],
    /// The elements after the header (and ext element), Aerospike's msgpack.
    pub body: &'a [u8],
    /// Number of elements (lists) or key/value pairs (maps), ext excluded.
    pub len: u32,
}

impl<'a> Collection<'a> {
    /// A reader over the elements. Only for collections of a parsed record
    /// (the parser validated the body, so its strings are not checked for
    /// UTF-8 again); crate-internal, because anyone can build a `Collection`.
    pub(crate) fn elements(&self) -> crate::wire::msgpack::Reader<'a> {
        crate::wire::msgpack::Reader::validated(self.body)
    }
}

/// A GeoJSON particle: flags, cell ids (big-endian u64s, raw) and the JSON text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geo<'a> {
    pub flags: u8,
    /// `n × 8` bytes of big-endian cell ids.
    pub cells: &'a [u8],
    pub json: &'a str,
}

impl Geo<'_> {
    /// The cell ids, decoded.
    pub fn cell_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.cells.chunks_exact(8).map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_be_bytes(b)
        })
    }
}

/// One bin value. Lists and maps stay in msgpack (see [`crate::wire::msgpack`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Particle type 0: the write deleted this bin.
    Null,
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bool(bool),
    /// Blob (4) or a language blob (7..=12); `ptype` keeps which.
    Blob {
        ptype: u8,
        bytes: &'a [u8],
    },
    Hll(&'a [u8]),
    List {
        order: ListOrder,
        items: Collection<'a>,
    },
    Map {
        order: MapOrder,
        items: Collection<'a>,
    },
    Geo(Geo<'a>),
}

impl Value<'_> {
    /// The particle type this value travels as on the wire.
    pub fn particle_type(&self) -> u8 {
        use crate::wire::particle as p;
        match self {
            Value::Null => p::NULL,
            Value::Int(_) => p::INTEGER,
            Value::Float(_) => p::FLOAT,
            Value::Str(_) => p::STRING,
            Value::Bool(_) => p::BOOL,
            Value::Blob { ptype, .. } => *ptype,
            Value::Hll(_) => p::HLL,
            Value::List { .. } => p::LIST,
            Value::Map { .. } => p::MAP,
            Value::Geo(_) => p::GEOJSON,
        }
    }
}

/// One bin of a write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin<'a> {
    pub name: &'a str,
    /// The bin's last-update time (Unix ms) when the op carried one.
    pub lut: Option<u64>,
    pub value: Value<'a>,
}

/// The ops region of a message, already validated by the parser; iterating
/// it again cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bins<'a> {
    pub(crate) ops: &'a [u8],
    pub(crate) count: u16,
}

impl<'a> Bins<'a> {
    pub fn len(&self) -> usize {
        self.count as usize
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    pub fn iter(&self) -> crate::wire::op::BinIter<'a> {
        crate::wire::op::BinIter::new(self.ops, self.count)
    }
}

impl<'a> IntoIterator for Bins<'a> {
    type Item = Bin<'a>;
    type IntoIter = crate::wire::op::BinIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// One change notification, borrowed from the buffer its frame was cut from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<'a> {
    /// The whole type-3 message, 8-byte proto header included (inflated if it
    /// arrived compressed): the `xdr` pass-through body.
    pub message: &'a [u8],
    pub info1: u8,
    pub info2: u8,
    pub info3: u8,
    pub action: Action,
    pub generation: u32,
    /// Seconds to live relative to now; 0 and 0xFFFF_FFFF never expire.
    pub record_ttl: u32,
    pub namespace: &'a str,
    /// `None` when absent or empty.
    pub set: Option<&'a str>,
    pub user_key: Option<UserKey<'a>>,
    /// RIPEMD-160 digest: from the digest field, or computed from set and key.
    pub digest: [u8; 20],
    /// Last-update time in Unix ms (either wire epoch normalised), when sent.
    pub lut: Option<u64>,
    pub bins: Bins<'a>,
}

impl Record<'_> {
    /// True when info1 carries the XDR bit.
    pub fn is_xdr(&self) -> bool {
        self.info1 & crate::wire::header::INFO1_XDR != 0
    }

    /// Expiry in Unix seconds per FORMATS.md: `lut/1000 + ttl`, 0 = never.
    /// `received_ms` stands in for the LUT when the frame had none.
    pub fn expiry(&self, received_ms: u64) -> u64 {
        if self.record_ttl == 0 || self.record_ttl == u32::MAX {
            return 0;
        }
        self.lut.unwrap_or(received_ms) / 1000 + u64::from(self.record_ttl)
    }
}
