//! The three Redox adapters wired as Redox's kernel would wire them (the test moves each
//! daemon's frames between its handle on `tee` and its own adapter), over the OP-TEE model with
//! the real fTPM (libtpms) and BNXT TA: what a TPM consumer at `/scheme/tpm/tpm0` and the NIC
//! driver at `/scheme/bnxt/nic` get, and what the secure world holds after the lifecycle's
//! shutdown through the `control` paths.
#![allow(clippy::unwrap_used)]

mod common;

use bnxtd_redox::BnxtScheme;
use common::*;
use tee_client::ClientConfig;
use tee_proto::bnxt::{BnxtRequest, BnxtResponse};
use tee_proto::lifecycle::{InitRequest, ServerEvent, ShutdownReason};
use tee_proto::tpm::rc;
use tee_proto::{Frame, FRAME_MAX};
use tee_redox::policy::{BNXTD, TPMD};
use tee_redox::{Caller, RegionRam, SchemeAdapter, SchemeError, Startup};
use tee_test_support::bnxt_image;
use teed_redox::TeeScheme;
use tpmd_redox::TpmScheme;

const TPMD_GENERATION: u32 = 21;
const BNXTD_GENERATION: u32 = 22;

/// TPM2_GetRandom(8), no sessions.
const GET_RANDOM_8: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8];

struct Stack {
    machine: Machine,
    tee: TeeScheme<ModelCap, RegionRam>,
    tpm: TpmScheme<RegionRam>,
    bnxt: BnxtScheme<RegionRam>,
    /// Each client's handle on `tee`.
    tpm_link: usize,
    bnxt_link: usize,
    now: u64,
}

impl Stack {
    /// teed started, then each client as its Redox main starts it: its handle on `tee`, its
    /// window through teed, its adapter, its Hello.
    fn start() -> Stack {
        let machine = Machine::new();
        let mut tee = machine.teed(true);
        let tpm_link = tee
            .open(&format!("client/{TPMD_GENERATION}"), &TPMD_CALLER)
            .unwrap();
        let bnxt_link = tee
            .open(&format!("client/{BNXTD_GENERATION}"), &BNXTD_CALLER)
            .unwrap();
        let window = |tee: &mut TeeScheme<ModelCap, RegionRam>, caller: &Caller| {
            let handle = tee.open("window", caller).unwrap();
            let mut placement = [0u8; 16];
            tee.read(handle, &mut placement, caller).unwrap();
            let base = u64::from_le_bytes(placement[..8].try_into().unwrap());
            let len = u64::from_le_bytes(placement[8..].try_into().unwrap());
            tee_proto::lifecycle::RamWindow { base, len }
        };
        let tpm_window = window(&mut tee, &TPMD_CALLER);
        let bnxt_window = window(&mut tee, &BNXTD_CALLER);
        let tpm = TpmScheme::new(
            TPMD.provides,
            ClientConfig::default(),
            machine.client_ram(tpm_window),
            tpm_window,
        );
        let bnxt = BnxtScheme::new(
            BNXTD.provides,
            ClientConfig::default(),
            machine.client_ram(bnxt_window),
            bnxt_window,
        );
        let mut stack = Stack {
            machine,
            tee,
            tpm,
            bnxt,
            tpm_link,
            bnxt_link,
            now: 0,
        };
        stack.tpm.start(0, TPMD_GENERATION);
        stack.bnxt.start(0, BNXTD_GENERATION);
        stack.pump();
        stack
    }

    /// Moves frames between the clients and teed until none is left, as the kernel delivers
    /// writes and the daemons' loops read.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for frame in self.tpm.take_to_teed() {
                self.tee.write(self.tpm_link, &frame, &TPMD_CALLER).unwrap();
                moved = true;
            }
            for frame in self.bnxt.take_to_teed() {
                self.tee
                    .write(self.bnxt_link, &frame, &BNXTD_CALLER)
                    .unwrap();
                moved = true;
            }
            let mut buf = vec![0u8; FRAME_MAX];
            while let Ok(len) = self.tee.read(self.tpm_link, &mut buf, &TPMD_CALLER) {
                self.tpm.on_teed(&buf[..len]);
                moved = true;
            }
            while let Ok(len) = self.tee.read(self.bnxt_link, &mut buf, &BNXTD_CALLER) {
                self.bnxt.on_teed(&buf[..len]);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances every adapter's clock to its next deadline (bounded), pumping in between.
    fn run_timers(&mut self, until: impl Fn(&Stack) -> bool) {
        for _ in 0..1000 {
            if until(self) {
                return;
            }
            let next = [
                self.tee.poll_timeout(),
                self.tpm.poll_timeout(),
                self.bnxt.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("something waits");
            self.now = self.now.max(next);
            self.tee.advance(self.now);
            self.tpm.advance(self.now);
            self.bnxt.advance(self.now);
            self.pump();
        }
        panic!("condition not reached");
    }
}

fn tpm_command(stack: &mut Stack, handle: usize, caller: &Caller, command: &[u8]) -> Vec<u8> {
    assert_eq!(stack.tpm.write(handle, command, caller), Ok(command.len()));
    stack.pump();
    let mut buf = vec![0u8; 4096];
    let len = stack.tpm.read(handle, &mut buf, caller).unwrap();
    buf.truncate(len);
    buf
}

fn response_code(response: &[u8]) -> u32 {
    u32::from_be_bytes(response[6..10].try_into().unwrap())
}

/// Readiness (INIT_NOTIFY) for a client waits for its session and buffer, as Linux's
/// tpm_ftpm_tee probe finishes only with both (ftpm_tee_probe).
#[test]
fn clients_are_ready_once_their_session_and_buffer_are_set_up() {
    let stack = Stack::start();
    assert_eq!(
        stack.tpm.startup(),
        Startup::Ready {
            generation: TPMD_GENERATION
        }
    );
    assert_eq!(
        stack.bnxt.startup(),
        Startup::Ready {
            generation: BNXTD_GENERATION
        }
    );
    // One session and one registered buffer each (the fTPM's 8 KiB, bnxt's 4 MiB).
    assert_eq!(
        (stack.machine.sessions(), stack.machine.registrations()),
        (2, 2)
    );
}

/// tpm_ftpm_tee.c ftpm_tee_tpm_op_send/recv: one whole command in, one whole response out.
#[test]
fn tpm0_runs_tpm_commands_through_tpmd_teed_and_the_ftpm() {
    let mut stack = Stack::start();
    let consumer = stack.tpm.open("tpm0", &TPM_USER).unwrap();
    let first = tpm_command(&mut stack, consumer, &TPM_USER, &GET_RANDOM_8);
    assert_eq!(first.len(), 10 + 2 + 8);
    assert_eq!(response_code(&first), rc::SUCCESS);
    let second = tpm_command(&mut stack, consumer, &TPM_USER, &GET_RANDOM_8);
    assert_ne!(first[12..], second[12..], "random bytes differ");
    // A command shorter than a TPM header is answered by tpmd itself, as a TPM response.
    let short = tpm_command(&mut stack, consumer, &TPM_USER, &[0x80, 0x01, 0]);
    assert_eq!(response_code(&short), rc::COMMAND_SIZE);
    // More than the command half of the buffer is refused before the core.
    let huge = vec![0u8; 4097];
    let refused = stack.tpm.write(consumer, &huge, &TPM_USER);
    assert_eq!(
        refused,
        Err(SchemeError::TooLarge {
            len: 4097,
            max: 4096
        })
    );
}

/// Linux /dev/tpmrm0 is root and the tss group's (tpm-dev-common.c); here root and `tpm`.
#[test]
fn tpm0_admits_root_and_the_tpm_group_only_and_offers_no_call() {
    let mut stack = Stack::start();
    assert_eq!(stack.tpm.open("tpm0", &STRANGER), Err(SchemeError::Denied));
    assert_eq!(
        stack.tpm.open("tpm0", &BNXTD_CALLER),
        Err(SchemeError::Denied)
    );
    let root = stack.tpm.open("tpm0", &ROOT).unwrap();
    let mut payload = GET_RANDOM_8.to_vec();
    assert_eq!(
        stack.tpm.call(root, &mut payload, 12, &ROOT),
        Err(SchemeError::NotSupported),
        "answers need teed: read them"
    );
    assert_eq!(
        stack.tpm.mmap_prep(root, 0, 4096, &ROOT),
        Err(SchemeError::NotSupported)
    );
    assert_eq!(stack.tpm.open("tpm1", &ROOT), Err(SchemeError::NoSuchPath));
    let mut buf = [0u8; 64];
    assert_eq!(
        stack.tpm.read(root, &mut buf, &ROOT),
        Err(SchemeError::WouldBlock)
    );
    let other = Caller { pid: 99, ..ROOT };
    assert_eq!(
        stack.tpm.write(root, &GET_RANDOM_8, &other),
        Err(SchemeError::NotOwner)
    );
}

/// tee_bnxt_fw.c: bnxt_tee_load (FASTBOOT) and bnxt_tee_copy_coredump (COPY_COREDUMP in
/// windows of the 4 MiB buffer).
#[test]
fn nic_loads_firmware_and_copies_the_coredump() {
    let mut stack = Stack::start();
    assert_eq!(stack.bnxt.open("nic", &STRANGER), Err(SchemeError::Denied));
    let nic = stack.bnxt.open("nic", &ROOT).unwrap();
    let ask = |stack: &mut Stack, id: u32, body: BnxtRequest| -> BnxtResponse {
        let bytes = encode(id, 0, body);
        stack.bnxt.write(nic, &bytes, &ROOT).unwrap();
        stack.pump();
        let frame: Frame<BnxtResponse> = read_frame(&mut stack.bnxt, nic, &ROOT);
        assert_eq!(frame.header.request_id, id);
        frame.body
    };
    assert_eq!(ask(&mut stack, 1, BnxtRequest::Load), BnxtResponse::Loaded);
    assert_eq!(
        ask(&mut stack, 2, BnxtRequest::CoredumpLen),
        BnxtResponse::CoredumpLen { len: 8 << 20 }
    );
    let offset = (4 << 20) + 4096;
    let BnxtResponse::Coredump { data, .. } = ask(
        &mut stack,
        3,
        BnxtRequest::CopyCoredump { offset, size: 4096 },
    ) else {
        panic!("no chunk");
    };
    let mut expected = vec![0u8; 4096];
    bnxt_image::coredump_chunk(u64::from(offset), &mut expected).unwrap();
    assert_eq!(data.as_slice(), expected.as_slice());
    assert_eq!(
        stack.bnxt.write(nic, &[0xff; 3], &ROOT),
        Err(SchemeError::Malformed)
    );
}

/// The shutdown IPC in Linux order (clients' .shutdown before the OP-TEE driver's, the 5.14
/// series), through each scheme's control path: nothing stays registered or open, so a
/// machine reset (the Redox reboot) finds OP-TEE's heap as a kexec would.
#[test]
fn shutdown_through_the_control_paths_leaves_the_secure_world_empty() {
    let mut stack = Stack::start();
    let consumer = stack.tpm.open("tpm0", &TPM_USER).unwrap();
    tpm_command(&mut stack, consumer, &TPM_USER, &GET_RANDOM_8);
    let shutdown = |id| {
        encode(
            id,
            0,
            InitRequest::Shutdown {
                reason: ShutdownReason::Reboot,
            },
        )
    };
    let tpm_control = stack.tpm.open("control", &ROOT).unwrap();
    let bnxt_control = stack.bnxt.open("control", &ROOT).unwrap();
    stack.tpm.write(tpm_control, &shutdown(1), &ROOT).unwrap();
    stack.bnxt.write(bnxt_control, &shutdown(1), &ROOT).unwrap();
    stack.pump();
    stack.run_timers(|s| {
        s.tpm.ready(tpm_control, &ROOT).unwrap().read
            && s.bnxt.ready(bnxt_control, &ROOT).unwrap().read
    });
    for (scheme, control) in [
        (&mut stack.tpm as &mut dyn SchemeAdapter, tpm_control),
        (&mut stack.bnxt as &mut dyn SchemeAdapter, bnxt_control),
    ] {
        let mut buf = vec![0u8; FRAME_MAX];
        let len = scheme.read(control, &mut buf, &ROOT).unwrap();
        let ack: Frame<ServerEvent> = tee_proto::decode(&buf[..len]).unwrap();
        let ServerEvent::ShutdownAck(report) = ack.body else {
            panic!("{:?}", ack.body);
        };
        assert_eq!(
            (report.unregistered, report.sessions_closed, report.errors),
            (1, 1, 0)
        );
    }
    assert_eq!(
        (stack.machine.sessions(), stack.machine.registrations()),
        (0, 0)
    );
    let tee_control = stack.tee.open("control", &ROOT).unwrap();
    stack.tee.write(tee_control, &shutdown(2), &ROOT).unwrap();
    stack.run_timers(|s| s.tee.core().is_stopped());
    let ack: Frame<ServerEvent> = read_frame(&mut stack.tee, tee_control, &ROOT);
    assert!(matches!(ack.body, ServerEvent::ShutdownAck(_)));
    // After the shutdown a consumer hears "shutting down" as a TPM failure code.
    let late = tpm_command(&mut stack, consumer, &TPM_USER, &GET_RANDOM_8);
    assert_eq!(response_code(&late), rc::FAILURE);
}

/// The client's handle on `tee` failed (teed exited): what waits for teed is answered "retry"
/// (TPM_RC_RETRY), never left hanging, before the client exits for its restart.
#[test]
fn a_client_whose_teed_is_gone_answers_retry() {
    let mut stack = Stack::start();
    let consumer = stack.tpm.open("tpm0", &TPM_USER).unwrap();
    stack.tpm.write(consumer, &GET_RANDOM_8, &TPM_USER).unwrap();
    assert_eq!(
        stack.tpm.take_to_teed().len(),
        1,
        "the command is on its way to teed"
    );
    stack.tpm.teed_gone();
    let mut buf = vec![0u8; 64];
    let len = stack.tpm.read(consumer, &mut buf, &TPM_USER).unwrap();
    assert_eq!(response_code(&buf[..len]), rc::RETRY);
    assert_eq!(stack.tpm.take_readable(), vec![consumer]);
}

/// A consumer that closes its handle mid-command is forgotten; the command still finishes in
/// the TPM (never cut in half) and nobody else gets its answer.
#[test]
fn a_consumer_that_leaves_mid_command_gets_nothing_and_breaks_nothing() {
    let mut stack = Stack::start();
    let leaver = stack.tpm.open("tpm0", &TPM_USER).unwrap();
    let stayer = stack.tpm.open("tpm0", &ROOT).unwrap();
    stack.tpm.write(leaver, &GET_RANDOM_8, &TPM_USER).unwrap();
    stack.tpm.close(leaver);
    stack.pump();
    let mut buf = vec![0u8; 64];
    assert_eq!(
        stack.tpm.read(stayer, &mut buf, &ROOT),
        Err(SchemeError::WouldBlock)
    );
    assert_eq!(
        stack.tpm.read(leaver, &mut buf, &TPM_USER),
        Err(SchemeError::BadHandle)
    );
    let answer = tpm_command(&mut stack, stayer, &ROOT, &GET_RANDOM_8);
    assert_eq!(response_code(&answer), rc::SUCCESS);
}

/// Each client scheme's `control` path: root only, one holder, `Status` answered in place by
/// `call`, a forged `Hello` refused; and the NIC path's other operations.
#[test]
fn client_control_paths_are_root_only_and_answer_status_in_place() {
    let mut stack = Stack::start();
    for (scheme, kind) in [
        (
            &mut stack.tpm as &mut dyn SchemeAdapter,
            tee_proto::lifecycle::ServerKind::Tpmd,
        ),
        (
            &mut stack.bnxt as &mut dyn SchemeAdapter,
            tee_proto::lifecycle::ServerKind::Bnxtd,
        ),
    ] {
        assert_eq!(scheme.open("control", &TPM_USER), Err(SchemeError::Denied));
        assert_eq!(
            scheme.open("control", &TPMD_CALLER),
            Err(SchemeError::Denied)
        );
        let control = scheme.open("control", &ROOT).unwrap();
        assert_eq!(scheme.open("control", &ROOT), Err(SchemeError::Busy));
        let request = encode(3, 0, InitRequest::Status);
        let mut payload = request.clone();
        payload.resize(FRAME_MAX, 0);
        let len = scheme
            .call(control, &mut payload, request.len(), &ROOT)
            .unwrap();
        let frame: Frame<ServerEvent> = tee_proto::decode(&payload[..len]).unwrap();
        let ServerEvent::Status(status) = frame.body else {
            panic!("{:?}", frame.body);
        };
        assert_eq!(
            (status.kind, status.sessions, status.registrations),
            (kind, 1, 1)
        );
        let hello = encode(
            tee_redox::lifecycle::HELLO_REQUEST_ID,
            0,
            InitRequest::Status,
        );
        scheme.write(control, &hello, &ROOT).unwrap();
        let refused: Frame<ServerEvent> = read_frame(scheme, control, &ROOT);
        assert_eq!(
            refused.body,
            ServerEvent::Error(tee_proto::WireError::BadRequest)
        );
        assert_eq!(
            scheme.mmap_prep(control, 0, 4096, &ROOT),
            Err(SchemeError::NotSupported)
        );
        scheme.close(control);
        assert!(scheme.open("control", &ROOT).is_ok());
    }
    let nic = stack.bnxt.open("nic", &ROOT).unwrap();
    let request = encode(1, 0, BnxtRequest::CoredumpLen);
    let mut payload = request.clone();
    assert_eq!(
        stack.bnxt.call(nic, &mut payload, request.len(), &ROOT),
        Err(SchemeError::NotSupported)
    );
    let stale = encode(2, BNXTD_GENERATION + 1, BnxtRequest::Load);
    stack.bnxt.write(nic, &stale, &ROOT).unwrap();
    let frame: Frame<BnxtResponse> = read_frame(&mut stack.bnxt, nic, &ROOT);
    assert_eq!(
        frame.body,
        BnxtResponse::Error(tee_proto::bnxt::BnxtError::ServerRestarted {
            generation: BNXTD_GENERATION
        })
    );
    let oversized = vec![0u8; FRAME_MAX + 1];
    assert!(matches!(
        stack.bnxt.write(nic, &oversized, &ROOT),
        Err(SchemeError::TooLarge { .. })
    ));
    stack.bnxt.close(nic);
    assert_eq!(
        stack.bnxt.write(nic, &request, &ROOT),
        Err(SchemeError::BadHandle)
    );
}
