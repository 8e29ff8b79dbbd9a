//! The call timeouts of one destination pool's requests, on one shard: a
//! queue of deadlines in the order they were set, watched by one task.
//!
//! Every request races its call timeout. A glommio timer per request is a
//! reactor registration (a `BTreeMap` and a `HashMap` insert, both removed
//! again when the answer comes first): 1,600 instructions per record of an
//! unbatched shard under callgrind. A pool gives every request the same
//! `call-timeout`, so the deadlines come in order: a FIFO holds them, and one
//! task sleeps until the earliest one still waiting, wakes the requests whose
//! deadline passed, and sleeps again. A deadline earlier than the last one
//! queued (a retry's timeout cut short by its record's deadline) gets a
//! glommio timer of its own instead.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A pool's queue of call timeouts.
#[derive(Default)]
pub struct Timeouts {
    inner: Rc<RefCell<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// Deadlines in the order they were set, which is the order they pass.
    /// An entry whose timeout ended (answered first) stays until it reaches
    /// the front: its slot's generation tells it is stale.
    queue: VecDeque<Entry>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Whether the watching task was started (it runs while the queue lives).
    watching: bool,
    /// The watching task, while the queue is empty.
    watcher: Option<Waker>,
}

#[derive(Clone, Copy)]
struct Entry {
    at: Instant,
    slot: u32,
    generation: u32,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    fired: bool,
    waker: Option<Waker>,
}

impl Timeouts {
    /// A future that completes `timeout` after `start` (and never, when it
    /// is dropped before). Must be called on a glommio executor.
    pub fn start(&self, start: Instant, timeout: Duration) -> Timeout<'_> {
        let at = start + timeout;
        let mut inner = self.inner.borrow_mut();
        if inner.queue.back().is_some_and(|last| at < last.at) {
            return Timeout(Kind::Own(glommio::timer::Timer::new(
                at.saturating_duration_since(Instant::now()),
            )));
        }
        let slot = match inner.free.pop() {
            Some(s) => s,
            None => {
                inner.slots.push(Slot::default());
                // A slot per request in flight: far below u32::MAX.
                u32::try_from(inner.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let generation = inner.slots.get(slot as usize).map_or(0, |s| s.generation);
        inner.queue.push_back(Entry {
            at,
            slot,
            generation,
        });
        inner.compact();
        let start_watching = !inner.watching;
        inner.watching = true;
        let watcher = inner.watcher.take();
        // Released first: glommio runs a task it spawns at once.
        drop(inner);
        if start_watching {
            glommio::spawn_local(watch(Rc::downgrade(&self.inner))).detach();
        }
        if let Some(w) = watcher {
            w.wake();
        }
        Timeout(Kind::Queued {
            inner: &self.inner,
            slot,
        })
    }
}

impl Drop for Timeouts {
    fn drop(&mut self) {
        // The watching task ends once it finds the queue gone.
        if let Some(w) = self.inner.borrow_mut().watcher.take() {
            w.wake();
        }
    }
}

impl Inner {
    /// Fires every deadline up to `now`, drops stale entries, and returns
    /// the next deadline still waiting.
    fn fire(&mut self, now: Instant) -> Option<Instant> {
        while let Some(e) = self.queue.front().copied() {
            let Some(slot) = self.slots.get_mut(e.slot as usize) else {
                self.queue.pop_front();
                continue;
            };
            if slot.generation == e.generation {
                if e.at > now {
                    return Some(e.at);
                }
                slot.fired = true;
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
            self.queue.pop_front();
        }
        None
    }

    /// Drops every stale entry once they outnumber the live ones (plus a
    /// margin): one request still waiting at the front keeps the entries of
    /// all that ended behind it, a call-timeout's worth of them. Amortised:
    /// each compaction leaves only live entries, so the next one comes
    /// after at least `COMPACT_MARGIN` more.
    fn compact(&mut self) {
        const COMPACT_MARGIN: usize = 1024;
        let live = self.slots.len() - self.free.len();
        if self.queue.len() <= 2 * live + COMPACT_MARGIN {
            return;
        }
        let slots = &self.slots;
        self.queue.retain(|e| {
            slots
                .get(e.slot as usize)
                .is_some_and(|s| s.generation == e.generation)
        });
    }

    /// Ends the timeout in `slot`: its queue entry (if still queued) goes
    /// stale and the slot is reused.
    fn end(&mut self, slot: u32) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        s.generation = s.generation.wrapping_add(1);
        s.fired = false;
        s.waker = None;
        self.free.push(slot);
        // Answers come mostly in the order requests were sent: dropping stale
        // entries at the front keeps the queue about as long as the requests
        // in flight instead of a call-timeout's worth of them.
        while let Some(e) = self.queue.front() {
            match self.slots.get(e.slot as usize) {
                Some(s) if s.generation == e.generation => break,
                _ => {
                    self.queue.pop_front();
                }
            }
        }
    }
}

/// Sleeps until the earliest deadline still waiting, fires what passed.
async fn watch(inner: Weak<RefCell<Inner>>) {
    loop {
        let next = match inner.upgrade() {
            Some(rc) => rc.borrow_mut().fire(Instant::now()),
            None => return,
        };
        match next {
            // Deadlines queued meanwhile are later: this sleep stays right.
            Some(at) => glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await,
            None => {
                std::future::poll_fn(|cx| {
                    let Some(rc) = inner.upgrade() else {
                        return Poll::Ready(());
                    };
                    let mut i = rc.borrow_mut();
                    if i.queue.is_empty() {
                        i.watcher = Some(cx.waker().clone());
                        Poll::Pending
                    } else {
                        Poll::Ready(())
                    }
                })
                .await
            }
        }
    }
}

/// One request's call timeout.
pub struct Timeout<'a>(Kind<'a>);

enum Kind<'a> {
    Queued {
        inner: &'a RefCell<Inner>,
        slot: u32,
    },
    /// A deadline earlier than the queue's last: a timer of its own.
    Own(glommio::timer::Timer),
}

impl Future for Timeout<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().0 {
            Kind::Queued { inner, slot } => {
                let mut i = inner.borrow_mut();
                let Some(s) = i.slots.get_mut(*slot as usize) else {
                    return Poll::Ready(());
                };
                if s.fired {
                    return Poll::Ready(());
                }
                // Polled whenever the request's task wakes: the waker is
                // cloned only when it changed.
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Kind::Own(t) => Pin::new(t).poll(cx).map(|_| ()),
        }
    }
}

impl Drop for Timeout<'_> {
    fn drop(&mut self) {
        if let Kind::Queued { inner, slot } = &self.0 {
            inner.borrow_mut().end(*slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_a_shard<T: Send + 'static, F: Future<Output = T> + 'static>(
        f: impl FnOnce() -> F + Send + 'static,
    ) -> T {
        crate::rt::executor_builder(None, "timeouts-test")
            .spawn(f)
            .expect("an executor starts")
            .join()
            .expect("the executor ends")
    }

    async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
    }

    #[test]
    fn queued_timeouts_fire_at_their_deadline_and_ended_ones_never() {
        let (order, queued_left) = on_a_shard(|| async {
            let t = Timeouts::default();
            let start = Instant::now();
            let ms = Duration::from_millis;
            let mut a = t.start(start, ms(20));
            let mut b = t.start(start, ms(40));
            let mut c = t.start(start, ms(60));
            assert!(matches!(a.0, Kind::Queued { .. }));
            assert!(matches!(c.0, Kind::Queued { .. }));
            assert!(poll_once(&mut a).await.is_pending());
            assert!(poll_once(&mut b).await.is_pending());
            // Ended before its deadline (the answer came first).
            drop(b);
            let mut order = Vec::new();
            let a_at = async {
                (&mut a).await;
                start.elapsed()
            };
            let c_at = async {
                (&mut c).await;
                start.elapsed()
            };
            let (fa, fc) = futures_lite::future::zip(a_at, c_at).await;
            order.push(fa);
            order.push(fc);
            drop((a, c));
            let left = t.inner.borrow().queue.len();
            (order, left)
        });
        assert!(order[0] >= Duration::from_millis(20), "{order:?}");
        assert!(order[1] >= Duration::from_millis(60), "{order:?}");
        assert_eq!(queued_left, 0);
    }

    #[test]
    fn an_earlier_deadline_than_the_last_queued_gets_its_own_timer_and_fires() {
        let waited = on_a_shard(|| async {
            let t = Timeouts::default();
            let start = Instant::now();
            let late = t.start(start, Duration::from_secs(60));
            let early = t.start(start, Duration::from_millis(10));
            assert!(matches!(early.0, Kind::Own(_)));
            early.await;
            let waited = start.elapsed();
            drop(late);
            waited
        });
        assert!(waited >= Duration::from_millis(10), "{waited:?}");
        assert!(waited < Duration::from_secs(60), "{waited:?}");
    }

    #[test]
    fn slots_are_reused_and_stale_entries_leave_the_queue() {
        let (slots, queued) = on_a_shard(|| async {
            let t = Timeouts::default();
            let start = Instant::now();
            for _ in 0..1000 {
                let mut x = t.start(start, Duration::from_secs(60));
                assert!(poll_once(&mut x).await.is_pending());
            }
            let i = t.inner.borrow();
            (i.slots.len(), i.queue.len())
        });
        assert_eq!(slots, 1);
        assert_eq!(queued, 0);
    }

    #[test]
    fn one_waiting_request_does_not_keep_every_ended_one_queued() {
        let (queued, live) = on_a_shard(|| async {
            let t = Timeouts::default();
            let start = Instant::now();
            // Waits at the front; 10,000 requests after it end at once.
            let stuck = t.start(start, Duration::from_secs(60));
            for _ in 0..10_000 {
                drop(t.start(start, Duration::from_secs(60)));
            }
            let queued = t.inner.borrow().queue.len();
            let live = {
                let i = t.inner.borrow();
                i.queue
                    .iter()
                    .filter(|e| i.slots[e.slot as usize].generation == e.generation)
                    .count()
            };
            drop(stuck);
            (queued, live)
        });
        assert_eq!(live, 1);
        assert!(queued <= 2 + 1024 + 1, "{queued} entries queued");
    }

    #[test]
    fn the_watcher_sleeps_through_an_empty_queue_and_wakes_for_a_new_deadline() {
        let fired = on_a_shard(|| async {
            let t = Timeouts::default();
            // Started, then idle: it wakes at the ended timeout's deadline
            // (it does not look again before), finds the queue empty and
            // waits for a deadline to be queued.
            drop(t.start(Instant::now(), Duration::from_millis(1)));
            glommio::timer::sleep(Duration::from_millis(20)).await;
            assert!(t.inner.borrow().watcher.is_some());
            let start = Instant::now();
            t.start(start, Duration::from_millis(5)).await;
            start.elapsed()
        });
        assert!(fired >= Duration::from_millis(5), "{fired:?}");
    }
}
