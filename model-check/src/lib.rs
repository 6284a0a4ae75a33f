//! Exhaustive model checking of the lifecycle with stateright, over the real sans-IO cores.
//!
//! The machine is tee-sim's [`Sim`]: init's supervisor, teed, tpmd and bnxtd, their consumers
//! and the secure-world model, all the real cores. The cores are not `Clone` or `Hash`, so a
//! model state is the *path* of lifecycle actions that reached it plus an abstract summary of
//! what the cores hold afterwards; `next_state` replays the path on a fresh, deterministic
//! machine (faults come only from the path). States are told apart by the summary alone, so
//! two paths that leave the cores holding the same things are explored once: the check is
//! exhaustive over the summary's abstraction, not over every byte of every core.
//!
//! Checked along every path, after every action:
//! * no registration, session or cached RPC buffer outlives a completed orderly shutdown
//!   (read at the transition itself, before the next boot registers anything);
//! * no cookie comes back after it left the secure world's registry (within a secure-world
//!   lifetime; a machine reset starts a new one);
//! * no client reaches the other's session or buffer (a forged request is refused);
//! * every operation settles (no hang), and from every state an orderly kexec can end the run
//!   cleanly (no deadlock).

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

use stateright::{Checker, Model, Property};
use tee_proto::lifecycle::ServerKind;
use tee_sim::sim::{Sim, SimConfig, SimFailure};
use teesys_init::SupervisedState;

/// A server, as the model names it (tee-proto's kind is not `Hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Server {
    Teed,
    Tpmd,
    Bnxtd,
}

impl Server {
    pub const ALL: [Server; 3] = [Server::Teed, Server::Tpmd, Server::Bnxtd];

    fn kind(self) -> ServerKind {
        match self {
            Server::Teed => ServerKind::Teed,
            Server::Tpmd => ServerKind::Tpmd,
            Server::Bnxtd => ServerKind::Bnxtd,
        }
    }
}

/// One lifecycle action of the normal world, its operator or its faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// One round of consumer traffic (TPM commands, coredump reads), settled.
    Traffic,
    /// Consumer traffic left in flight after a few steps: the next action cuts into it.
    InFlight,
    /// An orderly kexec.
    Kexec,
    /// A machine reset (the secure world restarts too).
    Reset,
    /// A crash into the crash kernel, with or without the best-effort shutdown IPC.
    Crash { ipc: bool },
    /// kill -9 of a server; init restarts it.
    Kill(Server),
    /// An operator's restart of a server through init.
    Restart(Server),
    /// A client forges a request naming the other client's session or buffer.
    Forge,
}

impl Action {
    /// Every action the checker tries in every state.
    pub fn all() -> Vec<Action> {
        let mut all = vec![
            Action::Traffic,
            Action::InFlight,
            Action::Kexec,
            Action::Reset,
            Action::Crash { ipc: true },
            Action::Crash { ipc: false },
            Action::Forge,
        ];
        all.extend(Server::ALL.map(Action::Kill));
        all.extend(Server::ALL.map(Action::Restart));
        all
    }
}

/// Steps of traffic an [`Action::InFlight`] runs before the next action cuts in.
const IN_FLIGHT_STEPS: u64 = 6;

/// Which property a path broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Something stayed in the secure world across a completed orderly shutdown.
    OutlivedShutdown(String),
    /// A cookie came back after it was retired.
    CookieReused(u64),
    /// A forged request reached the other client's session or buffer.
    CrossClient(String),
    /// An operation did not settle.
    Hang(String),
    /// Any other invariant of the simulator's own checker.
    Invariant(String),
}

impl Violation {
    fn from_failure(failure: &SimFailure) -> Violation {
        let message = failure.message.clone();
        if message.contains("isolation") {
            Violation::CrossClient(message)
        } else if message.contains("no quiescence") {
            Violation::Hang(message)
        } else if message.contains("reused") {
            Violation::CookieReused(0)
        } else if message.contains("completed shutdown left") {
            Violation::OutlivedShutdown(message)
        } else {
            Violation::Invariant(message)
        }
    }
}

/// What the cores hold after a path, abstracted so that equal summaries are one state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Summary {
    pub init_phase: String,
    /// init's view of each server: its state's kind (deadlines dropped), whether it lives, and
    /// its supervised restarts this boot up to the give-up budget (they set the backoff and
    /// when init gives up, so two counts are two futures).
    pub servers: Vec<(&'static str, bool, u32)>,
    pub teed_serving: bool,
    pub teed_registrations: usize,
    pub teed_sessions: usize,
    pub teed_arg_pages: bool,
    pub secure_registrations: usize,
    pub secure_sessions: usize,
    pub secure_cached: usize,
    pub secure_suspended: usize,
    pub secure_active: usize,
    pub notif_started: bool,
    pub cache_enabled: bool,
    /// The path ended with traffic still in flight.
    pub in_flight: bool,
}

/// A model state: the path that reached it and what it found (see the module comment).
#[derive(Debug, Clone)]
pub struct State {
    pub path: Vec<Action>,
    pub summary: Summary,
    pub violation: Option<Violation>,
    /// An orderly kexec from here ends the run cleanly.
    pub can_end: bool,
}

// Identity is the abstraction: the path is only how to rebuild the cores.
impl PartialEq for State {
    fn eq(&self, other: &State) -> bool {
        self.summary == other.summary
            && self.violation.is_some() == other.violation.is_some()
            && self.can_end == other.can_end
    }
}

impl Eq for State {}

impl Hash for State {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.summary.hash(state);
        self.violation.is_some().hash(state);
        self.can_end.hash(state);
    }
}

/// Restarts told apart: one past init's default budget (`max_restarts`, 5), where it gives up.
const RESTARTS_SEEN: u32 = 6;

fn state_kind(state: &SupervisedState) -> &'static str {
    match state {
        SupervisedState::NotStarted => "not-started",
        SupervisedState::Starting { .. } => "starting",
        SupervisedState::Ready => "ready",
        SupervisedState::Held(_) => "held",
        SupervisedState::RestartPending { .. } => "restart-pending",
        SupervisedState::GivenUp => "given-up",
        SupervisedState::ShuttingDown => "shutting-down",
        SupervisedState::Quiesced => "quiesced",
        _ => "stopped",
    }
}

fn summarize(sim: &Sim, in_flight: bool) -> Summary {
    let view = sim.init_view();
    let stats = sim.secure.stats();
    let teed = sim.teed();
    Summary {
        init_phase: format!("{:?}", view.phase),
        servers: view
            .servers
            .iter()
            .map(|s| (state_kind(&s.state), s.alive, s.restarts.min(RESTARTS_SEEN)))
            .collect(),
        teed_serving: teed.is_some_and(|t| t.is_serving()),
        teed_registrations: teed.map_or(0, |t| t.registrations().count()),
        teed_sessions: teed.map_or(0, |t| t.sessions().count()),
        teed_arg_pages: teed.is_some_and(|t| t.arg_pages().is_some()),
        secure_registrations: stats.registrations,
        secure_sessions: stats.sessions,
        secure_cached: stats.cached_buffers,
        secure_suspended: stats.threads_suspended,
        secure_active: stats.threads_active,
        notif_started: stats.notif_started,
        cache_enabled: stats.cache_enabled,
        in_flight,
    }
}

/// The model's own checks between actions, independent of the simulator's `expect_fixed`.
#[derive(Default)]
struct Watch {
    live: BTreeSet<u64>,
    retired: BTreeSet<u64>,
    transitions_seen: usize,
}

impl Watch {
    fn after(&mut self, sim: &Sim, action: Option<Action>) -> Result<(), Violation> {
        let records = sim.transitions();
        for record in records.iter().skip(self.transitions_seen) {
            let s = &record.secure;
            let left = s.registrations + s.sessions + s.cached_buffers;
            if record.shutdown_completed && (left > 0 || s.notif_started) {
                return Err(Violation::OutlivedShutdown(format!(
                    "completed shutdown left {} registrations, {} sessions, {} cached buffers, \
                     notifications started {}",
                    s.registrations, s.sessions, s.cached_buffers, s.notif_started
                )));
            }
        }
        self.transitions_seen = records.len();
        // A reset restarts the secure world: its cookies start a new lifetime.
        if action == Some(Action::Reset) {
            self.live.clear();
            self.retired.clear();
        }
        let now: BTreeSet<u64> = sim.secure.registrations().map(|r| r.cookie).collect();
        if let Some(c) = now.iter().find(|c| self.retired.contains(c)) {
            return Err(Violation::CookieReused(*c));
        }
        self.retired.extend(self.live.difference(&now));
        self.live = now;
        Ok(())
    }
}

fn apply(sim: &mut Sim, action: Action) -> Result<(), SimFailure> {
    match action {
        Action::Traffic => sim.traffic(1),
        Action::InFlight => sim.traffic_steps(IN_FLIGHT_STEPS),
        Action::Kexec => sim.kexec(),
        Action::Reset => sim.reboot(),
        Action::Crash { ipc } => sim.crash(ipc),
        Action::Kill(server) => sim.kill_server(server.kind()),
        Action::Restart(server) => sim.restart_server(server.kind()),
        Action::Forge => sim.forge(),
    }
}

/// Whether an orderly kexec (two, when the first only leaves a world that could not serve)
/// ends the run with a completed shutdown that leaves nothing behind.
fn can_end(sim: &mut Sim) -> bool {
    for _ in 0..2 {
        let before = sim.transitions().len();
        if sim.kexec().is_err() {
            return false;
        }
        let Some(last) = sim.transitions().get(before..).and_then(|t| t.last()) else {
            continue;
        };
        let s = &last.secure;
        let clean = s.registrations + s.sessions + s.cached_buffers == 0 && !s.notif_started;
        if last.shutdown_completed && clean {
            return true;
        }
    }
    false
}

/// Rebuilds the machine along `path` and judges it.
pub fn replay(cfg: &SimConfig, path: &[Action]) -> State {
    let mut sim = Sim::scripted(cfg.clone());
    let mut watch = Watch::default();
    let mut violation = sim
        .power_on()
        .map_err(|f| Violation::from_failure(&f))
        .and_then(|()| watch.after(&sim, None))
        .err();
    for &action in path {
        if violation.is_some() {
            break;
        }
        violation = apply(&mut sim, action)
            .map_err(|f| Violation::from_failure(&f))
            .and_then(|()| watch.after(&sim, Some(action)))
            .err();
    }
    let summary = summarize(&sim, path.last() == Some(&Action::InFlight));
    let can_end = violation.is_some() || can_end(&mut sim);
    State {
        path: path.to_vec(),
        summary,
        violation,
        can_end,
    }
}

/// The lifecycle as a stateright model.
#[derive(Clone)]
pub struct LifecycleModel {
    pub cfg: SimConfig,
    pub max_depth: usize,
}

impl LifecycleModel {
    /// The default machine (every fix in place), 3.14 profile, checked to `max_depth` actions.
    pub fn new(max_depth: usize) -> LifecycleModel {
        LifecycleModel::with_config(SimConfig::new(0x5eed), max_depth)
    }

    /// A machine configured as `cfg` (the seed only fixes the channel order of each replay).
    pub fn with_config(mut cfg: SimConfig, max_depth: usize) -> LifecycleModel {
        // Foreign interrupts suspend secure threads, so crashes and kills can cut into them.
        cfg.secure.foreign_intr_every = Some(3);
        LifecycleModel { cfg, max_depth }
    }
}

/// Property names, as the checker reports them.
pub mod names {
    pub const NOTHING_OUTLIVES_SHUTDOWN: &str =
        "no registration or session outlives a completed shutdown";
    pub const NO_COOKIE_REUSE: &str = "no cookie is reused";
    pub const ISOLATION: &str = "no client reaches another's shm";
    pub const NO_HANG: &str = "every operation settles";
    pub const SIM_INVARIANTS: &str = "the simulator's invariants hold";
    pub const CAN_END: &str = "every run can end";
}

impl Model for LifecycleModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![replay(&self.cfg, &[])]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        // A broken path is a finding already: nothing to explore past it.
        if state.violation.is_none() {
            actions.extend(Action::all());
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut path = last.path.clone();
        path.push(action);
        Some(replay(&self.cfg, &path))
    }

    fn within_boundary(&self, state: &State) -> bool {
        state.path.len() <= self.max_depth
    }

    fn properties(&self) -> Vec<Property<Self>> {
        use names::*;
        vec![
            Property::always(NOTHING_OUTLIVES_SHUTDOWN, |_, s: &State| {
                !matches!(s.violation, Some(Violation::OutlivedShutdown(_)))
            }),
            Property::always(NO_COOKIE_REUSE, |_, s: &State| {
                !matches!(s.violation, Some(Violation::CookieReused(_)))
            }),
            Property::always(ISOLATION, |_, s: &State| {
                !matches!(s.violation, Some(Violation::CrossClient(_)))
            }),
            Property::always(NO_HANG, |_, s: &State| {
                !matches!(s.violation, Some(Violation::Hang(_)))
            }),
            Property::always(SIM_INVARIANTS, |_, s: &State| {
                !matches!(s.violation, Some(Violation::Invariant(_)))
            }),
            Property::always(CAN_END, |_, s: &State| s.can_end),
        ]
    }
}

/// What a check found.
#[derive(Debug, Clone)]
pub struct Report {
    pub unique_states: usize,
    pub states: usize,
    pub max_depth: usize,
    /// Each broken property with the path that breaks it.
    pub violations: Vec<(&'static str, Vec<Action>, Option<Violation>)>,
}

/// Runs the checker breadth-first to the model's depth.
pub fn check(model: LifecycleModel, threads: usize) -> Report {
    let depth = model.max_depth;
    let checker = model
        .checker()
        .threads(threads.max(1))
        .target_max_depth(depth + 1)
        .spawn_bfs()
        .join();
    let mut violations: Vec<_> = checker
        .discoveries()
        .into_iter()
        .map(|(name, path)| {
            let last = path.last_state().clone();
            (name, last.path, last.violation)
        })
        .collect();
    violations.sort_by_key(|(name, _, _)| *name);
    Report {
        unique_states: checker.unique_state_count(),
        states: checker.state_count(),
        max_depth: checker.max_depth(),
        violations,
    }
}
