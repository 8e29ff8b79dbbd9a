//! `sluice run` under the control thread: the listening line, the manage
//! API, SIGHUP reloads (a bad file keeps the running plan), a clean exit on
//! SIGTERM, and an immediate exit on a second signal.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod control_support;

use std::time::Duration;

use control_support::{sample, temp_dir, Connector};

const CONFIG: &str = "\
service:
  address: 127.0.0.1
  port: 0
  manage:
    port: 0
destinations:
  sink:
    urls: [http://127.0.0.1:9/x]
    call-timeout: 1500
routing:
  mode: static-multi-destination
  destinations: [sink]
logging:
  ticker-interval: 0
";

#[test]
fn reload_metrics_and_clean_exit() {
    let mut c = Connector::start(
        temp_dir("control-reload"),
        CONFIG,
        &["--drain-timeout", "2"],
    );
    let line = c.wait_for_listening_line();
    assert!(line.contains("with 1 shard"), "{line}");
    assert_eq!(c.get("/health").0, 200);
    let text = c.metrics();
    assert_eq!(sample(&text, "sluice_shards"), Some(1.0), "{text}");

    // A bad file: refused, counted, logged; the manage API keeps answering.
    let file = c.config_file();
    std::fs::write(
        &file,
        CONFIG.replace("call-timeout: 1500", "call-timeout: soon"),
    )
    .unwrap();
    c.signal("HUP");
    let refused = c.wait_for("config reload refused");
    assert!(
        refused.contains("destinations.sink.call-timeout"),
        "{refused}"
    );
    let text = c.metrics();
    assert_eq!(
        sample(&text, "sluice_config_reloads_total{result=\"failed\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "sluice_config_reloads_total{result=\"ok\"}"),
        Some(0.0)
    );

    // A good file: taken.
    std::fs::write(
        &file,
        CONFIG.replace("call-timeout: 1500", "call-timeout: 900"),
    )
    .unwrap();
    c.signal("HUP");
    c.wait_for("config reloaded");
    let text = c.metrics();
    assert_eq!(
        sample(&text, "sluice_config_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );

    c.signal("TERM");
    assert_eq!(c.child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_second_signal_exits_at_once() {
    // A destination that accepts connections and never answers keeps
    // records in flight, so the drain would last its whole timeout.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_addr = hole.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hole.incoming() {
            held.push(conn);
        }
    });
    let config = CONFIG
        .replace("http://127.0.0.1:9/x", &format!("http://{hole_addr}/x"))
        .replace(
            "call-timeout: 1500",
            "call-timeout: 60000\n    protocol: HTTP_1_1",
        );
    let mut c = Connector::start(
        temp_dir("control-twice"),
        &config,
        &["--drain-timeout", "60"],
    );
    let mut gen = control_support::gen(c.xdr, &["--records", "20", "--in-flight", "20"]);
    // Wait (bounded) until records are held in flight.
    for _ in 0..3000 {
        if sample(&c.metrics(), "sluice_records_in_flight").unwrap_or(0.0) > 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    c.signal("TERM");
    c.wait_for("shutting down");
    c.signal("TERM");
    let status = c.child.wait().unwrap();
    let _ = gen.kill();
    let _ = gen.wait();
    assert_eq!(status.code(), Some(130));
}

#[test]
fn a_busy_manage_port_stops_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = temp_dir("control-busy");
    let file = dir.join("sluice.yml");
    std::fs::write(
        &file,
        CONFIG.replace(
            "  manage:\n    port: 0\n",
            &format!("  manage:\n    port: {port}\n"),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--shards", "1", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot open the manage API on 127.0.0.1:{port}")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
