//! The counting fast path for JSON bodies (`json` and `flat-json`): one
//! pass over the body, by hand, that validates it fully as JSON (RFC 8259,
//! with serde_json's limits: nesting depth, finite numbers, no lone
//! surrogates) and keeps only what the counts need — digest, delete or
//! write, and the timestamp bin — instead of building a `serde_json::Value`
//! tree. It accepts and refuses what [`super::decode::Decoder`] does (the
//! tests compare the two, and compare its verdict with serde_json's on
//! mutated bodies); `--dump` still goes through the full decoder.
//!
//! Why by hand: on the benchmark's 600-byte body (callgrind) the `Value`
//! tree costs about 41 k instructions, a serde visitor pass 17 k and this
//! 12.8 k; and serde's way to skip a string unread accepts a lone surrogate
//! escape that the full decoder refuses.

use std::borrow::Cow;

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
        // A record of the wrong shape does not stop the pass (the rest must
        // still be valid JSON); the first is reported after it.
        let mut lx = Lexer::new(trimmed, names);
        lx.i = 1;
        lx.depth = 1;
        let mut index = 0;
        lx.ws();
        if !lx.eat(b']') {
            loop {
                let got = lx.value(Role::Record).map_err(ScanError::Json)?;
                push(got.into_record(), out, index);
                index += 1;
                lx.ws();
                if lx.eat(b',') {
                    continue;
                }
                if lx.eat(b']') {
                    break;
                }
                return Err(ScanError::Json(lx.unexpected("`,` or `]`")));
            }
        }
        lx.end().map_err(ScanError::Json)?;
    } else {
        let mut index = 0;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut lx = Lexer::new(line, names);
            let got = lx
                .value(Role::Record)
                .and_then(|g| lx.end().map(|()| g))
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

/// serde_json's nesting limit: 128 containers deep is refused.
const MAX_DEPTH: u32 = 128;

/// The pass over one JSON text (valid UTF-8 already). Its per-byte and
/// per-string steps are `#[inline(always)]`: callgrind, 15.5 k → 12.8 k
/// instructions on the benchmark body (`#[inline]` alone changed nothing).
struct Lexer<'a, 'n> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    depth: u32,
    names: Names<'n>,
}

type Lx<T> = Result<T, String>;

impl<'a, 'n> Lexer<'a, 'n> {
    fn new(text: &'a str, names: Names<'n>) -> Self {
        Lexer {
            text,
            b: text.as_bytes(),
            i: 0,
            depth: 0,
            names,
        }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn unexpected(&self, want: &str) -> String {
        match self.peek() {
            Some(c) => format!(
                "expected {want} at byte {}, found `{}`",
                self.i,
                char::from(c).escape_default()
            ),
            None => format!("expected {want} at byte {}, found the end", self.i),
        }
    }

    /// Only whitespace may follow the value.
    fn end(&mut self) -> Lx<()> {
        self.ws();
        if self.i == self.b.len() {
            Ok(())
        } else {
            Err(format!("trailing characters at byte {}", self.i))
        }
    }

    fn enter(&mut self) -> Lx<()> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return Err(format!("nested too deep at byte {}", self.i));
        }
        Ok(())
    }

    /// One value, read as its role asks.
    fn value(&mut self, role: Role) -> Lx<Got<'a>> {
        self.ws();
        match self.peek() {
            Some(b'"') => Ok(Got::Text(self.string()?)),
            Some(b'{') => {
                self.i += 1;
                self.enter()?;
                let g = self.object(role)?;
                self.depth -= 1;
                Ok(g)
            }
            Some(b'[') => {
                self.i += 1;
                self.enter()?;
                let g = self.array(role)?;
                self.depth -= 1;
                Ok(g)
            }
            Some(b'-' | b'0'..=b'9') => Ok(self.number()?.map_or(Got::Other, Got::Num)),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            _ => Err(self.unexpected("a value")),
        }
    }

    /// A value that is only checked.
    fn skip(&mut self) -> Lx<()> {
        self.ws();
        match self.peek() {
            Some(b'"') => self.skip_string(),
            Some(b'{') => {
                self.i += 1;
                self.enter()?;
                self.members(|lx, _| lx.skip())?;
                self.depth -= 1;
                Ok(())
            }
            Some(b'[') => {
                self.i += 1;
                self.enter()?;
                self.skip_elements()?;
                self.depth -= 1;
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b't') => self.literal("true").map(drop),
            Some(b'f') => self.literal("false").map(drop),
            Some(b'n') => self.literal("null").map(drop),
            _ => Err(self.unexpected("a value")),
        }
    }

    /// The elements of an array after its `[`, only checked.
    fn skip_elements(&mut self) -> Lx<()> {
        self.ws();
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            self.skip()?;
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b']') {
                return Ok(());
            }
            return Err(self.unexpected("`,` or `]`"));
        }
    }

    fn literal(&mut self, word: &str) -> Lx<Got<'a>> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(Got::Other)
        } else {
            Err(format!("expected `{word}` at byte {}", self.i))
        }
    }

    /// A number: its value when it is an integer that fits u64 (as
    /// `Value::as_u64` sees it), else None.
    fn number(&mut self) -> Lx<Option<u64>> {
        let start = self.i;
        let neg = self.eat(b'-');
        let digits = |lx: &mut Self| {
            let from = lx.i;
            while let Some(b'0'..=b'9') = lx.peek() {
                lx.i += 1;
            }
            lx.i - from
        };
        let int_from = self.i;
        // The integer part's value while it fits (most numbers are plain).
        let mut acc = Some(0u64);
        while let Some(d @ b'0'..=b'9') = self.peek() {
            acc = acc
                .and_then(|a| a.checked_mul(10))
                .and_then(|a| a.checked_add(u64::from(d - b'0')));
            self.i += 1;
        }
        let n = self.i - int_from;
        if n == 0 || (n > 1 && self.b[int_from] == b'0') {
            return Err(format!("invalid number at byte {start}"));
        }
        let mut plain = true;
        if self.eat(b'.') {
            plain = false;
            if digits(self) == 0 {
                return Err(format!("invalid number at byte {start}"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            plain = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(format!("invalid number at byte {start}"));
            }
        }
        if plain && !neg && acc.is_some() {
            return Ok(acc);
        }
        // serde_json reads what is not a (u64 or i64) integer as f64 and
        // refuses what overflows it.
        let whole = &self.text[start..self.i];
        let fits = (plain && whole.parse::<i64>().is_ok())
            || whole.parse::<f64>().is_ok_and(f64::is_finite);
        if !fits {
            return Err(format!("number out of range at byte {start}"));
        }
        Ok(None)
    }

    /// A string; borrowed unless it holds escapes.
    #[inline(always)]
    fn string(&mut self) -> Lx<Str<'a>> {
        let (start, escaped) = self.string_end()?;
        let text = self.text;
        let raw = &text[start..self.i - 1];
        if !escaped {
            return Ok(Cow::Borrowed(raw));
        }
        Ok(Cow::Owned(unescape(raw)))
    }

    #[inline(always)]
    fn skip_string(&mut self) -> Lx<()> {
        self.string_end().map(drop)
    }

    /// Moves past a string (the cursor on its opening quote), checking its
    /// escapes; returns where its content starts and whether it has escapes.
    #[inline(always)]
    fn string_end(&mut self) -> Lx<(usize, bool)> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            // Eight bytes at a time while none is `"`, `\\` or a control character.
            while let Some(w) = self.b.get(self.i..self.i + 8) {
                let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                let m = has_byte(v, b'"') | has_byte(v, b'\\') | has_below_space(v);
                if m != 0 {
                    // The lowest flagged byte is a real one.
                    self.i += (m.trailing_zeros() / 8) as usize;
                    break;
                }
                self.i += 8;
            }
            let Some(&c) = self.b.get(self.i) else {
                return Err(format!("unterminated string from byte {}", start - 1));
            };
            self.i += 1;
            match c {
                b'"' => return Ok((start, escaped)),
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                0..=0x1f => {
                    return Err(format!(
                        "control character in a string at byte {}",
                        self.i - 1
                    ))
                }
                _ => {}
            }
        }
    }

    /// One escape after its backslash; a surrogate must come in a pair.
    fn escape(&mut self) -> Lx<()> {
        let at = self.i - 1;
        let bad = || format!("invalid escape at byte {at}");
        match self.peek().ok_or_else(bad)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                self.i += 1;
                Ok(())
            }
            b'u' => {
                self.i += 1;
                let u = self.hex4().ok_or_else(bad)?;
                match u {
                    0xD800..=0xDBFF => {
                        if self.b[self.i..].starts_with(b"\\u") {
                            self.i += 2;
                            if let Some(0xDC00..=0xDFFF) = self.hex4() {
                                return Ok(());
                            }
                        }
                        Err(format!("lone surrogate at byte {at}"))
                    }
                    0xDC00..=0xDFFF => Err(format!("lone surrogate at byte {at}")),
                    _ => Ok(()),
                }
            }
            _ => Err(bad()),
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.text.get(self.i..self.i + 4)?;
        let v = u32::from_str_radix(h, 16).ok()?;
        // from_str_radix takes a sign; JSON does not.
        if h.starts_with('+') {
            return None;
        }
        self.i += 4;
        Some(v)
    }

    fn array(&mut self, role: Role) -> Lx<Got<'a>> {
        let (mut n, mut digest) = (0usize, None);
        let (mut ts, mut unnamed) = (None, false);
        self.ws();
        if self.eat(b']') {
            return Ok(match role {
                Role::Bins => Got::Bins { ts, unnamed },
                _ => Got::Other,
            });
        }
        loop {
            match role {
                Role::Key if n == 2 => digest = self.value(Role::Plain)?.text(),
                Role::Bins => match self.value(Role::Bin)? {
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
                },
                _ => self.skip()?,
            }
            n += 1;
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b']') {
                break;
            }
            return Err(self.unexpected("`,` or `]`"));
        }
        Ok(match role {
            Role::Key if n == 4 => Got::Key(digest),
            Role::Bins => Got::Bins { ts, unnamed },
            _ => Got::Other,
        })
    }

    /// The members of an object, after its `{`: calls `member` with each
    /// key, the cursor on the value, which `member` must read.
    fn members(&mut self, mut member: impl FnMut(&mut Self, Str<'a>) -> Lx<()>) -> Lx<()> {
        self.ws();
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.unexpected("a key"));
            }
            let k = self.string()?;
            self.ws();
            if !self.eat(b':') {
                return Err(self.unexpected("`:`"));
            }
            member(self, k)?;
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                return Ok(());
            }
            return Err(self.unexpected("`,` or `}`"));
        }
    }

    fn object(&mut self, role: Role) -> Lx<Got<'a>> {
        match role {
            Role::Bin => {
                let (mut name, mut num) = (None::<Str<'a>>, None);
                self.members(|lx, k| {
                    match k.as_ref() {
                        "name" => name = lx.value(Role::Plain)?.text(),
                        // Named already, and not the timestamp: only checked.
                        "value" if name.as_ref().is_some_and(|n| n != lx.names.ts_bin) => {
                            lx.skip()?;
                            num = None;
                        }
                        "value" => num = lx.value(Role::Plain)?.num(),
                        _ => lx.skip()?,
                    }
                    Ok(())
                })?;
                Ok(Got::Bin { name, num })
            }
            Role::Meta => {
                let mut m = Meta::default();
                self.members(|lx, k| {
                    match k.as_ref() {
                        "digest" => m.digest = lx.value(Role::Plain)?.text(),
                        "msg" => m.msg = lx.value(Role::Plain)?.text(),
                        "gen" => m.gen = lx.value(Role::Plain)?.num(),
                        "lut" => m.lut = lx.value(Role::Plain)?.num(),
                        _ => lx.skip()?,
                    }
                    Ok(())
                })?;
                Ok(Got::Meta(m))
            }
            Role::Record => {
                let names = self.names;
                let mut r = RecordFields::default();
                self.members(|lx, k| {
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
                        return lx.skip();
                    }
                    let g = lx.value(role)?;
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
                    Ok(())
                })?;
                Ok(Got::Record(r.resolve(names)))
            }
            _ => {
                self.members(|lx, _| lx.skip())?;
                Ok(Got::Other)
            }
        }
    }
}

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit set in each byte of `v` that is `c`, and maybe in bytes
/// above a real match (a borrow); the lowest one set is always real.
fn has_byte(v: u64, c: u8) -> u64 {
    let x = v ^ (LOW * u64::from(c));
    x.wrapping_sub(LOW) & !x & HIGH
}

/// Non-zero when a byte of `v` is below 0x20 (same caveat).
fn has_below_space(v: u64) -> u64 {
    v.wrapping_sub(LOW * 0x20) & !v & HIGH
}

/// The content of a string whose escapes were checked.
fn unescape(raw: &str) -> String {
    fn hex4(chars: &mut std::str::Chars<'_>) -> u32 {
        let h: String = chars.by_ref().take(4).collect();
        u32::from_str_radix(&h, 16).unwrap_or(0xFFFD)
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next().unwrap_or('\\') {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let u = hex4(&mut chars);
                let code = if (0xD800..0xDC00).contains(&u) {
                    // The pair was checked: `\u` and a low surrogate follow.
                    chars.nth(1);
                    let lo = hex4(&mut chars);
                    0x10000 + ((u - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                } else {
                    u
                };
                char::from_u32(code).unwrap_or('\u{FFFD}')
            }
            other => other,
        });
    }
    out
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
