//! The sink's serving side: executors on one port (SO_REUSEPORT), TLS with
//! ALPN, protocol detection, HTTP/1.1 through hyper and HTTP/2 through the
//! sink's own server ([`h2lite`], the default) or the h2 crate
//! (`--h2-server h2`), and the per-request path — decode, choose the fault,
//! count, answer.
//!
//! HTTP/2 is served for throughput: a connection's requests are answered in
//! its own task, synchronously when the body is complete (the common case),
//! and the answers of one round go out in one write (h2lite does so by
//! design; under h2 see [`Coalesce`]).

use super::decode::Rec;
use super::h2lite::{self, Act};
use super::scan::Brief;
use super::{H2Server, Protocol, Shared, SinkArgs};
use crate::net::{mix, unit, Io};
use bytes::Bytes;
use futures_lite::future;
use futures_util::future::LocalBoxFuture;
use glommio::net::{TcpListener, TcpStream};
use http_body_util::{BodyExt, Full};
use sluice_shards::rt::{GlommioTimer, HyperIo};
use std::cell::Cell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Starts the executors; returns the bound address once all listen.
pub fn start(args: &SinkArgs, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    crate::net::serve_on(&args.listen, args.threads, &args.cpus, "sink", move |l| {
        accept_loop(l, shared.clone())
    })
}

async fn accept_loop(l: TcpListener, shared: Arc<Shared>) {
    let slot = shared.take_slot();
    loop {
        let s = match l.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sluice sink: accept: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.is_down() {
            shared.counts(slot).refused_connections += 1;
            drop(s);
            continue;
        }
        shared.counts(slot).connections += 1;
        let _ = s.set_nodelay(true);
        let shared = shared.clone();
        glommio::spawn_local(async move {
            if let Err(e) = connection(s, shared, slot).await {
                tracing::debug!("sink: connection: {e}");
            }
        })
        .detach();
    }
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0";

async fn connection(s: TcpStream, shared: Arc<Shared>, slot: usize) -> std::io::Result<()> {
    let (io, h2) = match &shared.tls {
        Some(cfg) => {
            let tls = futures_rustls::TlsAcceptor::from(cfg.clone())
                .accept(s)
                .await?;
            let alpn_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let h2 = match shared.protocol {
                Protocol::H1 => false,
                Protocol::H2c => true,
                Protocol::Auto => alpn_h2,
            };
            (Io::Server(Box::new(tls)), h2)
        }
        None => {
            let h2 = match shared.protocol {
                Protocol::H1 => false,
                Protocol::H2c => true,
                Protocol::Auto => sniff_h2(&s).await?,
            };
            (Io::Plain(s), h2)
        }
    };
    if h2 && shared.h2_server == H2Server::Lite {
        serve_lite(io, shared, slot).await
    } else if h2 {
        serve_h2(io, shared, slot).await
    } else {
        serve_h1(io, shared, slot).await
    }
}

/// Peeks until the first bytes tell an HTTP/2 preface from an HTTP/1.1 request line.
async fn sniff_h2(s: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 14];
    for _ in 0..200 {
        let n = s.peek(&mut buf).await?;
        if n == 0 {
            return Ok(false);
        }
        if !PREFACE.starts_with(&buf[..n.min(PREFACE.len())]) {
            return Ok(false);
        }
        if n >= 3 {
            return Ok(true);
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    Ok(false)
}

/// What to do with one request.
enum Outcome {
    Answer(u16),
    /// Drop the connection without an answer.
    Reset,
    /// Never answer.
    Stall,
}

/// A request read in full and counted as arrived; its answer is to come.
struct Arrival {
    /// The request's fault dice.
    h: u64,
    decoded: bool,
    briefs: Vec<Brief>,
    /// The full records, for `--dump` only.
    dump: Option<Vec<Rec>>,
}

/// Decodes and counts a request and rolls its faults: the arrival, or
/// the outcome when the request is stalled or its connection reset.
fn arrive(
    shared: &Shared,
    slot: usize,
    content_type: Option<&str>,
    body: &[u8],
    h2: bool,
) -> Result<Arrival, Outcome> {
    let n = shared
        .request_number
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    let f = &shared.faults;
    let h = mix(f.seed ^ mix(n));
    let mut briefs = Vec::new();
    let (decoded, dump) = if shared.dump.is_some() {
        // --dump needs every bin: the full decoder.
        match shared.decoder.decode(content_type, body) {
            Ok(recs) => {
                briefs.extend(recs.iter().map(|r| r.brief(&shared.ts_bin)));
                (Ok(()), Some(recs))
            }
            Err(e) => (Err(e), None),
        }
    } else {
        let r = shared
            .decoder
            .brief(content_type, body, &shared.ts_bin, &mut briefs);
        (r, None)
    };
    let nrecords = briefs.len() as u64;
    let mut c = shared.counts(slot);
    c.requests += 1;
    c.bytes += body.len() as u64;
    if h2 {
        c.h2_requests += 1;
    } else {
        c.h1_requests += 1;
    }
    if let Err(e) = &decoded {
        c.decode_errors += 1;
        tracing::debug!("sink: request {n}: {e}");
    }
    if f.stall_after.is_some_and(|s| n > s) {
        c.stalled += 1;
        c.rejected_records += nrecords;
        return Err(Outcome::Stall);
    }
    if shared.is_down() || (f.reset_rate > 0.0 && unit(mix(h ^ 1)) < f.reset_rate) {
        c.resets += 1;
        c.rejected_records += nrecords;
        return Err(Outcome::Reset);
    }
    Ok(Arrival {
        h,
        decoded: decoded.is_ok(),
        briefs,
        dump,
    })
}

impl Arrival {
    /// `--delay-ms` for this request.
    fn delay(&self, shared: &Shared) -> Option<Duration> {
        let (lo, hi) = shared.faults.delay_ms?;
        let ms = lo
            + if hi > lo {
                mix(self.h ^ 2) % (hi - lo + 1)
            } else {
                0
            };
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// Chooses the status and counts the answer and its records.
    fn answer(self, shared: &Shared, slot: usize) -> u16 {
        let f = &shared.faults;
        let mut c = shared.counts(slot);
        let status = if let Some(s) = f.status {
            c.forced += 1;
            s
        } else if !self.decoded {
            400
        } else if f.fail_rate > 0.0 && unit(mix(self.h ^ 3)) < f.fail_rate {
            c.failed += 1;
            503
        } else {
            200
        };
        c.answered(status);
        if !self.decoded {
            return status;
        }
        if !(200..300).contains(&status) {
            c.rejected_records += self.briefs.len() as u64;
            return status;
        }
        let mut now = None;
        for b in &self.briefs {
            c.records += 1;
            if b.delete {
                c.deletes += 1;
            } else {
                c.writes += 1;
            }
            if !shared.unique.insert(&b.digest) {
                c.duplicates += 1;
            }
            if let Some(ts) = b.ts {
                let now = *now.get_or_insert_with(crate::net::unix_us);
                c.hist.saturating_record(now.saturating_sub(ts).max(1));
            }
        }
        drop(c);
        if let (Some(d), Some(recs)) = (&shared.dump, &self.dump) {
            use std::io::Write as _;
            let mut lines = String::new();
            for r in recs {
                lines.push_str(&r.dump_line());
                lines.push('\n');
            }
            let mut d = d.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = d.write_all(lines.as_bytes()) {
                eprintln!("sluice sink: --dump: {e}");
            }
        }
        status
    }
}

/// The per-request path shared by both protocols: decode, pick the fault,
/// count, and say how to answer.
async fn handle(
    shared: &Shared,
    slot: usize,
    content_type: Option<&str>,
    body: &[u8],
    h2: bool,
) -> Outcome {
    let a = match arrive(shared, slot, content_type, body, h2) {
        Ok(a) => a,
        Err(o) => return o,
    };
    if let Some(d) = a.delay(shared) {
        glommio::timer::sleep(d).await;
    }
    Outcome::Answer(a.answer(shared, slot))
}

const OK_BODY: &[u8] = b"ok\n";

fn status_code(status: u16) -> http::StatusCode {
    http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
}

fn response(status: u16) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from_static(OK_BODY)));
    *r.status_mut() = status_code(status);
    r
}

#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose (--reset-rate / --down-for)")]
struct Dropped;

async fn serve_h1(io: Io, shared: Arc<Shared>, slot: usize) -> std::io::Result<()> {
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let shared = shared.clone();
        async move {
            let ct = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = req.into_body().collect().await?.to_bytes();
            match handle(&shared, slot, ct.as_deref(), &body, false).await {
                Outcome::Answer(s) => Ok(response(s)),
                Outcome::Reset => {
                    Err(Box::new(Dropped) as Box<dyn std::error::Error + Send + Sync>)
                }
                Outcome::Stall => future::pending().await,
            }
        }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(GlommioTimer)
        .keep_alive(true)
        .serve_connection(HyperIo(io), svc)
        .await
        .map_err(std::io::Error::other)
}

/// Serves one HTTP/2 connection with the sink's own server ([`h2lite`]):
/// requests whose answer is not delayed are answered while their frames
/// are processed.
async fn serve_lite(io: Io, shared: Arc<Shared>, slot: usize) -> std::io::Result<()> {
    let sh = shared.clone();
    let closed = h2lite::serve(io, move |ct, body| {
        match arrive(&sh, slot, ct, body, true) {
            Err(Outcome::Reset) => Act::Drop,
            // `arrive` refuses only to reset or to stall: stalled, never answer.
            Err(_) => Act::Hold,
            Ok(a) => match a.delay(&sh) {
                Some(d) => {
                    let sh = sh.clone();
                    Act::Later(Box::pin(async move {
                        glommio::timer::sleep(d).await;
                        a.answer(&sh, slot)
                    }))
                }
                None => Act::Now(a.answer(&sh, slot)),
            },
        }
    })
    .await?;
    if let Some(e) = closed {
        shared.counts(slot).h2_protocol_errors += 1;
        eprintln!("sluice sink: HTTP/2 connection closed: {e}");
    }
    Ok(())
}

/// Bytes h2 wrote and the socket has not taken yet, at most this much
/// before a write waits for the socket.
const COALESCE_MAX: usize = 256 * 1024;

/// The stream under h2 (tokio's traits over [`Io`]), which coalesces
/// writes: h2 flushes at the end of every poll of its connection, and
/// `poll_accept` polls the connection once per request, so each answer
/// would leave in its own `send` (the profile: one syscall per request,
/// most of the CPU in the kernel's TCP send path). While `hold` is set a
/// flush only keeps the bytes; the connection's task clears it for its
/// last poll of a round, and that flush writes the whole round at once.
struct Coalesce {
    io: Io,
    out: Vec<u8>,
    at: usize,
    hold: Rc<Cell<bool>>,
}

impl Coalesce {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        use futures_lite::AsyncWrite as _;
        while self.at < self.out.len() {
            let n = match Pin::new(&mut self.io).poll_write(cx, &self.out[self.at..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            self.at += n;
        }
        self.out.clear();
        self.at = 0;
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncRead for Coalesce {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        use futures_lite::AsyncRead as _;
        let this = self.get_mut();
        let dst = buf.initialize_unfilled();
        match Pin::new(&mut this.io).poll_read(cx, dst) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncWrite for Coalesce {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() - this.at >= COALESCE_MAX {
            // Enough held: the peer must take some first (backpressure).
            match this.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if this.out.len() - this.at >= COALESCE_MAX => return Poll::Pending,
                Poll::Pending => {}
            }
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        use futures_lite::AsyncWrite as _;
        let this = self.get_mut();
        if this.hold.get() {
            return Poll::Ready(Ok(()));
        }
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        use futures_lite::AsyncWrite as _;
        let this = self.get_mut();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_close(cx),
            other => other,
        }
    }
}

/// Serves one HTTP/2 connection in one task. A round: take every request
/// the connection has ready, answer those whose body is complete right
/// away (the others, and delayed answers, wait in `later`), run `later`,
/// then poll the connection once more with writes released, so the
/// round's answers leave together.
async fn serve_h2(io: Io, shared: Arc<Shared>, slot: usize) -> std::io::Result<()> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let hold = Rc::new(Cell::new(false));
    let io = Coalesce {
        io,
        out: Vec::with_capacity(16 * 1024),
        at: 0,
        hold: hold.clone(),
    };
    let mut conn = h2::server::Builder::new()
        .max_concurrent_streams(1024)
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(std::io::Error::other)?;
    let mut later: FuturesUnordered<LocalBoxFuture<'static, bool>> = FuturesUnordered::new();
    future::poll_fn(|cx| loop {
        hold.set(true);
        loop {
            match accept_one(&mut conn, &shared, slot, &mut later, cx) {
                Accepted::One => {}
                Accepted::Idle => break,
                Accepted::End(r) => return Poll::Ready(r),
            }
        }
        while let Poll::Ready(Some(dropped)) = later.poll_next_unpin(cx) {
            // A stream asked for the connection to be dropped.
            if dropped {
                return Poll::Ready(Ok(()));
            }
        }
        hold.set(false);
        match accept_one(&mut conn, &shared, slot, &mut later, cx) {
            Accepted::One => {}
            Accepted::Idle => return Poll::Pending,
            Accepted::End(r) => return Poll::Ready(r),
        }
    })
    .await
}

/// What one poll of the connection gave.
enum Accepted {
    One,
    Idle,
    /// The client closed the connection, it failed, or a request asked for it to be dropped.
    End(std::io::Result<()>),
}

/// Polls the connection (reads what came, writes what is queued) and takes one new request.
fn accept_one(
    conn: &mut h2::server::Connection<Coalesce, Bytes>,
    shared: &Arc<Shared>,
    slot: usize,
    later: &mut futures_util::stream::FuturesUnordered<LocalBoxFuture<'static, bool>>,
    cx: &mut Context<'_>,
) -> Accepted {
    match conn.poll_accept(cx) {
        Poll::Ready(Some(Ok((req, respond)))) => match start_stream(shared, slot, req, respond, cx)
        {
            Started::Done => Accepted::One,
            Started::Drop => Accepted::End(Ok(())),
            Started::Later(f) => {
                later.push(f);
                Accepted::One
            }
        },
        Poll::Ready(Some(Err(e))) => Accepted::End(Err(std::io::Error::other(e))),
        Poll::Ready(None) => Accepted::End(Ok(())),
        Poll::Pending => Accepted::Idle,
    }
}

/// What became of a new stream.
enum Started {
    /// Answered (or the client gave up on it).
    Done,
    /// Drop the connection (`--reset-rate`, `--down-for`).
    Drop,
    /// To finish later: the body is still coming, or the answer is delayed.
    Later(LocalBoxFuture<'static, bool>),
}

/// A request body: the first chunk as h2 gave it (no copy), the rest appended.
#[derive(Default)]
struct BodyBuf {
    first: Bytes,
    joined: Vec<u8>,
}

impl BodyBuf {
    fn push(&mut self, chunk: Bytes) {
        if self.joined.is_empty() && self.first.is_empty() {
            self.first = chunk;
            return;
        }
        if self.joined.is_empty() {
            self.joined.extend_from_slice(&self.first);
        }
        self.joined.extend_from_slice(&chunk);
    }

    fn as_slice(&self) -> &[u8] {
        if self.joined.is_empty() {
            &self.first
        } else {
            &self.joined
        }
    }
}

/// Takes a new stream: reads the body that has arrived and, when it is
/// complete, answers now, in the connection's poll.
fn start_stream(
    shared: &Arc<Shared>,
    slot: usize,
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    cx: &mut Context<'_>,
) -> Started {
    let (head, mut body) = req.into_parts();
    let ct = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let mut buf = BodyBuf::default();
    loop {
        match body.poll_data(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                buf.push(chunk);
            }
            // The client reset the stream: nothing to answer.
            Poll::Ready(Some(Err(_))) => return Started::Done,
            Poll::Ready(None) => break,
            Poll::Pending => {
                let ct = ct.map(str::to_string);
                return Started::Later(Box::pin(h2_later(
                    shared.clone(),
                    slot,
                    ct,
                    body,
                    buf,
                    respond,
                )));
            }
        }
    }
    match arrive(shared, slot, ct, buf.as_slice(), true) {
        Err(Outcome::Reset) => Started::Drop,
        // `arrive` refuses only to reset or to stall: stalled, hold the stream and never answer.
        Err(_) => Started::Later(Box::pin(async move {
            let _respond = respond;
            future::pending::<bool>().await
        })),
        Ok(a) => match a.delay(shared) {
            Some(d) => {
                let shared = shared.clone();
                Started::Later(Box::pin(async move {
                    glommio::timer::sleep(d).await;
                    let s = a.answer(&shared, slot);
                    send_answer(&mut respond, s);
                    false
                }))
            }
            None => {
                let s = a.answer(shared, slot);
                send_answer(&mut respond, s);
                Started::Done
            }
        },
    }
}

/// A stream whose body was still coming; true when the connection is to be dropped.
async fn h2_later(
    shared: Arc<Shared>,
    slot: usize,
    ct: Option<String>,
    mut body: h2::RecvStream,
    mut buf: BodyBuf,
    mut respond: h2::server::SendResponse<Bytes>,
) -> bool {
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return false };
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.push(chunk);
    }
    match handle(&shared, slot, ct.as_deref(), buf.as_slice(), true).await {
        Outcome::Answer(s) => {
            send_answer(&mut respond, s);
            false
        }
        Outcome::Reset => true,
        Outcome::Stall => future::pending::<bool>().await,
    }
}

fn send_answer(respond: &mut h2::server::SendResponse<Bytes>, status: u16) {
    let mut r = http::Response::new(());
    *r.status_mut() = status_code(status);
    if let Ok(mut send) = respond.send_response(r, false) {
        let _ = send.send_data(Bytes::from_static(OK_BODY), true);
    }
}
