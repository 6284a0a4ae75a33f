//! bnxtd end to end: the NIC driver's whole 8 MiB crash dump, read in chunks through bnxtd's
//! 4 MiB registered window, equals the secure world's image; bad requests get typed errors; after
//! shutdown the API answers "no device".
#![allow(clippy::unwrap_used)]

use bnxt_image::{checksum, coredump_checksum, COREDUMP_LEN};
use tee_proto::bnxt::{BnxtError, BnxtRequest, BnxtResponse, COREDUMP_CHUNK_MAX};
use tee_sim::{Sim, SimConfig};

fn chunk(sim: &mut Sim, offset: u32, size: u32) -> BnxtResponse {
    sim.bnxt(BnxtRequest::CopyCoredump { offset, size })
        .unwrap()
        .unwrap()
}

#[test]
fn the_whole_coredump_equals_the_image() {
    let mut sim = Sim::scripted(SimConfig::new(8));
    sim.power_on().unwrap();
    assert_eq!(
        sim.bnxt(BnxtRequest::Load).unwrap(),
        Some(BnxtResponse::Loaded)
    );
    assert_eq!(
        sim.bnxt(BnxtRequest::CoredumpLen).unwrap(),
        Some(BnxtResponse::CoredumpLen {
            len: COREDUMP_LEN as u32
        })
    );
    let mut dump = Vec::with_capacity(COREDUMP_LEN as usize);
    while dump.len() < COREDUMP_LEN as usize {
        match chunk(&mut sim, dump.len() as u32, COREDUMP_CHUNK_MAX as u32) {
            BnxtResponse::Coredump { offset, data } => {
                assert_eq!(offset as usize, dump.len());
                dump.extend_from_slice(&data);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(dump.len() as u64, COREDUMP_LEN);
    assert_eq!(Some(checksum(&dump)), coredump_checksum(0, COREDUMP_LEN));
}

#[test]
fn bad_requests_get_typed_errors_and_shutdown_means_no_device() {
    let mut sim = Sim::scripted(SimConfig::new(9));
    sim.power_on().unwrap();
    assert!(matches!(
        chunk(&mut sim, COREDUMP_LEN as u32, 16),
        BnxtResponse::Error(BnxtError::BadOffset { .. })
    ));
    assert!(matches!(
        chunk(&mut sim, 0, 0),
        BnxtResponse::Error(BnxtError::BadSize { .. })
    ));
    assert!(matches!(
        chunk(&mut sim, 0, COREDUMP_CHUNK_MAX as u32 + 1),
        BnxtResponse::Error(BnxtError::BadSize { .. })
    ));
    // Crash boot: teed declined, so bnxtd has no device behind it.
    sim.crash(true).unwrap();
    assert_eq!(
        sim.bnxt(BnxtRequest::Load).unwrap(),
        Some(BnxtResponse::Error(BnxtError::TeeUnavailable))
    );
}
