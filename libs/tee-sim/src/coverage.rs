//! Which fault landed while what was in flight: the simulator's coverage.
//!
//! The fault kinds are the model checker's lifecycle actions that cut into the machine (an
//! orderly kexec, a machine reset, a crash with or without the shutdown IPC, kill -9 of each
//! server, an operator's restart of each); the in-flight phases name what a fault can cut
//! into (an SMC, an RPC of each kind, a suspended or orphaned secure thread, a registration, a
//! shutdown draining, a boot starting, ...). A fault is counted once for every phase live at
//! the instant it lands ([`crate::sim::classify`] reads them off the machine), so a kill that
//! cuts into an RPC of an invocation counts for both.
//!
//! [`possible_pairs`] lists the pairs that can exist under an OP-TEE profile; the report and
//! the default test ask that every one of them is reached.

use std::collections::BTreeMap;

use secure_world::Profile;
use tee_proto::lifecycle::ServerKind;

/// A fault kind: one of the model checker's actions that cuts into the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// An orderly kexec (the shutdown IPC, then the jump).
    Kexec,
    /// An orderly reboot: the shutdown IPC, then a machine reset (the secure world restarts).
    Reset,
    /// A crash into the crash kernel with the best-effort shutdown IPC.
    CrashWithShutdown,
    /// A crash into the crash kernel without any shutdown IPC.
    CrashWithoutShutdown,
    /// kill -9 of a server; init restarts it.
    Kill(ServerKind),
    /// An operator's restart of a server through init.
    Restart(ServerKind),
}

const SERVERS: [ServerKind; 3] = [ServerKind::Teed, ServerKind::Tpmd, ServerKind::Bnxtd];

impl Fault {
    /// Every fault kind, in report order.
    pub const ALL: [Fault; 10] = [
        Fault::Kexec,
        Fault::Reset,
        Fault::CrashWithShutdown,
        Fault::CrashWithoutShutdown,
        Fault::Kill(SERVERS[0]),
        Fault::Kill(SERVERS[1]),
        Fault::Kill(SERVERS[2]),
        Fault::Restart(SERVERS[0]),
        Fault::Restart(SERVERS[1]),
        Fault::Restart(SERVERS[2]),
    ];

    /// Its position in [`Fault::ALL`].
    pub fn index(self) -> usize {
        let server = |s: ServerKind| match s {
            ServerKind::Teed => 0,
            ServerKind::Tpmd => 1,
            ServerKind::Bnxtd => 2,
        };
        match self {
            Fault::Kexec => 0,
            Fault::Reset => 1,
            Fault::CrashWithShutdown => 2,
            Fault::CrashWithoutShutdown => 3,
            Fault::Kill(s) => 4 + server(s),
            Fault::Restart(s) => 7 + server(s),
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kexec => "kexec",
            Fault::Reset => "reset",
            Fault::CrashWithShutdown => "crash+ipc",
            Fault::CrashWithoutShutdown => "crash",
            Fault::Kill(ServerKind::Teed) => "kill teed",
            Fault::Kill(ServerKind::Tpmd) => "kill tpmd",
            Fault::Kill(ServerKind::Bnxtd) => "kill bnxtd",
            Fault::Restart(ServerKind::Teed) => "restart teed",
            Fault::Restart(ServerKind::Tpmd) => "restart tpmd",
            Fault::Restart(ServerKind::Bnxtd) => "restart bnxtd",
        }
    }

    /// init takes the request only between boots' shutdowns: an orderly kexec or reboot and an
    /// operator restart are ignored while a shutdown runs (init's `begin_orderly`,
    /// `request_restart`), so they never land then.
    pub fn refused_while_shutting_down(self) -> bool {
        matches!(self, Fault::Kexec | Fault::Reset | Fault::Restart(_))
    }
}

/// What was in flight when a fault landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InFlight {
    /// Nothing: the machine had settled.
    Idle,
    /// A boot under way: a server starting (or waiting out its restart backoff), teed probing.
    Starting,
    /// init's shutdown sequence (kexec, reboot or crash) under way.
    ShutdownDraining,
    /// The crash kernel runs (teed declines, the clients serve without a TEE).
    CrashKernel,
    /// A consumer's request at tpmd or bnxtd, or on its way there.
    ClientRequest,
    /// An SMC of teed's on the conduit (on its way in, or its registers on their way back).
    TeedSmc,
    /// A REGISTER_SHM of a client buffer (or a driver-private one) in flight.
    Register,
    /// An UNREGISTER_SHM in flight: a client's free, a reclaim, the shutdown's drain.
    Unregister,
    /// An OPEN_SESSION or CLOSE_SESSION (a client's, a reclaim's, the shutdown's) in flight.
    Session,
    /// An INVOKE_COMMAND (or its CANCEL) in flight.
    Invoke,
    /// A secure thread suspended in RPC ALLOC.
    RpcAlloc,
    /// A secure thread suspended in RPC FREE.
    RpcFree,
    /// A secure thread suspended in RPC CMD (storage, SUSPEND, SHM alloc/free, NOTIFICATION).
    RpcCmd,
    /// A secure thread suspended by a foreign interrupt.
    ForeignIntr,
    /// A call teed parked with its thread suspended, until a timer or a notification.
    Sleeping,
    /// A secure thread suspended with no call of the running teed behind it (its teed died or
    /// its world went away), or being resumed as an orphan by a probe.
    Orphaned,
    /// OP-TEE 4.x: teed's argument pages being registered or unregistered.
    ArgPages,
    /// OP-TEE 4.x: an asynchronous notification being read, its bottom half run, or
    /// notifications being stopped.
    AsyncNotif,
}

impl InFlight {
    /// Every phase, in report order.
    pub const ALL: [InFlight; 18] = [
        InFlight::Idle,
        InFlight::Starting,
        InFlight::ShutdownDraining,
        InFlight::CrashKernel,
        InFlight::ClientRequest,
        InFlight::TeedSmc,
        InFlight::Register,
        InFlight::Unregister,
        InFlight::Session,
        InFlight::Invoke,
        InFlight::RpcAlloc,
        InFlight::RpcFree,
        InFlight::RpcCmd,
        InFlight::ForeignIntr,
        InFlight::Sleeping,
        InFlight::Orphaned,
        InFlight::ArgPages,
        InFlight::AsyncNotif,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            InFlight::Idle => "idle",
            InFlight::Starting => "starting",
            InFlight::ShutdownDraining => "shutdown draining",
            InFlight::CrashKernel => "crash kernel",
            InFlight::ClientRequest => "client request",
            InFlight::TeedSmc => "teed SMC",
            InFlight::Register => "register",
            InFlight::Unregister => "unregister",
            InFlight::Session => "open/close session",
            InFlight::Invoke => "invoke",
            InFlight::RpcAlloc => "RPC alloc",
            InFlight::RpcFree => "RPC free",
            InFlight::RpcCmd => "RPC cmd",
            InFlight::ForeignIntr => "foreign interrupt",
            InFlight::Sleeping => "thread sleeping",
            InFlight::Orphaned => "orphaned thread",
            InFlight::ArgPages => "arg pages (4.x)",
            InFlight::AsyncNotif => "async notification (4.x)",
        }
    }

    /// Live for a step or two at a time, a few times in a run at most (the report's "steps
    /// live" column): the aim fires at once when one of these is live with a fault still to
    /// land in it.
    pub fn is_rare(self) -> bool {
        matches!(
            self,
            InFlight::Sleeping | InFlight::RpcAlloc | InFlight::RpcCmd | InFlight::RpcFree
        )
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// Whether the phase exists under `profile` in the default configuration.
    ///
    /// * Argument pages and asynchronous notifications are 4.x's: 3.14 offers neither
    ///   SEC_CAP_RPC_ARG nor SEC_CAP_ASYNC_NOTIF.
    /// * RPC ALLOC is 3.14's: under 4.x every call brings its RPC struct (SEC_CAP_RPC_ARG), so
    ///   the secure world never asks for an RPC argument buffer (thread_rpc_alloc_arg is not
    ///   reached; secure-world's optee4x test checks no ALLOC and no FREE are sent).
    /// * RPC FREE exists in neither: OP-TEE sends it for a call's RPC argument buffer only when
    ///   the call ends with the RPC shm cache off, and teed keeps the cache on whenever a call
    ///   with RPCs can run: it turns it off only once every thread is free (OP-TEE answers
    ///   DISABLE_SHM_CACHE with EBUSY otherwise) and on again before it serves, and under 4.x
    ///   no thread ever holds such a buffer. Seed-bug configurations can reach it.
    pub fn exists_under(self, profile: Profile) -> bool {
        match self {
            InFlight::ArgPages | InFlight::AsyncNotif => profile.has_async_notif(),
            InFlight::RpcAlloc => !profile.has_async_notif(),
            InFlight::RpcFree => false,
            _ => true,
        }
    }
}

/// The phases live at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Phases(u32);

impl Phases {
    pub fn insert(&mut self, phase: InFlight) {
        self.0 |= phase.bit();
    }

    pub fn contains(self, phase: InFlight) -> bool {
        self.0 & phase.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = InFlight> {
        InFlight::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl FromIterator<InFlight> for Phases {
    fn from_iter<I: IntoIterator<Item = InFlight>>(iter: I) -> Phases {
        let mut phases = Phases::default();
        for phase in iter {
            phases.insert(phase);
        }
        phases
    }
}

/// Whether `fault` can land while `phase` is live under `profile`.
pub fn is_possible(profile: Profile, fault: Fault, phase: InFlight) -> bool {
    if !phase.exists_under(profile) {
        return false;
    }
    !(phase == InFlight::ShutdownDraining && fault.refused_while_shutting_down())
}

/// Every pair of fault and phase that can exist under `profile`, in report order.
pub fn possible_pairs(profile: Profile) -> Vec<(Fault, InFlight)> {
    Fault::ALL
        .into_iter()
        .flat_map(|f| InFlight::ALL.into_iter().map(move |p| (f, p)))
        .filter(|&(f, p)| is_possible(profile, f, p))
        .collect()
}

/// Counts of faults by what was in flight when they landed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    counts: BTreeMap<(Fault, InFlight), u64>,
    /// Faults that landed.
    pub faults: u64,
    /// Of them, those the aim landed (the rest are the script's own).
    pub aimed: u64,
    /// Steps each phase was live at (counted where the run looks: aimed runs, every step).
    live: BTreeMap<InFlight, u64>,
}

impl Coverage {
    /// `fault` landed while `phases` were live.
    pub fn record(&mut self, fault: Fault, phases: Phases) {
        self.faults += 1;
        for phase in phases.iter() {
            *self.counts.entry((fault, phase)).or_default() += 1;
        }
    }

    /// One step saw `phases` live.
    pub fn saw(&mut self, phases: Phases) {
        for phase in phases.iter() {
            *self.live.entry(phase).or_default() += 1;
        }
    }

    /// Steps `phase` was seen live at.
    pub fn live_steps(&self, phase: InFlight) -> u64 {
        self.live.get(&phase).copied().unwrap_or(0)
    }

    /// How often `fault` landed while `phase` was live.
    pub fn count(&self, fault: Fault, phase: InFlight) -> u64 {
        self.counts.get(&(fault, phase)).copied().unwrap_or(0)
    }

    /// Adds another run's counts.
    pub fn merge(&mut self, other: &Coverage) {
        self.faults += other.faults;
        self.aimed += other.aimed;
        for (pair, n) in &other.counts {
            *self.counts.entry(*pair).or_default() += n;
        }
        for (phase, n) in &other.live {
            *self.live.entry(*phase).or_default() += n;
        }
    }

    /// Every pair counted, possible or not.
    pub fn pairs(&self) -> impl Iterator<Item = ((Fault, InFlight), u64)> + '_ {
        self.counts.iter().map(|(pair, n)| (*pair, *n))
    }

    /// The possible pairs of `profile` reached at least once.
    pub fn reached(&self, profile: Profile) -> usize {
        possible_pairs(profile)
            .into_iter()
            .filter(|&(f, p)| self.count(f, p) > 0)
            .count()
    }

    /// The possible pairs of `profile` never reached.
    pub fn missing(&self, profile: Profile) -> Vec<(Fault, InFlight)> {
        possible_pairs(profile)
            .into_iter()
            .filter(|&(f, p)| self.count(f, p) == 0)
            .collect()
    }

    /// Pairs counted that [`possible_pairs`] says cannot exist (a wrong list or a wrong
    /// classification; the tests ask for none).
    pub fn impossible(&self, profile: Profile) -> Vec<(Fault, InFlight)> {
        self.counts
            .keys()
            .copied()
            .filter(|&(f, p)| !is_possible(profile, f, p))
            .collect()
    }

    /// The rarest possible pairs of `profile` that were reached, fewest first.
    pub fn rarest(&self, profile: Profile, n: usize) -> Vec<((Fault, InFlight), u64)> {
        let mut reached: Vec<_> = possible_pairs(profile)
            .into_iter()
            .map(|(f, p)| ((f, p), self.count(f, p)))
            .filter(|(_, n)| *n > 0)
            .collect();
        reached.sort_by_key(|(_, n)| *n);
        reached.truncate(n);
        reached
    }
}

/// Seeds the report and the default test run under each profile.
pub const DEFAULT_SEEDS: u64 = 1_000;

/// Covered runs of many seeds under one profile.
#[derive(Debug, Clone)]
pub struct ProfileCoverage {
    pub profile: Profile,
    pub coverage: Coverage,
    /// Runs that broke an invariant (each replays from its seed).
    pub failures: Vec<crate::SimFailure>,
}

/// Runs `seeds` as covered runs under `profile` (aimed with the default [`crate::Aiming`]
/// when `aim`), every one with its invariants checked, and adds up their coverage.
pub fn cover_seeds(profile: Profile, seeds: std::ops::Range<u64>, aim: bool) -> ProfileCoverage {
    let mut total = ProfileCoverage {
        profile,
        coverage: Coverage::default(),
        failures: Vec::new(),
    };
    for seed in seeds {
        let cfg = crate::SimConfig::for_profile(seed, profile);
        let aiming = aim.then(crate::Aiming::default);
        let (result, coverage) = crate::Sim::run_covered(cfg, aiming);
        total.coverage.merge(&coverage);
        if let Err(failure) = result {
            total.failures.push(failure);
        }
    }
    total
}

/// The coverage report: per profile, a table of every fault kind against every phase.
pub fn markdown(results: &[ProfileCoverage], seeds: u64, aim: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "# Simulator coverage\n");
    let _ = writeln!(
        out,
        "Generated by `cargo xtask sim-coverage --seeds {seeds}`{}: seeds 0..{seeds} of the \
         simulator under each OP-TEE profile, every invariant checked after every step. A cell \
         counts the faults of its column that landed while its row was in flight (a fault \
         counts once for every phase live at that instant). \"Steps live\" counts the steps a \
         phase was in flight at (every step of a run up to its last orderly kexec). `-` marks \
         a pair that cannot exist under the profile (see `InFlight::exists_under`); **0** a \
         possible pair not reached.\n",
        if aim { "" } else { " --no-aim" }
    );
    for r in results {
        let possible = possible_pairs(r.profile).len();
        let _ = writeln!(out, "## OP-TEE {}\n", r.profile);
        let _ = writeln!(
            out,
            "Reached {}/{} pairs; {} faults landed ({} of them aimed); {} runs failed.\n",
            r.coverage.reached(r.profile),
            possible,
            r.coverage.faults,
            r.coverage.aimed,
            r.failures.len()
        );
        let rarest: Vec<String> = r
            .coverage
            .rarest(r.profile, 5)
            .into_iter()
            .map(|((f, p), n)| format!("{} during {} ({n})", f.name(), p.name()))
            .collect();
        if !rarest.is_empty() {
            let _ = writeln!(out, "Rarest: {}.\n", rarest.join(", "));
        }
        let mut header = String::from("| in flight | steps live |");
        let mut rule = String::from("|---|---:|");
        for f in Fault::ALL {
            let _ = write!(header, " {} |", f.name());
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for p in InFlight::ALL {
            let mut row = format!("| {} | {} |", p.name(), r.coverage.live_steps(p));
            for f in Fault::ALL {
                let cell = if !is_possible(r.profile, f, p) {
                    "-".to_string()
                } else {
                    match r.coverage.count(f, p) {
                        0 => "**0**".to_string(),
                        n => n.to_string(),
                    }
                };
                let _ = write!(row, " {cell} |");
            }
            let _ = writeln!(out, "{row}");
        }
        let _ = writeln!(out);
        for failure in &r.failures {
            let _ = writeln!(
                out,
                "Failed: seed {} (step {}): {}\n",
                failure.seed, failure.step, failure.message
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_4x_profile_adds_the_argument_pages_and_notifications() {
        let old = possible_pairs(Profile::Optee3_14);
        let new = possible_pairs(Profile::Optee4x);
        // Two phases more (argument pages, notifications), one fewer (RPC ALLOC).
        assert_eq!(new.len() - old.len(), Fault::ALL.len());
        assert!(!new.iter().any(|(_, p)| *p == InFlight::RpcAlloc));
        assert!(old
            .iter()
            .all(|(_, p)| !matches!(p, InFlight::ArgPages | InFlight::AsyncNotif)));
        // init refuses a kexec, a reboot and a restart while it shuts down; a crash takes over.
        assert!(!old.contains(&(Fault::Kexec, InFlight::ShutdownDraining)));
        assert!(old.contains(&(Fault::CrashWithoutShutdown, InFlight::ShutdownDraining)));
    }

    #[test]
    fn a_fault_counts_for_every_phase_live_when_it_landed() {
        let mut coverage = Coverage::default();
        let phases: Phases = [InFlight::Invoke, InFlight::RpcCmd].into_iter().collect();
        coverage.record(Fault::Kill(ServerKind::Teed), phases);
        assert_eq!(coverage.faults, 1);
        assert_eq!(
            coverage.count(Fault::Kill(ServerKind::Teed), InFlight::Invoke),
            1
        );
        assert_eq!(
            coverage.count(Fault::Kill(ServerKind::Teed), InFlight::RpcCmd),
            1
        );
        assert_eq!(
            coverage.count(Fault::Kill(ServerKind::Teed), InFlight::Idle),
            0
        );
        assert_eq!(coverage.reached(Profile::Optee3_14), 2);
        let mut total = coverage.clone();
        total.merge(&coverage);
        assert_eq!(
            total.count(Fault::Kill(ServerKind::Teed), InFlight::Invoke),
            2
        );
        assert!(Fault::ALL.iter().enumerate().all(|(i, f)| f.index() == i));
    }
}
