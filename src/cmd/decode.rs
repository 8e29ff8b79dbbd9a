//! `sluice decode` (not written yet).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct DecodeArgs {}

pub fn run(_args: DecodeArgs) -> ExitCode {
    eprintln!("sluice: decode is not implemented yet");
    ExitCode::from(2)
}
