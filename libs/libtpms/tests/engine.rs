//! The TPM engine against real libtpms: commands, NV across power cycles and `from_nv`,
//! several logical TPMs sharing the library, and the dictionary-attack rule on unorderly
//! power cycles. Tests run on parallel threads, so every test also exercises swaps.
#![allow(clippy::unwrap_used)]

use libtpms::command::{
    get_capability, get_random, nv_attr, nv_define_space, nv_read, nv_write, pcr_extend_sha256,
    pcr_read_sha256, rc, response_code, shutdown, startup, Response, CAP_TPM_PROPERTIES,
    PT_LOCKOUT_COUNTER, RH_OWNER, SU_CLEAR,
};
use libtpms::{Tpm, TpmError, MAX_COMMAND_SIZE};

const INDEX: u32 = 0x0150_0001;

/// SHA-256(32 zero bytes || 32 bytes of 0x01): PCR 16 after one extend with [1; 32].
const PCR_AFTER_ONE: &str = "5c85955f709283ecce2b74f1b1552918819f390911816e7bb466805a38ab87f3";
/// The same chain extended once more with [2; 32].
const PCR_AFTER_TWO: &str = "a7f2fad943905535b10ccf63c832802ed84eaffb15e4fb6bee86a817c35eb833";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn code(tpm: &mut Tpm, command: &[u8]) -> u32 {
    response_code(&tpm.process(command).unwrap()).unwrap()
}

/// Runs a command that may answer TPM_RC_RETRY once (first DA-protected use after Startup).
fn code_retrying(tpm: &mut Tpm, command: &[u8]) -> u32 {
    let first = code(tpm, command);
    if first == rc::RETRY {
        code(tpm, command)
    } else {
        first
    }
}

fn started() -> Tpm {
    let mut tpm = Tpm::manufacture().unwrap();
    assert_eq!(code(&mut tpm, &startup(SU_CLEAR)), rc::SUCCESS);
    tpm
}

fn random(tpm: &mut Tpm) -> Vec<u8> {
    let response = tpm.process(&get_random(16)).unwrap();
    let parsed = Response::parse(&response).unwrap();
    assert_eq!(parsed.code, rc::SUCCESS);
    parsed.first_sized().unwrap().to_vec()
}

fn pcr16(tpm: &mut Tpm) -> String {
    let response = tpm.process(&pcr_read_sha256(16)).unwrap();
    let parsed = Response::parse(&response).unwrap();
    assert_eq!(parsed.code, rc::SUCCESS);
    hex(parsed.pcr_digest().unwrap())
}

fn define_and_write(tpm: &mut Tpm, data: &[u8], attributes: u32) {
    let define = nv_define_space(INDEX, data.len() as u16, attributes);
    assert_eq!(code(tpm, &define), rc::SUCCESS);
    assert_eq!(code(tpm, &nv_write(RH_OWNER, INDEX, 0, data)), rc::SUCCESS);
}

fn read_index(tpm: &mut Tpm, auth: u32, len: u16) -> Result<Vec<u8>, u32> {
    let mut response = tpm.process(&nv_read(auth, INDEX, len, 0)).unwrap();
    if response_code(&response) == Some(rc::RETRY) {
        response = tpm.process(&nv_read(auth, INDEX, len, 0)).unwrap();
    }
    let parsed = Response::parse(&response).unwrap();
    if parsed.code != rc::SUCCESS {
        return Err(parsed.code);
    }
    Ok(parsed.first_sized().unwrap().to_vec())
}

fn lockout_counter(tpm: &mut Tpm) -> u32 {
    let command = get_capability(CAP_TPM_PROPERTIES, PT_LOCKOUT_COUNTER, 1);
    let response = tpm.process(&command).unwrap();
    let (property, value) = Response::parse(&response)
        .unwrap()
        .first_property()
        .unwrap();
    assert_eq!(property, PT_LOCKOUT_COUNTER);
    value
}

#[test]
fn startup_is_required_then_get_random_returns_fresh_bytes() {
    let mut tpm = Tpm::manufacture().unwrap();
    assert_eq!(code(&mut tpm, &get_random(16)), rc::INITIALIZE);
    assert_eq!(code(&mut tpm, &startup(SU_CLEAR)), rc::SUCCESS);
    // A second Startup is refused.
    assert_eq!(code(&mut tpm, &startup(SU_CLEAR)), rc::INITIALIZE);
    let a = random(&mut tpm);
    let b = random(&mut tpm);
    assert_eq!(a.len(), 16);
    assert_ne!(a, b);
    assert_eq!(libtpms::library_version(), 0x000902);
}

#[test]
fn pcr_extend_then_read_follows_the_sha256_chain() {
    let mut tpm = started();
    assert_eq!(pcr16(&mut tpm), "0".repeat(64));
    assert_eq!(
        code(&mut tpm, &pcr_extend_sha256(16, &[1; 32])),
        rc::SUCCESS
    );
    assert_eq!(pcr16(&mut tpm), PCR_AFTER_ONE);
    assert_eq!(
        code(&mut tpm, &pcr_extend_sha256(16, &[2; 32])),
        rc::SUCCESS
    );
    assert_eq!(pcr16(&mut tpm), PCR_AFTER_TWO);
}

#[test]
fn nv_survives_power_cycle_while_pcrs_reset_and_startup_is_required() {
    let mut tpm = started();
    define_and_write(
        &mut tpm,
        b"hello123",
        nv_attr::OWNERWRITE | nv_attr::OWNERREAD,
    );
    assert_eq!(
        code(&mut tpm, &pcr_extend_sha256(16, &[1; 32])),
        rc::SUCCESS
    );
    assert_eq!(code(&mut tpm, &shutdown(SU_CLEAR)), rc::SUCCESS);

    tpm.power_cycle().unwrap();
    assert_eq!(code(&mut tpm, &get_random(16)), rc::INITIALIZE);
    assert_eq!(code(&mut tpm, &startup(SU_CLEAR)), rc::SUCCESS);
    assert_eq!(read_index(&mut tpm, RH_OWNER, 8).unwrap(), b"hello123");
    assert_eq!(pcr16(&mut tpm), "0".repeat(64));
}

#[test]
fn nv_survives_drop_and_from_nv_and_commits_count_nv_writes_only() {
    let mut tpm = started();
    let before = tpm.nv_commits();
    random(&mut tpm);
    assert_eq!(
        code(&mut tpm, &pcr_extend_sha256(16, &[1; 32])),
        rc::SUCCESS
    );
    assert_eq!(tpm.nv_commits(), before, "GetRandom/PCR_Extend commit NV");
    define_and_write(
        &mut tpm,
        b"persist!",
        nv_attr::OWNERWRITE | nv_attr::OWNERREAD,
    );
    assert!(tpm.nv_commits() > before);
    let blob = tpm.nv_state();
    assert!(blob.len() > 1000, "permall of {} bytes", blob.len());
    drop(tpm);

    let mut back = Tpm::from_nv(&blob).unwrap();
    assert_eq!(code(&mut back, &startup(SU_CLEAR)), rc::SUCCESS);
    assert_eq!(read_index(&mut back, RH_OWNER, 8).unwrap(), b"persist!");
    assert_eq!(pcr16(&mut back), "0".repeat(64));
}

#[test]
fn nv_state_of_a_swapped_out_tpm_is_its_own() {
    let mut a = started();
    define_and_write(
        &mut a,
        b"tpm-a-nv",
        nv_attr::OWNERWRITE | nv_attr::OWNERREAD,
    );
    // Loading b swaps a out; a's blob must now come from its saved copy.
    let mut b = started();
    random(&mut b);
    let blob = a.nv_state();
    drop(a);
    let mut restored = Tpm::from_nv(&blob).unwrap();
    assert_eq!(code(&mut restored, &startup(SU_CLEAR)), rc::SUCCESS);
    assert_eq!(read_index(&mut restored, RH_OWNER, 8).unwrap(), b"tpm-a-nv");
    assert!(read_index(&mut b, RH_OWNER, 8).is_err());
}

#[test]
fn two_tpms_used_alternately_keep_independent_pcrs_nv_and_started_state() {
    let mut a = started();
    let mut b = started();
    let swaps = libtpms::swap_count();
    define_and_write(
        &mut a,
        b"only-a!!",
        nv_attr::OWNERWRITE | nv_attr::OWNERREAD,
    );
    assert_eq!(code(&mut a, &pcr_extend_sha256(16, &[1; 32])), rc::SUCCESS);
    for round in 0..5 {
        // Neither needs Startup again: the swap restores its RAM state.
        random(&mut b);
        assert_eq!(pcr16(&mut b), "0".repeat(64), "round {round}");
        assert_eq!(pcr16(&mut a), PCR_AFTER_ONE, "round {round}");
        assert_eq!(read_index(&mut a, RH_OWNER, 8).unwrap(), b"only-a!!");
        assert!(read_index(&mut b, RH_OWNER, 8).is_err());
    }
    assert!(libtpms::swap_count() >= swaps + 10);
}

#[test]
fn power_cycle_of_a_swapped_out_tpm_drops_its_volatile_state() {
    let mut a = started();
    assert_eq!(code(&mut a, &pcr_extend_sha256(16, &[1; 32])), rc::SUCCESS);
    let mut b = started();
    random(&mut b);
    a.power_cycle().unwrap();
    random(&mut b);
    assert_eq!(code(&mut a, &get_random(16)), rc::INITIALIZE);
    assert_eq!(code(&mut a, &startup(SU_CLEAR)), rc::SUCCESS);
    assert_eq!(pcr16(&mut a), "0".repeat(64));
}

/// libtpms 0.9.2, measured here: an unorderly power cycle raises the lockout counter only
/// when a DA-protected authorisation was used since Startup; Shutdown(CLEAR) first avoids it.
#[test]
fn unorderly_power_cycle_after_da_use_raises_the_lockout_counter() {
    let mut tpm = started();
    // An index authorised by its own (empty) auth value: DA-protected (no NO_DA).
    define_and_write(
        &mut tpm,
        b"da-index",
        nv_attr::OWNERWRITE | nv_attr::OWNERREAD | nv_attr::AUTHWRITE | nv_attr::AUTHREAD,
    );

    // No DA use yet: even an unorderly cycle leaves the counter alone.
    tpm.power_cycle().unwrap();
    assert_eq!(code(&mut tpm, &startup(SU_CLEAR)), rc::SUCCESS);
    assert_eq!(lockout_counter(&mut tpm), 0);

    // DA use, then an orderly cycle: still 0.
    assert_eq!(read_index(&mut tpm, INDEX, 8).unwrap(), b"da-index");
    assert_eq!(code(&mut tpm, &shutdown(SU_CLEAR)), rc::SUCCESS);
    tpm.power_cycle().unwrap();
    assert_eq!(code(&mut tpm, &startup(SU_CLEAR)), rc::SUCCESS);
    assert_eq!(lockout_counter(&mut tpm), 0);

    // DA use, then an unorderly cycle: 1.
    let write = nv_write(INDEX, INDEX, 0, b"DA-INDEX");
    assert_eq!(code_retrying(&mut tpm, &write), rc::SUCCESS);
    tpm.power_cycle().unwrap();
    assert_eq!(code(&mut tpm, &startup(SU_CLEAR)), rc::SUCCESS);
    assert_eq!(lockout_counter(&mut tpm), 1);
    assert_eq!(read_index(&mut tpm, INDEX, 8).unwrap(), b"DA-INDEX");
}

#[test]
fn malformed_commands_and_state_are_refused() {
    let mut tpm = started();
    assert_eq!(
        tpm.process(&[0x80, 0x01, 0, 0]),
        Err(TpmError::CommandTooShort(4))
    );
    let huge = vec![0u8; MAX_COMMAND_SIZE + 1];
    assert_eq!(
        tpm.process(&huge),
        Err(TpmError::CommandTooLarge {
            len: MAX_COMMAND_SIZE + 1,
            max: MAX_COMMAND_SIZE
        })
    );
    // A header whose size field disagrees gets a TPM error response, not a crash.
    let mut lying = get_random(16);
    lying[5] = 0x40;
    assert_ne!(code(&mut tpm, &lying), rc::SUCCESS);
    assert!(matches!(
        Tpm::from_nv(b"not a permall blob"),
        Err(TpmError::Library {
            call: "MainInit",
            ..
        })
    ));
    // The failed load left the library usable.
    random(&mut tpm);
}
