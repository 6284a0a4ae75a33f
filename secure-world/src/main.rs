//! The secure world as its own long-lived process: it serves the SMC register-frame conduit on
//! a Unix socket and reaches normal-world RAM through the shared RAM file, so it outlives every
//! normal-world boot, as TrustZone does.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use secure_world::{Config, SecureWorld};
use tee_rt::conduit::serve_conduit;
use tee_rt::ram::{RamFile, DEFAULT_RAM_BASE, DEFAULT_RAM_BYTES};

/// OP-TEE OS behavioural model, serving the SMC conduit.
#[derive(Debug, Parser)]
#[command(name = "secure-world", version)]
struct Args {
    /// Unix socket to listen on for the SMC conduit (one normal world at a time).
    #[arg(long)]
    conduit: PathBuf,
    /// The normal-world RAM file (created sparse when missing).
    #[arg(long)]
    ram: PathBuf,
    /// Size of normal-world RAM in bytes.
    #[arg(long, default_value_t = DEFAULT_RAM_BYTES)]
    ram_size: u64,
    /// Secure threads (CFG_NUM_THREADS).
    #[arg(long)]
    threads: Option<usize>,
    /// Boot nonce: the only source of variation in the model.
    #[arg(long, default_value_t = 1)]
    nonce: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("secure-world: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut ram = RamFile::open_at(&args.ram, DEFAULT_RAM_BASE, args.ram_size)?;
    let mut config = Config {
        ram_size: args.ram_size,
        ..Config::default()
    };
    if let Some(threads) = args.threads {
        config.threads = threads;
    }
    let mut world = SecureWorld::new(config, args.nonce);
    // A stale socket from an earlier run would make bind fail.
    let _ = std::fs::remove_file(&args.conduit);
    let listener = UnixListener::bind(&args.conduit)?;
    tracing::info!(conduit = %args.conduit.display(), "secure world up");
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                continue;
            }
        };
        tracing::info!("normal world connected");
        // State survives the connection: a new teed (restart, kexec) reconnects to the same world.
        if let Err(error) = serve_conduit(stream, |regs| world.smc(&mut ram, regs)) {
            tracing::warn!(%error, "conduit ended");
        }
    }
    Ok(())
}
