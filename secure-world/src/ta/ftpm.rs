//! The firmware TPM TA (ms-tpm-20-ref's OP-TEE fTPM; Linux `tpm_ftpm_tee`), running a real
//! TPM 2.0 (libtpms, through the `libtpms` crate).
//!
//! Interface as upstream: SUBMIT_COMMAND takes the command in p0 (MEMREF_INPUT) and returns
//! the response in p1 (MEMREF_INOUT, size set to the response length); EMULATE_PPI is not
//! supported. Flags SINGLE_INSTANCE | INSTANCE_KEEP_ALIVE | DEVICE_ENUM, no MULTI_SESSION: the
//! core answers a second open session with TEE_ERROR_BUSY.
//!
//! Lifecycle, as DESIGN.md wants it:
//! * The TPM (its NV) lives in this object, which lives as long as the secure world: it
//!   survives normal-world kexec, crashes and restarts of teed or tpmd.
//! * **A normal-world boot is a TPM reset.** Real hardware resets the TPM with the SoC; here
//!   the secure world outlives the normal world, so the TA has to learn of a new boot. teed
//!   opens sessions with a client identity naming its boot ([`boot_client_uuid`]); a session
//!   naming a boot other than the last one seen power-cycles the TPM first (`_TPM_Init`: NV
//!   kept, PCRs and sessions gone, TPM2_Startup required). The same boot id (tpmd or teed
//!   restarted within one boot) changes nothing. Clients without a boot identity change
//!   nothing either. This is the model's stand-in, not an OP-TEE mechanism.
//! * A machine reset ([`crate::SecureWorld::reset`]) restarts the SoC: the core calls
//!   [`TrustedApp::unload`], which here power-cycles the TPM keeping NV. No new trait method
//!   was needed: "drop volatile state, keep persistent state" is exactly a TPM power cycle.
//! * Optionally ([`FtpmTa::with_state_file`]) NV is also written to a file after every command
//!   that committed NV, so a restart of the secure-world process keeps it.
//!
//! Each SUBMIT_COMMAND first asks the normal world for the time (RPC GET_TIME) and runs the
//! command when resumed. That RPC stands in for the normal-world traffic a real fTPM
//! generates (its NV lives in OP-TEE secure storage, which reaches the normal world through
//! RPCs to tee-supplicant), which this model does not implement otherwise: it makes fTPM
//! calls suspend in RPCs and use the RPC shm cache, as on real systems.

mod state_file;

use std::path::{Path, PathBuf};

use libtpms::{Tpm, TpmError, HEADER_SIZE, MAX_COMMAND_SIZE};
use optee_abi::teec;
use optee_abi::uuid::{self, Uuid};
use thiserror::Error;
use tracing::{debug, info, warn};

use super::{
    ClientIdentity, ParamType, RpcReply, SessionId, TaContext, TaFlags, TaRpc, TaStep, TrustedApp,
};

/// Command: p0 MEMREF_INPUT TPM command, p1 MEMREF_INOUT response buffer, p2/p3 NONE.
pub const SUBMIT_COMMAND: u32 = 0;
/// Command: physical presence interface emulation; not supported.
pub const EMULATE_PPI: u32 = 1;

/// Smallest command accepted (a TPM 2.0 header).
pub const MIN_COMMAND_SIZE: u64 = HEADER_SIZE as u64;
/// Largest command accepted (the fTPM's and libtpms's buffer).
pub const MAX_COMMAND_LEN: u64 = MAX_COMMAND_SIZE as u64;

/// Octets 0..8 of a client UUID that carries a boot id in octets 8..16.
pub const BOOT_CLIENT_TAG: [u8; 8] = *b"teesboot";

/// The client UUID teed presents when opening a session during normal-world boot `boot_id`:
/// octets 0..8 are [`BOOT_CLIENT_TAG`], octets 8..16 the boot id big-endian.
pub fn boot_client_uuid(boot_id: u64) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&BOOT_CLIENT_TAG);
    bytes[8..].copy_from_slice(&boot_id.to_be_bytes());
    Uuid::from_bytes(bytes)
}

/// The boot id in a client UUID made by [`boot_client_uuid`]; `None` for any other client.
pub fn boot_id_of(client: &Uuid) -> Option<u64> {
    let bytes = client.as_bytes();
    if bytes[..8] != BOOT_CLIENT_TAG {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[8..]);
    Some(u64::from_be_bytes(id))
}

/// Why an fTPM could not be set up.
#[derive(Debug, Error)]
pub enum FtpmError {
    /// the TPM engine failed
    #[error(transparent)]
    Tpm(#[from] TpmError),
    /// the NV state file could not be read or written
    #[error("fTPM state file {path}: {source}")]
    StateFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The fTPM TA.
pub struct FtpmTa {
    /// Manufactured on first use, so that worlds that never talk to the fTPM cost nothing.
    tpm: Option<Tpm>,
    /// Boot id of the last session that named one.
    last_boot: Option<u64>,
    /// A SUBMIT_COMMAND waits for its GET_TIME answer.
    awaiting_time: bool,
    state_file: Option<PathBuf>,
    /// `Tpm::nv_commits` when NV was last written to the state file.
    persisted_commits: u64,
    resets: u64,
}

impl Default for FtpmTa {
    fn default() -> Self {
        FtpmTa::new()
    }
}

impl FtpmTa {
    /// An fTPM with NV in memory only; the TPM is manufactured at the first session.
    pub fn new() -> FtpmTa {
        FtpmTa {
            tpm: None,
            last_boot: None,
            awaiting_time: false,
            state_file: None,
            persisted_commits: 0,
            resets: 0,
        }
    }

    /// An fTPM whose NV is loaded from `path` (manufactured fresh when the file is missing)
    /// and written back atomically after every command that changed it.
    pub fn with_state_file(path: impl Into<PathBuf>) -> Result<FtpmTa, FtpmError> {
        let path = path.into();
        let file_error = |source| FtpmError::StateFile {
            path: path.clone(),
            source,
        };
        let tpm = match state_file::load(&path).map_err(file_error)? {
            Some(blob) => {
                info!(path = %path.display(), "fTPM NV loaded from state file");
                Tpm::from_nv(&blob)?
            }
            None => {
                info!(path = %path.display(), "fTPM manufactured; new state file");
                let tpm = Tpm::manufacture()?;
                state_file::store(&path, &tpm.nv_state()).map_err(file_error)?;
                tpm
            }
        };
        Ok(FtpmTa {
            persisted_commits: tpm.nv_commits(),
            tpm: Some(tpm),
            state_file: Some(path),
            ..FtpmTa::new()
        })
    }

    /// The state file, when there is one.
    pub fn state_file(&self) -> Option<&Path> {
        self.state_file.as_deref()
    }

    /// TPM resets (power cycles) done for a new normal-world boot or a machine reset.
    pub fn tpm_resets(&self) -> u64 {
        self.resets
    }

    fn tpm(&mut self) -> Result<&mut Tpm, TpmError> {
        match &mut self.tpm {
            Some(tpm) => Ok(tpm),
            slot @ None => Ok(slot.insert(Tpm::manufacture()?)),
        }
    }

    /// `_TPM_Init`: NV kept, volatile state gone.
    fn reset_tpm(&mut self, why: &'static str) {
        let Some(tpm) = &mut self.tpm else {
            // Never manufactured: it is as fresh as a reset would make it.
            return;
        };
        match tpm.power_cycle() {
            Ok(()) => {
                self.resets += 1;
                info!(why, "fTPM reset");
            }
            Err(error) => warn!(why, %error, "fTPM reset failed"),
        }
    }

    fn check_submit_params(ctx: &TaContext<'_>) -> bool {
        let expected = [
            ParamType::MemrefInput,
            ParamType::MemrefInout,
            ParamType::None,
            ParamType::None,
        ];
        ctx.param_types() == expected
            && ctx
                .memref_size(0)
                .is_ok_and(|len| (MIN_COMMAND_SIZE..=MAX_COMMAND_LEN).contains(&len))
    }

    /// Runs the command in p0 and returns the response in p1.
    fn submit(&mut self, ctx: &mut TaContext<'_>) -> u32 {
        let Ok(len) = ctx.memref_size(0) else {
            return teec::ERROR_BAD_PARAMETERS;
        };
        let mut command = vec![0u8; len as usize];
        if ctx.read_memref(0, 0, &mut command).is_err() {
            return teec::ERROR_BAD_PARAMETERS;
        }
        let Ok(capacity) = ctx.memref_size(1) else {
            return teec::ERROR_BAD_PARAMETERS;
        };
        let response = match self.tpm().and_then(|tpm| tpm.process(&command)) {
            Ok(response) => response,
            Err(error) => {
                warn!(%error, "fTPM engine failed");
                return teec::ERROR_GENERIC;
            }
        };
        self.persist();
        let response_len = response.len() as u64;
        // The command has run either way, as in the real TA; the size tells what was needed.
        if ctx.set_memref_size(1, response_len).is_err() {
            return teec::ERROR_BAD_PARAMETERS;
        }
        if response_len > capacity {
            return teec::ERROR_SHORT_BUFFER;
        }
        if ctx.write_memref(1, 0, &response).is_err() {
            return teec::ERROR_BAD_PARAMETERS;
        }
        teec::SUCCESS
    }

    /// Writes NV to the state file when a command committed NV since the last write.
    fn persist(&mut self) {
        let (Some(path), Some(tpm)) = (&self.state_file, &self.tpm) else {
            return;
        };
        let commits = tpm.nv_commits();
        if commits == self.persisted_commits {
            return;
        }
        match state_file::store(path, &tpm.nv_state()) {
            Ok(()) => self.persisted_commits = commits,
            // NV stays correct in memory; the next commit tries the file again.
            Err(error) => warn!(path = %path.display(), %error, "fTPM NV not saved"),
        }
    }
}

impl TrustedApp for FtpmTa {
    fn uuid(&self) -> Uuid {
        uuid::FTPM_TA
    }

    fn flags(&self) -> TaFlags {
        TaFlags::SINGLE_INSTANCE
            .union(TaFlags::INSTANCE_KEEP_ALIVE)
            .union(TaFlags::DEVICE_ENUM)
    }

    fn name(&self) -> &'static str {
        "ftpm"
    }

    fn open_session(
        &mut self,
        session: SessionId,
        client: &ClientIdentity,
        _: &mut TaContext<'_>,
    ) -> u32 {
        if let Err(error) = self.tpm() {
            warn!(%error, "fTPM cannot be manufactured");
            return teec::ERROR_GENERIC;
        }
        if let Some(boot) = boot_id_of(&client.uuid) {
            if self.last_boot.is_some_and(|last| last != boot) {
                self.reset_tpm("new normal-world boot");
            }
            self.last_boot = Some(boot);
        }
        debug!(session, boot = ?self.last_boot, "fTPM session opened");
        teec::SUCCESS
    }

    fn invoke(&mut self, session: SessionId, func: u32, ctx: &mut TaContext<'_>) -> TaStep {
        let step = match func {
            SUBMIT_COMMAND if Self::check_submit_params(ctx) => {
                self.awaiting_time = true;
                TaStep::Rpc(TaRpc::GetTime)
            }
            EMULATE_PPI => TaStep::Complete(teec::ERROR_NOT_SUPPORTED),
            _ => TaStep::Complete(teec::ERROR_BAD_PARAMETERS),
        };
        debug!(session, func, "fTPM invoke");
        step
    }

    fn resume(&mut self, session: SessionId, reply: RpcReply, ctx: &mut TaContext<'_>) -> TaStep {
        if !std::mem::take(&mut self.awaiting_time) {
            return TaStep::Complete(teec::ERROR_BAD_STATE);
        }
        let result = match reply {
            RpcReply::Time { .. } => self.submit(ctx),
            RpcReply::Failed(code) => code,
            RpcReply::Shm(_) | RpcReply::Done => teec::ERROR_BAD_STATE,
        };
        debug!(
            session,
            result = teec::result_name(result),
            "fTPM command done"
        );
        TaStep::Complete(result)
    }

    fn close_session(&mut self, _: SessionId) {}

    /// A machine reset: the TPM power-cycles with the SoC, NV kept; the next session starts a
    /// new boot whatever id it names.
    fn unload(&mut self) {
        self.reset_tpm("machine reset");
        self.last_boot = None;
        self.awaiting_time = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_client_uuid_round_trips_and_other_clients_carry_no_boot() {
        let client = boot_client_uuid(0x0102_0304_0506_0708);
        assert_eq!(&client.as_bytes()[..8], b"teesboot");
        assert_eq!(&client.as_bytes()[8..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(boot_id_of(&client), Some(0x0102_0304_0506_0708));
        assert_eq!(boot_id_of(&Uuid::from_bytes([0; 16])), None);
        assert_eq!(boot_id_of(&uuid::FTPM_TA), None);
    }
}
