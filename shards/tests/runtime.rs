//! The runtime around the sessions: backpressure at the in-flight bound,
//! reload (new records take the new plan), shutdown (in-flight records past
//! the drain answered 11), and several shards on one port.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sluice_codec::encode::Encoder;
use sluice_shards::plan::HttpVersion;

fn wait_until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("waited 10 s for {what}");
}

#[test]
fn at_the_in_flight_bound_sessions_stop_reading() {
    let arrived = Arc::new(AtomicUsize::new(0));
    let a = arrived.clone();
    // The first four are held 3 s; the rest answer at once.
    let script: Script = Arc::new(move |_| {
        let n = a.fetch_add(1, Relaxed);
        (200, Duration::from_millis(if n < 4 { 3000 } else { 0 }))
    });
    let server = TestServer::start(Proto::H2c, None, script);
    let mut d = destination(
        "d",
        HttpVersion::Http2,
        &[format!("http://{}/", server.addr)],
    );
    d.call_timeout = Duration::from_secs(6);
    let mut p = plan(vec![d], Encoder::json());
    p.service.max_concurrent_records = 4;
    let rt = start(p);
    let mut c = XdrClient::connect(rt.local_addrs()[0]);
    let bytes: Vec<u8> = (1..=10).flat_map(record).collect();
    c.send(&bytes);
    wait_until("four requests", || arrived.load(Relaxed) == 4);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        arrived.load(Relaxed),
        4,
        "no fifth record taken while four are held"
    );
    assert_eq!(rt.stats()[0].in_flight.load(Relaxed), 4);
    assert_eq!(c.acks(10), (1..=10).map(|g| (0, g)).collect::<Vec<_>>());
    assert_eq!(server.count(), 10);
}

#[test]
fn reload_routes_new_records_with_the_new_plan() {
    let first = TestServer::start(Proto::H2c, None, always(200));
    let second = TestServer::start(Proto::Http1, None, always(200));
    let rt = start(plan(
        vec![destination(
            "d",
            HttpVersion::Http2,
            &[format!("http://{}/", first.addr)],
        )],
        Encoder::json(),
    ));
    let mut c = XdrClient::connect(rt.local_addrs()[0]);
    c.send(&record(1));
    assert_eq!(c.acks(1), vec![(0, 1)]);
    rt.reload(Arc::new(plan(
        vec![destination(
            "d",
            HttpVersion::Http1,
            &[format!("http://{}/", second.addr)],
        )],
        Encoder::message_pack(),
    )));
    // The shard picks the plan up within its control poll; send until the
    // new destination sees a record (bounded).
    let mut g = 2;
    while second.count() == 0 && g < 200 {
        c.send(&record(g));
        assert_eq!(c.acks(1), vec![(0, g)]);
        g += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(second.count(), 1);
    let body = &second.bodies()[0];
    assert!(
        rmpv::decode::read_value(&mut &body[..]).is_ok(),
        "message-pack after reload"
    );
}

#[test]
fn shutdown_answers_records_past_the_drain_11() {
    let server = TestServer::start(
        Proto::H2c,
        None,
        Arc::new(|_| (200, Duration::from_secs(5))),
    );
    let mut d = destination(
        "d",
        HttpVersion::Http2,
        &[format!("http://{}/", server.addr)],
    );
    d.call_timeout = Duration::from_secs(7);
    let rt = start(plan(vec![d], Encoder::json()));
    let mut c = XdrClient::connect(rt.local_addrs()[0]);
    c.send(&[record(1), record(2)].concat());
    wait_until("both requests", || server.count() == 2);
    rt.shutdown(Duration::from_millis(100));
    assert_eq!(c.acks(2), vec![(11, 1), (11, 2)]);
    assert!(c.closed());
    rt.wait().unwrap();
}

#[test]
fn two_shards_share_one_port() {
    let server = TestServer::start(Proto::H2c, None, always(200));
    let rt = sluice_shards::start(
        Arc::new(plan(
            vec![destination(
                "d",
                HttpVersion::Http2,
                &[format!("http://{}/", server.addr)],
            )],
            Encoder::json(),
        )),
        sluice_shards::RuntimeOptions {
            cpus: vec![None, None],
        },
    )
    .unwrap();
    let addr = rt.local_addrs()[0];
    assert_ne!(addr.port(), 0);
    let mut clients: Vec<XdrClient> = (0..8).map(|_| XdrClient::connect(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&record(i as u32 + 1));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.acks(1), vec![(0, i as u32 + 1)]);
    }
    let stats = rt.stats();
    assert_eq!(stats.len(), 2);
    let total: u64 = stats.iter().map(|s| s.acked_ok.load(Relaxed)).sum();
    assert_eq!(total, 8);
    rt.shutdown(Duration::from_secs(1));
    rt.wait().unwrap();
}

#[test]
fn health_checks_take_a_failing_endpoint_out_and_all_down_answers_11() {
    // Health checks carry no body: `sick` fails them and accepts records.
    let sick = TestServer::start(
        Proto::H2c,
        None,
        Arc::new(|b: &[u8]| (if b.is_empty() { 503 } else { 200 }, Duration::ZERO)),
    );
    let well = TestServer::start(Proto::H2c, None, always(200));
    let mut d = destination(
        "hc",
        HttpVersion::Http2,
        &[
            format!("http://{}/", sick.addr),
            format!("http://{}/", well.addr),
        ],
    );
    d.health_check = Some(sluice_shards::plan::HealthCheckPlan {
        interval: Duration::from_millis(30),
        call_timeout: Duration::from_millis(500),
        method: http::Method::GET,
        path: "/health".into(),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    });
    let rt = start(plan(vec![d.clone()], Encoder::json()));
    let stats = rt.stats()[0].destinations()[0].clone();
    wait_until("sick marked down", || {
        stats.endpoints[0].healthy.load(Relaxed) == 0
    });
    assert_eq!(stats.endpoints[1].healthy.load(Relaxed), 1);
    let mut c = XdrClient::connect(rt.local_addrs()[0]);
    c.send(&(1..=10).flat_map(record).collect::<Vec<u8>>());
    assert_eq!(c.acks(10), (1..=10).map(|g| (0, g)).collect::<Vec<_>>());
    let records = |s: &TestServer| s.bodies().iter().filter(|b| !b.is_empty()).count();
    assert_eq!(
        records(&sick),
        0,
        "no record to an endpoint failing its checks"
    );
    assert_eq!(records(&well), 10);

    // Every endpoint down: records answer 11 without a request.
    d.endpoints.truncate(1);
    let rt = start(plan(vec![d], Encoder::json()));
    let stats = rt.stats()[0].destinations()[0].clone();
    wait_until("sick marked down", || {
        stats.endpoints[0].healthy.load(Relaxed) == 0
    });
    let mut c = XdrClient::connect(rt.local_addrs()[0]);
    c.send(&record(11));
    assert_eq!(c.acks(1), vec![(11, 11)]);
    assert_eq!(records(&sick), 0);
}
