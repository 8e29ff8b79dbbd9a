//! The control thread under load: `/metrics` agrees with what the generator
//! and a destination counted, and SIGTERM under load acks nothing that was
//! not delivered and exits 0.
//!
//! The destination is a small HTTP/1.1 server in the test (keep-alive,
//! Content-Length bodies) that counts requests, so that the counts do not
//! depend on another tool's output format.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod control_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use control_support::{gen, report, sample, temp_dir, Connector};

/// Counts requests; answers 200 after `delay`.
fn sink(delay: Duration) -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { break };
            let c = c.clone();
            std::thread::spawn(move || serve(conn, &c, delay));
        }
    });
    (addr, count)
}

fn serve(conn: TcpStream, count: &AtomicU64, delay: Duration) {
    let mut out = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" && !first {
                break;
            }
            first = false;
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        std::thread::sleep(delay);
        count.fetch_add(1, Ordering::SeqCst);
        if out
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

fn start(name: &str, sink: SocketAddr) -> Connector {
    let config = format!(
        "service:\n  address: 127.0.0.1\n  port: 0\n  manage:\n    port: 0\n\
         destinations:\n  sink:\n    urls: [http://{sink}/in]\n    protocol: HTTP_1_1\n    \
         max-connections-per-endpoint: 4\n\
         routing:\n  mode: static-multi-destination\n  destinations: [sink]\n\
         logging:\n  ticker-interval: 0\n"
    );
    Connector::start(temp_dir(name), &config, &["--drain-timeout", "5"])
}

fn count(text: &str, name: &str) -> u64 {
    sample(text, name).map_or(0, |v| v as u64)
}

#[test]
fn metrics_match_what_gen_and_the_sink_counted() {
    let (sink_addr, delivered) = sink(Duration::ZERO);
    let c = start("metrics", sink_addr);
    let r = report(gen(c.xdr, &["--records", "2000", "--in-flight", "32"]));
    assert_eq!(r["acked"], 2000, "{r}");
    let text = c.metrics();
    assert_eq!(
        count(&text, "sluice_records_received_total"),
        r["sent"].as_u64().unwrap(),
        "{text}"
    );
    assert_eq!(
        count(&text, "sluice_records_acked_total{result=\"0\"}"),
        r["acked"].as_u64().unwrap(),
        "{text}"
    );
    assert_eq!(
        count(
            &text,
            "sluice_destination_responses_total{destination=\"sink\",class=\"2xx\"}"
        ),
        delivered.load(Ordering::SeqCst),
        "{text}"
    );
    assert_eq!(delivered.load(Ordering::SeqCst), 2000);
    assert_eq!(count(&text, "sluice_records_in_flight"), 0, "{text}");
    assert_eq!(
        count(
            &text,
            "sluice_destination_delivered_total{destination=\"sink\"}"
        ),
        2000,
        "{text}"
    );
    // Every record's receive → ack time, and every request's time.
    assert_eq!(
        count(&text, "sluice_ack_latency_seconds_count"),
        2000,
        "{text}"
    );
    assert_eq!(
        count(
            &text,
            "sluice_destination_request_seconds_count{destination=\"sink\"}"
        ),
        2000,
        "{text}"
    );
    assert_eq!(
        count(&text, "sluice_sessions_accepted_total"),
        r["connects"].as_u64().unwrap(),
        "{text}"
    );
}

#[test]
fn sigterm_under_load_acks_only_what_was_delivered() {
    let (sink_addr, delivered) = sink(Duration::from_millis(2));
    let mut c = start("sigterm", sink_addr);
    let g = gen(
        c.xdr,
        &["--duration", "4s", "--grace", "2s", "--in-flight", "64"],
    );
    // Wait (bounded) until records flow, then stop the connector mid-load.
    for _ in 0..600 {
        if count(&c.metrics(), "sluice_records_received_total") >= 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    c.signal("TERM");
    let status = c.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let r = report(g);
    let acked = r["acked"].as_u64().unwrap();
    assert!(acked > 0, "{r}");
    // Every record acked to XDR reached the destination first.
    assert!(
        acked <= delivered.load(Ordering::SeqCst),
        "acked {acked} > delivered {}",
        delivered.load(Ordering::SeqCst)
    );
}

#[test]
fn a_bad_reload_keeps_delivering_and_a_good_one_takes_effect() {
    let (sink_addr, delivered) = sink(Duration::ZERO);
    let c = start("reload-load", sink_addr);
    let file = c.config_file();
    let good = std::fs::read_to_string(&file).unwrap();

    std::fs::write(&file, good.replace("protocol: HTTP_1_1", "protocol: SPDY")).unwrap();
    c.signal("HUP");
    c.wait_for("config reload refused");
    let r = report(gen(c.xdr, &["--records", "200", "--in-flight", "16"]));
    assert_eq!(r["acked"], 200, "{r}");
    assert_eq!(delivered.load(Ordering::SeqCst), 200);

    // Routing `skip`: records are acked without reaching the destination.
    let skip = good.replace(
        "routing:\n  mode: static-multi-destination\n  destinations: [sink]\n",
        "routing:\n  mode: skip\n",
    );
    assert_ne!(skip, good);
    std::fs::write(&file, skip).unwrap();
    c.signal("HUP");
    c.wait_for("config reloaded");
    let r = report(gen(c.xdr, &["--records", "100", "--in-flight", "16"]));
    assert_eq!(r["acked"], 100, "{r}");
    assert_eq!(delivered.load(Ordering::SeqCst), 200);
    let text = c.metrics();
    assert_eq!(count(&text, "sluice_records_skipped_total"), 100, "{text}");
}

#[test]
fn ready_follows_the_shards_health_checks() {
    let (sink_addr, _) = sink(Duration::ZERO);
    // A port nobody listens on: bound, then released.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "service:\n  address: 127.0.0.1\n  port: 0\n  manage:\n    port: 0\n\
         destinations:\n  live:\n    urls: [http://{sink_addr}/in]\n    protocol: HTTP_1_1\n    \
         health-check:\n      interval-seconds: 1\n      unhealthy-threshold: 1\n  \
         gone:\n    urls: [http://{dead}/in]\n    protocol: HTTP_1_1\n    \
         health-check:\n      interval-seconds: 1\n      unhealthy-threshold: 1\n\
         routing:\n  mode: static-multi-destination\n  destinations: [live]\n\
         namespaces:\n  other:\n    routing:\n      mode: static-multi-destination\n      \
         destinations: [gone]\n\
         logging:\n  ticker-interval: 0\n"
    );
    let c = Connector::start(temp_dir("ready"), &config, &[]);
    let mut last = (0, String::new());
    for _ in 0..600 {
        last = c.get("/ready");
        if last.0 == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(last.0, 503, "{}", last.1);
    assert!(
        last.1.contains("`gone` has no healthy endpoint"),
        "{}",
        last.1
    );
    let text = c.metrics();
    let gone =
        format!("sluice_endpoint_healthy{{destination=\"gone\",endpoint=\"http://{dead}/in\"}}");
    let live = format!(
        "sluice_endpoint_healthy{{destination=\"live\",endpoint=\"http://{sink_addr}/in\"}}"
    );
    assert_eq!(sample(&text, &gone), Some(0.0), "{text}");
    assert_eq!(sample(&text, &live), Some(1.0), "{text}");
}
