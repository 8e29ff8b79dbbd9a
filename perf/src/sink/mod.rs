//! `sluice sink`: acts like an HTTP destination, and is the tests' exact
//! oracle. Serves HTTP/1.1, h2c (prior knowledge) and HTTPS with ALPN on
//! glommio; decodes every body in the project's formats; counts requests,
//! records, bytes, unique keys (by digest) and duplicates, and the
//! end-to-end latency from the generator's timestamp bin. A record counts
//! as delivered only when the sink answered 2xx for its request. Faults
//! (5xx, forced status, delays, connection resets, stalls, downtime) are
//! chosen per request from `--seed`, and each one is counted.

pub mod decode;
mod serve;

use crate::hist::{self, Hist};
use decode::{Decoder, Format};
use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    #[arg(long)]
    pub duration: Option<String>,
    /// Exit once this many unique keys have arrived.
    #[arg(long)]
    pub expect: Option<u64>,
    /// Executors (threads), all on the same port (SO_REUSEPORT).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// Fraction of requests answered 503.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub fail_rate: f64,
    /// Answer every request with this status.
    #[arg(long)]
    pub status: Option<u16>,
    /// Delay before answering, ms: fixed ("5") or a uniform spread ("5-50").
    #[arg(long)]
    pub delay_ms: Option<String>,
    /// Fraction of requests whose connection is dropped instead of answered.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub reset_rate: f64,
    /// Answer the first N requests, then none.
    #[arg(long)]
    pub stall_after: Option<u64>,
    /// Refuse connections (and drop open ones) for this many seconds…
    #[arg(long)]
    pub down_for: Option<f64>,
    /// …starting this many seconds after start.
    #[arg(long, default_value_t = 0.0)]
    pub down_at: f64,
    /// Seed of the per-request fault choice.
    #[arg(long, default_value_t = 1)]
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
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub ts_bin: String,
    pub started: Instant,
    pub request_number: AtomicU64,
    pub stats: Mutex<Stats>,
    pub dump: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

/// What the sink counted.
#[derive(Default)]
pub struct Stats {
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
    pub unique: HashSet<[u8; 20]>,
    pub duplicates: u64,
    /// Records in requests not answered 2xx (or not answered at all).
    pub rejected_records: u64,
    pub status: BTreeMap<u16, u64>,
    pub forced: u64,
    pub failed: u64,
    pub resets: u64,
    pub stalled: u64,
    pub decode_errors: u64,
    pub hist: Option<Hist>,
}

impl Stats {
    fn class(&self, lo: u16, hi: u16) -> u64 {
        self.status.range(lo..hi).map(|(_, n)| n).sum()
    }

    pub fn json(&self) -> serde_json::Value {
        let empty = hist::new_hist();
        let h = self.hist.as_ref().unwrap_or(&empty);
        let by_code: serde_json::Map<String, serde_json::Value> = self
            .status
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        serde_json::json!({
            "connections": self.connections,
            "refused_connections": self.refused_connections,
            "requests": self.requests,
            "h1_requests": self.h1_requests,
            "h2_requests": self.h2_requests,
            "bytes": self.bytes,
            "records": self.records,
            "writes": self.writes,
            "deletes": self.deletes,
            "unique_keys": self.unique.len(),
            "duplicates": self.duplicates,
            "rejected_records": self.rejected_records,
            "status": {"2xx": self.class(200, 300), "4xx": self.class(400, 500), "5xx": self.class(500, 600), "forced": self.forced, "failed": self.failed, "by_code": by_code},
            "resets": self.resets,
            "stalled": self.stalled,
            "decode_errors": self.decode_errors,
            "latency_us": hist::json(h),
        })
    }

    fn line(&self, secs: f64, last_requests: u64, last_records: u64) -> String {
        format!(
            "sink: {:>8.0} req/s {:>9.0} rec/s  requests {:>9}  records {:>10}  unique {:>9}  dup {:>7}  5xx {:>6}  resets {:>5}  decode errors {:>4}  p99 {:>9.3} ms",
            (self.requests - last_requests) as f64 / secs,
            (self.records - last_records) as f64 / secs,
            self.requests,
            self.records,
            self.unique.len(),
            self.duplicates,
            self.class(500, 600),
            self.resets,
            self.decode_errors,
            self.hist.as_ref().filter(|h| !h.is_empty()).map_or(0.0, |h| h.value_at_percentile(99.0) as f64 / 1000.0),
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
            tls,
            ts_bin: a.ts_bin.clone(),
            started: Instant::now(),
            request_number: AtomicU64::new(0),
            stats: Mutex::new(Stats {
                hist: Some(hist::new_hist()),
                ..Stats::default()
            }),
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

    pub fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        // A poisoned lock means a panic elsewhere already; the counts are still the best we have.
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
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
        let done_expect = args
            .expect
            .is_some_and(|n| shared.stats().unique.len() as u64 >= n);
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
            (last_req, last_rec) = (st.requests, st.records);
        }
    }
    if let Some(d) = &shared.dump {
        let mut d = d.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = d.flush() {
            eprintln!("sluice sink: --dump: {e}");
        }
    }
    let st = shared.stats();
    let h = st.hist.clone().unwrap_or_else(hist::new_hist);
    eprintln!(
        "{}",
        st.line(started.elapsed().as_secs_f64().max(1e-9), 0, 0)
    );
    eprint!(
        "{}",
        hist::table(&h, "record latency (generator send → sink)")
    );
    if let Err(e) = hist::write_outputs(
        &h,
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
