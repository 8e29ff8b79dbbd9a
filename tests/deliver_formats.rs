//! `sluice run` delivering every format and routing mode, decoded at the
//! sink: json, flat-json, message-pack and xdr per set, `skip`, and a
//! route to two destinations; HTTP/2 (h2c) to nghttpd.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn config(sink: &Sink) -> String {
    let dest = |name: &str| {
        format!(
            "  {name}:\n    urls: [{}]\n    protocol: HTTP_1_1\n",
            sink.url(&format!("/{name}"))
        )
    };
    let route = |dests: &str, format: &str| {
        format!(
            "        routing:\n          mode: static-multi-destination\n          destinations: [{dests}]\n        format:\n          mode: {format}\n"
        )
    };
    format!(
        "service:\n  address: 127.0.0.1\n  port: 0\ndestinations:\n{}{}{}{}{}\
routing:\n  mode: static-multi-destination\n  destinations: [json]\n\
namespaces:\n  test:\n    sets:\n      f:\n{}      m:\n{}      x:\n{}      two:\n{}      s:\n        routing:\n          mode: skip\n\
logging:\n  ticker-interval: 0\n",
        dest("json"),
        dest("flat"),
        dest("mp"),
        dest("xdr"),
        dest("json2"),
        route("flat", "flat-json"),
        route("mp", "message-pack"),
        route("xdr", "xdr"),
        route("json, json2", "json"),
    )
}

#[test]
fn every_format_and_routing_mode_reaches_the_sink() {
    let sink = Sink::start(always(200));
    let sluice = Sluice::start("formats", &config(&sink));
    let mut c = XdrClient::connect(sluice.xdr);
    let frames = [
        record("j", 1),
        record("f", 2),
        record("m", 3),
        record("x", 4),
        record("two", 5),
        record("s", 6),
    ];
    c.send(&frames.concat());
    let acks = c.acks(6);
    assert_eq!(acks, (1..=6).map(|g| (0, g)).collect::<Vec<_>>());

    let json = sink.on("/json");
    assert_eq!(json.len(), 2, "set j and set two");
    for r in &json {
        assert_eq!(r.method, "POST");
        assert_eq!(r.headers["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["msg"], "write");
        assert_eq!(v["key"][0], "test");
    }
    let json2 = sink.on("/json2");
    assert_eq!(json2.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&json2[0].body).unwrap();
    assert_eq!(v["key"][1], "two");
    assert_eq!(v["gen"], 5);

    let flat = sink.on("/flat");
    assert_eq!(flat.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&flat[0].body).unwrap();
    assert_eq!(v["metadata"]["namespace"], "test");
    assert_eq!(v["metadata"]["set"], "f");
    assert_eq!(v["i"], 2);
    assert_eq!(v["s"], "v2");

    let mp = sink.on("/mp");
    assert_eq!(mp.len(), 1);
    assert_eq!(mp[0].headers["content-type"], "application/x-msgpack");
    let v = rmpv::decode::read_value(&mut &mp[0].body[..]).unwrap();
    assert_eq!(v[0].as_u64(), Some(1));
    assert_eq!(v[1].as_u64(), Some(1), "a write");
    // payload = [key, gen, exp, lut, bins]
    assert_eq!(v[2][1].as_u64(), Some(3));

    let xdr = sink.on("/xdr");
    assert_eq!(xdr.len(), 1);
    assert_eq!(xdr[0].body, frames[3], "xdr passes the frame through");

    // j, f, m, x and two (twice): the skipped record is not sent.
    assert_eq!(sink.requests().len(), 6);
    assert!(sink
        .requests()
        .iter()
        .all(|r| !r.body.windows(2).any(|w| w == b"v6")));
}

/// A free port for nghttpd, started for the length of a test.
struct Nghttpd(std::process::Child, std::path::PathBuf);

impl Drop for Nghttpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[test]
fn h2c_delivery_to_nghttpd() {
    let dir = temp_dir("nghttpd");
    std::fs::write(dir.join("in"), "ok").unwrap();
    let port = free_port();
    let child = Command::new("nghttpd")
        .args(["--no-tls", "-d"])
        .arg(&dir)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        eprintln!("nghttpd is not installed; h2c to nghttpd not tested");
        return;
    };
    let _ngh = Nghttpd(child, dir);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let config = format!(
        "service:\n  address: 127.0.0.1\n  port: 0\ndestinations:\n  h2:\n    urls: [http://127.0.0.1:{port}/in]\n\
routing:\n  mode: static-multi-destination\n  destinations: [h2]\nlogging:\n  ticker-interval: 0\n"
    );
    let sluice = Sluice::start("h2c", &config);
    let mut c = XdrClient::connect(sluice.xdr);
    let frames: Vec<u8> = (1..=50).flat_map(|g| record("demo", g)).collect();
    c.send(&frames);
    assert_eq!(c.acks(50), (1..=50).map(|g| (0, g)).collect::<Vec<_>>());
}
