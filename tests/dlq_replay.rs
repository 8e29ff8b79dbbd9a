//! Dead letters on the real binary: a destination that refuses records for
//! good (a status in its drop list) gets them written to the dead-letter
//! file and acked 0; without a file they are answered 4; `sluice dlq
//! replay` sends them to a healthy destination.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use sluice_shards::dlq::Letter;

fn config(sink: &Sink, dead_letter: Option<&Path>) -> String {
    let dlq = dead_letter
        .map(|p| format!("dead-letter:\n  file: {}\n  fsync: always\n", p.display()))
        .unwrap_or_default();
    format!(
        "service:\n  address: 127.0.0.1\n  port: 0\n\
destinations:\n  es:\n    urls: [{}]\n    protocol: HTTP_1_1\n\
routing:\n  mode: static-multi-destination\n  destinations: [es]\n{dlq}\
logging:\n  ticker-interval: 0\n",
        sink.url("/in")
    )
}

/// The config with the manage API on a free loopback port.
fn with_manage(config: &str) -> String {
    config.replacen(
        "  port: 0\n",
        "  port: 0\n  manage:\n    address: 127.0.0.1\n    port: 0\n",
        1,
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn sluice(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap()
}

/// `sluice dlq replay FILE --config CFG EXTRA…`
fn replay(file: &Path, cfg: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "dlq",
        "replay",
        file.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    sluice(&args)
}

#[test]
fn refused_records_become_dead_letters_and_replay_delivers_them() {
    let dir = temp_dir("dlq-replay");
    let file = dir.join("dead.jsonl");
    let refusing = Sink::start(always(400));
    let before = now_ms();
    let frames: Vec<Vec<u8>> = (1..=5).map(|g| record("d", g)).collect();
    {
        let sluice = Sluice::start("dlq-write", &config(&refusing, Some(&file)));
        let mut c = XdrClient::connect(sluice.xdr);
        c.send(&frames.concat());
        assert_eq!(c.acks(5), (1..=5).map(|g| (0, g)).collect::<Vec<_>>());
        let text = std::fs::read_to_string(&file).unwrap();
        let letters: Vec<Letter> = text.lines().map(|l| Letter::parse(l).unwrap()).collect();
        assert_eq!(letters.len(), 5, "{text}");
        let mut seen: Vec<Vec<u8>> = letters.iter().map(|l| l.frame.clone()).collect();
        seen.sort();
        let mut sent = frames.clone();
        sent.sort();
        assert_eq!(seen, sent, "each letter holds its raw frame");
        for l in &letters {
            assert_eq!(l.destination, "es");
            assert_eq!(l.status, 400);
            assert_eq!(l.port, sluice.xdr.port());
            assert!(l.reason.contains("400"), "{}", l.reason);
            assert!(
                l.time_ms >= before && l.time_ms <= now_ms(),
                "{}",
                l.time_ms
            );
        }
    }
    assert_eq!(refusing.requests().len(), 5, "no retry of a 400");

    let list = sluice(&["dlq", "list", file.to_str().unwrap()]);
    assert!(list.status.success());
    let listed = String::from_utf8_lossy(&list.stdout);
    assert_eq!(listed.lines().count(), 5, "{listed}");
    assert!(
        listed
            .lines()
            .all(|l| l.contains("\tes\t400\t") && l.contains("test d gen")),
        "{listed}"
    );

    // Still refused: nothing delivered, the letters are kept for later.
    let cfg = dir.join("refusing.yml");
    std::fs::write(&cfg, config(&refusing, None)).unwrap();
    let remaining = dir.join("remaining.jsonl");
    let out = replay(&file, &cfg, &["--remaining", remaining.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("0 delivered, 0 failed, 5 refused again"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&remaining).unwrap().lines().count(),
        5
    );

    // A healthy destination: every letter is delivered, in its route's format.
    let healthy = Sink::start(always(200));
    let cfg = dir.join("healthy.yml");
    std::fs::write(&cfg, config(&healthy, None)).unwrap();
    let out = replay(&file, &cfg, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("replayed 5 dead letters: 5 delivered"),
        "{stdout}"
    );
    let mut gens: Vec<u64> = healthy
        .on("/in")
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["key"][1], "d");
            v["gen"].as_u64().unwrap()
        })
        .collect();
    gens.sort();
    assert_eq!(gens, vec![1, 2, 3, 4, 5]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_dead_letter_file_refused_records_are_answered_4() {
    let refusing = Sink::start(always(404));
    let mut sluice = Sluice::start("dlq-none", &with_manage(&config(&refusing, None)));
    let manage = sluice.manage();
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&[record("d", 1), record("d", 2)].concat());
    assert_eq!(c.acks(2), vec![(4, 1), (4, 2)]);
    assert_eq!(metric(manage, "sluice_records_abandoned_total"), 2);
    assert_eq!(metric(manage, "sluice_destination_rejected_total"), 2);
    assert_eq!(metric(manage, "sluice_dead_letters_total"), 0);
}

#[test]
fn a_dead_letter_that_cannot_be_written_is_answered_11() {
    let dir = temp_dir("dlq-unwritable");
    // A directory where the file should be: every append fails.
    let file = dir.join("dead.jsonl");
    std::fs::create_dir_all(&file).unwrap();
    let refusing = Sink::start(always(400));
    let cfg = with_manage(&config(&refusing, Some(&file)));
    let mut sluice = Sluice::start("dlq-fail-run", &cfg);
    let manage = sluice.manage();
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&record("d", 1));
    assert_eq!(c.acks(1), vec![(11, 1)]);
    assert_eq!(metric(manage, "sluice_dead_letter_failures_total"), 1);
    assert_eq!(metric(manage, "sluice_dead_letters_total"), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_letter_names_the_destination_that_refused_and_replay_goes_only_there() {
    let dir = temp_dir("dlq-two");
    let file = dir.join("dead.jsonl");
    let accepting = Sink::start(always(200));
    let refusing = Sink::start(always(422));
    let two = |ok: &Sink, no: &Sink, dlq: Option<&Path>| {
        let dlq = dlq
            .map(|p| format!("dead-letter:\n  file: {}\n", p.display()))
            .unwrap_or_default();
        format!(
            "service:\n  address: 127.0.0.1\n  port: 0\n\
destinations:\n  ok:\n    urls: [{}]\n    protocol: HTTP_1_1\n  no:\n    urls: [{}]\n    protocol: HTTP_1_1\n\
routing:\n  mode: static-multi-destination\n  destinations: [ok, no]\n{dlq}\
logging:\n  ticker-interval: 0\n",
            ok.url("/ok"),
            no.url("/no")
        )
    };
    {
        let sluice = Sluice::start("dlq-two-run", &two(&accepting, &refusing, Some(&file)));
        let mut c = XdrClient::connect(sluice.xdr);
        c.send(&[record("t", 1), record("t", 2)].concat());
        assert_eq!(c.acks(2), vec![(0, 1), (0, 2)]);
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let letters: Vec<Letter> = text.lines().map(|l| Letter::parse(l).unwrap()).collect();
    assert_eq!(letters.len(), 2, "{text}");
    assert!(letters
        .iter()
        .all(|l| l.destination == "no" && l.status == 422));
    assert_eq!(accepting.requests().len(), 2);

    let healthy = Sink::start(always(200));
    let cfg = dir.join("two.yml");
    std::fs::write(&cfg, two(&accepting, &healthy, None)).unwrap();
    let out = replay(&file, &cfg, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(healthy.requests().len(), 2);
    assert_eq!(
        accepting.requests().len(),
        2,
        "the accepting destination is not sent again"
    );
    // --destination sends them elsewhere.
    let out = replay(&file, &cfg, &["--destination", "ok"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(accepting.requests().len(), 4);
    let out = replay(&file, &cfg, &["--destination", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such destination"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_record_of_a_refused_batch_becomes_a_dead_letter() {
    let dir = temp_dir("dlq-batch");
    let file = dir.join("dead.jsonl");
    let refusing = Sink::start(always(400));
    let cfg = config(&refusing, Some(&file)).replace(
        "logging:",
        "batching:\n  max-records: 3\n  batch-interval: 1000\nlogging:",
    );
    let sluice = Sluice::start("dlq-batch-run", &cfg);
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&(1..=3).flat_map(|g| record("b", g)).collect::<Vec<_>>());
    assert_eq!(c.acks(3), vec![(0, 1), (0, 2), (0, 3)]);
    assert_eq!(refusing.requests().len(), 1, "one batch, one request");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut frames: Vec<Vec<u8>> = text
        .lines()
        .map(|l| Letter::parse(l).unwrap().frame)
        .collect();
    frames.sort();
    let mut sent: Vec<Vec<u8>> = (1..=3).map(|g| record("b", g)).collect();
    sent.sort();
    assert_eq!(frames, sent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unencodable_record_becomes_a_dead_letter_with_status_0() {
    let dir = temp_dir("dlq-encode");
    let file = dir.join("dead.jsonl");
    let sink = Sink::start(always(200));
    // The schema has room for no bin: every record is an AvroMismatch.
    let cfg = config(&sink, Some(&file)).replace(
        "logging:",
        "format:\n  mode: avro\n  schema: '{\"type\":\"record\",\"name\":\"r\",\"fields\":[{\"name\":\"x\",\"type\":\"long\"}]}'\nlogging:",
    );
    let sluice = Sluice::start("dlq-encode-run", &cfg);
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&record("u", 1));
    assert_eq!(c.acks(1), vec![(0, 1)]);
    assert!(sink.requests().is_empty());
    let text = std::fs::read_to_string(&file).unwrap();
    let letters: Vec<Letter> = text.lines().map(|l| Letter::parse(l).unwrap()).collect();
    assert_eq!(letters.len(), 1, "{text}");
    assert_eq!(letters[0].status, 0);
    assert_eq!(letters[0].destination, "es");
    assert_eq!(letters[0].frame, record("u", 1));
    assert!(
        letters[0].reason.starts_with("cannot be encoded"),
        "{}",
        letters[0].reason
    );
    let _ = std::fs::remove_dir_all(&dir);
}
