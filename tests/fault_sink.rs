//! The fault matrix, destination side: `sluice gen` → `sluice run` → a
//! destination that fails in one way per test (10 % 5xx, answers slower than
//! `call-timeout`, connection resets, down for 5 s, a stalled endpoint next
//! to a healthy one, 429 with Retry-After). In every case:
//! - every record gen created is acked (acked == records, none abandoned);
//! - every acked record reached the destination at least once (gen sends one
//!   key per record: a key space of 10^11 with a fixed seed, so the unique
//!   keys the destination accepted must equal gen's record count);
//! - duplicates are counted, printed, and consistent (accepted = unique +
//!   duplicates);
//! - the fault really happened (its counter is above zero);
//! - sluice's VmRSS, sampled every 100 ms, stays under [`RSS_BOUND_KIB`].
//!
//! The cases run one at a time (a lock) so that their load stays what the
//! rates say on a busy 2-core machine. Nothing asserts on time except that
//! a Retry-After was waited out, which a slow machine only makes longer.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use common::*;

/// One case at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Records per case, and gen's open-loop rate.
const RECORDS: u64 = 20_000;
const RATE: &str = "4000";
/// sluice holds at most `max-concurrent-records` (4096 here) records, about
/// 12 KiB each at worst (RESULTS.md, stalled destination): 48 MiB, plus the
/// process's own ~10 MiB and room for a debug build's.
const RSS_BOUND_KIB: u64 = 96 * 1024;

fn config(protocol: &str, urls: &[String], dest_extra: &str) -> String {
    let urls = urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "service:\n  address: 127.0.0.1\n  port: 0\n  max-concurrent-records: 4096\n  \
         manage:\n    port: 0\n\
         destinations:\n  sink:\n    urls: [{urls}]\n    protocol: {protocol}\n    \
         max-connections-per-endpoint: 4\n{dest_extra}\
         routing:\n  mode: static-multi-destination\n  destinations: [sink]\n\
         format:\n  mode: json\nlogging:\n  ticker-interval: 0\n"
    )
}

/// What one case measured.
struct Run {
    gen: serde_json::Value,
    rss_kib: Vec<u64>,
    /// sluice's /metrics after gen finished.
    metrics: String,
    /// Records per request at most (the route's batch size; 1 unbatched).
    batch: u64,
    log: String,
}

/// Starts sluice with `config`, runs gen to its end, samples the RSS.
fn run(name: &str, config: &str, seed: &str, batch: u64) -> Run {
    let sluice = Sluice::start(name, config);
    let rss = RssSampler::start(sluice.pid());
    let args = gen_unique_keys(RECORDS, RATE, seed);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gen = gen_finish(gen_start(&[sluice.xdr], &args), Duration::from_secs(240));
    sluice.wait_idle();
    let rss_kib = rss.finish();
    Run {
        gen,
        rss_kib,
        metrics: sluice.metrics(),
        batch,
        log: sluice.log_text(),
    }
}

/// The assertions every case shares; `accepted` and `unique` are the
/// destination's counts of accepted records and of distinct keys.
fn check(name: &str, r: &Run, accepted: u64, unique: u64, fault: (&str, u64)) {
    let g = &r.gen;
    let peak = r.rss_kib.iter().copied().max().unwrap_or(0);
    let duplicates = accepted.saturating_sub(unique);
    let m = |k: &str| dest_metric(r, k);
    println!(
        "fault case {name}: gen records {} sent {} acked {} resent {} abandoned {}; \
         destination accepted {accepted} unique {unique} duplicates {duplicates}; \
         {} = {}; sluice retries {} timeouts {} failures {} failed records {}; \
         sluice RSS peak {peak} KiB over {} samples",
        g["records"],
        g["sent"],
        g["acked"],
        g["resent"],
        g["abandoned"],
        fault.0,
        fault.1,
        m("retries"),
        m("timeouts"),
        m("failures"),
        m("failed"),
        r.rss_kib.len()
    );

    assert_eq!(g["records"], RECORDS, "{name}: {g}");
    assert_eq!(
        g["acked"], RECORDS,
        "{name}: every record acked: {g}\n{}",
        r.log
    );
    assert_eq!(g["abandoned"], 0, "{name}: {g}");
    assert_eq!(g["in_flight_at_end"], 0, "{name}: {g}");
    assert_eq!(g["unexpected_acks"], 0, "{name}: {g}");
    assert_eq!(
        unique, RECORDS,
        "{name}: every acked record reached the destination (one key per record)"
    );
    assert!(
        accepted >= unique,
        "{name}: accepted {accepted} < unique {unique}"
    );
    // Every accepted record came from a frame gen sent or a retry inside
    // sluice (a retried request carries up to `batch` records).
    let b = r.batch;
    assert!(
        accepted <= n(&g["sent"]) + m("retries") * b,
        "{name}: accepted {accepted} > gen sent {} + sluice retries {} × {b}",
        g["sent"],
        m("retries")
    );
    // A duplicate needs a copy the destination accepted although sluice did
    // not see the answer (a timed-out attempt, a connection that failed after
    // the request left) or a frame gen sent again; an answered refusal (5xx,
    // 429) never makes one.
    let causes = (m("timeouts") + m("failures")) * b + n(&g["resent"]["total"]);
    assert!(
        duplicates <= causes,
        "{name}: {duplicates} duplicates but only {causes} timeouts, failures and resends"
    );
    assert!(
        fault.1 > 0,
        "{name}: the fault ({}) never happened",
        fault.0
    );
    assert!(!r.rss_kib.is_empty(), "{name}: no RSS sample");
    assert!(
        peak < RSS_BOUND_KIB,
        "{name}: sluice RSS peaked at {peak} KiB (bound {RSS_BOUND_KIB} KiB): {:?}",
        r.rss_kib
    );
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap()
}

/// The sink's own consistency: accepted = unique + duplicates, no body it
/// could not decode, and every record it accepted came in a request of at
/// most `batch` records.
fn sink_counts(s: &serde_json::Value, batch: u64) -> (u64, u64) {
    assert_eq!(s["decode_errors"], 0, "{s}");
    let (records, unique, dup) = (n(&s["records"]), n(&s["unique_keys"]), n(&s["duplicates"]));
    assert_eq!(records, unique + dup, "{s}");
    assert!(n(&s["requests"]) * batch >= records, "{s}");
    (records, unique)
}

/// One sink with `faults`, sluice over `protocol` (in batches of `batch`
/// records when above 1): runs the case, checks what every case checks
/// (`fault` names the fault and reads its count from the run and the sink's
/// summary) and returns the run and the sink's summary.
fn one_sink_case(
    name: &str,
    protocol: &str,
    dest_extra: &str,
    faults: &[&str],
    seed: &str,
    fault: (&str, fn(&Run, &serde_json::Value) -> u64),
    batch: u64,
) -> (Run, serde_json::Value) {
    let dir = temp_dir(&format!("{name}-sink"));
    let mut sink = PerfSink::start(&dir, "sink", false, faults);
    let mut cfg = config(protocol, &[sink.url("/in")], dest_extra);
    if batch > 1 {
        cfg.push_str(&format!("batching:\n  max-records: {batch}\n"));
    }
    let r = run(name, &cfg, seed, batch);
    // Attempts sluice gave up on may still be inside the sink's delay.
    std::thread::sleep(Duration::from_millis(500));
    let s = sink.finish();
    println!("fault case {name}: sink {s}");
    let (accepted, unique) = sink_counts(&s, batch);
    check(name, &r, accepted, unique, (fault.0, fault.1(&r, &s)));
    (r, s)
}

/// A sluice destination counter of the run.
fn dest_metric(r: &Run, what: &str) -> u64 {
    metric_in(
        &r.metrics,
        &format!("sluice_destination_{what}_total{{destination=\"sink\"}}"),
    )
}

#[test]
fn ten_percent_5xx_are_retried_until_accepted() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // One record per request, then 50 per NDJSON request: a 503 fails (and
    // a retry resends) the whole batch, and its answer decides every
    // member's ack.
    for (name, batch, seed) in [("5xx", 1, "11"), ("5xx-batched", 50, "18")] {
        let (_, s) = one_sink_case(
            name,
            "HTTP_2",
            "",
            &["--fail-rate", "0.1", "--seed", seed],
            seed,
            ("sink 503s", |_, s| n(&s["status"]["failed"])),
            batch,
        );
        assert_eq!(s["status"]["5xx"], s["status"]["failed"], "{s}");
        if batch > 1 {
            assert!(n(&s["requests"]) < RECORDS, "records went in batches: {s}");
        }
    }
}

#[test]
fn answers_slower_than_the_call_timeout_are_retried() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // call-timeout 1 s; the sink waits 0–1.3 s: about a quarter of the
    // attempts time out (and may still be accepted later: duplicates). The
    // margin is wide on purpose: on a starved machine a tight timeout turns
    // into a retry storm (RESULTS.md, "Fault matrix").
    one_sink_case(
        "delay",
        "HTTP_2",
        "",
        &["--delay-ms", "0-1300", "--seed", "4"],
        "12",
        ("sluice call timeouts", |r, _| dest_metric(r, "timeouts")),
        1,
    );
}

#[test]
fn connection_resets_are_retried() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // HTTP/1.1 loses one request per reset; HTTP/2 every stream of the
    // connection.
    for (name, protocol, rate, seed) in [
        ("reset-h1", "HTTP_1_1", "0.05", "13"),
        ("reset-h2", "HTTP_2", "0.002", "14"),
    ] {
        one_sink_case(
            name,
            protocol,
            "",
            &["--reset-rate", rate, "--seed", seed],
            seed,
            ("sink resets", |_, s| n(&s["resets"])),
            1,
        );
    }
}

#[test]
fn a_destination_down_for_five_seconds_loses_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Down from 1 s to 6 s after the sink starts: mid-stream (the run
    // takes at least RECORDS / RATE = 5 s).
    let (r, _) = one_sink_case(
        "down",
        "HTTP_2",
        "",
        &["--down-at", "1", "--down-for", "5"],
        "15",
        ("refused connections + dropped requests", |_, s| {
            n(&s["refused_connections"]) + n(&s["resets"])
        }),
        1,
    );
    // While it was down, sluice answered retry and gen resent.
    assert!(n(&r.gen["resent"]["retry_code"]) > 0, "{}", r.gen);
}

#[test]
fn a_stalled_endpoint_next_to_a_healthy_one_loses_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = temp_dir("stall-sinks");
    // `a` answers its first 3000 requests, then never again; `b` is
    // healthy. Attempts stuck on `a` time out (call-timeout 300 ms) and are
    // retried on the endpoint with the fewest in flight.
    let mut a = PerfSink::start(&dir, "a", true, &["--stall-after", "3000"]);
    let mut b = PerfSink::start(&dir, "b", true, &[]);
    let cfg = config(
        "HTTP_2",
        &[a.url("/in"), b.url("/in")],
        "    call-timeout: 300\n",
    );
    let r = run("stall", &cfg, "16", 1);
    let (sa, sb) = (a.finish(), b.finish());
    println!("fault case stall: sink a {sa}\nfault case stall: sink b {sb}");
    let (acc_a, _) = sink_counts(&sa, 1);
    let (acc_b, _) = sink_counts(&sb, 1);
    let mut keys: Vec<String> = a.dumped_digests();
    keys.extend(b.dumped_digests());
    assert_eq!(
        keys.len() as u64,
        acc_a + acc_b,
        "the dumps hold every accepted record"
    );
    let unique = keys.iter().collect::<HashSet<_>>().len() as u64;
    // Before the endpoint choice rotated ties, the last record alone went
    // to the stalled endpoint on every attempt and was never acked.
    check(
        "stall",
        &r,
        acc_a + acc_b,
        unique,
        ("requests stalled at a", n(&sa["stalled"])),
    );
    assert!(acc_b > 0, "the healthy endpoint took records: {sb}");
}

#[test]
fn a_429_with_retry_after_is_waited_out_and_retried() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Every 50th new key is answered 429 + Retry-After: 1 once.
    let sink = ThrottlingSink::start(50, 1);
    let cfg = config(
        "HTTP_1_1",
        &[sink.url("/in")],
        "    max-connections-per-endpoint: 16\n",
    )
    .replace("    max-connections-per-endpoint: 4\n", "");
    let r = run("429", &cfg, "17", 1);
    let c = sink.counts.lock().unwrap();
    println!(
        "fault case 429: requests {} accepted {} unique {} throttled {} came back {}",
        c.requests,
        c.accepted,
        c.unique.len(),
        c.throttled,
        c.came_back_after.len()
    );
    assert_eq!(c.bad_bodies, 0);
    check(
        "429",
        &r,
        c.accepted,
        c.unique.len() as u64,
        ("429s", c.throttled),
    );
    assert_eq!(c.came_back_after.len() as u64, c.throttled);
    // Retry-After (1 s) was honoured: no throttled key came back sooner.
    let soonest = c.came_back_after.iter().min().unwrap();
    assert!(
        *soonest >= Duration::from_millis(990),
        "a throttled key came back after {soonest:?}"
    );
    // sluice waited it out itself: XDR (gen) was not asked to resend.
    assert_eq!(r.gen["resent"]["retry_code"], 0, "{}", r.gen);
}
