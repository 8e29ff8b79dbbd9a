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

/// The binary under test: `SLUICE_BIN` (scripts/test.sh points it at the
/// release build) or else the one cargo built for the tests.
pub fn sluice_bin() -> PathBuf {
    std::env::var_os("SLUICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice")))
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
        Sluice::start_shards(name, config, 1)
    }

    /// As [`Sluice::start`], on `shards` shards.
    pub fn start_shards(name: &str, config: &str, shards: usize) -> Sluice {
        let dir = temp_dir(name);
        let file = dir.join("sluice.yml");
        std::fs::write(&file, config).unwrap();
        let log = dir.join("stderr.log");
        let child = Command::new(sluice_bin())
            .args(["run", "--config"])
            .arg(&file)
            .args(["--shards", &shards.to_string()])
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

    /// The manage API's address (the config must give `service.manage`).
    pub fn manage(&mut self) -> SocketAddr {
        let line = self.wait_for("manage API on ");
        line.split("manage API on ")
            .nth(1)
            .and_then(|r| r.split([' ', ',']).next())
            .unwrap()
            .parse()
            .unwrap()
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

/// A sample of the manage API's `/metrics` (the first series of `name`,
/// labels or not); 0 when absent.
pub fn metric(manage: SocketAddr, name: &str) -> i64 {
    metric_in(&scrape(manage), name) as i64
}

/// The body of `GET /metrics` on the manage API at `manage`.
pub fn scrape(manage: SocketAddr) -> String {
    let mut conn = TcpStream::connect(manage).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

#[path = "../../shards/tests/common/xdr_client.rs"]
mod xdr_client;
#[allow(unused_imports)] // not every test binary sends XDR
pub use xdr_client::XdrClient;

impl Sluice {
    /// Everything the binary wrote on stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `sluice sink --json` as a child process on a port it picks; its JSON
/// summary comes from [`PerfSink::finish`] (SIGTERM). Killed on drop.
pub struct PerfSink {
    child: Child,
    pub addr: SocketAddr,
    /// Every accepted record as one JSON line, when started with a dump.
    pub dump: Option<PathBuf>,
    out: PathBuf,
    log: PathBuf,
}

impl PerfSink {
    /// Starts `sluice sink --listen 127.0.0.1:0 --json --quiet <extra>` in
    /// `dir` (with `--dump` when `dump`); returns once it listens (≤ 20 s).
    pub fn start(dir: &std::path::Path, name: &str, dump: bool, extra: &[&str]) -> PerfSink {
        let out = dir.join(format!("{name}.json"));
        let log = dir.join(format!("{name}.log"));
        let dump = dump.then(|| dir.join(format!("{name}.jsonl")));
        let mut cmd = Command::new(sluice_bin());
        cmd.args(["sink", "--listen", "127.0.0.1:0", "--json", "--quiet"])
            .args(["--duration", "600s"])
            .args(extra);
        if let Some(d) = &dump {
            cmd.arg("--dump").arg(d);
        }
        let mut child = cmd
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(a) = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("listening on "))
            {
                break a.parse().unwrap();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sink {name} exited ({status}):\n{text}");
            }
            assert!(Instant::now() < until, "sink {name} did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        PerfSink {
            child,
            addr,
            dump,
            out,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process id (to stop and continue it).
    #[allow(dead_code)] // not every test binary signals its sink
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, a bounded wait for the exit (10 s), then the JSON summary.
    pub fn finish(&mut self) -> serde_json::Value {
        signal(self.child.id(), "TERM");
        let until = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < until, "sink did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "sink summary is not JSON ({e}): {text:?}\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        })
    }

    /// The digests (hex) of the records in the dump (after [`PerfSink::finish`]).
    pub fn dumped_digests(&self) -> Vec<String> {
        let Some(d) = &self.dump else {
            return Vec::new();
        };
        std::fs::read_to_string(d)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["digest"].as_str().unwrap().to_string()
            })
            .collect()
    }
}

impl Drop for PerfSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -SIG pid`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// `sluice gen --quiet --json` against every target, with `extra`.
pub fn gen_start(targets: &[SocketAddr], extra: &[&str]) -> Child {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["gen", "--quiet", "--json"]);
    for t in targets {
        cmd.args(["--target", &t.to_string()]);
    }
    cmd.args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for gen at most `limit` (killed after it), then returns its JSON
/// summary (the last JSON line on stdout).
pub fn gen_finish(mut child: Child, limit: Duration) -> serde_json::Value {
    let until = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text.lines().rev().find(|l| l.starts_with('{'));
    match json {
        Some(j) => serde_json::from_str(j).unwrap(),
        None => panic!(
            "gen gave no summary within {limit:?} ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// VmRSS of a process in KiB (None once it is gone).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's VmRSS every 100 ms on a thread until finished.
pub struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Vec<u64>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match vm_rss_kib(pid) {
                    Some(kib) => samples.push(kib),
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        RssSampler { stop, handle }
    }

    /// The samples taken (KiB), in order.
    pub fn finish(self) -> Vec<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// What a [`ThrottlingSink`] saw.
#[derive(Debug, Default)]
pub struct ThrottleCounts {
    pub requests: u64,
    /// Records answered 200 (duplicates included).
    pub accepted: u64,
    /// Keys (the digest of the JSON `key`) answered 200 at least once.
    pub unique: std::collections::HashSet<String>,
    /// Requests answered 429 + Retry-After.
    pub throttled: u64,
    /// Bodies that were not one JSON record with a key.
    pub bad_bodies: u64,
    /// Per throttled key: when the 429 left, and when the key came back.
    pub throttled_at: HashMap<String, Instant>,
    pub came_back_after: Vec<Duration>,
}

/// An HTTP/1.1 destination on std threads for one-record JSON bodies that
/// answers the first request of every `every`-th new key with 429 and
/// `Retry-After: retry_after_s`, and everything else with 200. It records
/// how long each throttled key took to come back, so a test can check that
/// the connector honoured Retry-After.
pub struct ThrottlingSink {
    pub addr: SocketAddr,
    pub counts: Arc<Mutex<ThrottleCounts>>,
}

impl ThrottlingSink {
    pub fn start(every: u64, retry_after_s: u64) -> ThrottlingSink {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let counts = Arc::new(Mutex::new(ThrottleCounts::default()));
        let c = counts.clone();
        let new_keys = Arc::new(std::sync::atomic::AtomicU64::new(0));
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (c, n) = (c.clone(), new_keys.clone());
                std::thread::spawn(move || serve_throttling(s, &c, &n, every, retry_after_s));
            }
        });
        ThrottlingSink { addr, counts }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// One HTTP/1.1 request's body from a keep-alive connection (headers read
/// up to the blank line, `content-length` bytes of body); `None` when the
/// peer closed or the request was cut short. For the tests' own small
/// HTTP/1.1 servers.
pub fn read_request(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(body)
}

fn serve_throttling(
    s: TcpStream,
    counts: &Mutex<ThrottleCounts>,
    new_keys: &std::sync::atomic::AtomicU64,
    every: u64,
    retry_after_s: u64,
) {
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    loop {
        let Some(body) = read_request(&mut r) else {
            return;
        };
        let key = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["key"][2].as_str().map(str::to_string));
        let throttle = {
            let mut c = counts.lock().unwrap();
            c.requests += 1;
            match key {
                None => {
                    c.bad_bodies += 1;
                    None
                }
                Some(k) => {
                    let now = Instant::now();
                    if let Some(at) = c.throttled_at.get(&k).copied() {
                        if !c.unique.contains(&k) {
                            c.came_back_after.push(now - at);
                        }
                        c.accepted += 1;
                        c.unique.insert(k);
                        Some(false)
                    } else if c.unique.contains(&k) {
                        c.accepted += 1;
                        Some(false)
                    } else {
                        let n = new_keys.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        if n.is_multiple_of(every) {
                            c.throttled += 1;
                            c.throttled_at.insert(k, now);
                            Some(true)
                        } else {
                            c.accepted += 1;
                            c.unique.insert(k);
                            Some(false)
                        }
                    }
                }
            }
        };
        let resp = match throttle {
            None => "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n".to_string(),
            Some(true) => format!(
                "HTTP/1.1 429 Too Many Requests\r\nretry-after: {retry_after_s}\r\ncontent-length: 0\r\n\r\n"
            ),
            Some(false) => "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_string(),
        };
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

impl Sluice {
    /// `GET /metrics` on the manage API (the config must have `service.manage`).
    pub fn metrics(&self) -> String {
        let log = self.log_text();
        let addr: SocketAddr = log
            .lines()
            .find_map(|l| l.split("manage API on ").nth(1))
            .map(|a| a.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("no manage API in the listening line:\n{log}"));
        scrape(addr)
    }
}

/// The value of the Prometheus sample `name` in a scrape's `text` (`name`
/// may carry labels; without them, the first series of that name), 0 when
/// absent.
pub fn metric_in(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

impl Sluice {
    /// Polls /metrics (at most 20 s) until no record is in flight: a record
    /// whose copy XDR resent elsewhere may stay until its deadline, but not
    /// longer.
    pub fn wait_idle(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.metrics();
            if metric_in(&text, "sluice_records_in_flight") == 0 {
                return;
            }
            assert!(
                Instant::now() < until,
                "records stay in flight in {}:\n{text}",
                self.xdr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// gen's arguments for `records` records at `rate`, one key per record (a
/// key space of 10^11 with a fixed `seed`), 2 connections per target with
/// 512 in flight each, bounded by a duration and a grace period so that a
/// lost record ends the run instead of hanging it.
pub fn gen_unique_keys(records: u64, rate: &str, seed: &str) -> Vec<String> {
    let records = records.to_string();
    [
        "--records",
        &records,
        "--rate",
        rate,
        "--connections",
        "2",
        "--in-flight",
        "512",
        "--key-space",
        "100000000000",
        "--seed",
        seed,
        "--duration",
        "120s",
        "--grace",
        "60s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[path = "../../shards/tests/common/pki.rs"]
mod pki;
#[allow(unused_imports)] // not every test binary uses TLS
pub use pki::Pki;
