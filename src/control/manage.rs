//! The manage API (`service.manage`): health, readiness and metrics over a
//! small blocking HTTP/1.1 server on std threads.
//!
//! This is not the hot path: a scrape every few seconds and probes from an
//! orchestrator. One thread accepts; each connection is answered on a short
//! thread and closed (`Connection: close`), so no keep-alive state is kept.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{metrics, Shared};

/// Connections answered at the same time; more get a 503 at once.
const MAX_CONNECTIONS: usize = 32;
/// A request head longer than this is cut (nothing here needs more).
const MAX_HEAD: u64 = 16 * 1024;
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n";

/// Binds the manage address and serves it on a background thread.
pub fn spawn(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("sluice-manage".into())
        .spawn(move || {
            let active = Arc::new(AtomicUsize::new(0));
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                // A bounded number of threads, whatever the clients do.
                if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::AcqRel);
                    let _ = conn.write_all(BUSY);
                    continue;
                }
                let shared = shared.clone();
                let done = active.clone();
                let spawned = std::thread::Builder::new()
                    .name("sluice-manage-conn".into())
                    .spawn(move || {
                        if let Err(e) = answer(conn, &shared) {
                            tracing::debug!("manage API connection: {e}");
                        }
                        done.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    active.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!("manage API: cannot start a thread: {e}");
                }
            }
        })?;
    Ok(local)
}

fn answer(conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?.take(MAX_HEAD));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers: nothing in them changes the answer.
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("/");
    let path = target.split('?').next().unwrap_or(target);
    let (status, content_type, body) = route(method, path, shared);
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        conn.write_all(body.as_bytes())?;
    }
    conn.flush()
}

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

fn route(method: &str, path: &str, shared: &Shared) -> (&'static str, &'static str, String) {
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", TEXT, "only GET\n".into());
    }
    match path {
        "/health" | "/manage/rest/v1/health" => ("200 OK", TEXT, "ok\n".into()),
        "/ready" | "/manage/rest/v1/ready" => match shared.readiness() {
            Ok(()) => ("200 OK", TEXT, "ready\n".into()),
            Err(why) => ("503 Service Unavailable", TEXT, format!("{why}\n")),
        },
        "/metrics" | "/manage/rest/v1/prometheus" => (
            "200 OK",
            PROMETHEUS,
            metrics::prometheus_text(shared.snapshot(), &shared.counters),
        ),
        "/manage/rest/v1/metrics" => (
            "200 OK",
            "application/json",
            metrics::json(&shared.snapshot(), &shared.counters),
        ),
        _ => ("404 Not Found", TEXT, "not found\n".into()),
    }
}
