//! teed for Redox: `/usr/bin/teed` in the image (sysroot/redox). Type-checked here, linked and
//! run only by a Redox toolchain; on any other target this binary only says so.

#[cfg(target_os = "redox")]
fn main() -> std::process::ExitCode {
    redox::main()
}

#[cfg(not(target_os = "redox"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "teed-redox is teed for Redox; build it for a Redox target (sysroot/redox/README.md)"
    );
    std::process::ExitCode::from(2)
}

/// The Redox main: 1. the SMC capabilities, one per function id (`libs/tee-redox/SMC.md`);
/// 2. the carve-out, mapped from the kernel's `memory` scheme; 3. the scheme socket and the
/// adapter, registered as `tee`; 4. the event queue and timer; 5. the null namespace; 6. its own
/// `Hello` (the probe), then the loop, which signals readiness once the probe answered.
#[cfg(target_os = "redox")]
mod redox {
    use std::process::ExitCode;

    use libredox::{flag, Fd};
    use redox_scheme::scheme::register_sync_scheme;
    use redox_scheme::Socket;
    use smc_caps::{CapConduit, TEED_FUNCTIONS};
    use tee_redox::policy::TEED;
    use tee_redox::sys::{self, failed, Daemon, Runtime, Shim, StartError};
    use tee_redox::{boot, RegionRam};
    use teed::TeedConfig;
    use teed_redox::{
        cap_path, Layout, Placed, SchemeCap, SmcFile, TeeScheme, TeedArgs, WindowMap,
    };

    /// One open handle of the kernel `smc` scheme.
    struct SmcHandle(Fd);

    impl SmcFile for SmcHandle {
        fn write(&mut self, buf: &[u8]) -> Result<usize, i32> {
            self.0.write(buf).map_err(|error| error.errno())
        }
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, i32> {
            self.0.read(buf).map_err(|error| error.errno())
        }
    }

    type Scheme = TeeScheme<SchemeCap<SmcHandle>, RegionRam>;

    struct TeedDaemon(Scheme);

    impl Daemon for TeedDaemon {
        type Adapter = Scheme;
        fn adapter(&mut self) -> &mut Scheme {
            &mut self.0
        }
        fn sources(&self) -> Vec<usize> {
            Vec::new()
        }
        fn on_source(&mut self, _index: usize) -> Result<(), ExitCode> {
            Ok(())
        }
        fn after_turn(&mut self) -> Result<(), ExitCode> {
            Ok(())
        }
    }

    pub fn main() -> ExitCode {
        sys::logging();
        let args = match TeedArgs::parse(std::env::args().skip(1)) {
            Ok(args) => args,
            Err(error) => {
                tracing::error!(%error, "bad arguments");
                return ExitCode::from(2);
            }
        };
        let generation = boot::generation(args.generation, std::process::id() as usize);
        let span = tracing::info_span!("teed", gen = generation);
        let _entered = span.enter();
        match start(&args.layout, generation) {
            Ok((runtime, socket, mut daemon)) => runtime.serve(&mut daemon, &socket),
            Err(error) => sys::start_failed(TEED.daemon, &error),
        }
    }

    fn start(
        layout: &Layout,
        generation: u32,
    ) -> Result<(Runtime, Socket, TeedDaemon), StartError> {
        let smc = open_capabilities();
        let (ram, windows) = map_memory(layout)?;
        let socket = Socket::nonblock().map_err(failed("create the scheme socket"))?;
        let mut daemon = TeedDaemon(TeeScheme::new(TeedConfig::new(), ram, smc, windows));
        register_sync_scheme(&socket, TEED.provides, &mut Shim::new(&mut daemon.0))
            .map_err(failed("register the scheme"))?;
        let runtime = Runtime::open()?;
        sys::enter_null_namespace()?;
        daemon.0.start(runtime.now(), generation, layout);
        Ok((runtime, socket, daemon))
    }

    /// One capability per function teed issues. Without the kernel scheme (Redox today) teed
    /// holds none: every SMC is refused and the probe declines, loudly.
    fn open_capabilities() -> CapConduit<SchemeCap<SmcHandle>> {
        let mut smc = CapConduit::new();
        for id in TEED_FUNCTIONS {
            let path = cap_path(id);
            match Fd::open(&path, flag::O_RDWR | flag::O_CLOEXEC, 0) {
                Ok(fd) => {
                    if let Err(error) = smc.grant(id, SchemeCap::new(SmcHandle(fd))) {
                        tracing::error!(%error, "SMC capability refused");
                    }
                }
                Err(error) => tracing::error!(%path, %error, "no SMC capability (see SMC.md)"),
            }
        }
        smc
    }

    /// Maps every window of the carve-out, and notes where the clients' windows landed.
    fn map_memory(layout: &Layout) -> Result<(RegionRam, WindowMap), StartError> {
        let mut ram = RegionRam::new();
        for window in layout.regions() {
            let (ptr, len) = sys::map_physical(window)?;
            // SAFETY: the mapping is never unmapped, and nothing else in teed refers to it.
            unsafe { ram.map(window.base, ptr, len) }.map_err(failed("place a window"))?;
        }
        let placed = |window: tee_proto::lifecycle::RamWindow| {
            ram.address_of(window.base, window.len)
                .map(|addr| Placed { window, addr })
        };
        let windows = WindowMap {
            tpmd: placed(layout.windows.tpmd),
            bnxtd: placed(layout.windows.bnxtd),
        };
        Ok((ram, windows))
    }
}
