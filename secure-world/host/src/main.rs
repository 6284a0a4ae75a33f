//! The secure world as its own long-lived process: it serves the SMC register-frame conduit on
//! a Unix socket and reaches normal-world RAM through the shared RAM file, so it outlives every
//! normal-world boot, as TrustZone does.
//!
//! Two sockets:
//! * the conduit (`--conduit`): one normal world at a time. A new connection replaces the old
//!   one, because only a restarted teed (or the next boot's teed) connects: the predecessor is
//!   gone, or about to be.
//! * the control socket (`--control`, optional): `tee_proto::secure` frames from init and teectl
//!   (statistics, machine reset). Never handed to a normal-world server.
//!
//! Both are served by threads around one `Mutex`: every SMC and every control request runs
//! alone against the model, as SMCs on one core would.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use clap::Parser;
use secure_world::ta::ftpm::FtpmTa;
use secure_world::{Config, SecureWorld, Stats};
use tee_proto::secure::{SecureInterface, SecureRequest, SecureResponse, SecureStats};
use tee_proto::{accept_request, encode, Frame, Incoming, FRAME_MAX};
use tee_rt::conduit::serve_conduit;
use tee_rt::framing::{read_frame, write_frame, FrameError};
use tee_rt::ram::{RamFile, DEFAULT_RAM_BASE, DEFAULT_RAM_BYTES};

/// The control socket speaks for the world as a whole, which has no generations.
const WORLD_GENERATION: u32 = 0;

/// OP-TEE OS behavioural model, serving the SMC conduit.
#[derive(Debug, Parser)]
#[command(name = "secure-world", version)]
struct Args {
    /// Unix socket to listen on for the SMC conduit (one normal world at a time).
    #[arg(long)]
    conduit: PathBuf,
    /// Unix socket for statistics and machine reset (tee_proto::secure frames).
    #[arg(long)]
    control: Option<PathBuf>,
    /// The normal-world RAM file (created sparse when missing).
    #[arg(long)]
    ram: PathBuf,
    /// Size of normal-world RAM in bytes.
    #[arg(long, default_value_t = DEFAULT_RAM_BYTES)]
    ram_size: u64,
    /// Secure threads (CFG_NUM_THREADS).
    #[arg(long)]
    threads: Option<usize>,
    /// Keep the fTPM's NV in this file (loaded at start, written after every NV change), so
    /// it survives a restart of this process; without it NV lives in memory only.
    #[arg(long)]
    ftpm_state: Option<PathBuf>,
    /// Boot nonce: the only source of variation in the model.
    #[arg(long, default_value_t = 1)]
    nonce: u64,
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
        ..Config::default()
    };
    if let Some(threads) = args.threads {
        config.threads = threads;
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
    let conduit = bind_fresh(&args.conduit)?;
    if let Some(path) = &args.control {
        let control = bind_fresh(path)?;
        let machine = Arc::clone(&machine);
        thread::Builder::new()
            .name("control".into())
            .spawn(move || serve_control_listener(control, machine))?;
    }
    tracing::info!(conduit = %args.conduit.display(), "secure world up");
    serve_conduit_listener(conduit, machine);
    Ok(())
}

/// Binds `path`, replacing a stale socket file an earlier run left behind.
fn bind_fresh(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    UnixListener::bind(path)
}

/// Accepts normal worlds for ever; each new connection cuts the previous one off.
fn serve_conduit_listener(listener: UnixListener, machine: SharedMachine) {
    let mut current: Option<UnixStream> = None;
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "conduit accept failed");
                continue;
            }
        };
        if let Some(previous) = current.take() {
            tracing::info!("new normal world connected; dropping the previous conduit");
            // Its thread sees end of stream and exits; the world's state stays.
            let _ = previous.shutdown(std::net::Shutdown::Both);
        } else {
            tracing::info!("normal world connected");
        }
        current = match stream.try_clone() {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!(%error, "cannot keep a handle on the conduit");
                None
            }
        };
        let machine = Arc::clone(&machine);
        let spawned = thread::Builder::new()
            .name("conduit".into())
            .spawn(move || {
                let served = serve_conduit(stream, |regs| {
                    let mut guard = lock(&machine);
                    let machine = &mut *guard;
                    machine.smcs += 1;
                    machine.world.smc(&mut machine.ram, regs)
                });
                match served {
                    Ok(()) => tracing::info!("conduit closed"),
                    Err(error) => tracing::info!(%error, "conduit ended"),
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot serve the conduit");
        }
    }
}

/// Serves control connections, each on its own thread (they are rare and short).
fn serve_control_listener(listener: UnixListener, machine: SharedMachine) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "control accept failed");
                continue;
            }
        };
        let machine = Arc::clone(&machine);
        let spawned = thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || serve_control(stream, &machine));
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot serve a control connection");
        }
    }
}

/// Answers control frames until the peer hangs up or breaks the framing.
fn serve_control(mut stream: UnixStream, machine: &SharedMachine) {
    let mut buf = Vec::new();
    loop {
        match read_frame(&mut stream, &mut buf, FRAME_MAX) {
            Ok(()) => {}
            Err(FrameError::Closed) => return,
            Err(error) => {
                tracing::warn!(%error, "control connection dropped");
                return;
            }
        }
        let answer = match accept_request::<SecureInterface>(&buf, WORLD_GENERATION) {
            Incoming::Request(frame) => Frame {
                header: frame.header.reply_to(WORLD_GENERATION),
                body: handle_control(machine, frame.body),
            },
            Incoming::Answer(frame) => frame,
            Incoming::Drop(error) => {
                tracing::warn!(%error, "undecodable control frame; dropping the connection");
                return;
            }
        };
        let mut out = [0u8; FRAME_MAX];
        let sent = encode(&answer, &mut out)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
            .and_then(|bytes| {
                write_frame(&mut stream, bytes).map_err(|error| io::Error::other(error.to_string()))
            });
        if let Err(error) = sent {
            tracing::warn!(%error, "control answer not sent");
            return;
        }
    }
}

fn handle_control(machine: &SharedMachine, request: SecureRequest) -> SecureResponse {
    let mut machine = lock(machine);
    match request {
        SecureRequest::Stats => SecureResponse::Stats(wire_stats(
            &machine.world.stats(),
            machine.smcs,
            machine.resets,
        )),
        SecureRequest::Reset => {
            machine.world.reset();
            machine.resets = machine.resets.saturating_add(1);
            tracing::info!(resets = machine.resets, "machine reset");
            SecureResponse::ResetDone
        }
    }
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
