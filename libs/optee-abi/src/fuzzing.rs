//! The checks behind the `msg_arg` and `page_list` fuzz targets (`fuzz/`), kept here so that
//! the default test run replays every committed corpus and regression input through the same
//! code (`tests/fuzz_corpus.rs`). Each check panics only when a property fails.

use crate::mem::{MemError, PhysMem, PAGE_SIZE, PAGE_SIZE_U64};
use crate::msg::{arg_size, MsgArg, LINUX_MAX_PARAMS};
use crate::pagelist::{
    data_pages_spanned, list_pages_needed, walk_page_list, write_page_list, ENTRIES_PER_LIST_PAGE,
};
use crate::AbiError;

/// `optee_msg_arg` decoders on hostile bytes: never a panic, every param decodes to a value or
/// a typed error, and a decoded message encodes back to a message that decodes equal.
pub fn check_msg_arg(data: &[u8]) {
    let _ = MsgArg::peek_num_params(data);
    let Ok(arg) = MsgArg::decode(data) else {
        return;
    };
    for param in &arg.params {
        let _ = param.decode_typed();
        let _ = param.decode_masked();
    }
    let mut out = [0u8; arg_size(LINUX_MAX_PARAMS)];
    let n = arg.encode(&mut out);
    assert_eq!(n, Ok(arg.encoded_len()), "a decoded message always encodes");
    let again = MsgArg::decode(out.get(..arg.encoded_len()).unwrap_or_default());
    assert_eq!(again.as_ref(), Ok(&arg), "decode -> encode -> decode");
}

/// Pages of the fuzzing RAM.
const RAM_PAGES: usize = 8;
/// Where the fuzzing RAM starts.
const RAM_BASE: u64 = 0x4000_0000;
/// Most data pages a list may describe here: enough for three list pages.
const MAX_DATA_PAGES: usize = 2 * ENTRIES_PER_LIST_PAGE + 8;

/// A small flat normal-world RAM: `RAM_PAGES` pages at `RAM_BASE`.
struct Ram {
    bytes: [u8; RAM_PAGES * PAGE_SIZE],
}

impl Ram {
    fn range(&self, pa: u64, len: usize) -> Result<core::ops::Range<usize>, MemError> {
        let err = MemError {
            pa,
            len: len as u64,
        };
        if !self.contains(pa, len as u64) {
            return Err(err);
        }
        let start = usize::try_from(pa - RAM_BASE).map_err(|_| err)?;
        Ok(start..start + len)
    }
}

impl PhysMem for Ram {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let range = self.range(pa, buf.len())?;
        buf.copy_from_slice(&self.bytes[range]);
        Ok(())
    }
    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        let range = self.range(pa, data.len())?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }
    fn contains(&self, pa: u64, len: u64) -> bool {
        let end = RAM_BASE + (RAM_PAGES * PAGE_SIZE) as u64;
        pa >= RAM_BASE && pa.checked_add(len).is_some_and(|last| last <= end)
    }
}

/// Reads fixed-size fields off the front of a fuzz input, zeros once it runs out: every
/// target that decodes a program from its bytes (here, the secure world's, tee-sim's hostile
/// secure world) reads through this one.
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input(data)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = self.0.len().min(N);
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    /// Up to `n` bytes, fewer when the input runs out.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    pub fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
}

impl Input<'_> {
    /// A page address: mostly one of the RAM's pages, sometimes a raw hostile word.
    fn page(&mut self) -> u64 {
        match self.u8() {
            0xff => self.u64(),
            n => RAM_BASE + u64::from(n) % RAM_PAGES as u64 * PAGE_SIZE_U64,
        }
    }
}

/// `data_pages_spanned` against 128-bit arithmetic: a count that covers the span exactly, or a
/// typed error when the span does not fit the ABI's 64 bits or the offset is not in the page.
fn check_span(offset: u64, size: u64) {
    let end = u128::from(offset) + u128::from(size);
    match data_pages_spanned(offset, size) {
        Ok(pages) => {
            assert!(
                offset < PAGE_SIZE_U64,
                "an offset past the first page is refused"
            );
            let pages = u128::from(pages);
            let page = u128::from(PAGE_SIZE_U64);
            assert!(pages * page >= end, "the pages cover the span");
            assert!(pages == 0 || (pages - 1) * page < end, "no page too many");
        }
        Err(AbiError::BadOffset(bad)) => {
            assert_eq!(bad, offset);
            assert!(offset >= PAGE_SIZE_U64);
        }
        Err(AbiError::SpanOverflow { .. }) => assert!(end > u128::from(u64::MAX)),
        Err(other) => panic!("untyped span error {other:?}"),
    }
}

/// The page-list encoders and walkers on hostile inputs:
/// * `data_pages_spanned` on any offset and size (the overflow a hostile TMEM param caused);
/// * a list written by `write_page_list` walks back to the same pages;
/// * `walk_page_list` over RAM filled with hostile bytes never panics, and every page it hands
///   out is page-aligned and inside RAM.
pub fn check_page_list(data: &[u8]) {
    let mut input = Input::new(data);
    let offset = input.u64();
    let size = input.u64();
    check_span(offset, size);
    check_span(offset % PAGE_SIZE_U64, size);

    let mut ram = Ram {
        bytes: [0; RAM_PAGES * PAGE_SIZE],
    };
    // Write then walk a list of hostile length and addresses.
    let num_data = usize::from(input.u16()) % (MAX_DATA_PAGES + 1);
    let num_lists = match input.u8() {
        0xff => usize::from(input.u8() % 4),
        _ => list_pages_needed(num_data),
    };
    let mut lists = [0u64; 4];
    for list in lists.iter_mut().take(num_lists) {
        *list = input.page();
    }
    let lists = &lists[..num_lists];
    let mut pages = [0u64; MAX_DATA_PAGES];
    for page in pages.iter_mut().take(num_data) {
        *page = input.page();
    }
    let pages = &pages[..num_data];
    let written = write_page_list(&mut ram, lists, pages);
    let distinct = lists
        .iter()
        .enumerate()
        .all(|(i, a)| lists.iter().skip(i + 1).all(|b| a != b));
    if written.is_ok() && distinct {
        let mut seen = 0;
        let first = lists.first().copied().unwrap_or(0) | (offset % PAGE_SIZE_U64);
        let walked = walk_page_list(&ram, first, num_data, |pa| {
            assert_eq!(
                Some(&pa),
                pages.get(seen),
                "walk gives back the written page"
            );
            seen += 1;
        });
        assert_eq!(walked, Ok(()));
        assert_eq!(seen, num_data);
    } else if written.is_ok() {
        assert!(!pages.is_empty());
    }

    // Walk whatever the rest of the input leaves in RAM.
    let rest = input.0;
    for (i, chunk) in rest.chunks(PAGE_SIZE).take(RAM_PAGES).enumerate() {
        ram.bytes[i * PAGE_SIZE..i * PAGE_SIZE + chunk.len()].copy_from_slice(chunk);
    }
    let buf_ptr = match rest.first() {
        Some(&n) if n != 0xff => RAM_BASE + u64::from(n) % RAM_PAGES as u64 * PAGE_SIZE_U64,
        _ => offset,
    };
    let num_pages = usize::try_from(size % (MAX_DATA_PAGES as u64 + 1)).unwrap_or(0);
    let mut seen = 0;
    let walked = walk_page_list(&ram, buf_ptr, num_pages, |pa| {
        assert_eq!(pa % PAGE_SIZE_U64, 0, "an unaligned page was handed out");
        assert!(
            ram.contains(pa, PAGE_SIZE_U64),
            "a page outside RAM was handed out"
        );
        seen += 1;
    });
    match walked {
        Ok(()) => assert_eq!(seen, num_pages),
        Err(AbiError::EmptyPageList) => assert_eq!(num_pages, 0),
        Err(AbiError::Misaligned { .. } | AbiError::OutsideRam { .. } | AbiError::Mem(_)) => {}
        Err(other) => panic!("untyped walk error {other:?}"),
    }
}
