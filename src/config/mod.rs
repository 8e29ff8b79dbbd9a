//! The YAML config: a drop-in for Aerospike's `aerospike-esp-outbound.yml`
//! (docs/CONFIG.md), validated completely and compiled into the shards'
//! [`Plan`](sluice_shards::plan::Plan).
//!
//! This module owns reading the file, collecting *every* error with its key
//! path and line, and the compiled result. A file either compiles as a whole
//! or changes nothing: `sluice run` refuses to start on it and a reload
//! keeps the plan it has.

mod compile;
mod format;
mod lines;
mod tree;

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use compile::Compiled;
use sluice_shards::plan::{HttpVersion, RouteAction};

/// One problem of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path (`destinations.es.urls[1]`); empty for the whole file.
    pub key: String,
    /// 1-based line of the key, when it could be found.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem of a config file; the file is not used.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} error{}:",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  {}: {e}", self.file.display())?;
        }
        Ok(())
    }
}

/// `logging` (used by the control thread).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    pub file: Option<PathBuf>,
    pub console: bool,
    /// (module, level); the module `root` is the default level.
    pub levels: Vec<(String, String)>,
    pub format: LogFormat,
    pub ticker: Duration,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            file: None,
            console: true,
            levels: Vec::new(),
            format: LogFormat::Simple,
            ticker: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Simple,
    Json,
}

/// Reads, validates and compiles a config file.
pub fn load(path: &Path) -> Result<Compiled, ConfigErrors> {
    let fail = |e: ConfigError| ConfigErrors {
        file: path.to_owned(),
        errors: vec![e],
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(ConfigError {
            key: String::new(),
            line: None,
            message: format!("cannot read the config file: {e}"),
        })
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    load_str(&text, base).map_err(|errors| ConfigErrors {
        file: path.to_owned(),
        errors,
    })
}

/// Validates and compiles config text; relative file names resolve against
/// `base`.
pub fn load_str(text: &str, base: &Path) -> Result<Compiled, Vec<ConfigError>> {
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        vec![ConfigError {
            key: String::new(),
            line: e.location().map(|l| l.line()),
            message: format!("not valid YAML: {e}"),
        }]
    })?;
    if let Err(e) = value.apply_merge() {
        return Err(vec![ConfigError {
            key: String::new(),
            line: e.location().map(|l| l.line()),
            message: format!("bad YAML merge key: {e}"),
        }]);
    }
    let mut ctx = tree::Ctx::new(lines::LineIndex::new(text));
    let compiled = compile::compile(&mut ctx, &value, base);
    match compiled {
        Some(c) if ctx.errors.is_empty() => Ok(c),
        _ => {
            let mut errors = ctx.errors;
            if errors.is_empty() {
                errors.push(ConfigError {
                    key: String::new(),
                    line: None,
                    message: "the config could not be compiled".into(),
                });
            }
            errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            Err(errors)
        }
    }
}

impl Compiled {
    /// The plan in words, for `check-config` and the start-up log. Header
    /// values are never shown (they may be credentials).
    pub fn describe(&self) -> String {
        let p = &self.plan;
        let mut s = String::new();
        let _ = writeln!(s, "listeners:");
        for l in &p.service.listeners {
            let tls = if l.tls.is_some() { " (tls)" } else { "" };
            let _ = writeln!(s, "  {}{tls}", l.addr);
        }
        if let Some(m) = p.service.manage {
            let _ = writeln!(s, "manage: {m}");
        }
        let _ = writeln!(
            s,
            "max-concurrent-records: {}, ack buffering: {}, max-message-bytes: {}",
            p.service.max_concurrent_records, p.service.ack_buffering, p.service.max_message_bytes
        );
        if let Some(d) = &p.dead_letter {
            let fsync = match d.fsync {
                sluice_shards::plan::Fsync::Always => "always",
                sluice_shards::plan::Fsync::Batch => "batch",
                sluice_shards::plan::Fsync::Never => "never",
            };
            let _ = writeln!(s, "dead letters: {} (fsync {fsync})", d.file.display());
        }
        let _ = writeln!(s, "destinations:");
        for (i, d) in p.destinations.iter().enumerate() {
            let version = match d.version {
                HttpVersion::Http1 => "HTTP_1_1",
                HttpVersion::Http2 => "HTTP_2",
            };
            let _ = writeln!(
                s,
                "  [{i}] {}: {version} {} call-timeout {}ms connect-timeout {}ms max-connections-per-endpoint {}{}{}",
                d.name,
                d.method,
                d.call_timeout.as_millis(),
                d.connect_timeout.as_millis(),
                d.max_connections_per_endpoint,
                if d.tls.is_some() { " tls" } else { "" },
                d.gzip_threshold.map(|t| format!(" gzip>={t}")).unwrap_or_default(),
            );
            for e in &d.endpoints {
                let _ = writeln!(s, "      {}", e.url);
            }
            for (name, _) in &d.headers {
                let _ = writeln!(s, "      header {name}: <hidden>");
            }
            let ranges = |set: &sluice_shards::plan::StatusSet| {
                set.0
                    .iter()
                    .map(|(lo, hi)| {
                        if lo == hi {
                            lo.to_string()
                        } else {
                            format!("{lo}-{hi}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let r = &d.retry;
            let _ = writeln!(
                s,
                "      success {}; retry {} attempts, backoff {}-{}ms on {}; drop {}; queue {}; connection-ttl {}",
                ranges(&d.success),
                r.max_attempts,
                r.initial_backoff.as_millis(),
                r.max_backoff.as_millis(),
                ranges(&r.retry_statuses),
                ranges(&r.drop_statuses),
                d.max_requests_queued_per_endpoint,
                d.connection_ttl
                    .map_or_else(|| "forever".to_owned(), |t| format!("{}ms", t.as_millis())),
            );
            if let Some(h) = &d.health_check {
                let _ = writeln!(
                    s,
                    "      health-check {} {} every {}s, timeout {}ms, healthy after {}, unhealthy after {}",
                    h.method,
                    h.path,
                    h.interval.as_secs(),
                    h.call_timeout.as_millis(),
                    h.healthy_threshold,
                    h.unhealthy_threshold
                );
            }
        }
        let _ = writeln!(s, "formats:");
        for (i, f) in self.format_names.iter().enumerate() {
            let _ = writeln!(s, "  [{i}] {f}");
        }
        let _ = writeln!(s, "routes:");
        for (i, r) in p.routes.iter().enumerate() {
            let action = match &r.action {
                RouteAction::Skip => "skip".to_owned(),
                RouteAction::Deliver {
                    format,
                    destinations,
                } => {
                    let names: Vec<&str> = destinations
                        .iter()
                        .filter_map(|d| p.destinations.get(*d).map(|d| d.name.as_str()))
                        .collect();
                    format!("deliver format [{format}] to {}", names.join(", "))
                }
            };
            let batching = r
                .batching
                .as_ref()
                .map(|b| {
                    format!(
                        ", batching {} records/{} bytes/{}ms",
                        b.max_records,
                        b.max_bytes,
                        b.interval.as_millis()
                    )
                })
                .unwrap_or_default();
            let ordering = r
                .ordering
                .map(|o| {
                    format!(
                        ", record-ordering ttl {}s, at most {} keys",
                        o.ttl.as_secs(),
                        o.max_keys
                    )
                })
                .unwrap_or_default();
            let origins = self
                .route_origins
                .get(i)
                .map(|o| o.join("; "))
                .unwrap_or_default();
            let _ = writeln!(s, "  [{i}] {action}{batching}{ordering}  <- {origins}");
        }
        s
    }
}

#[cfg(test)]
mod tests;
