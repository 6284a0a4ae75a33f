//! The chaos soak's driver: random kills, kexecs, crashes, resets and restarts, with the
//! invariant checked after every orderly step, and live consumers ([`super::live`]) running
//! through them unless asked not to.

use std::time::{Duration, Instant};

use tee_proto::control::{ControlRequest, OpKind, OpOutcome, ServerLineState, StackPhase};
use tee_proto::lifecycle::{BootKind, ServerKind};
use teesys_init::RestartPolicy;
use teesys_root::StatePaths;

use super::live::Live;
use super::rng::Rng;
use super::{elapsed_ms, progress, SoakSummary};
use crate::stack::{server_name, Control};
use crate::{show, CliError, Output};

/// With live consumers, how long a step's invariant may take to hold. Their traffic makes one
/// snapshot racy without anything leaking: a TPM command suspended in its GET_TIME RPC counts
/// as a suspended secure thread, and a client re-registering with a restarted teed shows in
/// teed's books a moment before (or after) the secure world's. Those pass within one request;
/// a leak stays, and is reported from the last snapshot.
pub(super) const LIVE_RECHECK_LIMIT: Duration = Duration::from_secs(3);

/// The longest pause between chaos steps while live consumers run.
const CONSUMER_WINDOW_MS: u64 = 400;

const SERVERS: [ServerKind; 3] = [ServerKind::Teed, ServerKind::Tpmd, ServerKind::Bnxtd];

/// One of every operation before the live soak's first sample: what init and the secure world
/// allocate the first time they do something is not growth.
const WARM_UP_OPS: [ControlRequest; 9] = [
    ControlRequest::Kexec,
    ControlRequest::Reboot,
    ControlRequest::Crash { hard: false },
    ControlRequest::Kexec,
    ControlRequest::Crash { hard: true },
    ControlRequest::Kexec,
    ControlRequest::Kill(ServerKind::Teed),
    ControlRequest::Kill(ServerKind::Tpmd),
    ControlRequest::Restart(ServerKind::Bnxtd),
];

/// The driver's own kills of each server in the current boot. Past `max_restarts` deaths in
/// `window_ms`, init gives a server up for the rest of the boot: its designed answer to a crash
/// loop, with its own tests. A soak that drove a server there would test that instead of
/// recovery (a 600 s soak once killed teed six times in three seconds), so a kill that would
/// leave less than one death of the budget unused, counted over the window plus a second,
/// becomes a kexec, which starts a new boot and a new budget.
struct KillBudget {
    policy: RestartPolicy,
    kills: [Vec<Instant>; 3],
}

impl KillBudget {
    fn new() -> KillBudget {
        KillBudget {
            policy: RestartPolicy::default(),
            kills: Default::default(),
        }
    }

    fn slot(kind: ServerKind) -> usize {
        SERVERS.iter().position(|&k| k == kind).unwrap_or(0)
    }

    /// The request to send instead of `request`, and books it.
    fn admit(&mut self, request: ControlRequest, summary: &mut SoakSummary) -> ControlRequest {
        match request {
            ControlRequest::Kill(kind) => {
                let window = Duration::from_millis(self.policy.window_ms) + Duration::from_secs(1);
                let allowed = usize::try_from(self.policy.max_restarts)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(1);
                let kills = &mut self.kills[KillBudget::slot(kind)];
                kills.retain(|at| at.elapsed() < window);
                if kills.len() < allowed {
                    kills.push(Instant::now());
                    return request;
                }
                summary.kills_turned_kexec += 1;
                self.new_boot();
                ControlRequest::Kexec
            }
            ControlRequest::Kexec | ControlRequest::Reboot | ControlRequest::Crash { .. } => {
                self.new_boot();
                request
            }
            other => other,
        }
    }

    fn new_boot(&mut self) {
        for kills in &mut self.kills {
            kills.clear();
        }
    }
}

fn in_crash_kernel(control: &mut Control) -> Result<bool, CliError> {
    Ok(control
        .status()?
        .boot
        .is_some_and(|boot| boot.kind == BootKind::CrashKernel))
}

/// Random kills, kexecs, crashes, resets and restarts for `seconds`; with `consumers`, live
/// TPM and NIC traffic runs through them (see [`super::live`]).
pub fn soak_chaos(
    control: &mut Control,
    paths: &StatePaths,
    seconds: u64,
    seed: u64,
    consumers: bool,
    output: Output,
) -> Result<SoakSummary, CliError> {
    let start = Instant::now();
    let mut summary = SoakSummary::default();
    let mut budget = KillBudget::new();
    let live = if consumers {
        for request in WARM_UP_OPS {
            // Out of a crash kernel only by kexec.
            let request = if in_crash_kernel(control)? {
                ControlRequest::Kexec
            } else {
                request
            };
            step(control, &mut summary, request, "warm-up", false, output)?;
        }
        if in_crash_kernel(control)? {
            step(
                control,
                &mut summary,
                ControlRequest::Kexec,
                "warm-up",
                false,
                output,
            )?;
        }
        Some(Live::begin(control, paths, seed)?)
    } else {
        None
    };
    let chaos = chaos_steps(
        control,
        seconds,
        seed,
        consumers,
        &mut summary,
        &mut budget,
        output,
    );
    // Stopped before anything can fail the soak: no consumer outlives its report.
    let stopped = live.map(Live::stop);
    chaos?;
    // End in a normal boot, so the last check covers what a final crash left behind too.
    if in_crash_kernel(control)? {
        step(
            control,
            &mut summary,
            ControlRequest::Kexec,
            "final",
            false,
            output,
        )?;
    }
    summary.live = stopped.map(|stopped| stopped.report(control));
    summary.took_ms = elapsed_ms(start);
    Ok(summary)
}

/// The chaos driver. With live consumers it pauses up to [`CONSUMER_WINDOW_MS`] between
/// steps, so the consumers also meet a settled stack, not only one in transition.
fn chaos_steps(
    control: &mut Control,
    seconds: u64,
    seed: u64,
    consumers: bool,
    summary: &mut SoakSummary,
    budget: &mut KillBudget,
    output: Output,
) -> Result<(), CliError> {
    let start = Instant::now();
    let limit = Duration::from_secs(seconds);
    let mut rng = Rng(seed);
    let mut number = 0u32;
    while start.elapsed() < limit {
        number += 1;
        // Out of the crash kernel only by kexec, as on a real machine.
        let request = if in_crash_kernel(control)? {
            ControlRequest::Kexec
        } else {
            match rng.below(100) {
                0..=39 => ControlRequest::Kill(SERVERS[rng.below(3) as usize]),
                40..=64 => ControlRequest::Kexec,
                65..=74 => ControlRequest::Reboot,
                75..=89 => ControlRequest::Crash {
                    hard: rng.below(2) == 0,
                },
                _ => ControlRequest::Restart(SERVERS[rng.below(3) as usize]),
            }
        };
        let request = budget.admit(request, summary);
        let label = format!("step {number}");
        step(control, summary, request, &label, consumers, output)?;
        if consumers {
            std::thread::sleep(Duration::from_millis(rng.below(CONSUMER_WINDOW_MS)));
        }
    }
    Ok(())
}

/// Runs one operation and checks what it left; `live` rechecks a snapshot that live traffic
/// may have caught in flight.
fn step(
    control: &mut Control,
    summary: &mut SoakSummary,
    request: ControlRequest,
    name: &str,
    live: bool,
    output: Output,
) -> Result<(), CliError> {
    let leaving_crash_kernel = request == ControlRequest::Kexec && in_crash_kernel(control)?;
    let report = control.op(request)?;
    let label = format!("{name} ({})", show::op(report.op));
    progress(output, &label, &report);
    match report.op {
        OpKind::Kill(kind) => {
            summary.kills += 1;
            // Holdings settle once the restarted incarnation is ready: teed reclaims a
            // dead client's, a new teed its predecessor's.
            if report.after.phase == StackPhase::Running {
                summary.check_with(&label, &report, live.then_some(control))?;
            } else {
                summary.steps += 1;
            }
            tracing::debug!(server = server_name(kind), "killed");
        }
        OpKind::Restart(_) => {
            summary.restarts += 1;
            summary.check_with(&label, &report, live.then_some(control))?;
        }
        OpKind::Kexec if leaving_crash_kernel => {
            // Leaving the crash kernel: the new teed's journal reclaims what the crashed
            // world left, so the invariant holds again.
            summary.kexecs += 1;
            summary.check_with(&label, &report, live.then_some(control))?;
        }
        OpKind::Kexec | OpKind::Reboot => {
            if report.op == OpKind::Kexec {
                summary.kexecs += 1;
            } else {
                summary.reboots += 1;
            }
            summary.check_with(&label, &report, live.then_some(control))?;
        }
        OpKind::Crash { .. } => {
            summary.crashes += 1;
            summary.steps += 1;
            if report.outcome == OpOutcome::TimedOut {
                summary.errors.push(format!("{label}: timed out"));
            }
            let teed = report.after.server(ServerKind::Teed);
            if !matches!(teed.state, ServerLineState::Held(_)) || teed.restarts != 0 {
                summary.errors.push(format!(
                    "{label}: teed did not decline once in the crash kernel"
                ));
            }
        }
        OpKind::Down => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_stay_within_inits_restart_budget() {
        let mut budget = KillBudget::new();
        let mut summary = SoakSummary::default();
        let teed = ControlRequest::Kill(ServerKind::Teed);
        let allowed = RestartPolicy::default().max_restarts - 1;
        for _ in 0..allowed {
            assert_eq!(budget.admit(teed, &mut summary), teed);
        }
        // Another server has its own budget.
        let tpmd = ControlRequest::Kill(ServerKind::Tpmd);
        assert_eq!(budget.admit(tpmd, &mut summary), tpmd);
        // One more teed kill would leave init no margin: a kexec, and a new boot's budget.
        assert_eq!(budget.admit(teed, &mut summary), ControlRequest::Kexec);
        assert_eq!(summary.kills_turned_kexec, 1);
        assert_eq!(budget.admit(teed, &mut summary), teed);
        let reboot = ControlRequest::Reboot;
        assert_eq!(budget.admit(reboot, &mut summary), reboot);
        for _ in 1..allowed {
            assert_eq!(budget.admit(teed, &mut summary), teed);
        }
    }
}
