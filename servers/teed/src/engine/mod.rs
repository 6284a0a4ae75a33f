//! The call engine: every SMC teed makes, and the yielding calls built from them
//! (CALL_WITH_ARG, ETHREAD_LIMIT waits, RPCs and RETURN_FROM_RPC).
//!
//! How a call names its message depends on the secure world ([`ArgMode`]): OP-TEE 3.14 takes
//! CALL_WITH_ARG at the slot's address; with SEC_CAP_RPC_ARG (OP-TEE 4.x) the RPC struct follows
//! the message in its slot, and once teed's argument pages are registered every call is
//! CALL_WITH_REGD_ARG naming their cookie and the slot's offset (Linux's smc_abi.c
//! optee_smc_do_call_with_arg makes the same choice).
//!
//! A call is a state, not a blocking loop: each SMC is an effect, and the returned registers come
//! back through [`CallEngine::on_call_return`], so several calls can be inside the secure world at
//! once (one per secure thread) and the simulator can stop the normal world between any two of
//! them. The engine does not know what a call is for: when one ends it hands back the call with
//! its [`Outcome`], and the server routes that by purpose.
//!
//! The engine also keeps the one ordered queue of effects, so the replies the server posts stay
//! in step with the SMCs around them, and the counters every machine adds to.

mod private;
mod rpc;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use optee_abi::mem::PhysMem;
use optee_abi::msg::MsgArg;
use optee_abi::smc::{func, ret, rpc as smc_rpc, split_u64, Regs};
use tee_proto::WireError;

use crate::abi::state::SecureAbi;
use crate::call::{AbiFast, FastCall, Outcome, Pending};
use crate::config::{Bounds, Deadlines, Millis, TeedConfig};
use crate::registry::Registry;
use crate::types::{Call, CallId, CallStatus, ClientId, Effect, Purpose, SmcToken, TeedStats};

/// The message-argument slots: driver-private memory, in the journal when there is one.
#[derive(Debug, Clone, Default)]
struct ArgSlots {
    pas: Vec<u64>,
    used: Vec<bool>,
}

impl ArgSlots {
    fn take(&mut self) -> Option<usize> {
        let slot = self.used.iter().position(|u| !u)?;
        self.used[slot] = true;
        Some(slot)
    }

    fn give_back(&mut self, slot: usize) {
        if let Some(u) = self.used.get_mut(slot) {
            *u = false;
        }
    }
}

/// How a yielding call names its message slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgMode {
    /// CALL_WITH_ARG at the slot's physical address (no SEC_CAP_RPC_ARG).
    Plain,
    /// CALL_WITH_RPC_ARG at the slot's physical address, the RPC struct after the message:
    /// with SEC_CAP_RPC_ARG while the argument pages are not registered (the probe before it
    /// registers them, the shutdown once it unregistered them).
    RpcArg,
    /// CALL_WITH_REGD_ARG: the slots' pages are registered under `cookie`, starting at `base`.
    Registered { cookie: u64, base: u64 },
}

/// Owner of the SMC stream: tokens, outstanding calls, message slots, notifications.
pub(crate) struct CallEngine {
    deadlines: Deadlines,
    bounds: Bounds,
    /// Seed bug 376e4199e327: driver-private RPC buffers are registered like client buffers.
    register_private_buffers: bool,
    args: ArgSlots,
    arg_mode: ArgMode,
    /// Where each call's RPC struct lies, for calls that supplied one: RPC commands are read
    /// and answered there, whatever cookie RPC CMD names.
    rpc_args: BTreeMap<CallId, u64>,
    calls: BTreeMap<CallId, Call>,
    next_call: CallId,
    pending: BTreeMap<SmcToken, Pending>,
    next_token: u64,
    effects: VecDeque<Effect>,
    /// Calls parked in NOTIFICATION WAIT, by key.
    notif_waiters: BTreeMap<u64, CallId>,
    /// Keys sent before anyone waited for them.
    notif_sent: BTreeSet<u64>,
    /// Every counter of the server: all its machines act through the engine.
    pub stats: TeedStats,
    /// What the secure world's interface offers, and teed's argument pages and notification
    /// reader built on it: how every call is made depends on it.
    pub abi: SecureAbi,
}

impl CallEngine {
    /// An engine with no message slots yet (the probe provides them).
    pub fn new(cfg: &TeedConfig) -> CallEngine {
        CallEngine {
            deadlines: cfg.deadlines,
            bounds: cfg.bounds,
            register_private_buffers: cfg.seed_bugs.register_private_buffers,
            args: ArgSlots::default(),
            arg_mode: ArgMode::Plain,
            rpc_args: BTreeMap::new(),
            calls: BTreeMap::new(),
            next_call: 1,
            pending: BTreeMap::new(),
            next_token: 1,
            effects: VecDeque::new(),
            notif_waiters: BTreeMap::new(),
            notif_sent: BTreeSet::new(),
            stats: TeedStats::default(),
            abi: SecureAbi::default(),
        }
    }

    // ---- the effect queue ----

    /// Queues a reply or an event behind the SMCs already asked for.
    pub fn post(&mut self, effect: Effect) {
        self.effects.push_back(effect);
    }

    /// The next effect to carry out.
    pub fn next_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    // ---- message slots ----

    /// Gives the engine its message slots, all free.
    pub fn set_arg_slots(&mut self, pas: Vec<u64>) {
        self.args = ArgSlots {
            used: alloc::vec![false; pas.len()],
            pas,
        };
    }

    /// Takes a free message slot (for a caller that journals it before submitting).
    pub fn take_slot(&mut self) -> Option<usize> {
        self.args.take()
    }

    /// Returns a slot taken with [`CallEngine::take_slot`] but not submitted.
    pub fn give_back_slot(&mut self, slot: usize) {
        self.args.give_back(slot);
    }

    /// Message slots free now.
    pub fn free_slots(&self) -> usize {
        self.args.used.iter().filter(|used| !**used).count()
    }

    /// True when no message slot is free.
    pub fn slots_full(&self) -> bool {
        self.args.used.iter().all(|u| *u)
    }

    /// Where message slot `slot` lives.
    pub fn slot_pa(&self, slot: usize) -> Option<u64> {
        self.args.pas.get(slot).copied()
    }

    /// Every message slot's address.
    pub fn slot_pas(&self) -> &[u64] {
        &self.args.pas
    }

    /// How calls name their message from now on.
    pub fn set_arg_mode(&mut self, mode: ArgMode) {
        self.arg_mode = mode;
    }

    /// The first registers of a call whose `len`-byte message is at `pa`, and where its RPC
    /// struct goes when it has one.
    fn call_regs(&self, pa: u64, len: usize) -> (Regs, Option<u64>) {
        let rpc_arg = pa + len as u64;
        match self.arg_mode {
            ArgMode::Plain => {
                let (hi, lo) = split_u64(pa);
                (
                    [u64::from(func::CALL_WITH_ARG), hi, lo, 0, 0, 0, 0, 0],
                    None,
                )
            }
            ArgMode::RpcArg => {
                let (hi, lo) = split_u64(pa);
                let regs = [u64::from(func::CALL_WITH_RPC_ARG), hi, lo, 0, 0, 0, 0, 0];
                (regs, Some(rpc_arg))
            }
            ArgMode::Registered { cookie, base } => {
                let (hi, lo) = split_u64(cookie);
                let offset = pa.wrapping_sub(base);
                let regs = [
                    u64::from(func::CALL_WITH_REGD_ARG),
                    hi,
                    lo,
                    offset,
                    0,
                    0,
                    0,
                    0,
                ];
                (regs, Some(rpc_arg))
            }
        }
    }

    /// Where call `id`'s RPC struct lies, when it supplied one.
    pub(crate) fn rpc_arg_of(&self, id: CallId) -> Option<u64> {
        self.rpc_args.get(&id).copied()
    }

    // ---- SMCs ----

    fn emit_smc(&mut self, pending: Pending, regs: Regs) -> SmcToken {
        let token = SmcToken(self.next_token);
        self.next_token += 1;
        self.pending.insert(token, pending);
        self.stats.smcs += 1;
        self.effects.push_back(Effect::Smc { token, regs });
        token
    }

    /// Asks for fast call `function` (no arguments), remembered as `call`.
    pub fn fast(&mut self, call: FastCall, function: u32) {
        let regs: Regs = [u64::from(function), 0, 0, 0, 0, 0, 0, 0];
        self.emit_smc(Pending::Fast(call), regs);
    }

    /// Asks for fast call `function` of the modern interface (no arguments).
    pub fn abi_fast(&mut self, call: AbiFast, function: u32) {
        let regs: Regs = [u64::from(function), 0, 0, 0, 0, 0, 0, 0];
        self.emit_smc(Pending::Abi(call), regs);
    }

    /// What the SMC behind `token` was for; `None` when it is not outstanding.
    pub fn take_pending(&mut self, token: SmcToken) -> Option<Pending> {
        self.pending.remove(&token)
    }

    // ---- yielding calls ----

    /// Writes `arg` into a free message slot and starts CALL_WITH_ARG on it.
    pub fn submit<M: PhysMem>(
        &mut self,
        reg: &mut Registry<M>,
        now: Millis,
        purpose: Purpose,
        arg: &MsgArg,
    ) -> Result<CallId, WireError> {
        let slot = self.args.take().ok_or(WireError::Busy)?;
        self.submit_in_slot(reg, now, purpose, slot, arg)
    }

    /// Like [`CallEngine::submit`] with a slot the caller already took (and journaled).
    pub fn submit_in_slot<M: PhysMem>(
        &mut self,
        reg: &mut Registry<M>,
        now: Millis,
        purpose: Purpose,
        slot: usize,
        arg: &MsgArg,
    ) -> Result<CallId, WireError> {
        let Some(pa) = self.slot_pa(slot) else {
            return Err(WireError::Busy);
        };
        if arg.write_to(&mut reg.mem, pa).is_err() {
            self.args.give_back(slot);
            return Err(WireError::OutOfMemory);
        }
        let (regs, rpc_arg) = self.call_regs(pa, arg.encoded_len());
        let id = self.start_yielding(now, purpose, Some(slot), regs, false);
        if let Some(rpc_arg) = rpc_arg {
            self.rpc_args.insert(id, rpc_arg);
        }
        Ok(id)
    }

    /// Starts a yielding call with the given first registers.
    pub fn start_yielding(
        &mut self,
        now: Millis,
        purpose: Purpose,
        arg_slot: Option<usize>,
        regs: Regs,
        orphan_mode: bool,
    ) -> CallId {
        let id = self.next_call;
        self.next_call += 1;
        self.stats.yielding_calls += 1;
        let token = self.emit_smc(Pending::Call(id), regs);
        let deadline = now.saturating_add(self.deadlines.call_ms);
        self.calls.insert(
            id,
            Call {
                purpose,
                arg_slot,
                next: regs,
                status: CallStatus::InFlight(token),
                deadline,
                rpcs: 0,
                answered: false,
                entered: false,
                orphan_mode,
            },
        );
        id
    }

    /// Sends a parked call's next registers. A call with an SMC out is left alone, so a late
    /// wake-up (a notification, a nested call's end) never sends a second SMC for one thread.
    pub fn send_next(&mut self, id: CallId) {
        let parked = self
            .calls
            .get(&id)
            .is_some_and(|c| !matches!(c.status, CallStatus::InFlight(_)));
        if parked {
            self.emit_next(id);
        }
    }

    fn emit_next(&mut self, id: CallId) {
        let Some(regs) = self.calls.get(&id).map(|c| c.next) else {
            return;
        };
        let token = self.emit_smc(Pending::Call(id), regs);
        if let Some(call) = self.calls.get_mut(&id) {
            call.status = CallStatus::InFlight(token);
        }
    }

    fn resume_with(&mut self, id: CallId, regs: Regs) {
        if let Some(call) = self.calls.get_mut(&id) {
            call.next = regs;
        }
        self.emit_next(id);
    }

    /// Parks a call until a timer, a notification or a nested call resumes it with `answer`.
    fn park(&mut self, id: CallId, answer: Regs, status: CallStatus) {
        if let Some(call) = self.calls.get_mut(&id) {
            call.next = answer;
            call.status = status;
        }
    }

    /// The registers a call's SMC returned. Waits and RPCs are handled here; `Some` when the call
    /// ended, to be taken with [`CallEngine::end_call`].
    pub fn on_call_return<M: PhysMem>(
        &mut self,
        reg: &mut Registry<M>,
        now: Millis,
        id: CallId,
        regs: Regs,
    ) -> Option<Outcome> {
        let call = self.calls.get_mut(&id)?;
        let code = regs[0] as u32;
        if code == ret::ETHREAD_LIMIT && !call.entered {
            self.stats.thread_limit_waits += 1;
            if now >= call.deadline {
                return Some(Outcome::Deadline);
            }
            call.status = CallStatus::WaitingThread {
                retry_at: now.saturating_add(self.deadlines.retry_ms),
            };
            return None;
        }
        call.entered = true;
        if smc_rpc::is_rpc(regs[0]) {
            self.stats.rpcs += 1;
            call.rpcs = call.rpcs.saturating_add(1);
            if call.rpcs > self.bounds.max_rpcs_per_call || now >= call.deadline {
                tracing::warn!(
                    call = id,
                    rpcs = call.rpcs,
                    rpc = regs[0] as u32,
                    "call over its RPC budget or deadline in the secure world"
                );
                call.status = CallStatus::HeldRpc(regs);
                return Some(Outcome::Abandoned);
            }
            self.handle_rpc(reg, now, id, regs);
            return None;
        }
        if code != ret::OK {
            return Some(Outcome::Smc(code));
        }
        let arg_pa = call.arg_slot.map(|slot| self.args.pas[slot]);
        Some(match arg_pa {
            Some(pa) => match MsgArg::read_from(&reg.mem, pa) {
                Ok(arg) => Outcome::Done(arg),
                Err(_) => Outcome::Unreadable,
            },
            None => Outcome::Done(MsgArg::default()),
        })
    }

    /// Removes an ended call and hands it back for its purpose to be served. Its slot stays
    /// taken until [`CallEngine::thread_freed`], so what the purpose submits next cannot reuse it.
    pub fn end_call(&mut self, id: CallId, outcome: &Outcome) -> Option<Call> {
        let call = self.calls.remove(&id)?;
        self.rpc_args.remove(&id);
        self.notif_waiters.retain(|_, waiter| *waiter != id);
        match outcome {
            Outcome::Deadline => self.stats.deadline_expiries += 1,
            Outcome::Abandoned => self.stats.abandoned_calls += 1,
            _ => {}
        }
        Some(call)
    }

    /// A call past its deadline or RPC budget inside the secure world, whose client still
    /// waits: it goes on detached — the thread is resumed in orphan mode (RPCs answered with
    /// failures) with a fresh deadline and budget, and keeps its slot, since the secure world
    /// may still write its message — and its purpose is handed back for the client to be
    /// answered now. `None` when there is no one to answer or it was detached before: it ends.
    pub fn detach<M: PhysMem>(
        &mut self,
        reg: &mut Registry<M>,
        now: Millis,
        id: CallId,
    ) -> Option<Purpose> {
        let call = self.calls.get_mut(&id)?;
        if call.answered || call.purpose.reply_to().is_none() {
            return None;
        }
        call.answered = true;
        call.orphan_mode = true;
        call.rpcs = 0;
        call.deadline = now.saturating_add(self.deadlines.call_ms);
        let purpose = call.purpose.clone();
        let status = call.status.clone();
        self.stats.abandoned_calls += 1;
        match status {
            CallStatus::HeldRpc(regs) => self.handle_rpc(reg, now, id, regs),
            CallStatus::Sleeping { .. } | CallStatus::WaitingChild => {
                self.notif_waiters.retain(|_, waiter| *waiter != id);
                self.send_next(id);
            }
            CallStatus::InFlight(_) | CallStatus::WaitingThread { .. } => {}
        }
        Some(purpose)
    }

    /// After an ended call was served: frees its slot, and everyone waiting for a thread tries
    /// again now that one came free.
    pub fn thread_freed(&mut self, arg_slot: Option<usize>) {
        if let Some(slot) = arg_slot {
            self.args.give_back(slot);
        }
        let waiting: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| matches!(c.status, CallStatus::WaitingThread { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.send_next(id);
        }
    }

    /// Calls whose timer is due: (call, how it ends when its deadline passed, `None` when it
    /// is only to be resent). A call that never got a thread ends with `Deadline`; one that
    /// may be inside the secure world is `Abandoned`.
    pub fn due_calls(&self, now: Millis) -> Vec<(CallId, Option<Outcome>)> {
        self.calls
            .iter()
            .filter_map(|(id, c)| match c.status {
                CallStatus::WaitingThread { .. } if now >= c.deadline => {
                    Some((*id, Some(Outcome::Deadline)))
                }
                _ if now >= c.deadline => Some((*id, Some(Outcome::Abandoned))),
                CallStatus::WaitingThread { retry_at } if now >= retry_at => Some((*id, None)),
                CallStatus::Sleeping { until } if now >= until => Some((*id, None)),
                _ => None,
            })
            .collect()
    }

    /// Every outstanding call.
    pub fn all_calls(&self) -> Vec<CallId> {
        self.calls.keys().copied().collect()
    }

    /// Calls a client waits for (detached ones too: they still hold a slot).
    pub fn calls_of(&self, client: ClientId) -> impl Iterator<Item = &Purpose> + '_ {
        self.calls
            .values()
            .map(|c| &c.purpose)
            .filter(move |p| p.reply_to().is_some_and(|r| r.client == client))
    }

    /// What every outstanding call is for.
    pub fn purposes(&self) -> impl Iterator<Item = &Purpose> + '_ {
        self.calls.values().map(|c| &c.purpose)
    }

    /// Calls parked on a timer or a notification with their thread suspended.
    pub fn sleeping_calls(&self) -> usize {
        self.calls
            .values()
            .filter(|c| matches!(c.status, CallStatus::Sleeping { .. }))
            .count()
    }

    /// Calls with no SMC out (waiting for a thread, a timer or a child).
    pub fn parked_calls(&self) -> Vec<CallId> {
        self.calls
            .iter()
            .filter(|(_, c)| !matches!(c.status, CallStatus::InFlight(_)))
            .map(|(id, _)| *id)
            .collect()
    }

    /// True when no yielding call is outstanding.
    pub fn is_idle(&self) -> bool {
        self.calls.is_empty()
    }

    /// True when an outstanding call's purpose matches.
    pub fn any_call(&self, purpose: impl Fn(&Purpose) -> bool) -> bool {
        self.calls.values().any(|c| purpose(&c.purpose))
    }

    /// The earliest timer of the calls.
    pub fn next_timeout(&self) -> Option<Millis> {
        self.calls
            .values()
            .map(|call| match call.status {
                CallStatus::WaitingThread { retry_at } => retry_at.min(call.deadline),
                CallStatus::Sleeping { until } => until.min(call.deadline),
                CallStatus::InFlight(_) | CallStatus::WaitingChild | CallStatus::HeldRpc(_) => {
                    call.deadline
                }
            })
            .min()
    }

    /// Frees a driver-private buffer by cookie, counting a cookie this teed never gave out.
    pub fn free_private<M: PhysMem>(&mut self, reg: &mut Registry<M>, cookie: u64) -> bool {
        let freed = reg.free_private(cookie);
        if !freed {
            self.stats.stale_rpc_cookies += 1;
        }
        freed
    }
}
