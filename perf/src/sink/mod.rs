//! `sluice sink` (not written yet).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct SinkArgs {}

pub fn run(_args: SinkArgs) -> ExitCode {
    eprintln!("sluice: sink is not implemented yet");
    ExitCode::from(2)
}
