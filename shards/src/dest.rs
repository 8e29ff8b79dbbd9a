//! A destination's pool on one shard: its endpoints (URLs), their HTTP/2 or
//! HTTP/1.1 connections, endpoint choice (least in flight among healthy
//! endpoints), timeouts, gzip, and retries with backoff inside the record's
//! deadline. Nothing here is shared with another shard.
//!
//! Queueing: every request holds one of its endpoint's slots while it is
//! on the wire — one per HTTP/1.1 connection, [`H2_STREAMS_PER_CONNECTION`]
//! per HTTP/2 connection — and waits in the endpoint's queue for one
//! otherwise. So h2 never holds more streams than that (a stalled
//! destination cannot grow its buffers), and a request that would make the
//! queue longer than `max-request-queued-per-endpoint` is not queued: it
//! goes to another endpoint, or its attempt fails (retried, then 11).
//! `call-timeout` counts from when the request has its slot: a burst that
//! only queues behind busy connections is not timed out (and retried) for
//! the queueing; the wait itself ends at the record's deadline at the
//! latest.
//!
//! Health: an endpoint whose connection attempt fails is marked down for a
//! backoff that doubles per consecutive failure (100 ms up to 5 s); a
//! success marks it up. When every endpoint of a destination is down, its
//! records fail at once (answered 11) instead of waiting.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::sync::Semaphore;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};

use crate::plan::{DestinationPlan, EndpointPlan, HttpVersion, RetryBudgetPlan, StatusClass};
use crate::rt;
use crate::stats::{DestinationStats, LocalCounter, ShardStats};
use crate::timeouts::Timeouts;

const DOWN_MIN: Duration = Duration::from_millis(100);
const DOWN_MAX: Duration = Duration::from_secs(5);
/// Streams one HTTP/2 connection carries at a time; more wait in the
/// endpoint's queue (servers commonly allow 100–1024 concurrent streams; h2
/// keeps the excess over the server's limit in its own pending queue).
pub const H2_STREAMS_PER_CONNECTION: usize = 256;
/// Bytes an HTTP/2 connection gathers before it writes (it also writes at
/// the end of each of its task's turns): four DATA frames of the default
/// 16 KiB.
const H2_WRITE_BUFFER: usize = 64 * 1024;

/// Why one attempt failed; decides whether it is retried.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("endpoint {url} answered status {status}")]
    Status {
        url: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("request to {url} timed out after {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("no connection to {url} was free before the record's deadline (waited {waited:?})")]
    NoSlot { url: String, waited: Duration },
    #[error("cannot connect to {url}: {why}")]
    Connect { url: String, why: String },
    #[error("request to {url} failed: {why}")]
    Request { url: String, why: String },
    #[error("every endpoint of destination {name} is down")]
    AllDown { name: String },
    #[error("every endpoint of destination {name} has {max} requests queued (max-request-queued-per-endpoint)")]
    QueueFull { name: String, max: usize },
}

/// How one body's delivery to one destination ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An endpoint answered a status in `http-success-status-codes`.
    Delivered,
    /// Not accepted before retries or the deadline ran out (timeouts,
    /// connection errors, retried or unlisted statuses, every endpoint
    /// down): XDR must resend it (ack 11).
    Failed,
    /// Refused for good: a status in the drop list (`drop-status-codes`),
    /// so resending the same record cannot help. It becomes a dead letter.
    Rejected { status: u16, url: String },
}

/// A destination's connections and state on one shard.
pub struct Pool {
    plan: DestinationPlan,
    key: String,
    endpoints: Vec<Endpoint>,
    stats: Arc<DestinationStats>,
    rng: Cell<u64>,
    /// Where the next endpoint choice starts: ties in flight go round robin.
    turn: Cell<usize>,
    /// Request sent (its slot taken) → answered or failed, microseconds.
    latency: RefCell<hdrhistogram::Histogram<u64>>,
    budget: RetryBudget,
    /// The requests' call timeouts (one timer for the pool, not one each).
    timeouts: Timeouts,
    /// The deadlines of requests waiting for a slot: their records'
    /// deadlines, which come in arrival order as the queue needs.
    slot_waits: Timeouts,
}

/// The retry budget's count (`RetryBudgetPlan`), in windows of one second.
/// The clock is read once per [`RetryBudget::CLOCK_EVERY`] requests and at
/// each retry looked at, not per request.
#[derive(Default)]
struct RetryBudget {
    window: Cell<Option<Instant>>,
    /// Bodies delivered (first attempts) since the window started.
    requests: Cell<u64>,
    /// Bodies delivered in the window before, if it ended less than a
    /// second ago.
    previous: Cell<u64>,
    retries: Cell<u64>,
}

impl RetryBudget {
    const WINDOW: Duration = Duration::from_secs(1);
    /// Requests between two looks at the clock: a burst of requests that
    /// fail together (all sent before the first answer) still counts
    /// within this many.
    const CLOCK_EVERY: u64 = 64;

    fn request(&self) {
        let n = self.requests.get() + 1;
        self.requests.set(n);
        if n.is_multiple_of(Self::CLOCK_EVERY) {
            self.roll(Instant::now());
        }
    }

    /// Starts a new window if the current one is over. Requests counted
    /// before a window that ended more than a second ago are of unknown
    /// age: they are dropped (the floor covers a slow destination).
    fn roll(&self, now: Instant) {
        let age = self.window.get().map(|s| now.saturating_duration_since(s));
        if age.is_some_and(|a| a < Self::WINDOW) {
            return;
        }
        let adjacent = age.is_some_and(|a| a < 2 * Self::WINDOW);
        self.previous
            .set(if adjacent { self.requests.get() } else { 0 });
        self.requests.set(0);
        self.retries.set(0);
        self.window.set(Some(now));
    }

    /// Takes one retry from the budget, if there is one left.
    fn take(&self, plan: RetryBudgetPlan, now: Instant) -> bool {
        self.roll(now);
        let base = self.requests.get().max(self.previous.get());
        let allowed = u64::from(plan.min_per_second) + base * u64::from(plan.percent) / 100;
        if self.retries.get() >= allowed {
            return false;
        }
        self.retries.set(self.retries.get() + 1);
        true
    }
}

struct Endpoint {
    plan: EndpointPlan,
    uri: http::Uri,
    host_header: HeaderValue,
    /// The request line and headers, built once per (content type, gzip)
    /// and cloned per request.
    heads: RefCell<Vec<Head>>,
    in_flight: Cell<usize>,
    /// Requests waiting for a slot.
    queued: Cell<usize>,
    down_until: Cell<Option<Instant>>,
    failures: Cell<u32>,
    /// Consecutive health-check results (successes, failures).
    checks_ok: Cell<u32>,
    checks_failed: Cell<u32>,
    /// HTTP/2: multiplexed connections, up to max-connections-per-endpoint.
    h2: RefCell<Vec<H2Conn>>,
    /// HTTP/1.1: idle keep-alive connections.
    h1_idle: RefCell<Vec<H1Conn>>,
    /// One permit per request on the wire: one per HTTP/1.1 connection,
    /// `H2_STREAMS_PER_CONNECTION` per HTTP/2 connection.
    slots: Rc<Semaphore>,
    /// Serialises HTTP/2 connection set-up.
    connect_lock: Rc<Semaphore>,
}

struct Head {
    content_type: &'static str,
    gzip: bool,
    parts: http::request::Parts,
}

#[derive(Clone)]
struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
    born: Instant,
    broken: Rc<Cell<bool>>,
    /// The bodies this connection is sending, so that its writes reference
    /// them instead of copying (plain TCP only).
    bodies: Option<rt::Bodies>,
}

struct H1Conn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    born: Instant,
}

impl Pool {
    /// The identity of a destination's settings: a reload keeps the pool of a
    /// destination whose key did not change.
    pub fn key_of(d: &DestinationPlan) -> String {
        // Debug of the settings covers every field but the TLS config, which
        // stands in as `tls_identity` (its files and their contents): a
        // reload that leaves the certificates alone keeps the pool.
        let mut settings = d.clone();
        settings.tls = None;
        format!("{settings:?}")
    }

    pub fn new(plan: DestinationPlan, key: String, shard: &ShardStats) -> Self {
        let urls: Vec<String> = plan.endpoints.iter().map(|e| e.url.clone()).collect();
        let stats = shard.destination(&plan.name, &urls);
        let conns = plan.max_connections_per_endpoint.max(1);
        let slots = match plan.version {
            HttpVersion::Http1 => conns,
            HttpVersion::Http2 => conns.saturating_mul(H2_STREAMS_PER_CONNECTION),
        };
        let endpoints = plan
            .endpoints
            .iter()
            .map(|e| {
                let scheme = if e.https { "https" } else { "http" };
                let authority = if e.host.contains(':') {
                    format!("[{}]:{}", e.host, e.port)
                } else {
                    format!("{}:{}", e.host, e.port)
                };
                let uri = format!("{scheme}://{authority}{}", e.path_and_query)
                    .parse()
                    .unwrap_or_else(|_| http::Uri::from_static("/"));
                Endpoint {
                    plan: e.clone(),
                    uri,
                    host_header: HeaderValue::from_str(&authority)
                        .unwrap_or(HeaderValue::from_static("localhost")),
                    heads: RefCell::new(Vec::new()),
                    in_flight: Cell::new(0),
                    queued: Cell::new(0),
                    down_until: Cell::new(None),
                    failures: Cell::new(0),
                    checks_ok: Cell::new(0),
                    checks_failed: Cell::new(0),
                    h2: RefCell::new(Vec::new()),
                    h1_idle: RefCell::new(Vec::new()),
                    slots: Rc::new(Semaphore::new(slots as u64)),
                    connect_lock: Rc::new(Semaphore::new(1)),
                }
            })
            .collect();
        for e in &stats.endpoints {
            e.healthy.store(1, Relaxed);
        }
        Pool {
            plan,
            key,
            endpoints,
            stats,
            latency: RefCell::new(crate::stats::micros_histogram()),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (Instant::now().elapsed().as_nanos() as u64)),
            turn: Cell::new(0),
            budget: RetryBudget::default(),
            timeouts: Timeouts::default(),
            slot_waits: Timeouts::default(),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// Runs the destination's `health-check` (if any) on this shard for as
    /// long as the pool lives: `unhealthy-threshold` failures in a row take
    /// an endpoint out of the rotation until `healthy-threshold` successes
    /// in a row bring it back.
    pub fn start_health_checks(self: &Rc<Self>) {
        let Some(hc) = self.plan.health_check.clone() else {
            return;
        };
        let weak = Rc::downgrade(self);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(hc.interval.max(Duration::from_millis(10))).await;
                let Some(pool) = weak.upgrade() else {
                    return;
                };
                for i in 0..pool.endpoints.len() {
                    let ok = pool.check(i, &hc).await;
                    pool.count_check(i, ok, &hc);
                }
            }
        })
        .detach();
    }

    async fn check(&self, i: usize, hc: &crate::plan::HealthCheckPlan) -> bool {
        let ep = &self.endpoints[i];
        let mut req = self.request(ep, &Bytes::new(), false, "text/plain");
        *req.method_mut() = hc.method.clone();
        let uri = format!(
            "{}://{}{}",
            ep.uri.scheme_str().unwrap_or("http"),
            ep.host_header.to_str().unwrap_or(""),
            hc.path
        );
        let Ok(uri) = uri.parse::<http::Uri>() else {
            return false;
        };
        *req.uri_mut() = match self.plan.version {
            HttpVersion::Http2 => uri,
            HttpVersion::Http1 => uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .parse()
                .unwrap_or_else(|_| http::Uri::from_static("/")),
        };
        req.headers_mut().remove(http::header::CONTENT_TYPE);
        let call = self.send(i, req, Bytes::new());
        let answer = futures_lite::future::or(async { Some(call.await) }, async {
            glommio::timer::sleep(hc.call_timeout.max(Duration::from_millis(1))).await;
            None
        })
        .await;
        matches!(answer, Some(Ok((status, _))) if self.plan.success.contains(status))
    }

    fn count_check(&self, i: usize, ok: bool, hc: &crate::plan::HealthCheckPlan) {
        let ep = &self.endpoints[i];
        let stats = self.stats.endpoints.get(i);
        if ok {
            ep.checks_failed.set(0);
            ep.checks_ok.set(ep.checks_ok.get().saturating_add(1));
            if ep.checks_ok.get() >= hc.healthy_threshold.max(1) && ep.down_until.get().is_some() {
                ep.down_until.set(None);
                ep.failures.set(0);
                tracing::info!(destination = %self.plan.name, url = %ep.plan.url, "endpoint healthy again");
                if let Some(s) = stats {
                    s.healthy.store(1, Relaxed);
                }
            }
        } else {
            ep.checks_ok.set(0);
            ep.checks_failed
                .set(ep.checks_failed.get().saturating_add(1));
            if ep.checks_failed.get() >= hc.unhealthy_threshold.max(1) {
                // Out until the checks pass again (an hour is "until then").
                ep.down_until
                    .set(Some(Instant::now() + Duration::from_secs(3600)));
                tracing::warn!(destination = %self.plan.name, url = %ep.plan.url, "endpoint failed its health checks");
                if let Some(s) = stats {
                    s.healthy.store(0, Relaxed);
                }
            }
        }
    }

    /// A copy of the request latency histogram.
    pub fn latency(&self) -> hdrhistogram::Histogram<u64> {
        self.latency.borrow().clone()
    }

    /// Delivers one body, retrying retryable failures with exponential
    /// backoff and full jitter while the record's deadline allows. The
    /// retries run inside this call, so they hold the caller's in-flight
    /// permit: there is no retry queue to grow.
    pub async fn deliver(
        &self,
        body: Bytes,
        content_type: &'static str,
        deadline: Instant,
    ) -> Outcome {
        let (body, gzip) = self.compress(body);
        self.stats.bytes_out.local_add(body.len() as u64);
        let retry = &self.plan.retry;
        let attempts = retry.max_attempts.max(1);
        self.budget.request();
        for attempt in 0..attempts {
            let err = match self.attempt(&body, gzip, content_type, deadline).await {
                Ok(()) => {
                    self.stats.delivered.local_add(1);
                    return Outcome::Delivered;
                }
                Err(e) => e,
            };
            tracing::debug!(destination = %self.plan.name, attempt, error = %err, "delivery attempt failed");
            let retryable = match &err {
                AttemptError::Status { status, url, .. } => match retry.classify(*status) {
                    StatusClass::Retry => true,
                    StatusClass::Drop => {
                        self.stats.rejected.fetch_add(1, Relaxed);
                        return Outcome::Rejected {
                            status: *status,
                            url: url.clone(),
                        };
                    }
                    StatusClass::Other => false,
                },
                AttemptError::AllDown { .. } => false,
                _ => true,
            };
            if !retryable || attempt + 1 == attempts {
                break;
            }
            let cap = retry
                .initial_backoff
                .saturating_mul(1u32 << attempt.min(16))
                .min(retry.max_backoff);
            let mut wait = self.jitter(cap);
            if let AttemptError::Status {
                retry_after: Some(ra),
                ..
            } = err
            {
                wait = wait.max(ra);
            }
            let now = Instant::now();
            if now + wait >= deadline {
                break;
            }
            if !self.budget.take(retry.budget, now) {
                // XDR resends the record later: the destination is not sent
                // more than the budget allows on top of its traffic.
                self.stats.retries_denied.local_add(1);
                break;
            }
            self.stats.retries.fetch_add(1, Relaxed);
            glommio::timer::sleep(wait).await;
        }
        self.stats.failed.fetch_add(1, Relaxed);
        Outcome::Failed
    }

    fn compress(&self, body: Bytes) -> (Bytes, bool) {
        match self.plan.gzip_threshold {
            Some(t) if body.len() >= t => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 2 + 32),
                    flate2::Compression::fast(),
                );
                match enc.write_all(&body).and_then(|()| enc.finish()) {
                    Ok(v) => (Bytes::from(v), true),
                    Err(_) => (body, false),
                }
            }
            _ => (body, false),
        }
    }

    fn jitter(&self, cap: Duration) -> Duration {
        // xorshift64: full jitter needs spread, not cryptographic quality.
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        let nanos = cap.as_nanos() as u64;
        if nanos == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(x % nanos)
        }
    }

    /// The `Retry-After` of an answer that is not a success (a success is
    /// not retried: its headers are not searched, a hash lookup per record).
    fn retry_after(&self, status: u16, headers: &http::HeaderMap) -> Option<Duration> {
        if self.plan.success.contains(status) {
            None
        } else {
            retry_after(headers)
        }
    }

    /// Least in flight among endpoints not marked down whose queue has room
    /// (a free slot, or fewer than `max-request-queued-per-endpoint`
    /// requests waiting for one); ties go round robin. Without the rotation
    /// a lone record's every attempt went to the first endpoint (0 in flight
    /// everywhere after each timeout), so a stalled first endpoint failed it
    /// forever while a healthy second one idled.
    fn pick(&self) -> Result<usize, AttemptError> {
        // The clock is read only when some endpoint is marked down.
        let now = std::cell::OnceCell::new();
        let max_queued = self.plan.max_requests_queued_per_endpoint;
        let n = self.endpoints.len();
        let start = self.turn.get();
        self.turn.set(start.wrapping_add(1));
        let mut up = 0;
        let best = (0..n)
            .map(|k| (start + k) % n)
            .map(|i| (i, &self.endpoints[i]))
            .filter(|(_, e)| {
                e.down_until
                    .get()
                    .is_none_or(|t| t <= *now.get_or_init(Instant::now))
            })
            .inspect(|_| up += 1)
            .filter(|(_, e)| e.slots.available() > 0 || e.queued.get() < max_queued)
            .min_by_key(|(_, e)| e.in_flight.get());
        match best {
            Some((i, _)) => Ok(i),
            None if up == 0 => Err(AttemptError::AllDown {
                name: self.plan.name.clone(),
            }),
            None => {
                self.stats.queue_full.fetch_add(1, Relaxed);
                Err(AttemptError::QueueFull {
                    name: self.plan.name.clone(),
                    max: max_queued,
                })
            }
        }
    }

    /// Sends one request on endpoint `i`, which holds one of its slots.
    async fn send(
        &self,
        i: usize,
        req: Request<()>,
        body: Bytes,
    ) -> Result<(u16, Option<Duration>), AttemptError> {
        // Boxed once the slot is taken: a record waiting in the queue (all
        // but a connection's streams when the destination is slow, thousands
        // of them) then holds a future without the protocol's state: 0.5 KiB
        // less in the future, 6.6 -> 5.8 KiB of RSS per held record measured
        // under a stopped sink. One small allocation per request pays it.
        match self.plan.version {
            HttpVersion::Http2 => Box::pin(self.send_h2(i, req, body)).await,
            HttpVersion::Http1 => Box::pin(self.send_h1(i, req, body)).await,
        }
    }

    /// Waits in endpoint `i`'s queue for one of its slots, until the
    /// record's `deadline` at the latest.
    async fn wait_for_slot(
        &self,
        i: usize,
        deadline: Instant,
    ) -> Result<glommio::sync::Permit<'_>, AttemptError> {
        let ep = &self.endpoints[i];
        ep.queued.set(ep.queued.get() + 1);
        let _unqueue = Unqueue(&ep.queued);
        let since = Instant::now();
        let waited =
            futures_lite::future::or(async { Some(ep.slots.acquire_permit(1).await) }, async {
                self.slot_waits
                    .start(since, deadline.saturating_duration_since(since))
                    .await;
                None
            })
            .await;
        match waited {
            Some(Ok(permit)) => Ok(permit),
            Some(Err(_)) => Err(AttemptError::Connect {
                url: ep.plan.url.clone(),
                why: "pool closed".into(),
            }),
            None => {
                self.stats.timeouts.fetch_add(1, Relaxed);
                Err(AttemptError::NoSlot {
                    url: ep.plan.url.clone(),
                    waited: since.elapsed(),
                })
            }
        }
    }

    async fn attempt(
        &self,
        body: &Bytes,
        gzip: bool,
        content_type: &'static str,
        deadline: Instant,
    ) -> Result<(), AttemptError> {
        let i = self.pick()?;
        let ep = &self.endpoints[i];
        let ep_stats = self.stats.endpoints.get(i);
        ep.in_flight.set(ep.in_flight.get() + 1);
        if let Some(s) = ep_stats {
            s.in_flight.local_add(1);
        }
        let result = self.call(i, body, gzip, content_type, deadline).await;
        ep.in_flight.set(ep.in_flight.get() - 1);
        if let Some(s) = ep_stats {
            s.in_flight.local_sub(1);
        }
        let (status, retry_after) = result?;
        self.stats.count_status(status);
        if self.plan.success.contains(status) {
            Ok(())
        } else {
            Err(AttemptError::Status {
                url: ep.plan.url.clone(),
                status,
                retry_after,
            })
        }
    }

    /// One request on endpoint `i`: a slot (waiting in the endpoint's queue
    /// when none is free), then the request raced against `call-timeout`
    /// counted from then, cut short by the record's deadline.
    async fn call(
        &self,
        i: usize,
        body: &Bytes,
        gzip: bool,
        content_type: &'static str,
        deadline: Instant,
    ) -> Result<(u16, Option<Duration>), AttemptError> {
        let ep = &self.endpoints[i];
        let _slot = match ep.slots.try_acquire_permit(1) {
            Ok(permit) => permit,
            Err(_) => self.wait_for_slot(i, deadline).await?,
        };
        let req = self.request(ep, body, gzip, content_type);
        let sent = Instant::now();
        let timeout = self
            .plan
            .call_timeout
            .min(deadline.saturating_duration_since(sent));
        // The send future is built inside the `or` (not bound first), so the
        // record's task holds it once.
        let result = futures_lite::future::or(
            async { Some(self.send(i, req, body.clone()).await) },
            async {
                self.timeouts.start(sent, timeout).await;
                None
            },
        )
        .await;
        crate::stats::record_since(&mut self.latency.borrow_mut(), sent);
        match result {
            None => {
                self.stats.timeouts.fetch_add(1, Relaxed);
                Err(AttemptError::Timeout {
                    url: ep.plan.url.clone(),
                    after: timeout,
                })
            }
            Some(Err(e)) => {
                if !matches!(e, AttemptError::Connect { .. }) {
                    self.stats.errors.fetch_add(1, Relaxed);
                }
                Err(e)
            }
            Some(Ok(answer)) => Ok(answer),
        }
    }

    /// The request for one body: a clone of the endpoint's head for this
    /// content type (built on first use), plus the HTTP/1.1 length.
    fn request(
        &self,
        ep: &Endpoint,
        body: &Bytes,
        gzip: bool,
        content_type: &'static str,
    ) -> Request<()> {
        let parts = {
            let mut heads = ep.heads.borrow_mut();
            // Content types are the encoders' constants: compare pointers.
            let found = heads
                .iter()
                .find(|h| h.gzip == gzip && std::ptr::eq(h.content_type, content_type));
            match found {
                Some(h) => h.parts.clone(),
                None => {
                    let parts = self.head(ep, gzip, content_type);
                    heads.push(Head {
                        content_type,
                        gzip,
                        parts: parts.clone(),
                    });
                    parts
                }
            }
        };
        let mut req = Request::from_parts(parts, ());
        if self.plan.version == HttpVersion::Http1 {
            req.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        req
    }

    /// Method, URI and headers of every request of `ep` with this content
    /// type and encoding.
    fn head(&self, ep: &Endpoint, gzip: bool, content_type: &'static str) -> http::request::Parts {
        let mut req = Request::new(());
        *req.method_mut() = self.plan.method.clone();
        *req.uri_mut() = match self.plan.version {
            HttpVersion::Http2 => ep.uri.clone(),
            HttpVersion::Http1 => ep
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .parse()
                .unwrap_or_else(|_| http::Uri::from_static("/")),
        };
        let h = req.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        if gzip {
            h.insert(
                http::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            );
        }
        if self.plan.version == HttpVersion::Http1 {
            h.insert(http::header::HOST, ep.host_header.clone());
        }
        for (k, v) in &self.plan.headers {
            h.insert(k.clone(), v.clone());
        }
        req.into_parts().0
    }

    async fn send_h2(
        &self,
        i: usize,
        req: Request<()>,
        body: Bytes,
    ) -> Result<(u16, Option<Duration>), AttemptError> {
        let ep = &self.endpoints[i];
        let url = || ep.plan.url.clone();
        // The connection's handles are this request's own (a clone): h2's
        // `SendRequest` is cloned once per request, not twice (a clone and
        // its drop lock h2's state: 400 instructions per record). No
        // `ready()` on it: a clone has no stream of its own pending open, and
        // for such a handle h2's poll_ready only checks (under its lock) what
        // send_request checks again (connection error, stream ids left).
        let H2Conn {
            mut send,
            broken,
            bodies,
            ..
        } = self.h2_conn(i).await?;
        let fail = |e: h2::Error| AttemptError::Request {
            url: url(),
            why: e.to_string(),
        };
        let empty = body.is_empty();
        let (resp, mut stream) = send.send_request(req, empty).map_err(|e| {
            broken.set(true);
            fail(e)
        })?;
        // Registered until this request ends, however it ends.
        let _sending = bodies.as_ref().map(|b| Sending::new(b, &body));
        if !empty {
            stream.send_data(body, true).map_err(fail)?;
        }
        let resp = resp.await.map_err(fail)?;
        let status = resp.status().as_u16();
        let retry_after = self.retry_after(status, resp.headers());
        let mut rbody = resp.into_body();
        while let Some(chunk) = rbody.data().await {
            let chunk = chunk.map_err(fail)?;
            let _ = rbody.flow_control().release_capacity(chunk.len());
        }
        Ok((status, retry_after))
    }

    /// A usable HTTP/2 connection: the least-loaded existing one while the
    /// endpoint is at its connection limit, else a new one.
    async fn h2_conn(&self, i: usize) -> Result<H2Conn, AttemptError> {
        let ep = &self.endpoints[i];
        let max = self.plan.max_connections_per_endpoint.max(1);
        loop {
            {
                let ttl = self.plan.connection_ttl;
                let mut conns = ep.h2.borrow_mut();
                conns.retain(|c| !c.broken.get() && ttl.is_none_or(|t| c.born.elapsed() < t));
                if conns.len() >= max || (!conns.is_empty() && ep.connect_lock.available() == 0) {
                    // Round-robin: rotate so streams spread over connections.
                    conns.rotate_left(1);
                    if let Some(c) = conns.first() {
                        return Ok(c.clone());
                    }
                }
            }
            let Ok(_lock) = ep.connect_lock.acquire_permit(1).await else {
                return Err(AttemptError::Connect {
                    url: ep.plan.url.clone(),
                    why: "pool closed".into(),
                });
            };
            if ep.h2.borrow().len() >= max {
                continue;
            }
            // Boxed: the connect path (TCP, TLS, h2 handshake) is rare, and
            // inline it would make every record's task kilobytes larger.
            let conn = Box::pin(self.connect_h2(i)).await?;
            ep.h2.borrow_mut().push(conn.clone());
            return Ok(conn);
        }
    }

    async fn connect_h2(&self, i: usize) -> Result<H2Conn, AttemptError> {
        let ep = &self.endpoints[i];
        let broken = Rc::new(Cell::new(false));
        let mut builder = h2::client::Builder::new();
        builder.initial_window_size(1 << 20);
        // A request that times out is cancelled (RST_STREAM). h2 remembers
        // only 50 cancelled streams; a slow peer's late answers to the others
        // are stream errors it counts, and at 1 024 of them in a connection's
        // life it tears the connection down (ENHANCE_YOUR_CALM), failing
        // every request on it. After a 2-s stall of the sink that happened
        // 4–5 times per burst, and in a debug build the resends kept it
        // going. So: remember as many as a few rounds of a connection's
        // streams, and never count late answers against the connection — the
        // peer is a configured destination, not an untrusted client.
        builder
            .max_concurrent_reset_streams(8 * H2_STREAMS_PER_CONNECTION)
            .max_local_error_reset_streams(None);
        let url = ep.plan.url.clone();
        let bodies = rt::Bodies::default();
        let (send, bodies) = match self.connect_stream(i).await? {
            Stream::Plain(tcp) => (
                h2_handshake(&builder, tcp, Some(bodies.clone()), broken.clone(), url).await,
                Some(bodies),
            ),
            Stream::Tls(tls) => (
                h2_handshake(&builder, tls, None, broken.clone(), url).await,
                None,
            ),
        };
        let send = send.map_err(|e| {
            self.mark_down(i);
            connect_err(ep, e)
        })?;
        Ok(H2Conn {
            send,
            born: Instant::now(),
            broken,
            bodies,
        })
    }

    async fn send_h1(
        &self,
        i: usize,
        req: Request<()>,
        body: Bytes,
    ) -> Result<(u16, Option<Duration>), AttemptError> {
        let ep = &self.endpoints[i];
        let fail = |e: hyper::Error| AttemptError::Request {
            url: ep.plan.url.clone(),
            why: e.to_string(),
        };
        let ttl = self.plan.connection_ttl;
        let idle = {
            let mut idle = ep.h1_idle.borrow_mut();
            idle.retain(|c| !c.send.is_closed() && ttl.is_none_or(|t| c.born.elapsed() < t));
            idle.pop()
        };
        let mut conn = match idle {
            Some(c) => c,
            // Boxed for the same reason as in `h2_conn`.
            None => Box::pin(self.connect_h1(i)).await?,
        };
        conn.send.ready().await.map_err(fail)?;
        let (parts, ()) = req.into_parts();
        let resp = conn
            .send
            .send_request(Request::from_parts(parts, Full::new(body)))
            .await
            .map_err(fail)?;
        let status = resp.status().as_u16();
        let retry_after = self.retry_after(status, resp.headers());
        let keep = !resp
            .headers()
            .get(http::header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        resp.into_body().collect().await.map_err(fail)?;
        if keep {
            ep.h1_idle.borrow_mut().push(conn);
        }
        Ok((status, retry_after))
    }

    async fn connect_h1(&self, i: usize) -> Result<H1Conn, AttemptError> {
        let ep = &self.endpoints[i];
        let url = ep.plan.url.clone();
        let send = match self.connect_stream(i).await? {
            Stream::Plain(tcp) => h1_handshake(tcp, url).await,
            Stream::Tls(tls) => h1_handshake(tls, url).await,
        }
        .map_err(|e| connect_err(ep, e))?;
        Ok(H1Conn {
            send,
            born: Instant::now(),
        })
    }

    /// TCP (TCP_NODELAY set), then TLS for `https://` endpoints.
    async fn connect_stream(&self, i: usize) -> Result<Stream, AttemptError> {
        let ep = &self.endpoints[i];
        let stats = self.stats.endpoints.get(i);
        if let Some(s) = stats {
            s.connects.fetch_add(1, Relaxed);
        }
        let result = self.connect_stream_inner(ep).await;
        match &result {
            Ok(_) if ep.checks_failed.get() == 0 => {
                // An endpoint out by its health checks stays out until
                // they pass, whatever a connect says.
                ep.failures.set(0);
                ep.down_until.set(None);
                if let Some(s) = stats {
                    s.healthy.store(1, Relaxed);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(destination = %self.plan.name, error = %e, "endpoint connect failed");
                self.mark_down(i);
            }
        }
        result
    }

    async fn connect_stream_inner(&self, ep: &Endpoint) -> Result<Stream, AttemptError> {
        let addr = resolve(&ep.plan).map_err(|why| AttemptError::Connect {
            url: ep.plan.url.clone(),
            why,
        })?;
        let tcp = rt::connect(addr, self.plan.connect_timeout)
            .await
            .map_err(|e| connect_err(ep, e))?;
        if !ep.plan.https {
            return Ok(Stream::Plain(tcp));
        }
        let Some(cfg) = self.plan.tls.clone() else {
            return Err(AttemptError::Connect {
                url: ep.plan.url.clone(),
                why: "https endpoint without a TLS configuration".into(),
            });
        };
        let name = self
            .plan
            .tls_server_name
            .clone()
            .unwrap_or_else(|| ep.plan.host.clone());
        let server_name = rustls_pki_types::ServerName::try_from(name)
            .map_err(|e| connect_err(ep, format!("bad TLS server name: {e}")))?;
        let handshake = futures_rustls::TlsConnector::from(cfg).connect(server_name, tcp);
        let tls = futures_lite::future::or(async { Some(handshake.await) }, async {
            glommio::timer::sleep(self.plan.connect_timeout.max(Duration::from_millis(1))).await;
            None
        })
        .await
        .ok_or_else(|| connect_err(ep, "TLS handshake timed out"))?
        .map_err(|e| connect_err(ep, format!("TLS handshake failed: {e}")))?;
        Ok(Stream::Tls(Box::new(tls)))
    }

    fn mark_down(&self, i: usize) {
        let ep = &self.endpoints[i];
        let f = ep.failures.get().saturating_add(1);
        ep.failures.set(f);
        let wait = DOWN_MIN
            .saturating_mul(1u32 << (f - 1).min(10))
            .min(DOWN_MAX);
        ep.down_until.set(Some(Instant::now() + wait));
        if let Some(s) = self.stats.endpoints.get(i) {
            s.healthy.store(0, Relaxed);
            s.connect_errors.fetch_add(1, Relaxed);
        }
    }
}

/// A request body registered with its connection's [`rt::Bodies`] while the
/// request lasts.
struct Sending<'a> {
    bodies: &'a rt::Bodies,
    body: Bytes,
}

impl<'a> Sending<'a> {
    fn new(bodies: &'a rt::Bodies, body: &Bytes) -> Self {
        bodies.add(body);
        Sending {
            bodies,
            body: body.clone(),
        }
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.bodies.remove(&self.body);
    }
}

/// Takes a request off its endpoint's queue count when its wait ends
/// (slot taken, timed out or cancelled).
struct Unqueue<'a>(&'a Cell<usize>);

impl Drop for Unqueue<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

enum Stream {
    Plain(glommio::net::TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<glommio::net::TcpStream>>),
}

fn connect_err(ep: &Endpoint, e: impl std::fmt::Display) -> AttemptError {
    AttemptError::Connect {
        url: ep.plan.url.clone(),
        why: e.to_string(),
    }
}

/// HTTP/2 handshake (prior knowledge or after ALPN); the connection is
/// driven by its own task, which marks it broken when it ends.
async fn h2_handshake<T>(
    builder: &h2::client::Builder,
    io: T,
    bodies: Option<rt::Bodies>,
    broken: Rc<Cell<bool>>,
    url: String,
) -> Result<h2::client::SendRequest<Bytes>, h2::Error>
where
    T: futures_lite::AsyncRead + futures_lite::AsyncWrite + rt::SendVectored + Unpin + 'static,
{
    // Unbuffered, one batch body cost a dozen `send`s (see TurnBuffered).
    let mut io = rt::TurnBuffered::new(io, H2_WRITE_BUFFER);
    if let Some(bodies) = bodies {
        io = io.with_bodies(bodies);
    }
    let (send, conn) = builder.handshake(rt::H2Io::new(io)).await?;
    glommio::spawn_local(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%url, error = %e, "HTTP/2 connection ended");
        }
        broken.set(true);
    })
    .detach();
    Ok(send)
}

/// HTTP/1.1 handshake over hyper's client connection API; the connection is
/// driven by its own task.
async fn h1_handshake<T>(
    io: T,
    url: String,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, hyper::Error>
where
    T: futures_lite::AsyncRead + futures_lite::AsyncWrite + rt::SendVectored + Unpin + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(rt::H1Io::new(io)).await?;
    glommio::spawn_local(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%url, error = %e, "HTTP/1.1 connection ended");
        }
    })
    .detach();
    Ok(send)
}

/// Resolves once per connection attempt (endpoints are usually IPs or names
/// in /etc/hosts; a blocking lookup is short and rare).
fn resolve(ep: &EndpointPlan) -> Result<SocketAddr, String> {
    if let Ok(ip) = ep.host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, ep.port));
    }
    (ep.host.as_str(), ep.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", ep.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", ep.host))
}

/// `Retry-After`: delay-seconds, or an HTTP-date (a date in the past is
/// no wait).
fn retry_after(h: &http::HeaderMap) -> Option<Duration> {
    let v = h.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_budget_is_a_share_of_requests_per_second_plus_a_floor() {
        let plan = RetryBudgetPlan {
            percent: 20,
            min_per_second: 2,
        };
        let b = RetryBudget::default();
        let t0 = Instant::now();
        // The first retry of a fresh pool: only the floor (its requests
        // before the window opened are not counted).
        for _ in 0..50 {
            b.request();
        }
        assert!(b.take(plan, t0));
        assert!(b.take(plan, t0));
        assert!(!b.take(plan, t0), "the floor is 2 with no request counted");
        // 50 requests in this window: 2 + 10 retries, 2 already taken.
        for _ in 0..50 {
            b.request();
        }
        let granted = (0..100).filter(|_| b.take(plan, t0)).count();
        assert_eq!(granted, 10);
        // The next second: the previous window's 50 requests still count.
        let t1 = t0 + Duration::from_millis(1500);
        let granted = (0..100).filter(|_| b.take(plan, t1)).count();
        assert_eq!(granted, 12);
        // After a quiet gap, nothing carries over but the floor.
        let t2 = t1 + Duration::from_secs(5);
        let granted = (0..100).filter(|_| b.take(plan, t2)).count();
        assert_eq!(granted, 2);
        // A burst: requests sent together, failing together, count (all
        // but those before the first look at the clock).
        let b = RetryBudget::default();
        for _ in 0..200 {
            b.request();
        }
        let now = Instant::now();
        let granted = (0..100).filter(|_| b.take(plan, now)).count();
        assert_eq!(granted, 2 + (200 - 64) * 20 / 100);
        // A zero budget allows no retry at all.
        let none = RetryBudgetPlan {
            percent: 0,
            min_per_second: 0,
        };
        let b = RetryBudget::default();
        for _ in 0..1000 {
            b.request();
        }
        assert!(!b.take(none, t0));
    }

    #[test]
    fn retry_after_seconds_are_read() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static(" 3 "));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015"),
        );
        assert_eq!(retry_after(&h), None);
        // An HTTP-date in the past: retry without waiting for it.
        h.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let date = httpdate::fmt_http_date(later);
        h.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_str(&date).unwrap_or(HeaderValue::from_static("x")),
        );
        let wait = retry_after(&h).unwrap_or_default();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
    }

    fn plan_for_size() -> DestinationPlan {
        use crate::plan::*;
        DestinationPlan {
            name: "d".into(),
            endpoints: vec![EndpointPlan {
                url: "http://127.0.0.1:1/".into(),
                https: false,
                host: "127.0.0.1".into(),
                port: 1,
                path_and_query: "/".into(),
            }],
            version: HttpVersion::Http2,
            method: http::Method::POST,
            tls: None,
            tls_server_name: None,
            tls_identity: None,
            max_connections_per_endpoint: 1,
            max_requests_queued_per_endpoint: 10,
            call_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            connection_ttl: None,
            headers: vec![],
            success: StatusSet(vec![(200, 299)]),
            gzip_threshold: None,
            health_check: None,
            retry: RetryPlan {
                max_attempts: 1,
                initial_backoff: Duration::ZERO,
                max_backoff: Duration::ZERO,
                retry_statuses: StatusSet(vec![]),
                drop_statuses: StatusSet(vec![]),
                budget: RetryBudgetPlan::default(),
            },
        }
    }

    /// Every held record keeps its delivery future in memory (32,768 of
    /// them at the default bound): the rare connect path (TCP, TLS, h2
    /// handshake) is boxed so that it does not inflate every one (it was
    /// 8.5 KiB before that), and so is the protocol's part of a request,
    /// which only the records on the wire need (1.85 KiB before, 1.34 after).
    #[test]
    fn a_delivery_future_stays_small() {
        let stats = ShardStats::new(0);
        let pool = Pool::new(plan_for_size(), String::new(), &stats);
        let deliver = pool.deliver(Bytes::new(), "x", Instant::now());
        let size = std::mem::size_of_val(&deliver);
        assert!(size <= 1536, "Pool::deliver's future is {size} bytes");
    }
}
