//! `sluice run`: load the config (refusing to start on any error), start the
//! shards, and hand over to the control thread until shutdown.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The config file (aerospike-esp-outbound.yml format).
    #[arg(long, short = 'c', env = "SLUICE_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
}

pub fn run(args: RunArgs) -> ExitCode {
    match sluice::config::load(&args.config) {
        Ok(_) => {
            eprintln!("sluice: the data plane is not wired yet");
            ExitCode::from(2)
        }
        Err(errors) => {
            eprint!("sluice: refusing to start: {errors}");
            ExitCode::from(2)
        }
    }
}
