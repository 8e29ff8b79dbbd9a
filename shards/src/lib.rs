//! sluice-shards: the thread-per-core data plane.
//!
//! One glommio executor per core ("shard"), pinned; each owns its XDR
//! sessions and its destination pools. It takes a compiled [`plan::Plan`],
//! never YAML. Read in the order a record flows: [`shard`] (listeners, the
//! control channel), [`session`] (the six steps of DESIGN.md's hot path),
//! [`ackq`] (acks in arrival order), [`dest`] (HTTP/1.1 and HTTP/2 pools,
//! retries), with [`rt`] holding the glommio glue and [`stats`] the counters.

pub mod ackq;
pub mod batch;
pub mod dest;
pub mod dlq;
pub mod order;
pub mod plan;
pub mod rt;
pub mod session;
pub mod shard;
pub mod stats;
pub mod timeouts;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::plan::Plan;
use crate::stats::ShardStats;

/// Now as Unix milliseconds: what the encoders write for a record without
/// a LUT, and the time a dead letter is written (0 before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How many shards to run and where.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// One shard per entry; `Some(cpu)` pins the shard to that CPU.
    pub cpus: Vec<Option<usize>>,
}

impl RuntimeOptions {
    /// One shard per online CPU, each pinned.
    pub fn all_cores() -> Self {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        RuntimeOptions {
            cpus: (0..n).map(Some).collect(),
        }
    }
}

/// Why the data plane could not start (or a shard failed).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("io_uring is unusable, so no shard can start: {0}")]
    IoUring(String),
    #[error("no shards requested: give at least one core")]
    NoShards,
    #[error("shard {shard} could not start its executor (cpu {cpu:?}): {source}")]
    Executor {
        shard: usize,
        cpu: Option<usize>,
        source: std::io::Error,
    },
    #[error("shard {shard} could not bind the XDR listener {addr}: {source}")]
    Bind {
        shard: usize,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("shard {shard} stopped before reporting that it started")]
    Vanished { shard: usize },
    #[error("shard {shard} panicked")]
    Panicked { shard: usize },
}

/// What the control thread tells a shard.
#[derive(Debug)]
pub enum Control {
    Reload(Arc<Plan>),
    Shutdown(Duration),
    /// Copy the shard's latency histograms into the reply channel.
    Histograms(Sender<stats::ShardHistograms>),
}

/// The running shards.
pub struct Runtime {
    shards: Vec<ShardHandle>,
    addrs: Vec<SocketAddr>,
}

struct ShardHandle {
    control: Sender<Control>,
    stats: Arc<ShardStats>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
}

/// Starts one shard per entry of `opts.cpus`. Returns once every shard has
/// bound every listener (SO_REUSEPORT: each shard accepts on its own socket),
/// or with the first error (the shards already started are stopped).
pub fn start(plan: Arc<Plan>, opts: RuntimeOptions) -> Result<Runtime, StartError> {
    rt::probe_io_uring().map_err(StartError::IoUring)?;
    if opts.cpus.is_empty() {
        return Err(StartError::NoShards);
    }
    let n = opts.cpus.len();
    let mut rt = Runtime {
        shards: Vec::with_capacity(n),
        addrs: Vec::new(),
    };
    // Shard 0 binds first so that port 0 resolves once; the others bind the
    // resolved ports.
    let mut bind: Vec<SocketAddr> = plan.service.listeners.iter().map(|l| l.addr).collect();
    let links = order::links(n);
    for ((i, cpu), links) in opts.cpus.iter().copied().enumerate().zip(links) {
        match spawn_shard(i, n, cpu, plan.clone(), bind.clone(), links) {
            Ok((handle, addrs)) => {
                rt.shards.push(handle);
                bind = addrs;
            }
            Err(e) => {
                rt.shutdown(Duration::ZERO);
                let _ = rt.wait();
                return Err(e);
            }
        }
    }
    rt.addrs = bind;
    Ok(rt)
}

type Ready = Result<Vec<SocketAddr>, StartError>;

fn spawn_shard(
    index: usize,
    count: usize,
    cpu: Option<usize>,
    plan: Arc<Plan>,
    bind: Vec<SocketAddr>,
    links: order::Links,
) -> Result<(ShardHandle, Vec<SocketAddr>), StartError> {
    let (control_tx, control_rx): (Sender<Control>, Receiver<Control>) =
        crossbeam_channel::unbounded();
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Ready>(1);
    let stats = Arc::new(ShardStats::new(index));
    let shard_stats = stats.clone();
    let builder = rt::executor_builder(cpu, &format!("sluice-shard-{index}"));
    let thread = builder
        .spawn(move || async move {
            shard::run(shard::ShardArgs {
                index,
                count,
                plan,
                bind,
                control: control_rx,
                stats: shard_stats,
                ready: ready_tx,
                links,
            })
            .await
        })
        .map_err(|e| StartError::Executor {
            shard: index,
            cpu,
            source: std::io::Error::other(e.to_string()),
        })?;
    let addrs = match ready_rx.recv() {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            let _ = thread.join();
            return Err(StartError::Vanished { shard: index });
        }
    };
    Ok((
        ShardHandle {
            control: control_tx,
            stats,
            thread: Some(thread),
        },
        addrs,
    ))
}

impl Runtime {
    /// Hands a new plan to every shard: new records use it, records in
    /// flight finish on the old one; pools of unchanged destinations are kept.
    pub fn reload(&self, plan: Arc<Plan>) {
        for s in &self.shards {
            let _ = s.control.send(Control::Reload(plan.clone()));
        }
    }

    /// Stops accepting; records in flight finish for up to `drain`, the rest
    /// are answered 11; acks are flushed and sessions closed.
    pub fn shutdown(&self, drain: Duration) {
        for s in &self.shards {
            let _ = s.control.send(Control::Shutdown(drain));
        }
    }

    /// Joins the shard threads (after [`Runtime::shutdown`]).
    pub fn wait(mut self) -> Result<(), StartError> {
        let mut result = Ok(());
        for (i, s) in self.shards.iter_mut().enumerate() {
            if let Some(t) = s.thread.take() {
                if t.join().is_err() && result.is_ok() {
                    result = Err(StartError::Panicked { shard: i });
                }
            }
        }
        result
    }

    /// Every shard's latency histograms (receive → ack, per-destination
    /// requests), asked over the control channels; a shard that does not
    /// answer within `timeout` is left out.
    pub fn histograms(&self, timeout: Duration) -> Vec<stats::ShardHistograms> {
        let until = std::time::Instant::now() + timeout;
        let replies: Vec<_> = self
            .shards
            .iter()
            .filter_map(|s| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                s.control.send(Control::Histograms(tx)).ok().map(|()| rx)
            })
            .collect();
        replies
            .into_iter()
            .filter_map(|rx| rx.recv_deadline(until).ok())
            .collect()
    }

    /// Per-shard counters, for the control thread.
    pub fn stats(&self) -> Vec<Arc<ShardStats>> {
        self.shards.iter().map(|s| s.stats.clone()).collect()
    }

    /// The bound listener addresses (port 0 resolved), in plan order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }
}
