//! `sluice demo`: the whole pipe in one process, so a newcomer sees it work
//! with one command. A sink (HTTP/2, h2c) on a loopback port, the connector
//! with a built-in config pointing at it, and the generator sending the
//! standard record at XDR's pace for `--seconds`; the generator's progress
//! and final latency histogram are what the user reads.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use sluice_perf::gen::GenArgs;
use sluice_perf::sink::SinkArgs;
use sluice_shards::RuntimeOptions;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// How long the generator sends.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Generator rate in records per second, or `max`.
    #[arg(long, default_value = "20000")]
    pub rate: String,
    /// Destination protocol: HTTP_2 (h2c) or HTTP_1_1.
    #[arg(long, default_value = "HTTP_2")]
    pub protocol: String,
    /// Output format the connector writes (json, flat-json, message-pack, avro, xdr).
    #[arg(long, default_value = "json")]
    pub format: String,
}

/// Wraps a subcommand's clap arguments so they can be parsed from a list.
#[derive(Parser)]
struct Wrap<T: clap::Args> {
    #[command(flatten)]
    args: T,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The demo's connector config: every record of namespace `test` to the sink.
fn demo_config(xdr: u16, sink: u16, protocol: &str, format: &str) -> String {
    format!(
        "service:\n  port: {xdr}\n  address: 127.0.0.1\n\
         destinations:\n  sink:\n    urls: [\"http://127.0.0.1:{sink}/ingest\"]\n    protocol: {protocol}\n\
         routing:\n  mode: static-multi-destination\n  destinations: [sink]\n\
         format:\n  mode: {format}\n"
    )
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("sluice demo: {msg}");
    ExitCode::from(1)
}

pub fn run(args: DemoArgs) -> ExitCode {
    let (xdr, sink_port) = match (free_port(), free_port()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail(format_args!("no free loopback port: {e}")),
    };
    let sink_addr = SocketAddr::from(([127, 0, 0, 1], sink_port));
    let sink_protocol = if args.protocol.eq_ignore_ascii_case("HTTP_1_1") {
        "h1"
    } else {
        "h2c"
    };

    // 1. The sink, for as long as the generator runs plus a margin.
    let sink_args = match Wrap::<SinkArgs>::try_parse_from([
        "sink".to_string(),
        "--listen".into(),
        sink_addr.to_string(),
        "--protocol".into(),
        sink_protocol.into(),
        "--duration".into(),
        format!("{}s", args.seconds + 5),
        "--quiet".into(),
    ]) {
        Ok(w) => w.args,
        Err(e) => return fail(e),
    };
    let sink = std::thread::spawn(move || sluice_perf::sink::run(sink_args));

    // 2. The connector, one shard, on a built-in config.
    let text = demo_config(xdr, sink_port, &args.protocol, &args.format);
    let compiled = match sluice::config::load_str(&text, Path::new(".")) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("sluice demo: built-in config: {e}");
            }
            return ExitCode::from(2);
        }
    };
    if let Err(e) = sluice_shards::rt::probe_io_uring() {
        return fail(format_args!("io_uring is not usable: {e}"));
    }
    let runtime =
        match sluice_shards::start(Arc::new(compiled.plan), RuntimeOptions { cpus: vec![None] }) {
            Ok(rt) => rt,
            Err(e) => return fail(format_args!("cannot start the connector: {e}")),
        };
    eprintln!(
        "sluice demo: sink on {sink_addr} ({sink_protocol}), connector on 127.0.0.1:{xdr} \
         ({} {}), generator for {} s at {} records/s",
        args.protocol, args.format, args.seconds, args.rate
    );

    // 3. The generator, in the foreground: its report is the demo's output.
    let gen_args = match Wrap::<GenArgs>::try_parse_from([
        "gen".to_string(),
        "--target".into(),
        format!("127.0.0.1:{xdr}"),
        "--shape".into(),
        "standard".into(),
        "--rate".into(),
        args.rate.clone(),
        "--duration".into(),
        format!("{}s", args.seconds),
    ]) {
        Ok(w) => w.args,
        Err(e) => return fail(e),
    };
    let code = sluice_perf::gen::run(gen_args);

    runtime.shutdown(Duration::from_secs(2));
    if let Err(e) = runtime.wait() {
        eprintln!("sluice demo: connector: {e}");
    }
    match sink.join() {
        Ok(_) => code,
        Err(_) => fail("the sink thread panicked"),
    }
}
