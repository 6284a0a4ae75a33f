//! The registry: what this incarnation holds — its clients, their buffers (registered with the
//! secure world or on the way), their sessions, the driver-private buffers the secure world asked
//! for — and the journal that outlives the incarnation. Bookkeeping only: it makes no SMC; the
//! call engine carries out the calls its entries need, and the registry records their results.
//!
//! It owns normal-world memory as teed sees it (the frame allocator and the journal live there),
//! so every write to that memory goes through here.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use optee_abi::mem::{PhysMem, PAGE_SIZE_U64};
use optee_abi::pagelist::{list_pages_needed, write_page_list};
use tee_proto::lifecycle::{ClientWindows, RamWindow, ServerKind};
use tee_proto::teed::ShmId;
use tee_proto::{Generation, WireError};

use crate::frames::{FrameAllocator, Run};
use crate::journal::{self, owner_tag, EntryState, Journal, Leftover};
use crate::types::{Client, ClientId, PrivateBuf, Session, Shm, ShmState};

/// Journal epochs keep the top bit clear, so they never meet a cookie made without a journal.
const JOURNAL_EPOCH_MASK: u32 = 0x7fff_ffff;
/// Marks a cookie made without a journal.
const BARE_TAG: u64 = 1 << 63;
/// Without a journal: boot id bits (a million boots per secure-world lifetime, which only a
/// machine reset ends).
const BARE_BOOT_BITS: u32 = 20;
/// Without a journal: generation bits (half a million teed incarnations per boot).
const BARE_GENERATION_BITS: u32 = 19;
/// Without a journal: counter bits (16 million cookies per incarnation).
const BARE_COUNTER_BITS: u32 = 24;

/// The high bits of the cookies an incarnation without a journal makes: a tag bit, then the
/// boot id and the generation, each in a field of its own, so neither a restart nor a kexec
/// reuses a cookie while both stay inside their field (the old 8-bit generation wrapped after
/// 256 restarts). Past its field a value wraps, and that is logged.
pub(crate) fn cookie_base_without_journal(boot_id: u64, generation: Generation) -> u64 {
    let boot_mask = (1u64 << BARE_BOOT_BITS) - 1;
    let generation_mask = (1u64 << BARE_GENERATION_BITS) - 1;
    let generation = u64::from(generation);
    if boot_id > boot_mask || generation > generation_mask {
        tracing::error!(
            boot_id,
            generation,
            "cookie epoch field wraps: cookies of an earlier incarnation may come back"
        );
    }
    BARE_TAG
        | (boot_id & boot_mask) << (BARE_GENERATION_BITS + BARE_COUNTER_BITS)
        | (generation & generation_mask) << BARE_COUNTER_BITS
}

/// A driver-private buffer answered to RPC SHM_ALLOC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Payload {
    pub cookie: u64,
    /// The buffer's address, or with `noncontig` its page list's.
    pub buf_ptr: u64,
    pub noncontig: bool,
}

/// A client buffer made ready for registration.
pub(crate) struct NewBuffer {
    pub shm: ShmId,
    pub cookie: u64,
    /// The page list describing it, for REGISTER_SHM; free it once the registration returned.
    pub list: Run,
}

/// The books of one teed incarnation.
pub(crate) struct Registry<M: PhysMem> {
    /// Normal-world RAM as teed sees it.
    pub mem: M,
    /// The RAM window init handed out, in page runs: page lists, private buffers and, for a
    /// client without a window, its buffers.
    pub frames: FrameAllocator,
    /// Each client kind's window, where its buffers go: the only RAM that client maps.
    windows: BTreeMap<ServerKind, FrameAllocator>,
    journal: Option<Journal>,
    /// The journal's epoch, when there is a journal.
    epoch: u32,
    /// The high bits of every cookie this incarnation makes; the counter fills the rest.
    cookie_base: u64,
    cookie_seq: u64,
    /// The counter's last value.
    cookie_limit: u64,
    pub clients: BTreeMap<ClientId, Client>,
    pub shms: BTreeMap<ShmId, Shm>,
    next_shm: ShmId,
    pub sessions: BTreeMap<u32, Session>,
    /// Driver-private buffers by cookie.
    pub private: BTreeMap<u64, PrivateBuf>,
    /// The journal entry of teed's registered argument pages (`crate::abi`).
    arg_pages_slot: Option<usize>,
}

impl<M: PhysMem> Registry<M> {
    /// An empty registry over `mem`; [`Registry::open`] gives it its windows.
    pub fn new(mem: M) -> Registry<M> {
        Registry {
            mem,
            frames: FrameAllocator::new(0, 0),
            windows: BTreeMap::new(),
            journal: None,
            epoch: 0,
            cookie_base: 0,
            cookie_seq: 0,
            cookie_limit: 0,
            clients: BTreeMap::new(),
            shms: BTreeMap::new(),
            next_shm: 1,
            sessions: BTreeMap::new(),
            private: BTreeMap::new(),
            arg_pages_slot: None,
        }
    }

    /// Takes the RAM window for this boot and, when `keep_journal`, opens the journal window.
    /// The epoch comes from the journal; without one, boot id and generation keep cookies apart.
    pub fn open(
        &mut self,
        ram: RamWindow,
        windows: ClientWindows,
        journal_window: RamWindow,
        keep_journal: bool,
        boot_id: u64,
        generation: Generation,
    ) {
        self.frames = FrameAllocator::new(ram.base, ram.len);
        self.windows = [ServerKind::Tpmd, ServerKind::Bnxtd]
            .into_iter()
            .filter_map(|kind| {
                let window = windows.of(kind)?;
                Some((kind, FrameAllocator::new(window.base, window.len)))
            })
            .collect();
        self.journal = None;
        if keep_journal && journal_window.len >= journal::JOURNAL_BYTES {
            match Journal::open(&mut self.mem, journal_window.base) {
                Ok((j, epoch)) => {
                    self.journal = Some(j);
                    self.epoch = epoch;
                }
                Err(error) => tracing::warn!(%error, "journal window unusable; running without"),
            }
        }
        self.cookie_seq = 0;
        self.cookie_base = match self.journal {
            // The journal's epoch goes up by one per incarnation: 31 bits never wrap in practice.
            Some(_) => u64::from(self.epoch & JOURNAL_EPOCH_MASK) << 32,
            None => cookie_base_without_journal(boot_id, generation),
        };
        self.cookie_limit = match self.journal {
            Some(_) => u64::from(u32::MAX),
            None => (1 << BARE_COUNTER_BITS) - 1,
        };
    }

    /// Whether the journal is kept.
    pub fn has_journal(&self) -> bool {
        self.journal.is_some()
    }

    /// The addresses of the journal's message-argument slots, when there is a journal.
    pub fn journal_arg_slots(&self) -> Option<Vec<u64>> {
        let j = self.journal.as_ref()?;
        Some((0..journal::ARG_SLOTS).map(|i| j.arg_slot_pa(i)).collect())
    }

    /// What an earlier boot or incarnation left in the journal; `None` without a readable one.
    pub fn leftovers(&self) -> Option<Vec<Leftover>> {
        self.journal.as_ref()?.leftovers(&self.mem).ok()
    }

    /// A cookie unique for the secure world's lifetime: this incarnation's epoch and a counter
    /// (see [`cookie_base_without_journal`]). Never a pointer, never reused: once the counter
    /// is spent, `None` rather than a wrap.
    pub fn new_cookie(&mut self) -> Option<u64> {
        if self.cookie_seq >= self.cookie_limit {
            tracing::error!("cookie counter spent for this incarnation; refusing new buffers");
            return None;
        }
        self.cookie_seq += 1;
        Some(self.cookie_base | self.cookie_seq)
    }

    // ---- clients ----

    /// Whether `client`'s endpoint is open.
    pub fn client_connected(&self, client: ClientId) -> bool {
        self.clients.get(&client).is_some_and(|c| c.connected)
    }

    /// The kind of a connected client.
    pub fn connected_kind(&self, client: ClientId) -> Option<ServerKind> {
        self.clients
            .get(&client)
            .filter(|c| c.connected)
            .map(|c| c.kind)
    }

    // ---- client buffers ----

    /// Allocates, zeroes and journals a client buffer of `size` bytes, in state `Registering`,
    /// and writes the page list REGISTER_SHM will name.
    pub fn new_client_buffer(
        &mut self,
        owner: ClientId,
        kind: ServerKind,
        size: u32,
    ) -> Result<NewBuffer, WireError> {
        let pages = u64::from(size).div_ceil(PAGE_SIZE_U64);
        let data = match self.windows.get_mut(&kind) {
            Some(window) => window.alloc(pages),
            None => self.frames.alloc(pages),
        }
        .ok_or(WireError::OutOfMemory)?;
        let Some(list) = self.frames.alloc(list_pages_needed(pages as usize) as u64) else {
            self.free_data(data);
            return Err(WireError::OutOfMemory);
        };
        let written = self.mem.zero(data.pa, data.bytes()).is_ok()
            && write_page_list(&mut self.mem, &list.page_addrs(), &data.page_addrs()).is_ok();
        if !written {
            self.free_data(data);
            self.frames.free(list);
            return Err(WireError::OutOfMemory);
        }
        let Some(cookie) = self.new_cookie() else {
            self.frames.free(data);
            self.frames.free(list);
            return Err(WireError::OutOfMemory);
        };
        let journal_slot = match self.journal.as_mut() {
            Some(j) => {
                match j.begin_registration(
                    &mut self.mem,
                    owner_tag(kind),
                    cookie,
                    data.pa,
                    u64::from(size),
                ) {
                    Ok(Some(slot)) => Some(slot),
                    _ => {
                        self.free_data(data);
                        self.frames.free(list);
                        return Err(WireError::Busy);
                    }
                }
            }
            None => None,
        };
        let shm = self.next_shm;
        self.next_shm += 1;
        self.shms.insert(
            shm,
            Shm {
                owner,
                owner_kind: kind,
                cookie,
                run: data,
                size,
                state: ShmState::Registering,
                journal_slot,
            },
        );
        Ok(NewBuffer { shm, cookie, list })
    }

    /// Allocates and writes the page list that describes `run`; `None` when out of memory.
    pub fn page_list_for(&mut self, run: Run) -> Option<Run> {
        let list = self
            .frames
            .alloc(list_pages_needed(run.pages as usize) as u64)?;
        if write_page_list(&mut self.mem, &list.page_addrs(), &run.page_addrs()).is_err() {
            self.frames.free(list);
            return None;
        }
        Some(list)
    }

    /// Forgets a client buffer whose registration is unknown (abandoned inside the secure
    /// world): its pages stay allocated and its journal entry stays for the next probe.
    pub fn forget_shm(&mut self, shm: ShmId) {
        self.shms.remove(&shm);
    }

    /// Forgets a client buffer, freeing its pages unless `free_frames` is false.
    pub fn drop_shm(&mut self, shm: ShmId, free_frames: bool) {
        if let Some(s) = self.shms.remove(&shm) {
            self.journal_registration(s.journal_slot, EntryState::Free);
            if free_frames {
                self.free_data(s.run);
            }
        }
    }

    /// Returns a client buffer's pages to the window (or frames) they came from.
    fn free_data(&mut self, run: Run) {
        match self.windows.values_mut().find(|window| window.covers(run)) {
            Some(window) => window.free(run),
            None => self.frames.free(run),
        };
    }

    // ---- driver-private buffers ----

    /// Allocates a zeroed driver-private buffer; returns (cookie, pa).
    pub fn alloc_private(&mut self, size: u64) -> Option<(u64, u64)> {
        let pages = size.div_ceil(PAGE_SIZE_U64).max(1);
        let run = self.frames.alloc(pages)?;
        if self.mem.zero(run.pa, run.bytes()).is_err() {
            self.frames.free(run);
            return None;
        }
        let Some(cookie) = self.new_cookie() else {
            self.frames.free(run);
            return None;
        };
        self.private.insert(
            cookie,
            PrivateBuf {
                run,
                list: None,
                registered: false,
            },
        );
        Some((cookie, run.pa))
    }

    /// Allocates a zeroed driver-private buffer for RPC SHM_ALLOC. One page is answered
    /// contiguously; OP-TEE takes no more contiguous memory there (thread_optee_smc.c
    /// rpc_shm_mobj_alloc), so a larger buffer comes with a page list, as Linux answers
    /// (smc_abi.c handle_rpc_func_cmd_shm_alloc). The list is private memory too, freed with
    /// the buffer.
    pub fn alloc_private_payload(&mut self, size: u64) -> Option<Payload> {
        let (cookie, pa) = self.alloc_private(size)?;
        if size <= PAGE_SIZE_U64 {
            return Some(Payload {
                cookie,
                buf_ptr: pa,
                noncontig: false,
            });
        }
        let run = self.private.get(&cookie)?.run;
        let Some(list) = self.page_list_for(run) else {
            self.free_private(cookie);
            return None;
        };
        if let Some(buf) = self.private.get_mut(&cookie) {
            buf.list = Some(list);
        }
        Some(Payload {
            cookie,
            buf_ptr: list.pa,
            noncontig: true,
        })
    }

    /// Frees a driver-private buffer by cookie. An unknown cookie is a stale one from an earlier
    /// boot or incarnation: false, and it is never dereferenced.
    pub fn free_private(&mut self, cookie: u64) -> bool {
        match self.private.remove(&cookie) {
            Some(buf) => {
                self.frames.free(buf.run);
                if let Some(list) = buf.list {
                    self.frames.free(list);
                }
                true
            }
            None => {
                tracing::warn!(
                    cookie,
                    "secure world named a buffer this teed never gave it"
                );
                false
            }
        }
    }

    // ---- teed's argument pages (`crate::abi`) ----

    /// Records teed's argument pages about to be registered under `cookie`, owned by teed
    /// itself, so that a crash before their unregistration leaves an entry the next probe
    /// reclaims. `Ok(None)` without a journal; `Err` when the journal is full (then they must
    /// not be registered at all).
    pub fn journal_arg_pages(&mut self, cookie: u64, run: Run) -> Result<Option<usize>, ()> {
        let Some(j) = self.journal.as_mut() else {
            return Ok(None);
        };
        let owner = owner_tag(ServerKind::Teed);
        match j.begin_registration(&mut self.mem, owner, cookie, run.pa, run.bytes()) {
            Ok(Some(slot)) => Ok(Some(slot)),
            _ => Err(()),
        }
    }

    /// The argument pages' journal entry, while they are registered.
    pub fn arg_pages_journal_slot(&self) -> Option<usize> {
        self.arg_pages_slot
    }

    /// Remembers (or forgets) the argument pages' journal entry.
    pub fn set_arg_pages_journal_slot(&mut self, slot: Option<usize>) {
        self.arg_pages_slot = slot;
    }

    // ---- journal writes (no-ops without a journal) ----

    /// Records a session about to be opened with its message in `arg_slot`; `None` without a
    /// journal or when its table is full.
    pub fn journal_session_begin(&mut self, kind: ServerKind, arg_slot: usize) -> Option<usize> {
        let j = self.journal.as_mut()?;
        j.begin_session(&mut self.mem, owner_tag(kind), arg_slot)
            .ok()
            .flatten()
    }

    /// Moves a registration entry to `state`.
    pub fn journal_registration(&mut self, slot: Option<usize>, state: EntryState) {
        if let (Some(j), Some(slot)) = (self.journal.as_mut(), slot) {
            if let Err(error) = j.set_registration(&mut self.mem, slot, state) {
                tracing::warn!(%error, "journal write failed");
            }
        }
    }

    /// Moves a session entry to `state`, recording the session id when it is known.
    pub fn journal_session(
        &mut self,
        slot: Option<usize>,
        state: EntryState,
        session: Option<u32>,
    ) {
        if let (Some(j), Some(slot)) = (self.journal.as_mut(), slot) {
            if let Err(error) = j.set_session(&mut self.mem, slot, state, session) {
                tracing::warn!(%error, "journal write failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_cookie_bases_stay_apart_across_restarts_and_boots() {
        let mut seen = alloc::collections::BTreeSet::new();
        for boot_id in [1, 2, 3, 255, 256, 257, (1 << 20) - 1] {
            for generation in (1..=1000).chain([1 << 18, (1 << 19) - 1]) {
                let base = cookie_base_without_journal(boot_id, generation);
                assert_eq!(
                    base & ((1 << BARE_COUNTER_BITS) - 1),
                    0,
                    "counter bits free"
                );
                assert!(seen.insert(base), "boot {boot_id} generation {generation}");
            }
        }
        // A journal epoch never sets the tag bit.
        let journal_base = u64::from(JOURNAL_EPOCH_MASK) << 32;
        assert_eq!(journal_base & BARE_TAG, 0);
    }
}
