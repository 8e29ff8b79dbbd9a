//! Per-endpoint queueing: a request waits for one of its endpoint's slots
//! (one per HTTP/1.1 connection, `H2_STREAMS_PER_CONNECTION` per HTTP/2
//! connection), and `max-request-queued-per-endpoint` bounds how many wait:
//! one more is not queued — its attempt fails, counted, and its record is
//! answered 11.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sluice_codec::encode::Encoder;
use sluice_shards::dest::H2_STREAMS_PER_CONNECTION;
use sluice_shards::plan::HttpVersion;

/// A script that holds every request `hold` and counts arrivals.
fn holding(hold: Duration) -> (Script, Arc<AtomicUsize>) {
    let arrived = Arc::new(AtomicUsize::new(0));
    let a = arrived.clone();
    let script: Script = Arc::new(move |_| {
        a.fetch_add(1, Relaxed);
        (200, hold)
    });
    (script, arrived)
}

#[test]
fn http1_requests_past_the_queue_bound_are_not_queued_and_answer_11() {
    let (script, arrived) = holding(Duration::from_millis(700));
    let server = TestServer::start(Proto::Http1, None, script);
    let mut d = destination(
        "d",
        HttpVersion::Http1,
        &[format!("http://{}/", server.addr)],
    );
    // One connection: record 1 on the wire, records 2 and 3 queued,
    // records 4 and 5 over the bound.
    d.max_requests_queued_per_endpoint = 2;
    d.call_timeout = Duration::from_secs(5);
    let rt = start(plan(vec![d], Encoder::json()));
    let mut c = XdrClient::connect(rt.local_addrs()[0]);
    c.send(&(1..=5).flat_map(record).collect::<Vec<u8>>());
    assert_eq!(
        c.acks(5),
        vec![(0, 1), (0, 2), (0, 3), (11, 4), (11, 5)],
        "the two over the bound answer 11; acks keep arrival order"
    );
    assert_eq!(arrived.load(Relaxed), 3, "only the queued ones were sent");
    let d = &rt.stats()[0].destinations()[0];
    assert_eq!(d.queue_full.load(Relaxed), 2);
    assert_eq!(d.delivered.load(Relaxed), 3);
    assert_eq!(d.failed.load(Relaxed), 2);
    rt.shutdown(Duration::from_secs(1));
    rt.wait().unwrap();
}

#[test]
fn http2_holds_at_most_its_streams_per_connection_and_queues_the_rest() {
    let (script, arrived) = holding(Duration::from_millis(1500));
    let server = TestServer::start(Proto::H2c, None, script);
    let mut d = destination(
        "d",
        HttpVersion::Http2,
        &[format!("http://{}/", server.addr)],
    );
    let queued = 10;
    let over = 5;
    let total = H2_STREAMS_PER_CONNECTION + queued + over;
    d.max_requests_queued_per_endpoint = queued;
    d.call_timeout = Duration::from_secs(6);
    let rt = start(plan(vec![d], Encoder::json()));
    let mut c = XdrClient::connect(rt.local_addrs()[0]);
    c.send(&(1..=total as u32).flat_map(record).collect::<Vec<u8>>());
    // While the first streams are held, the server has seen exactly one
    // connection's worth of them.
    let mut seen = 0;
    for _ in 0..100 {
        seen = arrived.load(Relaxed);
        if seen >= H2_STREAMS_PER_CONNECTION {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        arrived.load(Relaxed),
        H2_STREAMS_PER_CONNECTION,
        "no stream beyond the connection's share reached the server (saw {seen} first)"
    );
    let acks = c.acks(total);
    let want: Vec<(u8, u32)> = (1..=total as u32)
        .map(|g| {
            let code = if g as usize > H2_STREAMS_PER_CONNECTION + queued {
                11
            } else {
                0
            };
            (code, g)
        })
        .collect();
    assert_eq!(acks, want);
    assert_eq!(arrived.load(Relaxed), H2_STREAMS_PER_CONNECTION + queued);
    let d = &rt.stats()[0].destinations()[0];
    assert_eq!(d.queue_full.load(Relaxed), over as u64);
    rt.shutdown(Duration::from_secs(1));
    rt.wait().unwrap();
}
