//! The fault matrix, connector side: two `sluice run` instances (as XDR sees
//! two connector nodes) in front of one `sluice sink`; `sluice gen` sends to
//! both. Mid-stream instance A is killed with SIGKILL and restarted on its
//! port; then B is killed and restarted, so that gen's connections move back
//! to the restarted A and it receives gen's resends. Every record gen
//! created is acked, every one reached the sink at least once (one key per
//! record), the duplicates the kills cause are counted and printed, and each
//! instance's VmRSS stays under the bound.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

const RECORDS: u64 = 30_000;
/// As in fault_sink.rs: 4096 records held at most, ~12 KiB each, plus the process.
const RSS_BOUND_KIB: u64 = 96 * 1024;

fn config(port: u16, sink: &str) -> String {
    format!(
        "service:\n  address: 127.0.0.1\n  port: {port}\n  max-concurrent-records: 4096\n  \
         manage:\n    port: 0\n\
         destinations:\n  sink:\n    urls: [\"{sink}\"]\n    protocol: HTTP_2\n    \
         max-connections-per-endpoint: 2\n\
         routing:\n  mode: static-multi-destination\n  destinations: [sink]\n\
         format:\n  mode: json\nlogging:\n  ticker-interval: 0\n"
    )
}

fn received(s: &Sluice) -> u64 {
    metric_in(&s.metrics(), "sluice_records_received_total")
}

/// Waits (at most 60 s) until `s` has received `n` records.
fn wait_received(s: &Sluice, n: u64) {
    let until = Instant::now() + Duration::from_secs(60);
    while received(s) < n {
        assert!(
            Instant::now() < until,
            "{} has not received {n} records in 60 s:\n{}",
            s.xdr,
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_and_restart_of_either_connector_loses_nothing() {
    let dir = temp_dir("kill-sink");
    let mut sink = PerfSink::start(&dir, "sink", false, &[]);
    let url = sink.url("/in");
    let (pa, pb) = (free_port(), free_port());
    let a = Sluice::start("kill-a", &config(pa, &url));
    let b = Sluice::start("kill-b", &config(pb, &url));
    let mut samplers = vec![
        ("a", RssSampler::start(a.pid())),
        ("b", RssSampler::start(b.pid())),
    ];
    let args = gen_unique_keys(RECORDS, "3000", "21");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gen = gen_start(&[a.xdr, b.xdr], &args);

    // A dies with records in flight; gen moves its connections to B.
    wait_received(&a, 2000);
    let a_before = received(&a);
    drop(a); // Drop sends SIGKILL.
    std::thread::sleep(Duration::from_millis(300));
    let a = Sluice::start("kill-a", &config(pa, &url));
    samplers.push(("a restarted", RssSampler::start(a.pid())));

    // Then B dies: every connection moves to the restarted A.
    let b_now = received(&b);
    wait_received(&b, b_now + 3000);
    let b_before = received(&b);
    drop(b);
    std::thread::sleep(Duration::from_millis(300));
    let b = Sluice::start("kill-b", &config(pb, &url));
    samplers.push(("b restarted", RssSampler::start(b.pid())));

    let g = gen_finish(gen, Duration::from_secs(240));
    a.wait_idle();
    b.wait_idle();
    let a_after = received(&a);
    let s = sink.finish();
    let peaks: Vec<(&str, u64, usize)> = samplers
        .into_iter()
        .map(|(name, sampler)| {
            let v = sampler.finish();
            (name, v.iter().copied().max().unwrap_or(0), v.len())
        })
        .collect();
    let (accepted, unique, dup) = (
        s["records"].as_u64().unwrap(),
        s["unique_keys"].as_u64().unwrap(),
        s["duplicates"].as_u64().unwrap(),
    );
    println!(
        "fault case sigkill: gen {g}\nfault case sigkill: sink {s}\n\
         fault case sigkill: a received {a_before} before its kill, the restarted a {a_after}; \
         b received {b_before} before its kill; sink accepted {accepted} unique {unique} \
         duplicates {dup}; RSS peaks (KiB, samples) {peaks:?}"
    );
    assert_eq!(g["records"], RECORDS, "{g}");
    assert_eq!(g["acked"], RECORDS, "every record acked: {g}");
    assert_eq!(g["abandoned"], 0, "{g}");
    assert_eq!(g["unexpected_acks"], 0, "{g}");
    assert_eq!(unique, RECORDS, "every acked record reached the sink");
    assert_eq!(accepted, unique + dup, "{s}");
    assert_eq!(s["decode_errors"], 0, "{s}");
    // Both kills broke gen's connections, and gen resent what was in flight.
    assert!(g["broken_connections"].as_u64().unwrap() >= 2, "{g}");
    assert!(
        g["resent"]["broken_connection"].as_u64().unwrap() > 0,
        "{g}"
    );
    // The restarted A took over B's connections and received records.
    assert!(a_after > 0, "the restarted instance received nothing");
    assert!(s["requests"].as_u64().unwrap() >= accepted, "{s}");
    for (name, peak, samples) in peaks {
        assert!(samples > 0, "{name}: no RSS sample");
        assert!(
            peak < RSS_BOUND_KIB,
            "{name}: RSS peaked at {peak} KiB (bound {RSS_BOUND_KIB})"
        );
    }
}
