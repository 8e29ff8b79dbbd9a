//! The text writers' output cursor: bytes go straight into a `Vec`'s spare
//! capacity through a raw pointer, and the `Vec`'s length is set once, when
//! the cursor is dropped. This module holds the encoders' only unchecked
//! writes.
//!
//! Why: through `Vec::extend_from_slice` every piece of output (a quote, a
//! comma, a 2-byte integer) loads and stores the length, checks the
//! capacity and calls `memcpy`, and the json writer makes one such write per
//! quote, comma, key and value. Here the position stays in a register within
//! a writer, short text is copied as two overlapping fixed-size words, and
//! integers are written in place (perf/RESULTS.md, round 4, has the counts).
//!
//! The contract: [`Cursor::ensure`]`(n)` makes room for `n` bytes (a real
//! check: the `Vec` grows when short). The writes that follow, up to the
//! next `ensure`, add up to at most `n` bytes; each writer computes `n` from
//! lengths it holds (text of `n` bytes escapes to at most `6n + 2`, an
//! integer takes at most 20). Debug builds check every write against the
//! room the last `ensure` promised, so the tests and fuzz runs built with
//! debug assertions (`cargo fuzz run -a`) catch a wrong bound as a panic,
//! not as memory corruption.
//!
//! The json writer's escape test for text is here too (the crate's one
//! module allowed `unsafe`): on x86-64, SSE2 compares 16 bytes at once for
//! the bytes JSON escapes (below 0x20, `"`, `\\`), and text is copied while
//! tested (a short name with the wire bytes after it as one 16-byte store,
//! longer text 16 bytes per step); other targets keep the word tests in
//! `json.rs`.
#![allow(unsafe_code)]

use std::ptr;

/// Two ASCII digits for each of 0..100 (one 2-byte load each).
static PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// The decimal text of each of 0..=255: up to 3 digits from the low byte
/// up, their count in the top byte (msgpack's fixints and `u8`s, which flat
/// collections hold most).
static SMALL: [u32; 256] = {
    const fn d(x: usize) -> u32 {
        (b'0' + x as u8) as u32
    }
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if i < 10 {
            d(i) | 1 << 24
        } else if i < 100 {
            d(i / 10) | d(i % 10) << 8 | 2 << 24
        } else {
            d(i / 100) | d(i / 10 % 10) << 8 | d(i % 10) << 16 | 3 << 24
        };
        i += 1;
    }
    t
};

/// Most digits a `u64` has; also the longest `i64` with its sign.
pub(crate) const MAX_INT: usize = 20;

/// Writes into the spare capacity of `out`; see the module doc.
pub(crate) struct Cursor<'v> {
    out: &'v mut Vec<u8>,
    /// `out`'s buffer.
    base: *mut u8,
    /// Where the next byte goes: `base + written`.
    pos: *mut u8,
    /// `base + out.capacity()`.
    end: *mut u8,
    /// The end of the room the last `ensure` promised.
    #[cfg(debug_assertions)]
    limit: usize,
}

impl<'v> Cursor<'v> {
    /// A cursor appending to `out`.
    pub fn new(out: &'v mut Vec<u8>) -> Self {
        let mut c = Cursor {
            base: out.as_mut_ptr(),
            pos: out.as_mut_ptr(),
            end: out.as_mut_ptr(),
            out,
            #[cfg(debug_assertions)]
            limit: 0,
        };
        c.reload();
        c
    }

    /// Takes `base`, `pos` and `end` from `out` again (after it changed).
    fn reload(&mut self) {
        let (len, cap) = (self.out.len(), self.out.capacity());
        self.base = self.out.as_mut_ptr();
        // SAFETY: `len <= cap`, so both stay inside (or one past the end
        // of) the buffer `base` points to.
        unsafe {
            self.pos = self.base.add(len);
            self.end = self.base.add(cap);
        }
        #[cfg(debug_assertions)]
        {
            self.limit = len;
        }
    }

    /// Bytes written into `out` so far (its length once the cursor is dropped).
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.pos as usize - self.base as usize
    }

    /// Makes room for at least `n` more bytes; the writes up to the next
    /// `ensure` must add up to at most `n`.
    #[inline(always)]
    pub fn ensure(&mut self, n: usize) {
        if self.end as usize - (self.pos as usize) < n {
            self.grow(n);
        }
        #[cfg(debug_assertions)]
        {
            self.limit = self.len() + n;
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, n: usize) {
        self.sync();
        self.out.reserve(n);
        self.reload();
    }

    /// Sets `out`'s length to what was written.
    fn sync(&mut self) {
        let len = self.len();
        // SAFETY: `len <= capacity` (every write stayed within the room an
        // `ensure` made), and every byte below `pos` was written.
        unsafe { self.out.set_len(len) }
    }

    /// Goes back to `len` bytes written (`len` no more than written so far).
    pub fn truncate(&mut self, len: usize) {
        if len <= self.len() {
            // SAFETY: `base + len` is at or below `pos`, inside the buffer.
            self.pos = unsafe { self.base.add(len) };
        }
    }

    /// Debug builds: panics unless `n` more bytes fit the room promised.
    #[inline(always)]
    fn check(&self, n: usize) {
        #[cfg(debug_assertions)]
        assert!(
            self.len() + n <= self.limit,
            "cursor: a write of {n} bytes at {} past the room ensured (up to {})",
            self.len(),
            self.limit
        );
        let _ = n;
    }

    /// Appends one byte.
    #[inline(always)]
    pub fn byte(&mut self, b: u8) {
        self.check(1);
        // SAFETY: the room `ensure` made holds it (the module's contract).
        unsafe {
            self.pos.write(b);
            self.pos = self.pos.add(1);
        }
    }

    /// Appends `N` bytes known at compile time (stores of fixed size).
    #[inline(always)]
    pub fn put<const N: usize>(&mut self, s: &[u8; N]) {
        self.check(N);
        // SAFETY: the room `ensure` made holds them; `s` is not in `out`
        // (the cursor borrows `out` mutably).
        unsafe {
            ptr::copy_nonoverlapping(s.as_ptr(), self.pos, N);
            self.pos = self.pos.add(N);
        }
    }

    /// Stores all `N` bytes of `s` but keeps only the first `len` (at most
    /// `N`): a constant of `len` bytes written with one fixed-size store,
    /// the rest to be overwritten by what follows. The room must hold `N`.
    #[inline(always)]
    pub fn put_padded<const N: usize>(&mut self, s: &[u8; N], len: usize) {
        self.check(N);
        debug_assert!(len <= N);
        // SAFETY: the room `ensure` made holds all `N` bytes (checked above
        // in debug builds); `pos` moves by `len <= N`.
        unsafe {
            self.pos.cast::<[u8; N]>().write_unaligned(*s);
            self.pos = self.pos.add(len);
        }
    }

    /// `sep`, then `v` in decimal (at most 4 bytes, written as one 4-byte
    /// store from [`SMALL`]; the room must hold 4).
    #[inline(always)]
    pub fn sep_small(&mut self, sep: u8, v: u8) {
        let t = SMALL[usize::from(v)];
        let word = u32::from(sep) | t << 8;
        self.check(4);
        // SAFETY: the room holds the 4 bytes stored; `pos` moves by at
        // most 4 (1 + the count, at most 3).
        unsafe {
            self.pos
                .cast::<[u8; 4]>()
                .write_unaligned(word.to_le_bytes());
            self.pos = self.pos.add(1 + (t >> 24) as usize);
        }
    }

    /// `sep`, then `v` in decimal between quotes (a JSON object key; at
    /// most 6 bytes, written as one 8-byte store; the room must hold 8).
    #[inline(always)]
    pub fn sep_small_quoted(&mut self, sep: u8, v: u8) {
        let t = SMALL[usize::from(v)];
        let n = (t >> 24) as usize;
        let word = u64::from(sep)
            | u64::from(b'"') << 8
            | u64::from(t & 0x00ff_ffff) << 16
            | u64::from(b'"') << (16 + 8 * n);
        self.check(8);
        // SAFETY: the room holds the 8 bytes stored; `pos` moves by at
        // most 6.
        unsafe {
            self.pos
                .cast::<[u8; 8]>()
                .write_unaligned(word.to_le_bytes());
            self.pos = self.pos.add(n + 3);
        }
    }

    /// Appends `s`: up to 32 bytes as two overlapping fixed-size copies,
    /// longer through `memcpy`.
    #[inline(always)]
    pub fn slice(&mut self, s: &[u8]) {
        let n = s.len();
        self.check(n);
        if n > 32 {
            // SAFETY: as in `put`.
            unsafe { ptr::copy_nonoverlapping(s.as_ptr(), self.pos, n) };
        } else {
            self.short(s);
        }
        // SAFETY: the room `ensure` made holds the `n` bytes just written.
        self.pos = unsafe { self.pos.add(n) };
    }

    /// Appends `s` between double quotes (`s.len() + 2` bytes).
    #[inline(always)]
    pub fn quoted(&mut self, s: &[u8]) {
        self.byte(b'"');
        self.slice(s);
        self.byte(b'"');
    }

    /// Replaces the byte written at `at` (a separator put before the first
    /// element of a collection becomes its opening bracket).
    pub fn set(&mut self, at: usize, b: u8) {
        if at < self.len() {
            // SAFETY: `base + at` is below `pos`: a byte already written.
            unsafe { self.base.add(at).write(b) }
        }
    }

    /// Copies `s` (at most 16 bytes) as one or two overlapping words and
    /// keeps it (moves `pos` past it, returns `true`) when `dirty` of the
    /// words copied is false (both words at once: one 16-byte test is
    /// cheaper than two 8-byte ones; text of 4 to 7 bytes passes its one
    /// word twice): the test and the copy share their loads. Else the
    /// bytes stored do not count (`pos` stays) and it returns `false`.
    /// Text of 1 to 3 bytes is tested byte by byte, with `byte` (0: good),
    /// which is cheaper than assembling a word. The room must hold
    /// `s.len()` bytes.
    #[inline(always)]
    pub fn short_if(
        &mut self,
        s: &[u8],
        dirty: impl Fn(&[u8; 8], &[u8; 8]) -> bool,
        byte: impl Fn(u8) -> u8,
    ) -> bool {
        let n = s.len();
        debug_assert!(n <= 16);
        self.check(n);
        let p = self.pos;
        // SAFETY (all three arms): as in `short`: the room holds `n` bytes
        // at `p`, and each store covers `[p, p + n)` only.
        let clean = unsafe {
            if let (Some(a), Some(b)) = (s.first_chunk::<8>(), s.last_chunk::<8>()) {
                p.cast::<[u8; 8]>().write_unaligned(*a);
                p.add(n - 8).cast::<[u8; 8]>().write_unaligned(*b);
                !dirty(a, b)
            } else if let (Some(a), Some(b)) = (s.first_chunk::<4>(), s.last_chunk::<4>()) {
                p.cast::<[u8; 4]>().write_unaligned(*a);
                p.add(n - 4).cast::<[u8; 4]>().write_unaligned(*b);
                let mut w = [0u8; 8];
                w[..4].copy_from_slice(a);
                w[4..].copy_from_slice(b);
                !dirty(&w, &w)
            } else if let (Some(&a), Some(&b), Some(&c)) = (s.first(), s.get(n / 2), s.last()) {
                p.write(a);
                p.add(n / 2).write(b);
                p.add(n - 1).write(c);
                byte(a) | byte(b) | byte(c) == 0
            } else {
                true
            }
        };
        if clean {
            // SAFETY: the room holds the `n` bytes just written.
            self.pos = unsafe { p.add(n) };
        }
        clean
    }

    /// Stores all 16 bytes of `w` and keeps the first `n` (at most 16;
    /// moves `pos` past them, returns `true`) when none of those `n` must
    /// be escaped in JSON text (below 0x20, `"` or `\\`): short text read
    /// with what follows it, one load, one store and one test whatever its
    /// length. Else the bytes stored do not count (`pos` stays) and it
    /// returns `false`. The room must hold 16.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    pub fn head_if_json_clean<const ASCII: bool>(&mut self, w: &[u8; 16], n: usize) -> bool {
        use std::arch::x86_64::{_mm_loadu_si128, _mm_movemask_epi8, _mm_storeu_si128};
        debug_assert!(n <= 16);
        self.check(16);
        // SAFETY: the load reads the 16 bytes of `w`; the store writes 16
        // bytes at `pos`, inside the room (checked above in debug builds);
        // `pos` moves by `n <= 16`. SSE2 is enabled for this build.
        unsafe {
            let v = _mm_loadu_si128(w.as_ptr().cast());
            _mm_storeu_si128(self.pos.cast(), v);
            let keep = (1u32 << n) - 1;
            if _mm_movemask_epi8(json_escape_mask::<ASCII>(v)) as u32 & keep != 0 {
                return false;
            }
            self.pos = self.pos.add(n);
        }
        true
    }

    /// Copies `s` (16 bytes or more; the room must hold them) 16 bytes per
    /// step and keeps it (moves `pos` past it, returns `true`) when none of
    /// its bytes must be escaped in JSON text (below 0x20, `"` or `\\`):
    /// the test and the copy share their loads, where a separate test and
    /// `memcpy` read the text twice. Else the bytes stored do not count
    /// (`pos` stays) and it returns `false`.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline]
    pub fn long_if_json_clean<const ASCII: bool>(&mut self, s: &[u8]) -> bool {
        use std::arch::x86_64::{
            __m128i, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_setzero_si128,
            _mm_storeu_si128,
        };
        let n = s.len();
        debug_assert!(n >= 16);
        self.check(n);
        if n < 16 {
            return false;
        }
        let (src, dst) = (s.as_ptr(), self.pos);
        // SAFETY: every load reads 16 bytes of `s` (`i + 16 <= n`, and the
        // last step starts at `n - 16`, with `n >= 16`); every store writes
        // the same 16 bytes at `dst`, inside the room that holds `n`. The
        // intrinsics need SSE2, enabled for this build (the `cfg`).
        unsafe {
            let step = |at: usize, acc: __m128i| {
                let v = _mm_loadu_si128(src.add(at).cast());
                _mm_storeu_si128(dst.add(at).cast(), v);
                _mm_or_si128(acc, json_escape_mask::<ASCII>(v))
            };
            let mut acc = _mm_setzero_si128();
            let mut i = 0;
            while i + 16 <= n {
                acc = step(i, acc);
                i += 16;
            }
            if i < n {
                acc = step(n - 16, acc);
            }
            if _mm_movemask_epi8(acc) != 0 {
                return false;
            }
            self.pos = dst.add(n);
        }
        true
    }

    /// `s` (at most 32 bytes) at `pos`, without moving `pos`: the first and
    /// the last word of the size class overlap, so every byte is written.
    #[inline(always)]
    fn short(&mut self, s: &[u8]) {
        let n = s.len();
        let p = self.pos;
        // SAFETY (all four arms): the room `ensure` made holds `n` bytes at
        // `p`; each store covers `[p, p + n)` only: the first word at `p`,
        // the last ending at `p + n`.
        unsafe {
            if let (Some(a), Some(b)) = (s.first_chunk::<16>(), s.last_chunk::<16>()) {
                p.cast::<[u8; 16]>().write_unaligned(*a);
                p.add(n - 16).cast::<[u8; 16]>().write_unaligned(*b);
            } else if let (Some(a), Some(b)) = (s.first_chunk::<8>(), s.last_chunk::<8>()) {
                p.cast::<[u8; 8]>().write_unaligned(*a);
                p.add(n - 8).cast::<[u8; 8]>().write_unaligned(*b);
            } else if let (Some(a), Some(b)) = (s.first_chunk::<4>(), s.last_chunk::<4>()) {
                p.cast::<[u8; 4]>().write_unaligned(*a);
                p.add(n - 4).cast::<[u8; 4]>().write_unaligned(*b);
            } else if let (Some(&a), Some(&b), Some(&c)) = (s.first(), s.get(n / 2), s.last()) {
                p.write(a);
                p.add(n / 2).write(b);
                p.add(n - 1).write(c);
            }
        }
    }

    /// Appends `v` in decimal (at most [`MAX_INT`] bytes). Below 10,000
    /// (counts, small keys, list items) without counting the digits first.
    #[inline(always)]
    pub fn u64(&mut self, v: u64) {
        let pair = |r: u64| PAIRS[r as usize];
        if v < 10 {
            self.byte(b'0' + v as u8);
        } else if v < 100 {
            self.put(&pair(v));
        } else if v < 1000 {
            let [a, b] = pair(v % 100);
            self.put(&[b'0' + (v / 100) as u8, a, b]);
        } else if v < 10_000 {
            let ([a, b], [d, e]) = (pair(v / 100), pair(v % 100));
            self.put(&[a, b, d, e]);
        } else {
            self.long_u64(v);
        }
    }

    /// Exactly 4 digits of `v` (below 10,000), zero-padded.
    #[inline(always)]
    fn four(&mut self, v: u32) {
        let ([a, b], [d, e]) = (PAIRS[(v / 100) as usize], PAIRS[(v % 100) as usize]);
        self.put(&[a, b, d, e]);
    }

    /// [`Cursor::u64`] from 10,000 up: the leading 1 to 4 digits, then
    /// groups of 4, the low 8 digits split off with one 64-bit division and
    /// the rest done in 32 bits.
    #[inline(never)]
    fn long_u64(&mut self, v: u64) {
        if v < 100_000_000 {
            let v = v as u32;
            self.u64(u64::from(v / 10_000));
            self.four(v % 10_000);
            return;
        }
        let (hi, lo) = if v < 10_000_000_000_000_000 {
            let hi = v / 100_000_000;
            if hi < 10_000 {
                self.u64(hi);
            } else {
                let hi = hi as u32;
                self.u64(u64::from(hi / 10_000));
                self.four(hi % 10_000);
            }
            (None, (v % 100_000_000) as u32)
        } else {
            // 17 to 20 digits: at most 1844, then 16 more.
            let rest = v % 10_000_000_000_000_000;
            self.u64(v / 10_000_000_000_000_000);
            (
                Some((rest / 100_000_000) as u32),
                (rest % 100_000_000) as u32,
            )
        };
        if let Some(hi) = hi {
            self.four(hi / 10_000);
            self.four(hi % 10_000);
        }
        self.four(lo / 10_000);
        self.four(lo % 10_000);
    }

    /// Appends `v` in decimal (at most [`MAX_INT`] bytes).
    #[inline]
    pub fn i64(&mut self, v: i64) {
        if v < 0 {
            self.byte(b'-');
        }
        self.u64(v.unsigned_abs());
    }
}

/// True when one of the 16 bytes of `a` and `b` must be escaped in JSON
/// text (below 0x20, `"` or `\\`), in one SSE2 compare run (the json
/// writer's short-text test; kept here, the crate's one module allowed
/// `unsafe`).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(crate) fn sse2_json_dirty<const ASCII: bool>(a: &[u8; 8], b: &[u8; 8]) -> bool {
    use std::arch::x86_64::{_mm_movemask_epi8, _mm_set_epi64x};
    // SAFETY: these intrinsics only compute on registers (no memory is
    // read or written), and SSE2 is enabled for this build (the `cfg`
    // above; every x86-64 processor has it).
    unsafe {
        let v = _mm_set_epi64x(i64::from_le_bytes(*b), i64::from_le_bytes(*a));
        _mm_movemask_epi8(json_escape_mask::<ASCII>(v)) != 0
    }
}

/// The top bit set in each byte of `v` that must be escaped in JSON text
/// (below 0x20, `"` or `\\`) or, with `ASCII`, that is not ASCII (what
/// `_mm_movemask_epi8` reads): `ASCII` text needs no UTF-8 check, so the
/// writer of unvalidated ops tests both at once.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
unsafe fn json_escape_mask<const ASCII: bool>(
    v: std::arch::x86_64::__m128i,
) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_min_epu8, _mm_or_si128, _mm_set1_epi8};
    // Below 0x20 exactly when the unsigned minimum with 0x1f is the byte.
    let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
    let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
    let escape = _mm_or_si128(control, _mm_or_si128(quote, backslash));
    if ASCII {
        // A byte of 0x80 or more has its top bit set already.
        _mm_or_si128(escape, v)
    } else {
        escape
    }
}

impl Drop for Cursor<'_> {
    fn drop(&mut self) {
        self.sync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_of_every_short_length_land_whole() {
        let src: Vec<u8> = (0..100u8).collect();
        for n in 0..=100 {
            let mut out = b"ab".to_vec();
            {
                let mut c = Cursor::new(&mut out);
                c.ensure(n + 1);
                c.slice(&src[..n]);
                c.byte(b'!');
            }
            assert_eq!(out.len(), n + 3);
            assert_eq!(&out[..2], b"ab");
            assert_eq!(&out[2..n + 2], &src[..n]);
            assert_eq!(out[n + 2], b'!');
        }
    }

    #[test]
    fn integers_match_display() {
        let mut values: Vec<i64> = vec![0, 1, 9, 10, 99, 100, 101, i64::MIN, i64::MAX, -1, -10];
        for p in 0..19 {
            let t = 10i64.pow(p);
            values.extend([t - 1, t, t + 1, -t, 1 - t, 7 * t]);
        }
        for v in values {
            let mut out = Vec::new();
            {
                let mut c = Cursor::new(&mut out);
                c.ensure(MAX_INT);
                c.i64(v);
            }
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
        for v in [u64::MAX, u64::MAX - 1, 1 << 63, 10_000_000_000_000_000_000] {
            let mut out = Vec::new();
            {
                let mut c = Cursor::new(&mut out);
                c.ensure(MAX_INT);
                c.u64(v);
            }
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }

    #[test]
    fn integers_of_every_length_and_digit_match_display() {
        // Every digit in every place (8-digit groups are converted in
        // lanes), zeros inside and at the ends of groups, and mixed values
        // of each length.
        let mut values: Vec<u64> = Vec::new();
        for p in 4..19u32 {
            let t = 10u64.pow(p);
            for d in 1..10u64 {
                values.extend([d * t, d * t + d, d * t + t / 10 * 3]);
                for q in 0..p {
                    values.push(t + d * 10u64.pow(q));
                }
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for v in values {
            let mut out = Vec::new();
            {
                let mut c = Cursor::new(&mut out);
                c.ensure(MAX_INT);
                c.u64(v);
            }
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string(), "{v}");
        }
    }

    #[test]
    fn small_integers_from_the_table_match_display() {
        for v in 0..=255u8 {
            let mut out = b"ab".to_vec();
            {
                let mut c = Cursor::new(&mut out);
                c.ensure(4 + 8 + 1);
                c.sep_small(b',', v);
                c.sep_small_quoted(b':', v);
                c.byte(b'!');
            }
            assert_eq!(String::from_utf8(out).unwrap(), format!("ab,{v}:\"{v}\"!"));
        }
    }

    /// `short_if` keeps text only when every byte passes, at every length
    /// up to 16 and with the failing byte at every position; `put_padded`
    /// keeps only its first `len` bytes.
    #[test]
    fn checked_short_copies_keep_only_what_passes() {
        let dirty = |a: &[u8; 8], b: &[u8; 8]| a.iter().chain(b).any(|&x| x >= 0x80);
        let byte = |b: u8| b & 0x80;
        for n in 0..=16 {
            for bad in (0..n).map(Some).chain([None]) {
                let text: Vec<u8> = (0..n)
                    .map(|i| if Some(i) == bad { 0xff } else { b'a' + i as u8 })
                    .collect();
                let mut out = b"xy".to_vec();
                let kept = {
                    let mut c = Cursor::new(&mut out);
                    c.ensure(16 + n + 1);
                    c.put_padded(b"<__pad__________", 1);
                    let kept = c.short_if(&text, dirty, byte);
                    c.byte(b'>');
                    kept
                };
                assert_eq!(kept, bad.is_none(), "{n} {bad:?}");
                let mut want = b"xy<".to_vec();
                if kept {
                    want.extend_from_slice(&text);
                }
                want.push(b'>');
                assert_eq!(out, want, "{n} {bad:?}");
            }
        }
    }

    /// `head_if_json_clean` keeps the first `n` bytes exactly when none
    /// of them is to be escaped, whatever follows them in the 16: every
    /// `n` up to 16, a `"`, `\\` or control byte at every position (and,
    /// testing for ASCII too, a byte of 0x80 or more).
    #[test]
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn head_copies_test_only_the_bytes_kept() {
        for n in 0..=16 {
            for bad in (0..16).map(Some).chain([None]) {
                for (b, ascii) in [b'"', b'\\', 0x00, 0x1f, 0x80, 0xff]
                    .into_iter()
                    .flat_map(|b| [(b, false), (b, true)])
                {
                    let mut w = [0u8; 16];
                    for (i, x) in w.iter_mut().enumerate() {
                        *x = if Some(i) == bad { b } else { b'a' + i as u8 };
                    }
                    let mut out = b"xy".to_vec();
                    let kept = {
                        let mut c = Cursor::new(&mut out);
                        c.ensure(16 + 1);
                        let kept = if ascii {
                            c.head_if_json_clean::<true>(&w, n)
                        } else {
                            c.head_if_json_clean::<false>(&w, n)
                        };
                        c.byte(b'>');
                        kept
                    };
                    // A byte of 0x80 or more is clean JSON text, but not ASCII.
                    let clean = bad.is_none_or(|at| at >= n) || (b >= 0x80 && !ascii);
                    assert_eq!(kept, clean, "{n} {bad:?} {b}");
                    let mut want = b"xy".to_vec();
                    if kept {
                        want.extend_from_slice(&w[..n]);
                    }
                    want.push(b'>');
                    assert_eq!(out, want, "{n} {bad:?} {b}");
                }
            }
        }
    }

    #[test]
    fn grows_and_keeps_what_was_written() {
        let mut out = Vec::new();
        {
            let mut c = Cursor::new(&mut out);
            for i in 0..1000u64 {
                c.ensure(MAX_INT + 1);
                c.u64(i);
                c.byte(b',');
            }
            let at = c.len();
            c.ensure(3);
            c.put(b"xyz");
            c.truncate(at);
        }
        let want: String = (0..1000).map(|i| format!("{i},")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "past the room ensured")]
    fn a_write_past_the_room_panics_in_debug_builds() {
        let mut out = Vec::with_capacity(64);
        let mut c = Cursor::new(&mut out);
        c.ensure(2);
        c.put(b"abc");
    }
}
