//! `hookstream-api`: wiring only; the service lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// hookstream management API.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file; `HOOKSTREAM_*` variables override it.
    #[arg(long, env = "HOOKSTREAM_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    hookstream_core::service::main("hookstream-api", args.config.as_deref(), hookstream_api::run)
}
