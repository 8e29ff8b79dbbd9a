//! The control thread under load: `/metrics` agrees with what the generator
//! and a destination counted, and SIGTERM under load acks nothing that was
//! not delivered and exits 0.
//!
//! The destination is a small HTTP/1.1 server in the test (keep-alive,
//! Content-Length bodies) that counts requests, so that the counts do not
//! depend on another tool's output format.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

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

struct Connector {
    child: Child,
    lines: mpsc::Receiver<String>,
    dir: PathBuf,
    xdr: SocketAddr,
    manage: SocketAddr,
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(name: &str, sink: SocketAddr) -> Connector {
    let dir = std::env::temp_dir().join(format!("sluice-load-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "service:\n  address: 127.0.0.1\n  port: 0\n  manage:\n    port: 0\n\
         destinations:\n  sink:\n    urls: [http://{sink}/in]\n    protocol: HTTP_1_1\n    \
         max-connections-per-endpoint: 4\n\
         routing:\n  mode: static-multi-destination\n  destinations: [sink]\n\
         logging:\n  ticker-interval: 0\n"
    );
    std::fs::write(dir.join("sluice.yml"), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--shards", "1", "--drain-timeout", "5", "--config"])
        .arg(dir.join("sluice.yml"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let line = loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if l.contains("listening on ") => break l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("sluice did not start:\n{}", seen.join("\n")),
        }
    };
    let xdr = line.split("listening on ").nth(1).unwrap();
    let xdr: SocketAddr = xdr.split([',', ' ']).next().unwrap().parse().unwrap();
    let manage: SocketAddr = line
        .rsplit("manage API on ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    Connector {
        child,
        lines,
        dir,
        xdr,
        manage,
    }
}

fn metrics(addr: SocketAddr) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn gen(target: SocketAddr, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["gen", "--quiet", "--json", "--target", &target.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn report(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}");
    serde_json::from_str(json).unwrap()
}

#[test]
fn metrics_match_what_gen_and_the_sink_counted() {
    let (sink_addr, delivered) = sink(Duration::ZERO);
    let c = start("metrics", sink_addr);
    let r = report(gen(c.xdr, &["--records", "2000", "--in-flight", "32"]));
    assert_eq!(r["acked"], 2000, "{r}");
    let text = metrics(c.manage);
    assert_eq!(
        sample(&text, "sluice_records_received_total"),
        r["sent"].as_u64().unwrap(),
        "{text}"
    );
    assert_eq!(
        sample(&text, "sluice_records_acked_total{result=\"0\"}"),
        r["acked"].as_u64().unwrap(),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "sluice_destination_responses_total{destination=\"sink\",class=\"2xx\"}"
        ),
        delivered.load(Ordering::SeqCst),
        "{text}"
    );
    assert_eq!(delivered.load(Ordering::SeqCst), 2000);
    assert_eq!(sample(&text, "sluice_records_in_flight"), 0, "{text}");
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
        if sample(&metrics(c.manage), "sluice_records_received_total") >= 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let ok = Command::new("kill")
        .args(["-TERM", &c.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
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
    let _ = &c.lines;
}
