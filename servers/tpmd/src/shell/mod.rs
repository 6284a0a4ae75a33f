//! tpmd's hosted shell: the shared client shell (`tee_rt::client_shell`) driving the fTPM
//! service. Consumers speak native `TpmRequest` frames on the first listener init hands over;
//! the swtpm socket protocol front-end (`tpmd::swtpm`) is meant for the listeners after it.

use std::process::ExitCode;

use tpmd::{FtpmService, TpmdConfig};

/// Runs tpmd on the lifecycle endpoint init gave it.
pub fn run() -> ExitCode {
    tee_rt::client_shell::main::<FtpmService>(TpmdConfig::default())
}
