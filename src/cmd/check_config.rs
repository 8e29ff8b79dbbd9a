//! `sluice check-config` (not written yet).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct CheckConfigArgs {}

pub fn run(_args: CheckConfigArgs) -> ExitCode {
    eprintln!("sluice: check-config is not implemented yet");
    ExitCode::from(2)
}
