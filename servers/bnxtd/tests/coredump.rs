//! The crash dump: its length, chunk checks, and the 4 MiB window in the shared buffer.
#![allow(clippy::unwrap_used)]

mod common;

use bnxtd::COREDUMP_LEN;
use common::{dump_slice, Harness, TEED_GENERATION};
use optee_abi::teec;
use tee_proto::bnxt::{BnxtError, BnxtRequest, BnxtResponse};
use tee_proto::teed::{Param, TeedRequest, TeedResponse};
use tee_proto::WireError;

const MIB: u32 = 1 << 20;

fn copy(h: &mut Harness, offset: u32, size: u32) -> BnxtResponse {
    h.call(BnxtRequest::CopyCoredump { offset, size })
}

fn chunk(h: &mut Harness, offset: u32, size: u32) -> Vec<u8> {
    match copy(h, offset, size) {
        BnxtResponse::Coredump { offset: at, data } => {
            assert_eq!(at, offset);
            data.to_vec()
        }
        other => panic!("no coredump chunk at {offset}: {other:?}"),
    }
}

#[test]
fn the_dump_is_8_mib_and_its_length_needs_no_tee_call() {
    let mut h = Harness::serving();
    let sent = h.teed.log.len();
    assert_eq!(
        h.call(BnxtRequest::CoredumpLen),
        BnxtResponse::CoredumpLen { len: 8 * MIB }
    );
    assert_eq!(COREDUMP_LEN, 8 * MIB);
    assert_eq!(h.teed.log.len(), sent);
}

#[test]
fn the_first_chunk_fetches_the_first_window_with_the_linux_params() {
    let mut h = Harness::serving();
    let sent = h.teed.log.len();
    assert_eq!(chunk(&mut h, 0, 4096), dump_slice(0, 4096));
    let shm = *h.teed.shms.keys().next().unwrap();
    let TeedRequest::Invoke { func, params, .. } = &h.teed.requests()[sent] else {
        panic!("not an invoke");
    };
    assert_eq!(*func, 3, "COPY_COREDUMP");
    assert_eq!(
        params.as_slice(),
        &[
            Param::MemrefInOut {
                shm,
                offset: 0,
                size: 4 * MIB
            },
            Param::ValueIn {
                a: 0,
                b: u64::from(4 * MIB),
                c: 0
            },
            Param::None,
            Param::None,
        ]
    );
}

#[test]
fn reading_the_whole_dump_takes_two_window_fetches() {
    let mut h = Harness::serving();
    let mut offset = 0;
    while offset < COREDUMP_LEN {
        let data = chunk(&mut h, offset, 4096);
        assert_eq!(data, dump_slice(offset, 4096), "at {offset}");
        offset += 4096;
    }
    assert_eq!(
        h.teed.ta.copies,
        vec![
            (0, u64::from(4 * MIB)),
            (u64::from(4 * MIB), u64::from(4 * MIB))
        ]
    );
}

#[test]
fn a_chunk_outside_the_window_refills_it() {
    let mut h = Harness::serving();
    chunk(&mut h, 8192, 100);
    assert_eq!(chunk(&mut h, 5 * MIB, 300), dump_slice(5 * MIB, 300));
    // Back into the first half: the buffer now holds the second, so it is fetched again.
    assert_eq!(chunk(&mut h, 4096, 10), dump_slice(4096, 10));
    let starts: Vec<u64> = h.teed.ta.copies.iter().map(|c| c.0).collect();
    assert_eq!(starts, vec![0, u64::from(4 * MIB), 0]);
}

#[test]
fn a_chunk_across_the_halfway_mark_is_served_whole() {
    let mut h = Harness::serving();
    let offset = 4 * MIB - 100;
    assert_eq!(chunk(&mut h, offset, 4096), dump_slice(offset, 4096));
    assert_eq!(
        h.teed.ta.copies,
        vec![(u64::from(offset), u64::from(4 * MIB))]
    );
    // The next sequential chunk comes from the same window.
    assert_eq!(
        chunk(&mut h, offset + 4096, 4096),
        dump_slice(offset + 4096, 4096)
    );
    assert_eq!(h.teed.ta.copies.len(), 1);
}

#[test]
fn the_last_chunk_is_cut_at_the_end_of_the_dump() {
    let mut h = Harness::serving();
    let offset = COREDUMP_LEN - 100;
    assert_eq!(chunk(&mut h, offset, 4096), dump_slice(offset, 100));
}

#[test]
fn bad_sizes_and_offsets_are_refused_without_a_tee_call() {
    let mut h = Harness::serving();
    let sent = h.teed.log.len();
    for size in [0, 4097, u32::MAX] {
        assert_eq!(
            copy(&mut h, 0, size),
            BnxtResponse::Error(BnxtError::BadSize { size, max: 4096 })
        );
    }
    for offset in [COREDUMP_LEN, COREDUMP_LEN + 1, u32::MAX] {
        assert_eq!(
            copy(&mut h, offset, 16),
            BnxtResponse::Error(BnxtError::BadOffset {
                offset,
                len: COREDUMP_LEN
            })
        );
    }
    assert_eq!(h.teed.log.len(), sent);
}

#[test]
fn a_failed_copy_reports_the_tee_code_and_leaves_no_window_behind() {
    let mut h = Harness::serving();
    chunk(&mut h, 4096, 16);
    h.teed.ta.copy_ret = teec::ERROR_BAD_PARAMETERS;
    assert_eq!(
        copy(&mut h, 5 * MIB, 16),
        BnxtResponse::Error(BnxtError::Tee {
            code: teec::ERROR_BAD_PARAMETERS,
            origin: teec::origin::TRUSTED_APP
        })
    );
    h.teed.ta.copy_ret = teec::SUCCESS;
    // The failed copy may have overwritten the buffer: the first half is fetched again.
    assert_eq!(chunk(&mut h, 8192, 16), dump_slice(8192, 16));
    assert_eq!(h.teed.ta.copies.len(), 2);
}

#[test]
fn a_load_or_a_read_from_the_start_drops_the_cached_window() {
    let mut h = Harness::serving();
    chunk(&mut h, 4096, 16);
    chunk(&mut h, 8192, 16);
    assert_eq!(h.teed.ta.copies.len(), 1);
    assert_eq!(h.call(BnxtRequest::Load), BnxtResponse::Loaded);
    chunk(&mut h, 8192, 16);
    assert_eq!(
        h.teed.ta.copies.len(),
        2,
        "a reloaded NIC may have a new dump"
    );
    chunk(&mut h, 0, 16);
    assert_eq!(h.teed.ta.copies.len(), 3, "a new dump read starts fresh");
}

#[test]
fn after_a_teed_restart_cached_chunks_never_come_from_the_reclaimed_buffer() {
    let mut h = Harness::serving();
    chunk(&mut h, 4096, 16);
    let old_pa = h.teed.shms.values().next().unwrap().0;
    h.teed.restart();
    // The successor reclaimed the buffer and gave its pages to someone else, who wrote there.
    h.ram.write_bytes(old_pa, &[0xaa; 16 * 1024]);
    assert_eq!(chunk(&mut h, 8192, 16), dump_slice(8192, 16));

    // A chunk outside the window needs the TA: the frame to the old teed is lost.
    assert_eq!(
        copy(&mut h, 5 * MIB, 16),
        BnxtResponse::Error(BnxtError::Retryable)
    );
    assert_eq!(chunk(&mut h, 5 * MIB, 16), dump_slice(5 * MIB, 16));
    let new_pa = h.teed.shms.values().next().unwrap().0;
    assert_ne!(new_pa, old_pa);
    assert_eq!(h.core.teed_generation(), TEED_GENERATION + 1);
    assert_eq!(h.teed.ta.copies.len(), 2);
}

#[test]
fn a_restart_answer_to_a_copy_in_flight_is_retry_not_data() {
    let mut h = Harness::serving();
    h.teed.mode = common::TeedMode::Hold;
    let id = h.request(
        1,
        BnxtRequest::CopyCoredump {
            offset: 0,
            size: 64,
        },
    );
    h.teed.restart();
    let generation = h.teed.generation;
    let request = h.held.pop_front().unwrap();
    h.deliver(
        &request,
        TeedResponse::Error(WireError::ServerRestarted { generation }),
    );
    h.pump();
    assert_eq!(h.response(id), &BnxtResponse::Error(BnxtError::Retryable));
    assert!(matches!(
        h.held.front().unwrap().body,
        TeedRequest::OpenSession { .. }
    ));
}
