//! TA entry points as job stages: open, invoke (with the RPCs a TA asks for) and close,
//! serialised per TA: a call finding another thread inside the TA waits for it.

use optee_abi::mem::{PhysMem, PAGE_SIZE_U64};
use optee_abi::msg::{attr, rpc_cmd, Direction, RawParam};
use optee_abi::teec::{self, origin};
use tracing::{debug, warn};

use crate::buffer::{Backing, NwBuffer};
use crate::engine::{rpc_message, wait_message, Step};
use crate::entry::BAD_PARAMS;
use crate::ta::params::Slot;
use crate::ta::{
    ClientIdentity, RpcReply, RpcShm, SessionId, ShmType, TaContext, TaFlags, TaParams, TaRpc,
    TaStep,
};
use crate::thread::{Job, RpcAnswer, Stage, TaEntry, TaWait};
use crate::world::{SecureWorld, Session, MOBJ_BYTES, SESSION_BYTES};

impl SecureWorld {
    /// Runs a prepared TA entry, or waits when another thread is inside the TA.
    pub(crate) fn run_ta_entry(
        &mut self,
        tid: usize,
        mem: &mut dyn PhysMem,
        job: &mut Job,
        entry: TaEntry,
    ) -> Step {
        let ta = entry.ta();
        if self.tas[ta].busy_by.is_some_and(|owner| owner != tid) {
            job.stage = Stage::WaitTa(entry);
            job.request = Some(wait_message(self.wait_key(tid)));
            return Step::Rpc;
        }
        // The session may have been closed while this call waited for the TA.
        if let TaEntry::Invoke { session, .. } | TaEntry::Close { session, .. } = &entry {
            if !self.sessions.contains_key(session) {
                (job.arg.ret, job.arg.ret_origin) = BAD_PARAMS;
                self.complete(tid, mem, job);
                return Step::Continue;
            }
        }
        match entry {
            TaEntry::Open { ta, client, params } => {
                self.open_session(tid, mem, job, ta, client, params)
            }
            TaEntry::Invoke {
                ta,
                session,
                func,
                mut params,
            } => {
                let mut ctx = TaContext {
                    mem: &mut *mem,
                    params: &mut params,
                    cancelled: job.cancelled,
                    devices: &self.devices,
                };
                let step = self.tas[ta].app.invoke(session, func, &mut ctx);
                self.after_ta(tid, mem, job, ta, session, params, step)
            }
            TaEntry::Close { ta, session } => {
                self.tas[ta].app.close_session(session);
                if let Some(closed) = self.sessions.remove(&session) {
                    self.heap.free(closed.charge);
                }
                self.unload_if_unused(ta);
                job.arg.ret = teec::SUCCESS;
                job.arg.ret_origin = origin::TEE;
                self.complete(tid, mem, job);
                Step::Continue
            }
        }
    }

    fn open_session(
        &mut self,
        tid: usize,
        mem: &mut dyn PhysMem,
        job: &mut Job,
        ta: usize,
        client: ClientIdentity,
        mut params: TaParams,
    ) -> Step {
        let flags = self.tas[ta].app.flags();
        let single_session =
            flags.contains(TaFlags::SINGLE_INSTANCE) && !flags.contains(TaFlags::MULTI_SESSION);
        let (code, from) = if single_session && self.sessions.values().any(|s| s.ta == ta) {
            (teec::ERROR_BUSY, origin::TEE)
        } else {
            match self.heap.alloc(SESSION_BYTES) {
                Err(err) => {
                    warn!(%err, "no heap for a session");
                    (teec::ERROR_OUT_OF_MEMORY, origin::TEE)
                }
                Ok(charge) => {
                    let id = self.new_session_id();
                    let mut ctx = TaContext {
                        mem: &mut *mem,
                        params: &mut params,
                        cancelled: false,
                        devices: &self.devices,
                    };
                    let code = self.tas[ta].app.open_session(id, &client, &mut ctx);
                    write_back(&mut job.arg.params[2..], &params);
                    if code == teec::SUCCESS {
                        self.sessions.insert(id, Session { ta, client, charge });
                        job.arg.session = id;
                    } else {
                        self.heap.free(charge);
                        self.unload_if_unused(ta);
                    }
                    (code, origin::TRUSTED_APP)
                }
            }
        };
        debug!(
            tid,
            ta = self.tas[ta].app.name(),
            result = teec::result_name(code),
            "open session"
        );
        job.arg.ret = code;
        job.arg.ret_origin = from;
        self.complete(tid, mem, job);
        Step::Continue
    }

    fn new_session_id(&mut self) -> SessionId {
        loop {
            let id = self.next_session_id;
            self.next_session_id = id.wrapping_add(1);
            if id != 0 && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    /// Without INSTANCE_KEEP_ALIVE the instance goes away with its last session.
    fn unload_if_unused(&mut self, ta: usize) {
        let keep = self.tas[ta]
            .app
            .flags()
            .contains(TaFlags::INSTANCE_KEEP_ALIVE);
        if !keep && !self.sessions.values().any(|s| s.ta == ta) {
            self.tas[ta].app.unload();
        }
    }

    /// Handles what a TA entry returned: the result, or an RPC it needs.
    #[allow(clippy::too_many_arguments)]
    fn after_ta(
        &mut self,
        tid: usize,
        mem: &mut dyn PhysMem,
        job: &mut Job,
        ta: usize,
        session: SessionId,
        params: TaParams,
        step: TaStep,
    ) -> Step {
        match step {
            TaStep::Complete(code) => {
                write_back(&mut job.arg.params, &params);
                job.arg.ret = code;
                job.arg.ret_origin = origin::TRUSTED_APP;
                self.complete(tid, mem, job);
                Step::Continue
            }
            TaStep::Rpc(request) => {
                self.tas[ta].busy_by = Some(tid);
                // thread_optee_smc.c thread_rpc_alloc_kernel_payload: kernel shm is never
                // larger than a page; more fails at once, with no RPC.
                if let TaRpc::ShmAlloc {
                    size,
                    kind: ShmType::Kernel,
                } = request
                {
                    if size > PAGE_SIZE_U64 {
                        debug!(tid, size, "kernel payload over a page refused");
                        job.answer = None;
                        job.stage = Stage::InTa {
                            ta,
                            session,
                            params,
                            waiting: TaWait::DiscardShm,
                        };
                        return Step::Continue;
                    }
                }
                let (message, waiting) = match request {
                    TaRpc::GetTime => (
                        rpc_message(rpc_cmd::GET_TIME, Direction::Out, 0, 0, 0),
                        TaWait::Time,
                    ),
                    TaRpc::Suspend { millis } => (
                        rpc_message(rpc_cmd::SUSPEND, Direction::In, u64::from(millis), 0, 0),
                        TaWait::Suspend,
                    ),
                    // thread_rpc_alloc: value (type, size, alignment 8).
                    TaRpc::ShmAlloc { size, kind } => (
                        rpc_message(rpc_cmd::SHM_ALLOC, Direction::In, kind.value(), size, 8),
                        TaWait::ShmAlloc(kind),
                    ),
                    TaRpc::ShmFree { shm } => {
                        let (cookie, kind) = (shm.cookie(), shm.kind());
                        self.heap.free(shm.charge);
                        (
                            rpc_message(rpc_cmd::SHM_FREE, Direction::In, kind.value(), cookie, 0),
                            TaWait::ShmFree,
                        )
                    }
                };
                job.stage = Stage::InTa {
                    ta,
                    session,
                    params,
                    waiting,
                };
                job.request = Some(message);
                Step::Rpc
            }
        }
    }

    /// The normal world answered a TA's RPC: hand the reply to the TA.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ta_answered(
        &mut self,
        tid: usize,
        mem: &mut dyn PhysMem,
        job: &mut Job,
        ta: usize,
        session: SessionId,
        mut params: TaParams,
        waiting: TaWait,
    ) -> Step {
        let answer = job
            .answer
            .take()
            .unwrap_or_else(|| RpcAnswer::failed(teec::ERROR_COMMUNICATION));
        let ok = answer.ret == teec::SUCCESS;
        let reply = match waiting {
            TaWait::Time => match (ok, answer.params.first()) {
                (true, Some(p)) => RpcReply::Time {
                    seconds: p.a,
                    nanos: p.b,
                },
                _ => RpcReply::Failed(answer.ret),
            },
            TaWait::Suspend | TaWait::ShmFree if ok => RpcReply::Done,
            TaWait::Suspend | TaWait::ShmFree => RpcReply::Failed(answer.ret),
            TaWait::DiscardShm => RpcReply::Failed(teec::ERROR_OUT_OF_MEMORY),
            TaWait::ShmAlloc(kind) => match self.shm_from_answer(&*mem, &answer, kind) {
                Ok(shm) => RpcReply::Shm(shm),
                Err(Some(cookie)) => {
                    // thread_rpc_free(bt, cookie): handed back as the type it was asked as.
                    job.stage = Stage::InTa {
                        ta,
                        session,
                        params,
                        waiting: TaWait::DiscardShm,
                    };
                    job.request = Some(rpc_message(
                        rpc_cmd::SHM_FREE,
                        Direction::In,
                        kind.value(),
                        cookie,
                        0,
                    ));
                    return Step::Rpc;
                }
                Err(None) => RpcReply::Failed(teec::ERROR_OUT_OF_MEMORY),
            },
        };
        let mut ctx = TaContext {
            mem: &mut *mem,
            params: &mut params,
            cancelled: job.cancelled,
            devices: &self.devices,
        };
        let step = self.tas[ta].app.resume(session, reply, &mut ctx);
        self.after_ta(tid, mem, job, ta, session, params, step)
    }

    /// Reads an SHM_ALLOC answer as thread_optee_smc.c get_rpc_alloc_res does: a failure or
    /// another param count or attr is no buffer; a contiguous TMEM must be one page-aligned
    /// page at most (rpc_shm_mobj_alloc; the reserved area, where upstream takes any size, is
    /// not backed here), a NONCONTIG one a valid page list. `Err(Some(cookie))` when the normal
    /// world allocated something unusable that must be freed again.
    fn shm_from_answer(
        &mut self,
        mem: &dyn PhysMem,
        answer: &RpcAnswer,
        kind: ShmType,
    ) -> Result<RpcShm, Option<u64>> {
        let param = match (answer.ret, answer.num_params, answer.params.first()) {
            (teec::SUCCESS, 1, Some(param)) => *param,
            _ => return Err(None),
        };
        let (pa, size, cookie) = (param.a, param.b, param.c);
        let buffer = if param.attr == attr::TMEM_OUTPUT {
            if pa % PAGE_SIZE_U64 != 0 || size > PAGE_SIZE_U64 || !mem.contains(pa, size) {
                warn!(pa, size, "contiguous SHM_ALLOC answer refused");
                return Err(Some(cookie));
            }
            NwBuffer::new(Backing::Contig { pa }, size)
        } else if param.attr == attr::TMEM_OUTPUT | attr::NONCONTIG {
            self.temp_buffer(mem, pa, size, true)
                .map_err(|_| Some(cookie))?
        } else {
            return Err(None);
        };
        let charge = self.heap.alloc(MOBJ_BYTES).map_err(|_| Some(cookie))?;
        Ok(RpcShm::new(cookie, buffer, kind, charge))
    }
}

/// Copies output values and memref sizes back into the message params.
fn write_back(raw: &mut [RawParam], params: &TaParams) {
    for (raw, slot) in raw.iter_mut().zip(&params.slots) {
        match slot {
            Slot::Value { dir, a, b, c } if dir.is_output() => (raw.a, raw.b, raw.c) = (*a, *b, *c),
            Slot::Memref { dir, size, .. } if dir.is_output() => raw.b = *size,
            _ => {}
        }
    }
}
