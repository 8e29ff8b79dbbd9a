//! `sluice check-config FILE`: validate a config file and print the compiled
//! plan (exit 0), or every error with its key and line (exit 2).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct CheckConfigArgs {
    /// The config file (aerospike-esp-outbound.yml format).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

pub fn run(args: CheckConfigArgs) -> ExitCode {
    match sluice::config::load(&args.file) {
        Ok(compiled) => {
            println!("{}: ok", args.file.display());
            print!("{}", compiled.describe());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::from(2)
        }
    }
}
