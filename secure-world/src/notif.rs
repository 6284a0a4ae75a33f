//! Asynchronous notifications (OP-TEE 4.x profile): core/kernel/notif.c,
//! core/kernel/notif_default.c, the fast calls of core/arch/arm/tee/entry_fast.c and the
//! DO_BOTTOM_HALF / STOP_ASYNC_NOTIF commands of core/tee/entry_std.c.
//!
//! Upstream a driver in the secure world calls `notif_send_async(value)`: the value's bit is set
//! in a bitmap and an interrupt is raised to the normal world, whose handler reads values with
//! GET_ASYNC_NOTIF_VALUE until none is pending; value 0 asks it to enter a DO_BOTTOM_HALF
//! yielding call, any other value wakes whoever waits on that notification key. The model has
//! no interrupt controller: [`SecureWorld::raise_async_notif`] sets the value and tells the
//! caller (the host platform or the simulator) to deliver the interrupt to the normal world.
//!
//! The started state is OP-TEE's: ENABLE_ASYNC_NOTIF sets it (a second one is "already
//! started", nothing happens), only STOP_ASYNC_NOTIF clears it, and nothing the normal world
//! does by rebooting (kexec, crash kernel) touches it; only a machine reset does. Values raised
//! and not read stay in the bitmap across STOP as well (notif_default.c never clears it).

use optee_abi::smc::{async_notif, ret, Regs};
use thiserror::Error;
use tracing::debug;

use crate::world::{reply, SecureWorld};

/// NOTIF_ASYNC_VALUE_MAX (core/include/kernel/notif.h): values 0..=63 are asynchronous.
pub const ASYNC_VALUE_MAX: u32 = 63;
/// NOTIF_VALUE_DO_BOTTOM_HALF: the value that asks for a DO_BOTTOM_HALF yielding call.
pub const VALUE_DO_BOTTOM_HALF: u32 = 0;
/// NOTIF_SYNC_VALUE_BASE with asynchronous notifications: secure threads wait on this plus
/// their thread id (core/kernel/wait_queue.c), above every asynchronous value.
pub const SYNC_VALUE_BASE: u64 = ASYNC_VALUE_MAX as u64 + 1;

/// Why a value could not be raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NotifError {
    /// this profile has no asynchronous notifications
    #[error("asynchronous notifications are not built in (OP-TEE 3.14 profile)")]
    Unsupported,
    /// the normal world has not enabled them (or stopped them)
    #[error("asynchronous notifications are not started")]
    NotStarted,
    /// above NOTIF_ASYNC_VALUE_MAX
    #[error("notification value {0} is above {ASYNC_VALUE_MAX}")]
    BadValue(u32),
}

/// The notification state as introspection shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NotifInfo {
    /// ENABLE_ASYNC_NOTIF was called and no STOP_ASYNC_NOTIF since.
    pub started: bool,
    /// Values raised and not yet read, one bit each (bit 0 = do bottom half).
    pub pending: u64,
    /// DO_BOTTOM_HALF commands that found notifications started and ran the bottom half.
    pub bottom_halves: u64,
    /// A bottom half was asked for (value 0 raised) and has not run since.
    pub bottom_half_wanted: bool,
}

/// OP-TEE's notification state (notif.c's `notif_started`, notif_default.c's value bitmap)
/// and the model's one driver, which wants a bottom half each time value 0 is raised.
#[derive(Debug, Clone, Default)]
pub(crate) struct AsyncNotif {
    info: NotifInfo,
}

impl SecureWorld {
    /// ENABLE_ASYNC_NOTIF and GET_ASYNC_NOTIF_VALUE; `None` for any other function or when the
    /// profile has no asynchronous notifications (the caller answers UNKNOWN_FUNCTION then).
    pub(crate) fn notif_fast_call(&mut self, id: u32) -> Option<Regs> {
        if !self.config.profile.has_async_notif() {
            return None;
        }
        let info = &mut self.notif.info;
        match id {
            optee_abi::smc::func::ENABLE_ASYNC_NOTIF => {
                // notif_deliver_atomic_event(NOTIF_EVENT_STARTED): "Already started" is no error.
                if info.started {
                    debug!("asynchronous notifications already started");
                }
                info.started = true;
                Some(reply(ret::OK))
            }
            optee_abi::smc::func::GET_ASYNC_NOTIF_VALUE => {
                // notif_get_value: the lowest value first; PENDING when another one is left.
                let mut regs = reply(ret::OK);
                if info.pending != 0 {
                    let value = info.pending.trailing_zeros();
                    info.pending &= !(1u64 << value);
                    regs[1] = u64::from(value);
                    regs[2] = async_notif::VALID;
                    if info.pending != 0 {
                        regs[2] |= async_notif::PENDING;
                    }
                }
                Some(regs)
            }
            _ => None,
        }
    }

    /// OPTEE_MSG_CMD_DO_BOTTOM_HALF and OPTEE_MSG_CMD_STOP_ASYNC_NOTIF (`cmd`), run as a job's command:
    /// false when the profile has none (the entry then refuses the command, as upstream
    /// without CFG_CORE_ASYNC_NOTIF answers TEE_ERROR_NOT_IMPLEMENTED → EBADCMD). Neither
    /// touches `ret`: notif_deliver_event returns nothing and tee_entry_std succeeds.
    pub(crate) fn notif_command(&mut self, cmd: u32) -> bool {
        if !self.config.profile.has_async_notif() {
            return false;
        }
        let info = &mut self.notif.info;
        if !info.started {
            debug!(cmd, "notifications not started: nothing delivered");
            return true;
        }
        match cmd {
            optee_abi::msg::cmd::DO_BOTTOM_HALF => {
                info.bottom_halves += 1;
                info.bottom_half_wanted = false;
            }
            // NOTIF_EVENT_STOPPED: drivers stop sending until the next ENABLE.
            _ => info.started = false,
        }
        true
    }

    /// A driver sends `value` (notif_send_async): it is queued for GET_ASYNC_NOTIF_VALUE, and
    /// `Ok` means the notification interrupt is now raised: the platform must deliver it to the
    /// normal world. The model's drivers send only while notifications are started, as
    /// upstream drivers arm themselves on NOTIF_EVENT_STARTED.
    pub fn raise_async_notif(&mut self, value: u32) -> Result<(), NotifError> {
        if !self.config.profile.has_async_notif() {
            return Err(NotifError::Unsupported);
        }
        if value > ASYNC_VALUE_MAX {
            return Err(NotifError::BadValue(value));
        }
        let info = &mut self.notif.info;
        if !info.started {
            return Err(NotifError::NotStarted);
        }
        info.pending |= 1u64 << value;
        if value == VALUE_DO_BOTTOM_HALF {
            info.bottom_half_wanted = true;
        }
        Ok(())
    }

    /// The notification state.
    pub fn async_notif(&self) -> NotifInfo {
        self.notif.info
    }

    /// The NOTIFICATION key a waiting thread `tid` waits on: its id, offset by
    /// NOTIF_SYNC_VALUE_BASE when asynchronous values take the low keys.
    pub(crate) fn wait_key(&self, tid: usize) -> u64 {
        let base = if self.config.profile.has_async_notif() {
            SYNC_VALUE_BASE
        } else {
            0
        };
        base + tid as u64
    }

    /// The largest notification value (NOTIF_VALUE_MAX: the sync base plus CFG_NUM_THREADS),
    /// reported in EXCHANGE_CAPABILITIES' a2.
    pub(crate) fn max_notif_value(&self) -> u64 {
        SYNC_VALUE_BASE + self.threads.len() as u64
    }
}

impl SecureWorld {
    /// EXCHANGE_CAPABILITIES under this profile: 4.x adds SEC_CAP_ASYNC_NOTIF with the largest
    /// notification value in a2, and SEC_CAP_RPC_ARG with THREAD_RPC_MAX_NUM_PARAMS in a3
    /// (entry_fast.c tee_entry_exchange_capabilities).
    pub(crate) fn profile_caps(&self, mut regs: Regs) -> Regs {
        if self.config.profile.has_async_notif() {
            regs[1] |= optee_abi::smc::sec_cap::ASYNC_NOTIF;
            regs[2] = self.max_notif_value();
        }
        if self.config.profile.has_rpc_arg() {
            regs[1] |= optee_abi::smc::sec_cap::RPC_ARG;
            regs[3] = crate::engine::RPC_MAX_PARAMS as u64;
        }
        regs
    }
}
