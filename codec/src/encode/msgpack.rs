//! The `message-pack` format (FORMATS.md), written with `rmp::encode`:
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

use rmp::encode as mp;

use super::{check_depth, next_elem};
use super::{BinPolicy, EncodeError};
use crate::record::{Action, Bin, ListOrder, Record, UserKey, Value};
use crate::wire::msgpack::{Elem, Reader};
use crate::wire::particle;

/// Writes to a `Vec` cannot fail; a length over u32 is the only real error.
fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<(), EncodeError> {
    r.map(|_| ())
        .map_err(|e| EncodeError::MessagePack(e.to_string()))
}

fn len32(len: usize) -> Result<u32, EncodeError> {
    u32::try_from(len).map_err(|_| EncodeError::TooLong { len })
}

fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    ok(mp::write_str_len(out, len32(s.len())?))?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn write_bin(out: &mut Vec<u8>, b: &[u8]) -> Result<(), EncodeError> {
    ok(mp::write_bin_len(out, len32(b.len())?))?;
    out.extend_from_slice(b);
    Ok(())
}

fn write_ext(out: &mut Vec<u8>, ty: i8, data: &[u8]) -> Result<(), EncodeError> {
    ok(mp::write_ext_meta(out, len32(data.len())?, ty))?;
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
    ok(mp::write_array_len(out, 3))?;
    ok(mp::write_uint(out, 1))?;
    match rec.action {
        Action::Write => {
            ok(mp::write_uint(out, 1))?;
            ok(mp::write_array_len(out, 5))?;
            write_key(out, rec)?;
            ok(mp::write_uint(out, u64::from(rec.generation)))?;
            ok(mp::write_uint(out, rec.expiry(received_ms)))?;
            ok(mp::write_uint(out, rec.lut.unwrap_or(0)))?;
            // The count comes first; when every bin goes out and the
            // iterator knows its length, it needs no pass of its own.
            let count = match bins.size_hint() {
                (lo, Some(hi)) if lo == hi && policy.keeps_every_bin() => lo,
                _ => bins
                    .clone()
                    .filter(|b| policy.select(b.name).is_some())
                    .count(),
            };
            ok(mp::write_array_len(out, len32(count)?))?;
            let mut written = 0;
            for bin in bins {
                let Some(name) = policy.select(bin.name) else {
                    continue;
                };
                written += 1;
                ok(mp::write_array_len(out, 4))?;
                ok(mp::write_str_len(out, len32(name.byte_len())?))?;
                name.push_to(out);
                ok(mp::write_uint(out, u64::from(bin.value.particle_type())))?;
                let flags = match bin.value {
                    Value::List {
                        order: ListOrder::Ordered,
                        ..
                    } => 1,
                    Value::Map { order, .. } => order.flags(),
                    _ => 0,
                };
                ok(mp::write_uint(out, u64::from(flags)))?;
                write_value(out, &bin.value, bin.name)?;
            }
            if written != count {
                return Err(EncodeError::MessagePack(format!(
                    "{written} bins written where {count} were counted"
                )));
            }
        }
        Action::Delete { durable } => {
            ok(mp::write_uint(out, 2))?;
            ok(mp::write_array_len(out, 2))?;
            write_key(out, rec)?;
            ok(mp::write_uint(out, u64::from(durable)))?;
        }
    }
    Ok(())
}

fn write_key(out: &mut Vec<u8>, rec: &Record<'_>) -> Result<(), EncodeError> {
    ok(mp::write_array_len(out, 4))?;
    write_str(out, rec.namespace)?;
    match rec.set {
        Some(s) => write_str(out, s)?,
        None => ok(mp::write_nil(out))?,
    }
    write_bin(out, &rec.digest)?;
    match rec.user_key {
        None => ok(mp::write_nil(out)),
        Some(UserKey::Int(i)) => ok(mp::write_sint(out, i)),
        Some(UserKey::Float(f)) => ok(mp::write_f64(out, f)),
        Some(UserKey::Str(s)) => write_str(out, s),
        Some(UserKey::Blob(b)) => write_bin(out, b),
    }
}

fn write_value(out: &mut Vec<u8>, v: &Value<'_>, bin: &str) -> Result<(), EncodeError> {
    match v {
        Value::Null => ok(mp::write_nil(out)),
        Value::Int(i) => ok(mp::write_sint(out, *i)),
        Value::Float(f) => ok(mp::write_f64(out, *f)),
        Value::Str(s) => write_str(out, s),
        Value::Bool(b) => ok(mp::write_bool(out, *b)),
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
        Elem::Nil => ok(mp::write_nil(out)),
        Elem::Bool(b) => ok(mp::write_bool(out, b)),
        Elem::Int(i) => ok(mp::write_sint(out, i)),
        Elem::Uint(u) => ok(mp::write_uint(out, u)),
        Elem::Float(f) => ok(mp::write_f64(out, f)),
        Elem::Str(s) => write_str(out, s),
        Elem::Blob { ptype, bytes } => write_ext(out, ptype as i8, bytes),
        Elem::Geo(g) => write_ext(out, particle::GEOJSON as i8, g.as_bytes()),
        Elem::Ext { ty, data } => write_ext(out, ty, data),
        Elem::List { len, .. } | Elem::Map { len, .. } => {
            check_depth(depth, bin)?;
            let items = if matches!(e, Elem::Map { .. }) {
                ok(mp::write_map_len(out, len))?;
                2 * u64::from(len)
            } else {
                ok(mp::write_array_len(out, len))?;
                u64::from(len)
            };
            for _ in 0..items {
                let e = next_elem(r, bin)?;
                write_elem(out, r, e, depth + 1, bin)?;
            }
            Ok(())
        }
    }
}
