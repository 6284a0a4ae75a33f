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
    /// This incarnation's epoch: the high half of every cookie it makes.
    epoch: u32,
    cookie_seq: u32,
    pub clients: BTreeMap<ClientId, Client>,
    pub shms: BTreeMap<ShmId, Shm>,
    next_shm: ShmId,
    pub sessions: BTreeMap<u32, Session>,
    /// Driver-private buffers by cookie.
    pub private: BTreeMap<u64, PrivateBuf>,
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
            cookie_seq: 0,
            clients: BTreeMap::new(),
            shms: BTreeMap::new(),
            next_shm: 1,
            sessions: BTreeMap::new(),
            private: BTreeMap::new(),
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
        if self.journal.is_none() {
            self.epoch = ((boot_id as u32) << 8) | (generation & 0xff);
        }
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

    /// A cookie unique for the secure world's lifetime: this incarnation's epoch (one more than
    /// every earlier one, kept in the journal) and a counter. Never a pointer, never reused.
    pub fn new_cookie(&mut self) -> u64 {
        self.cookie_seq = self.cookie_seq.wrapping_add(1);
        (u64::from(self.epoch) << 32) | u64::from(self.cookie_seq)
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
        let cookie = self.new_cookie();
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

    /// Frees a driver-private buffer by cookie. An unknown cookie is a stale one from an earlier
    /// boot or incarnation: false, and it is never dereferenced.
    pub fn free_private(&mut self, cookie: u64) -> bool {
        match self.private.remove(&cookie) {
            Some(buf) => {
                self.frames.free(buf.run);
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
