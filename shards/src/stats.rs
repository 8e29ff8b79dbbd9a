//! Per-shard counters. One [`ShardStats`] per shard, written only by its own
//! shard with relaxed atomics (nothing shared between cores on the hot path)
//! and read by the control thread for metrics. Per-destination counters live
//! in [`DestinationStats`], held directly by the shard's pool so that the hot
//! path never looks them up; the list is locked only when a pool is created.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Counter updates by the one thread that writes a counter (its shard): a
/// relaxed load and store instead of a locked read-modify-write on the hot
/// path. Readers on other threads see the old or the new value, never a
/// torn one.
pub trait LocalCounter {
    fn local_add(&self, n: u64);
    fn local_sub(&self, n: u64);
}

impl LocalCounter for AtomicU64 {
    #[inline]
    fn local_add(&self, n: u64) {
        self.store(self.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    fn local_sub(&self, n: u64) {
        self.store(self.load(Relaxed).wrapping_sub(n), Relaxed);
    }
}

/// Counters of one shard.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// The shard's index (0-based).
    pub shard: usize,
    /// Frames that carried a record (type 3 or 4).
    pub records_received: AtomicU64,
    /// Acks written with result 0.
    pub acked_ok: AtomicU64,
    /// Acks written with result 11 (XDR retries).
    pub acked_retry: AtomicU64,
    /// Acks written with result 4 (the record can never be delivered).
    pub acked_parameter: AtomicU64,
    /// Records acked without being sent (routing `skip` or no route).
    pub skipped: AtomicU64,
    /// Records that could not be parsed (answered 4).
    pub parse_errors: AtomicU64,
    /// Records that could not be encoded (answered 4).
    pub encode_errors: AtomicU64,
    /// Connections closed because their bytes could not be framed.
    pub frames_rejected: AtomicU64,
    /// Info frames answered (not expected from XDR).
    pub info_frames: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Records held now (received, not yet acked).
    pub in_flight: AtomicU64,
    /// XDR sessions open now.
    pub sessions: AtomicU64,
    /// XDR sessions accepted since start.
    pub sessions_total: AtomicU64,
    /// Ack writes (each may carry many acks).
    pub ack_writes: AtomicU64,
    /// Records written to the dead-letter file (then acked 0).
    pub dead_letters: AtomicU64,
    /// Records whose dead letter could not be written (answered 11).
    pub dead_letter_failures: AtomicU64,
    /// Records refused for good without a dead-letter file (answered 4).
    pub abandoned: AtomicU64,
    /// record-ordering: records older (by LUT) than their key's delivered
    /// version, acked 0 without being sent.
    pub stale: AtomicU64,
    /// record-ordering: records replaced by a newer version of their key
    /// while waiting, acked with that version's result.
    pub superseded: AtomicU64,
    /// record-ordering: records handed to their key's owner shard.
    pub handed_off: AtomicU64,
    /// record-ordering: keys this shard remembers now (gauge).
    pub ordering_keys: AtomicU64,
    destinations: Mutex<Vec<Arc<DestinationStats>>>,
}

impl ShardStats {
    pub fn new(shard: usize) -> Self {
        ShardStats {
            shard,
            ..Default::default()
        }
    }

    /// The counters of destination `name` on this shard, created on first use
    /// (a reload that keeps a destination keeps its counters).
    pub fn destination(&self, name: &str, endpoints: &[String]) -> Arc<DestinationStats> {
        let mut list = match self.destinations.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(d) = list.iter().find(|d| d.name == name) {
            return d.clone();
        }
        let d = Arc::new(DestinationStats {
            name: name.to_string(),
            endpoints: endpoints
                .iter()
                .map(|url| EndpointStats {
                    url: url.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        list.push(d.clone());
        d
    }

    /// A snapshot of the per-destination counters, for the control thread.
    pub fn destinations(&self) -> Vec<Arc<DestinationStats>> {
        match self.destinations.lock() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Acks counted by result code while a batch of them is written, then
/// added to the shard's counters at once.
#[derive(Debug, Default)]
pub struct AckCounts {
    ok: u64,
    parameter: u64,
    retry: u64,
}

impl AckCounts {
    /// Counts one ack by result code: 0, 4, or any other (a retry code).
    pub fn add(&mut self, result: u8) {
        match result {
            0 => self.ok += 1,
            4 => self.parameter += 1,
            _ => self.retry += 1,
        }
    }

    /// Adds the counts to `stats` and starts again from zero.
    pub fn flush(&mut self, stats: &ShardStats) {
        for (n, counter) in [
            (self.ok, &stats.acked_ok),
            (self.parameter, &stats.acked_parameter),
            (self.retry, &stats.acked_retry),
        ] {
            if n > 0 {
                counter.local_add(n);
            }
        }
        *self = AckCounts::default();
    }
}

/// Counters of one destination on one shard.
#[derive(Debug, Default)]
pub struct DestinationStats {
    pub name: String,
    /// Requests answered, by status class: index 1..=5 for 1xx..5xx, 0 other.
    pub responses: [AtomicU64; 6],
    /// Requests that failed before a status (connect, reset, protocol).
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub retries: AtomicU64,
    /// Retries not made: the retry budget was spent (`retry.budget-percent`).
    pub retries_denied: AtomicU64,
    /// Attempts not queued: every endpoint had `max-request-queued-per-endpoint`
    /// requests waiting.
    pub queue_full: AtomicU64,
    /// Records this destination accepted / failed for good (after retries).
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    /// Records refused for good (a status in the drop list).
    pub rejected: AtomicU64,
    pub bytes_out: AtomicU64,
    pub endpoints: Vec<EndpointStats>,
}

impl DestinationStats {
    pub fn count_status(&self, status: u16) {
        let class = usize::from(status / 100);
        let i = if (1..=5).contains(&class) { class } else { 0 };
        self.responses[i].local_add(1);
    }
}

/// Counters of one endpoint (URL) of a destination on one shard.
#[derive(Debug, Default)]
pub struct EndpointStats {
    pub url: String,
    /// 1 when the shard considers the endpoint healthy.
    pub healthy: AtomicU64,
    pub in_flight: AtomicU64,
    pub connects: AtomicU64,
    pub connect_errors: AtomicU64,
}

/// Latency histograms of one shard, copied out on request (the control
/// thread asks over the shard's control channel; recording stays local).
#[derive(Debug, Clone)]
pub struct ShardHistograms {
    pub shard: usize,
    /// Receive → ack decided, microseconds.
    pub ack: hdrhistogram::Histogram<u64>,
    /// Per destination: request sent → answer (or failure), microseconds.
    pub destinations: Vec<(String, hdrhistogram::Histogram<u64>)>,
}

/// A histogram of microseconds from 1 µs to 60 s, 3 significant figures.
pub fn micros_histogram() -> hdrhistogram::Histogram<u64> {
    // Constant, valid bounds: creation cannot fail.
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
        .expect("1 µs .. 60 s at 3 significant figures are valid bounds")
}

/// Records the time since `since` in microseconds (clamped to the bounds).
pub fn record_since(h: &mut hdrhistogram::Histogram<u64>, since: std::time::Instant) {
    record_between(h, since, std::time::Instant::now(), 1);
}

/// Records `n` events that each took from `since` to `now`, in
/// microseconds (clamped to the bounds).
pub fn record_between(
    h: &mut hdrhistogram::Histogram<u64>,
    since: std::time::Instant,
    now: std::time::Instant,
    n: u64,
) {
    let us = (now.saturating_duration_since(since).as_micros() as u64).clamp(1, 60_000_000);
    h.saturating_record_n(us, n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_are_counted_by_code() {
        let s = ShardStats::new(3);
        let mut counts = AckCounts::default();
        for code in [0, 0, 11, 4] {
            counts.add(code);
        }
        counts.flush(&s);
        // A flush starts the counts again from zero.
        counts.flush(&s);
        assert_eq!(s.shard, 3);
        assert_eq!(s.acked_ok.load(Relaxed), 2);
        assert_eq!(s.acked_retry.load(Relaxed), 1);
        assert_eq!(s.acked_parameter.load(Relaxed), 1);
    }

    #[test]
    fn records_of_one_duration_are_counted_together() {
        let mut h = micros_histogram();
        let t = std::time::Instant::now();
        record_between(&mut h, t, t + std::time::Duration::from_millis(5), 3);
        record_between(&mut h, t, t, 1);
        assert_eq!(h.len(), 4);
        assert_eq!(h.count_at(5_000), 3);
        assert_eq!(h.count_at(1), 1, "zero is clamped to 1 µs");
    }

    #[test]
    fn ack_counts_are_added_at_once() {
        let s = ShardStats::new(0);
        let mut c = AckCounts::default();
        for r in [0, 0, 0, 11, 4, 18] {
            c.add(r);
        }
        c.flush(&s);
        c.add(0);
        c.flush(&s);
        c.flush(&s);
        assert_eq!(s.acked_ok.load(Relaxed), 4);
        assert_eq!(s.acked_retry.load(Relaxed), 2);
        assert_eq!(s.acked_parameter.load(Relaxed), 1);
    }

    #[test]
    fn destination_counters_are_kept_by_name() {
        let s = ShardStats::new(0);
        let a = s.destination("es", &["http://a".into()]);
        a.count_status(503);
        a.count_status(201);
        let again = s.destination("es", &[]);
        assert_eq!(again.responses[5].load(Relaxed), 1);
        assert_eq!(again.responses[2].load(Relaxed), 1);
        assert_eq!(s.destinations().len(), 1);
        assert_eq!(again.endpoints[0].url, "http://a");
    }
}
