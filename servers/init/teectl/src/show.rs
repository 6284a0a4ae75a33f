//! Human-readable renderings of the control protocol's reports.

use std::fmt::Write;

use tee_proto::control::{
    OpKind, OpOutcome, OpReport, ServerLine, ServerLineState, ShutdownSummary, ShutdownVerdict,
    StackPhase, StackStatus, TransitionKind,
};
use tee_proto::lifecycle::{BootInfo, BootKind};
use tee_proto::secure::SecureStats;

use crate::stack::server_name;

pub fn phase(phase: StackPhase) -> String {
    match phase {
        StackPhase::Idle => "idle".into(),
        StackPhase::Booting => "booting".into(),
        StackPhase::Running => "running".into(),
        StackPhase::ShuttingDown => "shutting down".into(),
        StackPhase::Down(transition) => format!("down ({})", transition_name(transition)),
    }
}

fn transition_name(transition: TransitionKind) -> &'static str {
    match transition {
        TransitionKind::Kexec => "kexec",
        TransitionKind::Reset => "reset",
        TransitionKind::EnterCrashKernel => "crash kernel",
    }
}

pub fn boot(boot: Option<BootInfo>) -> String {
    match boot {
        None => "no boot yet".into(),
        Some(boot) => {
            let kind = match boot.kind {
                BootKind::Cold => "cold",
                BootKind::Kexec => "kexec",
                BootKind::CrashKernel => "crash kernel",
                BootKind::Reset => "reset",
            };
            let flag = if boot.crash_flag { ", crash flag" } else { "" };
            format!("boot {} ({kind}{flag})", boot.boot_id)
        }
    }
}

pub fn state(state: ServerLineState) -> String {
    match state {
        ServerLineState::NotStarted => "not started".into(),
        ServerLineState::Starting => "starting".into(),
        ServerLineState::Ready => "ready".into(),
        ServerLineState::Held(reason) => format!("held: declined ({reason:?})"),
        ServerLineState::RestartPending => "restart pending".into(),
        ServerLineState::GivenUp => "given up".into(),
        ServerLineState::ShuttingDown => "shutting down".into(),
        ServerLineState::Quiesced => "quiesced".into(),
        ServerLineState::Stopped => "stopped".into(),
    }
}

fn server_line(line: &ServerLine) -> String {
    let pid = line.pid.map_or("-".into(), |pid| pid.to_string());
    let holds = line.holds.map_or("-".into(), |h| {
        format!(
            "{} session(s), {} shm ({} KiB){}",
            h.sessions,
            h.registrations,
            h.registered_bytes / 1024,
            if h.tee_unavailable {
                "  TEE UNAVAILABLE: secure world out of reach"
            } else {
                ""
            }
        )
    });
    format!(
        "  {:<6} gen {:<4} {:<28} pid {:<8} restarts {}+{}  holds {}",
        server_name(line.kind),
        line.generation,
        state(line.state),
        pid,
        line.restarts,
        line.operator_restarts,
        holds
    )
}

/// The cells of a lifecycle table's row that the hosted demo and the QEMU scenario share:
/// what a transition left in the secure world, what it holds now, and the verdict.
pub struct StepCells {
    pub left: String,
    pub secure: String,
    pub verdict: String,
}

pub fn step_cells(
    left: Option<SecureStats>,
    secure: Option<SecureStats>,
    problems: &[String],
) -> StepCells {
    StepCells {
        left: left.map_or("-".into(), |s| {
            format!(
                "{} reg, {} sess, {} cached",
                s.registrations, s.sessions, s.cached_buffers
            )
        }),
        secure: secure.map_or("secure world ?".into(), |s| {
            format!(
                "{} reg ({} KiB), {} sess, heap {}/{} B",
                s.registrations,
                s.registered_bytes / 1024,
                s.sessions,
                s.heap_used,
                s.heap_capacity
            )
        }),
        verdict: if problems.is_empty() {
            "ok".into()
        } else {
            format!("FAIL: {}", problems.join("; "))
        },
    }
}

pub fn secure(stats: Option<SecureStats>) -> String {
    match stats {
        None => "  secure world: not answering".into(),
        Some(s) => format!(
            "  secure world: {} registration(s) ({} KiB), {} session(s), heap {}/{} B, \
             threads {} free/{} active/{} suspended, cache {} ({} buffer(s)), {} SMCs, {} reset(s)",
            s.registrations,
            s.registered_bytes / 1024,
            s.sessions,
            s.heap_used,
            s.heap_capacity,
            s.threads_free,
            s.threads_active,
            s.threads_suspended,
            if s.cache_enabled { "on" } else { "off" },
            s.cached_buffers,
            s.smcs,
            s.resets
        ),
    }
}

pub fn status(status: &StackStatus) -> String {
    let mut out = format!(
        "stack {}, {}{}, up {} ms\n",
        phase(status.phase),
        boot(status.boot),
        if status.crash_flag {
            ", next boot inherits the crash flag"
        } else {
            ""
        },
        status.uptime_ms
    );
    for line in &status.servers {
        let _ = writeln!(out, "{}", server_line(line));
    }
    out.push_str(&secure(status.secure));
    out
}

pub fn op(op: OpKind) -> String {
    match op {
        OpKind::Kexec => "kexec".into(),
        OpKind::Reboot => "reboot".into(),
        OpKind::Crash { hard: false } => "crash".into(),
        OpKind::Crash { hard: true } => "crash --hard".into(),
        OpKind::Restart(kind) => format!("restart {}", server_name(kind)),
        OpKind::Kill(kind) => format!("kill {}", server_name(kind)),
        OpKind::Down => "down".into(),
    }
}

fn verdict(verdict: ShutdownVerdict) -> String {
    match verdict {
        ShutdownVerdict::Acked(r) => format!(
            "acked ({} unregistered, {} session(s) closed, {} cache buffer(s) freed, {} error(s))",
            r.unregistered, r.sessions_closed, r.cache_buffers_freed, r.errors
        ),
        ShutdownVerdict::Refused(error) => format!("refused: {error}"),
        ShutdownVerdict::Exited => "exited before acking".into(),
        ShutdownVerdict::DeadlineExpired => "deadline expired".into(),
        ShutdownVerdict::Abandoned => "abandoned (hard crash)".into(),
        ShutdownVerdict::SkippedNotRunning => "skipped: not running".into(),
        ShutdownVerdict::SkippedDeclined => "skipped: declined this boot".into(),
        ShutdownVerdict::SkippedNoIpc => "skipped: no shutdown IPC".into(),
        ShutdownVerdict::Pending => "no answer".into(),
    }
}

pub fn shutdown(summary: &ShutdownSummary) -> String {
    let mut out = format!(
        "  shutdown IPC ({:?}{}{}): {}\n",
        summary.reason,
        if summary.ipc { "" } else { ", none sent" },
        if summary.escalated_to_crash {
            ", a crash took over"
        } else {
            ""
        },
        summary
            .took_ms
            .map_or("unfinished".into(), |ms| format!("{ms} ms"))
    );
    for line in &summary.servers {
        let took = line
            .took_ms
            .map_or(String::new(), |ms| format!(" in {ms} ms"));
        let _ = writeln!(
            out,
            "    {:<6} {}{}",
            server_name(line.kind),
            verdict(line.verdict),
            took
        );
    }
    out
}

pub fn report(report: &OpReport) -> String {
    let outcome = match report.outcome {
        OpOutcome::Completed => "done",
        OpOutcome::TimedOut => "TIMED OUT",
    };
    let mut out = format!("{} {outcome} in {} ms\n", op(report.op), report.took_ms);
    if let Some(summary) = &report.shutdown {
        out.push_str(&shutdown(summary));
    }
    out.push_str(&status(&report.after));
    out
}

/// One line per operation, for loops (`kexec --cycles`, soaks).
pub fn progress(label: &str, report: &OpReport) -> String {
    let secure = report.after.secure;
    format!(
        "{label}: {} in {} ms, {}, {} registration(s), {} session(s), heap {} B",
        match report.outcome {
            OpOutcome::Completed => "done",
            OpOutcome::TimedOut => "TIMED OUT",
        },
        report.took_ms,
        boot(report.after.boot),
        secure.map_or(0, |s| s.registrations),
        secure.map_or(0, |s| s.sessions),
        secure.map_or(0, |s| s.heap_used),
    )
}
