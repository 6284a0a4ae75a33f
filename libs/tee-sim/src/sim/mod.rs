//! The whole service set in one thread: init, teed, tpmd, bnxtd, their consumers and the
//! secure-world model, driven step by step under one seed.
//!
//! Every choice (which channel delivers next, which operation comes next, whether a server dies
//! between two steps) comes from a `SmallRng` seeded with [`SimConfig::seed`], so a failure
//! replays exactly from the seed it prints. After every step the invariants are checked.

mod aim;
pub mod classify;
pub mod config;
pub mod consumers;
pub mod finish;
mod grants;
mod hostile;
mod invariants;
pub mod net;
pub mod script;
mod world;

use std::collections::VecDeque;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use secure_world::SecureWorld;
use tee_proto::lifecycle::{BootKind, ServerKind};
use teed::Teed;
use teesys_init::Supervisor;

pub use self::aim::Aiming;
pub use self::config::{Breaks, Faults, SimConfig, Weights};
use self::consumers::{NicDriver, TpmConsumer};
use self::invariants::Checker;
use self::net::Net;
use crate::coverage::{Coverage, Fault};
use crate::layout;
use crate::ram::SharedRam;

/// A run that broke an invariant, with what replays it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seed {seed}: {message} (step {step}, t={now} ms)\nlast events:\n{trail}")]
pub struct SimFailure {
    pub seed: u64,
    pub step: u64,
    pub now: u64,
    pub message: String,
    pub trail: String,
}

/// What a run did, for reports and for tests that it did something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    pub steps: u64,
    pub boots: u64,
    pub kexecs: u64,
    pub crashes: u64,
    pub resets: u64,
    pub kills: u64,
    pub hostile_frames: u64,
    pub tpm_answers: u64,
    /// TPM answers the consumer checked as correct (a successful Startup or GetRandom).
    pub tpm_correct: u64,
    pub coredump_chunks: u64,
    pub orphans_resumed: u64,
    pub reclaimed: u64,
    /// Asynchronous notifications raised while started (4.x profile), each an interrupt to teed.
    pub notifications: u64,
}

/// One incarnation of a client server.
pub(crate) struct ClientProc<C> {
    pub core: C,
    pub id: teed::ClientId,
}

/// The simulated machine.
pub struct Sim {
    pub(crate) cfg: SimConfig,
    pub(crate) rng: SmallRng,
    pub(crate) now: u64,
    pub(crate) step: u64,
    pub(crate) ram: SharedRam,
    pub secure: SecureWorld,
    pub(crate) init: Supervisor,
    pub(crate) teed: Option<Teed<SharedRam>>,
    pub(crate) tpmd: Option<ClientProc<tpmd::Tpmd>>,
    pub(crate) bnxtd: Option<ClientProc<bnxtd::Bnxtd>>,
    pub(crate) net: Net,
    pub(crate) tpm_consumer: TpmConsumer,
    pub(crate) nic: NicDriver,
    pub(crate) checker: Checker,
    pub(crate) trail: VecDeque<String>,
    /// Trail lines kept (`TEESYS_TRAIL`, read once: `note` runs every step).
    trail_len: usize,
    /// Whether every SMC goes into the trail (`TEESYS_TRACE_SMC`, read once).
    pub(crate) trace_smcs: bool,
    pub stats: SimStats,
    /// The next boot kind, once init asked for a transition.
    pub(crate) pending_boot: Option<BootKind>,
    pub(crate) hostile_pending: Vec<(teed::ClientId, u32)>,
    /// The last `Booted` summary.
    pub(crate) booted: Option<teesys_init::BootSummary>,
    pub(crate) first_boot: Option<teesys_init::BootSummary>,
    pub(crate) transitions: Vec<script::TransitionRecord>,
    /// Answers tpmd gave the scripted TPM consumer.
    pub(crate) script_answers: Vec<tee_proto::tpm::TpmResponse>,
    /// Answers bnxtd gave the scripted NIC driver.
    pub(crate) script_bnxt_answers: Vec<tee_proto::bnxt::BnxtResponse>,
    /// Whether the teed incarnation that ended last had served and completed its shutdown.
    pub(crate) ended_teed: Option<bool>,
    /// The typed errors teed answered each client with since the last boot began (the first
    /// [`MAX_REFUSALS`]).
    pub(crate) refusals: Vec<(ServerKind, tee_proto::WireError)>,
    /// A covered run's counts and aim ([`Sim::run_covered`]); `None` in every other run.
    pub(crate) cover: Option<Box<Covering>>,
}

/// What a covered run keeps besides the machine.
pub(crate) struct Covering {
    pub coverage: Coverage,
    pub aim: Option<aim::Aim>,
}

const TRAIL: usize = 60;
/// Refusals kept per boot (the first ones; a client retrying for a whole boot adds no more).
pub(crate) const MAX_REFUSALS: usize = 256;
/// Steps one operation may take before the run counts as hung.
pub const STEPS_PER_OP: u64 = 50_000;

impl Sim {
    /// A machine powered on: the secure world booted, init about to boot the normal world.
    pub fn new(mut cfg: SimConfig) -> Sim {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        if cfg.faults.foreign_interrupts && cfg.secure.foreign_intr_every.is_none() {
            cfg.secure.foreign_intr_every = Some(rng.gen_range(2..6));
        }
        let ram = SharedRam::new(layout::RAM_BASE, layout::RAM_SIZE);
        let secure = SecureWorld::new(cfg.secure.clone(), rng.gen());
        let init = Supervisor::new(cfg.init);
        Sim {
            checker: Checker::new(cfg.expect_fixed, cfg.teed.hardening),
            cfg,
            rng,
            now: 0,
            step: 0,
            ram,
            secure,
            init,
            teed: None,
            tpmd: None,
            bnxtd: None,
            net: Net::default(),
            tpm_consumer: TpmConsumer::default(),
            nic: NicDriver::default(),
            trail: VecDeque::new(),
            trail_len: std::env::var("TEESYS_TRAIL")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(TRAIL)
                .max(1),
            trace_smcs: std::env::var_os("TEESYS_TRACE_SMC").is_some(),
            stats: SimStats::default(),
            pending_boot: Some(BootKind::Cold),
            hostile_pending: Vec::new(),
            booted: None,
            first_boot: None,
            transitions: Vec::new(),
            ended_teed: None,
            script_answers: Vec::new(),
            script_bnxt_answers: Vec::new(),
            refusals: Vec::new(),
            cover: None,
        }
    }

    /// Runs the seed's whole operation script.
    pub fn run(cfg: SimConfig) -> Result<SimStats, SimFailure> {
        Sim::new(cfg).run_script()
    }

    /// Runs the seed's whole operation script as [`Sim::run`] does, and counts which fault
    /// landed while what was in flight. With `aiming`, faults are also landed mid-step where
    /// this run has not reached a pair yet (see [`Aiming`]); that changes the run from the
    /// first aimed fault on, deterministically per seed. Without it the run is exactly
    /// [`Sim::run`]'s.
    pub fn run_covered(
        cfg: SimConfig,
        aiming: Option<Aiming>,
    ) -> (Result<SimStats, SimFailure>, Coverage) {
        let mut sim = Sim::new(cfg);
        let seed = sim.cfg.seed;
        sim.cover = Some(Box::new(Covering {
            coverage: Coverage::default(),
            aim: aiming.map(|a| aim::Aim::new(seed, a)),
        }));
        let result = sim.run_script();
        let coverage = sim.cover.take().map(|c| c.coverage).unwrap_or_default();
        (result, coverage)
    }

    fn run_script(&mut self) -> Result<SimStats, SimFailure> {
        let sim = self;
        sim.boot_pending()?;
        sim.settle()?;
        for _ in 0..sim.cfg.faults.ops {
            sim.random_op()?;
            sim.settle()?;
        }
        sim.finish()?;
        Ok(sim.stats)
    }

    /// A fault lands now: a covered run counts it against what is in flight (when it takes
    /// effect), then it is carried out.
    pub(crate) fn land(&mut self, fault: Fault) {
        if let Some(mut cover) = self.cover.take() {
            let seen = classify::Observed::of(self);
            if seen.lands(fault, self) {
                cover.coverage.record(fault, seen.phases());
            }
            self.cover = Some(cover);
        }
        match fault {
            Fault::Kexec => {
                self.stats.kexecs += 1;
                self.init.request_kexec(self.now);
            }
            Fault::Reset => {
                self.stats.resets += 1;
                self.init.request_reboot(self.now);
            }
            Fault::CrashWithShutdown | Fault::CrashWithoutShutdown => {
                self.stats.crashes += 1;
                let ipc = fault == Fault::CrashWithShutdown;
                self.init.request_crash(self.now, ipc);
            }
            Fault::Kill(server) => self.kill(server),
            Fault::Restart(server) => self.init.request_restart(self.now, server),
        }
    }

    /// A covered run's aim: a fault lands mid-step while a phase this run has not covered is
    /// live. Draws nothing from the run's generator.
    fn aimed_fault(&mut self) -> Result<(), SimFailure> {
        let Some(mut cover) = self.cover.take() else {
            return Ok(());
        };
        let fault = match cover.aim.as_mut().filter(|a| a.on) {
            Some(aim) => {
                let seen = classify::Observed::of(self);
                let phases = seen.phases();
                cover.coverage.saw(phases);
                let weights = self.cfg.faults.weights;
                let lands = |f| seen.lands(f, self);
                aim.pick(self.cfg.profile(), &weights, phases, &cover.coverage, lands)
                    .map(|f| (f, phases))
            }
            None => None,
        };
        self.cover = Some(cover);
        if let Some((fault, phases)) = fault {
            self.note(format!(
                "aim: {} mid-step, in flight {:?}",
                fault.name(),
                phases.iter().map(|p| p.name()).collect::<Vec<_>>()
            ));
            if let Some(cover) = self.cover.as_mut() {
                cover.coverage.aimed += 1;
            }
            self.land(fault);
            self.drain_init()?;
        }
        Ok(())
    }

    pub(crate) fn note(&mut self, line: String) {
        while self.trail.len() >= self.trail_len {
            self.trail.pop_front();
        }
        self.trail
            .push_back(format!("[{} t={}] {line}", self.step, self.now));
    }

    pub(crate) fn fail(&self, message: impl Into<String>) -> SimFailure {
        SimFailure {
            seed: self.cfg.seed,
            step: self.step,
            now: self.now,
            message: message.into(),
            trail: self.trail.iter().cloned().collect::<Vec<_>>().join("\n"),
        }
    }

    /// Boots the normal world if init asked for a transition.
    pub(crate) fn boot_pending(&mut self) -> Result<(), SimFailure> {
        if let Some(kind) = self.pending_boot.take() {
            self.stats.boots += 1;
            self.note(format!("boot {kind:?}"));
            self.refusals.clear();
            self.tpm_consumer.new_boot();
            self.nic.new_boot();
            self.init.boot(self.now, kind);
            self.drain_init()?;
        }
        Ok(())
    }

    fn pick_op(&mut self) -> Op {
        let w = self.cfg.faults.weights;
        let table = [
            (w.traffic, Op::Traffic),
            (w.kexec, Op::Kexec),
            (w.reboot, Op::Reboot),
            (w.crash_with_ipc, Op::Crash { ipc: true }),
            (w.crash_without_ipc, Op::Crash { ipc: false }),
            (w.kill_teed, Op::Kill(ServerKind::Teed)),
            (w.kill_client, Op::KillClient),
            (w.operator_restart, Op::Restart),
            (w.hostile_frame, Op::Hostile),
        ];
        let total: u32 = table.iter().map(|(w, _)| w).sum();
        let mut pick = self.rng.gen_range(0..total.max(1));
        for (weight, op) in table {
            if pick < weight {
                return op;
            }
            pick -= weight;
        }
        Op::Traffic
    }

    /// Applies one operation of the script.
    pub fn random_op(&mut self) -> Result<(), SimFailure> {
        let op = self.pick_op();
        self.note(format!("op {op:?}"));
        match op {
            Op::Traffic => {
                let n = self.rng.gen_range(1..6);
                for _ in 0..n {
                    self.consumer_traffic();
                }
            }
            Op::Kexec => self.land(Fault::Kexec),
            Op::Reboot => self.land(Fault::Reset),
            Op::Crash { ipc: true } => self.land(Fault::CrashWithShutdown),
            Op::Crash { ipc: false } => self.land(Fault::CrashWithoutShutdown),
            Op::Kill(server) => self.land(Fault::Kill(server)),
            Op::KillClient => {
                let server = if self.rng.gen() {
                    ServerKind::Tpmd
                } else {
                    ServerKind::Bnxtd
                };
                self.land(Fault::Kill(server));
            }
            Op::Restart => {
                let server = [ServerKind::Teed, ServerKind::Tpmd, ServerKind::Bnxtd]
                    [self.rng.gen_range(0..3)];
                self.land(Fault::Restart(server));
            }
            Op::Hostile => self.hostile_frame(),
        }
        self.drain_init()
    }

    /// Steps until nothing is left to do (or fails when that takes too long).
    pub fn settle(&mut self) -> Result<(), SimFailure> {
        let start = self.step;
        loop {
            if self.step - start > STEPS_PER_OP {
                return Err(self.fail("no quiescence: the system did not settle (hang)"));
            }
            if !self.step_once()? {
                return Ok(());
            }
        }
    }

    /// One step: a delivery, else a timer. Returns false when idle.
    pub fn step_once(&mut self) -> Result<bool, SimFailure> {
        self.step += 1;
        self.stats.steps += 1;
        self.maybe_fault_mid_step()?;
        self.aimed_fault()?;
        let ready = self.net.ready();
        let progressed = if ready.is_empty() {
            self.fire_timer()?
        } else {
            let channel = ready[self.rng.gen_range(0..ready.len())];
            self.deliver(channel)?;
            true
        };
        let booted = self.pending_boot.is_some();
        self.boot_pending()?;
        let progressed = progressed || booted;
        let mut checker = std::mem::replace(
            &mut self.checker,
            Checker::new(false, self.cfg.teed.hardening),
        );
        let checked = checker.after_step(self);
        self.checker = checker;
        checked?;
        Ok(progressed)
    }

    fn maybe_fault_mid_step(&mut self) -> Result<(), SimFailure> {
        if self.net.is_empty() {
            return Ok(());
        }
        let f = self.cfg.faults;
        if self.cfg.secure.profile.has_async_notif() && self.rng.gen_bool(f.notif_interrupt) {
            self.notification();
        }
        if self.rng.gen_bool(f.kill_mid_step) {
            let server =
                [ServerKind::Teed, ServerKind::Tpmd, ServerKind::Bnxtd][self.rng.gen_range(0..3)];
            self.note(format!("fault: kill {server:?} mid-step"));
            self.land(Fault::Kill(server));
        } else if self.rng.gen_bool(f.crash_mid_step) {
            self.note("fault: crash mid-step, no shutdown IPC".into());
            self.land(Fault::CrashWithoutShutdown);
        }
        self.drain_init()
    }

    /// A secure-world driver raises an asynchronous notification: the bottom-half value or a
    /// wake-up value. While notifications are started its interrupt reaches teed at once, as an
    /// interrupt would; otherwise the driver sends nothing (notif.c).
    fn notification(&mut self) {
        let value = if self.rng.gen_bool(0.5) {
            0
        } else {
            self.rng.gen_range(1..=8)
        };
        if self.secure.raise_async_notif(value).is_err() {
            return;
        }
        self.note(format!("notification {value}"));
        self.stats.notifications += 1;
        if let Some(teed) = self.teed.as_mut() {
            teed.notification_interrupt(self.now);
        }
        self.drain_teed();
    }

    /// Earliest timer of any core; fires it. False when no timer is armed.
    fn fire_timer(&mut self) -> Result<bool, SimFailure> {
        let mut next: Option<u64> = self.init.poll_timeout();
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: u64| n.min(t)));
            }
        };
        consider(self.teed.as_ref().and_then(|t| t.poll_timeout()));
        consider(self.tpmd.as_ref().and_then(|p| p.core.poll_timeout()));
        consider(self.bnxtd.as_ref().and_then(|p| p.core.poll_timeout()));
        let Some(at) = next else { return Ok(false) };
        if at > self.now + 600_000 {
            // Nothing due for ten virtual minutes: the system is idle.
            return Ok(false);
        }
        self.now = self.now.max(at);
        let now = self.now;
        self.init.handle_timeout(now);
        self.drain_init()?;
        if let Some(t) = self.teed.as_mut() {
            t.handle_timeout(now);
        }
        self.drain_teed();
        let mut ram = self.ram.clone();
        if let Some(p) = self.tpmd.as_mut() {
            p.core.handle_timeout(now, &mut ram);
        }
        if let Some(p) = self.bnxtd.as_mut() {
            p.core.handle_timeout(now, &mut ram);
        }
        self.drain_clients()?;
        Ok(true)
    }
}

/// The operations a script is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Traffic,
    Kexec,
    Reboot,
    Crash { ipc: bool },
    Kill(ServerKind),
    KillClient,
    Restart,
    Hostile,
}
