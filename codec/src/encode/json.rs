//! The `json` and `flat-json` formats: a hand-written JSON writer that appends
//! straight into the output buffer through a [`Cursor`] (integers, base64 and
//! short text written in place), so a record costs no allocation once the
//! buffer has grown.
//!
//! Every writer here makes room for what it writes with `Cursor::ensure`,
//! the bound computed from lengths it holds (the cursor module's contract).
//!
//! Decisions (docs/FORMATS.md): non-finite floats are `null`; non-string map
//! keys become strings (integers in decimal, floats as written by ryu, blobs
//! in base64, `true`/`false`, `null`); GeoJSON is embedded as the JSON value it
//! holds, checked first (invalid text would corrupt the whole body) and with
//! raw line breaks dropped (they can only be white space there) so NDJSON
//! batches stay one record per line.

use super::cursor::{Cursor, MAX_INT};
use super::{check_depth, next_elem};
use super::{BinPolicy, EncodeError, OutName};
use crate::record::{Action, Bin, ListOrder, MapOrder, Record, UserKey, Value};
use crate::wire::msgpack::{Elem, Reader};
use crate::wire::op::{self, BinIter};
use crate::wire::particle::{self, Utf8, BLOB, ERLANG_BLOB, JAVA_BLOB, STRING};

/// For each byte: 0 when it goes out as is, else the letter after `\`
/// (`u` = `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Longest text of a scalar (an integer, a float, `false`, `null`): ryu
/// writes at most 24 bytes, an integer at most [`MAX_INT`].
const SCALAR_MAX: usize = 24;

/// Bytes escaped text of `n` bytes can take, quotes included: each byte at
/// most 6 (`\u00XX`).
fn escaped_bound(n: usize) -> usize {
    n.saturating_mul(6).saturating_add(2)
}

/// Writes byte `b` escaped (`esc` from [`ESCAPE`]): at most 6 bytes.
fn escape_byte(c: &mut Cursor<'_>, b: u8, esc: u8) {
    if esc == b'u' {
        c.put(b"\\u00");
        c.put(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]);
    } else {
        c.put(&[b'\\', esc]);
    }
}

/// True when one of the 8 bytes of `w` must be escaped (below 0x20, `"` or
/// `\\`): the usual SWAR zero-byte tests, so clean text is checked 8 bytes
/// at a time.
fn needs_escape(w: u64) -> bool {
    escape_bits(w) != 0
}

/// Non-zero when one of the 8 bytes of `w` must be escaped (see
/// [`needs_escape`]).
#[inline(always)]
fn escape_bits(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(0x20 * ONES) & !w & HIGH;
    below_space | zero(w ^ (u64::from(b'"') * ONES)) | zero(w ^ (u64::from(b'\\') * ONES))
}

/// True when one of the 16 bytes of two 8-byte pieces must be escaped
/// (below 0x20, `"` or `\\`) or, with `ASCII`, is not ASCII: one SSE2
/// compare run over both where the target has it (about half the
/// instructions of two [`escape_bits`] words), else two such words.
#[inline(always)]
fn dirty_words<const ASCII: bool>(a: &[u8; 8], b: &[u8; 8]) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    return super::cursor::sse2_json_dirty::<ASCII>(a, b);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    return {
        let (a, b) = (u64::from_le_bytes(*a), u64::from_le_bytes(*b));
        let high = if ASCII {
            (a | b) & 0x8080_8080_8080_8080
        } else {
            0
        };
        escape_bits(a) | escape_bits(b) | high != 0
    };
}

/// [`ESCAPE`]'s entry for `b`, or (with `ASCII`) non-zero for a byte that
/// is not ASCII as well.
#[inline(always)]
fn escape_or_high<const ASCII: bool>(b: u8) -> u8 {
    ESCAPE[usize::from(b)] | if ASCII { b & 0x80 } else { 0 }
}

/// True when one of the 16 bytes must be escaped. A fold over the bytes
/// with no early exit, which LLVM compiles to a few SSE2 compares and one
/// mask test (baseline x86-64): about half the instructions of two
/// [`escape_bits`] words.
#[inline(always)]
fn dirty16(c: &[u8; 16]) -> bool {
    let mut m = 0u8;
    for &b in c {
        m |= u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\');
    }
    m != 0
}

/// True when no byte of `bytes` must be escaped. Short text (most names,
/// keys and values) is tested as one or two overlapping words rather than
/// byte by byte: overlap only tests a byte twice.
#[inline]
fn is_clean(bytes: &[u8]) -> bool {
    let word = |b: &[u8; 8]| u64::from_le_bytes(*b);
    let n = bytes.len();
    if n >= 16 {
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            if <&[u8; 16]>::try_from(c).is_ok_and(dirty16) {
                return false;
            }
        }
        // The last 16 bytes cover what `chunks_exact` left over.
        return chunks.remainder().is_empty()
            || bytes.last_chunk::<16>().is_none_or(|c| !dirty16(c));
    }
    if n >= 8 {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            if let Ok(c) = <&[u8; 8]>::try_from(c) {
                if needs_escape(word(c)) {
                    return false;
                }
            }
        }
        // The last 8 bytes cover what `chunks_exact` left over.
        return chunks.remainder().is_empty()
            || bytes
                .last_chunk::<8>()
                .is_none_or(|c| !needs_escape(word(c)));
    }
    let w = if n >= 4 {
        let (Some(a), Some(b)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) else {
            return false;
        };
        u64::from(u32::from_le_bytes(*a)) | u64::from(u32::from_le_bytes(*b)) << 32
    } else if let (Some(&a), Some(&b), Some(&c)) = (bytes.first(), bytes.get(n / 2), bytes.last()) {
        let esc = |x: u8| ESCAPE[usize::from(x)];
        return esc(a) | esc(b) | esc(c) == 0;
    } else {
        return true;
    };
    !needs_escape(w)
}

/// Appends `s` as a JSON string, quotes included.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    put_str(&mut Cursor::new(out), s);
}

/// `s` as a JSON string, quotes included (makes its own room).
#[inline]
fn put_str(c: &mut Cursor<'_>, s: &str) {
    let bytes = s.as_bytes();
    match short_clean(bytes) {
        Some(true) => {
            c.ensure(bytes.len() + 2);
            c.quoted(bytes);
        }
        Some(false) => put_escaped(c, bytes),
        None => {
            // Longer text copied while tested.
            c.ensure(bytes.len() + 2);
            let at = c.len();
            c.byte(b'"');
            if copy_clean_long::<false>(c, bytes) {
                c.byte(b'"');
            } else {
                c.truncate(at);
                put_escaped(c, bytes);
            }
        }
    }
}

/// Whether text of at most 16 bytes is clean (from 8 bytes on, tested as
/// its first and last word, which overlap); `None` for longer text.
#[inline(always)]
fn short_clean(bytes: &[u8]) -> Option<bool> {
    if bytes.len() > 16 {
        return None;
    }
    Some(match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        (Some(a), Some(b)) => !dirty_words::<false>(a, b),
        _ => is_clean(bytes),
    })
}

/// A string that has bytes to escape, byte by byte, quotes included.
#[cold]
fn put_escaped(c: &mut Cursor<'_>, bytes: &[u8]) {
    c.ensure(escaped_bound(bytes.len()));
    c.byte(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[usize::from(b)];
        if esc != 0 {
            c.slice(&bytes[start..i]);
            escape_byte(c, b, esc);
            start = i + 1;
        }
    }
    c.slice(&bytes[start..]);
    c.byte(b'"');
}

/// Copies `s` (at most 16 bytes; the caller made the room) when no byte
/// of it must be escaped (with `ASCII`: and every byte is ASCII, so the
/// text is UTF-8), testing the words it copies; `false`, having written
/// nothing that counts, otherwise (`Cursor::short_if`).
#[inline(always)]
// A closure marked `inline(always)`, not the fn item: passed as is, the
// item was called out of line through its `Fn` shim.
#[allow(clippy::redundant_closure)]
fn copy_clean<const ASCII: bool>(c: &mut Cursor<'_>, s: &[u8]) -> bool {
    c.short_if(
        s,
        #[inline(always)]
        |a, b| dirty_words::<ASCII>(a, b),
        escape_or_high::<ASCII>,
    )
}

/// Copies `s` (more than 16 bytes; the caller made the room) when no byte
/// of it must be escaped (with `ASCII`: and every byte is ASCII); `false`,
/// having written nothing that counts, otherwise.
#[inline(always)]
fn copy_clean_long<const ASCII: bool>(c: &mut Cursor<'_>, s: &[u8]) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    return c.long_if_json_clean::<ASCII>(s);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    return is_clean(s) && (!ASCII || s.is_ascii()) && {
        c.slice(s);
        true
    };
}

/// Copies text of at most 16 bytes, the first `n` of `head` (the text and
/// what follows it; the caller made room for 16), when no byte of it must
/// be escaped (with `ASCII`: and every byte is ASCII); `false`, having
/// written nothing that counts, otherwise.
#[inline(always)]
fn copy_clean_head<const ASCII: bool>(c: &mut Cursor<'_>, head: &[u8; 16], n: usize) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    return c.head_if_json_clean::<ASCII>(head, n);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    return head.get(..n).is_some_and(|s| copy_clean::<ASCII>(c, s));
}

/// An output bin name as a JSON string (makes its own room).
#[inline]
fn put_name(c: &mut Cursor<'_>, name: &OutName<'_>) {
    if name.case == super::Case::Keep {
        put_str(c, name.base);
    } else {
        put_cased(c, name);
    }
}

/// A case-mapped name, a char at a time.
#[cold]
fn put_cased(c: &mut Cursor<'_>, name: &OutName<'_>) {
    c.ensure(1);
    c.byte(b'"');
    name.for_each_char(|ch| {
        let mut buf = [0u8; 4];
        let s = ch.encode_utf8(&mut buf);
        // A char is at most 4 bytes of UTF-8, or 6 escaped.
        c.ensure(6);
        match s.as_bytes() {
            [b] if ESCAPE[usize::from(*b)] != 0 => escape_byte(c, *b, ESCAPE[usize::from(*b)]),
            bytes => c.slice(bytes),
        }
    });
    c.ensure(1);
    c.byte(b'"');
}

/// The standard base64 alphabet (RFC 4648 §4).
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The base64 letter of the 6 bits of `n` starting at bit `shift`.
fn b64(n: u32, shift: u32) -> u8 {
    BASE64[((n >> shift) & 63) as usize]
}

/// The two base64 letters of every 12-bit value (8 KiB): a group of three
/// bytes takes two lookups rather than four.
static BASE64_PAIRS: [[u8; 2]; 4096] = {
    let mut t = [[0u8; 2]; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = [BASE64[i >> 6], BASE64[i & 63]];
        i += 1;
    }
    t
};

/// Appends `bytes` in standard padded base64, quotes included.
pub fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    put_base64(&mut Cursor::new(out), bytes);
}

/// `bytes` in standard padded base64, quotes included (makes its own
/// room). Written out here rather than through the `base64` engine: digests
/// (20 bytes) and most blobs are short, where the engine's set-up costs
/// more than the encoding.
fn put_base64(c: &mut Cursor<'_>, bytes: &[u8]) {
    c.ensure(base64_bound(bytes.len()));
    base64(c, bytes);
}

/// Bytes [`base64`] writes for `n` bytes: 4 letters per 3 bytes or part of
/// them, and the quotes.
const fn base64_bound(n: usize) -> usize {
    n.div_ceil(3).saturating_mul(4).saturating_add(2)
}

/// `bytes` in base64, quotes included ([`base64_bound`] bytes; the caller
/// made the room).
fn base64(c: &mut Cursor<'_>, bytes: &[u8]) {
    c.byte(b'"');
    let mut chunks = bytes.chunks_exact(3);
    for t in &mut chunks {
        if let [a, b, d] = *t {
            let n = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(d);
            let [w, x] = BASE64_PAIRS[n >> 12];
            let [y, z] = BASE64_PAIRS[n & 0xfff];
            c.put(&[w, x, y, z]);
        }
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            c.put(&[b64(n, 18), b64(n, 12), b'=', b'=']);
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            c.put(&[b64(n, 18), b64(n, 12), b64(n, 6), b'=']);
        }
        _ => {}
    }
    c.byte(b'"');
}

pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    let mut c = Cursor::new(out);
    c.ensure(MAX_INT);
    c.i64(v);
}

pub fn write_u64(out: &mut Vec<u8>, v: u64) {
    let mut c = Cursor::new(out);
    c.ensure(MAX_INT);
    c.u64(v);
}

/// A float as JSON: shortest round-trip text; NaN and infinities as `null`.
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    let mut c = Cursor::new(out);
    c.ensure(SCALAR_MAX);
    float(&mut c, v);
}

/// A float (at most [`SCALAR_MAX`] bytes; the caller made the room).
fn float(c: &mut Cursor<'_>, v: f64) {
    // Multiples of 1/8 below 2^27 in size (prices, scores, halves): their
    // exact decimal has at most 3 fraction digits, which is also ryu's
    // shortest text for them, written without ryu's search. At most
    // 1 + 9 + 4 bytes.
    let eighths = v * 8.0;
    // A whole number of eighths in `i32`'s range converts and back
    // unchanged; a fraction does not, nor does a number out of range (the
    // conversion saturates) or NaN (it gives 0), so converting back tests
    // wholeness (`trunc` is a library call on baseline x86-64). 0 and -0.0
    // are left to ryu.
    let n = eighths as i32;
    if f64::from(n) == eighths && n != 0 && n.unsigned_abs() < 1 << 30 {
        if n < 0 {
            c.byte(b'-');
        }
        let n = n.unsigned_abs();
        c.u64(u64::from(n >> 3));
        match n & 7 {
            0 => c.put(b".0"),
            1 => c.put(b".125"),
            2 => c.put(b".25"),
            3 => c.put(b".375"),
            4 => c.put(b".5"),
            5 => c.put(b".625"),
            6 => c.put(b".75"),
            _ => c.put(b".875"),
        }
        return;
    }
    if v.is_finite() {
        c.slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        c.put(b"null");
    }
}

/// `true` or `false` (at most 5 bytes; the caller made the room).
fn boolean(c: &mut Cursor<'_>, v: bool) {
    if v {
        c.put(b"true");
    } else {
        c.put(b"false");
    }
}

/// Embeds GeoJSON text as the JSON value it holds (makes its own room).
fn put_geo(c: &mut Cursor<'_>, json: &str, bin: &str) -> Result<(), EncodeError> {
    check_json(json.as_bytes()).map_err(|(what, at)| EncodeError::BadGeoJson {
        bin: bin.to_string(),
        why: format!("{what} at byte {at}"),
    })?;
    let json = json.trim().as_bytes();
    c.ensure(json.len());
    // Valid JSON has no raw CR/LF inside strings, so these are white space.
    for &b in json {
        if b != b'\n' && b != b'\r' {
            c.byte(b);
        }
    }
    Ok(())
}

/// Deepest nesting [`check_json`] accepts (as deep as serde_json parses
/// into values; real GeoJSON nests 4 or 5 levels).
const MAX_JSON_DEPTH: u32 = 128;

/// Checks that `s` is exactly one JSON value (RFC 8259), white space around
/// it allowed. Iterative, with the open containers kept as bits of a `u128`,
/// so it neither allocates nor recurses. Err: what is wrong, and where.
fn check_json(s: &[u8]) -> Result<(), (&'static str, usize)> {
    let mut i = 0;
    // Bit d of `objects`: the container at depth d+1 is an object.
    let mut objects: u128 = 0;
    let mut depth: u32 = 0;
    let ws = |i: &mut usize| {
        while matches!(s.get(*i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            *i += 1;
        }
    };
    'value: loop {
        ws(&mut i);
        match s.get(i) {
            Some(b'{') | Some(b'[') => {
                let is_object = s[i] == b'{';
                i += 1;
                if depth == MAX_JSON_DEPTH {
                    return Err(("nesting too deep", i));
                }
                if is_object {
                    objects |= 1 << depth;
                } else {
                    objects &= !(1 << depth);
                }
                depth += 1;
                ws(&mut i);
                let close = if is_object { b'}' } else { b']' };
                if s.get(i) == Some(&close) {
                    i += 1;
                    depth -= 1;
                } else {
                    if is_object {
                        i = json_key(s, i)?;
                    }
                    continue 'value;
                }
            }
            Some(b'"') => i = json_string(s, i)?,
            Some(b't') if s[i..].starts_with(b"true") => i += 4,
            Some(b'f') if s[i..].starts_with(b"false") => i += 5,
            Some(b'n') if s[i..].starts_with(b"null") => i += 4,
            Some(b'-' | b'0'..=b'9') => i = json_number(s, i)?,
            Some(_) => return Err(("expected a value", i)),
            None => return Err(("end of text where a value was expected", i)),
        }
        // After a value: close containers or go on to the next element.
        loop {
            ws(&mut i);
            if depth == 0 {
                return if i == s.len() {
                    Ok(())
                } else {
                    Err(("text after the value", i))
                };
            }
            let in_object = objects & (1 << (depth - 1)) != 0;
            match (s.get(i), in_object) {
                (Some(b','), true) => {
                    i = json_key(s, i + 1)?;
                    continue 'value;
                }
                (Some(b','), false) => {
                    i += 1;
                    continue 'value;
                }
                (Some(b'}'), true) | (Some(b']'), false) => {
                    i += 1;
                    depth -= 1;
                }
                _ => return Err(("expected `,` or the end of the container", i)),
            }
        }
    }
}

/// An object key and its colon, white space around them; returns where the
/// value starts.
fn json_key(s: &[u8], mut i: usize) -> Result<usize, (&'static str, usize)> {
    while matches!(s.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    if s.get(i) != Some(&b'"') {
        return Err(("expected a string key", i));
    }
    i = json_string(s, i)?;
    while matches!(s.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    if s.get(i) != Some(&b':') {
        return Err(("expected `:`", i));
    }
    Ok(i + 1)
}

/// A string starting at its opening quote; returns the position after it.
fn json_string(s: &[u8], start: usize) -> Result<usize, (&'static str, usize)> {
    let mut i = start + 1;
    loop {
        match s.get(i) {
            None => return Err(("unterminated string", start)),
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => match s.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u')
                    if s.get(i + 2..i + 6)
                        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                {
                    i += 6
                }
                _ => return Err(("bad escape in a string", i)),
            },
            Some(&b) if b < 0x20 => return Err(("control character in a string", i)),
            Some(_) => i += 1,
        }
    }
}

/// A number (`-? int frac? exp?`); returns the position after it.
fn json_number(s: &[u8], start: usize) -> Result<usize, (&'static str, usize)> {
    let digits = |i: &mut usize| {
        let from = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > from
    };
    let mut i = start;
    if s.get(i) == Some(&b'-') {
        i += 1;
    }
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return Err(("bad number", start)),
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return Err(("bad number", start));
        }
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return Err(("bad number", start));
        }
    }
    Ok(i)
}

/// Longest [`put_type_and_value_key`] text.
const TYPE_AND_VALUE_KEY_MAX: usize = 28;

/// What follows a bin's name in `json`: the name's closing quote (see
/// [`put_bin_name`]), its `type`, then the `value` key (at most
/// [`TYPE_AND_VALUE_KEY_MAX`] bytes; the caller made the room).
fn put_type_and_value_key(c: &mut Cursor<'_>, v: &Value<'_>) {
    match v {
        Value::Null => c.put(b"\",\"type\":\"null\",\"value\":"),
        Value::Int(_) => c.put(b"\",\"type\":\"int\",\"value\":"),
        Value::Float(_) => c.put(b"\",\"type\":\"float\",\"value\":"),
        Value::Str(_) => c.put(b"\",\"type\":\"str\",\"value\":"),
        Value::Bool(_) => c.put(b"\",\"type\":\"bool\",\"value\":"),
        Value::Blob { .. } => c.put(b"\",\"type\":\"blob\",\"value\":"),
        Value::Hll(_) => c.put(b"\",\"type\":\"hll\",\"value\":"),
        Value::List { .. } => c.put(b"\",\"type\":\"list\",\"value\":"),
        Value::Map { .. } => c.put(b"\",\"type\":\"map\",\"value\":"),
        Value::Geo(_) => c.put(b"\",\"type\":\"geojson\",\"value\":"),
    }
}

/// Longest [`put_bin_end`] text.
const BIN_END_MAX: usize = 24;

/// The members after a bin's value in `json` (a list's `ordered`, a map's
/// `order`) and the bin's closing brace (at most [`BIN_END_MAX`] bytes; the
/// caller made the room).
fn put_bin_end(c: &mut Cursor<'_>, v: &Value<'_>) {
    match v {
        Value::List {
            order: ListOrder::Ordered,
            ..
        } => c.put(b",\"ordered\":true}"),
        Value::List { .. } => c.put(b",\"ordered\":false}"),
        Value::Map { order, .. } => match order {
            MapOrder::Unordered => c.put(b",\"order\":\"unordered\"}"),
            MapOrder::Key => c.put(b",\"order\":\"key\"}"),
            MapOrder::KeyValue => c.put(b",\"order\":\"key-value\"}"),
            MapOrder::Insertion => c.put(b",\"order\":\"insertion\"}"),
        },
        _ => c.byte(b'}'),
    }
}

/// A bin's value in `json` and what follows it (makes its own room).
fn put_bin_value_and_end(c: &mut Cursor<'_>, v: &Value<'_>, bin: &str) -> Result<(), EncodeError> {
    let e = match *v {
        Value::Int(i) => Elem::Int(i),
        Value::Float(f) => Elem::Float(f),
        Value::Bool(b) => Elem::Bool(b),
        Value::Null => Elem::Nil,
        Value::Str(s) if short_clean(s.as_bytes()) == Some(true) => {
            c.ensure(s.len() + 3);
            c.quoted(s.as_bytes());
            c.byte(b'}');
            return Ok(());
        }
        _ => {
            put_value(c, v, bin)?;
            c.ensure(BIN_END_MAX);
            put_bin_end(c, v);
            return Ok(());
        }
    };
    c.ensure(SCALAR_MAX + 1);
    scalar(c, e);
    c.byte(b'}');
    Ok(())
}

/// A bin value as JSON (makes its own room).
fn put_value(c: &mut Cursor<'_>, v: &Value<'_>, bin: &str) -> Result<(), EncodeError> {
    match v {
        Value::Null => {
            c.ensure(4);
            c.put(b"null");
        }
        Value::Int(i) => {
            c.ensure(MAX_INT);
            c.i64(*i);
        }
        Value::Float(f) => {
            c.ensure(SCALAR_MAX);
            float(c, *f);
        }
        Value::Str(s) => put_str(c, s),
        Value::Bool(b) => {
            c.ensure(5);
            boolean(c, *b);
        }
        Value::Blob { bytes, .. } | Value::Hll(bytes) => put_base64(c, bytes),
        Value::Geo(g) => put_geo(c, g.json, bin)?,
        Value::List { items, .. } => {
            if !put_flat_collection::<false>(c, items.body, items.len, false) {
                let mut r = items.elements();
                put_collection(c, &mut r, items.len, false, 1, bin)?;
            }
        }
        Value::Map { items, .. } => {
            if !put_flat_collection::<false>(c, items.body, items.len, true) {
                let mut r = items.elements();
                put_collection(c, &mut r, items.len, true, 1, bin)?;
            }
        }
    }
    Ok(())
}

/// A list (`len` values) or map (`len` pairs) body of a parsed record whose
/// elements are all scalars, strings and blobs, written in one pass over its
/// bytes: the same text as [`put_collection`] without building an element
/// per value. `false`, with the output as it was, at the first element of
/// another kind (nested collection, GeoJSON, ext value): the general writer
/// then does the whole collection.
///
/// `CHECKED`: the body was not validated; `true` then also says it is one
/// the parser takes (its text ASCII, nothing after the last element).
#[inline]
fn put_flat_collection<const CHECKED: bool>(
    c: &mut Cursor<'_>,
    body: &[u8],
    len: u32,
    is_map: bool,
) -> bool {
    if is_map {
        put_flat::<true, CHECKED>(c, body, len)
    } else {
        put_flat::<false, CHECKED>(c, body, len)
    }
}

/// [`put_flat_collection`], one copy for lists and one for maps (the
/// element loop without a test of which per element).
fn put_flat<const IS_MAP: bool, const CHECKED: bool>(
    c: &mut Cursor<'_>,
    body: &[u8],
    len: u32,
) -> bool {
    let is_map = IS_MAP;
    let (open, close) = if is_map { (b'{', b'}') } else { (b'[', b']') };
    if CHECKED && len == 0 && !body.is_empty() {
        return false;
    }
    if len == 0 {
        c.ensure(2);
        c.put(&[open, close]);
        return true;
    }
    let start = c.len();
    let mut rest = body;
    for _ in 0..len {
        // Each element is written after its separator; the first `,`
        // becomes the opening bracket below.
        let mut next = put_flat_elem::<CHECKED>(c, rest, b',', is_map);
        if is_map {
            next = next.and_then(|r| put_flat_elem::<CHECKED>(c, r, b':', false));
        }
        let Some(r) = next else {
            c.truncate(start);
            return false;
        };
        rest = r;
    }
    if CHECKED && !rest.is_empty() {
        c.truncate(start);
        return false;
    }
    c.set(start, open);
    c.ensure(1);
    c.byte(close);
    true
}

/// `sep`, then one scalar, string or blob element at the start of `bytes`
/// (a validated collection body), as a value or (`is_key`) as a map key;
/// returns the bytes after it, `None` for any other element (having
/// written nothing or part of it: the caller truncates). Makes its own room.
/// Small integers and short clean strings here, in the caller's loop;
/// the rest in [`put_flat_other`].
#[inline(always)]
fn put_flat_elem<'a, const CHECKED: bool>(
    c: &mut Cursor<'_>,
    bytes: &'a [u8],
    sep: u8,
    is_key: bool,
) -> Option<&'a [u8]> {
    let (&m, rest) = bytes.split_first()?;
    // 0..=255 (fixint, u8): sep and digits (quoted for a key) from a table,
    // one store.
    let byte = match m {
        0x00..=0x7f => Some((m, rest)),
        0xcc => rest.split_first().map(|(&v, r)| (v, r)),
        _ => None,
    };
    if let Some((v, rest)) = byte {
        c.ensure(8);
        if is_key {
            c.sep_small_quoted(sep, v);
        } else {
            c.sep_small(sep, v);
        }
        return Some(rest);
    }
    if m == 0xcd {
        let (v, rest) = rest.split_first_chunk()?;
        // sep, up to 5 digits, quotes around a key.
        c.ensure(8);
        c.byte(sep);
        let v = u64::from(u16::from_be_bytes(*v));
        if is_key {
            c.byte(b'"');
            c.u64(v);
            c.byte(b'"');
        } else {
            c.u64(v);
        }
        return Some(rest);
    }
    if m & 0xf0 == 0xa0 {
        // A str of up to 15 bytes: the particle type, then up to 14 bytes
        // of text, copied as words while tested.
        if let Some((payload, after)) = rest.split_at_checked(usize::from(m & 0x0f)) {
            if let Some((&STRING, text)) = payload.split_first() {
                c.ensure(text.len() + 3);
                let at = c.len();
                c.put(&[sep, b'"']);
                if copy_clean::<CHECKED>(c, text) {
                    c.byte(b'"');
                    return Some(after);
                }
                c.truncate(at);
            }
        }
    }
    put_flat_other::<CHECKED>(c, m, rest, sep, is_key)
}

/// [`put_flat_elem`] for elements other than small integers and short
/// clean strings: `m` is the element's marker, `rest` what follows it.
fn put_flat_other<'a, const CHECKED: bool>(
    c: &mut Cursor<'_>,
    m: u8,
    rest: &'a [u8],
    sep: u8,
    is_key: bool,
) -> Option<&'a [u8]> {
    let int = |v: i64, rest| Some((Elem::Int(v), rest));
    let (payload, rest) = match m {
        0xa0..=0xbf => rest.split_at_checked(usize::from(m & 0x1f))?,
        0xd9 | 0xc4 => {
            let (&n, rest) = rest.split_first()?;
            rest.split_at_checked(usize::from(n))?
        }
        _ => {
            let (e, rest) = match m {
                0x00..=0x7f => int(i64::from(m), rest),
                0xe0..=0xff => int(i64::from(m as i8), rest),
                0xc0 => Some((Elem::Nil, rest)),
                0xc2 | 0xc3 => Some((Elem::Bool(m == 0xc3), rest)),
                0xcc => rest.split_first().and_then(|(&v, r)| int(i64::from(v), r)),
                0xcd => rest
                    .split_first_chunk()
                    .and_then(|(v, r)| int(i64::from(u16::from_be_bytes(*v)), r)),
                0xce => rest
                    .split_first_chunk()
                    .and_then(|(v, r)| int(i64::from(u32::from_be_bytes(*v)), r)),
                0xcf => rest.split_first_chunk().map(|(v, r)| {
                    let v = u64::from_be_bytes(*v);
                    (i64::try_from(v).map_or(Elem::Uint(v), Elem::Int), r)
                }),
                0xd0 => rest
                    .split_first()
                    .and_then(|(&v, r)| int(i64::from(v as i8), r)),
                0xd1 => rest
                    .split_first_chunk()
                    .and_then(|(v, r)| int(i64::from(i16::from_be_bytes(*v)), r)),
                0xd2 => rest
                    .split_first_chunk()
                    .and_then(|(v, r)| int(i64::from(i32::from_be_bytes(*v)), r)),
                0xd3 => rest
                    .split_first_chunk()
                    .and_then(|(v, r)| int(i64::from_be_bytes(*v), r)),
                0xca => rest
                    .split_first_chunk()
                    .map(|(v, r)| (Elem::Float(f64::from(f32::from_be_bytes(*v))), r)),
                0xcb => rest
                    .split_first_chunk()
                    .map(|(v, r)| (Elem::Float(f64::from_be_bytes(*v)), r)),
                _ => None,
            }?;
            // JSON keys are strings: numbers, booleans and nil are quoted.
            c.ensure(SCALAR_MAX + 3);
            c.byte(sep);
            if is_key {
                c.byte(b'"');
                scalar(c, e);
                c.byte(b'"');
            } else {
                scalar(c, e);
            }
            return Some(rest);
        }
    };
    // A str/bin payload: Aerospike's particle prefix says what it is.
    c.ensure(3);
    c.byte(sep);
    match payload.split_first() {
        None => c.put(b"\"\""),
        // Unvalidated text is taken only when ASCII (so UTF-8).
        Some((&STRING, text)) if CHECKED && !text.is_ascii() => return None,
        Some((&STRING, text)) => put_str(c, particle::text(text, Utf8::Validated).ok()?),
        Some((&(BLOB | JAVA_BLOB..=ERLANG_BLOB), bytes)) => put_base64(c, bytes),
        Some(_) => return None,
    }
    Some(rest)
}

/// A list (`[..]`, `len` values) or a map (`{..}`, `len` pairs).
fn put_collection(
    c: &mut Cursor<'_>,
    r: &mut Reader<'_>,
    len: u32,
    is_map: bool,
    depth: usize,
    bin: &str,
) -> Result<(), EncodeError> {
    check_depth(depth, bin)?;
    c.ensure(1);
    c.byte(if is_map { b'{' } else { b'[' });
    for i in 0..len {
        if i > 0 {
            c.ensure(1);
            c.byte(b',');
        }
        if is_map {
            put_key(c, next_elem(r, bin)?, bin)?;
            c.ensure(1);
            c.byte(b':');
        }
        let e = next_elem(r, bin)?;
        put_elem(c, r, e, depth, bin)?;
    }
    c.ensure(1);
    c.byte(if is_map { b'}' } else { b']' });
    Ok(())
}

fn put_elem(
    c: &mut Cursor<'_>,
    r: &mut Reader<'_>,
    e: Elem<'_>,
    depth: usize,
    bin: &str,
) -> Result<(), EncodeError> {
    match e {
        Elem::Str(s) => put_str(c, s),
        Elem::Blob { bytes, .. } | Elem::Ext { data: bytes, .. } => put_base64(c, bytes),
        Elem::Geo(g) => put_geo(c, g, bin)?,
        Elem::List { len, .. } => put_collection(c, r, len, false, depth + 1, bin)?,
        Elem::Map { len, .. } => put_collection(c, r, len, true, depth + 1, bin)?,
        Elem::Nil | Elem::Bool(_) | Elem::Int(_) | Elem::Uint(_) | Elem::Float(_) => {
            c.ensure(SCALAR_MAX);
            scalar(c, e);
        }
    }
    Ok(())
}

/// A map key as a JSON string (JSON keys are strings only).
fn put_key(c: &mut Cursor<'_>, k: Elem<'_>, bin: &str) -> Result<(), EncodeError> {
    match k {
        Elem::Str(s) | Elem::Geo(s) => put_str(c, s),
        Elem::Blob { bytes, .. } | Elem::Ext { data: bytes, .. } => put_base64(c, bytes),
        Elem::Int(_) | Elem::Uint(_) | Elem::Float(_) | Elem::Bool(_) | Elem::Nil => {
            c.ensure(SCALAR_MAX + 2);
            c.byte(b'"');
            scalar(c, k);
            c.byte(b'"');
        }
        Elem::List { .. } => {
            return Err(EncodeError::BadMapKey {
                bin: bin.to_string(),
                what: "list",
            })
        }
        Elem::Map { .. } => {
            return Err(EncodeError::BadMapKey {
                bin: bin.to_string(),
                what: "map",
            })
        }
    }
    Ok(())
}

/// A scalar element as JSON text (integers, floats, booleans, nil): at most
/// [`SCALAR_MAX`] bytes, the caller made the room.
#[inline]
fn scalar(c: &mut Cursor<'_>, e: Elem<'_>) {
    match e {
        Elem::Int(i) => c.i64(i),
        Elem::Uint(u) => c.u64(u),
        Elem::Float(f) => float(c, f),
        Elem::Bool(b) => boolean(c, b),
        _ => c.put(b"null"),
    }
}

/// The user key, or `null` (makes its own room).
fn put_user_key(c: &mut Cursor<'_>, k: Option<UserKey<'_>>) {
    match k {
        None => {
            c.ensure(4);
            c.put(b"null");
        }
        Some(UserKey::Int(i)) => {
            c.ensure(MAX_INT);
            c.i64(i);
        }
        Some(UserKey::Float(f)) => {
            c.ensure(SCALAR_MAX);
            float(c, f);
        }
        Some(UserKey::Str(s)) => put_str(c, s),
        Some(UserKey::Blob(b)) => put_base64(c, b),
    }
}

/// `s` as a JSON string, or `null` (makes its own room).
fn put_opt_str(c: &mut Cursor<'_>, s: Option<&str>) {
    match s {
        Some(s) => put_str(c, s),
        None => {
            c.ensure(4);
            c.put(b"null");
        }
    }
}

/// The bins [`write_json`] walks: a record's own ops (production), whose
/// common particle types are written straight from their bytes without
/// building a [`Value`], or any bins (unit tests).
pub(crate) enum JsonBins<'a, I> {
    Wire(BinIter<'a>),
    /// A lazily parsed record's ops (region, op count, where the region
    /// starts in the frame), validated here as they are written, under the
    /// every-bin-as-named policy.
    Lazy(&'a [u8], u16, usize),
    Given(I),
}

/// Room [`put_bin_name`] leaves after the name: the `type` and `value`
/// keys, a scalar and the bin's closing brace.
const AFTER_NAME: usize = TYPE_AND_VALUE_KEY_MAX + SCALAR_MAX + 1;

/// A bin's opening and `name` member in `json` but for the name's closing
/// quote, which the `type` key after it writes (makes its own room, and
/// [`AFTER_NAME`] bytes more).
#[inline(always)]
fn put_bin_name(c: &mut Cursor<'_>, name: &OutName<'_>, head: Option<&[u8; 16]>) {
    // The first bin's `,` becomes the array's `[` (see `write_json`).
    // `,{"name":"` (10 bytes, one 16-byte store), then a name of up to 16
    // bytes copied while tested: as one 16-byte store when `head` holds
    // it (the name and what follows it), else as words.
    c.ensure(16 + 16 + AFTER_NAME);
    let at = c.len() + 9;
    c.put_padded(b",{\"name\":\"______", 10);
    let base = name.base.as_bytes();
    if name.case == super::Case::Keep && base.len() <= 16 {
        let clean = match head {
            Some(w) => copy_clean_head::<false>(c, w, base.len()),
            None => copy_clean::<false>(c, base),
        };
        if clean {
            return;
        }
    }
    // Any other name through the general writers, quotes included; the
    // closing quote is then taken back.
    c.truncate(at);
    put_name(c, name);
    c.truncate(c.len() - 1);
    c.ensure(AFTER_NAME);
}

/// A bin's opening and `name` member, as [`put_bin_name`] writes them, for
/// a name of an op nobody has validated: only a name of up to 16 bytes,
/// ASCII (so UTF-8, as `op::validate` wants it) and clean; `false`, having
/// written something that does not count, for any other (the caller
/// truncates).
#[inline(always)]
fn put_unvalidated_name(c: &mut Cursor<'_>, name: &[u8], head: Option<&[u8; 16]>) -> bool {
    c.ensure(16 + 16 + AFTER_NAME);
    c.put_padded(b",{\"name\":\"______", 10);
    name.len() <= 16
        && match head {
            Some(w) => copy_clean_head::<true>(c, w, name.len()),
            None => copy_clean::<true>(c, name),
        }
}

/// The `type`, `value` and closing brace of a bin whose value is one of the
/// common shapes (an 8-byte integer, a float, a boolean, short clean text,
/// a blob), written from the op's value bytes; `false`, having written
/// nothing, for any other value. The text is what
/// [`put_type_and_value_key`] and [`put_bin_value_and_end`] write for the
/// decoded value. [`put_bin_name`] left the room for a scalar.
///
/// `CHECKED`: the value was not validated; `true` then also says it is
/// one `op::validate` takes (text ASCII, a flat list or map whose text is
/// ASCII and whose last element ends it; the fixed sizes and blobs matched
/// here are all valid), `false` says nothing.
#[inline(always)]
fn put_common_bin<const CHECKED: bool>(c: &mut Cursor<'_>, ptype: u8, value: &[u8]) -> bool {
    match (ptype, value) {
        (particle::INTEGER, &[a, b, d, e, f, g, h, i]) => {
            c.put(b"\",\"type\":\"int\",\"value\":");
            c.i64(i64::from_be_bytes([a, b, d, e, f, g, h, i]));
        }
        (particle::FLOAT, &[a, b, d, e, f, g, h, i]) => {
            c.put(b"\",\"type\":\"float\",\"value\":");
            float(c, f64::from_be_bytes([a, b, d, e, f, g, h, i]));
        }
        (particle::BOOL, &[b]) => {
            c.put(b"\",\"type\":\"bool\",\"value\":");
            boolean(c, b != 0);
        }
        (STRING, _) => {
            // Text copied while tested (up to 16 bytes as words, longer 16
            // bytes per step); escaped text is left to the general writer.
            let at = c.len();
            c.put(b"\",\"type\":\"str\",\"value\":\"");
            c.ensure(value.len() + 2);
            let clean = if value.len() <= 16 {
                copy_clean::<CHECKED>(c, value)
            } else {
                copy_clean_long::<CHECKED>(c, value)
            };
            if !clean {
                c.truncate(at);
                return false;
            }
            c.put(b"\"}");
            return true;
        }
        (particle::LIST | particle::MAP, _) => {
            // Only a fix-size header with no ext element after it: no
            // order flags (unordered, as `particle::decode_head` reads it).
            let is_map = ptype == particle::MAP;
            let Some(items) = particle::plain_collection(value, if is_map { 0x80 } else { 0x90 })
            else {
                return false;
            };
            let start = c.len();
            if is_map {
                c.put(b"\",\"type\":\"map\",\"value\":");
            } else {
                c.put(b"\",\"type\":\"list\",\"value\":");
            }
            if !put_flat_collection::<CHECKED>(c, items.body, items.len, is_map) {
                c.truncate(start);
                return false;
            }
            c.ensure(BIN_END_MAX);
            if is_map {
                c.put(b",\"order\":\"unordered\"}");
            } else {
                c.put(b",\"ordered\":false}");
            }
            return true;
        }
        (BLOB | JAVA_BLOB..=ERLANG_BLOB, _) => {
            c.put(b"\",\"type\":\"blob\",\"value\":");
            put_base64(c, value);
            c.ensure(1);
        }
        _ => return false,
    }
    c.byte(b'}');
    true
}

/// The `bins` array's members for a record's ops, each bin's output name
/// from `select` (`None`: left out). Out of line, with `select` known in
/// each copy: the every-bin-as-named copy builds no `OutName` in memory, and
/// the per-bin writers inlined here are not spread over `write_json`'s
/// registers (fewer spills and reloads of the cursor's position).
#[inline(never)]
fn put_wire_bins<'a>(
    c: &mut Cursor<'_>,
    ops: BinIter<'a>,
    select: impl Fn(&'a str) -> Option<OutName<'a>>,
) -> Result<(), EncodeError> {
    // A local copy, which the compiler keeps in registers (the argument
    // lives in the caller's memory).
    let mut ops = ops;
    loop {
        let head = ops.next_name_head();
        let Some(op) = ops.next_to_end() else {
            break;
        };
        let Some(name) = select(op.name) else {
            continue;
        };
        // The name's bytes on the wire are the output name's when the
        // policy keeps it (the every-bin-as-named copy knows it).
        let head = head.filter(|_| std::ptr::eq(name.base, op.name));
        put_bin_name(c, &name, head);
        if !put_common_bin::<false>(c, op.ptype, op.value) {
            let Some(value) = op.value() else {
                break;
            };
            put_type_and_value_key(c, &value);
            put_bin_value_and_end(c, &value, op.name)?;
        }
    }
    Ok(())
}

/// The every-bin-as-named policy's output name.
fn as_named(name: &str) -> Option<OutName<'_>> {
    Some(OutName::plain(name))
}

/// The `bins` array's members for the `count` ops of `ops` (an ops region
/// starting `base` bytes into its frame) that nobody has validated, every
/// bin as named: each op is validated as it is written, with the error
/// (kind and offset) `op::validate_all` gives for the region, wrapped in
/// [`EncodeError::Malformed`]. The common shapes are checked by the writes
/// themselves (the escape test of names and text also flags bytes that are
/// not ASCII; the fixed sizes are matched); any other op is validated in
/// full (`op::validate`, which names the error) and then written as a
/// validated op. A bin the writer refuses (bad GeoJSON...) is reported only
/// if the ops after it are valid: a malformed frame is always a malformed
/// frame, as if the parser had validated it.
#[inline(never)]
fn put_lazy_bins(
    c: &mut Cursor<'_>,
    ops: &[u8],
    count: u16,
    base: usize,
) -> Result<(), EncodeError> {
    let mut rest = ops;
    for left in (0..count).rev() {
        let start = c.len();
        let head = rest.get(op::OP_HEADER..).and_then(|r| r.first_chunk());
        if let Some(op) = op::cut_write(rest) {
            if put_unvalidated_name(c, op.name, head)
                && put_common_bin::<true>(c, op.ptype, op.value)
            {
                rest = op.next;
                continue;
            }
        }
        c.truncate(start);
        rest = put_validated_op(c, ops, rest, left, base)?;
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err(EncodeError::Malformed(crate::Error::at(
            crate::ErrorKind::TrailingBytes { extra: rest.len() },
            base + ops.len() - rest.len(),
        )))
    }
}

/// [`put_lazy_bins`] for an op the writes did not check: validated in full,
/// then written as a validated op; returns the ops after it. `left` ops
/// follow it; they are validated before a writer's error is returned.
#[cold]
#[inline(never)]
fn put_validated_op<'a>(
    c: &mut Cursor<'_>,
    ops: &'a [u8],
    rest: &'a [u8],
    left: u16,
    base: usize,
) -> Result<&'a [u8], EncodeError> {
    let pos = ops.len() - rest.len();
    let next = op::validate(ops, pos, base).map_err(EncodeError::Malformed)?;
    let (this, after) = (
        ops.get(pos..next).unwrap_or_default(),
        ops.get(next..).unwrap_or_default(),
    );
    if let Err(e) = put_wire_bins(c, BinIter::one(ops, this), as_named) {
        op::validate_all(after, left, base + next).map_err(EncodeError::Malformed)?;
        return Err(e);
    }
    Ok(after)
}

/// `json`: `{"msg", "key", "gen", "exp", "lut", "bins"}` for writes,
/// `{"msg", "key", "gen", "lut", "durable"}` for deletes (FORMATS.md).
pub(crate) fn write_json<'a, I>(
    rec: &Record<'a>,
    bins: JsonBins<'a, I>,
    policy: &BinPolicy,
    received_ms: u64,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError>
where
    I: Iterator<Item = Bin<'a>>,
{
    let c = &mut Cursor::new(out);
    // The opening 24, the namespace and set when short and clean (18 each),
    // the digest's base64, 3 commas, and an integer or short clean text key.
    c.ensure(24 + 2 * 18 + base64_bound(20) + 3 + MAX_INT);
    match rec.action {
        Action::Write => c.put(b"{\"msg\":\"write\",\"key\":["),
        Action::Delete { .. } => c.put(b"{\"msg\":\"delete\",\"key\":["),
    }
    // A namespace and set of up to 16 bytes each copied as words while
    // tested (`"ns","set"`).
    let at = c.len();
    let short = match rec.set {
        Some(set) if rec.namespace.len() <= 16 && set.len() <= 16 => {
            c.byte(b'"');
            copy_clean::<false>(c, rec.namespace.as_bytes()) && {
                c.put(b"\",\"");
                copy_clean::<false>(c, set.as_bytes())
            }
        }
        _ => false,
    };
    if short {
        c.byte(b'"');
    } else {
        c.truncate(at);
        put_str(c, rec.namespace);
        c.ensure(1);
        c.byte(b',');
        put_opt_str(c, rec.set);
        c.ensure(base64_bound(20) + 2 + MAX_INT);
    }
    c.byte(b',');
    base64(c, &rec.digest);
    c.byte(b',');
    match rec.user_key {
        Some(UserKey::Int(i)) => c.i64(i),
        Some(UserKey::Str(s)) if s.len() <= 16 => {
            let at = c.len();
            c.byte(b'"');
            if copy_clean::<false>(c, s.as_bytes()) {
                c.byte(b'"');
            } else {
                c.truncate(at);
                put_user_key(c, rec.user_key);
            }
        }
        k => put_user_key(c, k),
    }
    // `],"gen":` 8, `,"lut":` 7, `,"exp":` 7, `,"durable":` 11, three
    // integers, `false`, and `,"bins":` 9.
    c.ensure(8 + 7 + 11 + 3 * MAX_INT + 5 + 9);
    c.put(b"],\"gen\":");
    c.u64(u64::from(rec.generation));
    match rec.action {
        Action::Delete { durable } => {
            c.put(b",\"lut\":");
            c.u64(rec.lut.unwrap_or(0));
            c.put(b",\"durable\":");
            boolean(c, durable);
        }
        Action::Write => {
            c.put(b",\"exp\":");
            c.u64(rec.expiry(received_ms));
            c.put(b",\"lut\":");
            c.u64(rec.lut.unwrap_or(0));
            c.put(b",\"bins\":");
            let start = c.len();
            match bins {
                JsonBins::Wire(ops) => {
                    // The common policy decided once, not per bin.
                    if policy.is_identity() {
                        put_wire_bins(c, ops, as_named)?;
                    } else {
                        put_wire_bins(c, ops, |name| policy.select(name))?;
                    }
                }
                JsonBins::Lazy(ops, count, base) => put_lazy_bins(c, ops, count, base)?,
                JsonBins::Given(bins) => {
                    for bin in bins {
                        let Some(name) = policy.select(bin.name) else {
                            continue;
                        };
                        put_bin_name(c, &name, None);
                        put_type_and_value_key(c, &bin.value);
                        put_bin_value_and_end(c, &bin.value, bin.name)?;
                    }
                }
            }
            c.ensure(2);
            if c.len() == start {
                c.byte(b'[');
            } else {
                c.set(start, b'[');
            }
            c.byte(b']');
        }
    }
    c.ensure(1);
    c.byte(b'}');
    Ok(())
}

/// `flat-json`: `{"<metadata_key>": {metadata}, "<bin>": value, ...}`.
pub(crate) fn write_flat<'a, I>(
    rec: &Record<'a>,
    bins: I,
    policy: &BinPolicy,
    received_ms: u64,
    metadata_key: &str,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError>
where
    I: Iterator<Item = Bin<'a>> + Clone,
{
    let c = &mut Cursor::new(out);
    c.ensure(1);
    c.byte(b'{');
    put_str(c, metadata_key);
    c.ensure(15);
    c.put(b":{\"namespace\":");
    put_str(c, rec.namespace);
    c.ensure(7);
    c.put(b",\"set\":");
    put_opt_str(c, rec.set);
    if rec.user_key.is_some() {
        c.ensure(11);
        c.put(b",\"userKey\":");
        put_user_key(c, rec.user_key);
    }
    c.ensure(10);
    c.put(b",\"digest\":");
    put_base64(c, &rec.digest);
    // The longest metadata tail: `,"msg":"delete","gen":` 22, `,"lut":`
    // 7, `,"exp":` 7 (or `,"durable":true` 15), `}`, three integers.
    c.ensure(22 + 7 + 15 + 1 + 3 * MAX_INT);
    match rec.action {
        Action::Write => c.put(b",\"msg\":\"write\",\"gen\":"),
        Action::Delete { .. } => c.put(b",\"msg\":\"delete\",\"gen\":"),
    }
    c.u64(u64::from(rec.generation));
    c.put(b",\"lut\":");
    c.u64(rec.lut.unwrap_or(0));
    match rec.action {
        Action::Write => {
            c.put(b",\"exp\":");
            c.u64(rec.expiry(received_ms));
        }
        Action::Delete { durable: true } => c.put(b",\"durable\":true"),
        Action::Delete { durable: false } => {}
    }
    c.byte(b'}');
    if rec.action == Action::Write {
        let check_duplicates = policy.changes_names();
        for (i, bin) in bins.clone().enumerate() {
            let Some(name) = policy.select(bin.name) else {
                continue;
            };
            if name.eq_str(metadata_key) {
                return Err(EncodeError::MetadataKeyCollision {
                    bin: name.to_owned_string(),
                    key: metadata_key.to_string(),
                });
            }
            if check_duplicates
                && bins
                    .clone()
                    .take(i)
                    .any(|b| policy.select(b.name).is_some_and(|n| n.same_as(&name)))
            {
                return Err(EncodeError::DuplicateBinName {
                    name: name.to_owned_string(),
                });
            }
            c.ensure(1);
            c.byte(b',');
            put_name(c, &name);
            c.ensure(1);
            c.byte(b':');
            put_value(c, &bin.value, bin.name)?;
        }
    }
    c.ensure(1);
    c.byte(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    /// The two-word escape test agrees with the escape table for every
    /// byte value at every one of the 16 positions (the rest clean).
    #[test]
    fn the_two_word_test_finds_every_byte_to_escape_anywhere() {
        let mut found = 0;
        for at in 0..16 {
            for b in 0..=255u8 {
                let mut w = [b'a'; 16];
                w[at] = b;
                let (x, y) = w.split_at(8);
                let (x, y) = (x.try_into().unwrap(), y.try_into().unwrap());
                let want = ESCAPE[usize::from(b)] != 0;
                assert_eq!(dirty_words::<false>(x, y), want, "byte {b:#04x} at {at}");
                assert_eq!(
                    escape_bits(u64::from_le_bytes(*x)) | escape_bits(u64::from_le_bytes(*y)) != 0,
                    want
                );
                found += usize::from(want);
            }
        }
        assert_eq!(found, 16 * 34);
    }

    #[test]
    fn strings_escape_quotes_backslashes_and_controls() {
        let out = s(|o| write_str(o, "a\"b\\c\n\t\u{1}\u{1f}é\u{7f}"));
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001fé\u{7f}\"");
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\"b\\c\n\t\u{1}\u{1f}é\u{7f}");
    }

    #[test]
    fn escapes_are_found_at_every_position_of_long_strings() {
        // (character, length of its escape)
        for (special, esc_len) in [('"', 2), ('\\', 2), ('\n', 2), ('\u{0}', 6), ('\u{1f}', 6)] {
            for pos in 0..24 {
                let mut text: String = "abcdefghijklmnopqrstuvwxyz".into();
                text.insert(pos, special);
                let out = s(|o| write_str(o, &text));
                let back: String = serde_json::from_str(&out).unwrap();
                assert_eq!(back, text);
                assert_eq!(out.len(), 2 + 26 + esc_len, "{out}");
            }
        }
    }

    #[test]
    fn escapes_are_found_in_short_strings_at_every_length_and_position() {
        for special in ['"', '\\', '\n', '\u{0}', '\u{1f}'] {
            for len in 1..20 {
                for pos in 0..len {
                    let mut text: String = "abcdefghijklmnopqrst"[..len - 1].into();
                    text.insert(pos, special);
                    let out = s(|o| write_str(o, &text));
                    let back: String = serde_json::from_str(&out).unwrap();
                    assert_eq!(back, text);
                    assert!(!out[1..out.len() - 1].bytes().any(|b| b < 0x20), "{out}");
                }
            }
        }
        assert_eq!(s(|o| write_str(o, "")), "\"\"");
        assert_eq!(s(|o| write_str(o, "é")), "\"é\"");
    }

    /// The cursor's string writer against a plain byte-by-byte one, for
    /// every length up to 300 with an escape (or a multi-byte char) at every
    /// position, appended to buffers of every fill level of a small
    /// capacity (so the room is made by growing, too). Debug builds check
    /// each write against the room made for it.
    /// The copies that also test for ASCII (the writer of unvalidated ops)
    /// keep text of every length exactly when it is clean ASCII: a byte of
    /// 0x80 or more, `"` or a control byte at every position refuses it;
    /// the plain copies keep the text with the high byte.
    #[test]
    fn ascii_copies_refuse_a_high_byte_anywhere() {
        for n in 0..64 {
            for bad in (0..n).map(Some).chain([None]) {
                for b in [0x80u8, 0xc3, 0xff, b'"', 0x01] {
                    let mut text = vec![b'k'; n];
                    if let Some(at) = bad {
                        text[at] = b;
                    }
                    let copy = |ascii: bool| {
                        let mut out = Vec::new();
                        let mut c = Cursor::new(&mut out);
                        c.ensure(n + 16);
                        match (n <= 16, ascii) {
                            (true, true) => copy_clean::<true>(&mut c, &text),
                            (true, false) => copy_clean::<false>(&mut c, &text),
                            (false, true) => copy_clean_long::<true>(&mut c, &text),
                            (false, false) => copy_clean_long::<false>(&mut c, &text),
                        }
                    };
                    let clean = bad.is_none();
                    assert_eq!(copy(true), clean, "{n} {bad:?} {b}");
                    assert_eq!(copy(false), clean || b >= 0x80, "{n} {bad:?} {b}");
                }
            }
        }
    }

    #[test]
    fn strings_of_every_length_match_a_plain_escaper() {
        fn plain(out: &mut Vec<u8>, s: &str) {
            out.push(b'"');
            for &b in s.as_bytes() {
                match ESCAPE[usize::from(b)] {
                    0 => out.push(b),
                    b'u' => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
                    e => out.extend_from_slice(&[b'\\', e]),
                }
            }
            out.push(b'"');
        }
        let base: String = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(9);
        for special in ["\"", "\\", "\n", "\u{0}", "\u{1f}", "é", "\u{7f}"] {
            for len in 0..300 {
                for pos in 0..=len {
                    let mut text = base[..len].to_string();
                    text.insert_str(pos, special);
                    let mut want = b"xy".to_vec();
                    plain(&mut want, &text);
                    let mut got = Vec::with_capacity(2 + (len + pos) % 40);
                    got.extend_from_slice(b"xy");
                    write_str(&mut got, &text);
                    assert_eq!(got, want, "{special:?} at {pos} of {len}");
                }
                // And with no special byte at all.
                let mut want = Vec::new();
                plain(&mut want, &base[..len]);
                assert_eq!(s(|o| write_str(o, &base[..len])).as_bytes(), want);
            }
        }
    }

    #[test]
    fn every_control_char_round_trips() {
        let all: String = (0u8..0x20).map(char::from).collect();
        let out = s(|o| write_str(o, &all));
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn eighths_match_ryu() {
        let mut values = vec![0.0, -0.0, 3.25, -3.25, 1e8, 134_217_727.875, 134_217_728.0];
        for n in -5000i64..5000 {
            values.push(n as f64 / 8.0);
            values.push((n * 26_843) as f64 / 8.0);
            values.push(n as f64 / 7.0);
        }
        for v in values {
            let want = ryu::Buffer::new().format_finite(v).to_string();
            assert_eq!(s(|o| write_f64(o, v)), want, "{v}");
        }
    }

    #[test]
    fn floats_and_non_finite() {
        assert_eq!(s(|o| write_f64(o, 1.5)), "1.5");
        assert_eq!(s(|o| write_f64(o, -0.25)), "-0.25");
        assert_eq!(s(|o| write_f64(o, 3.0)), "3.0");
        assert_eq!(s(|o| write_f64(o, f64::NAN)), "null");
        assert_eq!(s(|o| write_f64(o, f64::NEG_INFINITY)), "null");
        let big: f64 = serde_json::from_str(&s(|o| write_f64(o, 1e300))).unwrap();
        assert_eq!(big, 1e300);
    }

    #[test]
    fn floats_at_the_edges_of_the_eighths_shortcut_match_ryu() {
        // Whole eighths up to 2^27 in size are written without ryu; at and
        // past the edges (and for zeros, fractions of eighths, values out
        // of `i32`'s range and non-finite ones) ryu writes them: the text
        // is ryu's either way.
        let edge = f64::from(1u32 << 27);
        let mut values = vec![0.0, -0.0, 0.125, -0.125, 1.0 / 16.0, 5e-324, f64::MAX];
        for x in [edge, edge * 2.0, edge * 16.0, f64::from(u32::MAX), 1e12] {
            values.extend([x, -x, x - 0.125, -x + 0.125, x + 0.125, x - 1.0]);
        }
        for v in values {
            let want = if v.is_finite() {
                ryu::Buffer::new().format_finite(v).to_owned()
            } else {
                "null".to_owned()
            };
            assert_eq!(s(|o| write_f64(o, v)), want, "{v:e}");
        }
    }

    #[test]
    fn base64_is_standard_and_padded() {
        assert_eq!(
            s(|o| write_base64(o, &[0x00, 0x01, 0xfe, 0xff])),
            "\"AAH+/w==\""
        );
        assert_eq!(s(|o| write_base64(o, &[])), "\"\"");
        // Every length up to two digests, every byte value, against the
        // `base64` crate.
        use base64::Engine as _;
        let all: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
        for len in 0..=40 {
            for start in [0, 7, 200] {
                let bytes = &all[start..start + len];
                let want = base64::engine::general_purpose::STANDARD.encode(bytes);
                assert_eq!(s(|o| write_base64(o, bytes)), format!("\"{want}\""));
            }
        }
        let want = base64::engine::general_purpose::STANDARD.encode(&all);
        assert_eq!(s(|o| write_base64(o, &all)), format!("\"{want}\""));
    }

    #[test]
    fn json_check_agrees_with_serde_json() {
        let cases = [
            "{}",
            "[]",
            " 1 ",
            "-0.5e+3",
            "\"a\\u00e9\\n\"",
            "[1,[2,{\"a\":[]}],null,true,false]",
            "{\"a\":1,\"b\":{\"c\":\"d\"}}",
            "",
            " ",
            "{",
            "[1,]",
            "{\"a\"}",
            "{\"a\":}",
            "[1 2]",
            "01",
            "1.",
            ".5",
            "1e",
            "-",
            "tru",
            "nul",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\u{1}\"",
            "{} {}",
            "[}",
            "{]",
            "{1:2}",
            "[\"a\",]",
            "\"unterminated",
            "{\"a\":1,}",
            "[[[[]]]]",
            "1 2",
            "{\"type\":\"Point\",\r\n \"coordinates\":[1.5, -2]}",
        ];
        for c in cases {
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(c).is_ok();
            assert_eq!(check_json(c.as_bytes()).is_ok(), serde, "{c:?}");
        }
        // Nesting is bounded; deeper is an error.
        let nested = |n| "[".repeat(n) + &"]".repeat(n);
        assert!(check_json(nested(100).as_bytes()).is_ok());
        assert!(check_json(nested(MAX_JSON_DEPTH as usize).as_bytes()).is_ok());
        let deeper = nested(MAX_JSON_DEPTH as usize + 1);
        assert_eq!(
            check_json(deeper.as_bytes()),
            Err(("nesting too deep", MAX_JSON_DEPTH as usize + 1))
        );
    }

    /// The one-pass writer of flat collections writes what the general
    /// writer does, and leaves anything else to it with `out` untouched.
    #[test]
    fn flat_collections_match_the_general_writer() {
        use crate::build::{write_elem, Elem as B};
        let s = |x: &str| B::Str(x.to_string());
        let scalars = vec![
            B::Nil,
            B::Bool(true),
            B::Bool(false),
            B::Int(0),
            B::Int(127),
            B::Int(-32),
            B::Int(200),
            B::Int(-200),
            B::Int(70_000),
            B::Int(-70_000),
            B::Int(5_000_000_000),
            B::Int(i64::MIN),
            B::Uint(u64::MAX),
            B::Float(0.5),
            B::Float(-1e300),
            B::Float(f64::NAN),
            s(""),
            s("a"),
            s("tab\there \"q\""),
            s(&"long text ".repeat(25)),
            s("é"),
            B::Blob {
                ptype: 4,
                bytes: vec![0, 1, 2, 0xff],
            },
            B::Blob {
                ptype: 12,
                bytes: vec![],
            },
        ];
        // Bodies as a parsed record holds them: elements (maps: pairs) only.
        let body = |items: &[B]| {
            let mut b = Vec::new();
            for e in items {
                write_elem(&mut b, e).unwrap();
            }
            b
        };
        let general = |b: &[u8], len: u32, is_map: bool| {
            let mut out = Vec::new();
            let mut r = Reader::validated(b);
            put_collection(&mut Cursor::new(&mut out), &mut r, len, is_map, 1, "x").unwrap();
            out
        };
        let list = body(&scalars);
        let n = scalars.len() as u32;
        let mut out = b"prefix".to_vec();
        assert!(put_flat_collection::<false>(
            &mut Cursor::new(&mut out),
            &list,
            n,
            false
        ));
        assert_eq!(out[6..], general(&list, n, false));
        let pairs: Vec<B> = scalars
            .iter()
            .zip(scalars.iter().rev())
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect();
        let map = body(&pairs);
        let mut out = b"prefix".to_vec();
        assert!(put_flat_collection::<false>(
            &mut Cursor::new(&mut out),
            &map,
            n,
            true
        ));
        assert_eq!(out[6..], general(&map, n, true));
        assert_eq!(
            String::from_utf8(out[6..14].to_vec()).unwrap(),
            "{\"null\":"
        );
        // Not flat: the general writer's job, nothing written here.
        for other in [
            B::List {
                order: ListOrder::Unordered,
                items: vec![B::Int(1)],
            },
            B::Geo("{}".into()),
            // str 16: longer than the one-pass writer reads.
            s(&"x".repeat(300)),
            B::Ext {
                ty: 3,
                data: vec![1],
            },
        ] {
            let items = [B::Int(1), other];
            let mut out = b"prefix".to_vec();
            assert!(!put_flat_collection::<false>(
                &mut Cursor::new(&mut out),
                &body(&items),
                2,
                false
            ));
            assert_eq!(out, b"prefix");
        }
    }

    #[test]
    fn geo_is_embedded_without_line_breaks_and_checked() {
        let g = "{\"type\":\"Point\",\r\n \"coordinates\":[1.5, -2]}\n";
        assert_eq!(
            s(|o| put_geo(&mut Cursor::new(o), g, "g").unwrap()),
            "{\"type\":\"Point\", \"coordinates\":[1.5, -2]}"
        );
        let mut out = Vec::new();
        let err = put_geo(&mut Cursor::new(&mut out), "{\"type\":", "g").unwrap_err();
        assert!(
            matches!(err, EncodeError::BadGeoJson { ref bin, .. } if bin == "g"),
            "{err}"
        );
        assert!(put_geo(&mut Cursor::new(&mut out), "{} {}", "g").is_err());
    }
}
