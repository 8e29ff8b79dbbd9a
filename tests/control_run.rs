//! `sluice run` under the control thread: the listening line, the manage
//! API, SIGHUP reloads (a bad file keeps the running plan), and a clean exit
//! on SIGTERM.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Connector {
    child: Child,
    lines: mpsc::Receiver<String>,
    dir: PathBuf,
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const CONFIG: &str = "\
service:
  address: 127.0.0.1
  port: 0
  manage:
    port: 0
destinations:
  sink:
    urls: [http://127.0.0.1:9/x]
    call-timeout: 1500
routing:
  mode: static-multi-destination
  destinations: [sink]
logging:
  ticker-interval: 0
";

impl Connector {
    fn start(name: &str) -> Connector {
        let dir =
            std::env::temp_dir().join(format!("sluice-control-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("sluice.yml"), CONFIG).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--shards", "1", "--drain-timeout", "2", "--config"])
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
        Connector { child, lines, dir }
    }

    /// The first stderr line containing `what` (bounded wait).
    fn wait_for(&self, what: &str) -> String {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(what) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line with {what:?}; stderr so far:\n{}", seen.join("\n")),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    (status, text.split_once("\r\n\r\n").unwrap().1.to_owned())
}

/// The value of a sample line `name value` in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn reload_metrics_and_clean_exit() {
    let mut c = Connector::start("reload");
    let line = c.wait_for("listening on");
    assert!(line.contains("with 1 shard"), "{line}");
    let manage: SocketAddr = line
        .rsplit("manage API on ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(get(manage, "/health").0, 200);
    let (status, text) = get(manage, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(sample(&text, "sluice_shards"), Some(1.0), "{text}");

    // A bad file: refused, counted, logged; the manage API keeps answering.
    let file = c.dir.join("sluice.yml");
    std::fs::write(
        &file,
        CONFIG.replace("call-timeout: 1500", "call-timeout: soon"),
    )
    .unwrap();
    c.signal("HUP");
    let refused = c.wait_for("config reload refused");
    assert!(
        refused.contains("destinations.sink.call-timeout"),
        "{refused}"
    );
    let (_, text) = get(manage, "/metrics");
    assert_eq!(
        sample(&text, "sluice_config_reloads_total{result=\"failed\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "sluice_config_reloads_total{result=\"ok\"}"),
        Some(0.0)
    );

    // A good file: taken.
    std::fs::write(
        &file,
        CONFIG.replace("call-timeout: 1500", "call-timeout: 900"),
    )
    .unwrap();
    c.signal("HUP");
    c.wait_for("config reloaded");
    let (_, text) = get(manage, "/metrics");
    assert_eq!(
        sample(&text, "sluice_config_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );

    c.signal("TERM");
    let status = c.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_second_signal_exits_at_once() {
    // A destination that accepts connections and never answers keeps
    // records in flight, so the drain would last its whole timeout.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_addr = hole.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hole.incoming() {
            held.push(conn);
        }
    });
    let dir = std::env::temp_dir().join(format!("sluice-control-twice-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = CONFIG
        .replace("http://127.0.0.1:9/x", &format!("http://{hole_addr}/x"))
        .replace(
            "call-timeout: 1500",
            "call-timeout: 60000\n    protocol: HTTP_1_1",
        );
    std::fs::write(dir.join("sluice.yml"), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--shards", "1", "--drain-timeout", "60", "--config"])
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
            let _ = tx.send(line);
        }
    });
    let c = Connector { child, lines, dir };
    let line = c.wait_for("listening on");
    let xdr = line.split("listening on ").nth(1).unwrap();
    let xdr = xdr.split([',', ' ']).next().unwrap().to_owned();
    let manage: SocketAddr = line
        .rsplit("manage API on ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut gen = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "gen",
            "--quiet",
            "--target",
            &xdr,
            "--records",
            "20",
            "--in-flight",
            "20",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until records are held in flight.
    for _ in 0..600 {
        let (_, text) = get(manage, "/metrics");
        if sample(&text, "sluice_records_in_flight").unwrap_or(0.0) > 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    c.signal("TERM");
    c.wait_for("shutting down");
    c.signal("TERM");
    let mut c = c;
    let status = c.child.wait().unwrap();
    let _ = gen.kill();
    let _ = gen.wait();
    assert_eq!(status.code(), Some(130));
}
