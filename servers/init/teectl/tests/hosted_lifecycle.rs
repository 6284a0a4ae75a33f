//! The lifecycle on the real hosted stack: supervised restarts reclaim what the dead held, a
//! crash boot never restart-loops teed, a reboot resets the secure world, down leaves nothing.
#![allow(clippy::unwrap_used)]

mod live;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use live::LiveStack;
use tee_proto::control::{ControlRequest, ServerLineState, StackStatus};
use tee_proto::lifecycle::{BootKind, DeclineReason, ServerKind};
use tee_proto::tpm::TpmError;
use teectl::bnxt::BnxtDriver;
use teectl::soak::leaks;
use teectl::tpm::{self, TpmConsumer, TpmOutcome};
use teectl::CliError;

fn assert_no_leaks(status: &StackStatus) {
    assert_eq!(leaks(status), Vec::<String>::new(), "{status:?}");
}

fn get_random(consumer: &mut TpmConsumer) -> TpmOutcome {
    consumer.send(&tpm::get_random(16)).unwrap()
}

fn answered(outcome: &TpmOutcome) -> bool {
    matches!(outcome, TpmOutcome::Answer(answer) if answer.rc == 0)
}

fn retryable(outcome: &TpmOutcome) -> bool {
    match outcome {
        TpmOutcome::Answer(answer) => answer.rc == tpm::TPM_RC_RETRY,
        TpmOutcome::Failed(error) => error.is_retryable(),
    }
}

/// Startup for this boot, then one GetRandom that must succeed.
fn tpm_works(stack: &LiveStack) {
    let mut consumer = TpmConsumer::connect(&stack.paths).unwrap();
    match consumer.send(&tpm::startup_clear()).unwrap() {
        TpmOutcome::Answer(answer) => {
            assert!(answer.rc == 0 || answer.rc == tpm::TPM_RC_INITIALIZE)
        }
        other => panic!("startup: {other:?}"),
    }
    let outcome = get_random(&mut consumer);
    assert!(answered(&outcome), "{outcome:?}");
}

#[test]
fn killed_teed_mid_traffic_is_replaced_and_its_registrations_reclaimed() {
    let stack = LiveStack::up("teedkill");
    tpm_works(&stack);
    let before = stack.status();
    let generation = before.server(ServerKind::Teed).generation;

    // A consumer keeps sending; each retryable error is retried after a pause, as a TPM client
    // does on TPM_RC_RETRY.
    let running = Arc::new(AtomicBool::new(true));
    let traffic = {
        let paths = stack.paths.clone();
        let running = Arc::clone(&running);
        thread::spawn(move || {
            let mut consumer = TpmConsumer::connect(&paths).unwrap();
            let (mut answers, mut worst_run, mut run) = (0u32, 0u32, 0u32);
            while running.load(Ordering::SeqCst) {
                let outcome = get_random(&mut consumer);
                if answered(&outcome) {
                    answers += 1;
                    run = 0;
                } else if retryable(&outcome) {
                    run += 1;
                    worst_run = worst_run.max(run);
                    // Long enough for init to notice the death and start the next teed even
                    // on a loaded machine.
                    thread::sleep(Duration::from_millis(250));
                } else {
                    panic!("consumer got {outcome:?}");
                }
            }
            (answers, worst_run)
        })
    };
    thread::sleep(Duration::from_millis(100));
    let report = stack.op(ControlRequest::Kill(ServerKind::Teed));
    let teed = report.after.server(ServerKind::Teed);
    assert_eq!(teed.state, ServerLineState::Ready);
    assert_eq!(teed.generation, generation + 1);
    assert_eq!(teed.restarts, 1);
    thread::sleep(Duration::from_millis(700));
    running.store(false, Ordering::SeqCst);
    let (answers, worst_run) = traffic.join().unwrap();
    assert!(answers > 2, "only {answers} answers");
    // At most two in a row: the command in flight when teed died, and the next one when it
    // reaches tpmd while tpmd re-opens its session and buffer with the new teed.
    assert!(worst_run <= 2, "{worst_run} retryable errors in a row");

    // The predecessor's registrations and sessions are gone: only tpmd, which had traffic,
    // has re-opened with the new teed (bnxtd learns of the restart on its next request).
    let after = stack.status();
    assert_no_leaks(&after);
    let secure = after.secure.unwrap();
    assert_eq!(
        (
            secure.registrations,
            secure.registered_bytes,
            secure.sessions
        ),
        (1, 8 << 10, 1),
        "{secure:?}"
    );
    // bnxtd's first request meets the restart and is answered retryable, once.
    let mut nic = BnxtDriver::connect(&stack.paths).unwrap();
    if let Err(error) = nic.load() {
        assert!(
            matches!(error, CliError::Bnxt(ref e) if e.is_retryable()),
            "{error}"
        );
        nic.load().unwrap();
    }
    let after = stack.status();
    assert_no_leaks(&after);
    let secure = after.secure.unwrap();
    assert_eq!(
        (secure.registrations, secure.sessions),
        (2, 2),
        "{secure:?}"
    );
}

#[test]
fn killed_clients_are_reclaimed_at_once() {
    let stack = LiveStack::up("clientkill");
    for kind in [ServerKind::Tpmd, ServerKind::Bnxtd] {
        let generation = stack.status().server(kind).generation;
        let report = stack.op(ControlRequest::Kill(kind));
        let line = report.after.server(kind);
        assert_eq!(line.state, ServerLineState::Ready, "{kind:?}");
        assert_eq!(line.generation, generation + 1);
        // The single-session fTPM took the new tpmd's session: the old one was closed.
        let secure = report.after.secure.unwrap();
        assert_eq!((secure.registrations, secure.sessions), (2, 2), "{kind:?}");
        assert_no_leaks(&report.after);
    }
    tpm_works(&stack);
}

#[test]
fn crash_boot_holds_teed_without_restarts_and_kexec_recovers() {
    let stack = LiveStack::up("crash");
    for hard in [false, true] {
        let report = stack.op(ControlRequest::Crash { hard });
        let boot = report.after.boot.unwrap();
        assert_eq!(boot.kind, BootKind::CrashKernel);
        assert!(boot.crash_flag);
        let teed = *report.after.server(ServerKind::Teed);
        assert_eq!(
            teed.state,
            ServerLineState::Held(DeclineReason::CrashKernel)
        );
        if hard {
            // No shutdown IPC: the crashed world's registrations stay until the next boot.
            assert!(!report.shutdown.unwrap().ipc);
            assert_eq!(report.after.secure.unwrap().registrations, 2);
        } else {
            assert!(report.shutdown.unwrap().is_clean());
            assert_eq!(report.after.secure.unwrap().registrations, 0);
        }
        let mut consumer = TpmConsumer::connect(&stack.paths).unwrap();
        assert_eq!(
            get_random(&mut consumer),
            TpmOutcome::Failed(TpmError::TeeUnavailable)
        );
        // Held is held: no restart, no new generation, however long we wait.
        thread::sleep(Duration::from_millis(1_500));
        let later = *stack.status().server(ServerKind::Teed);
        assert_eq!(later.generation, teed.generation);
        assert_eq!(later.restarts, 0);
        assert!(matches!(later.state, ServerLineState::Held(_)));

        // Out of the crash kernel: teed serves again and reclaimed any leftovers.
        let report = stack.op(ControlRequest::Kexec);
        assert!(!report.after.boot.unwrap().crash_flag);
        assert_eq!(
            report.after.server(ServerKind::Teed).state,
            ServerLineState::Ready
        );
        assert_no_leaks(&report.after);
        tpm_works(&stack);
    }
}

#[test]
fn reboot_resets_the_secure_world_and_down_leaves_it_empty() {
    let stack = LiveStack::up("reboot");
    tpm_works(&stack);
    let resets = stack.status().secure.unwrap().resets;
    let report = stack.op(ControlRequest::Reboot);
    assert!(report.shutdown.unwrap().is_clean());
    assert_eq!(report.after.boot.unwrap().kind, BootKind::Reset);
    assert_eq!(report.after.secure.unwrap().resets, resets + 1);
    assert_no_leaks(&report.after);
    tpm_works(&stack);

    let pids: Vec<u32> = report.after.servers.iter().filter_map(|l| l.pid).collect();
    let start = Instant::now();
    let down = stack.down().unwrap();
    assert!(down.shutdown.unwrap().is_clean());
    assert!(down.after.secure.unwrap().is_quiescent(), "{down:?}");
    for pid in pids {
        assert!(
            !teectl::stack::is_running(pid),
            "server {pid} outlived down"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(15));
}
