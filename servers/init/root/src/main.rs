//! `teesys-init`: the hosted root task. Boots the normal world (teed, then tpmd and bnxtd),
//! supervises it, runs kexec, reboot and crash transitions, and serves teectl on `init.ctl`.
//! Its launcher (`teectl up`) starts the secure-world process first and hands init the other end
//! of the secure world's control channel (`TEESYS_SECURE_CONTROL_FD`): init reaches the secure
//! world by that capability alone.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use teesys_root::{self as host, HostConfig, StatePaths, DEFAULT_STATE_DIR};

/// teesys root task (hosted): supervisor of teed, tpmd and bnxtd.
#[derive(Debug, Parser)]
#[command(name = "teesys-init", version)]
struct Args {
    /// State directory shared with the secure world and teectl.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Size of normal-world RAM in bytes (the secure world's --ram-size).
    #[arg(long, default_value_t = tee_rt::ram::DEFAULT_RAM_BYTES)]
    ram_size: u64,
    /// Also hand tpmd the swtpm-protocol sockets (swtpm.sock, swtpm.sock.ctrl).
    #[arg(long)]
    swtpm: bool,
    /// Directory of the teed, tpmd and bnxtd binaries (default: beside this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// How long a new server incarnation may take to answer Hello.
    #[arg(long)]
    start_deadline_ms: Option<u64>,
    /// Per step of an orderly kexec or reboot.
    #[arg(long)]
    shutdown_deadline_ms: Option<u64>,
    /// Per step of the best-effort shutdown on the crash path.
    #[arg(long)]
    crash_shutdown_deadline_ms: Option<u64>,
}

fn main() -> ExitCode {
    tee_rt::logging::init("init");
    let args = Args::parse();
    let secure = match tee_rt::spawn::secure_control_from_env() {
        Ok(secure) => secure,
        Err(error) => {
            tracing::error!("teesys-init: no control channel to the secure world: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = HostConfig::new(StatePaths::new(&args.state_dir), args.ram_size, secure)
        .and_then(|mut config| {
            config.swtpm = args.swtpm;
            config.bin_dir = args.bin_dir;
            let deadlines = &mut config.init;
            if let Some(ms) = args.start_deadline_ms {
                deadlines.start_deadline_ms = ms;
            }
            if let Some(ms) = args.shutdown_deadline_ms {
                deadlines.shutdown_deadline_ms = ms;
            }
            if let Some(ms) = args.crash_shutdown_deadline_ms {
                deadlines.crash_shutdown_deadline_ms = ms;
            }
            host::run(config)
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("teesys-init: {error}");
            ExitCode::FAILURE
        }
    }
}
