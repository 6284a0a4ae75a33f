//! CALL_WITH_RPC_ARG and CALL_WITH_REGD_ARG (OP-TEE 4.x profile), and RPC commands carried in
//! the RPC argument struct the normal world supplies with them. Follows
//! core/arch/arm/kernel/thread_optee_smc.c: `std_entry_with_parg`, `std_entry_with_regd_arg`,
//! `get_msg_arg`, `call_entry_std` and `get_rpc_arg`.
//!
//! * CALL_WITH_RPC_ARG: a1:a2 is the physical address of the message, which must be
//!   page-aligned (one page is mapped); the RPC argument struct, sized for
//!   THREAD_RPC_MAX_NUM_PARAMS, follows the message in that same page.
//! * CALL_WITH_REGD_ARG: a1:a2 is the cookie of a registered shm and a3 the offset of the
//!   message in it, aligned for `struct optee_msg_arg`; the RPC argument struct follows the
//!   message inside the registration. The registration is referenced (and mapped) for the
//!   whole call, so an UNREGISTER_SHM of it waits for the call to end.
//! * Return codes: no free thread → ETHREAD_LIMIT (a thread is taken before the argument is
//!   looked at); unknown cookie, misaligned or out-of-range message, more than
//!   OPTEE_MSG_MAX_NUM_PARAMS params, or an RPC struct that does not fit → EBADADDR; a failed
//!   mapping of the registration → ENOMEM.
//! * With a supplied RPC struct, RPC commands are written there and RPC CMD names cookie 0
//!   (the thread has no RPC mobj); when the RPC shm cache is on, the thread first hands its
//!   cached buffer back with RPC FREE (`clear_prealloc_rpc_cache`).

use optee_abi::mem::{MemError, PhysMem, PAGE_SIZE_U64};
use optee_abi::msg::{arg_size, MsgHeader, ARG_HEADER_SIZE, MSG_MAX_NUM_PARAMS};
use optee_abi::smc::{ret, rpc, split_u64, Regs};
use optee_abi::teec;
use optee_abi::AbiError;
use tracing::{debug, warn};

use crate::buffer::{Backing, NwBuffer};
use crate::engine::{decode_answer, RPC_ARG_SIZE};
use crate::entry::Message;
use crate::thread::{Job, RpcAnswer, SuspendReason, ThreadState};
use crate::world::{reply, SecureWorld, MOBJ_BYTES};

/// Alignment of `struct optee_msg_arg` (its params hold u64s), checked on the mapped address.
const ARG_ALIGN: u64 = 8;

/// A buffer of normal-world memory seen as memory of its own (address = offset in it), so a
/// message inside a registration reads and writes as one in RAM does.
struct Window<'a> {
    buf: &'a NwBuffer,
    mem: &'a mut dyn PhysMem,
}

impl PhysMem for Window<'_> {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.buf.read(&*self.mem, pa, buf)
    }
    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        self.buf.write(&mut *self.mem, pa, data)
    }
    fn contains(&self, pa: u64, len: u64) -> bool {
        pa.checked_add(len)
            .is_some_and(|end| end <= self.buf.size())
    }
}

/// A read-only window: writes fail.
struct ReadWindow<'a> {
    buf: &'a NwBuffer,
    mem: &'a dyn PhysMem,
}

impl PhysMem for ReadWindow<'_> {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.buf.read(self.mem, pa, buf)
    }
    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        Err(MemError {
            pa,
            len: data.len() as u64,
        })
    }
    fn contains(&self, pa: u64, len: u64) -> bool {
        pa.checked_add(len)
            .is_some_and(|end| end <= self.buf.size())
    }
}

/// Reads the message at `offset` of `mobj`, checking what `get_msg_arg` checks; returns it with
/// the RPC struct that follows it.
fn msg_and_rpc_arg(
    mem: &dyn PhysMem,
    mobj: &NwBuffer,
    offset: u64,
) -> Result<(Message, NwBuffer), u32> {
    let mut header = [0u8; ARG_HEADER_SIZE];
    mobj.read(mem, offset, &mut header)
        .map_err(|_| ret::EBADADDR)?;
    let num_params = MsgHeader::decode(&header)
        .map_err(|_| ret::EBADADDR)?
        .num_params as usize;
    if num_params > MSG_MAX_NUM_PARAMS {
        return Err(ret::EBADADDR);
    }
    let size = arg_size(num_params) as u64;
    let rpc_at = offset.checked_add(size).ok_or(ret::EBADADDR)?;
    let rpc_arg = mobj.slice(rpc_at, RPC_ARG_SIZE).ok_or(ret::EBADADDR)?;
    let window = ReadWindow { buf: mobj, mem };
    let arg = Message::read_from(&window, offset).map_err(|err| {
        warn!(%err, "bad message argument");
        ret::EBADADDR
    })?;
    Ok((arg, rpc_arg))
}

/// Bytes a message takes.
fn message_len(arg: &Message) -> u64 {
    arg_size(arg.params.len()) as u64
}

/// Writes a finished job's message back where it came from.
pub(crate) fn write_back(mem: &mut dyn PhysMem, job: &Job) -> Result<(), AbiError> {
    match &job.arg_buf {
        Some(buf) => job.arg.write_to(&mut Window { buf, mem }, 0),
        None => job.arg.write_to(mem, job.arg_pa),
    }
}

/// Reads the answer to an RPC command from the normal world's RPC struct.
pub(crate) fn read_answer_in(mem: &dyn PhysMem, rpc_arg: &NwBuffer, sent: usize) -> RpcAnswer {
    let mut bytes = vec![0u8; arg_size(sent)];
    if rpc_arg.read(mem, 0, &mut bytes).is_err() {
        return RpcAnswer::failed(teec::ERROR_COMMUNICATION);
    }
    decode_answer(bytes, sent)
}

impl SecureWorld {
    /// CALL_WITH_RPC_ARG: the message at `arg_pa`, its RPC struct right after it in that page.
    pub(crate) fn call_with_rpc_arg(&mut self, mem: &mut dyn PhysMem, arg_pa: u64) -> Regs {
        let Some(tid) = self.free_thread() else {
            return reply(ret::ETHREAD_LIMIT);
        };
        let interrupt = self.next_call_interrupted();
        // Outside the static area one page is mapped, and it must be page-aligned RAM.
        if arg_pa % PAGE_SIZE_U64 != 0 || !mem.contains(arg_pa, PAGE_SIZE_U64) {
            warn!(arg_pa, "CALL_WITH_RPC_ARG: bad argument address");
            return reply(ret::EBADADDR);
        }
        let page = NwBuffer::new(Backing::Contig { pa: arg_pa }, PAGE_SIZE_U64);
        let (arg, rpc_arg) = match msg_and_rpc_arg(&*mem, &page, 0) {
            Ok(found) => found,
            Err(code) => return reply(code),
        };
        let Ok(charge) = self.heap.alloc(MOBJ_BYTES) else {
            warn!("CALL_WITH_RPC_ARG: cannot map the argument");
            return reply(ret::EBADADDR);
        };
        debug!(tid, cmd = arg.cmd, arg_pa, "yielding call with RPC arg");
        let mut job = Job::new(arg_pa, arg, charge, interrupt);
        job.rpc_arg = Some(rpc_arg);
        self.start_with_rpc_arg(tid, mem, job)
    }

    /// CALL_WITH_REGD_ARG: the message at `offset` in the registration `cookie`.
    pub(crate) fn call_with_regd_arg(
        &mut self,
        mem: &mut dyn PhysMem,
        cookie: u64,
        offset: u64,
    ) -> Regs {
        let Some(tid) = self.free_thread() else {
            return reply(ret::ETHREAD_LIMIT);
        };
        let interrupt = self.next_call_interrupted();
        let Some((reg, whole)) = self.registry.acquire(cookie) else {
            warn!(cookie, "CALL_WITH_REGD_ARG: bad argument cookie");
            return reply(ret::EBADADDR);
        };
        // mobj_inc_map: the registration gets a mapping for the call.
        let Ok(charge) = self.heap.alloc(MOBJ_BYTES) else {
            self.registry.drop_user(reg);
            warn!(cookie, "CALL_WITH_REGD_ARG: cannot map the registration");
            return reply(ret::ENOMEM);
        };
        let found = mobj_of(&whole)
            .filter(|mobj| aligned(mobj, offset))
            .ok_or(ret::EBADADDR)
            .and_then(|mobj| {
                let (arg, rpc_arg) = msg_and_rpc_arg(&*mem, &mobj, offset)?;
                let at = mobj.slice(offset, message_len(&arg));
                Ok((arg, rpc_arg, at.ok_or(ret::EBADADDR)?))
            });
        let (arg, rpc_arg, arg_buf) = match found {
            Ok(found) => found,
            Err(code) => {
                self.heap.free(charge);
                self.registry.drop_user(reg);
                warn!(cookie, offset, code, "CALL_WITH_REGD_ARG refused");
                return reply(code);
            }
        };
        debug!(
            tid,
            cmd = arg.cmd,
            cookie,
            offset,
            "yielding call with registered arg"
        );
        let mut job = Job::new(0, arg, charge, interrupt);
        job.arg_buf = Some(arg_buf);
        job.rpc_arg = Some(rpc_arg);
        // The call holds the registration until it ends.
        job.refs.push(reg);
        self.start_with_rpc_arg(tid, mem, job)
    }

    /// Starts a job that brought its RPC struct: a buffer the RPC shm cache kept for this
    /// thread is handed back first (clear_prealloc_rpc_cache), then the job runs.
    fn start_with_rpc_arg(&mut self, tid: usize, mem: &mut dyn PhysMem, job: Job) -> Regs {
        let cached = if self.cache_enabled {
            self.threads[tid].rpc_arg.take()
        } else {
            None
        };
        let thread = &mut self.threads[tid];
        thread.job = Some(job);
        let Some(buffer) = cached else {
            thread.state = ThreadState::Active;
            return self.run(tid, mem);
        };
        thread.state = ThreadState::Suspended(SuspendReason::RpcFree);
        self.heap.free(buffer.charge);
        let (hi, lo) = split_u64(buffer.cookie);
        [u64::from(rpc::FREE), hi, lo, tid as u64, 0, 0, 0, 0]
    }

    /// Sends the job's RPC command in its supplied RPC struct. `None` when there is nothing to
    /// send, or the command could not be written (the job then has a failed answer).
    pub(crate) fn send_in_rpc_arg(
        &mut self,
        tid: usize,
        mem: &mut dyn PhysMem,
        mut job: Job,
    ) -> Option<Regs> {
        let (Some(rpc_arg), Some(request)) = (job.rpc_arg.as_ref(), job.request.as_ref()) else {
            self.threads[tid].job = Some(job);
            return None;
        };
        let mut bytes = vec![0u8; request.encoded_len()];
        let written = request
            .encode(&mut bytes)
            .and_then(|_| Ok(rpc_arg.write(mem, 0, &bytes)?));
        let thread = &mut self.threads[tid];
        if let Err(err) = written {
            warn!(tid, %err, "cannot write the RPC command in the RPC arg");
            job.request = None;
            job.answer = Some(RpcAnswer::failed(teec::ERROR_COMMUNICATION));
            thread.job = Some(job);
            return None;
        }
        thread.job = Some(job);
        thread.state = ThreadState::Suspended(SuspendReason::RpcCmd);
        Some([u64::from(rpc::CMD), 0, 0, tid as u64, 0, 0, 0, 0])
    }
}

/// The whole mapped object of a registration: every page, less the offset into the first
/// (mobj_reg_shm_alloc's `num_pages * SMALL_PAGE_SIZE - page_offset`).
fn mobj_of(whole: &NwBuffer) -> Option<NwBuffer> {
    match &whole.backing {
        Backing::Pages { pages, start } => {
            let span = (pages.len() as u64).checked_mul(PAGE_SIZE_U64)?;
            Some(NwBuffer::new(
                whole.backing.clone(),
                span.checked_sub(*start)?,
            ))
        }
        _ => None,
    }
}

/// The message's mapped address (page offset plus `offset`) is aligned for the struct.
fn aligned(mobj: &NwBuffer, offset: u64) -> bool {
    let start = match &mobj.backing {
        Backing::Pages { start, .. } => *start,
        _ => 0,
    };
    start.wrapping_add(offset) % ARG_ALIGN == 0
}
