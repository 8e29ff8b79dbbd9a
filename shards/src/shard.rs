//! One shard: binds every XDR listener (SO_REUSEPORT), accepts sessions,
//! owns the destination pools built from the current plan, and obeys the
//! control thread (reload, shutdown) over a crossbeam channel.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use glommio::net::TcpListener;
use glommio::sync::Semaphore;

use crate::batch::Batcher;
use crate::dest::Pool;
use crate::plan::{Plan, RouteAction};
use crate::stats::{ShardHistograms, ShardStats};
use crate::{Control, StartError};

/// How often a shard looks at its control channel (crossbeam blocks; the
/// executor must not).
const CONTROL_POLL: Duration = Duration::from_millis(20);

/// A one-way latch: tasks wait until it is set.
#[derive(Debug, Default)]
pub struct Latch {
    set: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Latch {
    pub fn set(&self) {
        self.set.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.set.get() {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// The plan as one shard runs it: the shared plan plus this shard's pools,
/// indexed like `plan.destinations`.
pub struct ShardPlan {
    pub plan: Arc<Plan>,
    pub pools: Vec<Rc<Pool>>,
    /// The open batch of each route that batches, indexed like `plan.routes`.
    pub batchers: Vec<Option<Rc<Batcher>>>,
}

impl ShardPlan {
    fn new(plan: Arc<Plan>, pools: Vec<Rc<Pool>>) -> Self {
        let batchers = plan
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| match (&r.batching, &r.action) {
                (Some(b), RouteAction::Deliver { format, .. }) => {
                    Some(Rc::new(Batcher::new(i, *format, b.clone())))
                }
                _ => None,
            })
            .collect();
        ShardPlan {
            plan,
            pools,
            batchers,
        }
    }
}

/// What every task of a shard shares (single-threaded: `Rc`, `Cell`).
pub struct ShardCtx {
    pub index: usize,
    pub stats: Arc<ShardStats>,
    /// Sessions clone this `Rc` per record: no atomic on the hot path.
    pub current: RefCell<Rc<ShardPlan>>,
    /// This shard's share of `max-concurrent-records`.
    pub permits: Rc<Semaphore>,
    /// Set on shutdown: stop accepting and reading.
    pub stopping: Latch,
    /// Set when the drain time is over: undecided records answer 11.
    pub expired: Latch,
    /// Receive → ack decided, microseconds.
    pub ack_latency: RefCell<hdrhistogram::Histogram<u64>>,
    /// record-ordering: the keys this shard owns, and the hand-off to the others.
    pub order: Rc<crate::order::Ordering>,
    pub dead_letters: crate::dlq::Writer,
}

impl ShardCtx {
    /// Counts one decided record: in flight no more, its latency recorded.
    pub fn record_done(&self, received: Instant) {
        self.stats.in_flight.fetch_sub(1, Relaxed);
        crate::stats::record_since(&mut self.ack_latency.borrow_mut(), received);
    }

    fn histograms(&self) -> ShardHistograms {
        ShardHistograms {
            shard: self.index,
            ack: self.ack_latency.borrow().clone(),
            destinations: self
                .plan()
                .pools
                .iter()
                .map(|p| (p.name().to_string(), p.latency()))
                .collect(),
        }
    }

    /// The plan new records use.
    pub fn plan(&self) -> Rc<ShardPlan> {
        self.current.borrow().clone()
    }

    /// Installs a new plan; pools of destinations whose settings did not
    /// change are kept (with their connections).
    fn reload(&self, plan: Arc<Plan>) {
        let old = self.plan();
        let pools = build_pools(&plan, &old.pools, &self.stats);
        *self.current.borrow_mut() = Rc::new(ShardPlan::new(plan, pools));
    }
}

fn build_pools(plan: &Plan, old: &[Rc<Pool>], stats: &ShardStats) -> Vec<Rc<Pool>> {
    let mut by_key: HashMap<String, Rc<Pool>> = old
        .iter()
        .map(|p| (p.key().to_string(), p.clone()))
        .collect();
    plan.destinations
        .iter()
        .map(|d| {
            let key = Pool::key_of(d);
            by_key.remove(&key).unwrap_or_else(|| {
                let pool = Rc::new(Pool::new(d.clone(), key, stats));
                pool.start_health_checks();
                pool
            })
        })
        .collect()
}

pub struct ShardArgs {
    pub index: usize,
    pub count: usize,
    pub plan: Arc<Plan>,
    pub bind: Vec<SocketAddr>,
    pub control: Receiver<Control>,
    pub stats: Arc<ShardStats>,
    pub ready: Sender<Result<Vec<SocketAddr>, StartError>>,
    pub links: crate::order::Links,
}

/// The shard's main task: bind, report ready, serve until shutdown.
pub async fn run(args: ShardArgs) {
    let mut listeners = Vec::with_capacity(args.bind.len());
    for &addr in &args.bind {
        match TcpListener::bind(addr) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                let _ = args.ready.send(Err(StartError::Bind {
                    shard: args.index,
                    addr,
                    source: std::io::Error::from(e),
                }));
                return;
            }
        }
    }
    let mut addrs = Vec::with_capacity(listeners.len());
    for (l, &want) in listeners.iter().zip(&args.bind) {
        addrs.push(l.local_addr().unwrap_or(want));
    }
    let share = args
        .plan
        .service
        .max_concurrent_records
        .div_ceil(args.count.max(1));
    let pools = build_pools(&args.plan, &[], &args.stats);
    let ctx = Rc::new(ShardCtx {
        index: args.index,
        stats: args.stats,
        current: RefCell::new(Rc::new(ShardPlan::new(args.plan.clone(), pools))),
        permits: Rc::new(Semaphore::new(share.max(1) as u64)),
        stopping: Latch::default(),
        expired: Latch::default(),
        ack_latency: RefCell::new(crate::stats::micros_histogram()),
        order: Rc::new(crate::order::Ordering::new(args.index, args.count)),
        dead_letters: crate::dlq::Writer::default(),
    });
    ctx.order.start(&ctx, args.links);
    // Accept loops by the listener address the plan names (port 0 stays 0
    // here, so a reload that keeps the same config keeps the same socket).
    let mut accepts: HashMap<SocketAddr, glommio::task::JoinHandle<()>> = HashMap::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let planned = args.plan.service.listeners.get(i);
        let tls = planned.and_then(|p| p.tls.clone());
        let key = planned.map_or(addrs[i], |p| p.addr);
        let port = addrs[i].port();
        accepts.insert(
            key,
            glommio::spawn_local(accept_loop(l, port, tls, ctx.clone())).detach(),
        );
    }
    let _ = args.ready.send(Ok(addrs));
    tracing::debug!(shard = ctx.index, "shard serving");

    let drain = loop {
        match args.control.try_recv() {
            Ok(Control::Reload(plan)) => {
                sync_listeners(&mut accepts, &plan, &ctx);
                ctx.reload(plan);
            }
            Ok(Control::Shutdown(drain)) => break drain,
            Ok(Control::Histograms(reply)) => {
                let _ = reply.send(ctx.histograms());
            }
            Err(TryRecvError::Disconnected) => break Duration::ZERO,
            Err(TryRecvError::Empty) => glommio::timer::sleep(CONTROL_POLL).await,
        }
    };
    shutdown(&ctx, drain).await;
    drop(accepts);
}

/// Opens the listeners a reloaded plan adds and closes the ones it drops
/// (their sessions carry on; only accepting stops). A listener kept across
/// a reload keeps its socket and its TLS settings.
fn sync_listeners(
    accepts: &mut HashMap<SocketAddr, glommio::task::JoinHandle<()>>,
    plan: &Plan,
    ctx: &Rc<ShardCtx>,
) {
    let wanted: HashMap<SocketAddr, Option<Arc<rustls::ServerConfig>>> = plan
        .service
        .listeners
        .iter()
        .map(|l| (l.addr, l.tls.clone()))
        .collect();
    accepts.retain(|addr, task| {
        let keep = wanted.contains_key(addr);
        if !keep {
            task.cancel();
            tracing::info!(shard = ctx.index, %addr, "listener closed by reload");
        }
        keep
    });
    for (addr, tls) in wanted {
        if accepts.contains_key(&addr) {
            continue;
        }
        match TcpListener::bind(addr) {
            Ok(l) => {
                let port = l.local_addr().map_or(addr.port(), |a| a.port());
                tracing::info!(shard = ctx.index, %addr, "listener opened by reload");
                let task = glommio::spawn_local(accept_loop(l, port, tls, ctx.clone())).detach();
                accepts.insert(addr, task);
            }
            Err(e) => {
                tracing::error!(shard = ctx.index, %addr, error = %e,
                    "reload: cannot listen on the new address; the other listeners carry on");
            }
        }
    }
}

async fn shutdown(ctx: &ShardCtx, drain: Duration) {
    ctx.stopping.set();
    let until = Instant::now() + drain;
    while ctx.stats.in_flight.load(Relaxed) > 0 && Instant::now() < until {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    ctx.expired.set();
    // Sessions now answer what is left with 11 and flush; give them a moment.
    let flush_until = Instant::now() + Duration::from_secs(2);
    while ctx.stats.sessions.load(Relaxed) > 0 && Instant::now() < flush_until {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    port: u16,
    tls: Option<Arc<rustls::ServerConfig>>,
    ctx: Rc<ShardCtx>,
) {
    let acceptor = tls.map(futures_rustls::TlsAcceptor::from);
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            ctx.stopping.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::warn!(shard = ctx.index, port, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        let ctx = ctx.clone();
        let acceptor = acceptor.clone();
        glommio::spawn_local(async move {
            match acceptor {
                None => crate::session::run(stream, port, peer, ctx).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => crate::session::run(tls, port, peer, ctx).await,
                    Err(e) => {
                        tracing::warn!(shard = ctx.index, port, ?peer, error = %e,
                            "TLS handshake with XDR failed; connection closed");
                    }
                },
            }
        })
        .detach();
    }
}
