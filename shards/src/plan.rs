//! The compiled runtime plan: everything a shard needs to know, resolved and
//! validated by the config loader (`src/config`). Shards never see YAML.
//! A plan is immutable; a reload hands shards a new `Arc<Plan>` and records
//! in flight finish on the one they started with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_codec::encode::{BinPolicy, Encoder};

/// Index into [`Plan::destinations`].
pub type DestinationId = usize;
/// Index into [`Plan::formats`].
pub type FormatId = usize;
/// Index into [`Plan::routes`].
pub type RouteId = usize;

#[derive(Debug, Clone)]
pub struct Plan {
    pub service: ServicePlan,
    pub destinations: Vec<DestinationPlan>,
    /// Distinct (encoder, bin policy) pairs: a record is encoded once per
    /// distinct format among its destinations.
    pub formats: Vec<FormatPlan>,
    pub routes: Vec<Route>,
    pub table: RouteTable,
    /// Where records refused for good are written (`dead-letter`).
    pub dead_letter: Option<DeadLetterPlan>,
}

/// The dead-letter file (dlq.rs): one JSON line per refused record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterPlan {
    pub file: std::path::PathBuf,
    pub fsync: Fsync,
}

/// When a dead letter reaches the disk, relative to its ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// fdatasync before the record is acked.
    Always,
    /// Written before the ack; fdatasync with a write once 100 ms passed
    /// since the last one.
    Batch,
    /// Written before the ack; the kernel decides when it reaches the disk.
    Never,
}

#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub listeners: Vec<ListenerPlan>,
    /// For the whole process; each shard holds at most its share.
    pub max_concurrent_records: usize,
    /// Acks ready together leave in one write.
    pub ack_buffering: bool,
    /// Frames with a longer body are a protocol error (connection closed).
    pub max_message_bytes: usize,
    pub socket_receive_buffer_bytes: Option<usize>,
    pub manage: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct ListenerPlan {
    pub addr: SocketAddr,
    /// TLS on the XDR listener (`service.tls`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http1,
    Http2,
}

#[derive(Debug, Clone)]
pub struct EndpointPlan {
    /// The URL as configured (for logs and metrics labels).
    pub url: String,
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query the requests go to.
    pub path_and_query: String,
}

#[derive(Debug, Clone)]
pub struct DestinationPlan {
    pub name: String,
    pub endpoints: Vec<EndpointPlan>,
    pub version: HttpVersion,
    pub method: http::Method,
    /// Client TLS for `https://` endpoints (CA, optional client cert, ALPN set).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Overrides the server name sent in SNI and checked in the certificate.
    pub tls_server_name: Option<String>,
    /// What `tls` was built from (file names and a digest of their
    /// contents): a reload keeps a TLS destination's pool only when this is
    /// unchanged, since two `ClientConfig`s cannot be compared.
    pub tls_identity: Option<String>,
    pub max_connections_per_endpoint: usize,
    pub max_requests_queued_per_endpoint: usize,
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
    /// Connections older than this are closed after their current requests.
    pub connection_ttl: Option<Duration>,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Status codes that mean "accepted".
    pub success: StatusSet,
    /// gzip bodies of at least this many bytes.
    pub gzip_threshold: Option<usize>,
    pub health_check: Option<HealthCheckPlan>,
    pub retry: RetryPlan,
}

/// A set of HTTP status codes, as inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(pub Vec<(u16, u16)>);

impl StatusSet {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= status && status <= hi)
    }
}

#[derive(Debug, Clone)]
pub struct HealthCheckPlan {
    pub interval: Duration,
    pub call_timeout: Duration,
    pub method: http::Method,
    pub path: String,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// Retries inside the connector before answering "retry" to XDR.
#[derive(Debug, Clone)]
pub struct RetryPlan {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Status codes that are retried.
    pub retry_statuses: StatusSet,
    /// Status codes that reject a record for good (a dead letter); the
    /// retry list is looked at first.
    pub drop_statuses: StatusSet,
    /// How many retries a destination may get on one shard.
    pub budget: RetryBudgetPlan,
}

/// Retries per second on one shard are at most `percent` % of the
/// destination's requests in that second (or the second before, whichever
/// is more), plus `min_per_second`: a destination that fails everything, or
/// answers after `call-timeout`, gets about `percent` % more requests than
/// it would without retries, not `max-attempts` times as many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudgetPlan {
    pub percent: u32,
    pub min_per_second: u32,
}

impl Default for RetryBudgetPlan {
    fn default() -> Self {
        RetryBudgetPlan {
            percent: 20,
            min_per_second: 10,
        }
    }
}

/// What a status outside `http-success-status-codes` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// In the retry list: retried inside the deadline, then answered 11.
    Retry,
    /// In the drop list (and not the retry list): refused for good.
    Drop,
    /// In neither: answered 11 at once, so XDR resends it later.
    Other,
}

impl RetryPlan {
    pub fn classify(&self, status: u16) -> StatusClass {
        if self.retry_statuses.contains(status) {
            StatusClass::Retry
        } else if self.drop_statuses.contains(status) {
            StatusClass::Drop
        } else {
            StatusClass::Other
        }
    }
}

#[derive(Debug, Clone)]
pub struct FormatPlan {
    pub encoder: Encoder,
    pub bins: BinPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Ack without sending (routing mode `skip`, or no route).
    Skip,
    /// Deliver to every destination; ack 0 only when every one accepted.
    Deliver {
        format: FormatId,
        destinations: Vec<DestinationId>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    pub max_records: usize,
    pub max_bytes: usize,
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub action: RouteAction,
    pub batching: Option<BatchPlan>,
    /// Per-key ordering by LUT (order.rs).
    pub ordering: Option<OrderingPlan>,
}

/// `record-ordering` of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderingPlan {
    /// How long a key's last delivered LUT is remembered.
    pub ttl: Duration,
    /// The most keys remembered by the whole process (each shard holds
    /// the keys it owns, up to its share).
    pub max_keys: usize,
}

/// Which route a record takes. Precedence: set, then namespace, then port,
/// then the default; port-specific entries win over port-less ones at the
/// same level. Lookups borrow `&str`: nothing is allocated per record.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub default: RouteId,
    /// Entries that apply on every port (`namespaces:` at top level).
    pub any_port: PortTable,
    /// `port-based-config` entries.
    pub ports: HashMap<u16, PortTable>,
}

#[derive(Debug, Clone, Default)]
pub struct PortTable {
    pub default: Option<RouteId>,
    pub namespaces: HashMap<String, NamespaceTable>,
}

#[derive(Debug, Clone, Default)]
pub struct NamespaceTable {
    pub default: Option<RouteId>,
    pub sets: HashMap<String, RouteId>,
}

impl RouteTable {
    /// The route for a record that arrived on `port`.
    pub fn lookup(&self, port: u16, namespace: &str, set: Option<&str>) -> RouteId {
        let on_port = self.ports.get(&port);
        let tables = [on_port, Some(&self.any_port)];
        if let Some(set) = set {
            for t in tables.iter().flatten() {
                if let Some(&r) = t.namespaces.get(namespace).and_then(|n| n.sets.get(set)) {
                    return r;
                }
            }
        }
        for t in tables.iter().flatten() {
            if let Some(r) = t.namespaces.get(namespace).and_then(|n| n.default) {
                return r;
            }
        }
        on_port.and_then(|t| t.default).unwrap_or(self.default)
    }
}
