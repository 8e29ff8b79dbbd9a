//! The `sluice` command: the connector (`run`), its config checker, and the
//! tools around it (`decode`, `gen`, `sink`, `demo`). The config and the
//! control thread live in the library half (`src/lib.rs`).

mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// jemalloc, not glibc's malloc: a burst of held records (a stalled or slow
/// destination holds thousands in flight, each a few KiB) leaves glibc's
/// arena of the shard thread at its high-water mark — freed but fragmented,
/// never returned, so RSS stayed +19 MiB after a 2-s stall of 4 096 records.
/// jemalloc returns the freed pages after its decay time (10 s): RSS came
/// back within 3 MiB of the pre-burst level, at no more CPU per record
/// (perf/RESULTS.md, Soak).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Aerospike XDR change notifications delivered over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once at start-up: the size of the biggest variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the connector: XDR in, HTTP out.
    Run(cmd::run::RunArgs),
    /// Validate a config file and print the compiled plan, or the errors.
    CheckConfig(cmd::check_config::CheckConfigArgs),
    /// Decode captured XDR frames and print each record in a format.
    Decode(cmd::decode::DecodeArgs),
    /// Act like XDR: send change notifications and measure ack latency.
    Gen(sluice_perf::gen::GenArgs),
    /// Act like an HTTP destination: count, decode and time what arrives.
    Sink(sluice_perf::sink::SinkArgs),
    /// Run a sink, the connector and the generator in one process.
    Demo(cmd::demo::DemoArgs),
    /// Dead letters: list them, or send them again (`replay`).
    Dlq(cmd::dlq::DlqArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::CheckConfig(args) => cmd::check_config::run(args),
        Command::Decode(args) => cmd::decode::run(args),
        Command::Gen(args) => sluice_perf::gen::run(args),
        Command::Sink(args) => sluice_perf::sink::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Dlq(args) => cmd::dlq::run(args),
    }
}
