//! Batching (a route's `batching`): records of one route share a request
//! body, framed by the encoder (`batch_begin` / `batch_separator` /
//! `batch_end`). A batch leaves at the first limit reached — records, bytes,
//! or the interval since its first record — and its delivery decides the
//! ack slot of every record in it.
//!
//! Records are encoded straight into the open body (no copy per record);
//! the body is allocated at about the size the previous batch reached, not
//! at `max-bytes`, so a batch touches only the memory it fills.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use glommio::sync::StaticPermit;
use sluice_codec::ack;
use sluice_codec::encode::{BatchStart, Encoder};

use crate::ackq::{Seq, SharedAcks};
use crate::dlq::{self, Dead, Verdict};
use crate::plan::{BatchPlan, FormatId, RouteId};
use crate::session::{deliver, RECORD_DEADLINE};
use crate::shard::{ShardCtx, ShardPlan};

/// A record waiting in a batch: where its ack goes, and the room it holds.
pub struct Member {
    pub acks: SharedAcks,
    pub seq: Seq,
    pub permit: StaticPermit,
    pub received: Instant,
    /// Its frame, for a dead letter.
    pub dead: Dead,
}

struct Open {
    body: Vec<u8>,
    start: BatchStart,
    members: Vec<Member>,
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
    /// Capacity for the next body: a little over the last body's length.
    body_hint: Cell<usize>,
}

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
        }
    }

    /// Encodes one record into the open batch (opening one if needed),
    /// after the format's separator, and adds it as member `m`; flushes when
    /// a limit is reached. `encoder` is the route's format (`self.format` of
    /// `plan`). When `encode` fails the body is left as it was and `m` comes
    /// back with the error.
    pub fn add<E>(
        self: &Rc<Self>,
        plan: &Rc<ShardPlan>,
        ctx: &Rc<ShardCtx>,
        encoder: &Encoder,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
        m: Member,
    ) -> Result<(), (E, Member)> {
        let full = {
            let mut slot = self.open.borrow_mut();
            let open = match slot.as_mut() {
                Some(open) => open,
                None => slot.insert(self.open_batch(encoder)),
            };
            let mark = open.body.len();
            if !open.members.is_empty() {
                encoder.batch_separator(&mut open.body);
            }
            if let Err(e) = encode(&mut open.body) {
                open.body.truncate(mark);
                return Err((e, m));
            }
            open.members.push(m);
            open.members.len() >= self.limits.max_records.max(1)
                || open.body.len() >= self.limits.max_bytes
        };
        if full {
            self.flush(plan, ctx);
        }
        // Started outside the borrow of the open batch: glommio polls a
        // spawned task at once, and a batch already due is flushed then.
        if !self.timing.get() && self.due.get().is_some() {
            self.start_timer(plan, ctx);
        }
        Ok(())
    }

    /// A new batch, due `interval` from now.
    fn open_batch(&self, encoder: &Encoder) -> Open {
        let mut body = Vec::with_capacity(self.body_hint.get());
        let start = encoder.batch_begin(&mut body);
        self.due.set(Some(Instant::now() + self.limits.interval));
        Open {
            body,
            start,
            members: Vec::with_capacity(self.limits.max_records.clamp(1, 1024)),
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
    pub fn flush(&self, plan: &Rc<ShardPlan>, ctx: &Rc<ShardCtx>) {
        let Some(mut open) = self.open.borrow_mut().take() else {
            return;
        };
        self.due.set(None);
        if open.members.is_empty() {
            // Opened for a record that could not be encoded: nothing to send.
            return;
        }
        let Some(fmt) = plan.plan.formats.get(self.format) else {
            settle_members(ctx, open.members, ack::UNAVAILABLE, Instant::now());
            return;
        };
        let n = open.members.len() as u32;
        fmt.encoder.batch_end(&mut open.body, open.start, n);
        let len = open.body.len();
        self.body_hint
            .set((len + len / 8).clamp(FIRST_BODY, self.limits.max_bytes.max(FIRST_BODY)));
        let content_type = fmt.encoder.batch_content_type();
        let deadline = open
            .members
            .iter()
            .map(|m| m.received)
            .min()
            .unwrap_or_else(Instant::now)
            + RECORD_DEADLINE;
        let (plan, ctx, route) = (plan.clone(), ctx.clone(), self.route);
        let body = Bytes::from(open.body);
        let mut members = open.members;
        glommio::spawn_local(async move {
            let verdict = deliver(&plan, route, body, content_type, deadline, &ctx).await;
            // Frames are kept only while a dead-letter file is configured,
            // and needed only for a rejected batch.
            let dead: Vec<Dead> = match verdict {
                Verdict::Rejected(_) => members
                    .iter_mut()
                    .map(|m| Dead {
                        port: m.dead.port,
                        frame: m.dead.frame.take(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let result = dlq::settle(&ctx, &plan.plan, verdict, &dead).await;
            // One clock read for the whole batch.
            settle_members(&ctx, members, result, Instant::now());
        })
        .detach();
    }
}

/// Decides every member's ack with `result` at `now`. Records cut from one
/// read of a session share their arrival and sit side by side in a batch:
/// each run of equal arrivals is counted and timed once (same histogram).
fn settle_members(ctx: &ShardCtx, members: Vec<Member>, result: u8, now: Instant) {
    let mut run: Option<(Instant, u64)> = None;
    for m in members {
        m.acks.borrow_mut().decide(m.seq, result);
        match &mut run {
            Some((at, n)) if *at == m.received => *n += 1,
            _ => {
                if let Some((at, n)) = run.replace((m.received, 1)) {
                    ctx.records_done_at(at, now, n);
                }
            }
        }
    }
    if let Some((at, n)) = run {
        ctx.records_done_at(at, now, n);
    }
}
