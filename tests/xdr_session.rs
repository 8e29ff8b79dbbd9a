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

/// On a batching json route the ops are validated as the record is written
/// into the batch: a record with a malformed op is answered 4 (a parse
/// error, not a dead letter) and left out of the batch, and the records
/// around it in the same batch are delivered and answered 0.
#[test]
fn a_malformed_op_in_a_json_batch_answers_4_and_the_batch_carries_on() {
    let sink = Sink::start(always(200));
    let cfg = one_route(&[("d", sink.url("/"))], "").replace(
        "logging:",
        "batching:\n  max-records: 3\n  batch-interval: 1000\nlogging:",
    );
    let mut sluice = Sluice::start("malformed-op-batch", &cfg);
    // Record 2: its string value is not UTF-8 (its last byte).
    let mut bad_text = record("demo", 2);
    *bad_text.last_mut().unwrap() = 0xff;
    // Record 4: the op of bin `i` has op code 1, not WRITE.
    let mut bad_op = record("demo", 4);
    let at = bad_op
        .windows(5)
        .position(|w| w == [2, 1, 0, 1, b'i'])
        .unwrap();
    bad_op[at] = 1;
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(
        &[
            record("demo", 1),
            bad_text,
            record("demo", 3),
            bad_op,
            record("demo", 5),
        ]
        .concat(),
    );
    assert_eq!(c.acks(5), vec![(0, 1), (4, 2), (0, 3), (4, 4), (0, 5)]);
    let line = sluice.wait_for("cannot be parsed");
    assert!(line.contains("answered 4"), "{line}");
    let requests = sink.requests();
    assert_eq!(requests.len(), 1, "one batch of the three good records");
    let body = String::from_utf8(requests[0].body.clone()).unwrap();
    let gens: Vec<u64> = body
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["gen"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(gens, vec![1, 3, 5], "{body}");
}

/// A record that no destination takes is answered 0 only when it is well
/// formed: with routing `skip`, a record with a malformed op is still
/// answered 4 (its ops are validated before the skip is answered).
#[test]
fn a_skipped_record_with_a_malformed_op_answers_4() {
    let sink = Sink::start(always(200));
    let cfg = one_route(&[("d", sink.url("/"))], "").replace(
        "routing:\n  mode: static-multi-destination\n  destinations: [d]\n",
        "routing:\n  mode: skip\n",
    );
    assert!(cfg.contains("mode: skip"), "{cfg}");
    let mut sluice = Sluice::start("malformed-op-skip", &cfg);
    let mut bad = record("demo", 2);
    *bad.last_mut().unwrap() = 0xff;
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&[record("demo", 1), bad, record("demo", 3)].concat());
    assert_eq!(c.acks(3), vec![(0, 1), (4, 2), (0, 3)]);
    let line = sluice.wait_for("cannot be parsed");
    assert!(line.contains("answered 4"), "{line}");
    assert!(sink.requests().is_empty());
}
