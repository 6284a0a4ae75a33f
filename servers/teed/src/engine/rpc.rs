//! RPCs: what the secure world asks of the normal world in the middle of a yielding call —
//! buffers (ALLOC, FREE), commands in a buffer (time, SUSPEND, NOTIFICATION, SHM_ALLOC/FREE) —
//! answered with RETURN_FROM_RPC, at once or once a timer or a notification resumes the thread.

use optee_abi::mem::PhysMem;
use optee_abi::msg::{rpc_cmd, Direction, MsgArg, Param};
use optee_abi::smc::{func, split_u64, Regs, RpcRequest};
use optee_abi::teec;

use crate::config::Millis;
use crate::engine::CallEngine;
use crate::registry::Registry;
use crate::types::{CallId, CallStatus};

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

/// RETURN_FROM_RPC for the thread that asked with `regs`, with nothing filled in yet.
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

impl CallEngine {
    /// Serves an RPC of call `id` and resumes the thread (or parks it until it may resume).
    pub(super) fn handle_rpc<M: PhysMem>(
        &mut self,
        reg: &mut Registry<M>,
        now: Millis,
        id: CallId,
        regs: Regs,
    ) {
        let orphan = self.calls.get(&id).is_some_and(|c| c.orphan_mode);
        // A detached call is this incarnation's own: its buffers are freed as they come back.
        let detached = self.calls.get(&id).is_some_and(|c| c.answered);
        let mut answer = rpc_answer(&regs);
        match RpcRequest::decode(&regs) {
            Some(RpcRequest::Alloc { size }) => {
                // An orphan's allocation is refused: nothing of this incarnation may be tied to it.
                answer[1] = 0;
                answer[2] = 0;
                let max = self.bounds.max_rpc_buffer_bytes;
                if !orphan && self.private_buffer_allowed(reg, size, max) {
                    if let Some((cookie, pa)) = reg.alloc_private(size) {
                        (answer[1], answer[2]) = split_u64(pa);
                        (answer[4], answer[5]) = split_u64(cookie);
                        if self.register_private_buffers
                            && self.register_private(reg, now, id, cookie, answer)
                        {
                            return;
                        }
                    }
                }
            }
            Some(RpcRequest::Free { cookie }) => {
                if !orphan || detached {
                    let registered = reg.private.get(&cookie).is_some_and(|b| b.registered);
                    if registered && self.unregister_private(reg, now, id, cookie, answer) {
                        return;
                    }
                    self.free_private(reg, cookie);
                }
            }
            Some(RpcRequest::Cmd { cookie }) => {
                if !orphan {
                    let at = self.rpc_arg_of(id);
                    let wait = match self.run_rpc_cmd(reg, now, cookie, at) {
                        CmdOutcome::Resume => None,
                        CmdOutcome::Sleep { until } => Some(until),
                        CmdOutcome::WaitNotification { key } => {
                            self.notif_waiters.insert(key, id);
                            Some(now.saturating_add(self.deadlines.notification_ms))
                        }
                    };
                    if let Some(until) = wait {
                        self.park(id, answer, CallStatus::Sleeping { until });
                        return;
                    }
                }
            }
            Some(RpcRequest::ForeignIntr) => {}
            None => {
                // Nothing to give: the answer a refused ALLOC gets, zeros where a result goes.
                self.stats.unknown_rpcs += 1;
                tracing::warn!(rpc = regs[0] as u32, "unknown RPC function; answered empty");
                answer[1] = 0;
                answer[2] = 0;
            }
        }
        self.resume_with(id, answer);
    }

    /// Whether the secure world may have another private buffer of `size` bytes, at most
    /// `max` (see [`crate::config::Bounds`]); a refusal is counted and logged.
    fn private_buffer_allowed<M: PhysMem>(
        &mut self,
        reg: &Registry<M>,
        size: u64,
        max: u64,
    ) -> bool {
        let allowed = size <= max && reg.private.len() < self.bounds.max_private_buffers;
        if !allowed {
            self.stats.refused_rpc_buffers += 1;
            tracing::warn!(
                size,
                held = reg.private.len(),
                "secure world asked for an oversized or one buffer too many; refused"
            );
        }
        allowed
    }

    /// Runs an RPC command in place and says when the thread may be resumed. A call that
    /// supplied its RPC struct has it at `rpc_arg` (and RPC CMD names no buffer); any other
    /// names the private buffer it got by RPC ALLOC.
    fn run_rpc_cmd<M: PhysMem>(
        &mut self,
        reg: &mut Registry<M>,
        now: Millis,
        cookie: u64,
        rpc_arg: Option<u64>,
    ) -> CmdOutcome {
        let at = match rpc_arg.or_else(|| reg.private.get(&cookie).map(|buf| buf.run.pa)) {
            Some(pa) => pa,
            None => {
                self.stats.stale_rpc_cookies += 1;
                tracing::warn!(cookie, "RPC command in a buffer this teed never gave out");
                return CmdOutcome::Resume;
            }
        };
        let Ok(mut arg) = MsgArg::read_from(&reg.mem, at) else {
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
            // The call's deadline ends an absurd sleep; the sum only must not overflow.
            (rpc_cmd::SUSPEND, Some(Param::Value { a, .. })) => {
                wake = CmdOutcome::Sleep {
                    until: now.saturating_add(a),
                }
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
                let max = self.bounds.max_rpc_payload_bytes;
                let got = if self.private_buffer_allowed(reg, size, max) {
                    reg.alloc_private_payload(size)
                } else {
                    None
                };
                match got {
                    // More than a page comes as a NONCONTIG page list (alloc_private_payload).
                    Some(payload) => {
                        arg.params[0] = Param::Tmem {
                            dir: Direction::Out,
                            buf_ptr: payload.buf_ptr,
                            size,
                            shm_ref: payload.cookie,
                            noncontig: payload.noncontig,
                            meta: false,
                        }
                        .into();
                    }
                    None => arg.ret = teec::ERROR_OUT_OF_MEMORY,
                }
            }
            (rpc_cmd::SHM_FREE, Some(Param::Value { b: shm_cookie, .. })) => {
                if !self.free_private(reg, shm_cookie) {
                    arg.ret = teec::ERROR_BAD_PARAMETERS;
                }
            }
            _ => arg.ret = teec::ERROR_NOT_SUPPORTED,
        }
        if arg.write_to(&mut reg.mem, at).is_err() {
            tracing::warn!(cookie, "RPC answer could not be written back");
        }
        wake
    }

    /// NOTIFICATION SEND (or an asynchronous notification value): wakes the call waiting for
    /// `key`, or remembers the send.
    pub(crate) fn notify(&mut self, key: u64) {
        match self.notif_waiters.remove(&key) {
            Some(waiter) if self.calls.contains_key(&waiter) => self.send_next(waiter),
            _ => {
                self.notif_sent.insert(key);
            }
        }
    }
}
