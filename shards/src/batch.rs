//! Batching (a route's `batching`): records of one route share a request
//! body, framed by the encoder (`batch_begin` / `batch_separator` /
//! `batch_end`). A batch leaves at the first limit reached — records, bytes,
//! or the interval since its first record — and its delivery decides the
//! ack slot of every record in it.
//!
//! An ordered route (`record-ordering`) batches too: a version joins its
//! route's open batch on its key's owner shard when its turn comes
//! ([`Batcher::add_turn`]), its body encoded already, and its result goes
//! to the turn's waiter instead of an ack slot. A key has one version in
//! flight at a time, so a batch holds at most one version of a key.
//!
//! Records are encoded straight into the open body (no copy per record);
//! the body is allocated at about the size the previous batch reached, not
//! at `max-bytes`, so a batch touches only the memory it fills; the bodies
//! of answered batches are reused.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_codec::ack;
use sluice_codec::encode::{BatchStart, Encoder};

use crate::ackq::{Seq, SharedAcks};
use crate::dlq::{self, Dead, Verdict};
use crate::order::Answer;
use crate::plan::{BatchPlan, FormatId, RouteId};
use crate::session::{deliver, RECORD_DEADLINE};
use crate::shard::{Held, ShardCtx, ShardPlan};

/// A record joining a batch: where its ack goes and when it arrived.
pub struct Member<'a> {
    pub acks: &'a SharedAcks,
    pub seq: Seq,
    pub received: Instant,
    /// Its frame, for a dead letter.
    pub dead: Dead,
}

/// Records of a batch from one session whose ack slots follow each other
/// and that arrived in one read: decided, counted and timed together (a
/// read's records sit side by side in a batch, so a batch holds a few runs,
/// not a hundred members).
struct Run {
    acks: SharedAcks,
    first: Seq,
    n: u64,
    received: Instant,
}

struct Open {
    body: Vec<u8>,
    start: BatchStart,
    runs: Vec<Run>,
    /// Records in the batch.
    count: u32,
    /// Their units of the shard's permits.
    held: Option<Held>,
    /// Their frames, while a dead-letter file is configured (else empty).
    dead: Vec<Dead>,
    /// Versions of an ordered route in their key's turn: their waiters.
    turns: Vec<Rc<Answer>>,
    /// The earliest deadline among `turns`.
    turns_deadline: Option<Instant>,
}

/// The open batch of one route on one shard.
pub struct Batcher {
    route: RouteId,
    format: FormatId,
    limits: BatchPlan,
    open: RefCell<Option<Open>>,
    /// When the open batch must leave (`interval` after it opened); None
    /// while no batch is open.
    due: Cell<Option<Instant>>,
    /// The interval timer's task is alive. One task per batcher watches
    /// `due` (sleeping again while batches keep opening) instead of a task
    /// and a timer per batch.
    timing: Cell<bool>,
    /// Capacity for the next body: a little over the last body's length,
    /// or over recent bodies' when batches shrink.
    body_hint: Cell<usize>,
    /// Bodies of answered batches, for the next ones: a body is a large
    /// allocation, and its allocation and free cost about 100 instructions
    /// per record of the batch.
    spare: RefCell<Vec<Vec<u8>>>,
    /// Bodies of answered batches still referenced elsewhere: h2 keeps a
    /// connection's last DATA frame (a slice of its body) until that
    /// connection's next turn, often after the answer. They join `spare`
    /// once nothing else holds them (looked at when a batch opens); before,
    /// 354 of 500 batches allocated a new body.
    returned: RefCell<Vec<Bytes>>,
}

/// Bodies kept in `spare` at most, and their bytes at most. Batches are
/// answered and opened in bursts (a few connections' answers arrive
/// together): with 4 kept, half the bodies of a 50,000-record run were let
/// go when the spares were full and the other half allocated anew.
const SPARE_BODIES: usize = 16;
const SPARE_BYTES: usize = 4 << 20;
/// Bodies kept in `returned` at most (about one per connection).
const RETURNED_BODIES: usize = 8;

/// The time a batch's delivery has at least. An unordered batch leaves
/// within `batch-interval` (under 5 s) of its first record's arrival, so its
/// oldest record still has over 3 s of its 8 s deadline. A version of an
/// ordered route joins a batch only if it would too ([`Batcher::takes`]):
/// one that waited long for its key goes on its own, and cannot cut the
/// time of the batch it would have joined.
const MIN_LEFT: Duration = Duration::from_secs(3);

/// The first body's capacity, before any batch has been measured.
const FIRST_BODY: usize = 16 * 1024;

impl Batcher {
    pub fn new(route: RouteId, format: FormatId, limits: BatchPlan) -> Self {
        Batcher {
            route,
            format,
            limits,
            open: RefCell::new(None),
            due: Cell::new(None),
            timing: Cell::new(false),
            body_hint: Cell::new(FIRST_BODY),
            spare: RefCell::new(Vec::new()),
            returned: RefCell::new(Vec::new()),
        }
    }

    /// Encodes one record into the open batch (opening one if needed),
    /// after the format's separator, and adds it as member `m` holding
    /// `held`; flushes when a limit is reached. `encoder` is the route's
    /// format (`self.format` of `plan`). When `encode` fails the body is
    /// left as it was and `held` comes back with the error.
    pub fn add<E>(
        self: &Rc<Self>,
        plan: &Rc<ShardPlan>,
        ctx: &Rc<ShardCtx>,
        encoder: &Encoder,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
        m: Member<'_>,
        held: Held,
    ) -> Result<(), (E, Held)> {
        let full = {
            let mut slot = self.open.borrow_mut();
            let open = match slot.as_mut() {
                Some(open) => open,
                None => slot.insert(self.open_batch(encoder)),
            };
            if let Err(e) = open.put(encoder, encode) {
                return Err((e, held));
            }
            match open.runs.last_mut() {
                Some(r)
                    if r.received == m.received
                        && r.first + r.n == m.seq
                        && Rc::ptr_eq(&r.acks, m.acks) =>
                {
                    r.n += 1
                }
                _ => open.runs.push(Run {
                    acks: m.acks.clone(),
                    first: m.seq,
                    n: 1,
                    received: m.received,
                }),
            }
            match &mut open.held {
                Some(h) => h.absorb(held),
                None => open.held = Some(held),
            }
            if m.dead.frame.is_some() {
                open.dead.push(m.dead);
            }
            self.is_full(open)
        };
        self.added(full, plan, ctx);
        Ok(())
    }

    /// Whether a version of an ordered route with this deadline may join
    /// the batch: it would leave with [`MIN_LEFT`] to spare, as every
    /// unordered record does.
    pub fn takes(&self, deadline: Instant) -> bool {
        Instant::now() + self.limits.interval + MIN_LEFT <= deadline
    }

    /// Adds a version of an ordered route in its key's turn (on the key's
    /// owner shard): `body` is its encoded record, `answer` gets the
    /// batch's result, and the batch's delivery ends by `deadline` at the
    /// latest.
    pub fn add_turn(
        self: &Rc<Self>,
        plan: &Rc<ShardPlan>,
        ctx: &Rc<ShardCtx>,
        body: &[u8],
        answer: Rc<Answer>,
        deadline: Instant,
        dead: Dead,
    ) {
        let Some(fmt) = plan.plan.formats.get(self.format) else {
            answer.set(ack::UNAVAILABLE);
            return;
        };
        let full = {
            let mut slot = self.open.borrow_mut();
            let open = match slot.as_mut() {
                Some(open) => open,
                None => slot.insert(self.open_batch(&fmt.encoder)),
            };
            let Ok(()) = open.put(&fmt.encoder, |out| {
                out.extend_from_slice(body);
                Ok::<(), std::convert::Infallible>(())
            });
            open.turns.push(answer);
            open.turns_deadline = Some(open.turns_deadline.map_or(deadline, |d| d.min(deadline)));
            if dead.frame.is_some() {
                open.dead.push(dead);
            }
            self.is_full(open)
        };
        self.added(full, plan, ctx);
    }

    fn is_full(&self, open: &Open) -> bool {
        open.count as usize >= self.limits.max_records.max(1)
            || open.body.len() >= self.limits.max_bytes
    }

    /// After a record joined: flushes a full batch, and makes sure the
    /// interval timer runs while a batch is open. Inlined: called on its
    /// own it cost every batched record 23 instructions (callgrind, 4,224
    /// against 4,201 per record).
    #[inline]
    fn added(self: &Rc<Self>, full: bool, plan: &Rc<ShardPlan>, ctx: &Rc<ShardCtx>) {
        if full {
            self.flush(plan, ctx);
        }
        // Started outside the borrow of the open batch: glommio polls a
        // spawned task at once, and a batch already due is flushed then.
        if !self.timing.get() && self.due.get().is_some() {
            self.start_timer(plan, ctx);
        }
    }

    /// A new batch, due `interval` from now.
    fn open_batch(&self, encoder: &Encoder) -> Open {
        let hint = self.body_hint.get();
        // A spare smaller than the hint is let go: growing it would copy
        // its whole capacity (the allocator does not know it is empty). A
        // new body gets a quarter more than the hint, so that it is reused
        // while batches grow a little: allocated at the hint, 338 of 500
        // batches found their spare a few bytes short and allocated.
        self.reclaim();
        let mut body = match self.spare.borrow_mut().pop() {
            Some(spare) if spare.capacity() >= hint => spare,
            _ => Vec::with_capacity(hint + hint / 4),
        };
        let start = encoder.batch_begin(&mut body);
        self.due.set(Some(Instant::now() + self.limits.interval));
        Open {
            body,
            start,
            runs: Vec::new(),
            count: 0,
            held: None,
            dead: Vec::new(),
            turns: Vec::new(),
            turns_deadline: None,
        }
    }

    /// The interval timer: sleeps until the open batch is due and flushes
    /// it. When batches fill up before their interval it wakes about once
    /// per interval, not once per batch. It ends when it finds no batch
    /// open, so an idle route holds no task, and lets go of `plan` (held
    /// so that a plan reloaded away still sends its last batch).
    fn start_timer(self: &Rc<Self>, plan: &Rc<ShardPlan>, ctx: &Rc<ShardCtx>) {
        self.timing.set(true);
        let (me, plan, ctx) = (self.clone(), plan.clone(), ctx.clone());
        glommio::spawn_local(async move {
            while let Some(due) = me.due.get() {
                let now = Instant::now();
                if now >= due {
                    me.flush(&plan, &ctx);
                } else {
                    glommio::timer::sleep(due - now).await;
                }
            }
            me.timing.set(false);
        })
        .detach();
    }

    /// Sends the open batch (if any) and decides its records when it is
    /// answered.
    pub fn flush(self: &Rc<Self>, plan: &Rc<ShardPlan>, ctx: &Rc<ShardCtx>) {
        let Some(mut open) = self.open.borrow_mut().take() else {
            return;
        };
        self.due.set(None);
        if open.count == 0 {
            // Opened for a record that could not be encoded: nothing to send.
            return;
        }
        let Some(fmt) = plan.plan.formats.get(self.format) else {
            decide(
                ctx,
                &open.runs,
                &open.turns,
                ack::UNAVAILABLE,
                Instant::now(),
            );
            return;
        };
        fmt.encoder
            .batch_end(&mut open.body, open.start, open.count);
        // The hint follows growth at once and shrinks by an eighth per
        // batch: one small batch (sent by the interval) does not make the
        // next full ones outgrow their bodies, nor the spares look too
        // large to keep.
        let len = open.body.len();
        let old = self.body_hint.get();
        let hint = (len + len / 8).max(old - old / 8);
        self.body_hint
            .set(hint.clamp(FIRST_BODY, self.limits.max_bytes.max(FIRST_BODY)));
        let content_type = fmt.encoder.batch_content_type();
        let deadline = open
            .runs
            .iter()
            .map(|r| r.received + RECORD_DEADLINE)
            .chain(open.turns_deadline)
            .min()
            .unwrap_or_else(|| Instant::now() + RECORD_DEADLINE);
        let (me, plan, ctx, route) = (self.clone(), plan.clone(), ctx.clone(), self.route);
        let body = Bytes::from(open.body);
        let kept = body.clone();
        let (runs, turns, count, held, dead) =
            (open.runs, open.turns, open.count, open.held, open.dead);
        glommio::spawn_local(async move {
            let verdict = deliver(&plan, route, body, content_type, deadline, &ctx).await;
            // Frames are kept only while a dead-letter file is configured,
            // and needed only for a rejected batch; without one for every
            // record, the batch is answered as without a dead-letter file.
            let dead = match verdict {
                Verdict::Rejected(_) if dead.len() == count as usize => dead,
                Verdict::Rejected(_) => (0..count)
                    .map(|_| Dead {
                        port: 0,
                        frame: None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let result = dlq::settle(&ctx, &plan.plan, verdict, &dead).await;
            // One clock read for the whole batch.
            decide(&ctx, &runs, &turns, result, Instant::now());
            drop(held);
            me.recycle(kept);
        })
        .detach();
    }

    /// Keeps a sent batch's body for a next batch, once nothing else holds
    /// it and while it is not much larger than batches are now.
    fn recycle(&self, body: Bytes) {
        let mut body = match body.try_into_mut() {
            Ok(body) => body,
            Err(held) => {
                let mut returned = self.returned.borrow_mut();
                if returned.len() < RETURNED_BODIES {
                    returned.push(held);
                }
                return;
            }
        };
        // Emptied first: turning it into a Vec then moves no bytes.
        body.clear();
        let body = Vec::from(body);
        let mut spare = self.spare.borrow_mut();
        let kept: usize = spare.iter().map(Vec::capacity).sum();
        if spare.len() < SPARE_BODIES
            && kept + body.capacity() <= SPARE_BYTES
            && body.capacity() <= 2 * self.body_hint.get()
        {
            spare.push(body);
        }
    }

    /// Moves the returned bodies nothing else holds any more to `spare`.
    fn reclaim(&self) {
        loop {
            let free = {
                let mut returned = self.returned.borrow_mut();
                match returned.iter().position(Bytes::is_unique) {
                    Some(i) => returned.swap_remove(i),
                    None => return,
                }
            };
            self.recycle(free);
        }
    }
}

impl Open {
    /// Appends one record after the format's separator; the body is left
    /// as it was when `encode` fails.
    fn put<E>(
        &mut self,
        encoder: &Encoder,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mark = self.body.len();
        if self.count > 0 {
            encoder.batch_separator(&mut self.body);
        }
        if let Err(e) = encode(&mut self.body) {
            self.body.truncate(mark);
            return Err(e);
        }
        self.count += 1;
        Ok(())
    }
}

/// Decides every record of a batch with `result` at `now`: each run with
/// one borrow of its session's acks, one counter update and one histogram
/// entry (its records share their arrival); each turn by its waiter (its
/// session counts it when it decides its slot).
fn decide(ctx: &ShardCtx, runs: &[Run], turns: &[Rc<Answer>], result: u8, now: Instant) {
    for r in runs {
        r.acks.borrow_mut().decide_run(r.first, r.n, result);
        ctx.records_done_at(r.received, now, r.n);
    }
    for t in turns {
        t.set(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batcher() -> Batcher {
        Batcher::new(
            0,
            0,
            BatchPlan {
                max_records: 100,
                max_bytes: 1 << 20,
                interval: std::time::Duration::from_millis(100),
            },
        )
    }

    #[test]
    fn an_answered_body_is_reused_only_when_nothing_else_holds_it() {
        let b = batcher();
        let encoder = Encoder::json();
        let mut first = Vec::with_capacity(FIRST_BODY);
        first.extend_from_slice(b"[{}]");
        let at = first.as_ptr();
        let body = Bytes::from(first);
        // h2 still holds a slice of it (its last DATA frame) when the
        // batch is answered.
        let frame = body.slice(1..3);
        b.recycle(body);
        assert!(b.spare.borrow().is_empty(), "still held elsewhere");
        assert_eq!(b.returned.borrow().len(), 1, "kept until it is free");
        let open = b.open_batch(&encoder);
        assert_ne!(open.body.as_ptr(), at, "not while the frame holds it");
        drop(frame);
        let open = b.open_batch(&encoder);
        assert_eq!(open.body.as_ptr(), at, "the same allocation");
        assert!(b.returned.borrow().is_empty());
        let mut fresh = Vec::new();
        encoder.batch_begin(&mut fresh);
        assert_eq!(open.body, fresh, "emptied before reuse");
        // Much larger than batches are now: let go.
        let mut huge = Vec::with_capacity(8 * FIRST_BODY);
        huge.push(b'x');
        b.recycle(Bytes::from(huge));
        assert!(b.spare.borrow().is_empty());
        // Never more than SPARE_BODIES kept, nor RETURNED_BODIES waited for.
        for _ in 0..SPARE_BODIES + 2 {
            let mut v = Vec::with_capacity(FIRST_BODY);
            v.push(b'x');
            b.recycle(Bytes::from(v));
        }
        assert_eq!(b.spare.borrow().len(), SPARE_BODIES);
        // Nor more than SPARE_BYTES of them.
        let big = batcher();
        big.body_hint.set(1 << 20);
        for _ in 0..6 {
            big.recycle(Bytes::from(Vec::<u8>::with_capacity(1 << 20)));
        }
        assert_eq!(big.spare.borrow().len(), SPARE_BYTES >> 20);
        let held: Vec<Bytes> = (0..RETURNED_BODIES + 2)
            .map(|_| {
                let v = Bytes::from(vec![b'x'; 64]);
                b.recycle(v.clone());
                v
            })
            .collect();
        assert_eq!(b.returned.borrow().len(), RETURNED_BODIES);
        drop(held);
    }
}
