//! The fTPM front end: TPM 2.0 commands through the TA's SUBMIT_COMMAND, in the buffer layout
//! of Linux `tpm_ftpm_tee` (REFERENCE §4).

use heapless::Vec;
use optee_abi::mem::PhysMem;
use optee_abi::uuid::{self, Uuid};
use tee_proto::lifecycle::{ServerKind, ShutdownReason};
use tee_proto::teed::Param;
use tee_proto::tpm::{
    declared_size, TpmError, TpmRequest, TpmResponse, TPM_BUFFER_MAX, TPM_HEADER_SIZE,
};
use tee_proto::TpmInterface;
use tracing::debug;

use tee_client::engine::{Begin, ClientError, Failure, ShmBuffer, TaCall, TaReply, TaService};

/// The TA's command that runs one TPM command.
pub const SUBMIT_COMMAND: u32 = 0;
/// The registered buffer: a command half and a response half.
pub const SHM_SIZE: u32 = 2 * TPM_BUFFER_MAX as u32;
/// Where the command is written.
pub const COMMAND_OFFSET: u32 = 0;
/// Where the TA writes the response.
pub const RESPONSE_OFFSET: u32 = TPM_BUFFER_MAX as u32;

/// TPM_CC_Shutdown.
const CC_SHUTDOWN: u32 = 0x0145;
/// TPM_SU_CLEAR.
const SU_CLEAR: u16 = 0x0000;
/// TPM_CC_Startup.
const CC_STARTUP: u32 = 0x0144;
/// TPM_RC_INITIALIZE: for TPM2_Startup, the TPM was already started.
const TPM_RC_INITIALIZE: u32 = 0x0100;

/// Whether `command` is TPM2_Startup.
fn is_startup(command: &[u8]) -> bool {
    command.get(6..10) == Some(&CC_STARTUP.to_be_bytes()[..])
}

/// The response code of a TPM response.
fn response_code(response: &TpmResponse) -> Option<u32> {
    match response {
        TpmResponse::Response { bytes } => bytes
            .get(6..10)
            .and_then(|code| code.try_into().ok())
            .map(u32::from_be_bytes),
        TpmResponse::Error(_) => None,
    }
}

/// TPM2_Shutdown(SU_CLEAR): sent before a planned kexec or reboot, so that the next boot's
/// Startup is orderly and the TPM's lockout counter does not rise.
pub fn shutdown_clear_command() -> [u8; 12] {
    let mut command = [0u8; 12];
    command[0..2].copy_from_slice(&tee_proto::tpm::TPM_ST_NO_SESSIONS.to_be_bytes());
    command[2..6].copy_from_slice(&12u32.to_be_bytes());
    command[6..10].copy_from_slice(&CC_SHUTDOWN.to_be_bytes());
    command[10..12].copy_from_slice(&SU_CLEAR.to_be_bytes());
    command
}

/// A checked TPM command waiting for its turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmCommand {
    bytes: Vec<u8, TPM_BUFFER_MAX>,
}

/// The TPM-specific part of tpmd; stateless between commands.
#[derive(Debug, Default)]
pub struct FtpmService;

impl FtpmService {
    fn error(error: TpmError) -> TpmResponse {
        TpmResponse::Error(error)
    }
}

/// The one mapping from client failures to TPM consumer errors.
pub fn tpm_error(error: ClientError) -> TpmError {
    match error.failure() {
        Failure::TeeUnavailable => TpmError::TeeUnavailable,
        Failure::Retry => TpmError::Retryable,
        Failure::Gone => TpmError::ShuttingDown,
        Failure::Tee { code, origin } => TpmError::Tee { code, origin },
    }
}

/// Writes `command` at the start of the zeroed buffer and returns the call that submits it.
fn submit(command: &[u8], mem: &mut dyn PhysMem, shm: ShmBuffer) -> Result<TaCall, ClientError> {
    // As Linux does: no response bytes of an earlier command can be mistaken for this one's.
    mem.zero(shm.pa, u64::from(shm.size))?;
    mem.write(shm.pa + u64::from(COMMAND_OFFSET), command)?;
    let len = command.len() as u32;
    Ok(TaCall::new(
        SUBMIT_COMMAND,
        [
            Param::MemrefIn {
                shm: shm.id,
                offset: COMMAND_OFFSET,
                size: len,
            },
            Param::MemrefInOut {
                shm: shm.id,
                offset: RESPONSE_OFFSET,
                size: TPM_BUFFER_MAX as u32,
            },
            Param::None,
            Param::None,
        ],
    ))
}

/// Reads the response the TA left in the buffer, checking its declared size.
fn read_response(mem: &mut dyn PhysMem, shm: ShmBuffer) -> Result<TpmResponse, ClientError> {
    let response_pa = shm.pa + u64::from(RESPONSE_OFFSET);
    let mut header = [0u8; TPM_HEADER_SIZE];
    mem.read(response_pa, &mut header)?;
    let declared = declared_size(&header).unwrap_or(0);
    let len = declared as usize;
    if !(TPM_HEADER_SIZE..=TPM_BUFFER_MAX).contains(&len) {
        return Ok(FtpmService::error(TpmError::BadResponse { declared }));
    }
    let mut bytes: Vec<u8, TPM_BUFFER_MAX> = Vec::new();
    // Cannot fail: `len` was checked against the capacity above.
    if bytes.resize(len, 0).is_err() {
        return Ok(FtpmService::error(TpmError::BadResponse { declared }));
    }
    mem.read(response_pa, &mut bytes)?;
    Ok(TpmResponse::Response { bytes })
}

impl TaService for FtpmService {
    type Interface = TpmInterface;
    type Job = TpmCommand;

    const KIND: ServerKind = ServerKind::Tpmd;
    const TA: Uuid = uuid::FTPM_TA;
    const SHM_SIZE: u32 = SHM_SIZE;

    fn accept(&mut self, request: TpmRequest) -> Result<TpmCommand, TpmResponse> {
        let TpmRequest::Command { bytes } = request;
        let len = bytes.len();
        if len < TPM_HEADER_SIZE {
            return Err(Self::error(TpmError::CommandTooShort { len: len as u32 }));
        }
        // The frame type caps the bytes at the buffer; a header claiming more cannot fit either.
        let declared = declared_size(&bytes).unwrap_or(0);
        if len > TPM_BUFFER_MAX || declared as usize > TPM_BUFFER_MAX {
            let len = declared.max(len as u32);
            return Err(Self::error(TpmError::CommandTooLarge { len }));
        }
        Ok(TpmCommand { bytes })
    }

    fn begin(
        &mut self,
        job: &TpmCommand,
        mem: &mut dyn PhysMem,
        shm: ShmBuffer,
    ) -> Begin<TpmResponse> {
        match submit(&job.bytes, mem, shm) {
            Ok(call) => Begin::Call(call),
            Err(error) => Begin::Done(self.fail(error)),
        }
    }

    fn complete(
        &mut self,
        job: &TpmCommand,
        mem: &mut dyn PhysMem,
        shm: ShmBuffer,
        reply: TaReply<'_>,
    ) -> TpmResponse {
        if reply.ret != optee_abi::teec::SUCCESS {
            debug!(
                ret = reply.ret,
                origin = reply.origin,
                "TPM command failed in the TEE"
            );
            return Self::error(TpmError::Tee {
                code: reply.ret,
                origin: reply.origin,
            });
        }
        let response = read_response(mem, shm).unwrap_or_else(|error| self.fail(error));
        if is_startup(&job.bytes) && response_code(&response) == Some(TPM_RC_INITIALIZE) {
            // The fTPM TA starts the TPM once per secure-world lifetime (fTPM.c
            // TA_CreateEntryPoint): "already started", as Linux's tpm2_auto_startup reads it.
            // The consumer gets the TPM's own answer, as through /dev/tpm0.
            debug!("TPM2_Startup: TPM already started");
        }
        response
    }

    fn fail(&self, error: ClientError) -> TpmResponse {
        Self::error(tpm_error(error))
    }

    fn before_release(
        &mut self,
        reason: ShutdownReason,
        mem: &mut dyn PhysMem,
        shm: ShmBuffer,
    ) -> Option<TaCall> {
        match reason {
            // Best effort only on a crash: init's wait is short.
            ShutdownReason::Crash => None,
            ShutdownReason::Kexec | ShutdownReason::Reboot => {
                submit(&shutdown_clear_command(), mem, shm).ok()
            }
        }
    }
}
