//! [`SecureWorld`]: the state of the modelled OP-TEE OS and its SMC entry.

use std::collections::BTreeMap;

use optee_abi::mem::PhysMem;
use optee_abi::smc::{func, join_u32_pair, ret, Regs};
use optee_abi::uuid::Uuid;
use tracing::{debug, warn};

use crate::config::Config;
use crate::entry::Message;
use crate::heap::{Heap, HeapBlock};
use crate::notif::AsyncNotif;
use crate::registry::{RegistrationInfo, ShmRegistry};
use crate::ta::TrustedApp;
use crate::ta::{
    bnxt::BnxtTa, device_pta::DevicePta, ftpm::FtpmTa, ClientIdentity, SessionId, TaFlags,
};
use crate::thread::{Job, SecureThread, SuspendReason, ThreadInfo, ThreadState, ThreadsView};

/// Heap bytes for an open session (`struct tee_ta_session` with its lists and the client
/// identity); an estimate, upstream's struct is a few hundred bytes.
pub const SESSION_BYTES: usize = 256;

/// Heap bytes for a mobj describing non-secure memory (the message argument mapping, an RPC
/// argument buffer, an RPC shm buffer).
pub const MOBJ_BYTES: usize = 64;

/// One installed TA.
pub(crate) struct TaSlot {
    pub app: Box<dyn TrustedApp>,
    /// The thread whose invocation is suspended inside this TA.
    pub busy_by: Option<usize>,
}

/// An open session.
pub(crate) struct Session {
    pub ta: usize,
    pub client: ClientIdentity,
    pub charge: HeapBlock,
}

/// One open session as introspection shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
    pub ta: Uuid,
    pub client: ClientIdentity,
}

/// A summary for tests and teectl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub registrations: usize,
    pub registered_bytes: u64,
    pub sessions: usize,
    pub heap_used: usize,
    pub heap_capacity: usize,
    /// The most of the heap ever in use since boot or [`SecureWorld::reset_heap_peak`].
    pub heap_peak: usize,
    pub threads_free: usize,
    pub threads_active: usize,
    pub threads_suspended: usize,
    pub cache_enabled: bool,
    /// RPC argument buffers held by free threads for the RPC shm cache.
    pub cached_buffers: usize,
    /// Asynchronous notifications are started (4.x profile; OP-TEE keeps this across kexec).
    pub notif_started: bool,
    /// Asynchronous notification values raised and not yet read.
    pub notif_pending: u32,
}

/// OP-TEE OS at the normal-world interface. Normal-world RAM is handed to every [`smc`] call
/// so that several drivers (simulator, hosted process) can share it.
///
/// [`smc`]: SecureWorld::smc
pub struct SecureWorld {
    pub(crate) config: Config,
    pub(crate) heap: Heap,
    pub(crate) threads: Vec<SecureThread>,
    pub(crate) cache_enabled: bool,
    pub(crate) registry: ShmRegistry,
    pub(crate) tas: Vec<TaSlot>,
    /// UUIDs of TAs flagged DEVICE_ENUM, for the device PTA.
    pub(crate) devices: Vec<Uuid>,
    pub(crate) sessions: BTreeMap<SessionId, Session>,
    pub(crate) next_session_id: SessionId,
    /// Yielding calls started, for the foreign-interrupt schedule.
    pub(crate) yielding_calls: u64,
    /// Asynchronous notifications (4.x profile).
    pub(crate) notif: AsyncNotif,
}

/// SplitMix64 step: spreads the boot nonce into the first session id.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SecureWorld {
    /// A freshly booted secure world with the device PTA, the BNXT PTA and the fTPM (NV in
    /// memory; manufactured at its first session) installed. `boot_nonce` is the only source
    /// of variation (it seeds session ids).
    pub fn new(config: Config, boot_nonce: u64) -> SecureWorld {
        let threads = (0..config.threads).map(|_| SecureThread::new()).collect();
        let mut world = SecureWorld {
            heap: Heap::new(config.core_heap_bytes, config.heap_baseline_bytes),
            threads,
            cache_enabled: false,
            registry: ShmRegistry::default(),
            tas: Vec::new(),
            devices: Vec::new(),
            sessions: BTreeMap::new(),
            next_session_id: (mix(boot_nonce) as u32) | 1,
            yielding_calls: 0,
            notif: AsyncNotif::default(),
            config,
        };
        world.add_ta(Box::new(DevicePta));
        world.add_ta(Box::new(BnxtTa::new()));
        world.add_ta(Box::new(FtpmTa::new()));
        world
    }

    /// Installs a TA (the fTPM, or a test TA). A TA with the UUID of an installed one
    /// replaces it.
    pub fn add_ta(&mut self, app: Box<dyn TrustedApp>) {
        let uuid = app.uuid();
        match self.tas.iter().position(|slot| slot.app.uuid() == uuid) {
            Some(at) => self.tas[at] = TaSlot { app, busy_by: None },
            None => self.tas.push(TaSlot { app, busy_by: None }),
        }
        self.devices = self
            .tas
            .iter()
            .filter(|slot| slot.app.flags().contains(TaFlags::DEVICE_ENUM))
            .map(|slot| slot.app.uuid())
            .collect();
    }

    /// The configuration this world was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles one SMC from the normal world and returns the registers it gets back.
    pub fn smc(&mut self, mem: &mut dyn PhysMem, regs: Regs) -> Regs {
        let id = regs[0] as u32;
        if func::is_fast(id) {
            return self.fast_call(regs);
        }
        let rpc_arg = self.config.profile.has_rpc_arg();
        match id {
            func::RETURN_FROM_RPC => self.return_from_rpc(mem, regs),
            func::CALL_WITH_ARG => self.call_with_arg(mem, join_u32_pair(regs[1], regs[2])),
            func::CALL_WITH_RPC_ARG if rpc_arg => {
                self.call_with_rpc_arg(mem, join_u32_pair(regs[1], regs[2]))
            }
            func::CALL_WITH_REGD_ARG if rpc_arg => {
                self.call_with_regd_arg(mem, join_u32_pair(regs[1], regs[2]), regs[3] & 0xFFFF_FFFF)
            }
            _ => self.unsupported_yielding_call(id),
        }
    }

    /// The first free thread, as thread_alloc_and_run scans for one.
    pub(crate) fn free_thread(&self) -> Option<usize> {
        self.threads
            .iter()
            .position(|t| t.state == ThreadState::Free)
    }

    /// Counts a yielding call that got a thread; true when the foreign-interrupt schedule
    /// interrupts it once before it runs.
    pub(crate) fn next_call_interrupted(&mut self) -> bool {
        self.yielding_calls += 1;
        self.config
            .foreign_intr_every
            .is_some_and(|every| every > 0 && self.yielding_calls % u64::from(every) == 0)
    }

    /// A yielding call this profile does not offer (RPC_ARG / REGD_ARG under 3.14):
    /// like upstream, it takes a thread and the entry refuses it.
    fn unsupported_yielding_call(&mut self, id: u32) -> Regs {
        if !self.threads.iter().any(|t| t.state == ThreadState::Free) {
            return reply(ret::ETHREAD_LIMIT);
        }
        debug!(id, "unsupported yielding call");
        reply(ret::EBADCMD)
    }

    fn call_with_arg(&mut self, mem: &mut dyn PhysMem, arg_pa: u64) -> Regs {
        let Some(tid) = self.free_thread() else {
            return reply(ret::ETHREAD_LIMIT);
        };
        let interrupt = self.next_call_interrupted();
        let (arg, charge) = match self.map_arg(&*mem, arg_pa) {
            Ok(mapped) => mapped,
            Err(code) => return reply(code),
        };
        debug!(tid, cmd = arg.cmd, arg_pa, "yielding call");
        self.threads[tid].state = ThreadState::Active;
        self.threads[tid].job = Some(Job::new(arg_pa, arg, charge, interrupt));
        self.run(tid, mem)
    }

    /// Reads the message argument as upstream maps it: page-aligned normal-world RAM (the
    /// static shm area is not backed here), at most OPTEE_MSG_MAX_NUM_PARAMS params, heap for
    /// the mapping.
    fn map_arg(&mut self, mem: &dyn PhysMem, arg_pa: u64) -> Result<(Message, HeapBlock), u32> {
        if arg_pa % optee_abi::mem::PAGE_SIZE_U64 != 0 {
            warn!(arg_pa, "message argument not page-aligned");
            return Err(ret::EBADADDR);
        }
        let arg = Message::read_from(mem, arg_pa).map_err(|err| {
            warn!(arg_pa, %err, "bad message argument");
            ret::EBADADDR
        })?;
        let charge = self.heap.alloc(MOBJ_BYTES).map_err(|err| {
            warn!(%err, "cannot map the message argument");
            ret::EBADADDR
        })?;
        Ok((arg, charge))
    }

    fn return_from_rpc(&mut self, mem: &mut dyn PhysMem, regs: Regs) -> Regs {
        let tid = (regs[3] & 0xFFFF_FFFF) as usize;
        let reason = match self.threads.get(tid).map(|t| t.state) {
            Some(ThreadState::Suspended(reason)) => reason,
            _ => {
                debug!(tid, "RETURN_FROM_RPC for a thread that is not suspended");
                return reply(ret::ERESUME);
            }
        };
        self.threads[tid].state = ThreadState::Active;
        match reason {
            SuspendReason::ForeignIntr => self.run(tid, mem),
            SuspendReason::RpcAlloc => {
                let pa = join_u32_pair(regs[1], regs[2]);
                let cookie = join_u32_pair(regs[4], regs[5]);
                self.alloc_answered(tid, mem, pa, cookie)
            }
            SuspendReason::RpcCmd => self.cmd_answered(tid, mem),
            SuspendReason::RpcFree => self.free_answered(tid, mem),
        }
    }

    /// Machine reset: the secure world restarts with the SoC. Threads, registrations,
    /// sessions, the RPC cache and the notification state are gone; TAs drop their volatile state (NV stays): for the
    /// fTPM, `unload` is a TPM power cycle.
    pub fn reset(&mut self) {
        for thread in &mut self.threads {
            *thread = SecureThread::new();
        }
        self.registry.clear();
        self.sessions.clear();
        self.cache_enabled = false;
        self.heap.reset();
        self.yielding_calls = 0;
        self.notif = AsyncNotif::default();
        for slot in &mut self.tas {
            slot.busy_by = None;
            slot.app.unload();
        }
    }

    /// Every thread's state.
    pub fn threads(&self) -> ThreadsView {
        ThreadsView {
            threads: self
                .threads
                .iter()
                .enumerate()
                .map(|(id, t)| ThreadInfo {
                    id,
                    state: t.state,
                    has_rpc_buffer: t.rpc_arg.is_some(),
                })
                .collect(),
        }
    }

    /// Starts measuring the heap's peak use again from now (for tests and benchmarks).
    pub fn reset_heap_peak(&mut self) {
        self.heap.reset_peak();
    }

    /// The core heap.
    pub fn heap(&self) -> &Heap {
        &self.heap
    }

    /// Live registrations, newest first.
    pub fn registrations(&self) -> impl Iterator<Item = RegistrationInfo> + '_ {
        self.registry.infos()
    }

    /// Open sessions in id order.
    pub fn sessions(&self) -> impl Iterator<Item = SessionInfo> + '_ {
        self.sessions.iter().filter_map(|(id, s)| {
            let ta = self.tas.get(s.ta)?.app.uuid();
            Some(SessionInfo {
                id: *id,
                ta,
                client: s.client,
            })
        })
    }

    /// A summary of the whole state.
    pub fn stats(&self) -> Stats {
        let view = self.threads();
        Stats {
            registrations: self.registry.len(),
            registered_bytes: self.registry.registered_bytes(),
            sessions: self.sessions.len(),
            heap_used: self.heap.used,
            heap_capacity: self.heap.capacity,
            heap_peak: self.heap.peak,
            threads_free: view.free(),
            threads_active: view.active(),
            threads_suspended: view.suspended(),
            cache_enabled: self.cache_enabled,
            cached_buffers: self
                .threads
                .iter()
                .filter(|t| t.state == ThreadState::Free && t.rpc_arg.is_some())
                .count(),
            notif_started: self.async_notif().started,
            notif_pending: self.async_notif().pending.count_ones(),
        }
    }

    /// Installed TAs' UUIDs, in installation order.
    pub fn installed_tas(&self) -> Vec<Uuid> {
        self.tas.iter().map(|slot| slot.app.uuid()).collect()
    }
}

// The hosted process may serve SMCs from another thread than the one that built the world.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<SecureWorld>();
};

/// Registers carrying only a return code.
pub(crate) fn reply(code: u32) -> Regs {
    [u64::from(code), 0, 0, 0, 0, 0, 0, 0]
}
