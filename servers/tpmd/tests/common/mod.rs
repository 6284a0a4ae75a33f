//! tpmd's side of [`tee_client::testing`]: a fake fTPM TA behind the shared fake teed, and TPM
//! command helpers.
#![allow(clippy::unwrap_used, dead_code)]

use tee_client::testing::{self, FakeTa, ShmTable, TestRam};
use tee_proto::lifecycle::ServerEvent;
use tee_proto::teed::{Param, ParamOut, TeedResponse};
use tee_proto::tpm::TpmRequest;
use tpmd::FtpmService;

// Aliases rather than `pub use`: not every test file uses them.
pub type TeedMode = testing::TeedMode;
pub const TEED_GENERATION: u32 = testing::TEED_GENERATION;

pub const TPMD_GENERATION: u32 = 3;

/// tpmd's core wired to the fake teed and fTPM.
pub type Harness = testing::Harness<FakeFtpm>;

/// A TPM command with the given command code and `extra` parameter bytes.
pub fn tpm_command(code: u32, extra: &[u8]) -> Vec<u8> {
    let len = 10 + extra.len() as u32;
    let mut bytes = vec![0x80, 0x01];
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&code.to_be_bytes());
    bytes.extend_from_slice(extra);
    bytes
}

/// The fake TA's answer to a command: a response that names the command code it answers.
pub fn expected_response(command: &[u8]) -> Vec<u8> {
    let mut response = vec![0x80, 0x01, 0, 0, 0, 14, 0, 0, 0, 0];
    response.extend_from_slice(&command[6..10]);
    response
}

pub fn ready() -> ServerEvent {
    testing::ready_event(TPMD_GENERATION)
}

/// A fake fTPM TA: checks the `tpm_ftpm_tee` layout and answers from its script.
#[derive(Default)]
pub struct FakeFtpm {
    /// Command bytes the fake TA received, in order.
    pub commands: Vec<Vec<u8>>,
    /// Forces the TA's ret and origin.
    pub invoke_result: Option<(u32, u32)>,
    /// Bytes the TA writes at the response offset instead of a well-formed response.
    pub raw_response: Option<Vec<u8>>,
}

impl FakeTa for FakeFtpm {
    type Service = FtpmService;
    const CLIENT_GENERATION: u32 = TPMD_GENERATION;
    const RAM_LEN: usize = 1 << 20;

    fn invoke(
        &mut self,
        ram: &mut TestRam,
        shms: &ShmTable,
        _func: u32,
        params: &[Param],
    ) -> TeedResponse {
        let [Param::MemrefIn {
            shm,
            offset: 0,
            size,
        }, Param::MemrefInOut {
            shm: out_shm,
            offset: 4096,
            size: 4096,
        }, Param::None, Param::None] = params
        else {
            panic!("not the tpm_ftpm_tee layout: {params:?}");
        };
        assert_eq!(shm, out_shm);
        let (pa, _) = shms[shm];
        let command = ram.slice(pa, *size as usize).to_vec();
        self.commands.push(command.clone());
        if let Some((ret, origin)) = self.invoke_result {
            return TeedResponse::Invoked {
                ret,
                origin,
                params: heapless::Vec::new(),
            };
        }
        let response = self
            .raw_response
            .clone()
            .unwrap_or_else(|| expected_response(&command));
        ram.write_bytes(pa + 4096, &response);
        TeedResponse::Invoked {
            ret: 0,
            origin: 4,
            params: heapless::Vec::from_slice(&[
                ParamOut::None,
                ParamOut::Memref {
                    size: response.len() as u32,
                },
                ParamOut::None,
                ParamOut::None,
            ])
            .unwrap(),
        }
    }
}

/// tpmd's consumer request: a raw TPM command.
pub trait TpmCommands {
    /// Sends TPM command `bytes` from `consumer`; returns the request id.
    fn command(&mut self, consumer: u64, bytes: &[u8]) -> u32;
}

impl TpmCommands for Harness {
    fn command(&mut self, consumer: u64, bytes: &[u8]) -> u32 {
        let body = TpmRequest::Command {
            bytes: heapless::Vec::from_slice(bytes).unwrap(),
        };
        self.request(consumer, body)
    }
}
