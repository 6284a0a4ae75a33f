//! The firmware TPM TA (ms-tpm-20-ref's OP-TEE fTPM; Linux `tpm_ftpm_tee`), running a real
//! TPM 2.0 (libtpms, through the `libtpms` crate).
//!
//! Interface as upstream: SUBMIT_COMMAND takes the command in p0 (MEMREF_INPUT) and returns
//! the response in p1 (MEMREF_INOUT, size set to the response length); EMULATE_PPI is not
//! supported. Flags SINGLE_INSTANCE | INSTANCE_KEEP_ALIVE | DEVICE_ENUM, no MULTI_SESSION: the
//! core answers a second open session with TEE_ERROR_BUSY.
//!
//! Lifecycle, as the real TA has it (ms-tpm-20-ref optee_ta fTPM.c; REFERENCE §5, §8):
//! * The TA is single-instance and keep-alive: its instance is **created once per secure-world
//!   lifetime**, at the first session after a machine reset, and outlives every session, every
//!   normal-world kexec and crash-kernel entry, and restarts of teed or tpmd.
//! * At creation (TA_CreateEntryPoint) it manufactures the TPM if NV is empty, runs `_TPM_Init`
//!   and its own TPM2_Startup(STATE), falling back to Startup(CLEAR). The TPM is therefore
//!   always started: PCRs extended before a kexec are still there after it, and a normal
//!   world's TPM2_Startup answers TPM_RC_INITIALIZE, which Linux's tpm2 driver (and tpmd, and
//!   tpm2-tools) read as "already started".
//! * A machine reset ([`crate::SecureWorld::reset`]) restarts the SoC: the core calls
//!   [`TrustedApp::unload`], the instance is gone, and the next session creates it again: NV
//!   kept, PCRs and sessions gone.
//! * Optionally ([`FtpmTa::with_state_file`]) NV is also written to a file after every command
//!   that committed NV, so a restart of the secure-world process keeps it.
//!
//! Normal-world traffic, as the real TA makes it: a SUBMIT_COMMAND whose command committed NV
//! suspends in one RPC before it answers (GET_TIME stands in for it), because the real fTPM
//! writes its dirty NV blocks back to OP-TEE secure storage at the end of such a command
//! (ms-tpm-20-ref optee_ta fTPM platform/NVMem.c, `_plat__NvCommit` → `_plat__NvWriteBack`),
//! and secure storage reaches tee-supplicant through RPCs; the model implements no storage, so
//! the one RPC stands for that traffic, and it keeps fTPM calls suspending in RPCs and using
//! the RPC shm cache (NV_DefineSpace, NV_Increment, Shutdown, ...). A command that changed no
//! NV (GetRandom, PCR_Extend, PCR_Read) runs and answers in one call with no RPC, as the real
//! TA does: its clock reads TEE_GetTAPersistentTime (platform/Clock.c `_plat__RealTime`), a
//! call into the secure-world core, not into the normal world.

mod state_file;

use std::path::{Path, PathBuf};

use libtpms::{Tpm, TpmError, MAX_COMMAND_SIZE};
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

/// Largest command accepted (the fTPM's and libtpms's buffer).
pub const MAX_COMMAND_LEN: u64 = MAX_COMMAND_SIZE as u64;

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
    /// The TA instance exists (created at the first session after a machine reset).
    created: bool,
    /// A SUBMIT_COMMAND that committed NV waits for its storage RPC; its outcome (the
    /// response, or a TEE result) is delivered when the RPC returns.
    awaiting_storage: Option<Result<Vec<u8>, u32>>,
    state_file: Option<PathBuf>,
    /// `Tpm::nv_commits` when NV was last written to the state file.
    persisted_commits: u64,
    /// Instances created: one per secure-world lifetime that used the fTPM.
    creations: u64,
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
            created: false,
            awaiting_storage: None,
            state_file: None,
            persisted_commits: 0,
            creations: 0,
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

    /// TA instances created so far: each ran `_TPM_Init` and its own TPM2_Startup.
    pub fn creations(&self) -> u64 {
        self.creations
    }

    fn tpm(&mut self) -> Result<&mut Tpm, TpmError> {
        match &mut self.tpm {
            Some(tpm) => Ok(tpm),
            slot @ None => Ok(slot.insert(Tpm::manufacture()?)),
        }
    }

    /// TA_CreateEntryPoint (fTPM.c): manufacture when NV is empty, `_TPM_Init`, then the TA's
    /// own TPM2_Startup(STATE), falling back to Startup(CLEAR) when no saved state resumes.
    fn create(&mut self) -> Result<(), TpmError> {
        let tpm = self.tpm()?;
        let state = tpm.process(&libtpms::command::startup(libtpms::command::SU_STATE))?;
        let started = match libtpms::command::response_code(&state) {
            Some(libtpms::command::rc::SUCCESS) => "STATE",
            _ => {
                let clear = tpm.process(&libtpms::command::startup(libtpms::command::SU_CLEAR))?;
                match libtpms::command::response_code(&clear) {
                    Some(libtpms::command::rc::SUCCESS) => "CLEAR",
                    code => {
                        // fTPM.c goes on regardless; the normal world's commands will tell.
                        warn!(?code, "fTPM: the TA's own TPM2_Startup failed");
                        "failed"
                    }
                }
            }
        };
        self.persist();
        self.created = true;
        self.creations += 1;
        info!(startup = started, "fTPM instance created; TPM started");
        Ok(())
    }

    /// fTPM.c TA_InvokeCommandEntryPoint: p0 MEMREF_INPUT and p1 MEMREF_INOUT, each of
    /// 1..=4096 bytes (MAX_COMMAND_SIZE / MAX_RESPONSE_SIZE), p2/p3 NONE, and the command's
    /// header length within p0. Checked before the command runs, as the real TA checks before
    /// it runs anything.
    fn check_submit_params(ctx: &TaContext<'_>) -> bool {
        let expected = [
            ParamType::MemrefInput,
            ParamType::MemrefInout,
            ParamType::None,
            ParamType::None,
        ];
        let sized = |i| {
            ctx.memref_size(i)
                .is_ok_and(|len| (1..=MAX_COMMAND_LEN).contains(&len))
        };
        if ctx.param_types() != expected || !sized(0) || !sized(1) {
            return false;
        }
        ctx.memref_size(0)
            .ok()
            .zip(Self::declared_len(ctx))
            .is_some_and(|(len, declared)| declared <= len)
    }

    /// The length in the command's header (bytes 2..6, big-endian); bytes past the end of a
    /// shorter p0 read as zero, as the TA's zeroed command buffer would give them.
    fn declared_len(ctx: &TaContext<'_>) -> Option<u64> {
        let len = ctx.memref_size(0).ok()?;
        let mut head = [0u8; 6];
        let take = head.len().min(len as usize);
        ctx.read_memref(0, 0, &mut head[..take]).ok()?;
        Some(u64::from(u32::from_be_bytes([
            head[2], head[3], head[4], head[5],
        ])))
    }

    /// Runs the command in p0 (fTPM.c): the command's length is its header's, which must not
    /// exceed p0. Returns the response, or the TEE result that ends the call.
    fn execute(&mut self, ctx: &mut TaContext<'_>) -> Result<Vec<u8>, u32> {
        let len = ctx.memref_size(0).map_err(|_| teec::ERROR_BAD_PARAMETERS)?;
        let mut command = vec![0u8; len as usize];
        ctx.read_memref(0, 0, &mut command)
            .map_err(|_| teec::ERROR_BAD_PARAMETERS)?;
        let declared = Self::declared_len(ctx)
            .filter(|&declared| declared <= len)
            .ok_or(teec::ERROR_BAD_PARAMETERS)?;
        command.truncate(declared as usize);
        let response = self.tpm().and_then(|tpm| tpm.process(&command));
        self.persist();
        response.map_err(|error| {
            warn!(%error, "fTPM engine failed");
            teec::ERROR_GENERIC
        })
    }

    /// Writes the response into p1 (fTPM.c): p1's size is left as the caller set it (the
    /// caller reads the length from the response header), and a response larger than p1
    /// answers SHORT_BUFFER; the command has run either way, as in the real TA.
    fn deliver(outcome: Result<Vec<u8>, u32>, ctx: &mut TaContext<'_>) -> u32 {
        let response = match outcome {
            Ok(response) => response,
            Err(code) => return code,
        };
        let Ok(capacity) = ctx.memref_size(1) else {
            return teec::ERROR_BAD_PARAMETERS;
        };
        if response.len() as u64 > capacity {
            return teec::ERROR_SHORT_BUFFER;
        }
        if ctx.write_memref(1, 0, &response).is_err() {
            return teec::ERROR_BAD_PARAMETERS;
        }
        teec::SUCCESS
    }

    /// NV commits of the TPM so far (0 before it exists).
    fn commits(&self) -> u64 {
        self.tpm.as_ref().map_or(0, Tpm::nv_commits)
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
        _client: &ClientIdentity,
        _: &mut TaContext<'_>,
    ) -> u32 {
        if !self.created {
            if let Err(error) = self.create() {
                warn!(%error, "fTPM cannot be created");
                return teec::ERROR_GENERIC;
            }
        }
        debug!(session, "fTPM session opened");
        teec::SUCCESS
    }

    fn invoke(&mut self, session: SessionId, func: u32, ctx: &mut TaContext<'_>) -> TaStep {
        let step = match func {
            SUBMIT_COMMAND if Self::check_submit_params(ctx) => {
                let before = self.commits();
                let outcome = self.execute(ctx);
                if self.commits() != before {
                    // NVMem.c: the dirty blocks go to secure storage before the answer.
                    self.awaiting_storage = Some(outcome);
                    TaStep::Rpc(TaRpc::GetTime)
                } else {
                    TaStep::Complete(Self::deliver(outcome, ctx))
                }
            }
            EMULATE_PPI => TaStep::Complete(teec::ERROR_NOT_SUPPORTED),
            _ => TaStep::Complete(teec::ERROR_BAD_PARAMETERS),
        };
        debug!(session, func, "fTPM invoke");
        step
    }

    fn resume(&mut self, session: SessionId, reply: RpcReply, ctx: &mut TaContext<'_>) -> TaStep {
        let Some(outcome) = self.awaiting_storage.take() else {
            return TaStep::Complete(teec::ERROR_BAD_STATE);
        };
        let result = match reply {
            RpcReply::Time { .. } => Self::deliver(outcome, ctx),
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

    /// A machine reset: the instance goes with the SoC. The TPM loses its volatile state now
    /// (NV kept); the next session creates the instance again, which starts the TPM.
    fn unload(&mut self) {
        if let Some(tpm) = &mut self.tpm {
            if let Err(error) = tpm.power_cycle() {
                warn!(%error, "fTPM power cycle failed");
            }
        }
        self.created = false;
        self.awaiting_storage = None;
    }
}
