//! Batching (a route's `batching`): records of one route share a request
//! body, framed by the encoder (`batch_begin` / `batch_separator` /
//! `batch_end`). A batch leaves at the first limit reached — records, bytes,
//! or the interval since its first record — and its delivery decides the
//! ack slot of every record in it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use glommio::sync::StaticPermit;
use sluice_codec::ack;
use sluice_codec::encode::BatchStart;

use crate::ackq::{Seq, SharedAcks};
use crate::dlq::{self, Dead};
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
    /// Counts batches opened, so that an interval timer flushes only the
    /// batch it was started for.
    opened: Cell<u64>,
}

impl Batcher {
    pub fn new(route: RouteId, format: FormatId, limits: BatchPlan) -> Self {
        Batcher {
            route,
            format,
            limits,
            open: RefCell::new(None),
            opened: Cell::new(0),
        }
    }

    /// Adds one encoded record; flushes when a limit is reached.
    pub fn add(
        self: &Rc<Self>,
        plan: &Rc<ShardPlan>,
        ctx: &Rc<ShardCtx>,
        record: &[u8],
        m: Member,
    ) {
        let Some(fmt) = plan.plan.formats.get(self.format) else {
            m.acks.borrow_mut().decide(m.seq, ack::UNAVAILABLE);
            ctx.record_done(m.received);
            return;
        };
        let full = {
            let mut slot = self.open.borrow_mut();
            let open = slot.get_or_insert_with(|| {
                let mut body = Vec::with_capacity(self.limits.max_bytes.min(1 << 20));
                let start = fmt.encoder.batch_begin(&mut body);
                self.opened.set(self.opened.get() + 1);
                self.arm_timer(plan, ctx, self.opened.get());
                Open {
                    body,
                    start,
                    members: Vec::new(),
                }
            });
            if !open.members.is_empty() {
                fmt.encoder.batch_separator(&mut open.body);
            }
            open.body.extend_from_slice(record);
            open.members.push(m);
            open.members.len() >= self.limits.max_records.max(1)
                || open.body.len() >= self.limits.max_bytes
        };
        if full {
            self.flush(plan, ctx);
        }
    }

    fn arm_timer(self: &Rc<Self>, plan: &Rc<ShardPlan>, ctx: &Rc<ShardCtx>, batch: u64) {
        let (me, plan, ctx) = (self.clone(), plan.clone(), ctx.clone());
        let interval = self.limits.interval;
        glommio::spawn_local(async move {
            glommio::timer::sleep(interval).await;
            if me.opened.get() == batch {
                me.flush(&plan, &ctx);
            }
        })
        .detach();
    }

    /// Sends the open batch (if any) and decides its records when it is
    /// answered.
    pub fn flush(&self, plan: &Rc<ShardPlan>, ctx: &Rc<ShardCtx>) {
        let Some(mut open) = self.open.borrow_mut().take() else {
            return;
        };
        // A new batch must not be flushed by this batch's timer.
        self.opened.set(self.opened.get() + 1);
        let Some(fmt) = plan.plan.formats.get(self.format) else {
            return;
        };
        let n = open.members.len() as u32;
        fmt.encoder.batch_end(&mut open.body, open.start, n);
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
            let dead: Vec<Dead> = members
                .iter_mut()
                .map(|m| Dead {
                    port: m.dead.port,
                    frame: m.dead.frame.take(),
                })
                .collect();
            let result = dlq::settle(&ctx, &plan.plan, verdict, &dead).await;
            for m in members {
                m.acks.borrow_mut().decide(m.seq, result);
                ctx.record_done(m.received);
            }
        })
        .detach();
    }
}
