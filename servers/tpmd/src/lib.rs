//! tpmd's core: the firmware-TPM client (Linux `tpm_ftpm_tee`) as a sans-IO state machine.
//!
//! tpmd holds one session to the fTPM TA and one registered 8 KiB buffer (command at offset 0,
//! response at 4096), and feeds TPM 2.0 commands from any number of consumers through them one
//! at a time, in arrival order. Its lifecycle (start-up, crash boot, teed restarts, shutdown in
//! Linux order) is the shared client [`engine`]; [`ftpm`] is the TPM-specific part.
//!
//! TPM payloads are secrets: nothing here logs them.
#![no_std]

extern crate alloc;
// The hosted swtpm front-end (`swtpm::hosted`) needs sockets; the core stays no_std.
#[cfg(feature = "hosted")]
extern crate std;

pub mod ftpm;
#[doc(hidden)]
pub mod fuzzing;
pub mod swtpm;

pub use crate::ftpm::{shutdown_clear_command, FtpmService};
pub use tee_client::{engine, ClientConfig, ClientSeedBugs, ConsumerId, Deadlines, Millis};

/// The tpmd core.
pub type Tpmd = engine::Client<FtpmService>;
/// tpmd's configuration.
pub type TpmdConfig = ClientConfig;
/// What [`Tpmd::poll`] asks the shell to do.
pub type Effect = engine::Effect<tee_proto::tpm::TpmResponse>;
