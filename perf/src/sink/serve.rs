//! The sink's serving side: executors on one port (SO_REUSEPORT), TLS with
//! ALPN, protocol detection, HTTP/1.1 through hyper and HTTP/2 through h2,
//! and the per-request path — decode, choose the fault, count, answer.

use super::{Protocol, Shared, SinkArgs};
use crate::net::{mix, unit, Io};
use bytes::Bytes;
use futures_lite::future;
use glommio::net::{TcpListener, TcpStream};
use http_body_util::{BodyExt, Full};
use sluice_shards::rt::{GlommioTimer, HyperIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::compat::FuturesAsyncReadCompatExt;

/// Starts the executors; returns the bound address once all listen.
pub fn start(args: &SinkArgs, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    crate::net::serve_on(&args.listen, args.threads, &args.cpus, "sink", move |l| {
        accept_loop(l, shared.clone())
    })
}

async fn accept_loop(l: TcpListener, shared: Arc<Shared>) {
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
            shared.stats().refused_connections += 1;
            drop(s);
            continue;
        }
        shared.stats().connections += 1;
        let _ = s.set_nodelay(true);
        let shared = shared.clone();
        glommio::spawn_local(async move {
            if let Err(e) = connection(s, shared).await {
                tracing::debug!("sink: connection: {e}");
            }
        })
        .detach();
    }
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0";

async fn connection(s: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
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
    if h2 {
        serve_h2(io, shared).await
    } else {
        serve_h1(io, shared).await
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

/// The per-request path shared by both protocols: decode, pick the fault,
/// count, and say how to answer.
async fn handle(shared: &Shared, content_type: Option<&str>, body: &[u8], h2: bool) -> Outcome {
    let n = shared
        .request_number
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    let f = &shared.faults;
    let h = mix(f.seed ^ mix(n));
    let decoded = shared.decoder.decode(content_type, body);
    let nrecords = decoded.as_ref().map_or(0, |r| r.len() as u64);
    {
        let mut st = shared.stats();
        st.requests += 1;
        st.bytes += body.len() as u64;
        if h2 {
            st.h2_requests += 1;
        } else {
            st.h1_requests += 1;
        }
        if let Err(e) = &decoded {
            st.decode_errors += 1;
            tracing::debug!("sink: request {n}: {e}");
        }
        if f.stall_after.is_some_and(|s| n > s) {
            st.stalled += 1;
            st.rejected_records += nrecords;
            return Outcome::Stall;
        }
        if shared.is_down() || (f.reset_rate > 0.0 && unit(mix(h ^ 1)) < f.reset_rate) {
            st.resets += 1;
            st.rejected_records += nrecords;
            return Outcome::Reset;
        }
    }
    if let Some((lo, hi)) = f.delay_ms {
        let ms = lo
            + if hi > lo {
                mix(h ^ 2) % (hi - lo + 1)
            } else {
                0
            };
        if ms > 0 {
            glommio::timer::sleep(Duration::from_millis(ms)).await;
        }
    }
    let mut st = shared.stats();
    let status = if let Some(s) = f.status {
        st.forced += 1;
        s
    } else if decoded.is_err() {
        400
    } else if f.fail_rate > 0.0 && unit(mix(h ^ 3)) < f.fail_rate {
        st.failed += 1;
        503
    } else {
        200
    };
    *st.status.entry(status).or_default() += 1;
    let Ok(records) = decoded else {
        return Outcome::Answer(status);
    };
    if !(200..300).contains(&status) {
        st.rejected_records += nrecords;
        return Outcome::Answer(status);
    }
    let now = crate::net::unix_us();
    let mut lines = String::new();
    for r in &records {
        st.records += 1;
        if r.msg == "delete" {
            st.deletes += 1;
        } else {
            st.writes += 1;
        }
        if !st.unique.insert(r.digest) {
            st.duplicates += 1;
        }
        if let (Some(ts), Some(hist)) = (r.ts(&shared.ts_bin), st.hist.as_mut()) {
            hist.saturating_record(now.saturating_sub(ts).max(1));
        }
        if shared.dump.is_some() {
            lines.push_str(&r.dump_line());
            lines.push('\n');
        }
    }
    drop(st);
    if let Some(d) = &shared.dump {
        use std::io::Write as _;
        let mut d = d.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = d.write_all(lines.as_bytes()) {
            eprintln!("sluice sink: --dump: {e}");
        }
    }
    Outcome::Answer(status)
}

const OK_BODY: &[u8] = b"ok\n";

fn response(status: u16) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from_static(OK_BODY)));
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r
}

#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose (--reset-rate / --down-for)")]
struct Dropped;

async fn serve_h1(io: Io, shared: Arc<Shared>) -> std::io::Result<()> {
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let shared = shared.clone();
        async move {
            let ct = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = req.into_body().collect().await?.to_bytes();
            match handle(&shared, ct.as_deref(), &body, false).await {
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

/// Serves one HTTP/2 connection. The streams are polled by this same task,
/// next to the connection, instead of a task each: fewer wake-ups, and the
/// answers of one read go out in one write.
async fn serve_h2(io: Io, shared: Arc<Shared>) -> std::io::Result<()> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    use std::task::Poll;
    let mut conn = h2::server::Builder::new()
        .max_concurrent_streams(1024)
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake::<_, Bytes>(io.compat())
        .await
        .map_err(std::io::Error::other)?;
    let mut streams = FuturesUnordered::new();
    loop {
        let event = future::poll_fn(|cx| {
            while let Poll::Ready(Some(dropped)) = streams.poll_next_unpin(cx) {
                if dropped {
                    return Poll::Ready(None);
                }
            }
            conn.poll_accept(cx).map(Some)
        })
        .await;
        let (req, respond) = match event {
            // A stream asked for the connection to be dropped, or the client closed it.
            None | Some(None) => return Ok(()),
            Some(Some(Err(e))) => return Err(std::io::Error::other(e)),
            Some(Some(Ok(r))) => r,
        };
        streams.push(h2_stream(shared.clone(), req, respond));
    }
}

/// One request; true when the connection is to be dropped.
async fn h2_stream(
    shared: Arc<Shared>,
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) -> bool {
    let ct = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = req.into_body();
    let mut buf = Vec::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return false };
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
    }
    match handle(&shared, ct.as_deref(), &buf, true).await {
        Outcome::Answer(s) => {
            let mut r = http::Response::new(());
            *r.status_mut() =
                http::StatusCode::from_u16(s).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
            if let Ok(mut send) = respond.send_response(r, false) {
                let _ = send.send_data(Bytes::from_static(OK_BODY), true);
            }
            false
        }
        Outcome::Reset => true,
        Outcome::Stall => future::pending::<bool>().await,
    }
}
