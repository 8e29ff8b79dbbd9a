//! The compiled route table answers with the documented precedence: set,
//! then namespace, then port, then the default.

use std::path::Path;

use sluice_shards::plan::RouteAction;

use super::load_str;

const TEXT: &str = "\
service:
  port: [3000, 3001]
destinations:
  a:
    urls: [http://127.0.0.1:1/a]
  b:
    urls: [http://127.0.0.1:1/b]
routing:
  mode: static-multi-destination
  destinations: [a]
namespaces:
  users:
    routing:
      mode: static-multi-destination
      destinations: [b]
    sets:
      quiet:
        routing:
          mode: skip
port-based-config:
  3001:
    format:
      mode: message-pack
    namespaces:
      users:
        sets:
          loud:
            routing:
              mode: static-multi-destination
              destinations: [a, b]
";

/// (destination names, format index) of the route a record takes; None = skip.
fn route(text: &str, port: u16, ns: &str, set: Option<&str>) -> Option<(Vec<String>, usize)> {
    let c = load_str(text, Path::new(".")).unwrap();
    let id = c.plan.table.lookup(port, ns, set);
    match &c.plan.routes[id].action {
        RouteAction::Skip => None,
        RouteAction::Deliver {
            format,
            destinations,
        } => Some((
            destinations
                .iter()
                .map(|d| c.plan.destinations[*d].name.clone())
                .collect(),
            *format,
        )),
    }
}

#[test]
fn precedence_set_namespace_port_default() {
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Default: json (format 0) to a.
    assert_eq!(route(TEXT, 3000, "test", None), Some((names(&["a"]), 0)));
    // Namespace over default.
    assert_eq!(
        route(TEXT, 3000, "users", Some("x")),
        Some((names(&["b"]), 0))
    );
    // Set over namespace.
    assert_eq!(route(TEXT, 3000, "users", Some("quiet")), None);
    // Port over default: message-pack, still to a.
    let (dests, fmt) = route(TEXT, 3001, "test", None).unwrap();
    assert_eq!(dests, names(&["a"]));
    assert_ne!(fmt, 0);
    // A port's set inherits the port's format; its own routing wins.
    assert_eq!(
        route(TEXT, 3001, "users", Some("loud")),
        Some((names(&["a", "b"]), fmt))
    );
    // A port-less namespace entry still applies on the port.
    assert_eq!(route(TEXT, 3001, "users", Some("quiet")), None);
}

#[test]
fn identical_formats_are_built_once() {
    let c = load_str(TEXT, Path::new(".")).unwrap();
    assert_eq!(c.plan.formats.len(), 2);
    assert_eq!(c.format_names.len(), 2);
    assert!(
        c.format_names[1].starts_with("message-pack"),
        "{:?}",
        c.format_names
    );
}

#[test]
fn defaults_are_the_originals() {
    let c = load_str(TEXT, Path::new(".")).unwrap();
    let d = &c.plan.destinations[0];
    assert_eq!(d.version, sluice_shards::plan::HttpVersion::Http2);
    assert_eq!(d.call_timeout.as_millis(), 1000);
    assert_eq!(d.connect_timeout.as_millis(), 300);
    assert_eq!(d.max_connections_per_endpoint, 1);
    assert_eq!(d.max_requests_queued_per_endpoint, 32768);
    assert!(d.success.contains(200) && d.success.contains(299) && !d.success.contains(300));
    assert_eq!(d.connection_ttl, None);
    assert_eq!(d.gzip_threshold, None);
    assert_eq!(c.plan.service.max_concurrent_records, 32768);
    assert!(c.plan.service.ack_buffering);
    assert_eq!(c.plan.service.listeners[0].addr.to_string(), "0.0.0.0:3000");
    assert_eq!(c.plan.service.manage, None);
    assert_eq!(c.logging.ticker.as_secs(), 10);
}

#[test]
fn deep_errors_carry_their_line() {
    let text = TEXT.replace(
        "          loud:\n            routing:\n              mode: static-multi-destination\n              destinations: [a, b]\n",
        "          loud:\n            routing:\n              mode: static-multi-destination\n              destinations:\n                - a\n                - c\n            format:\n              mode: avro\n              metadata-key: x\n",
    );
    assert_ne!(text, TEXT);
    let errors = load_str(&text, Path::new(".")).unwrap_err();
    let found: Vec<(Option<usize>, &str)> =
        errors.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert!(
        found.contains(&(
            Some(32),
            "port-based-config.3001.namespaces.users.sets.loud.routing.destinations[1]"
        )),
        "{errors:?}"
    );
    assert!(
        found.contains(&(
            Some(35),
            "port-based-config.3001.namespaces.users.sets.loud.format.metadata-key"
        )),
        "{errors:?}"
    );
}

#[test]
fn retry_lists_ordering_and_dead_letters_compile() {
    use sluice_shards::plan::{Fsync, StatusClass};
    let c = load_str(TEXT, Path::new(".")).unwrap();
    let r = &c.plan.destinations[0].retry;
    // Defaults: retry 408, 429, 5xx; drop the other 4xx; anything else 11.
    assert_eq!(r.classify(503), StatusClass::Retry);
    assert_eq!(r.classify(429), StatusClass::Retry);
    assert_eq!(r.classify(408), StatusClass::Retry);
    assert_eq!(r.classify(400), StatusClass::Drop);
    assert_eq!(r.classify(404), StatusClass::Drop);
    assert_eq!(r.classify(302), StatusClass::Other);
    assert_eq!(c.plan.dead_letter, None);
    assert!(c.plan.routes.iter().all(|r| r.ordering.is_none()));

    let text = format!(
        "{TEXT}dead-letter:\n  file: dead.jsonl\n  fsync: batch\n\
record-ordering:\n  lut-cache-ttl-seconds: 5\n  lut-cache-max-keys: 10\n"
    )
    .replace(
        "    urls: [http://127.0.0.1:1/a]\n",
        "    urls: [http://127.0.0.1:1/a]\n    retry:\n      retry-status-codes: [409]\n      drop-status-codes: [\"5xx\"]\n",
    );
    let c = load_str(&text, Path::new("/tmp")).unwrap();
    let r = &c.plan.destinations[0].retry;
    assert_eq!(r.classify(409), StatusClass::Retry);
    assert_eq!(r.classify(503), StatusClass::Drop);
    assert_eq!(r.classify(400), StatusClass::Other);
    assert!(
        c.describe()
            .contains("dead letters: /tmp/dead.jsonl (fsync batch)"),
        "{}",
        c.describe()
    );
    assert!(
        c.describe()
            .contains("record-ordering ttl 5s, at most 10 keys"),
        "{}",
        c.describe()
    );
    let dl = c.plan.dead_letter.unwrap();
    assert_eq!(dl.file, Path::new("/tmp/dead.jsonl"));
    assert_eq!(dl.fsync, Fsync::Batch);
    let o = c.plan.routes[c.plan.table.default].ordering.unwrap();
    assert_eq!(o.ttl.as_secs(), 5);
    assert_eq!(o.max_keys, 10);
}

#[test]
fn bad_dead_letter_and_ordering_settings_are_named() {
    let text = format!(
        "{TEXT}dead-letter:\n  file: /nonexistent-dir/dead.jsonl\n  fsync: sometimes\n\
record-ordering:\n  lut-cache-max-keys: 0\n"
    );
    let errors = load_str(&text, Path::new(".")).unwrap_err();
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"dead-letter.fsync"), "{errors:?}");
    assert!(
        keys.contains(&"record-ordering.lut-cache-max-keys"),
        "{errors:?}"
    );
    let text = format!("{TEXT}dead-letter:\n  file: /nonexistent-dir/dead.jsonl\n");
    let errors = load_str(&text, Path::new(".")).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.key == "dead-letter.file" && e.message.contains("/nonexistent-dir")),
        "{errors:?}"
    );
    let text = format!("{TEXT}dead-letter:\n  fsync: always\n");
    let errors = load_str(&text, Path::new(".")).unwrap_err();
    assert!(
        errors.iter().any(|e| e.key == "dead-letter.file"),
        "{errors:?}"
    );
}
