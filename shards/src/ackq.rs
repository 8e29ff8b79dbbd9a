//! The ack queue of one session: one slot per request in arrival order.
//! Deliveries decide slots in any order; acks leave strictly in arrival
//! order, every decided prefix in one write (XDR-PROTOCOL.md §6: the
//! response carries no correlation id, so order is the only match).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};

use sluice_codec::ack;

/// An answer not yet decided.
const PENDING: u8 = u8::MAX;
/// The answer to an info request: an empty info frame, not an ack.
const INFO: u8 = u8::MAX - 1;

#[derive(Debug, Clone, Copy)]
struct Slot {
    generation: u32,
    result: u8,
}

/// Position of a request in its session's ack order.
pub type Seq = u64;

#[derive(Debug, Default)]
pub struct AckQueue {
    /// Sequence number of `slots[0]`.
    base: Seq,
    slots: VecDeque<Slot>,
    /// The writer waits here for decided acks.
    writer: Option<Waker>,
    closed: bool,
}

/// Shared by a session's reader, its writer and its delivery tasks (all on
/// one shard).
pub type SharedAcks = Rc<RefCell<AckQueue>>;

impl AckQueue {
    pub fn shared() -> SharedAcks {
        Rc::new(RefCell::new(AckQueue::default()))
    }

    /// Reserves the next slot, answering a request of `generation`.
    pub fn push(&mut self, generation: u32) -> Seq {
        let seq = self.base + self.slots.len() as u64;
        self.slots.push_back(Slot {
            generation,
            result: PENDING,
        });
        seq
    }

    /// Reserves the next slot for an info request (answered with an empty
    /// info frame).
    pub fn push_info(&mut self) {
        self.slots.push_back(Slot {
            generation: 0,
            result: INFO,
        });
        self.wake();
    }

    /// Decides slot `seq`. A slot already written (or decided) is left alone.
    pub fn decide(&mut self, seq: Seq, result: u8) {
        self.decide_run(seq, 1, result);
    }

    /// Decides the `n` slots from `first` on, like [`AckQueue::decide`]
    /// each (a batch's records of one read sit side by side).
    pub fn decide_run(&mut self, first: Seq, n: u64, result: u8) {
        let end = first.saturating_add(n).saturating_sub(self.base);
        let start = first.saturating_sub(self.base);
        let end = (end.min(self.slots.len() as u64)) as usize;
        let start = start as usize;
        if start >= end {
            return;
        }
        let head_decided = start == 0 && self.slots.front().is_some_and(|s| s.result == PENDING);
        // Over the ring's two halves as plain slices (the deque's range
        // iterator cost about 6 instructions per slot).
        let (a, b) = self.slots.as_mut_slices();
        let split = a.len();
        decide_pending(&mut a[start.min(split)..end.min(split)], result);
        decide_pending(
            &mut b[start.saturating_sub(split)..end.saturating_sub(split)],
            result,
        );
        if head_decided {
            self.wake();
        }
    }

    /// Whether the writer should wait a little before writing what is
    /// ready: the queue is open and its `group`th slot is undecided, so
    /// fewer than `group` acks are ready while at least that many requests
    /// are unanswered (one slot read, not a scan of the decided prefix).
    pub fn worth_holding(&self, group: usize) -> bool {
        !self.closed
            && group > 0
            && self
                .slots
                .get(group - 1)
                .is_some_and(|s| s.result == PENDING)
    }

    /// Slots reserved and not yet written.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Appends every decided ack at the head to `out`; returns how many, and
    /// calls `count` with each result code.
    pub fn take_ready(&mut self, out: &mut Vec<u8>, mut count: impl FnMut(u8)) -> usize {
        // The decided prefix first (a batch decides a hundred slots at a
        // time), then its acks with room made once. The prefix is found
        // over the ring's two halves, and an info answer among it is
        // noted then, so each ack is the template patched and appended
        // (44 instructions per batched record before, mostly per-ack
        // overhead of the deque's iterators).
        let (front, back) = self.slots.as_slices();
        let (n_front, info_front) = decided_prefix(front);
        let (n_back, info_back) = if n_front == front.len() {
            decided_prefix(back)
        } else {
            (0, false)
        };
        let n = n_front + n_back;
        out.reserve(n * ack::ACK_LEN);
        let slots = front[..n_front].iter().chain(&back[..n_back]);
        if info_front || info_back {
            // An info answer is not an ack (8 bytes, not 30).
            for slot in slots {
                match slot.result {
                    INFO => out.extend_from_slice(&[2, 1, 0, 0, 0, 0, 0, 0]),
                    r => {
                        out.extend_from_slice(&ack::frame(r, slot.generation));
                        count(r);
                    }
                }
            }
        } else {
            put_acks(out, &front[..n_front], &mut count);
            put_acks(out, &back[..n_back], &mut count);
        }
        self.slots.drain(..n);
        self.base += n as u64;
        n
    }

    /// No more requests will come: the writer ends once every slot is written.
    pub fn close(&mut self) {
        self.closed = true;
        self.wake();
    }

    fn wake(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Ready when the head slot is decided, or when closed and empty
    /// (`Ready(false)`: the writer is done).
    pub fn poll_ready(&mut self, waker: &Waker) -> Poll<bool> {
        if self.slots.front().is_some_and(|s| s.result != PENDING) {
            return Poll::Ready(true);
        }
        if self.closed && self.slots.is_empty() {
            return Poll::Ready(false);
        }
        self.writer = Some(waker.clone());
        Poll::Pending
    }

    /// Answers every undecided slot with `result` (shutdown after the drain).
    pub fn decide_all_pending(&mut self, result: u8) {
        for s in self.slots.iter_mut() {
            if s.result == PENDING {
                s.result = result;
            }
        }
        self.wake();
    }
}

/// Decides every pending slot of `slots` with `result`.
fn decide_pending(slots: &mut [Slot], result: u8) {
    for slot in slots {
        if slot.result == PENDING {
            slot.result = result;
        }
    }
}

/// Acks a chunk at a time through the stack: one append per
/// `ACKS_AT_ONCE` acks instead of a capacity check per ack.
fn put_acks(out: &mut Vec<u8>, slots: &[Slot], count: &mut impl FnMut(u8)) {
    const ACKS_AT_ONCE: usize = 8;
    for chunk in slots.chunks(ACKS_AT_ONCE) {
        let mut acks = [0u8; ACKS_AT_ONCE * ack::ACK_LEN];
        for (slot, dst) in chunk.iter().zip(acks.chunks_exact_mut(ack::ACK_LEN)) {
            dst.copy_from_slice(&ack::frame(slot.result, slot.generation));
            count(slot.result);
        }
        out.extend_from_slice(&acks[..chunk.len() * ack::ACK_LEN]);
    }
}

/// How many slots at the front of `slots` are decided, and whether one of
/// them is an info answer.
fn decided_prefix(slots: &[Slot]) -> (usize, bool) {
    let mut info = false;
    for (i, s) in slots.iter().enumerate() {
        if s.result == PENDING {
            return (i, info);
        }
        info |= s.result == INFO;
    }
    (slots.len(), info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(out: &[u8]) -> Vec<(u8, u32)> {
        out.chunks(ack::ACK_LEN)
            .map(|c| {
                let v = ack::read(c).unwrap();
                (v.result, v.generation)
            })
            .collect()
    }

    #[test]
    fn acks_leave_in_arrival_order_whatever_the_decision_order() {
        let mut q = AckQueue::default();
        let a = q.push(1);
        let b = q.push(2);
        let c = q.push(3);
        let mut out = Vec::new();
        q.decide(c, 0);
        q.decide(b, 11);
        assert_eq!(q.take_ready(&mut out, |_| {}), 0);
        assert!(out.is_empty());
        q.decide(a, 4);
        let mut counted = Vec::new();
        assert_eq!(q.take_ready(&mut out, |r| counted.push(r)), 3);
        assert_eq!(results(&out), vec![(4, 1), (11, 2), (0, 3)]);
        assert_eq!(counted, vec![4, 11, 0]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_late_second_decision_changes_nothing() {
        let mut q = AckQueue::default();
        let a = q.push(7);
        q.decide(a, 0);
        q.decide(a, 11);
        let mut out = Vec::new();
        q.take_ready(&mut out, |_| {});
        q.decide(a, 11);
        assert_eq!(results(&out), vec![(0, 7)]);
        let b = q.push(8);
        assert_eq!(b, 1);
    }

    #[test]
    fn a_run_is_decided_like_its_slots_one_by_one() {
        let mut q = AckQueue::default();
        let seqs: Vec<Seq> = (0..6).map(|g| q.push(g)).collect();
        q.decide(seqs[1], 4);
        // Slots 0..4: slot 1 keeps its first decision.
        q.decide_run(seqs[0], 4, 0);
        let mut out = Vec::new();
        assert_eq!(q.take_ready(&mut out, |_| {}), 4);
        assert_eq!(results(&out), vec![(0, 0), (4, 1), (0, 2), (0, 3)]);
        // A run reaching back over written slots and past the queue's end
        // decides only what is there.
        q.decide_run(seqs[2], 10, 11);
        out.clear();
        assert_eq!(q.take_ready(&mut out, |_| {}), 2);
        assert_eq!(results(&out), vec![(11, 4), (11, 5)]);
        q.decide_run(seqs[0], 0, 11);
        assert!(q.is_empty());
    }

    #[test]
    fn holding_is_worth_it_only_while_the_group_th_slot_is_undecided() {
        let mut q = AckQueue::default();
        assert!(!q.worth_holding(3), "an empty queue");
        let first = q.push(1);
        q.push(2);
        assert!(!q.worth_holding(3), "fewer than 3 unanswered");
        q.push(3);
        assert!(q.worth_holding(3), "3 unanswered, none decided");
        q.decide(first, ack::OK);
        assert!(q.worth_holding(3), "1 of 3 ready");
        q.decide_run(first + 1, 2, ack::OK);
        assert!(!q.worth_holding(3), "all 3 ready: written at once");
        let mut out = Vec::new();
        assert_eq!(q.take_ready(&mut out, |_| {}), 3);
        q.push(4);
        q.push(5);
        q.push(6);
        assert!(q.worth_holding(3));
        assert!(!q.worth_holding(0), "a group of 0 never holds");
        q.close();
        assert!(!q.worth_holding(3), "closed: the writer drains at once");
    }

    /// The queue's ring wraps around as slots are written and reserved:
    /// the decided prefix spans both halves, with and without an info
    /// answer among them, and every ack still leaves once, in order.
    #[test]
    fn acks_leave_in_order_across_the_rings_wrap() {
        let mut q = AckQueue::default();
        let mut next_gen = 0u32;
        let mut want: Vec<Vec<u8>> = Vec::new();
        let mut got = Vec::new();
        for round in 0..40u32 {
            let seqs: Vec<Seq> = (0..7)
                .map(|_| {
                    next_gen += 1;
                    q.push(next_gen)
                })
                .collect();
            if round % 5 == 3 {
                q.push_info();
            }
            // Decided out of order; the last one stays pending a round.
            for (k, &seq) in seqs.iter().enumerate().rev().skip(1) {
                q.decide(seq, [0, 4, 11][k % 3]);
            }
            let mut out = Vec::new();
            let mut counted = Vec::new();
            let n = q.take_ready(&mut out, |r| counted.push(r));
            got.extend_from_slice(&out);
            // Every decided ack at the head left in this one take.
            assert!(q.slots.front().is_none_or(|s| s.result == PENDING));
            assert_eq!(
                out.len(),
                counted.len() * ack::ACK_LEN + (n - counted.len()) * 8
            );
            q.decide(seqs[6], 0);
        }
        let mut out = Vec::new();
        q.take_ready(&mut out, |_| {});
        got.extend_from_slice(&out);
        assert!(q.is_empty());
        // The same requests answered one by one, in order.
        let mut g = 0u32;
        for round in 0..40u32 {
            for k in 0..7 {
                g += 1;
                let r = if k == 6 { 0 } else { [0, 4, 11][k % 3] };
                want.push(ack::frame(r, g).to_vec());
            }
            if round % 5 == 3 {
                want.push(vec![2, 1, 0, 0, 0, 0, 0, 0]);
            }
        }
        assert_eq!(got, want.concat());
    }

    /// A run whose slots lie on both halves of the wrapped ring is decided
    /// on both, and only its pending slots.
    #[test]
    fn a_run_across_the_rings_wrap_is_decided_on_both_halves() {
        let mut q = AckQueue::default();
        let mut out = Vec::new();
        // Written slots move the ring's head on until new ones wrap.
        let mut g = 0u32;
        while q.slots.as_slices().1.is_empty() {
            let s = q.push(g);
            g += 1;
            if q.len() > 3 {
                q.decide(s - 3, 0);
                q.take_ready(&mut out, |_| {});
            }
        }
        let first = q.base;
        let n = q.len() as u64;
        assert!(n >= 3 && !q.slots.as_slices().0.is_empty());
        q.decide(first + 1, 4);
        q.decide_run(first, n, 11);
        out.clear();
        assert_eq!(q.take_ready(&mut out, |_| {}), n as usize);
        let want: Vec<u8> = (0..n)
            .flat_map(|k| {
                let gen = g - n as u32 + k as u32;
                ack::frame(if k == 1 { 4 } else { 11 }, gen)
            })
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn info_answers_keep_their_place() {
        let mut q = AckQueue::default();
        let a = q.push(1);
        q.push_info();
        let mut out = Vec::new();
        assert_eq!(q.take_ready(&mut out, |_| {}), 0);
        q.decide(a, 0);
        assert_eq!(q.take_ready(&mut out, |_| {}), 2);
        assert_eq!(out.len(), ack::ACK_LEN + 8);
        assert_eq!(&out[ack::ACK_LEN..], &[2, 1, 0, 0, 0, 0, 0, 0]);
    }
}
