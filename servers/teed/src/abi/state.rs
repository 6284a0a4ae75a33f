//! The state of the modern interface (`super`): what the capabilities said, teed's argument
//! pages, the notification reader, the calls made for them and their counters. A leaf: the
//! engine holds it, and the functions of `super` act on it through the engine.

use optee_abi::msg::{arg_size, LINUX_MAX_PARAMS};
use optee_abi::smc::{ret, sec_cap, Regs};

use crate::frames::Run;

/// The largest notification value believed: NOTIF_VALUE_MAX is NOTIF_SYNC_VALUE_BASE (64) plus
/// CFG_NUM_THREADS (core/include/kernel/notif.h), and [`crate::config::Bounds::max_threads`]
/// bounds the latter; twice that. It bounds the keys teed remembers a send for.
const MAX_NOTIF_VALUE_BELIEVED: u32 = 2 * (64 + 32);

/// The capabilities that change how teed talks to the secure world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps {
    /// RPC params the secure world's RPC struct holds (SEC_CAP_RPC_ARG, a3 bits 7..0); 0
    /// without the capability.
    pub rpc_param_count: u32,
    /// SEC_CAP_ASYNC_NOTIF.
    pub async_notif: bool,
    /// The largest notification value (a2 with SEC_CAP_ASYNC_NOTIF).
    pub max_notif_value: u32,
}

impl Caps {
    /// Reads EXCHANGE_CAPABILITIES' answer. An RPC struct too large for a message slot beside
    /// the largest message teed sends is not used (calls stay CALL_WITH_ARG).
    pub fn read(regs: &Regs) -> Caps {
        let sec = regs[1];
        let mut rpc_param_count = if sec & sec_cap::RPC_ARG != 0 {
            (regs[3] & 0xFF) as u32
        } else {
            0
        };
        let slot = crate::journal::ARG_SLOT_BYTES as usize;
        if arg_size(LINUX_MAX_PARAMS) + arg_size(rpc_param_count as usize) > slot {
            tracing::warn!(
                rpc_param_count,
                "RPC struct does not fit a message slot; unused"
            );
            rpc_param_count = 0;
        }
        let async_notif = sec & sec_cap::ASYNC_NOTIF != 0;
        let max_notif_value = if async_notif {
            (regs[2] as u32).min(MAX_NOTIF_VALUE_BELIEVED)
        } else {
            0
        };
        Caps {
            rpc_param_count,
            async_notif,
            max_notif_value,
        }
    }

    /// Calls carry an RPC struct (and argument pages are registered).
    pub fn rpc_arg(&self) -> bool {
        self.rpc_param_count > 0
    }
}

/// teed's argument pages in the secure world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArgPages {
    /// Not registered.
    #[default]
    None,
    /// REGISTER_SHM is out.
    Registering { cookie: u64, run: Run },
    /// Registered: calls use CALL_WITH_REGD_ARG.
    Registered { cookie: u64, run: Run },
    /// UNREGISTER_SHM is out.
    Unregistering { cookie: u64, run: Run },
}

/// A yielding call made for the secure world's interface itself, not for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiCall {
    /// REGISTER_SHM of the argument pages.
    RegisterArgs {
        list: Run,
        journal_slot: Option<usize>,
    },
    /// UNREGISTER_SHM of the argument pages.
    UnregisterArgs { journal_slot: Option<usize> },
    /// OPTEE_MSG_CMD_STOP_ASYNC_NOTIF.
    StopNotif,
    /// OPTEE_MSG_CMD_DO_BOTTOM_HALF.
    BottomHalf,
}

/// Where the bottom-half call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum BottomHalf {
    #[default]
    Idle,
    /// Asked for, not yet submitted (no free message slot).
    Wanted,
    Running,
    /// Running, and asked for again meanwhile: run once more when it ends.
    RunningAgain,
}

/// The notification reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Notif {
    /// ENABLE_ASYNC_NOTIF succeeded in this incarnation and no STOP since.
    pub enabled: bool,
    /// A GET_ASYNC_NOTIF_VALUE is out.
    pub reading: bool,
    /// An interrupt came while reading: read again when this round ends.
    pub again: bool,
    pub reads: u32,
    /// Values are an earlier world's: drop all but the bottom half (the probe's first round).
    pub stale: bool,
    pub bottom_half: BottomHalf,
}

/// Counters of this module, for tests and the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AbiStats {
    pub arg_pages_registered: u64,
    pub arg_pages_unregistered: u64,
    /// REGISTER_SHM or UNREGISTER_SHM of the argument pages refused.
    pub arg_pages_refused: u64,
    pub notif_values: u64,
    /// Values of an earlier world dropped at probe.
    pub stale_notif_values: u64,
    pub bottom_halves: u64,
    pub notif_stops: u64,
    /// Rounds cut short (a secure world that never stops saying PENDING), or values above the
    /// maximum.
    pub notif_refusals: u64,
}

/// The interface state teed learned at probe, and what it built on it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SecureAbi {
    pub caps: Caps,
    pub arg_pages: ArgPages,
    pub notif: Notif,
    pub stats: AbiStats,
}

impl SecureAbi {
    /// Nothing of this module is out or wanted: no reader, no bottom half.
    pub fn notif_idle(&self) -> bool {
        !self.notif.reading && self.notif.bottom_half == BottomHalf::Idle
    }

    /// ENABLE_ASYNC_NOTIF answered.
    pub fn notif_enabled(&mut self, code: u32) {
        self.notif.enabled = code == ret::OK;
        if !self.notif.enabled {
            tracing::warn!(code, "ENABLE_ASYNC_NOTIF refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(sec: u64, a2: u64, a3: u64) -> Caps {
        Caps::read(&[0, sec, a2, a3, 0, 0, 0, 0])
    }

    /// Read as Linux's smc_abi.c optee_msg_exchange_capabilities reads them (entry_fast.c).
    #[test]
    fn capabilities_are_read_as_smc_abi_c_reads_them() {
        let modern = sec_cap::DYNAMIC_SHM | sec_cap::RPC_ARG | sec_cap::ASYNC_NOTIF;
        assert_eq!(
            caps(modern, 66, 4),
            Caps {
                rpc_param_count: 4,
                async_notif: true,
                max_notif_value: 66
            }
        );
        // Without the capability bits, a2 and a3 mean nothing; a3 counts its low byte only.
        assert_eq!(caps(sec_cap::DYNAMIC_SHM, 66, 4), Caps::default());
        assert_eq!(caps(modern, 66, 0x104).rpc_param_count, 4);
        // An RPC struct that leaves no room for teed's largest message is not used, and an
        // absurd notification maximum is clamped.
        let huge = caps(modern, u64::from(u32::MAX), 0xFF);
        assert_eq!(huge.rpc_param_count, 0);
        assert!(!huge.rpc_arg());
        assert_eq!(huge.max_notif_value, MAX_NOTIF_VALUE_BELIEVED);
    }
}
