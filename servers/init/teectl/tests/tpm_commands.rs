//! teectl's hand-built TPM commands are byte for byte the libtpms crate's, and a real TPM
//! (libtpms in this process) runs them as the live chaos soak expects: a counter index that
//! counts every acknowledged increment, PCR extends that change the PCR, reads that parse.
#![allow(clippy::unwrap_used)]

use libtpms::command::{self as reference, nv_attr, RH_OWNER};
use libtpms::Tpm;
use teectl::tpm::{self, TpmAnswer};

const INDEX: u32 = 0x0150_0C4A;

fn run(tpm: &mut Tpm, command: &[u8]) -> TpmAnswer {
    tpm::parse_response(&tpm.process(command).unwrap()).unwrap()
}

#[test]
fn commands_match_the_reference_builders() {
    let attributes =
        nv_attr::NT_COUNTER | nv_attr::OWNERWRITE | nv_attr::OWNERREAD | nv_attr::NO_DA;
    assert_eq!(
        tpm::nv_define_counter(INDEX),
        reference::nv_define_space(INDEX, 8, attributes)
    );
    assert_eq!(
        tpm::nv_increment(INDEX),
        reference::nv_increment(RH_OWNER, INDEX)
    );
    assert_eq!(
        tpm::nv_read_counter(INDEX),
        reference::nv_read(RH_OWNER, INDEX, 8, 0)
    );
    assert_eq!(
        tpm::pcr_extend_sha256(16, &[9; 32]),
        reference::pcr_extend_sha256(16, &[9; 32])
    );
    assert_eq!(tpm::pcr_read_sha256(16), reference::pcr_read_sha256(16));
    assert_eq!(
        tpm::startup_clear(),
        reference::startup(reference::SU_CLEAR)
    );
    assert_eq!(tpm::get_random(32), reference::get_random(32));
}

#[test]
fn a_real_tpm_counts_pcrs_and_answers_as_the_soak_expects() {
    let mut tpm = Tpm::manufacture().unwrap();
    assert_eq!(
        run(&mut tpm, &tpm::get_random(8)).rc,
        tpm::TPM_RC_INITIALIZE
    );
    assert_eq!(run(&mut tpm, &tpm::startup_clear()).rc, 0);
    // Started already: the soak's consumers treat this as "started".
    assert_eq!(
        run(&mut tpm, &tpm::startup_clear()).rc,
        tpm::TPM_RC_INITIALIZE
    );
    assert_eq!(run(&mut tpm, &tpm::nv_define_counter(INDEX)).rc, 0);
    assert_eq!(
        run(&mut tpm, &tpm::nv_define_counter(INDEX)).rc,
        tpm::TPM_RC_NV_DEFINED
    );
    assert_eq!(
        run(&mut tpm, &tpm::nv_read_counter(INDEX)).rc,
        tpm::TPM_RC_NV_UNINITIALIZED
    );
    assert_eq!(run(&mut tpm, &tpm::nv_increment(INDEX)).rc, 0);
    let base = tpm::counter_value(&run(&mut tpm, &tpm::nv_read_counter(INDEX))).unwrap();
    for _ in 0..5 {
        assert_eq!(run(&mut tpm, &tpm::nv_increment(INDEX)).rc, 0);
    }
    let read = run(&mut tpm, &tpm::nv_read_counter(INDEX));
    assert_eq!(tpm::counter_value(&read), Some(base + 5));

    let before = tpm::first_digest(&run(&mut tpm, &tpm::pcr_read_sha256(16))).unwrap();
    assert_eq!(before, vec![0; 32]);
    assert_eq!(run(&mut tpm, &tpm::pcr_extend_sha256(16, &[1; 32])).rc, 0);
    let after = tpm::first_digest(&run(&mut tpm, &tpm::pcr_read_sha256(16))).unwrap();
    assert_eq!(after.len(), 32);
    assert_ne!(after, before);

    // A reset (what a new boot does to the fTPM): NV kept, PCRs cleared, Startup needed.
    tpm.power_cycle().unwrap();
    assert_eq!(
        run(&mut tpm, &tpm::nv_read_counter(INDEX)).rc,
        tpm::TPM_RC_INITIALIZE
    );
    assert_eq!(run(&mut tpm, &tpm::startup_clear()).rc, 0);
    let read = run(&mut tpm, &tpm::nv_read_counter(INDEX));
    assert_eq!(tpm::counter_value(&read), Some(base + 5));
    let cleared = tpm::first_digest(&run(&mut tpm, &tpm::pcr_read_sha256(16))).unwrap();
    assert_eq!(cleared, vec![0; 32]);
}
