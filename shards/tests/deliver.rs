//! The data plane end to end on real sockets: a plan built in code, `start`,
//! an XDR client and HTTP test servers.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sluice_codec::encode::Encoder;
use sluice_shards::plan::HttpVersion;

fn url(s: &TestServer, path: &str) -> String {
    format!("http://{}{path}", s.addr)
}

fn send_records(
    rt: &sluice_shards::Runtime,
    gens: std::ops::RangeInclusive<u32>,
) -> Vec<(u8, u32)> {
    let mut c = XdrClient::connect(rt.local_addrs()[0]);
    let n = gens.clone().count();
    let mut bytes = Vec::new();
    for i in gens {
        bytes.extend_from_slice(&record(i));
    }
    c.send(&bytes);
    c.acks(n)
}

fn oks(gens: std::ops::RangeInclusive<u32>, code: u8) -> Vec<(u8, u32)> {
    gens.map(|g| (code, g)).collect()
}

#[test]
fn h2c_json_records_are_delivered_and_acked_0_in_order() {
    let server = TestServer::start(Proto::H2c, None, always(200));
    let mut d = destination("es", HttpVersion::Http2, &[url(&server, "/ingest?x=1")]);
    d.headers.push((
        http::HeaderName::from_static("x-token"),
        http::HeaderValue::from_static("secret"),
    ));
    let rt = start(plan(vec![d], Encoder::json()));
    assert_eq!(send_records(&rt, 1..=20), oks(1..=20, 0));
    let got = server.received.lock().unwrap().clone();
    assert_eq!(got.len(), 20);
    let mut keys: Vec<u64> = got
        .iter()
        .map(|r| {
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, "/ingest");
            assert_eq!(r.headers["content-type"], "application/json");
            assert_eq!(r.headers["x-token"], "secret");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["msg"], "write");
            assert_eq!(v["key"][0], "test");
            assert_eq!(v["key"][1], "demo");
            assert_eq!(v["bins"][0]["name"], "i");
            v["bins"][0]["value"].as_u64().unwrap()
        })
        .collect();
    keys.sort();
    assert_eq!(keys, (1..=20).collect::<Vec<u64>>());
    let s = &rt.stats()[0];
    assert_eq!(s.records_received.load(Relaxed), 20);
    assert_eq!(s.acked_ok.load(Relaxed), 20);
    let h = rt.histograms(Duration::from_secs(5));
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].ack.len(), 20, "one receive→ack sample per record");
    assert_eq!(h[0].destinations[0].0, "es");
    assert_eq!(
        h[0].destinations[0].1.len(),
        20,
        "one request sample per record"
    );
    rt.shutdown(Duration::from_secs(1));
    rt.wait().unwrap();
}

#[test]
fn http1_keep_alive_delivers_message_pack() {
    let server = TestServer::start(Proto::Http1, None, always(201));
    let mut d = destination("fn", HttpVersion::Http1, &[url(&server, "/f")]);
    d.max_connections_per_endpoint = 2;
    let rt = start(plan(vec![d], Encoder::message_pack()));
    assert_eq!(send_records(&rt, 1..=10), oks(1..=10, 0));
    let bodies = server.bodies();
    assert_eq!(bodies.len(), 10);
    for b in &bodies {
        let v = rmpv::decode::read_value(&mut &b[..]).unwrap();
        // [1, 1 (write), payload]
        assert_eq!(v[0].as_u64(), Some(1));
        assert_eq!(v[1].as_u64(), Some(1));
    }
    let r = server.received.lock().unwrap()[0].clone();
    assert_eq!(r.headers["content-type"], "application/x-msgpack");
    assert!(r.headers.contains_key("host"));
}

#[test]
fn acks_keep_arrival_order_when_deliveries_finish_out_of_order() {
    // Record 1 is held 400 ms; 2..=8 answer at once.
    let script: Script = Arc::new(|body: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let slow = v["bins"][0]["value"] == 1;
        (200, Duration::from_millis(if slow { 400 } else { 0 }))
    });
    let server = TestServer::start(Proto::H2c, None, script);
    let rt = start(plan(
        vec![destination("d", HttpVersion::Http2, &[url(&server, "/")])],
        Encoder::json(),
    ));
    assert_eq!(send_records(&rt, 1..=8), oks(1..=8, 0));
}

#[test]
fn no_ack_leaves_before_the_destination_answers() {
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let g = gate.clone();
    let arrived = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = arrived.clone();
    let script: Script = Arc::new(move |_| {
        a.fetch_add(1, Relaxed);
        // Blocks the test server's thread until the test opens the gate.
        drop(g.lock().unwrap());
        (200, Duration::ZERO)
    });
    let server = TestServer::start(Proto::Http1, None, script);
    let rt = start(plan(
        vec![destination("d", HttpVersion::Http1, &[url(&server, "/")])],
        Encoder::json(),
    ));
    let mut c = XdrClient::connect(rt.local_addrs()[0]);
    c.send(&record(1));
    // Wait until the request reached the server (bounded).
    for _ in 0..500 {
        if arrived.load(Relaxed) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(arrived.load(Relaxed), 1);
    c.stream.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let early = std::io::Read::read(&mut c.stream, &mut b);
    assert_eq!(early.unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    c.stream.set_nonblocking(false).unwrap();
    drop(held);
    assert_eq!(c.acks(1), vec![(0, 1)]);
}

#[test]
fn failures_answer_11_5xx_timeout_refused() {
    let s500 = TestServer::start(Proto::H2c, None, always(503));
    let slow = TestServer::start(
        Proto::Http1,
        None,
        Arc::new(|_| (200, Duration::from_secs(3))),
    );
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    for (d, label) in [
        (
            destination("a", HttpVersion::Http2, &[url(&s500, "/")]),
            "503",
        ),
        (
            destination("b", HttpVersion::Http1, &[url(&slow, "/")]),
            "timeout",
        ),
        (
            destination("c", HttpVersion::Http2, &[format!("http://{refused}/")]),
            "refused",
        ),
    ] {
        let rt = start(plan(vec![d], Encoder::json()));
        assert_eq!(send_records(&rt, 1..=3), oks(1..=3, 11), "{label}");
        assert_eq!(rt.stats()[0].acked_retry.load(Relaxed), 3, "{label}");
    }
}

#[test]
fn multi_destination_acks_0_only_when_every_one_accepted() {
    let ok = TestServer::start(Proto::H2c, None, always(200));
    let bad = TestServer::start(Proto::Http1, None, always(500));
    let ok2 = TestServer::start(Proto::Http1, None, always(204));
    let rt = start(plan(
        vec![
            destination("ok", HttpVersion::Http2, &[url(&ok, "/")]),
            destination("bad", HttpVersion::Http1, &[url(&bad, "/")]),
        ],
        Encoder::json(),
    ));
    assert_eq!(send_records(&rt, 1..=4), oks(1..=4, 11));
    assert_eq!(ok.count(), 4);
    assert_eq!(bad.count(), 4);
    let rt = start(plan(
        vec![
            destination("ok", HttpVersion::Http2, &[url(&ok, "/")]),
            destination("ok2", HttpVersion::Http1, &[url(&ok2, "/")]),
        ],
        Encoder::json(),
    ));
    assert_eq!(send_records(&rt, 1..=4), oks(1..=4, 0));
    assert_eq!(ok2.count(), 4);
}

#[test]
fn a_malformed_record_answers_4_and_the_session_carries_on() {
    let server = TestServer::start(Proto::H2c, None, always(200));
    let rt = start(plan(
        vec![destination("d", HttpVersion::Http2, &[url(&server, "/")])],
        Encoder::json(),
    ));
    let mut bad = record(2);
    bad[8] = 21; // message header size must be 22
    let mut bytes = record(1);
    bytes.extend_from_slice(&bad);
    bytes.extend_from_slice(&record(3));
    let mut c = XdrClient::connect(rt.local_addrs()[0]);
    c.send(&bytes);
    assert_eq!(c.acks(3), vec![(0, 1), (4, 2), (0, 3)]);
    c.send(&record(4));
    assert_eq!(c.acks(1), vec![(0, 4)]);
    assert_eq!(rt.stats()[0].parse_errors.load(Relaxed), 1);
    assert_eq!(rt.stats()[0].acked_parameter.load(Relaxed), 1);
    assert_eq!(server.count(), 3);
}

#[test]
fn unframeable_bytes_close_only_that_connection() {
    let server = TestServer::start(Proto::H2c, None, always(200));
    let rt = start(plan(
        vec![destination("d", HttpVersion::Http2, &[url(&server, "/")])],
        Encoder::json(),
    ));
    let mut good = XdrClient::connect(rt.local_addrs()[0]);
    let mut bad = XdrClient::connect(rt.local_addrs()[0]);
    bad.send(b"GET / HTTP/1.1\r\n\r\n");
    assert!(bad.closed());
    good.send(&record(7));
    assert_eq!(good.acks(1), vec![(0, 7)]);
    assert_eq!(rt.stats()[0].frames_rejected.load(Relaxed), 1);
}

#[test]
fn two_endpoints_share_the_load() {
    let a = TestServer::start(
        Proto::H2c,
        None,
        Arc::new(|_| (200, Duration::from_millis(20))),
    );
    let b = TestServer::start(
        Proto::H2c,
        None,
        Arc::new(|_| (200, Duration::from_millis(20))),
    );
    let rt = start(plan(
        vec![destination(
            "d",
            HttpVersion::Http2,
            &[url(&a, "/"), url(&b, "/")],
        )],
        Encoder::json(),
    ));
    assert_eq!(send_records(&rt, 1..=40), oks(1..=40, 0));
    assert_eq!(a.count() + b.count(), 40);
    assert!(
        a.count() > 0 && b.count() > 0,
        "a {} b {}",
        a.count(),
        b.count()
    );
}

#[test]
fn gzip_bodies_at_the_threshold() {
    let server = TestServer::start(Proto::Http1, None, always(200));
    let mut d = destination("z", HttpVersion::Http1, &[url(&server, "/")]);
    d.gzip_threshold = Some(1);
    let rt = start(plan(vec![d], Encoder::json()));
    assert_eq!(send_records(&rt, 1..=2), oks(1..=2, 0));
    let r = server.received.lock().unwrap()[0].clone();
    assert_eq!(r.headers["content-encoding"], "gzip");
    let mut json = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut json)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["msg"], "write");
}

#[test]
fn retries_turn_a_passing_503_into_0() {
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = calls.clone();
    let script: Script = Arc::new(move |_| {
        let n = c.fetch_add(1, Relaxed);
        (if n == 0 { 503 } else { 200 }, Duration::ZERO)
    });
    let server = TestServer::start(Proto::H2c, None, script);
    let mut d = destination("r", HttpVersion::Http2, &[url(&server, "/")]);
    d.retry.max_attempts = 3;
    let rt = start(plan(vec![d], Encoder::json()));
    assert_eq!(send_records(&rt, 1..=1), oks(1..=1, 0));
    assert_eq!(calls.load(Relaxed), 2);
}

#[test]
fn batches_leave_at_max_records_or_the_interval() {
    let server = TestServer::start(Proto::H2c, None, always(200));
    let mut p = plan(
        vec![destination("b", HttpVersion::Http2, &[url(&server, "/")])],
        Encoder::json(),
    );
    p.routes[0].batching = Some(sluice_shards::plan::BatchPlan {
        max_records: 5,
        max_bytes: 1 << 20,
        interval: Duration::from_millis(100),
    });
    let rt = start(p);
    assert_eq!(send_records(&rt, 1..=12), oks(1..=12, 0));
    let got = server.received.lock().unwrap().clone();
    let mut sizes: Vec<usize> = got
        .iter()
        .map(|r| {
            assert_eq!(r.headers["content-type"], "application/x-ndjson");
            let text = std::str::from_utf8(&r.body).unwrap();
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .inspect(|v| assert_eq!(v["msg"], "write"))
                .count()
        })
        .collect();
    sizes.sort();
    // Two full batches of 5, and the last 2 sent by the interval.
    assert_eq!(sizes, vec![2, 5, 5]);
}

/// Records are encoded straight into the open batch body: one that cannot
/// be encoded (a bin named like the flat-json metadata key) must leave the
/// body as it was — no half record, no doubled separator — and be answered
/// 4 in its place, also when it is the record that opened the batch.
#[test]
fn batches_keep_their_framing_around_unencodable_records() {
    let server = TestServer::start(Proto::H2c, None, always(200));
    let mut p = plan(
        vec![destination("b", HttpVersion::Http2, &[url(&server, "/")])],
        Encoder::flat_json("i"),
    );
    p.routes[0].batching = Some(sluice_shards::plan::BatchPlan {
        max_records: 3,
        max_bytes: 1 << 20,
        interval: Duration::from_millis(100),
    });
    let rt = start(p);
    let mut c = XdrClient::connect(rt.local_addrs()[0]);
    // record(g) has bin `i`: unencodable here; this one has bin `n`.
    let encodable = |g: u32| {
        use sluice_codec::build::{BinSpec, Key, Message, ValueSpec};
        let mut m = Message::write_record(
            "test",
            Some("demo"),
            Some(Key::Str(format!("k{g}"))),
            vec![BinSpec::new("n", ValueSpec::Int(i64::from(g)))],
        );
        m.generation = g;
        m.to_vec().unwrap()
    };
    let frames = [
        record(1),
        encodable(2),
        encodable(3),
        record(4),
        encodable(5),
        record(6),
        encodable(7),
    ];
    c.send(&frames.concat());
    assert_eq!(
        c.acks(7),
        vec![(4, 1), (0, 2), (0, 3), (4, 4), (0, 5), (4, 6), (0, 7)]
    );
    let got = server.received.lock().unwrap().clone();
    let mut batches: Vec<Vec<u64>> = got
        .iter()
        .map(|r| {
            assert_eq!(r.headers["content-type"], "application/x-ndjson");
            let text = std::str::from_utf8(&r.body).unwrap();
            assert!(text.ends_with('\n') && !text.contains("\n\n"), "{text:?}");
            text.lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["n"].as_u64().unwrap()
                })
                .collect()
        })
        .collect();
    batches.sort();
    // A full batch of 3, and the last one sent by the interval.
    assert_eq!(batches, vec![vec![2, 3, 5], vec![7]]);
    let s = &rt.stats()[0];
    assert_eq!(s.encode_errors.load(Relaxed), 3);
    rt.shutdown(Duration::from_secs(1));
    rt.wait().unwrap();
}
