//! `sluice gen`: acts like XDR. Opens `--connections` sockets to each
//! `--target`, pipelines up to `--in-flight` change notifications per socket,
//! reads the acks in order and resends what XDR would resend (retry codes,
//! broken connections, acks slower than the ack timeout). Latency is ack time
//! minus the time the record was *due* (open loop, corrected for coordinated
//! omission as wrk2 does). The counts are exact: a record is reported acked
//! only when a done code (0 or 2) came back for it.

pub mod acker;
mod engine;
pub mod shape;

use crate::hist;
use shape::{BinType, ShapeSpec};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub use engine::{Counters, Report};

#[derive(clap::Args, Debug, Clone)]
pub struct GenArgs {
    /// A connector to send to, host:port (repeatable, like XDR's node list).
    #[arg(long = "target", value_name = "HOST:PORT")]
    pub targets: Vec<String>,
    /// Sockets per target.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub connections: u32,
    /// Executors (threads); connections are spread over them.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub threads: usize,
    /// Pin executors to these CPUs (comma-separated), one per thread.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub cpus: Vec<usize>,
    /// Requests sent and not yet acked, per connection.
    #[arg(long, default_value_t = 64, allow_hyphen_values = true)]
    pub in_flight: u32,
    /// Records per second over all connections ("max": as fast as acks allow).
    #[arg(long, default_value = "max", allow_hyphen_values = true)]
    pub rate: String,
    /// Stop after this many records (each one acked or abandoned).
    #[arg(long, allow_hyphen_values = true)]
    pub records: Option<u64>,
    /// Stop creating records after this long (e.g. 10s), then wait for acks.
    #[arg(long, allow_hyphen_values = true)]
    pub duration: Option<String>,
    /// How long to wait for outstanding acks after the end before failing.
    #[arg(long, default_value = "15s", allow_hyphen_values = true)]
    pub grace: String,
    /// `standard` (BENCHMARKS.md) or `custom` (set by --bins, --bin-type, --value-size).
    #[arg(long, default_value = "standard")]
    pub shape: String,
    #[arg(long, default_value_t = 10, allow_hyphen_values = true)]
    pub bins: usize,
    #[arg(long, value_enum, default_value_t = BinType::Str)]
    pub bin_type: BinType,
    /// Bytes per string or blob bin.
    #[arg(long, default_value_t = 32, allow_hyphen_values = true)]
    pub value_size: usize,
    #[arg(long, default_value = "test")]
    pub namespace: String,
    #[arg(long, default_value = "demo")]
    pub set: String,
    /// Distinct keys (k00000000000 …).
    #[arg(long, default_value_t = 1_000_000, allow_hyphen_values = true)]
    pub key_space: u64,
    /// Fraction of the key space that is hot (0: uniform).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub hot_keys: f64,
    /// Fraction of records that go to the hot keys.
    #[arg(long, default_value_t = 0.9, allow_hyphen_values = true)]
    pub hot_share: f64,
    /// Fraction of records that are deletes.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub delete_ratio: f64,
    /// Fraction of deletes that are durable.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub durable_delete_ratio: f64,
    /// Send compressed (type 4) frames.
    #[arg(long)]
    pub compress: bool,
    /// Seed of the key and kind selection.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub seed: u64,
    /// The bin that carries the send time (Unix µs); "" for none.
    #[arg(long, default_value = "sluice_ts")]
    pub ts_bin: String,
    /// Delay before resending a record answered with a retry code.
    #[arg(long, default_value_t = 10, allow_hyphen_values = true)]
    pub retry_delay_ms: u64,
    /// An ack slower than this is a timeout: the connection is dropped and the record resent.
    #[arg(long, default_value_t = 10_000, allow_hyphen_values = true)]
    pub ack_timeout_ms: u64,
    #[arg(long, default_value_t = 1_000, allow_hyphen_values = true)]
    pub connect_timeout_ms: u64,
    /// CA (PEM) that signs the targets' certificates: enables TLS.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Name to verify in the target's certificate (default: the target's host).
    #[arg(long)]
    pub tls_name: Option<String>,
    /// Write the latency percentile distribution (HdrHistogram text format).
    #[arg(long)]
    pub hist_out: Option<PathBuf>,
    /// Draw latency by percentile as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print a JSON summary on stdout at the end.
    #[arg(long)]
    pub json: bool,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Act as a trivial acking peer listening here instead (benchmarks, tests).
    #[arg(long, value_name = "ADDR", hide = true)]
    pub acker: Option<String>,
    /// With --acker: answer every Nth request with retry code 11.
    #[arg(long, default_value_t = 0, hide = true, allow_hyphen_values = true)]
    pub acker_retry_every: u64,
    /// With --acker: drop the connection after N requests on it (un-acked ones lost).
    #[arg(long, default_value_t = 0, hide = true, allow_hyphen_values = true)]
    pub acker_drop_every: u64,
}

/// A flag that makes no sense, with its name.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("--{flag}: {why}")]
    Flag { flag: &'static str, why: String },
    #[error("TLS: {0}")]
    Tls(#[from] sluice_shards::tls::TlsError),
    #[error("cannot start executor {index}: {why}")]
    Executor { index: usize, why: String },
}

fn bad(flag: &'static str, why: impl Into<String>) -> GenError {
    GenError::Flag {
        flag,
        why: why.into(),
    }
}

/// Everything the engine needs, checked.
#[derive(Clone)]
pub struct Config {
    pub targets: Vec<(SocketAddr, String)>,
    pub connections: u32,
    pub threads: usize,
    pub cpus: Vec<usize>,
    pub in_flight: u32,
    /// None: as fast as possible.
    pub rate: Option<f64>,
    pub records: Option<u64>,
    pub duration: Option<Duration>,
    pub grace: Duration,
    pub shape: ShapeSpec,
    pub key_space: u64,
    pub hot_keys: f64,
    pub hot_share: f64,
    pub delete_ratio: f64,
    pub durable_ratio: f64,
    pub compress: bool,
    pub seed: u64,
    pub retry_delay: Duration,
    pub ack_timeout: Duration,
    pub connect_timeout: Duration,
    pub tls: Option<(Arc<rustls::ClientConfig>, Option<String>)>,
    pub progress: bool,
}

fn ratio(flag: &'static str, v: f64) -> Result<f64, GenError> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(bad(flag, format!("{v} is not a fraction between 0 and 1")))
    }
}

impl Config {
    pub fn from_args(a: &GenArgs) -> Result<Self, GenError> {
        if a.targets.is_empty() {
            return Err(bad(
                "target",
                "give at least one connector address (host:port)",
            ));
        }
        let mut targets = Vec::new();
        for t in &a.targets {
            let addr = t
                .to_socket_addrs()
                .map_err(|e| bad("target", format!("`{t}`: {e}")))?
                .next()
                .ok_or_else(|| bad("target", format!("`{t}` resolves to no address")))?;
            let host = t
                .rsplit_once(':')
                .map(|(h, _)| h.trim_matches(['[', ']']))
                .unwrap_or(t)
                .to_string();
            targets.push((addr, host));
        }
        if a.connections == 0 {
            return Err(bad("connections", "must be at least 1"));
        }
        if a.threads == 0 {
            return Err(bad("threads", "must be at least 1"));
        }
        if a.in_flight == 0 {
            return Err(bad("in-flight", "must be at least 1"));
        }
        let rate = match a.rate.trim() {
            "max" => None,
            r => {
                let n: f64 = r.trim_end_matches("/s").parse().map_err(|_| {
                    bad(
                        "rate",
                        format!("`{r}` is neither a number of records per second nor `max`"),
                    )
                })?;
                if !(n.is_finite() && n > 0.0) {
                    return Err(bad(
                        "rate",
                        format!("`{r}`: must be a positive number of records per second"),
                    ));
                }
                Some(n)
            }
        };
        let duration = a
            .duration
            .as_deref()
            .map(crate::net::parse_duration)
            .transpose()
            .map_err(|e| bad("duration", e))?;
        if a.records.is_none() && duration.is_none() {
            return Err(bad("records", "give --records N or --duration D (or both)"));
        }
        if a.records == Some(0) {
            return Err(bad("records", "must be at least 1"));
        }
        let grace = crate::net::parse_duration(&a.grace).map_err(|e| bad("grace", e))?;
        let standard = match a.shape.as_str() {
            "standard" => true,
            "custom" => false,
            s => {
                return Err(bad(
                    "shape",
                    format!("`{s}`: expected `standard` or `custom`"),
                ))
            }
        };
        if !standard && a.bins > 4000 {
            return Err(bad("bins", "at most 4000 bins"));
        }
        if a.value_size > 1 << 20 {
            return Err(bad("value-size", "at most 1 MiB per bin"));
        }
        if a.key_space == 0 || a.key_space > shape::MAX_KEY_SPACE {
            return Err(bad(
                "key-space",
                format!("must be between 1 and {}", shape::MAX_KEY_SPACE),
            ));
        }
        if a.ts_bin.len() > 15 {
            return Err(bad("ts-bin", "bin names are at most 15 bytes"));
        }
        let tls = match (&a.tls_ca, &a.tls_cert, &a.tls_key) {
            (None, None, None) => None,
            (ca, cert, key) => {
                let auth = cert.as_deref().zip(key.as_deref());
                Some((
                    sluice_shards::tls::client_config(ca.as_deref(), auth, &[])?,
                    a.tls_name.clone(),
                ))
            }
        };
        crate::hist::check_outputs(a.hist_out.as_deref(), a.plot.as_deref())
            .map_err(|(flag, why)| bad(flag, why))?;
        if a.cpus.len() > a.threads {
            return Err(bad(
                "cpus",
                format!("{} CPUs for {} threads", a.cpus.len(), a.threads),
            ));
        }
        Ok(Config {
            targets,
            connections: a.connections,
            threads: a.threads,
            cpus: a.cpus.clone(),
            in_flight: a.in_flight,
            rate,
            records: a.records,
            duration,
            grace,
            shape: ShapeSpec {
                standard,
                bins: a.bins,
                bin_type: a.bin_type,
                value_size: a.value_size,
                namespace: a.namespace.clone(),
                set: a.set.clone(),
                ts_bin: a.ts_bin.clone(),
            },
            key_space: a.key_space,
            hot_keys: ratio("hot-keys", a.hot_keys)?,
            hot_share: ratio("hot-share", a.hot_share)?,
            delete_ratio: ratio("delete-ratio", a.delete_ratio)?,
            durable_ratio: ratio("durable-delete-ratio", a.durable_delete_ratio)?,
            compress: a.compress,
            seed: a.seed,
            retry_delay: Duration::from_millis(a.retry_delay_ms),
            ack_timeout: Duration::from_millis(a.ack_timeout_ms.max(1)),
            connect_timeout: Duration::from_millis(a.connect_timeout_ms.max(1)),
            tls,
            progress: !a.quiet,
        })
    }
}

/// `sluice gen`: 0 when every record ended acked or abandoned, 1 when some
/// remained un-acked, 2 on a bad flag.
pub fn run(args: GenArgs) -> ExitCode {
    if let Some(addr) = &args.acker {
        return acker::run(addr, &args);
    }
    let cfg = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice gen: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match engine::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice gen: {e}");
            return ExitCode::from(2);
        }
    };
    eprint!("{}", report.text());
    eprint!(
        "{}",
        hist::table(
            &report.hist,
            "ack latency (due → ack, corrected for coordinated omission)"
        )
    );
    if let Err(e) = hist::write_outputs(
        &report.hist,
        args.hist_out.as_deref(),
        args.plot.as_deref(),
        "sluice gen: ack latency by percentile",
    ) {
        eprintln!("sluice gen: {e}");
    }
    if args.json {
        println!("{}", report.json());
    }
    if report.counters.in_flight_at_end() > 0 {
        eprintln!(
            "sluice gen: {} records remained un-acked at the end",
            report.counters.in_flight_at_end()
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
