//! The yielding-call engine: CALL_WITH_ARG, ETHREAD_LIMIT waits, RPCs and RETURN_FROM_RPC.
//!
//! A call is a state of the core, not a blocking loop: each SMC is an effect, and the returned
//! registers come back through `handle_smc_return`, so several calls can be inside the secure
//! world at once (one per secure thread) and the simulator can stop the normal world between any
//! two of them.

use optee_abi::mem::{PhysMem, PAGE_SIZE_U64};
use optee_abi::msg::{rpc_cmd, Direction, MsgArg, Param};
use optee_abi::pagelist::{list_pages_needed, write_page_list};
use optee_abi::smc::{func, ret, rpc, split_u64, Regs, RpcRequest};
use optee_abi::teec;
use tee_proto::WireError;

use crate::call::{Outcome, Pending};
use crate::config::Millis;
use crate::frames::Run;
use crate::types::{Call, CallId, CallStatus, PrivateBuf, Purpose};
use crate::Teed;

impl<M: PhysMem> Teed<M> {
    /// Writes `arg` into a free message slot and starts CALL_WITH_ARG on it.
    pub(crate) fn submit_msg(
        &mut self,
        now: Millis,
        purpose: Purpose,
        arg: &MsgArg,
    ) -> Result<CallId, WireError> {
        let slot = self.args.take().ok_or(WireError::Busy)?;
        self.submit_in_slot(now, purpose, slot, arg)
    }

    /// Like [`Teed::submit_msg`] with a slot the caller already took (and journaled).
    pub(crate) fn submit_in_slot(
        &mut self,
        now: Millis,
        purpose: Purpose,
        slot: usize,
        arg: &MsgArg,
    ) -> Result<CallId, WireError> {
        let pa = self.args.pas[slot];
        if arg.write_to(&mut self.mem, pa).is_err() {
            self.args.give_back(slot);
            return Err(WireError::OutOfMemory);
        }
        let (hi, lo) = split_u64(pa);
        let regs = [u64::from(func::CALL_WITH_ARG), hi, lo, 0, 0, 0, 0, 0];
        Ok(self.start_yielding(now, purpose, Some(slot), regs, false))
    }

    /// Starts a yielding call with the given first registers.
    pub(crate) fn start_yielding(
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
        let deadline = now + self.cfg.deadlines.call_ms;
        self.calls.insert(
            id,
            Call {
                purpose,
                arg_slot,
                next: regs,
                status: CallStatus::InFlight(token),
                deadline,
                entered: false,
                orphan_mode,
            },
        );
        id
    }

    fn send_next(&mut self, id: CallId) {
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
        self.send_next(id);
    }

    pub(crate) fn on_call_return(&mut self, now: Millis, id: CallId, regs: Regs) {
        let retry_ms = self.cfg.deadlines.retry_ms;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let code = regs[0] as u32;
        if code == ret::ETHREAD_LIMIT && !call.entered {
            self.stats.thread_limit_waits += 1;
            if now >= call.deadline {
                self.finish(now, id, Outcome::Deadline);
            } else {
                call.status = CallStatus::WaitingThread {
                    retry_at: now + retry_ms,
                };
            }
            return;
        }
        call.entered = true;
        if rpc::is_rpc(regs[0]) {
            self.stats.rpcs += 1;
            self.handle_rpc(now, id, regs);
            return;
        }
        let outcome = if code != ret::OK {
            Outcome::Smc(code)
        } else {
            match call.arg_slot {
                Some(slot) => match MsgArg::read_from(&self.mem, self.args.pas[slot]) {
                    Ok(arg) => Outcome::Done(arg),
                    Err(_) => Outcome::Unreadable,
                },
                None => Outcome::Done(MsgArg::default()),
            }
        };
        self.finish(now, id, outcome);
    }

    /// Ends a call, frees its slot, hands the outcome to its purpose and wakes thread waiters.
    pub(crate) fn finish(&mut self, now: Millis, id: CallId, outcome: Outcome) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        if outcome == Outcome::Deadline {
            self.stats.deadline_expiries += 1;
        }
        self.complete(now, call.purpose, outcome);
        if let Some(slot) = call.arg_slot {
            self.args.give_back(slot);
        }
        // A thread came free: everyone waiting for one tries again now.
        let waiting: alloc::vec::Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| matches!(c.status, CallStatus::WaitingThread { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.send_next(id);
        }
    }

    /// Timers of calls: thread-wait retries, deadlines, SUSPEND sleeps.
    pub(crate) fn on_call_timers(&mut self, now: Millis) {
        let due: alloc::vec::Vec<(CallId, bool)> = self
            .calls
            .iter()
            .filter_map(|(id, c)| match c.status {
                CallStatus::WaitingThread { .. } if now >= c.deadline => Some((*id, true)),
                CallStatus::WaitingThread { retry_at } if now >= retry_at => Some((*id, false)),
                CallStatus::Sleeping { until } if now >= until => Some((*id, false)),
                _ => None,
            })
            .collect();
        for (id, expired) in due {
            if expired {
                self.finish(now, id, Outcome::Deadline);
            } else {
                self.send_next(id);
            }
        }
    }

    fn rpc_answer(regs: &Regs) -> Regs {
        [
            u64::from(func::RETURN_FROM_RPC),
            regs[1],
            regs[2],
            regs[3],
            0,
            0,
            0,
            0,
        ]
    }

    fn handle_rpc(&mut self, now: Millis, id: CallId, regs: Regs) {
        let orphan = self.calls.get(&id).is_some_and(|c| c.orphan_mode);
        let mut answer = Self::rpc_answer(&regs);
        match RpcRequest::decode(&regs) {
            Some(RpcRequest::Alloc { size }) => {
                // An orphan's allocation is refused: nothing of this incarnation may be tied to it.
                answer[1] = 0;
                answer[2] = 0;
                if !orphan {
                    if let Some((cookie, pa)) = self.alloc_private(size) {
                        (answer[1], answer[2]) = split_u64(pa);
                        (answer[4], answer[5]) = split_u64(cookie);
                        if self.cfg.seed_bugs.register_private_buffers
                            && self.register_private(now, id, cookie, answer)
                        {
                            return;
                        }
                    }
                }
            }
            Some(RpcRequest::Free { cookie }) => {
                if !orphan {
                    let registered = self.private.get(&cookie).is_some_and(|b| b.registered);
                    if registered && self.unregister_private(now, id, cookie, answer) {
                        return;
                    }
                    self.free_private(cookie);
                }
            }
            Some(RpcRequest::Cmd { cookie }) => {
                if !orphan {
                    let wait = match self.run_rpc_cmd(now, cookie) {
                        CmdOutcome::Resume => None,
                        CmdOutcome::Sleep { until } => Some(until),
                        CmdOutcome::WaitNotification { key } => {
                            self.notif_waiters.insert(key, id);
                            Some(now + self.cfg.deadlines.notification_ms)
                        }
                    };
                    if let Some(until) = wait {
                        if let Some(call) = self.calls.get_mut(&id) {
                            call.next = answer;
                            call.status = CallStatus::Sleeping { until };
                        }
                        return;
                    }
                }
            }
            Some(RpcRequest::ForeignIntr) | None => {}
        }
        self.resume_with(id, answer);
    }

    /// Allocates a driver-private buffer; returns (cookie, pa).
    pub(crate) fn alloc_private(&mut self, size: u64) -> Option<(u64, u64)> {
        let pages = size.div_ceil(PAGE_SIZE_U64).max(1);
        let run = self.frames.alloc(pages)?;
        if self.mem.zero(run.pa, run.bytes()).is_err() {
            self.frames.free(run);
            return None;
        }
        let cookie = self.new_cookie();
        self.private.insert(
            cookie,
            PrivateBuf {
                run,
                registered: false,
            },
        );
        Some((cookie, run.pa))
    }

    /// Frees a driver-private buffer by cookie; an unknown cookie is a stale one from an
    /// earlier boot or incarnation and is counted, never dereferenced.
    pub(crate) fn free_private(&mut self, cookie: u64) -> bool {
        match self.private.remove(&cookie) {
            Some(buf) => {
                self.frames.free(buf.run);
                true
            }
            None => {
                self.stats.stale_rpc_cookies += 1;
                tracing::warn!(
                    cookie,
                    "secure world named a buffer this teed never gave it"
                );
                false
            }
        }
    }

    /// Runs an RPC command in place and says when the thread may be resumed.
    fn run_rpc_cmd(&mut self, now: Millis, cookie: u64) -> CmdOutcome {
        let Some(buf) = self.private.get(&cookie).copied() else {
            self.stats.stale_rpc_cookies += 1;
            tracing::warn!(cookie, "RPC command in a buffer this teed never gave out");
            return CmdOutcome::Resume;
        };
        let Ok(mut arg) = MsgArg::read_from(&self.mem, buf.run.pa) else {
            return CmdOutcome::Resume;
        };
        let mut wake = CmdOutcome::Resume;
        let first = arg.params.first().and_then(|p| p.decode_typed().ok());
        arg.ret = teec::SUCCESS;
        match (arg.cmd, first) {
            (rpc_cmd::GET_TIME, _) if !arg.params.is_empty() => {
                arg.params[0] = Param::Value {
                    dir: Direction::Out,
                    a: now / 1000,
                    b: (now % 1000) * 1_000_000,
                    c: 0,
                    meta: false,
                }
                .into();
            }
            (rpc_cmd::SUSPEND, Some(Param::Value { a, .. })) => {
                wake = CmdOutcome::Sleep { until: now + a }
            }
            (
                rpc_cmd::NOTIFICATION,
                Some(Param::Value {
                    a: rpc_cmd::NOTIFICATION_WAIT,
                    b: key,
                    ..
                }),
            ) => {
                // A SEND may have come first; then the wait is already over.
                if !self.notif_sent.remove(&key) {
                    wake = CmdOutcome::WaitNotification { key };
                }
            }
            (
                rpc_cmd::NOTIFICATION,
                Some(Param::Value {
                    a: rpc_cmd::NOTIFICATION_SEND,
                    b: key,
                    ..
                }),
            ) => {
                self.notify(key);
            }
            (rpc_cmd::SHM_ALLOC, Some(Param::Value { b: size, .. })) => {
                match self.alloc_private(size) {
                    Some((shm_cookie, pa)) => {
                        arg.params[0] = Param::Tmem {
                            dir: Direction::Out,
                            buf_ptr: pa,
                            size,
                            shm_ref: shm_cookie,
                            noncontig: false,
                            meta: false,
                        }
                        .into();
                    }
                    None => arg.ret = teec::ERROR_OUT_OF_MEMORY,
                }
            }
            (rpc_cmd::SHM_FREE, Some(Param::Value { b: shm_cookie, .. })) => {
                if !self.free_private(shm_cookie) {
                    arg.ret = teec::ERROR_BAD_PARAMETERS;
                }
            }
            _ => arg.ret = teec::ERROR_NOT_SUPPORTED,
        }
        if arg.write_to(&mut self.mem, buf.run.pa).is_err() {
            tracing::warn!(cookie, "RPC answer could not be written back");
        }
        wake
    }

    /// NOTIFICATION SEND: wakes the call waiting for `key`, or remembers the send.
    fn notify(&mut self, key: u64) {
        match self.notif_waiters.remove(&key) {
            Some(waiter) if self.calls.contains_key(&waiter) => self.send_next(waiter),
            _ => {
                self.notif_sent.insert(key);
            }
        }
    }

    /// Seed bug 376e4199e327: registers a private RPC buffer before answering the ALLOC.
    fn register_private(&mut self, now: Millis, parent: CallId, cookie: u64, answer: Regs) -> bool {
        let Some(buf) = self.private.get(&cookie).copied() else {
            return false;
        };
        let Some(list) = self
            .frames
            .alloc(list_pages_needed(buf.run.pages as usize) as u64)
        else {
            return false;
        };
        if write_page_list(&mut self.mem, &run_pages(list), &run_pages(buf.run)).is_err() {
            self.frames.free(list);
            return false;
        }
        let arg = MsgArg::register_shm(list.pa, buf.run.bytes(), cookie);
        match self.submit_msg(
            now,
            Purpose::RegisterPrivate {
                parent,
                cookie,
                list,
            },
            &arg,
        ) {
            Ok(_) => {
                self.park_for_child(parent, answer);
                true
            }
            Err(_) => {
                self.frames.free(list);
                false
            }
        }
    }

    /// Seed bug 376e4199e327: unregisters a private RPC buffer before freeing it.
    fn unregister_private(
        &mut self,
        now: Millis,
        parent: CallId,
        cookie: u64,
        answer: Regs,
    ) -> bool {
        let arg = MsgArg::unregister_shm(cookie);
        match self.submit_msg(now, Purpose::UnregisterPrivate { parent, cookie }, &arg) {
            Ok(_) => {
                self.park_for_child(parent, answer);
                true
            }
            Err(_) => false,
        }
    }

    fn park_for_child(&mut self, parent: CallId, answer: Regs) {
        if let Some(call) = self.calls.get_mut(&parent) {
            call.next = answer;
            call.status = CallStatus::WaitingChild;
        }
    }

    /// A nested private-buffer call finished: record it and resume the parent.
    pub(crate) fn on_private_done(&mut self, purpose: &Purpose, outcome: &Outcome) {
        match purpose {
            Purpose::RegisterPrivate {
                parent,
                cookie,
                list,
            } => {
                self.frames.free(*list);
                let ok = matches!(outcome, Outcome::Done(arg) if arg.ret == teec::SUCCESS);
                if let Some(buf) = self.private.get_mut(cookie) {
                    buf.registered = ok;
                }
                self.send_next(*parent);
            }
            Purpose::UnregisterPrivate { parent, cookie } => {
                self.free_private(*cookie);
                self.send_next(*parent);
            }
            _ => {}
        }
    }
}

/// What an RPC command asks of the resumption.
enum CmdOutcome {
    /// Resume at once.
    Resume,
    /// SUSPEND: resume at `until`.
    Sleep { until: Millis },
    /// NOTIFICATION WAIT: resume when the key is sent (or, bounded, at the wait deadline: a
    /// waiter woken early checks again, which OP-TEE allows).
    WaitNotification { key: u64 },
}

/// The page addresses of a run.
pub(crate) fn run_pages(run: Run) -> alloc::vec::Vec<u64> {
    (0..run.pages).map(|i| run.pa + i * PAGE_SIZE_U64).collect()
}
