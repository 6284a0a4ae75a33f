//! Page lists: building, walking, and OP-TEE's pointer checks.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use optee_abi::mem::{MemError, PhysMem, PAGE_SIZE_U64};
use optee_abi::msg::{Direction, MsgArg, Param};
use optee_abi::pagelist::{
    data_pages_spanned, list_pages_needed, walk_page_list, write_page_list, ENTRIES_PER_LIST_PAGE,
};
use optee_abi::AbiError;

const BASE: u64 = 0x4000_0000;
const SIZE: u64 = 64 << 20;

/// A byte-granular sparse RAM for these tests.
#[derive(Default)]
struct Ram(BTreeMap<u64, u8>);

impl PhysMem for Ram {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        if !self.contains(pa, buf.len() as u64) {
            return Err(MemError {
                pa,
                len: buf.len() as u64,
            });
        }
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.0.get(&(pa + i as u64)).copied().unwrap_or(0);
        }
        Ok(())
    }
    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        if !self.contains(pa, data.len() as u64) {
            return Err(MemError {
                pa,
                len: data.len() as u64,
            });
        }
        for (i, b) in data.iter().enumerate() {
            self.0.insert(pa + i as u64, *b);
        }
        Ok(())
    }
    fn contains(&self, pa: u64, len: u64) -> bool {
        pa >= BASE && pa.checked_add(len).is_some_and(|end| end <= BASE + SIZE)
    }
}

fn pages(first: u64, n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| first + i * PAGE_SIZE_U64).collect()
}

#[test]
fn sizes_match_reference() {
    assert_eq!(ENTRIES_PER_LIST_PAGE, 511);
    assert_eq!(
        list_pages_needed(1024),
        3,
        "4 MiB = 1024 entries = 3 list pages"
    );
    assert_eq!(list_pages_needed(2), 1);
    assert_eq!(list_pages_needed(511), 1);
    assert_eq!(list_pages_needed(512), 2);
    assert_eq!(data_pages_spanned(0, 8192), Ok(2));
    assert_eq!(data_pages_spanned(1, 8192), Ok(3));
    assert_eq!(data_pages_spanned(0, 4 << 20), Ok(1024));
    assert_eq!(data_pages_spanned(0, 0), Ok(0));
}

/// A hostile TMEM param: `offset + size` used to overflow (found by the `page_list` fuzz
/// target; its input is in fuzz/regressions/page_list).
#[test]
fn hostile_spans_are_typed_errors() {
    assert_eq!(
        data_pages_spanned(0x800, u64::MAX),
        Err(AbiError::SpanOverflow {
            offset: 0x800,
            size: u64::MAX
        })
    );
    assert_eq!(data_pages_spanned(0, u64::MAX), Ok(u64::MAX / 4096 + 1));
    assert_eq!(data_pages_spanned(4096, 1), Err(AbiError::BadOffset(4096)));
}

#[test]
fn four_mib_list_round_trips() {
    let mut ram = Ram::default();
    let data = pages(BASE + 0x10_0000, 1024);
    let lists = pages(BASE, 3);
    write_page_list(&mut ram, &lists, &data).unwrap();
    // The first list page's last word links to the second.
    assert_eq!(ram.read_u64(BASE + 4088).unwrap(), BASE + 4096);
    assert_eq!(ram.read_u64(BASE + 2 * 4096 + 4088).unwrap(), 0);
    let mut seen = Vec::new();
    walk_page_list(&ram, BASE | 0x123, 1024, |pa| seen.push(pa)).unwrap();
    assert_eq!(seen, data);
}

#[test]
fn walk_rejects_what_optee_rejects() {
    let mut ram = Ram::default();
    let data = pages(BASE + 0x10_0000, 2);
    write_page_list(&mut ram, &[BASE], &data).unwrap();
    assert_eq!(
        walk_page_list(&ram, BASE, 0, |_| {}),
        Err(AbiError::EmptyPageList)
    );
    // A misaligned entry.
    ram.write_u64(BASE + 8, BASE + 0x10_0000 + 12).unwrap();
    assert_eq!(
        walk_page_list(&ram, BASE, 2, |_| {}),
        Err(AbiError::Misaligned {
            pa: BASE + 0x10_0000 + 12
        })
    );
    // An entry outside RAM.
    ram.write_u64(BASE + 8, 0x1000).unwrap();
    assert_eq!(
        walk_page_list(&ram, BASE, 2, |_| {}),
        Err(AbiError::OutsideRam { pa: 0x1000 })
    );
    // A list page outside RAM.
    assert_eq!(
        walk_page_list(&ram, 0x2000, 1, |_| {}),
        Err(AbiError::OutsideRam { pa: 0x2000 })
    );
    // A misaligned next-list pointer.
    let big = pages(BASE + 0x10_0000, 600);
    write_page_list(&mut ram, &[BASE, BASE + 4096], &big).unwrap();
    ram.write_u64(BASE + 4088, BASE + 4096 + 8).unwrap();
    assert_eq!(
        walk_page_list(&ram, BASE, 600, |_| {}),
        Err(AbiError::Misaligned {
            pa: BASE + 4096 + 8
        })
    );
}

#[test]
fn write_checks_its_inputs() {
    let mut ram = Ram::default();
    assert_eq!(
        write_page_list(&mut ram, &[BASE], &[]),
        Err(AbiError::EmptyPageList)
    );
    assert_eq!(
        write_page_list(&mut ram, &[BASE], &pages(BASE, 512)),
        Err(AbiError::ListPageCount { needed: 2, have: 1 })
    );
    assert_eq!(
        write_page_list(&mut ram, &[BASE + 1], &pages(BASE, 1)),
        Err(AbiError::Misaligned { pa: BASE + 1 })
    );
}

#[test]
fn msg_arg_through_memory() {
    let mut ram = Ram::default();
    let mut arg = MsgArg::new(optee_abi::msg::cmd::REGISTER_SHM);
    arg.push(Param::Tmem {
        dir: Direction::Out,
        buf_ptr: BASE,
        size: 4096,
        shm_ref: 42,
        noncontig: true,
        meta: false,
    })
    .unwrap();
    arg.write_to(&mut ram, BASE + 0x8000).unwrap();
    assert_eq!(MsgArg::read_from(&ram, BASE + 0x8000).unwrap(), arg);
    assert!(matches!(
        MsgArg::read_from(&ram, 0x10),
        Err(AbiError::Mem(_))
    ));
}
