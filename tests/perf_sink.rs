//! `sluice sink` against real clients (curl, h2load): counts, duplicates
//! and injected faults are exact; nonsense flags are refused by name.
#![allow(clippy::unwrap_used, clippy::zombie_processes)]

mod perf_support;

use perf_support::{finish, sink, BIN};
use std::process::{Command, Stdio};

fn body(key_b64: &str) -> String {
    format!(
        r#"{{"msg":"write","key":["test","demo","{key_b64}","k"],"gen":1,"exp":0,"lut":5,"bins":[{{"name":"i","type":"int","value":42}}]}}"#
    )
}

// Three distinct 20-byte digests in base64.
const D1: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const D2: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const D3: &str = "AgICAgICAgICAgICAgICAgICAgI=";

fn curl(port: u16, extra: &[&str], data: &str) -> String {
    let url = format!("http://127.0.0.1:{port}/");
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "content-type: application/json",
            "--data-binary",
            data,
            "--max-time",
            "10",
        ])
        .args(extra)
        .arg(&url)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn curl_h1_and_h2c_counts_unique_keys_and_duplicates() {
    let dump = std::env::temp_dir().join(format!("perf-sink-dump-{}.jsonl", std::process::id()));
    let (c, port) = sink(&["--dump", dump.to_str().unwrap()]);
    for d in [D1, D2, D1, D3, D1] {
        assert_eq!(curl(port, &[], &body(d)), "200");
    }
    assert_eq!(curl(port, &["--http2-prior-knowledge"], &body(D2)), "200");
    let ndjson = format!("{}\n{}\n", body(D3), body(D1));
    assert_eq!(
        curl(port, &["-H", "content-type: application/x-ndjson"], &ndjson),
        "200"
    );
    assert_eq!(curl(port, &[], "not json"), "400");
    let j = finish(c);
    assert_eq!(j["requests"], 8);
    assert_eq!(j["h2_requests"], 1);
    assert_eq!(j["records"], 8);
    assert_eq!(j["unique_keys"], 3);
    assert_eq!(j["duplicates"], 5);
    assert_eq!(j["decode_errors"], 1);
    assert_eq!(j["status"]["2xx"], 7);
    assert_eq!(j["status"]["4xx"], 1);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&dump)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(
        lines[0]["digest"],
        "0000000000000000000000000000000000000000"
    );
    assert_eq!(lines[0]["bins"]["i"], 42);
    assert_eq!(lines[0]["lut"], 5);
    let _ = std::fs::remove_file(dump);
}

#[test]
fn fail_rate_and_forced_status_are_counted_exactly() {
    let (c, port) = sink(&["--fail-rate", "0.5", "--seed", "7"]);
    let codes: Vec<String> = (0..30).map(|_| curl(port, &[], &body(D1))).collect();
    let failed = codes.iter().filter(|c| *c == "503").count();
    let ok = codes.iter().filter(|c| *c == "200").count();
    assert_eq!(failed + ok, 30);
    assert!(failed > 0 && ok > 0, "{codes:?}");
    let j = finish(c);
    assert_eq!(j["status"]["5xx"], failed);
    assert_eq!(j["status"]["failed"], failed);
    assert_eq!(j["records"], ok);
    assert_eq!(j["rejected_records"], failed);
    assert_eq!(j["duplicates"], ok - 1);

    let (c, port) = sink(&["--status", "429"]);
    assert_eq!(curl(port, &["--http2-prior-knowledge"], &body(D1)), "429");
    assert_eq!(curl(port, &[], &body(D2)), "429");
    let j = finish(c);
    assert_eq!(j["status"]["forced"], 2);
    assert_eq!(j["records"], 0);
    assert_eq!(j["unique_keys"], 0);
}

#[test]
fn resets_drop_the_connection_and_are_counted() {
    let (c, port) = sink(&["--reset-rate", "1"]);
    assert_eq!(curl(port, &[], &body(D1)), "000");
    assert_eq!(curl(port, &["--http2-prior-knowledge"], &body(D1)), "000");
    let j = finish(c);
    assert_eq!(j["resets"], 2);
    assert_eq!(j["records"], 0);
}

#[test]
fn h2load_requests_are_all_counted() {
    let dir = std::env::temp_dir().join(format!("perf-h2load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("body.json");
    std::fs::write(&data, body(D2)).unwrap();
    // Two executors: h2load's connections spread over both, and the counts
    // (the unique keys above all) must still come out exact when merged.
    // Both HTTP/2 servers: the sink's own (the default) and the h2 crate's.
    for server in ["lite", "h2"] {
        let (c, port) = sink(&["--threads", "2", "--h2-server", server]);
        let out = Command::new("h2load")
            .args([
                "-n",
                "500",
                "-c",
                "4",
                "-m",
                "10",
                "-t",
                "1",
                "-d",
                data.to_str().unwrap(),
                "-H",
                "content-type: application/json",
            ])
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("500 succeeded"), "{text}");
        let j = finish(c);
        assert_eq!(j["h2_requests"], 500);
        assert_eq!(j["records"], 500);
        assert_eq!(j["unique_keys"], 1);
        assert_eq!(j["duplicates"], 499);
        assert_eq!(j["h2_protocol_errors"], 0);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_h2_protocol_error_gets_goaway_and_is_counted() {
    use std::io::{Read, Write};
    let (c, port) = sink(&[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // The preface, an empty SETTINGS, then a PING of 4 bytes (it must have 8).
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    hello.extend_from_slice(&[0, 0, 4, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    s.write_all(&hello).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    // The frames that came back, until the connection closed: the last is
    // GOAWAY (7) with FRAME_SIZE_ERROR (6) and the reason.
    let mut at = 0;
    let mut last = None;
    while at + 9 <= got.len() {
        let len =
            usize::from(got[at]) << 16 | usize::from(got[at + 1]) << 8 | usize::from(got[at + 2]);
        last = Some((got[at + 3], got[at + 9..at + 9 + len].to_vec()));
        at += 9 + len;
    }
    assert_eq!(at, got.len(), "{got:?}");
    let (ty, payload) = last.unwrap();
    assert_eq!(ty, 7, "{got:?}");
    assert_eq!(payload[4..8], [0, 0, 0, 6]);
    assert_eq!(String::from_utf8_lossy(&payload[8..]), "a 4-byte PING");
    // Nothing else is harmed.
    assert_eq!(curl(port, &["--http2-prior-knowledge"], &body(D1)), "200");
    let j = finish(c);
    assert_eq!(j["h2_protocol_errors"], 1);
    assert_eq!(j["records"], 1);
}

#[test]
fn a_body_in_many_h2_frames_is_read_whole() {
    // About 300 KB of NDJSON: many DATA frames, most arriving after the
    // request's headers were taken.
    let keys: Vec<String> = (0u8..=255)
        .map(|i| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [i; 20]))
        .collect();
    let lines: Vec<String> = (0..2000).map(|i| body(&keys[i % keys.len()])).collect();
    let ndjson = lines.join("\n") + "\n";
    // Too long for one command-line argument: curl reads it from a file.
    let file = std::env::temp_dir().join(format!("perf-sink-big-{}.ndjson", std::process::id()));
    std::fs::write(&file, &ndjson).unwrap();
    let (c, port) = sink(&[]);
    assert_eq!(
        curl(
            port,
            &[
                "--http2-prior-knowledge",
                "-H",
                "content-type: application/x-ndjson"
            ],
            &format!("@{}", file.display())
        ),
        "200"
    );
    let _ = std::fs::remove_file(file);
    let j = finish(c);
    assert_eq!(j["h2_requests"], 1);
    assert_eq!(j["bytes"], ndjson.len());
    assert_eq!(j["records"], 2000);
    assert_eq!(j["unique_keys"], 256);
    assert_eq!(j["duplicates"], 2000 - 256);
}

#[test]
fn nonsense_flags_are_refused_by_name() {
    for (args, flag) in [
        (vec!["--fail-rate", "-0.5"], "--fail-rate"),
        (vec!["--threads", "0"], "--threads"),
        (vec!["--status", "42"], "--status"),
        (vec!["--delay-ms", "9-3"], "--delay-ms"),
        (vec!["--down-for", "-1"], "--down-for"),
        (vec!["--expect", "-2"], "--expect"),
        (vec!["--cpus", "0,1"], "--cpus"),
        (vec!["--plot", "/nonexistent/dir/p.svg"], "--plot"),
        (
            vec![
                "--tls-cert",
                "/nonexistent/c.pem",
                "--tls-key",
                "/nonexistent/k.pem",
            ],
            "/nonexistent/c.pem",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["sink", "--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn https_with_alpn_serves_h2_and_http1() {
    let dir = std::env::temp_dir().join(format!("perf-sink-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let (c, port) = sink(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let https = |extra: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                "--cacert",
                cert.to_str().unwrap(),
                extra,
            ])
            .args([
                "-H",
                "content-type: application/json",
                "--data-binary",
                &body(D1),
                "--max-time",
                "10",
            ])
            .arg(format!("https://127.0.0.1:{port}/"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(https("--http2"), "200 2");
    assert_eq!(https("--http1.1"), "200 1.1");
    let j = finish(c);
    assert_eq!(j["h2_requests"], 1);
    assert_eq!(j["h1_requests"], 1);
    assert_eq!(j["duplicates"], 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn stall_after_stops_answering_and_expect_ends_the_run() {
    let (c, port) = sink(&["--stall-after", "2", "--delay-ms", "1-3"]);
    assert_eq!(curl(port, &[], &body(D1)), "200");
    assert_eq!(curl(port, &["--http2-prior-knowledge"], &body(D2)), "200");
    assert_eq!(curl(port, &["--max-time", "1"], &body(D3)), "000");
    let j = finish(c);
    assert_eq!(j["stalled"], 1);
    assert_eq!(j["records"], 2);
    assert_eq!(j["rejected_records"], 1);

    // --expect: the sink exits by itself once 2 unique keys arrived.
    let (c, port) = sink(&["--expect", "2"]);
    assert_eq!(curl(port, &[], &body(D1)), "200");
    assert_eq!(curl(port, &[], &body(D1)), "200");
    assert_eq!(curl(port, &[], &body(D3)), "200");
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["unique_keys"], 2);
    assert_eq!(j["duplicates"], 1);
}

#[test]
fn down_for_refuses_connections_then_recovers() {
    let (c, port) = sink(&["--down-for", "3"]);
    assert_eq!(curl(port, &[], &body(D1)), "000");
    std::thread::sleep(std::time::Duration::from_millis(3300));
    assert_eq!(curl(port, &[], &body(D1)), "200");
    let j = finish(c);
    assert!(j["refused_connections"].as_u64().unwrap() >= 1, "{j}");
    assert_eq!(j["records"], 1);
}
