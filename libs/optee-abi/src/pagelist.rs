//! Non-contiguous page lists (`OPTEE_MSG_ATTR_NONCONTIG`).
//!
//! A list is a chain of 4 KiB list pages, each holding 511 little-endian page addresses and, in
//! its last word, the address of the next list page. A TMEM param's `buf_ptr` is the address of
//! the first list page ORed with the buffer's offset inside its first data page.

use crate::mem::{PhysMem, PAGE_SIZE, PAGE_SIZE_U64};
use crate::AbiError;

/// Page addresses in one list page; the 512th word links to the next list page.
pub const ENTRIES_PER_LIST_PAGE: usize = PAGE_SIZE / 8 - 1;

/// List pages needed to describe `num_pages` data pages.
pub const fn list_pages_needed(num_pages: usize) -> usize {
    num_pages.div_ceil(ENTRIES_PER_LIST_PAGE)
}

/// Data pages spanned by a buffer of `size` bytes starting `offset` bytes into its first page.
/// Both come from a normal-world TMEM param, so either may be hostile: an offset that is not
/// inside the first page is [`AbiError::BadOffset`], and a span past the 64-bit address space
/// is [`AbiError::SpanOverflow`] (it used to overflow `offset + size`).
pub const fn data_pages_spanned(offset: u64, size: u64) -> Result<u64, AbiError> {
    if offset >= PAGE_SIZE_U64 {
        return Err(AbiError::BadOffset(offset));
    }
    match offset.checked_add(size) {
        Some(end) => Ok(end.div_ceil(PAGE_SIZE_U64)),
        None => Err(AbiError::SpanOverflow { offset, size }),
    }
}

fn check_page(mem: &(impl PhysMem + ?Sized), pa: u64) -> Result<(), AbiError> {
    if pa % PAGE_SIZE_U64 != 0 {
        return Err(AbiError::Misaligned { pa });
    }
    if !mem.contains(pa, PAGE_SIZE_U64) {
        return Err(AbiError::OutsideRam { pa });
    }
    Ok(())
}

/// Writes a page list describing `data_pages` into `list_pages` (exactly
/// [`list_pages_needed`] of them, each a page of normal-world RAM).
pub fn write_page_list(
    mem: &mut (impl PhysMem + ?Sized),
    list_pages: &[u64],
    data_pages: &[u64],
) -> Result<(), AbiError> {
    let needed = list_pages_needed(data_pages.len());
    if data_pages.is_empty() {
        return Err(AbiError::EmptyPageList);
    }
    if list_pages.len() != needed {
        return Err(AbiError::ListPageCount {
            needed,
            have: list_pages.len(),
        });
    }
    for (i, chunk) in data_pages.chunks(ENTRIES_PER_LIST_PAGE).enumerate() {
        let list_pa = list_pages[i];
        check_page(mem, list_pa)?;
        let mut page = [0u8; PAGE_SIZE];
        for (slot, &pa) in chunk.iter().enumerate() {
            check_page(mem, pa)?;
            page[slot * 8..slot * 8 + 8].copy_from_slice(&pa.to_le_bytes());
        }
        let next = list_pages.get(i + 1).copied().unwrap_or(0);
        page[PAGE_SIZE - 8..].copy_from_slice(&next.to_le_bytes());
        mem.write(list_pa, &page)?;
    }
    Ok(())
}

/// Walks the page list at `buf_ptr`, calling `visit` with each of `num_pages` data-page
/// addresses in order, and checking every pointer as OP-TEE does: page-aligned and inside
/// normal-world RAM.
pub fn walk_page_list(
    mem: &(impl PhysMem + ?Sized),
    buf_ptr: u64,
    num_pages: usize,
    mut visit: impl FnMut(u64),
) -> Result<(), AbiError> {
    if num_pages == 0 {
        return Err(AbiError::EmptyPageList);
    }
    let mut list_pa = buf_ptr & !(PAGE_SIZE_U64 - 1);
    let mut page = [0u8; PAGE_SIZE];
    let mut remaining = num_pages;
    loop {
        check_page(mem, list_pa)?;
        mem.read(list_pa, &mut page)?;
        let here = remaining.min(ENTRIES_PER_LIST_PAGE);
        for slot in 0..here {
            let mut word = [0u8; 8];
            word.copy_from_slice(&page[slot * 8..slot * 8 + 8]);
            let pa = u64::from_le_bytes(word);
            check_page(mem, pa)?;
            visit(pa);
        }
        remaining -= here;
        if remaining == 0 {
            return Ok(());
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&page[PAGE_SIZE - 8..]);
        list_pa = u64::from_le_bytes(word);
    }
}
