//! bnxtd's hosted shell: the shared client shell (`tee_client::hosted`) driving the BNXT
//! service. The NIC driver speaks native `BnxtRequest` frames on the listener init hands over.

use std::process::ExitCode;

use bnxtd::{BnxtService, BnxtdConfig};

/// Runs bnxtd on the lifecycle endpoint init gave it.
pub fn run() -> ExitCode {
    tee_client::hosted::main::<BnxtService>(config())
}

/// The production configuration; a `seed-bugs` build (a QEMU test build, never a release
/// artifact) has no shutdown hook, as tee_bnxt_fw before 914ab19e471d.
fn config() -> BnxtdConfig {
    #[allow(unused_mut)]
    let mut config = BnxtdConfig::default();
    #[cfg(feature = "seed-bugs")]
    {
        config.seed_bugs.no_shutdown_hook = true;
        tracing::warn!("seed-bugs build: the Linux 5.13 behaviour, not for use");
    }
    config
}
