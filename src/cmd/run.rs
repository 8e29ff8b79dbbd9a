//! `sluice run` (not written yet).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct RunArgs {}

pub fn run(_args: RunArgs) -> ExitCode {
    eprintln!("sluice: run is not implemented yet");
    ExitCode::from(2)
}
