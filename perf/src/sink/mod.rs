//! `sluice sink`: acts like an HTTP destination, and is the tests' exact
//! oracle. Serves HTTP/1.1, h2c (prior knowledge) and HTTPS with ALPN on
//! glommio; decodes every body in the project's formats; counts requests,
//! records, bytes, unique keys (by digest) and duplicates, and the
//! end-to-end latency from the generator's timestamp bin. A record counts
//! as delivered only when the sink answered 2xx for its request. Faults
//! (5xx, forced status, delays, connection resets, stalls, downtime) are
//! chosen per request from `--seed`, and each one is counted.

pub mod decode;
pub mod h2lite;
pub mod scan;
mod serve;

use crate::hist::{self, Hist};
use decode::{Decoder, Format};
use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct SinkArgs {
    /// Address to listen on (port 0: any free port, printed on stderr).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// h1, h2c (prior knowledge) or auto (detects the HTTP/2 preface; with TLS, ALPN decides).
    #[arg(long, value_enum, default_value_t = Protocol::Auto)]
    pub protocol: Protocol,
    /// The HTTP/2 server: lite (the sink's own, leaner) or h2 (the h2 crate).
    #[arg(long, value_enum, default_value_t = H2Server::Lite)]
    pub h2_server: H2Server,
    /// Certificate chain (PEM): serve HTTPS with ALPN h2, http/1.1.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Body format; auto picks by Content-Type.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Avro schema (JSON) of the bodies; default: sluice's default schema.
    #[arg(long)]
    pub schema_file: Option<PathBuf>,
    /// flat-json's metadata key.
    #[arg(long, default_value = "metadata")]
    pub metadata_key: String,
    /// The bin holding the generator's send time (Unix µs).
    #[arg(long, default_value = "sluice_ts")]
    pub ts_bin: String,
    /// Write every accepted record as one JSON line.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Exit after this long (e.g. 30s).
    #[arg(long, allow_hyphen_values = true)]
    pub duration: Option<String>,
    /// Exit once this many unique keys have arrived.
    #[arg(long, allow_hyphen_values = true)]
    pub expect: Option<u64>,
    /// Executors (threads), all on the same port (SO_REUSEPORT).
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub threads: usize,
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub cpus: Vec<usize>,
    /// Fraction of requests answered 503.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub fail_rate: f64,
    /// Answer every request with this status.
    #[arg(long, allow_hyphen_values = true)]
    pub status: Option<u16>,
    /// Delay before answering, ms: fixed ("5") or a uniform spread ("5-50").
    #[arg(long, allow_hyphen_values = true)]
    pub delay_ms: Option<String>,
    /// Fraction of requests whose connection is dropped instead of answered.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub reset_rate: f64,
    /// Answer the first N requests, then none.
    #[arg(long, allow_hyphen_values = true)]
    pub stall_after: Option<u64>,
    /// Refuse connections (and drop open ones) for this many seconds…
    #[arg(long, allow_hyphen_values = true)]
    pub down_for: Option<f64>,
    /// …starting this many seconds after start.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub down_at: f64,
    /// Seed of the per-request fault choice.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub seed: u64,
    /// Print the summary as JSON on stdout at exit.
    #[arg(long)]
    pub json: bool,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Write the latency percentile distribution (HdrHistogram text format).
    #[arg(long)]
    pub hist_out: Option<PathBuf>,
    /// Draw latency by percentile as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum H2Server {
    H2,
    Lite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    H1,
    H2c,
    Auto,
}

/// A flag that makes no sense, with its name.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("--{flag}: {why}")]
    Flag { flag: &'static str, why: String },
    #[error("TLS: {0}")]
    Tls(#[from] sluice_shards::tls::TlsError),
}

fn bad(flag: &'static str, why: impl Into<String>) -> SinkError {
    SinkError::Flag {
        flag,
        why: why.into(),
    }
}

/// Faults, checked.
#[derive(Clone, Debug)]
pub struct Faults {
    pub fail_rate: f64,
    pub status: Option<u16>,
    pub delay_ms: Option<(u64, u64)>,
    pub reset_rate: f64,
    pub stall_after: Option<u64>,
    pub down: Option<(Duration, Duration)>,
    pub seed: u64,
}

/// Everything the serving side needs, shared by the executors.
pub struct Shared {
    pub decoder: Decoder,
    pub faults: Faults,
    pub protocol: Protocol,
    pub h2_server: H2Server,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub ts_bin: String,
    pub started: Instant,
    pub request_number: AtomicU64,
    /// One set of counts per executor, merged when reported: an executor
    /// only ever takes its own lock (the reporter's once a second aside).
    slots: Vec<Mutex<Counts>>,
    next_slot: AtomicUsize,
    pub unique: Unique,
    pub dump: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

/// What one executor counted.
pub struct Counts {
    pub connections: u64,
    pub refused_connections: u64,
    pub requests: u64,
    pub h1_requests: u64,
    pub h2_requests: u64,
    pub bytes: u64,
    /// Records in requests answered 2xx.
    pub records: u64,
    pub writes: u64,
    pub deletes: u64,
    pub duplicates: u64,
    /// Records in requests not answered 2xx (or not answered at all).
    pub rejected_records: u64,
    /// Answers by status code (index: the code).
    pub status: Vec<u64>,
    pub forced: u64,
    pub failed: u64,
    pub resets: u64,
    pub stalled: u64,
    pub decode_errors: u64,
    /// HTTP/2 connections closed with a GOAWAY for a protocol error (h2lite).
    pub h2_protocol_errors: u64,
    pub hist: Hist,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            connections: 0,
            refused_connections: 0,
            requests: 0,
            h1_requests: 0,
            h2_requests: 0,
            bytes: 0,
            records: 0,
            writes: 0,
            deletes: 0,
            duplicates: 0,
            rejected_records: 0,
            status: vec![0; 600],
            forced: 0,
            failed: 0,
            resets: 0,
            stalled: 0,
            decode_errors: 0,
            h2_protocol_errors: 0,
            hist: hist::new_hist(),
        }
    }
}

impl Counts {
    /// Counts an answer (statuses are checked to be 100..=599).
    pub fn answered(&mut self, status: u16) {
        if let Some(n) = self.status.get_mut(usize::from(status)) {
            *n += 1;
        }
    }

    fn add(&mut self, o: &Counts) {
        self.connections += o.connections;
        self.refused_connections += o.refused_connections;
        self.requests += o.requests;
        self.h1_requests += o.h1_requests;
        self.h2_requests += o.h2_requests;
        self.bytes += o.bytes;
        self.records += o.records;
        self.writes += o.writes;
        self.deletes += o.deletes;
        self.duplicates += o.duplicates;
        self.rejected_records += o.rejected_records;
        for (a, b) in self.status.iter_mut().zip(&o.status) {
            *a += b;
        }
        self.forced += o.forced;
        self.failed += o.failed;
        self.resets += o.resets;
        self.stalled += o.stalled;
        self.decode_errors += o.decode_errors;
        self.h2_protocol_errors += o.h2_protocol_errors;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.hist.add(&o.hist);
    }
}

/// The unique keys (by digest), in shards picked by a digest byte so that
/// executors seldom meet on one lock.
pub struct Unique {
    shards: Vec<Mutex<HashSet<[u8; 20], DigestHash>>>,
}

const UNIQUE_SHARDS: usize = 16;

impl Unique {
    fn new() -> Self {
        Unique {
            shards: (0..UNIQUE_SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// True when the digest is new.
    pub fn insert(&self, digest: &[u8; 20]) -> bool {
        let shard = &self.shards[usize::from(digest[19]) % UNIQUE_SHARDS];
        shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*digest)
    }

    pub fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len() as u64)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Digests are RIPEMD-160 outputs, already uniform: a multiply-fold of
/// their bytes (FxHash's) is enough, and much cheaper than SipHash.
#[derive(Default, Clone, Copy)]
pub struct DigestHash;

impl std::hash::BuildHasher for DigestHash {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// What the sink counted, all executors together.
pub struct Stats {
    pub counts: Counts,
    pub unique: u64,
}

impl Stats {
    fn class(&self, lo: u16, hi: u16) -> u64 {
        self.counts.status[usize::from(lo)..usize::from(hi)]
            .iter()
            .sum()
    }

    pub fn json(&self) -> serde_json::Value {
        let c = &self.counts;
        let by_code: serde_json::Map<String, serde_json::Value> = c
            .status
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        serde_json::json!({
            "connections": c.connections,
            "refused_connections": c.refused_connections,
            "requests": c.requests,
            "h1_requests": c.h1_requests,
            "h2_requests": c.h2_requests,
            "bytes": c.bytes,
            "records": c.records,
            "writes": c.writes,
            "deletes": c.deletes,
            "unique_keys": self.unique,
            "duplicates": c.duplicates,
            "rejected_records": c.rejected_records,
            "status": {"2xx": self.class(200, 300), "4xx": self.class(400, 500), "5xx": self.class(500, 600), "forced": c.forced, "failed": c.failed, "by_code": by_code},
            "resets": c.resets,
            "stalled": c.stalled,
            "decode_errors": c.decode_errors,
            "h2_protocol_errors": c.h2_protocol_errors,
            "latency_us": hist::json(&c.hist),
        })
    }

    fn line(&self, secs: f64, last_requests: u64, last_records: u64) -> String {
        let c = &self.counts;
        format!(
            "sink: {:>8.0} req/s {:>9.0} rec/s  requests {:>9}  records {:>10}  unique {:>9}  dup {:>7}  5xx {:>6}  resets {:>5}  decode errors {:>4}  p99 {:>9.3} ms",
            (c.requests - last_requests) as f64 / secs,
            (c.records - last_records) as f64 / secs,
            c.requests,
            c.records,
            self.unique,
            c.duplicates,
            self.class(500, 600),
            c.resets,
            c.decode_errors,
            if c.hist.is_empty() { 0.0 } else { c.hist.value_at_percentile(99.0) as f64 / 1000.0 },
        )
    }
}

fn fraction(flag: &'static str, v: f64) -> Result<f64, SinkError> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(bad(flag, format!("{v} is not a fraction between 0 and 1")))
    }
}

fn parse_delay(s: &str) -> Result<(u64, u64), SinkError> {
    let num = |t: &str| {
        t.trim().parse::<u64>().map_err(|_| {
            bad(
                "delay-ms",
                format!("`{s}`: expected milliseconds, `N` or `MIN-MAX`, not negative"),
            )
        })
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(bad(
                    "delay-ms",
                    format!("`{s}`: the minimum is above the maximum"),
                ));
            }
            Ok((a, b))
        }
        None => num(s).map(|v| (v, v)),
    }
}

impl Shared {
    pub fn from_args(a: &SinkArgs) -> Result<Self, SinkError> {
        if a.threads == 0 {
            return Err(bad("threads", "must be at least 1"));
        }
        if a.cpus.len() > a.threads {
            return Err(bad(
                "cpus",
                format!("{} CPUs for {} threads", a.cpus.len(), a.threads),
            ));
        }
        hist::check_outputs(a.hist_out.as_deref(), a.plot.as_deref())
            .map_err(|(flag, why)| bad(flag, why))?;
        if let Some(s) = a.status {
            if !(100..=599).contains(&s) {
                return Err(bad("status", format!("{s} is not an HTTP status")));
            }
        }
        if let Some(d) = a.down_for {
            if !(d.is_finite() && d > 0.0) {
                return Err(bad(
                    "down-for",
                    format!("{d}: must be a positive number of seconds"),
                ));
            }
        }
        if !(a.down_at.is_finite() && a.down_at >= 0.0) {
            return Err(bad("down-at", "must be zero or positive"));
        }
        let schema_text = match &a.schema_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| bad("schema-file", format!("cannot read {}: {e}", p.display())))?,
            ),
            None if a.format == Format::Avro => {
                Some(sluice_codec::encode::avro::DEFAULT_SCHEMA.to_string())
            }
            None => Some(sluice_codec::encode::avro::DEFAULT_SCHEMA.to_string()),
        };
        let avro = schema_text
            .map(|t| {
                apache_avro::Schema::parse_str(&t)
                    .map_err(|e| bad("schema-file", format!("not an Avro schema: {e}")))
            })
            .transpose()?;
        let tls = match (&a.tls_cert, &a.tls_key) {
            (Some(c), Some(k)) => Some(sluice_shards::tls::server_config(
                c,
                k,
                a.tls_client_ca.as_deref(),
                &[b"h2", b"http/1.1"],
            )?),
            _ => None,
        };
        let dump = match &a.dump {
            Some(p) => Some(Mutex::new(std::io::BufWriter::new(
                std::fs::File::create(p)
                    .map_err(|e| bad("dump", format!("cannot create {}: {e}", p.display())))?,
            ))),
            None => None,
        };
        Ok(Shared {
            decoder: Decoder {
                format: a.format,
                metadata_key: a.metadata_key.clone(),
                avro,
            },
            faults: Faults {
                fail_rate: fraction("fail-rate", a.fail_rate)?,
                status: a.status,
                delay_ms: a.delay_ms.as_deref().map(parse_delay).transpose()?,
                reset_rate: fraction("reset-rate", a.reset_rate)?,
                stall_after: a.stall_after,
                down: a.down_for.map(|d| {
                    (
                        Duration::from_secs_f64(a.down_at),
                        Duration::from_secs_f64(a.down_at + d),
                    )
                }),
                seed: a.seed,
            },
            protocol: a.protocol,
            h2_server: a.h2_server,
            tls,
            ts_bin: a.ts_bin.clone(),
            started: Instant::now(),
            request_number: AtomicU64::new(0),
            slots: (0..a.threads).map(|_| Mutex::default()).collect(),
            next_slot: AtomicUsize::new(0),
            unique: Unique::new(),
            dump,
        })
    }

    /// Inside the `--down-for` window?
    pub fn is_down(&self) -> bool {
        self.faults.down.is_some_and(|(from, to)| {
            let t = self.started.elapsed();
            t >= from && t < to
        })
    }

    /// A slot of counts for a starting executor (one each).
    pub fn take_slot(&self) -> usize {
        self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len().max(1)
    }

    /// An executor's counts.
    pub fn counts(&self, slot: usize) -> std::sync::MutexGuard<'_, Counts> {
        // A poisoned lock means a panic elsewhere already; the counts are still the best we have.
        self.slots[slot % self.slots.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// All executors' counts together.
    pub fn stats(&self) -> Stats {
        let mut counts = Counts::default();
        for slot in 0..self.slots.len() {
            counts.add(&self.counts(slot));
        }
        Stats {
            counts,
            unique: self.unique.len(),
        }
    }
}

/// `sluice sink`: 0 after printing the summary (end of --duration, --expect reached, SIGTERM/SIGINT); 2 on a bad flag.
pub fn run(args: SinkArgs) -> ExitCode {
    let duration = match args
        .duration
        .as_deref()
        .map(crate::net::parse_duration)
        .transpose()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("sluice sink: --duration: {e}");
            return ExitCode::from(2);
        }
    };
    let shared = match Shared::from_args(&args) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("sluice sink: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("sluice sink: cannot handle signal {sig}: {e}");
            return ExitCode::from(2);
        }
    }
    let bound = match serve::start(&args, shared.clone()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sluice sink: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(2);
        }
    };
    eprintln!("listening on {bound}");
    let started = Instant::now();
    let mut last_tick = Instant::now();
    let (mut last_req, mut last_rec) = (0, 0);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let done_expect = args.expect.is_some_and(|n| shared.unique.len() >= n);
        let done_time = duration.is_some_and(|d| started.elapsed() >= d);
        if stop.load(Ordering::Relaxed) || done_expect || done_time {
            break;
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            let secs = last_tick.elapsed().as_secs_f64();
            last_tick = Instant::now();
            let st = shared.stats();
            if !args.quiet {
                eprintln!("{}", st.line(secs, last_req, last_rec));
            }
            (last_req, last_rec) = (st.counts.requests, st.counts.records);
        }
    }
    if let Some(d) = &shared.dump {
        let mut d = d.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = d.flush() {
            eprintln!("sluice sink: --dump: {e}");
        }
    }
    let st = shared.stats();
    let h = &st.counts.hist;
    eprintln!(
        "{}",
        st.line(started.elapsed().as_secs_f64().max(1e-9), 0, 0)
    );
    eprint!(
        "{}",
        hist::table(h, "record latency (generator send → sink)")
    );
    if let Err(e) = hist::write_outputs(
        h,
        args.hist_out.as_deref(),
        args.plot.as_deref(),
        "sluice sink: record latency by percentile",
    ) {
        eprintln!("sluice sink: {e}");
    }
    if args.json {
        println!("{}", st.json());
    }
    let _ = std::io::stdout().flush();
    ExitCode::SUCCESS
}
