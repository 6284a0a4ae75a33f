//! teed as a hosted process: the only holder of the SMC conduit, serving tpmd and bnxtd.
//!
//! Started by init with its lifecycle endpoint (see `tee_rt::spawn`); everything else arrives
//! with init's frames. Exit status: 0 after an acknowledged shutdown once init closed the
//! lifecycle endpoint, 3 when init went away first, 1 when teed could not start or serve.

mod shell;

use std::process::ExitCode;

fn main() -> ExitCode {
    tee_rt::logging::init("teed");
    shell::run()
}
