//! `sluice run`: load the config (refusing to start on any error), start the
//! shards, and hand over to the control thread until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::config;
use sluice::control::metrics::Snapshot;
use sluice::control::{self, ControlOptions, Plane};
use sluice_shards::plan::Plan;
use sluice_shards::stats::ShardStats;
use sluice_shards::{Runtime, RuntimeOptions, StartError};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The config file (aerospike-esp-outbound.yml format).
    #[arg(long, short = 'c', env = "SLUICE_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Number of shards (one executor each); default: one per CPU, or one
    /// per core of --cores.
    #[arg(long, env = "SLUICE_SHARDS")]
    pub shards: Option<usize>,
    /// Pin shards to these CPUs, e.g. `0-3,6` (one shard per CPU listed).
    #[arg(long, env = "SLUICE_CORES", value_name = "LIST")]
    pub cores: Option<String>,
    /// XDR listen address, replacing `service.port`/`address` (repeatable).
    #[arg(
        long,
        env = "SLUICE_LISTEN",
        value_name = "ADDR:PORT",
        value_delimiter = ','
    )]
    pub listen: Vec<SocketAddr>,
    /// Root log level (trace, debug, info, warn, error), over `logging.levels.root`.
    #[arg(
        long,
        env = "SLUICE_LOG_LEVEL",
        value_name = "LEVEL",
        value_parser = ["trace", "debug", "info", "warn", "error", "off"]
    )]
    pub log_level: Option<String>,
    /// Reload the config when the file changes (as on SIGHUP).
    #[arg(long, env = "SLUICE_WATCH")]
    pub watch: bool,
    /// Seconds records in flight get to finish at shutdown before the rest
    /// is answered with the retry code.
    #[arg(
        long,
        env = "SLUICE_DRAIN_TIMEOUT",
        default_value_t = 10.0,
        value_name = "SECONDS"
    )]
    pub drain_timeout: f64,
}

/// `0-3,6` → [0, 1, 2, 3, 6].
fn parse_cores(list: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("--cores: `{part}` is not a CPU number or range (e.g. 0-3,6)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err("--cores: the list is empty".into());
    }
    Ok(out)
}

/// One entry per shard; `Some(cpu)` = pinned.
fn shard_cpus(args: &RunArgs) -> Result<Vec<Option<usize>>, String> {
    match (&args.cores, args.shards) {
        (Some(list), shards) => {
            let cores = parse_cores(list)?;
            if shards.is_some_and(|n| n != cores.len()) {
                return Err(format!(
                    "--shards {} does not match the {} CPUs of --cores {list}",
                    shards.unwrap_or(0),
                    cores.len()
                ));
            }
            Ok(cores.into_iter().map(Some).collect())
        }
        (None, Some(0)) => Err("--shards must be at least 1".into()),
        (None, Some(n)) => Ok(vec![None; n]),
        (None, None) => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            Ok(vec![None; n])
        }
    }
}

/// The shards' runtime seen by the control thread.
struct RuntimePlane {
    runtime: Mutex<Option<Runtime>>,
    /// Kept apart so that metrics still answer while the shards drain.
    stats: Vec<Arc<ShardStats>>,
    /// How the shards ended, once joined.
    ended: Mutex<Option<Result<(), StartError>>>,
}

impl RuntimePlane {
    fn with<T>(&self, f: impl FnOnce(&Runtime) -> T) -> Option<T> {
        let guard = match self.runtime.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.as_ref().map(f)
    }

    fn take(&self) -> Option<Runtime> {
        match self.runtime.lock() {
            Ok(mut g) => g.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

impl Plane for RuntimePlane {
    fn reload(&self, plan: Arc<Plan>) {
        self.with(|rt| rt.reload(plan));
    }

    /// Returns once the shards have drained and stopped, so that the
    /// control thread can still act on a second signal meanwhile.
    fn shutdown(&self, drain: Duration) {
        if let Some(rt) = self.take() {
            rt.shutdown(drain);
            let ended = rt.wait();
            match self.ended.lock() {
                Ok(mut e) => *e = Some(ended),
                Err(poisoned) => *poisoned.into_inner() = Some(ended),
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        // `start` returned only after every shard bound every listener, so
        // while the runtime exists the process is listening.
        let mut snap = Snapshot::from_shards(&self.stats);
        // The histograms are copied out by the shards themselves; a shard
        // that does not answer in time is left out of this scrape.
        if let Some(h) = self.with(|rt| rt.histograms(Duration::from_millis(500))) {
            snap.listening = true;
            snap.add_histograms(&h);
        }
        snap
    }
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("sluice: {msg}");
    ExitCode::from(code)
}

pub fn run(args: RunArgs) -> ExitCode {
    let compiled = match config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => return fail(2, format_args!("refusing to start: {errors}")),
    };
    let cpus = match shard_cpus(&args) {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    if args.drain_timeout.is_nan() || args.drain_timeout < 0.0 {
        return fail(2, "--drain-timeout must be a number of seconds, 0 or more");
    }
    if let Err(e) = control::logging::init(&compiled.logging, args.log_level.as_deref()) {
        return fail(2, e);
    }
    if let Err(e) = sluice_shards::rt::probe_io_uring() {
        return fail(1, format_args!("io_uring is not usable: {e}"));
    }
    tracing::debug!("compiled plan:\n{}", compiled.describe());
    let mut plan = compiled.plan;
    control::override_listeners(&mut plan, &args.listen);
    let manage = plan.service.manage;
    let plan = Arc::new(plan);
    let shards = cpus.len();
    let runtime = match sluice_shards::start(plan.clone(), RuntimeOptions { cpus }) {
        Ok(rt) => rt,
        Err(e) => return fail(1, format_args!("cannot start: {e}")),
    };
    let addrs: Vec<String> = runtime
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let plane = Arc::new(RuntimePlane {
        stats: runtime.stats(),
        runtime: Mutex::new(Some(runtime)),
        ended: Mutex::new(None),
    });
    let opts = ControlOptions {
        config: args.config.clone(),
        watch: args.watch,
        drain: Duration::from_secs_f64(args.drain_timeout),
        ticker: compiled.logging.ticker,
        manage,
        reload: control::ReloadOptions {
            listen: args.listen.clone(),
            log_level: args.log_level.clone(),
        },
    };
    let controlled = control::run(plane.clone(), plan, opts, |manage| {
        let manage = manage
            .map(|m| format!(", manage API on {m}"))
            .unwrap_or_default();
        let line = format!(
            "listening on {} with {shards} shard{}{manage}",
            addrs.join(", "),
            if shards == 1 { "" } else { "s" }
        );
        // On stderr whatever the log settings (scripts and tests wait for
        // it), and in the log.
        eprintln!("sluice: {line}");
        tracing::info!("{line}");
    });
    if let Err(e) = controlled {
        if let Some(rt) = plane.take() {
            rt.shutdown(Duration::ZERO);
            let _ = rt.wait();
        }
        return fail(1, e);
    }
    let ended = match plane.ended.lock() {
        Ok(mut e) => e.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    match ended.or_else(|| plane.take().map(Runtime::wait)) {
        Some(Err(e)) => fail(1, format_args!("the data plane stopped with an error: {e}")),
        _ => ExitCode::SUCCESS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_lists() {
        assert_eq!(parse_cores("0-3,6").unwrap(), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cores(" 2 ").unwrap(), vec![2]);
        assert!(parse_cores("3-1").is_err());
        assert!(parse_cores("a").is_err());
        assert!(parse_cores("").is_err());
    }
}
