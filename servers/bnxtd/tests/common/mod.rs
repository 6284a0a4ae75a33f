//! bnxtd's side of [`tee_client::testing`]: a fake BNXT TA behind the shared fake teed, and the
//! fake NIC's crash dump.
#![allow(clippy::unwrap_used, dead_code)]

use bnxtd::BnxtService;
use optee_abi::teec;
use tee_client::testing::{self, FakeTa, ShmTable, TestRam};
use tee_proto::lifecycle::ServerEvent;
use tee_proto::teed::{Param, TeedResponse};

// Aliases rather than `pub use`: not every test file uses them.
pub type TeedMode = testing::TeedMode;
pub const TEED_GENERATION: u32 = testing::TEED_GENERATION;

pub const BNXTD_GENERATION: u32 = 4;

/// bnxtd's core wired to the fake teed and BNXT TA.
pub type Harness = testing::Harness<FakeBnxtTa>;

/// Byte `index` of the fake NIC's crash dump.
pub fn dump_byte(index: u64) -> u8 {
    (index.wrapping_mul(0x9e37_79b1) >> 13) as u8 ^ (index as u8)
}

pub fn dump_slice(offset: u32, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| dump_byte(u64::from(offset) + i))
        .collect()
}

pub fn ready() -> ServerEvent {
    testing::ready_event(BNXTD_GENERATION)
}

/// A fake BNXT TA: FASTBOOT (func 0) and COPY_COREDUMP (func 3) in the `tee_bnxt_fw` layout.
pub struct FakeBnxtTa {
    /// (offset, size) of every COPY_COREDUMP the TA served.
    pub copies: Vec<(u64, u64)>,
    pub fastboots: u32,
    /// The TA's ret for FASTBOOT.
    pub fastboot_ret: u32,
    /// The TA's ret for COPY_COREDUMP.
    pub copy_ret: u32,
}

impl Default for FakeBnxtTa {
    fn default() -> Self {
        FakeBnxtTa {
            copies: Vec::new(),
            fastboots: 0,
            fastboot_ret: teec::SUCCESS,
            copy_ret: teec::SUCCESS,
        }
    }
}

impl FakeTa for FakeBnxtTa {
    type Service = BnxtService;
    const CLIENT_GENERATION: u32 = BNXTD_GENERATION;
    const RAM_LEN: usize = 16 << 20;

    fn invoke(
        &mut self,
        ram: &mut TestRam,
        shms: &ShmTable,
        func: u32,
        params: &[Param],
    ) -> TeedResponse {
        let ret = match func {
            0 => self.fastboot(params),
            3 => self.copy_coredump(ram, shms, params),
            _ => teec::ERROR_NOT_SUPPORTED,
        };
        TeedResponse::Invoked {
            ret,
            origin: teec::origin::TRUSTED_APP,
            params: heapless::Vec::new(),
        }
    }
}

impl FakeBnxtTa {
    fn fastboot(&mut self, params: &[Param]) -> u32 {
        assert_eq!(params, &[Param::None; 4], "FASTBOOT takes four NONE params");
        self.fastboots += 1;
        self.fastboot_ret
    }

    fn copy_coredump(&mut self, ram: &mut TestRam, shms: &ShmTable, params: &[Param]) -> u32 {
        let [Param::MemrefInOut {
            shm,
            offset: 0,
            size: capacity,
        }, Param::ValueIn {
            a: offset, b: size, ..
        }, Param::None, Param::None] = params
        else {
            panic!("not the tee_bnxt_fw layout: {params:?}");
        };
        if self.copy_ret != teec::SUCCESS {
            return self.copy_ret;
        }
        assert!(*size <= u64::from(*capacity));
        assert!(offset + size <= 8 << 20, "the copy stays inside the dump");
        let (pa, _) = shms[shm];
        ram.write_bytes(pa, &dump_slice(*offset as u32, *size as usize));
        self.copies.push((*offset, *size));
        teec::SUCCESS
    }
}
