//! Fields (XDR-PROTOCOL.md §3): namespace, set, user key, digest, LUT; and
//! the digest computed from set and key when XDR sent none.

use ripemd::{Digest, Ripemd160};

use crate::error::{Error, ErrorKind};
use crate::record::UserKey;
use crate::wire::particle;

pub const NAMESPACE: u8 = 0;
pub const SET: u8 = 1;
pub const USER_KEY: u8 = 2;
pub const DIGEST: u8 = 4;
pub const TRANSACTION_ID: u8 = 7;
pub const LUT: u8 = 14;

/// Unix ms of 2010-01-01, Aerospike's own epoch.
pub const CITRUSLEAF_EPOCH_MS: u64 = 1_262_304_000_000;
/// LUT values at or above this (2020-01-01 in Unix ms) are Unix ms already.
pub const UNIX_MS_THRESHOLD: u64 = 1_577_836_800_000;

/// A wire LUT in Unix ms: either epoch is accepted (XDR-PROTOCOL.md §3).
pub fn lut_to_unix_ms(raw: u64) -> u64 {
    if raw >= UNIX_MS_THRESHOLD {
        raw
    } else {
        raw + CITRUSLEAF_EPOCH_MS
    }
}

/// RIPEMD-160 over set bytes, the key's particle type byte and key bytes.
pub fn digest(set: Option<&str>, key: &UserKey<'_>) -> [u8; 20] {
    let mut h = Ripemd160::new();
    h.update(set.unwrap_or("").as_bytes());
    h.update([key.particle_type()]);
    match key {
        UserKey::Int(i) => h.update(i.to_be_bytes()),
        UserKey::Float(f) => h.update(f.to_be_bytes()),
        UserKey::Str(s) => h.update(s.as_bytes()),
        UserKey::Blob(b) => h.update(b),
    }
    h.finalize().into()
}

/// Decodes a user key field's payload (particle type byte, then the value);
/// `base` is where it starts in the frame.
#[inline]
pub fn user_key(data: &[u8], base: usize) -> Result<UserKey<'_>, Error> {
    let Some((&ptype, v)) = data.split_first() else {
        return Err(Error::at(
            ErrorKind::Truncated {
                what: "user key particle type",
                need: 1,
                have: 0,
            },
            base,
        ));
    };
    let bad_size = || {
        Error::at(
            ErrorKind::BadValueSize {
                ptype,
                len: v.len(),
            },
            base + 1,
        )
    };
    Ok(match ptype {
        particle::INTEGER => match *v {
            [a, b, c, d, e, f, g, h] => UserKey::Int(i64::from_be_bytes([a, b, c, d, e, f, g, h])),
            _ => return Err(bad_size()),
        },
        particle::FLOAT => match *v {
            [a, b, c, d, e, f, g, h] => {
                UserKey::Float(f64::from_be_bytes([a, b, c, d, e, f, g, h]))
            }
            _ => return Err(bad_size()),
        },
        particle::STRING => UserKey::Str(
            super::particle::utf8(v)
                .map_err(|_| Error::at(ErrorKind::BadUtf8 { what: "user key" }, base + 1))?,
        ),
        particle::BLOB => UserKey::Blob(v),
        _ => return Err(Error::at(ErrorKind::BadUserKey(ptype), base)),
    })
}
