//! `teectl demo`: the whole lifecycle on a fresh stack, with a report of what the secure world
//! holds after every step and a verdict.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tee_proto::control::{ControlRequest, OpReport, ServerLineState, StackStatus};
use tee_proto::lifecycle::{BootInfo, ServerKind};
use tee_proto::secure::SecureStats;
use tee_proto::tpm::TpmError;

use crate::args::DemoArgs;
use crate::bnxt::BnxtDriver;
use crate::soak::leaks;
use crate::stack::{self, Control, Daemons};
use crate::tpm::{self, TpmConsumer, TpmOutcome};
use crate::{show, CliError, Output};
use teesys_root::StatePaths;

/// One line of the lifecycle report.
#[derive(Debug, Clone, Serialize)]
pub struct DemoStep {
    pub step: String,
    pub took_ms: u64,
    pub boot: Option<BootInfo>,
    pub secure: Option<SecureStats>,
    /// For a kexec, crash or reboot: what the secure world still held when the old world was
    /// gone and the next had not booted yet.
    pub left_at_transition: Option<SecureStats>,
    pub note: String,
    pub problems: Vec<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DemoReport {
    pub state_dir: PathBuf,
    pub steps: Vec<DemoStep>,
    /// The lifecycle picture the demo wrote at its end (`teectl report`'s SVG).
    pub lifecycle_report: Option<PathBuf>,
    pub passed: bool,
}

/// Kexec cycles the demo times for its lifecycle picture.
const REPORT_KEXECS: u32 = 20;

struct Demo {
    paths: StatePaths,
    output: Output,
    report: DemoReport,
    /// Steps already printed.
    printed: usize,
}

fn step_line(step: &DemoStep) -> String {
    let cells = show::step_cells(step.left_at_transition, step.secure, &step.problems);
    format!(
        "{:<30} {:>6} ms  {:<34} {:<26} {:<44} {} {}",
        step.step,
        step.took_ms,
        show::boot(step.boot),
        cells.left,
        cells.secure,
        cells.verdict,
        step.note
    )
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Demo {
    /// Adds a step; it is printed once the next step begins (or at the end), so checks made
    /// right after it still show on its line.
    fn record(&mut self, step: DemoStep) {
        self.flush();
        self.report.steps.push(step);
    }

    /// Prints every step not printed yet.
    fn flush(&mut self) {
        if self.output.json {
            return;
        }
        for step in &self.report.steps[self.printed..] {
            say!("{}", step_line(step));
        }
        self.printed = self.report.steps.len();
    }

    fn status(&self) -> Option<StackStatus> {
        Control::connect(&self.paths)
            .and_then(|mut control| control.status())
            .ok()
    }

    /// A step whose outcome is a status: checked for leaks when `orderly`.
    fn record_status(
        &mut self,
        step: &str,
        took: Duration,
        status: &StackStatus,
        note: String,
        orderly: bool,
    ) {
        let problems = if orderly { leaks(status) } else { Vec::new() };
        self.record(DemoStep {
            step: step.into(),
            took_ms: ms(took),
            boot: status.boot,
            secure: status.secure,
            left_at_transition: None,
            note,
            problems,
        });
    }

    fn op(&mut self, step: &str, request: ControlRequest) -> Result<OpReport, CliError> {
        let report = Control::connect(&self.paths)?.op(request)?;
        let mut problems = Vec::new();
        if report.outcome != tee_proto::control::OpOutcome::Completed {
            problems.push("timed out".to_string());
        }
        if let Some(summary) = &report.shutdown {
            if summary.ipc && !summary.is_clean() {
                problems.push(format!(
                    "shutdown IPC not clean: {}",
                    show::shutdown(summary).trim()
                ));
            }
        }
        let crash_boot = matches!(request, ControlRequest::Crash { .. });
        if !crash_boot {
            problems.extend(leaks(&report.after));
        }
        // Everything but a hard crash runs the shutdown IPC: nothing may be left behind. Out of a
        // crash kernel (teed declined there) the crashed world's leftovers are still held; the
        // next probe reclaims them from the journal.
        let hard_crash = matches!(request, ControlRequest::Crash { hard: true });
        let from_crash_kernel = self
            .report
            .steps
            .last()
            .and_then(|step| step.boot)
            .is_some_and(|boot| boot.crash_flag);
        if let Some(left) = report
            .left_at_transition
            .filter(|_| !hard_crash && !from_crash_kernel)
        {
            if left.registrations + left.sessions + left.cached_buffers > 0 {
                problems.push(format!(
                    "left {} registrations, {} sessions, {} cached buffers at the transition",
                    left.registrations, left.sessions, left.cached_buffers
                ));
            }
        }
        let acks = report.shutdown.map_or(String::new(), |summary| {
            let acked = summary
                .servers
                .iter()
                .filter(|line| {
                    matches!(line.verdict, tee_proto::control::ShutdownVerdict::Acked(_))
                })
                .count();
            format!("{acked}/3 shutdown acks")
        });
        self.record(DemoStep {
            step: step.into(),
            took_ms: report.took_ms,
            boot: report.after.boot,
            secure: report.after.secure,
            left_at_transition: report.left_at_transition,
            note: acks,
            problems,
        });
        Ok(report)
    }

    /// A TPM command; `expect_ok` says whether a TPM answer is the expected outcome.
    fn tpm(&mut self, step: &str, command: &[u8]) -> Result<TpmOutcome, CliError> {
        let start = Instant::now();
        let outcome = TpmConsumer::connect(&self.paths)?.send(command)?;
        let took = start.elapsed();
        let note = match &outcome {
            TpmOutcome::Answer(answer) if answer.rc == 0 => "TPM_RC_SUCCESS".to_string(),
            TpmOutcome::Answer(answer) => format!("TPM rc {:#x}", answer.rc),
            TpmOutcome::Failed(error) => format!("tpmd: {error}"),
        };
        let status = self.status();
        self.record(DemoStep {
            step: step.into(),
            took_ms: ms(took),
            boot: status.and_then(|s| s.boot),
            secure: status.and_then(|s| s.secure),
            left_at_transition: None,
            note,
            problems: Vec::new(),
        });
        Ok(outcome)
    }

    fn fail_last(&mut self, problem: String) {
        if let Some(step) = self.report.steps.last_mut() {
            step.problems.push(problem);
        }
    }

    /// Startup then GetRandom must succeed. The fTPM TA started the TPM itself (fTPM.c
    /// TA_CreateEntryPoint), so Startup usually answers TPM_RC_INITIALIZE, "already started".
    fn tpm_works(&mut self, label: &str) -> Result<(), CliError> {
        let started = self.tpm(&format!("{label}: tpm startup"), &tpm::startup_clear())?;
        if !matches!(started, TpmOutcome::Answer(ref a) if a.rc == 0 || a.rc == tpm::TPM_RC_INITIALIZE)
        {
            self.fail_last("TPM2_Startup failed".into());
        }
        let random = self.tpm(&format!("{label}: tpm getrandom"), &tpm::get_random(16))?;
        match random {
            TpmOutcome::Answer(answer) if answer.rc == 0 => {
                if tpm::random_bytes(&answer).map(|b| b.len()) != Some(16) {
                    self.fail_last("GetRandom returned the wrong length".into());
                }
            }
            _ => self.fail_last("GetRandom failed".into()),
        }
        Ok(())
    }

    fn run(&mut self, args: &DemoArgs) -> Result<Option<Daemons>, CliError> {
        let start = Instant::now();
        let (daemons, status) =
            stack::up(&self.paths, args.ram_size, false, Duration::from_secs(60))?;
        self.record_status("up", start.elapsed(), &status, "cold boot".into(), true);

        self.tpm_works("boot 1")?;
        let pcr = self.tpm("tpm pcrread 0", &tpm::pcr_read_sha256(0))?;
        if !matches!(pcr, TpmOutcome::Answer(ref a) if a.rc == 0 && tpm::first_digest(a).map(|d| d.len()) == Some(32))
        {
            self.fail_last("PCR_Read gave no SHA-256 digest".into());
        }

        let start = Instant::now();
        let mut nic = BnxtDriver::connect(&self.paths)?;
        let loaded = nic.load();
        let status = self.status();
        self.record(DemoStep {
            step: "bnxt load".into(),
            took_ms: ms(start.elapsed()),
            boot: status.and_then(|s| s.boot),
            secure: status.and_then(|s| s.secure),
            left_at_transition: None,
            note: "firmware fast-booted".into(),
            problems: loaded.err().map(|e| e.to_string()).into_iter().collect(),
        });
        let dump = nic.coredump()?;
        let status = self.status();
        let mut problems = Vec::new();
        if !dump.matches() {
            problems.push(format!(
                "checksum {:#018x} differs from the image's {:?}",
                dump.checksum, dump.expected
            ));
        }
        self.record(DemoStep {
            step: "bnxt coredump".into(),
            took_ms: ms(dump.took),
            boot: status.and_then(|s| s.boot),
            secure: status.and_then(|s| s.secure),
            left_at_transition: None,
            note: format!(
                "{} MiB, fnv1a {:#018x}",
                dump.bytes.len() >> 20,
                dump.checksum
            ),
            problems,
        });

        for cycle in 1..=3 {
            self.op(&format!("kexec {cycle}/3"), ControlRequest::Kexec)?;
            self.tpm_works(&format!("after kexec {cycle}"))?;
        }

        let crash = self.op("crash (best effort)", ControlRequest::Crash { hard: false })?;
        let teed = crash.after.server(ServerKind::Teed);
        if !matches!(teed.state, ServerLineState::Held(_)) {
            self.fail_last(format!(
                "teed is {} in the crash kernel",
                show::state(teed.state)
            ));
        }
        let refused = self.tpm("crash boot: tpm getrandom", &tpm::get_random(16))?;
        if refused != TpmOutcome::Failed(TpmError::TeeUnavailable) {
            self.fail_last("expected `TEE unavailable` in the crash kernel".into());
        } else if let Some(step) = self.report.steps.last_mut() {
            step.note.push_str(" (expected)");
        }

        self.op("kexec out of the crash kernel", ControlRequest::Kexec)?;
        self.tpm_works("after crash")?;

        // Beyond Linux: a crash with no shutdown IPC at all leaves the fTPM session and both
        // buffers in the secure world; the journal lets the next normal boot reclaim them.
        let hard = self.op(
            "crash --hard (no shutdown IPC)",
            ControlRequest::Crash { hard: true },
        )?;
        let left = hard
            .left_at_transition
            .map_or(0, |s| s.registrations + s.sessions);
        if let Some(step) = self.report.steps.last_mut() {
            step.note = format!("{left} left behind (expected)");
        }
        self.op("kexec back: journal reclaims", ControlRequest::Kexec)?;
        self.tpm_works("after hard crash")?;

        let before = self.status().and_then(|s| s.secure).map_or(0, |s| s.resets);
        let reboot = self.op("reboot (machine reset)", ControlRequest::Reboot)?;
        let after = reboot.after.secure.map_or(0, |s| s.resets);
        if after != before + 1 {
            self.fail_last(format!("secure world resets {before} -> {after}"));
        }
        self.tpm_works("after reboot")?;

        let killed = self.op("kill -9 teed", ControlRequest::Kill(ServerKind::Teed))?;
        let teed = killed.after.server(ServerKind::Teed);
        let note = format!(
            "teed back as generation {} ({})",
            teed.generation,
            show::state(teed.state)
        );
        if let Some(step) = self.report.steps.last_mut() {
            step.note = note;
        }
        self.transparent_recovery()?;
        self.lifecycle_report()?;
        Ok(Some(daemons))
    }

    /// The lifecycle picture: the simulated seed and mainline panels, and kexec cycles of this
    /// demo's own stack.
    fn lifecycle_report(&mut self) -> Result<(), CliError> {
        let start = Instant::now();
        let path = self.paths.dir().join("lifecycle.svg");
        let failed = |e: crate::report::ReportError| CliError::Failed(e.to_string());
        let mut data = crate::report::simulate().map_err(failed)?;
        let mut control = Control::connect(&self.paths)?;
        data.kexec_ms = crate::report::time_kexecs(&mut control, REPORT_KEXECS)?;
        crate::report::write(&path, &data).map_err(failed)?;
        let mut problems = Vec::new();
        if data.linux_5_13.failed_at != Some(4) {
            problems.push(format!(
                "Linux 5.13 failed at kexec {:?}, not the 4th",
                data.linux_5_13.failed_at
            ));
        }
        if data.teesys.failed_at.is_some() || data.teesys_4x.failed_at.is_some() {
            problems.push("teesys failed a kexec in the simulator".into());
        }
        let mut sorted = data.kexec_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        let status = self.status();
        if let Some(status) = &status {
            problems.extend(leaks(status));
        }
        self.report.lifecycle_report = Some(path.clone());
        self.record(DemoStep {
            step: "lifecycle report".into(),
            took_ms: ms(start.elapsed()),
            boot: status.and_then(|s| s.boot),
            secure: status.and_then(|s| s.secure),
            left_at_transition: None,
            note: format!(
                "{} ({REPORT_KEXECS} kexecs, median {median:.1} ms)",
                path.display()
            ),
            problems,
        });
        Ok(())
    }

    /// After a teed restart the TPM consumer sees at most one retryable error.
    fn transparent_recovery(&mut self) -> Result<(), CliError> {
        let start = Instant::now();
        let mut retryable = 0;
        let mut answered = false;
        let mut consumer = TpmConsumer::connect(&self.paths)?;
        for _ in 0..5 {
            match consumer.send(&tpm::get_random(16))? {
                TpmOutcome::Answer(answer) if answer.rc == 0 => {
                    answered = true;
                    break;
                }
                TpmOutcome::Answer(answer) if answer.rc == tpm::TPM_RC_RETRY => retryable += 1,
                TpmOutcome::Failed(error) if error.is_retryable() => retryable += 1,
                _ => break,
            }
        }
        let status = self.status();
        let mut problems = Vec::new();
        if !answered {
            problems.push("the TPM consumer did not recover".into());
        }
        if retryable > 1 {
            problems.push(format!("{retryable} retryable errors (at most 1 allowed)"));
        }
        if let Some(status) = &status {
            problems.extend(leaks(status));
        }
        self.record(DemoStep {
            step: "tpm after teed restart".into(),
            took_ms: ms(start.elapsed()),
            boot: status.and_then(|s| s.boot),
            secure: status.and_then(|s| s.secure),
            left_at_transition: None,
            note: format!("{retryable} retryable error(s), then answered"),
            problems,
        });
        Ok(())
    }
}

/// The default demo directory: beside the binaries, so `cargo clean` removes it.
fn default_dir() -> Result<PathBuf, CliError> {
    let exe = std::env::current_exe().map_err(|source| CliError::Io {
        what: "locate teectl".into(),
        source,
    })?;
    Ok(exe.parent().map_or_else(
        || PathBuf::from("teesys-demo"),
        |dir| dir.join("teesys-demo"),
    ))
}

pub fn demo(args: &DemoArgs, output: Output) -> Result<bool, CliError> {
    let dir = match &args.demo_dir {
        Some(dir) => dir.clone(),
        None => default_dir()?,
    };
    let paths = StatePaths::new(&dir);
    // A fresh stack: stop a leftover demo, then start from empty state.
    let _ = stack::down(&paths);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| CliError::Io {
            what: format!("clear {}", dir.display()),
            source,
        })?;
    }
    if !output.json {
        say!("teesys demo in {}", dir.display());
        say!(
            "{:<30} {:>9}  {:<34} {:<26} {:<44} verdict",
            "step",
            "took",
            "boot",
            "left at transition",
            "secure world afterwards"
        );
    }
    let mut demo = Demo {
        paths: paths.clone(),
        output,
        report: DemoReport {
            state_dir: dir.clone(),
            ..DemoReport::default()
        },
        printed: 0,
    };
    let outcome = demo.run(args);
    let mut errors = Vec::new();
    let daemons = match outcome {
        Ok(daemons) => daemons,
        Err(error) => {
            errors.push(error.to_string());
            None
        }
    };
    if !args.keep {
        let start = Instant::now();
        match stack::down(&paths) {
            Ok(down) => {
                let report = down.report;
                let mut problems = Vec::new();
                if let Some(summary) = report.as_ref().and_then(|r| r.shutdown) {
                    if !summary.is_clean() {
                        problems.push("final shutdown IPC not clean".into());
                    }
                }
                // With every server gone, anything left in the secure world is a leak.
                if let Some(secure) = report.as_ref().and_then(|r| r.after.secure) {
                    if !secure.is_quiescent() {
                        problems.push(format!("the secure world still holds {secure:?}"));
                    }
                }
                demo.record(DemoStep {
                    step: "down".into(),
                    took_ms: ms(start.elapsed()),
                    boot: report.as_ref().and_then(|r| r.after.boot),
                    secure: report.as_ref().and_then(|r| r.after.secure),
                    left_at_transition: None,
                    note: "stack stopped".into(),
                    problems,
                });
            }
            Err(error) => errors.push(format!("down: {error}")),
        }
        if let Some(mut daemons) = daemons {
            // teectl started them, so it reaps them.
            let _ = daemons.init.wait();
            let _ = daemons.secure_world.wait();
        }
    }
    demo.flush();
    let problems: usize = demo.report.steps.iter().map(|s| s.problems.len()).sum();
    demo.report.passed = problems == 0 && errors.is_empty();
    if output.json {
        output.json_line(&demo.report);
    } else {
        for error in &errors {
            say!("error: {error}");
        }
        say!(
            "demo: {} ({} steps, {} problem(s), {} error(s))",
            if demo.report.passed { "PASS" } else { "FAIL" },
            demo.report.steps.len(),
            problems,
            errors.len()
        );
    }
    Ok(demo.report.passed)
}
