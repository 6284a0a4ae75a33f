//! The supervisor: state, boot order, timers and the effect queue.
//!
//! Events from servers and exits are in `events.rs`; operator commands and the shutdown
//! sequence in `commands.rs`. Everything here is bookkeeping on the `now` it is given.

use std::collections::VecDeque;

use tee_proto::lifecycle::ClientWindows;
use tee_proto::lifecycle::{BootKind, InitRequest, RamWindow, ServerKind};
use tee_proto::{Frame, Generation, Header};

use crate::boot::BootLedger;
use crate::config::InitConfig;
use crate::effect::{BootSummary, Effect, Notice, ServerSummary, StartOutcome};
use crate::restart::RestartTracker;
use crate::shutdown::ShutdownSequence;
use crate::view::{Phase, ServerView, SupervisedState, SupervisorView};
use crate::{server_index, INIT_GENERATION, SERVERS};

/// Which answer an incarnation owes init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Awaited {
    Hello,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Awaiting {
    pub(crate) request_id: u32,
    pub(crate) what: Awaited,
}

/// init's record of one server.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) kind: ServerKind,
    pub(crate) generation: Generation,
    pub(crate) state: SupervisedState,
    pub(crate) alive: bool,
    pub(crate) awaiting: Option<Awaiting>,
    /// Whether the current incarnation ever answered `Ready`.
    pub(crate) reached_ready: bool,
    pub(crate) restarts: u32,
    pub(crate) operator_restarts: u32,
    pub(crate) tracker: RestartTracker,
}

impl Slot {
    fn new(kind: ServerKind) -> Self {
        Slot {
            kind,
            generation: 0,
            state: SupervisedState::NotStarted,
            alive: false,
            awaiting: None,
            reached_ready: false,
            restarts: 0,
            operator_restarts: 0,
            tracker: RestartTracker::default(),
        }
    }

    /// Ready, declined or given up: nothing more to wait for at boot.
    fn settled(&self) -> Option<StartOutcome> {
        match self.state {
            SupervisedState::Ready => Some(StartOutcome::Ready),
            SupervisedState::Held(reason) => Some(StartOutcome::Declined(reason)),
            SupervisedState::GivenUp => Some(StartOutcome::GivenUp),
            _ => None,
        }
    }
}

/// The sans-IO supervisor core of init (see the crate documentation).
#[derive(Debug)]
pub struct Supervisor {
    pub(crate) config: InitConfig,
    pub(crate) phase: Phase,
    pub(crate) ledger: BootLedger,
    pub(crate) slots: [Slot; 3],
    next_request_id: u32,
    effects: VecDeque<Effect>,
    boot_started_at: u64,
    clients_started: bool,
    /// The running or most recent shutdown sequence (kept after the next boot for reports).
    pub(crate) shutdown: Option<ShutdownSequence>,
}

impl Supervisor {
    pub fn new(config: InitConfig) -> Self {
        Supervisor {
            config,
            phase: Phase::Idle,
            ledger: BootLedger::default(),
            slots: SERVERS.map(Slot::new),
            next_request_id: 1,
            effects: VecDeque::new(),
            boot_started_at: 0,
            clients_started: false,
            shutdown: None,
        }
    }

    /// Begins a boot of the normal world. The previous world, if any, is gone: its servers are
    /// not stopped again, and whatever was pending for them is dropped (notices are kept).
    pub fn boot(&mut self, now: u64, kind: BootKind) {
        if matches!(
            self.phase,
            Phase::Booting | Phase::Running | Phase::ShuttingDown
        ) {
            tracing::warn!(?kind, phase = ?self.phase, "boot without a transition");
        }
        let boot = self.ledger.begin(kind);
        tracing::info!(
            boot_id = boot.boot_id,
            ?kind,
            crash_flag = boot.crash_flag,
            "boot"
        );
        self.effects
            .retain(|effect| matches!(effect, Effect::Notice(_)));
        self.phase = Phase::Booting;
        self.boot_started_at = now;
        self.clients_started = false;
        for slot in &mut self.slots {
            // Generations keep counting across boots so that no frame can reach a namesake.
            let generation = slot.generation;
            *slot = Slot::new(slot.kind);
            slot.generation = generation;
        }
        self.notice(Notice::BootStarted(boot));
        self.start_incarnation(now, ServerKind::Teed);
    }

    /// Fires every deadline that is due at `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        if matches!(self.phase, Phase::Booting | Phase::Running) {
            for kind in SERVERS {
                let slot = self.slot(kind);
                match slot.state {
                    SupervisedState::Starting { deadline } if now >= deadline => {
                        let generation = slot.generation;
                        tracing::warn!(?kind, generation, "start deadline expired");
                        self.notice(Notice::StartDeadlineExpired {
                            server: kind,
                            generation,
                        });
                        self.fail_start(now, kind);
                    }
                    SupervisedState::RestartPending { at } if now >= at => {
                        self.slot_mut(kind).restarts += 1;
                        self.start_incarnation(now, kind);
                    }
                    _ => {}
                }
            }
        }
        if self.phase == Phase::ShuttingDown {
            self.expire_shutdown_step(now);
        }
        self.progress_boot(now);
    }

    /// The next effect for the shell, in the order they arose.
    pub fn poll(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut earliest: Option<u64> = None;
        let mut consider = |at: u64| earliest = Some(earliest.map_or(at, |e| e.min(at)));
        match self.phase {
            Phase::Booting | Phase::Running => {
                for slot in &self.slots {
                    match slot.state {
                        SupervisedState::Starting { deadline } => consider(deadline),
                        SupervisedState::RestartPending { at } => consider(at),
                        _ => {}
                    }
                }
            }
            Phase::ShuttingDown => {
                if let Some(deadline) = self.shutdown.as_ref().and_then(|seq| seq.deadline()) {
                    consider(deadline);
                }
            }
            Phase::Idle | Phase::Down(_) => {}
        }
        earliest
    }

    pub fn snapshot(&self) -> SupervisorView {
        SupervisorView {
            phase: self.phase,
            boot: self.ledger.current(),
            crash_flag: self.ledger.crash_flag(),
            servers: self.slots.each_ref().map(|slot| ServerView {
                server: slot.kind,
                generation: slot.generation,
                state: slot.state,
                alive: slot.alive,
                restarts: slot.restarts,
                operator_restarts: slot.operator_restarts,
            }),
            last_shutdown: self.shutdown.as_ref().map(|seq| seq.outcome().clone()),
        }
    }

    pub(crate) fn slot(&self, kind: ServerKind) -> &Slot {
        &self.slots[server_index(kind)]
    }

    pub(crate) fn slot_mut(&mut self, kind: ServerKind) -> &mut Slot {
        &mut self.slots[server_index(kind)]
    }

    pub(crate) fn notice(&mut self, notice: Notice) {
        self.effects.push_back(Effect::Notice(notice));
    }

    pub(crate) fn push(&mut self, effect: Effect) {
        self.effects.push_back(effect);
    }

    /// Starts the next incarnation of `kind` and sends its `Hello`.
    pub(crate) fn start_incarnation(&mut self, now: u64, kind: ServerKind) {
        let deadline = now.saturating_add(self.config.start_deadline_ms);
        let slot = self.slot_mut(kind);
        // 0 means "unknown" on the wire, so the count skips it when it wraps.
        slot.generation = slot.generation.checked_add(1).unwrap_or(1);
        slot.state = SupervisedState::Starting { deadline };
        slot.alive = true;
        slot.reached_ready = false;
        let generation = slot.generation;
        tracing::info!(?kind, generation, "start");
        self.push(Effect::Start {
            server: kind,
            generation,
        });
        let hello = self.hello_for(kind);
        self.send(kind, hello, Awaited::Hello);
    }

    fn hello_for(&self, kind: ServerKind) -> InitRequest {
        let none = RamWindow { base: 0, len: 0 };
        let (ram, journal) = match kind {
            ServerKind::Teed => (self.config.ram, self.config.journal),
            // Clients get their shared memory from teed, never frames of their own: at most the
            // window teed places their buffers in.
            ServerKind::Tpmd | ServerKind::Bnxtd => {
                (self.config.windows.of(kind).unwrap_or(none), none)
            }
        };
        let windows = match kind {
            ServerKind::Teed => self.config.windows,
            ServerKind::Tpmd | ServerKind::Bnxtd => ClientWindows::NONE,
        };
        InitRequest::Hello {
            generation: self.slot(kind).generation,
            teed_generation: self.slot(ServerKind::Teed).generation,
            // start_incarnation only runs after boot() set the current boot.
            boot: self
                .ledger
                .current()
                .unwrap_or(tee_proto::lifecycle::BootInfo {
                    boot_id: 0,
                    kind: BootKind::Cold,
                    crash_flag: false,
                }),
            ram,
            journal,
            windows,
            // The shell that attaches the capabilities names them.
            grants: tee_proto::grants::GrantKinds::NONE,
        }
    }

    /// Sends a request to the current incarnation and remembers which answer it owes.
    pub(crate) fn send(&mut self, kind: ServerKind, body: InitRequest, what: Awaited) {
        let request_id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        let slot = self.slot_mut(kind);
        slot.awaiting = Some(Awaiting { request_id, what });
        let header = Header::new(INIT_GENERATION, slot.generation, request_id);
        self.push(Effect::Send {
            server: kind,
            frame: Frame { header, body },
        });
    }

    /// Kills the current incarnation if init believes it runs.
    pub(crate) fn stop(&mut self, kind: ServerKind) {
        let slot = self.slot_mut(kind);
        slot.awaiting = None;
        if slot.alive {
            slot.alive = false;
            self.push(Effect::Stop { server: kind });
        }
    }

    /// After every change: start the clients once teed settled, and report `Booted` once all
    /// three settled.
    pub(crate) fn progress_boot(&mut self, now: u64) {
        if self.phase != Phase::Booting {
            return;
        }
        if !self.clients_started {
            if self.slot(ServerKind::Teed).settled().is_none() {
                return;
            }
            self.clients_started = true;
            self.start_incarnation(now, ServerKind::Tpmd);
            self.start_incarnation(now, ServerKind::Bnxtd);
        }
        let summaries = self.slots.each_ref().map(|slot| {
            slot.settled().map(|outcome| ServerSummary {
                server: slot.kind,
                generation: slot.generation,
                outcome,
            })
        });
        let [Some(teed), Some(tpmd), Some(bnxtd)] = summaries else {
            return;
        };
        let Some(boot) = self.ledger.current() else {
            return;
        };
        self.phase = Phase::Running;
        tracing::info!(boot_id = boot.boot_id, "booted");
        self.push(Effect::Booted(BootSummary {
            boot,
            started_at: self.boot_started_at,
            booted_at: now,
            servers: [teed, tpmd, bnxtd],
        }));
    }
}
