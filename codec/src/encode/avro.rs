//! The `avro` format: one raw Avro binary datum per record (no container
//! header, no schema in the body: the consumer holds the schema), written
//! against the user's schema or [`DEFAULT_SCHEMA`].
//!
//! How a record fills the schema (docs/FORMATS.md): the top-level record's
//! field `metadata` gets the metadata (`msg`, `namespace`, `set`, `userKey`,
//! `digest`, `gen`, `lut`, `exp`, `durable`, by name); a field named like a
//! bin's output name gets that bin; a field `bins` of map type gets every bin
//! that has no field of its own. A bin with no place to go, a value that fits
//! no branch of its field's type, or a non-nullable field with nothing to put
//! in it is an [`EncodeError::AvroMismatch`] for that record. A union takes
//! the first branch that accepts the value's kind; a record with exactly one
//! field accepts what its field accepts (the value is wrapped in it: that is
//! how the default schema nests collections).
//!
//! The schema is parsed once by `apache-avro` and compiled into a [`Plan`]:
//! a flat arena of writer nodes (named types are one node, so recursive
//! schemas are cycles of indices). Encoding walks the record and the plan
//! together and writes zigzag varints, lengths and bytes straight into the
//! output buffer: nothing is allocated per record (errors aside).

use std::collections::HashMap;
use std::fmt;

use apache_avro::schema::Name;
use apache_avro::Schema;
use base64::Engine as _;

use super::{BinPolicy, EncodeError, OutName, SchemaError, MAX_DEPTH};
use crate::record::{Action, Bin, ListOrder, MapOrder, Record, UserKey, Value};
use crate::wire::msgpack::{Elem, Reader};

/// The schema used when the config names none: the metadata record plus a
/// map of every bin. Bin values are a union of the scalar types, arrays and
/// maps; elements of arrays and maps are wrapped in the one-field record
/// `Element` (Avro allows recursion only through named types).
pub const DEFAULT_SCHEMA: &str = r#"{
  "type": "record", "name": "AerospikeRecord", "namespace": "sluice",
  "fields": [
    {"name": "metadata", "type": {"type": "record", "name": "Metadata", "fields": [
      {"name": "msg", "type": "string"},
      {"name": "namespace", "type": "string"},
      {"name": "set", "type": ["null", "string"], "default": null},
      {"name": "userKey", "type": ["null", "long", "double", "string", "bytes"], "default": null},
      {"name": "digest", "type": "bytes"},
      {"name": "gen", "type": "long"},
      {"name": "lut", "type": "long"},
      {"name": "exp", "type": ["null", "long"], "default": null},
      {"name": "durable", "type": ["null", "boolean"], "default": null}
    ]}},
    {"name": "bins", "type": {"type": "map", "values": [
      "null", "boolean", "long", "double", "string", "bytes",
      {"type": "array", "items": {"type": "record", "name": "Element", "fields": [
        {"name": "value", "type": [
          "null", "boolean", "long", "double", "string", "bytes",
          {"type": "array", "items": "Element"},
          {"type": "map", "values": "Element"}
        ]}
      ]}},
      {"type": "map", "values": "Element"}
    ]}}
  ]
}"#;

/// Index of a node in [`Plan::nodes`].
type NodeId = usize;

/// One writer node: what a schema (or a named type) writes.
#[derive(Debug)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    /// `long` with logical type `timestamp-millis`.
    TimestampMillis,
    Float,
    Double,
    String,
    Bytes,
    Enum(Box<[Box<str>]>),
    Fixed(usize),
    Array(NodeId),
    Map(NodeId),
    /// Fields in schema order.
    Record(Box<[(Box<str>, NodeId)]>),
    Union(Box<[NodeId]>),
    /// A type no record value maps to (decimal, uuid, date, ...).
    Nothing,
}

/// How a nullable type writes null: nothing, or the null branch's index.
#[derive(Debug, Clone, Copy)]
enum Null {
    Plain,
    Branch(u32),
}

/// Which part of the record a metadata field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meta {
    Msg,
    Namespace,
    Set,
    UserKey,
    Digest,
    Gen,
    Lut,
    Exp,
    Durable,
    /// A field sluice does not write: null when nullable, else an error.
    Other,
}

#[derive(Debug)]
struct MetaField {
    name: Box<str>,
    source: Meta,
    node: NodeId,
    null: Option<Null>,
}

/// One field of the top-level record.
#[derive(Debug)]
enum TopField {
    /// The `metadata` field: its record's fields, or `None` when its type is
    /// not a record (every record is then a mismatch).
    Metadata(Option<Box<[MetaField]>>),
    /// Any other field: the bin of that name, else (`bins_map`, for a field
    /// `bins` of map type) every bin without a field of its own, else null.
    Value {
        name: Box<str>,
        node: NodeId,
        null: Option<Null>,
        /// The union branch holding the map (if the type is a union) and the
        /// map's value node.
        bins_map: Option<(Option<u32>, NodeId)>,
    },
}

/// How many kinds of value [`kind`] tells apart.
const KINDS: usize = 11;

/// The kind of a value, as far as choosing a union branch goes.
fn kind(e: &Elem<'_>) -> usize {
    match e {
        Elem::Nil => 0,
        Elem::Bool(_) => 1,
        Elem::Int(_) => 2,
        Elem::Uint(_) => 3,
        Elem::Float(_) => 4,
        Elem::Str(_) => 5,
        Elem::Geo(_) => 6,
        Elem::Blob { .. } => 7,
        Elem::Ext { .. } => 8,
        Elem::List { .. } => 9,
        Elem::Map { .. } => 10,
    }
}

/// Whether a node takes values of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    Never,
    Always,
    /// Depends on the value (an int in `int`, a string in an `enum`, a blob
    /// in a `fixed`).
    Maybe,
}

/// For a union (or a one-field record), decided when the schema is
/// compiled: which branch a value of each kind takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pick {
    /// This branch (a record: wrap the value in its field).
    Branch(u32),
    NoFit,
    /// Ask each branch with the value itself.
    Ask,
}

/// The compiled schema.
#[derive(Debug)]
struct Plan {
    nodes: Vec<Node>,
    /// Per node and kind of value: the branch to take (unions and
    /// one-field records; `NoFit` elsewhere).
    picks: Vec<[Pick; KINDS]>,
    /// The schema each node came from, as JSON (for error messages).
    texts: Vec<Box<str>>,
    top: Vec<TopField>,
}

/// A parsed schema, compiled for writing.
#[derive(Debug)]
pub struct AvroFormat {
    schema: Schema,
    plan: Plan,
    stringify_map_keys: bool,
}

/// Longest schema text quoted in an error message.
const MAX_SCHEMA_TEXT: usize = 200;

/// Most single-field records and unions a value may pass through without
/// being written. Bounds the search for a branch, and the writing, on a
/// schema whose one-field record holds itself through a union (where the
/// first-branch rule would wrap the value forever: a mismatch instead).
const MAX_WRAPS: usize = 8;

/// Compiles `apache_avro` schemas into plan nodes.
struct Compiler<'s> {
    names: HashMap<Name, &'s Schema>,
    /// Named types already given a node (recursion ends here).
    done: HashMap<Name, NodeId>,
    nodes: Vec<Node>,
    texts: Vec<Box<str>>,
}

impl<'s> Compiler<'s> {
    fn resolve(&self, s: &'s Schema) -> &'s Schema {
        match s {
            Schema::Ref { name } => self
                .names
                .get(name)
                .or_else(|| {
                    self.names
                        .iter()
                        .find(|(n, _)| n.name() == name.name())
                        .map(|(_, s)| s)
                })
                .copied()
                .unwrap_or(s),
            _ => s,
        }
    }

    fn push(&mut self, node: Node, s: &Schema) -> NodeId {
        let mut text = serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"));
        if text.len() > MAX_SCHEMA_TEXT {
            let mut cut = MAX_SCHEMA_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        self.nodes.push(node);
        self.texts.push(text.into());
        self.nodes.len() - 1
    }

    fn compile(&mut self, s: &'s Schema) -> NodeId {
        let s = self.resolve(s);
        if let Some(name) = s.name() {
            if let Some(&id) = self.done.get(name) {
                return id;
            }
        }
        match s {
            Schema::Null => self.push(Node::Null, s),
            Schema::Boolean => self.push(Node::Boolean, s),
            Schema::Int => self.push(Node::Int, s),
            Schema::Long => self.push(Node::Long, s),
            Schema::TimestampMillis => self.push(Node::TimestampMillis, s),
            Schema::Float => self.push(Node::Float, s),
            Schema::Double => self.push(Node::Double, s),
            Schema::String => self.push(Node::String, s),
            Schema::Bytes => self.push(Node::Bytes, s),
            Schema::Enum(e) => {
                let symbols = e.symbols.iter().map(|x| x.as_str().into()).collect();
                let id = self.push(Node::Enum(symbols), s);
                self.done.insert(e.name.clone(), id);
                id
            }
            Schema::Fixed(f) => {
                let id = self.push(Node::Fixed(f.size), s);
                self.done.insert(f.name.clone(), id);
                id
            }
            Schema::Array(a) => {
                let id = self.push(Node::Nothing, s);
                self.nodes[id] = Node::Array(self.compile(&a.items));
                id
            }
            Schema::Map(m) => {
                let id = self.push(Node::Nothing, s);
                self.nodes[id] = Node::Map(self.compile(&m.types));
                id
            }
            Schema::Union(u) => {
                let id = self.push(Node::Nothing, s);
                let branches = u.variants().iter().map(|v| self.compile(v)).collect();
                self.nodes[id] = Node::Union(branches);
                id
            }
            Schema::Record(r) => {
                // Registered before its fields, so that they may refer to it.
                let id = self.push(Node::Nothing, s);
                self.done.insert(r.name.clone(), id);
                let fields = r
                    .fields
                    .iter()
                    .map(|f| (f.name.as_str().into(), self.compile(&f.schema)))
                    .collect();
                self.nodes[id] = Node::Record(fields);
                id
            }
            _ => self.push(Node::Nothing, s),
        }
    }

    /// How `s` writes null, when it can.
    fn null_of(&self, s: &'s Schema) -> Option<Null> {
        match self.resolve(s) {
            Schema::Null => Some(Null::Plain),
            Schema::Union(u) => u
                .variants()
                .iter()
                .position(|v| matches!(v, Schema::Null))
                .map(|i| Null::Branch(i as u32)),
            _ => None,
        }
    }

    /// For a field `bins`: the map it is (or the union branch that is one).
    fn map_of(&mut self, s: &'s Schema) -> Option<(Option<u32>, NodeId)> {
        match self.resolve(s) {
            Schema::Map(m) => Some((None, self.compile(&m.types))),
            Schema::Union(u) => {
                let (i, m) =
                    u.variants()
                        .iter()
                        .enumerate()
                        .find_map(|(i, v)| match self.resolve(v) {
                            Schema::Map(m) => Some((i, m)),
                            _ => None,
                        })?;
                Some((Some(i as u32), self.compile(&m.types)))
            }
            _ => None,
        }
    }

    fn metadata(&mut self, s: &'s Schema) -> Option<Box<[MetaField]>> {
        let Schema::Record(r) = self.resolve(s) else {
            return None;
        };
        let fields = r
            .fields
            .iter()
            .map(|f| MetaField {
                name: f.name.as_str().into(),
                source: match f.name.as_str() {
                    "msg" => Meta::Msg,
                    "namespace" => Meta::Namespace,
                    "set" => Meta::Set,
                    "userKey" => Meta::UserKey,
                    "digest" => Meta::Digest,
                    "gen" => Meta::Gen,
                    "lut" => Meta::Lut,
                    "exp" => Meta::Exp,
                    "durable" => Meta::Durable,
                    _ => Meta::Other,
                },
                node: self.compile(&f.schema),
                null: self.null_of(&f.schema),
            })
            .collect();
        Some(fields)
    }
}

/// Where a value being written comes from, for error messages.
#[derive(Clone, Copy)]
enum Label<'a> {
    Bin(OutName<'a>),
    Meta(&'a str),
}

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::Bin(n) => f.write_str(&n.to_owned_string()),
            Label::Meta(n) => write!(f, "metadata.{n}"),
        }
    }
}

fn mismatch(what: String) -> EncodeError {
    EncodeError::AvroMismatch(what)
}

fn kind_name(e: &Elem<'_>) -> &'static str {
    match e {
        Elem::Nil => "null",
        Elem::Bool(_) => "boolean",
        Elem::Int(_) | Elem::Uint(_) => "integer",
        Elem::Float(_) => "float",
        Elem::Str(_) | Elem::Geo(_) => "string",
        Elem::Blob { .. } | Elem::Ext { .. } => "bytes",
        Elem::List { .. } => "list",
        Elem::Map { .. } => "map",
    }
}

/// A scalar as it will be written.
enum Scalar<'a> {
    Null,
    Boolean(bool),
    /// int and long: both zigzag varints.
    Long(i64),
    Float(f32),
    Double(f64),
    /// string and bytes: length, then the bytes.
    Bytes(&'a [u8]),
    /// fixed: the bytes alone.
    Fixed(&'a [u8]),
}

/// A scalar element in a non-union, non-collection node, if it fits.
fn scalar<'a>(e: &Elem<'a>, node: &Node) -> Option<Scalar<'a>> {
    Some(match (*e, node) {
        (Elem::Nil, Node::Null) => Scalar::Null,
        (Elem::Bool(b), Node::Boolean) => Scalar::Boolean(b),
        (Elem::Int(i), Node::Long | Node::TimestampMillis) => Scalar::Long(i),
        (Elem::Int(i), Node::Int) => Scalar::Long(i64::from(i32::try_from(i).ok()?)),
        (Elem::Uint(u), Node::Long) => Scalar::Long(i64::try_from(u).ok()?),
        (Elem::Float(f), Node::Double) => Scalar::Double(f),
        (Elem::Float(f), Node::Float) => Scalar::Float(f as f32),
        (Elem::Str(t) | Elem::Geo(t), Node::String) => Scalar::Bytes(t.as_bytes()),
        (Elem::Str(t), Node::Enum(symbols)) => {
            let i = symbols.iter().position(|x| **x == *t)?;
            Scalar::Long(i as i64)
        }
        (Elem::Blob { bytes, .. } | Elem::Ext { data: bytes, .. }, Node::Bytes) => {
            Scalar::Bytes(bytes)
        }
        (Elem::Blob { bytes, .. }, Node::Fixed(size)) if *size == bytes.len() => {
            Scalar::Fixed(bytes)
        }
        _ => return None,
    })
}

/// Appends `v` as an Avro `long` (also `int`): zigzag, then a base-128 varint.
fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Appends a length-prefixed `string` or `bytes`.
fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

fn write_scalar(out: &mut Vec<u8>, s: Scalar<'_>) {
    match s {
        Scalar::Null => {}
        Scalar::Boolean(b) => out.push(u8::from(b)),
        Scalar::Long(i) => write_long(out, i),
        Scalar::Float(f) => out.extend_from_slice(&f.to_le_bytes()),
        Scalar::Double(f) => out.extend_from_slice(&f.to_le_bytes()),
        Scalar::Bytes(b) => write_bytes(out, b),
        Scalar::Fixed(b) => out.extend_from_slice(b),
    }
}

fn write_null(out: &mut Vec<u8>, n: Null) {
    if let Null::Branch(i) = n {
        write_long(out, i64::from(i));
    }
}

/// Appends a map key (or any text) as an Avro string, the text formatted on
/// the stack.
fn write_text(out: &mut Vec<u8>, text: &str) {
    write_bytes(out, text.as_bytes());
}

/// Whether `node` takes values of kind `k` (see [`kind`]).
fn fit(nodes: &[Node], node: NodeId, k: usize, wraps: usize) -> Fit {
    use Fit::{Always, Maybe, Never};
    if wraps > MAX_WRAPS {
        return Never;
    }
    let is = |want: bool| if want { Always } else { Never };
    match &nodes[node] {
        Node::Union(branches) => {
            branches
                .iter()
                .fold(Never, |acc, &b| match (acc, fit(nodes, b, k, wraps + 1)) {
                    (Always, _) | (_, Always) => Always,
                    (Maybe, _) | (_, Maybe) => Maybe,
                    _ => Never,
                })
        }
        Node::Record(fields) if fields.len() == 1 => fit(nodes, fields[0].1, k, wraps + 1),
        Node::Array(_) => is(k == 9),
        Node::Map(_) => is(k == 10),
        Node::Null => is(k == 0),
        Node::Boolean => is(k == 1),
        Node::Long if k == 3 => Maybe,
        Node::Long | Node::TimestampMillis => is(k == 2),
        Node::Int if k == 2 => Maybe,
        Node::Float | Node::Double => is(k == 4),
        Node::String => is(k == 5 || k == 6),
        Node::Enum(_) if k == 5 => Maybe,
        Node::Bytes => is(k == 7 || k == 8),
        Node::Fixed(_) if k == 7 => Maybe,
        _ => Never,
    }
}

/// The branch of union (or one-field record) `node` that values of kind
/// `k` take: the first that accepts the kind.
fn pick(nodes: &[Node], node: NodeId, k: usize) -> Pick {
    let of = |f, i| match f {
        Fit::Always => Some(Pick::Branch(i)),
        Fit::Maybe => Some(Pick::Ask),
        Fit::Never => None,
    };
    match &nodes[node] {
        Node::Union(branches) => (0..)
            .zip(branches.iter())
            .find_map(|(i, &b)| of(fit(nodes, b, k, 0), i))
            .unwrap_or(Pick::NoFit),
        Node::Record(fields) if fields.len() == 1 => {
            of(fit(nodes, fields[0].1, k, 0), 0).unwrap_or(Pick::NoFit)
        }
        _ => Pick::NoFit,
    }
}

impl AvroFormat {
    pub fn new(schema_json: &str, stringify_map_keys: bool) -> Result<Self, SchemaError> {
        let schema =
            Schema::parse_str(schema_json).map_err(|e| SchemaError::Parse(e.to_string()))?;
        let Schema::Record(top) = &schema else {
            return Err(SchemaError::NotARecord(format!(
                "{:?}",
                apache_avro::schema::SchemaKind::from(&schema)
            )));
        };
        let resolved = apache_avro::schema::ResolvedSchema::try_from(&schema)
            .map_err(|e| SchemaError::Parse(e.to_string()))?;
        let mut c = Compiler {
            names: resolved
                .get_names()
                .iter()
                .map(|(n, s)| (n.clone(), *s))
                .collect(),
            done: HashMap::new(),
            nodes: Vec::new(),
            texts: Vec::new(),
        };
        let top = top
            .fields
            .iter()
            .map(|f| {
                if f.name == "metadata" {
                    TopField::Metadata(c.metadata(&f.schema))
                } else {
                    TopField::Value {
                        name: f.name.as_str().into(),
                        node: c.compile(&f.schema),
                        null: c.null_of(&f.schema),
                        bins_map: if f.name == "bins" {
                            c.map_of(&f.schema)
                        } else {
                            None
                        },
                    }
                }
            })
            .collect();
        let picks = (0..c.nodes.len())
            .map(|id| std::array::from_fn(|k| pick(&c.nodes, id, k)))
            .collect();
        let plan = Plan {
            nodes: c.nodes,
            picks,
            texts: c.texts,
            top,
        };
        Ok(AvroFormat {
            schema,
            plan,
            stringify_map_keys,
        })
    }

    /// The parsed schema (for readers in tests and tools).
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// True when `name` is a top-level field other than `metadata` (a bin
    /// of that name goes there, not into `bins`).
    fn is_field(&self, name: &OutName<'_>) -> bool {
        self.plan.top.iter().any(|f| match f {
            TopField::Value { name: n, .. } => name.eq_str(n),
            TopField::Metadata(_) => false,
        })
    }

    pub(crate) fn write<'a, I>(
        &self,
        rec: &Record<'a>,
        bins: I,
        policy: &BinPolicy,
        received_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError>
    where
        I: Iterator<Item = Bin<'a>> + Clone,
    {
        // Deletes carry no bins.
        let is_write = rec.action == Action::Write;
        let selected = || {
            bins.clone()
                .take_while(move |_| is_write)
                .filter_map(|b| policy.select(b.name).map(|n| (n, b)))
        };
        // One walk up front (each walk re-reads the ops): how many bins go
        // into a `bins` map, whether any bin is named like a field, and the
        // first bin with nowhere to go (reported after the fields, so that a
        // field's own error comes first).
        let mut for_map = 0usize;
        let mut field_named = false;
        let mut homeless = None;
        for (i, (n, _)) in selected().enumerate() {
            if self.is_field(&n) {
                field_named = true;
                // The first bin of a name takes the field.
                if homeless.is_none() && selected().take(i).any(|(m, _)| m.same_as(&n)) {
                    homeless = Some(n);
                }
            } else {
                for_map += 1;
            }
        }
        let mut map_written = false;
        for field in &self.plan.top {
            let (name, node, null, bins_map) = match field {
                TopField::Metadata(fields) => {
                    self.metadata(rec, received_ms, fields.as_deref(), out)?;
                    continue;
                }
                TopField::Value {
                    name,
                    node,
                    null,
                    bins_map,
                } => (name, *node, *null, *bins_map),
            };
            let own = if field_named {
                selected().find(|(n, _)| n.eq_str(name))
            } else {
                None
            };
            if let Some((n, bin)) = own {
                self.bin_value(&bin.value, node, Label::Bin(n), out)?;
            } else if let Some((branch, values)) = bins_map {
                map_written = true;
                if let Some(i) = branch {
                    write_long(out, i64::from(i));
                }
                if for_map > 0 {
                    write_long(out, for_map as i64);
                    for (n, bin) in selected().filter(|(n, _)| !self.is_field(n)) {
                        write_long(out, n.byte_len() as i64);
                        n.push_to(out);
                        self.bin_value(&bin.value, values, Label::Bin(n), out)?;
                    }
                }
                write_long(out, 0);
            } else if let Some(null) = null {
                write_null(out, null);
            } else {
                return Err(mismatch(format!(
                    "the record has nothing for required field {name:?}"
                )));
            }
        }
        if homeless.is_none() && for_map > 0 && !map_written {
            homeless = selected().map(|(n, _)| n).find(|n| !self.is_field(n));
        }
        if let Some(n) = homeless {
            return Err(mismatch(format!(
                "bin {:?} has no field in the schema (exclude it with bin-transforms, or add a field or a \"bins\" map)",
                n.to_owned_string()
            )));
        }
        Ok(())
    }

    fn metadata(
        &self,
        rec: &Record<'_>,
        received_ms: u64,
        fields: Option<&[MetaField]>,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let Some(fields) = fields else {
            return Err(mismatch("schema field \"metadata\" is not a record".into()));
        };
        let durable = match rec.action {
            Action::Write => None,
            Action::Delete { durable } => Some(durable),
        };
        for f in fields {
            let item = match f.source {
                Meta::Msg => Elem::Str(if durable.is_some() { "delete" } else { "write" }),
                Meta::Namespace => Elem::Str(rec.namespace),
                Meta::Set => rec.set.map_or(Elem::Nil, Elem::Str),
                Meta::UserKey => match rec.user_key {
                    None => Elem::Nil,
                    Some(UserKey::Int(i)) => Elem::Int(i),
                    Some(UserKey::Float(x)) => Elem::Float(x),
                    Some(UserKey::Str(s)) => Elem::Str(s),
                    Some(UserKey::Blob(b)) => Elem::Blob { ptype: 4, bytes: b },
                },
                Meta::Digest => Elem::Blob {
                    ptype: 4,
                    bytes: &rec.digest,
                },
                Meta::Gen => Elem::Int(i64::from(rec.generation)),
                Meta::Lut => Elem::Int(rec.lut.unwrap_or(0) as i64),
                // Deletes have no expiry: null, or 0 when the schema wants a long.
                Meta::Exp if durable.is_some() => match f.null {
                    Some(_) => Elem::Nil,
                    None => Elem::Int(0),
                },
                Meta::Exp => Elem::Int(rec.expiry(received_ms) as i64),
                Meta::Durable => match (durable, f.null) {
                    (Some(d), _) => Elem::Bool(d),
                    (None, Some(_)) => Elem::Nil,
                    (None, None) => Elem::Bool(false),
                },
                Meta::Other => {
                    let null = f.null.ok_or_else(|| {
                        mismatch(format!(
                            "metadata field {:?} is not one sluice writes and is not nullable",
                            f.name
                        ))
                    })?;
                    write_null(out, null);
                    continue;
                }
            };
            let mut none = Reader::new(&[]);
            self.convert(item, &mut none, f.node, (0, 0), Label::Meta(&f.name), out)?;
        }
        Ok(())
    }

    fn bin_value(
        &self,
        v: &Value<'_>,
        node: NodeId,
        label: Label<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let none = || Reader::new(&[]);
        let (item, mut r) = match *v {
            Value::Null => (Elem::Nil, none()),
            Value::Int(i) => (Elem::Int(i), none()),
            Value::Float(f) => (Elem::Float(f), none()),
            Value::Str(s) => (Elem::Str(s), none()),
            Value::Bool(b) => (Elem::Bool(b), none()),
            Value::Blob { ptype, bytes } => (Elem::Blob { ptype, bytes }, none()),
            Value::Hll(bytes) => (Elem::Blob { ptype: 18, bytes }, none()),
            Value::Geo(g) => (Elem::Geo(g.json), none()),
            Value::List { items, .. } => (
                Elem::List {
                    len: items.len,
                    order: ListOrder::Unordered,
                },
                items.elements(),
            ),
            Value::Map { items, .. } => (
                Elem::Map {
                    len: items.len,
                    order: MapOrder::Unordered,
                },
                items.elements(),
            ),
        };
        self.convert(item, &mut r, node, (0, 0), label, out)
    }

    /// Whether `node` (or a branch of it) takes a value of `e`'s kind.
    fn accepts(&self, e: &Elem<'_>, node: NodeId, wraps: usize) -> bool {
        if wraps > MAX_WRAPS {
            return false;
        }
        match &self.plan.nodes[node] {
            Node::Union(branches) => branches.iter().any(|&b| self.accepts(e, b, wraps + 1)),
            Node::Record(fields) if fields.len() == 1 => self.accepts(e, fields[0].1, wraps + 1),
            Node::Array(_) => matches!(e, Elem::List { .. }),
            Node::Map(_) => matches!(e, Elem::Map { .. }),
            other => scalar(e, other).is_some(),
        }
    }

    /// Writes `e` (its elements read from `r` when it is a list or map) as
    /// `node`. `depth`: collections around `e`; `wraps`: unions and
    /// one-field records passed through since the last one.
    fn convert(
        &self,
        e: Elem<'_>,
        r: &mut Reader<'_>,
        node: NodeId,
        (depth, wraps): (usize, usize),
        label: Label<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        if depth > MAX_DEPTH {
            return Err(EncodeError::TooDeep {
                bin: label.to_string(),
            });
        }
        let no_fit = || {
            mismatch(format!(
                "{:?}: a {} value does not fit {}",
                label.to_string(),
                kind_name(&e),
                self.plan.texts[node]
            ))
        };
        match &self.plan.nodes[node] {
            Node::Union(branches) => {
                let i = match self.plan.picks[node][kind(&e)] {
                    Pick::Branch(i) => i as usize,
                    Pick::NoFit => return Err(no_fit()),
                    Pick::Ask => branches
                        .iter()
                        .position(|&b| self.accepts(&e, b, 0))
                        .ok_or_else(no_fit)?,
                };
                write_long(out, i as i64);
                self.convert(e, r, branches[i], (depth, wraps + 1), label, out)
            }
            Node::Record(fields) if fields.len() == 1 => {
                let wrap = match self.plan.picks[node][kind(&e)] {
                    Pick::Branch(_) => true,
                    Pick::NoFit => false,
                    Pick::Ask => self.accepts(&e, fields[0].1, 0),
                };
                if !wrap || wraps >= MAX_WRAPS {
                    return Err(no_fit());
                }
                self.convert(e, r, fields[0].1, (depth, wraps + 1), label, out)
            }
            Node::Array(items) => {
                let Elem::List { len, .. } = e else {
                    return Err(no_fit());
                };
                if len > 0 {
                    write_long(out, i64::from(len));
                    for _ in 0..len {
                        let x = self.next_elem(r, label)?;
                        self.convert(x, r, *items, (depth + 1, 0), label, out)?;
                    }
                }
                write_long(out, 0);
                Ok(())
            }
            Node::Map(values) => {
                let Elem::Map { len, .. } = e else {
                    return Err(no_fit());
                };
                if len > 0 {
                    write_long(out, i64::from(len));
                    for _ in 0..len {
                        let k = self.next_elem(r, label)?;
                        self.key(k, label, out)?;
                        let x = self.next_elem(r, label)?;
                        self.convert(x, r, *values, (depth + 1, 0), label, out)?;
                    }
                }
                write_long(out, 0);
                Ok(())
            }
            other => {
                write_scalar(out, scalar(&e, other).ok_or_else(no_fit)?);
                Ok(())
            }
        }
    }

    fn next_elem<'r>(&self, r: &mut Reader<'r>, label: Label<'_>) -> Result<Elem<'r>, EncodeError> {
        r.next().map_err(|source| EncodeError::BadCollection {
            bin: label.to_string(),
            source,
        })
    }

    /// Appends a map key as an Avro map key (always a string).
    fn key(&self, k: Elem<'_>, label: Label<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let bad = |what| EncodeError::BadMapKey {
            bin: label.to_string(),
            what,
        };
        match k {
            Elem::Str(s) => {
                write_text(out, s);
                return Ok(());
            }
            Elem::List { .. } => return Err(bad("list")),
            Elem::Map { .. } => return Err(bad("map")),
            _ if !self.stringify_map_keys => {
                return Err(bad("non-string key (stringify-map-keys is off)"))
            }
            _ => {}
        }
        // The same text as the json format writes for such keys.
        match k {
            Elem::Int(i) => write_text(out, itoa::Buffer::new().format(i)),
            Elem::Uint(u) => write_text(out, itoa::Buffer::new().format(u)),
            Elem::Float(f) if f.is_finite() => write_text(out, ryu::Buffer::new().format_finite(f)),
            Elem::Float(_) | Elem::Nil => write_text(out, "null"),
            Elem::Bool(b) => write_text(out, if b { "true" } else { "false" }),
            Elem::Geo(s) => write_text(out, s),
            Elem::Blob { bytes, .. } | Elem::Ext { data: bytes, .. } => {
                let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
                write_long(out, len as i64);
                let start = out.len();
                out.resize(start + len, 0);
                let written = base64::engine::general_purpose::STANDARD
                    .encode_slice(bytes, &mut out[start..])
                    .unwrap_or(0);
                out.truncate(start + written);
            }
            Elem::Str(_) | Elem::List { .. } | Elem::Map { .. } => {}
        }
        Ok(())
    }
}
