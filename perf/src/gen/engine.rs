//! The generator's engine: one glommio executor per `--threads`, each owning
//! a share of the connections and of the records. Per connection a writer
//! (renders due records into one buffer and writes it) and a reader (cuts
//! acks, matches them to the oldest outstanding record) share a queue of
//! outstanding records; a semaphore of `--in-flight` units is the window.
//! A broken or timed-out connection hands its outstanding records back to
//! the executor's resend queue, and the connection is opened again (trying
//! the next target).

use super::shape::{self, Kind, Templates};
use super::{Config, GenError};
use crate::hist::{self, Hist};
use crate::net::{self, Io};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::sync::Semaphore;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What one executor (or the whole run) counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Records created (each is acked, abandoned or still outstanding).
    pub records: u64,
    /// Frames written, resends included.
    pub sent: u64,
    pub bytes_sent: u64,
    pub acked: u64,
    pub resent_retry_code: u64,
    pub resent_broken_connection: u64,
    pub resent_timeout: u64,
    pub abandoned: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub broken_connections: u64,
    /// Acks that matched no outstanding request (a protocol error of the peer).
    pub unexpected_acks: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.records += o.records;
        self.sent += o.sent;
        self.bytes_sent += o.bytes_sent;
        self.acked += o.acked;
        self.resent_retry_code += o.resent_retry_code;
        self.resent_broken_connection += o.resent_broken_connection;
        self.resent_timeout += o.resent_timeout;
        self.abandoned += o.abandoned;
        self.connects += o.connects;
        self.connect_failures += o.connect_failures;
        self.broken_connections += o.broken_connections;
        self.unexpected_acks += o.unexpected_acks;
    }

    /// Records neither acked nor abandoned.
    pub fn in_flight_at_end(&self) -> u64 {
        self.records - self.acked - self.abandoned
    }

    pub fn resent(&self) -> u64 {
        self.resent_retry_code + self.resent_broken_connection + self.resent_timeout
    }
}

/// The result of a run.
pub struct Report {
    pub counters: Counters,
    pub hist: Hist,
    pub elapsed: Duration,
}

impl Report {
    pub fn text(&self) -> String {
        let c = &self.counters;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "sluice gen: {} records in {:.2} s ({:.0} acked/s): sent {} frames ({} bytes), acked {}, resent {} (retry code {}, broken connection {}, timeout {}), abandoned {}, un-acked at end {}; connects {}, connect failures {}, broken connections {}\n",
            c.records,
            secs,
            c.acked as f64 / secs,
            c.sent,
            c.bytes_sent,
            c.acked,
            c.resent(),
            c.resent_retry_code,
            c.resent_broken_connection,
            c.resent_timeout,
            c.abandoned,
            c.in_flight_at_end(),
            c.connects,
            c.connect_failures,
            c.broken_connections
        )
    }

    pub fn json(&self) -> serde_json::Value {
        let c = &self.counters;
        let secs = self.elapsed.as_secs_f64();
        serde_json::json!({
            "records": c.records,
            "sent": c.sent,
            "bytes_sent": c.bytes_sent,
            "acked": c.acked,
            "resent": {
                "total": c.resent(),
                "retry_code": c.resent_retry_code,
                "broken_connection": c.resent_broken_connection,
                "timeout": c.resent_timeout,
            },
            "abandoned": c.abandoned,
            "in_flight_at_end": c.in_flight_at_end(),
            "connects": c.connects,
            "connect_failures": c.connect_failures,
            "broken_connections": c.broken_connections,
            "unexpected_acks": c.unexpected_acks,
            "elapsed_s": secs,
            "acked_per_s": if secs > 0.0 { c.acked as f64 / secs } else { 0.0 },
            "latency_us": hist::json(&self.hist),
        })
    }
}

/// One record in flight.
#[derive(Clone, Copy, Debug)]
struct Rec {
    key: u64,
    gen: u32,
    kind: Kind,
    lut_ms: u64,
    ts_us: u64,
    /// When it was due (ns since the run's start): latency counts from here.
    due_ns: u64,
    /// When it was last written (ns since start): the ack timeout counts from here.
    sent_ns: u64,
    /// Not to be resent before this (ns since start).
    not_before_ns: u64,
}

/// One executor's state, shared by its connections' tasks.
struct Shard {
    cfg: Config,
    start: Instant,
    unix_start_us: u64,
    templates: Templates,
    digests: Vec<Option<[u8; 20]>>,
    /// Records this executor still creates (None: until the duration ends).
    budget: Option<u64>,
    /// Global record number of the next record: index, index+threads, …
    next_number: u64,
    stop_creating_ns: Option<u64>,
    give_up_ns: Option<u64>,
    resend: VecDeque<Rec>,
    outstanding: u64,
    c: Counters,
    hist: Hist,
    interval: Hist,
}

enum End {
    /// Every record of this executor is acked or abandoned.
    Done,
    /// The grace period after the end ran out with records outstanding.
    GaveUp,
}

#[derive(Debug, thiserror::Error)]
enum Broken {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("closed by the peer")]
    Closed,
    #[error("no ack within the ack timeout")]
    AckTimeout,
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

impl Shard {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn digest(&mut self, key: u64) -> [u8; 20] {
        if let Some(Some(d)) = self.digests.get(key as usize) {
            return *d;
        }
        let d = self.templates.digest(key);
        if let Some(slot) = self.digests.get_mut(key as usize) {
            *slot = Some(d);
        }
        d
    }

    fn may_create(&self, now: u64) -> bool {
        self.budget != Some(0) && self.stop_creating_ns.is_none_or(|end| now < end)
    }

    /// A new record, numbered globally so the key sequence depends only on --seed.
    fn create(&mut self, due_ns: u64, now: u64) -> Rec {
        let n = self.next_number;
        self.next_number += self.cfg.threads as u64;
        if let Some(b) = self.budget.as_mut() {
            *b -= 1;
        }
        let cfg = &self.cfg;
        let h = net::mix(cfg.seed.wrapping_mul(0x1000_0000_01B3) ^ n);
        let pick = net::unit(net::mix(h ^ 1));
        let hot = ((cfg.key_space as f64 * cfg.hot_keys) as u64).min(cfg.key_space);
        let key = if hot > 0 && hot < cfg.key_space {
            if pick < cfg.hot_share {
                h % hot
            } else {
                hot + h % (cfg.key_space - hot)
            }
        } else {
            h % cfg.key_space
        };
        let kind = if net::unit(net::mix(h ^ 2)) < cfg.delete_ratio {
            if net::unit(net::mix(h ^ 3)) < cfg.durable_ratio {
                Kind::DurableDelete
            } else {
                Kind::Delete
            }
        } else {
            Kind::Write
        };
        self.c.records += 1;
        self.outstanding += 1;
        let unix_us = self.unix_start_us + now / 1000;
        Rec {
            key,
            gen: 1 + (net::mix(h ^ 4) % 1000) as u32,
            kind,
            lut_ms: unix_us / 1000,
            ts_us: unix_us,
            due_ns,
            sent_ns: now,
            not_before_ns: 0,
        }
    }

    fn render(&mut self, rec: &Rec, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        let d = self.digest(rec.key);
        let t = self.templates.get(rec.kind);
        if self.cfg.compress {
            scratch.clear();
            t.render(scratch, rec.key, &d, rec.gen, rec.lut_ms, rec.ts_us);
            shape::compress(scratch, out);
        } else {
            t.render(out, rec.key, &d, rec.gen, rec.lut_ms, rec.ts_us);
        }
    }

    fn finished(&self) -> bool {
        self.outstanding == 0 && !self.may_create(self.now_ns())
    }
}

/// Runs the generator to the end and merges the executors' reports.
pub fn run(cfg: &Config) -> Result<Report, GenError> {
    let (tx, rx) = crossbeam_channel::unbounded::<Msg>();
    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..cfg.threads {
        let cfg = cfg.clone();
        let tx = tx.clone();
        let cpu = cfg.cpus.get(i).copied();
        let h = sluice_shards::rt::executor_builder(cpu, &format!("gen-{i}"))
            .spawn(move || async move { shard_main(cfg, i, tx).await })
            .map_err(|e| GenError::Executor {
                index: i,
                why: e.to_string(),
            })?;
        handles.push(h);
    }
    drop(tx);
    let mut total = Counters::default();
    let mut hist = hist::new_hist();
    let mut last: Vec<Counters> = vec![Counters::default(); cfg.threads];
    let mut interval = hist::new_hist();
    let mut finals = 0;
    let mut ticks = 0;
    let mut last_print = Instant::now();
    while finals < cfg.threads {
        match rx.recv() {
            Ok(Msg::Progress {
                shard,
                counters,
                interval: h,
            }) => {
                last[shard] = counters;
                let _ = interval.add(&h);
                ticks += 1;
                if ticks % (cfg.threads - finals).max(1) == 0 && cfg.progress {
                    let secs = last_print.elapsed().as_secs_f64().max(1e-3);
                    last_print = Instant::now();
                    let mut sum = Counters::default();
                    for c in &last {
                        sum.add(c);
                    }
                    eprintln!(
                        "gen: {:>9.0} acked/s  acked {:>10}  retried {:>7}  in flight {:>6}  abandoned {:>5}  p99 {:>9.3} ms",
                        interval.len() as f64 / secs,
                        sum.acked,
                        sum.resent(),
                        sum.in_flight_at_end(),
                        sum.abandoned,
                        if interval.is_empty() { 0.0 } else { interval.value_at_percentile(99.0) as f64 / 1000.0 },
                    );
                    interval.reset();
                }
            }
            Ok(Msg::Final { counters, hist: h }) => {
                finals += 1;
                total.add(&counters);
                let _ = hist.add(&h);
            }
            Err(_) => break,
        }
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(Report {
        counters: total,
        hist,
        elapsed: started.elapsed(),
    })
}

enum Msg {
    Progress {
        shard: usize,
        counters: Counters,
        interval: Hist,
    },
    Final {
        counters: Counters,
        hist: Hist,
    },
}

async fn shard_main(cfg: Config, index: usize, tx: crossbeam_channel::Sender<Msg>) {
    let threads = cfg.threads as u64;
    let budget = cfg
        .records
        .map(|n| n / threads + u64::from((index as u64) < n % threads));
    let start = Instant::now();
    let stop_creating_ns = cfg.duration.map(|d| d.as_nanos() as u64);
    let give_up_ns = stop_creating_ns.map(|s| s + cfg.grace.as_nanos() as u64);
    let digests = if cfg.key_space <= 1 << 20 {
        vec![None; cfg.key_space as usize]
    } else {
        Vec::new()
    };
    let shard = Rc::new(RefCell::new(Shard {
        templates: Templates::new(&cfg.shape),
        start,
        unix_start_us: net::unix_us(),
        digests,
        budget,
        next_number: index as u64,
        stop_creating_ns,
        give_up_ns,
        resend: VecDeque::new(),
        outstanding: 0,
        c: Counters::default(),
        hist: hist::new_hist(),
        interval: hist::new_hist(),
        cfg: cfg.clone(),
    }));
    // Connections of this executor: every (target, connection) pair whose number ≡ index.
    let total_conns = cfg.targets.len() as u64 * cfg.connections as u64;
    let mine: Vec<u64> = (0..total_conns)
        .filter(|n| n % threads == index as u64)
        .collect();
    let per_conn_rate = cfg
        .rate
        .map(|r| r / total_conns.min(mine.len() as u64 * threads).max(1) as f64);
    let mut tasks = Vec::new();
    if mine.is_empty() {
        // More threads than connections: this executor's share of records goes nowhere.
        shard.borrow_mut().budget = Some(0);
    }
    for n in mine {
        let s = shard.clone();
        tasks.push(glommio::spawn_local(connection(s, n, per_conn_rate)));
    }
    let ticker = {
        let s = shard.clone();
        let tx = tx.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_secs(1)).await;
                let mut st = s.borrow_mut();
                let interval = std::mem::replace(&mut st.interval, hist::new_hist());
                let _ = tx.send(Msg::Progress {
                    shard: index,
                    counters: st.c.clone(),
                    interval,
                });
            }
        })
    };
    for t in tasks {
        t.await;
    }
    drop(ticker);
    let st = shard.borrow();
    let _ = tx.send(Msg::Final {
        counters: st.c.clone(),
        hist: st.hist.clone(),
    });
}

/// Opens, runs and reopens one connection until its executor is done.
async fn connection(shard: Rc<RefCell<Shard>>, number: u64, rate: Option<f64>) {
    let cfg = shard.borrow().cfg.clone();
    let interval_ns = rate.map(|r| (1e9 / r) as u64);
    // The open-loop schedule of this connection survives reconnects.
    let schedule = Rc::new(RefCell::new(shard.borrow().now_ns()));
    let mut attempt = number;
    let mut backoff = Duration::from_millis(20);
    loop {
        if shard.borrow().finished() {
            return;
        }
        if let Some(g) = shard.borrow().give_up_ns {
            if shard.borrow().now_ns() > g {
                return;
            }
        }
        let (addr, host) = cfg.targets[(attempt % cfg.targets.len() as u64) as usize].clone();
        let io = match open(&cfg, addr, &host).await {
            Ok(io) => io,
            Err(e) => {
                tracing::debug!("gen: connect to {addr}: {e}");
                shard.borrow_mut().c.connect_failures += 1;
                attempt += 1;
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
                continue;
            }
        };
        backoff = Duration::from_millis(20);
        shard.borrow_mut().c.connects += 1;
        let (r, w) = futures_lite::io::split(io);
        let pending: Rc<RefCell<VecDeque<Rec>>> = Rc::new(RefCell::new(VecDeque::new()));
        let window = Rc::new(Semaphore::new(cfg.in_flight as u64));
        let writer = write_loop(
            shard.clone(),
            w,
            pending.clone(),
            window.clone(),
            schedule.clone(),
            interval_ns,
        );
        let reader = read_loop(shard.clone(), r, pending.clone(), window.clone());
        let end = futures_lite::future::or(writer, reader).await;
        // Whatever is still outstanding on this connection is resent elsewhere.
        let mut st = shard.borrow_mut();
        let now = st.now_ns();
        let timeout_ns = cfg.ack_timeout.as_nanos() as u64;
        for mut rec in pending.borrow_mut().drain(..) {
            if now.saturating_sub(rec.sent_ns) >= timeout_ns {
                st.c.resent_timeout += 1;
            } else {
                st.c.resent_broken_connection += 1;
            }
            rec.not_before_ns = 0;
            st.resend.push_back(rec);
        }
        match end {
            Ok(End::Done) | Ok(End::GaveUp) => return,
            Err(e) => {
                tracing::debug!("gen: connection {number} to {addr} broke: {e}");
                st.c.broken_connections += 1;
                attempt += 1;
            }
        }
    }
}

async fn open(cfg: &Config, addr: std::net::SocketAddr, host: &str) -> std::io::Result<Io> {
    let tcp = glommio::net::TcpStream::connect_timeout(addr, cfg.connect_timeout).await?;
    tcp.set_nodelay(true)?;
    match &cfg.tls {
        None => Ok(Io::Plain(tcp)),
        Some((tls, name)) => {
            let name = name.as_deref().unwrap_or(host);
            let server = rustls_pki_types::ServerName::try_from(name.to_string()).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("TLS name `{name}`: {e}"),
                )
            })?;
            let s = futures_rustls::TlsConnector::from(tls.clone())
                .connect(server, tcp)
                .await?;
            Ok(Io::Client(Box::new(s)))
        }
    }
}

const BATCH_BYTES: usize = 256 * 1024;

async fn write_loop(
    shard: Rc<RefCell<Shard>>,
    mut w: futures_lite::io::WriteHalf<Io>,
    pending: Rc<RefCell<VecDeque<Rec>>>,
    window: Rc<Semaphore>,
    schedule: Rc<RefCell<u64>>,
    interval_ns: Option<u64>,
) -> Result<End, Broken> {
    let mut buf = Vec::with_capacity(BATCH_BYTES + 64 * 1024);
    let mut scratch = Vec::new();
    loop {
        // The grace period bounds the run even when every record keeps
        // coming back with a retry code (a stalled destination): waiting for
        // the in-flight window must not outlast it.
        let give_up_ns = shard.borrow().give_up_ns;
        match give_up_ns {
            None => window.acquire(1).await.map_err(|_| Broken::Closed)?,
            Some(g) => {
                let left = g.saturating_sub(shard.borrow().now_ns());
                let timed_out = futures_lite::future::or(
                    async { window.acquire(1).await.map(|()| false) },
                    async {
                        glommio::timer::sleep(Duration::from_nanos(left)).await;
                        Ok(true)
                    },
                )
                .await
                .map_err(|_| Broken::Closed)?;
                if timed_out || shard.borrow().now_ns() > g {
                    return Ok(End::GaveUp);
                }
            }
        }
        let mut granted = 1 + window.available();
        if granted > 1 {
            let _ = window.try_acquire(granted - 1);
        }
        buf.clear();
        let mut wake_at = None;
        let mut n = 0u64;
        let sleep_ns = {
            let mut st = shard.borrow_mut();
            let now = st.now_ns();
            let mut pend = pending.borrow_mut();
            while granted > 0 && buf.len() < BATCH_BYTES {
                let rec = if st.resend.front().is_some_and(|r| r.not_before_ns <= now) {
                    st.resend.pop_front()
                } else if st.may_create(now) {
                    let mut next = schedule.borrow_mut();
                    match interval_ns {
                        None => Some(st.create(now, now)),
                        Some(iv) if *next <= now => {
                            let due = *next;
                            *next += iv;
                            Some(st.create(due, now))
                        }
                        Some(_) => {
                            wake_at = Some(*next);
                            None
                        }
                    }
                } else {
                    None
                };
                let Some(mut rec) = rec else { break };
                rec.sent_ns = now;
                st.render(&rec, &mut buf, &mut scratch);
                pend.push_back(rec);
                granted -= 1;
                n += 1;
            }
            if granted > 0 {
                window.signal(granted);
            }
            st.c.sent += n;
            st.c.bytes_sent += buf.len() as u64;
            if n == 0 {
                if st.finished() {
                    return Ok(End::Done);
                }
                if st.give_up_ns.is_some_and(|g| now > g) {
                    return Ok(End::GaveUp);
                }
                if let Some(r) = st.resend.front() {
                    wake_at =
                        Some(wake_at.map_or(r.not_before_ns, |w: u64| w.min(r.not_before_ns)));
                }
                let sleep_ns: u64 = wake_at.map_or(1_000_000, |w| {
                    w.saturating_sub(now).clamp(10_000, 1_000_000)
                });
                Some(sleep_ns)
            } else {
                None
            }
        };
        if let Some(ns) = sleep_ns {
            glommio::timer::sleep(Duration::from_nanos(ns)).await;
            continue;
        }
        w.write_all(&buf).await.map_err(Broken::Io)?;
        w.flush().await.map_err(Broken::Io)?;
    }
}

async fn read_loop(
    shard: Rc<RefCell<Shard>>,
    mut r: futures_lite::io::ReadHalf<Io>,
    pending: Rc<RefCell<VecDeque<Rec>>>,
    window: Rc<Semaphore>,
) -> Result<End, Broken> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    let (timeout_ns, retry_ns) = {
        let st = shard.borrow();
        (
            st.cfg.ack_timeout.as_nanos() as u64,
            st.cfg.retry_delay.as_nanos() as u64,
        )
    };
    loop {
        let read = async { Some(r.read(&mut buf[filled..]).await) };
        let tick = async {
            glommio::timer::sleep(Duration::from_millis(200)).await;
            None
        };
        match futures_lite::future::or(read, tick).await {
            None => {
                let st = shard.borrow();
                let now = st.now_ns();
                if pending
                    .borrow()
                    .front()
                    .is_some_and(|r| now.saturating_sub(r.sent_ns) >= timeout_ns)
                {
                    return Err(Broken::AckTimeout);
                }
                continue;
            }
            Some(Ok(0)) => return Err(Broken::Closed),
            Some(Ok(n)) => filled += n,
            Some(Err(e)) => return Err(Broken::Io(e)),
        }
        let mut at = 0;
        let mut acks = 0u64;
        {
            let mut st = shard.borrow_mut();
            let now = st.now_ns();
            let mut pend = pending.borrow_mut();
            while filled - at >= 8 {
                let h = &buf[at..at + 8];
                if h[0] != 2 || h[1] != 3 {
                    return Err(Broken::Protocol(
                        "an ack that is not a version-2 type-3 message",
                    ));
                }
                let len = u64::from_be_bytes([0, 0, h[2], h[3], h[4], h[5], h[6], h[7]]) as usize;
                if len < 22 || len > buf.len() - 8 {
                    return Err(Broken::Protocol(
                        "an ack whose length is not a message header",
                    ));
                }
                if filled - at < 8 + len {
                    break;
                }
                let result = buf[at + 8 + 5];
                at += 8 + len;
                let Some(mut rec) = pend.pop_front() else {
                    st.c.unexpected_acks += 1;
                    return Err(Broken::Protocol("an ack with no request outstanding"));
                };
                acks += 1;
                match result {
                    0 | 2 => {
                        st.c.acked += 1;
                        st.outstanding -= 1;
                        let us = now.saturating_sub(rec.due_ns) / 1000;
                        st.hist.saturating_record(us.max(1));
                        st.interval.saturating_record(us.max(1));
                    }
                    8 | 9 | 11 | 14 | 18 | 80 => {
                        st.c.resent_retry_code += 1;
                        rec.not_before_ns = now + retry_ns;
                        st.resend.push_back(rec);
                    }
                    _ => {
                        st.c.abandoned += 1;
                        st.outstanding -= 1;
                    }
                }
            }
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        if acks > 0 {
            window.signal(acks);
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
