//! Record ordering (`record-ordering`): per key (namespace + digest), at
//! most one version in flight, and never an older version (by LUT) after a
//! newer one was delivered — also when versions of one key arrive on
//! sessions of different shards.
//!
//! Ownership: every key has an owner shard, picked from its digest
//! ([`Key::owner`]). A session hands a record whose key another shard owns
//! to that shard and waits for the answer; the session still decides the
//! record's ack slot, so acks keep arrival order per session. The hand-off
//! uses glommio's `shared_channel`: one bounded single-producer,
//! single-consumer ring per ordered pair of shards, created before the
//! shards start ([`links`]) and connected by each shard on its own
//! executor. It needs no lock and no polling: a send wakes the receiving
//! executor through its own notifier, and both ends stay single-threaded.
//! The owner answers with the ack code over the reverse ring. A channel
//! that is full makes the sender wait, and a record waits holding its
//! session's in-flight permit, so `max-concurrent-records` still bounds
//! everything. The 8 s deadline still holds: a version sent at once is
//! bounded by it like any delivery; one that waits (for another shard, or
//! behind another version of its key) is answered 11 by the shard's
//! deadline ticker at most 50 ms after it (one timer per shard, not one per
//! record); and the owner does not send a waiting version whose deadline
//! has (all but) passed.
//!
//! On a route that batches, a version in its turn joins the route's open
//! batch on the owner shard ([`crate::batch::Batcher::add_turn`]) and its
//! turn ends when that batch is answered: a batch holds at most one
//! version of a key, and the next version of a key goes in a later batch.
//!
//! Cost: the common case (the key is idle on this shard) runs the delivery
//! in the session's own task, with no timer and no extra task; a key is
//! hashed by its digest bytes, which are uniform already.
//!
//! Per key the owner keeps the LUT of the newest version delivered, the
//! version in flight, and at most one waiting version:
//! - a record older than the delivered version is not sent and is acked 0
//!   (counted `stale`);
//! - a record older than the version in flight follows it (acked with its
//!   result: 0 once it was delivered);
//! - otherwise it waits; a newer version arriving while one waits replaces
//!   it, and the replaced one is acked with the newer one's result
//!   (coalescing, counted `superseded`): XDR ships the latest version of a
//!   record, so delivering the newest one is delivering the key's state.
//!
//! Records without a LUT are ordered by arrival (one in flight per key, a
//! later one replaces a waiting one) and are never stale. Equal LUTs are
//! not stale (two writes within one millisecond): the later arrival is
//! sent. What was delivered is remembered for the route's
//! `lut-cache-ttl-seconds` after the key's last delivery, and for at most
//! `lut-cache-max-keys` keys (split over the shards; the least recently
//! delivered idle key is forgotten first); a forgotten key cannot make a
//! late older version stale.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};
use glommio::{GlommioError, ResourceType};
use sluice_codec::ack;

use crate::dlq::{self, Dead};
use crate::plan::{OrderingPlan, Plan, RouteId};
use crate::shard::{Latch, ShardCtx, ShardPlan};

/// Records in flight between two shards before the sender waits.
const CHANNEL: usize = 1024;
/// A waiting version with less time than this left before its deadline is
/// not sent: no answer could come back in time.
const TURN_MARGIN: Duration = Duration::from_millis(10);
/// How often the deadlines of waiting records are looked at: a record
/// waiting on another shard or version is answered 11 at most this long
/// after its 8 s deadline (XDR resends at 10 s).
const DEADLINE_TICK: Duration = Duration::from_millis(50);

/// A record's key: its namespace (hashed: namespaces are few) and digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    namespace: u64,
    digest: [u8; 20],
}

impl Key {
    pub fn new(namespace: &str, digest: [u8; 20]) -> Key {
        // FNV-1a: fixed, so every shard computes the same; namespaces are short.
        let namespace = namespace.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Key { namespace, digest }
    }

    /// The shard that orders this key: digests are uniform, so their first
    /// bytes spread keys evenly.
    pub fn owner(&self, shards: usize) -> usize {
        let d = &self.digest;
        u32::from_le_bytes([d[0], d[1], d[2], d[3]]) as usize % shards.max(1)
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The digest is RIPEMD-160 output, already uniform: 8 of its bytes
        // (not the ones that pick the owner shard) are the hash.
        let d = &self.digest;
        let bits = u64::from_le_bytes([d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11]]);
        state.write_u64(bits ^ self.namespace);
    }
}

/// Passes [`Key`]'s own hash through (SipHash would only slow it down).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeyMap = HashMap<Key, KeyState, BuildHasherDefault<KeyHasher>>;

/// A record ready to send (step 5), as the session hands it over.
pub struct Outbound {
    pub route: RouteId,
    pub body: Bytes,
    pub content_type: &'static str,
    pub deadline: Instant,
    pub dead: Dead,
    /// The record's key, LUT and `record-ordering`, on an ordered route.
    pub order: Option<(Key, Option<u64>, OrderingPlan)>,
}

/// Step 5 for one record: on an ordered route in its key's turn (on the
/// key's owner shard), else at once; a refusal becomes a dead letter.
/// Returns the ack.
pub async fn deliver(ctx: &Rc<ShardCtx>, plan: &ShardPlan, out: Outbound) -> u8 {
    let Some((key, lut, ordering)) = out.order else {
        let verdict = crate::session::deliver(
            plan,
            out.route,
            out.body,
            out.content_type,
            out.deadline,
            ctx,
        )
        .await;
        // The rare paths are boxed: inline, the dead-letter write and the
        // ordered hand-off made every record's task 3.5 KiB (copied into
        // its allocation at spawn), twice what the delivery itself needs.
        return match verdict {
            dlq::Verdict::Rejected(_) => {
                Box::pin(dlq::settle(ctx, &plan.plan, verdict, &[out.dead])).await
            }
            v => v.ack_without_dead_letters(),
        };
    };
    let job = Job {
        plan: plan.plan.clone(),
        route: out.route,
        body: out.body,
        content_type: out.content_type,
        deadline: out.deadline,
        port: out.dead.port,
        frame: out.dead.frame,
        key,
        lut,
        ordering,
    };
    Box::pin(ctx.order.submit(ctx, job)).await
}

/// One record's delivery, as it waits for its key and crosses shards.
pub struct Job {
    /// The plan the record was routed with; the owner sends it only on the
    /// same plan (a reload in between answers 11 and XDR resends).
    pub plan: Arc<Plan>,
    pub route: RouteId,
    pub body: Bytes,
    pub content_type: &'static str,
    pub deadline: Instant,
    pub port: u16,
    /// For a dead letter (only while a dead-letter file is configured).
    pub frame: Option<Bytes>,
    pub key: Key,
    pub lut: Option<u64>,
    pub ordering: OrderingPlan,
}

impl Job {
    async fn run(&self, ctx: &Rc<ShardCtx>) -> u8 {
        let shard_plan = ctx.plan();
        if !Arc::ptr_eq(&shard_plan.plan, &self.plan) {
            return ack::UNAVAILABLE;
        }
        let dead = Dead {
            port: self.port,
            frame: self.frame.clone(),
        };
        // A route that batches: the version joins the route's open batch
        // on this (its key's owner) shard, which settles it with the rest;
        // unless it waited so long for its key that it is sent on its own.
        let batcher = shard_plan
            .batchers
            .get(self.route)
            .and_then(Option::as_ref)
            .filter(|b| b.takes(self.deadline));
        if let Some(b) = batcher {
            let answer = Rc::new(Answer::default());
            b.add_turn(
                &shard_plan,
                ctx,
                &self.body,
                answer.clone(),
                self.deadline,
                dead,
            );
            return answer.wait().await;
        }
        let verdict = crate::session::deliver(
            &shard_plan,
            self.route,
            self.body.clone(),
            self.content_type,
            self.deadline,
            ctx,
        )
        .await;
        dlq::settle(ctx, &shard_plan.plan, verdict, &[dead]).await
    }
}

/// What crosses between shards.
pub enum Msg {
    Job { token: u64, job: Job },
    Done { token: u64, ack: u8 },
}

/// One shard's ends of the hand-off channels, indexed by the other shard.
pub struct Links {
    senders: Vec<Option<SharedSender<Msg>>>,
    receivers: Vec<Option<SharedReceiver<Msg>>>,
}

/// The channels between `shards` shards: element `i` is shard `i`'s ends.
pub fn links(shards: usize) -> Vec<Links> {
    let mut all: Vec<Links> = (0..shards)
        .map(|_| Links {
            senders: (0..shards).map(|_| None).collect(),
            receivers: (0..shards).map(|_| None).collect(),
        })
        .collect();
    for from in 0..shards {
        for to in 0..shards {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(CHANNEL);
                all[from].senders[to] = Some(tx);
                all[to].receivers[from] = Some(rx);
            }
        }
    }
    all
}

/// The ack of one record, set once by whoever decides it.
#[derive(Default)]
pub struct Answer {
    ack: Cell<Option<u8>>,
    waker: RefCell<Option<Waker>>,
}

impl Answer {
    pub fn set(&self, result: u8) {
        if self.ack.get().is_none() {
            self.ack.set(Some(result));
            if let Some(w) = self.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    async fn wait(&self) -> u8 {
        std::future::poll_fn(|cx| match self.ack.get() {
            Some(a) => Poll::Ready(a),
            None => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// What [`Ordering::enqueue`] made of a version.
enum Enqueued {
    /// Stale: this ack, not sent.
    Answered(u8),
    /// The key was idle: this version's turn, to run now.
    Turn(Waiting),
    /// Behind another version: answered when that one (or its own turn)
    /// is done, or 11 at this deadline.
    Waiting(Rc<Answer>, Instant),
}

/// A version waiting for its key, and the older versions it replaced.
struct Waiting {
    job: Job,
    answer: Rc<Answer>,
    followers: Vec<Rc<Answer>>,
}

struct KeyState {
    /// LUT of the newest version delivered.
    delivered: Option<u64>,
    /// `Some(lut)` while a version is in flight.
    flying: Option<Option<u64>>,
    /// Older versions that arrived while it flies: they take its result.
    flying_followers: Vec<Rc<Answer>>,
    /// Boxed: most keys have none, and the cache holds many keys.
    next: Option<Box<Waiting>>,
    /// While idle: forgotten after this.
    expires: Instant,
    /// Matches the newest entry of `Ordering::ages` for this key (0: none).
    stamp: u64,
}

/// One shard's ordering state: the keys it owns, and its hand-off ends.
pub struct Ordering {
    shard: usize,
    shards: usize,
    keys: RefCell<KeyMap>,
    /// Idle keys in the order they went idle, for the TTL and the size cap.
    ages: RefCell<VecDeque<(Key, u64)>>,
    stamps: Cell<u64>,
    peers: RefCell<Vec<Option<Rc<ConnectedSender<Msg>>>>>,
    connected: Latch,
    /// Answers to records handed to another shard, by token.
    replies: RefCell<HashMap<u64, Rc<Answer>>>,
    tokens: Cell<u64>,
    /// Answers that wait on something else (another shard, another version
    /// of the key), by deadline: one ticker answers them 11 when it passes,
    /// instead of a timer per record.
    deadlines: RefCell<VecDeque<(Instant, Rc<Answer>)>>,
    /// The deadline ticker runs: it runs only while `deadlines` holds
    /// something, so a shard without ordered routes (or without waiting
    /// records) is not woken every tick.
    ticking: Cell<bool>,
}

/// Strictly older than what was delivered (both LUTs known).
fn is_stale(lut: Option<u64>, delivered: Option<u64>) -> bool {
    matches!((lut, delivered), (Some(l), Some(d)) if l < d)
}

impl Ordering {
    pub fn new(shard: usize, shards: usize) -> Self {
        Ordering {
            shard,
            shards: shards.max(1),
            keys: RefCell::new(KeyMap::default()),
            ages: RefCell::new(VecDeque::new()),
            stamps: Cell::new(0),
            peers: RefCell::new(Vec::new()),
            connected: Latch::default(),
            replies: RefCell::new(HashMap::new()),
            tokens: Cell::new(0),
            deadlines: RefCell::new(VecDeque::new()),
            ticking: Cell::new(false),
        }
    }

    /// Keys this shard remembers now (in flight, waiting or delivered).
    pub fn keys(&self) -> usize {
        self.keys.borrow().len()
    }

    /// Connects this shard's channel ends (each connect waits for the other
    /// shard's end) and serves what the other shards hand over.
    pub fn start(self: &Rc<Self>, ctx: &Rc<ShardCtx>, links: Links) {
        let (me, ctx) = (self.clone(), ctx.clone());
        glommio::spawn_local(async move {
            let senders =
                futures_util::future::join_all(links.senders.into_iter().map(|s| async move {
                    match s {
                        Some(s) => Some(Rc::new(s.connect().await)),
                        None => None,
                    }
                }));
            let receivers =
                futures_util::future::join_all(links.receivers.into_iter().map(|r| async move {
                    match r {
                        Some(r) => Some(r.connect().await),
                        None => None,
                    }
                }));
            let (senders, receivers) = futures_lite::future::zip(senders, receivers).await;
            *me.peers.borrow_mut() = senders;
            me.connected.set();
            for (from, rx) in receivers.into_iter().enumerate() {
                let Some(rx) = rx else { continue };
                let (me, ctx) = (me.clone(), ctx.clone());
                glommio::spawn_local(async move {
                    while let Some(msg) = rx.recv().await {
                        me.on_message(&ctx, from, msg);
                    }
                })
                .detach();
            }
        })
        .detach();
    }

    fn on_message(self: &Rc<Self>, ctx: &Rc<ShardCtx>, from: usize, msg: Msg) {
        match msg {
            Msg::Job { token, job } => {
                let me = self.clone();
                let ctx = ctx.clone();
                glommio::spawn_local(async move {
                    let result = match me.enqueue(&ctx, job) {
                        Enqueued::Answered(result) => result,
                        Enqueued::Turn(w) => me.run_turn(&ctx, w).await,
                        Enqueued::Waiting(answer, _) => answer.wait().await,
                    };
                    let peer = me.peers.borrow().get(from).cloned().flatten();
                    if let Some(peer) = peer {
                        // The session answers 11 at its deadline if this is lost.
                        let _ = peer.send(Msg::Done { token, ack: result }).await;
                    }
                })
                .detach();
            }
            Msg::Done { token, ack } => {
                if let Some(a) = self.replies.borrow_mut().remove(&token) {
                    a.set(ack);
                }
            }
        }
    }

    /// Delivers `job` in its key's order (on the key's owner shard) and
    /// returns its ack: 11 at the deadline or at the end of a shutdown.
    pub async fn submit(self: &Rc<Self>, ctx: &Rc<ShardCtx>, job: Job) -> u8 {
        let owner = job.key.owner(self.shards);
        if owner != self.shard {
            ctx.stats.handed_off.fetch_add(1, Relaxed);
            let deadline = job.deadline;
            let answer = self.hand_off(owner, job);
            self.watch(ctx, deadline, &answer);
            return answer.wait().await;
        }
        match self.enqueue(ctx, job) {
            Enqueued::Answered(result) => result,
            // The key is idle: sent now, from this task (bounded by the
            // record's deadline like any delivery).
            Enqueued::Turn(w) => self.run_turn(ctx, w).await,
            Enqueued::Waiting(answer, deadline) => {
                self.watch(ctx, deadline, &answer);
                answer.wait().await
            }
        }
    }

    fn watch(self: &Rc<Self>, ctx: &Rc<ShardCtx>, deadline: Instant, answer: &Rc<Answer>) {
        self.deadlines
            .borrow_mut()
            .push_back((deadline, answer.clone()));
        if self.ticking.replace(true) {
            return;
        }
        let (me, ctx) = (self.clone(), ctx.clone());
        glommio::spawn_local(async move {
            while !me.deadlines.borrow().is_empty() {
                glommio::timer::sleep(DEADLINE_TICK).await;
                me.expire(ctx.expired.is_set());
            }
            me.ticking.set(false);
        })
        .detach();
    }

    /// Answers 11 to watched records past their deadline (all of them at
    /// the end of a shutdown's drain), and forgets answered ones.
    fn expire(&self, all: bool) {
        let now = Instant::now();
        let mut q = self.deadlines.borrow_mut();
        while let Some((deadline, answer)) = q.front() {
            if answer.ack.get().is_none() {
                if !all && *deadline > now {
                    break;
                }
                answer.set(ack::UNAVAILABLE);
            }
            q.pop_front();
        }
    }

    fn hand_off(self: &Rc<Self>, owner: usize, job: Job) -> Rc<Answer> {
        let answer = Rc::new(Answer::default());
        let token = self.tokens.get();
        self.tokens.set(token.wrapping_add(1));
        self.replies.borrow_mut().insert(token, answer.clone());
        let mut msg = Msg::Job { token, job };
        // Usually there is room: no task needed.
        let peer = self.peers.borrow().get(owner).cloned().flatten();
        if let Some(peer) = peer.filter(|_| self.connected.is_set()) {
            match peer.try_send(msg) {
                Ok(()) => return answer,
                Err(GlommioError::WouldBlock(ResourceType::Channel(m))) => msg = m,
                Err(_) => {
                    self.fail_reply(token);
                    return answer;
                }
            }
        }
        let me = self.clone();
        glommio::spawn_local(async move {
            me.connected.wait().await;
            let peer = me.peers.borrow().get(owner).cloned().flatten();
            let sent = match peer {
                Some(p) => p.send(msg).await.is_ok(),
                None => false,
            };
            if !sent {
                me.fail_reply(token);
            }
        })
        .detach();
        answer
    }

    /// A hand-off that could not be sent: 11, XDR resends.
    fn fail_reply(&self, token: u64) {
        if let Some(a) = self.replies.borrow_mut().remove(&token) {
            a.set(ack::UNAVAILABLE);
        }
    }

    /// Takes a version of a key this shard owns: answered at once when
    /// stale, its turn now when the key is idle, else it waits (coalescing).
    fn enqueue(&self, ctx: &ShardCtx, job: Job) -> Enqueued {
        let stats = &ctx.stats;
        self.sweep(job.ordering.max_keys.div_ceil(self.shards));
        let mut keys = self.keys.borrow_mut();
        let known = keys.len() + usize::from(!keys.contains_key(&job.key));
        stats.ordering_keys.store(known as u64, Relaxed);
        let st = match keys.entry(job.key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(KeyState {
                delivered: None,
                flying: None,
                flying_followers: Vec::new(),
                next: None,
                expires: Instant::now(),
                stamp: 0,
            }),
        };
        if is_stale(job.lut, st.delivered) {
            stats.stale.fetch_add(1, Relaxed);
            return Enqueued::Answered(ack::OK);
        }
        let Some(flying) = st.flying else {
            st.flying = Some(job.lut);
            // Idle no more: its entry in `ages` is void.
            st.stamp = 0;
            return Enqueued::Turn(Waiting {
                job,
                answer: Rc::new(Answer::default()),
                followers: Vec::new(),
            });
        };
        let answer = Rc::new(Answer::default());
        let deadline = job.deadline;
        if is_stale(job.lut, flying) {
            stats.superseded.fetch_add(1, Relaxed);
            st.flying_followers.push(answer.clone());
            return Enqueued::Waiting(answer, deadline);
        }
        let waiting = match st.next.take().map(|w| *w) {
            None => Waiting {
                job,
                answer: answer.clone(),
                followers: Vec::new(),
            },
            Some(mut w) => {
                stats.superseded.fetch_add(1, Relaxed);
                let newer = match (job.lut, w.job.lut) {
                    (Some(new), Some(old)) => new >= old,
                    _ => true,
                };
                if newer {
                    let mut followers = std::mem::take(&mut w.followers);
                    followers.push(w.answer);
                    Waiting {
                        job,
                        answer: answer.clone(),
                        followers,
                    }
                } else {
                    w.followers.push(answer.clone());
                    w
                }
            }
        };
        st.next = Some(Box::new(waiting));
        Enqueued::Waiting(answer, deadline)
    }

    /// One version's turn, from the caller's task; the versions waiting
    /// after it take theirs in a task of their own. Returns its result.
    async fn run_turn(self: &Rc<Self>, ctx: &Rc<ShardCtx>, w: Waiting) -> u8 {
        let (result, next) = self.one_turn(ctx, w).await;
        if let Some(next) = next {
            let (me, ctx) = (self.clone(), ctx.clone());
            glommio::spawn_local(async move {
                let mut next = Some(next);
                while let Some(w) = next {
                    next = me.one_turn(&ctx, w).await.1;
                }
            })
            .detach();
        }
        result
    }

    /// Sends a version (unless stale or out of time) and gives its result
    /// to it and to the versions that follow it; returns the result and
    /// the next version waiting for the key.
    async fn one_turn(&self, ctx: &Rc<ShardCtx>, w: Waiting) -> (u8, Option<Waiting>) {
        let result = self.turn(ctx, &w.job).await;
        let (followers, next) = self.finish(&w.job, result);
        w.answer.set(result);
        for f in w.followers.iter().chain(&followers) {
            f.set(result);
        }
        (result, next)
    }

    async fn turn(&self, ctx: &Rc<ShardCtx>, job: &Job) -> u8 {
        let stale = self
            .keys
            .borrow()
            .get(&job.key)
            .is_some_and(|st| is_stale(job.lut, st.delivered));
        if stale {
            ctx.stats.stale.fetch_add(1, Relaxed);
            return ack::OK;
        }
        if Instant::now() + TURN_MARGIN >= job.deadline {
            // Its session answers 11 (or has): sending it now would only
            // race that answer.
            return ack::UNAVAILABLE;
        }
        job.run(ctx).await
    }

    /// Records the result of the version in flight; returns the versions
    /// that follow its result and the next version to send.
    fn finish(&self, job: &Job, result: u8) -> (Vec<Rc<Answer>>, Option<Waiting>) {
        let mut keys = self.keys.borrow_mut();
        let Some(st) = keys.get_mut(&job.key) else {
            return (Vec::new(), None);
        };
        if result == ack::OK {
            // Delivered, dead-lettered or stale: older versions are stale now.
            if let Some(l) = job.lut {
                st.delivered = Some(st.delivered.map_or(l, |d| d.max(l)));
            }
        }
        let followers = std::mem::take(&mut st.flying_followers);
        if let Some(w) = st.next.take() {
            st.flying = Some(w.job.lut);
            return (followers, Some(*w));
        }
        st.flying = None;
        st.expires = Instant::now() + job.ordering.ttl;
        let stamp = self.stamps.get() + 1;
        self.stamps.set(stamp);
        st.stamp = stamp;
        self.ages.borrow_mut().push_back((job.key, stamp));
        (followers, None)
    }

    /// Forgets idle keys past their TTL, and the oldest idle keys while more
    /// than `cap` are remembered. Keys in flight or waiting are never
    /// forgotten (their number is bounded by `max-concurrent-records`).
    fn sweep(&self, cap: usize) {
        let now = Instant::now();
        let mut keys = self.keys.borrow_mut();
        let mut ages = self.ages.borrow_mut();
        while let Some(&(key, stamp)) = ages.front() {
            let live = keys.get(&key).is_some_and(|st| st.stamp == stamp);
            if !live {
                ages.pop_front();
                continue;
            }
            let expired = keys.get(&key).is_some_and(|st| st.expires <= now);
            // `ages` holds at most two entries per remembered key.
            if expired || keys.len() >= cap || ages.len() > cap.saturating_mul(2) {
                ages.pop_front();
                keys.remove(&key);
                continue;
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_shards_and_stale_means_strictly_older() {
        let mut per_shard = [0usize; 3];
        for i in 0u32..3000 {
            let mut digest = [0u8; 20];
            // Digests are RIPEMD-160 output: any bytes will do here.
            digest[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
            let key = Key::new("test", digest);
            assert_eq!(key.owner(3), Key::new("test", digest).owner(3));
            per_shard[key.owner(3)] += 1;
            assert_eq!(key.owner(1), 0);
        }
        assert!(per_shard.iter().all(|&n| n > 900), "{per_shard:?}");
        assert_ne!(Key::new("a", [1; 20]), Key::new("b", [1; 20]));
        assert!(is_stale(Some(1), Some(2)));
        assert!(!is_stale(Some(2), Some(2)));
        assert!(!is_stale(None, Some(2)));
        assert!(!is_stale(Some(1), None));
    }

    #[test]
    fn a_remembered_key_is_small() {
        // What CONFIG.md's memory figure rests on: this entry, plus the
        // hash table's control byte and spare room, plus up to two 40-byte
        // entries in `ages`.
        let entry = std::mem::size_of::<(Key, KeyState)>();
        assert_eq!(entry, 120);
        assert_eq!(std::mem::size_of::<(Key, u64)>(), 40);
    }
}
