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
        let mut head_decided = false;
        for (i, slot) in self.slots.range_mut(start..end).enumerate() {
            if slot.result == PENDING {
                slot.result = result;
                head_decided |= start + i == 0;
            }
        }
        if head_decided {
            self.wake();
        }
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
        // The decided prefix first, then its acks in one pass with room
        // made once (a batch decides a hundred slots at a time).
        let n = self
            .slots
            .iter()
            .take_while(|s| s.result != PENDING)
            .count();
        out.reserve(n * ack::ACK_LEN);
        for slot in self.slots.drain(..n) {
            match slot.result {
                INFO => out.extend_from_slice(&[2, 1, 0, 0, 0, 0, 0, 0]),
                r => {
                    out.extend_from_slice(&ack::frame(r, slot.generation));
                    count(r);
                }
            }
        }
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
