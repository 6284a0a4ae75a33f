//! What must hold after every step of every run.
//!
//! * No cookie is ever reused: a cookie that left the secure world's registry never comes back.
//! * A completed orderly shutdown leaves nothing in the secure world: no registration (teed's
//!   argument pages included), no session, no cached RPC buffer, no asynchronous notifications
//!   left started.
//! * Once the system is quiet and teed serves, the secure world holds nothing teed does not know
//!   of: no leftover of an earlier boot or incarnation (the journal's promise).
//! * A client never reaches another client's session or buffer (forged requests are denied).
//! * Nothing hangs: every operation settles within a bounded number of steps.
//! * Every run ends with an orderly kexec that completes and leaves nothing in the secure
//!   world, after which the consumers get correct answers ([`super::finish`]).

use std::collections::{BTreeMap, BTreeSet};

use tee_proto::teed::TeedResponse;
use teed::{ClientId, Hardening};
use teesys_init::{ShutdownResult, Transition};

use super::{Sim, SimFailure};

pub(crate) struct Checker {
    expect_fixed: bool,
    hardening: Hardening,
    live: BTreeSet<u64>,
    retired: BTreeSet<u64>,
    known: BTreeMap<ClientId, (Option<u32>, Option<u32>)>,
    pub orphans_resumed: u64,
    pub reclaimed: u64,
    /// The next transition must be a completed orderly kexec (the run's last).
    strict_transition: bool,
}

impl Checker {
    pub fn new(expect_fixed: bool, hardening: Hardening) -> Checker {
        Checker {
            expect_fixed,
            hardening,
            live: BTreeSet::new(),
            retired: BTreeSet::new(),
            known: BTreeMap::new(),
            orphans_resumed: 0,
            reclaimed: 0,
            strict_transition: false,
        }
    }

    /// The secure world restarted (machine reset): cookies start a new lifetime.
    pub fn secure_world_reset(&mut self) {
        self.live.clear();
        self.retired.clear();
    }

    /// A new teed incarnation names buffers afresh: forget what the last one handed out.
    pub fn teed_ended(&mut self) {
        self.known.clear();
    }

    /// The last session and buffer teed gave a client, for forged requests.
    pub fn known(&self, client: ClientId) -> (Option<u32>, Option<u32>) {
        self.known.get(&client).copied().unwrap_or_default()
    }

    /// A cookie that left the secure world's registry in this lifetime, if any.
    pub fn a_retired_cookie(&self) -> Option<u64> {
        self.retired.first().copied()
    }

    pub fn watch_reply(&mut self, client: ClientId, reply: &TeedResponse) {
        let entry = self.known.entry(client).or_default();
        match reply {
            TeedResponse::SessionOpened { session } => entry.0 = Some(*session),
            TeedResponse::ShmAllocated { shm, .. } => entry.1 = Some(*shm),
            _ => {}
        }
    }

    pub fn after_step(&mut self, sim: &Sim) -> Result<(), SimFailure> {
        let now: BTreeSet<u64> = sim.secure.registrations().map(|r| r.cookie).collect();
        if let Some(c) = now.iter().find(|c| self.retired.contains(c)) {
            return Err(sim.fail(format!("cookie {c:#x} reused after it was unregistered")));
        }
        for gone in self.live.difference(&now) {
            self.retired.insert(*gone);
        }
        self.live = now;
        if sim.net.is_empty() {
            self.when_quiet(sim)?;
        }
        Ok(())
    }

    fn when_quiet(&mut self, sim: &Sim) -> Result<(), SimFailure> {
        if !(self.expect_fixed && self.hardening.journal) {
            return Ok(());
        }
        let Some(teed) = sim.teed.as_ref().filter(|t| t.is_serving()) else {
            return Ok(());
        };
        let known: BTreeSet<u64> = teed
            .registrations()
            .map(|(_, cookie, _, _)| cookie)
            .chain(teed.arg_pages().map(|(cookie, _, _)| cookie))
            .collect();
        if let Some(r) = sim
            .secure
            .registrations()
            .find(|r| !known.contains(&r.cookie))
        {
            return Err(sim.fail(format!(
                "registration {:#x} ({} bytes) in the secure world that teed does not know",
                r.cookie, r.size
            )));
        }
        let sessions: BTreeSet<u32> = teed.sessions().map(|(id, _)| id).collect();
        if let Some(s) = sim.secure.sessions().find(|s| !sessions.contains(&s.id)) {
            return Err(sim.fail(format!(
                "session {} in the secure world that teed does not know",
                s.id
            )));
        }
        Ok(())
    }

    /// Before the normal world goes: a completed orderly shutdown must leave nothing behind.
    /// After [`Checker::expect_clean_transition`], the shutdown must also have completed.
    pub fn on_transition(&mut self, sim: &Sim, transition: Transition) -> Result<(), SimFailure> {
        let strict = std::mem::take(&mut self.strict_transition);
        if strict {
            return self.last_transition(sim, transition);
        }
        if !(self.expect_fixed && self.hardening.sweep_on_shutdown)
            || transition == Transition::EnterCrashKernel
        {
            return Ok(());
        }
        match completed_shutdown(sim) {
            Ok(()) => nothing_left(sim),
            Err(_) => Ok(()),
        }
    }

    /// The next transition is the run's last orderly kexec: it must complete and leave nothing.
    pub fn expect_clean_transition(&mut self) {
        self.strict_transition = true;
    }

    fn last_transition(&self, sim: &Sim, transition: Transition) -> Result<(), SimFailure> {
        if transition != Transition::Kexec {
            return Err(sim.fail(format!("the last orderly kexec became {transition:?}")));
        }
        completed_shutdown(sim).map_err(|why| {
            sim.fail(format!(
                "the last orderly kexec did not complete its shutdown: {why}"
            ))
        })?;
        nothing_left(sim)
    }
}

/// Whether the shutdown before this transition completed: the IPC ran, no crash took over,
/// and a teed that served this boot acknowledged with nothing it failed to release. Only such
/// a teed can have released what this boot held; what a crashed world left stays until the
/// next probe reclaims it.
fn completed_shutdown(sim: &Sim) -> Result<(), String> {
    let view = sim.init.snapshot();
    let Some(outcome) = view.last_shutdown.as_ref() else {
        return Err("no shutdown ran".into());
    };
    let teed = outcome
        .server(tee_proto::lifecycle::ServerKind::Teed)
        .result;
    let teed_acked = matches!(
        teed,
        ShutdownResult::Acked { report, .. } if report.errors == 0
    );
    // init stops every server before the transition: look at the teed that just ended.
    let served = sim
        .teed
        .as_ref()
        .map(|t| t.has_served() && t.is_stopped())
        .or(sim.ended_teed)
        .unwrap_or(false);
    if !outcome.ipc || outcome.escalated_to_crash {
        return Err(format!(
            "ipc {}, escalated to a crash {}",
            outcome.ipc, outcome.escalated_to_crash
        ));
    }
    if !teed_acked || !served {
        return Err(format!("teed {teed:?}, served and stopped {served}"));
    }
    Ok(())
}

/// The secure world holds no registration, session or cached buffer, and notifications are
/// stopped.
fn nothing_left(sim: &Sim) -> Result<(), SimFailure> {
    let stats = sim.secure.stats();
    if stats.registrations + stats.sessions + stats.cached_buffers > 0 || stats.notif_started {
        return Err(sim.fail(format!(
            "completed shutdown left {} registrations, {} sessions, {} cached buffers, \
             notifications started {}",
            stats.registrations, stats.sessions, stats.cached_buffers, stats.notif_started
        )));
    }
    Ok(())
}
