//! The lifecycle journal: teed's record of every registration and session, kept in normal-world
//! memory that survives kexec and entry into the crash kernel (a reserved RAM region hosted, a
//! `mem=` carve-out in the QEMU guest).
//!
//! Linux has no such record: a kernel that crashed without running `.shutdown` leaves its
//! registrations and sessions in the secure world for good, and the single-session fTPM TA is
//! then locked out until a machine reset. teed writes each entry *before* the SMC that creates
//! the object (write-ahead), so whatever point a crash or a kill interrupts, the next probe finds
//! the entry and unregisters or closes what it names. An open whose reply was lost is resolved
//! from its message argument, which lives in the journal too: the secure world writes the new
//! session id there in the same step that creates the session.
//!
//! With a modern secure world teed's own argument pages are a registration too (`crate::abi`):
//! they take a registration entry owned by teed ([`owner_tag`] of `ServerKind::Teed`), written
//! before their REGISTER_SHM and freed after their UNREGISTER_SHM, so a crash with no shutdown
//! leaves an entry that the next probe reclaims like any client's buffer.
//!
//! Layout (little-endian): header at 0 (magic, epoch); registration entries at
//! [`REGS_OFFSET`] (32 bytes: state, owner, cookie, pa, size); session entries at
//! [`SESSIONS_OFFSET`] (16 bytes: state, owner, session, arg slot); message-argument slots at
//! [`ARGS_OFFSET`] ([`ARG_SLOT_BYTES`] each).

use alloc::vec::Vec;

use optee_abi::mem::{MemError, PhysMem};
use tee_proto::lifecycle::ServerKind;

const MAGIC: u64 = u64::from_le_bytes(*b"TEEJRNL1");
/// Where the registration entries start.
pub const REGS_OFFSET: u64 = 0x1000;
/// Registration entries.
pub const REG_SLOTS: usize = 128;
const REG_ENTRY: u64 = 32;
/// Where the session entries start.
pub const SESSIONS_OFFSET: u64 = 0x2000;
/// Session entries.
pub const SESSION_SLOTS: usize = 64;
const SESSION_ENTRY: u64 = 16;
/// Where the message-argument slots start.
pub const ARGS_OFFSET: u64 = 0x3000;
/// Bytes per message-argument slot: a whole page, because OP-TEE maps a dynamic-shm argument
/// only when it is page-aligned (EBADADDR otherwise, thread_optee_smc.c).
pub const ARG_SLOT_BYTES: u64 = 4096;
/// Message-argument slots, which bound the yielding calls teed has outstanding (eight per
/// secure thread of the default two).
pub const ARG_SLOTS: usize = 16;
/// The smallest journal window.
pub const JOURNAL_BYTES: u64 = ARGS_OFFSET + ARG_SLOT_BYTES * ARG_SLOTS as u64;

/// The state word of an entry; 0 is a free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum EntryState {
    Free = 0,
    /// The SMC that creates it may or may not have happened.
    Creating = 1,
    /// It exists in the secure world.
    Live = 2,
    /// The SMC that removes it may or may not have happened.
    Removing = 3,
}

impl EntryState {
    fn from_word(word: u32) -> EntryState {
        match word {
            1 => EntryState::Creating,
            2 => EntryState::Live,
            3 => EntryState::Removing,
            _ => EntryState::Free,
        }
    }
}

/// Something an earlier boot or incarnation left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// A registration, by its cookie.
    Registration {
        slot: usize,
        cookie: u64,
        size: u64,
        owner: u32,
    },
    /// A session known by id.
    Session {
        slot: usize,
        session: u32,
        owner: u32,
    },
    /// A session whose open may have happened; its id is in the argument slot.
    OpeningSession {
        slot: usize,
        arg_slot: u32,
        owner: u32,
    },
}

/// A numeric owner tag for an entry.
pub fn owner_tag(kind: ServerKind) -> u32 {
    match kind {
        ServerKind::Teed => 0,
        ServerKind::Tpmd => 1,
        ServerKind::Bnxtd => 2,
    }
}

/// The journal in its memory window.
#[derive(Debug, Clone)]
pub struct Journal {
    base: u64,
    reg_used: Vec<bool>,
    session_used: Vec<bool>,
}

impl Journal {
    /// Opens the journal at `base`, formatting it when it holds no journal yet, and returns
    /// it with the new epoch (one more than the last incarnation's).
    pub fn open(mem: &mut (impl PhysMem + ?Sized), base: u64) -> Result<(Journal, u32), MemError> {
        if !mem.contains(base, JOURNAL_BYTES) {
            return Err(MemError {
                pa: base,
                len: JOURNAL_BYTES,
            });
        }
        let magic = mem.read_u64(base)?;
        let epoch = if magic == MAGIC {
            (mem.read_u64(base + 8)? as u32).wrapping_add(1).max(1)
        } else {
            mem.zero(base, JOURNAL_BYTES)?;
            mem.write_u64(base, MAGIC)?;
            1
        };
        mem.write_u64(base + 8, u64::from(epoch))?;
        let mut journal = Journal {
            base,
            reg_used: alloc::vec![false; REG_SLOTS],
            session_used: alloc::vec![false; SESSION_SLOTS],
        };
        for slot in 0..REG_SLOTS {
            journal.reg_used[slot] = journal.reg_state(mem, slot)? != EntryState::Free;
        }
        for slot in 0..SESSION_SLOTS {
            journal.session_used[slot] = journal.session_state(mem, slot)? != EntryState::Free;
        }
        Ok((journal, epoch))
    }

    /// Physical address of message-argument slot `slot`.
    pub fn arg_slot_pa(&self, slot: usize) -> u64 {
        self.base + ARGS_OFFSET + slot as u64 * ARG_SLOT_BYTES
    }

    fn reg_pa(&self, slot: usize) -> u64 {
        self.base + REGS_OFFSET + slot as u64 * REG_ENTRY
    }

    fn session_pa(&self, slot: usize) -> u64 {
        self.base + SESSIONS_OFFSET + slot as u64 * SESSION_ENTRY
    }

    fn reg_state(
        &self,
        mem: &(impl PhysMem + ?Sized),
        slot: usize,
    ) -> Result<EntryState, MemError> {
        Ok(EntryState::from_word(
            mem.read_u64(self.reg_pa(slot))? as u32
        ))
    }

    fn session_state(
        &self,
        mem: &(impl PhysMem + ?Sized),
        slot: usize,
    ) -> Result<EntryState, MemError> {
        Ok(EntryState::from_word(
            mem.read_u64(self.session_pa(slot))? as u32
        ))
    }

    /// Everything still recorded.
    pub fn leftovers(&self, mem: &(impl PhysMem + ?Sized)) -> Result<Vec<Leftover>, MemError> {
        let mut out = Vec::new();
        for slot in 0..REG_SLOTS {
            if self.reg_state(mem, slot)? == EntryState::Free {
                continue;
            }
            let pa = self.reg_pa(slot);
            let owner = (mem.read_u64(pa)? >> 32) as u32;
            out.push(Leftover::Registration {
                slot,
                cookie: mem.read_u64(pa + 8)?,
                size: mem.read_u64(pa + 24)?,
                owner,
            });
        }
        for slot in 0..SESSION_SLOTS {
            let state = self.session_state(mem, slot)?;
            if state == EntryState::Free {
                continue;
            }
            let pa = self.session_pa(slot);
            let owner = (mem.read_u64(pa)? >> 32) as u32;
            let ids = mem.read_u64(pa + 8)?;
            let session = ids as u32;
            let arg_slot = (ids >> 32) as u32;
            out.push(if state == EntryState::Creating {
                Leftover::OpeningSession {
                    slot,
                    arg_slot,
                    owner,
                }
            } else {
                Leftover::Session {
                    slot,
                    session,
                    owner,
                }
            });
        }
        Ok(out)
    }

    /// Records a registration about to be made; `None` when the table is full.
    pub fn begin_registration(
        &mut self,
        mem: &mut (impl PhysMem + ?Sized),
        owner: u32,
        cookie: u64,
        pa: u64,
        size: u64,
    ) -> Result<Option<usize>, MemError> {
        let Some(slot) = self.reg_used.iter().position(|used| !used) else {
            return Ok(None);
        };
        let at = self.reg_pa(slot);
        mem.write_u64(at + 8, cookie)?;
        mem.write_u64(at + 16, pa)?;
        mem.write_u64(at + 24, size)?;
        // The state word goes last, so a torn record reads as free.
        mem.write_u64(at, (u64::from(owner) << 32) | EntryState::Creating as u64)?;
        self.reg_used[slot] = true;
        Ok(Some(slot))
    }

    /// Moves a registration entry to `state`.
    pub fn set_registration(
        &mut self,
        mem: &mut (impl PhysMem + ?Sized),
        slot: usize,
        state: EntryState,
    ) -> Result<(), MemError> {
        let at = self.reg_pa(slot);
        let owner = mem.read_u64(at)? >> 32;
        mem.write_u64(at, (owner << 32) | state as u64)?;
        if let Some(used) = self.reg_used.get_mut(slot) {
            *used = state != EntryState::Free;
        }
        Ok(())
    }

    /// Records a session about to be opened with its argument in `arg_slot`.
    pub fn begin_session(
        &mut self,
        mem: &mut (impl PhysMem + ?Sized),
        owner: u32,
        arg_slot: usize,
    ) -> Result<Option<usize>, MemError> {
        let Some(slot) = self.session_used.iter().position(|used| !used) else {
            return Ok(None);
        };
        let at = self.session_pa(slot);
        mem.write_u64(at + 8, (arg_slot as u64) << 32)?;
        mem.write_u64(at, (u64::from(owner) << 32) | EntryState::Creating as u64)?;
        self.session_used[slot] = true;
        Ok(Some(slot))
    }

    /// Records the session id of an opened session, or moves the entry to `state`.
    pub fn set_session(
        &mut self,
        mem: &mut (impl PhysMem + ?Sized),
        slot: usize,
        state: EntryState,
        session: Option<u32>,
    ) -> Result<(), MemError> {
        let at = self.session_pa(slot);
        if let Some(id) = session {
            mem.write_u64(at + 8, u64::from(id))?;
        }
        let owner = mem.read_u64(at)? >> 32;
        mem.write_u64(at, (owner << 32) | state as u64)?;
        if let Some(used) = self.session_used.get_mut(slot) {
            *used = state != EntryState::Free;
        }
        Ok(())
    }
}
