//! `sluice demo` (not written yet).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {}

pub fn run(_args: DemoArgs) -> ExitCode {
    eprintln!("sluice: demo is not implemented yet");
    ExitCode::from(2)
}
