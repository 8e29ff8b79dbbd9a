//! The control thread: config reload (SIGHUP, `--watch`), the manage API
//! (metrics, health, readiness), the periodic ticker line, and shutdown on
//! SIGTERM/SIGINT.
//!
//! It talks to the data plane only through [`Plane`], so that it can be
//! tested without shards and so that the shards' runtime stays free of
//! control concerns. Signals arrive through signal-hook's iterator (no
//! `unsafe` handlers here) on their own thread and are turned into channel
//! messages; the control loop selects over them and a one-second tick.

pub mod logging;
pub mod manage;
pub mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{select, Receiver};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use sluice_shards::plan::{ListenerPlan, Plan, RouteAction};

use metrics::{ControlCounters, Snapshot};

/// What the control thread needs of the data plane.
pub trait Plane: Send + Sync + 'static {
    /// Hands a new plan to every shard.
    fn reload(&self, plan: Arc<Plan>);
    /// Stops accepting, drains up to `drain`, answers the rest with the retry
    /// code and flushes acks; returns when done.
    fn shutdown(&self, drain: Duration);
    /// Counters and histograms merged over shards.
    fn snapshot(&self) -> Snapshot;
}

/// State the manage API shares with the control loop.
pub struct Shared {
    pub plane: Arc<dyn Plane>,
    pub plan: Mutex<Arc<Plan>>,
    pub counters: ControlCounters,
}

impl Shared {
    /// Ready: listening, and every routed destination that has health
    /// checks has a healthy endpoint.
    pub fn readiness(&self) -> Result<(), String> {
        let snap = self.snapshot();
        if !snap.listening {
            return Err("not listening yet".into());
        }
        let plan = self.current_plan();
        let mut routed: Vec<usize> = plan
            .routes
            .iter()
            .filter_map(|r| match &r.action {
                RouteAction::Deliver { destinations, .. } => Some(destinations.clone()),
                RouteAction::Skip => None,
            })
            .flatten()
            .collect();
        routed.sort_unstable();
        routed.dedup();
        for id in routed {
            // Only active health checks (run by each shard on its pool)
            // decide readiness: a destination without `health-check` is
            // taken on trust.
            let Some(dest) = plan
                .destinations
                .get(id)
                .filter(|d| d.health_check.is_some())
            else {
                continue;
            };
            let Some(seen) = snap.destinations.iter().find(|d| d.name == dest.name) else {
                continue;
            };
            if !seen.endpoints.is_empty() && !seen.endpoints.iter().any(|e| e.healthy) {
                return Err(format!(
                    "destination `{}` has no healthy endpoint",
                    dest.name
                ));
            }
        }
        Ok(())
    }

    /// The data plane's snapshot (endpoint health is the shards' own
    /// health checks' view).
    pub fn snapshot(&self) -> Snapshot {
        self.plane.snapshot()
    }

    pub fn current_plan(&self) -> Arc<Plan> {
        match self.plan.lock() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_plan(&self, plan: Arc<Plan>) {
        match self.plan.lock() {
            Ok(mut p) => *p = plan,
            Err(poisoned) => *poisoned.into_inner() = plan,
        }
    }
}

/// How the control thread runs.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    pub config: PathBuf,
    /// Reload when the file changes.
    pub watch: bool,
    pub drain: Duration,
    pub ticker: Duration,
    pub manage: Option<SocketAddr>,
    pub reload: ReloadOptions,
}

/// Command-line settings that every reload applies over the file.
#[derive(Debug, Clone, Default)]
pub struct ReloadOptions {
    /// `--listen`: replaces the file's plain listeners.
    pub listen: Vec<SocketAddr>,
    /// `--log-level`: the root level over `logging.levels.root`.
    pub log_level: Option<String>,
}

/// Applies `--listen` (plain TCP listeners instead of the file's).
pub fn override_listeners(plan: &mut Plan, listen: &[SocketAddr]) {
    if !listen.is_empty() {
        plan.service.listeners = listen
            .iter()
            .map(|&addr| ListenerPlan { addr, tls: None })
            .collect();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot install signal handlers or start a control thread: {0}")]
    Signals(std::io::Error),
    #[error("cannot open the manage API on {addr}: {source}")]
    Manage {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

enum Signal {
    Reload,
    Stop,
}

fn signals() -> Result<Receiver<Signal>, ControlError> {
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])
        .map_err(ControlError::Signals)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("sluice-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let msg = if sig == SIGHUP {
                    Signal::Reload
                } else {
                    Signal::Stop
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
        })
        .map_err(ControlError::Signals)?;
    Ok(rx)
}

/// The file's identity for `--watch`: modification time and length.
fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Loads the file again and hands the plan over; a bad file changes nothing.
/// Returns the new logging settings when the file was taken.
pub fn reload(
    shared: &Shared,
    path: &std::path::Path,
    opts: &ReloadOptions,
) -> Option<crate::config::LoggingConfig> {
    match crate::config::load(path) {
        Ok(compiled) => {
            let mut plan = compiled.plan;
            override_listeners(&mut plan, &opts.listen);
            let plan = Arc::new(plan);
            shared.plane.reload(plan.clone());
            shared.set_plan(plan);
            shared.counters.reloads_ok.fetch_add(1, Ordering::Relaxed);
            tracing::info!("config reloaded from {}", path.display());
            // After the line above, so that it is logged at the old levels.
            if let Err(e) = logging::set_levels(&compiled.logging, opts.log_level.as_deref()) {
                tracing::warn!("log levels not changed: {e}");
            }
            Some(compiled.logging)
        }
        Err(errors) => {
            shared
                .counters
                .reloads_failed
                .fetch_add(1, Ordering::Relaxed);
            let all: Vec<String> = errors.errors.iter().map(ToString::to_string).collect();
            tracing::error!(
                "config reload refused, the running plan is kept: {}: {}",
                path.display(),
                all.join("; ")
            );
            None
        }
    }
}

/// Runs until a clean shutdown. Returns the manage API address through
/// `on_manage` as soon as it listens (tests and the start-up line use it).
pub fn run(
    plane: Arc<dyn Plane>,
    plan: Arc<Plan>,
    opts: ControlOptions,
    on_manage: impl FnOnce(Option<SocketAddr>),
) -> Result<(), ControlError> {
    let sig = signals()?;
    let shared = Arc::new(Shared {
        plane,
        plan: Mutex::new(plan),
        counters: ControlCounters::default(),
    });
    let manage = match opts.manage {
        Some(addr) => Some(
            manage::spawn(addr, shared.clone())
                .map_err(|source| ControlError::Manage { addr, source })?,
        ),
        None => None,
    };
    on_manage(manage);
    let tick = crossbeam_channel::tick(Duration::from_secs(1));
    let mut last_stamp = stamp(&opts.config);
    let mut ticker = Ticker::new(opts.ticker, shared.plane.snapshot());
    loop {
        select! {
            recv(sig) -> msg => match msg {
                Ok(Signal::Reload) => {
                    if let Some(l) = reload(&shared, &opts.config, &opts.reload) {
                        ticker.every = l.ticker;
                    }
                    last_stamp = stamp(&opts.config);
                }
                Ok(Signal::Stop) | Err(_) => break,
            },
            recv(tick) -> _ => {
                if opts.watch {
                    let now = stamp(&opts.config);
                    if now.is_some() && now != last_stamp {
                        last_stamp = now;
                        if let Some(l) = reload(&shared, &opts.config, &opts.reload) {
                            ticker.every = l.ticker;
                        }
                    }
                }
                ticker.maybe_log(&*shared.plane);
            }
        }
    }
    tracing::info!(
        "shutting down: draining records in flight for up to {:?} (a second signal exits at once)",
        opts.drain
    );
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let plane = shared.plane.clone();
    let drain = opts.drain;
    std::thread::Builder::new()
        .name("sluice-drain".into())
        .spawn(move || {
            plane.shutdown(drain);
            let _ = done_tx.send(());
        })
        .map_err(ControlError::Signals)?;
    select! {
        recv(done_rx) -> _ => {
            tracing::info!("shutdown complete");
            Ok(())
        }
        recv(sig) -> _ => {
            tracing::warn!("second signal: exiting at once, records not acked will be resent by XDR");
            std::process::exit(130);
        }
    }
}

/// The periodic ticker line with the main rates.
struct Ticker {
    every: Duration,
    last_at: Instant,
    last: Snapshot,
}

impl Ticker {
    fn new(every: Duration, first: Snapshot) -> Ticker {
        Ticker {
            every,
            last_at: Instant::now(),
            last: first,
        }
    }

    fn maybe_log(&mut self, plane: &dyn Plane) {
        if self.every.is_zero() || self.last_at.elapsed() < self.every {
            return;
        }
        let now = plane.snapshot();
        let secs = self.last_at.elapsed().as_secs_f64().max(0.001);
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let acked = |s: &Snapshot| s.acked.values().sum::<u64>();
        let retried = |s: &Snapshot| s.acked.get(&11).copied().unwrap_or(0);
        tracing::info!(
            target: "sluice::ticker",
            "received {:.0}/s, acked {:.0}/s (retry {:.0}/s), skipped {:.0}/s, in {:.0} B/s, out {:.0} B/s, in flight {}, sessions {}, parse errors {}",
            rate(now.records_received, self.last.records_received),
            rate(acked(&now), acked(&self.last)),
            rate(retried(&now), retried(&self.last)),
            rate(now.skipped, self.last.skipped),
            rate(now.bytes_in, self.last.bytes_in),
            rate(now.bytes_out, self.last.bytes_out),
            now.in_flight,
            now.sessions,
            now.parse_errors,
        );
        self.last = now;
        self.last_at = Instant::now();
    }
}

#[cfg(test)]
mod tests;
