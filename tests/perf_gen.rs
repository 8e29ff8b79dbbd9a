//! `sluice gen` against the bundled acker (with retry codes and dropped
//! connections) and against `sluice sink` through nothing but its own
//! counts: every record ends acked, resends are counted, flags are checked.
#![allow(clippy::unwrap_used, clippy::zombie_processes)]

mod common;
mod perf_support;

use perf_support::{finish, sink, spawn_listening, BIN};
use std::process::{Child, Command};

fn acker(extra: &[&str]) -> (Child, u16) {
    let mut args = vec!["gen", "--acker", "127.0.0.1:0"];
    args.extend(extra);
    spawn_listening(&args)
}

fn gen(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = Command::new(BIN)
        .args(["gen", "--json", "--quiet"])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let j = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), j, err)
}

#[test]
fn every_record_acked_through_retry_codes_and_drops() {
    let (mut a, port) = acker(&["--acker-retry-every", "10", "--acker-drop-every", "997"]);
    let target = format!("127.0.0.1:{port}");
    let hist = std::env::temp_dir().join(format!("perf-gen-{}.hgrm", std::process::id()));
    let plot = hist.with_extension("svg");
    let (code, j, err) = gen(&[
        "--target",
        &target,
        "--connections",
        "3",
        "--records",
        "20000",
        "--in-flight",
        "32",
        "--retry-delay-ms",
        "1",
        "--hist-out",
        hist.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    a.kill().unwrap();
    let _ = a.wait();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(j["records"], 20000);
    assert_eq!(j["acked"], 20000);
    assert_eq!(j["in_flight_at_end"], 0);
    assert_eq!(j["abandoned"], 0);
    assert!(j["resent"]["retry_code"].as_u64().unwrap() >= 2000);
    assert!(j["resent"]["broken_connection"].as_u64().unwrap() >= 1);
    assert_eq!(j["latency_us"]["count"], 20000);
    let sent = j["sent"].as_u64().unwrap();
    assert_eq!(sent, 20000 + j["resent"]["total"].as_u64().unwrap());
    let h = std::fs::read_to_string(&hist).unwrap();
    assert!(h.contains("Total count    =        20000]"), "{h}");
    assert!(std::fs::read_to_string(&plot)
        .unwrap()
        .contains("<polyline"));
    let _ = std::fs::remove_file(hist);
    let _ = std::fs::remove_file(plot);
}

#[test]
fn nonsense_flags_are_refused_by_name() {
    for (args, flag) in [
        (
            vec![
                "--target",
                "127.0.0.1:9",
                "--records",
                "5",
                "--rate",
                "-100",
            ],
            "--rate",
        ),
        (
            vec![
                "--target",
                "127.0.0.1:9",
                "--records",
                "5",
                "--connections",
                "0",
            ],
            "--connections",
        ),
        (
            vec![
                "--target",
                "127.0.0.1:9",
                "--records",
                "5",
                "--tls-ca",
                "/nonexistent/ca.pem",
            ],
            "/nonexistent/ca.pem",
        ),
        (
            vec!["--target", "127.0.0.1:9", "--duration", "-3s"],
            "--duration",
        ),
        // Negative counts: clap's refusal, naming the flag.
        (
            vec!["--target", "127.0.0.1:9", "--records", "-5"],
            "--records",
        ),
        (
            vec![
                "--target",
                "127.0.0.1:9",
                "--records",
                "5",
                "--in-flight",
                "-1",
            ],
            "--in-flight",
        ),
        // An output that cannot be written is refused before the run.
        (
            vec![
                "--target",
                "127.0.0.1:9",
                "--records",
                "5",
                "--hist-out",
                "/nonexistent/dir/h.hgrm",
            ],
            "--hist-out",
        ),
    ] {
        let (code, _, err) = gen(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn unacked_records_at_the_end_fail_the_run() {
    // A peer that accepts and never answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    let (code, j, _) = gen(&[
        "--target",
        &target,
        "--duration",
        "200ms",
        "--grace",
        "300ms",
        "--rate",
        "50",
        "--ack-timeout-ms",
        "100000",
    ]);
    assert_eq!(code, Some(1));
    assert!(j["in_flight_at_end"].as_u64().unwrap() >= 1, "{j}");
    assert_eq!(j["acked"], 0);
}

#[test]
fn the_grace_period_ends_a_run_whose_records_keep_coming_back() {
    // Every request answered with a retry code: records never complete, so
    // the run must end at --duration + --grace, report them un-acked and
    // exit 1 (not keep resending for as long as the peer answers).
    let (mut a, port) = acker(&["--acker-retry-every", "1"]);
    let target = format!("127.0.0.1:{port}");
    let (code, j, err) = gen(&[
        "--target",
        &target,
        "--rate",
        "1000",
        "--duration",
        "1s",
        "--grace",
        "1s",
        "--retry-delay-ms",
        "1",
    ]);
    a.kill().unwrap();
    let _ = a.wait();
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(j["acked"], 0, "{j}");
    assert!(j["in_flight_at_end"].as_u64().unwrap() > 0, "{j}");
    assert!(j["resent"]["retry_code"].as_u64().unwrap() > 0, "{j}");
    assert!(err.contains("remained un-acked"), "{err}");
}

#[test]
fn gen_over_tls_with_a_client_certificate_every_record_arrives() {
    let pki = common::Pki::new("gen-tls");
    let pem = |f: &str| pki.path(f).to_str().unwrap().to_string();
    let hist = pki.path("sink.hgrm");
    let plot = pki.path("sink.svg");
    let (sink, sink_port) = sink(&[
        "--hist-out",
        hist.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let xdr_port = common::free_port();
    // The listener requires a client certificate signed by the CA.
    let config = format!(
        "\
service:
  address: 127.0.0.1
  tls:
    port: {xdr_port}
    cert-file: {}
    key-file: {}
    ca-file: {}
destinations:
  sink:
    urls: [http://127.0.0.1:{sink_port}/in]
routing:
  mode: static-multi-destination
  destinations: [sink]
logging:
  ticker-interval: 0
",
        pem("server.pem"),
        pem("server.key"),
        pem("ca.pem")
    );
    let sluice = common::Sluice::start("gen-tls", &config);
    let target = sluice.xdr.to_string();
    assert!(target.ends_with(&format!(":{xdr_port}")), "{target}");
    let (code, j, err) = gen(&[
        "--target",
        &target,
        "--connections",
        "2",
        "--records",
        "3000",
        "--in-flight",
        "16",
        "--tls-ca",
        &pem("ca.pem"),
        "--tls-cert",
        &pem("client.pem"),
        "--tls-key",
        &pem("client.key"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(j["acked"], 3000, "{j}");
    assert_eq!(j["in_flight_at_end"], 0, "{j}");
    assert_eq!(j["abandoned"], 0, "{j}");
    // Acked means delivered: the sink answered 2xx for every record, and
    // read each one's timestamp bin. Nothing was resent on this clean path.
    assert_eq!(j["resent"]["total"], 0, "{j}");
    let s = finish(sink);
    assert_eq!(s["records"], 3000, "{s}");
    assert_eq!(s["writes"], 3000, "{s}");
    assert_eq!(s["rejected_records"], 0, "{s}");
    assert_eq!(s["decode_errors"], 0, "{s}");
    assert_eq!(s["latency_us"]["count"], 3000, "{s}");
    let h = std::fs::read_to_string(&hist).unwrap();
    assert!(h.contains("Total count    =         3000]"), "{h}");
    assert!(std::fs::read_to_string(&plot)
        .unwrap()
        .contains("<polyline"));
    assert_eq!(
        s["unique_keys"].as_u64().unwrap() + s["duplicates"].as_u64().unwrap(),
        3000,
        "{s}"
    );

    // Without the client certificate the listener refuses the handshake:
    // nothing is acked and the run fails.
    let (code, j, err) = gen(&[
        "--target",
        &target,
        "--rate",
        "50",
        "--duration",
        "300ms",
        "--grace",
        "1s",
        "--connect-timeout-ms",
        "300",
        "--tls-ca",
        &pem("ca.pem"),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(j["acked"], 0, "{j}");

    // A CA that cannot be read (a directory) or that holds no certificate
    // (a key) is refused up front, naming the file.
    for ca in [pki.dir.to_str().unwrap().to_string(), pem("ca.key")] {
        let (code, _, err) = gen(&["--target", &target, "--records", "5", "--tls-ca", &ca]);
        assert_eq!(code, Some(2), "{ca}: {err}");
        assert!(err.contains(&ca), "{ca}: {err}");
    }
    drop(sluice);
}
