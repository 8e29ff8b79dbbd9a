//! Helpers for the integration tests of the real binary: `sluice run` with a
//! config written to a temp dir (killed on drop, every wait bounded), a
//! scripted HTTP/1.1 sink on std threads, and an XDR client that sends
//! frames and reads acks in order. Everything binds 127.0.0.1.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_codec::build::{BinSpec, Key, Message, ValueSpec};

/// A fresh temp dir for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `sluice run` on one shard; killed when dropped.
pub struct Sluice {
    child: Child,
    pub dir: PathBuf,
    pub xdr: SocketAddr,
    log: PathBuf,
}

impl Sluice {
    /// Writes `config` and starts the binary; returns once it prints its
    /// listening line (at most 20 s).
    pub fn start(name: &str, config: &str) -> Sluice {
        let dir = temp_dir(name);
        let file = dir.join("sluice.yml");
        std::fs::write(&file, config).unwrap();
        let log = dir.join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--config"])
            .arg(&file)
            .args(["--shards", "1"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Sluice {
            child,
            dir,
            xdr: "127.0.0.1:1".parse().unwrap(),
            log,
        };
        let line = s.wait_for("listening on ");
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split([' ', ',']).next())
            .unwrap();
        s.xdr = addr.parse().unwrap();
        s
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first stderr line containing `what` (waits at most 20 s).
    pub fn wait_for(&mut self, what: &str) -> String {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(what)) {
                return line.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sluice exited ({status}) before printing {what:?}:\n{text}");
            }
            assert!(Instant::now() < until, "no {what:?} in 20 s:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the sink answers to one request (path, body): status and delay.
pub type Script = Arc<dyn Fn(&str, &[u8]) -> (u16, Duration) + Send + Sync>;

pub fn always(status: u16) -> Script {
    Arc::new(move |_, _| (status, Duration::ZERO))
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// An HTTP/1.1 keep-alive server on std threads (one per connection).
pub struct Sink {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Request>>>,
}

impl Sink {
    pub fn start(script: Script) -> Sink {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (rec, script) = (rec.clone(), script.clone());
                std::thread::spawn(move || serve(s, &rec, &script));
            }
        });
        Sink { addr, received }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.received.lock().unwrap().clone()
    }

    pub fn on(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

fn serve(s: TcpStream, rec: &Mutex<Vec<Request>>, script: &Script) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let (status, delay) = script(&path, &body);
        rec.lock().unwrap().push(Request {
            method,
            path,
            headers,
            body,
        });
        std::thread::sleep(delay);
        let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// A write of namespace `test`, set `set`, string key `k{gen}`, bins
/// `i` = gen and `s` = "v{gen}", generation `gen`.
pub fn record(set: &str, gen: u32) -> Vec<u8> {
    let mut m = Message::write_record(
        "test",
        Some(set),
        Some(Key::Str(format!("k{gen}"))),
        vec![
            BinSpec::new("i", ValueSpec::Int(i64::from(gen))),
            BinSpec::new("s", ValueSpec::Str(format!("v{gen}"))),
        ],
    );
    m.generation = gen;
    m.to_vec().unwrap()
}

#[path = "../../shards/tests/common/xdr_client.rs"]
mod xdr_client;
#[allow(unused_imports)] // not every test binary sends XDR
pub use xdr_client::XdrClient;

#[path = "../../shards/tests/common/pki.rs"]
mod pki;
#[allow(unused_imports)] // not every test binary uses TLS
pub use pki::Pki;
