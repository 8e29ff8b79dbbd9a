//! `sluice check-config` and `sluice run` on good and bad config files: the
//! compiled plan on success; on failure a non-zero exit and a message that
//! names the offending key and its line.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;
use std::process::{Command, Output};

#[path = "../shards/tests/common/pki.rs"]
#[allow(dead_code)] // the rustls configs it can build are not needed here
mod pki;
use pki::Pki;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("sluice-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap()
}

fn check(dir: &Dir, text: &str) -> (i32, String, String) {
    let file = dir.write("sluice.yml", text);
    let out = sluice(&["check-config", file.to_str().unwrap()]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts a failed check whose errors include one line naming `key` at `line`
/// and containing `words`.
fn assert_error(name: &str, text: &str, key: &str, line: usize, words: &str) {
    let dir = Dir::new(name);
    let (code, _, err) = check(&dir, text);
    assert_eq!(code, 2, "{name}: exit code; stderr: {err}");
    let wanted = format!("line {line}: {key}: ");
    assert!(
        err.lines()
            .any(|l| l.contains(&wanted) && l.contains(words)),
        "{name}: no error with `{wanted}` and `{words}` in:\n{err}"
    );
}

const BASE: &str = "\
service:
  port: 4000
destinations:
  es:
    urls:
      - http://127.0.0.1:9200/x
routing:
  mode: static-multi-destination
  destinations: [es]
";

#[test]
fn good_config_prints_the_plan() {
    let dir = Dir::new("good");
    let text = "\
service:
  ports: [4000, 4001]
  manage:
    ports: 9100
destinations:
  es:
    urls:
      - http://127.0.0.1:9200/x
    protocol: HTTP_1_1
    call-timeout: 2500
  fn:
    urls: [\"http://127.0.0.1:9300/y\"]
    headers:
      Authorization: Bearer s3cret-token
routing:
  mode: static-multi-destination
  destinations: [es]
format:
  mode: json
namespaces:
  test:
    routing:
      mode: static-multi-destination
      destinations: [es, fn]
    sets:
      quiet:
        routing:
          mode: skip
      same:
        format:
          mode: json
port-based-config:
  4001:
    format:
      mode: flat-json
";
    let (code, out, err) = check(&dir, text);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("0.0.0.0:4000") && out.contains("0.0.0.0:4001"),
        "{out}"
    );
    assert!(out.contains("manage: 127.0.0.1:9100"), "{out}");
    assert!(
        out.contains("[0] es: HTTP_1_1 POST call-timeout 2500ms"),
        "{out}"
    );
    assert!(
        out.contains("[1] fn: HTTP_2 POST call-timeout 1000ms"),
        "{out}"
    );
    // Header values may be secrets: never printed.
    assert!(!out.contains("s3cret"), "{out}");
    // json appears once although three levels ask for it.
    assert!(out.contains("[0] json [bins: all]"), "{out}");
    assert!(
        out.contains("[1] flat-json (metadata-key metadata) [bins: all]"),
        "{out}"
    );
    let formats = out
        .split("formats:\n")
        .nth(1)
        .unwrap()
        .split("routes:")
        .next()
        .unwrap();
    assert_eq!(formats.lines().count(), 2, "{out}");
    assert!(
        out.contains("[0] deliver format [0] to es  <- default"),
        "{out}"
    );
    assert!(
        out.contains("[1] deliver format [0] to es, fn  <- namespace test; set test.same"),
        "{out}"
    );
    assert!(out.contains("[2] skip  <- set test.quiet"), "{out}");
    assert!(
        out.contains("[3] deliver format [1] to es  <- port 4001"),
        "{out}"
    );
}

#[test]
fn example_configs_are_valid() {
    for (file, expect) in [
        ("example-esp-outbound.yml", "<- port 8905"),
        (
            "example-esp-outbound.yml",
            "health-check GET /_cluster/health every 5s, timeout 500ms",
        ),
        (
            "example-esp-outbound.yml",
            "retry 3 attempts, backoff 50-1000ms on 408,429,500-599; drop 400-499",
        ),
        (
            "minimal.yml",
            "[0] deliver format [0] to webhook  <- default",
        ),
    ] {
        let path = format!("{}/config/{file}", env!("CARGO_MANIFEST_DIR"));
        let out = sluice(&["check-config", &path]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(expect), "{file}: {stdout}");
    }
}

#[test]
fn unknown_key() {
    let text = BASE.replace("    urls:", "    urlz: []\n    urls:");
    assert_error(
        "unknown",
        &text,
        "destinations.es.urlz",
        5,
        "unknown key `urlz` (did you mean `urls`?",
    );
}

#[test]
fn wrong_type() {
    // The bad value under the destination, on line 7.
    let text = BASE.replace(
        "      - http://127.0.0.1:9200/x\n",
        "      - http://127.0.0.1:9200/x\n    call-timeout: fast\n",
    );
    assert_error(
        "type",
        &text,
        "destinations.es.call-timeout",
        7,
        "expected a non-negative integer (milliseconds), found a string",
    );
}

#[test]
fn undefined_destination() {
    let text = BASE.replace(
        "  destinations: [es]",
        "  destinations:\n    - es\n    - nowhere",
    );
    assert_error(
        "undefined",
        &text,
        "routing.destinations[1]",
        11,
        "undefined destination `nowhere`",
    );
}

#[test]
fn unreadable_pem() {
    let text = BASE.replace(
        "      - http://127.0.0.1:9200/x\n",
        "      - https://127.0.0.1:9200/x\n    tls:\n      ca-file: /nonexistent/ca.pem\n",
    );
    assert_error(
        "pem",
        &text,
        "destinations.es.tls.ca-file",
        8,
        "cannot read /nonexistent/ca.pem",
    );
}

#[test]
fn bad_avro_schema() {
    let dir = Dir::new("avro");
    dir.write("schema.avsc", "{\"type\": \"record\", \"name\": ");
    let text = format!("{BASE}format:\n  mode: avro\n  schema-file: schema.avsc\n");
    let (code, _, err) = check(&dir, &text);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("line 12: format.schema-file: bad avro schema"),
        "{err}"
    );
}

#[test]
fn two_spellings_of_one_setting() {
    let text = BASE.replace("  port: 4000\n", "  port: 4000\n  ports: [4001]\n");
    assert_error(
        "spelling",
        &text,
        "service.ports",
        3,
        "two spellings of one setting",
    );
}

#[test]
fn custom_routing() {
    let text = "\
destinations:
  es:
    urls: [http://127.0.0.1:9/]
routing:
  mode: custom
";
    assert_error("custom", text, "routing.mode", 5, "cannot run Java code");
}

#[test]
fn unimplemented_key() {
    let text = format!("{BASE}message-transformer:\n  class: com.example.T\n");
    assert_error(
        "unimplemented",
        &text,
        "message-transformer",
        10,
        "not implemented in sluice",
    );
}

#[test]
fn every_error_is_reported() {
    let dir = Dir::new("many");
    let text = BASE
        .replace("  port: 4000\n", "  port: 4000\n  colour: blue\n")
        .replace("  destinations: [es]", "  destinations: [es, ghost]");
    let (code, _, err) = check(&dir, &text);
    assert_eq!(code, 2);
    assert!(err.contains("2 errors"), "{err}");
    assert!(err.contains("line 3: service.colour: unknown key"), "{err}");
    assert!(
        err.contains("line 10: routing.destinations[1]: route to undefined destination `ghost`"),
        "{err}"
    );
}

#[test]
fn run_refuses_a_bad_config() {
    let dir = Dir::new("run");
    let file = dir.write(
        "sluice.yml",
        &BASE.replace("    urls:", "    urlz: []\n    urls:"),
    );
    let out = sluice(&["run", "--config", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 5: destinations.es.urlz"), "{err}");
}

#[test]
fn avro_schema_file_and_batch_framing() {
    let dir = Dir::new("avro-ok");
    let schema = sluice_codec::encode::avro::DEFAULT_SCHEMA;
    dir.write("schema.avsc", schema);
    let text = format!(
        "{BASE}format:\n  mode: avro\n  schema-file: schema.avsc\n  stringify-map-keys: false\n\
         namespaces:\n  logs:\n    format:\n      mode: json\n      batch-framing: json-array\n"
    );
    let (code, out, err) = check(&dir, &text);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "[0] avro (schema {} bytes, stringify-map-keys false)",
            schema.len()
        )),
        "{out}"
    );
    assert!(out.contains("[1] json (batches as a JSON array)"), "{out}");
    // An option of another mode is refused.
    let text = text.replace("  stringify-map-keys: false\n", "  metadata-key: m\n");
    let (code, _, err) = check(&dir, &text);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "line 13: format.metadata-key: `metadata-key` has no meaning with `mode: avro`"
        ),
        "{err}"
    );
}

/// A CA (`ca.pem`, `ca.key`) and a server certificate (`server.pem`,
/// `server.key`) in `dir`: copies of the shared test PKI's files.
fn make_pki(dir: &Dir) {
    let name = dir.0.file_name().unwrap().to_string_lossy().into_owned();
    let pki = Pki::new(&format!("check-{name}"));
    for file in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        std::fs::copy(pki.path(file), dir.0.join(file)).unwrap();
    }
}

#[test]
fn tls_listener_and_https_destination() {
    let dir = Dir::new("tls");
    make_pki(&dir);
    let text = "\
service:
  port: 4000
  tls:
    port: 4443
    cert-file: server.pem
    key-file: server.key
    ca-file: ca.pem
destinations:
  secure:
    urls: [https://localhost:8443/in]
    tls:
      ca-file: ca.pem
routing:
  mode: static-multi-destination
  destinations: [secure]
port-based-config:
  4443:
    routing:
      mode: skip
";
    let (code, out, err) = check(&dir, text);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0.0.0.0:4443 (tls)"), "{out}");
    assert!(
        out.contains("[0] secure: HTTP_2 POST") && out.contains(" tls"),
        "{out}"
    );
    assert!(out.contains("skip  <- port 4443"), "{out}");

    // A key that does not belong to the certificate, a port that is not
    // listened on, an https URL without a CA: each named with its line.
    let bad = text
        .replace("    key-file: server.key", "    key-file: ca.key")
        .replace("  4443:\n", "  4444:\n")
        .replace("    tls:\n      ca-file: ca.pem\n", "");
    let (code, _, err) = check(&dir, &bad);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 5: service.tls.cert-file: certificate") && err.contains("ca.key"),
        "{err}"
    );
    assert!(
        err.contains("line 10: destinations.secure.urls: https:// URLs need `tls.ca-file`"),
        "{err}"
    );
    assert!(
        err.contains(
            "line 15: port-based-config.4444: port 4444 is not one of the listening ports"
        ),
        "{err}"
    );
}

#[test]
fn run_refuses_bad_flags() {
    let dir = Dir::new("flags");
    let file = dir.write("sluice.yml", BASE);
    let file = file.to_str().unwrap();
    for (flags, words) in [
        (
            &["--cores", "3-1"][..],
            "--cores: `3-1` is not a CPU number or range",
        ),
        (&["--shards", "0"][..], "--shards must be at least 1"),
        (
            &["--cores", "0,1", "--shards", "3"][..],
            "--shards 3 does not match the 2 CPUs",
        ),
    ] {
        let out = sluice(&[&["run", "--config", file][..], flags].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(words), "{flags:?}: {err}");
    }
}

#[test]
fn a_reload_keeps_a_tls_pool_until_its_files_change() {
    // The shards key a destination's pool by its settings; for TLS that is
    // what the config was built from, so an unchanged file keeps the pool
    // (and its connections) and a new certificate replaces it.
    let dir = Dir::new("tls-identity");
    make_pki(&dir);
    let text = "\
destinations:
  secure:
    urls: [https://localhost:8443/in]
    tls:
      ca-file: ca.pem
routing:
  mode: static-multi-destination
  destinations: [secure]
";
    let key = || {
        let c = sluice::config::load_str(text, &dir.0).unwrap();
        sluice_shards::dest::Pool::key_of(&c.plan.destinations[0])
    };
    let first = key();
    assert_eq!(first, key(), "the same files give the same pool");
    make_pki(&dir);
    assert_ne!(first, key(), "a new CA file gives a new pool");
}
