//! The message commands (core/tee/entry_std.c) as the first stage of a thread's job: decoding,
//! param resolution, cancel, and shm registration. TA entry points are in `ta_entry`.

use optee_abi::mem::PhysMem;
use optee_abi::msg::{
    arg_size, attr, cmd, MsgHeader, MsgView, Param, RawParam, ARG_HEADER_SIZE, MSG_MAX_NUM_PARAMS,
};
use optee_abi::pagelist::{data_pages_spanned, walk_page_list};
use optee_abi::smc::ret;
use optee_abi::teec::{self, origin};
use optee_abi::uuid::Uuid;
use optee_abi::AbiError;
use tracing::{debug, warn};

use crate::buffer::{Backing, NwBuffer};
use crate::engine::Step;
use crate::registry::{RegId, Release};
use crate::ta::params::{Slot, TA_NUM_PARAMS};
use crate::ta::{ClientIdentity, TaParams};
use crate::thread::{Job, Stage, TaEntry};
use crate::world::SecureWorld;

/// A command refused before any TA ran: (TEE result, origin).
type Refusal = (u32, u32);

pub(crate) const BAD_PARAMS: Refusal = (teec::ERROR_BAD_PARAMETERS, origin::TEE);

/// A memref beyond the memory object it names (entry_std.c set_rmem_param).
const SECURITY: Refusal = (teec::ERROR_SECURITY, origin::TEE);

/// An `optee_msg_arg` as a secure thread holds it while it serves the call: up to
/// `OPTEE_MSG_MAX_NUM_PARAMS` params, on the heap (the model is std; `optee_abi`'s `MsgArg`
/// keeps Linux's cap).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Message {
    pub cmd: u32,
    pub func: u32,
    pub session: u32,
    pub cancel_id: u32,
    pub ret: u32,
    pub ret_origin: u32,
    pub params: Vec<RawParam>,
}

impl Message {
    /// Reads the message at `pa` as thread_optee_smc.c map_cmd_buffer does: num_params is read
    /// once, and more than OPTEE_MSG_MAX_NUM_PARAMS (127, exactly one page) fails.
    pub fn read_from(mem: &dyn PhysMem, pa: u64) -> Result<Message, AbiError> {
        let mut bytes = vec![0u8; ARG_HEADER_SIZE];
        mem.read(pa, &mut bytes)?;
        let num_params = MsgHeader::decode(&bytes)?.num_params;
        if num_params as usize > MSG_MAX_NUM_PARAMS {
            return Err(AbiError::TooManyParams {
                count: num_params,
                max: MSG_MAX_NUM_PARAMS,
            });
        }
        bytes.resize(arg_size(num_params as usize), 0);
        mem.read(pa + ARG_HEADER_SIZE as u64, &mut bytes[ARG_HEADER_SIZE..])?;
        let view = MsgView::new(&bytes, MSG_MAX_NUM_PARAMS)?;
        let header = view.header();
        Ok(Message {
            cmd: header.cmd,
            func: header.func,
            session: header.session,
            cancel_id: header.cancel_id,
            ret: header.ret,
            ret_origin: header.ret_origin,
            params: view.params().collect(),
        })
    }

    /// Writes the message back to `pa`, params included.
    pub fn write_to(&self, mem: &mut dyn PhysMem, pa: u64) -> Result<(), AbiError> {
        let header = MsgHeader {
            cmd: self.cmd,
            func: self.func,
            session: self.session,
            cancel_id: self.cancel_id,
            ret: self.ret,
            ret_origin: self.ret_origin,
            num_params: self.params.len() as u32,
        };
        let mut bytes = Vec::with_capacity(arg_size(self.params.len()));
        bytes.extend_from_slice(&header.to_bytes());
        for param in &self.params {
            bytes.extend_from_slice(&param.to_bytes());
        }
        mem.write(pa, &bytes)?;
        Ok(())
    }
}

impl SecureWorld {
    /// First stage of every job: decode the command.
    pub(crate) fn start(&mut self, tid: usize, mem: &mut dyn PhysMem, job: &mut Job) -> Step {
        let prepared = match job.arg.cmd {
            cmd::OPEN_SESSION => Some(self.prepare_open(&*mem, job)),
            cmd::INVOKE_COMMAND => Some(self.prepare_invoke(&*mem, job)),
            cmd::CLOSE_SESSION => Some(self.prepare_close(job)),
            _ => None,
        };
        if let Some(prepared) = prepared {
            match prepared {
                Ok(entry) => job.stage = Stage::Ready(entry),
                Err((code, from)) => {
                    job.arg.ret = code;
                    job.arg.ret_origin = from;
                    self.complete(tid, mem, job);
                }
            }
            return Step::Continue;
        }
        if job.interrupt {
            job.interrupt = false;
            job.stage = Stage::Start;
            return Step::ForeignIntr;
        }
        match job.arg.cmd {
            cmd::CANCEL => self.cancel(job),
            cmd::REGISTER_SHM => self.register_shm(&*mem, job),
            cmd::UNREGISTER_SHM => {
                if let Some(reg) = self.unregister_shm(job) {
                    job.stage = Stage::WaitRelease { reg };
                    return Step::Continue;
                }
            }
            cmd::DO_BOTTOM_HALF | cmd::STOP_ASYNC_NOTIF if self.notif_command(job.arg.cmd) => {}
            other => {
                warn!(tid, cmd = other, "unknown message command");
                return Step::Return(ret::EBADCMD);
            }
        }
        self.complete(tid, mem, job);
        Step::Continue
    }

    fn prepare_open(&mut self, mem: &dyn PhysMem, job: &mut Job) -> Result<TaEntry, Refusal> {
        let meta_value = attr::VALUE_INPUT | attr::META;
        let (Some(ta_param), Some(client_param)) = (job.arg.params.first(), job.arg.params.get(1))
        else {
            return Err(BAD_PARAMS);
        };
        if ta_param.attr != meta_value || client_param.attr != meta_value {
            return Err(BAD_PARAMS);
        }
        let uuid = Uuid::from_value_pair(ta_param.a, ta_param.b);
        // tee/entry_std.c get_open_session_meta: the client UUID is zeroed for the anonymous
        // logins (PUBLIC, REE_KERNEL); a login OP-TEE does not know is refused.
        let login = client_param.c as u32;
        if !teec::login::is_known(login) {
            debug!(login, "open session: unknown login");
            return Err(BAD_PARAMS);
        }
        let uuid_claimed = Uuid::from_value_pair(client_param.a, client_param.b);
        let client = ClientIdentity {
            uuid: if teec::login::is_anonymous(login) {
                Uuid::from_bytes([0; 16])
            } else {
                uuid_claimed
            },
            login,
        };
        let Some(ta) = self.tas.iter().position(|slot| slot.app.uuid() == uuid) else {
            debug!(%uuid, "open session: no such TA");
            return Err((teec::ERROR_ITEM_NOT_FOUND, origin::TEE));
        };
        let raw: Vec<RawParam> = job.arg.params[2..].to_vec();
        let params = self.resolve_params(mem, &raw, &mut job.refs)?;
        Ok(TaEntry::Open { ta, client, params })
    }

    /// INVOKE_COMMAND (entry_std.c entry_invoke_command): params are copied in before the
    /// session is looked up, so a bad param wins over an unknown session.
    fn prepare_invoke(&mut self, mem: &dyn PhysMem, job: &mut Job) -> Result<TaEntry, Refusal> {
        let session = job.arg.session;
        let raw: Vec<RawParam> = job.arg.params.to_vec();
        let params = self.resolve_params(mem, &raw, &mut job.refs)?;
        let ta = self.sessions.get(&session).ok_or(BAD_PARAMS)?.ta;
        Ok(TaEntry::Invoke {
            ta,
            session,
            func: job.arg.func,
            params,
        })
    }

    /// CLOSE_SESSION (tee/entry_std.c entry_close_session): parameters are refused with
    /// BAD_PARAMETERS; an unknown session is ITEM_NOT_FOUND (tee_ta_close_session).
    fn prepare_close(&mut self, job: &Job) -> Result<TaEntry, Refusal> {
        if !job.arg.params.is_empty() {
            return Err(BAD_PARAMS);
        }
        let session = job.arg.session;
        let ta = self
            .sessions
            .get(&session)
            .ok_or((teec::ERROR_ITEM_NOT_FOUND, origin::TEE))?
            .ta;
        Ok(TaEntry::Close { ta, session })
    }

    /// Turns message params into the TA's four params, referencing registrations
    /// (entry_std.c copy_in_params). Each attr is read through OPTEE_MSG_ATTR_TYPE_MASK
    /// ([`RawParam::decode_masked`]): META is refused, NONCONTIG chooses how a TMEM is read,
    /// cache bits are ignored. (3.14's cleanup_shm_refs then switches on the unmasked attr, so
    /// upstream keeps the memory object of a memref with extra bits referenced — fixed upstream
    /// in 51d99cd24; the model releases it.)
    fn resolve_params(
        &mut self,
        mem: &dyn PhysMem,
        raw: &[RawParam],
        refs: &mut Vec<RegId>,
    ) -> Result<TaParams, Refusal> {
        if raw.len() > TA_NUM_PARAMS {
            return Err(BAD_PARAMS);
        }
        let mut params = TaParams {
            passed: raw.len(),
            ..TaParams::default()
        };
        for (slot, raw) in params.slots.iter_mut().zip(raw) {
            *slot = match raw.decode_masked().map_err(|_| BAD_PARAMS)? {
                Param::None => Slot::None,
                Param::Value { dir, a, b, c, .. } => Slot::Value { dir, a, b, c },
                Param::Rmem {
                    dir,
                    offs,
                    size,
                    shm_ref,
                } => {
                    let (id, whole) = self.registry.acquire(shm_ref).ok_or(BAD_PARAMS)?;
                    refs.push(id);
                    // set_rmem_param: offs + size beyond the mobj (pages x 4096 - page
                    // offset) is TEE_ERROR_SECURITY, overflow included.
                    let buffer = whole.slice(offs, size).ok_or(SECURITY)?;
                    Slot::Memref { dir, buffer, size }
                }
                Param::Tmem {
                    dir,
                    buf_ptr,
                    size,
                    noncontig,
                    ..
                } => {
                    // set_tmem_param: a null address is a null memref, page list or not.
                    let buffer = if buf_ptr == 0 {
                        NwBuffer::new(Backing::Null, size)
                    } else {
                        self.temp_buffer(mem, buf_ptr, size, noncontig)?
                    };
                    Slot::Memref { dir, buffer, size }
                }
            };
        }
        Ok(params)
    }

    /// A temporary memref at a non-null address: contiguous in RAM, or a page list. The model
    /// accepts contiguous buffers anywhere in RAM, since its static area is not backed.
    pub(crate) fn temp_buffer(
        &self,
        mem: &dyn PhysMem,
        buf_ptr: u64,
        size: u64,
        noncontig: bool,
    ) -> Result<NwBuffer, Refusal> {
        if !noncontig {
            if !mem.contains(buf_ptr, size) {
                return Err(BAD_PARAMS);
            }
            return Ok(NwBuffer::new(Backing::Contig { pa: buf_ptr }, size));
        }
        let offset = buf_ptr & (optee_abi::mem::PAGE_SIZE_U64 - 1);
        // A span past 64 bits (hostile size) is BAD_PARAMS; an empty one spans no page.
        let num_pages = data_pages_spanned(offset, size).map_err(|_| BAD_PARAMS)?;
        // Upstream allocates the page array first, so an absurd size fails on the heap.
        let array_bytes = num_pages.checked_mul(8).ok_or(BAD_PARAMS)?;
        if num_pages == 0 || array_bytes > self.heap.available() as u64 {
            return Err(BAD_PARAMS);
        }
        let mut pages = Vec::new();
        walk_page_list(mem, buf_ptr, num_pages as usize, |pa| pages.push(pa))
            .map_err(|_| BAD_PARAMS)?;
        Ok(NwBuffer::new(
            Backing::Pages {
                pages: pages.into(),
                start: offset,
            },
            size,
        ))
    }

    /// CANCEL: flags the session's invocations in progress (upstream cancels per session).
    /// Parameters are refused (tee/entry_std.c entry_cancel), as is an unknown session.
    fn cancel(&mut self, job: &mut Job) {
        let session = job.arg.session;
        if !job.arg.params.is_empty() || !self.sessions.contains_key(&session) {
            (job.arg.ret, job.arg.ret_origin) = BAD_PARAMS;
            return;
        }
        for other in self.threads.iter_mut().filter_map(|t| t.job.as_mut()) {
            if other.invocation().is_some_and(|(s, _)| s == session) {
                other.cancelled = true;
            }
        }
        job.arg.ret = teec::SUCCESS;
        job.arg.ret_origin = origin::TEE;
    }

    /// REGISTER_SHM: every failure is BAD_PARAMETERS and ret_origin is left alone.
    fn register_shm(&mut self, mem: &dyn PhysMem, job: &mut Job) {
        job.arg.ret = teec::ERROR_BAD_PARAMETERS;
        let result = match job.arg.params.as_slice() {
            [param] if param.attr == attr::TMEM_OUTPUT | attr::NONCONTIG => {
                self.registry
                    .register(&mut self.heap, mem, param.a, param.b, param.c)
            }
            [param] => Err(crate::registry::RegisterError::Attr(param.attr)),
            params => Err(crate::registry::RegisterError::ParamCount(params.len())),
        };
        match result {
            Ok(()) => {
                debug!(
                    cookie = job.arg.params[0].c,
                    size = job.arg.params[0].b,
                    "registered shm"
                );
                job.arg.ret = teec::SUCCESS;
            }
            Err(err) => warn!(%err, heap_used = self.heap.used, "REGISTER_SHM refused"),
        }
    }

    /// UNREGISTER_SHM: `Some(reg)` when the caller must wait for the registration's users.
    fn unregister_shm(&mut self, job: &mut Job) -> Option<RegId> {
        let [param] = job.arg.params.as_slice() else {
            (job.arg.ret, job.arg.ret_origin) = BAD_PARAMS;
            return None;
        };
        // The cookie is read as rmem.shm_ref whatever the attr says.
        let cookie = param.c;
        match self.registry.begin_release(&mut self.heap, cookie) {
            Ok(Release::Freed) => {
                job.arg.ret = teec::SUCCESS;
                None
            }
            Ok(Release::Wait(reg)) => {
                debug!(cookie, "unregister waits for the buffer's users");
                Some(reg)
            }
            Err(err) => {
                warn!(%err, "UNREGISTER_SHM refused");
                job.arg.ret = teec::ERROR_BAD_PARAMETERS;
                None
            }
        }
    }
}
