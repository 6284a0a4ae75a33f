//! What a modern secure world (OP-TEE >= 3.17, the model's 4.x profile) offers beyond 3.14, and
//! teed's use of it: registered argument pages for CALL_WITH_REGD_ARG, and asynchronous
//! notifications. Under 3.14 none of this runs and teed behaves as before.
//!
//! * **Capabilities** (EXCHANGE_CAPABILITIES, core/arch/arm/tee/entry_fast.c): SEC_CAP_RPC_ARG
//!   with the RPC param count in a3, SEC_CAP_ASYNC_NOTIF with the largest notification value in
//!   a2 (read as Linux's smc_abi.c optee_msg_exchange_capabilities reads them).
//! * **Argument pages**: teed's message slots (one page each, so that every form of call can name
//!   them: CALL_WITH_ARG and CALL_WITH_RPC_ARG need a page-aligned message) are registered once,
//!   as one registration, and every yielding call then names them with CALL_WITH_REGD_ARG; the
//!   secure world's RPC struct follows the message in its slot. A slot holds the largest message
//!   teed sends (6 params, 224 bytes) and the RPC struct after it (4 params, 160 bytes, as
//!   OP-TEE asks); there are `journal::ARG_SLOTS` (16) of them, eight per secure thread of the
//!   default two, since a call holds its slot while it waits for a thread. Linux packs its
//!   argument structs into shared pages and registers one page per ten (call.c
//!   optee_get_msg_arg); teed keeps a page per slot so that a slot an earlier incarnation used is
//!   found at the same place whichever form of call used it. The registration is made with
//!   CALL_WITH_RPC_ARG (it cannot name itself), journaled before its SMC like any other, and
//!   undone at shutdown with CALL_WITH_RPC_ARG too, since an UNREGISTER_SHM sent through the
//!   registration it removes would hold it and wait for itself (mobj_reg_shm_release_by_cookie
//!   waits for the last user). Linux mainline unregisters its argument pages only on remove,
//!   never on shutdown (smc_abi.c optee_shutdown), so every kexec leaves them behind.
//! * **Asynchronous notifications** (core/kernel/notif.c, notif_default.c; Linux smc_abi.c
//!   irq_handler): the shell reports the notification interrupt with
//!   [`crate::Teed::notification_interrupt`]; teed reads GET_ASYNC_NOTIF_VALUE until nothing is
//!   pending, wakes the NOTIFICATION waiter of each value, and answers value 0 with one
//!   DO_BOTTOM_HALF yielding call at a time. The shutdown sends STOP_ASYNC_NOTIF (Linux only does
//!   on remove).
//! * **A new boot** finds notifications as the last world left them: OP-TEE keeps the started
//!   state across kexec and crash-kernel entry (only STOP or a machine reset clears it), an
//!   ENABLE while started is "already started" and changes nothing, and values queued for the
//!   old world stay queued — while the interrupt that announced them died with the old kernel.
//!   So the probe enables (harmless either way) and then reads every queued value at once, as if
//!   the interrupt had come: a queued bottom half is run (the secure-world driver still wants
//!   it), any other value is dropped (its waiter was a thread of the old world, resumed and
//!   failed by the orphan step). No STOP is needed: STOP only tells the drivers that the normal
//!   world leaves, and ENABLE already finds them started.

use alloc::vec::Vec;
use optee_abi::mem::{PhysMem, PAGE_SIZE_U64};

use optee_abi::msg::{arg_size, cmd, MsgArg, LINUX_MAX_PARAMS};
use optee_abi::smc::{async_notif, func, ret, Regs};
use optee_abi::teec;

use crate::call::{AbiFast, Outcome};
use crate::config::Millis;
use crate::engine::{ArgMode, CallEngine};
use crate::frames::Run;
use crate::journal::EntryState;
use crate::registry::Registry;
use crate::types::Purpose;

pub(crate) mod state;

pub use state::{AbiCall, AbiStats, Caps};
pub(crate) use state::{ArgPages, BottomHalf, Notif};

/// The most GET_ASYNC_NOTIF_VALUE reads one round makes: every asynchronous value once (64),
/// twice. A secure world that keeps saying PENDING beyond that is not believed.
const MAX_READS_PER_ROUND: u32 = 128;

/// The pages the slots lie in as one run, when the first slot starts a page and the slots
/// follow each other: a page per slot (the journal's, or the run the probe allocated without
/// one), or several slots to a page (Linux mainline's packing).
fn slot_run(engine: &CallEngine) -> Option<Run> {
    let pas = engine.slot_pas();
    let base = *pas.first()?;
    let last = *pas.last()?;
    let ascending = pas.windows(2).all(|pair| pair[0] < pair[1]);
    (ascending && base % PAGE_SIZE_U64 == 0).then_some(Run {
        pa: base,
        pages: (last - base) / PAGE_SIZE_U64 + 1,
    })
}

/// Linux mainline's argument cache (drivers/tee/optee/call.c optee_get_msg_arg with
/// OPTEE_SHM_ARG_SHARED): each registered page holds 4096 / (OPTEE_MSG_GET_ARG_SIZE(6) +
/// OPTEE_MSG_GET_ARG_SIZE(rpc_param_count)) argument structs, each followed by its RPC struct.
/// One page serves as many calls in flight as fit in it (ten with OP-TEE's four RPC params);
/// mainline adds a page only when more are in flight at once, which two kernel clients never
/// are. The slots become those places in the first slot's page.
pub fn mainline_arg_slots(first_page: u64, rpc_param_count: u32) -> Vec<u64> {
    let stride = arg_size(LINUX_MAX_PARAMS) as u64 + arg_size(rpc_param_count as usize) as u64;
    (0..PAGE_SIZE_U64 / stride)
        .map(|i| first_page + i * stride)
        .collect()
}

/// Chooses how calls name their message now that the capabilities are known; with
/// `mainline`, packs the slots as Linux mainline's argument cache does.
pub(crate) fn adopt_caps(engine: &mut CallEngine, caps: Caps, mainline: bool) {
    if mainline && caps.rpc_arg() {
        if let Some(&first) = engine.slot_pas().first() {
            engine.set_arg_slots(mainline_arg_slots(first, caps.rpc_param_count));
        }
    }
    engine.abi.caps = caps;
    let mode = if caps.rpc_arg() {
        ArgMode::RpcArg
    } else {
        ArgMode::Plain
    };
    engine.set_arg_mode(mode);
}

/// Registers the message slots' pages (journaled first); false when there is nothing to do
/// (no SEC_CAP_RPC_ARG, already registered, or no way to), and calls go on as they are.
pub(crate) fn start_register_args<M: PhysMem>(
    now: Millis,
    reg: &mut Registry<M>,
    engine: &mut CallEngine,
) -> bool {
    if !engine.abi.caps.rpc_arg() || engine.abi.arg_pages != ArgPages::None {
        return false;
    }
    let Some(run) = slot_run(engine) else {
        return false;
    };
    let Some(cookie) = reg.new_cookie() else {
        return false;
    };
    // Write-ahead: a crash between here and the answer leaves an entry the next probe reclaims.
    let Ok(journal_slot) = reg.journal_arg_pages(cookie, run) else {
        tracing::warn!("journal full: argument pages stay unregistered");
        return false;
    };
    let Some(list) = reg.page_list_for(run) else {
        reg.journal_registration(journal_slot, EntryState::Free);
        return false;
    };
    let arg = MsgArg::register_shm(list.pa, run.bytes(), cookie);
    let purpose = Purpose::Abi(AbiCall::RegisterArgs { list, journal_slot });
    if engine.submit(reg, now, purpose, &arg).is_err() {
        reg.frames.free(list);
        reg.journal_registration(journal_slot, EntryState::Free);
        return false;
    }
    engine.abi.arg_pages = ArgPages::Registering { cookie, run };
    true
}

/// Unregisters the argument pages through CALL_WITH_RPC_ARG; false when none are registered.
/// Only while no other call is out: they all name the registration.
pub(crate) fn start_unregister_args<M: PhysMem>(
    now: Millis,
    reg: &mut Registry<M>,
    engine: &mut CallEngine,
) -> bool {
    let ArgPages::Registered { cookie, run } = engine.abi.arg_pages else {
        return false;
    };
    let journal_slot = reg.arg_pages_journal_slot();
    reg.journal_registration(journal_slot, EntryState::Removing);
    engine.set_arg_mode(ArgMode::RpcArg);
    let purpose = Purpose::Abi(AbiCall::UnregisterArgs { journal_slot });
    if engine
        .submit(reg, now, purpose, &MsgArg::unregister_shm(cookie))
        .is_err()
    {
        reg.journal_registration(journal_slot, EntryState::Live);
        engine.set_arg_mode(ArgMode::Registered {
            cookie,
            base: run.pa,
        });
        return false;
    }
    engine.abi.arg_pages = ArgPages::Unregistering { cookie, run };
    true
}

/// Sends STOP_ASYNC_NOTIF; false when notifications are not enabled in this incarnation.
pub(crate) fn start_stop_notif<M: PhysMem>(
    now: Millis,
    reg: &mut Registry<M>,
    engine: &mut CallEngine,
) -> bool {
    if !engine.abi.notif.enabled {
        return false;
    }
    // No value is read and no bottom half started once the stop is on its way.
    engine.abi.notif.enabled = false;
    let stop = MsgArg::new(cmd::STOP_ASYNC_NOTIF);
    engine
        .submit(reg, now, Purpose::Abi(AbiCall::StopNotif), &stop)
        .is_ok()
}

/// Starts the probe's first read of queued values: they are an earlier world's.
pub(crate) fn start_stale_read(engine: &mut CallEngine) -> bool {
    if !engine.abi.notif.enabled {
        return false;
    }
    engine.abi.notif.stale = true;
    read_value(engine);
    true
}

/// Asks for the next queued value (or, while one read is out, for another round after it).
pub(crate) fn read_value(engine: &mut CallEngine) {
    let notif = &mut engine.abi.notif;
    if notif.reading {
        notif.again = true;
        return;
    }
    notif.reading = true;
    notif.reads = notif.reads.saturating_add(1);
    engine.abi_fast(AbiFast::NotifValue, func::GET_ASYNC_NOTIF_VALUE);
}

/// A yielding call of this module ended.
pub(crate) fn call_done<M: PhysMem>(
    reg: &mut Registry<M>,
    engine: &mut CallEngine,
    call: AbiCall,
    outcome: &Outcome,
) {
    match call {
        AbiCall::RegisterArgs { list, journal_slot } => {
            reg.frames.free(list);
            let ArgPages::Registering { cookie, run } = engine.abi.arg_pages else {
                return;
            };
            if outcome.succeeded() {
                reg.journal_registration(journal_slot, EntryState::Live);
                reg.set_arg_pages_journal_slot(journal_slot);
                engine.abi.arg_pages = ArgPages::Registered { cookie, run };
                engine.abi.stats.arg_pages_registered += 1;
                engine.set_arg_mode(ArgMode::Registered {
                    cookie,
                    base: run.pa,
                });
                tracing::info!(cookie, pages = run.pages, "argument pages registered");
            } else if matches!(outcome, Outcome::Done(_)) {
                // Refused: nothing was registered; calls stay CALL_WITH_RPC_ARG.
                reg.journal_registration(journal_slot, EntryState::Free);
                engine.abi.arg_pages = ArgPages::None;
                engine.abi.stats.arg_pages_refused += 1;
                tracing::warn!(?outcome, "argument pages refused");
            } else {
                // Unknown: the journal entry stays for the next probe to reclaim.
                engine.abi.arg_pages = ArgPages::None;
                engine.abi.stats.arg_pages_refused += 1;
            }
        }
        AbiCall::UnregisterArgs { journal_slot } => {
            let ArgPages::Unregistering { cookie, run } = engine.abi.arg_pages else {
                return;
            };
            // BAD_PARAMETERS: OP-TEE no longer knows the cookie, so it is gone as well.
            let gone = matches!(outcome, Outcome::Done(arg)
                if arg.ret == teec::SUCCESS || arg.ret == teec::ERROR_BAD_PARAMETERS);
            if gone {
                reg.journal_registration(journal_slot, EntryState::Free);
                reg.set_arg_pages_journal_slot(None);
                engine.abi.arg_pages = ArgPages::None;
                engine.abi.stats.arg_pages_unregistered += 1;
            } else {
                reg.journal_registration(journal_slot, EntryState::Live);
                engine.abi.arg_pages = ArgPages::Registered { cookie, run };
                engine.set_arg_mode(ArgMode::Registered {
                    cookie,
                    base: run.pa,
                });
                engine.abi.stats.arg_pages_refused += 1;
            }
        }
        AbiCall::StopNotif => {
            if matches!(outcome, Outcome::Done(_)) {
                engine.abi.stats.notif_stops += 1;
            }
        }
        AbiCall::BottomHalf => {
            let notif = &mut engine.abi.notif;
            if matches!(outcome, Outcome::Done(_)) {
                engine.abi.stats.bottom_halves += 1;
            }
            notif.bottom_half = match notif.bottom_half {
                BottomHalf::RunningAgain if notif.enabled => BottomHalf::Wanted,
                _ => BottomHalf::Idle,
            };
        }
    }
}

/// GET_ASYNC_NOTIF_VALUE answered: wake the value's waiter or want a bottom half, and read on
/// while values are pending.
pub(crate) fn on_notif_value(engine: &mut CallEngine, regs: &Regs) {
    engine.abi.notif.reading = false;
    let valid = regs[0] as u32 == ret::OK && regs[2] & async_notif::VALID != 0;
    let pending = valid && regs[2] & async_notif::PENDING != 0;
    if valid {
        let value = regs[1] & 0xFFFF_FFFF;
        let stale = engine.abi.notif.stale;
        if value == async_notif::VALUE_DO_BOTTOM_HALF {
            engine.abi.stats.notif_values += 1;
            want_bottom_half(&mut engine.abi.notif);
        } else if value > u64::from(engine.abi.caps.max_notif_value) {
            engine.abi.stats.notif_refusals += 1;
            tracing::warn!(value, "notification value above the maximum; ignored");
        } else if stale {
            engine.abi.stats.stale_notif_values += 1;
        } else {
            engine.abi.stats.notif_values += 1;
            engine.notify(value);
        }
    }
    let notif = &mut engine.abi.notif;
    let budget_left = notif.reads < MAX_READS_PER_ROUND;
    if pending && !budget_left {
        engine.abi.stats.notif_refusals += 1;
        tracing::warn!("secure world keeps notifications pending; round cut short");
    }
    if (pending && budget_left) || notif.again {
        if !pending {
            notif.reads = 0;
        }
        notif.again = false;
        if notif.enabled {
            read_value(engine);
            return;
        }
    }
    notif.reads = 0;
    notif.stale = false;
}

fn want_bottom_half(notif: &mut Notif) {
    notif.bottom_half = match notif.bottom_half {
        BottomHalf::Idle | BottomHalf::Wanted => BottomHalf::Wanted,
        BottomHalf::Running | BottomHalf::RunningAgain => BottomHalf::RunningAgain,
    };
}

/// Submits a wanted bottom half when a message slot is free.
pub(crate) fn pump<M: PhysMem>(now: Millis, reg: &mut Registry<M>, engine: &mut CallEngine) {
    if engine.abi.notif.bottom_half != BottomHalf::Wanted {
        return;
    }
    if !engine.abi.notif.enabled {
        engine.abi.notif.bottom_half = BottomHalf::Idle;
        return;
    }
    let call = MsgArg::new(cmd::DO_BOTTOM_HALF);
    if engine
        .submit(reg, now, Purpose::Abi(AbiCall::BottomHalf), &call)
        .is_ok()
    {
        engine.abi.notif.bottom_half = BottomHalf::Running;
    }
}
