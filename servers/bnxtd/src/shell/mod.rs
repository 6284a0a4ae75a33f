//! bnxtd's hosted shell: the shared client shell (`tee_client::hosted`) driving the BNXT
//! service. The NIC driver speaks native `BnxtRequest` frames on the listener init hands over.

use std::process::ExitCode;

use bnxtd::{BnxtService, BnxtdConfig};

/// Runs bnxtd on the lifecycle endpoint init gave it.
pub fn run() -> ExitCode {
    tee_client::hosted::main::<BnxtService>(BnxtdConfig::default())
}
