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
use crate::stats::{LocalCounter, ShardHistograms, ShardStats};
use crate::{Control, StartError};

/// How often a shard looks at its control channel (crossbeam blocks; the
/// executor must not).
const CONTROL_POLL: Duration = Duration::from_millis(20);

/// Read buffers of ended sessions kept per shard at most (1 MiB of
/// 256-KiB buffers).
const READ_BUFS_KEPT: usize = 4;

/// A one-way latch: tasks wait until it is set.
///
/// Each waiting future holds one slot, re-registered in place when polled
/// again and freed when the future is dropped: every record's delivery
/// races this latch, so a waker pushed per poll would grow without bound
/// (and, since a glommio waker keeps its task's allocation alive, keep every
/// finished record's task in memory until shutdown).
#[derive(Debug, Default)]
pub struct Latch {
    set: Cell<bool>,
    waiters: RefCell<Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Latch {
    pub fn set(&self) {
        self.set.set(true);
        let wakers: Vec<Waker> = {
            let mut w = self.waiters.borrow_mut();
            w.free.clear();
            w.slots.drain(..).flatten().collect()
        };
        for w in wakers {
            w.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Resolves once the latch is set.
    pub fn wait(&self) -> LatchWait<'_> {
        LatchWait {
            latch: self,
            slot: None,
        }
    }

    /// Futures registered and waiting now.
    pub fn waiting(&self) -> usize {
        self.waiters.borrow().slots.iter().flatten().count()
    }
}

/// The future of [`Latch::wait`].
#[derive(Debug)]
pub struct LatchWait<'a> {
    latch: &'a Latch,
    slot: Option<usize>,
}

impl std::future::Future for LatchWait<'_> {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.latch.set.get() {
            return Poll::Ready(());
        }
        let latch = self.latch;
        let mut w = latch.waiters.borrow_mut();
        if let Some(Some(old)) = self.slot.and_then(|i| w.slots.get_mut(i)) {
            if !old.will_wake(cx.waker()) {
                *old = cx.waker().clone();
            }
            return Poll::Pending;
        }
        let i = match w.free.pop() {
            Some(i) if i < w.slots.len() => i,
            _ => {
                w.slots.push(None);
                w.slots.len() - 1
            }
        };
        w.slots[i] = Some(cx.waker().clone());
        self.slot = Some(i);
        Poll::Pending
    }
}

impl Drop for LatchWait<'_> {
    fn drop(&mut self) {
        let Some(i) = self.slot else { return };
        if let Ok(mut w) = self.latch.waiters.try_borrow_mut() {
            if let Some(slot) = w.slots.get_mut(i) {
                if slot.take().is_some() {
                    w.free.push(i);
                }
            }
        }
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

/// Units of a shard's `permits` (its share of `max-concurrent-records`)
/// held by records, given back when dropped. A batch gathers its records'
/// units into one: one release per batch instead of one per record.
#[derive(Debug)]
pub struct Held {
    sem: Rc<Semaphore>,
    units: u64,
}

impl Held {
    /// Up to `want` units at once (as many as are free, at least one), if
    /// nobody waits for one; `Err(())` once the semaphore is closed.
    pub(crate) fn try_some(sem: &Rc<Semaphore>, want: u64) -> Result<Option<Held>, ()> {
        let units = sem.available().clamp(1, want.max(1));
        match sem.try_acquire(units) {
            Ok(true) => Ok(Some(Held {
                sem: sem.clone(),
                units,
            })),
            Ok(false) => Ok(None),
            Err(_) => Err(()),
        }
    }

    /// One unit from `stash` (the units taken for one read's records), or,
    /// once it is empty, up to `want` more taken at once into it, one of
    /// them returned: one look at the semaphore per `want` records.
    /// `Ok(None)` when none is free now; `Err(())` once it is closed.
    pub(crate) fn one_from(
        stash: &mut Option<Held>,
        sem: &Rc<Semaphore>,
        want: u64,
    ) -> Result<Option<Held>, ()> {
        if let Some(one) = stash.as_mut().and_then(Held::split_one) {
            return Ok(Some(one));
        }
        let Some(mut taken) = Held::try_some(sem, want)? else {
            return Ok(None);
        };
        // At least one unit was taken, so this is Some.
        let one = taken.split_one();
        *stash = Some(taken);
        Ok(one)
    }

    /// One of these units, as a `Held` of its own; None when none is left.
    pub fn split_one(&mut self) -> Option<Held> {
        self.units = self.units.checked_sub(1)?;
        Some(Held {
            sem: self.sem.clone(),
            units: 1,
        })
    }

    /// One unit, waiting for it; None once the semaphore is closed.
    pub async fn one(sem: &Rc<Semaphore>) -> Option<Held> {
        sem.acquire(1).await.ok()?;
        Some(Held {
            sem: sem.clone(),
            units: 1,
        })
    }

    /// Takes over `other`'s units (of the same semaphore).
    pub fn absorb(&mut self, mut other: Held) {
        debug_assert!(Rc::ptr_eq(&self.sem, &other.sem));
        self.units += std::mem::take(&mut other.units);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.units > 0 {
            self.sem.signal(self.units);
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
    /// Read buffers of ended sessions, for the next ones: a fresh one is
    /// zeroed (256 KiB of memset per session, 21 instructions per record
    /// over a 50,000-record run of four sessions).
    pub read_bufs: RefCell<Vec<Vec<u8>>>,
}

impl ShardCtx {
    /// Counts one decided record: in flight no more, its latency recorded.
    pub fn record_done(&self, received: Instant) {
        self.records_done_at(received, Instant::now(), 1);
    }

    /// [`ShardCtx::record_done`] for `n` records received at `received` and
    /// decided at `now` (a batch reads the clock once for all its records):
    /// one counter update and one histogram entry of count `n`.
    pub fn records_done_at(&self, received: Instant, now: Instant, n: u64) {
        self.stats.in_flight.local_sub(n);
        crate::stats::record_between(&mut self.ack_latency.borrow_mut(), received, now, n);
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

    /// A session's read buffer of `len` bytes: an ended session's if one
    /// is kept (its old bytes are never read: a session reads only what it
    /// received), else a new one.
    pub fn read_buf(&self, len: usize) -> Vec<u8> {
        match self.read_bufs.borrow_mut().pop() {
            Some(buf) if buf.len() == len => buf,
            _ => vec![0u8; len],
        }
    }

    /// Keeps an ended session's read buffer for the next session (a few at
    /// most; one grown for a large frame is let go).
    pub fn recycle_read_buf(&self, buf: Vec<u8>, len: usize) {
        let mut bufs = self.read_bufs.borrow_mut();
        if buf.len() == len && buf.capacity() == len && bufs.len() < READ_BUFS_KEPT {
            bufs.push(buf);
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
        read_bufs: RefCell::new(Vec::new()),
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
        if let Some(bytes) = ctx.plan().plan.service.socket_receive_buffer_bytes {
            set_receive_buffer(&stream, bytes, ctx.index, peer);
        }
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

/// `socket-receive-buffer-bytes`: SO_RCVBUF of an accepted XDR connection
/// (Linux doubles the value for its bookkeeping and caps it at
/// `net.core.rmem_max`). glommio has no setter; socket2's `SockRef` works on
/// any `AsRawFd` without `unsafe`. A failure is logged: the session still runs.
fn set_receive_buffer(
    stream: &glommio::net::TcpStream,
    bytes: usize,
    shard: usize,
    peer: Option<SocketAddr>,
) {
    if let Err(e) = socket2::SockRef::from(stream).set_recv_buffer_size(bytes) {
        tracing::warn!(shard, ?peer, bytes, error = %e,
            "cannot set socket-receive-buffer-bytes on an XDR connection");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_latch_holds_one_waker_per_waiting_future_and_frees_it_on_drop() {
        let latch = Latch::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut a = latch.wait();
        let mut b = latch.wait();
        for _ in 0..1000 {
            assert!(Pin::new(&mut a).poll(&mut cx).is_pending());
        }
        assert!(Pin::new(&mut b).poll(&mut cx).is_pending());
        assert_eq!(latch.waiting(), 2, "re-polling re-uses the slot");
        drop(b);
        assert_eq!(latch.waiting(), 1, "a dropped waiter leaves");
        let mut c = latch.wait();
        assert!(Pin::new(&mut c).poll(&mut cx).is_pending());
        assert_eq!(
            latch.waiters.borrow().slots.len(),
            2,
            "the freed slot is re-used"
        );
        latch.set();
        assert_eq!(
            count.0.load(Ordering::Relaxed),
            2,
            "both waiters woken once"
        );
        assert!(Pin::new(&mut a).poll(&mut cx).is_ready());
        assert!(Pin::new(&mut c).poll(&mut cx).is_ready());
        assert!(Pin::new(&mut latch.wait()).poll(&mut cx).is_ready());
        assert_eq!(latch.waiting(), 0);
    }
}
