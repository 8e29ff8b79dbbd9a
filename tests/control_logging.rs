//! Logging per the config: a JSON log file, the ticker line, `--watch`
//! reloads, and no secret in any log.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod control_support;

use control_support::{temp_dir, wait_in_file, Connector};

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

#[test]
fn json_log_file_ticker_watch_and_no_secrets() {
    let dir = temp_dir("control-logging");
    let c = Connector::start(dir.clone(), &config(&dir, 1000), &["--watch"]);
    let file = c.config_file();
    let log = dir.join("sluice.log");
    wait_in_file(&log, "listening on");
    wait_in_file(&log, "received 0/s");
    // --watch: a changed file is reloaded without a signal.
    std::fs::write(&file, config(&dir, 700)).unwrap();
    let text = wait_in_file(&log, "config reloaded");

    let mut c = c;
    c.signal("TERM");
    assert_eq!(c.child.wait().unwrap().code(), Some(0));

    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    // The debug log holds the compiled plan, with the header named only.
    assert!(text.contains("header authorization: <hidden>"), "{text}");
    let all = std::fs::read_to_string(&log).unwrap() + &c.stderr.lock().unwrap();
    assert!(!all.contains(SECRET), "a secret reached the log:\n{all}");
}

#[test]
fn a_reload_changes_log_levels_and_the_ticker() {
    let dir = temp_dir("control-levels");
    let text = |root: &str, ticker: u32| {
        format!(
            "service:\n  address: 127.0.0.1\n  port: 0\n\
             destinations:\n  d:\n    urls: [http://127.0.0.1:9/x]\n\
             routing:\n  mode: skip\n\
             logging:\n  file: {}\n  enable-console-logging: false\n  \
             ticker-interval: {ticker}\n  levels:\n    root: {root}\n",
            dir.join("sluice.log").display()
        )
    };
    let mut c = Connector::start(dir.clone(), &text("warn", 0), &[]);
    let log = dir.join("sluice.log");
    // No ticker, and at warn it would be filtered out anyway.
    let before = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!before.contains("received"), "{before}");
    std::fs::write(c.config_file(), text("info", 1)).unwrap();
    c.signal("HUP");
    wait_in_file(&log, "received 0/s");
    c.signal("TERM");
    assert_eq!(c.child.wait().unwrap().code(), Some(0));
}
