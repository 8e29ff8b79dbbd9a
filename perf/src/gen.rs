//! `sluice gen` (not written yet).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct GenArgs {}

pub fn run(_args: GenArgs) -> ExitCode {
    eprintln!("sluice: gen is not implemented yet");
    ExitCode::from(2)
}
