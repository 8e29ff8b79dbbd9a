//! Helpers of the perf tools' tests: start `sluice sink` (or the bundled
//! acker) and read the port it prints; stop the sink and read its JSON
//! summary.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// Spawns `sluice ARGS`; returns it once it printed `listening on ADDR`,
/// with ADDR's port. The rest of its stderr is drained.
pub fn spawn_listening(args: &[&str]) -> (Child, u16) {
    let mut c = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(c.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "sluice {args:?} ended before listening"
        );
        if let Some(a) = line.trim().strip_prefix("listening on ") {
            let port = a.rsplit(':').next().unwrap().parse().unwrap();
            std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
            return (c, port);
        }
    }
}

/// `sluice sink` on a free port (JSON summary, at most 60 s).
pub fn sink(extra: &[&str]) -> (Child, u16) {
    let mut args = vec![
        "sink",
        "--listen",
        "127.0.0.1:0",
        "--json",
        "--quiet",
        "--duration",
        "60s",
    ];
    args.extend(extra);
    spawn_listening(&args)
}

/// SIGTERM, then the JSON summary.
pub fn finish(c: Child) -> serde_json::Value {
    let pid = c.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "sink exit {:?}", out.status);
    serde_json::from_slice(&out.stdout).unwrap()
}
