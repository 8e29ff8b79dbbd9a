//! One module per subcommand; each owns its clap arguments and its `run`.

pub mod check_config;
pub mod decode;
pub mod demo;
pub mod dlq;
pub mod run;
