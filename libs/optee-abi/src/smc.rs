//! SMC calling convention of OP-TEE (`optee_smc.h`): function ids in a0, results in a0..a7.
//!
//! Registers are carried as u64 but OP-TEE treats each as 32 bits (SMC32 convention); 64-bit
//! quantities travel as a (high, low) pair of registers.

/// One register frame, a0..a7, the same in both directions and on every transport.
pub type Regs = [u64; 8];

/// Function ids placed in a0 by the normal world.
pub mod func {
    /// Fast call: the OP-TEE message API UID.
    pub const CALLS_UID: u32 = 0xBF00_FF01;
    /// Fast call: the message API revision.
    pub const CALLS_REVISION: u32 = 0xBF00_FF03;
    /// Fast call: the UUID of OP-TEE OS.
    pub const GET_OS_UUID: u32 = 0xB200_0000;
    /// Fast call: OP-TEE OS revision and build id.
    pub const GET_OS_REVISION: u32 = 0xB200_0001;
    /// Yielding: resume a thread suspended in an RPC.
    pub const RETURN_FROM_RPC: u32 = 0x3200_0003;
    /// Yielding: call with an `optee_msg_arg` at the physical address a1:a2.
    pub const CALL_WITH_ARG: u32 = 0x3200_0004;
    /// Fast call: the static shared-memory area.
    pub const GET_SHM_CONFIG: u32 = 0xB200_0007;
    /// Fast call: exchange capability bits.
    pub const EXCHANGE_CAPABILITIES: u32 = 0xB200_0009;
    /// Fast call: take one buffer out of the RPC shm cache, disabling it when empty.
    pub const DISABLE_SHM_CACHE: u32 = 0xB200_000A;
    /// Fast call: enable the RPC shm cache.
    pub const ENABLE_SHM_CACHE: u32 = 0xB200_000B;
    /// Fast call, hypervisor only.
    pub const VM_CREATED: u32 = 0xB200_000D;
    /// Fast call, hypervisor only.
    pub const VM_DESTROYED: u32 = 0xB200_000E;
    /// Fast call: number of secure threads.
    pub const GET_THREAD_COUNT: u32 = 0xB200_000F;
    /// Fast call, with SEC_CAP_ASYNC_NOTIF: the normal world takes asynchronous notifications.
    pub const ENABLE_ASYNC_NOTIF: u32 = 0xB200_0010;
    /// Fast call, with SEC_CAP_ASYNC_NOTIF: one pending notification value (a1) and flags (a2,
    /// [`super::async_notif`]).
    pub const GET_ASYNC_NOTIF_VALUE: u32 = 0xB200_0011;
    /// Yielding, with SEC_CAP_RPC_ARG: like CALL_WITH_ARG (a1:a2 = physical address), the RPC
    /// argument struct following the call's own in the same buffer.
    pub const CALL_WITH_RPC_ARG: u32 = 0x3200_0012;
    /// Yielding, with SEC_CAP_RPC_ARG: a1:a2 = cookie of a registered shm, a3 = offset of the
    /// argument in it; the RPC argument struct follows the call's own.
    pub const CALL_WITH_REGD_ARG: u32 = 0x3200_0013;

    /// True for a fast call (bit 31 set): it never yields and never needs a secure thread.
    pub const fn is_fast(id: u32) -> bool {
        id & 0x8000_0000 != 0
    }
}

/// Return codes in a0.
pub mod ret {
    pub const OK: u32 = 0;
    pub const ETHREAD_LIMIT: u32 = 1;
    pub const EBUSY: u32 = 2;
    pub const ERESUME: u32 = 3;
    pub const EBADADDR: u32 = 4;
    pub const EBADCMD: u32 = 5;
    pub const ENOMEM: u32 = 6;
    pub const ENOTAVAIL: u32 = 7;
    pub const UNKNOWN_FUNCTION: u32 = 0xFFFF_FFFF;
}

/// RPC requests: a0 values returned by a yielding call that wants the normal world's help.
pub mod rpc {
    /// Allocate `a1` bytes of shm; answer a1:a2 = PA, a4:a5 = cookie, zeros on failure.
    pub const ALLOC: u32 = 0xFFFF_0000;
    /// Free the shm whose cookie is a1:a2.
    pub const FREE: u32 = 0xFFFF_0002;
    /// A foreign (normal-world) interrupt arrived; just resume.
    pub const FOREIGN_INTR: u32 = 0xFFFF_0004;
    /// Execute the RPC command in the shm whose cookie is a1:a2.
    pub const CMD: u32 = 0xFFFF_0005;

    /// True when a0 carries an RPC request rather than a final return code.
    pub const fn is_rpc(a0: u64) -> bool {
        let a0 = a0 as u32;
        a0 & 0xFFFF_0000 == 0xFFFF_0000 && a0 != super::ret::UNKNOWN_FUNCTION
    }
}

/// Capability bits the secure world reports from EXCHANGE_CAPABILITIES.
pub mod sec_cap {
    pub const HAVE_RESERVED_SHM: u64 = 1 << 0;
    pub const UNREGISTERED_SHM: u64 = 1 << 1;
    pub const DYNAMIC_SHM: u64 = 1 << 2;
    pub const VIRTUALIZATION: u64 = 1 << 3;
    pub const MEMREF_NULL: u64 = 1 << 4;
    pub const ASYNC_NOTIF: u64 = 1 << 5;
    pub const RPC_ARG: u64 = 1 << 6;
}

/// GET_ASYNC_NOTIF_VALUE's answer (optee_smc.h): a2 flags, and the value that asks for a
/// DO_BOTTOM_HALF yielding call.
pub mod async_notif {
    /// a1 holds a value.
    pub const VALID: u64 = 1 << 0;
    /// More values are pending: ask again.
    pub const PENDING: u64 = 1 << 1;
    /// The value asking the normal world to enter OPTEE_MSG_CMD_DO_BOTTOM_HALF.
    pub const VALUE_DO_BOTTOM_HALF: u64 = 0;
}

/// Capability bits the normal world offers in EXCHANGE_CAPABILITIES.
pub mod nsec_cap {
    pub const UNIPROCESSOR: u64 = 1 << 0;
}

/// The OP-TEE message API UID returned by CALLS_UID in a0..a3.
pub const MSG_UID: [u32; 4] = [0x384f_b3e0, 0xe7f8_11e3, 0xaf63_0002, 0xa5d5_c51b];
/// The OP-TEE OS UUID returned by GET_OS_UUID in a0..a3.
pub const OS_UUID: [u32; 4] = [0x4861_78e0, 0xe7f8_11e3, 0xbc5e_0002, 0xa5d5_c51b];
/// Major message API revision a driver must see.
pub const MSG_REVISION_MAJOR: u32 = 2;
/// Minor message API revision of this model.
pub const MSG_REVISION_MINOR: u32 = 0;

/// Joins a (high, low) register pair, each holding 32 bits, into one u64.
pub const fn join_u32_pair(hi: u64, lo: u64) -> u64 {
    ((hi & 0xFFFF_FFFF) << 32) | (lo & 0xFFFF_FFFF)
}

/// Splits a u64 into a (high, low) register pair.
pub const fn split_u64(value: u64) -> (u64, u64) {
    (value >> 32, value & 0xFFFF_FFFF)
}

/// An RPC request decoded from the registers a yielding call returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcRequest {
    /// Allocate shm of `size` bytes for the secure world.
    Alloc { size: u64 },
    /// Free the shm with this cookie.
    Free { cookie: u64 },
    /// A foreign interrupt; resume at once.
    ForeignIntr,
    /// Run the RPC command held in the shm with this cookie.
    Cmd { cookie: u64 },
}

impl RpcRequest {
    /// Decodes an RPC request, or `None` when a0 is a final return code or an unknown RPC.
    pub fn decode(regs: &Regs) -> Option<RpcRequest> {
        if !rpc::is_rpc(regs[0]) {
            return None;
        }
        match regs[0] as u32 {
            rpc::ALLOC => Some(RpcRequest::Alloc {
                size: regs[1] & 0xFFFF_FFFF,
            }),
            rpc::FREE => Some(RpcRequest::Free {
                cookie: join_u32_pair(regs[1], regs[2]),
            }),
            rpc::FOREIGN_INTR => Some(RpcRequest::ForeignIntr),
            rpc::CMD => Some(RpcRequest::Cmd {
                cookie: join_u32_pair(regs[1], regs[2]),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_optee_smc_h() {
        assert_eq!(func::CALL_WITH_ARG, 0x3200_0004);
        assert_eq!(func::RETURN_FROM_RPC, 0x3200_0003);
        assert_eq!(func::DISABLE_SHM_CACHE, 0xB200_000A);
        assert_eq!(func::GET_THREAD_COUNT, 0xB200_000F);
        assert!(func::is_fast(func::CALLS_UID));
        assert!(!func::is_fast(func::CALL_WITH_ARG));
        assert_eq!(ret::ENOTAVAIL, 7);
        assert_eq!(sec_cap::RPC_ARG, 64);
    }

    #[test]
    fn rpc_detection_excludes_unknown_function() {
        assert!(rpc::is_rpc(0xFFFF_0000));
        assert!(rpc::is_rpc(0xFFFF_0005));
        assert!(!rpc::is_rpc(0xFFFF_FFFF));
        assert!(!rpc::is_rpc(0));
        assert!(!rpc::is_rpc(0x7FFF_0000));
    }

    #[test]
    fn rpc_decode_pairs() {
        let regs = [rpc::FREE as u64, 0x1, 0x2345_6789, 0, 0, 0, 0, 0];
        assert_eq!(
            RpcRequest::decode(&regs),
            Some(RpcRequest::Free {
                cookie: 0x1_2345_6789
            })
        );
        let regs = [rpc::ALLOC as u64, 4096, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            RpcRequest::decode(&regs),
            Some(RpcRequest::Alloc { size: 4096 })
        );
        assert_eq!(
            RpcRequest::decode(&[0xFFFF_0001, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(split_u64(0xdead_beef_0000_1234), (0xdead_beef, 0x1234));
        assert_eq!(join_u32_pair(0x1_dead_beef, 0x1234), 0xdead_beef_0000_1234);
    }
}
