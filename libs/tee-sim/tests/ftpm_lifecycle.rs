//! The fTPM through tpmd across the lifecycle: NV survives kexec, crash and machine reset; a
//! new normal-world boot resets the TPM (PCRs cleared, Startup needed); orderly kexecs keep the
//! lockout counter at zero because tpmd sends TPM2_Shutdown(CLEAR) first.
#![allow(clippy::unwrap_used)]

use libtpms::command::{
    get_capability, get_random, nv_attr, nv_define_space, nv_read, nv_write, pcr_extend_sha256,
    pcr_read_sha256, rc, response_code, startup, Response, CAP_TPM_PROPERTIES, PT_LOCKOUT_COUNTER,
    SU_CLEAR,
};
use tee_proto::tpm::{TpmError, TpmResponse};
use tee_sim::{Sim, SimConfig};

const INDEX: u32 = 0x0150_0002;

fn code(sim: &mut Sim, command: &[u8]) -> u32 {
    response_code(&sim.tpm_ok(command).unwrap()).unwrap()
}

/// Some DA-protected commands answer TPM_RC_RETRY once; clients retry.
fn code_retrying(sim: &mut Sim, command: &[u8]) -> u32 {
    match code(sim, command) {
        rc::RETRY => code(sim, command),
        other => other,
    }
}

fn pcr16(sim: &mut Sim) -> Vec<u8> {
    let bytes = sim.tpm_ok(&pcr_read_sha256(16)).unwrap();
    Response::parse(&bytes)
        .unwrap()
        .pcr_digest()
        .unwrap()
        .to_vec()
}

fn nv(sim: &mut Sim) -> Vec<u8> {
    let command = nv_read(INDEX, INDEX, 8, 0);
    let mut bytes = sim.tpm_ok(&command).unwrap();
    if response_code(&bytes) == Some(rc::RETRY) {
        bytes = sim.tpm_ok(&command).unwrap();
    }
    let response = Response::parse(&bytes).unwrap();
    assert_eq!(response_code(&bytes), Some(rc::SUCCESS));
    response.first_sized().unwrap().to_vec()
}

fn lockout_counter(sim: &mut Sim) -> u32 {
    let bytes = sim
        .tpm_ok(&get_capability(CAP_TPM_PROPERTIES, PT_LOCKOUT_COUNTER, 1))
        .unwrap();
    Response::parse(&bytes).unwrap().first_property().unwrap().1
}

fn machine() -> Sim {
    let mut sim = Sim::scripted(SimConfig::new(2024));
    sim.power_on().unwrap();
    assert_eq!(code(&mut sim, &startup(SU_CLEAR)), rc::SUCCESS);
    let attributes =
        nv_attr::OWNERWRITE | nv_attr::OWNERREAD | nv_attr::AUTHWRITE | nv_attr::AUTHREAD;
    assert_eq!(
        code(&mut sim, &nv_define_space(INDEX, 8, attributes)),
        rc::SUCCESS
    );
    assert_eq!(
        code_retrying(&mut sim, &nv_write(INDEX, INDEX, 0, b"teesys!!")),
        rc::SUCCESS
    );
    assert_eq!(
        code(&mut sim, &pcr_extend_sha256(16, &[7; 32])),
        rc::SUCCESS
    );
    assert_ne!(pcr16(&mut sim), [0; 32]);
    sim
}

#[test]
fn nv_survives_kexec_crash_and_reset_while_pcrs_reset_with_every_boot() {
    let mut sim = machine();
    sim.kexec().unwrap();
    // A new boot is a TPM reset: Startup first, then PCRs are clear and NV is still there.
    assert_eq!(code(&mut sim, &get_random(8)), rc::INITIALIZE);
    assert_eq!(code(&mut sim, &startup(SU_CLEAR)), rc::SUCCESS);
    assert_eq!(pcr16(&mut sim), [0; 32]);
    assert_eq!(nv(&mut sim), b"teesys!!");
    assert_eq!(
        code(&mut sim, &pcr_extend_sha256(16, &[9; 32])),
        rc::SUCCESS
    );

    // Crash: in the crash boot tpmd answers with a clear "TEE unavailable".
    sim.crash(true).unwrap();
    assert_eq!(
        sim.tpm(&get_random(8)).unwrap(),
        Some(TpmResponse::Error(TpmError::TeeUnavailable))
    );
    // A machine reset restarts the secure world; NV is kept, PCRs are clear.
    sim.reboot().unwrap();
    assert_eq!(code(&mut sim, &startup(SU_CLEAR)), rc::SUCCESS);
    assert_eq!(pcr16(&mut sim), [0; 32]);
    assert_eq!(nv(&mut sim), b"teesys!!");
}

#[test]
fn a_teed_restart_within_a_boot_keeps_the_tpm_state() {
    let mut sim = machine();
    let before = pcr16(&mut sim);
    sim.kill_server(tee_proto::lifecycle::ServerKind::Teed)
        .unwrap();
    // The first command after the restart may get a retryable error; then the same TPM answers.
    let _ = sim.tpm(&get_random(8)).unwrap();
    assert_eq!(pcr16(&mut sim), before, "same boot: no TPM reset");
}

#[test]
fn the_lockout_counter_does_not_grow_over_100_orderly_kexecs() {
    let mut sim = machine();
    for _ in 0..100 {
        // A DA-protected use each boot, then an orderly kexec (tpmd sends Shutdown(CLEAR)).
        assert_eq!(nv(&mut sim), b"teesys!!");
        sim.kexec().unwrap();
        assert_eq!(code(&mut sim, &startup(SU_CLEAR)), rc::SUCCESS);
    }
    assert_eq!(lockout_counter(&mut sim), 0);
    // The control: a crash skips TPM2_Shutdown and the counter rises.
    assert_eq!(
        code_retrying(&mut sim, &nv_write(INDEX, INDEX, 0, b"teesys!!")),
        rc::SUCCESS
    );
    sim.crash(false).unwrap();
    sim.kexec().unwrap();
    assert_eq!(code(&mut sim, &startup(SU_CLEAR)), rc::SUCCESS);
    assert_eq!(lockout_counter(&mut sim), 1);
}
