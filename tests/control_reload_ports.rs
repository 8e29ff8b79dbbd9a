//! A reload opens the listening ports the new config adds and closes the
//! ones it drops, on every shard, while the ports it keeps carry on.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use common::*;

fn config(ports: &[u16], url: &str) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!(
        "service:\n  address: 127.0.0.1\n  port: [{}]\ndestinations:\n  d:\n    urls: [\"{url}\"]\n    protocol: HTTP_1_1\n\
         routing:\n  mode: static-multi-destination\n  destinations: [d]\nlogging:\n  ticker-interval: 0\n",
        ports.join(", ")
    )
}

fn hup(sluice: &mut Sluice, times: usize) {
    let ok = Command::new("kill")
        .args(["-HUP", &sluice.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    // Each reload logs one line; wait for the `times`-th.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(sluice.dir.join("stderr.log")).unwrap_or_default();
        if log.matches("config reloaded").count() >= times {
            break;
        }
        assert!(std::time::Instant::now() < until, "no reload line:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The shards poll their control channel every few ms.
    std::thread::sleep(std::time::Duration::from_millis(300));
}

fn delivered_on(addr: SocketAddr, gen: u32) -> Vec<(u8, u32)> {
    let mut c = XdrClient::connect(addr);
    c.send(&record("demo", gen));
    c.acks(1)
}

#[test]
fn reload_opens_new_ports_and_closes_vanished_ones() {
    let sink = Sink::start(always(200));
    let (a, b) = (free_port(), free_port());
    let url = sink.url("/in");
    let mut sluice = Sluice::start("reload-ports", &config(&[a], &url));
    let addr_a: SocketAddr = format!("127.0.0.1:{a}").parse().unwrap();
    let addr_b: SocketAddr = format!("127.0.0.1:{b}").parse().unwrap();
    assert!(
        TcpStream::connect(addr_b).is_err(),
        "port {b} is not open before the reload"
    );

    // Add port b.
    std::fs::write(sluice.dir.join("sluice.yml"), config(&[a, b], &url)).unwrap();
    hup(&mut sluice, 1);
    assert_eq!(
        delivered_on(addr_b, 7),
        vec![(0, 7)],
        "a record on the new port is delivered and acked 0"
    );
    assert_eq!(
        delivered_on(addr_a, 8),
        vec![(0, 8)],
        "the kept port carries on"
    );

    // Drop port a.
    std::fs::write(sluice.dir.join("sluice.yml"), config(&[b], &url)).unwrap();
    hup(&mut sluice, 2);
    assert!(
        TcpStream::connect(addr_a).is_err(),
        "port {a} is closed after the reload"
    );
    assert_eq!(delivered_on(addr_b, 9), vec![(0, 9)]);
    let gens: Vec<u64> = sink
        .on("/in")
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["gen"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        gens,
        vec![7, 8, 9],
        "every acked record reached the destination once"
    );
}
