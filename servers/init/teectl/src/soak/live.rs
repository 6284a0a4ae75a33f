//! The chaos soak with live consumers, around the chaos driver: a warm-up that opens the NV
//! counter's books and brings both long-lived processes to their working set, the "before"
//! samples, the consumers while the driver runs, then the final counter check on a settled
//! stack and the "after" samples.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde::Serialize;
use tee_proto::control::StackPhase;
use teesys_root::StatePaths;

use super::checks::{NvBook, Violation};
use super::consumers::{BnxtLink, ConsumerStats, Ctx, ErrorClass, ErrorCounts, Failure};
use super::consumers::{Shared, TpmLink};
use super::procs::{self, ProcFigures, ProcSample};
use super::rng::Rng;
use super::traffic::{self, Consumers, Finished};
use crate::stack::{self, Control};
use crate::tpm;
use crate::CliError;

/// The soak's NV counter index (owner range); defined once, kept across runs on one stack.
pub const NV_INDEX: u32 = 0x0150_0C4A;
/// How often, and how far apart, a warm-up or final step is tried while it fails in an
/// expected way (a server still starting).
const TRIES: u32 = 100;
const TRY_PAUSE: Duration = Duration::from_millis(100);
/// How long the stack may take to settle after the last operation.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// The traffic kinds every soak must have seen answered correctly at least once.
const REQUIRED_OPS: [&str; 4] = ["nv_increment", "get_random", "pcr_check", "coredump_chunk"];

/// What the consumers saw, and what the long-lived processes looked like before and after.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveReport {
    pub consumers: Vec<ConsumerStats>,
    /// Correct answers by kind, over every consumer.
    pub ops: BTreeMap<&'static str, u64>,
    /// Failures by class, over every consumer.
    pub errors: ErrorCounts,
    pub nv: NvBook,
    /// The counter read once the consumers stopped and the stack settled.
    pub nv_final: Option<u64>,
    pub processes: Vec<ProcFigures>,
    /// Everything that fails the soak.
    pub problems: Vec<String>,
}

impl LiveReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A step tried again while it fails in an expected way.
fn retrying<T>(what: &str, mut step: impl FnMut() -> Result<T, Failure>) -> Result<T, CliError> {
    let mut last = String::new();
    for _ in 0..TRIES {
        match step() {
            Ok(value) => return Ok(value),
            Err(failure) if failure.class.expected() => {
                last = failure.detail;
                sleep(TRY_PAUSE);
            }
            Err(failure) => return Err(CliError::Failed(format!("{what}: {}", failure.detail))),
        }
    }
    Err(CliError::Failed(format!("{what}: still failing ({last})")))
}

/// Starts the TPM, defines the counter (or finds it), increments it once and opens the books
/// at its value; then one of every other request, and a whole coredump copy.
fn warm_up(paths: &StatePaths, seed: u64) -> Result<NvBook, CliError> {
    let mut ctx = Ctx::new("warm-up", paths, Arc::new(Shared::default()), Rng(seed));
    let mut link = TpmLink::default();
    retrying("TPM2_Startup", || link.startup(&ctx))?;
    retrying("TPM2_NV_DefineSpace", || {
        let answer = link.send_started(&ctx, &tpm::nv_define_counter(NV_INDEX))?;
        match answer.rc {
            0 | tpm::TPM_RC_NV_DEFINED => Ok(()),
            rc if tpm::rc_is_retry(rc) => Err(Failure::tpm_retry("NV_DefineSpace", rc)),
            rc => Err(Violation::TpmCode {
                what: "NV_DefineSpace",
                rc,
            }
            .into()),
        }
    })?;
    // A counter has no value before its first increment.
    let scratch = Mutex::new(NvBook::default());
    retrying("TPM2_NV_Increment", || {
        traffic::nv_increment(&ctx, &mut link, &scratch, NV_INDEX)
    })?;
    let base = retrying("TPM2_NV_Read", || {
        traffic::read_counter(&ctx, &mut link, NV_INDEX)
    })?;
    let mut previous = None;
    retrying("TPM2_GetRandom", || {
        traffic::random_once(&mut ctx, &mut link, &mut previous)
    })?;
    let mut sequence = 0;
    retrying("PCR check", || {
        sequence += 1;
        traffic::pcr_once(&ctx, &mut link, seed ^ u64::MAX, sequence)
    })?;
    let mut bnxt = BnxtLink::default();
    retrying("coredump", || {
        let dump = bnxt.call(&ctx, |driver| driver.coredump())?;
        if dump.matches() {
            Ok(())
        } else {
            Err(Failure::new(
                ErrorClass::Wrong,
                "the coredump differs from the image",
            ))
        }
    })?;
    Ok(NvBook::open(base))
}

/// The long-lived processes, by their pid files.
fn sample_all(paths: &StatePaths) -> Result<Vec<(String, ProcSample)>, CliError> {
    [stack::INIT_DAEMON, stack::SECURE_WORLD]
        .iter()
        .map(|name| {
            let pid = stack::read_pid(paths, name)
                .ok_or_else(|| CliError::Failed(format!("no pid file for {name}")))?;
            let sample = procs::sample(pid).map_err(|error| CliError::Failed(error.to_string()))?;
            Ok(((*name).to_string(), sample))
        })
        .collect()
}

/// The consumers, running.
pub struct Live {
    consumers: Consumers,
    before: Vec<(String, ProcSample)>,
    paths: StatePaths,
    seed: u64,
}

/// The consumers, stopped.
pub struct Stopped {
    finished: Finished,
    before: Vec<(String, ProcSample)>,
    paths: StatePaths,
    seed: u64,
}

impl Live {
    /// Warm-up, samples, consumers; the stack must be in a normal boot.
    pub fn begin(control: &mut Control, paths: &StatePaths, seed: u64) -> Result<Live, CliError> {
        settle(control).map_err(CliError::Failed)?;
        let book = warm_up(paths, seed)?;
        let before = sample_all(paths)?;
        tracing::info!(base = book.base, "warm-up done; consumers start");
        let consumers = Consumers::start(paths, seed, NV_INDEX, book)?;
        Ok(Live {
            consumers,
            before,
            paths: paths.clone(),
            seed,
        })
    }

    pub fn stop(self) -> Stopped {
        Stopped {
            finished: self.consumers.stop(),
            before: self.before,
            paths: self.paths,
            seed: self.seed,
        }
    }
}

impl Stopped {
    /// On a stack in a normal boot: waits for it to settle, reads the counter a last time,
    /// samples the processes again, and sums everything up.
    pub fn report(self, control: &mut Control) -> LiveReport {
        let Stopped {
            finished,
            before,
            paths,
            seed,
        } = self;
        let mut report = LiveReport {
            nv: finished.book,
            problems: finished.stuck,
            ..LiveReport::default()
        };
        for stats in &finished.stats {
            for (kind, count) in &stats.ops {
                *report.ops.entry(kind).or_default() += count;
            }
            report.errors.merge(&stats.errors);
            let kept = stats.failures.len() as u64;
            for failure in &stats.failures {
                report.problems.push(format!("{}: {failure}", stats.name));
            }
            if stats.errors.fatal() > kept {
                report.problems.push(format!(
                    "{}: {} more failure(s)",
                    stats.name,
                    stats.errors.fatal() - kept
                ));
            }
        }
        report.consumers = finished.stats;
        for kind in REQUIRED_OPS {
            if report.ops.get(kind).copied().unwrap_or(0) == 0 {
                report
                    .problems
                    .push(format!("no {kind} was ever answered correctly"));
            }
        }
        if let Err(problem) = settle(control) {
            report.problems.push(problem);
        }
        match final_read(&paths, seed, &mut report.nv) {
            Ok(value) => report.nv_final = Some(value),
            Err(problem) => report.problems.push(problem),
        }
        match sample_all(&paths) {
            Ok(after) => {
                for ((name, before), (_, after)) in before.into_iter().zip(after) {
                    let figures = ProcFigures {
                        name,
                        before,
                        after,
                    };
                    report.problems.extend(figures.problems());
                    report.processes.push(figures);
                }
            }
            Err(error) => report.problems.push(format!("final samples: {error}")),
        }
        report
    }
}

/// Waits until every server is ready again (a last kill may still be restarting one).
fn settle(control: &mut Control) -> Result<(), String> {
    let start = Instant::now();
    loop {
        match control.status() {
            Ok(status) if status.phase == StackPhase::Running => return Ok(()),
            Ok(_) | Err(_) if start.elapsed() < SETTLE_LIMIT => sleep(TRY_PAUSE),
            Ok(status) => return Err(format!("stack not settled: {:?}", status.phase)),
            Err(error) => return Err(format!("stack not settled: {error}")),
        }
    }
}

/// The last read of the counter, checked against the books.
fn final_read(paths: &StatePaths, seed: u64, book: &mut NvBook) -> Result<u64, String> {
    let ctx = Ctx::new("final", paths, Arc::new(Shared::default()), Rng(seed));
    let mut link = TpmLink::default();
    let value = retrying("final NV_Read", || {
        traffic::read_counter(&ctx, &mut link, NV_INDEX)
    })
    .map_err(|error| error.to_string())?;
    book.check_read(value)
        .map_err(|violation| violation.to_string())?;
    Ok(value)
}
