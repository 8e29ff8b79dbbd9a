//! The counting fast path for JSON bodies (`json` and `flat-json`): one
//! borrowed pass over the body that validates it fully as JSON and pulls out
//! only what the counts need — digest, delete or write, and the timestamp
//! bin — instead of building a `serde_json::Value` tree. It accepts and
//! refuses exactly what [`super::decode::Decoder`] does (the tests compare
//! the two); `--dump` still goes through the full decoder.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// What the counts need from one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Brief {
    pub digest: [u8; 20],
    pub delete: bool,
    /// The timestamp bin (Unix µs), when present and an unsigned integer.
    pub ts: Option<u64>,
}

/// The names the scan looks for.
#[derive(Clone, Copy)]
pub struct Names<'a> {
    pub metadata_key: &'a str,
    pub ts_bin: &'a str,
}

/// Why a JSON body was refused; the caller wraps it in its error type.
#[derive(Debug, PartialEq)]
pub enum ScanError {
    Json(String),
    Shape { index: usize, why: String },
}

/// Scans a JSON body: one record, a JSON array of records, or NDJSON.
/// Appends one [`Brief`] per record to `out` (left as it was on error).
pub fn json(names: Names<'_>, body: &[u8], out: &mut Vec<Brief>) -> Result<(), ScanError> {
    let start = out.len();
    let r = json_into(names, body, out);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn json_into(names: Names<'_>, body: &[u8], out: &mut Vec<Brief>) -> Result<(), ScanError> {
    let text = std::str::from_utf8(body).map_err(|e| ScanError::Json(e.to_string()))?;
    let trimmed = text.trim_start();
    let mut first_bad: Option<(usize, String)> = None;
    let mut push = |got: Result<Brief, String>, out: &mut Vec<Brief>, index: usize| match got {
        Ok(b) => out.push(b),
        Err(why) => {
            first_bad.get_or_insert((index, why));
        }
    };
    if trimmed.starts_with('[') {
        let mut de = serde_json::Deserializer::from_str(trimmed);
        let records = de::Deserializer::deserialize_seq(&mut de, Records { names })
            .and_then(|r| de.end().map(|()| r))
            .map_err(|e| ScanError::Json(e.to_string()))?;
        for (i, r) in records.into_iter().enumerate() {
            push(r, out, i);
        }
    } else {
        let mut index = 0;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut de = serde_json::Deserializer::from_str(line);
            let got = Field::record(names)
                .deserialize(&mut de)
                .and_then(|g| de.end().map(|()| g))
                .map_err(|e| ScanError::Json(format!("line {}: {e}", i + 1)))?;
            push(got.into_record(), out, index);
            index += 1;
        }
        if index == 0 {
            return Err(ScanError::Json("empty body".into()));
        }
    }
    match first_bad {
        Some((index, why)) => Err(ScanError::Shape { index, why }),
        None => Ok(()),
    }
}

/// The records of a JSON array; a record of the wrong shape does not stop
/// the pass (the rest must still be valid JSON), it is reported after it.
struct Records<'n> {
    names: Names<'n>,
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = Vec<Result<Brief, String>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(got) = seq.next_element_seed(Field::record(self.names))? {
            v.push(got.into_record());
        }
        Ok(v)
    }
}

/// What a value is read as: decided by where it sits.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// Any value; numbers and strings are kept.
    Plain,
    /// A whole record (an object).
    Record,
    /// `key`: `[namespace, set, digest, userKey]`.
    Key,
    /// `bins`: an array of `{"name", "value", …}`.
    Bins,
    /// One element of `bins`.
    Bin,
    /// flat-json's metadata object.
    Meta,
}

/// A string borrowed from the body, or owned when it held escapes.
type Str<'de> = Cow<'de, str>;

#[derive(Default)]
struct Meta<'de> {
    digest: Option<Str<'de>>,
    msg: Option<Str<'de>>,
    gen: Option<u64>,
    lut: Option<u64>,
}

/// What a value turned out to be, as far as the counts care.
enum Got<'de> {
    Num(u64),
    Text(Str<'de>),
    /// An array of 4 and its third element, when that is a string.
    Key(Option<Str<'de>>),
    /// `bins`: the timestamp bin's value, and whether a bin had no name.
    Bins {
        ts: Option<u64>,
        unnamed: bool,
    },
    Bin {
        name: Option<Str<'de>>,
        num: Option<u64>,
    },
    Meta(Meta<'de>),
    Record(Result<Brief, String>),
    Other,
}

impl<'de> Got<'de> {
    fn num(&self) -> Option<u64> {
        match self {
            Got::Num(n) => Some(*n),
            _ => None,
        }
    }
    fn text(self) -> Option<Str<'de>> {
        match self {
            Got::Text(s) => Some(s),
            _ => None,
        }
    }
    fn into_record(self) -> Result<Brief, String> {
        match self {
            Got::Record(r) => r,
            _ => Err("not a JSON object".into()),
        }
    }
}

/// The one visitor: reads any value, and the shapes its role asks for.
#[derive(Clone, Copy)]
struct Field<'n> {
    role: Role,
    names: Names<'n>,
}

impl<'n> Field<'n> {
    fn record(names: Names<'n>) -> Self {
        Field {
            role: Role::Record,
            names,
        }
    }
    fn as_role(self, role: Role) -> Self {
        Field { role, ..self }
    }
}

impl<'de> DeserializeSeed<'de> for Field<'_> {
    type Value = Got<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A map key, borrowed when it can be.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Str<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Str<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

impl<'de> Visitor<'de> for Field<'_> {
    type Value = Got<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Got::Other)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        // As serde_json's `Value::as_u64`: a non-negative integer counts.
        Ok(u64::try_from(v).map_or(Got::Other, Got::Num))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Got::Num(v))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Got::Other)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Got::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Got::Text(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Got::Text(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Got::Other)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Got::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        match self.role {
            Role::Key => {
                let (mut n, mut digest) = (0usize, None);
                loop {
                    if n == 2 {
                        match seq.next_element_seed(self.as_role(Role::Plain))? {
                            Some(g) => digest = g.text(),
                            None => break,
                        }
                    } else if seq.next_element::<IgnoredAny>()?.is_none() {
                        break;
                    }
                    n += 1;
                }
                Ok(if n == 4 { Got::Key(digest) } else { Got::Other })
            }
            Role::Bins => {
                let (mut ts, mut unnamed) = (None, false);
                while let Some(g) = seq.next_element_seed(self.as_role(Role::Bin))? {
                    match g {
                        Got::Bin {
                            name: Some(name),
                            num,
                        } => {
                            // A later bin of the same name wins, as in a map.
                            if name == self.names.ts_bin {
                                ts = num;
                            }
                        }
                        _ => unnamed = true,
                    }
                }
                Ok(Got::Bins { ts, unnamed })
            }
            _ => {
                IgnoredAny.visit_seq(seq)?;
                Ok(Got::Other)
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let plain = self.as_role(Role::Plain);
        match self.role {
            Role::Bin => {
                let (mut name, mut num) = (None::<Str<'de>>, None);
                while let Some(k) = map.next_key_seed(KeySeed)? {
                    match k.as_ref() {
                        "name" => name = map.next_value_seed(plain)?.text(),
                        // Named already, and not the timestamp: only checked.
                        "value" if name.as_ref().is_some_and(|n| n != self.names.ts_bin) => {
                            map.next_value::<IgnoredAny>()?;
                            num = None;
                        }
                        "value" => num = map.next_value_seed(plain)?.num(),
                        _ => drop(map.next_value::<IgnoredAny>()?),
                    }
                }
                Ok(Got::Bin { name, num })
            }
            Role::Meta => {
                let mut m = Meta::default();
                while let Some(k) = map.next_key_seed(KeySeed)? {
                    match k.as_ref() {
                        "digest" => m.digest = map.next_value_seed(plain)?.text(),
                        "msg" => m.msg = map.next_value_seed(plain)?.text(),
                        "gen" => m.gen = map.next_value_seed(plain)?.num(),
                        "lut" => m.lut = map.next_value_seed(plain)?.num(),
                        _ => drop(map.next_value::<IgnoredAny>()?),
                    }
                }
                Ok(Got::Meta(m))
            }
            Role::Record => {
                let names = self.names;
                let mut r = RecordFields::default();
                while let Some(k) = map.next_key_seed(KeySeed)? {
                    let k = k.as_ref();
                    let role = if k == names.metadata_key {
                        Role::Meta
                    } else if k == "key" {
                        Role::Key
                    } else if k == "bins" {
                        Role::Bins
                    } else {
                        Role::Plain
                    };
                    let wanted = role != Role::Plain || matches!(k, "msg" | "gen" | "lut");
                    if !wanted && k != names.ts_bin {
                        // Only checked to be JSON.
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    let g = map.next_value_seed(self.as_role(role))?;
                    // flat-json: the timestamp bin is a top-level property
                    // (any but the metadata object itself).
                    if k == names.ts_bin && role != Role::Meta {
                        r.top_ts = g.num();
                    }
                    match (role, k) {
                        (Role::Meta, _) => r.meta = Some(g),
                        (Role::Key, _) => r.key = Some(g),
                        (Role::Bins, _) => r.bins = Some(g),
                        (_, "msg") => r.msg = g.text(),
                        (_, "gen") => r.gen = g.num(),
                        (_, "lut") => r.lut = g.num(),
                        _ => {}
                    }
                }
                Ok(Got::Record(r.resolve(names)))
            }
            _ => {
                IgnoredAny.visit_map(map)?;
                Ok(Got::Other)
            }
        }
    }
}

/// A record's fields of interest, each the last of its name (as in a map).
#[derive(Default)]
struct RecordFields<'de> {
    meta: Option<Got<'de>>,
    key: Option<Got<'de>>,
    bins: Option<Got<'de>>,
    msg: Option<Str<'de>>,
    gen: Option<u64>,
    lut: Option<u64>,
    top_ts: Option<u64>,
}

impl RecordFields<'_> {
    /// flat-json when the metadata object is there, else json; the same
    /// checks as the full decoder.
    fn resolve(self, names: Names<'_>) -> Result<Brief, String> {
        fn need_str<'a>(v: Option<Str<'a>>, k: &str) -> Result<Str<'a>, String> {
            v.ok_or_else(|| format!("no string `{k}`"))
        }
        let need_u64 =
            |v: Option<u64>, k: &str| v.ok_or_else(|| format!("no unsigned integer `{k}`"));
        if let Some(Got::Meta(m)) = self.meta {
            let digest = digest(m.digest)?;
            let msg = need_str(m.msg, "msg")?;
            need_u64(m.gen, "gen")?;
            need_u64(m.lut, "lut")?;
            return Ok(Brief {
                digest,
                delete: msg == "delete",
                ts: self.top_ts,
            });
        }
        let Some(Got::Key(key_digest)) = self.key else {
            return Err(format!(
                "neither a `key` array of 4 nor a `{}` object",
                names.metadata_key
            ));
        };
        let ts = match self.bins {
            Some(Got::Bins { unnamed: true, .. }) => return Err("a bin without a name".into()),
            Some(Got::Bins { ts, .. }) => ts,
            _ => None,
        };
        let digest = digest(key_digest)?;
        let msg = need_str(self.msg, "msg")?;
        need_u64(self.gen, "gen")?;
        need_u64(self.lut, "lut")?;
        Ok(Brief {
            digest,
            delete: msg == "delete",
            ts,
        })
    }
}

/// A base64 digest of exactly 20 bytes.
fn digest(s: Option<Str<'_>>) -> Result<[u8; 20], String> {
    use base64::Engine as _;
    let s = s.ok_or("no base64 digest")?;
    // Room for any input that could decode to 20 bytes; longer ones fail here.
    let mut buf = [0u8; 24];
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(s.as_bytes(), &mut buf)
        .map_err(|e| format!("digest: {e}"))?;
    buf[..n]
        .try_into()
        .map_err(|_| format!("digest of {n} bytes, not 20"))
}
