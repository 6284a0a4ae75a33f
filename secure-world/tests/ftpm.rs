//! The fTPM TA through the model's SMC interface, as Linux's tpm_ftpm_tee drives it: one
//! session, one registered 8 KiB buffer (command at 0, response at 4096), SUBMIT_COMMAND.
//! Boot ids in the client identity turn a new normal-world boot into a TPM reset.
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
use secure_world::ta::ftpm::{boot_client_uuid, FtpmTa, EMULATE_PPI, SUBMIT_COMMAND};
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

fn open_message(boot_id: u64) -> MsgArg {
    let mut arg = MsgArg::new(cmd::OPEN_SESSION);
    let meta = |(a, b): (u64, u64), c: u64| Param::Value {
        dir: Direction::In,
        a,
        b,
        c,
        meta: true,
    };
    arg.push(meta(FTPM_TA.to_value_pair(), 0)).unwrap();
    let client = boot_client_uuid(boot_id).to_value_pair();
    arg.push(meta(client, u64::from(teec::login::PUBLIC)))
        .unwrap();
    arg
}

fn open_raw(sw: &mut SecureWorld, nw: &mut NormalWorld, boot_id: u64) -> MsgArg {
    nw.call(sw, &open_message(boot_id)).unwrap()
}

/// Opens a session for `boot_id` and registers the 8 KiB buffer under `cookie`.
fn connect(sw: &mut SecureWorld, nw: &mut NormalWorld, boot_id: u64, cookie: u64) -> Client {
    let opened = open_raw(sw, nw, boot_id);
    assert_eq!(opened.ret, teec::SUCCESS, "open for boot {boot_id}");
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
/// message result and the response bytes (as many as the reported size, when they fit).
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
        response = vec![0u8; size as usize];
        nw.ram.read(client.frames[1], &mut response).unwrap();
    }
    (arg.ret, size, response)
}

/// A command that must reach the TPM: its raw response.
fn submit(sw: &mut SecureWorld, nw: &mut NormalWorld, client: &Client, command: &[u8]) -> Vec<u8> {
    let (ret, size, response) = submit_with_room(sw, nw, client, command, 4096);
    assert_eq!(ret, teec::SUCCESS);
    assert_eq!(size as usize, response.len());
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

#[test]
fn startup_and_get_random_run_through_submit_command_after_one_get_time_rpc_each() {
    let (mut sw, mut nw) = setup();
    assert!(sw.installed_tas().contains(&FTPM_TA));
    let client = connect(&mut sw, &mut nw, 1, 0x70);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &client, &startup(SU_CLEAR)),
        rc::SUCCESS
    );
    let a = random16(&mut sw, &mut nw, &client);
    let b = random16(&mut sw, &mut nw, &client);
    assert_ne!(a, b);
    assert_eq!(get_time_rpcs(&nw), 3);
    // Each call suspended in RPC and came back: every thread is free again.
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

#[test]
fn a_new_boot_id_resets_the_tpm_but_keeps_nv() {
    let (mut sw, mut nw) = setup();
    let first = connect(&mut sw, &mut nw, 1, 0x72);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &first, &startup(SU_CLEAR)),
        rc::SUCCESS
    );
    write_nv(&mut sw, &mut nw, &first, b"survives kexec");
    let extend = pcr_extend_sha256(16, &[1; 32]);
    assert_eq!(tpm_code(&mut sw, &mut nw, &first, &extend), rc::SUCCESS);
    assert_eq!(pcr16(&mut sw, &mut nw, &first), PCR_AFTER_ONE);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &first, &shutdown(SU_CLEAR)),
        rc::SUCCESS
    );
    disconnect(&mut sw, &mut nw, first);

    // A kexec: the next boot's tpmd opens with boot id 2.
    let second = connect(&mut sw, &mut nw, 2, 0x73);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &second, &get_random(16)),
        rc::INITIALIZE
    );
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &second, &startup(SU_CLEAR)),
        rc::SUCCESS
    );
    assert_eq!(pcr16(&mut sw, &mut nw, &second), "0".repeat(64));
    assert_eq!(read_nv(&mut sw, &mut nw, &second, 14), b"survives kexec");
}

#[test]
fn the_same_boot_id_keeps_the_running_tpm() {
    let (mut sw, mut nw) = setup();
    let first = connect(&mut sw, &mut nw, 7, 0x74);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &first, &startup(SU_CLEAR)),
        rc::SUCCESS
    );
    let extend = pcr_extend_sha256(16, &[1; 32]);
    assert_eq!(tpm_code(&mut sw, &mut nw, &first, &extend), rc::SUCCESS);
    disconnect(&mut sw, &mut nw, first);

    // tpmd restarted within boot 7: no reset, no Startup needed, PCRs kept.
    let again = connect(&mut sw, &mut nw, 7, 0x75);
    random16(&mut sw, &mut nw, &again);
    assert_eq!(pcr16(&mut sw, &mut nw, &again), PCR_AFTER_ONE);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &again, &startup(SU_CLEAR)),
        rc::INITIALIZE
    );
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

    // Undersized (below a header) and oversized (over 4096) commands.
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

    // The TA is still fine.
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &client, &startup(SU_CLEAR)),
        rc::SUCCESS
    );
}

#[test]
fn a_too_small_response_buffer_gets_short_buffer_with_the_size_needed() {
    let (mut sw, mut nw) = setup();
    let client = connect(&mut sw, &mut nw, 1, 0x77);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &client, &startup(SU_CLEAR)),
        rc::SUCCESS
    );
    let (ret, size, _) = submit_with_room(&mut sw, &mut nw, &client, &get_random(16), 8);
    // Header (10) + TPM2B size (2) + 16 bytes.
    assert_eq!((ret, size), (teec::ERROR_SHORT_BUFFER, 28));
    let (ret, size, response) = submit_with_room(&mut sw, &mut nw, &client, &get_random(16), 28);
    assert_eq!((ret, size), (teec::SUCCESS, 28));
    assert_eq!(response_code(&response), Some(rc::SUCCESS));
}

#[test]
fn a_machine_reset_power_cycles_the_tpm_and_keeps_nv() {
    let (mut sw, mut nw) = setup();
    let client = connect(&mut sw, &mut nw, 1, 0x78);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &client, &startup(SU_CLEAR)),
        rc::SUCCESS
    );
    write_nv(&mut sw, &mut nw, &client, b"reset-proof");
    let extend = pcr_extend_sha256(16, &[1; 32]);
    assert_eq!(tpm_code(&mut sw, &mut nw, &client, &extend), rc::SUCCESS);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &client, &shutdown(SU_CLEAR)),
        rc::SUCCESS
    );

    sw.reset();
    assert_eq!(sw.stats().sessions, 0);
    // Even the same boot id finds a reset TPM: the SoC restarted.
    let after = connect(&mut sw, &mut nw, 1, 0x79);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &after, &get_random(16)),
        rc::INITIALIZE
    );
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &after, &startup(SU_CLEAR)),
        rc::SUCCESS
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
        assert_eq!(
            tpm_code(&mut sw, &mut nw, &client, &startup(SU_CLEAR)),
            rc::SUCCESS
        );
        write_nv(&mut sw, &mut nw, &client, b"on disk");
        // The secure-world process dies here, without any shutdown.
    }

    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(FtpmTa::with_state_file(&path).unwrap()));
    let client = connect(&mut sw, &mut nw, 1, 0x7b);
    assert_eq!(
        tpm_code(&mut sw, &mut nw, &client, &startup(SU_CLEAR)),
        rc::SUCCESS
    );
    assert_eq!(read_nv(&mut sw, &mut nw, &client, 7), b"on disk");

    // A world without the file has its own, fresh TPM.
    let (mut other, mut other_nw) = setup();
    let fresh = connect(&mut other, &mut other_nw, 1, 0x7c);
    assert_eq!(
        tpm_code(&mut other, &mut other_nw, &fresh, &startup(SU_CLEAR)),
        rc::SUCCESS
    );
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
