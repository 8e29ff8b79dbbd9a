//! The generator against an in-test fake connector that acks in order,
//! sometimes with retry or abandon codes, and drops connections mid-stream.

use super::*;
use crate::gen::GenArgs;
use clap::Parser;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    a: GenArgs,
}

fn cfg(args: &[&str]) -> Config {
    let mut v = vec!["gen", "--quiet"];
    v.extend_from_slice(args);
    Config::from_args(&Cli::parse_from(v).a).unwrap()
}

#[derive(Default)]
struct Tally {
    frames: AtomicU64,
    ok: AtomicU64,
    retry: AtomicU64,
    abandon: AtomicU64,
    drops: AtomicU64,
    bad_digest: AtomicU64,
}

/// Per connection: request number n (1-based) is answered 11 when
/// n.is_multiple_of(retry), 4 when n.is_multiple_of(abandon), and the connection is dropped
/// (the un-acked rest lost) after `drop_after` requests.
fn fake(retry: u64, abandon: u64, drop_after: u64) -> (std::net::SocketAddr, Arc<Tally>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = Arc::new(Tally::default());
    let tally = t.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let t = tally.clone();
            std::thread::spawn(move || serve(s, &t, retry, abandon, drop_after));
        }
    });
    (addr, t)
}

fn serve(mut s: TcpStream, t: &Tally, retry: u64, abandon: u64, drop_after: u64) {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let mut n = 0u64;
    loop {
        let got = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(k) => k,
        };
        buf.extend_from_slice(&chunk[..got]);
        let mut out = Vec::new();
        let mut at = 0;
        while buf.len() - at >= 8 {
            let len = u64::from_be_bytes([
                0,
                0,
                buf[at + 2],
                buf[at + 3],
                buf[at + 4],
                buf[at + 5],
                buf[at + 6],
                buf[at + 7],
            ]) as usize;
            if buf.len() - at < 8 + len {
                break;
            }
            let raw = &buf[at..at + 8 + len];
            at += 8 + len;
            let inflated;
            let frame = if raw[1] == 4 {
                let mut v = Vec::new();
                flate2::read::ZlibDecoder::new(&raw[16..])
                    .read_to_end(&mut v)
                    .unwrap();
                assert_eq!(
                    v.len() as u64,
                    u64::from_be_bytes(raw[8..16].try_into().unwrap())
                );
                inflated = v;
                &inflated[..]
            } else {
                raw
            };
            if drop_after > 0 && n == drop_after {
                // Lose the rest: write the acks so far, close our side, drain theirs.
                s.write_all(&out).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                t.drops.fetch_add(1, SeqCst);
                while matches!(s.read(&mut chunk), Ok(k) if k > 0) {}
                return;
            }
            n += 1;
            t.frames.fetch_add(1, SeqCst);
            check_digest(frame, t);
            let gen = u32::from_be_bytes(frame[14..18].try_into().unwrap());
            let rc = if retry > 0 && n.is_multiple_of(retry) {
                t.retry.fetch_add(1, SeqCst);
                11
            } else if abandon > 0 && n.is_multiple_of(abandon) {
                t.abandon.fetch_add(1, SeqCst);
                4
            } else {
                t.ok.fetch_add(1, SeqCst);
                0
            };
            crate::gen::acker::ack(&mut out, rc, gen);
        }
        buf.drain(..at);
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

/// The digest field must be RIPEMD-160 of the set and key fields of the same frame.
fn check_digest(frame: &[u8], t: &Tally) {
    let nfields = u16::from_be_bytes([frame[26], frame[27]]);
    let mut at = 30;
    let (mut set, mut key, mut digest) = (None, None, None);
    for _ in 0..nfields {
        let size = u32::from_be_bytes(frame[at..at + 4].try_into().unwrap()) as usize;
        let data = &frame[at + 5..at + 4 + size];
        match frame[at + 4] {
            1 => set = Some(data),
            2 => key = Some(data),
            4 => digest = Some(data),
            _ => {}
        }
        at += 4 + size;
    }
    let (set, key, digest) = (set.unwrap(), key.unwrap(), digest.unwrap());
    assert_eq!(key[0], 3);
    let want = crate::gen::shape::digest(std::str::from_utf8(set).unwrap(), &key[1..]);
    if want != digest {
        t.bad_digest.fetch_add(1, SeqCst);
    }
}

#[test]
fn every_record_acked_through_retries_and_drops() {
    let (addr, t) = fake(7, 0, 301);
    let target = addr.to_string();
    let c = cfg(&[
        "--target",
        &target,
        "--connections",
        "2",
        "--in-flight",
        "16",
        "--records",
        "3000",
        "--retry-delay-ms",
        "1",
    ]);
    let r = run(&c).unwrap();
    let k = &r.counters;
    assert_eq!(k.records, 3000);
    assert_eq!(k.acked, 3000);
    assert_eq!(k.in_flight_at_end(), 0);
    assert_eq!(k.abandoned, 0);
    // nothing reported acked that the connector did not ack with 0
    assert_eq!(k.acked, t.ok.load(SeqCst));
    assert_eq!(k.resent_retry_code, t.retry.load(SeqCst));
    assert!(
        t.retry.load(SeqCst) >= 3000 / 7,
        "retries: {}",
        t.retry.load(SeqCst)
    );
    assert!(t.drops.load(SeqCst) >= 9, "drops: {}", t.drops.load(SeqCst));
    assert_eq!(k.broken_connections, t.drops.load(SeqCst));
    assert!(k.resent_broken_connection >= 1);
    // every frame written was either received and answered, or lost with a dropped connection
    assert_eq!(k.sent, t.frames.load(SeqCst) + k.resent_broken_connection);
    assert_eq!(r.hist.len(), 3000);
    assert_eq!(t.bad_digest.load(SeqCst), 0);
}

#[test]
fn abandon_codes_are_counted_not_acked() {
    let (addr, t) = fake(0, 10, 0);
    let target = addr.to_string();
    let c = cfg(&[
        "--target",
        &target,
        "--records",
        "1000",
        "--in-flight",
        "8",
        "--delete-ratio",
        "0.3",
        "--durable-delete-ratio",
        "0.5",
    ]);
    let r = run(&c).unwrap();
    assert_eq!(r.counters.abandoned, 100);
    assert_eq!(r.counters.acked, 900);
    assert_eq!(t.abandon.load(SeqCst), 100);
    assert_eq!(r.counters.sent, 1000);
    assert_eq!(r.counters.in_flight_at_end(), 0);
}

#[test]
fn records_spread_over_targets_and_threads() {
    let (a1, t1) = fake(0, 0, 0);
    let (a2, t2) = fake(0, 0, 0);
    let (s1, s2) = (a1.to_string(), a2.to_string());
    let c = cfg(&[
        "--target",
        &s1,
        "--target",
        &s2,
        "--threads",
        "2",
        "--records",
        "2001",
        "--compress",
    ]);
    let r = run(&c).unwrap();
    assert_eq!(r.counters.acked, 2001);
    assert_eq!(t1.ok.load(SeqCst) + t2.ok.load(SeqCst), 2001);
    assert!(t1.ok.load(SeqCst) > 0 && t2.ok.load(SeqCst) > 0);
}

#[test]
fn a_dead_target_is_skipped_for_a_live_one() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (live, t) = fake(0, 0, 0);
    let live = live.to_string();
    let c = cfg(&[
        "--target",
        &dead,
        "--target",
        &live,
        "--records",
        "500",
        "--connect-timeout-ms",
        "200",
    ]);
    let r = run(&c).unwrap();
    assert_eq!(r.counters.acked, 500);
    assert_eq!(t.ok.load(SeqCst), 500);
    assert!(r.counters.connect_failures >= 1);
}

#[test]
fn a_silent_peer_times_out_and_records_are_resent() {
    // The first connection reads and never answers; later ones ack.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let t = Arc::new(Tally::default());
    let tally = t.clone();
    std::thread::spawn(move || {
        let mut first = true;
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            if first {
                first = false;
                std::thread::spawn(move || {
                    let mut b = [0u8; 4096];
                    while matches!(s.read(&mut b), Ok(k) if k > 0) {}
                });
                continue;
            }
            let t = tally.clone();
            std::thread::spawn(move || serve(s, &t, 0, 0, 0));
        }
    });
    let c = cfg(&[
        "--target",
        &addr,
        "--records",
        "50",
        "--in-flight",
        "10",
        "--ack-timeout-ms",
        "300",
    ]);
    let r = run(&c).unwrap();
    assert_eq!(r.counters.acked, 50);
    assert_eq!(r.counters.resent_timeout, 10);
    assert_eq!(t.ok.load(SeqCst), 50);
}

#[test]
fn key_selection_is_deterministic_and_skewed() {
    let keys = |seed: &str, hot: &str| {
        let c = cfg(&[
            "--target",
            "127.0.0.1:1",
            "--records",
            "1",
            "--seed",
            seed,
            "--key-space",
            "1000",
            "--hot-keys",
            hot,
        ]);
        let mut s = Shard {
            templates: Templates::new(&c.shape),
            start: Instant::now(),
            unix_start_us: 0,
            digests: Vec::new(),
            budget: None,
            next_number: 0,
            stop_creating_ns: None,
            give_up_ns: None,
            resend: VecDeque::new(),
            outstanding: 0,
            c: Counters::default(),
            hist: hist::new_hist(),
            interval: hist::new_hist(),
            cfg: c,
        };
        (0..2000).map(|_| s.create(0, 0).key).collect::<Vec<u64>>()
    };
    assert_eq!(keys("5", "0"), keys("5", "0"));
    assert_ne!(keys("5", "0"), keys("6", "0"));
    let skewed = keys("5", "0.01");
    let hot = skewed.iter().filter(|k| **k < 10).count();
    assert!(
        (1700..=1900).contains(&hot),
        "90 % of records on the hottest 1 % of keys: {hot}"
    );
    assert!(skewed.iter().all(|k| *k < 1000));
}

#[test]
fn nonsense_flags_are_refused_by_name() {
    let err = |args: &[&str]| {
        let mut v = vec!["gen"];
        v.extend_from_slice(args);
        Config::from_args(&Cli::parse_from(v).a)
            .err()
            .unwrap()
            .to_string()
    };
    assert!(
        err(&["--target", "127.0.0.1:1", "--records", "5", "--rate", "-5"]).starts_with("--rate:")
    );
    assert!(err(&[
        "--target",
        "127.0.0.1:1",
        "--records",
        "5",
        "--connections",
        "0"
    ])
    .starts_with("--connections:"));
    assert!(err(&[
        "--target",
        "127.0.0.1:1",
        "--records",
        "5",
        "--in-flight",
        "0"
    ])
    .starts_with("--in-flight:"));
    assert!(err(&["--target", "127.0.0.1:1"]).starts_with("--records:"));
    assert!(err(&["--records", "5"]).starts_with("--target:"));
    assert!(err(&[
        "--target",
        "127.0.0.1:1",
        "--records",
        "5",
        "--delete-ratio",
        "1.5"
    ])
    .starts_with("--delete-ratio:"));
    let pem = err(&[
        "--target",
        "127.0.0.1:1",
        "--records",
        "5",
        "--tls-ca",
        "/nonexistent/ca.pem",
    ]);
    assert!(pem.contains("/nonexistent/ca.pem"), "{pem}");
}
