//! glommio's `Semaphore` as patched in `vendor/glommio` (SLUICE-PATCH.md): a
//! release wakes only as many waiters as it can serve, counting the units
//! already set aside for waiters woken before and not yet run; waiters are
//! served in the order they came; and a woken waiter dropped before it ran
//! hands its units on. Every unbatched record waits on one (its endpoint's
//! request slots), so a lost wake would hold a record until its deadline.

mod common;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use common::on_a_shard;
use glommio::sync::Semaphore;
use glommio::timer::sleep;

/// Counts the polls of the future it wraps.
struct Counted<F> {
    inner: Pin<Box<F>>,
    polls: Rc<Cell<usize>>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.set(self.polls.get() + 1);
        self.inner.as_mut().poll(cx)
    }
}

#[test]
fn releases_wake_only_waiters_that_can_run_and_in_order() {
    const WAITERS: usize = 50;
    let (polls, early, order) = on_a_shard(|| async {
        let sem = Rc::new(Semaphore::new(0));
        let polls = Rc::new(Cell::new(0));
        let order = Rc::new(RefCell::new(Vec::new()));
        let held = Rc::new(RefCell::new(Vec::new()));
        let mut tasks = Vec::new();
        for id in 0..WAITERS {
            let (sem, polls, order, held) =
                (sem.clone(), polls.clone(), order.clone(), held.clone());
            tasks.push(glommio::spawn_local(async move {
                let permit = Counted {
                    inner: Box::pin(sem.acquire_static_permit(1)),
                    polls,
                }
                .await
                .expect("the semaphore stays open");
                order.borrow_mut().push(id);
                // Served, and holds its unit (a request on the wire).
                held.borrow_mut().push(permit);
            }));
            // Each waiter queues before the next is spawned.
            sleep(Duration::from_millis(1)).await;
        }
        // Ten units released one by one before any woken waiter runs:
        // upstream counted the units of the waiters already woken as free
        // again at every release, woke all fifty, and forty of them found
        // nothing and queued again.
        for _ in 0..10 {
            sem.signal(1);
        }
        sleep(Duration::from_millis(10)).await;
        let early = order.borrow().len();
        for _ in 10..WAITERS {
            sem.signal(1);
        }
        for t in tasks {
            t.await;
        }
        let order = order.take();
        held.borrow_mut().clear();
        (polls.get(), early, order)
    });
    assert_eq!(early, 10, "ten units serve ten waiters");
    assert_eq!(
        order,
        (0..WAITERS).collect::<Vec<_>>(),
        "served out of order"
    );
    // One poll to queue, one when woken: a waiter woken for a unit another
    // took is polled a third time.
    assert_eq!(polls, 2 * WAITERS, "waiters polled without a unit for them");
}

#[test]
fn a_woken_waiter_dropped_before_it_runs_hands_its_unit_on() {
    let served = on_a_shard(|| async {
        let sem = Rc::new(Semaphore::new(0));
        let first = glommio::spawn_local({
            let sem = sem.clone();
            async move { sem.acquire(1).await.is_ok() }
        });
        sleep(Duration::from_millis(1)).await;
        let second = glommio::spawn_local({
            let sem = sem.clone();
            async move { sem.acquire(1).await.is_ok() }
        });
        sleep(Duration::from_millis(1)).await;
        // The unit is set aside for `first`, which is cancelled before it
        // runs (a record whose deadline passed while it waited).
        sem.signal(1);
        drop(first);
        futures_lite::future::or(second, async {
            sleep(Duration::from_secs(2)).await;
            false
        })
        .await
    });
    assert!(
        served,
        "the second waiter never got the dropped waiter's unit"
    );
}
