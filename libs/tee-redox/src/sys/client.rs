//! The Redox main of a client daemon (tpmd, bnxtd), whatever trusted application it fronts:
//! its scheme, created and registered while still root; its own uid and gid (`policy`), so
//! teed knows it; its handle on teed's scheme (`/scheme/tee/client/<generation>`) and its
//! window, mapped through teed (`/scheme/tee/window`); the adapter; the event queue and timer;
//! the null namespace; its own `Hello`, then the loop.
//!
//! In the null namespace a client cannot open teed's scheme again: when its handle fails (teed
//! exited), it answers what waits with "retry" and exits with status 3, and whoever restarts
//! teed restarts the clients after it (sysroot/redox/README.md). A teed that declined keeps
//! its scheme up, so clients start and answer "TEE unavailable".

use std::process::ExitCode;

use libredox::flag;
use libredox::Fd;
use redox_scheme::scheme::register_scheme_inner;
use redox_scheme::Socket;
use syscall::error::{EAGAIN, EWOULDBLOCK};
use tee_client::engine::TaService;
use tee_client::ClientConfig;
use tee_proto::lifecycle::RamWindow;
use tee_proto::FRAME_MAX;

use super::{failed, map_shared, Daemon, Runtime, StartError};
use crate::boot;
use crate::client::{ClientScheme, ConsumerCodec};
use crate::handles::ROOT;
use crate::policy::DaemonPolicy;
use crate::ram::RegionRam;

/// Exit status when teed's scheme went away.
const TEED_GONE: u8 = 3;

/// A client daemon's whole life.
pub fn main<S, C>(policy: DaemonPolicy) -> ExitCode
where
    S: TaService + Default,
    C: ConsumerCodec<S::Interface>,
{
    super::logging();
    let explicit = match boot::parse_client_args(std::env::args().skip(1)) {
        Ok(generation) => generation,
        Err(error) => {
            tracing::error!(daemon = policy.daemon, %error, "bad arguments");
            return ExitCode::from(2);
        }
    };
    let generation = boot::generation(explicit, std::process::id() as usize);
    let span = tracing::info_span!("daemon", name = policy.daemon, gen = generation);
    let _entered = span.enter();
    match start::<S, C>(&policy, generation) {
        Ok((runtime, socket, mut daemon)) => runtime.serve(&mut daemon, &socket),
        Err(error) => super::start_failed(policy.daemon, &error),
    }
}

type Started<S, C> = (Runtime, Socket, ClientDaemon<S, C>);

fn start<S, C>(policy: &DaemonPolicy, generation: u32) -> Result<Started<S, C>, StartError>
where
    S: TaService + Default,
    C: ConsumerCodec<S::Interface>,
{
    // The scheme is created and registered while the daemon is still root; requests wait in
    // the socket until the loop reads them.
    let socket = Socket::nonblock().map_err(failed("create the scheme socket"))?;
    register_scheme_inner(&socket, policy.provides, ROOT).map_err(failed("register the scheme"))?;
    super::become_identity(policy)?;
    let tee = Fd::open(
        &format!("/scheme/tee/client/{generation}"),
        flag::O_RDWR | flag::O_CLOEXEC | flag::O_NONBLOCK,
        0,
    )
    .map_err(failed("open teed's client path"))?;
    let (window_fd, window, mem) = map_window()?;
    let adapter =
        ClientScheme::<S, C, RegionRam>::new(policy.provides, ClientConfig::default(), mem, window);
    let mut daemon = ClientDaemon {
        adapter,
        tee,
        _window: window_fd,
    };
    let runtime = Runtime::open()?;
    super::enter_null_namespace()?;
    daemon.adapter.start(runtime.now(), generation);
    Ok((runtime, socket, daemon))
}

/// The client's window: its placement from teed, then the mapping teed serves.
fn map_window() -> Result<(Fd, RamWindow, RegionRam), StartError> {
    let fd = Fd::open("/scheme/tee/window", flag::O_RDWR | flag::O_CLOEXEC, 0)
        .map_err(failed("open teed's window path"))?;
    let mut placement = [0u8; 16];
    let n = fd
        .read(&mut placement)
        .map_err(failed("read the window's placement"))?;
    let (base, len) = placement.split_at(8);
    let word = |bytes: &[u8]| bytes.try_into().map(u64::from_le_bytes);
    let (Ok(base), Ok(len), 16) = (word(base), word(len), n) else {
        return Err(StartError {
            step: "read the window's placement",
            reason: format!("{n} bytes"),
        });
    };
    let size = usize::try_from(len).map_err(failed("window length"))?;
    let (ptr, size) = map_shared(&fd, 0, size, "map the window")?;
    let mut mem = RegionRam::new();
    // SAFETY: the mapping lives as long as the process (never unmapped); nothing else refers
    // to it.
    unsafe { mem.map(base, ptr, size) }.map_err(failed("place the window"))?;
    Ok((fd, RamWindow { base, len }, mem))
}

/// A client daemon in the loop: the adapter and its handle on teed's scheme.
struct ClientDaemon<S: TaService, C> {
    adapter: ClientScheme<S, C, RegionRam>,
    tee: Fd,
    /// Kept open with the mapping it backs.
    _window: Fd,
}

impl<S: TaService, C: ConsumerCodec<S::Interface>> ClientDaemon<S, C> {
    fn teed_gone(&mut self, why: &dyn std::fmt::Display) -> ExitCode {
        tracing::error!(%why, "teed's scheme is gone; exiting for a restart after teed");
        self.adapter.teed_gone();
        ExitCode::from(TEED_GONE)
    }
}

impl<S: TaService, C: ConsumerCodec<S::Interface>> Daemon for ClientDaemon<S, C> {
    type Adapter = ClientScheme<S, C, RegionRam>;

    fn adapter(&mut self) -> &mut Self::Adapter {
        &mut self.adapter
    }

    fn sources(&self) -> Vec<usize> {
        vec![self.tee.raw()]
    }

    fn on_source(&mut self, _index: usize) -> Result<(), ExitCode> {
        let mut buf = vec![0u8; FRAME_MAX];
        loop {
            match self.tee.read(&mut buf) {
                Ok(0) => return Err(self.teed_gone(&"end of file")),
                Ok(n) => self.adapter.on_teed(&buf[..n]),
                Err(error) if matches!(error.errno(), EAGAIN | EWOULDBLOCK) => return Ok(()),
                Err(error) => return Err(self.teed_gone(&error)),
            }
        }
    }

    fn after_turn(&mut self) -> Result<(), ExitCode> {
        for frame in self.adapter.take_to_teed() {
            if let Err(error) = self.tee.write(&frame) {
                return Err(self.teed_gone(&error));
            }
        }
        Ok(())
    }
}
