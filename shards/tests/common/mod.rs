//! Helpers for the data-plane tests: a plan built in code, an HTTP test
//! server (HTTP/1.1, h2c, h2 over TLS) with scripted answers, and an XDR
//! client that sends frames and reads acks in order. Everything binds
//! 127.0.0.1 and every wait is bounded.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sluice_codec::build::{BinSpec, Key, Message, ValueSpec};
use sluice_codec::encode::{BinPolicy, Encoder};
use sluice_shards::plan::*;

/// Runs the future `f` makes on a fresh shard's executor (its own thread)
/// and returns its output.
pub fn on_a_shard<T, F>(f: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + 'static,
{
    sluice_shards::rt::executor_builder(None, "test-shard")
        .spawn(f)
        .expect("an executor starts")
        .join()
        .expect("the executor ends")
}

/// What the test server answers to one request body: status and delay.
pub type Script = Arc<dyn Fn(&[u8]) -> (u16, Duration) + Send + Sync>;

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Proto {
    Http1,
    H2c,
}

/// An HTTP server on its own glommio thread; it lives for the whole test
/// process (the thread is detached; tests are short).
pub struct TestServer {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl TestServer {
    pub fn start(proto: Proto, tls: Option<Arc<rustls::ServerConfig>>, script: Script) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let rec = received.clone();
        sluice_shards::rt::executor_builder(None, "test-server")
            .spawn(move || async move {
                let l = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                let acceptor = tls.map(futures_rustls::TlsAcceptor::from);
                loop {
                    let Ok(s) = l.accept().await else { continue };
                    let (rec, script, acceptor) = (rec.clone(), script.clone(), acceptor.clone());
                    glommio::spawn_local(async move {
                        match acceptor {
                            None => serve(proto, s, rec, script).await,
                            Some(a) => {
                                if let Ok(t) = a.accept(s).await {
                                    serve(proto, t, rec, script).await
                                }
                            }
                        }
                    })
                    .detach();
                }
            })
            .unwrap();
        let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        TestServer { addr, received }
    }

    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

async fn serve<S>(proto: Proto, s: S, rec: Arc<Mutex<Vec<Received>>>, script: Script)
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
{
    match proto {
        Proto::Http1 => {
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (rec, script) = (rec.clone(), script.clone());
                    async move {
                        use http_body_util::BodyExt;
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await?.to_bytes().to_vec();
                        let (status, delay) = script(&body);
                        remember(&rec, &parts, body);
                        glommio::timer::sleep(delay).await;
                        let resp = http::Response::builder()
                            .status(status)
                            .body(http_body_util::Full::new(Bytes::from_static(b"ok")))
                            .unwrap();
                        Ok::<_, hyper::Error>(resp)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(sluice_shards::rt::GlommioTimer)
                .serve_connection(sluice_shards::rt::HyperIo(s), svc)
                .await;
        }
        Proto::H2c => {
            use tokio_util::compat::FuturesAsyncReadCompatExt;
            let Ok(mut conn) = h2::server::handshake(s.compat()).await else {
                return;
            };
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                let (rec, script) = (rec.clone(), script.clone());
                glommio::spawn_local(async move {
                    let (parts, mut body) = req.into_parts();
                    let mut data = Vec::new();
                    while let Some(Ok(chunk)) = body.data().await {
                        let _ = body.flow_control().release_capacity(chunk.len());
                        data.extend_from_slice(&chunk);
                    }
                    let (status, delay) = script(&data);
                    remember(&rec, &parts, data);
                    glommio::timer::sleep(delay).await;
                    let resp = http::Response::builder().status(status).body(()).unwrap();
                    let _ = respond.send_response(resp, true);
                })
                .detach();
            }
        }
    }
}

fn remember(rec: &Mutex<Vec<Received>>, parts: &http::request::Parts, body: Vec<u8>) {
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    rec.lock().unwrap().push(Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers,
        body,
    });
}

/// Always answers `status` at once.
pub fn always(status: u16) -> Script {
    Arc::new(move |_| (status, Duration::ZERO))
}

/// A destination with one endpoint per URL, short timeouts, no retries.
pub fn destination(name: &str, version: HttpVersion, urls: &[String]) -> DestinationPlan {
    DestinationPlan {
        name: name.into(),
        endpoints: urls.iter().map(|u| endpoint(u)).collect(),
        version,
        method: http::Method::POST,
        tls: None,
        tls_server_name: None,
        tls_identity: None,
        max_connections_per_endpoint: 1,
        max_requests_queued_per_endpoint: 1024,
        call_timeout: Duration::from_millis(1000),
        connect_timeout: Duration::from_millis(300),
        connection_ttl: None,
        headers: Vec::new(),
        success: StatusSet(vec![(200, 299)]),
        gzip_threshold: None,
        health_check: None,
        retry: RetryPlan {
            max_attempts: 1,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            retry_statuses: StatusSet(vec![(429, 429), (500, 599)]),
            drop_statuses: StatusSet(vec![(400, 499)]),
            budget: RetryBudgetPlan::default(),
        },
    }
}

pub fn endpoint(url: &str) -> EndpointPlan {
    let uri: http::Uri = url.parse().unwrap();
    let https = uri.scheme_str() == Some("https");
    EndpointPlan {
        url: url.into(),
        https,
        host: uri.host().unwrap().into(),
        port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        path_and_query: uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .into(),
    }
}

/// A plan with one XDR listener on a free port; every record goes to all
/// `destinations` in `encoder`'s format.
pub fn plan(destinations: Vec<DestinationPlan>, encoder: Encoder) -> Plan {
    let ids = (0..destinations.len()).collect();
    plan_with_routes(
        destinations,
        vec![FormatPlan {
            encoder,
            bins: BinPolicy::all(),
        }],
        vec![RouteAction::Deliver {
            format: 0,
            destinations: ids,
        }],
    )
}

pub fn plan_with_routes(
    destinations: Vec<DestinationPlan>,
    formats: Vec<FormatPlan>,
    actions: Vec<RouteAction>,
) -> Plan {
    Plan {
        service: ServicePlan {
            listeners: vec![ListenerPlan {
                addr: "127.0.0.1:0".parse().unwrap(),
                tls: None,
            }],
            max_concurrent_records: 1024,
            ack_buffering: true,
            max_message_bytes: 1 << 20,
            socket_receive_buffer_bytes: None,
            manage: None,
        },
        destinations,
        formats,
        routes: actions
            .into_iter()
            .map(|action| Route {
                action,
                batching: None,
                ordering: None,
            })
            .collect(),
        table: RouteTable::default(),
        dead_letter: None,
    }
}

/// A write of namespace `test`, set `demo`, string key `k{i}`, bin `i`=i,
/// generation `i`.
pub fn record(i: u32) -> Vec<u8> {
    let mut m = Message::write_record(
        "test",
        Some("demo"),
        Some(Key::Str(format!("k{i}"))),
        vec![BinSpec::new("i", ValueSpec::Int(i64::from(i)))],
    );
    m.generation = i;
    m.to_vec().unwrap()
}

mod xdr_client;
#[allow(unused_imports)] // not every test binary sends XDR
pub use xdr_client::XdrClient;

/// Starts the data plane with one unpinned shard.
pub fn start(plan: Plan) -> sluice_shards::Runtime {
    sluice_shards::start(
        Arc::new(plan),
        sluice_shards::RuntimeOptions { cpus: vec![None] },
    )
    .unwrap()
}

mod pki;
#[allow(unused_imports)] // not every test binary uses TLS
pub use pki::Pki;
