//! The control thread against a fake data plane: reloads and the manage API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_shards::plan::Plan;

use super::metrics::{DestinationSnapshot, EndpointSnapshot, Snapshot};
use super::{manage, reload, Plane, Shared};

#[derive(Default)]
struct FakePlane {
    plans: Mutex<Vec<Arc<Plan>>>,
    snapshot: Mutex<Snapshot>,
}

impl Plane for FakePlane {
    fn reload(&self, plan: Arc<Plan>) {
        self.plans.lock().unwrap().push(plan);
    }
    fn shutdown(&self, _drain: Duration) {}
    fn snapshot(&self) -> Snapshot {
        self.snapshot.lock().unwrap().clone()
    }
}

const GOOD: &str = "\
destinations:
  es:
    urls: [http://127.0.0.1:9/x]
    call-timeout: 1500
    health-check:
      healthy-threshold: 1
      unhealthy-threshold: 1
routing:
  mode: static-multi-destination
  destinations: [es]
";

fn setup(name: &str) -> (std::path::PathBuf, Arc<FakePlane>, Arc<Shared>) {
    let dir = std::env::temp_dir().join(format!("sluice-control-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sluice.yml");
    std::fs::write(&file, GOOD).unwrap();
    let plan = Arc::new(crate::config::load(&file).unwrap().plan);
    let plane = Arc::new(FakePlane::default());
    let shared = Arc::new(Shared {
        plane: plane.clone(),
        plan: Mutex::new(plan),
        counters: Default::default(),
    });
    (file, plane, shared)
}

#[test]
fn a_bad_reload_keeps_the_old_plan() {
    let (file, plane, shared) = setup("reload");
    std::fs::write(
        &file,
        GOOD.replace("call-timeout: 1500", "call-timeout: soon"),
    )
    .unwrap();
    assert!(reload(&shared, &file, &Default::default()).is_none());
    assert!(plane.plans.lock().unwrap().is_empty());
    assert_eq!(
        shared.current_plan().destinations[0].call_timeout,
        Duration::from_millis(1500)
    );
    assert_eq!(shared.counters.reloads_failed.load(Ordering::Relaxed), 1);

    std::fs::write(
        &file,
        GOOD.replace("call-timeout: 1500", "call-timeout: 700"),
    )
    .unwrap();
    assert!(reload(&shared, &file, &Default::default()).is_some());
    let handed = plane.plans.lock().unwrap().clone();
    assert_eq!(handed.len(), 1);
    assert_eq!(
        handed[0].destinations[0].call_timeout,
        Duration::from_millis(700)
    );
    assert_eq!(
        shared.current_plan().destinations[0].call_timeout,
        Duration::from_millis(700)
    );
    assert_eq!(shared.counters.reloads_ok.load(Ordering::Relaxed), 1);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

#[test]
fn manage_api_answers_health_ready_and_metrics() {
    let (file, plane, shared) = setup("manage");
    let addr = manage::spawn("127.0.0.1:0".parse().unwrap(), shared.clone()).unwrap();
    assert_eq!(get(addr, "/health"), (200, "ok\n".to_owned()));
    // Not listening yet: not ready.
    assert_eq!(get(addr, "/ready").0, 503);
    {
        let mut s = plane.snapshot.lock().unwrap();
        s.listening = true;
        s.records_received = 42;
        s.acked.insert(0, 40);
        s.destinations = vec![DestinationSnapshot {
            name: "es".into(),
            responses: [0, 40, 0, 0, 0],
            endpoints: vec![EndpointSnapshot {
                url: "http://127.0.0.1:9/x".into(),
                healthy: true,
            }],
            ..Default::default()
        }];
    }
    assert_eq!(get(addr, "/ready").0, 200);
    plane.snapshot.lock().unwrap().destinations[0].endpoints[0].healthy = false;
    let (status, body) = get(addr, "/ready");
    assert_eq!(status, 503);
    assert!(body.contains("`es` has no healthy endpoint"), "{body}");
    let (_, text) = get(addr, "/metrics");
    assert!(
        text.contains(
            "sluice_endpoint_healthy{destination=\"es\",endpoint=\"http://127.0.0.1:9/x\"} 0\n"
        ),
        "{text}"
    );
    // A destination without health checks never holds readiness back.
    let no_checks = GOOD.replace(
        "    health-check:\n      healthy-threshold: 1\n      unhealthy-threshold: 1\n",
        "",
    );
    assert_ne!(no_checks, GOOD);
    std::fs::write(&file, no_checks).unwrap();
    assert!(reload(&shared, &file, &Default::default()).is_some());
    assert_eq!(get(addr, "/ready").0, 200);

    for path in ["/metrics", "/manage/rest/v1/prometheus"] {
        let (status, body) = get(addr, path);
        assert_eq!(status, 200);
        // Every sample line is `name{labels} value` with a numeric value.
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
        }
        assert!(
            body.contains("sluice_records_received_total 42\n"),
            "{body}"
        );
        assert!(
            body.contains("sluice_records_acked_total{result=\"0\"} 40\n"),
            "{body}"
        );
    }
    let (status, body) = get(addr, "/manage/rest/v1/metrics");
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["data-plane"]["records_received"], 42);
    assert_eq!(get(addr, "/nope").0, 404);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}
