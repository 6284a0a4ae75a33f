//! The programs that use tpmd and bnxtd: a TPM consumer and the NIC driver. They check every
//! answer: a retryable or typed error is fine, a wrong answer is a violation.

use std::collections::BTreeMap;

use tee_proto::bnxt::{BnxtError, BnxtRequest, BnxtResponse};
use tee_proto::tpm::{TpmError, TpmRequest, TpmResponse};
use tee_proto::{Frame, Header};

/// TPM2_Startup(SU_CLEAR).
pub const TPM_STARTUP_CLEAR: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0];
/// TPM2_GetRandom(16).
pub const TPM_GET_RANDOM_16: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 16];
const TPM_RC_SUCCESS: u32 = 0;
const TPM_RC_INITIALIZE: u32 = 0x100;
/// TPM_RC_NV_DEFINED: the index exists already (TPM NV outlives every boot).
const TPM_RC_NV_DEFINED: u32 = 0x14C;
/// The consumer's NV counter: an owner index, as `teectl`'s chaos consumers keep one.
pub const NV_COUNTER_INDEX: u32 = 0x0150_0020;
/// One command in this many is an NV increment: an NV commit, which the fTPM writes back
/// through secure storage with an RPC (ms-tpm-20-ref platform/NVMem.c), so the traffic keeps
/// the fTPM suspending in RPCs and using the RPC shm cache as real TPM users do.
const NV_EVERY: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TpmAsk {
    Startup,
    GetRandom,
    DefineCounter,
    Increment,
}

/// A program talking TPM 2.0 to tpmd.
#[derive(Debug, Default)]
pub struct TpmConsumer {
    started: bool,
    /// The NV counter exists (defined by this consumer, in this or an earlier boot).
    counter_defined: bool,
    /// Commands sent since the counter was defined, to pick increments.
    sent: u32,
    next_id: u32,
    pending: BTreeMap<u32, TpmAsk>,
    pub answered: u64,
    pub errors: u64,
    /// Answers checked as correct: a successful Startup, a well-formed GetRandom, the counter
    /// defined, an increment done.
    pub correct: u64,
}

impl TpmConsumer {
    /// The TPM was reset (a new boot): Startup is needed again.
    pub fn new_boot(&mut self) {
        self.started = false;
        self.pending.clear();
    }

    /// tpmd went away: what was asked will not be answered.
    pub fn server_gone(&mut self) {
        self.pending.clear();
    }

    pub fn idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// The next command to send.
    pub fn next_request(&mut self) -> Frame<TpmRequest> {
        let ask = if !self.started {
            TpmAsk::Startup
        } else if !self.counter_defined {
            TpmAsk::DefineCounter
        } else {
            self.sent = self.sent.wrapping_add(1);
            if self.sent % NV_EVERY == 0 {
                TpmAsk::Increment
            } else {
                TpmAsk::GetRandom
            }
        };
        let bytes = match ask {
            TpmAsk::Startup => TPM_STARTUP_CLEAR.to_vec(),
            TpmAsk::GetRandom => TPM_GET_RANDOM_16.to_vec(),
            TpmAsk::DefineCounter => {
                use libtpms::command::nv_attr;
                let attributes =
                    nv_attr::NT_COUNTER | nv_attr::OWNERWRITE | nv_attr::OWNERREAD | nv_attr::NO_DA;
                libtpms::command::nv_define_space(NV_COUNTER_INDEX, 8, attributes)
            }
            TpmAsk::Increment => {
                libtpms::command::nv_increment(libtpms::command::RH_OWNER, NV_COUNTER_INDEX)
            }
        };
        self.next_id += 1;
        self.pending.insert(self.next_id, ask);
        let bytes = heapless::Vec::from_slice(&bytes).unwrap_or_default();
        Frame {
            header: Header::new(0, 0, self.next_id),
            body: TpmRequest::Command { bytes },
        }
    }

    /// Checks an answer.
    pub fn answer(&mut self, frame: Frame<TpmResponse>) -> Result<(), String> {
        let Some(ask) = self.pending.remove(&frame.header.request_id) else {
            return Err(format!(
                "tpm answer to unknown request {}",
                frame.header.request_id
            ));
        };
        self.answered += 1;
        let bytes = match frame.body {
            TpmResponse::Response { bytes } => bytes,
            TpmResponse::Error(error) => {
                self.errors += 1;
                return match error {
                    TpmError::Retryable
                    | TpmError::TeeUnavailable
                    | TpmError::ShuttingDown
                    | TpmError::ServerRestarted { .. }
                    | TpmError::Tee { .. } => Ok(()),
                    other => Err(format!("tpm: unexpected error {other:?} for {ask:?}")),
                };
            }
        };
        if bytes.len() < 10 {
            return Err(format!("tpm: {}-byte response", bytes.len()));
        }
        let size = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]) as usize;
        let rc = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
        if size != bytes.len() {
            return Err(format!(
                "tpm: header says {size} bytes, got {}",
                bytes.len()
            ));
        }
        match (ask, rc) {
            (TpmAsk::Startup, TPM_RC_SUCCESS | TPM_RC_INITIALIZE) => {
                self.started = true;
                self.correct += 1;
            }
            (TpmAsk::GetRandom, TPM_RC_SUCCESS) => {
                if bytes.len() != 28 || bytes[10..12] != [0, 16] {
                    return Err("tpm: GetRandom(16) answered with the wrong shape".into());
                }
                self.correct += 1;
            }
            (TpmAsk::DefineCounter, TPM_RC_SUCCESS | TPM_RC_NV_DEFINED) => {
                self.counter_defined = true;
                self.correct += 1;
            }
            (TpmAsk::Increment, TPM_RC_SUCCESS) => self.correct += 1,
            // The first owner authorisation after an unorderly restart may be asked again.
            (TpmAsk::DefineCounter | TpmAsk::Increment, libtpms::command::rc::RETRY) => {}
            // The TPM was reset under us (a new boot): start it again.
            (TpmAsk::GetRandom | TpmAsk::DefineCounter | TpmAsk::Increment, TPM_RC_INITIALIZE) => {
                self.started = false
            }
            (ask, rc) => return Err(format!("tpm: {ask:?} answered rc {rc:#x}")),
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NicAsk {
    Load,
    Chunk { offset: u32 },
}

/// The NIC driver asking bnxtd for firmware boot and crash-dump chunks.
#[derive(Debug, Default)]
pub struct NicDriver {
    loaded: bool,
    next_id: u32,
    pending: BTreeMap<u32, NicAsk>,
    pub chunks_checked: u64,
    pub errors: u64,
}

impl NicDriver {
    pub fn new_boot(&mut self) {
        self.loaded = false;
        self.pending.clear();
    }

    pub fn server_gone(&mut self) {
        self.pending.clear();
    }

    pub fn idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// The next request; `pick` chooses a chunk index.
    pub fn next_request(&mut self, pick: u32) -> Frame<BnxtRequest> {
        self.next_id += 1;
        let (ask, body) = if self.loaded {
            let offset = (pick % 2048) * 4096;
            (
                NicAsk::Chunk { offset },
                BnxtRequest::CopyCoredump { offset, size: 4096 },
            )
        } else {
            (NicAsk::Load, BnxtRequest::Load)
        };
        self.pending.insert(self.next_id, ask);
        Frame {
            header: Header::new(0, 0, self.next_id),
            body,
        }
    }

    pub fn answer(&mut self, frame: Frame<BnxtResponse>) -> Result<(), String> {
        let Some(ask) = self.pending.remove(&frame.header.request_id) else {
            return Err(format!(
                "bnxt answer to unknown request {}",
                frame.header.request_id
            ));
        };
        match (ask, frame.body) {
            (NicAsk::Load, BnxtResponse::Loaded) => self.loaded = true,
            (NicAsk::Chunk { offset }, BnxtResponse::Coredump { offset: got, data }) => {
                let mut want = vec![0u8; data.len()];
                bnxt_image::coredump_chunk(u64::from(offset), &mut want);
                if got != offset || data.len() != 4096 || data[..] != want[..] {
                    return Err(format!("bnxt: wrong coredump chunk at {offset:#x}"));
                }
                self.chunks_checked += 1;
            }
            (_, BnxtResponse::Error(error)) => {
                self.errors += 1;
                match error {
                    BnxtError::NoDevice
                    | BnxtError::TeeUnavailable
                    | BnxtError::Retryable
                    | BnxtError::ServerRestarted { .. }
                    | BnxtError::Tee { .. } => {}
                    other => return Err(format!("bnxt: unexpected error {other:?} for {ask:?}")),
                }
            }
            (ask, other) => return Err(format!("bnxt: {ask:?} answered {other:?}")),
        }
        Ok(())
    }
}
