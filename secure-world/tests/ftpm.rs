//! The fTPM TA through the model's SMC interface, as Linux's tpm_ftpm_tee drives it: one
//! session, one registered 8 KiB buffer (command at 0, response at 4096), SUBMIT_COMMAND.
//! The TA is keep-alive and starts the TPM itself once per secure-world lifetime
//! (ms-tpm-20-ref optee_ta fTPM.c, TA_CreateEntryPoint): a kexec keeps its PCRs, a machine reset
//! does not.
#![allow(clippy::unwrap_used)]

mod common;

use libtpms::command::{
    get_random, nv_attr, nv_define_space, nv_read, nv_write, pcr_extend_sha256, pcr_read_sha256,
    rc, response_code, shutdown, startup, Response, RH_OWNER, SU_CLEAR,
};
use optee_abi::mem::PhysMem;
use optee_abi::msg::{cmd, Direction, MsgArg, Param};
use optee_abi::teec::{self, origin};
use optee_abi::uuid::FTPM_TA;
use secure_world::ta::ftpm::{FtpmTa, EMULATE_PPI, SUBMIT_COMMAND};
use secure_world::SecureWorld;
use tee_test_support::normal_world::{NormalWorld, RpcEvent};

use common::setup;

const BUFFER_BYTES: u64 = 8192;
const RESPONSE_OFFSET: u64 = 4096;
const INDEX: u32 = 0x0150_0016;
/// SHA-256(32 zero bytes || 32 bytes of 0x01).
const PCR_AFTER_ONE: &str = "5c85955f709283ecce2b74f1b1552918819f390911816e7bb466805a38ab87f3";

/// tpmd's view: its session and its registered buffer.
struct Client {
    session: u32,
    cookie: u64,
    /// The buffer's two pages: command page, response page.
    frames: Vec<u64>,
}

/// OPEN_SESSION as Linux's tpm_ftpm_tee sends it (LOGIN_PUBLIC); `claimed` goes in the client
/// UUID, which OP-TEE zeroes for that login anyway.
fn open_message(claimed: u64) -> MsgArg {
    let mut arg = MsgArg::new(cmd::OPEN_SESSION);
    let meta = |(a, b): (u64, u64), c: u64| Param::Value {
        dir: Direction::In,
        a,
        b,
        c,
        meta: true,
    };
    arg.push(meta(FTPM_TA.to_value_pair(), 0)).unwrap();
    arg.push(meta((claimed, claimed), u64::from(teec::login::PUBLIC)))
        .unwrap();
    arg
}

fn open_raw(sw: &mut SecureWorld, nw: &mut NormalWorld, claimed: u64) -> MsgArg {
    nw.call(sw, &open_message(claimed)).unwrap()
}

/// Opens a session (a normal-world boot named by `boot`, as a client UUID OP-TEE zeroes) and
/// registers the 8 KiB buffer under `cookie`.
fn connect(sw: &mut SecureWorld, nw: &mut NormalWorld, boot: u64, cookie: u64) -> Client {
    let opened = open_raw(sw, nw, boot);
    assert_eq!(opened.ret, teec::SUCCESS, "open for boot {boot}");
    let (code, frames) = nw.register(sw, cookie, 0, BUFFER_BYTES).unwrap();
    assert_eq!(code, teec::SUCCESS);
    assert_eq!(frames.len(), 2);
    Client {
        session: opened.session,
        cookie,
        frames,
    }
}

/// tpmd's orderly shutdown: unregister, then close.
fn disconnect(sw: &mut SecureWorld, nw: &mut NormalWorld, client: Client) {
    assert_eq!(nw.unregister(sw, client.cookie).unwrap(), teec::SUCCESS);
    assert_eq!(nw.close_session(sw, client.session).unwrap(), teec::SUCCESS);
}

fn memref(dir: Direction, cookie: u64, offs: u64, size: u64) -> Param {
    Param::Rmem {
        dir,
        offs,
        size,
        shm_ref: cookie,
    }
}

/// SUBMIT_COMMAND with the command at offset 0 and `response_room` bytes at 4096: the
/// message result, p1's size as the TA left it, and the response (its length read from its
/// header, as Linux's tpm_ftpm_tee does).
fn submit_with_room(
    sw: &mut SecureWorld,
    nw: &mut NormalWorld,
    client: &Client,
    command: &[u8],
    response_room: u64,
) -> (u32, u64, Vec<u8>) {
    nw.ram.write(client.frames[0], command).unwrap();
    let params = [
        memref(Direction::In, client.cookie, 0, command.len() as u64),
        memref(
            Direction::InOut,
            client.cookie,
            RESPONSE_OFFSET,
            response_room,
        ),
        Param::None,
        Param::None,
    ];
    let arg = nw
        .invoke(sw, client.session, SUBMIT_COMMAND, &params)
        .unwrap();
    let size = arg.params[1].b;
    let mut response = Vec::new();
    if arg.ret == teec::SUCCESS {
        let mut header = [0u8; 10];
        nw.ram.read(client.frames[1], &mut header).unwrap();
        let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        response = vec![0u8; len as usize];
        nw.ram.read(client.frames[1], &mut response).unwrap();
    }
    (arg.ret, size, response)
}

/// A command that must reach the TPM: its raw response.
fn submit(sw: &mut SecureWorld, nw: &mut NormalWorld, client: &Client, command: &[u8]) -> Vec<u8> {
    let (ret, size, response) = submit_with_room(sw, nw, client, command, 4096);
    assert_eq!(ret, teec::SUCCESS);
    assert_eq!(size, 4096, "fTPM.c leaves p1's size alone");
    response
}

fn tpm_code(sw: &mut SecureWorld, nw: &mut NormalWorld, client: &Client, command: &[u8]) -> u32 {
    response_code(&submit(sw, nw, client, command)).unwrap()
}

fn random16(sw: &mut SecureWorld, nw: &mut NormalWorld, client: &Client) -> Vec<u8> {
    let response = submit(sw, nw, client, &get_random(16));
    let parsed = Response::parse(&response).unwrap();
    assert_eq!(parsed.code, rc::SUCCESS);
    parsed.first_sized().unwrap().to_vec()
}

fn pcr16(sw: &mut SecureWorld, nw: &mut NormalWorld, client: &Client) -> String {
    let response = submit(sw, nw, client, &pcr_read_sha256(16));
    let parsed = Response::parse(&response).unwrap();
    assert_eq!(parsed.code, rc::SUCCESS);
    parsed
        .pcr_digest()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_nv(sw: &mut SecureWorld, nw: &mut NormalWorld, client: &Client, data: &[u8]) {
    let attributes = nv_attr::OWNERWRITE | nv_attr::OWNERREAD;
    let define = nv_define_space(INDEX, data.len() as u16, attributes);
    assert_eq!(tpm_code(sw, nw, client, &define), rc::SUCCESS);
    let write = nv_write(RH_OWNER, INDEX, 0, data);
    assert_eq!(tpm_code(sw, nw, client, &write), rc::SUCCESS);
}

fn read_nv(sw: &mut SecureWorld, nw: &mut NormalWorld, client: &Client, len: u16) -> Vec<u8> {
    let response = submit(sw, nw, client, &nv_read(RH_OWNER, INDEX, len, 0));
    let parsed = Response::parse(&response).unwrap();
    assert_eq!(parsed.code, rc::SUCCESS);
    parsed.first_sized().unwrap().to_vec()
}

fn get_time_rpcs(nw: &NormalWorld) -> usize {
    nw.events
        .iter()
        .filter(|e| {
            matches!(
                e,
                RpcEvent::Cmd {
                    cmd: optee_abi::msg::rpc_cmd::GET_TIME,
                    ..
                }
            )
        })
        .count()
}

/// fTPM.c TA_CreateEntryPoint: the TA runs _TPM_Init and its own TPM2_Startup when its
/// instance is created, so the normal world's Startup answers TPM_RC_INITIALIZE ("already
/// started", as Linux's tpm2_auto_startup reads it) and commands run at once.
#[test]
fn the_ta_starts_the_tpm_itself_and_a_normal_world_startup_answers_initialize() {
    let (mut sw, mut nw) = setup();
    assert!(sw.installed_tas().contains(&FTPM_TA));
    let client = connect(&mut sw, &mut nw, 1, 0x70);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &client, &startup(SU_CLEAR)),
        rc::INITIALIZE
    );
    let a = random16(&mut sw, &mut nw, &client);
    let b = random16(&mut sw, &mut nw, &client);
    assert_ne!(a, b);
    // None of the three changed NV, so none went out to the normal world (NVMem.c writes back
    // only dirty blocks): each ran and answered in one call.
    assert_eq!(get_time_rpcs(&nw), 0);
    assert_eq!(sw.stats().threads_suspended, 0);
    disconnect(&mut sw, &mut nw, client);
}

/// ms-tpm-20-ref optee_ta fTPM platform/NVMem.c: `_plat__NvCommit` writes the dirty NV blocks
/// to OP-TEE secure storage, which reaches tee-supplicant through RPCs, before the command
/// answers; a command that changed no NV (GetRandom, PCR_Extend, PCR_Read) makes no RPC, since
/// the TA's clock (platform/Clock.c, TEE_GetTAPersistentTime) stays in the secure world. The
/// model's one RPC per committing command stands for that storage traffic.
#[test]
fn only_commands_that_commit_nv_go_out_to_the_normal_world_nvmem_c() {
    let (mut sw, mut nw) = setup();
    let client = connect(&mut sw, &mut nw, 1, 0x71);
    random16(&mut sw, &mut nw, &client);
    let settled = get_time_rpcs(&nw);
    for _ in 0..3 {
        random16(&mut sw, &mut nw, &client);
        assert_eq!(
            tpm_code(&mut sw, &mut nw, &client, &pcr_extend_sha256(16, &[1; 32])),
            rc::SUCCESS
        );
        pcr16(&mut sw, &mut nw, &client);
    }
    assert_eq!(get_time_rpcs(&nw), settled, "no NV changed, no RPC");
    // Defining an NV index and writing it commit NV: one RPC each, and the answer still
    // arrives whole after it.
    write_nv(&mut sw, &mut nw, &client, b"storage");
    assert_eq!(get_time_rpcs(&nw), settled + 2);
    assert_eq!(read_nv(&mut sw, &mut nw, &client, 7), b"storage");
    assert_eq!(
        get_time_rpcs(&nw),
        settled + 2,
        "reading NV commits nothing"
    );
    // TPM2_Shutdown saves the TPM's state: NV again.
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &client, &shutdown(SU_CLEAR)),
        rc::SUCCESS
    );
    assert_eq!(get_time_rpcs(&nw), settled + 3);
    assert_eq!(sw.stats().threads_suspended, 0);
    disconnect(&mut sw, &mut nw, client);
}

#[test]
fn a_second_session_is_busy_until_the_first_closes() {
    let (mut sw, mut nw) = setup();
    let client = connect(&mut sw, &mut nw, 1, 0x71);
    let second = open_raw(&mut sw, &mut nw, 1);
    assert_eq!(
        (second.ret, second.ret_origin),
        (teec::ERROR_BUSY, origin::TEE)
    );
    disconnect(&mut sw, &mut nw, client);
    let again = open_raw(&mut sw, &mut nw, 1);
    assert_eq!(again.ret, teec::SUCCESS);
}

/// fTPM.c: SINGLE_INSTANCE | INSTANCE_KEEP_ALIVE. A kexec (tpmd's orderly Shutdown(CLEAR) as
/// Linux's tpm_class_shutdown sends it, then the next boot's session) keeps the running TPM: the
/// PCR extended before it is still there, NV too, and Startup answers TPM_RC_INITIALIZE. The
/// next boot's client UUID differs, and changes nothing (OP-TEE zeroes it for LOGIN_PUBLIC).
#[test]
fn a_kexec_keeps_the_running_tpm_and_its_pcrs() {
    let (mut sw, mut nw) = setup();
    let first = connect(&mut sw, &mut nw, 1, 0x72);
    write_nv(&mut sw, &mut nw, &first, b"survives kexec");
    let extend = pcr_extend_sha256(16, &[1; 32]);
    assert_eq!(tpm_code(&mut sw, &mut nw, &first, &extend), rc::SUCCESS);
    assert_eq!(pcr16(&mut sw, &mut nw, &first), PCR_AFTER_ONE);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &first, &shutdown(SU_CLEAR)),
        rc::SUCCESS
    );
    disconnect(&mut sw, &mut nw, first);

    for boot in 2..5 {
        let next = connect(&mut sw, &mut nw, boot, 0x73 + boot);
        assert_eq!(
            tpm_code(&mut sw, &mut nw, &next, &startup(SU_CLEAR)),
            rc::INITIALIZE
        );
        assert_eq!(pcr16(&mut sw, &mut nw, &next), PCR_AFTER_ONE);
        assert_eq!(read_nv(&mut sw, &mut nw, &next, 14), b"survives kexec");
        disconnect(&mut sw, &mut nw, next);
    }
}

#[test]
fn emulate_ppi_bad_sizes_bad_types_and_unknown_funcs_are_refused_without_rpc() {
    let (mut sw, mut nw) = setup();
    let client = connect(&mut sw, &mut nw, 1, 0x76);
    let none4 = [Param::None, Param::None, Param::None, Param::None];
    let arg = nw
        .invoke(&mut sw, client.session, EMULATE_PPI, &none4)
        .unwrap();
    assert_eq!(
        (arg.ret, arg.ret_origin),
        (teec::ERROR_NOT_SUPPORTED, origin::TRUSTED_APP)
    );
    let arg = nw.invoke(&mut sw, client.session, 9, &none4).unwrap();
    assert_eq!(arg.ret, teec::ERROR_BAD_PARAMETERS);

    // fTPM.c: a header length beyond p0, p0 or p1 of 0 or over 4096 bytes.
    let short = startup(SU_CLEAR)[..9].to_vec();
    assert_eq!(
        submit_with_room(&mut sw, &mut nw, &client, &short, 4096).0,
        teec::ERROR_BAD_PARAMETERS
    );
    let long = vec![0x80u8; 4097];
    assert_eq!(
        submit_with_room(&mut sw, &mut nw, &client, &long, 4096).0,
        teec::ERROR_BAD_PARAMETERS
    );
    assert_eq!(
        submit_with_room(&mut sw, &mut nw, &client, &[], 4096).0,
        teec::ERROR_BAD_PARAMETERS
    );
    assert_eq!(
        submit_with_room(&mut sw, &mut nw, &client, &get_random(8), 0).0,
        teec::ERROR_BAD_PARAMETERS
    );
    // 4097 bytes at 4096 run past the 8 KiB registration: the core refuses the RMEM before the
    // TA sees it (entry_std.c set_rmem_param).
    assert_eq!(
        submit_with_room(&mut sw, &mut nw, &client, &get_random(8), 4097).0,
        teec::ERROR_SECURITY
    );
    // Within a larger registration the core passes a 4097-byte p1, and the TA refuses it.
    let (code, big) = nw.register(&mut sw, 0x7f, 0, 3 * 4096).unwrap();
    assert_eq!(code, teec::SUCCESS);
    nw.ram.write(big[0], &get_random(8)).unwrap();
    let oversized = [
        memref(Direction::In, 0x7f, 0, get_random(8).len() as u64),
        memref(Direction::InOut, 0x7f, 4096, 4097),
        Param::None,
        Param::None,
    ];
    let arg = nw
        .invoke(&mut sw, client.session, SUBMIT_COMMAND, &oversized)
        .unwrap();
    assert_eq!(arg.ret, teec::ERROR_BAD_PARAMETERS);
    // p1 input-only instead of in/out.
    let params = [
        memref(Direction::In, client.cookie, 0, 12),
        memref(Direction::In, client.cookie, RESPONSE_OFFSET, 4096),
        Param::None,
        Param::None,
    ];
    let arg = nw
        .invoke(&mut sw, client.session, SUBMIT_COMMAND, &params)
        .unwrap();
    assert_eq!(arg.ret, teec::ERROR_BAD_PARAMETERS);
    assert_eq!(get_time_rpcs(&nw), 0);

    // The TA is still fine; bytes after the header's length are not part of the command.
    let mut padded = get_random(8);
    padded.extend_from_slice(&[0xee; 20]);
    assert_eq!(tpm_code(&mut sw, &mut nw, &client, &padded), rc::SUCCESS);
}

/// fTPM.c: a response larger than p1 answers SHORT_BUFFER; p1's size is left as the caller set
/// it either way.
#[test]
fn a_too_small_response_buffer_gets_short_buffer_and_p1_keeps_its_size() {
    let (mut sw, mut nw) = setup();
    let client = connect(&mut sw, &mut nw, 1, 0x77);
    let (ret, size, _) = submit_with_room(&mut sw, &mut nw, &client, &get_random(16), 8);
    assert_eq!((ret, size), (teec::ERROR_SHORT_BUFFER, 8));
    // Header (10) + TPM2B size (2) + 16 bytes.
    let (ret, size, response) = submit_with_room(&mut sw, &mut nw, &client, &get_random(16), 28);
    assert_eq!((ret, size, response.len()), (teec::SUCCESS, 28, 28));
    assert_eq!(response_code(&response), Some(rc::SUCCESS));
}

/// A machine reset restarts the SoC: the instance is created again (fTPM.c
/// TA_CreateEntryPoint: _TPM_Init, Startup(STATE) refused after Shutdown(CLEAR), so
/// Startup(CLEAR)): the PCR is lost, NV is kept.
#[test]
fn a_machine_reset_creates_the_instance_again_losing_pcrs_keeping_nv() {
    let (mut sw, mut nw) = setup();
    let client = connect(&mut sw, &mut nw, 1, 0x78);
    write_nv(&mut sw, &mut nw, &client, b"reset-proof");
    let extend = pcr_extend_sha256(16, &[1; 32]);
    assert_eq!(tpm_code(&mut sw, &mut nw, &client, &extend), rc::SUCCESS);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &client, &shutdown(SU_CLEAR)),
        rc::SUCCESS
    );

    sw.reset();
    assert_eq!(sw.stats().sessions, 0);
    let after = connect(&mut sw, &mut nw, 1, 0x79);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &after, &startup(SU_CLEAR)),
        rc::INITIALIZE,
        "the new instance started the TPM itself"
    );
    assert_eq!(pcr16(&mut sw, &mut nw, &after), "0".repeat(64));
    assert_eq!(read_nv(&mut sw, &mut nw, &after, 11), b"reset-proof");
}

#[test]
fn a_state_file_keeps_nv_across_secure_world_processes() {
    let dir = std::env::temp_dir().join(format!("ftpm-state-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ftpm-nv.bin");
    let _ = std::fs::remove_file(&path);

    {
        let (mut sw, mut nw) = setup();
        let ta = FtpmTa::with_state_file(&path).unwrap();
        assert_eq!(ta.state_file(), Some(path.as_path()));
        sw.add_ta(Box::new(ta));
        assert!(path.exists(), "a new fTPM writes its state file at once");
        let client = connect(&mut sw, &mut nw, 1, 0x7a);
        write_nv(&mut sw, &mut nw, &client, b"on disk");
        // The secure-world process dies here, without any shutdown.
    }

    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(FtpmTa::with_state_file(&path).unwrap()));
    let client = connect(&mut sw, &mut nw, 1, 0x7b);
    assert_eq!(read_nv(&mut sw, &mut nw, &client, 7), b"on disk");

    // A world without the file has its own, fresh TPM.
    let (mut other, mut other_nw) = setup();
    let fresh = connect(&mut other, &mut other_nw, 1, 0x7c);
    let response = submit(
        &mut other,
        &mut other_nw,
        &fresh,
        &nv_read(RH_OWNER, INDEX, 7, 0),
    );
    assert_ne!(response_code(&response), Some(rc::SUCCESS));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_device_pta_lists_the_ftpm_after_bnxt() {
    let (mut sw, mut nw) = setup();
    let session = common::open_ok(&mut sw, &mut nw, optee_abi::uuid::DEVICE_PTA);
    let buf = nw.alloc_frame();
    let out = Param::Tmem {
        dir: Direction::Out,
        buf_ptr: buf,
        size: 64,
        shm_ref: 0,
        noncontig: false,
        meta: false,
    };
    let params = [out, Param::None, Param::None, Param::None];
    let arg = nw
        .invoke(
            &mut sw,
            session,
            secure_world::ta::device_pta::GET_DEVICES,
            &params,
        )
        .unwrap();
    assert_eq!((arg.ret, arg.params[0].b), (teec::SUCCESS, 32));
    let mut listed = [0u8; 32];
    nw.ram.read(buf, &mut listed).unwrap();
    assert_eq!(&listed[..16], optee_abi::uuid::BNXT_TA.as_bytes());
    assert_eq!(&listed[16..], FTPM_TA.as_bytes());
}
