//! glommio's `Timer` as patched in `vendor/glommio` (SLUICE-PATCH.md): a
//! timer polled again by the same task stays registered without being taken
//! out of the reactor and put back, and still fires; a timer reset after it
//! fired is registered again by its next poll. Every delivery attempt races a
//! call-timeout timer, so a timer that never fires would hold a record
//! forever.

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use common::on_a_shard;
use glommio::timer::{sleep, Timer};

/// Polls `fut` once with the current task's waker.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx))).await
}

#[test]
fn a_timer_polled_many_times_by_one_task_fires_once_due() {
    let waited = on_a_shard(|| async {
        let start = Instant::now();
        let mut t = pin!(Timer::new(Duration::from_millis(30)));
        // Polled repeatedly before it is due, as a future raced against a
        // timeout is whenever its task is woken for the other side.
        for _ in 0..100 {
            assert!(poll_once(&mut t).await.is_pending());
        }
        sleep(Duration::from_millis(1)).await;
        assert!(poll_once(&mut t).await.is_pending());
        t.await;
        start.elapsed()
    });
    assert!(
        waited >= Duration::from_millis(30),
        "fired early: {waited:?}"
    );
}

#[test]
fn a_timer_reset_after_it_fired_fires_again() {
    let fired = on_a_shard(|| async {
        let mut t = Box::pin(Timer::new(Duration::from_millis(5)));
        assert!(poll_once(&mut t).await.is_pending());
        // The reactor fires it (and forgets it) while this task sleeps.
        sleep(Duration::from_millis(30)).await;
        t.as_mut().get_mut().reset(Duration::from_millis(20));
        let reset_at = Instant::now();
        // Without registering again it would wait for ever: raced against a
        // 5 s sleep, polled first, so that a wake by the sleep alone ends it
        // as `false` (the timer, long past due by then, would be ready too).
        let fired = futures_lite::future::or(
            async {
                sleep(Duration::from_secs(5)).await;
                false
            },
            async {
                (&mut t).await;
                true
            },
        )
        .await;
        (fired, reset_at.elapsed())
    });
    assert!(fired.0, "the reset timer never fired");
    assert!(
        fired.1 >= Duration::from_millis(20),
        "fired early: {:?}",
        fired.1
    );
}
