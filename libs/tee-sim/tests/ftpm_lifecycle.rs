//! The fTPM through tpmd across the lifecycle. The TA is keep-alive and starts the TPM itself
//! once per secure-world lifetime (ms-tpm-20-ref fTPM.c TA_CreateEntryPoint): PCRs survive
//! kexec and crash-kernel entry, only a machine reset clears them; NV survives everything; a
//! normal world's Startup answers TPM_RC_INITIALIZE.
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
    assert_eq!(code(&mut sim, &startup(SU_CLEAR)), rc::INITIALIZE);
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
fn pcrs_survive_kexec_and_the_crash_kernel_and_only_a_machine_reset_clears_them() {
    let mut sim = machine();
    let extended = pcr16(&mut sim);
    sim.kexec().unwrap();
    // The TPM kept running: already started, the PCR and NV as they were.
    assert_eq!(code(&mut sim, &startup(SU_CLEAR)), rc::INITIALIZE);
    assert_eq!(pcr16(&mut sim), extended);
    assert_eq!(nv(&mut sim), b"teesys!!");
    assert_eq!(
        code(&mut sim, &pcr_extend_sha256(16, &[9; 32])),
        rc::SUCCESS
    );
    let twice = pcr16(&mut sim);

    // Crash: in the crash boot tpmd answers with a clear "TEE unavailable"; the kexec back
    // finds the same running TPM.
    sim.crash(true).unwrap();
    assert_eq!(
        sim.tpm(&get_random(8)).unwrap(),
        Some(TpmResponse::Error(TpmError::TeeUnavailable))
    );
    sim.kexec().unwrap();
    assert_eq!(pcr16(&mut sim), twice);

    // A machine reset restarts the secure world: the TA is created again and starts the TPM;
    // NV is kept, PCRs are clear.
    sim.reboot().unwrap();
    assert_eq!(code(&mut sim, &startup(SU_CLEAR)), rc::INITIALIZE);
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

/// Kexecs never re-initialise the keep-alive TPM, so a DA-protected use in every boot cannot
/// raise the lockout counter, and neither can a crash without TPM2_Shutdown followed by the
/// kexec back (with a per-boot TPM reset, that crash would count as an unorderly shutdown).
#[test]
fn neither_kexecs_nor_a_crash_and_kexec_back_raise_the_lockout_counter() {
    let mut sim = machine();
    for _ in 0..100 {
        assert_eq!(nv(&mut sim), b"teesys!!");
        sim.kexec().unwrap();
        assert_eq!(code(&mut sim, &startup(SU_CLEAR)), rc::INITIALIZE);
    }
    assert_eq!(lockout_counter(&mut sim), 0);
    assert_eq!(
        code_retrying(&mut sim, &nv_write(INDEX, INDEX, 0, b"teesys!!")),
        rc::SUCCESS
    );
    sim.crash(false).unwrap();
    sim.kexec().unwrap();
    assert_eq!(lockout_counter(&mut sim), 0);
    assert_eq!(nv(&mut sim), b"teesys!!");
}
