//! Logging per the config's `logging` section: console and/or file, a level
//! per module, `simple` or `json` lines.
//!
//! Secrets never reach a log from here: the config loader marks header
//! values sensitive and its descriptions hide them; nothing in this module
//! prints the plan's headers or key files' contents.

use std::fs::OpenOptions;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LoggingConfig};

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot open log file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("bad log level `{0}`: {1}")]
    Filter(String, String),
    #[error("a logger is already installed")]
    Installed,
}

/// The filter directives: `root` is the default level; `cli_level` (from
/// `--log-level`) overrides it.
pub fn directives(cfg: &LoggingConfig, cli_level: Option<&str>) -> String {
    let root = cli_level
        .map(str::to_owned)
        .or_else(|| {
            cfg.levels
                .iter()
                .find(|(m, _)| m == "root")
                .map(|(_, l)| l.clone())
        })
        .unwrap_or_else(|| "info".to_owned());
    let mut parts = vec![root];
    for (module, level) in &cfg.levels {
        if module != "root" {
            // Config names use dashes like the crates; tracing targets use `_`.
            parts.push(format!("{}={level}", module.replace('-', "_")));
        }
    }
    parts.join(",")
}

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

fn layer<W>(format: LogFormat, writer: W, ansi: bool) -> Boxed
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Simple => base.boxed(),
        LogFormat::Json => base.json().boxed(),
    }
}

/// Installs the process's logger.
pub fn init(cfg: &LoggingConfig, cli_level: Option<&str>) -> Result<(), LoggingError> {
    let d = directives(cfg, cli_level);
    let filter =
        EnvFilter::try_new(&d).map_err(|e| LoggingError::Filter(d.clone(), e.to_string()))?;
    let mut layers: Vec<Boxed> = Vec::new();
    if cfg.console {
        layers.push(layer(cfg.format, std::io::stderr, false));
    }
    if let Some(path) = &cfg.file {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| LoggingError::File {
                path: path.display().to_string(),
                source,
            })?;
        layers.push(layer(cfg.format, Mutex::new(file), false));
    }
    // The filter sits behind a reload layer so that a config reload can
    // change levels; outputs and format need a restart.
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init()
        .map_err(|_| LoggingError::Installed)?;
    let _ = RELOAD.set(Box::new(move |f| {
        handle.reload(f).map_err(|e| e.to_string())
    }));
    Ok(())
}

type Reloader = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

static RELOAD: OnceLock<Reloader> = OnceLock::new();

/// Applies new levels to the installed logger (after a config reload).
pub fn set_levels(cfg: &LoggingConfig, cli_level: Option<&str>) -> Result<(), LoggingError> {
    let d = directives(cfg, cli_level);
    let filter =
        EnvFilter::try_new(&d).map_err(|e| LoggingError::Filter(d.clone(), e.to_string()))?;
    match RELOAD.get() {
        Some(reload) => reload(filter).map_err(|e| LoggingError::Filter(d, e)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_from_levels() {
        let cfg = LoggingConfig {
            levels: vec![
                ("root".into(), "warn".into()),
                ("sluice-shards".into(), "debug".into()),
            ],
            ..Default::default()
        };
        assert_eq!(directives(&cfg, None), "warn,sluice_shards=debug");
        assert_eq!(directives(&cfg, Some("trace")), "trace,sluice_shards=debug");
        assert_eq!(directives(&LoggingConfig::default(), None), "info");
    }
}
