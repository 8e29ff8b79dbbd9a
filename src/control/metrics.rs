//! The process's metrics as one merged snapshot, in Prometheus text format
//! (prometheus-client) and as JSON.
//!
//! Shards keep their own counters and histograms (atomics and per-shard
//! hdrhistograms, nothing shared on the hot path); on each scrape the
//! control thread asks the data plane for a [`Snapshot`] merged over shards
//! and encodes it here. Encoding goes through prometheus-client's
//! [`Collector`], so the text follows the exposition format exactly (types,
//! `_total` suffixes, cumulative buckets, escaping).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::Serialize;
use sluice_shards::stats::{ShardHistograms, ShardStats};

/// Upper bounds (seconds) of the latency buckets: 0.5 ms to XDR's 10 s
/// ack deadline.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency distribution in Prometheus shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySnapshot {
    /// Count per bucket of [`LATENCY_BUCKETS`] (not cumulative), then +Inf.
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl LatencySnapshot {
    /// From an hdrhistogram of microseconds.
    pub fn from_micros(h: &hdrhistogram::Histogram<u64>) -> LatencySnapshot {
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        let mut below = 0u64;
        for bound in LATENCY_BUCKETS {
            // Bounds are whole microseconds, so the cast is exact.
            let upto = h.count_between(0, (bound * 1e6) as u64);
            buckets.push(upto.saturating_sub(below));
            below = upto;
        }
        buckets.push(h.len().saturating_sub(below));
        LatencySnapshot {
            buckets,
            sum_seconds: h.mean() * h.len() as f64 / 1e6,
            count: h.len(),
        }
    }

    /// Adds another shard's distribution.
    pub fn merge(&mut self, other: &LatencySnapshot) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_seconds += other.sum_seconds;
        self.count += other.count;
    }

    fn prometheus_buckets(&self) -> Vec<(f64, u64)> {
        let mut out: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .zip(self.buckets.iter().chain(std::iter::repeat(&0)))
            .map(|(b, c)| (*b, *c))
            .collect();
        out.push((
            f64::MAX,
            self.buckets
                .get(LATENCY_BUCKETS.len())
                .copied()
                .unwrap_or(0),
        ));
        out
    }
}

/// One endpoint's health as the checks see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EndpointSnapshot {
    pub url: String,
    pub healthy: bool,
}

/// One destination, merged over shards.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DestinationSnapshot {
    pub name: String,
    /// Responses by status class: index 0 = 1xx … 4 = 5xx.
    pub responses: [u64; 5],
    /// Requests that got no response (connect or I/O error).
    pub failures: u64,
    pub retries: u64,
    /// Retries not made: the retry budget was spent.
    pub retries_denied: u64,
    pub timeouts: u64,
    /// Attempts not queued: every endpoint's queue was full.
    pub queue_full: u64,
    /// Records accepted / failed for good (after retries).
    pub delivered: u64,
    pub failed: u64,
    /// Records refused for good (a status in the drop list).
    pub rejected: u64,
    pub endpoints: Vec<EndpointSnapshot>,
    pub latency: LatencySnapshot,
}

/// The whole data plane, merged over shards.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    pub shards: usize,
    /// Every shard has bound every listener.
    pub listening: bool,
    pub records_received: u64,
    /// Acks sent, by result code.
    pub acked: BTreeMap<u8, u64>,
    pub skipped: u64,
    pub parse_errors: u64,
    pub encode_errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub in_flight: i64,
    pub sessions: i64,
    pub sessions_total: u64,
    /// Connections closed because their bytes could not be framed.
    pub frames_rejected: u64,
    /// Ack writes (each may carry several acks).
    pub ack_writes: u64,
    /// Records written to the dead-letter file / whose write failed /
    /// refused for good without a dead-letter file.
    pub dead_letters: u64,
    pub dead_letter_failures: u64,
    pub abandoned: u64,
    /// record-ordering: stale records acked unsent, versions replaced by a
    /// newer one, records handed to their key's owner shard.
    pub stale: u64,
    pub superseded: u64,
    pub handed_off: u64,
    /// record-ordering: keys remembered now, over all shards.
    pub ordering_keys: i64,
    pub destinations: Vec<DestinationSnapshot>,
    /// XDR receive → ack.
    pub ack_latency: LatencySnapshot,
}

impl Snapshot {
    /// Merges the shards' own counters (read with relaxed loads: a scrape
    /// sees each counter at some recent point, not one instant).
    pub fn from_shards(stats: &[Arc<ShardStats>]) -> Snapshot {
        let mut s = Snapshot {
            shards: stats.len(),
            ..Snapshot::default()
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauge = |a: &AtomicU64| i64::try_from(load(a)).unwrap_or(i64::MAX);
        for shard in stats {
            s.records_received += load(&shard.records_received);
            for (code, n) in [
                (0u8, &shard.acked_ok),
                (4, &shard.acked_parameter),
                (11, &shard.acked_retry),
            ] {
                *s.acked.entry(code).or_default() += load(n);
            }
            s.skipped += load(&shard.skipped);
            s.parse_errors += load(&shard.parse_errors);
            s.encode_errors += load(&shard.encode_errors);
            s.bytes_in += load(&shard.bytes_in);
            s.bytes_out += load(&shard.bytes_out);
            s.in_flight += gauge(&shard.in_flight);
            s.sessions += gauge(&shard.sessions);
            s.sessions_total += load(&shard.sessions_total);
            s.frames_rejected += load(&shard.frames_rejected);
            s.ack_writes += load(&shard.ack_writes);
            s.dead_letters += load(&shard.dead_letters);
            s.dead_letter_failures += load(&shard.dead_letter_failures);
            s.abandoned += load(&shard.abandoned);
            s.stale += load(&shard.stale);
            s.superseded += load(&shard.superseded);
            s.handed_off += load(&shard.handed_off);
            s.ordering_keys += gauge(&shard.ordering_keys);
            for d in shard.destinations() {
                let i = match s.destinations.iter().position(|x| x.name == d.name) {
                    Some(i) => i,
                    None => {
                        s.destinations.push(DestinationSnapshot {
                            name: d.name.clone(),
                            endpoints: d
                                .endpoints
                                .iter()
                                .map(|e| EndpointSnapshot {
                                    url: e.url.clone(),
                                    healthy: false,
                                })
                                .collect(),
                            ..Default::default()
                        });
                        s.destinations.len() - 1
                    }
                };
                let m = &mut s.destinations[i];
                // Index 0 of the shards' array counts statuses outside 1xx-5xx.
                for (class, n) in m.responses.iter_mut().enumerate() {
                    *n += load(&d.responses[class + 1]);
                }
                m.failures += load(&d.errors);
                m.retries += load(&d.retries);
                m.retries_denied += load(&d.retries_denied);
                m.timeouts += load(&d.timeouts);
                m.queue_full += load(&d.queue_full);
                m.delivered += load(&d.delivered);
                m.failed += load(&d.failed);
                m.rejected += load(&d.rejected);
                // An endpoint is healthy when any shard can use it.
                for (e, seen) in d.endpoints.iter().zip(m.endpoints.iter_mut()) {
                    seen.healthy |= load(&e.healthy) != 0;
                }
            }
        }
        s
    }
}

impl Snapshot {
    /// Adds the shards' latency histograms (copied out of each shard).
    pub fn add_histograms(&mut self, shards: &[ShardHistograms]) {
        for h in shards {
            self.ack_latency
                .merge(&LatencySnapshot::from_micros(&h.ack));
            for (name, hist) in &h.destinations {
                let latency = LatencySnapshot::from_micros(hist);
                match self.destinations.iter_mut().find(|d| d.name == *name) {
                    Some(d) => d.latency.merge(&latency),
                    None => self.destinations.push(DestinationSnapshot {
                        name: name.clone(),
                        latency,
                        ..Default::default()
                    }),
                }
            }
        }
    }
}

/// Counters the control thread owns.
#[derive(Debug, Default)]
pub struct ControlCounters {
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

/// Encodes a snapshot (and the control counters) as Prometheus text.
pub fn prometheus_text(snapshot: Snapshot, control: &ControlCounters) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector {
        snapshot: Arc::new(snapshot),
        reloads: [
            control.reloads_ok.load(Ordering::Relaxed),
            control.reloads_failed.load(Ordering::Relaxed),
        ],
    }));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct SnapshotCollector {
    snapshot: Arc<Snapshot>,
    reloads: [u64; 2],
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = &self.snapshot;
        gauge(
            &mut e,
            "sluice_shards",
            "Shards (executors) running",
            s.shards as i64,
        )?;
        gauge(
            &mut e,
            "sluice_listening",
            "1 when every shard has bound every listener",
            i64::from(s.listening),
        )?;
        counter(
            &mut e,
            "sluice_records_received",
            "XDR records received",
            s.records_received,
        )?;
        {
            let mut m = e.encode_descriptor(
                "sluice_records_acked",
                "Acks sent to XDR, by result code (0 = delivered or skipped, 11 = retry)",
                None,
                MetricType::Counter,
            )?;
            for (code, n) in &s.acked {
                let labels = [("result", code.to_string())];
                ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
            }
        }
        counter(
            &mut e,
            "sluice_records_skipped",
            "Records acked without sending (skip or no route)",
            s.skipped,
        )?;
        counter(
            &mut e,
            "sluice_parse_errors",
            "Frames that did not parse",
            s.parse_errors,
        )?;
        counter(
            &mut e,
            "sluice_encode_errors",
            "Records that could not be encoded",
            s.encode_errors,
        )?;
        counter(&mut e, "sluice_bytes_in", "Bytes read from XDR", s.bytes_in)?;
        counter(
            &mut e,
            "sluice_bytes_out",
            "Request body bytes sent to destinations",
            s.bytes_out,
        )?;
        gauge(
            &mut e,
            "sluice_records_in_flight",
            "Records received and not yet acked",
            s.in_flight,
        )?;
        gauge(
            &mut e,
            "sluice_sessions",
            "Open XDR connections",
            s.sessions,
        )?;
        counter(
            &mut e,
            "sluice_sessions_accepted",
            "XDR connections accepted",
            s.sessions_total,
        )?;
        counter(
            &mut e,
            "sluice_frames_rejected",
            "Connections closed because their bytes could not be framed",
            s.frames_rejected,
        )?;
        counter(
            &mut e,
            "sluice_ack_writes",
            "Socket writes carrying acks",
            s.ack_writes,
        )?;
        for (name, help, v) in [
            (
                "sluice_dead_letters",
                "Records refused for good and written to the dead-letter file (acked 0)",
                s.dead_letters,
            ),
            (
                "sluice_dead_letter_failures",
                "Records whose dead letter could not be written (answered 11)",
                s.dead_letter_failures,
            ),
            (
                "sluice_records_abandoned",
                "Records refused for good without a dead-letter file (answered 4)",
                s.abandoned,
            ),
            (
                "sluice_records_stale",
                "record-ordering: records older than their key's delivered version, acked 0 unsent",
                s.stale,
            ),
            (
                "sluice_records_superseded",
                "record-ordering: waiting records replaced by a newer version of their key",
                s.superseded,
            ),
            (
                "sluice_records_handed_off",
                "record-ordering: records handed to their key's owner shard",
                s.handed_off,
            ),
        ] {
            counter(&mut e, name, help, v)?;
        }
        gauge(
            &mut e,
            "sluice_ordering_keys",
            "record-ordering: keys whose order is remembered now (bounded by lut-cache-max-keys)",
            s.ordering_keys,
        )?;
        {
            let mut m = e.encode_descriptor(
                "sluice_destination_responses",
                "HTTP responses per destination, by status class",
                None,
                MetricType::Counter,
            )?;
            for d in &s.destinations {
                for (i, n) in d.responses.iter().enumerate() {
                    let labels = [
                        ("destination", d.name.clone()),
                        ("class", format!("{}xx", i + 1)),
                    ];
                    ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        for (name, help, get) in [
            (
                "sluice_destination_failures",
                "Requests that got no response (connect or I/O error)",
                (|d: &DestinationSnapshot| d.failures) as fn(&DestinationSnapshot) -> u64,
            ),
            ("sluice_destination_retries", "Requests sent again", |d| {
                d.retries
            }),
            (
                "sluice_destination_retries_denied",
                "Retries not made: the retry budget (retry.budget-percent) was spent; answered 11",
                |d| d.retries_denied,
            ),
            (
                "sluice_destination_timeouts",
                "Requests past call-timeout",
                |d| d.timeouts,
            ),
            (
                "sluice_destination_queue_full",
                "Attempts not queued: every endpoint had max-request-queued-per-endpoint waiting",
                |d| d.queue_full,
            ),
            (
                "sluice_destination_delivered",
                "Records the destination accepted",
                |d| d.delivered,
            ),
            (
                "sluice_destination_failed",
                "Records not accepted after retries (answered 11)",
                |d| d.failed,
            ),
            (
                "sluice_destination_rejected",
                "Records refused for good: a status in the drop list",
                |d| d.rejected,
            ),
        ] {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for d in &s.destinations {
                let labels = [("destination", d.name.clone())];
                ConstCounter::new(get(d)).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = e.encode_descriptor(
                "sluice_endpoint_healthy",
                "1 when the endpoint passes its health checks",
                None,
                MetricType::Gauge,
            )?;
            for d in &s.destinations {
                for ep in &d.endpoints {
                    let labels = [
                        ("destination", d.name.clone()),
                        ("endpoint", ep.url.clone()),
                    ];
                    ConstGauge::new(i64::from(ep.healthy)).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let m = e.encode_descriptor(
                "sluice_ack_latency_seconds",
                "XDR receive to ack",
                None,
                MetricType::Histogram,
            )?;
            let l = &s.ack_latency;
            let mut m = m;
            m.encode_histogram::<NoLabelSet>(
                l.sum_seconds,
                l.count,
                &l.prometheus_buckets(),
                None,
            )?;
        }
        {
            let mut m = e.encode_descriptor(
                "sluice_destination_request_seconds",
                "One HTTP request, per destination",
                None,
                MetricType::Histogram,
            )?;
            for d in &s.destinations {
                let labels = [("destination", d.name.clone())];
                let l = &d.latency;
                m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    l.sum_seconds,
                    l.count,
                    &l.prometheus_buckets(),
                    None,
                )?;
            }
        }
        let mut m = e.encode_descriptor(
            "sluice_config_reloads",
            "Config reloads, by result",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [("ok", self.reloads[0]), ("failed", self.reloads[1])] {
            ConstCounter::new(n).encode(m.encode_family(&[("result", result)])?)?;
        }
        Ok(())
    }
}

/// The JSON document of `/manage/rest/v1/metrics`.
pub fn json(snapshot: &Snapshot, control: &ControlCounters) -> String {
    let doc = serde_json::json!({
        "data-plane": snapshot,
        "config-reloads": {
            "ok": control.reloads_ok.load(Ordering::Relaxed),
            "failed": control.reloads_failed.load(Ordering::Relaxed),
        },
    });
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        h.record(300).unwrap(); // 0.3 ms
        h.record(2_000).unwrap(); // 2 ms
        h.record(20_000_000).unwrap(); // 20 s: past the last bound
        Snapshot {
            shards: 2,
            listening: true,
            records_received: 10,
            acked: BTreeMap::from([(0, 7), (11, 3)]),
            skipped: 1,
            destinations: vec![DestinationSnapshot {
                name: "es".into(),
                responses: [0, 6, 0, 0, 2],
                endpoints: vec![EndpointSnapshot {
                    url: "http://127.0.0.1:9/x".into(),
                    healthy: true,
                }],
                latency: LatencySnapshot::from_micros(&h),
                ..Default::default()
            }],
            ack_latency: LatencySnapshot::from_micros(&h),
            ..Default::default()
        }
    }

    #[test]
    fn latency_buckets_count_each_value_once() {
        let l = sample().ack_latency;
        assert_eq!(l.count, 3);
        assert_eq!(l.buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(l.buckets[0], 1); // <= 0.5 ms
        assert_eq!(l.buckets[2], 1); // <= 2.5 ms
        assert_eq!(*l.buckets.last().unwrap(), 1); // +Inf
        let mut m = l.clone();
        m.merge(&l);
        assert_eq!(m.count, 6);
        assert_eq!(m.buckets[0], 2);
    }

    #[test]
    fn shards_are_merged() {
        let a = Arc::new(ShardStats::new(0));
        let b = Arc::new(ShardStats::new(1));
        a.records_received.store(5, Ordering::Relaxed);
        b.records_received.store(7, Ordering::Relaxed);
        for (stats, codes) in [(&a, &[0][..]), (&b, &[0, 11][..])] {
            let mut counts = sluice_shards::stats::AckCounts::default();
            codes.iter().for_each(|&c| counts.add(c));
            counts.flush(stats);
        }
        b.sessions.store(2, Ordering::Relaxed);
        let da = a.destination("es", &["http://a".into()]);
        let db = b.destination("es", &["http://a".into()]);
        da.count_status(200);
        db.count_status(503);
        db.count_status(204);
        db.endpoints[0].healthy.store(1, Ordering::Relaxed);
        let s = Snapshot::from_shards(&[a, b]);
        assert_eq!(s.shards, 2);
        assert_eq!(s.records_received, 12);
        assert_eq!(s.acked, BTreeMap::from([(0, 2), (4, 0), (11, 1)]));
        assert_eq!(s.sessions, 2);
        assert_eq!(s.destinations.len(), 1);
        assert_eq!(s.destinations[0].responses, [0, 2, 0, 0, 1]);
        assert!(s.destinations[0].endpoints[0].healthy);
    }

    #[test]
    fn shard_histograms_are_merged() {
        let mut ack = sluice_shards::stats::micros_histogram();
        ack.record(300).unwrap();
        let mut es = sluice_shards::stats::micros_histogram();
        es.record(2_000).unwrap();
        let one = ShardHistograms {
            shard: 0,
            ack: ack.clone(),
            destinations: vec![("es".into(), es.clone())],
        };
        let two = ShardHistograms {
            shard: 1,
            ack,
            destinations: vec![("es".into(), es)],
        };
        let mut s = Snapshot::default();
        s.add_histograms(&[one, two]);
        assert_eq!(s.ack_latency.count, 2);
        assert_eq!(s.ack_latency.buckets[0], 2);
        assert_eq!(s.destinations.len(), 1);
        assert_eq!(s.destinations[0].latency.count, 2);
        assert_eq!(s.destinations[0].latency.buckets[2], 2);
    }

    #[test]
    fn prometheus_text_has_the_values() {
        let text = prometheus_text(sample(), &ControlCounters::default());
        assert!(
            text.contains("sluice_records_received_total 10\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_records_acked_total{result=\"11\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "sluice_destination_responses_total{destination=\"es\",class=\"2xx\"} 6\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("sluice_ack_latency_seconds_count 3\n"),
            "{text}"
        );
        // Buckets are cumulative: 0.3 ms and 2 ms are both under 5 ms.
        assert!(
            text.contains("sluice_ack_latency_seconds_bucket{le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_ack_latency_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE sluice_sessions gauge"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
