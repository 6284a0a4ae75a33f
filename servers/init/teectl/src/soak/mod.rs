//! Long runs against a live stack, with the invariant that matters checked after every orderly
//! step: the secure world holds nothing the live servers do not. The chaos soak also runs live
//! consumers through the chaos ([`live`]): TPM and NIC traffic whose every answer is checked,
//! an NV counter that must not lose an acknowledged increment, and flat descriptor and memory
//! figures for the long-lived processes.

mod chaos;
pub mod checks;
mod consumers;
pub mod live;
pub mod procs;
pub mod report;
mod rng;
mod traffic;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tee_proto::control::{ControlRequest, OpOutcome, OpReport, ServerLineState, StackStatus};
use tee_proto::lifecycle::ServerKind;

use crate::stack::Control;
use crate::{show, CliError, Output};
pub use chaos::soak_chaos;
use chaos::LIVE_RECHECK_LIMIT;
use live::LiveReport;

/// Heap the secure world may use beyond the first settled boot's figure before it counts as a
/// leak: a cached RPC buffer or two, never a registration's page list (8 KiB for 4 MiB).
const HEAP_SLACK_BYTES: u32 = 1024;

/// What a settled, orderly booted stack must satisfy; one message per violation. teed's books
/// are the live servers' holdings: it registers and opens on its clients' behalf, and a client's
/// own view may lag (after a teed restart it learns on its next request that the new teed
/// reclaimed everything).
pub fn leaks(status: &StackStatus) -> Vec<String> {
    let mut found = Vec::new();
    let Some(secure) = status.secure else {
        return vec!["the secure world did not answer".into()];
    };
    let teed = status.server(ServerKind::Teed);
    if teed.state != ServerLineState::Ready {
        found.push(format!("teed is {}", show::state(teed.state)));
        return found;
    }
    let Some(teed_holds) = teed.holds else {
        return vec!["teed did not report what it holds".into()];
    };
    if secure.registrations != teed_holds.registrations {
        found.push(format!(
            "the secure world holds {} registration(s), teed {}",
            secure.registrations, teed_holds.registrations
        ));
    }
    if secure.registered_bytes != teed_holds.registered_bytes {
        found.push(format!(
            "the secure world holds {} registered bytes, teed {}",
            secure.registered_bytes, teed_holds.registered_bytes
        ));
    }
    if secure.sessions != teed_holds.sessions {
        found.push(format!(
            "the secure world holds {} session(s), teed {}",
            secure.sessions, teed_holds.sessions
        ));
    }
    if secure.threads_suspended != 0 {
        found.push(format!(
            "{} secure thread(s) suspended in an RPC",
            secure.threads_suspended
        ));
    }
    found
}

/// The result of one soak, also the JSON document `--json` prints.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SoakSummary {
    pub steps: u32,
    pub kexecs: u32,
    pub reboots: u32,
    pub crashes: u32,
    pub kills: u32,
    /// Kills the chaos driver turned into kexecs to stay within init's restart budget.
    pub kills_turned_kexec: u32,
    pub restarts: u32,
    pub invariant_checks: u32,
    pub leaks: Vec<String>,
    pub errors: Vec<String>,
    /// The lowest and highest secure heap use seen after a checked step.
    pub heap_min: Option<u32>,
    pub heap_max: Option<u32>,
    pub took_ms: u64,
    /// Extra status snapshots taken because a step's own snapshot caught live traffic in
    /// flight (see [`LIVE_RECHECK_LIMIT`]).
    pub rechecks: u32,
    /// The live consumers' figures (chaos soak with consumers).
    pub live: Option<LiveReport>,
    /// Heap use first seen per holding (registrations, sessions, registered bytes): the same
    /// holdings must cost the same heap every time, or something leaked.
    #[serde(skip)]
    heap_by_holdings: BTreeMap<(u32, u32, u64), u32>,
}

impl SoakSummary {
    pub fn passed(&self) -> bool {
        self.leaks.is_empty()
            && self.errors.is_empty()
            && self.live.as_ref().is_none_or(LiveReport::passed)
    }

    /// Checks a report of an orderly step; `label` names the step in messages.
    fn check(&mut self, label: &str, report: &OpReport) {
        // Without a control connection there is nothing to recheck with: it cannot fail.
        let _ = self.check_with(label, report, None);
    }

    /// [`SoakSummary::check`]; with `recheck`, a snapshot that is not clean is taken again
    /// until one is or [`LIVE_RECHECK_LIMIT`] passed, and only then counts.
    fn check_with(
        &mut self,
        label: &str,
        report: &OpReport,
        recheck: Option<&mut Control>,
    ) -> Result<(), CliError> {
        self.steps += 1;
        if report.outcome == OpOutcome::TimedOut {
            self.errors.push(format!("{label}: timed out"));
            return Ok(());
        }
        if let Some(summary) = &report.shutdown {
            if summary.ipc && !summary.is_clean() {
                self.errors
                    .push(format!("{label}: shutdown IPC not clean: {summary:?}"));
            }
        }
        let mut status = report.after;
        if let Some(control) = recheck {
            let start = Instant::now();
            while !self.findings(&status).is_empty() && start.elapsed() < LIVE_RECHECK_LIMIT {
                std::thread::sleep(Duration::from_millis(100));
                status = control.status()?;
                self.rechecks += 1;
            }
        }
        self.check_status(label, &status);
        Ok(())
    }

    /// What is wrong with a snapshot, the heap measured against the figures seen so far.
    fn findings(&self, status: &StackStatus) -> Vec<String> {
        let mut found = leaks(status);
        if let Some(secure) = status.secure {
            let holdings = (
                secure.registrations,
                secure.sessions,
                secure.registered_bytes,
            );
            if let Some(&baseline) = self.heap_by_holdings.get(&holdings) {
                let heap = secure.heap_used;
                if heap > baseline.saturating_add(HEAP_SLACK_BYTES) {
                    found.push(format!(
                        "secure heap {heap} B, {} B above its first figure for the same holdings",
                        heap - baseline
                    ));
                }
            }
        }
        found
    }

    fn check_status(&mut self, label: &str, status: &StackStatus) {
        self.invariant_checks += 1;
        for leak in self.findings(status) {
            self.leaks.push(format!("{label}: {leak}"));
        }
        let Some(secure) = status.secure else {
            return;
        };
        let heap = secure.heap_used;
        self.heap_min = Some(self.heap_min.map_or(heap, |min| min.min(heap)));
        self.heap_max = Some(self.heap_max.map_or(heap, |max| max.max(heap)));
        let holdings = (
            secure.registrations,
            secure.sessions,
            secure.registered_bytes,
        );
        self.heap_by_holdings.entry(holdings).or_insert(heap);
    }
}

/// One progress line of a soak.
fn progress(output: Output, label: &str, report: &OpReport) {
    if output.json {
        output.json_line(report);
    } else {
        say!("{}", show::progress(label, report));
    }
}

pub fn soak_kexec(
    control: &mut Control,
    cycles: u32,
    output: Output,
) -> Result<SoakSummary, CliError> {
    let start = Instant::now();
    let mut summary = SoakSummary::default();
    for cycle in 1..=cycles {
        let label = format!("kexec {cycle}/{cycles}");
        let report = control.op(ControlRequest::Kexec)?;
        summary.kexecs += 1;
        progress(output, &label, &report);
        summary.check(&label, &report);
    }
    summary.took_ms = elapsed_ms(start);
    Ok(summary)
}

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tee_proto::control::{Holdings, ServerLine, StackPhase};
    use tee_proto::secure::SecureStats;

    fn healthy() -> StackStatus {
        let line = |kind, holds: Holdings| ServerLine {
            kind,
            generation: 1,
            state: ServerLineState::Ready,
            pid: Some(1),
            restarts: 0,
            operator_restarts: 0,
            holds: Some(holds),
        };
        let one = |bytes| Holdings {
            sessions: 1,
            registrations: 1,
            registered_bytes: bytes,
            tee_unavailable: false,
        };
        StackStatus {
            phase: StackPhase::Running,
            boot: None,
            crash_flag: false,
            servers: [
                line(
                    ServerKind::Teed,
                    Holdings {
                        sessions: 2,
                        registrations: 2,
                        registered_bytes: 8192 + (4 << 20),
                        tee_unavailable: false,
                    },
                ),
                line(ServerKind::Tpmd, one(8192)),
                line(ServerKind::Bnxtd, one(4 << 20)),
            ],
            secure: Some(SecureStats {
                registrations: 2,
                registered_bytes: 8192 + (4 << 20),
                sessions: 2,
                heap_used: 20_000,
                heap_capacity: 65_536,
                threads_free: 2,
                ..SecureStats::default()
            }),
            uptime_ms: 0,
            conduit_inode: None,
        }
    }

    #[test]
    fn a_consistent_stack_has_no_leaks() {
        assert_eq!(leaks(&healthy()), Vec::<String>::new());
    }

    #[test]
    fn a_registration_nobody_holds_is_a_leak() {
        let mut status = healthy();
        if let Some(secure) = status.secure.as_mut() {
            secure.registrations = 3;
            secure.registered_bytes += 4 << 20;
        }
        assert_eq!(leaks(&status).len(), 2);
        let mut status = healthy();
        if let Some(secure) = status.secure.as_mut() {
            secure.sessions = 3;
            secure.threads_suspended = 1;
        }
        assert_eq!(leaks(&status).len(), 2);
    }

    #[test]
    fn heap_growth_beyond_the_slack_is_a_leak() {
        let mut summary = SoakSummary::default();
        summary.check_status("one", &healthy());
        let mut grown = healthy();
        if let Some(secure) = grown.secure.as_mut() {
            secure.heap_used += HEAP_SLACK_BYTES;
        }
        summary.check_status("two", &grown);
        assert!(summary.passed());
        if let Some(secure) = grown.secure.as_mut() {
            secure.heap_used += 8 * 1024;
        }
        summary.check_status("three", &grown);
        assert_eq!(summary.leaks.len(), 1);
        assert_eq!(summary.heap_min, Some(20_000));
        // Fewer holdings cost less heap: a new baseline, not a leak.
        let mut fewer = healthy();
        if let Some(secure) = fewer.secure.as_mut() {
            secure.registrations = 0;
            secure.registered_bytes = 0;
            secure.sessions = 0;
            secure.heap_used = 19_000;
        }
        fewer.servers[0].holds = Some(Holdings::default());
        summary.check_status("four", &fewer);
        assert_eq!(summary.leaks.len(), 1);
        assert_eq!(summary.heap_min, Some(19_000));
    }
}
