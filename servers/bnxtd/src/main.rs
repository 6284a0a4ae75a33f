//! bnxtd as a hosted process: the BNXT firmware client of teed, serving the NIC driver.
//!
//! Started by init with its lifecycle endpoint (see `tee_rt::spawn`); `Hello` brings the teed
//! endpoint, the RAM file and the consumer listener. Exit status: 0 after an acknowledged
//! shutdown once init closed the lifecycle endpoint, 3 when init went away first, 1 when bnxtd
//! could not start or serve.

mod shell;

use std::process::ExitCode;

fn main() -> ExitCode {
    tee_rt::logging::init("bnxtd");
    shell::run()
}
