//! `sluice run` sessions: acks in arrival order under out-of-order
//! deliveries, 11 on 5xx / timeout / refused connection, 0 only when every
//! destination of a route accepted, a malformed record answered 4 while the
//! session carries on, and unframeable bytes closing that connection only.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;

fn one_route(urls: &[(&str, String)], extra: &str) -> String {
    let mut c = String::from("service:\n  address: 127.0.0.1\n  port: 0\ndestinations:\n");
    for (name, url) in urls {
        c += &format!(
            "  {name}:\n    urls: [{url}]\n    protocol: HTTP_1_1\n    call-timeout: 500\n{extra}"
        );
    }
    let names: Vec<&str> = urls.iter().map(|(n, _)| *n).collect();
    c += &format!(
        "routing:\n  mode: static-multi-destination\n  destinations: [{}]\nlogging:\n  ticker-interval: 0\n",
        names.join(", ")
    );
    c
}

fn frames(set: &str, gens: std::ops::RangeInclusive<u32>) -> Vec<u8> {
    gens.flat_map(|g| record(set, g)).collect()
}

#[test]
fn acks_keep_arrival_order_with_a_slow_and_a_fast_destination() {
    // Odd generations are held 300 ms by the sink, even ones answered at
    // once: deliveries finish out of order, acks must not.
    let sink = Sink::start(Arc::new(|_, body: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let slow = v["gen"].as_u64().unwrap() % 2 == 1;
        (200, Duration::from_millis(if slow { 300 } else { 0 }))
    }));
    let mut cfg = one_route(
        &[("d", sink.url("/"))],
        "    max-connections-per-endpoint: 8\n",
    );
    cfg = cfg.replace("call-timeout: 500", "call-timeout: 2000");
    let sluice = Sluice::start("order", &cfg);
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&frames("demo", 1..=12));
    assert_eq!(c.acks(12), (1..=12).map(|g| (0, g)).collect::<Vec<_>>());
    assert_eq!(sink.requests().len(), 12);
}

#[test]
fn failed_deliveries_answer_11() {
    let s503 = Sink::start(always(503));
    let slow = Sink::start(Arc::new(|_, _: &[u8]| (200, Duration::from_secs(2))));
    let refused = format!("http://127.0.0.1:{}/", free_port());
    for (label, url) in [
        ("503", s503.url("/")),
        ("timeout", slow.url("/")),
        ("refused", refused),
    ] {
        let sluice = Sluice::start(&format!("fail-{label}"), &one_route(&[("d", url)], ""));
        let mut c = XdrClient::connect(sluice.xdr);
        c.send(&frames("demo", 1..=3));
        assert_eq!(c.acks(3), vec![(11, 1), (11, 2), (11, 3)], "{label}");
    }
    assert!(!s503.requests().is_empty());
}

#[test]
fn a_multi_destination_route_acks_0_only_when_every_destination_accepted() {
    let ok = Sink::start(always(200));
    let bad = Sink::start(always(500));
    let sluice = Sluice::start(
        "multi-bad",
        &one_route(&[("ok", ok.url("/")), ("bad", bad.url("/"))], ""),
    );
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&frames("demo", 1..=2));
    assert_eq!(c.acks(2), vec![(11, 1), (11, 2)]);
    assert_eq!(ok.requests().len(), 2);

    let ok2 = Sink::start(always(202));
    let sluice = Sluice::start(
        "multi-ok",
        &one_route(&[("ok", ok.url("/")), ("ok2", ok2.url("/"))], ""),
    );
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&frames("demo", 1..=2));
    assert_eq!(c.acks(2), vec![(0, 1), (0, 2)]);
    assert_eq!(ok2.requests().len(), 2);
}

#[test]
fn a_malformed_record_answers_4_and_unframeable_bytes_close_only_that_connection() {
    let sink = Sink::start(always(200));
    let mut sluice = Sluice::start("malformed", &one_route(&[("d", sink.url("/"))], ""));
    let mut bad = record("demo", 2);
    bad[8] = 30; // the message header size must be 22
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&[record("demo", 1), bad, record("demo", 3)].concat());
    assert_eq!(c.acks(3), vec![(0, 1), (4, 2), (0, 3)]);
    let line = sluice.wait_for("cannot be parsed");
    assert!(line.contains("answered 4"), "{line}");

    let mut garbage = XdrClient::connect(sluice.xdr);
    garbage.send(b"\x07\x03not xdr at all");
    assert!(garbage.closed());
    let line = sluice.wait_for("cannot be framed");
    assert!(line.contains("closing this connection"), "{line}");

    c.send(&record("demo", 4));
    assert_eq!(c.acks(1), vec![(0, 4)]);
    assert_eq!(sink.requests().len(), 3);
}
