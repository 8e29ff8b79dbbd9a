//! `record-ordering` on the real binary: versions of one key (namespace +
//! digest) reach the sink never older-after-newer, also when they arrive on
//! sessions of two shards; a stale version is acked 0 and not sent; versions
//! arriving while one is in flight coalesce into the newest.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use sluice_codec::build::{BinSpec, Key, Message, ValueSpec};

/// LUT of version `v` (Unix ms).
fn lut(v: u32) -> u64 {
    1_700_000_000_000 + u64::from(v) * 1000
}

/// Version `v` of the key `hot` in set `o`: generation `v`, bin `v` = v,
/// LUT `lut`.
fn version(v: u32, lut: u64) -> Vec<u8> {
    keyed("hot", v, lut)
}

/// Version `v` of key `key` in set `o`.
fn keyed(key: &str, v: u32, lut: u64) -> Vec<u8> {
    let mut m = Message::write_record(
        "test",
        Some("o"),
        Some(Key::Str(key.into())),
        vec![BinSpec::new("v", ValueSpec::Int(i64::from(v)))],
    )
    .from_xdr(lut);
    m.generation = v;
    m.to_vec().unwrap()
}

fn config(sink: &Sink, manage: bool) -> String {
    config_with(sink, manage, "  lut-cache-ttl-seconds: 60\n")
}

fn config_with(sink: &Sink, manage: bool, ordering: &str) -> String {
    let manage = if manage {
        "  manage:\n    address: 127.0.0.1\n    port: 0\n"
    } else {
        ""
    };
    format!(
        "service:\n  address: 127.0.0.1\n  port: 0\n{manage}\
destinations:\n  es:\n    urls: [{}]\n    protocol: HTTP_1_1\n    max-connections-per-endpoint: 8\n\
routing:\n  mode: static-multi-destination\n  destinations: [es]\n\
record-ordering:\n{ordering}\
logging:\n  ticker-interval: 0\n",
        sink.url("/o")
    )
}

/// `cfg` with the destination's `call-timeout` set to `ms`.
fn with_call_timeout(cfg: &str, ms: u32) -> String {
    let cfg = cfg.replace(
        "    protocol: HTTP_1_1\n",
        &format!("    protocol: HTTP_1_1\n    call-timeout: {ms}\n"),
    );
    assert!(cfg.contains(&format!("call-timeout: {ms}")));
    cfg
}

/// The generations the sink received, in the order it received them.
fn received(sink: &Sink) -> Vec<u32> {
    sink.requests()
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            v["gen"].as_u64().unwrap() as u32
        })
        .collect()
}

#[test]
fn a_stale_version_is_acked_0_and_not_sent() {
    let sink = Sink::start(always(200));
    let sluice = Sluice::start("order-stale", &config(&sink, false));
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&version(5, lut(5)));
    assert_eq!(c.acks(1), vec![(0, 5)]);
    // Older than the delivered version 5: acked, never sent.
    c.send(&version(3, lut(3)));
    assert_eq!(c.acks(1), vec![(0, 3)]);
    // Same LUT as the delivered one (two writes in one millisecond): sent.
    c.send(&version(6, lut(5)));
    assert_eq!(c.acks(1), vec![(0, 6)]);
    // Another key is not affected by this one's LUT.
    c.send(&record("o", 7));
    assert_eq!(c.acks(1), vec![(0, 7)]);
    assert_eq!(received(&sink), vec![5, 6, 7]);
}

#[test]
fn versions_arriving_during_a_slow_delivery_coalesce_into_the_newest() {
    // Every request takes 300 ms: versions 2..=20 all arrive while version
    // 1 is in flight.
    let sink = Sink::start(Arc::new(|_, _| (200, Duration::from_millis(300))));
    let sluice = Sluice::start("order-coalesce", &config(&sink, false));
    let mut c = XdrClient::connect(sluice.xdr);
    let frames: Vec<u8> = (1..=20).flat_map(|v| version(v, lut(v))).collect();
    c.send(&frames);
    assert_eq!(c.acks(20), (1..=20).map(|g| (0, g)).collect::<Vec<_>>());
    // The first version, then only the last: 2..=19 were superseded.
    assert_eq!(received(&sink), vec![1, 20]);
}

#[test]
fn an_older_version_arriving_during_a_newer_ones_delivery_is_not_sent() {
    let sink = Sink::start(Arc::new(|_, _| (200, Duration::from_millis(300))));
    let sluice = Sluice::start("order-follow", &config(&sink, false));
    let mut c = XdrClient::connect(sluice.xdr);
    // 9 is in flight when 4 and 2 arrive: they follow 9's result.
    let frames = [version(9, lut(9)), version(4, lut(4)), version(2, lut(2))].concat();
    c.send(&frames);
    assert_eq!(c.acks(3), vec![(0, 9), (0, 4), (0, 2)]);
    assert_eq!(received(&sink), vec![9]);
}

#[test]
fn versions_spread_over_two_shards_arrive_never_older_after_newer() {
    // A slow sink keeps versions overlapping; many connections land on both
    // shards (SO_REUSEPORT), so most versions cross to the key's owner.
    let sink = Sink::start(Arc::new(|_, _| (200, Duration::from_millis(5))));
    let mut sluice = Sluice::start_shards("order-shards", &config(&sink, true), 2);
    let manage = sluice.manage();
    const CONNECTIONS: u32 = 16;
    const ROUNDS: u32 = 8;
    let mut clients: Vec<XdrClient> = (0..CONNECTIONS)
        .map(|_| XdrClient::connect(sluice.xdr))
        .collect();
    // Round r sends one version per connection; LUTs go out of order
    // within a round (connection i of round r gets a scrambled rank).
    let mut newest = 0;
    for r in 0..ROUNDS {
        for (i, c) in clients.iter_mut().enumerate() {
            let i = i as u32;
            let rank = (i * 7 + r * 3) % CONNECTIONS;
            let v = r * CONNECTIONS + rank + 1;
            newest = newest.max(v);
            c.send(&version(v, lut(v)));
        }
        for c in clients.iter_mut() {
            let acks = c.acks(1);
            assert_eq!(acks[0].0, 0, "{acks:?}");
        }
    }
    let got = received(&sink);
    assert!(!got.is_empty());
    for pair in got.windows(2) {
        assert!(pair[0] < pair[1], "older after newer at the sink: {got:?}");
    }
    assert_eq!(
        got.last(),
        Some(&newest),
        "the newest version wins: {got:?}"
    );
    assert!(
        metric(manage, "sluice_records_handed_off_total") > 0,
        "no record crossed shards"
    );
    let stale = metric(manage, "sluice_records_stale_total");
    let superseded = metric(manage, "sluice_records_superseded_total");
    assert_eq!(
        got.len() as i64 + stale + superseded,
        i64::from(CONNECTIONS * ROUNDS),
        "every version is delivered, stale or superseded: {got:?}"
    );
}

#[test]
fn the_lut_cache_is_bounded_and_a_forgotten_key_is_not_stale() {
    let sink = Sink::start(always(200));
    let cfg = config_with(&sink, true, "  lut-cache-max-keys: 2\n");
    let mut sluice = Sluice::start("order-cap", &cfg);
    let manage = sluice.manage();
    let mut c = XdrClient::connect(sluice.xdr);
    for (key, v) in [("a", 5), ("b", 6), ("c", 7), ("d", 8)] {
        c.send(&keyed(key, v, lut(v)));
        assert_eq!(c.acks(1), vec![(0, v)]);
        assert!(metric(manage, "sluice_ordering_keys") <= 2);
    }
    // `d` is remembered: its older version is stale. `a` was forgotten to
    // keep 2 keys: its older version is sent.
    c.send(&keyed("d", 1, lut(1)));
    assert_eq!(c.acks(1), vec![(0, 1)]);
    c.send(&keyed("a", 2, lut(2)));
    assert_eq!(c.acks(1), vec![(0, 2)]);
    assert_eq!(received(&sink), vec![5, 6, 7, 8, 2]);
    assert_eq!(metric(manage, "sluice_records_stale_total"), 1);
}

#[test]
fn a_version_waiting_past_its_deadline_is_answered_11_and_not_sent() {
    // The first version hangs until its 8 s deadline; the second waits
    // behind it and is answered 11 at its own deadline, then never sent.
    let sink = Sink::start(Arc::new(|_, _| (200, Duration::from_secs(12))));
    let cfg = with_call_timeout(&config(&sink, false), 20000);
    let sluice = Sluice::start("order-deadline", &cfg);
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&[version(1, lut(1)), version(2, lut(2))].concat());
    assert_eq!(c.acks(2), vec![(11, 1), (11, 2)]);
    // Version 1's turn ends at its deadline; version 2's deadline has
    // passed by then.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(received(&sink), vec![1]);
}

/// `sluice gen` sends 4000 records, 90 % of them on 10 of 1000 keys, from 8
/// connections; asserts that every one was acked 0 (gen's report and
/// sluice's count).
fn gen_hot_keys(sluice: &Sluice, manage: std::net::SocketAddr) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["gen", "--json", "--quiet", "--target"])
        .arg(sluice.xdr.to_string())
        .args(["--connections", "8", "--records", "4000"])
        .args([
            "--key-space",
            "1000",
            "--hot-keys",
            "0.01",
            "--hot-share",
            "0.9",
        ])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["acked"], 4000, "{report}");
    assert_eq!(
        metric(manage, "sluice_records_acked_total{result=\"0\"}"),
        4000
    );
}

#[test]
fn gen_on_hot_keys_over_two_shards_loses_nothing() {
    // 4000 records, 90 % of them on 10 keys, from 8 connections: every one
    // is acked 0, and each is delivered, stale or superseded.
    let sink = Sink::start(always(200));
    let mut sluice = Sluice::start_shards("order-gen", &config(&sink, true), 2);
    let manage = sluice.manage();
    gen_hot_keys(&sluice, manage);
    let delivered = sink.requests().len() as i64;
    let stale = metric(manage, "sluice_records_stale_total");
    let superseded = metric(manage, "sluice_records_superseded_total");
    assert_eq!(delivered + stale + superseded, 4000);
    assert!(metric(manage, "sluice_records_handed_off_total") > 0);
    assert!(delivered > 0);
}

/// `config_with` plus `batching` for the route.
fn batched(sink: &Sink, manage: bool, batching: &str) -> String {
    config_with(sink, manage, "  lut-cache-ttl-seconds: 60\n")
        .replace("logging:\n", &format!("batching:\n{batching}logging:\n"))
}

/// Each request's records as (user key, generation), in the order the sink
/// received them (NDJSON bodies: one record per line).
fn batches(sink: &Sink) -> Vec<Vec<(String, u32)>> {
    sink.requests()
        .iter()
        .map(|r| {
            assert_eq!(
                r.headers.get("content-type").map(String::as_str),
                Some("application/x-ndjson"),
                "{:?}",
                r.headers
            );
            std::str::from_utf8(&r.body)
                .unwrap()
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let key = v["key"][3].as_str().unwrap().to_owned();
                    (key, v["gen"].as_u64().unwrap() as u32)
                })
                .collect()
        })
        .collect()
}

#[test]
fn an_ordered_route_batches_at_most_one_version_of_a_key() {
    let sink = Sink::start(always(200));
    let cfg = batched(&sink, false, "  max-records: 10\n  batch-interval: 3000\n");
    let sluice = Sluice::start("order-batch", &cfg);
    let mut c = XdrClient::connect(sluice.xdr);
    // Version 1 of ten keys, then version 2 of the same keys, in one write:
    // the first ten fill a batch; each version 2 waits for its key's
    // version 1 and goes in the next batch.
    let keys: Vec<String> = (0..10).map(|i| format!("key{i}")).collect();
    let frames: Vec<u8> = [1, 2]
        .iter()
        .flat_map(|&v| keys.iter().map(move |k| keyed(k, v, lut(v))))
        .flatten()
        .collect();
    c.send(&frames);
    let want: Vec<(u8, u32)> = [1, 2]
        .iter()
        .flat_map(|&v| std::iter::repeat_n((0, v), 10))
        .collect();
    assert_eq!(c.acks(20), want);
    let got = batches(&sink);
    assert_eq!(got.len(), 2, "two requests of ten: {got:?}");
    for (i, batch) in got.iter().enumerate() {
        let mut seen: Vec<&String> = batch.iter().map(|(k, _)| k).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 10, "one version per key in a batch: {batch:?}");
        let v = i as u32 + 1;
        assert!(batch.iter().all(|(_, g)| *g == v), "batch {i}: {batch:?}");
    }
}

#[test]
fn gen_on_hot_keys_over_two_shards_with_batching_loses_nothing() {
    // As gen_on_hot_keys_over_two_shards_loses_nothing, the route batching:
    // every record acked 0; each delivered (once, as a line of a batch),
    // stale or superseded; no batch holds two versions of a key; a key's
    // versions reach the sink in LUT order.
    let sink = Sink::start(always(200));
    let cfg = batched(&sink, true, "  max-records: 50\n  batch-interval: 20\n");
    let mut sluice = Sluice::start_shards("order-gen-batch", &cfg, 2);
    let manage = sluice.manage();
    gen_hot_keys(&sluice, manage);
    let requests = sink.requests();
    let mut lines = 0i64;
    // The sink records a request before it answers, and a key's next
    // version leaves only once its batch is answered.
    let mut last_lut: std::collections::HashMap<String, u64> = Default::default();
    for r in &requests {
        let body = std::str::from_utf8(&r.body).unwrap();
        let mut keys: Vec<String> = body
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let key = v["key"][2].as_str().unwrap().to_owned();
                let lut = v["lut"].as_u64().unwrap();
                let last = last_lut.entry(key.clone()).or_insert(0);
                assert!(lut >= *last, "{key}: LUT {lut} after {last}");
                *last = lut;
                key
            })
            .collect();
        lines += keys.len() as i64;
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n, "a batch with two versions of a key");
    }
    let stale = metric(manage, "sluice_records_stale_total");
    let superseded = metric(manage, "sluice_records_superseded_total");
    assert_eq!(lines + stale + superseded, 4000);
    assert!(
        (requests.len() as i64) < lines,
        "{} requests for {lines} records: not batched",
        requests.len()
    );
    assert!(metric(manage, "sluice_records_handed_off_total") > 0);
}

#[test]
fn a_refused_ordered_batch_is_dead_lettered_record_by_record() {
    // The sink refuses for good (400, in the drop list): with a dead-letter
    // file every record of the batch is written there and acked 0, and the
    // keys count as delivered (an older version is stale after); without
    // one every record is answered 4.
    let refusing = Sink::start(always(400));
    let dir = temp_dir("order-batch-dlq");
    let file = dir.join("dead.jsonl");
    let cfg = batched(
        &refusing,
        false,
        "  max-records: 5\n  batch-interval: 3000\n",
    )
    .replace(
        "logging:\n",
        &format!(
            "dead-letter:\n  file: {}\n  fsync: always\nlogging:\n",
            file.display()
        ),
    );
    let sluice = Sluice::start("order-batch-dlq", &cfg);
    let mut c = XdrClient::connect(sluice.xdr);
    let frames: Vec<Vec<u8>> = (0..5).map(|i| keyed(&format!("d{i}"), 7, lut(7))).collect();
    c.send(&frames.concat());
    assert_eq!(c.acks(5), vec![(0, 7); 5]);
    assert_eq!(refusing.requests().len(), 1, "one batch");
    let text = std::fs::read_to_string(&file).unwrap();
    let letters: Vec<sluice_shards::dlq::Letter> = text
        .lines()
        .map(|l| sluice_shards::dlq::Letter::parse(l).unwrap())
        .collect();
    let mut got: Vec<Vec<u8>> = letters.iter().map(|l| l.frame.clone()).collect();
    let mut want = frames.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "one letter per record, its own frame");
    // Dead-lettered counts as delivered: an older version is stale now.
    c.send(&keyed("d0", 6, lut(6)));
    assert_eq!(c.acks(1), vec![(0, 6)]);
    assert_eq!(
        refusing.requests().len(),
        1,
        "the stale version is not sent"
    );
    drop(sluice);

    let sluice = Sluice::start(
        "order-batch-refused",
        &batched(
            &refusing,
            false,
            "  max-records: 5\n  batch-interval: 3000\n",
        ),
    );
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&frames.concat());
    assert_eq!(c.acks(5), vec![(4, 7); 5]);
}

#[test]
fn a_version_that_waited_long_for_its_key_is_not_batched() {
    // Version 1's batch is answered after 5.5 s; version 2 of the same key
    // waited that long, so it would leave a batch with under 3 s of its
    // 8 s: it is sent on its own (application/json, not NDJSON).
    let first = std::sync::atomic::AtomicBool::new(true);
    let sink = Sink::start(Arc::new(move |_, _| {
        let slow = first.swap(false, std::sync::atomic::Ordering::SeqCst);
        (200, Duration::from_millis(if slow { 5500 } else { 0 }))
    }));
    let cfg = with_call_timeout(
        &batched(&sink, false, "  max-records: 10\n  batch-interval: 50\n"),
        7000,
    );
    let sluice = Sluice::start("order-batch-late", &cfg);
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&[version(1, lut(1)), version(2, lut(2))].concat());
    assert_eq!(c.acks(2), vec![(0, 1), (0, 2)]);
    let types: Vec<(String, u32)> = sink
        .requests()
        .iter()
        .map(|r| {
            let v: serde_json::Value =
                serde_json::from_str(std::str::from_utf8(&r.body).unwrap().trim()).unwrap();
            (
                r.headers.get("content-type").cloned().unwrap_or_default(),
                v["gen"].as_u64().unwrap() as u32,
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            ("application/x-ndjson".to_owned(), 1),
            ("application/json".to_owned(), 2)
        ]
    );
}
