//! Dynamic shm registrations (REGISTER_SHM / UNREGISTER_SHM), looked up by cookie.
//!
//! Follows core/mm/mobj_dyn_shm.c: no duplicate-cookie check (the newest registration is
//! found first), no overlap check, per-registration bookkeeping on the core heap, and an
//! unregister that must wait while an invocation still uses the buffer.

use std::collections::HashMap;
use std::sync::Arc;

use optee_abi::mem::{PhysMem, PAGE_SIZE_U64};
use optee_abi::pagelist::walk_page_list;
use optee_abi::AbiError;
use thiserror::Error;

use crate::buffer::{Backing, NwBuffer};
use crate::heap::{Heap, HeapBlock, HeapError};

/// Bytes of the registration header (`struct mobj_reg_shm` without its page array).
pub const REGISTRATION_HEADER_BYTES: usize = 80;

/// Identity of one registration; cookies may repeat, ids never do.
pub(crate) type RegId = u64;

/// Why a REGISTER_SHM failed. Every variant reaches the normal world as
/// `TEE_ERROR_BAD_PARAMETERS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RegisterError {
    /// not exactly one param
    #[error("{0} params, REGISTER_SHM takes exactly one")]
    ParamCount(usize),
    /// the param attr is not exactly TMEM_OUTPUT | NONCONTIG
    #[error("param attr {0:#x} is not TMEM_OUTPUT|NONCONTIG")]
    Attr(u64),
    /// size + offset or the page-array size overflows
    #[error("buffer size overflows")]
    SizeOverflow,
    /// the core heap cannot hold the page array or the registration
    #[error(transparent)]
    Heap(#[from] HeapError),
    /// the page list is malformed or points outside normal-world RAM
    #[error("page list: {0}")]
    PageList(#[from] AbiError),
}

/// Why an UNREGISTER_SHM failed (`TEE_ERROR_BAD_PARAMETERS` for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UnregisterError {
    /// no registration carries this cookie
    #[error("no registration with cookie {0:#x}")]
    UnknownCookie(u64),
    /// the newest registration with this cookie is already being released
    #[error("registration with cookie {0:#x} is already being released")]
    AlreadyReleasing(u64),
}

/// Outcome of starting an unregister.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// Nobody used it: freed at once.
    Freed,
    /// Still in use: the caller waits until the last user drops it.
    Wait(RegId),
}

/// One registration as introspection shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationInfo {
    pub cookie: u64,
    /// Data pages described by the page list.
    pub pages: usize,
    /// Registered size in bytes.
    pub size: u64,
    /// Offset of the buffer in its first page.
    pub page_offset: u64,
    /// Invocations currently using the buffer.
    pub users: u32,
    /// An unregister is waiting for the users to finish.
    pub releasing: bool,
}

struct Registration {
    id: RegId,
    cookie: u64,
    /// The size the normal world named.
    size: u64,
    /// The whole memory object: pages x 4096 - page offset (mobj_reg_shm_alloc), which is what
    /// an RMEM may address, whatever size was registered.
    buffer: NwBuffer,
    num_pages: usize,
    users: u32,
    releasing: bool,
    charge: HeapBlock,
}

/// Every live registration. Upstream keeps a list searched from the newest (mobj_dyn_shm.c
/// reg_shm_find_unlocked); the model answers the same lookups through hashed indexes, so that
/// its own cost stays flat at 100k registrations. Ids grow with every registration, so id
/// order is age order: `by_cookie` keeps the newest of a duplicate cookie last, and
/// introspection sorts by id.
#[derive(Default)]
pub(crate) struct ShmRegistry {
    entries: HashMap<RegId, Registration>,
    /// Ids carrying each cookie, oldest first (duplicates are allowed, as upstream).
    by_cookie: HashMap<u64, Vec<RegId>>,
    registered_bytes: u64,
    next_id: RegId,
}

impl ShmRegistry {
    /// Registers the page list at `buf_ptr` (list address | offset in the first data page).
    pub fn register(
        &mut self,
        heap: &mut Heap,
        mem: &dyn PhysMem,
        buf_ptr: u64,
        size: u64,
        cookie: u64,
    ) -> Result<(), RegisterError> {
        let page_offset = buf_ptr & (PAGE_SIZE_U64 - 1);
        let spanned = size
            .checked_add(page_offset)
            .ok_or(RegisterError::SizeOverflow)?;
        // As upstream: a zero span wraps to an absurd page count that no heap can hold.
        let num_pages = spanned.wrapping_sub(1) / PAGE_SIZE_U64 + 1;
        let array_bytes = num_pages
            .checked_mul(8)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or(RegisterError::SizeOverflow)?;
        // The temporary copy of the page list lives only during this call.
        let scratch = heap.alloc(array_bytes)?;
        let mut pages = Vec::new();
        let walked = walk_page_list(mem, buf_ptr, array_bytes / 8, |pa| pages.push(pa));
        let charge = walked
            .map_err(RegisterError::from)
            .and_then(|()| Ok(heap.alloc(REGISTRATION_HEADER_BYTES + array_bytes)?));
        heap.free(scratch);
        let charge = charge?;
        let num_pages = pages.len();
        // core/arch/arm/mm/mobj_dyn_shm.c mobj_reg_shm_alloc: the mobj spans every page from
        // the offset on; the registered size is not kept.
        let mobj_size = (num_pages as u64 * PAGE_SIZE_U64).saturating_sub(page_offset);
        let backing = Backing::Pages {
            pages: Arc::from(pages),
            start: page_offset,
        };
        self.next_id += 1;
        let id = self.next_id;
        self.by_cookie.entry(cookie).or_default().push(id);
        self.registered_bytes = self.registered_bytes.saturating_add(size);
        self.entries.insert(
            id,
            Registration {
                id,
                cookie,
                size,
                buffer: NwBuffer::new(backing, mobj_size),
                num_pages,
                users: 0,
                releasing: false,
                charge,
            },
        );
        Ok(())
    }

    fn newest(&self, cookie: u64) -> Option<&Registration> {
        let id = self.by_cookie.get(&cookie)?.last()?;
        self.entries.get(id)
    }

    fn by_id(&mut self, id: RegId) -> Option<&mut Registration> {
        self.entries.get_mut(&id)
    }

    /// Takes a user reference on the newest registration with `cookie` and returns its whole
    /// memory object (pages x 4096 - page offset). Like upstream, a registration being released is still found.
    pub fn acquire(&mut self, cookie: u64) -> Option<(RegId, NwBuffer)> {
        let id = self.newest(cookie)?.id;
        let reg = self.by_id(id)?;
        reg.users += 1;
        Some((id, reg.buffer.clone()))
    }

    /// Drops a user reference; true when a waiting unregister may now proceed.
    pub fn drop_user(&mut self, id: RegId) -> bool {
        match self.by_id(id) {
            Some(reg) => {
                reg.users = reg.users.saturating_sub(1);
                reg.releasing && reg.users == 0
            }
            None => false,
        }
    }

    /// True when the registration `id` waits for release and has no user left.
    pub fn ready_to_free(&self, id: RegId) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|r| r.releasing && r.users == 0)
    }

    /// Starts unregistering the newest registration with `cookie`.
    pub fn begin_release(
        &mut self,
        heap: &mut Heap,
        cookie: u64,
    ) -> Result<Release, UnregisterError> {
        let reg = self
            .newest(cookie)
            .ok_or(UnregisterError::UnknownCookie(cookie))?;
        if reg.releasing {
            return Err(UnregisterError::AlreadyReleasing(cookie));
        }
        let id = reg.id;
        if reg.users == 0 {
            self.free(heap, id);
            return Ok(Release::Freed);
        }
        if let Some(reg) = self.by_id(id) {
            reg.releasing = true;
        }
        Ok(Release::Wait(id))
    }

    /// Frees the registration `id` (its last user is gone).
    pub fn free(&mut self, heap: &mut Heap, id: RegId) {
        if let Some(reg) = self.entries.remove(&id) {
            if let Some(ids) = self.by_cookie.get_mut(&reg.cookie) {
                ids.retain(|&other| other != id);
                if ids.is_empty() {
                    self.by_cookie.remove(&reg.cookie);
                }
            }
            self.registered_bytes = self.registered_bytes.saturating_sub(reg.size);
            heap.free(reg.charge);
        }
    }

    /// Forgets everything (machine reset; the heap is reset by the caller).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_cookie.clear();
        self.registered_bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn registered_bytes(&self) -> u64 {
        self.registered_bytes
    }

    /// Registrations, newest first (the lookup order).
    pub fn infos(&self) -> impl Iterator<Item = RegistrationInfo> + '_ {
        let mut newest_first: Vec<&Registration> = self.entries.values().collect();
        newest_first.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
        newest_first.into_iter().map(|r| RegistrationInfo {
            cookie: r.cookie,
            pages: r.num_pages,
            size: r.size,
            page_offset: match &r.buffer.backing {
                Backing::Pages { start, .. } => *start,
                _ => 0,
            },
            users: r.users,
            releasing: r.releasing,
        })
    }
}
