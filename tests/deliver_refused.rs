//! A destination that stalls and then goes away (its connections refused):
//! records keep being decided (11, XDR resends) and `sluice run` still obeys
//! SIGTERM. The scenario of a shutdown hang seen in the bench (the shard's
//! reactor asleep for good: no timer fired, records stayed in flight, SIGTERM
//! never served). The hang is intermittent: this test guards the path, but
//! did not fail on every run of the binary that had it.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod control_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use control_support::{gen, sample, temp_dir, Connector};

fn retries_acked(c: &Connector) -> f64 {
    sample(&c.metrics(), "sluice_records_acked_total{result=\"11\"}").unwrap_or(0.0)
}

#[test]
fn after_a_stalled_then_refused_destination_records_are_decided_and_sigterm_exits() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Takes requests and never answers for 8 s, then exits: refused.
    let mut sink = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["sink", "--protocol", "h2c", "--stall-after", "0"])
        .args(["--duration", "8s", "--quiet", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let config = format!(
        "service:\n  address: 127.0.0.1\n  port: 0\n  manage:\n    port: 0\n  \
         max-concurrent-records: 32768\n\
         destinations:\n  gone:\n    urls: [\"http://127.0.0.1:{port}/ingest\"]\n    \
         protocol: HTTP_2\n    max-connections-per-endpoint: 4\n\
         routing:\n  mode: static-multi-destination\n  destinations: [gone]\n\
         logging:\n  ticker-interval: 0\n"
    );
    let mut c = Connector::start(temp_dir("refused"), &config, &["--drain-timeout", "5"]);
    let mut g = gen(
        c.xdr,
        &[
            "--connections",
            "4",
            "--in-flight",
            "16384",
            "--rate",
            "50000",
            "--duration",
            "60s",
        ],
    );
    // The sink stalls, then leaves (bounded wait).
    let until = Instant::now() + Duration::from_secs(30);
    while sink.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "the sink did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Connects are refused from now on; the shard must keep deciding records.
    std::thread::sleep(Duration::from_secs(3));
    let before = retries_acked(&c);
    std::thread::sleep(Duration::from_secs(3));
    let after = retries_acked(&c);
    assert!(
        after > before,
        "no record was answered 11 in 3 s after the destination went away ({before} → {after})"
    );
    c.signal("TERM");
    // Bounded: drain 5 s + flush 2 s; a hung reactor never exits.
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = c.child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > until {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = g.kill();
    let _ = g.wait();
    if status.is_none() {
        let _ = c.child.kill();
        let _ = c.child.wait();
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "sluice run did not exit within 60 s of SIGTERM"
    );
}
