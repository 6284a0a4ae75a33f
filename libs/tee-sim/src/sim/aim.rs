//! Targeted scheduling for covered runs: while a phase is live whose pairs this run has not
//! reached yet, a fault may land there and then, with the faults not yet reached in it made
//! more likely ([`Weights::aimed`]); while a rare phase ([`InFlight::is_rare`]) is live, at
//! once. A rare phase that only a fault opens gets a lead-in: while what leads to it is live (a
//! client's invocation inside the TA, for a call sleeping on the busy TA), that fault lands.
//!
//! The aim draws from its own generator, seeded from the run's seed, so a covered run is
//! deterministic per seed, and until the first aimed fault lands it makes exactly the choices
//! of [`Sim::run`](super::Sim::run) on the same seed.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use secure_world::Profile;
use tee_proto::lifecycle::ServerKind;

use super::config::Weights;
use crate::coverage::{is_possible, Coverage, Fault, InFlight, Phases};

/// How hard a covered run aims.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aiming {
    /// Chance, at each step where a live phase still has a fault this run has not landed in
    /// it, that a fault lands there and then.
    pub rate: f64,
    /// The same chance while such a phase is a rare one (live for a step or two, a few times
    /// in a run at most).
    pub rare_rate: f64,
    /// Chance, at each step where what leads to a rare phase is live and that phase still has
    /// faults to land in it this run, that a fault which opens it lands.
    pub lead_rate: f64,
    /// An aimed pick weighs each fault not yet reached in a live phase as `factor` times the
    /// heaviest kind of the script's weights (the others keep their own weight).
    pub factor: u32,
}

impl Default for Aiming {
    fn default() -> Self {
        Aiming {
            rate: 0.05,
            rare_rate: 1.0,
            lead_rate: 1.0,
            factor: 10,
        }
    }
}

/// A phase that lasts a step or two and comes only after a particular fault: while what
/// leads to it is live, the aim lands one of `faults` to open it.
struct LeadIn {
    target: InFlight,
    when: fn(Phases) -> bool,
    faults: &'static [Fault],
}

/// A client's invocation inside the TA (its thread suspended in an RPC or by an interrupt).
fn invocation_in_ta(phases: Phases) -> bool {
    phases.contains(InFlight::Invoke)
        && [InFlight::RpcAlloc, InFlight::RpcCmd, InFlight::ForeignIntr]
            .into_iter()
            .any(|p| phases.contains(p))
}

/// The lead-ins: a call sleeps (NOTIFICATION WAIT) when the TA it enters is busy with another
/// thread; with one session per client, that is teed reclaiming a dead client's session while
/// the client's invocation is still inside the TA. An operator's restart opens it rather than
/// a kill: it spends no restart budget (the client is not given up on after a few), and the
/// client has a new incarnation at once, so its own kill can still land in the window.
const LEAD_INS: [LeadIn; 1] = [LeadIn {
    target: InFlight::Sleeping,
    when: invocation_in_ta,
    faults: &[
        Fault::Restart(ServerKind::Tpmd),
        Fault::Restart(ServerKind::Bnxtd),
    ],
}];

/// Keeps the aim's draws apart from the run's own generator.
const AIM_SALT: u64 = 0xA1A1_C0FE_0000_0019;

/// The aim of one covered run.
pub(crate) struct Aim {
    aiming: Aiming,
    rng: SmallRng,
    /// Off once the run's faults stop (its last orderly kexec).
    pub on: bool,
}

impl Aim {
    pub fn new(seed: u64, aiming: Aiming) -> Aim {
        Aim {
            aiming,
            rng: SmallRng::seed_from_u64(seed ^ AIM_SALT),
            on: true,
        }
    }

    /// The fault to land now, if any: only while a live phase (other than idle, which the
    /// script's own operations reach) has a possible fault this run has not landed in it,
    /// and that fault would take effect now (`lands`).
    pub fn pick(
        &mut self,
        profile: Profile,
        weights: &Weights,
        phases: Phases,
        run: &Coverage,
        lands: impl Fn(Fault) -> bool,
    ) -> Option<Fault> {
        if !self.on {
            return None;
        }
        let open = |f: Fault, p: InFlight| {
            p != InFlight::Idle && is_possible(profile, f, p) && run.count(f, p) == 0 && lands(f)
        };
        if let Some(fault) = self.lead_in(profile, phases, run, &lands) {
            return Some(fault);
        }
        let unreached = |f: Fault| phases.iter().any(|p| open(f, p));
        if !Fault::ALL.into_iter().any(unreached) {
            return None;
        }
        let rare = phases
            .iter()
            .any(|p| p.is_rare() && Fault::ALL.into_iter().any(|f| open(f, p)));
        let rate = if rare {
            self.aiming.rare_rate
        } else {
            self.aiming.rate
        };
        if !self.rng.gen_bool(rate) {
            return None;
        }
        let mut table = weights.aimed(unreached, self.aiming.factor);
        for (weight, fault) in table.iter_mut().zip(Fault::ALL) {
            if !lands(fault) {
                // A fault that would not take effect now is not aimed.
                *weight = 0;
            } else if rare && unreached(fault) && fault.refused_while_shutting_down() {
                // init takes it only outside a shutdown, and rare phases come as often inside
                // one: while init takes it, it goes first.
                *weight = weight.saturating_mul(self.aiming.factor);
            }
        }
        let total: u32 = table.iter().sum();
        if total == 0 {
            return None;
        }
        let mut pick = self.rng.gen_range(0..total);
        for (fault, weight) in Fault::ALL.into_iter().zip(table) {
            if pick < weight {
                return Some(fault);
            }
            pick -= weight;
        }
        None
    }

    /// A fault that opens a rare phase this run has faults still to land in, while what
    /// leads to it is live.
    fn lead_in(
        &mut self,
        profile: Profile,
        phases: Phases,
        run: &Coverage,
        lands: &impl Fn(Fault) -> bool,
    ) -> Option<Fault> {
        for lead in &LEAD_INS {
            // Only when a fault the phase still lacks would take effect now (a kexec, say, is
            // refused while a shutdown runs: opening the phase then would not serve it).
            let wanted = Fault::ALL.into_iter().any(|f| {
                is_possible(profile, f, lead.target) && run.count(f, lead.target) == 0 && lands(f)
            });
            // Once the phase is live, the aim lands what it still lacks there instead.
            if !wanted || phases.contains(lead.target) || !(lead.when)(phases) {
                continue;
            }
            let openers: Vec<Fault> = lead.faults.iter().copied().filter(|f| lands(*f)).collect();
            if openers.is_empty() || !self.rng.gen_bool(self.aiming.lead_rate) {
                continue;
            }
            return Some(openers[self.rng.gen_range(0..openers.len())]);
        }
        None
    }
}

impl Weights {
    /// The weight of one fault kind: a client's kill shares `kill_client`, a server's restart
    /// `operator_restart` (as the script draws them); at least 1 unless the kind is off.
    pub fn of(&self, fault: Fault) -> u32 {
        let share = |w: u32, n: u32| if w == 0 { 0 } else { (w / n).max(1) };
        match fault {
            Fault::Kexec => self.kexec,
            Fault::Reset => self.reboot,
            Fault::CrashWithShutdown => self.crash_with_ipc,
            Fault::CrashWithoutShutdown => self.crash_without_ipc,
            Fault::Kill(ServerKind::Teed) => self.kill_teed,
            Fault::Kill(_) => share(self.kill_client, 2),
            Fault::Restart(_) => share(self.operator_restart, 3),
        }
    }

    /// Every fault kind's weight in [`Fault::ALL`] order, with those `unreached` says were not
    /// reached raised to `factor` times the heaviest weight: an aimed fault is one of the
    /// unreached, each as likely as the others, however rare its kind is in the script (a kind
    /// turned off stays off).
    pub fn aimed(&self, unreached: impl Fn(Fault) -> bool, factor: u32) -> [u32; 10] {
        let heaviest = Fault::ALL
            .map(|f| self.of(f))
            .into_iter()
            .max()
            .unwrap_or(0);
        Fault::ALL.map(|f| {
            let w = self.of(f);
            if unreached(f) && w > 0 {
                heaviest.saturating_mul(factor)
            } else {
                w
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aimed_weights_raise_only_the_unreached() {
        let w = Weights::default();
        let aimed = w.aimed(|f| f == Fault::Reset, 10);
        assert_eq!(
            aimed[Fault::Reset.index()],
            w.kexec * 10,
            "the heaviest, kexec, ten times"
        );
        assert_eq!(aimed[Fault::Kexec.index()], w.kexec);
        let off = Weights {
            reboot: 0,
            ..Weights::default()
        };
        assert_eq!(off.aimed(|_| true, 10)[Fault::Reset.index()], 0);
    }

    #[test]
    fn nothing_is_aimed_at_an_idle_machine_or_a_reached_phase() {
        let mut aim = Aim::new(
            7,
            Aiming {
                rate: 1.0,
                rare_rate: 1.0,
                lead_rate: 0.0,
                factor: 10,
            },
        );
        let w = Weights::default();
        let idle: Phases = [InFlight::Idle].into_iter().collect();
        let run = Coverage::default();
        assert_eq!(aim.pick(Profile::Optee3_14, &w, idle, &run, |_| true), None);
        let rpc: Phases = [InFlight::RpcAlloc].into_iter().collect();
        assert!(aim
            .pick(Profile::Optee3_14, &w, rpc, &run, |_| true)
            .is_some());
        // Nothing is aimed that would not take effect.
        assert_eq!(aim.pick(Profile::Optee3_14, &w, rpc, &run, |_| false), None);
        let mut all = Coverage::default();
        for f in Fault::ALL {
            all.record(f, rpc);
        }
        assert_eq!(aim.pick(Profile::Optee3_14, &w, rpc, &all, |_| true), None);
    }
}
