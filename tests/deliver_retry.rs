//! Retries on the real binary (the `retry` section): what is retried, what
//! is refused for good, what is answered 11 at once; `Retry-After` in both
//! forms; and a record being retried keeps its slot of
//! `max-concurrent-records` (no retry queue).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::*;

/// The answer to the n-th request (0-based): status and extra headers.
type Answers = Arc<dyn Fn(usize) -> (u16, Vec<(String, String)>) + Send + Sync>;

/// An HTTP/1.1 server that answers with headers (the shared sink cannot)
/// and notes when each request arrived.
struct Server {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Server {
    fn start(answers: Answers) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let seen = arrivals.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (seen, answers, count) = (seen.clone(), answers.clone(), count.clone());
                std::thread::spawn(move || serve(s, &seen, &answers, &count));
            }
        });
        Server { addr, arrivals }
    }

    fn requests(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }
}

fn serve(s: TcpStream, seen: &Mutex<Vec<Instant>>, answers: &Answers, count: &AtomicUsize) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    loop {
        if read_request(&mut r).is_none() {
            return;
        }
        seen.lock().unwrap().push(Instant::now());
        let (status, headers) = answers(count.fetch_add(1, Ordering::SeqCst));
        let mut resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n");
        for (k, v) in headers {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn config(addr: SocketAddr, retry: &str, service: &str) -> String {
    format!(
        "service:\n  address: 127.0.0.1\n  port: 0\n{service}\
destinations:\n  es:\n    urls: [\"http://{addr}/in\"]\n    protocol: HTTP_1_1\n{retry}\
routing:\n  mode: static-multi-destination\n  destinations: [es]\n\
logging:\n  ticker-interval: 0\n"
    )
}

#[test]
fn retried_statuses_are_retried_until_accepted() {
    // 503, 429, 408, then 200: three retries inside sluice, one ack 0.
    let server = Server::start(Arc::new(|n| {
        ([503, 429, 408].get(n).copied().unwrap_or(200), Vec::new())
    }));
    let retry =
        "    retry:\n      max-attempts: 4\n      initial-backoff: 1\n      max-backoff: 5\n";
    let sluice = Sluice::start("retry-ok", &config(server.addr, retry, ""));
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&record("r", 1));
    assert_eq!(c.acks(1), vec![(0, 1)]);
    assert_eq!(server.requests(), 4);
}

#[test]
fn the_lists_decide_retry_refusal_or_an_immediate_11() {
    // 409 is retried, 503 is dropped (refused for good: 4 without a
    // dead-letter file), 302 is in no list (11 at once).
    let server = Server::start(Arc::new(|n| {
        (
            [409, 200, 503, 302].get(n).copied().unwrap_or(200),
            Vec::new(),
        )
    }));
    let retry = "    retry:\n      initial-backoff: 1\n      max-backoff: 5\n      retry-status-codes: [409]\n      drop-status-codes: [\"5xx\"]\n";
    let sluice = Sluice::start("retry-lists", &config(server.addr, retry, ""));
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&record("r", 1));
    assert_eq!(c.acks(1), vec![(0, 1)]);
    assert_eq!(server.requests(), 2);
    c.send(&record("r", 2));
    assert_eq!(c.acks(1), vec![(4, 2)]);
    assert_eq!(server.requests(), 3);
    c.send(&record("r", 3));
    assert_eq!(c.acks(1), vec![(11, 3)]);
    assert_eq!(server.requests(), 4);
}

#[test]
fn retry_after_is_honoured_in_both_forms() {
    // A 429 asking for an HTTP-date 2 s ahead, then one asking 1 second:
    // the retries wait at least that (the backoff alone is at most 5 ms).
    let server = Server::start(Arc::new(|n| match n {
        0 => {
            let at = SystemTime::now() + Duration::from_secs(2);
            (
                429,
                vec![("retry-after".into(), httpdate::fmt_http_date(at))],
            )
        }
        1 => (429, vec![("retry-after".into(), "1".into())]),
        _ => (200, Vec::new()),
    }));
    let retry =
        "    retry:\n      max-attempts: 3\n      initial-backoff: 1\n      max-backoff: 5\n";
    let sluice = Sluice::start("retry-after", &config(server.addr, retry, ""));
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&record("r", 1));
    assert_eq!(c.acks(1), vec![(0, 1)]);
    let at = server.arrivals.lock().unwrap().clone();
    assert_eq!(at.len(), 3);
    // The date has whole seconds: 2 s ahead is at least 1 s away.
    assert!(
        at[1] - at[0] >= Duration::from_secs(1),
        "{:?}",
        at[1] - at[0]
    );
    assert!(
        at[2] - at[1] >= Duration::from_secs(1),
        "{:?}",
        at[2] - at[1]
    );
}

#[test]
fn a_retry_after_past_the_deadline_answers_11_without_waiting_for_it() {
    let server = Server::start(Arc::new(|_| {
        (503, vec![("retry-after".into(), "60".into())])
    }));
    let sluice = Sluice::start("retry-late", &config(server.addr, "", ""));
    let mut c = XdrClient::connect(sluice.xdr);
    let sent = Instant::now();
    c.send(&record("r", 1));
    assert_eq!(c.acks(1), vec![(11, 1)]);
    // Not retried, and answered before XDR's own 10 s timeout.
    assert_eq!(server.requests(), 1);
    assert!(sent.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_record_being_retried_keeps_its_in_flight_slot() {
    // Every answer is 503 asking for a 1 s wait: each record spends about
    // 2 s retrying. With room for 2 records, the third waits unread.
    let server = Server::start(Arc::new(|_| {
        (503, vec![("retry-after".into(), "1".into())])
    }));
    let service = "  max-concurrent-records: 2\n  manage:\n    address: 127.0.0.1\n    port: 0\n";
    let mut sluice = Sluice::start("retry-slot", &config(server.addr, "", service));
    let manage = sluice.manage();
    let mut c = XdrClient::connect(sluice.xdr);
    c.send(&(1..=4).flat_map(|g| record("r", g)).collect::<Vec<_>>());
    let mut saw_full = false;
    for _ in 0..200 {
        let in_flight = metric(manage, "sluice_records_in_flight");
        let retries = metric(manage, "sluice_destination_retries_total");
        assert!(in_flight <= 2, "{in_flight} records in flight");
        saw_full |= in_flight == 2 && retries > 0;
        if saw_full {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(saw_full, "never saw 2 records retrying");
    assert_eq!(c.acks(4), (1..=4).map(|g| (11, g)).collect::<Vec<_>>());
    assert_eq!(metric(manage, "sluice_records_in_flight"), 0);
}

/// Sends `n` records to a destination that answers 503 to everything, with
/// `retry`; every record is answered 11. Returns the requests the
/// destination got, and the retries made and refused.
fn against_a_failing_destination(name: &str, retry: &str, n: i64) -> (i64, i64, i64) {
    let server = Server::start(Arc::new(|_| (503, Vec::new())));
    let service = "  manage:\n    address: 127.0.0.1\n    port: 0\n";
    let mut sluice = Sluice::start(name, &config(server.addr, retry, service));
    let manage = sluice.manage();
    let mut c = XdrClient::connect(sluice.xdr);
    let n = u32::try_from(n).unwrap();
    c.send(&(1..=n).flat_map(|g| record("r", g)).collect::<Vec<_>>());
    assert_eq!(
        c.acks(n as usize),
        (1..=n).map(|g| (11, g)).collect::<Vec<_>>()
    );
    (
        server.requests() as i64,
        metric(manage, "sluice_destination_retries_total"),
        metric(manage, "sluice_destination_retries_denied_total"),
    )
}

/// `budget-percent` bounds the retries to a share of the requests (at most
/// twice the share: a second counts the busier of itself and the second
/// before), where `max-attempts` alone would triple the requests; the rest
/// are answered 11 at once.
#[test]
fn the_retry_budget_bounds_retries_to_a_share_of_requests() {
    let retry = "    retry:\n      max-attempts: 3\n      initial-backoff: 1\n      max-backoff: 2\n      budget-percent: 20\n      budget-min-per-second: 0\n";
    let n = 200;
    let (requests, retries, denied) = against_a_failing_destination("retry-budget", retry, n);
    assert_eq!(requests, n + retries);
    assert!(retries > 0, "no retry was made");
    assert!(
        retries <= n * 2 * 20 / 100,
        "{retries} retries for {n} requests"
    );
    // Every record ended either with its attempts used up (two retries) or
    // with a retry refused.
    assert!(denied >= n - retries / 2, "{denied} refused");
}

#[test]
fn a_zero_retry_budget_allows_no_retry() {
    let retry = "    retry:\n      max-attempts: 5\n      initial-backoff: 1\n      max-backoff: 2\n      budget-percent: 0\n      budget-min-per-second: 0\n";
    let (requests, retries, denied) = against_a_failing_destination("retry-budget-0", retry, 20);
    assert_eq!((requests, retries, denied), (20, 0, 20));
}

/// A destination that answers 200 to each request after `answer_after`,
/// over one HTTP/1.1 connection (the default), with `call-timeout` and no
/// retries; the server, sluice, its manage address and an XDR client.
fn one_slow_connection(
    name: &str,
    answer_after: Duration,
    call_timeout_ms: u64,
) -> (Server, Sluice, SocketAddr, XdrClient) {
    let server = Server::start(Arc::new(move |_| {
        std::thread::sleep(answer_after);
        (200, Vec::new())
    }));
    let dest = format!("    call-timeout: {call_timeout_ms}\n    retry:\n      max-attempts: 1\n");
    let service = "  manage:\n    address: 127.0.0.1\n    port: 0\n";
    let mut sluice = Sluice::start(name, &config(server.addr, &dest, service));
    let manage = sluice.manage();
    let c = XdrClient::connect(sluice.xdr);
    (server, sluice, manage, c)
}

#[test]
fn call_timeout_counts_from_when_the_request_has_a_connection() {
    // A destination that takes 250 ms per request: six records sent at once
    // queue behind each other for up to 1.25 s, but each call takes 250 ms,
    // well inside the 600 ms call timeout. Without retries, a timeout that
    // counted the queueing answered the last four 11 unsent.
    let (server, _sluice, manage, mut c) =
        one_slow_connection("call-timeout-queue", Duration::from_millis(250), 600);
    c.send(&(1..=6).flat_map(|g| record("r", g)).collect::<Vec<_>>());
    assert_eq!(c.acks(6), (1..=6).map(|g| (0, g)).collect::<Vec<_>>());
    assert_eq!(server.requests(), 6);
    assert_eq!(metric(manage, "sluice_destination_timeouts_total"), 0);
}

#[test]
fn a_request_waiting_for_a_connection_is_answered_11_at_its_deadline() {
    // A destination that never answers, a 3 s call timeout: the first
    // record holds the connection 3 s, the second the next 3 s, the third
    // until its deadline (8 s). The fourth never gets the connection: it
    // waits until its deadline and is answered 11 like the others, unsent.
    let (server, _sluice, manage, mut c) =
        one_slow_connection("slot-deadline", Duration::from_secs(30), 3000);
    let sent = Instant::now();
    c.send(&(1..=4).flat_map(|g| record("r", g)).collect::<Vec<_>>());
    assert_eq!(c.acks(4), (1..=4).map(|g| (11, g)).collect::<Vec<_>>());
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "acked after XDR's timeout"
    );
    assert_eq!(
        server.requests(),
        3,
        "records 1-3 get the connection in turn, the fourth never"
    );
    assert_eq!(metric(manage, "sluice_destination_timeouts_total"), 4);
}
