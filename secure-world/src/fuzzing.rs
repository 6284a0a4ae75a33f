//! The check behind the `sw_entry` fuzz target (`fuzz/`), kept here so that the default test
//! run replays every committed corpus and regression input through the same code
//! (`tests/fuzz_corpus.rs`). It panics only when a property fails.
//!
//! The input is a hostile normal world: a short program of RAM writes (raw bytes, message
//! arguments, page lists) and SMCs with registers of its choosing, each SMC going straight
//! into [`SecureWorld::smc`], fast and yielding calls alike.

use optee_abi::fuzzing::Input;
use optee_abi::mem::{PhysMem, PAGE_SIZE, PAGE_SIZE_U64};
use optee_abi::msg::{attr, ARG_HEADER_SIZE, PARAM_SIZE};
use optee_abi::smc::{func, ret, rpc, split_u64, Regs};
use optee_abi::uuid::{BNXT_TA, FTPM_TA};

use crate::config::{Config, Profile};
use crate::ram::SparseRam;
use crate::SecureWorld;

/// Pages of normal-world RAM the hostile normal world owns.
const RAM_PAGES: u64 = 16;
/// Most operations one input runs, so each input costs little.
const MAX_OPS: usize = 48;

/// Function ids the program picks from by index; an index past the table takes a raw id.
const FUNCS: [u32; 20] = [
    func::CALL_WITH_ARG,
    func::RETURN_FROM_RPC,
    func::CALL_WITH_RPC_ARG,
    func::CALL_WITH_REGD_ARG,
    func::CALLS_UID,
    func::CALLS_REVISION,
    func::GET_OS_UUID,
    func::GET_OS_REVISION,
    func::GET_SHM_CONFIG,
    func::EXCHANGE_CAPABILITIES,
    func::DISABLE_SHM_CACHE,
    func::ENABLE_SHM_CACHE,
    func::VM_CREATED,
    func::VM_DESTROYED,
    func::GET_THREAD_COUNT,
    func::ENABLE_ASYNC_NOTIF,
    func::GET_ASYNC_NOTIF_VALUE,
    0x3200_0077,
    0xB200_0055,
    0x8400_0000,
];

/// Attributes a structured param picks from; past the table, a raw attribute.
const ATTRS: [u64; 12] = [
    attr::NONE,
    attr::VALUE_INPUT,
    attr::VALUE_OUTPUT,
    attr::VALUE_INOUT,
    attr::RMEM_INPUT,
    attr::RMEM_OUTPUT,
    attr::RMEM_INOUT,
    attr::TMEM_INPUT,
    attr::TMEM_OUTPUT | attr::NONCONTIG,
    attr::TMEM_INOUT,
    attr::TMEM_INOUT | attr::NONCONTIG,
    attr::VALUE_INPUT | attr::META,
];

/// The fast calls whose a0 is data (a UID, a revision), not a return code.
const IDENTITY_CALLS: [u32; 4] = [
    func::CALLS_UID,
    func::CALLS_REVISION,
    func::GET_OS_UUID,
    func::GET_OS_REVISION,
];

/// OP-TEE's SMC return codes.
const RETURN_CODES: [u32; 9] = [
    ret::OK,
    ret::ETHREAD_LIMIT,
    ret::EBUSY,
    ret::ERESUME,
    ret::EBADADDR,
    ret::EBADCMD,
    ret::ENOMEM,
    ret::ENOTAVAIL,
    ret::UNKNOWN_FUNCTION,
];

/// The RPC requests a yielding call may come back with instead of a return code.
const RPCS: [u32; 4] = [rpc::ALLOC, rpc::FREE, rpc::FOREIGN_INTR, rpc::CMD];

/// The hostile normal world: its RAM, the secure world's last answer, and the program.
struct Hostile<'a> {
    input: Input<'a>,
    ram: SparseRam,
    base: u64,
    last: Regs,
}

impl Hostile<'_> {
    /// The address of page `n` of the normal world's RAM.
    fn page(&self, n: u8) -> u64 {
        self.base + u64::from(n) % RAM_PAGES * PAGE_SIZE_U64
    }

    /// A register value: small, a RAM address, a word of the last answer, or raw.
    fn word(&mut self) -> u64 {
        match self.input.u8() % 8 {
            0..=2 => u64::from(self.input.u8()),
            3 => {
                let page = self.input.u8();
                self.page(page) + u64::from(self.input.u8()) * 16
            }
            4 => self.last[usize::from(self.input.u8() % 8)],
            5 => u64::MAX - u64::from(self.input.u8()),
            6 => u64::from(self.input.u32()),
            _ => self.input.u64(),
        }
    }

    /// A param word for a message: as [`Hostile::word`], or a page-list pointer with an offset.
    fn param_word(&mut self) -> u64 {
        match self.input.u8() {
            0xf0..=0xff => {
                let page = self.input.u8();
                self.page(page) | u64::from(self.input.u8()) << 4
            }
            _ => self.word(),
        }
    }

    fn write(&mut self, pa: u64, bytes: &[u8]) {
        // Inside RAM by construction; a failure would only drop the write.
        let _ = self.ram.write(pa, bytes);
    }

    /// Writes raw input bytes at a page and offset.
    fn raw_write(&mut self) {
        let page = self.input.u8();
        let offset = u64::from(self.input.u16()) % PAGE_SIZE_U64;
        let len = usize::from(self.input.u8());
        let pa = self.page(page) + offset;
        let room = usize::try_from(PAGE_SIZE_U64 - offset).unwrap_or(0);
        let bytes = self.input.take(len.min(room)).to_vec();
        self.write(pa, &bytes);
    }

    /// Writes a message argument: a command, a session, and up to 6 params of chosen types.
    fn message(&mut self) {
        let page = self.input.u8();
        let pa = self.page(page);
        let mut bytes = [0u8; ARG_HEADER_SIZE + 6 * PARAM_SIZE];
        let cmd = u32::from(self.input.u8() % 10);
        let num = usize::from(self.input.u8() % 7);
        bytes[0..4].copy_from_slice(&cmd.to_le_bytes());
        let func_id = u32::from(self.input.u8());
        bytes[4..8].copy_from_slice(&func_id.to_le_bytes());
        let session = self.word() as u32;
        bytes[8..12].copy_from_slice(&session.to_le_bytes());
        bytes[28..32].copy_from_slice(&(num as u32).to_le_bytes());
        for i in 0..num {
            let at = ARG_HEADER_SIZE + i * PARAM_SIZE;
            let pick = usize::from(self.input.u8());
            let attr = ATTRS.get(pick).copied().unwrap_or_else(|| self.input.u64());
            bytes[at..at + 8].copy_from_slice(&attr.to_le_bytes());
            for w in 0..3 {
                let word = self.param_word();
                bytes[at + 8 + 8 * w..at + 16 + 8 * w].copy_from_slice(&word.to_le_bytes());
            }
        }
        // An OPEN_SESSION names a TA by UUID in its first two (meta) values.
        if cmd == 0 && num >= 2 && self.input.u8() % 2 == 0 {
            let uuid = if self.input.u8() % 2 == 0 {
                FTPM_TA
            } else {
                BNXT_TA
            };
            let meta = (attr::VALUE_INPUT | attr::META).to_le_bytes();
            bytes[32..40].copy_from_slice(&meta);
            bytes[64..72].copy_from_slice(&meta);
            bytes[40..56].copy_from_slice(&uuid_octets(uuid));
            bytes[72..80].fill(0);
        }
        self.write(pa, &bytes[..ARG_HEADER_SIZE + num * PARAM_SIZE]);
    }

    /// Writes a page list: entries naming RAM pages (or raw words), the last word a link.
    fn page_list(&mut self) {
        let page = self.input.u8();
        let pa = self.page(page);
        let entries = usize::from(self.input.u8());
        let mut list = [0u8; PAGE_SIZE];
        for slot in 0..entries.min(PAGE_SIZE / 8) {
            let word = match self.input.u8() {
                0xff => self.input.u64(),
                n => self.page(n),
            };
            list[slot * 8..slot * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
        self.write(pa, &list);
    }

    /// One SMC with registers from the program.
    fn smc(&mut self, world: &mut SecureWorld) {
        let pick = usize::from(self.input.u8());
        let id = FUNCS
            .get(pick % (FUNCS.len() + 4))
            .copied()
            .unwrap_or_else(|| self.input.u32());
        let mut regs = [0u64; 8];
        regs[0] = u64::from(id);
        match self.input.u8() % 4 {
            // A message at a page (a1:a2, as every yielding call names it).
            0 | 1 => {
                let page = self.input.u8();
                let (hi, lo) = split_u64(self.page(page));
                (regs[1], regs[2]) = (hi, lo);
            }
            // The last answer's a1:a2 and thread (a3), as an RPC answer carries them.
            2 => regs[1..4].copy_from_slice(&self.last[1..4]),
            _ => {
                regs[1] = self.word();
                regs[2] = self.word();
            }
        }
        for reg in regs.iter_mut().skip(3) {
            if self.input.u8() % 2 == 1 {
                *reg = self.word();
            }
        }
        let out = world.smc(&mut self.ram, regs);
        check_answer(world, id, &out);
        self.last = out;
    }
}

/// A UUID as OPEN_SESSION's first meta value carries it (a, b).
fn uuid_octets(uuid: optee_abi::uuid::Uuid) -> [u8; 16] {
    let (a, b) = uuid.to_value_pair();
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

/// What every answer must be: an OP-TEE return code (or an RPC request, for a yielding call),
/// an RPC naming one of the world's threads, and a heap that stays within its bounds.
fn check_answer(world: &SecureWorld, id: u32, out: &Regs) {
    let a0 = out[0] as u32;
    assert_eq!(out[0] >> 32, 0, "a0 {:#x} is not a 32-bit code", out[0]);
    if func::is_fast(id) {
        // ENABLE_SHM_CACHE answers EBUSY while threads are busy, DISABLE_SHM_CACHE ENOTAVAIL
        // once the cache is empty (core/arch/arm/tee/entry_fast.c): any return code, no RPC.
        if !IDENTITY_CALLS.contains(&id) {
            assert!(
                RETURN_CODES.contains(&a0),
                "fast call {id:#x} answered {a0:#x}"
            );
        }
    } else {
        assert!(
            RETURN_CODES.contains(&a0) || RPCS.contains(&a0),
            "yielding call {id:#x} answered {a0:#x}"
        );
        if rpc::is_rpc(out[0]) {
            let tid = usize::try_from(out[3]).unwrap_or(usize::MAX);
            assert!(tid < world.config().threads, "an RPC from thread {tid}");
        }
    }
    let heap = world.heap();
    assert!(heap.used <= heap.capacity, "heap over capacity");
    assert!(heap.used >= heap.baseline, "heap under its baseline");
}

/// A hostile normal world against the secure world's SMC entry: never a panic, every answer an
/// OP-TEE return code or RPC, and after a machine reset nothing is left held.
pub fn check_sw_entry(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let profile = if flags & 1 == 0 {
        Profile::Optee3_14
    } else {
        Profile::Optee4x
    };
    let mut config = Config::for_profile(profile);
    config.ram_size = RAM_PAGES * PAGE_SIZE_U64;
    config.foreign_intr_every = match flags >> 5 {
        0 => None,
        every => Some(u32::from(every)),
    };
    let threads = config.threads;
    let base = config.ram_base;
    let mut world = SecureWorld::new(config, u64::from(flags));
    let mut hostile = Hostile {
        input,
        ram: SparseRam::new(base, RAM_PAGES * PAGE_SIZE_U64),
        base,
        last: [0; 8],
    };
    for _ in 0..MAX_OPS {
        if hostile.input.is_empty() {
            break;
        }
        match hostile.input.u8() % 8 {
            0 => hostile.raw_write(),
            1 => hostile.message(),
            2 => hostile.page_list(),
            _ => hostile.smc(&mut world),
        }
    }
    world.reset();
    assert_eq!(world.threads().free(), threads, "a thread held after reset");
    assert_eq!(
        world.heap().used,
        world.heap().baseline,
        "heap held after reset"
    );
}
