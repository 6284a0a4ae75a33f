//! `teectl`: operator tool for the hosted teesys stack (the commands are in this crate's library).

use std::process::ExitCode;

use clap::Parser;
use teectl::{self as cli, args::Cli};

fn main() -> ExitCode {
    // Quiet unless asked: teectl's output is its report.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match cli::run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("teectl: {error}");
            ExitCode::FAILURE
        }
    }
}
