//! A real TPM 2.0 inside this process: safe bindings to libtpms (Debian `libtpms-dev` 0.9).
//!
//! libtpms is one global, non-reentrant TPM per process. This crate serialises every call
//! behind one process-wide lock and lets several logical [`Tpm`]s share it: each owns its
//! permanent NV blob, and using a TPM other than the running one swaps state (the running
//! one's RAM snapshot and NV are saved, libtpms is terminated, the other's NV and snapshot
//! are handed back through the NV callbacks, libtpms is initialised again). Measured on the
//! 2-core development VM (release build, `examples/bench.rs`): GetRandom(16) about 1.1 µs, a
//! swap about 26 µs, so alternating TPMs on every command is fine for tests and the
//! simulator but not free.
//!
//! NV is kept in memory by the callbacks: "permall" is stored on every NV commit (not for
//! GetRandom or PCR_Extend) and read at power-on; no RAM snapshot is ever resumed across
//! [`Tpm::power_cycle`].
//!
//! Dictionary-attack behaviour of libtpms 0.9.2 that callers must know (asserted in
//! `tests/engine.rs`): once a DA-protected authorisation has been used since Startup, a power
//! cycle without TPM2_Shutdown raises the lockout counter by one (3 tries, 1000 s recovery by
//! default). Send TPM2_Shutdown(CLEAR) before a planned power cycle.
//!
//! TPM payloads are never logged.

pub mod command;
mod engine;
mod error;
mod ffi;
mod tpm;

pub use engine::{library_version, swap_count};
pub use error::TpmError;
pub use tpm::{Tpm, HEADER_SIZE, MAX_COMMAND_SIZE};
