//! The outbound formats (FORMATS.md; the decisions it leaves open are written
//! down in `docs/FORMATS.md`): one [`Encoder`] per configured format writes a
//! [`Record`] into a reusable output buffer, selecting and renaming bins with
//! a [`BinPolicy`]. Also the framing of several records in one request body
//! (`batch_begin` / `batch_separator` / `batch_end`).
//!
//! Encoders append to the caller's `Vec<u8>` and do not allocate per record
//! once that buffer has grown (`codec/tests/no_alloc.rs` counts): avro writes
//! through a plan compiled from the schema when the encoder is made.

pub mod avro;
pub mod bins;
mod cursor;
pub mod json;
pub mod msgpack;

use std::sync::Arc;

pub use bins::{BinPolicy, Case, Include, NameTransform, OutName};

use crate::record::{Action, Bin, Record};
use crate::wire::msgpack::{Elem, Reader};
use crate::wire::LazyRecord;

/// The next element of a bin's list or map, errors naming the bin.
pub(crate) fn next_elem<'a>(r: &mut Reader<'a>, bin: &str) -> Result<Elem<'a>, EncodeError> {
    r.next().map_err(|source| EncodeError::BadCollection {
        bin: bin.to_string(),
        source,
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

/// Deepest nesting of lists and maps an encoder walks. Aerospike itself
/// refuses deeper collections long before this; the bound keeps a hostile
/// frame from exhausting the stack.
pub const MAX_DEPTH: usize = 64;

/// Why one record could not be written in a format. Each is a permanent
/// failure for that record only: the session counts it, logs it and moves on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "bin {bin:?} is named like the flat-json metadata key {key:?}: rename the bin \
         (bin-transforms map) or choose another metadata-key"
    )]
    MetadataKeyCollision { bin: String, key: String },
    #[error(
        "two bins are both named {name:?} after bin-transforms: flat-json needs unique \
         property names"
    )]
    DuplicateBinName { name: String },
    #[error("bin {bin:?} holds GeoJSON that is not valid JSON: {why}")]
    BadGeoJson { bin: String, why: String },
    #[error("bin {bin:?}: collection nested deeper than {max} levels", max = MAX_DEPTH)]
    TooDeep { bin: String },
    #[error("bin {bin:?}: malformed list/map value: {source}")]
    BadCollection { bin: String, source: crate::Error },
    #[error("bin {bin:?}: a {what} cannot be a map key in this format")]
    BadMapKey { bin: String, what: &'static str },
    #[error("record does not fit the avro schema: {0}")]
    AvroMismatch(String),
    #[error("message-pack writer failed: {0}")]
    MessagePack(String),
    #[error("a value of {len} bytes is too long for message-pack")]
    TooLong { len: usize },
    /// The record's ops are malformed: found by [`Encoder::encode_lazy`],
    /// the error `wire::parse` gives for the same frame. A malformed frame,
    /// not a record this format cannot hold: answer it as a parse error.
    #[error("{0}")]
    Malformed(crate::Error),
}

/// A user-supplied avro schema that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    #[error("avro schema does not parse: {0}")]
    Parse(String),
    #[error("avro schema must be a record at the top level, found {0}")]
    NotARecord(String),
}

/// How a batch of text (json, flat-json) records is framed in one body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextBatch {
    /// One record per line, each line ended by `\n` (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// A JSON array of records (`application/json`).
    JsonArray,
}

/// Where a batch started in the output buffer; given back to
/// [`Encoder::batch_end`] so that framings with a count up front
/// (message-pack's array header) can be completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStart(usize);

#[derive(Debug, Clone)]
enum Kind {
    Json,
    FlatJson { metadata_key: Box<str> },
    MessagePack,
    Avro(Arc<avro::AvroFormat>),
    Xdr,
}

/// An outbound format, configured. Cheap to clone (the avro schema is shared).
#[derive(Debug, Clone)]
pub struct Encoder {
    kind: Kind,
    text_batch: TextBatch,
}

impl Encoder {
    fn of(kind: Kind) -> Self {
        Encoder {
            kind,
            text_batch: TextBatch::default(),
        }
    }

    /// `json`: metadata plus a `bins` array of `{name, type, value}`.
    pub fn json() -> Self {
        Self::of(Kind::Json)
    }

    /// `flat-json`: a metadata object under `metadata_key`, bins as properties.
    pub fn flat_json(metadata_key: &str) -> Self {
        Self::of(Kind::FlatJson {
            metadata_key: metadata_key.into(),
        })
    }

    /// `message-pack`: `[1, type, payload]` (FORMATS.md).
    pub fn message_pack() -> Self {
        Self::of(Kind::MessagePack)
    }

    /// `avro`: one raw binary datum per record, written against `schema_json`
    /// (use [`avro::DEFAULT_SCHEMA`] when the user gave none).
    pub fn avro(schema_json: &str, stringify_map_keys: bool) -> Result<Self, SchemaError> {
        let format = avro::AvroFormat::new(schema_json, stringify_map_keys)?;
        Ok(Self::of(Kind::Avro(Arc::new(format))))
    }

    /// `xdr`: the record's message as it arrived.
    pub fn xdr() -> Self {
        Self::of(Kind::Xdr)
    }

    /// One encoder of each format with its default options (flat-json's
    /// `metadata` key, avro's default schema with map keys as strings), in
    /// FORMATS.md's order: for the tests, benches and tools that cover
    /// every format.
    pub fn each_format() -> Vec<Self> {
        let mut all = vec![
            Self::json(),
            Self::flat_json("metadata"),
            Self::message_pack(),
        ];
        // The built-in schema is a constant the avro tests parse; it cannot
        // fail here, and if it ever did the list would lack avro rather
        // than panic.
        all.extend(Self::avro(avro::DEFAULT_SCHEMA, true).ok());
        all.push(Self::xdr());
        all
    }

    /// The framing of text batches (json, flat-json); ignored by binary formats.
    pub fn with_text_batch(mut self, framing: TextBatch) -> Self {
        self.text_batch = framing;
        self
    }

    /// The format's name as spelled in the config.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Json => "json",
            Kind::FlatJson { .. } => "flat-json",
            Kind::MessagePack => "message-pack",
            Kind::Avro(_) => "avro",
            Kind::Xdr => "xdr",
        }
    }

    /// Content type of a body holding one record.
    pub fn content_type(&self) -> &'static str {
        match self.kind {
            Kind::Json | Kind::FlatJson { .. } => "application/json",
            Kind::MessagePack => "application/x-msgpack",
            Kind::Avro(_) => "application/avro",
            Kind::Xdr => "application/octet-stream",
        }
    }

    /// Appends one record to `out` (no separator). `received_ms`: Unix ms when
    /// the frame arrived (stands in for a missing LUT in `exp`).
    pub fn encode(
        &self,
        rec: &Record<'_>,
        bins: &BinPolicy,
        received_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        if let Kind::Json = self.kind {
            // `json` reads the common particle types straight from the ops.
            let ops = json::JsonBins::Wire(rec.bins.iter());
            return json_whole(rec, ops, bins, received_ms, out);
        }
        self.encode_bins(rec, rec.bins.iter(), bins, received_ms, out)
    }

    /// [`Encoder::encode`] for a record whose ops are not validated yet:
    /// they are, first (or, for `json` under the every-bin-as-named policy,
    /// as they are written); malformed ops give
    /// [`EncodeError::Malformed`] with the error `wire::parse` returns for
    /// the frame, and `out` as it was.
    #[inline]
    pub fn encode_lazy(
        &self,
        rec: &LazyRecord<'_>,
        bins: &BinPolicy,
        received_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let head = rec.unvalidated();
        if matches!(self.kind, Kind::Json) && head.action == Action::Write && bins.is_identity() {
            let (ops, count, base) = rec.ops();
            return json_whole(
                head,
                json::JsonBins::Lazy(ops, count, base),
                bins,
                received_ms,
                out,
            );
        }
        let (ops, count, base) = rec.ops();
        crate::wire::op::validate_all(ops, count, base).map_err(EncodeError::Malformed)?;
        self.encode(head, bins, received_ms, out)
    }

    /// [`Encoder::encode`] with the bins given separately: the record's own
    /// bins in production; any bins in unit tests.
    pub(crate) fn encode_bins<'a, I>(
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
        let start = out.len();
        let result = match &self.kind {
            Kind::Json => {
                json::write_json(rec, json::JsonBins::Given(bins), policy, received_ms, out)
            }
            Kind::FlatJson { metadata_key } => {
                json::write_flat(rec, bins, policy, received_ms, metadata_key, out)
            }
            Kind::MessagePack => msgpack::write(rec, bins, policy, received_ms, out),
            Kind::Avro(format) => format.write(rec, bins, policy, received_ms, out),
            Kind::Xdr => {
                out.extend_from_slice(rec.message);
                Ok(())
            }
        };
        whole(out, start, result)
    }

    /// Content type of a body holding a batch of records.
    pub fn batch_content_type(&self) -> &'static str {
        match (&self.kind, self.text_batch) {
            (Kind::Json | Kind::FlatJson { .. }, TextBatch::Ndjson) => "application/x-ndjson",
            _ => self.content_type(),
        }
    }

    /// Starts a batch body: `[` for a JSON array, a message-pack array header
    /// (completed by `batch_end`), nothing for the others.
    pub fn batch_begin(&self, out: &mut Vec<u8>) -> BatchStart {
        let start = BatchStart(out.len());
        match (&self.kind, self.text_batch) {
            (Kind::Json | Kind::FlatJson { .. }, TextBatch::JsonArray) => out.push(b'['),
            // array32 header; the count is filled in by batch_end.
            (Kind::MessagePack, _) => out.extend_from_slice(&[0xdd, 0, 0, 0, 0]),
            _ => {}
        }
        start
    }

    /// Goes between two records of a batch: `,` (JSON array), `\n` (NDJSON),
    /// nothing for binary formats (their records delimit themselves).
    pub fn batch_separator(&self, out: &mut Vec<u8>) {
        match (&self.kind, self.text_batch) {
            (Kind::Json | Kind::FlatJson { .. }, TextBatch::JsonArray) => out.push(b','),
            (Kind::Json | Kind::FlatJson { .. }, TextBatch::Ndjson) => out.push(b'\n'),
            _ => {}
        }
    }

    /// Ends a batch of `records` records begun at `start`.
    pub fn batch_end(&self, out: &mut Vec<u8>, start: BatchStart, records: u32) {
        match (&self.kind, self.text_batch) {
            (Kind::Json | Kind::FlatJson { .. }, TextBatch::JsonArray) => out.push(b']'),
            (Kind::Json | Kind::FlatJson { .. }, TextBatch::Ndjson) => out.push(b'\n'),
            (Kind::MessagePack, _) => {
                if let Some(count) = out.get_mut(start.0 + 1..start.0 + 5) {
                    count.copy_from_slice(&records.to_be_bytes());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

/// `json` of a record's own ops, `out` as it was on an error.
fn json_whole<'a>(
    rec: &Record<'a>,
    ops: json::JsonBins<'a, std::iter::Empty<Bin<'a>>>,
    bins: &BinPolicy,
    received_ms: u64,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    let result = json::write_json(rec, ops, bins, received_ms, out);
    whole(out, start, result)
}

/// `result`, with `out` cut back to `start` on an error: never half a
/// record in a body that holds other records.
fn whole(
    out: &mut Vec<u8>,
    start: usize,
    result: Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    if result.is_err() {
        out.truncate(start);
    }
    result
}
