//! Destination health checks (`destinations.*.health-check`), run by the
//! control thread's helper, off the hot path.
//!
//! One thread walks the current plan once a second and checks each
//! endpoint whose interval has passed: an HTTP/1.1 request (`method`,
//! `path`) on a fresh connection, TLS with the destination's CA and client
//! certificate for `https://`. A status in `http-success-status-codes` is a
//! pass. An endpoint turns unhealthy after `unhealthy-threshold` failures in
//! a row and healthy again after `healthy-threshold` passes; it starts
//! healthy so that a restart does not hold traffic back for
//! `healthy-threshold × interval`. The results feed `/ready` and the
//! `sluice_endpoint_healthy` gauge.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_shards::plan::{DestinationPlan, EndpointPlan, HealthCheckPlan, Plan};

#[derive(Debug, Clone)]
struct EndpointState {
    healthy: bool,
    passes: u32,
    failures: u32,
    next: Instant,
}

/// Health of every checked endpoint, keyed by (destination, URL).
#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<HashMap<(String, String), EndpointState>>,
}

impl Health {
    /// (URL, healthy) of a destination's checked endpoints, in plan order.
    pub fn endpoints(&self, dest: &DestinationPlan) -> Vec<(String, bool)> {
        let state = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        dest.endpoints
            .iter()
            .map(|e| {
                let healthy = state
                    .get(&(dest.name.clone(), e.url.clone()))
                    .is_none_or(|s| s.healthy);
                (e.url.clone(), healthy)
            })
            .collect()
    }

    /// Records one check's result; returns the endpoint's health after it.
    pub fn record(&self, dest: &str, url: &str, check: &HealthCheckPlan, passed: bool) -> bool {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let s = state
            .entry((dest.to_owned(), url.to_owned()))
            .or_insert(EndpointState {
                healthy: true,
                passes: 0,
                failures: 0,
                next: Instant::now(),
            });
        s.next = Instant::now() + check.interval;
        if passed {
            s.passes += 1;
            s.failures = 0;
            if !s.healthy && s.passes >= check.healthy_threshold {
                s.healthy = true;
                tracing::info!("endpoint {url} of destination `{dest}` is healthy again");
            }
        } else {
            s.failures += 1;
            s.passes = 0;
            if s.healthy && s.failures >= check.unhealthy_threshold {
                s.healthy = false;
                tracing::warn!("endpoint {url} of destination `{dest}` is unhealthy");
            }
        }
        s.healthy
    }

    fn due(&self, dest: &str, url: &str) -> bool {
        let state = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        state
            .get(&(dest.to_owned(), url.to_owned()))
            .is_none_or(|s| s.next <= Instant::now())
    }

    /// Checks whatever is due in `plan`.
    pub fn round(&self, plan: &Plan) {
        for dest in &plan.destinations {
            let Some(check) = &dest.health_check else {
                continue;
            };
            for ep in &dest.endpoints {
                if self.due(&dest.name, &ep.url) {
                    let passed = match probe(dest, ep, check) {
                        Ok(status) => dest.success.contains(status),
                        Err(e) => {
                            tracing::debug!("health check of {}: {e}", ep.url);
                            false
                        }
                    };
                    self.record(&dest.name, &ep.url, check, passed);
                }
            }
        }
    }
}

/// Runs health checks on a background thread over `plan()` (the current plan).
pub fn spawn(
    health: Arc<Health>,
    plan: impl Fn() -> Arc<Plan> + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sluice-health".into())
        .spawn(move || loop {
            health.round(&plan());
            std::thread::sleep(Duration::from_secs(1));
        })
        .map(|_| ())
}

/// One check: the response's status code.
pub fn probe(
    dest: &DestinationPlan,
    ep: &EndpointPlan,
    check: &HealthCheckPlan,
) -> Result<u16, String> {
    let addr = (ep.host.as_str(), ep.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", ep.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", ep.host))?;
    let timeout = check.call_timeout.max(Duration::from_millis(1));
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let host = dest.tls_server_name.as_deref().unwrap_or(&ep.host);
    let request = format!(
        "{} {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: sluice-health-check\r\nConnection: close\r\n\r\n",
        check.method, check.path, ep.host, ep.port
    );
    let mut response = Vec::new();
    if ep.https {
        let Some(tls) = &dest.tls else {
            return Err("https endpoint without TLS settings".into());
        };
        // The check speaks HTTP/1.1 whatever the destination's ALPN says.
        let mut config = (**tls).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("bad server name {host}: {e}"))?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| format!("TLS: {e}"))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("TLS write: {e}"))?;
        read_status_line(&mut stream, &mut response)?;
    } else {
        let mut tcp = tcp;
        tcp.write_all(request.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        read_status_line(&mut tcp, &mut response)?;
    }
    parse_status(&response)
}

/// Reads until the status line is complete (at most 1 KiB).
fn read_status_line(r: &mut impl Read, out: &mut Vec<u8>) -> Result<(), String> {
    let mut buf = [0u8; 256];
    while !out.contains(&b'\n') && out.len() < 1024 {
        let n = r.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

fn parse_status(response: &[u8]) -> Result<u16, String> {
    let line = response.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let text = String::from_utf8_lossy(line);
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(code))) if v.starts_with("HTTP/") => Ok(code),
        _ => Err(format!("not an HTTP response: {:?}", text.trim_end())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server that answers each connection with the next status of `statuses`.
    fn server(statuses: Vec<u16>) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for status in statuses {
                let (mut c, _) = l.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                let _ = write!(c, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
            }
        });
        addr
    }

    fn plan_for(addr: std::net::SocketAddr) -> Plan {
        let text = format!(
            "destinations:\n  d:\n    urls: [http://{addr}/in]\n    health-check:\n      \
             path: /ping\n      healthy-threshold: 2\n      unhealthy-threshold: 2\n      \
             interval-seconds: 1\nrouting:\n  mode: skip\n"
        );
        crate::config::load_str(&text, std::path::Path::new("."))
            .unwrap()
            .plan
    }

    #[test]
    fn thresholds_turn_an_endpoint_unhealthy_and_back() {
        let addr = server(vec![200, 500, 503, 200, 200]);
        let plan = plan_for(addr);
        let dest = &plan.destinations[0];
        let check = dest.health_check.as_ref().unwrap();
        let ep = &dest.endpoints[0];
        let health = Health::default();
        let mut seen = Vec::new();
        for _ in 0..5 {
            let status = probe(dest, ep, check).unwrap();
            seen.push((
                status,
                health.record("d", &ep.url, check, dest.success.contains(status)),
            ));
        }
        assert_eq!(
            seen,
            vec![
                (200, true),
                (500, true),
                (503, false),
                (200, false),
                (200, true)
            ]
        );
        assert_eq!(health.endpoints(dest), vec![(ep.url.clone(), true)]);
    }

    #[test]
    fn a_closed_port_fails_the_check() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let plan = plan_for(addr);
        let dest = &plan.destinations[0];
        let e = probe(
            dest,
            &dest.endpoints[0],
            dest.health_check.as_ref().unwrap(),
        )
        .unwrap_err();
        assert!(e.starts_with("connect:"), "{e}");
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Ok(204));
        assert!(parse_status(b"SSH-2.0-x\r\n").is_err());
    }
}
