//! Helpers shared by the `control_*` tests: a `sluice run` child with its
//! stderr lines, the manage API over plain HTTP/1.1, Prometheus samples.

#![allow(clippy::unwrap_used, dead_code)] // tests may unwrap; not every test uses every helper

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// A running `sluice run`, killed (if still running) and its directory
/// removed on drop.
pub struct Connector {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stderr line so far.
    pub stderr: Arc<Mutex<String>>,
    pub dir: PathBuf,
    /// The first XDR listener and the manage API, from the listening line.
    pub xdr: SocketAddr,
    pub manage: Option<SocketAddr>,
    listening: String,
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh temp directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Connector {
    /// Writes `config` to `dir/sluice.yml`, runs `sluice run --shards 1
    /// <extra> --config FILE` and waits (bounded) for the listening line.
    pub fn start(dir: PathBuf, config: &str, extra: &[&str]) -> Connector {
        let file = dir.join("sluice.yml");
        std::fs::write(&file, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--shards", "1"])
            .args(extra)
            .arg("--config")
            .arg(&file)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let all = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                all.lock().unwrap().push_str(&format!("{line}\n"));
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut c = Connector {
            child,
            lines,
            stderr,
            dir,
            xdr: "0.0.0.0:0".parse().unwrap(),
            manage: None,
            listening: String::new(),
        };
        let line = c.wait_for("listening on");
        c.listening = line.clone();
        let after = line.split("listening on ").nth(1).unwrap();
        c.xdr = after.split([',', ' ']).next().unwrap().parse().unwrap();
        c.manage = line
            .split("manage API on ")
            .nth(1)
            .map(|m| m.trim().parse().unwrap());
        c
    }

    /// The `listening on ...` line.
    pub fn wait_for_listening_line(&self) -> String {
        self.listening.clone()
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.join("sluice.yml")
    }

    /// The next stderr line containing `what` (bounded wait).
    pub fn wait_for(&self, what: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no line with {what:?}; stderr so far:\n{}",
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// `GET path` on the manage API: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        get(self.manage.unwrap(), path)
    }

    pub fn metrics(&self) -> String {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200, "{text}");
        text
    }
}

pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    (status, text.split_once("\r\n\r\n").unwrap().1.to_owned())
}

/// The value of the sample `name` (with its labels) in Prometheus text.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `sluice gen` against `target` with `--quiet --json` and `extra`.
pub fn gen(target: SocketAddr, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["gen", "--quiet", "--json", "--target", &target.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The generator's JSON report (its last JSON line on stdout).
pub fn report(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}");
    serde_json::from_str(json).unwrap()
}

/// Polls (bounded) until the file has `what`; returns its text.
pub fn wait_in_file(path: &Path, what: &str) -> String {
    for _ in 0..600 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "no {what:?} in {}:\n{}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}
