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
    let cfg = config(&sink, false).replace(
        "    protocol: HTTP_1_1\n",
        "    protocol: HTTP_1_1\n    call-timeout: 20000\n",
    );
    assert!(cfg.contains("call-timeout: 20000"));
    let sluice = Sluice::start("order-deadline", &cfg);
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&[version(1, lut(1)), version(2, lut(2))].concat());
    assert_eq!(c.acks(2), vec![(11, 1), (11, 2)]);
    // Version 1's turn ends at its deadline; version 2's deadline has
    // passed by then.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(received(&sink), vec![1]);
}

#[test]
fn gen_on_hot_keys_over_two_shards_loses_nothing() {
    // 4000 records, 90 % of them on 10 keys, from 8 connections: every one
    // is acked 0, and each is delivered, stale or superseded.
    let sink = Sink::start(always(200));
    let mut sluice = Sluice::start_shards("order-gen", &config(&sink, true), 2);
    let manage = sluice.manage();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["gen", "--json", "--quiet", "--target"])
        .arg(sluice.xdr.to_string())
        .args([
            "--connections",
            "8",
            "--records",
            "4000",
            "--key-space",
            "1000",
        ])
        .args(["--hot-keys", "0.01", "--hot-share", "0.9"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["acked"], 4000, "{report}");
    assert_eq!(
        metric(manage, "sluice_records_acked_total{result=\"0\"}"),
        4000
    );
    let delivered = sink.requests().len() as i64;
    let stale = metric(manage, "sluice_records_stale_total");
    let superseded = metric(manage, "sluice_records_superseded_total");
    assert_eq!(delivered + stale + superseded, 4000);
    assert!(metric(manage, "sluice_records_handed_off_total") > 0);
    assert!(delivered > 0);
}
