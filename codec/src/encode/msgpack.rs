//! The `message-pack` format (FORMATS.md):
//!
//! ```text
//! message = [1, type, payload]         type: 1 write, 2 delete
//! write   = [key, gen, exp, lut, bins]
//! delete  = [key, flags]               flags: 0x01 durable
//! key     = [namespace, set|nil, digest (bin 20), userKey|nil]
//! bin     = [name, particle type, flags, value]
//! ```
//!
//! Lists and maps are re-emitted as plain msgpack: Aerospike's in-element
//! string prefix is removed, blobs and GeoJSON inside collections become ext
//! values whose ext type is the particle type, and ordering ext headers are
//! dropped (the order travels in the bin's flags).
//!
//! The markers are written here (`mp`), in the shortest form, as `rmp`
//! writes them: through `rmp`'s generic writer each one cost a call and an
//! error check that a `Vec` never needs.

use super::{check_depth, next_elem};
use super::{BinPolicy, EncodeError};
use crate::record::{Action, Bin, ListOrder, Record, UserKey, Value};
use crate::wire::msgpack::{Elem, Reader};
use crate::wire::particle;

/// msgpack markers into a `Vec`, each in its shortest form.
mod mp {
    #[inline]
    fn with_len(out: &mut Vec<u8>, len: u32, fix: Option<u8>, m8: Option<u8>, m16: u8, m32: u8) {
        match (fix, m8, u8::try_from(len), u16::try_from(len)) {
            (Some(fix), _, Ok(n), _) => out.push(fix | n),
            (_, Some(m), Ok(n), _) => out.extend_from_slice(&[m, n]),
            (_, _, _, Ok(n)) => {
                let [a, b] = n.to_be_bytes();
                out.extend_from_slice(&[m16, a, b]);
            }
            _ => {
                let [a, b, c, d] = len.to_be_bytes();
                out.extend_from_slice(&[m32, a, b, c, d]);
            }
        }
    }

    #[inline]
    pub fn array_len(out: &mut Vec<u8>, len: u32) {
        with_len(out, len, (len < 16).then_some(0x90), None, 0xdc, 0xdd);
    }

    #[inline]
    pub fn map_len(out: &mut Vec<u8>, len: u32) {
        with_len(out, len, (len < 16).then_some(0x80), None, 0xde, 0xdf);
    }

    #[inline]
    pub fn str_len(out: &mut Vec<u8>, len: u32) {
        with_len(out, len, (len < 32).then_some(0xa0), Some(0xd9), 0xda, 0xdb);
    }

    #[inline]
    pub fn bin_len(out: &mut Vec<u8>, len: u32) {
        with_len(out, len, None, Some(0xc4), 0xc5, 0xc6);
    }

    #[inline]
    pub fn ext_meta(out: &mut Vec<u8>, len: u32, ty: i8) {
        let fixed = match len {
            1 => Some(0xd4),
            2 => Some(0xd5),
            4 => Some(0xd6),
            8 => Some(0xd7),
            16 => Some(0xd8),
            _ => None,
        };
        match fixed {
            Some(m) => out.push(m),
            None => with_len(out, len, None, Some(0xc7), 0xc8, 0xc9),
        }
        out.push(ty as u8);
    }

    #[inline]
    pub fn uint(out: &mut Vec<u8>, v: u64) {
        if v < 128 {
            out.push(v as u8);
        } else if let Ok(v) = u8::try_from(v) {
            out.extend_from_slice(&[0xcc, v]);
        } else if let Ok(v) = u16::try_from(v) {
            let [a, b] = v.to_be_bytes();
            out.extend_from_slice(&[0xcd, a, b]);
        } else if let Ok(v) = u32::try_from(v) {
            let [a, b, c, d] = v.to_be_bytes();
            out.extend_from_slice(&[0xce, a, b, c, d]);
        } else {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    #[inline]
    pub fn sint(out: &mut Vec<u8>, v: i64) {
        if v >= 0 {
            uint(out, v as u64);
        } else if v >= -32 {
            out.push(v as u8);
        } else if let Ok(v) = i8::try_from(v) {
            out.extend_from_slice(&[0xd0, v as u8]);
        } else if let Ok(v) = i16::try_from(v) {
            let [a, b] = v.to_be_bytes();
            out.extend_from_slice(&[0xd1, a, b]);
        } else if let Ok(v) = i32::try_from(v) {
            let [a, b, c, d] = v.to_be_bytes();
            out.extend_from_slice(&[0xd2, a, b, c, d]);
        } else {
            out.push(0xd3);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    #[inline]
    pub fn nil(out: &mut Vec<u8>) {
        out.push(0xc0);
    }

    #[inline]
    pub fn bool(out: &mut Vec<u8>, v: bool) {
        out.push(if v { 0xc3 } else { 0xc2 });
    }

    #[inline]
    pub fn f64(out: &mut Vec<u8>, v: f64) {
        out.push(0xcb);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn len32(len: usize) -> Result<u32, EncodeError> {
    u32::try_from(len).map_err(|_| EncodeError::TooLong { len })
}

fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    mp::str_len(out, len32(s.len())?);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn write_bin(out: &mut Vec<u8>, b: &[u8]) -> Result<(), EncodeError> {
    mp::bin_len(out, len32(b.len())?);
    out.extend_from_slice(b);
    Ok(())
}

fn write_ext(out: &mut Vec<u8>, ty: i8, data: &[u8]) -> Result<(), EncodeError> {
    mp::ext_meta(out, len32(data.len())?, ty);
    out.extend_from_slice(data);
    Ok(())
}

pub(crate) fn write<'a, I>(
    rec: &Record<'a>,
    bins: I,
    policy: &BinPolicy,
    received_ms: u64,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError>
where
    I: Iterator<Item = Bin<'a>> + Clone,
{
    mp::array_len(out, 3);
    mp::uint(out, 1);
    match rec.action {
        Action::Write => {
            mp::uint(out, 1);
            mp::array_len(out, 5);
            write_key(out, rec)?;
            mp::uint(out, u64::from(rec.generation));
            mp::uint(out, rec.expiry(received_ms));
            mp::uint(out, rec.lut.unwrap_or(0));
            // The count comes first; when every bin goes out and the
            // iterator knows its length, it needs no pass of its own.
            let count = match bins.size_hint() {
                (lo, Some(hi)) if lo == hi && policy.keeps_every_bin() => lo,
                _ => bins
                    .clone()
                    .filter(|b| policy.select(b.name).is_some())
                    .count(),
            };
            mp::array_len(out, len32(count)?);
            let mut written = 0;
            for bin in bins {
                let Some(name) = policy.select(bin.name) else {
                    continue;
                };
                written += 1;
                mp::array_len(out, 4);
                mp::str_len(out, len32(name.byte_len())?);
                name.push_to(out);
                mp::uint(out, u64::from(bin.value.particle_type()));
                let flags = match bin.value {
                    Value::List {
                        order: ListOrder::Ordered,
                        ..
                    } => 1,
                    Value::Map { order, .. } => order.flags(),
                    _ => 0,
                };
                mp::uint(out, u64::from(flags));
                write_value(out, &bin.value, bin.name)?;
            }
            if written != count {
                return Err(EncodeError::MessagePack(format!(
                    "{written} bins written where {count} were counted"
                )));
            }
        }
        Action::Delete { durable } => {
            mp::uint(out, 2);
            mp::array_len(out, 2);
            write_key(out, rec)?;
            mp::uint(out, u64::from(durable));
        }
    }
    Ok(())
}

fn write_key(out: &mut Vec<u8>, rec: &Record<'_>) -> Result<(), EncodeError> {
    mp::array_len(out, 4);
    write_str(out, rec.namespace)?;
    match rec.set {
        Some(s) => write_str(out, s)?,
        None => mp::nil(out),
    }
    write_bin(out, &rec.digest)?;
    match rec.user_key {
        None => mp::nil(out),
        Some(UserKey::Int(i)) => mp::sint(out, i),
        Some(UserKey::Float(f)) => mp::f64(out, f),
        Some(UserKey::Str(s)) => write_str(out, s)?,
        Some(UserKey::Blob(b)) => write_bin(out, b)?,
    }
    Ok(())
}

fn write_value(out: &mut Vec<u8>, v: &Value<'_>, bin: &str) -> Result<(), EncodeError> {
    match v {
        Value::Null => {
            mp::nil(out);
            Ok(())
        }
        Value::Int(i) => {
            mp::sint(out, *i);
            Ok(())
        }
        Value::Float(f) => {
            mp::f64(out, *f);
            Ok(())
        }
        Value::Str(s) => write_str(out, s),
        Value::Bool(b) => {
            mp::bool(out, *b);
            Ok(())
        }
        Value::Blob { bytes, .. } | Value::Hll(bytes) => write_bin(out, bytes),
        Value::Geo(g) => write_str(out, g.json),
        Value::List { items, .. } => {
            let mut r = items.elements();
            write_elem(
                out,
                &mut r,
                Elem::List {
                    len: items.len,
                    order: ListOrder::Unordered,
                },
                1,
                bin,
            )
        }
        Value::Map { items, .. } => {
            let mut r = items.elements();
            let e = Elem::Map {
                len: items.len,
                order: crate::record::MapOrder::Unordered,
            };
            write_elem(out, &mut r, e, 1, bin)
        }
    }
}

fn write_elem(
    out: &mut Vec<u8>,
    r: &mut Reader<'_>,
    e: Elem<'_>,
    depth: usize,
    bin: &str,
) -> Result<(), EncodeError> {
    match e {
        Elem::Nil => mp::nil(out),
        Elem::Bool(b) => mp::bool(out, b),
        Elem::Int(i) => mp::sint(out, i),
        Elem::Uint(u) => mp::uint(out, u),
        Elem::Float(f) => mp::f64(out, f),
        Elem::Str(s) => write_str(out, s)?,
        Elem::Blob { ptype, bytes } => write_ext(out, ptype as i8, bytes)?,
        Elem::Geo(g) => write_ext(out, particle::GEOJSON as i8, g.as_bytes())?,
        Elem::Ext { ty, data } => write_ext(out, ty, data)?,
        Elem::List { len, .. } | Elem::Map { len, .. } => {
            check_depth(depth, bin)?;
            let items = if matches!(e, Elem::Map { .. }) {
                mp::map_len(out, len);
                2 * u64::from(len)
            } else {
                mp::array_len(out, len);
                u64::from(len)
            };
            for _ in 0..items {
                let e = next_elem(r, bin)?;
                write_elem(out, r, e, depth + 1, bin)?;
            }
        }
    }
    Ok(())
}
