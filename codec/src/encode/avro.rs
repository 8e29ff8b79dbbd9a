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

use std::collections::HashMap;

use apache_avro::schema::{Name, RecordSchema};
use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use base64::Engine as _;

use super::{check_depth, next_elem};
use super::{BinPolicy, EncodeError, SchemaError};
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

/// A parsed schema and the named types it defines.
#[derive(Debug)]
pub struct AvroFormat {
    schema: Schema,
    names: HashMap<Name, Schema>,
    stringify_map_keys: bool,
}

/// A value on its way into the schema: a msgpack element, with the reader
/// positioned after it (so lists and maps can be walked).
type Item<'a> = Elem<'a>;

fn mismatch(what: String) -> EncodeError {
    EncodeError::AvroMismatch(what)
}

fn kind_name(e: &Item<'_>) -> &'static str {
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

impl AvroFormat {
    pub fn new(schema_json: &str, stringify_map_keys: bool) -> Result<Self, SchemaError> {
        let schema =
            Schema::parse_str(schema_json).map_err(|e| SchemaError::Parse(e.to_string()))?;
        if !matches!(schema, Schema::Record(_)) {
            return Err(SchemaError::NotARecord(format!(
                "{:?}",
                apache_avro::schema::SchemaKind::from(&schema)
            )));
        }
        let names = apache_avro::schema::ResolvedSchema::try_from(&schema)
            .map_err(|e| SchemaError::Parse(e.to_string()))?
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        Ok(AvroFormat {
            schema,
            names,
            stringify_map_keys,
        })
    }

    /// The parsed schema (for readers in tests and tools).
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    fn resolve<'s>(&'s self, s: &'s Schema) -> &'s Schema {
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
                .unwrap_or(s),
            _ => s,
        }
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
        I: Iterator<Item = Bin<'a>>,
    {
        let Schema::Record(top) = &self.schema else {
            return Err(mismatch("schema is not a record".into()));
        };
        let mut bins: Vec<(String, Bin<'a>)> = match rec.action {
            Action::Write => bins
                .filter_map(|b| policy.select(b.name).map(|n| (n.to_owned_string(), b)))
                .collect(),
            Action::Delete { .. } => Vec::new(),
        };
        let has_own_field = |name: &str| top.lookup.contains_key(name) && name != "metadata";
        let mut fields = Vec::with_capacity(top.fields.len());
        for field in &top.fields {
            let value = if field.name == "metadata" {
                self.metadata(rec, received_ms, &field.schema)?
            } else if let Some(i) = bins.iter().position(|(n, _)| *n == field.name) {
                let (name, bin) = bins.swap_remove(i);
                self.bin_value(&bin.value, &field.schema, &name)?
            } else if field.name == "bins" && self.is_map(&field.schema) {
                let rest: Vec<_> = {
                    let (mine, rest): (Vec<_>, Vec<_>) =
                        bins.drain(..).partition(|(n, _)| has_own_field(n));
                    bins = mine;
                    rest
                };
                self.bins_map(rest, &field.schema)?
            } else {
                self.null_for(&field.schema).ok_or_else(|| {
                    mismatch(format!(
                        "the record has nothing for required field {:?}",
                        field.name
                    ))
                })?
            };
            fields.push((field.name.clone(), value));
        }
        if let Some((name, _)) = bins.first() {
            return Err(mismatch(format!(
                "bin {name:?} has no field in the schema (exclude it with bin-transforms, or add a field or a \"bins\" map)"
            )));
        }
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&self.schema)
            .build()
            .map_err(|e| EncodeError::Avro(e.to_string()))?;
        writer
            .write_value_ref(out, &Avro::Record(fields))
            .map_err(|e| mismatch(e.to_string()))?;
        Ok(())
    }

    fn is_map(&self, s: &Schema) -> bool {
        match self.resolve(s) {
            Schema::Map(_) => true,
            Schema::Union(u) => u
                .variants()
                .iter()
                .any(|v| matches!(self.resolve(v), Schema::Map(_))),
            _ => false,
        }
    }

    /// `Value::Null` in the union branch that is null, when there is one.
    fn null_for(&self, s: &Schema) -> Option<Avro> {
        match self.resolve(s) {
            Schema::Null => Some(Avro::Null),
            Schema::Union(u) => u
                .variants()
                .iter()
                .position(|v| matches!(v, Schema::Null))
                .map(|i| Avro::Union(i as u32, Box::new(Avro::Null))),
            _ => None,
        }
    }

    fn metadata(
        &self,
        rec: &Record<'_>,
        received_ms: u64,
        s: &Schema,
    ) -> Result<Avro, EncodeError> {
        let Schema::Record(RecordSchema { fields, .. }) = self.resolve(s) else {
            return Err(mismatch("schema field \"metadata\" is not a record".into()));
        };
        let (msg, durable) = match rec.action {
            Action::Write => ("write", None),
            Action::Delete { durable } => ("delete", Some(durable)),
        };
        let mut out = Vec::with_capacity(fields.len());
        for f in fields {
            let item = match f.name.as_str() {
                "msg" => Elem::Str(msg),
                "namespace" => Elem::Str(rec.namespace),
                "set" => rec.set.map_or(Elem::Nil, Elem::Str),
                "userKey" => match rec.user_key {
                    None => Elem::Nil,
                    Some(UserKey::Int(i)) => Elem::Int(i),
                    Some(UserKey::Float(x)) => Elem::Float(x),
                    Some(UserKey::Str(s)) => Elem::Str(s),
                    Some(UserKey::Blob(b)) => Elem::Blob { ptype: 4, bytes: b },
                },
                "digest" => Elem::Blob {
                    ptype: 4,
                    bytes: &rec.digest,
                },
                "gen" => Elem::Int(i64::from(rec.generation)),
                "lut" => Elem::Int(rec.lut.unwrap_or(0) as i64),
                // Deletes have no expiry: null, or 0 when the schema wants a long.
                "exp" if durable.is_some() => {
                    if self.null_for(&f.schema).is_some() {
                        Elem::Nil
                    } else {
                        Elem::Int(0)
                    }
                }
                "exp" => Elem::Int(rec.expiry(received_ms) as i64),
                "durable" => match durable {
                    Some(d) => Elem::Bool(d),
                    None if self.null_for(&f.schema).is_some() => Elem::Nil,
                    None => Elem::Bool(false),
                },
                other => {
                    let v = self.null_for(&f.schema).ok_or_else(|| {
                        mismatch(format!(
                            "metadata field {other:?} is not one sluice writes and is not nullable"
                        ))
                    })?;
                    out.push((f.name.clone(), v));
                    continue;
                }
            };
            let mut none = Reader::new(&[]);
            let v = self.convert(
                item,
                &mut none,
                &f.schema,
                0,
                &format!("metadata.{}", f.name),
            )?;
            out.push((f.name.clone(), v));
        }
        Ok(Avro::Record(out))
    }

    fn bins_map(&self, bins: Vec<(String, Bin<'_>)>, s: &Schema) -> Result<Avro, EncodeError> {
        let (union_index, map) = match self.resolve(s) {
            Schema::Map(m) => (None, m),
            Schema::Union(u) => {
                let found =
                    u.variants()
                        .iter()
                        .enumerate()
                        .find_map(|(i, v)| match self.resolve(v) {
                            Schema::Map(m) => Some((Some(i as u32), m)),
                            _ => None,
                        });
                found.ok_or_else(|| mismatch("field \"bins\" is not a map".into()))?
            }
            _ => return Err(mismatch("field \"bins\" is not a map".into())),
        };
        let mut entries = HashMap::with_capacity(bins.len());
        for (name, bin) in bins {
            let v = self.bin_value(&bin.value, &map.types, &name)?;
            entries.insert(name, v);
        }
        let m = Avro::Map(entries);
        Ok(match union_index {
            Some(i) => Avro::Union(i, Box::new(m)),
            None => m,
        })
    }

    fn bin_value(&self, v: &Value<'_>, s: &Schema, bin: &str) -> Result<Avro, EncodeError> {
        let (item, body): (Item<'_>, &[u8]) = match *v {
            Value::Null => (Elem::Nil, &[]),
            Value::Int(i) => (Elem::Int(i), &[]),
            Value::Float(f) => (Elem::Float(f), &[]),
            Value::Str(s) => (Elem::Str(s), &[]),
            Value::Bool(b) => (Elem::Bool(b), &[]),
            Value::Blob { ptype, bytes } => (Elem::Blob { ptype, bytes }, &[]),
            Value::Hll(bytes) => (Elem::Blob { ptype: 18, bytes }, &[]),
            Value::Geo(g) => (Elem::Geo(g.json), &[]),
            Value::List { items, .. } => (
                Elem::List {
                    len: items.len,
                    order: ListOrder::Unordered,
                },
                items.body,
            ),
            Value::Map { items, .. } => (
                Elem::Map {
                    len: items.len,
                    order: MapOrder::Unordered,
                },
                items.body,
            ),
        };
        let mut r = Reader::new(body);
        self.convert(item, &mut r, s, 0, bin)
    }

    /// Whether `s` (or a branch of it) takes a value of `e`'s kind.
    fn accepts(&self, e: &Item<'_>, s: &Schema) -> bool {
        match self.resolve(s) {
            Schema::Union(u) => u.variants().iter().any(|v| self.accepts(e, v)),
            Schema::Record(r) if r.fields.len() == 1 => self.accepts(e, &r.fields[0].schema),
            Schema::Array(_) => matches!(e, Elem::List { .. }),
            Schema::Map(_) => matches!(e, Elem::Map { .. }),
            other => scalar(e, other).is_some(),
        }
    }

    fn convert(
        &self,
        e: Item<'_>,
        r: &mut Reader<'_>,
        s: &Schema,
        depth: usize,
        bin: &str,
    ) -> Result<Avro, EncodeError> {
        check_depth(depth, bin)?;
        let no_fit = || {
            mismatch(format!(
                "{bin:?}: a {} value does not fit {:?}",
                kind_name(&e),
                s
            ))
        };
        match self.resolve(s) {
            Schema::Union(u) => {
                let i = u
                    .variants()
                    .iter()
                    .position(|v| self.accepts(&e, v))
                    .ok_or_else(no_fit)?;
                let v = self.convert(e, r, &u.variants()[i], depth, bin)?;
                Ok(Avro::Union(i as u32, Box::new(v)))
            }
            Schema::Record(rs)
                if rs.fields.len() == 1 && self.accepts(&e, &rs.fields[0].schema) =>
            {
                let f = &rs.fields[0];
                Ok(Avro::Record(vec![(
                    f.name.clone(),
                    self.convert(e, r, &f.schema, depth, bin)?,
                )]))
            }
            Schema::Array(a) => {
                let Elem::List { len, .. } = e else {
                    return Err(no_fit());
                };
                let mut items = Vec::with_capacity(len.min(1024) as usize);
                for _ in 0..len {
                    let x = next_elem(r, bin)?;
                    items.push(self.convert(x, r, &a.items, depth + 1, bin)?);
                }
                Ok(Avro::Array(items))
            }
            Schema::Map(m) => {
                let Elem::Map { len, .. } = e else {
                    return Err(no_fit());
                };
                let mut entries = HashMap::with_capacity(len.min(1024) as usize);
                for _ in 0..len {
                    let k = self.key(next_elem(r, bin)?, bin)?;
                    let x = next_elem(r, bin)?;
                    entries.insert(k, self.convert(x, r, &m.types, depth + 1, bin)?);
                }
                Ok(Avro::Map(entries))
            }
            other => scalar(&e, other).ok_or_else(no_fit),
        }
    }

    /// A map key as an Avro map key (always a string).
    fn key(&self, k: Item<'_>, bin: &str) -> Result<String, EncodeError> {
        let bad = |what| EncodeError::BadMapKey {
            bin: bin.to_string(),
            what,
        };
        match k {
            Elem::Str(s) => return Ok(s.to_string()),
            Elem::List { .. } => return Err(bad("list")),
            Elem::Map { .. } => return Err(bad("map")),
            _ if !self.stringify_map_keys => {
                return Err(bad("non-string key (stringify-map-keys is off)"))
            }
            _ => {}
        }
        Ok(match k {
            Elem::Int(_) | Elem::Uint(_) | Elem::Float(_) | Elem::Bool(_) | Elem::Nil => {
                // The same text as the json format writes for such keys.
                let mut text = Vec::new();
                super::json::write_scalar(&mut text, k);
                String::from_utf8_lossy(&text).into_owned()
            }
            Elem::Geo(s) => s.to_string(),
            Elem::Blob { bytes, .. } | Elem::Ext { data: bytes, .. } => {
                base64::engine::general_purpose::STANDARD.encode(bytes)
            }
            Elem::Str(_) | Elem::List { .. } | Elem::Map { .. } => String::new(),
        })
    }
}

/// A scalar element in a non-union, non-collection schema, if it fits.
fn scalar(e: &Item<'_>, s: &Schema) -> Option<Avro> {
    Some(match (e, s) {
        (Elem::Nil, Schema::Null) => Avro::Null,
        (Elem::Bool(b), Schema::Boolean) => Avro::Boolean(*b),
        (Elem::Int(i), Schema::Long) => Avro::Long(*i),
        (Elem::Int(i), Schema::TimestampMillis) => Avro::TimestampMillis(*i),
        (Elem::Int(i), Schema::Int) => Avro::Int(i32::try_from(*i).ok()?),
        (Elem::Uint(u), Schema::Long) => Avro::Long(i64::try_from(*u).ok()?),
        (Elem::Float(f), Schema::Double) => Avro::Double(*f),
        (Elem::Float(f), Schema::Float) => Avro::Float(*f as f32),
        (Elem::Str(t) | Elem::Geo(t), Schema::String) => Avro::String(t.to_string()),
        (Elem::Str(t), Schema::Enum(en)) => {
            let i = en.symbols.iter().position(|x| x == t)?;
            Avro::Enum(i as u32, t.to_string())
        }
        (Elem::Blob { bytes, .. } | Elem::Ext { data: bytes, .. }, Schema::Bytes) => {
            Avro::Bytes(bytes.to_vec())
        }
        (Elem::Blob { bytes, .. }, Schema::Fixed(f)) if f.size == bytes.len() => {
            Avro::Fixed(f.size, bytes.to_vec())
        }
        _ => return None,
    })
}
