//! A minimal normal world for tests: a frame allocator over [`SparseRam`], an RPC handler
//! with a trivial allocator, and the yielding-call loop (CALL_WITH_ARG, serve RPCs,
//! RETURN_FROM_RPC) so that tests read as a sequence of commands.
//!
//! It answers NOTIFICATION WAIT at once instead of blocking; tests of blocking behaviour
//! drive the secure world step by step with [`NormalWorld::start`] and
//! [`NormalWorld::serve_rpc`].

use std::collections::BTreeMap;

use optee_abi::mem::{PhysMem, PAGE_SIZE_U64};
use optee_abi::msg::{self, attr, cmd, Direction, MsgArg, Param, RawParam};
use optee_abi::pagelist::{list_pages_needed, write_page_list};
use optee_abi::smc::{func, join_u32_pair, ret, rpc, split_u64, Regs, RpcRequest};
use optee_abi::teec;
use optee_abi::uuid::Uuid;
use optee_abi::AbiError;
use thiserror::Error;

use secure_world::ram::SparseRam;
use secure_world::Config;
use secure_world::SecureWorld;

/// RPCs served, in order, so tests can check the round trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcEvent {
    Alloc {
        size: u64,
        cookie: u64,
    },
    Free {
        cookie: u64,
    },
    ForeignIntr,
    /// An RPC CMD, with the command and its first value param's a and b.
    Cmd {
        cmd: u32,
        a: u64,
        b: u64,
    },
}

/// A yielding call that did not complete with OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CallError {
    /// the SMC returned this non-OK code
    #[error("SMC returned {0:#x}")]
    Smc(u32),
    /// the call kept asking for RPCs beyond the loop bound
    #[error("call still running after {0} RPCs")]
    Stalled(usize),
    /// the message could not be written or read
    #[error(transparent)]
    Abi(#[from] AbiError),
}

/// RPCs one call may take before the loop gives up (a waiter that is never woken spins).
pub const MAX_RPCS_PER_CALL: usize = 10_000;

/// The test normal world.
pub struct NormalWorld {
    pub ram: SparseRam,
    next_frame: u64,
    free_frames: Vec<u64>,
    /// Buffers handed to the secure world by RPC, by cookie.
    rpc_buffers: BTreeMap<u64, Vec<u64>>,
    next_cookie: u64,
    /// Every RPC served.
    pub events: Vec<RpcEvent>,
    /// Answer to GET_TIME: (seconds, nanoseconds).
    pub time: (u64, u64),
    /// Answer RPC ALLOC with zeros (allocation failure).
    pub refuse_alloc: bool,
}

impl NormalWorld {
    /// RAM as `config` describes it, frames handed out from its base.
    pub fn new(config: &Config) -> NormalWorld {
        NormalWorld {
            ram: SparseRam::new(config.ram_base, config.ram_size),
            next_frame: config.ram_base,
            free_frames: Vec::new(),
            rpc_buffers: BTreeMap::new(),
            next_cookie: 0x1000,
            events: Vec::new(),
            time: (1_700_000_000, 500),
            refuse_alloc: false,
        }
    }

    /// One page frame, zeroed.
    pub fn alloc_frame(&mut self) -> u64 {
        let pa = self.free_frames.pop().unwrap_or_else(|| {
            let pa = self.next_frame;
            self.next_frame += PAGE_SIZE_U64;
            pa
        });
        // A fresh page always lies in RAM; a failure would only leave stale bytes.
        let _ = self.ram.write(pa, &[0u8; PAGE_SIZE_U64 as usize]);
        pa
    }

    /// `n` page frames.
    pub fn alloc_frames(&mut self, n: usize) -> Vec<u64> {
        (0..n).map(|_| self.alloc_frame()).collect()
    }

    /// Gives frames back.
    pub fn free_frames(&mut self, frames: &[u64]) {
        self.free_frames.extend(frames.iter().rev());
    }

    /// Buffers the secure world got by RPC and has not freed (cookies).
    pub fn outstanding_rpc_buffers(&self) -> Vec<u64> {
        self.rpc_buffers.keys().copied().collect()
    }

    /// Writes `arg` to a fresh page and issues CALL_WITH_ARG. Returns the page and the
    /// registers the secure world answered.
    pub fn start(&mut self, sw: &mut SecureWorld, arg: &MsgArg) -> Result<(u64, Regs), CallError> {
        let pa = self.alloc_frame();
        arg.write_to(&mut self.ram, pa)?;
        let (hi, lo) = split_u64(pa);
        let regs = sw.smc(
            &mut self.ram,
            [u64::from(func::CALL_WITH_ARG), hi, lo, 0, 0, 0, 0, 0],
        );
        Ok((pa, regs))
    }

    /// Serves the RPC in `regs` and returns the RETURN_FROM_RPC registers, or `None` when
    /// `regs` is a final return.
    pub fn serve_rpc(&mut self, regs: &Regs) -> Option<Regs> {
        let request = RpcRequest::decode(regs)?;
        let mut back = [
            u64::from(func::RETURN_FROM_RPC),
            regs[1],
            regs[2],
            regs[3],
            0,
            0,
            0,
            0,
        ];
        match request {
            RpcRequest::Alloc { size } => {
                if self.refuse_alloc {
                    (back[1], back[2]) = (0, 0);
                    self.events.push(RpcEvent::Alloc { size, cookie: 0 });
                } else {
                    let pa = self.alloc_frame();
                    let cookie = self.new_cookie(vec![pa]);
                    (back[1], back[2]) = split_u64(pa);
                    (back[4], back[5]) = split_u64(cookie);
                    self.events.push(RpcEvent::Alloc { size, cookie });
                }
            }
            RpcRequest::Free { cookie } => {
                self.release(cookie);
                self.events.push(RpcEvent::Free { cookie });
            }
            RpcRequest::ForeignIntr => self.events.push(RpcEvent::ForeignIntr),
            RpcRequest::Cmd { cookie } => self.serve_cmd(cookie),
        }
        Some(back)
    }

    /// Serves the RPC in `regs` and resumes the secure world once; `None` when `regs` is a
    /// final return.
    pub fn resume_once(&mut self, sw: &mut SecureWorld, regs: &Regs) -> Option<Regs> {
        let back = self.serve_rpc(regs)?;
        Some(sw.smc(&mut self.ram, back))
    }

    /// Resumes from `regs` until the call returns; reads the message back from `arg_pa`.
    pub fn finish(
        &mut self,
        sw: &mut SecureWorld,
        arg_pa: u64,
        mut regs: Regs,
    ) -> Result<MsgArg, CallError> {
        for _ in 0..MAX_RPCS_PER_CALL {
            match self.serve_rpc(&regs) {
                Some(back) => regs = sw.smc(&mut self.ram, back),
                None => {
                    let code = regs[0] as u32;
                    let result = if code == ret::OK {
                        MsgArg::read_from(&self.ram, arg_pa).map_err(CallError::from)
                    } else {
                        Err(CallError::Smc(code))
                    };
                    self.free_frames(&[arg_pa]);
                    return result;
                }
            }
        }
        Err(CallError::Stalled(MAX_RPCS_PER_CALL))
    }

    /// A whole yielding call: the message as the secure world left it.
    pub fn call(&mut self, sw: &mut SecureWorld, arg: &MsgArg) -> Result<MsgArg, CallError> {
        let (pa, regs) = self.start(sw, arg)?;
        self.finish(sw, pa, regs)
    }

    /// Allocates `size` bytes of frames (plus `offset` into the first) and registers them
    /// under `cookie`. Returns the message result and the data frames.
    pub fn register(
        &mut self,
        sw: &mut SecureWorld,
        cookie: u64,
        offset: u64,
        size: u64,
    ) -> Result<(u32, Vec<u64>), CallError> {
        let pages = (offset + size).div_ceil(PAGE_SIZE_U64).max(1) as usize;
        let data = self.alloc_frames(pages);
        let code = self.register_pages(sw, cookie, &data, offset, size)?;
        Ok((code, data))
    }

    /// Registers `data` pages (page list written to fresh frames) under `cookie`.
    pub fn register_pages(
        &mut self,
        sw: &mut SecureWorld,
        cookie: u64,
        data: &[u64],
        offset: u64,
        size: u64,
    ) -> Result<u32, CallError> {
        let list = self.alloc_frames(list_pages_needed(data.len()));
        write_page_list(&mut self.ram, &list, data)?;
        let buf_ptr = list.first().copied().unwrap_or(0) | offset;
        let result = self.register_list(sw, cookie, buf_ptr, size);
        self.free_frames(&list);
        result
    }

    /// REGISTER_SHM of a page list already in RAM at `buf_ptr`.
    pub fn register_list(
        &mut self,
        sw: &mut SecureWorld,
        cookie: u64,
        buf_ptr: u64,
        size: u64,
    ) -> Result<u32, CallError> {
        let mut arg = MsgArg::new(cmd::REGISTER_SHM);
        arg.push(RawParam {
            attr: attr::TMEM_OUTPUT | attr::NONCONTIG,
            a: buf_ptr,
            b: size,
            c: cookie,
        })?;
        Ok(self.call(sw, &arg)?.ret)
    }

    /// UNREGISTER_SHM of `cookie`.
    pub fn unregister(&mut self, sw: &mut SecureWorld, cookie: u64) -> Result<u32, CallError> {
        Ok(self.call(sw, &unregister_message(cookie))?.ret)
    }

    /// OPEN_SESSION to `ta` with a public login: the returned message holds session, ret
    /// and origin.
    pub fn open_session(&mut self, sw: &mut SecureWorld, ta: Uuid) -> Result<MsgArg, CallError> {
        self.call(sw, &open_session_message(ta))
    }

    /// INVOKE_COMMAND `func` of `session` with `params`.
    pub fn invoke(
        &mut self,
        sw: &mut SecureWorld,
        session: u32,
        func_id: u32,
        params: &[Param],
    ) -> Result<MsgArg, CallError> {
        self.call(sw, &invoke_message(session, func_id, params)?)
    }

    /// CLOSE_SESSION: the message result.
    pub fn close_session(&mut self, sw: &mut SecureWorld, session: u32) -> Result<u32, CallError> {
        let mut arg = MsgArg::new(cmd::CLOSE_SESSION);
        arg.session = session;
        Ok(self.call(sw, &arg)?.ret)
    }

    fn new_cookie(&mut self, frames: Vec<u64>) -> u64 {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        self.rpc_buffers.insert(cookie, frames);
        cookie
    }

    fn release(&mut self, cookie: u64) {
        if let Some(frames) = self.rpc_buffers.remove(&cookie) {
            self.free_frames(&frames);
        }
    }

    fn serve_cmd(&mut self, cookie: u64) {
        let Some(&pa) = self.rpc_buffers.get(&cookie).and_then(|f| f.first()) else {
            return;
        };
        let Ok(mut arg) = MsgArg::read_from(&self.ram, pa) else {
            return;
        };
        let first = arg.params.first().copied().unwrap_or_default();
        self.events.push(RpcEvent::Cmd {
            cmd: arg.cmd,
            a: first.a,
            b: first.b,
        });
        arg.ret = teec::SUCCESS;
        match arg.cmd {
            msg::rpc_cmd::GET_TIME => {
                if let Some(p) = arg.params.first_mut() {
                    (p.a, p.b) = self.time;
                }
            }
            msg::rpc_cmd::SHM_ALLOC => match self.shm_alloc(first.b) {
                Ok(param) => {
                    if let Some(p) = arg.params.first_mut() {
                        *p = param;
                    }
                }
                Err(_) => arg.ret = teec::ERROR_OUT_OF_MEMORY,
            },
            msg::rpc_cmd::SHM_FREE => self.release(first.b),
            msg::rpc_cmd::SUSPEND | msg::rpc_cmd::NOTIFICATION => {}
            _ => arg.ret = teec::ERROR_NOT_SUPPORTED,
        }
        // The buffer was ours to begin with; a failed write leaves the GENERIC preset.
        let _ = arg.write_to(&mut self.ram, pa);
    }

    /// SHM_ALLOC: one page contiguous, more as a page list.
    fn shm_alloc(&mut self, size: u64) -> Result<RawParam, AbiError> {
        let pages = size.div_ceil(PAGE_SIZE_U64).max(1) as usize;
        let data = self.alloc_frames(pages);
        if pages == 1 {
            let cookie = self.new_cookie(data.clone());
            return Ok(RawParam {
                attr: attr::TMEM_OUTPUT,
                a: data[0],
                b: size,
                c: cookie,
            });
        }
        let list = self.alloc_frames(list_pages_needed(pages));
        write_page_list(&mut self.ram, &list, &data)?;
        let mut frames = data;
        frames.extend(&list);
        let cookie = self.new_cookie(frames);
        Ok(RawParam {
            attr: attr::TMEM_OUTPUT | attr::NONCONTIG,
            a: list[0],
            b: size,
            c: cookie,
        })
    }
}

/// OPEN_SESSION to `ta` from a nil client UUID with a public login.
pub fn open_session_message(ta: Uuid) -> MsgArg {
    let mut arg = MsgArg::new(cmd::OPEN_SESSION);
    let (a, b) = ta.to_value_pair();
    let meta = |a, b, c| Param::Value {
        dir: Direction::In,
        a,
        b,
        c,
        meta: true,
    };
    // Two params always fit.
    let _ = arg.push(meta(a, b, 0));
    let _ = arg.push(meta(0, 0, u64::from(teec::login::PUBLIC)));
    arg
}

/// INVOKE_COMMAND message.
pub fn invoke_message(session: u32, func_id: u32, params: &[Param]) -> Result<MsgArg, AbiError> {
    let mut arg = MsgArg::new(cmd::INVOKE_COMMAND);
    arg.session = session;
    arg.func = func_id;
    for param in params {
        arg.push(*param)?;
    }
    Ok(arg)
}

/// UNREGISTER_SHM message for `cookie` (an RMEM_INPUT param, as Linux sends it).
pub fn unregister_message(cookie: u64) -> MsgArg {
    let mut arg = MsgArg::new(cmd::UNREGISTER_SHM);
    let _ = arg.push(Param::Rmem {
        dir: Direction::In,
        offs: 0,
        size: 0,
        shm_ref: cookie,
    });
    arg
}

/// The registers of a fast call with function id `id` and a1 = `a1`.
pub fn fast_call(sw: &mut SecureWorld, ram: &mut dyn PhysMem, id: u32, a1: u64) -> Regs {
    sw.smc(ram, [u64::from(id), a1, 0, 0, 0, 0, 0, 0])
}

/// The cookie a DISABLE_SHM_CACHE answer carries in a1 (high) / a2 (low).
pub fn cookie_of(regs: &Regs) -> u64 {
    join_u32_pair(regs[1], regs[2])
}

/// True when `regs` is an RPC of kind `code` (`smc::rpc::*`).
pub fn is_rpc_of(regs: &Regs, code: u32) -> bool {
    rpc::is_rpc(regs[0]) && regs[0] as u32 == code
}
