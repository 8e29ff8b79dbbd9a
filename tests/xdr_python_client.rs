//! An official Aerospike client as an independent source of frames: PyPI
//! `aerospike` (the C client inside) writes through `tests/facade` — a
//! one-node facade that answers the client's info requests and relays each
//! message to `sluice run` — and what the client wrote must arrive at
//! `sluice sink`, value for value. `scripts/test.sh` installs the client
//! into `target/venv` and points `SLUICE_PYTHON` at it.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

fn python() -> PathBuf {
    let p = std::env::var_os("SLUICE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/python")
        });
    let ok = Command::new(&p)
        .args(["-c", "import aerospike"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import the aerospike client: run scripts/install-deps.sh (or set SLUICE_PYTHON)",
        p.display()
    );
    p
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_file_line(path: &std::path::Path, what: &str, child: &mut Child) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} exited ({status}) before printing {what:?}:\n{text}",
                path.display()
            );
        }
        assert!(
            Instant::now() < until,
            "no {what:?} in {} after 20 s:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Python writer's view of a value (`{"blob": b64}` for bytes) as the
/// json format writes it (blobs as base64 strings).
fn as_json_format(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("blob") => m["blob"].clone(),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), as_json_format(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(as_json_format).collect()),
        other => other.clone(),
    }
}

#[test]
fn official_python_client_writes_arrive_value_for_value() {
    let python = python();
    let dir = common::temp_dir("pyclient");
    let facade_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/facade");

    // The sink, dumping every accepted record.
    let sink_port = common::free_port();
    let dump = dir.join("dump.jsonl");
    let sink_log = dir.join("sink.log");
    let mut sink = Killed(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "sink",
                "--listen",
                &format!("127.0.0.1:{sink_port}"),
                "--protocol",
                "h2c",
            ])
            .arg("--dump")
            .arg(&dump)
            .args(["--duration", "120s", "--quiet"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&sink_log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_file_line(&sink_log, "listening on", &mut sink.0);

    // The connector, json to the sink.
    let xdr = common::free_port();
    let sluice = common::Sluice::start(
        "pyclient-run",
        &format!(
            "service:\n  port: {xdr}\n  address: 127.0.0.1\n\
             destinations:\n  sink:\n    urls: [\"http://127.0.0.1:{sink_port}/ingest\"]\n    protocol: HTTP_2\n\
             routing:\n  mode: static-multi-destination\n  destinations: [sink]\n\
             format:\n  mode: json\n"
        ),
    );

    // The facade in front of it.
    let facade_port = common::free_port();
    let facade_log = dir.join("facade.log");
    let mut facade = Killed(
        Command::new(&python)
            .arg(facade_dir.join("aerospike_facade.py"))
            .args([
                "--listen",
                &facade_port.to_string(),
                "--connector",
                &sluice.xdr.to_string(),
            ])
            .stdout(std::fs::File::create(&facade_log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait_for_file_line(&facade_log, "facade listening", &mut facade.0);

    // The official client writes.
    let count = 30;
    let out = Command::new(&python)
        .arg(facade_dir.join("aerospike_write.py"))
        .args([
            "--port",
            &facade_port.to_string(),
            "--count",
            &count.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the client's writes failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(written.len(), count, "the client reported every write");

    // Every put was acked by the connector only after the sink accepted it.
    // The sink writes its dump out when it stops (SIGTERM: summary, exit 0).
    let stopped = Command::new("kill")
        .args(["-TERM", &sink.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let until = Instant::now() + Duration::from_secs(10);
    while sink.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "the sink did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&dump).unwrap_or_default();
    let delivered: HashMap<String, Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["digest"].as_str().unwrap().to_string(), v))
        .collect();
    assert_eq!(
        delivered.len(),
        count,
        "every record the client wrote reached the sink"
    );

    for w in &written {
        let digest = w["digest"].as_str().unwrap();
        let got = delivered
            .get(digest)
            .unwrap_or_else(|| panic!("record {digest} (key {}) not at the sink", w["key"]));
        assert_eq!(got["msg"], "write");
        // The user key (the client sends it: POLICY_KEY_SEND).
        let key = match &w["key"] {
            Value::Object(m) => {
                let b64 = m["blob"].as_str().unwrap();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            other => other.clone(),
        };
        assert_eq!(got["key"], key, "user key of {digest}");
        let bins = got["bins"].as_object().unwrap();
        let expected = w["bins"].as_object().unwrap();
        assert_eq!(bins.len(), expected.len(), "bin count of {digest}: {got}");
        for (name, value) in expected {
            let want = as_json_format(value);
            let have = &bins[name];
            match (want.as_f64(), have.as_f64(), want.is_f64()) {
                (Some(a), Some(b), true) => assert_eq!(a, b, "bin {name} of {digest}"),
                _ => assert_eq!(have, &want, "bin {name} of {digest}"),
            }
        }
    }
    drop(facade);
    drop(sluice);
    drop(sink);
}
