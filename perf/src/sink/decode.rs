//! Reads a request body back into records, in every format sluice sends
//! (docs/FORMATS.md): json and flat-json (one record, a JSON array, or
//! NDJSON), message-pack (one record or an array of records), avro (raw
//! datums back to back, read with the schema) and xdr (frames back to
//! back). Each record comes out as the few things the sink counts — digest,
//! key, generation, LUT, kind — and its bins as JSON for `--dump`.

use super::scan::{self, Brief};
use base64::Engine as _;
use serde_json::{Map, Value};
use std::io::Read as _;

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub digest: [u8; 20],
    pub msg: String,
    pub key: Value,
    pub gen: u64,
    pub lut: u64,
    pub bins: Map<String, Value>,
}

impl Rec {
    /// The timestamp bin's value (Unix µs), when present and an integer.
    pub fn ts(&self, bin: &str) -> Option<u64> {
        self.bins.get(bin).and_then(Value::as_u64)
    }

    /// What the counts need.
    pub fn brief(&self, ts_bin: &str) -> Brief {
        Brief {
            digest: self.digest,
            delete: self.msg == "delete",
            ts: self.ts(ts_bin),
        }
    }

    /// The `--dump` line.
    pub fn dump_line(&self) -> String {
        let digest: String = self.digest.iter().map(|b| format!("{b:02x}")).collect();
        serde_json::json!({"digest": digest, "key": self.key, "gen": self.gen, "lut": self.lut, "msg": self.msg, "bins": self.bins})
            .to_string()
    }
}

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// By Content-Type; json when it says nothing useful.
    Auto,
    Json,
    FlatJson,
    MessagePack,
    Avro,
    Xdr,
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("json: {0}")]
    Json(String),
    #[error("message-pack: {0}")]
    Msgpack(String),
    #[error("avro: {0}")]
    Avro(String),
    #[error("xdr: {0}")]
    Xdr(String),
    #[error("record {index}: {why}")]
    Shape { index: usize, why: String },
}

/// What decoding needs besides the body.
pub struct Decoder {
    pub format: Format,
    pub metadata_key: String,
    pub avro: Option<apache_avro::Schema>,
}

impl Decoder {
    /// The format of a body: `--format`, or by Content-Type with `auto`.
    fn format_of(&self, content_type: Option<&str>) -> Format {
        if self.format != Format::Auto {
            return self.format;
        }
        let ct = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        let is = |name: &str| ct.eq_ignore_ascii_case(name);
        if is("application/x-msgpack") || is("application/msgpack") {
            Format::MessagePack
        } else if is("application/avro") || is("avro/binary") {
            Format::Avro
        } else if is("application/octet-stream") {
            Format::Xdr
        } else {
            Format::Json
        }
    }

    pub fn decode(&self, content_type: Option<&str>, body: &[u8]) -> Result<Vec<Rec>, DecodeError> {
        match self.format_of(content_type) {
            Format::Auto | Format::Json | Format::FlatJson => self.json(body),
            Format::MessagePack => msgpack(body),
            Format::Avro => match &self.avro {
                Some(s) => avro(s, body),
                None => Err(DecodeError::Avro("no schema: give --schema-file".into())),
            },
            Format::Xdr => xdr(body),
        }
    }

    /// What the counts need from each record of a body, appended to `out`:
    /// the same records and errors as [`Decoder::decode`], through the
    /// borrowed scan for JSON bodies (no `Value` tree).
    pub fn brief(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        ts_bin: &str,
        out: &mut Vec<Brief>,
    ) -> Result<(), DecodeError> {
        match self.format_of(content_type) {
            Format::Auto | Format::Json | Format::FlatJson => {
                let names = scan::Names {
                    metadata_key: &self.metadata_key,
                    ts_bin,
                };
                scan::json(names, body, out).map_err(|e| match e {
                    scan::ScanError::Json(why) => DecodeError::Json(why),
                    scan::ScanError::Shape { index, why } => DecodeError::Shape { index, why },
                })
            }
            _ => {
                let recs = self.decode(content_type, body)?;
                out.extend(recs.iter().map(|r| r.brief(ts_bin)));
                Ok(())
            }
        }
    }

    /// A JSON record, a JSON array of records, or NDJSON; each record either
    /// `json` (has `key` and `msg`) or `flat-json` (has the metadata object).
    fn json(&self, body: &[u8]) -> Result<Vec<Rec>, DecodeError> {
        let text = std::str::from_utf8(body).map_err(|e| DecodeError::Json(e.to_string()))?;
        let trimmed = text.trim_start();
        let values: Vec<Value> = if trimmed.starts_with('[') {
            match serde_json::from_str(trimmed).map_err(|e| DecodeError::Json(e.to_string()))? {
                Value::Array(a) => a,
                other => vec![other],
            }
        } else {
            let mut v = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                v.push(
                    serde_json::from_str(line)
                        .map_err(|e| DecodeError::Json(format!("line {}: {e}", i + 1)))?,
                );
            }
            if v.is_empty() {
                return Err(DecodeError::Json("empty body".into()));
            }
            v
        };
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                self.json_record(v)
                    .map_err(|why| DecodeError::Shape { index: i, why })
            })
            .collect()
    }

    fn json_record(&self, v: Value) -> Result<Rec, String> {
        let Value::Object(mut o) = v else {
            return Err("not a JSON object".into());
        };
        if let Some(Value::Object(meta)) = o.remove(&self.metadata_key) {
            let digest = b64_digest(meta.get("digest"))?;
            return Ok(Rec {
                digest,
                msg: str_field(&meta, "msg")?,
                key: meta.get("userKey").cloned().unwrap_or(Value::Null),
                gen: u64_field(&meta, "gen")?,
                lut: u64_field(&meta, "lut")?,
                bins: o,
            });
        }
        let key = match o.get("key") {
            Some(Value::Array(k)) if k.len() == 4 => k.clone(),
            _ => {
                return Err(format!(
                    "neither a `key` array of 4 nor a `{}` object",
                    self.metadata_key
                ))
            }
        };
        let mut bins = Map::new();
        if let Some(Value::Array(list)) = o.remove("bins") {
            for b in list {
                let name = b
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or("a bin without a name")?
                    .to_string();
                bins.insert(name, b.get("value").cloned().unwrap_or(Value::Null));
            }
        }
        Ok(Rec {
            digest: b64_digest(key.get(2))?,
            msg: str_field(&o, "msg")?,
            key: key[3].clone(),
            gen: u64_field(&o, "gen")?,
            lut: u64_field(&o, "lut")?,
            bins,
        })
    }
}

fn str_field(o: &Map<String, Value>, k: &str) -> Result<String, String> {
    o.get(k)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("no string `{k}`"))
}

fn u64_field(o: &Map<String, Value>, k: &str) -> Result<u64, String> {
    o.get(k)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("no unsigned integer `{k}`"))
}

fn b64_digest(v: Option<&Value>) -> Result<[u8; 20], String> {
    let s = v.and_then(Value::as_str).ok_or("no base64 digest")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("digest: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("digest of {} bytes, not 20", b.len()))
}

fn b64(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

// ---------------------------------------------------------------- message-pack

fn msgpack(body: &[u8]) -> Result<Vec<Rec>, DecodeError> {
    let mut rd = body;
    let v = rmpv::decode::read_value(&mut rd).map_err(|e| DecodeError::Msgpack(e.to_string()))?;
    if !rd.is_empty() {
        return Err(DecodeError::Msgpack(format!(
            "{} bytes after the value",
            rd.len()
        )));
    }
    let rmpv::Value::Array(items) = v else {
        return Err(DecodeError::Msgpack("not an array".into()));
    };
    // One record is [1, type, payload]; a batch is an array of those.
    let records = if items.first().is_some_and(|f| f.is_u64()) {
        vec![rmpv::Value::Array(items)]
    } else {
        items
    };
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| mp_record(r).map_err(|why| DecodeError::Shape { index: i, why }))
        .collect()
}

fn mp_record(v: rmpv::Value) -> Result<Rec, String> {
    let a = as_arr(v, "record")?;
    if a.len() != 3 || a[0].as_u64() != Some(1) {
        return Err("not [1, type, payload]".into());
    }
    let ty = a[1].as_u64().ok_or("type is not an integer")?;
    let p = as_arr(a[2].clone(), "payload")?;
    let key = as_arr(p.first().cloned().unwrap_or(rmpv::Value::Nil), "key")?;
    if key.len() != 4 {
        return Err("key is not [namespace, set, digest, userKey]".into());
    }
    let digest: [u8; 20] = match &key[2] {
        rmpv::Value::Binary(b) => b.clone().try_into().map_err(|_| "digest is not 20 bytes")?,
        _ => return Err("digest is not bin".into()),
    };
    let user_key = mp_json(&key[3]);
    match (ty, p.len()) {
        (1, 5) => {
            let mut bins = Map::new();
            for b in as_arr(p[4].clone(), "bins")? {
                let b = as_arr(b, "bin")?;
                let name = b
                    .first()
                    .and_then(|n| n.as_str())
                    .ok_or("bin without a name")?
                    .to_string();
                bins.insert(name, b.get(3).map(mp_json).unwrap_or(Value::Null));
            }
            Ok(Rec {
                digest,
                msg: "write".into(),
                key: user_key,
                gen: p[1].as_u64().ok_or("gen")?,
                lut: p[3].as_u64().ok_or("lut")?,
                bins,
            })
        }
        (2, 2) => Ok(Rec {
            digest,
            msg: "delete".into(),
            key: user_key,
            gen: 0,
            lut: 0,
            bins: Map::new(),
        }),
        _ => Err(format!("type {ty} with a payload of {}", p.len())),
    }
}

fn as_arr(v: rmpv::Value, what: &str) -> Result<Vec<rmpv::Value>, String> {
    match v {
        rmpv::Value::Array(a) => Ok(a),
        _ => Err(format!("{what} is not an array")),
    }
}

fn mp_json(v: &rmpv::Value) -> Value {
    use rmpv::Value as M;
    match v {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(*b),
        M::Integer(i) => i
            .as_i64()
            .map(Value::from)
            .or_else(|| i.as_u64().map(Value::from))
            .unwrap_or(Value::Null),
        M::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        M::F64(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        M::String(s) => match s.as_str() {
            Some(t) => Value::String(t.to_string()),
            None => b64(s.as_bytes()),
        },
        M::Binary(b) => b64(b),
        M::Array(a) => Value::Array(a.iter().map(mp_json).collect()),
        M::Map(m) => Value::Object(m.iter().map(|(k, v)| (map_key(k), mp_json(v))).collect()),
        M::Ext(_, d) => b64(d),
    }
}

fn map_key(k: &rmpv::Value) -> String {
    match mp_json(k) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------- avro

fn avro(schema: &apache_avro::Schema, body: &[u8]) -> Result<Vec<Rec>, DecodeError> {
    let mut rd = body;
    let mut out = Vec::new();
    while !rd.is_empty() {
        // The plain reader fits raw datums back to back; its builder replacement adds nothing here.
        #[allow(deprecated)]
        let v = apache_avro::from_avro_datum(schema, &mut rd, None)
            .map_err(|e| DecodeError::Avro(e.to_string()))?;
        let i = out.len();
        out.push(avro_record(v).map_err(|why| DecodeError::Shape { index: i, why })?);
    }
    if out.is_empty() {
        return Err(DecodeError::Avro("empty body".into()));
    }
    Ok(out)
}

fn avro_record(v: apache_avro::types::Value) -> Result<Rec, String> {
    use apache_avro::types::Value as A;
    let A::Record(fields) = v else {
        return Err("not a record".into());
    };
    let mut meta = None;
    let mut bins = Map::new();
    for (name, v) in fields {
        match (name.as_str(), v) {
            ("metadata", A::Record(m)) => meta = Some(m),
            ("bins", A::Map(m)) => {
                for (k, v) in m {
                    bins.insert(k, avro_json(v));
                }
            }
            (n, v) => {
                let j = avro_json(v);
                if !j.is_null() {
                    bins.insert(n.to_string(), j);
                }
            }
        }
    }
    let meta: Map<String, Value> = meta
        .ok_or("no metadata record")?
        .into_iter()
        .map(|(k, v)| (k, avro_json(v)))
        .collect();
    let digest = b64_digest(meta.get("digest"))?;
    Ok(Rec {
        digest,
        msg: str_field(&meta, "msg")?,
        key: meta.get("userKey").cloned().unwrap_or(Value::Null),
        gen: u64_field(&meta, "gen")?,
        lut: u64_field(&meta, "lut")?,
        bins,
    })
}

fn avro_json(v: apache_avro::types::Value) -> Value {
    use apache_avro::types::Value as A;
    match v {
        A::Null => Value::Null,
        A::Boolean(b) => Value::Bool(b),
        A::Int(i) | A::Date(i) | A::TimeMillis(i) => Value::from(i),
        A::Long(l) | A::TimestampMillis(l) | A::TimestampMicros(l) | A::TimeMicros(l) => {
            Value::from(l)
        }
        A::Float(f) => {
            serde_json::Number::from_f64(f64::from(f)).map_or(Value::Null, Value::Number)
        }
        A::Double(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        A::Bytes(b) | A::Fixed(_, b) => b64(&b),
        A::String(s) | A::Enum(_, s) => Value::String(s),
        A::Union(_, inner) => avro_json(*inner),
        A::Array(a) => Value::Array(a.into_iter().map(avro_json).collect()),
        A::Map(m) => Value::Object(m.into_iter().map(|(k, v)| (k, avro_json(v))).collect()),
        // The default schema wraps collection elements in a one-field record.
        A::Record(mut f) if f.len() == 1 => f.pop().map_or(Value::Null, |(_, v)| avro_json(v)),
        A::Record(f) => Value::Object(f.into_iter().map(|(k, v)| (k, avro_json(v))).collect()),
        other => Value::String(format!("{other:?}")),
    }
}

// ---------------------------------------------------------------- xdr

/// Frames back to back; a type-4 frame is inflated first.
fn xdr(body: &[u8]) -> Result<Vec<Rec>, DecodeError> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < body.len() {
        let h = body
            .get(at..at + 8)
            .ok_or_else(|| DecodeError::Xdr(format!("truncated proto header at offset {at}")))?;
        let len = u64::from_be_bytes([0, 0, h[2], h[3], h[4], h[5], h[6], h[7]]) as usize;
        let frame = body
            .get(at..at + 8 + len)
            .ok_or_else(|| DecodeError::Xdr(format!("frame at offset {at} runs past the body")))?;
        let inflated;
        let msg = match (h[0], h[1]) {
            (2, 3) => frame,
            (2, 4) if frame.len() >= 16 => {
                let mut v = Vec::new();
                flate2::read::ZlibDecoder::new(&frame[16..])
                    .read_to_end(&mut v)
                    .map_err(|e| DecodeError::Xdr(format!("zlib at offset {at}: {e}")))?;
                inflated = v;
                &inflated[..]
            }
            (v, t) => {
                return Err(DecodeError::Xdr(format!(
                    "version {v} type {t} at offset {at}"
                )))
            }
        };
        let i = out.len();
        out.push(xdr_record(msg).map_err(|why| DecodeError::Shape { index: i, why })?);
        at += 8 + len;
    }
    if out.is_empty() {
        return Err(DecodeError::Xdr("empty body".into()));
    }
    Ok(out)
}

fn be(b: &[u8], at: usize, n: usize) -> Result<u64, String> {
    let s = b
        .get(at..at + n)
        .ok_or_else(|| format!("truncated at offset {at}"))?;
    Ok(s.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
}

fn xdr_record(m: &[u8]) -> Result<Rec, String> {
    if m.get(8) != Some(&22) {
        return Err("message header size is not 22".into());
    }
    let info2 = m[10];
    let gen = be(m, 14, 4)?;
    let nfields = be(m, 26, 2)?;
    let nops = be(m, 28, 2)?;
    let mut at = 30;
    let (mut digest, mut key, mut lut) = (None, Value::Null, 0);
    for _ in 0..nfields {
        let size = be(m, at, 4)? as usize;
        let data = m
            .get(at + 5..at + 4 + size)
            .ok_or("field runs past the frame")?;
        match m[at + 4] {
            2 if !data.is_empty() => key = particle(data[0], &data[1..]),
            4 => digest = Some(<[u8; 20]>::try_from(data).map_err(|_| "digest is not 20 bytes")?),
            14 => lut = be(data, 0, 8)?,
            _ => {}
        }
        at += 4 + size;
    }
    let mut bins = Map::new();
    for _ in 0..nops {
        let size = be(m, at, 4)? as usize;
        let op = m
            .get(at + 4..at + 4 + size)
            .ok_or("op runs past the frame")?;
        let (ptype, flags, nlen) = (op[1], op[2], op[3] as usize);
        let name = std::str::from_utf8(op.get(4..4 + nlen).ok_or("bin name")?)
            .map_err(|_| "bin name is not UTF-8")?;
        let vstart = 4 + nlen + if flags & 1 != 0 { 8 } else { 0 };
        bins.insert(
            name.to_string(),
            particle(ptype, op.get(vstart..).unwrap_or(&[])),
        );
        at += 4 + size;
    }
    let msg = if info2 & 0x02 != 0 { "delete" } else { "write" };
    Ok(Rec {
        digest: digest.ok_or("no digest field")?,
        msg: msg.into(),
        key,
        gen,
        lut,
        bins,
    })
}

fn particle(ptype: u8, v: &[u8]) -> Value {
    match ptype {
        0 => Value::Null,
        1 => Value::from(
            v.iter().fold(0i64, |a, x| (a << 8) | i64::from(*x)) << (64 - 8 * v.len().clamp(1, 8))
                >> (64 - 8 * v.len().clamp(1, 8)),
        ),
        2 if v.len() == 8 => {
            serde_json::Number::from_f64(f64::from_be_bytes(v.try_into().unwrap_or([0; 8])))
                .map_or(Value::Null, Value::Number)
        }
        3 => Value::String(String::from_utf8_lossy(v).into_owned()),
        17 => Value::Bool(v.first() == Some(&1)),
        19 | 20 => {
            let mut rd = v;
            rmpv::decode::read_value(&mut rd)
                .map(|m| strip_prefixes(&m))
                .unwrap_or_else(|_| b64(v))
        }
        _ => b64(v),
    }
}

/// Aerospike's msgpack: strings carry a particle-type prefix byte (3).
fn strip_prefixes(v: &rmpv::Value) -> Value {
    use rmpv::Value as M;
    match v {
        M::String(s) => match s.as_bytes().split_first() {
            Some((3, rest)) => Value::String(String::from_utf8_lossy(rest).into_owned()),
            Some((_, rest)) => b64(rest),
            None => Value::String(String::new()),
        },
        M::Array(a) => Value::Array(
            a.iter()
                .filter(|e| !matches!(e, M::Ext(..)))
                .map(strip_prefixes)
                .collect(),
        ),
        M::Map(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k, M::Ext(..)))
                .map(|(k, v)| (strip_key(k), strip_prefixes(v)))
                .collect(),
        ),
        other => mp_json(other),
    }
}

fn strip_key(k: &rmpv::Value) -> String {
    match strip_prefixes(k) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
