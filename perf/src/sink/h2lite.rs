//! The sink's own HTTP/2 server connection (`sluice sink --h2-server
//! lite`): only what a sink needs, for throughput. The h2 crate (the
//! sink's other server, and sluice's client) costs about 1.5× nghttpd's
//! CPU per request with no body at all; this one works as nghttpd does:
//! read into one buffer, process every complete frame in it, and write
//! every resulting frame in one write per read round.
//!
//! [`Conn`] owns the protocol state (preface, SETTINGS, flow-control
//! windows, HPACK decoding, streams being received) and is synchronous:
//! bytes in, frames out, requests handed to a callback. [`serve`] drives
//! it over any futures-io stream (plain TCP or TLS) and runs the answers
//! that come later (`--delay-ms`). Answers are a HEADERS frame with
//! END_STREAM and only `:status` (no body, so nothing to hold back for the
//! client's windows). A protocol error closes the connection with a
//! GOAWAY naming the error code and why.

use futures_lite::{AsyncRead, AsyncWrite};
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

/// The client's connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

// Flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

// Error codes (RFC 9113 §7).
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const STREAM_CLOSED: u32 = 0x5;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The largest frame payload we accept (the protocol's default; we do not
/// advertise another).
const MAX_FRAME: usize = 16_384;
/// Our SETTINGS_INITIAL_WINDOW_SIZE: a stream's body flows without waiting.
const STREAM_WINDOW: i64 = 1 << 20;
/// The connection window, raised to this by a WINDOW_UPDATE at the start.
const CONN_WINDOW: i64 = 1 << 24;
/// Our SETTINGS_MAX_CONCURRENT_STREAMS.
const MAX_STREAMS: usize = 1024;
/// Request bodies held at once on one connection, at most.
pub const BODY_CAP: usize = 64 << 20;
/// A header block (HEADERS + CONTINUATION) at most.
const HEADER_BLOCK_CAP: usize = 256 << 10;
/// HPACK's dynamic table size (the default; not advertised otherwise).
const HPACK_TABLE: usize = 4096;
/// The read buffer: frames up to [`MAX_FRAME`] always fit with room to spare.
const READ_BUF: usize = 64 << 10;
/// Answers not yet taken by the socket, at most, before reading stops.
const OUT_MAX: usize = 256 << 10;

/// Why the connection was closed with a GOAWAY.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why} (GOAWAY {})", code_name(*.code))]
pub struct ConnError {
    pub code: u32,
    pub why: String,
}

fn code_name(code: u32) -> &'static str {
    match code {
        PROTOCOL_ERROR => "PROTOCOL_ERROR",
        FLOW_CONTROL_ERROR => "FLOW_CONTROL_ERROR",
        FRAME_SIZE_ERROR => "FRAME_SIZE_ERROR",
        COMPRESSION_ERROR => "COMPRESSION_ERROR",
        ENHANCE_YOUR_CALM => "ENHANCE_YOUR_CALM",
        _ => "error",
    }
}

fn fail<T>(code: u32, why: impl Into<String>) -> Result<T, ConnError> {
    Err(ConnError {
        code,
        why: why.into(),
    })
}

/// What [`Conn`]'s caller does with a complete request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Answer now with this status.
    Now(u16),
    /// The answer comes later ([`Conn::answer_later`]), or never (stalled).
    Wait,
    /// Drop the connection (what was answered before still leaves).
    Drop,
}

/// Takes a complete request: its stream, Content-Type and body.
pub type OnRequest<'a> = dyn FnMut(u32, Option<&str>, &[u8]) -> Reply + 'a;

/// A stream whose request body is still arriving.
struct Stream {
    content_type: Option<Rc<str>>,
    body: Vec<u8>,
    /// What the client may still send on it.
    window: i64,
}

/// One HTTP/2 server connection's state.
pub struct Conn {
    hpack: fluke_hpack::Decoder<'static>,
    preface_done: bool,
    settings_seen: bool,
    /// Streams receiving their body.
    streams: HashMap<u32, Stream>,
    /// Streams whose request arrived and whose answer is to come.
    waiting: HashSet<u32>,
    /// The highest stream the client opened.
    last_id: u32,
    /// A header block waiting for its CONTINUATION frames: stream, END_STREAM, block.
    cont: Option<(u32, bool, Vec<u8>)>,
    /// What the client may still send on the connection.
    window: i64,
    /// Body bytes held in `streams`.
    held: usize,
    /// The client's SETTINGS_MAX_FRAME_SIZE: our frames stay under it.
    peer_max_frame: usize,
    /// The last Content-Type seen: requests mostly repeat it, so it is shared.
    last_content_type: Option<Rc<str>>,
    /// The client sent GOAWAY.
    pub goaway: bool,
}

impl Default for Conn {
    fn default() -> Self {
        Self::new()
    }
}

fn frame_head(out: &mut Vec<u8>, len: usize, ty: u8, flags: u8, stream: u32) {
    let len = len as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
}

fn window_update(out: &mut Vec<u8>, stream: u32, by: i64) {
    frame_head(out, 4, WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(by as u32).to_be_bytes());
}

fn rst_stream(out: &mut Vec<u8>, stream: u32, code: u32) {
    frame_head(out, 4, RST_STREAM, 0, stream);
    out.extend_from_slice(&code.to_be_bytes());
}

fn u32_at(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

/// Strips a PADDED frame's pad length and padding.
fn unpad<'a>(flags: u8, p: &'a [u8], what: &str) -> Result<&'a [u8], ConnError> {
    if flags & PADDED == 0 {
        return Ok(p);
    }
    let Some((&pad, rest)) = p.split_first() else {
        return fail(
            FRAME_SIZE_ERROR,
            format!("padded {what} without a pad length"),
        );
    };
    let pad = usize::from(pad);
    if pad > rest.len() {
        return fail(
            PROTOCOL_ERROR,
            format!(
                "{what}: {pad} bytes of padding in a {}-byte payload",
                p.len()
            ),
        );
    }
    Ok(&rest[..rest.len() - pad])
}

/// An HPACK integer with an `n`-bit prefix at the start of `b`: its value
/// and length (RFC 7541 §5.1), at most 4 continuation bytes.
fn hpack_int(b: &[u8], n: u32) -> Result<(usize, usize), &'static str> {
    let mask = (1usize << n) - 1;
    let first = usize::from(*b.first().ok_or("an integer cut short")?) & mask;
    if first < mask {
        return Ok((first, 1));
    }
    let mut v = mask;
    for (i, &c) in b.iter().enumerate().skip(1).take(4) {
        v += usize::from(c & 0x7f) << (7 * (i - 1));
        if c & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err("an integer cut short or too long")
}

/// Walks a header block's representations without decoding them, and
/// refuses a dynamic table size update that is cut short or follows a
/// header field (RFC 7541 §4.2). fluke-hpack 0.3.1 panics on the first
/// (an `unwrap` on the size's integer), so no such block may reach it.
fn walk_hpack(block: &[u8]) -> Result<(), &'static str> {
    let mut at = 0;
    let mut fields = false;
    while at < block.len() {
        let b = block[at];
        let rest = &block[at..];
        if b & 0x80 != 0 {
            at += hpack_int(rest, 7)?.1;
        } else if b & 0xe0 == 0x20 {
            if fields {
                return Err("a dynamic table size update after a header field");
            }
            at += hpack_int(rest, 5)?.1;
            continue;
        } else {
            let prefix = if b & 0x40 != 0 { 6 } else { 4 };
            let (name, mut used) = hpack_int(rest, prefix)?;
            // A literal name, then the value: each a length and the bytes.
            for _ in 0..if name == 0 { 2 } else { 1 } {
                let (len, n) = hpack_int(&rest[used..], 7)?;
                used = used
                    .checked_add(n + len)
                    .filter(|&u| u <= rest.len())
                    .ok_or("a string past the end of the block")?;
            }
            at += used;
        }
        fields = true;
    }
    Ok(())
}

impl Conn {
    pub fn new() -> Self {
        let mut hpack = fluke_hpack::Decoder::new();
        hpack.set_max_allowed_table_size(HPACK_TABLE);
        Conn {
            hpack,
            preface_done: false,
            settings_seen: false,
            streams: HashMap::new(),
            waiting: HashSet::new(),
            last_id: 0,
            cont: None,
            window: 65_535,
            held: 0,
            peer_max_frame: MAX_FRAME,
            last_content_type: None,
            goaway: false,
        }
    }

    /// Our side of the preface: SETTINGS, then the connection window raised.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        let settings: [(u16, u32); 3] = [
            (0x2, 0),                    // ENABLE_PUSH: a server's is ignored, said for clarity
            (0x3, MAX_STREAMS as u32),   // MAX_CONCURRENT_STREAMS
            (0x4, STREAM_WINDOW as u32), // INITIAL_WINDOW_SIZE
        ];
        frame_head(out, settings.len() * 6, SETTINGS, 0, 0);
        for (id, v) in settings {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        window_update(out, 0, CONN_WINDOW - self.window);
        self.window = CONN_WINDOW;
    }

    /// Processes every complete frame at the start of `buf`, appending what
    /// to send to `out`; returns the bytes used (the rest is an unfinished
    /// frame) and whether a request asked for the connection to be dropped.
    pub fn process(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
        on_request: &mut OnRequest<'_>,
    ) -> Result<(usize, bool), ConnError> {
        let mut at = 0;
        if !self.preface_done {
            let n = buf.len().min(PREFACE.len());
            if buf[..n] != PREFACE[..n] {
                return fail(PROTOCOL_ERROR, "not the HTTP/2 client preface");
            }
            if n < PREFACE.len() {
                return Ok((0, false));
            }
            self.preface_done = true;
            at = PREFACE.len();
        }
        while buf.len() - at >= 9 {
            let h = &buf[at..at + 9];
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            let (ty, flags, stream) = (h[3], h[4], u32_at(h, 5) & 0x7fff_ffff);
            if len > MAX_FRAME {
                return fail(
                    FRAME_SIZE_ERROR,
                    format!(
                        "a {len}-byte frame (type {ty}), above SETTINGS_MAX_FRAME_SIZE {MAX_FRAME}"
                    ),
                );
            }
            if buf.len() - at - 9 < len {
                break;
            }
            let p = &buf[at + 9..at + 9 + len];
            at += 9 + len;
            if self.frame(ty, flags, stream, p, out, on_request)? {
                return Ok((at, true));
            }
        }
        Ok((at, false))
    }

    /// One frame; true when the connection is to be dropped.
    fn frame(
        &mut self,
        ty: u8,
        flags: u8,
        stream: u32,
        p: &[u8],
        out: &mut Vec<u8>,
        on_request: &mut OnRequest<'_>,
    ) -> Result<bool, ConnError> {
        if !self.settings_seen && (ty != SETTINGS || flags & ACK != 0) {
            return fail(
                PROTOCOL_ERROR,
                format!("the first frame is of type {ty}, not SETTINGS"),
            );
        }
        if let Some((id, ..)) = &self.cont {
            if ty != CONTINUATION || stream != *id {
                return fail(
                    PROTOCOL_ERROR,
                    format!("a frame of type {ty} on stream {stream} where the CONTINUATION of stream {id}'s headers belongs"),
                );
            }
        }
        match ty {
            DATA => return self.data(flags, stream, p, out, on_request),
            HEADERS => {
                if stream == 0 || stream.is_multiple_of(2) {
                    return fail(
                        PROTOCOL_ERROR,
                        format!("HEADERS on stream {stream}, not a client stream"),
                    );
                }
                let mut p = unpad(flags, p, "HEADERS")?;
                if flags & PRIORITY_FLAG != 0 {
                    if p.len() < 5 {
                        return fail(FRAME_SIZE_ERROR, "HEADERS too short for its priority");
                    }
                    p = &p[5..];
                }
                let end_stream = flags & END_STREAM != 0;
                if flags & END_HEADERS != 0 {
                    return self.header_block(stream, end_stream, p, out, on_request);
                }
                self.cont = Some((stream, end_stream, p.to_vec()));
            }
            CONTINUATION => {
                let Some((id, end_stream, mut block)) = self.cont.take() else {
                    return fail(
                        PROTOCOL_ERROR,
                        format!("CONTINUATION on stream {stream} without HEADERS before it"),
                    );
                };
                if block.len() + p.len() > HEADER_BLOCK_CAP {
                    return fail(
                        ENHANCE_YOUR_CALM,
                        format!("a header block above {HEADER_BLOCK_CAP} bytes"),
                    );
                }
                block.extend_from_slice(p);
                if flags & END_HEADERS != 0 {
                    return self.header_block(id, end_stream, &block, out, on_request);
                }
                self.cont = Some((id, end_stream, block));
            }
            PRIORITY => {
                if stream == 0 {
                    return fail(PROTOCOL_ERROR, "PRIORITY on stream 0");
                }
                if p.len() != 5 {
                    return fail(
                        FRAME_SIZE_ERROR,
                        format!("a {}-byte PRIORITY frame", p.len()),
                    );
                }
            }
            RST_STREAM => {
                if p.len() != 4 {
                    return fail(
                        FRAME_SIZE_ERROR,
                        format!("a {}-byte RST_STREAM frame", p.len()),
                    );
                }
                if stream == 0 || stream > self.last_id {
                    return fail(
                        PROTOCOL_ERROR,
                        format!("RST_STREAM on stream {stream}, never opened"),
                    );
                }
                if let Some(s) = self.streams.remove(&stream) {
                    self.held -= s.body.len();
                }
                self.waiting.remove(&stream);
            }
            SETTINGS => self.settings(flags, stream, p, out)?,
            PUSH_PROMISE => return fail(PROTOCOL_ERROR, "a client sent PUSH_PROMISE"),
            PING => {
                if stream != 0 {
                    return fail(PROTOCOL_ERROR, format!("PING on stream {stream}"));
                }
                if p.len() != 8 {
                    return fail(FRAME_SIZE_ERROR, format!("a {}-byte PING", p.len()));
                }
                if flags & ACK == 0 {
                    frame_head(out, 8, PING, ACK, 0);
                    out.extend_from_slice(p);
                }
            }
            GOAWAY => {
                if stream != 0 {
                    return fail(PROTOCOL_ERROR, format!("GOAWAY on stream {stream}"));
                }
                if p.len() < 8 {
                    return fail(FRAME_SIZE_ERROR, format!("a {}-byte GOAWAY", p.len()));
                }
                self.goaway = true;
            }
            WINDOW_UPDATE => {
                if p.len() != 4 {
                    return fail(
                        FRAME_SIZE_ERROR,
                        format!("a {}-byte WINDOW_UPDATE", p.len()),
                    );
                }
                // We send no DATA: the client's windows only need to be valid.
                if u32_at(p, 0) & 0x7fff_ffff == 0 {
                    if stream == 0 {
                        return fail(PROTOCOL_ERROR, "WINDOW_UPDATE of 0 on the connection");
                    }
                    rst_stream(out, stream, PROTOCOL_ERROR);
                }
            }
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => {}
        }
        Ok(false)
    }

    fn settings(
        &mut self,
        flags: u8,
        stream: u32,
        p: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ConnError> {
        if stream != 0 {
            return fail(PROTOCOL_ERROR, format!("SETTINGS on stream {stream}"));
        }
        if flags & ACK != 0 {
            if !p.is_empty() {
                return fail(FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload");
            }
            return Ok(());
        }
        if !p.len().is_multiple_of(6) {
            return fail(
                FRAME_SIZE_ERROR,
                format!("a {}-byte SETTINGS, not a multiple of 6", p.len()),
            );
        }
        for s in p.chunks_exact(6) {
            let (id, v) = (u16::from_be_bytes([s[0], s[1]]), u32_at(s, 2));
            match id {
                0x2 if v > 1 => {
                    return fail(PROTOCOL_ERROR, format!("SETTINGS_ENABLE_PUSH {v}"));
                }
                0x4 if v > 0x7fff_ffff => {
                    return fail(
                        FLOW_CONTROL_ERROR,
                        format!("SETTINGS_INITIAL_WINDOW_SIZE {v}"),
                    );
                }
                0x5 => {
                    if !(16_384..=16_777_215).contains(&v) {
                        return fail(PROTOCOL_ERROR, format!("SETTINGS_MAX_FRAME_SIZE {v}"));
                    }
                    self.peer_max_frame = v as usize;
                }
                // HEADER_TABLE_SIZE needs nothing: our answers use no dynamic table.
                _ => {}
            }
        }
        self.settings_seen = true;
        frame_head(out, 0, SETTINGS, ACK, 0);
        Ok(())
    }

    fn header_block(
        &mut self,
        stream: u32,
        end_stream: bool,
        block: &[u8],
        out: &mut Vec<u8>,
        on_request: &mut OnRequest<'_>,
    ) -> Result<bool, ConnError> {
        if let Err(why) = walk_hpack(block) {
            return fail(
                COMPRESSION_ERROR,
                format!("stream {stream}: header block: {why}"),
            );
        }
        let mut content_type: Option<Rc<str>> = None;
        let mut method = false;
        let last = &self.last_content_type;
        self.hpack
            .decode_with_cb(block, |name, value| match &*name {
                b":method" => method = true,
                b"content-type" => {
                    content_type = match last {
                        Some(l) if l.as_bytes() == &*value => Some(l.clone()),
                        _ => std::str::from_utf8(&value).ok().map(Rc::from),
                    }
                }
                _ => {}
            })
            .map_err(|e| ConnError {
                code: COMPRESSION_ERROR,
                why: format!("stream {stream}: header block does not decode: {e:?}"),
            })?;
        if let Some(s) = self.streams.remove(&stream) {
            // Trailers: they end the request.
            self.held -= s.body.len();
            if !end_stream {
                return fail(
                    PROTOCOL_ERROR,
                    format!("stream {stream}: a second HEADERS without END_STREAM"),
                );
            }
            return Ok(self.complete(stream, s.content_type.as_deref(), &s.body, out, on_request));
        }
        if stream <= self.last_id {
            return fail(
                PROTOCOL_ERROR,
                format!(
                    "HEADERS opening stream {stream}, not above the last stream {}",
                    self.last_id
                ),
            );
        }
        self.last_id = stream;
        if content_type.is_some() {
            self.last_content_type.clone_from(&content_type);
        }
        if !method {
            rst_stream(out, stream, PROTOCOL_ERROR);
            return Ok(false);
        }
        if self.streams.len() + self.waiting.len() >= MAX_STREAMS {
            rst_stream(out, stream, REFUSED_STREAM);
            return Ok(false);
        }
        if end_stream {
            return Ok(self.complete(stream, content_type.as_deref(), &[], out, on_request));
        }
        self.streams.insert(
            stream,
            Stream {
                content_type,
                body: Vec::new(),
                window: STREAM_WINDOW,
            },
        );
        Ok(false)
    }

    fn data(
        &mut self,
        flags: u8,
        stream: u32,
        p: &[u8],
        out: &mut Vec<u8>,
        on_request: &mut OnRequest<'_>,
    ) -> Result<bool, ConnError> {
        if stream == 0 {
            return fail(PROTOCOL_ERROR, "DATA on stream 0");
        }
        // Flow control counts the whole payload, padding included.
        let flow = p.len() as i64;
        self.window -= flow;
        if self.window < 0 {
            return fail(FLOW_CONTROL_ERROR, "DATA beyond the connection window");
        }
        if self.window < CONN_WINDOW / 2 {
            window_update(out, 0, CONN_WINDOW - self.window);
            self.window = CONN_WINDOW;
        }
        let body = unpad(flags, p, "DATA")?;
        let Some(s) = self.streams.get_mut(&stream) else {
            if stream > self.last_id {
                return fail(
                    PROTOCOL_ERROR,
                    format!("DATA on stream {stream}, never opened"),
                );
            }
            rst_stream(out, stream, STREAM_CLOSED);
            return Ok(false);
        };
        s.window -= flow;
        if s.window < 0 {
            return fail(
                FLOW_CONTROL_ERROR,
                format!("stream {stream}: DATA beyond its window"),
            );
        }
        let end = flags & END_STREAM != 0;
        if end && s.body.is_empty() {
            // The whole body in one frame: answered from the read buffer, no copy.
            let ct = s.content_type.take();
            self.streams.remove(&stream);
            return Ok(self.complete(stream, ct.as_deref(), body, out, on_request));
        }
        if self.held + body.len() > BODY_CAP {
            return fail(
                ENHANCE_YOUR_CALM,
                format!("request bodies held on this connection above {BODY_CAP} bytes"),
            );
        }
        self.held += body.len();
        s.body.extend_from_slice(body);
        if end {
            if let Some(s) = self.streams.remove(&stream) {
                self.held -= s.body.len();
                return Ok(self.complete(
                    stream,
                    s.content_type.as_deref(),
                    &s.body,
                    out,
                    on_request,
                ));
            }
        } else if s.window < STREAM_WINDOW / 2 {
            window_update(out, stream, STREAM_WINDOW - s.window);
            s.window = STREAM_WINDOW;
        }
        Ok(false)
    }

    /// A request arrived whole; true when the connection is to be dropped.
    fn complete(
        &mut self,
        stream: u32,
        content_type: Option<&str>,
        body: &[u8],
        out: &mut Vec<u8>,
        on_request: &mut OnRequest<'_>,
    ) -> bool {
        match on_request(stream, content_type, body) {
            Reply::Now(status) => self.answer(stream, status, out),
            Reply::Wait => {
                self.waiting.insert(stream);
            }
            Reply::Drop => return true,
        }
        false
    }

    /// Answers a request that was told to [`Reply::Wait`], unless the
    /// client reset its stream meanwhile.
    pub fn answer_later(&mut self, stream: u32, status: u16, out: &mut Vec<u8>) {
        if self.waiting.remove(&stream) {
            self.answer(stream, status, out);
        }
    }

    /// The answer: HEADERS with END_STREAM and `:status` (indexed from the
    /// static table where it is there, else a literal with its name indexed).
    fn answer(&self, stream: u32, status: u16, out: &mut Vec<u8>) {
        let indexed = match status {
            200 => Some(0x88),
            204 => Some(0x89),
            206 => Some(0x8a),
            304 => Some(0x8b),
            400 => Some(0x8c),
            404 => Some(0x8d),
            500 => Some(0x8e),
            _ => None,
        };
        // Our largest HEADERS payload is 5 bytes, far under any peer_max_frame.
        debug_assert!(self.peer_max_frame >= MAX_FRAME);
        match indexed {
            Some(b) => {
                frame_head(out, 1, HEADERS, END_STREAM | END_HEADERS, stream);
                out.push(b);
            }
            None => {
                let digits = (status.min(999) as u32).to_string();
                frame_head(
                    out,
                    2 + digits.len(),
                    HEADERS,
                    END_STREAM | END_HEADERS,
                    stream,
                );
                // Literal without indexing, name = static index 8 (:status).
                out.push(0x08);
                out.push(digits.len() as u8);
                out.extend_from_slice(digits.as_bytes());
            }
        }
    }

    /// GOAWAY for a connection error (its reason as debug data).
    pub fn goaway(&self, e: &ConnError, out: &mut Vec<u8>) {
        let why = &e.why.as_bytes()[..e.why.len().min(256)];
        frame_head(out, 8 + why.len(), GOAWAY, 0, 0);
        out.extend_from_slice(&self.last_id.to_be_bytes());
        out.extend_from_slice(&e.code.to_be_bytes());
        out.extend_from_slice(why);
    }
}

/// What the sink does with a request (see [`serve`]).
pub enum Act {
    Now(u16),
    /// Answer with this future's status when it is ready (`--delay-ms`).
    Later(LocalBoxFuture<'static, u16>),
    /// Never answer (`--stall-after`).
    Hold,
    /// Drop the connection.
    Drop,
}

/// Serves one HTTP/2 connection whose preface has not been read yet:
/// `on_request` gets each request's Content-Type and body. Returns the
/// protocol error the connection was closed for, if any.
pub async fn serve<T, F>(mut io: T, mut on_request: F) -> std::io::Result<Option<ConnError>>
where
    T: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Option<&str>, &[u8]) -> Act,
{
    let mut conn = Conn::new();
    let mut rbuf = vec![0u8; READ_BUF];
    let mut filled = 0;
    let mut out = Vec::with_capacity(16 << 10);
    let mut sent = 0;
    let mut unflushed = false;
    conn.start(&mut out);
    let mut later: FuturesUnordered<LocalBoxFuture<'static, (u32, u16)>> = FuturesUnordered::new();
    // Set once the connection is to end: what it ends with.
    let mut end: Option<Option<ConnError>> = None;
    futures_lite::future::poll_fn(|cx| {
        for _ in 0..ROUNDS_PER_POLL {
            let mut progress = false;
            if end.is_none() && out.len() - sent < OUT_MAX {
                match Pin::new(&mut io).poll_read(cx, &mut rbuf[filled..]) {
                    Poll::Ready(Ok(0)) => end = Some(None),
                    Poll::Ready(Ok(n)) => {
                        progress = true;
                        filled += n;
                        let r = conn.process(&rbuf[..filled], &mut out, &mut |id, ct, body| {
                            match on_request(ct, body) {
                                Act::Now(s) => Reply::Now(s),
                                Act::Later(f) => {
                                    later.push(Box::pin(async move { (id, f.await) }));
                                    Reply::Wait
                                }
                                Act::Hold => Reply::Wait,
                                Act::Drop => Reply::Drop,
                            }
                        });
                        match r {
                            Ok((used, drop)) => {
                                rbuf.copy_within(used..filled, 0);
                                filled -= used;
                                if drop {
                                    end = Some(None);
                                }
                            }
                            Err(e) => {
                                conn.goaway(&e, &mut out);
                                end = Some(Some(e));
                            }
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            if end.is_none() {
                while let Poll::Ready(Some((stream, status))) = later.poll_next_unpin(cx) {
                    conn.answer_later(stream, status, &mut out);
                }
            }
            if sent < out.len() {
                match Pin::new(&mut io).poll_write(cx, &out[sent..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(n)) => {
                        progress = true;
                        sent += n;
                        if sent == out.len() {
                            out.clear();
                            sent = 0;
                            unflushed = true;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            if unflushed {
                match Pin::new(&mut io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => unflushed = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            if out.is_empty() && !unflushed {
                if let Some(e) = end.take() {
                    return Poll::Ready(Ok(e));
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // A client that always has more to send must not keep the
        // executor's other connections waiting: yield, to be polled again.
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Rounds of reading, answering and writing one poll of a connection may do.
const ROUNDS_PER_POLL: usize = 32;

#[cfg(test)]
#[path = "h2lite_tests.rs"]
mod tests;
