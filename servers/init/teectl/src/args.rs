//! teectl's command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tee_proto::lifecycle::ServerKind;

use teesys_root::DEFAULT_STATE_DIR;

/// Operator tool for the hosted teesys stack.
#[derive(Debug, Parser)]
#[command(name = "teectl", version)]
pub struct Cli {
    /// State directory of the stack (sockets, RAM file, logs).
    #[arg(long, global = true, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Machine-readable output (one JSON document per command, or per line for progress).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the secure world and init as daemons; wait until every server settled.
    Up(UpArgs),
    /// Orderly shutdown of the normal world, then stop init and the secure world.
    Down,
    /// Servers, generations, and what the secure world holds.
    Status,
    /// Orderly kexec (shutdown IPC, next boot; the secure world keeps its state).
    Kexec {
        /// Repeat this many times.
        #[arg(long, default_value_t = 1)]
        cycles: u32,
    },
    /// Crash the normal world into the crash kernel.
    Crash {
        /// No shutdown IPC at all.
        #[arg(long)]
        hard: bool,
    },
    /// Orderly reboot: shutdown IPC, machine reset (the secure world restarts), next boot.
    Reboot,
    /// Operator restart of one server (new generation at once).
    Restart { server: Server },
    /// SIGKILL one server; init's restart policy brings it back.
    Kill { server: Server },
    /// Talk to tpmd as a TPM consumer.
    #[command(subcommand)]
    Tpm(TpmCommand),
    /// Talk to bnxtd as the NIC driver.
    #[command(subcommand)]
    Bnxt(BnxtCommand),
    /// Long runs with invariant checks.
    #[command(subcommand)]
    Soak(SoakCommand),
    /// The whole story: up, TPM and NIC traffic, kexecs, a crash, a reset, a teed kill, down.
    Demo(DemoArgs),
    /// The lifecycle picture (SVG): heap and registrations per kexec, Linux 5.13 beside
    /// teesys, mainline's leak under OP-TEE 4.x, and the running stack's kexec cycle times.
    Report(ReportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Where the SVG goes.
    #[arg(long, default_value = "teesys-lifecycle.svg")]
    pub out: PathBuf,
    /// Kexec cycles to time on the running stack (none when no stack runs).
    #[arg(long, default_value_t = 20)]
    pub kexecs: u32,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Normal-world RAM in bytes.
    #[arg(long, default_value_t = tee_rt::ram::DEFAULT_RAM_BYTES)]
    pub ram_size: u64,
    /// Also serve the swtpm-protocol sockets (swtpm.sock, swtpm.sock.ctrl) through tpmd.
    #[arg(long)]
    pub swtpm: bool,
    /// Give up waiting for the stack after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_s: u64,
}

#[derive(Debug, Subcommand)]
pub enum TpmCommand {
    /// TPM2_Startup(CLEAR); "already started" (TPM_RC_INITIALIZE) counts as success: the fTPM
    /// TA starts the TPM itself once per secure-world lifetime.
    Startup,
    /// TPM2_GetRandom.
    Getrandom {
        #[arg(default_value_t = 16)]
        bytes: u16,
    },
    /// TPM2_PCR_Read of one SHA-256 PCR.
    Pcrread {
        #[arg(default_value_t = 0)]
        index: u8,
    },
}

#[derive(Debug, Subcommand)]
pub enum BnxtCommand {
    /// Fast-boot the NIC firmware.
    Load,
    /// Copy the whole NIC crash dump into FILE and print its checksum.
    Coredump { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum SoakCommand {
    /// Orderly kexecs, checking after each that nothing leaked.
    Kexec {
        #[arg(long, default_value_t = 100)]
        cycles: u32,
    },
    /// Random kill -9, kexec, crash, reset and restart, checking invariants after every orderly
    /// step, with live consumers (TPM NV counter, GetRandom, PCR extends, coredump chunks)
    /// whose every answer is checked; fd and RSS of init and the secure world must stay flat.
    Chaos {
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The chaos driver alone, without live consumers.
        #[arg(long)]
        no_consumers: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// State directory of the demo stack (default: a fresh one beside the binaries).
    #[arg(long)]
    pub demo_dir: Option<PathBuf>,
    /// Normal-world RAM in bytes.
    #[arg(long, default_value_t = tee_rt::ram::DEFAULT_RAM_BYTES)]
    pub ram_size: u64,
    /// Leave the stack running at the end.
    #[arg(long)]
    pub keep: bool,
}

/// A supervised server, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Server {
    Teed,
    Tpmd,
    Bnxtd,
}

impl From<Server> for ServerKind {
    fn from(server: Server) -> ServerKind {
        match server {
            Server::Teed => ServerKind::Teed,
            Server::Tpmd => ServerKind::Tpmd,
            Server::Bnxtd => ServerKind::Bnxtd,
        }
    }
}
