//! Logging per the config: a JSON log file, the ticker line, `--watch`
//! reloads, and no secret in any log.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "TOPSECRET-123";

fn config(dir: &std::path::Path, call_timeout: u32) -> String {
    format!(
        "service:\n  address: 127.0.0.1\n  port: 0\n\
         destinations:\n  d:\n    urls: [http://127.0.0.1:9/x]\n    call-timeout: {call_timeout}\n    \
         headers:\n      Authorization: Bearer {SECRET}\n\
         routing:\n  mode: static-multi-destination\n  destinations: [d]\n\
         logging:\n  file: {}\n  enable-console-logging: false\n  format: json\n  \
         ticker-interval: 1\n  levels:\n    root: debug\n",
        dir.join("sluice.log").display()
    )
}

/// Polls (bounded) until the log file has a line containing `what`.
fn wait_in_log(log: &std::path::Path, what: &str) -> String {
    for _ in 0..600 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "no {what:?} in the log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn json_log_file_ticker_watch_and_no_secrets() {
    let dir = std::env::temp_dir().join(format!("sluice-logging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sluice.yml");
    std::fs::write(&file, config(&dir, 1000)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--shards", "1", "--watch", "--config"])
        .arg(&file)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr_text = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let stderr = child.stderr.take().unwrap();
        let text = stderr_text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                text.lock().unwrap().push_str(&line);
                let _ = tx.send(line);
            }
        });
    }
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        if line.contains("listening on") {
            break;
        }
    }
    let log = dir.join("sluice.log");
    wait_in_log(&log, "listening on");
    wait_in_log(&log, "received 0/s");
    // --watch: a changed file is reloaded without a signal.
    std::fs::write(&file, config(&dir, 700)).unwrap();
    let text = wait_in_log(&log, "config reloaded");

    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    assert_eq!(child.wait().unwrap().code(), Some(0));

    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    // The debug log holds the compiled plan, with the header named only.
    assert!(text.contains("header authorization: <hidden>"), "{text}");
    let all = std::fs::read_to_string(&log).unwrap() + &stderr_text.lock().unwrap();
    assert!(!all.contains(SECRET), "a secret reached the log:\n{all}");
    let _ = std::fs::remove_dir_all(&dir);
}
