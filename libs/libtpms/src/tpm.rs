//! [`Tpm`]: one logical TPM 2.0 with its own NV.

use std::sync::{Arc, Mutex, PoisonError};

use crate::engine::{engine, Saved};
use crate::error::TpmError;

/// Largest command (and response) libtpms accepts by default (`TPM_BUFFER_MAX`); also the
/// OP-TEE fTPM limit.
pub const MAX_COMMAND_SIZE: usize = 4096;

/// Size of a TPM 2.0 command or response header (tag, size, code).
pub const HEADER_SIZE: usize = 10;

/// One logical TPM 2.0. It owns its permanent NV ("permall" blob) and, while another TPM runs
/// in libtpms, its saved RAM state; using it makes it the running one again (a swap).
///
/// Dropping it discards its state; keep [`Tpm::nv_state`] to bring it back with
/// [`Tpm::from_nv`].
#[derive(Debug)]
pub struct Tpm {
    id: u64,
    saved: Arc<Mutex<Saved>>,
}

impl Tpm {
    /// A freshly manufactured TPM (new seeds, empty NV). It is powered on but not started: its
    /// first command must be TPM2_Startup.
    pub fn manufacture() -> Result<Tpm, TpmError> {
        Tpm::load(Vec::new())
    }

    /// The TPM whose permanent state [`Tpm::nv_state`] returned, powered on and not started.
    pub fn from_nv(permanent: &[u8]) -> Result<Tpm, TpmError> {
        Tpm::load(permanent.to_vec())
    }

    fn load(permanent: Vec<u8>) -> Result<Tpm, TpmError> {
        let mut engine = engine();
        let id = engine.new_id();
        let saved = Arc::new(Mutex::new(Saved {
            permanent,
            volatile: None,
            nv_commits: 0,
        }));
        // Build the Tpm only on success: its Drop takes the engine lock held here.
        engine.activate(id, &saved)?;
        Ok(Tpm { id, saved })
    }

    /// Runs one raw TPM 2.0 command and returns the raw response (a TPM error code is a
    /// response, not an `Err`).
    pub fn process(&mut self, command: &[u8]) -> Result<Vec<u8>, TpmError> {
        if command.len() < HEADER_SIZE {
            return Err(TpmError::CommandTooShort(command.len()));
        }
        if command.len() > MAX_COMMAND_SIZE {
            return Err(TpmError::CommandTooLarge {
                len: command.len(),
                max: MAX_COMMAND_SIZE,
            });
        }
        let mut engine = engine();
        engine.activate(self.id, &self.saved)?;
        engine.process(self.id, command)
    }

    /// `_TPM_Init`: power off and on. NV is kept; PCRs, sessions and loaded objects are gone,
    /// and the next command must be TPM2_Startup. Without a TPM2_Shutdown first this is an
    /// unorderly shutdown (see the crate docs).
    pub fn power_cycle(&mut self) -> Result<(), TpmError> {
        let mut engine = engine();
        if engine.is_loaded(self.id) {
            engine.power_cycle_loaded(self.id)
        } else {
            // Not running: forgetting the RAM snapshot makes its next load a power-on.
            self.saved
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .volatile = None;
            Ok(())
        }
    }

    /// A copy of the permanent state, as last committed to NV; feed it to [`Tpm::from_nv`].
    pub fn nv_state(&self) -> Vec<u8> {
        let engine = engine();
        match engine.loaded_permanent(self.id) {
            Some(blob) => blob,
            None => self
                .saved
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .permanent
                .clone(),
        }
    }

    /// NV commits ("permall" stores) since this object was created; it changes exactly when
    /// [`Tpm::nv_state`] may have changed.
    pub fn nv_commits(&self) -> u64 {
        let _engine = engine();
        self.saved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .nv_commits
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        engine().release(self.id);
    }
}
