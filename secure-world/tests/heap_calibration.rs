//! The seed's failure, reproduced on the model alone: with nothing ever unregistered, the
//! 4 MiB bnxt registration fails on the 4th kexec of an 8 GiB machine, and only then.
#![allow(clippy::unwrap_used)]

mod common;

use optee_abi::teec;
use optee_abi::uuid::BNXT_TA;
use secure_world::heap::charge_for;
use secure_world::{Config, SecureWorld};
use tee_test_support::normal_world::NormalWorld;

use common::open_ok;

const TPM_BUFFER: u64 = 8 << 10;
const BNXT_BUFFER: u64 = 4 << 20;
/// A rebooted kernel allocates the same `struct tee_shm` addresses again, so the leaked and
/// the new registrations share cookies, which OP-TEE accepts.
const TPM_COOKIE: u64 = 0xffff_0000_1000_0000;
const BNXT_COOKIE: u64 = 0xffff_0000_2000_0000;

/// Peak heap the 4 MiB registration needs: message mapping, temporary page array and the
/// registration itself.
fn bnxt_peak() -> usize {
    let pages = (BNXT_BUFFER / 4096) as usize;
    charge_for(64).unwrap() + charge_for(8 * pages).unwrap() + charge_for(80 + 8 * pages).unwrap()
}

/// Boots 0..=4 (boot k comes after k kexecs): both clients register, nobody unregisters.
/// Returns the bnxt result of every boot and the heap headroom seen before each attempt.
fn leak_across_kexecs(
    sw: &mut SecureWorld,
    nw: &mut NormalWorld,
    open_bnxt_session: bool,
) -> Vec<(u32, i64)> {
    (0..=4)
        .map(|boot| {
            let (tpm, _) = nw.register(sw, TPM_COOKIE, 0, TPM_BUFFER).unwrap();
            assert_eq!(tpm, teec::SUCCESS, "tpmd's 8 KiB at boot {boot}");
            if open_bnxt_session {
                open_ok(sw, nw, BNXT_TA);
            }
            let headroom = sw.heap().available() as i64 - bnxt_peak() as i64;
            let (bnxt, _) = nw.register(sw, BNXT_COOKIE, 0, BNXT_BUFFER).unwrap();
            (bnxt, headroom)
        })
        .collect()
}

#[test]
fn seed_bnxt_registration_fails_on_the_fourth_kexec_and_recovers_after_unregister() {
    let config = Config::default();
    assert_eq!(
        (config.core_heap_bytes, config.ram_size),
        (64 << 10, 8 << 30)
    );
    let mut nw = NormalWorld::new(&config);
    let mut sw = SecureWorld::new(config, 1);

    let boots = leak_across_kexecs(&mut sw, &mut nw, false);
    let results: Vec<u32> = boots.iter().map(|b| b.0).collect();
    let ok = teec::SUCCESS;
    assert_eq!(results, [ok, ok, ok, ok, teec::ERROR_BAD_PARAMETERS]);
    // Margins on both sides: boot 3 has more than 4 KiB to spare, boot 4 misses by more.
    assert!(boots[3].1 > 4096, "boot 3 headroom {}", boots[3].1);
    assert!(boots[4].1 < -4096, "boot 4 headroom {}", boots[4].1);

    // teed's reclaim: unregister every leftover (same cookies: newest first each time).
    let stats = sw.stats();
    assert_eq!(stats.registrations, 5 + 4);
    for _ in 0..5 {
        assert_eq!(nw.unregister(&mut sw, TPM_COOKIE).unwrap(), ok);
    }
    for _ in 0..4 {
        assert_eq!(nw.unregister(&mut sw, BNXT_COOKIE).unwrap(), ok);
    }
    assert_eq!(
        nw.unregister(&mut sw, BNXT_COOKIE).unwrap(),
        teec::ERROR_BAD_PARAMETERS
    );
    assert_eq!(sw.heap().used, sw.heap().baseline);
    assert_eq!(
        nw.register(&mut sw, BNXT_COOKIE, 0, BNXT_BUFFER).unwrap().0,
        ok
    );
}

#[test]
fn leaked_sessions_do_not_move_the_failure() {
    let config = Config::default();
    let mut nw = NormalWorld::new(&config);
    let mut sw = SecureWorld::new(config, 2);
    let results: Vec<u32> = leak_across_kexecs(&mut sw, &mut nw, true)
        .iter()
        .map(|b| b.0)
        .collect();
    let ok = teec::SUCCESS;
    assert_eq!(results, [ok, ok, ok, ok, teec::ERROR_BAD_PARAMETERS]);
    assert_eq!(sw.stats().sessions, 5);
}

#[test]
fn a_machine_reset_clears_the_leak() {
    let config = Config::default();
    let mut nw = NormalWorld::new(&config);
    let mut sw = SecureWorld::new(config, 3);
    leak_across_kexecs(&mut sw, &mut nw, false);
    sw.reset();
    assert_eq!(sw.stats().registrations, 0);
    let results: Vec<u32> = leak_across_kexecs(&mut sw, &mut nw, false)
        .iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(results[..4], [teec::SUCCESS; 4]);
}
