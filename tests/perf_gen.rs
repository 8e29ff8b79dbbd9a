//! `sluice gen` against the bundled acker (with retry codes and dropped
//! connections) and against `sluice sink` through nothing but its own
//! counts: every record ends acked, resends are counted, flags are checked.
#![allow(clippy::unwrap_used, clippy::zombie_processes)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn acker(extra: &[&str]) -> (Child, u16) {
    let mut c = Command::new(BIN)
        .args(["gen", "--acker", "127.0.0.1:0"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(c.stderr.take().unwrap());
    let mut line = String::new();
    assert!(err.read_line(&mut line).unwrap() > 0);
    let port = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (c, port)
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
