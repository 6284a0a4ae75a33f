//! The secure world as its own long-lived process: it serves the SMC register-frame conduit and
//! reaches normal-world RAM through the shared RAM file, so it outlives every normal-world boot,
//! as TrustZone does.
//!
//! It is reachable by no name. The launcher hands it one end of its control channel (an
//! inherited seqpacket endpoint, `TEESYS_SECURE_CONTROL_FD`) and init the other; over it init
//! asks for statistics, a machine reset, or a new conduit for the next teed incarnation
//! (`tee_proto::secure`). A new conduit is a fresh socket pair: the secure world keeps one end,
//! closes the conduit it served before, and sends the other end to init, which hands it to teed
//! alone. No process can connect to the secure world, so none can take teed's place.
//!
//! The process ends when init closes the control channel: nobody can reach it any more. Each
//! conduit is served on a thread around one `Mutex`: every SMC and every control request runs
//! alone against the model, as SMCs on one core would.

mod qemu_port;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use clap::Parser;
use secure_world::ta::ftpm::FtpmTa;
use secure_world::{Config, Profile, SecureWorld, Stats};
use tee_proto::secure::{SecureInterface, SecureRequest, SecureResponse, SecureStats};
use tee_proto::{accept_request, Frame, Incoming, WireError, FRAME_MAX};
use tee_rt::conduit::serve_conduit;
use tee_rt::endpoint::{Endpoint, EndpointError};
use tee_rt::ram::{RamFile, DEFAULT_RAM_BASE, DEFAULT_RAM_BYTES};

/// The control channel speaks for the world as a whole, which has no generations.
const WORLD_GENERATION: u32 = 0;

/// OP-TEE OS behavioural model, serving the SMC conduit. Started by a launcher that hands it its
/// control channel (`TEESYS_SECURE_CONTROL_FD`).
#[derive(Debug, Parser)]
#[command(name = "secure-world", version)]
struct Args {
    /// The normal-world RAM file (created sparse when missing).
    #[arg(long)]
    ram: PathBuf,
    /// Size of normal-world RAM in bytes.
    #[arg(long, default_value_t = DEFAULT_RAM_BYTES)]
    ram_size: u64,
    /// Secure threads (CFG_NUM_THREADS).
    #[arg(long)]
    threads: Option<usize>,
    /// Core heap size in bytes (CFG_CORE_HEAP_SIZE; 65536 by default, as mk/config.mk).
    #[arg(long)]
    heap_bytes: Option<usize>,
    /// Core heap OP-TEE itself holds once booted, in bytes. A calibrated figure, not an upstream
    /// one: the default 19456 reproduces the seed's failure on the 4th kexec, which any value
    /// from 15249 to 23648 does with the default heap (see secure_world::heap).
    #[arg(long)]
    heap_baseline_bytes: Option<usize>,
    /// Keep the fTPM's NV in this file (loaded at start, written after every NV change), so
    /// it survives a restart of this process; without it NV lives in memory only.
    #[arg(long)]
    ftpm_state: Option<PathBuf>,
    /// Boot nonce: the only source of variation in the model.
    #[arg(long, default_value_t = 1)]
    nonce: u64,
    /// The OP-TEE release the model answers as: 3.14 (the seed's) or 4.x (RPC_ARG / REGD_ARG
    /// argument pages and asynchronous notifications).
    #[arg(long, default_value_t = Profile::Optee3_14)]
    optee: Profile,
}

/// Everything the serving threads share.
struct Machine {
    world: SecureWorld,
    ram: RamFile,
    smcs: u64,
    resets: u32,
}

type SharedMachine = Arc<Mutex<Machine>>;

fn lock(machine: &SharedMachine) -> MutexGuard<'_, Machine> {
    // A panicking thread cannot leave the model half-updated in a way a later SMC would trust
    // less than a dead process; keep serving.
    machine.lock().unwrap_or_else(PoisonError::into_inner)
}

fn main() -> ExitCode {
    tee_rt::logging::init("secure-world");
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("secure-world: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let ram = RamFile::open_at(&args.ram, DEFAULT_RAM_BASE, args.ram_size)?;
    let mut config = Config {
        ram_size: args.ram_size,
        ..Config::for_profile(args.optee)
    };
    if let Some(threads) = args.threads {
        config.threads = threads;
    }
    if let Some(bytes) = args.heap_bytes {
        config.core_heap_bytes = bytes;
    }
    if let Some(bytes) = args.heap_baseline_bytes {
        config.heap_baseline_bytes = bytes;
    }
    if config.heap_baseline_bytes >= config.core_heap_bytes {
        return Err(format!(
            "heap baseline {} B leaves nothing of a {} B core heap",
            config.heap_baseline_bytes, config.core_heap_bytes
        )
        .into());
    }
    let mut world = SecureWorld::new(config, args.nonce);
    if let Some(path) = &args.ftpm_state {
        // Same UUID: replaces the in-memory fTPM.
        world.add_ta(Box::new(FtpmTa::with_state_file(path)?));
    }
    let machine = Arc::new(Mutex::new(Machine {
        world,
        ram,
        smcs: 0,
        resets: 0,
    }));
    let control = tee_rt::spawn::secure_control_from_env()?;
    // Under QEMU the launcher also hands down the guest's SMC port (qemu_port).
    qemu_port::serve_inherited(&machine)?;
    tracing::info!(optee = %args.optee, "secure world up");
    serve_control(&control, &machine);
    tracing::info!("control channel closed; nobody can reach the secure world any more");
    Ok(())
}

/// Answers control requests until init closes the channel.
fn serve_control(control: &Endpoint, machine: &SharedMachine) {
    // Our end of the conduit being served, kept to close it when a new one replaces it.
    let mut served: Option<UnixStream> = None;
    let mut buf = vec![0u8; FRAME_MAX];
    loop {
        let (len, mut fds) = match control.recv(&mut buf) {
            Ok(Some(packet)) => packet,
            Ok(None) => return,
            Err(error @ (EndpointError::Truncated { .. } | EndpointError::TooManyFds { .. })) => {
                tracing::warn!(%error, "control packet refused");
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "control channel failed");
                return;
            }
        };
        let (answer, conduit) = match accept_request::<SecureInterface>(
            &buf[..len],
            WORLD_GENERATION,
        ) {
            Incoming::Request(frame) => {
                // Only MapWindow carries a descriptor; any other is closed here.
                let attached = match (frame.body, fds.len()) {
                    (SecureRequest::MapWindow { .. }, 1) => fds.pop(),
                    _ => None,
                };
                if !fds.is_empty() {
                    tracing::warn!(
                        count = fds.len(),
                        "attachments on the control channel closed"
                    );
                }
                let (body, conduit) = handle_control(machine, &mut served, frame.body, attached);
                let header = frame.header.reply_to(WORLD_GENERATION);
                (Frame { header, body }, conduit)
            }
            Incoming::Answer(frame) => (frame, None),
            Incoming::Drop(error) if !fds.is_empty() => {
                tracing::warn!(%error, count = fds.len(), "undecodable control packet and its attachments dropped");
                continue;
            }
            Incoming::Drop(error) => {
                tracing::warn!(%error, "undecodable control packet dropped");
                continue;
            }
        };
        let attached: Vec<_> = conduit.iter().map(AsFd::as_fd).collect();
        if let Err(error) = control.send_frame(&answer, &attached) {
            tracing::warn!(%error, "control answer not sent");
        }
        // init's end of a new conduit now lives only in init.
        drop(conduit);
    }
}

/// One control request; a new conduit comes back as init's end.
fn handle_control(
    machine: &SharedMachine,
    served: &mut Option<UnixStream>,
    request: SecureRequest,
    attached: Option<OwnedFd>,
) -> (SecureResponse, Option<UnixStream>) {
    match request {
        SecureRequest::MapWindow { base, len } => {
            let Some(window) = attached else {
                tracing::warn!("MapWindow without its window");
                return (SecureResponse::Error(WireError::BadRequest), None);
            };
            let mut machine = lock(machine);
            match machine.ram.overlay(base, len, &window) {
                Ok(()) => {
                    tracing::info!(
                        base = format_args!("{base:#x}"),
                        len,
                        "client window mapped"
                    );
                    (SecureResponse::WindowMapped, None)
                }
                Err(error) => {
                    tracing::warn!(%error, "client window refused");
                    (SecureResponse::Error(WireError::BadRequest), None)
                }
            }
        }
        SecureRequest::Stats => {
            let machine = lock(machine);
            let stats = wire_stats(&machine.world.stats(), machine.smcs, machine.resets);
            (SecureResponse::Stats(stats), None)
        }
        SecureRequest::Reset => {
            let mut machine = lock(machine);
            machine.world.reset();
            machine.resets = machine.resets.saturating_add(1);
            tracing::info!(resets = machine.resets, "machine reset");
            (SecureResponse::ResetDone, None)
        }
        SecureRequest::NewConduit => match new_conduit(machine, served) {
            Ok(theirs) => (SecureResponse::Conduit, Some(theirs)),
            Err(error) => {
                tracing::error!(%error, "cannot make a conduit");
                (SecureResponse::Error(WireError::Retryable), None)
            }
        },
    }
}

/// Makes a fresh conduit, serves our end on its own thread and retires the previous one.
fn new_conduit(
    machine: &SharedMachine,
    served: &mut Option<UnixStream>,
) -> std::io::Result<UnixStream> {
    let (ours, theirs) = UnixStream::pair()?;
    let handle = ours.try_clone()?;
    let machine = Arc::clone(machine);
    thread::Builder::new()
        .name("conduit".into())
        .spawn(move || {
            let served = serve_conduit(ours, |regs| {
                let mut guard = lock(&machine);
                let machine = &mut *guard;
                machine.smcs += 1;
                machine.world.smc(&mut machine.ram, regs)
            });
            match served {
                Ok(()) => tracing::info!("conduit closed"),
                Err(error) => tracing::info!(%error, "conduit ended"),
            }
        })?;
    if let Some(previous) = served.replace(handle) {
        tracing::info!("new conduit for init; the previous one is closed");
        // Its thread sees end of stream and exits; the world's state stays.
        let _ = previous.shutdown(std::net::Shutdown::Both);
    } else {
        tracing::info!("first conduit handed to init");
    }
    Ok(theirs)
}

fn wire_stats(stats: &Stats, smcs: u64, resets: u32) -> SecureStats {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    SecureStats {
        registrations: count(stats.registrations),
        registered_bytes: stats.registered_bytes,
        sessions: count(stats.sessions),
        heap_used: count(stats.heap_used),
        heap_capacity: count(stats.heap_capacity),
        threads_free: count(stats.threads_free),
        threads_active: count(stats.threads_active),
        threads_suspended: count(stats.threads_suspended),
        cache_enabled: stats.cache_enabled,
        cached_buffers: count(stats.cached_buffers),
        smcs,
        resets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_optee_option_picks_a_profile_and_refuses_others() {
        let base = ["secure-world", "--ram", "ram.bin"];
        let parsed = Args::try_parse_from(base).map(|a| a.optee);
        assert_eq!(parsed.ok(), Some(Profile::Optee3_14), "3.14 by default");
        let modern = Args::try_parse_from([&base[..], &["--optee", "4.x"]].concat());
        assert_eq!(modern.map(|a| a.optee).ok(), Some(Profile::Optee4x));
        let error = Args::try_parse_from([&base[..], &["--optee", "4.2"]].concat())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("expected 3.14 or 4.x"), "{error}");
    }
}
