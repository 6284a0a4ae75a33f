//! Fast calls (core/arch/arm/tee/entry_fast.c): answered at once, never on a secure thread.

use optee_abi::smc::{self, func, nsec_cap, ret, sec_cap, split_u64, Regs};
use tracing::debug;

use crate::thread::ThreadState;
use crate::world::{reply, SecureWorld};

/// Capabilities every build of the model reports, as 3.14 does (core/arch/arm/tee/entry_fast.c
/// tee_entry_exchange_capabilities): null memrefs, and dynamic shm since normal-world DDR is
/// known. HAVE_RESERVED_SHM is added when a reserved area is configured; 3.14 never reports
/// UNREGISTERED_SHM.
pub const SEC_CAPS: u64 = sec_cap::DYNAMIC_SHM | sec_cap::MEMREF_NULL;

/// `OPTEE_SMC_SHM_CACHED`: the static area is normal cached memory.
const SHM_CACHED: u64 = 1;

impl SecureWorld {
    pub(crate) fn fast_call(&mut self, regs: Regs) -> Regs {
        let words = |w: [u32; 4]| {
            [
                u64::from(w[0]),
                u64::from(w[1]),
                u64::from(w[2]),
                u64::from(w[3]),
                0,
                0,
                0,
                0,
            ]
        };
        match regs[0] as u32 {
            func::CALLS_UID => words(smc::MSG_UID),
            func::CALLS_REVISION => words([smc::MSG_REVISION_MAJOR, smc::MSG_REVISION_MINOR, 0, 0]),
            func::GET_OS_UUID => words(smc::OS_UUID),
            func::GET_OS_REVISION => {
                let rev = self.config.os_revision;
                words([rev.major, rev.minor, rev.build_id, 0])
            }
            // entry_fast.c: GET_SHM_CONFIG exists only with CFG_CORE_RESERVED_SHM.
            func::GET_SHM_CONFIG => match self.config.reserved_shm {
                Some(area) => [
                    u64::from(ret::OK),
                    area.base,
                    area.size,
                    SHM_CACHED,
                    0,
                    0,
                    0,
                    0,
                ],
                None => reply(ret::UNKNOWN_FUNCTION),
            },
            func::EXCHANGE_CAPABILITIES => {
                // Upstream refuses any normal-world capability it does not know.
                if regs[1] & !nsec_cap::UNIPROCESSOR != 0 {
                    return reply(ret::ENOTAVAIL);
                }
                let reserved = match self.config.reserved_shm {
                    Some(_) => sec_cap::HAVE_RESERVED_SHM,
                    None => 0,
                };
                self.profile_caps([u64::from(ret::OK), SEC_CAPS | reserved, 0, 0, 0, 0, 0, 0])
            }
            func::GET_THREAD_COUNT => [
                u64::from(ret::OK),
                self.threads.len() as u64,
                0,
                0,
                0,
                0,
                0,
                0,
            ],
            func::ENABLE_SHM_CACHE => {
                if !self.all_threads_free() {
                    return reply(ret::EBUSY);
                }
                self.cache_enabled = true;
                reply(ret::OK)
            }
            func::DISABLE_SHM_CACHE => self.disable_shm_cache(),
            other => {
                if let Some(answer) = self.notif_fast_call(other) {
                    return answer;
                }
                debug!(func = other, "unknown fast call");
                reply(ret::UNKNOWN_FUNCTION)
            }
        }
    }

    fn all_threads_free(&self) -> bool {
        self.threads.iter().all(|t| t.state == ThreadState::Free)
    }

    /// Hands back one cached RPC argument buffer per call; when none is left the cache is
    /// switched off and the answer is ENOTAVAIL.
    fn disable_shm_cache(&mut self) -> Regs {
        if !self.all_threads_free() {
            return reply(ret::EBUSY);
        }
        if let Some(buffer) = self.threads.iter_mut().find_map(|t| t.rpc_arg.take()) {
            self.heap.free(buffer.charge);
            let (hi, lo) = split_u64(buffer.cookie);
            return [u64::from(ret::OK), hi, lo, 0, 0, 0, 0, 0];
        }
        self.cache_enabled = false;
        reply(ret::ENOTAVAIL)
    }
}
