//! Drives a thread's job from stage to stage, and turns its needs into RPCs.
//!
//! `run` advances the job until it either finishes (the yielding call returns) or needs the
//! normal world: then the thread is suspended and the RPC registers are returned. The answer
//! arrives with RETURN_FROM_RPC and `run` continues from the stage the job was left in.

use optee_abi::mem::{PhysMem, PAGE_SIZE_U64};
use optee_abi::msg::{self, arg_size, Direction, MsgArg, Param, RawParam};
use optee_abi::smc::{ret, rpc, split_u64, Regs};
use optee_abi::teec;
use tracing::{debug, warn};

use crate::thread::{Job, RpcAnswer, RpcArgBuffer, Stage, SuspendReason, ThreadState};
use crate::world::{reply, SecureWorld, MOBJ_BYTES};

/// Params in a thread's RPC argument buffer (THREAD_RPC_MAX_NUM_PARAMS upstream).
pub const RPC_MAX_PARAMS: usize = 4;
/// Bytes the secure world asks for with RPC ALLOC.
pub const RPC_ARG_SIZE: u64 = arg_size(RPC_MAX_PARAMS) as u64;

/// What a stage decided.
pub(crate) enum Step {
    /// Go on with the next stage.
    Continue,
    /// Send `job.request` as an RPC command.
    Rpc,
    /// Deliver a foreign interrupt first.
    ForeignIntr,
    /// Hand an RPC argument buffer back (RPC FREE) before returning.
    FreeRpcArg(u64),
    /// The yielding call returns this code.
    Return(u32),
}

/// An RPC command message with one value param, `ret` preset as upstream does in case the
/// normal world leaves it untouched.
pub(crate) fn rpc_message(cmd: u32, dir: Direction, a: u64, b: u64, c: u64) -> MsgArg {
    let mut message = MsgArg::new(cmd);
    message.ret = teec::ERROR_GENERIC;
    // One param never exceeds LINUX_MAX_PARAMS.
    let _ = message.push(Param::Value {
        dir,
        a,
        b,
        c,
        meta: false,
    });
    message
}

/// NOTIFICATION WAIT on the waiting thread's own key ([`SecureWorld::wait_key`]).
pub(crate) fn wait_message(key: u64) -> MsgArg {
    rpc_message(
        msg::rpc_cmd::NOTIFICATION,
        Direction::In,
        msg::rpc_cmd::NOTIFICATION_WAIT,
        key,
        0,
    )
}

fn rpc_regs(code: u32, a1: u64, a2: u64, tid: usize) -> Regs {
    [u64::from(code), a1, a2, tid as u64, 0, 0, 0, 0]
}

impl SecureWorld {
    /// Advances thread `tid` until its call returns or it suspends in an RPC.
    pub(crate) fn run(&mut self, tid: usize, mem: &mut dyn PhysMem) -> Regs {
        loop {
            let Some(mut job) = self.threads[tid].job.take() else {
                self.threads[tid].state = ThreadState::Free;
                return reply(ret::OK);
            };
            match self.step(tid, mem, &mut job) {
                Step::Continue => self.threads[tid].job = Some(job),
                Step::Rpc => {
                    if let Some(regs) = self.send_request(tid, mem, job) {
                        return regs;
                    }
                }
                Step::ForeignIntr => {
                    self.suspend(tid, job, SuspendReason::ForeignIntr);
                    return rpc_regs(rpc::FOREIGN_INTR, 0, 0, tid);
                }
                Step::FreeRpcArg(cookie) => {
                    self.suspend(tid, job, SuspendReason::RpcFree);
                    let (hi, lo) = split_u64(cookie);
                    return rpc_regs(rpc::FREE, hi, lo, tid);
                }
                Step::Return(code) => {
                    self.retire(job);
                    self.threads[tid].state = ThreadState::Free;
                    debug!(tid, code, "yielding call returns");
                    return reply(code);
                }
            }
        }
    }

    fn suspend(&mut self, tid: usize, job: Job, reason: SuspendReason) {
        let thread = &mut self.threads[tid];
        thread.job = Some(job);
        thread.state = ThreadState::Suspended(reason);
    }

    /// Releases whatever a finished job still holds.
    fn retire(&mut self, mut job: Job) {
        if let Some(charge) = job.arg_charge.take() {
            self.heap.free(charge);
        }
        for id in job.refs.drain(..) {
            self.registry.drop_user(id);
        }
    }

    fn step(&mut self, tid: usize, mem: &mut dyn PhysMem, job: &mut Job) -> Step {
        match std::mem::replace(&mut job.stage, Stage::Finish) {
            Stage::Start => self.start(tid, mem, job),
            Stage::Ready(entry) => {
                if job.interrupt {
                    job.interrupt = false;
                    job.stage = Stage::Ready(entry);
                    return Step::ForeignIntr;
                }
                self.run_ta_entry(tid, mem, job, entry)
            }
            Stage::WaitTa(entry) => {
                // Woken (or not): check again whether the TA is idle.
                job.answer = None;
                job.stage = Stage::Ready(entry);
                Step::Continue
            }
            Stage::InTa {
                ta,
                session,
                params,
                waiting,
            } => self.ta_answered(tid, mem, job, ta, session, params, waiting),
            Stage::WaitRelease { reg } => {
                job.answer = None;
                if self.registry.ready_to_free(reg) {
                    self.registry.free(&mut self.heap, reg);
                    job.arg.ret = teec::SUCCESS;
                    self.complete(tid, mem, job);
                    return Step::Continue;
                }
                job.stage = Stage::WaitRelease { reg };
                job.request = Some(wait_message(self.wait_key(tid)));
                Step::Rpc
            }
            Stage::Finish => {
                job.answer = None;
                if let Some(waiter) = job.wakeups.pop() {
                    job.request = Some(rpc_message(
                        msg::rpc_cmd::NOTIFICATION,
                        Direction::In,
                        msg::rpc_cmd::NOTIFICATION_SEND,
                        self.wait_key(waiter),
                        0,
                    ));
                    return Step::Rpc;
                }
                if !self.cache_enabled {
                    if let Some(buffer) = self.threads[tid].rpc_arg.take() {
                        self.heap.free(buffer.charge);
                        return Step::FreeRpcArg(buffer.cookie);
                    }
                }
                Step::Return(ret::OK)
            }
        }
    }

    /// The command is done: its result goes back to normal-world RAM, the registrations and
    /// the TA it held are released, and threads waiting on them are queued for wake-up.
    pub(crate) fn complete(&mut self, tid: usize, mem: &mut dyn PhysMem, job: &mut Job) {
        if let Err(err) = crate::rpc_arg::write_back(mem, job) {
            warn!(tid, %err, "cannot write the message argument back");
        }
        for id in std::mem::take(&mut job.refs) {
            if self.registry.drop_user(id) {
                job.wakeups.extend(
                    self.waiters(|stage| matches!(stage, Stage::WaitRelease { reg } if *reg == id)),
                );
            }
        }
        for ta in 0..self.tas.len() {
            if self.tas[ta].busy_by == Some(tid) {
                self.tas[ta].busy_by = None;
                job.wakeups.extend(
                    self.waiters(|stage| matches!(stage, Stage::WaitTa(entry) if entry.ta() == ta)),
                );
            }
        }
        if let Some(charge) = job.arg_charge.take() {
            self.heap.free(charge);
        }
        job.stage = Stage::Finish;
    }

    /// Threads waiting in the normal world (suspended in an RPC CMD) in a stage that `pred`
    /// selects.
    fn waiters(&self, pred: impl Fn(&Stage) -> bool) -> Vec<usize> {
        self.threads
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == ThreadState::Suspended(SuspendReason::RpcCmd))
            .filter(|(_, t)| t.job.as_ref().is_some_and(|j| pred(&j.stage)))
            .map(|(id, _)| id)
            .collect()
    }

    /// Sends `job.request`: RPC ALLOC first when the thread has no RPC argument buffer.
    /// `None` when the request failed at once and the job has its (failed) answer.
    fn send_request(&mut self, tid: usize, mem: &mut dyn PhysMem, job: Job) -> Option<Regs> {
        // A call that brought its RPC struct never needs RPC ALLOC.
        if job.rpc_arg.is_some() {
            return self.send_in_rpc_arg(tid, mem, job);
        }
        let mut job = job;
        let Some(request) = job.request.as_ref() else {
            self.threads[tid].job = Some(job);
            return None;
        };
        let Some(buffer) = self.threads[tid].rpc_arg.as_ref() else {
            self.suspend(tid, job, SuspendReason::RpcAlloc);
            return Some(rpc_regs(rpc::ALLOC, RPC_ARG_SIZE, 0, tid));
        };
        let (pa, cookie) = (buffer.pa, buffer.cookie);
        match request.write_to(mem, pa) {
            Ok(()) => {
                self.suspend(tid, job, SuspendReason::RpcCmd);
                let (hi, lo) = split_u64(cookie);
                Some(rpc_regs(rpc::CMD, hi, lo, tid))
            }
            Err(err) => {
                warn!(tid, %err, "cannot write the RPC command");
                job.request = None;
                job.answer = Some(RpcAnswer::failed(teec::ERROR_COMMUNICATION));
                self.threads[tid].job = Some(job);
                None
            }
        }
    }

    /// The normal world answered RPC ALLOC with `pa` and `cookie` (zeros on failure).
    pub(crate) fn alloc_answered(
        &mut self,
        tid: usize,
        mem: &mut dyn PhysMem,
        pa: u64,
        cookie: u64,
    ) -> Regs {
        // Outside the static area upstream takes one page-aligned page of RAM.
        let usable = pa != 0 && pa % PAGE_SIZE_U64 == 0 && mem.contains(pa, RPC_ARG_SIZE);
        let charge = if usable {
            self.heap.alloc(MOBJ_BYTES).ok()
        } else {
            None
        };
        let Some(job) = self.threads[tid].job.as_mut() else {
            return self.run(tid, mem);
        };
        let Some(charge) = charge else {
            warn!(tid, pa, cookie, "unusable RPC argument buffer");
            job.request = None;
            if cookie != 0 {
                job.discarding_alloc = true;
                self.threads[tid].state = ThreadState::Suspended(SuspendReason::RpcFree);
                let (hi, lo) = split_u64(cookie);
                return rpc_regs(rpc::FREE, hi, lo, tid);
            }
            job.answer = Some(RpcAnswer::failed(teec::ERROR_OUT_OF_MEMORY));
            return self.run(tid, mem);
        };
        // A waiter re-checks its condition before it really goes to sleep.
        if matches!(job.stage, Stage::WaitTa(_) | Stage::WaitRelease { .. }) {
            job.request = None;
        }
        self.threads[tid].rpc_arg = Some(RpcArgBuffer { pa, cookie, charge });
        match self.threads[tid].job.take() {
            Some(job) if job.request.is_some() => match self.send_request(tid, mem, job) {
                Some(regs) => regs,
                None => self.run(tid, mem),
            },
            other => {
                self.threads[tid].job = other;
                self.run(tid, mem)
            }
        }
    }

    /// The normal world returned from RPC CMD: read the answer back from the buffer.
    pub(crate) fn cmd_answered(&mut self, tid: usize, mem: &mut dyn PhysMem) -> Regs {
        let buffer_pa = self.threads[tid].rpc_arg.as_ref().map(|b| b.pa);
        if let Some(job) = self.threads[tid].job.as_mut() {
            let sent = job.request.take().map_or(0, |r| r.params.len());
            job.answer = Some(match (&job.rpc_arg, buffer_pa) {
                (Some(rpc_arg), _) => crate::rpc_arg::read_answer_in(&*mem, rpc_arg, sent),
                (None, Some(pa)) => read_answer(&*mem, pa, sent),
                (None, None) => RpcAnswer::failed(teec::ERROR_COMMUNICATION),
            });
        }
        self.run(tid, mem)
    }

    /// The normal world returned from RPC FREE.
    pub(crate) fn free_answered(&mut self, tid: usize, mem: &mut dyn PhysMem) -> Regs {
        if let Some(job) = self.threads[tid].job.as_mut() {
            if job.discarding_alloc {
                job.discarding_alloc = false;
                job.answer = Some(RpcAnswer::failed(teec::ERROR_OUT_OF_MEMORY));
            }
        }
        self.run(tid, mem)
    }
}

/// Reads the `sent` params of an RPC answer whatever num_params the normal world left, as
/// upstream reads its own fixed layout.
fn read_answer(mem: &dyn PhysMem, pa: u64, sent: usize) -> RpcAnswer {
    let mut bytes = vec![0u8; arg_size(sent)];
    if mem.read(pa, &mut bytes).is_err() {
        return RpcAnswer::failed(teec::ERROR_COMMUNICATION);
    }
    decode_answer(bytes, sent)
}

/// Decodes the `arg_size(sent)` bytes of an RPC answer, wherever they were read from.
pub(crate) fn decode_answer(mut bytes: Vec<u8>, sent: usize) -> RpcAnswer {
    let mut raw_count = [0u8; 4];
    raw_count.copy_from_slice(&bytes[28..32]);
    let num_params = u32::from_le_bytes(raw_count);
    bytes[28..32].copy_from_slice(&(sent as u32).to_le_bytes());
    match MsgArg::decode(&bytes) {
        Ok(answer) => RpcAnswer {
            ret: answer.ret,
            num_params,
            params: answer.params.iter().copied().collect::<Vec<RawParam>>(),
        },
        Err(_) => RpcAnswer::failed(teec::ERROR_COMMUNICATION),
    }
}
