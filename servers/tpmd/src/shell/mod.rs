//! tpmd's hosted shell: the shared client shell (`tee_client::hosted`) driving the fTPM
//! service. Consumers speak native `TpmRequest` frames on the consumer listener init grants;
//! the swtpm socket protocol (`tpmd::swtpm`) is served on the swtpm listeners (data, control) when
//! init grants them, and on loopback TCP when [`SWTPM_TCP_PORT_ENV`] names a port.

use std::io;
use std::os::fd::OwnedFd;
use std::process::ExitCode;

use tee_proto::grants::SwtpmGrants;
use tpmd::swtpm::hosted::SwtpmFrontEnd;
use tpmd::{FtpmService, TpmdConfig};

/// Names the loopback TCP port of the swtpm data channel (control on the next port), for
/// clients that cannot use a Unix socket (tss-esapi 7's swtpm configuration is host and port
/// only). Unset: no TCP.
pub const SWTPM_TCP_PORT_ENV: &str = "TPMD_SWTPM_TCP_PORT";

/// Runs tpmd on the lifecycle endpoint init gave it.
pub fn run() -> ExitCode {
    tee_client::hosted::main_with::<FtpmService, _>(TpmdConfig::default(), swtpm_front_end)
}

/// The swtpm front-end on the listeners init granted (data and control), if any.
fn swtpm_front_end(swtpm: Option<SwtpmGrants<OwnedFd>>) -> io::Result<SwtpmFrontEnd> {
    let mut front_end = match swtpm {
        Some(SwtpmGrants { data, control }) => SwtpmFrontEnd::from_unix_fds(data, control)?,
        None => SwtpmFrontEnd::new(),
    };
    if let Some(port) = std::env::var_os(SWTPM_TCP_PORT_ENV) {
        // TCP is an extra; tpmd serves without it rather than decline.
        match port.to_str().and_then(|port| port.parse::<u16>().ok()) {
            Some(port) => match front_end.bind_tcp_loopback(port) {
                Ok(port) => tracing::info!(port, "swtpm protocol on loopback TCP"),
                Err(error) => tracing::error!(%error, port, "swtpm TCP listeners unusable"),
            },
            None => tracing::error!(?port, "{SWTPM_TCP_PORT_ENV} is not a port number"),
        }
    }
    Ok(front_end)
}
